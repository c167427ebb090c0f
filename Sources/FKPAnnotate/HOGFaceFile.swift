import FKPDetect
import FKPInference
import FKPNets
import Foundation

/// A HOG face detector's filters in a safetensors file: `biases` [count], `terms` [count, 31] and `columns`,
/// `rows` [count, 31, terms, size] (each filter in separable form), with metadata `iou`, `covered` (its overlap test) and `poses` (one per filter). The bundled
/// `face-hog.safetensors` holds dlib's frontal face detector (samples/README.md says where from and under
/// which licence).
public enum HOGFaceFile {
    public static let modelName = "hog-face-detector"

    /// Env FKP_HOG_DETECTOR, else the bundled `face-hog.safetensors` (`ModelFile.bundledFile`).
    public static var defaultPath: String { defaultPath(beside: nil) }

    /// The same, looked for beside `model` first.
    public static func defaultPath(beside model: String?) -> String {
        if let env = ProcessInfo.processInfo.environment["FKP_HOG_DETECTOR"] { return env }
        return ModelFile.bundledFile("face-hog.safetensors", beside: model)
    }

    /// Where the bundled detector's box sits relative to the frontal cascade's box of the same face (see
    /// `FaceDetector.hogShift`), so that one crop framing serves both: medians over the 371 of 400 frames of
    /// training people (drawn at random, seed 1, from ../shared/data/frames) where each found one face, the
    /// same (30 Nov 2026: annotate --detector hog --no-profile against --no-profile --verify-below 0).
    public static let frontalShift = BoxShift(dx: -0.0667, dy: -0.1395, size: 1.1308)

    public static func load(path: String) throws -> HOGFilterBank {
        let file = try Safetensors.read(path: path)
        func fail(_ why: String) -> CheckpointError { CheckpointError(description: "\(path): not a HOG face detector: \(why)") }
        guard file.metadata["model"] == modelName else { throw fail("metadata model is not '\(modelName)'") }
        let planes = HOGFilterBank.planes
        guard let b = file["biases"], b.shape.count == 1, b.shape[0] > 0,
              let t = file["terms"], t.shape == [b.shape[0], planes],
              let c = file["columns"], c.shape.count == 4, Array(c.shape[0..<2]) == [b.shape[0], planes], c.shape[2] > 0, c.shape[3] > 0,
              let r = file["rows"], r.shape == c.shape else {
            throw fail("needs tensors biases [count], terms [count, 31], columns and rows [count, 31, terms, size]")
        }
        guard b.values.allSatisfy(\.isFinite), c.values.allSatisfy(\.isFinite), r.values.allSatisfy(\.isFinite) else {
            throw fail("a weight is not finite")
        }
        guard t.values.allSatisfy({ $0 >= 0 && $0 <= Float(c.shape[2]) && $0 == $0.rounded() }) else {
            throw fail("terms must be whole numbers from 0 to \(c.shape[2])")
        }
        guard let iou = file.metadata["iou"].flatMap(Double.init), let covered = file.metadata["covered"].flatMap(Double.init),
              (0...1).contains(iou), (0...1).contains(covered) else { throw fail("metadata iou and covered must be numbers in 0...1") }
        let poses = (file.metadata["poses"] ?? "").split(separator: ",").map { FacePose(rawValue: String($0)) }
        guard poses.count == b.values.count, poses.allSatisfy({ $0 != nil }) else {
            throw fail("metadata poses must name \(b.values.count) poses (frontal, left, right)")
        }
        return HOGFilterBank(size: c.shape[3], terms: t.values.map { Int32($0) }, maxTerms: c.shape[2], columns: c.values,
                             rows: r.values, biases: b.values, poses: poses.map { $0! }, iou: iou, covered: covered)
    }
}
