import Foundation

/// How a register kernel covers C: blocks of `rows` x 16 (gemm_register: 8, gemm_register_4: 4, the
/// in-place kernels of gemm_inplace.cl: 6), `perItem` such blocks down the rows and `panels`
/// 16-column panels across per work-item.
public struct GemmTiling: Sendable, Hashable, CustomStringConvertible {
    public var rows, perItem, panels: Int
    public init(rows: Int, perItem: Int, panels: Int = 1) { (self.rows, self.perItem, self.panels) = (rows, perItem, panels) }
    public var description: String { "\(rows)x16 x\(perItem)" + (panels > 1 ? " x\(panels) panels" : "") }
}

/// The GEMM tiling used for one shape, and where it came from.
public struct GemmChoice: Sendable, Equatable {
    /// The kernel family: "gemm", "conv_forward" or "conv_backward_input".
    public var op: String
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

/// Chooses a GEMM tiling per op and shape by timing the candidates at the shape's first use, and keeps the
/// choices in a text file next to the compiled programs (`op m n k rows perItem panels` per line), so later runs on the
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
            let words = line.split(separator: " ")
            let f = words.dropFirst().compactMap { Int($0) }
            if words.count == 7, Int(words[0]) == nil, f.count == 6, f.allSatisfy({ $0 >= 1 }) {
                cached["\(words[0]) \(f[0]) \(f[1]) \(f[2])"] = GemmTiling(rows: f[3], perItem: f[4], panels: f[5])
            }
        }
    }

    /// The candidate for this shape: remembered, cached, or the fastest of `time` over the candidates
    /// (each timed twice after a warm-up run; the smaller time counts).
    func choose(op: String = "gemm", m: Int, n: Int, k: Int, candidates: [GemmTiling],
                time: (GemmTiling) -> Double) -> GemmTiling {
        let key = "\(op) \(m) \(n) \(k)"
        if let c = chosen[key] { return c }
        var choice = GemmChoice(op: op, m: m, n: n, k: k, tiling: candidates[0], origin: .fixed, seconds: [])
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
        let text = cached.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value.rows) \($0.value.perItem) \($0.value.panels)\n" }.joined()
        ProgramCache.writeAtomically(path, Array(text.utf8))
    }
}
