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
