/// The frame the aligned nets see: a 96x96 crop in which a face's 15 keypoints are brought, by the
/// least-squares similarity, onto the mean shape below. That mean shape is the mean of the 15 keypoints
/// of ../shared/data/fkd/training.csv (3357 faces, Kaggle's framing: eye centres near (65.4, 37.4) and
/// (30.5, 37.7), mouth corners near y = 76), so aligned crops and Kaggle-format faces share one framing.
public enum CanonicalFace {
    public static let side = 96

    /// 15 keypoints in Kaggle's column order (x, y interleaved), in the 96x96 frame.
    public static let meanShape: [Double] = [
        65.39, 37.35, 30.48, 37.69, 58.50, 37.69, 71.92, 36.99, 37.24, 37.94, 23.96, 37.40,
        57.86, 25.95, 79.17, 28.09, 37.61, 26.21, 15.94, 28.68, 48.93, 58.33, 62.65, 76.21,
        34.36, 76.50, 48.92, 71.99, 49.13, 83.55,
    ]

    /// Kaggle's 96x96 frame (training.csv, test.csv) -> the canonical crop. A face's points fitted onto
    /// the mean shape come out about 3% smaller than in Kaggle's frame (the mean of many faces is a
    /// smaller, blurred face), so a photo model's nets expect a Kaggle face a little shrunk and moved:
    /// the median of each parameter of that fit over the 2719 rows of training.csv that show the
    /// training people (`bench/kaggle_framing.py`; the 638 rows of held-out people give a 0.9715).
    public static let kaggleFrame = Similarity(a: 0.9694, b: 0, tx: 1.3695, ty: 1.0415)

    /// The centre of the crop, about which augmentation rotates and scales.
    public static let center = (x: 48.0, y: 48.0)

    /// The transform from photo pixels into the canonical crop that best puts `keypoints` (30 values in
    /// photo pixels, NaN = missing) onto the mean shape.
    public static func alignment(for keypoints: [Double]) -> Similarity? {
        Similarity.fit(from: keypoints, to: meanShape)
    }

    /// Inter-ocular distance of 30 keypoint values (between the eye centres), the NME's normaliser.
    public static func interocular(_ k: [Double]) -> Double {
        let dx = k[0] - k[2], dy = k[1] - k[3]
        return (dx * dx + dy * dy).squareRoot()
    }

    /// Normalised mean error: the mean distance of the points present in both, over the reference's
    /// inter-ocular distance. NaN when no point can be compared (never silently 0).
    public static func nme(predicted p: [Double], reference r: [Double]) -> Double {
        var sum = 0.0, n = 0
        for i in stride(from: 0, to: min(p.count, r.count) - 1, by: 2) {
            let dx = p[i] - r[i], dy = p[i + 1] - r[i + 1]
            let d = (dx * dx + dy * dy).squareRoot()
            if d.isNaN { continue }
            sum += d; n += 1
        }
        let iod = interocular(r)
        return n > 0 && iod > 0 ? sum / Double(n) / iod : .nan
    }
}

