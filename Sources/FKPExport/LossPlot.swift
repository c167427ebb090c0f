import FKPImage
import FKPTensor
import Foundation

/// One training run's losses, as read from a history CSV (epoch,train_loss,valid_loss,...).
public struct LossHistory: Sendable {
    public var name: String
    public var epochs: [Int]
    public var train: [Double]
    public var valid: [Double]

    public init(name: String, epochs: [Int], train: [Double], valid: [Double]) {
        self.name = name; self.epochs = epochs; self.train = train; self.valid = valid
    }

    public static func read(path: String) throws -> LossHistory {
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw ExportError(message: "\(path): cannot read: \(ioErrorText(error))")
        }
        return try parse(text, path: path)
    }

    /// A history from its text; `path` names it in errors and gives the run its name.
    public static func parse(_ text: String, path: String) throws -> LossHistory {
        let lines = text.split(whereSeparator: \.isNewline)
        guard let header = lines.first?.split(separator: ",").map(String.init),
              let e = header.firstIndex(of: "epoch"), let t = header.firstIndex(of: "train_loss"),
              let v = header.firstIndex(of: "valid_loss") else {
            throw ExportError(message: "\(path): line 1: expected a history with epoch, train_loss and valid_loss columns")
        }
        var h = LossHistory(name: URL(fileURLWithPath: path).deletingPathExtension().deletingPathExtension().lastPathComponent,
                            epochs: [], train: [], valid: [])
        for (i, line) in lines.dropFirst().enumerated() {
            let f = line.split(separator: ",", omittingEmptySubsequences: false)
            guard f.count > max(e, t, v), let ep = Int(f[e]), let tr = Double(f[t]), let va = Double(f[v]) else {
                throw ExportError(message: "\(path): line \(i + 2): not a history row: '\(line.prefix(60))'")
            }
            h.epochs.append(ep); h.train.append(tr); h.valid.append(va)
        }
        guard !h.epochs.isEmpty else { throw ExportError(message: "\(path): no epochs in the history") }
        return h
    }
}

/// The tutorial's picture: train (dashed) and valid (solid) loss per epoch on a log scale, one colour per run.
public enum LossPlot {
    static let palette: [Canvas.Color] = [
        .init(31, 119, 180), .init(214, 39, 40), .init(44, 160, 44), .init(255, 127, 14),
        .init(148, 103, 189), .init(140, 86, 75), .init(227, 119, 194), .init(23, 190, 207),
    ]

    /// What a plot of `runs` leaves out: losses that are NaN, infinite, zero or negative (a log scale
    /// has no place for them), one line per run that has any; empty when everything is drawn.
    public static func skipped(_ runs: [LossHistory]) -> [String] {
        runs.compactMap { run in
            let n = min(run.epochs.count, run.train.count, run.valid.count)
            let bad = (0..<n).reduce(0) { $0 + (drawable(run.train[$1]) ? 0 : 1) + (drawable(run.valid[$1]) ? 0 : 1) }
            let ragged = max(run.epochs.count, run.train.count, run.valid.count) - n
            guard bad + ragged > 0 else { return nil }
            return "\(run.name): \(bad) loss value\(bad == 1 ? "" : "s") not drawn (NaN, infinite, zero or negative)"
                + (ragged > 0 ? ", \(ragged) rows without all of epoch, train and valid" : "")
        }
    }

    static func drawable(_ v: Double) -> Bool { v.isFinite && v > 0 }

    /// Any finite history draws: the epoch axis spans the epochs present (negative or huge ones too),
    /// the loss axis the finite positive losses; what cannot be drawn is listed under the plot.
    public static func render(_ runs: [LossHistory], width: Int = 960, height: Int = 640, title: String = "loss per epoch") -> Canvas {
        var c = Canvas(width: width, height: height)
        let left = 110, right = 30, top = 50, bottom = 80
        let pw = max(width - left - right, 1), ph = max(height - top - bottom, 1)
        let rows = runs.map { min($0.epochs.count, $0.train.count, $0.valid.count) }
        let values = zip(runs, rows).flatMap { run, n in run.train.prefix(n) + run.valid.prefix(n) }.filter(drawable)
        let epochs = zip(runs, rows).flatMap { run, n in run.epochs.prefix(n) }.map(Double.init)
        let minEpoch = epochs.min() ?? 1
        let maxEpoch = max(epochs.max() ?? 1, minEpoch + 1)
        var lo = log10(values.min() ?? 1e-3), hi = log10(values.max() ?? 1)
        if hi - lo < 0.5 { let mid = (hi + lo) / 2; lo = mid - 0.25; hi = mid + 0.25 }
        lo = (lo * 10).rounded(.down) / 10; hi = (hi * 10).rounded(.up) / 10
        func px(_ epoch: Double) -> Double { Double(left) + Double(pw) * (epoch - minEpoch) / (maxEpoch - minEpoch) }
        func py(_ v: Double) -> Double { Double(top) + Double(ph) * (hi - log10(v)) / (hi - lo) }

        // y ticks: 1, 2, 5 x 10^k inside the range, labelled; grid lines in light grey
        let axis = Canvas.Color.black
        for k in Int(lo.rounded(.down))...Int(hi.rounded(.up)) {
            for m in [1.0, 2.0, 5.0] {
                let v = m * pow(10, Double(k))
                let l = log10(v)
                guard l >= lo - 1e-9, l <= hi + 1e-9 else { continue }
                let y = Int(py(v).rounded())
                c.fill(x: left, y: y, width: pw, height: 1, .init(225, 225, 225))
                c.fill(x: left - 8, y: y, width: 8, height: 1, axis)
                let label = formatTick(v)
                c.text(label, x: left - 12 - Canvas.textWidth(label), y: y - 7, axis)
            }
        }
        // x ticks: a round step giving 5-10 ticks (counted, so huge or tiny ranges cannot loop long)
        let step = niceStep((maxEpoch - minEpoch) / 6)
        let first = (minEpoch / step).rounded(.up) * step
        for k in 0..<12 {
            let e = first + Double(k) * step
            guard e <= maxEpoch * (1 + 1e-12) + 1e-9, e + step != e else { break }
            let x = Int(px(e).rounded())
            c.fill(x: x, y: top, width: 1, height: ph, .init(235, 235, 235))
            c.fill(x: x, y: top + ph, width: 1, height: 8, axis)
            let label = String(format: "%.0f", e)
            c.text(label, x: x - Canvas.textWidth(label) / 2, y: top + ph + 14, axis)
        }
        c.rectangle(x: left, y: top, width: pw + 1, height: ph + 1, axis, thickness: 2)
        c.text("EPOCH", x: left + pw / 2 - Canvas.textWidth("EPOCH") / 2, y: height - 34, axis)
        c.text("LOSS (LOG)", x: 8, y: top - 34, axis)
        c.text(title, x: left + pw / 2 - Canvas.textWidth(title) / 2, y: 12, axis)

        for (i, run) in runs.enumerated() {
            let colour = palette[i % palette.count]
            let n = rows[i]
            for (series, dashed) in [(run.train, true), (run.valid, false)] {
                var phase = 0.0
                for j in 1..<max(n, 1) where drawable(series[j - 1]) && drawable(series[j]) {
                    c.line(px(Double(run.epochs[j - 1])), py(series[j - 1]), px(Double(run.epochs[j])), py(series[j]), colour,
                           thickness: 2, dash: dashed ? (8, 6) : nil, dashPhase: &phase)
                }
                // A value whose neighbours are not drawable would vanish: mark it with a dot.
                for j in 0..<n where drawable(series[j]) && (j == 0 || !drawable(series[j - 1])) && (j == n - 1 || !drawable(series[j + 1])) {
                    c.disc(cx: px(Double(run.epochs[j])), cy: py(series[j]), radius: 3, colour)
                }
            }
        }
        for (k, note) in skipped(runs).enumerated() {
            c.text(note, x: 8, y: height - 18 - 10 * k, .init(200, 0, 0), scale: 1)
        }
        // legend: one entry per run, plus what dashed and solid mean
        let entries = runs.map(\.name) + ["TRAIN (DASHED)", "VALID (SOLID)"]
        let lw = (entries.map { Canvas.textWidth($0) }.max() ?? 0) + 60
        let lx = left + pw - lw - 10, ly = top + 10
        c.fill(x: lx, y: ly, width: lw, height: entries.count * 24 + 10, .white)
        c.rectangle(x: lx, y: ly, width: lw, height: entries.count * 24 + 10, axis)
        for (i, name) in entries.enumerated() {
            let y = ly + 10 + i * 24
            var phase = 0.0
            let colour = i < runs.count ? palette[i % palette.count] : .init(90, 90, 90)
            c.line(Double(lx + 8), Double(y + 7), Double(lx + 40), Double(y + 7), colour, thickness: 2,
                   dash: i == runs.count ? (8, 6) : nil, dashPhase: &phase)
            c.text(name, x: lx + 48, y: y, axis)
        }
        return c
    }

    static func formatTick(_ v: Double) -> String {
        if v >= 1 { return String(format: "%g", v) }
        if v < 1e-4 { return String(format: "%.0e", v) }  // 0.00001 and beyond: exponent form stays short
        let digits = max(0, Int((-log10(v)).rounded(.up)))
        return String(format: "%.\(digits)f", v)
    }

    static func niceStep(_ raw: Double) -> Double {
        guard raw > 0, raw.isFinite else { return 1 }
        let p = pow(10, (log10(raw)).rounded(.down))
        for m in [1.0, 2.0, 5.0, 10.0] where m * p >= raw { return max(1, m * p) }
        return max(1, 10 * p)
    }
}
