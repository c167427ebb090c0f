import FKPTensor

/// Root mean squared error in pixels, overall and per keypoint (x and y of a point pooled), and the
/// mean signed error of each of the 30 values (a bias shows there: a model that puts every point a
/// pixel left has mean x errors near -1), counting only labelled values.
public struct RMSEReport: Sendable {
    public var overall: Double
    /// 15 keypoints, in Kaggle's column order.
    public var perKeypoint: [Double]
    /// 30 values (x, y interleaved): mean of predicted - labelled, pixels.
    public var meanError: [Double]
    public var values: Int

    /// "left_eye_center", "right_eye_center", ...
    public static let keypointNames: [String] = stride(from: 0, to: Keypoints.count, by: 2).map {
        String(Keypoints.columns[$0].dropLast(2))
    }

    public init(predicted: [[Float]], truth: Tensor) {
        var total = 0.0, n = 0
        var sums = [Double](repeating: 0, count: 15), counts = [Int](repeating: 0, count: 15)
        var signed = [Double](repeating: 0, count: Keypoints.count), labelled = [Int](repeating: 0, count: Keypoints.count)
        for (r, row) in predicted.enumerated() {
            for c in 0..<Keypoints.count {
                let t = truth[r * Keypoints.count + c]
                if t.isNaN { continue }
                let d = Double(row[c] - t)
                total += d * d; n += 1
                sums[c / 2] += d * d; counts[c / 2] += 1
                signed[c] += d; labelled[c] += 1
            }
        }
        overall = n > 0 ? (total / Double(n)).squareRoot() : .nan
        perKeypoint = zip(sums, counts).map { $1 > 0 ? ($0 / Double($1)).squareRoot() : .nan }
        meanError = zip(signed, labelled).map { $1 > 0 ? $0 / Double($1) : .nan }
        values = n
    }
}
