import Foundation

/// A photo turned about its centre, for finding tilted heads with an upright cascade: the rotated image
/// shows the photo turned by `degrees` counter-clockwise as seen (image y pointing down), same size, the
/// corners filled from the nearest edge pixel.
struct Rotation: Sendable {
    let degrees: Double
    let cx: Double, cy: Double
    let c: Double, s: Double

    init(degrees: Double, width: Int, height: Int) {
        self.degrees = degrees
        cx = Double(width - 1) / 2
        cy = Double(height - 1) / 2
        let r = degrees * Double.pi / 180
        c = cos(r)
        s = sin(r)
    }

    /// Where a point of the rotated image lies in the photo.
    func source(_ x: Double, _ y: Double) -> (x: Double, y: Double) {
        let dx = x - cx, dy = y - cy
        return (cx + c * dx - s * dy, cy + s * dx + c * dy)
    }

    /// Where a point of the photo lies in the rotated image.
    func target(_ x: Double, _ y: Double) -> (x: Double, y: Double) {
        let dx = x - cx, dy = y - cy
        return (cx + c * dx + s * dy, cy - s * dx + c * dy)
    }

    /// The photo's 8-bit grey pixels turned, read bilinearly (pixel centres at integer positions).
    func apply(_ pixels: [UInt8], width: Int, height: Int) -> [UInt8] {
        precondition(pixels.count == width * height, "Rotation: pixel count does not match width * height")
        var out = [UInt8](repeating: 0, count: width * height)
        pixels.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                let maxX = Double(width - 1), maxY = Double(height - 1)
                for y in 0..<height {
                    // Walk the row incrementally: the source moves by (c, s) per target pixel.
                    var (sx, sy) = source(0, Double(y))
                    for x in 0..<width {
                        let px = min(max(sx, 0), maxX), py = min(max(sy, 0), maxY)
                        let x0 = Int(px), y0 = Int(py)
                        let x1 = min(x0 + 1, width - 1), y1 = min(y0 + 1, height - 1)
                        let fx = px - Double(x0), fy = py - Double(y0)
                        let r0 = Double(src[y0 * width + x0]) * (1 - fx) + Double(src[y0 * width + x1]) * fx
                        let r1 = Double(src[y1 * width + x0]) * (1 - fx) + Double(src[y1 * width + x1]) * fx
                        dst[y * width + x] = UInt8((r0 * (1 - fy) + r1 * fy).rounded())
                        sx += c
                        sy += s
                    }
                }
            }
        }
        return out
    }

    /// A box found in the rotated image, moved back onto the photo: its centre through the inverse
    /// rotation, its size kept (the face is as large in both).
    func boxInPhoto(_ b: FaceBox) -> FaceBox {
        let (x, y) = source(Double(b.x) + Double(b.width) / 2, Double(b.y) + Double(b.height) / 2)
        return FaceBox(x: Int((x - Double(b.width) / 2).rounded()), y: Int((y - Double(b.height) / 2).rounded()),
                       width: b.width, height: b.height, neighbors: b.neighbors)
    }
}
