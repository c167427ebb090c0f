import FKPEngine
import FKPTensor
import FKPTestSupport
import XCTest

/// Every op of every backend (the CPU engine, OpenCL with each GEMM variant) against the naive
/// ReferenceBackend, table-driven over op x shape x backend (ggml's test-backend-ops). Outputs start
/// as NaN, so an op that leaves values unwritten fails (the metric sees NaN), and each output buffer
/// carries guard values after its end that must come back untouched (an overrun fails).
final class BackendOpsTests: XCTestCase {
    static let guardCount = 17
    static let guardValue: Float = -7.25e30

    /// Uploads inputs, makes NaN-filled outputs with guards, and reads outputs back checking the guards.
    final class Harness {
        let backend: Backend
        var overruns: [String] = []
        init(_ backend: Backend) { self.backend = backend }

        func input(_ values: [Float]) -> DeviceBuffer {
            let b = backend.makeBuffer(count: values.count)
            values.withUnsafeBufferPointer { backend.write($0, to: b, offset: 0) }
            return b
        }

        /// `count` values (NaN, or `initial`) followed by the guard values.
        func output(_ count: Int, initial: [Float]? = nil) -> DeviceBuffer {
            input((initial ?? [Float](repeating: .nan, count: count)) + [Float](repeating: guardValue, count: guardCount))
        }

        func result(_ buffer: DeviceBuffer, _ name: String) -> [Float] {
            backend.synchronize()
            var all = [Float](repeating: 0, count: buffer.count)
            all.withUnsafeMutableBufferPointer { backend.read(buffer, offset: 0, into: $0) }
            let count = buffer.count - guardCount
            if all[count...].contains(where: { $0 != guardValue }) { overruns.append(name) }
            return Array(all[..<count])
        }
    }

    struct Case {
        var label: String
        /// GEMM-based ops sum in another order than the reference: a relative bound; elementwise ops: tighter.
        var bound: Float
        var run: (Harness) -> [String: [Float]]
    }

    static func cases() -> [Case] {
        var cases: [Case] = []
        var rng = Xoshiro(seed: 21)
        for (batch, inputs, outputs) in [(1, 1, 1), (3, 7, 5), (13, 33, 19), (130, 3, 2), (2, 9216, 100), (2, 15488, 500), (4, 500, 30)] {
            let x = Seeded.values(batch * inputs, &rng), w = Seeded.values(inputs * outputs, &rng, scale: 0.1)
            let b = Seeded.values(outputs, &rng), dy = Seeded.values(batch * outputs, &rng)
            for relu in [false, true] {
                cases.append(Case(label: "dense \(batch)x\(inputs)->\(outputs) relu=\(relu)", bound: 1e-4) { h in
                    let y = h.output(batch * outputs), dx = h.output(batch * inputs)
                    let dw = h.output(inputs * outputs), db = h.output(outputs)
                    let xb = h.input(x), wb = h.input(w)
                    h.backend.denseForward(x: xb, w: wb, b: h.input(b), y: y, batch: batch, inputs: inputs, outputs: outputs, relu: relu)
                    h.backend.denseBackward(x: xb, w: wb, dy: h.input(dy), dx: dx, dw: dw, db: db, batch: batch, inputs: inputs, outputs: outputs)
                    return ["y": h.result(y, "y"), "dx": h.result(dx, "dx"), "dw": h.result(dw, "dw"), "db": h.result(db, "db")]
                })
            }
        }
        for s in [ConvShape(batch: 3, height: 7, width: 5, inChannels: 3, outChannels: 5, kernel: 3),
                  ConvShape(batch: 2, height: 5, width: 6, inChannels: 1, outChannels: 17, kernel: 2),
                  ConvShape(batch: 1, height: 3, width: 3, inChannels: 9, outChannels: 1, kernel: 3),
                  ConvShape(batch: 5, height: 4, width: 9, inChannels: 20, outChannels: 33, kernel: 2),
                  ConvShape(batch: 2, height: 96, width: 96, inChannels: 1, outChannels: 32, kernel: 3),
                  ConvShape(batch: 2, height: 47, width: 47, inChannels: 32, outChannels: 64, kernel: 2),
                  ConvShape(batch: 2, height: 23, width: 23, inChannels: 64, outChannels: 128, kernel: 2),
                  // one image: the CPU engine splits its rows across the workers
                  ConvShape(batch: 1, height: 96, width: 96, inChannels: 1, outChannels: 32, kernel: 3),
                  ConvShape(batch: 1, height: 47, width: 47, inChannels: 32, outChannels: 64, kernel: 2)] {
            let x = Seeded.values(s.inputCount, &rng), w = Seeded.values(s.weightCount, &rng, scale: 0.2)
            let b = Seeded.values(s.outChannels, &rng), dy = Seeded.values(s.outputCount, &rng)
            for relu in [false, true] {
                cases.append(Case(label: "\(s) relu=\(relu)", bound: 1e-4) { h in
                    let y = h.output(s.outputCount), dx = h.output(s.inputCount), dw = h.output(s.weightCount), db = h.output(s.outChannels)
                    let xb = h.input(x), wb = h.input(w)
                    h.backend.convForward(x: xb, w: wb, b: h.input(b), y: y, shape: s, relu: relu)
                    h.backend.convBackward(x: xb, w: wb, dy: h.input(dy), dx: dx, dw: dw, db: db, shape: s)
                    return ["y": h.result(y, "y"), "dx": h.result(dx, "dx"), "dw": h.result(dw, "dw"), "db": h.result(db, "db")]
                })
            }
        }
        for s in [PoolShape(batch: 2, height: 5, width: 7, channels: 3), PoolShape(batch: 3, height: 94, width: 94, channels: 32),
                  PoolShape(batch: 1, height: 2, width: 2, channels: 1)] {
            let x = Seeded.values(s.inputCount, &rng), dy = Seeded.values(s.outputCount, &rng)
            cases.append(Case(label: "maxpool \(s.batch)x\(s.height)x\(s.width)x\(s.channels)", bound: 0) { h in
                let y = h.output(s.outputCount), dx = h.output(s.inputCount), xb = h.input(x)
                h.backend.maxPoolForward(x: xb, y: y, shape: s)
                h.backend.maxPoolBackward(x: xb, dy: h.input(dy), dx: dx, shape: s)
                return ["y": h.result(y, "y"), "dx": h.result(dx, "dx")]
            })
        }
        // Training order (forward, backward, ReLU mask of the gradient, twice: the CPU engine finds the arg-max
        // positions in the first backward and records them in later forward passes), then the records made
        // stale: the pool's input rewritten between forward and backward, its output rewritten before the mask.
        for s in [PoolShape(batch: 2, height: 5, width: 7, channels: 3), PoolShape(batch: 3, height: 94, width: 94, channels: 32),
                  PoolShape(batch: 2, height: 22, width: 22, channels: 128), PoolShape(batch: 1, height: 47, width: 46, channels: 64)] {
            // ReLU outputs, quantised so that zeros and ties are common
            let x1 = Seeded.values(s.inputCount, &rng).map { max(0, ($0 * 4).rounded() / 4) }
            let x2 = Seeded.values(s.inputCount, &rng).map { max(0, ($0 * 4).rounded() / 4) }
            let dy = Seeded.values(s.outputCount, &rng), junk = [Float](repeating: -1, count: s.outputCount)
            cases.append(Case(label: "maxpool training \(s.batch)x\(s.height)x\(s.width)x\(s.channels)", bound: 0) { h in
                let xb = h.input(x1), dyb = h.input(dy), y = h.output(s.outputCount), dx = h.output(s.inputCount)
                var out: [String: [Float]] = [:]
                for step in 0..<2 {
                    h.backend.maxPoolForward(x: xb, y: y, shape: s)
                    h.backend.maxPoolBackward(x: xb, dy: dyb, dx: dx, shape: s)
                    out["dx \(step)"] = h.result(dx, "dx")
                    h.backend.reluBackward(y: xb, dy: dx, count: s.inputCount)
                    out["masked dx \(step)"] = h.result(dx, "dx")
                }
                h.backend.maxPoolForward(x: xb, y: y, shape: s)
                x2.withUnsafeBufferPointer { h.backend.write($0, to: xb, offset: 0) }
                h.backend.maxPoolBackward(x: xb, dy: dyb, dx: dx, shape: s)
                out["dx after x rewritten"] = h.result(dx, "dx")
                h.backend.maxPoolForward(x: xb, y: y, shape: s)
                h.backend.maxPoolBackward(x: xb, dy: dyb, dx: dx, shape: s)
                junk.withUnsafeBufferPointer { h.backend.write($0, to: y, offset: 0) }
                h.backend.reluBackward(y: xb, dy: dx, count: s.inputCount)
                out["masked dx after y rewritten"] = h.result(dx, "dx")
                return out
            })
        }
        // A grey 3x3 convolution feeding a pool, backward in training order (the CPU engine sums conv1's weight
        // gradient from the pool's arrays here), then with the pool's dy rewritten after the routing (the
        // gradient in dx is what counts, so the sums must come from dx again).
        for s in [ConvShape(batch: 2, height: 12, width: 13, inChannels: 1, outChannels: 32, kernel: 3),
                  ConvShape(batch: 2, height: 96, width: 96, inChannels: 1, outChannels: 32, kernel: 3)] {
            let p = PoolShape(batch: s.batch, height: s.outHeight, width: s.outWidth, channels: s.outChannels)
            let x = Seeded.values(s.inputCount, &rng), w = Seeded.values(s.weightCount, &rng, scale: 0.5)
            let b = Seeded.values(s.outChannels, &rng), pdy = Seeded.values(p.outputCount, &rng)
            let pdy2 = Seeded.values(p.outputCount, &rng)
            cases.append(Case(label: "\(s) + pool, training", bound: 1e-4) { h in
                let xb = h.input(x), wb = h.input(w), y = h.output(s.outputCount), py = h.output(p.outputCount)
                let dyb = h.input(pdy), dx = h.output(s.outputCount)
                var out: [String: [Float]] = [:]
                for step in 0..<3 {
                    let dw = h.output(s.weightCount), db = h.output(s.outChannels)
                    h.backend.convForward(x: xb, w: wb, b: h.input(b), y: y, shape: s, relu: true)
                    h.backend.maxPoolForward(x: y, y: py, shape: p)
                    h.backend.maxPoolBackward(x: y, dy: dyb, dx: dx, shape: p)
                    h.backend.reluBackward(y: y, dy: dx, count: s.outputCount)
                    if step == 2 { pdy2.withUnsafeBufferPointer { h.backend.write($0, to: dyb, offset: 0) } }
                    h.backend.convBackward(x: xb, w: wb, dy: dx, dx: nil, dw: dw, db: db, shape: s)
                    out["dw \(step)"] = h.result(dw, "dw")
                    out["db \(step)"] = h.result(db, "db")
                }
                out["dx"] = h.result(dx, "dx")
                return out
            })
        }
        for n in [1, 31, 100_000] {
            let y = Seeded.values(n, &rng), g = Seeded.values(n, &rng), t = Seeded.values(n, &rng)
            let v = Seeded.values(n, &rng, scale: 0.1)
            cases.append(Case(label: "relu backward \(n)", bound: 0) { h in
                let dy = h.output(n, initial: g)
                h.backend.reluBackward(y: h.input(y), dy: dy, count: n)
                return ["dy": h.result(dy, "dy")]
            })
            cases.append(Case(label: "mse \(n)", bound: 1e-6) { h in
                let grad = h.output(n)
                let loss = h.backend.mseLoss(prediction: h.input(y), target: h.input(t), grad: grad, batch: 1, outputs: n)
                return ["loss": [loss], "grad": h.result(grad, "grad")]
            })
            cases.append(Case(label: "nesterov \(n)", bound: 1e-6) { h in
                let p = h.output(n, initial: y), vel = h.output(n, initial: v)
                h.backend.nesterovUpdate(parameter: p, gradient: h.input(g), velocity: vel, count: n, learningRate: 0.03, momentum: 0.9)
                return ["p": h.result(p, "p"), "v": h.result(vel, "v")]
            })
            for rate: Float in [0.1, 0.5] {
                cases.append(Case(label: "dropout \(n) rate \(rate)", bound: 1e-6) { h in
                    let out = h.output(n), back = h.output(n)
                    h.backend.dropoutForward(x: h.input(y), y: out, count: n, rate: rate, seed: 99)
                    h.backend.dropoutBackward(dy: h.input(g), dx: back, count: n, rate: rate, seed: 99)
                    return ["y": h.result(out, "y"), "dx": h.result(back, "dx")]
                })
            }
        }
        return cases
    }

    /// The backends under test: the CPU engine with each kernel set this CPU supports, and each OpenCL GEMM
    /// variant where a platform exists; the register variant also with its operands packed instead of
    /// read in place (gemm_inplace.cl).
    func backends() throws -> [Backend] {
        var list: [Backend] = CPUKernels.supported.map { CPUBackend(threads: 2, kernels: $0) }
        if CL.hasPlatform {
            list += try OpenCLGemmVariant.allCases.map { try CL.backend($0) }
            list.append(try OpenCLBackend(options: OpenCLBackendOptions(gemm: .registerBlocked, readInPlace: false)))
        }
        return list
    }

    func testEveryOpOfEveryBackendMatchesTheReference() throws {
        let backends = try backends()
        for c in Self.cases() {
            let reference = Harness(ReferenceBackend())
            let want = c.run(reference)
            XCTAssertEqual(reference.overruns, [], "reference \(c.label)")
            for backend in backends {
                let h = Harness(backend)
                let got = c.run(h)
                let label = (backend as? OpenCLBackend).map { "opencl \($0.gemmVariant)\($0.readsInPlace ? " in place" : "")" }
                    ?? "\(backend.name) \((backend as! CPUBackend).kernels.name)"
                XCTAssertEqual(h.overruns, [], "\(label) \(c.label): wrote past the end of its output")
                for (name, values) in want.sorted(by: { $0.key < $1.key }) {
                    let e = Metric.normalisedError(got[name]!, values)
                    XCTAssertLessThanOrEqual(e, c.bound, "\(label) \(c.label) \(name): error \(e)")
                }
            }
        }
        for case let cl as OpenCLBackend in backends { XCTAssertNil(cl.failure) }
    }

    /// The metric must not let NaN through: Swift's max(0, .nan) is 0, which passed all-NaN outputs before.
    func testAllNaNOutputFailsTheCheck() {
        let want: [Float] = [1, 2, 3]
        XCTAssertEqual(Metric.normalisedError([.nan, .nan, .nan], want), .infinity)
        XCTAssertEqual(Metric.normalisedError([1, .nan, 3], want), .infinity)
        XCTAssertEqual(Metric.normalisedError([1, 2, .infinity], want), .infinity)
        XCTAssertEqual(Metric.normalisedError(want, want), 0)
        XCTAssertFalse(Metric.normalisedError([.nan, .nan, .nan], want) < 1e-4)
    }

    /// The guard catches an overrun: an op told to write 5 values into a buffer of 4 trips it.
    func testGuardCatchesAnOverrun() {
        let h = Harness(CPUBackend(threads: 1))
        let out = h.output(4)
        h.backend.dropoutForward(x: h.input([1, 2, 3, 4, 5]), y: out, count: 5, rate: 0, seed: 1)
        _ = h.result(out, "y")
        XCTAssertEqual(h.overruns, ["y"])
    }
}
