import Foundation

/// The GEMM tiling used for one shape, and where it came from.
public struct GemmChoice: Sendable, Equatable {
    public enum Origin: String, Sendable {
        /// Every candidate was timed on this shape now (first use).
        case measured
        /// Read from the tuning cache beside the compiled programs.
        case cache
        /// Only one candidate, or measuring is off: nothing to measure.
        case fixed
    }
    public var m, n, k: Int
    /// The register kernel's A-panel run per work-item (its block of C is 8*perItem x 16).
    public var perItem: Int
    public var origin: Origin
    /// Seconds of each candidate, in candidate order (empty unless measured).
    public var seconds: [Double]
}

/// Chooses a GEMM tiling per shape by timing the candidates at the shape's first use, and keeps the
/// choices in a text file next to the compiled programs (`m n k perItem` per line), so later runs on the
/// same device, driver and kernel source skip the measurement. Every candidate computes the same bits,
/// so a choice (measured, cached or stale) affects speed only; a malformed line is ignored and measured
/// again.
final class GemmTuner {
    let path: String?
    let measure: Bool
    private var cached: [String: Int] = [:]
    private(set) var choices: [GemmChoice] = []
    private var chosen: [String: Int] = [:]

    init(path: String?, measure: Bool) {
        (self.path, self.measure) = (path, measure)
        guard let path, let data = FileManager.default.contents(atPath: path) else { return }
        for line in String(decoding: data, as: UTF8.self).split(separator: "\n") {
            let f = line.split(separator: " ").compactMap { Int($0) }
            if f.count == 4, f.allSatisfy({ $0 >= 0 }), f[3] >= 1 { cached["\(f[0]) \(f[1]) \(f[2])"] = f[3] }
        }
    }

    /// The candidate for this shape: remembered, cached, or the fastest of `time` over the candidates
    /// (each timed twice after a warm-up run; the smaller time counts).
    func choose(m: Int, n: Int, k: Int, candidates: [Int], time: (Int) -> Double) -> Int {
        let key = "\(m) \(n) \(k)"
        if let c = chosen[key] { return c }
        var choice = GemmChoice(m: m, n: n, k: k, perItem: candidates[0], origin: .fixed, seconds: [])
        if candidates.count > 1 && measure {
            if let c = cached[key], candidates.contains(c) {
                choice.perItem = c
                choice.origin = .cache
            } else {
                choice.seconds = candidates.map { c in _ = time(c); return min(time(c), time(c)) }
                if choice.seconds.allSatisfy(\.isFinite) {
                    choice.perItem = candidates[choice.seconds.indices.min { choice.seconds[$0] < choice.seconds[$1] }!]
                    choice.origin = .measured
                    cached[key] = choice.perItem
                    store()
                }
            }
        }
        chosen[key] = choice.perItem
        choices.append(choice)
        return choice.perItem
    }

    private func store() {
        guard let path else { return }
        let text = cached.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)\n" }.joined()
        ProgramCache.writeAtomically(path, Array(text.utf8))
    }
}
