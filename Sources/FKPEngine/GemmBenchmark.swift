import Dispatch
import FKPTensor

/// GEMM throughput on net2's shapes at batch 128, for `bench --gemm`: the CPU engine's gemmParallel and
/// each OpenCL GEMM variant (packing included). Measurements, not checks: correctness is the tests' job.
public enum GemmBenchmark {
    public struct Shape: Sendable {
        public var label: String
        public var m, n, k: Int
        public var transposeA, transposeB: Bool
    }

    public static let net2Shapes: [Shape] = [
        Shape(label: "conv1 fwd", m: 128 * 94 * 94, n: 32, k: 9, transposeA: false, transposeB: false),
        Shape(label: "conv2 fwd", m: 128 * 46 * 46, n: 64, k: 128, transposeA: false, transposeB: false),
        Shape(label: "conv3 fwd", m: 128 * 22 * 22, n: 128, k: 256, transposeA: false, transposeB: false),
        Shape(label: "dense4 fwd", m: 128, n: 500, k: 15488, transposeA: false, transposeB: false),
        Shape(label: "dense5 fwd", m: 128, n: 500, k: 500, transposeA: false, transposeB: false),
        Shape(label: "dense4 dW", m: 15488, n: 500, k: 128, transposeA: true, transposeB: false),
        Shape(label: "dense4 dX", m: 128, n: 15488, k: 500, transposeA: false, transposeB: true),
        Shape(label: "conv2 dW", m: 128, n: 64, k: 128 * 46 * 46, transposeA: true, transposeB: false),
        Shape(label: "conv3 dX", m: 128 * 23 * 23, n: 64, k: 512, transposeA: false, transposeB: true),
    ]

    /// Seconds per GEMM (median of `repeats` after one warm-up) on the CPU engine.
    public static func cpu(_ s: Shape, threads: Int?, repeats: Int) -> Double {
        var rng = Xoshiro(seed: 1)
        let a = (0..<s.m * s.k).map { _ in rng.nextFloat() }, b = (0..<s.k * s.n).map { _ in rng.nextFloat() }
        var c = [Float](repeating: 0, count: s.m * s.n)
        let pool = WorkerPool(threads: threads)
        return a.withUnsafeBufferPointer { ap in b.withUnsafeBufferPointer { bp in c.withUnsafeMutableBufferPointer { cp in
            time(repeats) {
                gemmParallel(m: s.m, n: s.n, k: s.k, a: MatrixRef(ap.baseAddress!, ld: s.transposeA ? s.m : s.k, transposed: s.transposeA),
                             b: MatrixRef(bp.baseAddress!, ld: s.transposeB ? s.k : s.n, transposed: s.transposeB),
                             c: cp.baseAddress!, ldc: s.n, accumulate: false, pool: pool)
            }
        } } }
    }

    /// Seconds per GEMM on an OpenCL backend (whatever GEMM variant it was built with).
    public static func opencl(_ s: Shape, backend cl: OpenCLBackend, repeats: Int) -> Double {
        var rng = Xoshiro(seed: 1)
        let a = cl.makeBuffer(count: s.m * s.k), b = cl.makeBuffer(count: s.k * s.n), c = cl.makeBuffer(count: s.m * s.n)
        (0..<s.m * s.k).map { _ in rng.nextFloat() }.withUnsafeBufferPointer { cl.write($0, to: a, offset: 0) }
        (0..<s.k * s.n).map { _ in rng.nextFloat() }.withUnsafeBufferPointer { cl.write($0, to: b, offset: 0) }
        return time(repeats) {
            cl.matmul(a: a, transposeA: s.transposeA, b: b, transposeB: s.transposeB, c: c, m: s.m, n: s.n, k: s.k)
            cl.synchronize()
        }
    }

    static func time(_ repeats: Int, _ body: () -> Void) -> Double {
        body()
        var times: [Double] = []
        for _ in 0..<repeats {
            let t0 = DispatchTime.now().uptimeNanoseconds
            body()
            times.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9)
        }
        return times.sorted()[times.count / 2]
    }
}

/// net2's convolution and dense layers at batch 128 as the nets call them, forward (with bias + ReLU) and
/// backward (dw, db and dx; conv1, the first layer, without dx as in training), for `bench --ops`: the
/// same op on each backend, so that e.g. OpenCL with its operands read in place and packed can be set side
/// by side. Measurements, not checks: correctness is the tests' job.
public enum LayerBenchmark {
    public enum Layer: Sendable {
        case conv(ConvShape)
        case dense(batch: Int, inputs: Int, outputs: Int)
    }

    public struct Case: Sendable {
        public var label: String
        public var layer: Layer
        public var inputGradient: Bool
        public init(label: String, layer: Layer, inputGradient: Bool) {
            (self.label, self.layer, self.inputGradient) = (label, layer, inputGradient)
        }
    }

    public static let net2: [Case] = [
        Case(label: "conv1", layer: .conv(ConvShape(batch: 128, height: 96, width: 96, inChannels: 1, outChannels: 32, kernel: 3)),
             inputGradient: false),
        Case(label: "conv2", layer: .conv(ConvShape(batch: 128, height: 47, width: 47, inChannels: 32, outChannels: 64, kernel: 2)),
             inputGradient: true),
        Case(label: "conv3", layer: .conv(ConvShape(batch: 128, height: 23, width: 23, inChannels: 64, outChannels: 128, kernel: 2)),
             inputGradient: true),
        Case(label: "hidden4", layer: .dense(batch: 128, inputs: 15488, outputs: 500), inputGradient: true),
    ]

    /// Multiply-adds x 2 of the forward pass and of the backward pass (dw, and dx when asked).
    public static func flops(_ c: Case) -> (forward: Double, backward: Double) {
        let forward: Double
        switch c.layer {
        case .conv(let s): forward = 2 * Double(s.batch * s.outHeight * s.outWidth * s.outChannels * s.patchSize)
        case .dense(let b, let i, let o): forward = 2 * Double(b * i * o)
        }
        return (forward, forward * (c.inputGradient ? 2 : 1))
    }

    /// Seconds of one forward and one backward pass (medians of `repeats` after a warm-up) on `backend`.
    public static func measure(_ c: Case, backend be: Backend, repeats: Int) -> (forward: Double, backward: Double) {
        var rng = Xoshiro(seed: 1)
        func random(_ count: Int, scale: Float = 1) -> DeviceBuffer {
            let b = be.makeBuffer(count: count)
            (0..<count).map { _ in (rng.nextFloat() - 0.5) * scale }.withUnsafeBufferPointer { be.write($0, to: b, offset: 0) }
            return b
        }
        switch c.layer {
        case .conv(let s):
            let x = random(s.inputCount), w = random(s.weightCount, scale: 0.1), b = random(s.outChannels)
            let y = be.makeBuffer(count: s.outputCount), dy = random(s.outputCount)
            let dw = be.makeBuffer(count: s.weightCount), db = be.makeBuffer(count: s.outChannels)
            let dx = c.inputGradient ? be.makeBuffer(count: s.inputCount) : nil
            return (GemmBenchmark.time(repeats) { be.convForward(x: x, w: w, b: b, y: y, shape: s, relu: true); be.synchronize() },
                    GemmBenchmark.time(repeats) {
                        be.convBackward(x: x, w: w, dy: dy, dx: dx, dw: dw, db: db, shape: s); be.synchronize()
                    })
        case .dense(let batch, let inputs, let outputs):
            let x = random(batch * inputs), w = random(inputs * outputs, scale: 0.01), b = random(outputs)
            let y = be.makeBuffer(count: batch * outputs), dy = random(batch * outputs)
            let dw = be.makeBuffer(count: inputs * outputs), db = be.makeBuffer(count: outputs)
            let dx = c.inputGradient ? be.makeBuffer(count: batch * inputs) : nil
            return (GemmBenchmark.time(repeats) {
                        be.denseForward(x: x, w: w, b: b, y: y, batch: batch, inputs: inputs, outputs: outputs, relu: true)
                        be.synchronize()
                    },
                    GemmBenchmark.time(repeats) {
                        be.denseBackward(x: x, w: w, dy: dy, dx: dx, dw: dw, db: db, batch: batch, inputs: inputs,
                                         outputs: outputs)
                        be.synchronize()
                    })
        }
    }
}
