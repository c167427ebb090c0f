import FKPAlign
import FKPEngine
import FKPNets
import FKPTensor
import Foundation

/// A small CNN that tells a face from anything else in a detector's box: the second opinion on the Haar
/// cascades' weak boxes. Haar cascades and a regression net make the same mistakes on textures (the
/// keypoint net answers with a face-like shape whatever it sees), so this one is trained for the question
/// itself (`fkp-batch train-verifier`): faces of labelled photos against displaced boxes, background and
/// the detector's own false boxes. It reads the box through the photo model's first-crop framing, so a
/// face sits in its input as in the keypoint nets'.
public final class FaceVerifier: @unchecked Sendable {
    /// A 96x96 grey crop read at 48x48 and enlarged (fine detail says more about the photo than about the
    /// face), standardised -> 48 (max-pool) -> 3 small conv/pool stages -> 64 -> 1 logit; dropout
    /// against the few people it learns from. 82,881 weights, about 1.3 M multiply-adds per box.
    public static let architecture = Architecture(name: modelName, layers: [
        .pool(name: "pool0"),                                                // 96 -> 48
        .conv(name: "conv1", filters: 12, kernel: 3), .pool(name: "pool1"),  // 46 -> 23
        .conv(name: "conv2", filters: 24, kernel: 2), .pool(name: "pool2"),  // 22 -> 11
        .conv(name: "conv3", filters: 48, kernel: 2), .pool(name: "pool3"),  // 10 -> 5
        .dropout(name: "dropout3", rate: 0.25),
        .dense(name: "hidden4", units: 64),
        .dropout(name: "dropout4", rate: 0.5),
        .output(units: 1),
    ])
    /// The side at which a box is read before it is enlarged to the net's 96x96 input.
    public static let resolution = 48
    public static let modelName = "face-verifier"
    /// The net's output is a logit, trained by the logistic loss on 1 (face) and 0 (not): its sigmoid,
    /// the score, estimates the chance that the box holds a face (on boxes like the training ones).
    public static let scoreNote = "score = sigmoid(output), about P(face); trained by logistic loss on 1 = face, 0 = not"
    public static let inputNote = "96x96 grey crop (read at 48x48, enlarged) of the box (x + 0.0081 w, y + 0.0139 w, side 0.9976 w), standardised: (v - mean) / (sd + 0.05), v in 0...1"
    /// Where a box's crop is cut: the keypoint nets' first crop (BoxFraming.detectorDefault).
    public static let framing = BoxFraming.detectorDefault

    public let net: Net
    /// Boxes scoring below this are not faces (stored in the file by train-verifier).
    public let threshold: Float
    public let path: String
    private let lock = NSLock()

    public init(net: Net, threshold: Float, path: String) {
        precondition(net.architecture == Self.architecture && net.outputs == 1)
        net.loss = .logistic
        self.net = net; self.threshold = threshold; self.path = path
    }

    public static func load(path: String, backend: Backend, maxBatch: Int = 64) throws -> FaceVerifier {
        try load(try Safetensors.read(path: path), path: path, backend: backend, maxBatch: maxBatch)
    }

    public static func load(_ file: Safetensors.File, path: String, backend: Backend, maxBatch: Int = 64) throws -> FaceVerifier {
        guard file.metadata["model"] == modelName else {
            throw CheckpointError(description: "\(path): not a face verifier (its metadata names model '\(file.metadata["model"] ?? "none")', not '\(modelName)')")
        }
        guard let t = file.metadata["threshold"].flatMap(Float.init), t.isFinite else {
            throw CheckpointError(description: "\(path): no finite 'threshold' in the metadata")
        }
        let net = Net(architecture, backend: backend, maxBatch: maxBatch, trainable: false)
        try net.load(file, path: path)
        return FaceVerifier(net: net, threshold: t, path: path)
    }

    /// The verifier a command runs when given none: env FKP_VERIFIER, else the bundled
    /// verifier.safetensors (`ModelFile.bundledFile`: beside FKP_MODEL when it is there, else samples/).
    public static var defaultPath: String { defaultPath(beside: nil) }

    /// The same, looked for beside `model` first.
    public static func defaultPath(beside model: String?) -> String {
        if let env = ProcessInfo.processInfo.environment["FKP_VERIFIER"] { return env }
        return ModelFile.bundledFile("verifier.safetensors", beside: model)
    }

    /// Zero mean and about unit spread over the crop (divided by sd + 0.05, so that a flat patch is not
    /// blown up into noise): brightness and contrast then say little, in training and in use alike.
    public static func standardise(_ x: UnsafeMutablePointer<Float>, count: Int = Keypoints.imageSize) {
        var sum = 0.0, sq = 0.0
        for i in 0..<count { let v = Double(x[i]); sum += v; sq += v * v }
        let mean = sum / Double(count)
        let sd = max(sq / Double(count) - mean * mean, 0).squareRoot()
        let m = Float(mean), s = Float(1 / (sd + 0.05))
        for i in 0..<count { x[i] = (x[i] - m) * s }
    }

    /// The photo -> input transform for a box.
    public static func photoToInput(x: Double, y: Double, width: Double) -> Similarity {
        framing.photoToCrop(x: x, y: y, width: width)
    }

    /// Cuts the verifier's input for `box` from a grey plane (0...1) into `out` (96x96), standardised.
    public static func cut(_ plane: GrayPlane, x: Double, y: Double, width: Double, into out: UnsafeMutablePointer<Float>) {
        plane.warp(into: out, side: CanonicalFace.side, outToSource: photoToInput(x: x, y: y, width: width).inverse, through: resolution)
        standardise(out)
    }

    /// Scores of crops cut by `cut` (rows of 9216 values), in order. Safe to call from several threads
    /// (one batch at a time).
    public func scores(_ crops: Tensor) -> [Float] {
        let n = crops.shape[0], size = net.inputSize
        guard n > 0 else { return [] }
        lock.lock(); defer { lock.unlock() }
        var result: [Float] = []
        result.reserveCapacity(n)
        var out = [Float](repeating: 0, count: net.maxBatch)
        var start = 0
        while start < n {
            let b = min(net.maxBatch, n - start)
            net.backend.write(UnsafeBufferPointer(start: crops.data + start * size, count: b * size), to: net.input, offset: 0)
            net.forward(batch: b, training: false)
            out.withUnsafeMutableBufferPointer { net.backend.read(net.output, offset: 0, into: UnsafeMutableBufferPointer(rebasing: $0[0..<b])) }
            result += out[0..<b].map { Float(sigmoid(Double($0))) }
            start += b
        }
        return result
    }

    /// Scores of `boxes` (x, y, width) in one grey plane.
    public func scores(_ plane: GrayPlane, boxes: [(x: Double, y: Double, width: Double)]) -> [Float] {
        let crops = Tensor(shape: [boxes.count, Keypoints.imageSize])
        for (i, b) in boxes.enumerated() { Self.cut(plane, x: b.x, y: b.y, width: b.width, into: crops.data + i * Keypoints.imageSize) }
        return scores(crops)
    }
}

/// A detector's box on a labelled photo, and whether it holds the labelled face: the verifier's training
/// data, here (not in FKPDetect) so that FKPTrain, which trains on it, needs no detector.
public struct LabelledBox: Sendable, Equatable {
    public var x: Double, y: Double, width: Double
    public var isFace: Bool
    public init(x: Double, y: Double, width: Double, isFace: Bool) {
        self.x = x; self.y = y; self.width = width; self.isFace = isFace
    }
}
