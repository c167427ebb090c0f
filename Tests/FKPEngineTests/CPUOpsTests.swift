import FKPEngine
import FKPTensor
import FKPTestSupport
import XCTest

/// Each CPU op against finite differences, and the kernels below the Backend interface (gemmParallel,
/// the direct convolution) against the naive reference of FKPTestSupport.
final class CPUOpsTests: XCTestCase {
    let cpu = CPUBackend(threads: 2)

    func testGemmMatchesNaiveOnOddShapesAndTransposes() {
        XCTAssertTrue(CPUKernels.supported.contains { $0.name == CPUKernels.best.name })
        for kernels in CPUKernels.supported {
            var rng = Xoshiro(seed: 1)
            let pool = WorkerPool(threads: 2, kernels: kernels)
            for (m, n, k) in [(1, 1, 1), (7, 13, 5), (8, 16, 256), (9, 17, 257), (33, 70, 300), (130, 5, 3), (3, 600, 40), (200, 40, 600),
                              (2, 37, 300), (5, 500, 1000)] {  // few rows: B read in place
                for ta in [false, true] { for tb in [false, true] {
                    let a = Check.random(m * k, &rng), b = Check.random(k * n, &rng)
                    let want = Reference.gemm(m, n, k, a, ta: ta, b, tb: tb)
                    var got = [Float](repeating: 0, count: m * n)
                    a.withUnsafeBufferPointer { ap in b.withUnsafeBufferPointer { bp in got.withUnsafeMutableBufferPointer { cp in
                        gemmParallel(m: m, n: n, k: k, a: MatrixRef(ap.baseAddress!, ld: ta ? m : k, transposed: ta),
                                     b: MatrixRef(bp.baseAddress!, ld: tb ? k : n, transposed: tb),
                                     c: cp.baseAddress!, ldc: n, accumulate: false, pool: pool)
                    } } }
                    let err = Check.normalisedError(got, want)
                    XCTAssertLessThan(err, 1e-5, "\(kernels.name) gemm \(m)x\(n)x\(k) ta=\(ta) tb=\(tb)")
                } }
            }
        }
    }

    /// Bias and ReLU in the epilogue are applied once, after the whole sum (k spans several K blocks here).
    func testGemmEpilogueAddsBiasAndReluOnce() {
        for kernels in CPUKernels.supported {
            var rng = Xoshiro(seed: 12)
            let pool = WorkerPool(threads: 2, kernels: kernels)
            for (m, n, k) in [(13, 37, 600), (130, 64, 9), (5, 16, 0)] {
                let a = Check.random(m * k, &rng), b = Check.random(k * n, &rng), bias = Check.random(n, &rng)
                let sum = Reference.gemm(m, n, k, a, ta: false, b, tb: false)
                for relu in [false, true] {
                    let want = sum.indices.map { i in relu ? max(0, sum[i] + bias[i % n]) : sum[i] + bias[i % n] }
                    var got = [Float](repeating: .nan, count: m * n)
                    a.withUnsafeBufferPointer { ap in b.withUnsafeBufferPointer { bp in got.withUnsafeMutableBufferPointer { cp in
                        bias.withUnsafeBufferPointer { biasp in
                            gemmParallel(m: m, n: n, k: k, a: MatrixRef(ap.baseAddress!, ld: k), b: MatrixRef(bp.baseAddress!, ld: n),
                                         c: cp.baseAddress!, ldc: n, accumulate: false, pool: pool, bias: biasp.baseAddress!, relu: relu)
                        }
                    } } }
                    XCTAssertLessThan(Check.normalisedError(got, want), 1e-5, "\(kernels.name) \(m)x\(n)x\(k) relu=\(relu)")
                }
            }
        }
    }

    /// A row-major A is read in place by the micro-kernel and a transposed one is packed first; B may be
    /// packed per call or once (PackedB). All four sum in the same order: the same bits.
    func testGemmInPlaceAndPackedOperandsGiveTheSameBits() {
        for kernels in CPUKernels.supported {
            var rng = Xoshiro(seed: 21)
            let scratch = GemmScratch(kernels: kernels)
            for (m, n, k) in [(1, 3, 2), (7, 16, 9), (13, 37, 600), (25, 70, 256), (130, 5, 300)] {
                let a = Check.random(m * k, &rng), b = Check.random(k * n, &rng), bias = Check.random(n, &rng)
                let at = (0..<k * m).map { a[($0 % m) * k + $0 / m] }  // at[p*m + i] = a[i*k + p]
                var results: [[UInt32]] = []
                var storage = [Float](repeating: 0, count: packedBCount(k: k, n: n))
                for (transposeA, prepack) in [(false, false), (true, false), (false, true), (true, true)] {
                    var c = [Float](repeating: .nan, count: m * n)
                    (transposeA ? at : a).withUnsafeBufferPointer { ap in b.withUnsafeBufferPointer { bp in
                        bias.withUnsafeBufferPointer { biasp in storage.withUnsafeMutableBufferPointer { sp in
                            c.withUnsafeMutableBufferPointer { cp in
                                let bRef = MatrixRef(bp.baseAddress!, ld: n)
                                let packed = prepack ? packB(bRef, k: k, n: n, into: sp.baseAddress!) : nil
                                gemm(m: m, n: n, k: k, a: MatrixRef(ap.baseAddress!, ld: transposeA ? m : k, transposed: transposeA),
                                     b: bRef, c: cp.baseAddress!, ldc: n, accumulate: false, scratch: scratch,
                                     bias: biasp.baseAddress!, relu: true, packed: packed)
                            }
                        } }
                    } }
                    let want = Reference.gemm(m, n, k, a, ta: false, b, tb: false).enumerated().map { max(0, $1 + bias[$0 % n]) }
                    XCTAssertLessThan(Check.normalisedError(c, want), 1e-5, "\(kernels.name) \(m)x\(n)x\(k)")
                    results.append(c.map(\.bitPattern))
                }
                for r in results.dropFirst() { XCTAssertEqual(r, results[0], "\(kernels.name) \(m)x\(n)x\(k)") }
            }
        }
    }

    /// The convolution reads its patches in place (no im2col): against the reference with every kernel set,
    /// one image split by rows across the workers, Cout not a multiple of 16 and K past one GEMM K block; and
    /// against an explicit im2col + gemm, bit for bit.
    func testConvForwardReadsPatchesInPlaceWithEveryKernelSet() {
        for kernels in CPUKernels.supported {
            var rng = Xoshiro(seed: 22)
            let backend = CPUBackend(threads: 2, kernels: kernels)
            for s in [ConvShape(batch: 1, height: 9, width: 13, inChannels: 3, outChannels: 17, kernel: 2),
                      ConvShape(batch: 3, height: 7, width: 6, inChannels: 80, outChannels: 40, kernel: 2),
                      ConvShape(batch: 4, height: 8, width: 8, inChannels: 5, outChannels: 64, kernel: 3)] {
                let x = Check.random(s.inputCount, &rng), w = Check.random(s.weightCount, &rng)
                let b = Check.random(s.outChannels, &rng)
                let y = backend.makeBuffer(count: s.outputCount)
                backend.convForward(x: backend.buffer(x), w: backend.buffer(w), b: backend.buffer(b), y: y, shape: s, relu: true)
                let got = backend.download(y)
                XCTAssertLessThan(Check.normalisedError(got, Reference.conv(x, w, b, s, relu: true)), 1e-5, "\(kernels.name) \(s)")
                let (oh, ow) = (s.outHeight, s.outWidth)
                let cols = (0..<s.batch).flatMap { im2col(x, s, image: $0) }
                var explicit = [Float](repeating: 0, count: s.outputCount)
                cols.withUnsafeBufferPointer { ap in w.withUnsafeBufferPointer { wp in b.withUnsafeBufferPointer { bp in
                    explicit.withUnsafeMutableBufferPointer { cp in
                        gemm(m: s.batch * oh * ow, n: s.outChannels, k: s.patchSize, a: MatrixRef(ap.baseAddress!, ld: s.patchSize),
                             b: MatrixRef(wp.baseAddress!, ld: s.outChannels), c: cp.baseAddress!, ldc: s.outChannels,
                             accumulate: false, scratch: GemmScratch(kernels: kernels), bias: bp.baseAddress!, relu: true)
                    }
                } } }
                if s.patchSize <= 256 {  // one K block: the same sums in the same order
                    XCTAssertEqual(got.map(\.bitPattern), explicit.map(\.bitPattern), "\(kernels.name) \(s)")
                }
            }
        }
    }

    /// Prediction runs a convolution and the max-pool after it as one op: the same bits as the two ops,
    /// for the direct kernel (grey 3x3) and the GEMM path, one image split across workers or several,
    /// and a convolution output with an odd row and column (dropped by the pool).
    func testConvPoolForwardHasTheBitsOfTheTwoOps() {
        for kernels in CPUKernels.supported {
            var rng = Xoshiro(seed: 23)
            let backend = CPUBackend(threads: 2, kernels: kernels)
            for s in [ConvShape(batch: 1, height: 12, width: 10, inChannels: 1, outChannels: 32, kernel: 3),
                      ConvShape(batch: 3, height: 11, width: 13, inChannels: 1, outChannels: 16, kernel: 3),
                      ConvShape(batch: 1, height: 10, width: 12, inChannels: 6, outChannels: 20, kernel: 2),
                      ConvShape(batch: 3, height: 8, width: 9, inChannels: 32, outChannels: 64, kernel: 2)] {
                let x = backend.buffer(Check.random(s.inputCount, &rng)), w = backend.buffer(Check.random(s.weightCount, &rng))
                let b = backend.buffer(Check.random(s.outChannels, &rng))
                for relu in [false, true] {
                    let conv = backend.makeBuffer(count: s.outputCount), want = backend.makeBuffer(count: s.pooled.outputCount)
                    backend.convForward(x: x, w: w, b: b, y: conv, shape: s, relu: relu)
                    backend.maxPoolForward(x: conv, y: want, shape: s.pooled)
                    let got = backend.makeBuffer(count: s.pooled.outputCount)
                    backend.convPoolForward(x: x, w: w, b: b, convOutput: backend.makeBuffer(count: s.outputCount), y: got,
                                            shape: s, relu: relu)
                    XCTAssertEqual(backend.download(got).map(\.bitPattern), backend.download(want).map(\.bitPattern),
                                   "\(kernels.name) \(s) relu=\(relu)")
                }
            }
        }
    }

    func testGemmAccumulates() {
        var rng = Xoshiro(seed: 2)
        let (m, n, k) = (10, 20, 30)
        let a = Check.random(m * k, &rng), b = Check.random(k * n, &rng)
        let base = Check.random(m * n, &rng)
        var c = base
        let pool = WorkerPool(threads: 1)
        a.withUnsafeBufferPointer { ap in b.withUnsafeBufferPointer { bp in c.withUnsafeMutableBufferPointer { cp in
            gemmParallel(m: m, n: n, k: k, a: MatrixRef(ap.baseAddress!, ld: k), b: MatrixRef(bp.baseAddress!, ld: n),
                         c: cp.baseAddress!, ldc: n, accumulate: true, pool: pool)
        } } }
        let prod = Reference.gemm(m, n, k, a, ta: false, b, tb: false)
        XCTAssertLessThan(Check.normalisedError(c, zip(base, prod).map { $0 + $1 }), 1e-5)
    }

    func testConvForwardMatchesDirectConvolution() {
        var rng = Xoshiro(seed: 3)
        for s in [ConvShape(batch: 3, height: 9, width: 8, inChannels: 1, outChannels: 5, kernel: 3),
                  ConvShape(batch: 2, height: 7, width: 7, inChannels: 4, outChannels: 17, kernel: 2),
                  ConvShape(batch: 5, height: 6, width: 11, inChannels: 3, outChannels: 2, kernel: 3),
                  // grey input, 3x3, Cout multiple of 16: the direct path (net2's conv1)
                  ConvShape(batch: 3, height: 12, width: 9, inChannels: 1, outChannels: 32, kernel: 3)] {
            let x = Check.random(s.inputCount, &rng), w = Check.random(s.weightCount, &rng)
            let b = Check.random(s.outChannels, &rng)
            for relu in [false, true] {
                let y = cpu.makeBuffer(count: s.outputCount)
                cpu.convForward(x: cpu.buffer(x), w: cpu.buffer(w), b: cpu.buffer(b), y: y, shape: s, relu: relu)
                XCTAssertLessThan(Check.normalisedError(cpu.download(y), Reference.conv(x, w, b, s, relu: relu)), 1e-5, "\(s)")
            }
        }
    }

    func testConvBackwardMatchesFiniteDifferences() {
        convBackwardCheck(ConvShape(batch: 3, height: 6, width: 5, inChannels: 2, outChannels: 3, kernel: 2))
    }

    func testDirectConvBackwardMatchesFiniteDifferences() {
        convBackwardCheck(ConvShape(batch: 3, height: 6, width: 5, inChannels: 1, outChannels: 16, kernel: 3))
    }

    func convBackwardCheck(_ s: ConvShape) {
        var rng = Xoshiro(seed: 4)
        var x = Check.random(s.inputCount, &rng), w = Check.random(s.weightCount, &rng)
        var b = Check.random(s.outChannels, &rng)
        let r = Check.random(s.outputCount, &rng)  // L = sum(r * y): dL/dy = r
        func loss(_ x: [Float], _ w: [Float], _ b: [Float]) -> Double {
            zip(Reference.conv(x, w, b, s, relu: false), r).reduce(0) { $0 + Double($1.0) * Double($1.1) }
        }
        let dx = cpu.makeBuffer(count: s.inputCount), dw = cpu.makeBuffer(count: s.weightCount)
        let db = cpu.makeBuffer(count: s.outChannels)
        cpu.convBackward(x: cpu.buffer(x), w: cpu.buffer(w), dy: cpu.buffer(r), dx: dx, dw: dw, db: db, shape: s)
        let (x0, w0, b0) = (x, w, b)
        XCTAssertLessThan(Check.normalisedError(cpu.download(dx), Check.numericGradient(&x) { loss($0, w0, b0) }), 1e-3)
        XCTAssertLessThan(Check.normalisedError(cpu.download(dw), Check.numericGradient(&w) { loss(x0, $0, b0) }), 1e-3)
        XCTAssertLessThan(Check.normalisedError(cpu.download(db), Check.numericGradient(&b) { loss(x0, w0, $0) }), 1e-3)
    }

    func testDenseForwardAndBackwardMatchFiniteDifferences() {
        var rng = Xoshiro(seed: 5)
        let (batch, inputs, outputs) = (5, 19, 7)
        var x = Check.random(batch * inputs, &rng), w = Check.random(inputs * outputs, &rng)
        var b = Check.random(outputs, &rng)
        let r = Check.random(batch * outputs, &rng)
        func forward(_ x: [Float], _ w: [Float], _ b: [Float]) -> [Float] {
            var y = Reference.gemm(batch, outputs, inputs, x, ta: false, w, tb: false)
            for i in 0..<batch { for j in 0..<outputs { y[i * outputs + j] += b[j] } }
            return y
        }
        let y = cpu.makeBuffer(count: batch * outputs)
        cpu.denseForward(x: cpu.buffer(x), w: cpu.buffer(w), b: cpu.buffer(b), y: y, batch: batch, inputs: inputs,
                         outputs: outputs, relu: false)
        XCTAssertLessThan(Check.normalisedError(cpu.download(y), forward(x, w, b)), 1e-5)
        func loss(_ x: [Float], _ w: [Float], _ b: [Float]) -> Double {
            zip(forward(x, w, b), r).reduce(0) { $0 + Double($1.0) * Double($1.1) }
        }
        let dx = cpu.makeBuffer(count: x.count), dw = cpu.makeBuffer(count: w.count), db = cpu.makeBuffer(count: outputs)
        cpu.denseBackward(x: cpu.buffer(x), w: cpu.buffer(w), dy: cpu.buffer(r), dx: dx, dw: dw, db: db,
                          batch: batch, inputs: inputs, outputs: outputs)
        let (x0, w0, b0) = (x, w, b)
        XCTAssertLessThan(Check.normalisedError(cpu.download(dx), Check.numericGradient(&x) { loss($0, w0, b0) }), 1e-3)
        XCTAssertLessThan(Check.normalisedError(cpu.download(dw), Check.numericGradient(&w) { loss(x0, $0, b0) }), 1e-3)
        XCTAssertLessThan(Check.normalisedError(cpu.download(db), Check.numericGradient(&b) { loss(x0, w0, $0) }), 1e-3)
    }

    func testReluForwardAndBackward() {
        var rng = Xoshiro(seed: 6)
        let (batch, inputs, outputs) = (4, 6, 5)
        var x = Check.random(batch * inputs, &rng)
        let w = Check.random(inputs * outputs, &rng), b = Check.random(outputs, &rng)
        let r = Check.random(batch * outputs, &rng)
        func forward(_ x: [Float]) -> [Float] {
            let y = cpu.makeBuffer(count: batch * outputs)
            cpu.denseForward(x: cpu.buffer(x), w: cpu.buffer(w), b: cpu.buffer(b), y: y, batch: batch, inputs: inputs,
                             outputs: outputs, relu: true)
            return cpu.download(y)
        }
        let y = forward(x)
        XCTAssertTrue(y.allSatisfy { $0 >= 0 } && y.contains { $0 == 0 } && y.contains { $0 > 0 })
        let dy = cpu.buffer(r)
        cpu.reluBackward(y: cpu.buffer(y), dy: dy, count: y.count)
        let dx = cpu.makeBuffer(count: x.count), dw = cpu.makeBuffer(count: w.count), db = cpu.makeBuffer(count: outputs)
        cpu.denseBackward(x: cpu.buffer(x), w: cpu.buffer(w), dy: dy, dx: dx, dw: dw, db: db,
                          batch: batch, inputs: inputs, outputs: outputs)
        let numeric = Check.numericGradient(&x, eps: 1e-3) { xs in
            zip(forward(xs), r).reduce(0) { $0 + Double($1.0) * Double($1.1) }
        }
        XCTAssertLessThan(Check.normalisedError(cpu.download(dx), numeric), 1e-2)
    }

    func testMaxPoolForwardBackward() {
        var rng = Xoshiro(seed: 7)
        let s = PoolShape(batch: 2, height: 5, width: 7, channels: 3)  // odd sizes: last row/column dropped
        var x = Check.random(s.inputCount, &rng)
        let r = Check.random(s.outputCount, &rng)
        func forward(_ x: [Float]) -> [Float] {
            let y = cpu.makeBuffer(count: s.outputCount)
            cpu.maxPoolForward(x: cpu.buffer(x), y: y, shape: s)
            return cpu.download(y)
        }
        // reference forward
        var want = [Float](repeating: 0, count: s.outputCount)
        for n in 0..<2 { for oy in 0..<2 { for ox in 0..<3 { for c in 0..<3 {
            var m = -Float.infinity
            for dy in 0..<2 { for dx in 0..<2 { m = max(m, x[((n * 5 + 2 * oy + dy) * 7 + 2 * ox + dx) * 3 + c]) } }
            want[((n * 2 + oy) * 3 + ox) * 3 + c] = m
        } } } }
        XCTAssertEqual(forward(x), want)
        let dx = cpu.makeBuffer(count: s.inputCount)
        cpu.maxPoolBackward(x: cpu.buffer(x), dy: cpu.buffer(r), dx: dx, shape: s)
        let numeric = Check.numericGradient(&x, eps: 1e-3) { xs in
            zip(forward(xs), r).reduce(0) { $0 + Double($1.0) * Double($1.1) }
        }
        XCTAssertLessThan(Check.normalisedError(cpu.download(dx), numeric), 1e-2)
    }

    /// The SIMD path (channels a multiple of 16) against the scalar one, ties included (ReLU zeros).
    func testMaxPoolVectorPathMatchesScalarPath() {
        var rng = Xoshiro(seed: 17)
        for (h, w) in [(6, 8), (7, 5)] {
            let vs = PoolShape(batch: 2, height: h, width: w, channels: 32)
            // quantised values make ties common, as after ReLU
            let x = (0..<vs.inputCount).map { _ in Float(Int(rng.next() % 4)) }
            let dy = Check.random(vs.outputCount, &rng)
            let y = cpu.makeBuffer(count: vs.outputCount), dx = cpu.makeBuffer(count: vs.inputCount)
            cpu.maxPoolForward(x: cpu.buffer(x), y: y, shape: vs)
            cpu.maxPoolBackward(x: cpu.buffer(x), dy: cpu.buffer(dy), dx: dx, shape: vs)
            // the same numbers as 32 separate single-channel images... compared with a direct reference
            var wantY = [Float](repeating: 0, count: vs.outputCount), wantDx = [Float](repeating: 0, count: vs.inputCount)
            for n in 0..<2 { for oy in 0..<h / 2 { for ox in 0..<w / 2 { for c in 0..<32 {
                let idx = [(0, 0), (0, 1), (1, 0), (1, 1)].map { ((n * h + 2 * oy + $0.0) * w + 2 * ox + $0.1) * 32 + c }
                var best = idx[0]
                for i in idx.dropFirst() where x[i] > x[best] { best = i }
                let o = ((n * (h / 2) + oy) * (w / 2) + ox) * 32 + c
                wantY[o] = x[best]
                wantDx[best] = dy[o]
            } } } }
            XCTAssertEqual(cpu.download(y), wantY)
            XCTAssertEqual(cpu.download(dx), wantDx)
        }
    }

    func testMSELossAndGradient() {
        var rng = Xoshiro(seed: 8)
        var p = Check.random(4 * 30, &rng)
        let t = Check.random(4 * 30, &rng)
        let g = cpu.makeBuffer(count: p.count)
        let loss = cpu.mseLoss(prediction: cpu.buffer(p), target: cpu.buffer(t), grad: g, batch: 4, outputs: 30)
        let want = zip(p, t).reduce(0.0) { $0 + Double(($1.0 - $1.1) * ($1.0 - $1.1)) } / Double(p.count)
        XCTAssertEqual(Double(loss), want, accuracy: 1e-6)
        let numeric = Check.numericGradient(&p, eps: 1e-3) { ps in
            zip(ps, t).reduce(0.0) { $0 + Double(($1.0 - $1.1) * ($1.0 - $1.1)) } / Double(ps.count)
        }
        XCTAssertLessThan(Check.normalisedError(cpu.download(g), numeric), 1e-3)
    }

    func testNesterovMatchesLasagne() {
        // Two steps by hand: v = m v - lr g; p += m v - lr g.
        let p = cpu.buffer([1, -2]), g = cpu.buffer([0.5, 0.25]), v = cpu.buffer([0, 0])
        cpu.nesterovUpdate(parameter: p, gradient: g, velocity: v, count: 2, learningRate: 0.1, momentum: 0.9)
        // v = -0.05, -0.025; p = 1 + 0.9*-0.05 - 0.05 = 0.905 ; -2 + 0.9*-0.025 - 0.025 = -2.0475
        XCTAssertEqual(cpu.download(v), [-0.05, -0.025])
        let after1 = cpu.download(p)
        XCTAssertEqual(after1[0], 0.905, accuracy: 1e-6)
        XCTAssertEqual(after1[1], -2.0475, accuracy: 1e-6)
        cpu.nesterovUpdate(parameter: p, gradient: g, velocity: v, count: 2, learningRate: 0.1, momentum: 0.9)
        // v = 0.9*-0.05 - 0.05 = -0.095; p = 0.905 + 0.9*-0.095 - 0.05 = 0.7695
        XCTAssertEqual(cpu.download(p)[0], 0.7695, accuracy: 1e-6)
    }

    /// conv1's weight gradient from a pool's routed gradient (the pooled arrays) has the same bits as the
    /// dense kernel over the same dx, so a run does not depend on which path a step took (a resumed run
    /// starts without records).
    func testPooledConvGradientHasTheDenseBits() {
        var rng = Xoshiro(seed: 13)
        for kernels in CPUKernels.supported {
            let cpu = CPUBackend(threads: 2, kernels: kernels)
            for s in [ConvShape(batch: 3, height: 96, width: 96, inChannels: 1, outChannels: 32, kernel: 3),
                      ConvShape(batch: 2, height: 12, width: 13, inChannels: 1, outChannels: 16, kernel: 3)] {
                let p = PoolShape(batch: s.batch, height: s.outHeight, width: s.outWidth, channels: s.outChannels)
                let x = cpu.buffer(Check.random(s.inputCount, &rng)), w = cpu.buffer(Check.random(s.weightCount, &rng, scale: 0.5))
                let b = cpu.buffer(Check.random(s.outChannels, &rng)), pdy = cpu.buffer(Check.random(p.outputCount, &rng))
                let y = cpu.makeBuffer(count: s.outputCount), py = cpu.makeBuffer(count: p.outputCount)
                let dx = cpu.makeBuffer(count: s.outputCount)
                var grads: [[Float]] = []
                for _ in 0..<2 {  // the second step has records: dw from the pooled arrays
                    cpu.convForward(x: x, w: w, b: b, y: y, shape: s, relu: true)
                    cpu.maxPoolForward(x: y, y: py, shape: p)
                    cpu.maxPoolBackward(x: y, dy: pdy, dx: dx, shape: p)
                    cpu.reluBackward(y: y, dy: dx, count: s.outputCount)
                    let dw = cpu.makeBuffer(count: s.weightCount), db = cpu.makeBuffer(count: s.outChannels)
                    cpu.convBackward(x: x, w: w, dy: dx, dx: nil, dw: dw, db: db, shape: s)
                    grads.append(cpu.download(dw) + cpu.download(db))
                }
                // the same dx values in a plain buffer: the dense kernel
                let plain = cpu.buffer(cpu.download(dx))
                let dw = cpu.makeBuffer(count: s.weightCount), db = cpu.makeBuffer(count: s.outChannels)
                cpu.convBackward(x: x, w: w, dy: plain, dx: nil, dw: dw, db: db, shape: s)
                let dense = cpu.download(dw) + cpu.download(db)
                XCTAssertEqual(grads[0].map(\.bitPattern), dense.map(\.bitPattern), "\(kernels.name) \(s) first step")
                XCTAssertEqual(grads[1].map(\.bitPattern), dense.map(\.bitPattern), "\(kernels.name) \(s) with records")
            }
        }
    }

    /// The weight gradient read in place (Cout a multiple of 16: no im2col, no packing) has the bits of
    /// im2col^T . dy through the packed GEMM, with every kernel set, a patch run that is not a multiple of the
    /// micro-tile's rows, and pixel blocks that start inside an output row.
    func testConvWeightGradientInPlaceHasTheBitsOfIm2colGemm() {
        for kernels in CPUKernels.supported {
            var rng = Xoshiro(seed: 24)
            let backend = CPUBackend(threads: 2, kernels: kernels)
            for s in [ConvShape(batch: 3, height: 20, width: 19, inChannels: 5, outChannels: 32, kernel: 2),
                      ConvShape(batch: 2, height: 9, width: 9, inChannels: 64, outChannels: 16, kernel: 2),
                      ConvShape(batch: 1, height: 23, width: 23, inChannels: 3, outChannels: 48, kernel: 3)] {
                let x = Check.random(s.inputCount, &rng), w = Check.random(s.weightCount, &rng)
                let dy = Check.random(s.outputCount, &rng)
                let dw = backend.makeBuffer(count: s.weightCount), db = backend.makeBuffer(count: s.outChannels)
                backend.convBackward(x: backend.buffer(x), w: backend.buffer(w), dy: backend.buffer(dy), dx: nil, dw: dw, db: db, shape: s)
                // the same per image through im2col and the packed GEMM, images in the workers' order
                let (oh, ow) = (s.outHeight, s.outWidth)
                let perWorker = (0..<2).map { w in (s.batch * w / 2)..<(s.batch * (w + 1) / 2) }
                var sums: [[Float]] = []
                for images in perWorker where !images.isEmpty {
                    var part = [Float](repeating: 0, count: s.weightCount)
                    for n in images {
                        let cols = im2col(x, s, image: n)
                        let dyi = Array(dy[n * oh * ow * s.outChannels..<(n + 1) * oh * ow * s.outChannels])
                        cols.withUnsafeBufferPointer { ap in dyi.withUnsafeBufferPointer { bp in part.withUnsafeMutableBufferPointer { cp in
                            gemm(m: s.patchSize, n: s.outChannels, k: oh * ow, a: MatrixRef(ap.baseAddress!, ld: s.patchSize, transposed: true),
                                 b: MatrixRef(bp.baseAddress!, ld: s.outChannels), c: cp.baseAddress!, ldc: s.outChannels,
                                 accumulate: true, scratch: GemmScratch(kernels: kernels))
                        } } }
                    }
                    sums.append(part)
                }
                let want = sums.dropFirst().reduce(sums[0]) { zip($0, $1).map { $0 + $1 } }
                XCTAssertEqual(backend.download(dw).map(\.bitPattern), want.map(\.bitPattern), "\(kernels.name) \(s)")
            }
        }
    }

    /// Forward weights are packed once and kept while unchanged: writing the weight buffer, or a Nesterov
    /// update of it, must make the next forward pass use the new values (dense and convolution).
    func testPackedWeightsFollowEveryWriteOfTheWeights() {
        var rng = Xoshiro(seed: 25)
        let (batch, inputs, outputs) = (3, 40, 37)
        let x = cpu.buffer(Check.random(batch * inputs, &rng)), b = cpu.buffer(Check.random(outputs, &rng))
        let w = cpu.makeBuffer(count: inputs * outputs), y = cpu.makeBuffer(count: batch * outputs)
        func dense(_ wv: [Float]) -> [Float] {
            Reference.gemm(batch, outputs, inputs, cpu.download(x), ta: false, wv, tb: false).enumerated().map { $1 + cpu.download(b)[$0 % outputs] }
        }
        for _ in 0..<2 {
            let wv = Check.random(inputs * outputs, &rng)
            wv.withUnsafeBufferPointer { cpu.write($0, to: w, offset: 0) }
            cpu.denseForward(x: x, w: w, b: b, y: y, batch: batch, inputs: inputs, outputs: outputs, relu: false)
            XCTAssertLessThan(Check.normalisedError(cpu.download(y), dense(wv)), 1e-5, "after a write")
        }
        let g = Check.random(inputs * outputs, &rng), v = cpu.makeBuffer(count: inputs * outputs)
        let before = cpu.download(w)
        cpu.nesterovUpdate(parameter: w, gradient: cpu.buffer(g), velocity: v, count: inputs * outputs, learningRate: 0.5, momentum: 0.9)
        XCTAssertNotEqual(cpu.download(w), before)
        cpu.denseForward(x: x, w: w, b: b, y: y, batch: batch, inputs: inputs, outputs: outputs, relu: false)
        XCTAssertLessThan(Check.normalisedError(cpu.download(y), dense(cpu.download(w))), 1e-5, "after an update")

        let s = ConvShape(batch: 2, height: 6, width: 7, inChannels: 3, outChannels: 16, kernel: 2)
        let cx = Check.random(s.inputCount, &rng), cb = Check.random(s.outChannels, &rng)
        let cw = cpu.makeBuffer(count: s.weightCount), cy = cpu.makeBuffer(count: s.outputCount)
        for _ in 0..<2 {
            let wv = Check.random(s.weightCount, &rng)
            wv.withUnsafeBufferPointer { cpu.write($0, to: cw, offset: 0) }
            cpu.convForward(x: cpu.buffer(cx), w: cw, b: cpu.buffer(cb), y: cy, shape: s, relu: false)
            XCTAssertLessThan(Check.normalisedError(cpu.download(cy), Reference.conv(cx, wv, cb, s, relu: false)), 1e-5)
        }
    }

    /// The explicit im2col of image n: row (oy, ox) holds the patch [ky][kx][c].
    func im2col(_ x: [Float], _ s: ConvShape, image n: Int) -> [Float] {
        var cols: [Float] = []
        for oy in 0..<s.outHeight { for ox in 0..<s.outWidth { for ky in 0..<s.kernel { for kx in 0..<s.kernel { for ch in 0..<s.inChannels {
            cols.append(x[((n * s.height + oy + ky) * s.width + ox + kx) * s.inChannels + ch])
        } } } } }
        return cols
    }

    func testConvIsDeterministicAcrossRuns() {
        var rng = Xoshiro(seed: 9)
        let s = ConvShape(batch: 16, height: 12, width: 12, inChannels: 4, outChannels: 8, kernel: 2)
        let x = cpu.buffer(Check.random(s.inputCount, &rng)), w = cpu.buffer(Check.random(s.weightCount, &rng))
        let dy = cpu.buffer(Check.random(s.outputCount, &rng))
        var results: [[Float]] = []
        for _ in 0..<2 {
            let dw = cpu.makeBuffer(count: s.weightCount), db = cpu.makeBuffer(count: 8)
            cpu.convBackward(x: x, w: w, dy: dy, dx: nil, dw: dw, db: db, shape: s)
            results.append(cpu.download(dw))
        }
        XCTAssertEqual(results[0], results[1])
    }
}

final class DropoutTests: XCTestCase {
    let cpu = CPUBackend(threads: 2)

    func testDropoutDropsTheRateScalesTheRestAndRepeatsItsMask() {
        let n = 100_000
        let x = cpu.buffer([Float](repeating: 1, count: n)), y = cpu.makeBuffer(count: n)
        cpu.dropoutForward(x: x, y: y, count: n, rate: 0.3, seed: 99)
        let out = cpu.download(y)
        let dropped = out.filter { $0 == 0 }.count
        XCTAssertEqual(Double(dropped) / Double(n), 0.3, accuracy: 0.01)
        XCTAssertTrue(out.allSatisfy { $0 == 0 || abs($0 - 1 / 0.7) < 1e-6 })
        // backward: the same mask and scale (the gradient of y = x * mask / (1 - p))
        let dx = cpu.makeBuffer(count: n)
        cpu.dropoutBackward(dy: x, dx: dx, count: n, rate: 0.3, seed: 99)
        XCTAssertEqual(cpu.download(dx), out)
        // another seed, another mask; rate 0 passes values through
        cpu.dropoutForward(x: x, y: y, count: n, rate: 0.3, seed: 100)
        XCTAssertNotEqual(cpu.download(y), out)
        cpu.dropoutForward(x: x, y: y, count: n, rate: 0, seed: 100)
        XCTAssertEqual(cpu.download(y), [Float](repeating: 1, count: n))
    }

    func testDropoutGradientMatchesFiniteDifferences() {
        var rng = Xoshiro(seed: 3)
        var x = Check.random(50, &rng)
        let r = Check.random(50, &rng)
        func loss(_ xs: [Float]) -> Double {
            let y = cpu.makeBuffer(count: 50)
            cpu.dropoutForward(x: cpu.buffer(xs), y: y, count: 50, rate: 0.5, seed: 7)
            return zip(cpu.download(y), r).reduce(0) { $0 + Double($1.0) * Double($1.1) }
        }
        let dx = cpu.makeBuffer(count: 50)
        cpu.dropoutBackward(dy: cpu.buffer(r), dx: dx, count: 50, rate: 0.5, seed: 7)
        XCTAssertLessThan(Check.normalisedError(cpu.download(dx), Check.numericGradient(&x, eps: 1e-2, loss)), 1e-3)
    }
}

/// `bench --ops`: the FLOP counts it divides by, and a measurement that runs the ops it names.
final class LayerBenchmarkTests: XCTestCase {
    func testFlopsOfNet2Layers() {
        let byLabel = Dictionary(uniqueKeysWithValues: LayerBenchmark.net2.map { ($0.label, $0) })
        XCTAssertEqual(LayerBenchmark.net2.map(\.label), ["conv1", "conv2", "conv3", "hidden4"])
        let conv2 = LayerBenchmark.flops(byLabel["conv2"]!)
        XCTAssertEqual(conv2.forward, 2 * 128 * 46 * 46 * 64 * 128)
        XCTAssertEqual(conv2.backward, 2 * conv2.forward)  // dw and dx
        let conv1 = LayerBenchmark.flops(byLabel["conv1"]!)
        XCTAssertEqual(conv1.forward, 2 * 128 * 94 * 94 * 32 * 9)
        XCTAssertEqual(conv1.backward, conv1.forward)  // the first layer: no dx
        XCTAssertEqual(LayerBenchmark.flops(byLabel["hidden4"]!).forward, 2 * 128 * 15488 * 500)
    }

    func testMeasureRunsForwardAndBackward() {
        let cases = [LayerBenchmark.Case(label: "c", layer: .conv(ConvShape(batch: 2, height: 9, width: 8, inChannels: 3,
                                                                            outChannels: 16, kernel: 2)), inputGradient: true),
                     LayerBenchmark.Case(label: "d", layer: .dense(batch: 3, inputs: 40, outputs: 7), inputGradient: false)]
        for c in cases {
            let t = LayerBenchmark.measure(c, backend: CPUBackend(threads: 2), repeats: 3)
            XCTAssertTrue(t.forward > 0 && t.forward.isFinite && t.backward > 0 && t.backward.isFinite, "\(c.label): \(t)")
        }
    }
}
