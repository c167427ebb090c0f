import FKPEngine
import FKPTensor
import FKPTestSupport
import Foundation
import XCTest

/// The OpenCL backend's speed paths against its plain paths and the CPU engine: implicit convolution vs
/// im2col + GEMM, the pool backward joined with the following ReLU mask, every GEMM and implicit
/// convolution tiling giving the same bits, and the per-shape tiling choice cached beside the programs.
final class OpenCLFusionTests: XCTestCase {
    let cpu = CPUBackend(threads: 2)

    func run(_ be: Backend, _ s: ConvShape, x: [Float], w: [Float], b: [Float], dy: [Float], relu: Bool) -> [[Float]] {
        let y = be.unwritten(s.outputCount), dw = be.unwritten(s.weightCount)
        let db = be.unwritten(s.outChannels), dx = be.unwritten(s.inputCount)
        let xb = be.upload(x), wb = be.upload(w)
        be.convForward(x: xb, w: wb, b: be.upload(b), y: y, shape: s, relu: relu)
        be.convBackward(x: xb, w: wb, dy: be.upload(dy), dx: dx, dw: dw, db: db, shape: s)
        return [be.values(y), be.values(dx), be.values(dw), be.values(db)]
    }

    /// Runs `body` once with each in-place tiling forced and asserts that all give the same bits; returns
    /// the first tiling's result.
    @discardableResult
    func assertSameBits(_ cl: OpenCLBackend, _ tilings: [GemmTiling], _ label: String,
                        _ body: () -> [[Float]]) -> [[Float]] {
        defer { cl.inPlaceTilingOverride = nil }
        var results: [[[Float]]] = []
        for t in tilings {
            cl.inPlaceTilingOverride = t
            results.append(body())
        }
        for (t, r) in zip(tilings, results) { XCTAssertEqual(r, results[0], "\(label) tiling \(t)") }
        return results[0]
    }

    static let convShapes = [
        ConvShape(batch: 3, height: 96, width: 96, inChannels: 1, outChannels: 32, kernel: 3),
        ConvShape(batch: 2, height: 9, width: 7, inChannels: 3, outChannels: 5, kernel: 3),
        ConvShape(batch: 1, height: 5, width: 6, inChannels: 1, outChannels: 17, kernel: 2),
        ConvShape(batch: 2, height: 4, width: 4, inChannels: 2, outChannels: 256, kernel: 2),
        ConvShape(batch: 3, height: 6, width: 5, inChannels: 20, outChannels: 48, kernel: 3),
        ConvShape(batch: 2, height: 47, width: 47, inChannels: 32, outChannels: 64, kernel: 2),
        ConvShape(batch: 1, height: 23, width: 23, inChannels: 64, outChannels: 128, kernel: 2),
    ]

    /// The implicit convolutions (gemm_inplace.cl: patches read in place, on CPU devices) against the
    /// packed im2col + GEMM path and the CPU engine: forward, input, weight and bias gradients. Cout not
    /// a multiple of 16 takes the packed weight gradient; rows not a multiple of 6 and partial column
    /// panels are in the shapes.
    func testImplicitConvolutionMatchesPackedPathAndCPU() throws {
        let implicit = try OpenCLBackend(options: OpenCLBackendOptions(gemm: .registerBlocked))
        let packed = try OpenCLBackend(options: OpenCLBackendOptions(gemm: .registerBlocked, readInPlace: false))
        XCTAssertTrue(implicit.readsInPlace)
        XCTAssertFalse(packed.readsInPlace)
        var rng = Xoshiro(seed: 31)
        for s in Self.convShapes {
            let x = CL.random(s.inputCount, &rng), w = CL.random(s.weightCount, &rng, scale: 0.3)
            let b = CL.random(s.outChannels, &rng), dy = CL.random(s.outputCount, &rng)
            for relu in [false, true] {
                let i = run(implicit, s, x: x, w: w, b: b, dy: dy, relu: relu)
                let p = run(packed, s, x: x, w: w, b: b, dy: dy, relu: relu)
                let c = run(cpu, s, x: x, w: w, b: b, dy: dy, relu: relu)
                for (k, name) in ["y", "dx", "dw", "db"].enumerated() {
                    XCTAssertLessThanOrEqual(CL.error(i[k], p[k]), 1e-5, "\(s) relu=\(relu) \(name) implicit vs packed")
                    XCTAssertLessThanOrEqual(CL.error(i[k], c[k]), 1e-5, "\(s) relu=\(relu) \(name) implicit vs CPU")
                }
            }
        }
        XCTAssertNil(implicit.failure)
        XCTAssertNil(packed.failure)
    }

    /// Every tiling of the implicit convolutions computes each element by the same fma chain over k:
    /// the forward pass and the input gradient give identical bits whichever the tuner picks.
    func testEveryImplicitTilingGivesTheSameBits() throws {
        let cl = try OpenCLBackend(options: OpenCLBackendOptions(gemm: .registerBlocked, useCache: false))
        var rng = Xoshiro(seed: 37)
        for s in [Self.convShapes[1], Self.convShapes[4], Self.convShapes[5],
                  ConvShape(batch: 2, height: 11, width: 9, inChannels: 16, outChannels: 40, kernel: 2)] {
            let x = CL.random(s.inputCount, &rng), w = CL.random(s.weightCount, &rng, scale: 0.3)
            let b = CL.random(s.outChannels, &rng), dy = CL.random(s.outputCount, &rng)
            // The tuner's candidates for both kernels, and runs and panel groups of every kind besides.
            let candidates = cl.inPlaceCandidates(m: s.batch * s.outHeight * s.outWidth, n: s.outChannels)
                + cl.inPlaceCandidates(m: s.batch * s.height * s.width, n: s.inChannels)
            XCTAssertFalse(candidates.isEmpty)
            var tilings: [GemmTiling] = []
            for t in candidates + [1, 2, 3].flatMap({ p in [1, 3, 7, 100_000].map { GemmTiling(rows: 6, perItem: $0, panels: p) } })
            where !tilings.contains(t) { tilings.append(t) }
            assertSameBits(cl, tilings, "\(s)") { Array(run(cl, s, x: x, w: w, b: b, dy: dy, relu: true)[0...1]) }
        }
        XCTAssertNil(cl.failure)
    }

    /// The dense kernels of gemm_inplace.cl likewise: y (with a k split for long inputs), dx and dw give the
    /// same bits with every tiling, and match the CPU engine.
    func testEveryDenseTilingGivesTheSameBits() throws {
        let cl = try OpenCLBackend(options: OpenCLBackendOptions(gemm: .registerBlocked, useCache: false))
        XCTAssertTrue(cl.readsInPlace)
        var rng = Xoshiro(seed: 43)
        for (batch, inputs, outputs) in [(7, 33, 50), (13, 3000, 30), (1, 500, 17)] {
            let x = CL.random(batch * inputs, &rng), w = CL.random(inputs * outputs, &rng, scale: 0.1)
            let b = CL.random(outputs, &rng), dy = CL.random(batch * outputs, &rng)
            func run(_ be: Backend) -> [[Float]] {
                let y = be.unwritten(batch * outputs), dx = be.unwritten(batch * inputs)
                let dw = be.unwritten(inputs * outputs), db = be.unwritten(outputs)
                let xb = be.upload(x), wb = be.upload(w)
                be.denseForward(x: xb, w: wb, b: be.upload(b), y: y, batch: batch, inputs: inputs, outputs: outputs, relu: true)
                be.denseBackward(x: xb, w: wb, dy: be.upload(dy), dx: dx, dw: dw, db: db, batch: batch, inputs: inputs,
                                 outputs: outputs)
                return [be.values(y), be.values(dx), be.values(dw), be.values(db)]
            }
            let want = run(cpu), label = "\(batch)x\(inputs)->\(outputs)"
            let tilings = [1, 2, 3].flatMap { p in [1, 2, 100_000].map { GemmTiling(rows: 6, perItem: $0, panels: p) } }
            let got = assertSameBits(cl, tilings, label) { run(cl) }
            for (k, name) in ["y", "dx", "dw", "db"].enumerated() {
                XCTAssertLessThanOrEqual(CL.error(got[k], want[k]), 1e-5, "\(label) \(name)")
            }
        }
        XCTAssertNil(cl.failure)
    }

    /// maxPoolBackward followed by reluBackward over the pool's input and gradient runs as one pass on
    /// OpenCL; the result must equal the CPU engine's two ops exactly, including when the two calls are
    /// separated (a read in between, a ReLU over another buffer) and the pass is not joined.
    func testPoolBackwardJoinedWithReluIsExact() throws {
        let cl = try CL.backend()
        var rng = Xoshiro(seed: 41)
        for s in [PoolShape(batch: 4, height: 94, width: 94, channels: 32), PoolShape(batch: 3, height: 5, width: 7, channels: 3),
                  PoolShape(batch: 2, height: 9, width: 4, channels: 5)] {
            // ReLU outputs: many exact zeros, so whole windows are <= 0 and the mask matters.
            let x = CL.random(s.inputCount, &rng).map { max($0, 0) }, dy = CL.random(s.outputCount, &rng)
            for mode in ["joined", "read between", "other buffer"] {
                let joinedBefore = cl.joinedPoolRelu
                var out: [[Float]] = []
                for be in [cpu as Backend, cl] {
                    let xb = be.upload(x), dx = be.upload([Float](repeating: 7, count: s.inputCount))
                    let other = be.upload(x)
                    be.maxPoolBackward(x: xb, dy: be.upload(dy), dx: dx, shape: s)
                    if mode == "read between" { out.append(be.values(dx)) }
                    be.reluBackward(y: mode == "other buffer" ? other : xb, dy: dx, count: s.inputCount)
                    out.append(be.values(dx))
                }
                XCTAssertEqual(Array(out[(out.count / 2)...]), Array(out[..<(out.count / 2)]), "\(s) \(mode)")
                XCTAssertEqual(cl.joinedPoolRelu - joinedBefore, mode == "joined" ? 1 : 0, "\(s) \(mode)")
            }
        }
        XCTAssertNil(cl.failure)
    }

    /// Every tiling the tuner may pick computes each element of C by the same fma chain: identical bits,
    /// so the measured choice cannot change results (determinism across runs and machines of a device).
    func testEveryGemmTilingGivesTheSameBits() throws {
        let cl = try OpenCLBackend(options: OpenCLBackendOptions(gemm: .registerBlocked, useCache: false))
        defer { cl.gemmTilingOverride = nil }
        var rng = Xoshiro(seed: 51)
        for (m, n, k) in [(1, 1, 1), (37, 30, 19), (128, 64, 3000), (300, 50, 129), (9, 500, 70)] {
            let a = CL.random(m * k, &rng), b = CL.random(k * n, &rng)
            let ab = cl.upload(a), bb = cl.upload(b)
            let candidates = cl.gemmCandidates(m: m, n: n, k: k)
            XCTAssertTrue(candidates.contains { $0.rows == 4 } && candidates.contains { $0.rows == 8 }, "\(candidates)")
            var results: [[Float]] = []
            for t in candidates {
                cl.gemmTilingOverride = t
                let c = cl.upload([Float](repeating: .nan, count: m * n))
                cl.matmul(a: ab, b: bb, c: c, m: m, n: n, k: k)
                results.append(cl.values(c))
            }
            for (t, r) in zip(candidates, results) { XCTAssertEqual(r, results[0], "\(m)x\(n)x\(k) tiling \(t)") }
            XCTAssertLessThan(CL.error(results[0], Reference.gemm(m, n, k, a, ta: false, b, tb: false)), 1e-5)
        }
        XCTAssertNil(cl.failure)
    }

    /// A shape's first GEMM measures the tilings and stores the choice beside the programs; a second
    /// backend on the same cache reads it; an unreadable tuning file is measured again, never fatal.
    func testGemmChoiceMeasuredOnceThenCached() throws {
        try CL.requirePlatform()
        let dir = NSTemporaryDirectory() + "/fkp-opencl-tuning-test-\(getpid())"
        try? FileManager.default.removeItem(atPath: dir)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let options = OpenCLBackendOptions(gemm: .registerBlocked, cacheDirectory: dir)
        var rng = Xoshiro(seed: 61)
        let (m, n, k) = (200, 48, 64)
        let a = CL.random(m * k, &rng), b = CL.random(k * n, &rng)
        func multiply(_ cl: OpenCLBackend) -> [Float] {
            let c = cl.makeBuffer(count: m * n)
            cl.matmul(a: cl.upload(a), b: cl.upload(b), c: c, m: m, n: n, k: k)
            cl.matmul(a: cl.upload(a), b: cl.upload(b), c: c, m: m, n: n, k: k)  // the same shape: no new choice
            return cl.values(c)
        }
        let first = try OpenCLBackend(options: options)
        let want = multiply(first)
        XCTAssertEqual(first.gemmChoices.count, 1)
        let measured = try XCTUnwrap(first.gemmChoices.first)
        XCTAssertEqual(measured.origin, .measured)
        XCTAssertEqual(measured.seconds.count, first.gemmCandidates(m: m, n: n, k: k).count)
        let files = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasPrefix("gemm-tuning-") }
        XCTAssertEqual(files.count, 1, "\(files)")

        let second = try OpenCLBackend(options: options)
        XCTAssertEqual(multiply(second), want)
        XCTAssertEqual(second.gemmChoices.map(\.origin), [.cache])
        XCTAssertEqual(second.gemmChoices.first?.tiling, measured.tiling)

        try Data("garbage\n1 2\n\(m) \(n) \(k) 0 -3\n".utf8).write(to: URL(fileURLWithPath: dir + "/" + files[0]))
        let third = try OpenCLBackend(options: options)
        XCTAssertEqual(multiply(third), want)
        XCTAssertEqual(third.gemmChoices.map(\.origin), [.measured])
        XCTAssertNil(third.failure)
    }
}
