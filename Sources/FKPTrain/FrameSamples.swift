import Dispatch
import FKPAlign
import FKPImage
import FKPInference
import FKPIngest
import FKPTensor
import Foundation

/// Where the Trainer takes its training samples from: fixed faces (a Kaggle CSV) or faces drawn afresh
/// each time from whole photos (`FrameSamples`).
public protocol SampleSource {
    var count: Int { get }
    var outputs: Int { get }
    /// Whether each request cuts a new sample (then the Trainer gives every draw its own key and spreads
    /// the batch over the cores) or copies a fixed one.
    var drawsAfresh: Bool { get }
    /// Writes sample `row` into `image` (9216 values, 0...1) and `target` (scaled keypoints). `key` is the
    /// draw: the same key gives the same sample, so runs are repeatable and resumable.
    func write(row: Int, key: UInt64, image: UnsafeMutablePointer<Float>, target: UnsafeMutablePointer<Float>)
}

extension TrainingData: SampleSource {
    public var drawsAfresh: Bool { false }
    public func write(row: Int, key: UInt64, image: UnsafeMutablePointer<Float>, target: UnsafeMutablePointer<Float>) {
        image.update(from: images.data + row * Keypoints.imageSize, count: Keypoints.imageSize)
        target.update(from: targets.data + row * outputs, count: outputs)
    }
}

/// The random similarity (and photometric change) applied around each face when it is cut from its
/// photo. Two regimes, drawn per sample: `wide` covers what a detector box leaves (shift, size, tilted
/// heads), `narrow` what the first pass of `AlignedPredictor` leaves, so one net serves both passes.
public struct Augmentation: Codable, Sendable, Equatable {
    public struct Range: Codable, Sendable, Equatable {
        /// Uniform in +-degrees.
        public var rotationDegrees: Double
        /// Log-uniform in [1 / (1 + s), 1 + s].
        public var scale: Double
        /// Uniform in +- this fraction of the crop side, in x and y independently.
        public var shift: Double
        public init(rotationDegrees: Double, scale: Double, shift: Double) {
            self.rotationDegrees = rotationDegrees; self.scale = scale; self.shift = shift
        }
    }
    public var wide: Range
    public var narrow: Range
    /// Share of samples drawn from `wide`.
    public var wideShare: Double
    /// Brightness +-, contrast and gamma factors in [1 / (1 + x), 1 + x].
    public var brightness: Double
    public var contrast: Double
    public var gamma: Double
    /// Share of samples cut at a low resolution (side 24...64) and enlarged, as small photo faces are.
    public var lowResShare: Double

    public init(wide: Range, narrow: Range, wideShare: Double, brightness: Double, contrast: Double, gamma: Double, lowResShare: Double) {
        self.wide = wide; self.narrow = narrow; self.wideShare = wideShare
        self.brightness = brightness; self.contrast = contrast; self.gamma = gamma; self.lowResShare = lowResShare
    }

    /// The defaults of `train --frames`. Wide: the detector's crop spread on the frames (sd of shift about
    /// 5% and of size about 9% of the box) at two sd, and heads tilted up to 25 degrees.
    public static let standard = Augmentation(
        wide: Range(rotationDegrees: 25, scale: 0.2, shift: 0.12),
        narrow: Range(rotationDegrees: 6, scale: 0.05, shift: 0.03),
        wideShare: 0.5, brightness: 0.15, contrast: 0.3, gamma: 0.3, lowResShare: 0.25)

    /// `train --warp fine`: half the narrow moves, for a net that refines faces already aligned
    /// (what the later passes see on 96x96 faces that come aligned).
    public static let fine: Range = Range(rotationDegrees: 3, scale: 0.025, shift: 0.015)

    /// A random brightness, contrast and gamma change of one 96x96 crop (0...1), drawn from `rng`.
    public func changeLight(_ image: UnsafeMutablePointer<Float>, rng: inout Xoshiro) {
        guard brightness > 0 || contrast > 0 || gamma > 0 else { return }
        func factor(_ x: Double) -> Float { Float(exp((Double(rng.nextFloat()) * 2 - 1) * log(1 + x))) }
        let gain = factor(contrast), g = factor(gamma)
        let shift = Float((Double(rng.nextFloat()) * 2 - 1) * brightness)
        for i in 0..<Keypoints.imageSize {
            let v = (powf(max(image[i], 0), g) - 0.5) * gain + 0.5 + shift
            image[i] = min(max(v, 0), 1)
        }
    }

    /// A random similarity within `r` around the canonical crop's centre.
    public static func jitter(_ r: Range, rng: inout Xoshiro) -> Similarity {
        func uniform(_ m: Double) -> Double { (Double(rng.nextFloat()) * 2 - 1) * m }
        let angle = uniform(r.rotationDegrees) * .pi / 180
        let scale = exp(uniform(log(1 + r.scale)))
        let side = Double(CanonicalFace.side)
        return Similarity(angle: angle, scale: scale, center: CanonicalFace.center,
                          shift: (uniform(r.shift) * side, uniform(r.shift) * side))
    }

    /// No change at all: the face exactly aligned (a perfect crop).
    public static let none = Augmentation(
        wide: Range(rotationDegrees: 0, scale: 0, shift: 0), narrow: Range(rotationDegrees: 0, scale: 0, shift: 0),
        wideShare: 0, brightness: 0, contrast: 0, gamma: 0, lowResShare: 0)
}

/// Whole photos with their keypoints, kept in memory as grey planes; each request cuts a fresh 96x96
/// sample through the face's alignment and a random similarity, read once, bilinearly, from the photo.
public final class FrameSamples: SampleSource, @unchecked Sendable {
    public let landmarks: LandmarkSet
    public var augmentation: Augmentation
    public var outputs: Int { Keypoints.count }
    public var count: Int { landmarks.count }
    public var drawsAfresh: Bool { true }
    /// Photo pixels -> canonical crop, per face (from its own keypoints).
    public let alignments: [Similarity]
    private let planes: [[Float]]
    private let sizes: [(width: Int, height: Int)]

    public struct LoadError: Error, CustomStringConvertible { public let description: String }

    /// Decodes every image (in parallel) to grey 0...1. A face whose image cannot be read, or whose
    /// keypoints give no alignment, is an error naming it.
    public init(_ set: LandmarkSet, augmentation: Augmentation = .standard) throws {
        self.landmarks = set
        self.augmentation = augmentation
        let images: [GrayImage]
        do { images = try ImageFile.readGray(paths: set.images) } catch let e as ImageFile.ListError {
            throw LoadError(description: "\(set.origins[e.index]): \(e.error)")
        }
        let planes = images.map { $0.pixels.map { $0 / 255 } }
        let sizes = images.map { ($0.width, $0.height) }
        var alignments: [Similarity] = []
        for i in 0..<set.count {
            guard let a = CanonicalFace.alignment(for: set.keypoints[i]) else {
                throw LoadError(description: "\(set.origins[i]): the keypoints do not define a face (too few distinct points)")
            }
            alignments.append(a)
        }
        self.planes = planes
        self.sizes = sizes
        self.alignments = alignments
    }

    /// The random photo -> crop transform for one draw.
    public func transform(row: Int, rng: inout Xoshiro) -> Similarity {
        let a = augmentation
        let r = Double(rng.nextFloat()) < a.wideShare ? a.wide : a.narrow
        return alignments[row].then(Augmentation.jitter(r, rng: &rng))
    }

    public func write(row: Int, key: UInt64, image: UnsafeMutablePointer<Float>, target: UnsafeMutablePointer<Float>) {
        var rng = Xoshiro(seed: key)
        let t = transform(row: row, rng: &rng)
        let a = augmentation
        let lowRes = Double(rng.nextFloat()) < a.lowResShare
        let lowSide = 24 + Int(rng.next() % 41)
        cut(row: row, photoToCrop: t, into: image, lowResSide: lowRes ? lowSide : nil)
        a.changeLight(image, rng: &rng)
        let k = t.apply(landmarks.keypoints[row])
        for c in 0..<Keypoints.count { target[c] = KeypointScale.scaled(Float(k[c])) }
    }

    /// Cuts the 96x96 crop seen through `photoToCrop`; with `lowResSide` it is first cut at that side and
    /// then enlarged, as a small face in a photo is.
    public func cut(row: Int, photoToCrop t: Similarity, into out: UnsafeMutablePointer<Float>, lowResSide: Int? = nil) {
        let side = CanonicalFace.side
        planes[row].withUnsafeBufferPointer { px in
            GrayPlane(width: sizes[row].width, height: sizes[row].height, pixels: px)
                .warp(into: out, side: side, outToSource: t.inverse, through: lowResSide ?? side)
        }
    }

    public func size(row: Int) -> (width: Int, height: Int) { sizes[row] }
    /// Photo `row`, grey 0...1.
    public func plane(row: Int) -> [Float] { planes[row] }

    /// Every photo as the detector reads it (grey 0...255).
    public func grayImages() -> [GrayImage] {
        (0..<count).map { r in GrayImage(width: sizes[r].width, height: sizes[r].height, pixels: planes[r].map { $0 * 255 }) }
    }
}

extension SampleSource {
    /// A fixed set: each sample drawn once with key derived from `seed` and its row (validation).
    public func fixedSet(seed: UInt64) -> TrainingData {
        let data = TrainingData(images: Tensor(shape: [count, Keypoints.imageSize]), targets: Tensor(shape: [count, outputs]))
        DispatchQueue.concurrentPerform(iterations: count) { i in
            write(row: i, key: sampleKey(seed: seed, epoch: 0, position: i), image: data.images.data + i * Keypoints.imageSize,
                  target: data.targets.data + i * outputs)
        }
        return data
    }
}

/// The draw of one sample: a mix of seed, epoch and position, so no two draws share a key.
@inline(__always) public func sampleKey(seed: UInt64, epoch: Int, position: Int) -> UInt64 {
    var z = seed &+ UInt64(truncatingIfNeeded: epoch) &* 0x9E37_79B9_7F4A_7C15 &+ UInt64(truncatingIfNeeded: position) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
}
