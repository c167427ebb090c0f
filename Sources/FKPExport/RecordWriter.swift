import FKPTensor
import Foundation

/// How records go out: CSV with a header, or one JSON object per line.
public enum RecordFormat: String, CaseIterable, Sendable {
    case csv, jsonl
}

/// One face in photo pixels: its box, the detector's score and pose class, and 30 keypoint values.
public struct FaceRecord: Sendable {
    public var x, y, width, height, score: Int
    /// frontal, left or right (empty when no detector ran).
    public var pose: String
    public var points: [Float]
    public init(x: Int, y: Int, width: Int, height: Int, score: Int, pose: String = "", points: [Float]) {
        (self.x, self.y, self.width, self.height, self.score, self.pose, self.points) = (x, y, width, height, score, pose, points)
    }
}

extension KeypointWriter {
    /// The JSON side of the one NaN rule: a value rounded to 2 decimals, `null` for NaN (the CSV side is
    /// `format`: an empty field).
    public static func jsonValue(_ v: Float) -> Any {
        v.isNaN ? NSNull() : (Double(v) * 100).rounded() / 100
    }
}

/// annotate's records, one per face (a photo without faces gets one record with faces = 0), buffered and
/// handed to `sink` (stdout by default) in order.
public final class FaceRecordWriter {
    public let format: RecordFormat
    let sink: (String) -> Void
    var buffer = ""

    public init(format: RecordFormat, sink: @escaping (String) -> Void = { FileHandle.standardOutput.write(Data($0.utf8)) }) {
        self.format = format; self.sink = sink
    }

    /// Columns added later come last, so readers of the older columns keep working.
    public static let csvHeader = (["file", "faces", "face", "x", "y", "w", "h", "score"] + Keypoints.columns + ["pose"]).joined(separator: ",")

    public func header() {
        if format == .csv { buffer += Self.csvHeader + "\n" }
    }

    public func records(file: String, faces: [FaceRecord]) {
        if faces.isEmpty {
            switch format {
            case .csv: buffer += "\(KeypointWriter.csvField(file)),0" + String(repeating: ",", count: 7 + Keypoints.count) + "\n"
            case .jsonl: buffer += KeypointWriter.jsonLine(["file": file, "faces": 0]) + "\n"
            }
        }
        for (j, f) in faces.enumerated() {
            switch format {
            case .csv:
                buffer += "\(KeypointWriter.csvField(file)),\(faces.count),\(j + 1),\(f.x),\(f.y),\(f.width),\(f.height),\(f.score),"
                buffer += f.points.map(KeypointWriter.format).joined(separator: ",") + ",\(KeypointWriter.csvField(f.pose))\n"
            case .jsonl:
                var kp: [String: [Any]] = [:]
                for k in 0..<Keypoints.count / 2 {
                    kp[String(Keypoints.columns[2 * k].dropLast(2))] = [KeypointWriter.jsonValue(f.points[2 * k]),
                                                                        KeypointWriter.jsonValue(f.points[2 * k + 1])]
                }
                buffer += KeypointWriter.jsonLine(["file": file, "faces": faces.count, "face": j + 1,
                                                   "box": ["x": f.x, "y": f.y, "w": f.width, "h": f.height], "score": f.score,
                                                   "pose": f.pose, "keypoints": kp]) + "\n"
            }
        }
        if buffer.utf8.count > 1 << 16 { flush() }
    }

    public func flush() {
        if !buffer.isEmpty { sink(buffer) }
        buffer = ""
    }
}
