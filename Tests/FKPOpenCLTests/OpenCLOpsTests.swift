import FKPEngine
import FKPTensor
import XCTest

/// Every op of the OpenCL backend against the CPU engine on random inputs: net2's real layer shapes (at a
/// small batch) and odd small shapes; the GEMM-based ops (dense, convolution) with both GEMM variants.
/// Bound: max|a-b| / max|b| < 1e-4 for computed values; exact equality where both sides do the same
/// float operations (pooling, ReLU, dropout, MSE gradient, Nesterov).
final class OpenCLOpsTests: XCTestCase {
    let cpu = CPUBackend(threads: 2)
    let bound: Float = 1e-4

    static let net2Convs = [
        ConvShape(batch: 8, height: 96, width: 96, inChannels: 1, outChannels: 32, kernel: 3),
        ConvShape(batch: 8, height: 47, width: 47, inChannels: 32, outChannels: 64, kernel: 2),
        ConvShape(batch: 8, height: 23, width: 23, inChannels: 64, outChannels: 128, kernel: 2),
    ]
    static let oddConvs = [
        ConvShape(batch: 3, height: 7, width: 5, inChannels: 3, outChannels: 5, kernel: 3),
        ConvShape(batch: 2, height: 5, width: 6, inChannels: 1, outChannels: 17, kernel: 2),
        ConvShape(batch: 1, height: 3, width: 3, inChannels: 9, outChannels: 1, kernel: 3),
        ConvShape(batch: 5, height: 4, width: 9, inChannels: 20, outChannels: 33, kernel: 2),
    ]
    // (batch, inputs, outputs)
    static let net2Dense = [(8, 15488, 500), (8, 500, 500), (8, 500, 30)]
    static let net1Dense = [(16, 9216, 100), (16, 100, 30)]
    static let oddDense = [(1, 1, 1), (3, 7, 5), (13, 33, 19), (9, 17, 65), (130, 3, 2)]

    // MARK: GEMM

    func testMatmulBothVariantsOddShapesAndTransposes() throws {
        for variant in OpenCLGemmVariant.allCases {
            let cl = try CL.backend(variant)
            var rng = Xoshiro(seed: 11)
            for (m, n, k) in [(1, 1, 1), (7, 13, 5), (8, 16, 256), (9, 17, 257), (65, 70, 300), (130, 5, 3), (3, 600, 4000)] {
                for ta in [false, true] { for tb in [false, true] {
                    let a = CL.random(m * k, &rng), b = CL.random(k * n, &rng)
                    let want = naive(m, n, k, a, ta, b, tb)
                    let c = cl.makeBuffer(count: m * n)
                    cl.matmul(a: cl.upload(a), transposeA: ta, b: cl.upload(b), transposeB: tb, c: c, m: m, n: n, k: k)
                    let err = CL.error(cl.values(c), want)
                    XCTAssertLessThan(err, 1e-5, "\(variant) \(m)x\(n)x\(k) ta=\(ta) tb=\(tb)")
                } }
            }
            XCTAssertNil(cl.failure)
        }
    }

    func naive(_ m: Int, _ n: Int, _ k: Int, _ a: [Float], _ ta: Bool, _ b: [Float], _ tb: Bool) -> [Float] {
        var c = [Float](repeating: 0, count: m * n)
        for i in 0..<m { for j in 0..<n {
            var s: Double = 0
            for p in 0..<k { s += Double(ta ? a[p * m + i] : a[i * k + p]) * Double(tb ? b[j * k + p] : b[p * n + j]) }
            c[i * n + j] = Float(s)
        } }
        return c
    }

    // MARK: dense

    func checkDense(_ cl: OpenCLBackend, batch: Int, inputs: Int, outputs: Int, seed: UInt64, label: String) {
        var rng = Xoshiro(seed: seed)
        let x = CL.random(batch * inputs, &rng), w = CL.random(inputs * outputs, &rng, scale: 0.1)
        let b = CL.random(outputs, &rng), dy = CL.random(batch * outputs, &rng)
        for relu in [false, true] {
            var results: [[[Float]]] = []
            for be in [cpu as Backend, cl] {
                let y = be.makeBuffer(count: batch * outputs)
                let dx = be.makeBuffer(count: batch * inputs), dw = be.makeBuffer(count: inputs * outputs)
                let db = be.makeBuffer(count: outputs)
                let xb = be.upload(x), wb = be.upload(w)
                be.denseForward(x: xb, w: wb, b: be.upload(b), y: y, batch: batch, inputs: inputs, outputs: outputs, relu: relu)
                be.denseBackward(x: xb, w: wb, dy: be.upload(dy), dx: dx, dw: dw, db: db,
                                 batch: batch, inputs: inputs, outputs: outputs)
                results.append([be.values(y), be.values(dx), be.values(dw), be.values(db)])
            }
            for (i, what) in ["y", "dx", "dw", "db"].enumerated() {
                let e = CL.error(results[1][i], results[0][i])
                XCTAssertLessThan(e, bound, "\(label) dense \(batch)x\(inputs)->\(outputs) relu=\(relu) \(what): \(e)")
            }
        }
    }

    func testDenseNetShapesRegisterBlocked() throws {
        let cl = try CL.backend(.registerBlocked)
        for (i, (b, n, m)) in (Self.net2Dense + Self.net1Dense + Self.oddDense).enumerated() {
            checkDense(cl, batch: b, inputs: n, outputs: m, seed: UInt64(100 + i), label: "register")
        }
        XCTAssertNil(cl.failure)
    }

    func testDenseLocalTiled() throws {
        let cl = try CL.backend(.localTiled)
        for (i, (b, n, m)) in ([(8, 15488, 500), (8, 500, 30)] + Self.oddDense).enumerated() {
            checkDense(cl, batch: b, inputs: n, outputs: m, seed: UInt64(200 + i), label: "tiled")
        }
        XCTAssertNil(cl.failure)
    }

    // MARK: convolution

    func checkConv(_ cl: OpenCLBackend, _ s: ConvShape, seed: UInt64, label: String) {
        var rng = Xoshiro(seed: seed)
        let x = CL.random(s.inputCount, &rng), w = CL.random(s.weightCount, &rng, scale: 0.3)
        let b = CL.random(s.outChannels, &rng), dy = CL.random(s.outputCount, &rng)
        var results: [[[Float]]] = []
        for be in [cpu as Backend, cl] {
            let y = be.makeBuffer(count: s.outputCount), dx = be.makeBuffer(count: s.inputCount)
            let dw = be.makeBuffer(count: s.weightCount), db = be.makeBuffer(count: s.outChannels)
            let xb = be.upload(x), wb = be.upload(w)
            be.convForward(x: xb, w: wb, b: be.upload(b), y: y, shape: s, relu: true)
            let yRelu = be.values(y)
            be.convForward(x: xb, w: wb, b: be.upload(b), y: y, shape: s, relu: false)
            be.convBackward(x: xb, w: wb, dy: be.upload(dy), dx: dx, dw: dw, db: db, shape: s)
            results.append([yRelu, be.values(y), be.values(dx), be.values(dw), be.values(db)])
        }
        for (i, what) in ["y relu", "y", "dx", "dw", "db"].enumerated() {
            let e = CL.error(results[1][i], results[0][i])
            XCTAssertLessThan(e, bound, "\(label) \(s) \(what): \(e)")
        }
    }

    func testConvNet2ShapesRegisterBlocked() throws {
        let cl = try CL.backend(.registerBlocked)
        for (i, s) in Self.net2Convs.enumerated() { checkConv(cl, s, seed: UInt64(300 + i), label: "register") }
        XCTAssertNil(cl.failure)
    }

    func testConvOddShapesBothVariants() throws {
        for variant in OpenCLGemmVariant.allCases {
            let cl = try CL.backend(variant)
            for (i, s) in Self.oddConvs.enumerated() { checkConv(cl, s, seed: UInt64(400 + i), label: "\(variant)") }
            XCTAssertNil(cl.failure)
        }
    }

    func testConvNet2ShapesLocalTiled() throws {
        // The tiled kernel is slow on PoCL (it is meant for GPUs): net2's shapes at batch 2.
        let cl = try CL.backend(.localTiled)
        for (i, var s) in Self.net2Convs.enumerated() {
            s.batch = 2
            checkConv(cl, s, seed: UInt64(500 + i), label: "tiled")
        }
        XCTAssertNil(cl.failure)
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
