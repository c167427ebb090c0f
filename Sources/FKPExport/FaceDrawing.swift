import FKPTensor

/// Draws detected faces and their 15 keypoints on a photo: the box, and a marker per point coloured by
/// feature (eyes cyan, eye corners blue, brows yellow, nose red, mouth magenta), each a filled disc with
/// a dark outline so it shows on light and dark skin; sizes follow the face, so any photo size works.
public enum FaceDrawing {
    static let eyeCentres = Canvas.Color(0, 230, 255)
    static let eyeCorners = Canvas.Color(40, 120, 255)
    static let brows = Canvas.Color(255, 220, 0)
    static let nose = Canvas.Color(255, 40, 40)
    static let mouth = Canvas.Color(255, 0, 200)
    static let box = Canvas.Color(60, 255, 60)

    /// The colour of keypoint k (0..<15, in Kaggle's column order).
    public static func colour(keypoint k: Int) -> Canvas.Color {
        switch k {
        case 0, 1: return eyeCentres
        case 2...5: return eyeCorners
        case 6...9: return brows
        case 10: return nose
        default: return mouth
        }
    }

    /// `points`: 30 values in photo pixels (x, y alternating); NaN values are skipped.
    public static func draw(on c: inout Canvas, box original: (x: Int, y: Int, width: Int, height: Int), points: [Float]) {
        // Edges far outside the canvas are moved in to just outside it (same picture), so the
        // arithmetic below cannot overflow whatever box it is given.
        let lim = 4 * (c.width + c.height) + 64
        func clamp(_ v: Int) -> Int { min(max(v, -lim), lim) }
        let (right, o1) = original.x.addingReportingOverflow(max(original.width, 0))
        let (bottom, o2) = original.y.addingReportingOverflow(max(original.height, 0))
        let x = clamp(original.x), y = clamp(original.y)
        let box = (x: x, y: y, width: clamp(o1 ? Int.max : right) - x, height: clamp(o2 ? Int.max : bottom) - y)
        let t = max(2, min(original.width, 60 * lim) / 60)
        c.rectangle(x: box.x - t, y: box.y - t, width: box.width + 2 * t, height: box.height + 2 * t, .black, thickness: 1)
        c.rectangle(x: box.x, y: box.y, width: box.width, height: box.height, FaceDrawing.box, thickness: t)
        let r = max(2.5, Double(original.width) / 45)
        for k in 0..<(points.count / 2) where !points[2 * k].isNaN && !points[2 * k + 1].isNaN {
            c.disc(cx: Double(points[2 * k]), cy: Double(points[2 * k + 1]), radius: r, colour(keypoint: k), outline: .black)
        }
    }
}
