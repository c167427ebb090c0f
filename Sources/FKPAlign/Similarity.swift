/// A similarity transform of the plane: rotation, uniform scale and shift, no reflection.
///   x' = a x - b y + tx,   y' = b x + a y + ty      (a = s cos t, b = s sin t)
/// Points are in continuous pixel coordinates: pixel k covers [k, k + 1), its centre is k + 0.5.
public struct Similarity: Sendable, Equatable, Codable {
    public var a: Double
    public var b: Double
    public var tx: Double
    public var ty: Double

    public init(a: Double, b: Double, tx: Double, ty: Double) { self.a = a; self.b = b; self.tx = tx; self.ty = ty }

    public static let identity = Similarity(a: 1, b: 0, tx: 0, ty: 0)

    /// Rotation by `angle` radians and scaling by `scale` about `center`, then a shift.
    public init(angle: Double, scale: Double, center: (x: Double, y: Double) = (0, 0), shift: (x: Double, y: Double) = (0, 0)) {
        a = scale * cos(angle); b = scale * sin(angle)
        tx = center.x - (a * center.x - b * center.y) + shift.x
        ty = center.y - (b * center.x + a * center.y) + shift.y
    }

    public var scale: Double { (a * a + b * b).squareRoot() }
    public var angle: Double { atan2(b, a) }

    @inline(__always) public func apply(_ x: Double, _ y: Double) -> (x: Double, y: Double) {
        (a * x - b * y + tx, b * x + a * y + ty)
    }

    /// Maps interleaved x, y values (NaN stays NaN).
    public func apply(_ xy: [Double]) -> [Double] {
        var out = xy
        for i in stride(from: 0, to: xy.count - 1, by: 2) { (out[i], out[i + 1]) = apply(xy[i], xy[i + 1]) }
        return out
    }

    public var inverse: Similarity {
        let d = a * a + b * b
        let ia = a / d, ib = -b / d
        return Similarity(a: ia, b: ib, tx: -(ia * tx - ib * ty), ty: -(ib * tx + ia * ty))
    }

    /// `other` after `self`: p -> other(self(p)).
    public func then(_ other: Similarity) -> Similarity {
        Similarity(a: other.a * a - other.b * b, b: other.b * a + other.a * b,
                   tx: other.a * tx - other.b * ty + other.tx, ty: other.b * tx + other.a * ty + other.ty)
    }

    /// The least-squares similarity taking the points `from` onto `to` (interleaved x, y; pairs with a NaN
    /// are left out). Nil with fewer than two usable points or when they all coincide.
    public static func fit(from: [Double], to: [Double]) -> Similarity? {
        precondition(from.count == to.count)
        var n = 0.0, mx = 0.0, my = 0.0, ux = 0.0, uy = 0.0
        for i in stride(from: 0, to: from.count - 1, by: 2) where usable(from, to, i) {
            n += 1; mx += from[i]; my += from[i + 1]; ux += to[i]; uy += to[i + 1]
        }
        guard n >= 2 else { return nil }
        mx /= n; my /= n; ux /= n; uy /= n
        // Centred: minimise sum |(a, -b; b, a) p - q|^2 -> a = sum(p.q) / sum|p|^2, b = sum(p x q) / sum|p|^2.
        var pp = 0.0, dot = 0.0, cross = 0.0
        for i in stride(from: 0, to: from.count - 1, by: 2) where usable(from, to, i) {
            let px = from[i] - mx, py = from[i + 1] - my, qx = to[i] - ux, qy = to[i + 1] - uy
            pp += px * px + py * py
            dot += px * qx + py * qy
            cross += px * qy - py * qx
        }
        guard pp > 1e-12 else { return nil }
        let a = dot / pp, b = cross / pp
        return Similarity(a: a, b: b, tx: ux - (a * mx - b * my), ty: uy - (b * mx + a * my))
    }

    private static func usable(_ p: [Double], _ q: [Double], _ i: Int) -> Bool {
        p[i].isFinite && p[i + 1].isFinite && q[i].isFinite && q[i + 1].isFinite
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
