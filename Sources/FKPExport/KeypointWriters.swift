import FKPTensor
import Foundation

/// Machine-readable keypoints: CSV (with a header) and JSON lines; Kaggle submissions.
public enum KeypointWriter {
    /// One row per face: an identifier column, then the 30 keypoint columns (pixels, 2 decimals).
    public static func csv(idHeader: String, ids: [String], values: [[Float]]) -> String {
        var out = ([idHeader] + Keypoints.columns).joined(separator: ",") + "\n"
        out.reserveCapacity(ids.count * 200)
        for (id, row) in zip(ids, values) {
            out += csvField(id)
            for v in row { out += "," + format(v) }
            out += "\n"
        }
        return out
    }

    /// A Kaggle submission: `RowId,Location` for each row of the lookup table.
    public static func submission(lookup: [(rowId: Int, imageId: Int, feature: String)],
                                  predictions: [Int: [Float]]) throws -> String {
        var out = "RowId,Location\n"
        for row in lookup {
            guard let p = predictions[row.imageId] else {
                throw ExportError(message: "lookup row \(row.rowId) asks for ImageId \(row.imageId), which is not among the predicted images")
            }
            guard let c = Keypoints.columns.firstIndex(of: row.feature) else {
                throw ExportError(message: "lookup row \(row.rowId) asks for an unknown feature '\(row.feature)'")
            }
            out += "\(row.rowId),\(format(p[c]))\n"
        }
        return out
    }

    /// One JSON object per line.
    public static func jsonLine(_ object: [String: Any]) -> String {
        let data = try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
        return String(decoding: data, as: UTF8.self)
    }

    public static func format(_ v: Float) -> String {
        v.isNaN ? "" : String(format: "%.2f", Double(v))
    }

    /// A CSV field, quoted when it holds a comma, a quote or a line break.
    public static func csvField(_ s: String) -> String {
        s.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" }) ? "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : s
    }
}

public struct ExportError: Error, CustomStringConvertible {
    public let message: String
    public var description: String { message }
}

/// Kaggle's IdLookupTable.csv: RowId,ImageId,FeatureName,Location.
public enum LookupTable {
    public static func read(path: String) throws -> [(rowId: Int, imageId: Int, feature: String)] {
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw ExportError(message: "\(path): cannot read: \(error.localizedDescription)")
        }
        var lines = text.split(omittingEmptySubsequences: true, whereSeparator: { $0 == "\n" || $0 == "\r\n" })
        guard let header = lines.first else { throw ExportError(message: "\(path): empty file") }
        let cols = header.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
        guard let r = cols.firstIndex(of: "RowId"), let i = cols.firstIndex(of: "ImageId"), let f = cols.firstIndex(of: "FeatureName") else {
            throw ExportError(message: "\(path): line 1: expected the columns RowId, ImageId, FeatureName")
        }
        lines.removeFirst()
        var out: [(Int, Int, String)] = []
        out.reserveCapacity(lines.count)
        for (n, line) in lines.enumerated() {
            let fields = line.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
            guard fields.count > max(r, i, f), let rowId = Int(fields[r]), let imageId = Int(fields[i]) else {
                throw ExportError(message: "\(path): line \(n + 2): expected RowId,ImageId,FeatureName, got '\(line.prefix(60))'")
            }
            out.append((rowId, imageId, fields[f]))
        }
        return out
    }
}
