import FKPTensor
import Foundation

/// The repository root, found from this file's path (Tests/FKPTestSupport/TestSupport.swift).
public let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// A file of the repository, by its path from the root.
public func repoPath(_ relative: String) -> String { repoRoot.appendingPathComponent(relative).path }

/// Seeded data for tests: the same values on every platform and run.
public enum Seeded {
    /// `count` values uniform in [-scale, scale).
    public static func values(_ count: Int, _ rng: inout Xoshiro, scale: Float = 1) -> [Float] {
        (0..<count).map { _ in (rng.nextFloat() * 2 - 1) * scale }
    }

    public static func values(_ count: Int, seed: UInt64, scale: Float = 1) -> [Float] {
        var rng = Xoshiro(seed: seed)
        return values(count, &rng, scale: scale)
    }
}

/// Errors that see NaN: Swift's `max(0, .nan)` is 0, so a plain running maximum of |a - b| passes an
/// all-NaN result. Here a NaN or infinite difference makes the error infinite.
public enum Metric {
    /// max |a - b| / max(max |b|, tiny): an error relative to the size of the reference values; +inf when
    /// any value of `a` or `b` is NaN or infinite where the other is not the same infinity.
    public static func normalisedError(_ a: [Float], _ b: [Float]) -> Float {
        precondition(a.count == b.count, "sizes \(a.count) and \(b.count)")
        var num: Float = 0, den: Float = 1e-12
        for i in a.indices {
            let d = abs(a[i] - b[i])
            if !d.isFinite { return .infinity }
            num = max(num, d)
            den = max(den, abs(b[i]))
        }
        return num / den
    }
}
