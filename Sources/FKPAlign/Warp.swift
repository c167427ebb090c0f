/// Resampling of a grey picture through a similarity: each output pixel's centre is mapped into the
/// source and read bilinearly; when the source is larger than the output (scale > 1 source pixels per
/// output pixel) each output pixel averages an n x n grid of such reads (n = ceil(scale)), so shrinking
/// does not alias. Outside the source the nearest edge pixel is used (as the detector crops did).
public struct GrayPlane {
    public let width: Int
    public let height: Int
    public let pixels: UnsafeBufferPointer<Float>

    public init(width: Int, height: Int, pixels: UnsafeBufferPointer<Float>) {
        precondition(pixels.count >= width * height && width > 0 && height > 0)
        self.width = width; self.height = height; self.pixels = pixels
    }

    /// Bilinear read at continuous coordinates (pixel centres at k + 0.5), edges clamped.
    @inline(__always) public func sample(_ x: Double, _ y: Double) -> Float {
        let fx = x - 0.5, fy = y - 0.5
        let x0f = fx.rounded(.down), y0f = fy.rounded(.down)
        let wx = Float(fx - x0f), wy = Float(fy - y0f)
        let x0 = clamp(Int(x0f), width), x1 = clamp(Int(x0f) + 1, width)
        let y0 = clamp(Int(y0f), height), y1 = clamp(Int(y0f) + 1, height)
        let r0 = y0 * width, r1 = y1 * width
        let top = pixels[r0 + x0] + (pixels[r0 + x1] - pixels[r0 + x0]) * wx
        let bottom = pixels[r1 + x0] + (pixels[r1 + x1] - pixels[r1 + x0]) * wx
        return top + (bottom - top) * wy
    }

    @inline(__always) private func clamp(_ v: Int, _ n: Int) -> Int { v < 0 ? 0 : (v >= n ? n - 1 : v) }

    /// Fills `out` (side x side, row-major) with the source seen through `outToSource`, times `gain`.
    public func warp(into out: UnsafeMutablePointer<Float>, side: Int, outToSource t: Similarity, gain: Float = 1) {
        // Guard against absurd transforms (a degenerate fit): cap the supersampling.
        let n = max(1, min(8, Int(t.scale.rounded(.up))))
        let step = 1.0 / Double(n), norm = gain / Float(n * n)
        for oy in 0..<side {
            for ox in 0..<side {
                var acc: Float = 0
                for sy in 0..<n {
                    let py = Double(oy) + (Double(sy) + 0.5) * step
                    for sx in 0..<n {
                        let px = Double(ox) + (Double(sx) + 0.5) * step
                        let (x, y) = t.apply(px, py)
                        acc += sample(x, y)
                    }
                }
                out[oy * side + ox] = acc * norm
            }
        }
    }

    /// As `warp`, but read at `lowSide` x `lowSide` first and then enlarged to `side`, as a small face in a
    /// photo is enlarged (softer than a direct read; no change when lowSide >= side).
    public func warp(into out: UnsafeMutablePointer<Float>, side: Int, outToSource t: Similarity, through lowSide: Int) {
        guard lowSide < side else { warp(into: out, side: side, outToSource: t); return }
        var tmp = [Float](repeating: 0, count: lowSide * lowSide)
        let down = Similarity(a: Double(side) / Double(lowSide), b: 0, tx: 0, ty: 0)
        tmp.withUnsafeMutableBufferPointer { warp(into: $0.baseAddress!, side: lowSide, outToSource: down.then(t)) }
        tmp.withUnsafeBufferPointer {
            GrayPlane(width: lowSide, height: lowSide, pixels: $0)
                .warp(into: out, side: side, outToSource: Similarity(a: Double(lowSide) / Double(side), b: 0, tx: 0, ty: 0))
        }
    }
}
