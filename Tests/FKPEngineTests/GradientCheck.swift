import FKPEngine
import FKPTensor
import FKPTestSupport
import XCTest

/// Helpers shared by the engine tests: random tensors, normalised errors, finite differences.
enum Check {
    static func random(_ count: Int, _ rng: inout Xoshiro, scale: Float = 1) -> [Float] {
        Seeded.values(count, &rng, scale: scale)
    }

    /// The NaN-aware metric of FKPTestSupport (an all-NaN result fails it).
    static func normalisedError(_ a: [Float], _ b: [Float]) -> Float { Metric.normalisedError(a, b) }

    /// Central differences of f (a scalar of the inputs) with respect to `values`, in Double.
    static func numericGradient(_ values: inout [Float], eps: Float = 1e-2, _ f: ([Float]) -> Double) -> [Float] {
        var g = [Float](repeating: 0, count: values.count)
        for i in values.indices {
            let old = values[i]
            values[i] = old + eps; let up = f(values)
            values[i] = old - eps; let down = f(values)
            values[i] = old
            g[i] = Float((up - down) / Double(2 * eps))
        }
        return g
    }
}

extension Backend {
    func buffer(_ values: [Float]) -> DeviceBuffer {
        let b = makeBuffer(count: values.count)
        values.withUnsafeBufferPointer { write($0, to: b, offset: 0) }
        return b
    }
}
