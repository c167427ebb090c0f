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
        precondition(width >= 0 && height >= 0, "Canvas: negative size \(width)x\(height)")
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

    /// Clipped to the canvas: any part (or all) of the rectangle may lie outside, and w or h may be <= 0.
    public mutating func fill(x: Int, y: Int, width w: Int, height h: Int, _ c: Color) {
        guard w > 0, h > 0 else { return }
        let x0 = max(x, 0), y0 = max(y, 0)
        let x1 = min(x.addingReportingOverflow(w).overflow ? Int.max : x + w, width)
        let y1 = min(y.addingReportingOverflow(h).overflow ? Int.max : y + h, height)
        guard x0 < x1, y0 < y1 else { return }
        for yy in y0..<y1 { for xx in x0..<x1 { set(xx, yy, c) } }
    }

    /// A line of the given thickness; `dash` (on, off) in pixels draws it dashed.
    public mutating func line(_ x0: Double, _ y0: Double, _ x1: Double, _ y1: Double, _ c: Color,
                              thickness: Int = 1, dash: (Int, Int)? = nil, dashPhase: inout Double) {
        let len = max(abs(x1 - x0), abs(y1 - y0))
        // Non-finite ends draw nothing; very long lines (far off the canvas) are not stepped pixel by pixel
        // beyond what could ever be visible.
        guard len.isFinite, x0.isFinite, y0.isFinite else { return }
        let limit = Double(2 * (width + height) + 2 * thickness + 4)
        if max(abs(x0), abs(y0), abs(x1), abs(y1)) > limit * 4 {
            guard let (cx0, cy0, cx1, cy1) = Self.clip(x0, y0, x1, y1, to: -limit...limit) else { dashPhase += len; return }
            var phase = dashPhase
            line(cx0, cy0, cx1, cy1, c, thickness: thickness, dash: dash, dashPhase: &phase)
            dashPhase += len
            return
        }
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

    /// Liang-Barsky: the part of a segment inside the square `box` x `box`, nil when none is.
    static func clip(_ x0: Double, _ y0: Double, _ x1: Double, _ y1: Double,
                     to box: ClosedRange<Double>) -> (Double, Double, Double, Double)? {
        let dx = x1 - x0, dy = y1 - y0
        var t0 = 0.0, t1 = 1.0
        for (p, q) in [(-dx, x0 - box.lowerBound), (dx, box.upperBound - x0), (-dy, y0 - box.lowerBound), (dy, box.upperBound - y0)] {
            if p == 0 { if q < 0 { return nil }; continue }
            let r = q / p
            if p < 0 { t0 = max(t0, r) } else { t1 = min(t1, r) }
            if t0 > t1 { return nil }
        }
        return (x0 + t0 * dx, y0 + t0 * dy, x0 + t1 * dx, y0 + t1 * dy)
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
        // Only the part on the canvas is visited (points may lie anywhere, even at infinity).
        guard cx.isFinite, cy.isFinite, radius.isFinite, radius >= 0 else { return }
        let r = radius + 1
        guard cx + r >= 0, cy + r >= 0, cx - r < Double(width), cy - r < Double(height) else { return }
        let xs = max(0, Int((cx - r).rounded(.down))), xe = min(width - 1, Int((cx + r).rounded(.up)))
        let ys = max(0, Int((cy - r).rounded(.down))), ye = min(height - 1, Int((cy + r).rounded(.up)))
        guard xs <= xe, ys <= ye else { return }
        for y in ys...ye {
            for x in xs...xe {
                let d = ((Double(x) + 0.5 - cx) * (Double(x) + 0.5 - cx) + (Double(y) + 0.5 - cy) * (Double(y) + 0.5 - cy)).squareRoot()
                if d <= radius - (outline != nil ? max(1, radius / 3) : 0) { set(x, y, c) } else if d <= radius, let o = outline { set(x, y, o) }
            }
        }
    }

    /// Text with the embedded 5x7 font, `scale` pixels per font pixel; (x, y) is the top left corner.
    public mutating func text(_ s: String, x: Int, y: Int, _ c: Color, scale: Int = 2) {
        var cx = x
        for ch in s {
            if cx >= width { break }  // the rest is off the canvas
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
