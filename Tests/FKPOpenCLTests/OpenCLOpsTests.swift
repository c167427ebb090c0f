import FKPEngine
import FKPTensor
import FKPTestSupport
import XCTest

/// What the OpenCL backend promises beyond matching the reference (BackendOpsTests checks every op of
/// every backend against it): the raw matmul of both GEMM variants, and exact equality with the CPU
/// engine where both do the same float operations (pooling, ReLU, dropout, MSE gradient, Nesterov).
final class OpenCLOpsTests: XCTestCase {
    let cpu = CPUBackend(threads: 2)
    let bound: Float = 1e-4

    // MARK: GEMM

    func testMatmulBothVariantsOddShapesAndTransposes() throws {
        for variant in OpenCLGemmVariant.allCases {
            let cl = try CL.backend(variant)
            var rng = Xoshiro(seed: 11)
            for (m, n, k) in [(1, 1, 1), (7, 13, 5), (8, 16, 256), (9, 17, 257), (65, 70, 300), (130, 5, 3), (3, 600, 4000)] {
                for ta in [false, true] { for tb in [false, true] {
                    let a = CL.random(m * k, &rng), b = CL.random(k * n, &rng)
                    let want = Reference.gemm(m, n, k, a, ta: ta, b, tb: tb)
                    let c = cl.makeBuffer(count: m * n)
                    cl.matmul(a: cl.upload(a), transposeA: ta, b: cl.upload(b), transposeB: tb, c: c, m: m, n: n, k: k)
                    let err = CL.error(cl.values(c), want)
                    XCTAssertLessThan(err, 1e-5, "\(variant) \(m)x\(n)x\(k) ta=\(ta) tb=\(tb)")
                } }
            }
            XCTAssertNil(cl.failure)
        }
    }

    // MARK: pooling, activation, dropout, loss, update

    func testMaxPoolForwardBackwardExact() throws {
        let cl = try CL.backend()
        let shapes = [PoolShape(batch: 8, height: 94, width: 94, channels: 32),
                      PoolShape(batch: 8, height: 46, width: 46, channels: 64),
                      PoolShape(batch: 8, height: 22, width: 22, channels: 128),
                      PoolShape(batch: 3, height: 5, width: 7, channels: 3),
                      PoolShape(batch: 1, height: 2, width: 2, channels: 1),
                      PoolShape(batch: 2, height: 9, width: 4, channels: 5)]
        var rng = Xoshiro(seed: 600)
        for s in shapes {
            for ties in [false, true] {
                // With ties, values come from {-1, 0, 1}, so windows often hold several maxima.
                let x = ties ? (0..<s.inputCount).map { _ in Float(Int(rng.next() % 3) - 1) } : CL.random(s.inputCount, &rng)
                let dy = CL.random(s.outputCount, &rng)
                var out: [[Float]] = []
                for be in [cpu as Backend, cl] {
                    let y = be.makeBuffer(count: s.outputCount), dx = be.upload([Float](repeating: 7, count: s.inputCount))
                    let xb = be.upload(x)
                    be.maxPoolForward(x: xb, y: y, shape: s)
                    be.maxPoolBackward(x: xb, dy: be.upload(dy), dx: dx, shape: s)
                    out.append(be.values(y)); out.append(be.values(dx))
                }
                XCTAssertEqual(out[2], out[0], "pool forward \(s) ties=\(ties)")
                XCTAssertEqual(out[3], out[1], "pool backward \(s) ties=\(ties)")
            }
        }
    }

    func testReluBackwardExact() throws {
        let cl = try CL.backend()
        var rng = Xoshiro(seed: 700)
        for n in [1, 63, 64, 65, 1000, 8 * 94 * 94 * 32] {
            let y = CL.random(n, &rng).map { $0 < -0.5 ? 0 : $0 }, dy = CL.random(n, &rng)
            var out: [[Float]] = []
            for be in [cpu as Backend, cl] {
                let d = be.upload(dy)
                be.reluBackward(y: be.upload(y), dy: d, count: n)
                out.append(be.values(d))
            }
            XCTAssertEqual(out[1], out[0], "relu backward n=\(n)")
        }
    }

    func testDropoutMatchesCounterRNGBitExactly() throws {
        let cl = try CL.backend()
        var rng = Xoshiro(seed: 800)
        for (n, rate, seed) in [(1, Float(0.5), UInt64(0)), (1000, 0.1, 42), (8 * 47 * 47 * 32, 0.1, 0xDEAD_BEEF_CAFE_F00D),
                                (8 * 500, 0.5, UInt64.max), (77, 0.3, 1 << 63)] {
            let x = CL.random(n, &rng)
            var out: [[Float]] = []
            for be in [cpu as Backend, cl] {
                let y = be.makeBuffer(count: n), dx = be.makeBuffer(count: n)
                let xb = be.upload(x)
                be.dropoutForward(x: xb, y: y, count: n, rate: rate, seed: seed)
                be.dropoutBackward(dy: xb, dx: dx, count: n, rate: rate, seed: seed)
                out.append(be.values(y)); out.append(be.values(dx))
            }
            XCTAssertEqual(out[2], out[0], "dropout forward n=\(n) rate=\(rate) seed=\(seed)")
            XCTAssertEqual(out[3], out[1], "dropout backward n=\(n) rate=\(rate) seed=\(seed)")
            let kept = out[0].filter { $0 != 0 }.count
            if n >= 1000 { XCTAssertEqual(Double(kept) / Double(n), 1 - Double(rate), accuracy: 0.03) }
        }
    }

    func testMSELossAndGradient() throws {
        let cl = try CL.backend()
        var rng = Xoshiro(seed: 900)
        for (batch, outputs) in [(1, 1), (3, 7), (16, 30), (128, 30), (100, 4)] {
            let p = CL.random(batch * outputs, &rng), t = CL.random(batch * outputs, &rng)
            var losses: [Float] = [], grads: [[Float]] = []
            for be in [cpu as Backend, cl] {
                let g = be.makeBuffer(count: batch * outputs)
                losses.append(be.mseLoss(prediction: be.upload(p), target: be.upload(t), grad: g, batch: batch, outputs: outputs))
                grads.append(be.values(g))
            }
            XCTAssertEqual(losses[1], losses[0], accuracy: 1e-6 * max(1, abs(losses[0])), "mse loss \(batch)x\(outputs)")
            XCTAssertEqual(grads[1], grads[0], "mse gradient \(batch)x\(outputs)")
        }
    }

    func testNesterovUpdate() throws {
        let cl = try CL.backend()
        var rng = Xoshiro(seed: 1000)
        for n in [1, 30, 65, 15488 * 500] {
            let p = CL.random(n, &rng), g = CL.random(n, &rng), v = CL.random(n, &rng, scale: 0.01)
            var out: [[Float]] = []
            for be in [cpu as Backend, cl] {
                let pb = be.upload(p), vb = be.upload(v)
                be.nesterovUpdate(parameter: pb, gradient: be.upload(g), velocity: vb, count: n, learningRate: 0.01, momentum: 0.9)
                out.append(be.values(pb)); out.append(be.values(vb))
            }
            XCTAssertLessThanOrEqual(CL.error(out[2], out[0]), 1e-7, "nesterov parameter n=\(n)")
            XCTAssertLessThanOrEqual(CL.error(out[3], out[1]), 1e-7, "nesterov velocity n=\(n)")
        }
    }

    func testPartialWritesAndReadsAtOffsets() throws {
        let cl = try CL.backend()
        let b = cl.makeBuffer(count: 10)
        XCTAssertEqual(cl.values(b), [Float](repeating: 0, count: 10), "new buffers are zeroed")
        [Float](arrayLiteral: 1, 2, 3).withUnsafeBufferPointer { cl.write($0, to: b, offset: 4) }
        var part = [Float](repeating: -1, count: 4)
        part.withUnsafeMutableBufferPointer { cl.read(b, offset: 3, into: $0) }
        XCTAssertEqual(part, [0, 1, 2, 3])
    }
}
