import FKPImage

/// An RGB raster with the few drawing operations the plots and annotated photos need.
public struct Canvas {
    public var width: Int
    public var height: Int
    public var pixels: [UInt8]

    public struct Color: Equatable, Sendable {
        public var r, g, b: UInt8
        public init(_ r: UInt8, _ g: UInt8, _ b: UInt8) { self.r = r; self.g = g; self.b = b }
        public static let white = Color(255, 255, 255), black = Color(0, 0, 0), grey = Color(200, 200, 200)
    }

    public init(width: Int, height: Int, background: Color = .white) {
        self.width = width; self.height = height
        pixels = [UInt8](repeating: 0, count: width * height * 3)
        for i in 0..<(width * height) { pixels[3 * i] = background.r; pixels[3 * i + 1] = background.g; pixels[3 * i + 2] = background.b }
    }

    public init(_ image: RGBImage) { width = image.width; height = image.height; pixels = image.pixels }
    public var image: RGBImage { RGBImage(width: width, height: height, pixels: pixels) }

    public mutating func set(_ x: Int, _ y: Int, _ c: Color) {
        guard x >= 0, y >= 0, x < width, y < height else { return }
        let i = 3 * (y * width + x)
        pixels[i] = c.r; pixels[i + 1] = c.g; pixels[i + 2] = c.b
    }

    public mutating func fill(x: Int, y: Int, width w: Int, height h: Int, _ c: Color) {
        for yy in max(y, 0)..<min(y + h, height) { for xx in max(x, 0)..<min(x + w, width) { set(xx, yy, c) } }
    }

    /// A line of the given thickness; `dash` (on, off) in pixels draws it dashed.
    public mutating func line(_ x0: Double, _ y0: Double, _ x1: Double, _ y1: Double, _ c: Color,
                              thickness: Int = 1, dash: (Int, Int)? = nil, dashPhase: inout Double) {
        let len = max(abs(x1 - x0), abs(y1 - y0))
        let steps = max(Int(len.rounded(.up)), 1)
        let r = thickness / 2
        for s in 0...steps {
            let t = Double(s) / Double(steps)
            if let (on, off) = dash {
                let phase = (dashPhase + t * len).truncatingRemainder(dividingBy: Double(on + off))
                if phase >= Double(on) { continue }
            }
            let x = Int((x0 + (x1 - x0) * t).rounded()), y = Int((y0 + (y1 - y0) * t).rounded())
            fill(x: x - r, y: y - r, width: thickness, height: thickness, c)
        }
        dashPhase += len
    }

    public mutating func line(_ x0: Double, _ y0: Double, _ x1: Double, _ y1: Double, _ c: Color, thickness: Int = 1) {
        var phase = 0.0
        line(x0, y0, x1, y1, c, thickness: thickness, dash: nil, dashPhase: &phase)
    }

    /// The outline of a rectangle.
    public mutating func rectangle(x: Int, y: Int, width w: Int, height h: Int, _ c: Color, thickness: Int = 1) {
        fill(x: x, y: y, width: w, height: thickness, c)
        fill(x: x, y: y + h - thickness, width: w, height: thickness, c)
        fill(x: x, y: y, width: thickness, height: h, c)
        fill(x: x + w - thickness, y: y, width: thickness, height: h, c)
    }

    /// A filled disc with an outline (keypoint markers that show on dark and light skin).
    public mutating func disc(cx: Double, cy: Double, radius: Double, _ c: Color, outline: Color? = nil) {
        let r = Int(radius.rounded(.up)) + 1
        for y in (Int(cy) - r)...(Int(cy) + r) {
            for x in (Int(cx) - r)...(Int(cx) + r) {
                let d = ((Double(x) + 0.5 - cx) * (Double(x) + 0.5 - cx) + (Double(y) + 0.5 - cy) * (Double(y) + 0.5 - cy)).squareRoot()
                if d <= radius - (outline != nil ? max(1, radius / 3) : 0) { set(x, y, c) } else if d <= radius, let o = outline { set(x, y, o) }
            }
        }
    }

    /// Text with the embedded 5x7 font, `scale` pixels per font pixel; (x, y) is the top left corner.
    public mutating func text(_ s: String, x: Int, y: Int, _ c: Color, scale: Int = 2) {
        var cx = x
        for ch in s {
            let rows = BitmapFont.rows(ch)
            for (ry, row) in rows.enumerated() {
                for (rx, bit) in row.enumerated() where bit == "#" {
                    fill(x: cx + rx * scale, y: y + ry * scale, width: scale, height: scale, c)
                }
            }
            cx += (BitmapFont.width + 1) * scale
        }
    }

    public static func textWidth(_ s: String, scale: Int = 2) -> Int { s.count * (BitmapFont.width + 1) * scale - scale }
}
