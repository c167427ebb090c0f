import FKPEngine
import FKPNets
import FKPTensor
import Foundation
import XCTest

/// Throughput figures (printed, not asserted): GEMM GFLOP/s on net2's shapes at batch 128 and a net2
/// training step on both backends. Set FKP_OPENCL_BENCH=1 to run them (they take ~30 s).
final class OpenCLSpeedTests: XCTestCase {
    func seconds(_ body: () -> Void) -> Double {
        let t0 = DispatchTime.now().uptimeNanoseconds
        body()
        return Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
    }

    func testGemmThroughputOnNet2Shapes() throws {
        guard ProcessInfo.processInfo.environment["FKP_OPENCL_BENCH"] == "1" else { throw XCTSkip("set FKP_OPENCL_BENCH=1") }
        let shapes: [(String, Int, Int, Int, Bool, Bool)] = [
            ("conv1 fwd", 128 * 94 * 94, 32, 9, false, false),
            ("conv2 fwd", 128 * 46 * 46, 64, 128, false, false),
            ("conv3 fwd", 128 * 22 * 22, 128, 256, false, false),
            ("dense4 fwd", 128, 500, 15488, false, false),
            ("dense5 fwd", 128, 500, 500, false, false),
            ("dense4 dW", 15488, 500, 128, true, false),
            ("dense4 dX", 128, 15488, 500, false, true),
            ("conv2 dW", 128, 64, 128 * 46 * 46, true, false),
            ("conv3 dX", 128 * 23 * 23, 64, 512, false, true),
        ]
        for variant in OpenCLGemmVariant.allCases {
            let cl = try CL.backend(variant)
            var rng = Xoshiro(seed: 1)
            for (label, m, n, k, ta, tb) in shapes {
                if variant == .localTiled && m * n * k > 1 << 30 { continue }  // slow on PoCL
                let a = cl.upload(CL.random(m * k, &rng)), b = cl.upload(CL.random(k * n, &rng))
                let c = cl.makeBuffer(count: m * n)
                cl.matmul(a: a, transposeA: ta, b: b, transposeB: tb, c: c, m: m, n: n, k: k)
                cl.synchronize()
                let reps = 5
                let t = seconds {
                    for _ in 0..<reps { cl.matmul(a: a, transposeA: ta, b: b, transposeB: tb, c: c, m: m, n: n, k: k) }
                    cl.synchronize()
                } / Double(reps)
                print(String(format: "GEMM %@ %-10@ %7dx%5dx%6d  %7.2f ms  %6.1f GFLOP/s (packing included)",
                             variant.rawValue, label, m, n, k, t * 1e3, 2 * Double(m * n * k) / t / 1e9))
            }
            XCTAssertNil(cl.failure)
        }
    }

    func testNet2StepTimeVersusCPU() throws {
        guard ProcessInfo.processInfo.environment["FKP_OPENCL_BENCH"] == "1" else { throw XCTSkip("set FKP_OPENCL_BENCH=1") }
        let batch = 128
        var rng = Xoshiro(seed: 3)
        let x = (0..<batch * 9216).map { _ in rng.nextFloat() }
        let y = (0..<batch * 30).map { _ in rng.nextFloat() * 2 - 1 }
        for backend in [try CL.backend() as Backend, CPUBackend()] {
            let net = Net(.net2(), backend: backend, maxBatch: batch)
            net.initialise(seed: 1)
            x.withUnsafeBufferPointer { backend.write($0, to: net.input, offset: 0) }
            y.withUnsafeBufferPointer { backend.write($0, to: net.target, offset: 0) }
            net.trainStep(batch: batch, learningRate: 0.01, momentum: 0.9)  // warm-up (PoCL compiles per local size)
            backend.synchronize()
            let steps = 4
            let t = seconds {
                for _ in 0..<steps { net.trainStep(batch: batch, learningRate: 0.01, momentum: 0.9) }
                backend.synchronize()
            } / Double(steps)
            print(String(format: "net2 train step, batch %d, %@: %.3f s (%.2f s per 1712-image epoch)",
                         batch, backend.name, t, t * 1712 / Double(batch)))
            net.profile = [:]
            net.trainStep(batch: batch, learningRate: 0.01, momentum: 0.9)
            for (k, v) in net.profile!.sorted(by: { $0.value > $1.value }) {
                print(String(format: "    %-18@ %7.2f ms", k, v * 1e3))
            }
        }
    }
}
