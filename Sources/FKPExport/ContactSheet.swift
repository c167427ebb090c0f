import FKPImage

/// A grid of face tiles with two sets of points each: the reference (green rings) and the prediction
/// (red dots), and the face's error printed under it, for looking at what a model does.
public enum ContactSheet {
    public struct Tile {
        public var side: Int
        /// Grey 0...1, side x side.
        public var pixels: [Float]
        /// 30 values each, tile pixels.
        public var predicted: [Double]
        public var reference: [Double]
        public var caption: String
        public init(side: Int, pixels: [Float], predicted: [Double], reference: [Double], caption: String) {
            self.side = side; self.pixels = pixels; self.predicted = predicted; self.reference = reference; self.caption = caption
        }
    }

    public static func draw(_ tiles: [Tile], columns: Int = 8) -> RGBImage {
        guard let side = tiles.first?.side else { return Canvas(width: 1, height: 1).image }
        let cols = max(1, min(columns, tiles.count)), rows = (tiles.count + cols - 1) / cols
        let captionHeight = 12, cellW = side + 4, cellH = side + captionHeight + 4
        var c = Canvas(width: cols * cellW, height: rows * cellH, background: .black)
        for (n, t) in tiles.enumerated() {
            let ox = (n % cols) * cellW + 2, oy = (n / cols) * cellH + 2
            for y in 0..<t.side { for x in 0..<t.side {
                let v = UInt8(max(0, min(255, t.pixels[y * t.side + x] * 255)))
                c.set(ox + x, oy + y, .init(v, v, v))
            } }
            for p in stride(from: 0, to: 30, by: 2) {
                c.disc(cx: Double(ox) + t.reference[p], cy: Double(oy) + t.reference[p + 1], radius: 2.5, .init(40, 220, 60))
                c.disc(cx: Double(ox) + t.predicted[p], cy: Double(oy) + t.predicted[p + 1], radius: 1.5, .init(255, 40, 40))
            }
            c.text(t.caption, x: ox, y: oy + t.side + 2, .white, scale: 1)
        }
        return c.image
    }
}
