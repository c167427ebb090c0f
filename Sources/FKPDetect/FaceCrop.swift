import FKPImage
import FKPTensor

/// How a detector's box maps to the square crop the nets were trained on. Training faces are framed
/// more loosely than Haar boxes (brows to chin plus a margin), so the crop is the box shifted and
/// scaled: crop = (x + dx * w, y + dy * w, size * w). Calibrated by `calibrate` on training faces.
public struct CropMapping: Sendable, Equatable, CustomStringConvertible {
    public var dx: Double
    public var dy: Double
    public var size: Double

    /// Measured by `fkp-batch calibrate-crop ../shared/data/fkd/training.csv --limit 4000`: one box in
    /// 3295 of 3357 faces; spread (sd) of dx 0.055, dy 0.051, size 0.092 box widths.
    public static let calibrated = CropMapping(dx: -0.0071, dy: -0.0021, size: 1.0273)

    public init(dx: Double, dy: Double, size: Double) { self.dx = dx; self.dy = dy; self.size = size }

    public func crop(for box: FaceBox) -> (x: Double, y: Double, side: Double) {
        let w = Double(box.width)
        return (Double(box.x) + dx * w, Double(box.y) + dy * w, size * w)
    }

    public var description: String { String(format: "dx %.4f, dy %.4f, size %.4f (of the box width)", dx, dy, size) }

    public struct Calibration: Sendable {
        public var mapping: CropMapping
        public var faces: Int
        public var detected: Int
        /// Standard deviations of the three ratios over the faces.
        public var spread: (dx: Double, dy: Double, size: Double)
    }

    /// Runs the detector on each 96x96 training face (`faces`: [n, 9216], values in 0...1), padded with
    /// its mean grey so a face filling the frame still fits the sliding window, and takes the mean of
    /// where the frame sits relative to the single box found. Faces with no box or several are left out.
    public static func calibrate(_ faces: Tensor, cascade: HaarCascade, parameters: DetectionParameters = .init(),
                                 limit: Int = 1000) -> Calibration {
        let pad = 48, side = Keypoints.side, big = side + 2 * pad
        var rx: [Double] = [], ry: [Double] = [], rs: [Double] = []
        let n = min(limit, faces.shape[0])
        for r in 0..<n {
            let px = UnsafeBufferPointer(start: faces.data + r * Keypoints.imageSize, count: Keypoints.imageSize)
            let mean = px.reduce(0, +) / Float(px.count)
            var padded = [Float](repeating: mean * 255, count: big * big)
            for y in 0..<side { for x in 0..<side { padded[(y + pad) * big + x + pad] = px[y * side + x] * 255 } }
            let boxes = detectFaces(in: GrayImage(width: big, height: big, pixels: padded), cascade: cascade, parameters: parameters)
            guard boxes.count == 1, let b = boxes.first else { continue }
            let w = Double(b.width)
            rx.append((Double(pad) - Double(b.x)) / w)
            ry.append((Double(pad) - Double(b.y)) / w)
            rs.append(Double(side) / w)
        }
        func mean(_ a: [Double]) -> Double { a.isEmpty ? .nan : a.reduce(0, +) / Double(a.count) }
        func sd(_ a: [Double]) -> Double { let m = mean(a); return (a.map { ($0 - m) * ($0 - m) }.reduce(0, +) / Double(max(a.count - 1, 1))).squareRoot() }
        return Calibration(mapping: CropMapping(dx: mean(rx), dy: mean(ry), size: mean(rs)), faces: n, detected: rx.count,
                           spread: (sd(rx), sd(ry), sd(rs)))
    }
}

/// A square crop of a grey photo resampled to side x side by area averaging (bilinear when enlarging);
/// parts of the crop outside the photo take the nearest edge pixel. Returns values in 0...1.
public func cropFace(_ photo: GrayImage, x: Double, y: Double, side: Double, to out: Int = Keypoints.side) -> [Float] {
    // Cut the covering integer window (clamped to the photo), then resize it to the output.
    let x0 = Int(x.rounded(.down)), y0 = Int(y.rounded(.down))
    let n = max(1, Int(side.rounded()))
    var window = [Float](repeating: 0, count: n * n)
    for yy in 0..<n {
        let sy = min(max(y0 + yy, 0), photo.height - 1)
        for xx in 0..<n {
            let sx = min(max(x0 + xx, 0), photo.width - 1)
            window[yy * n + xx] = photo.pixels[sy * photo.width + sx]
        }
    }
    return resizeArea(GrayImage(width: n, height: n, pixels: window), width: out, height: out).pixels.map { $0 / 255 }
}
