import Foundation

/// How the register GEMM covers C: blocks of `rows` x 16 (gemm_register: 8, gemm_register_4: 4), and
/// `perItem` such blocks down the rows per work-item.
public struct GemmTiling: Sendable, Hashable, CustomStringConvertible {
    public var rows, perItem: Int
    public init(rows: Int, perItem: Int) { (self.rows, self.perItem) = (rows, perItem) }
    public var description: String { "\(rows)x16 x\(perItem)" }
}

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
    public var tiling: GemmTiling
    public var origin: Origin
    /// Seconds of each candidate, in candidate order (empty unless measured).
    public var seconds: [Double]
}

/// Chooses a GEMM tiling per shape by timing the candidates at the shape's first use, and keeps the
/// choices in a text file next to the compiled programs (`m n k rows perItem` per line), so later runs on the
/// same device, driver and kernel source skip the measurement. Every candidate computes the same bits,
/// so a choice (measured, cached or stale) affects speed only; a malformed line is ignored and measured
/// again.
final class GemmTuner {
    let path: String?
    let measure: Bool
    private var cached: [String: GemmTiling] = [:]
    private(set) var choices: [GemmChoice] = []
    private var chosen: [String: GemmTiling] = [:]

    init(path: String?, measure: Bool) {
        (self.path, self.measure) = (path, measure)
        guard let path, let data = FileManager.default.contents(atPath: path) else { return }
        for line in String(decoding: data, as: UTF8.self).split(separator: "\n") {
            let f = line.split(separator: " ").compactMap { Int($0) }
            if f.count == 5, f.allSatisfy({ $0 >= 1 }) {
                cached["\(f[0]) \(f[1]) \(f[2])"] = GemmTiling(rows: f[3], perItem: f[4])
            }
        }
    }

    /// The candidate for this shape: remembered, cached, or the fastest of `time` over the candidates
    /// (each timed twice after a warm-up run; the smaller time counts).
    func choose(m: Int, n: Int, k: Int, candidates: [GemmTiling], time: (GemmTiling) -> Double) -> GemmTiling {
        let key = "\(m) \(n) \(k)"
        if let c = chosen[key] { return c }
        var choice = GemmChoice(m: m, n: n, k: k, tiling: candidates[0], origin: .fixed, seconds: [])
        if candidates.count > 1 && measure {
            if let c = cached[key], candidates.contains(c) {
                choice.tiling = c
                choice.origin = .cache
            } else {
                choice.seconds = candidates.map { c in _ = time(c); return min(time(c), time(c)) }
                if choice.seconds.allSatisfy(\.isFinite) {
                    choice.tiling = candidates[choice.seconds.indices.min { choice.seconds[$0] < choice.seconds[$1] }!]
                    choice.origin = .measured
                    cached[key] = choice.tiling
                    store()
                }
            }
        }
        chosen[key] = choice.tiling
        choices.append(choice)
        return choice.tiling
    }

    private func store() {
        guard let path else { return }
        let text = cached.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value.rows) \($0.value.perItem)\n" }.joined()
        ProgramCache.writeAtomically(path, Array(text.utf8))
    }
}
