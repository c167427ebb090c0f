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

    /// One JSON object per line. NaN and infinities (JSON has neither) are written as null, as a blank
    /// is in CSV; values JSON cannot hold are written as their description rather than aborting.
    public static func jsonLine(_ object: [String: Any]) -> String {
        let safe = jsonSafe(object)
        guard JSONSerialization.isValidJSONObject(safe),
              let data = try? JSONSerialization.data(withJSONObject: safe, options: [.sortedKeys]) else {
            return "{}"
        }
        return String(decoding: data, as: UTF8.self)
    }

    static func jsonSafe(_ value: Any) -> Any {
        switch value {
        case let v as Double: return v.isFinite ? v : NSNull()
        case let v as Float: return v.isFinite ? v : NSNull()
        case let v as [String: Any]: return v.mapValues(jsonSafe)
        case let v as [Any]: return v.map(jsonSafe)
        case is String, is Int, is Bool, is NSNull, is NSNumber: return value
        case let v as any BinaryInteger: return Int(truncatingIfNeeded: v)
        default: return String(describing: value)
        }
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
            throw ExportError(message: "\(path): cannot read: \(ioErrorText(error))")
        }
        return try parse(text, path: path)
    }

    /// The table from its text; `path` names it in errors.
    public static func parse(_ text: String, path: String) throws -> [(rowId: Int, imageId: Int, feature: String)] {
        // Any line end (LF, CRLF or a lone CR): a CR-only table must not read as one long header line.
        var lines = text.split(omittingEmptySubsequences: true, whereSeparator: \.isNewline)
        guard let header = lines.first else { throw ExportError(message: "\(path): empty file") }
        if let nul = text.utf8.firstIndex(of: 0) {
            let line = text[..<nul].reduce(1) { $1.isNewline ? $0 + 1 : $0 }
            throw ExportError(message: "\(path): line \(line): a NUL byte inside a value")
        }
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
        guard !out.isEmpty else { throw ExportError(message: "\(path): no rows after the header") }
        return out
    }
}
