import Foundation

/// Where the canonical crop sits relative to a face detector's box, in box widths:
/// crop square = (x + dx w, y + dy w, side = size w). Measured on photos with landmarks
/// (`fkp-batch calibrate-crop --frames`), since a detector frames a face its own way.
public struct BoxFraming: Sendable, Equatable, Codable, CustomStringConvertible {
    public var dx: Double
    public var dy: Double
    public var size: Double
    public init(dx: Double, dy: Double, size: Double) { self.dx = dx; self.dy = dy; self.size = size }

    /// The photo -> crop transform of the first pass for a box (no rotation: a box has none).
    public func photoToCrop(x: Double, y: Double, width w: Double) -> Similarity {
        let side = size * w, s = Double(CanonicalFace.side) / side
        return Similarity(a: s, b: 0, tx: -(x + dx * w) * s, ty: -(y + dy * w) * s)
    }

    /// This box's framing of one face with its alignment (photo -> canonical crop): the crop's axis-aligned
    /// square (centre and side of the aligned crop, its rotation left out) relative to the box.
    public static func of(alignment t: Similarity, x: Double, y: Double, width w: Double) -> BoxFraming {
        let inv = t.inverse
        let c = inv.apply(CanonicalFace.center.x, CanonicalFace.center.y)
        let side = Double(CanonicalFace.side) * inv.scale
        return BoxFraming(dx: (c.x - side / 2 - x) / w, dy: (c.y - side / 2 - y) / w, size: side / w)
    }

    /// For photo models made without --frames: the frames' measurement (dx 0.0081, dy 0.0139, size 0.9976
    /// with OpenCV's frontal-face cascade, 2686 training faces of ../shared/data/frames).
    public static let detectorDefault = BoxFraming(dx: 0.0081, dy: 0.0139, size: 0.9976)

    public var description: String { String(format: "dx %.4f, dy %.4f, size %.4f (box widths)", dx, dy, size) }
}
