import FKPEngine
import FKPNets
import FKPTensor
import XCTest

/// A few training steps of net1 and net2 on the same data and seed on both backends. Tolerance: each
/// loss within 1e-3 relative of the CPU engine's (float sums in a different order drift slowly; a bug
/// gives errors of order one), the first loss within 1e-5, and every parameter after the last step within
/// 1e-4 of the largest (normalised difference).
final class OpenCLTrainingTests: XCTestCase {
    func losses(_ backend: Backend, _ architecture: Architecture, batch: Int, steps: Int, seed: UInt64)
        -> (losses: [Float], parameters: [Float])
    {
        let net = Net(architecture, backend: backend, maxBatch: batch)
        net.initialise(seed: seed)
        var rng = Xoshiro(seed: seed &+ 1)
        var out: [Float] = []
        // Two fixed batches, alternated (as if an epoch of two batches), images in [0, 1], targets in [-1, 1].
        let inputs = (0..<2).map { _ in (0..<batch * net.inputSize).map { _ in rng.nextFloat() } }
        let targets = (0..<2).map { _ in (0..<batch * net.outputs).map { _ in rng.nextFloat() * 2 - 1 } }
        for step in 0..<steps {
            inputs[step % 2].withUnsafeBufferPointer { backend.write($0, to: net.input, offset: 0) }
            targets[step % 2].withUnsafeBufferPointer { backend.write($0, to: net.target, offset: 0) }
            out.append(net.trainStep(batch: batch, learningRate: 0.01, momentum: 0.9))
        }
        return (out, net.exportParameters().flatMap(\.values))
    }

    func compare(_ architecture: Architecture, batch: Int, steps: Int, mustImprove: Bool) throws {
        let cl = try CL.backend()
        let (cpu, cpuParameters) = losses(CPUBackend(threads: 2), architecture, batch: batch, steps: steps, seed: 7)
        let (gpu, gpuParameters) = losses(cl, architecture, batch: batch, steps: steps, seed: 7)
        XCTAssertNil(cl.failure)
        print("\(architecture.name) losses, batch \(batch):")
        for (i, (a, b)) in zip(cpu, gpu).enumerated() {
            print(String(format: "  step %2d  cpu %.8f  opencl %.8f  rel diff %.2e", i, a, b, abs(a - b) / abs(a)))
        }
        XCTAssertEqual(gpu[0], cpu[0], accuracy: 1e-5 * abs(cpu[0]), "first loss")
        for (a, b) in zip(cpu, gpu) { XCTAssertEqual(b, a, accuracy: 1e-3 * abs(a)) }
        let parameterError = CL.error(gpuParameters, cpuParameters)
        print(String(format: "  parameters after %d steps: normalised difference %.2e", steps, parameterError))
        XCTAssertLessThan(parameterError, 1e-4)
        if mustImprove { XCTAssertLessThan(cpu.last!, cpu.first!, "training should reduce the loss") }
    }

    func testNet1StepsMatchCPU() throws {
        try compare(.net1(), batch: 32, steps: 8, mustImprove: true)
    }

    func testNet2StepsMatchCPU() throws {
        try compare(.net2(), batch: 16, steps: 4, mustImprove: false)
    }

    /// Same seed, same losses and parameters bit for bit on one device, whatever GEMM tiling the tuner
    /// picks (measured on one backend, the first candidate unmeasured on the other).
    func testNet2SameSeedSameBitsWhateverTheTiling() throws {
        try CL.requirePlatform()
        let tuned = try OpenCLBackend(options: OpenCLBackendOptions(gemm: .registerBlocked, useCache: false))
        let fixed = try OpenCLBackend(options: OpenCLBackendOptions(gemm: .registerBlocked, useCache: false, tuneGemm: false))
        let a = losses(tuned, .net2(), batch: 16, steps: 2, seed: 9)
        let b = losses(fixed, .net2(), batch: 16, steps: 2, seed: 9)
        XCTAssertTrue(tuned.gemmChoices.contains { $0.origin == .measured }, "\(tuned.gemmChoices)")
        XCTAssertTrue(fixed.gemmChoices.allSatisfy { $0.origin == .fixed })
        XCTAssertEqual(a.losses.map(\.bitPattern), b.losses.map(\.bitPattern))
        XCTAssertTrue(a.parameters.elementsEqual(b.parameters) { $0.bitPattern == $1.bitPattern }, "parameters differ")
        XCTAssertNil(tuned.failure)
        XCTAssertNil(fixed.failure)
    }
}
