import FKPTensor

/// The nets' units for keypoints: a pixel value v of the 96x96 frame is (v - 48) / 48, so the frame
/// spans [-1, 1]. The one place this mapping is written; training targets, predictions, flips and the
/// RMSE in pixels all go through it.
public enum KeypointScale {

    /// Pixels of the 96x96 frame -> the nets' units.
    @inline(__always) public static func scaled(_ pixels: Float) -> Float { (pixels - 48) / 48 }

    /// The nets' units -> pixels of the 96x96 frame.
    @inline(__always) public static func pixels(_ scaled: Float) -> Float { scaled * 48 + 48 }

    /// A net's output -> pixels, clamped to the frame.
    @inline(__always) public static func clampedPixels(_ scaled: Float) -> Float { min(max(pixels(scaled), 0), 96) }

    /// RMSE in pixels of a mean squared error in the nets' units.
    public static func rmsePixels(meanSquaredError: Double) -> Double { meanSquaredError.squareRoot() * 48 }
}

/// Where a net's 96x96 input frame lies in a photo: the crop (a square for detected faces, the whole
/// image for faces that come cropped). Maps keypoints both ways between the frame and the photo.
public struct FaceFrame: Sendable, Equatable {
    public var x: Double
    public var y: Double
    public var width: Double
    public var height: Double

    public init(x: Double, y: Double, width: Double, height: Double) {
        self.x = x; self.y = y; self.width = width; self.height = height
    }

    /// A square crop of side `side` at (x, y).
    public init(x: Double, y: Double, side: Double) { self.init(x: x, y: y, width: side, height: side) }

    /// 30 values in frame pixels (x, y alternating) -> photo pixels.
    public func toPhoto(_ frame: [Float]) -> [Float] {
        frame.enumerated().map { c, v in
            c % 2 == 0 ? Float(x) + v / 96 * Float(width) : Float(y) + v / 96 * Float(height)
        }
    }

    /// Photo pixels -> frame pixels (the inverse of toPhoto).
    public func toFrame(_ photo: [Float]) -> [Float] {
        photo.enumerated().map { c, v in
            c % 2 == 0 ? (v - Float(x)) / Float(width) * 96 : (v - Float(y)) / Float(height) * 96
        }
    }
}
