/// Summaries of measurements (bench timings, per-face errors).
public enum Statistics {
    /// The median of the values that are not NaN; NaN when there are none (never a made-up 0).
    public static func median(_ xs: [Double]) -> Double {
        let s = xs.filter { !$0.isNaN }.sorted()
        guard !s.isEmpty else { return .nan }
        return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }

    /// The mean; a NaN among the values makes it NaN, so a broken measurement shows; NaN when empty.
    public static func mean(_ xs: [Double]) -> Double { xs.isEmpty ? .nan : xs.reduce(0, +) / Double(xs.count) }
}
