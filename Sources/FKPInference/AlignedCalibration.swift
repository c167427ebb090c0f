import FKPNets
import Foundation

/// A linear map from a photo model's 30 predicted values on faces in Kaggle's 96x96 framing to the 30
/// reference values, fitted by least squares on labelled rows of people the nets were trained on.
///
/// Why: in Kaggle's framing every face already sits within a few pixels and percent of the same place,
/// and the nets see a face's size and position only in part (on the held-out people's rows the
/// predicted size correlates 0.6 with the true one). Least squares over many faces learns how much of
/// each predicted value to trust, how far to draw it back towards where such faces usually are, and
/// what the other points say about it (an eye centre from its corners). Measured on the 638 rows of the
/// held-out people with the bundled model and 3 passes: 2.055 -> 1.911 px RMSE (README, "Photo models").
/// It is fitted for one number of passes and applied only there.
public struct AlignedCalibration: Equatable, Sendable {
    /// Values per face (x, y of the 15 keypoints).
    public static let values = 30
    /// The passes whose predictions it was fitted on.
    public let passes: Int
    /// Labelled rows it was fitted on, and the file they came from (its name), when known.
    public let rows: Int
    public var source: String?
    /// [(1 + 30) x 30], row-major: row 0 the intercept, row 1 + i the weight of predicted value i in
    /// each output value.
    public let weights: [Double]

    public init(passes: Int, rows: Int, weights: [Double]) {
        precondition(weights.count == (Self.values + 1) * Self.values)
        self.passes = passes; self.rows = rows; self.weights = weights
    }

    /// The map with no effect (intercept 0, identity weights).
    public static func identity(passes: Int) -> AlignedCalibration {
        var w = [Double](repeating: 0, count: (values + 1) * values)
        for i in 0..<values { w[(1 + i) * values + i] = 1 }
        return AlignedCalibration(passes: passes, rows: 0, weights: w)
    }

    /// 30 predicted values (pixels of the 96x96 frame) -> 30 calibrated ones. A NaN input makes every
    /// output NaN (it is never hidden).
    public func apply(_ p: [Double]) -> [Double] {
        precondition(p.count == Self.values)
        let n = Self.values
        var out = Array(weights[0..<n])
        for i in 0..<n {
            let v = p[i], row = (1 + i) * n
            for j in 0..<n { out[j] += v * weights[row + j] }
        }
        return out
    }

    public enum FitError: Error, CustomStringConvertible, Equatable {
        case tooFewRows(usable: Int, needed: Int)
        case singular
        public var description: String {
            switch self {
            case let .tooFewRows(usable, needed):
                "only \(usable) rows have all 30 values labelled and predicted; a calibration needs at least \(needed)"
            case .singular: "the predictions do not vary enough to fit a calibration (a singular system)"
            }
        }
    }

    /// Fewest usable rows accepted: twice the unknowns per output value.
    public static let minimumRows = 2 * (values + 1)

    /// Least squares over the rows whose 30 references and 30 predictions are all finite: for each
    /// output value, the intercept and weights that minimise its squared error. Solved on centred
    /// predictions (normal equations, Cholesky) for accuracy; a ridge of 1e-9 of the mean variance keeps
    /// exactly collinear predictions solvable without moving the answer measurably.
    public static func fit(predictions: [[Double]], references: [[Double]], passes: Int) throws -> AlignedCalibration {
        let n = values, m = n + 1
        let usable = zip(predictions, references).filter { p, r in
            p.count == n && r.count == n && p.allSatisfy(\.isFinite) && r.allSatisfy(\.isFinite)
        }
        guard usable.count >= minimumRows else { throw FitError.tooFewRows(usable: usable.count, needed: minimumRows) }
        let count = Double(usable.count)
        var meanP = [Double](repeating: 0, count: n), meanR = [Double](repeating: 0, count: n)
        for (p, r) in usable { for i in 0..<n { meanP[i] += p[i] / count; meanR[i] += r[i] / count } }
        // A = Xc^T Xc (n x n), B = Xc^T Rc (n x n), over centred values.
        var a = [Double](repeating: 0, count: n * n), b = [Double](repeating: 0, count: n * n)
        for (p, r) in usable {
            let x = (0..<n).map { p[$0] - meanP[$0] }, y = (0..<n).map { r[$0] - meanR[$0] }
            for i in 0..<n {
                for j in 0..<n { a[i * n + j] += x[i] * x[j]; b[i * n + j] += x[i] * y[j] }
            }
        }
        // A value that never varies (beyond rounding) cannot be weighed.
        guard (0..<n).allSatisfy({ a[$0 * n + $0] / count > 1e-12 }) else { throw FitError.singular }
        let ridge = 1e-9 * (0..<n).map { a[$0 * n + $0] }.reduce(0, +) / Double(n)
        for i in 0..<n { a[i * n + i] += ridge }
        guard let slopes = choleskySolve(a, b, n: n) else { throw FitError.singular }
        var w = [Double](repeating: 0, count: m * n)
        for j in 0..<n {
            var intercept = meanR[j]
            for i in 0..<n {
                w[(1 + i) * n + j] = slopes[i * n + j]
                intercept -= slopes[i * n + j] * meanP[i]
            }
            w[j] = intercept
        }
        // Stored as JSON, which has no NaN or infinity.
        guard w.allSatisfy(\.isFinite) else { throw FitError.singular }
        return AlignedCalibration(passes: passes, rows: usable.count, weights: w)
    }

    /// Solves A X = B for a symmetric positive definite A (n x n) and B (n x k, here k = n); nil when A
    /// is not positive definite.
    static func choleskySolve(_ a: [Double], _ b: [Double], n: Int) -> [Double]? {
        var l = [Double](repeating: 0, count: n * n)
        for i in 0..<n {
            for j in 0...i {
                var s = a[i * n + j]
                for k in 0..<j { s -= l[i * n + k] * l[j * n + k] }
                if i == j {
                    guard s > 1e-14 * a[i * n + i], s.isFinite else { return nil }
                    l[i * n + i] = s.squareRoot()
                } else {
                    l[i * n + j] = s / l[j * n + j]
                }
            }
        }
        let k = b.count / n
        var x = b
        for c in 0..<k {
            for i in 0..<n {  // L y = b
                var s = x[i * k + c]
                for t in 0..<i { s -= l[i * n + t] * x[t * k + c] }
                x[i * k + c] = s / l[i * n + i]
            }
            for i in stride(from: n - 1, through: 0, by: -1) {  // L^T x = y
                var s = x[i * k + c]
                for t in (i + 1)..<n { s -= l[t * n + i] * x[t * k + c] }
                x[i * k + c] = s / l[i * n + i]
            }
        }
        return x
    }

    // MARK: metadata

    /// The model file's metadata key.
    public static let metadataKey = "aligned_calibration"

    private struct Stored: Codable { var passes: Int; var rows: Int; var source: String?; var weights: [Double] }

    /// JSON: {"passes":3,"rows":2719,"source":"...","weights":[... 930 numbers, row-major ...]}.
    public var json: String {
        let name = source.flatMap { try? JSONEncoder().encode($0) }.map { ",\"source\":" + String(decoding: $0, as: UTF8.self) } ?? ""
        return "{\"passes\":\(passes),\"rows\":\(rows)\(name),\"weights\":[" + weights.map { String(format: "%.8g", $0) }.joined(separator: ",") + "]}"
    }

    public init(json: String, path: String) throws {
        guard let s = try? JSONDecoder().decode(Stored.self, from: Data(json.utf8)) else {
            throw CheckpointError(description: "\(path): \(Self.metadataKey) is not JSON with passes, rows and weights")
        }
        let needed = (Self.values + 1) * Self.values
        guard s.passes >= 1, s.weights.count == needed, s.weights.allSatisfy(\.isFinite) else {
            throw CheckpointError(description: "\(path): \(Self.metadataKey) needs passes >= 1 and \(needed) finite weights (has \(s.weights.count))")
        }
        self.init(passes: s.passes, rows: s.rows, weights: s.weights)
        source = s.source
    }
}
