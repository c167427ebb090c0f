import Dispatch
import FKPTensor
import Foundation

/// Faces read from a Kaggle-style CSV: images scaled to 0...1 and keypoints in pixels (NaN = missing).
public struct FaceSet: @unchecked Sendable {
    /// [count, 9216], pixel / 255.
    public var images: Tensor
    /// [count, 30] in the canonical column order, pixels; NaN where the file had a blank. Nil for test files.
    public var keypoints: Tensor?
    /// ImageId when the file has that column.
    public var imageIds: [Int]?
    /// 1-based line of each row in its file (for messages).
    public var lines: [Int]
    public var source: String
    public var count: Int { lines.count }

    public init(images: Tensor, keypoints: Tensor?, imageIds: [Int]?, lines: [Int], source: String) {
        self.images = images; self.keypoints = keypoints; self.imageIds = imageIds; self.lines = lines; self.source = source
    }

    /// Rows whose 30 values are all present.
    public var completeRows: [Int] {
        guard let k = keypoints else { return [] }
        return (0..<count).filter { r in (0..<Keypoints.count).allSatisfy { !k[r * Keypoints.count + $0].isNaN } }
    }

    /// A new set holding the given rows, in that order.
    public func subset(_ rows: [Int]) -> FaceSet {
        let img = Tensor(shape: [rows.count, Keypoints.imageSize])
        let kp = keypoints.map { _ in Tensor(shape: [rows.count, Keypoints.count]) }
        for (i, r) in rows.enumerated() {
            (img.data + i * Keypoints.imageSize).update(from: images.data + r * Keypoints.imageSize, count: Keypoints.imageSize)
            if let kp, let src = keypoints {
                (kp.data + i * Keypoints.count).update(from: src.data + r * Keypoints.count, count: Keypoints.count)
            }
        }
        return FaceSet(images: img, keypoints: kp, imageIds: imageIds.map { ids in rows.map { ids[$0] } },
                       lines: rows.map { lines[$0] }, source: source)
    }
}

public struct CSVError: Error, CustomStringConvertible, Equatable {
    public let file: String
    public let line: Int?
    public let column: String?
    public let message: String
    public var description: String {
        var s = file
        if let line { s += ":\(line)" }
        if let column { s += ": column \(column)" }
        return s + ": " + message
    }
}

/// Reader for training.csv (30 keypoint columns + Image) and test.csv (ImageId + Image).
/// The header decides which columns are read; blanks in keypoint columns are missing values; CRLF line
/// ends and double-quoted fields are accepted. Rows are parsed on all cores.
public enum KaggleCSV {
    public struct Result: Sendable {
        public var faces: FaceSet
        /// Rows skipped with skipBadRows, as errors naming file, line and column.
        public var skipped: [CSVError]
    }

    public static func read(path: String, skipBadRows: Bool = false, threads: Int? = nil) throws -> Result {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped) } catch {
            throw CSVError(file: path, line: nil, column: nil, message: "cannot read: \(ioErrorText(error))")
        }
        return try parse(data, name: path, skipBadRows: skipBadRows, threads: threads)
    }

    public static func parse(_ data: Data, name: String, skipBadRows: Bool = false, threads: Int? = nil) throws -> Result {
        try data.withUnsafeBytes { raw -> Result in
            try parse(raw.bindMemory(to: UInt8.self), name: name, skipBadRows: skipBadRows, threads: threads)
        }
    }

    /// Mutable per-row results shared by the parsing workers (each writes its own rows only).
    private final class RowResults: @unchecked Sendable {
        var ids: [Int]
        var errors: [CSVError?]
        init(_ n: Int) { ids = .init(repeating: 0, count: n); errors = .init(repeating: nil, count: n) }
    }

    static func parse(_ bytes: UnsafeBufferPointer<UInt8>, name: String, skipBadRows: Bool, threads: Int?) throws -> Result {
        let spans = lineSpans(bytes)
        guard let headerSpan = spans.first else {
            throw CSVError(file: name, line: nil, column: nil, message: "the file is empty")
        }
        let headerFields: [(Int, Int)]
        do { headerFields = try splitFields(bytes, headerSpan) } catch let e as RowError {
            throw CSVError(file: name, line: 1, column: nil, message: e.message)
        }
        let header = headerFields.map { String(decoding: UnsafeBufferPointer(rebasing: bytes[$0.0..<$0.1]), as: UTF8.self).trimmingCharacters(in: .whitespaces) }
        // A repeated column would silently win over its twin.
        var firstSeen: [String: Int] = [:]
        for (i, h) in header.enumerated() {
            if let j = firstSeen[h] {
                throw CSVError(file: name, line: 1, column: h, message: "appears twice, as columns \(j + 1) and \(i + 1)")
            }
            firstSeen[h] = i
        }
        guard let imageColumn = header.firstIndex(of: "Image") else {
            throw CSVError(file: name, line: 1, column: nil, message: "no Image column in the header (found: \(header.prefix(5).joined(separator: ","))...)")
        }
        var keypointIndex = [Int](repeating: -1, count: header.count)  // file column -> canonical index
        var hasKeypoints = false
        for (i, h) in header.enumerated() {
            if let k = Keypoints.columns.firstIndex(of: h) { keypointIndex[i] = k; hasKeypoints = true }
        }
        let idColumn = header.firstIndex(of: "ImageId")
        for (i, h) in header.enumerated() where i != imageColumn && i != idColumn && keypointIndex[i] < 0 {
            throw CSVError(file: name, line: 1, column: h, message: "unknown column (expected the 30 keypoint columns, ImageId and Image)")
        }
        // Data lines (skip blank lines). A line too short to hold 9216 pixels is refused before any image
        // buffer is allocated, so memory follows the rows that can be valid, not the number of lines.
        var rows: [(offset: Int, element: (Int, Int))] = []
        var short: [CSVError] = []
        for (i, span) in spans.enumerated().dropFirst() where span.1 > span.0 {
            if span.1 - span.0 < minimumRowBytes {
                let e = shortRowError(bytes, span, header: header, imageColumn: imageColumn)
                short.append(CSVError(file: name, line: i + 1, column: e.column, message: e.message))
                if !skipBadRows { throw short[0] }
            } else {
                rows.append((i, span))
            }
        }
        let count = rows.count
        let images = Tensor(shape: [count, Keypoints.imageSize])
        let keypoints = hasKeypoints ? Tensor(shape: [count, Keypoints.count], fill: .nan) : nil
        let results = RowResults(count)
        let workers = max(1, min(threads ?? ProcessInfo.processInfo.activeProcessorCount, count / 64 + 1))
        results.ids.withUnsafeMutableBufferPointer { ids in
            results.errors.withUnsafeMutableBufferPointer { errors in
                let ids = ids, errors = errors
                DispatchQueue.concurrentPerform(iterations: workers) { w in
                    for r in (count * w / workers)..<(count * (w + 1) / workers) {
                        let (lineIndex, span) = rows[r]
                        do {
                            ids[r] = try parseRow(bytes, span, header: header, imageColumn: imageColumn,
                                                  idColumn: idColumn, keypointIndex: keypointIndex,
                                                  image: images.data + r * Keypoints.imageSize,
                                                  keypoints: keypoints.map { $0.data + r * Keypoints.count })
                        } catch let e as RowError {
                            errors[r] = CSVError(file: name, line: lineIndex + 1, column: e.column, message: e.message)
                        } catch {}
                    }
                }
            }
        }
        let errors = results.errors, ids = results.ids
        let bad = (short + errors.compactMap { $0 }).sorted { ($0.line ?? 0) < ($1.line ?? 0) }
        if let first = bad.first, !skipBadRows { throw first }
        let good = (0..<count).filter { errors[$0] == nil }
        var faces = FaceSet(images: images, keypoints: keypoints, imageIds: idColumn != nil ? ids : nil,
                            lines: rows.map { $0.offset + 1 }, source: name)
        if !bad.isEmpty { faces = faces.subset(good) }
        return Result(faces: faces, skipped: bad)
    }

    struct RowError: Error {
        var column: String?
        let message: String
        /// 0-based field the error is in, when the column name is not known yet (field splitting).
        var field: Int? = nil

        /// The error with its field's column name from the header.
        func naming(_ header: [String]) -> RowError {
            var e = self
            e.column = field.map { $0 < header.count ? header[$0] : "\($0 + 1)" } ?? column
            return e
        }
    }

    /// The shortest line that can hold 9216 one-digit pixels separated by single spaces.
    static let minimumRowBytes = 2 * Keypoints.imageSize - 1

    /// Why a line too short for an image is bad: its field count when that is wrong, else its length.
    static func shortRowError(_ b: UnsafeBufferPointer<UInt8>, _ span: (Int, Int), header: [String], imageColumn: Int) -> RowError {
        let fields: [(Int, Int)]
        do { fields = try splitFields(b, span) } catch let e as RowError { return e.naming(header) } catch {
            return RowError(column: nil, message: "\(error)")
        }
        if fields.count != header.count { return fieldCountError(fields.count, header: header) }
        return RowError(column: header[imageColumn], message:
            "\(span.1 - span.0) bytes, too short for a row with a 96x96 image (at least \(minimumRowBytes))")
    }

    static func fieldCountError(_ n: Int, header: [String]) -> RowError {
        RowError(column: n < header.count ? header[n] : "\(n)", message: "\(n) fields, the header has \(header.count)")
    }

    /// Line starts and ends without their terminator: \n, \r\n, or a lone \r (old Mac files).
    static func lineSpans(_ bytes: UnsafeBufferPointer<UInt8>) -> [(Int, Int)] {
        let n = bytes.count
        guard let base = bytes.baseAddress, n > 0 else { return [] }
        // Lone CRs are line ends only in a file without any LF, so the fast memchr path stays for the rest.
        let separator: Int32 = memchr(base, 0x0A, n) == nil && memchr(base, 0x0D, n) != nil ? 0x0D : 0x0A
        var spans: [(Int, Int)] = []
        spans.reserveCapacity(8192)
        var start = 0
        while start < n {
            let end = memchr(base + start, separator, n - start).map { UnsafePointer($0.assumingMemoryBound(to: UInt8.self)) - base } ?? n
            var e = end
            if separator == 0x0A && e > start && bytes[e - 1] == 0x0D { e -= 1 }
            spans.append((start, e))
            start = end + 1
        }
        return spans
    }

    /// Field spans of one line; a field in double quotes may hold commas and doubled quotes. Anything
    /// after a closing quote other than the comma, and a quote never closed, are errors (not dropped).
    static func splitFields(_ b: UnsafeBufferPointer<UInt8>, _ span: (Int, Int)) throws -> [(Int, Int)] {
        var fields: [(Int, Int)] = []
        var i = span.0
        while true {
            if i < span.1 && b[i] == 0x22 {  // quoted: content up to the closing quote
                let s = i + 1
                var j = s
                while j < span.1 {
                    if b[j] == 0x22 { if j + 1 < span.1 && b[j + 1] == 0x22 { j += 2; continue } else { break } }
                    j += 1
                }
                guard j < span.1 else {
                    throw RowError(column: nil, message: "the quote opened here is never closed", field: fields.count)
                }
                fields.append((s, j))
                i = j + 1
                guard i >= span.1 || b[i] == 0x2C else {
                    throw RowError(column: nil, message: "'\(text(b, (i, span.1)))' after the closing quote", field: fields.count - 1)
                }
            } else {
                var j = i
                while j < span.1 && b[j] != 0x2C { j += 1 }
                fields.append((i, j))
                i = j
            }
            if i >= span.1 { break }
            i += 1  // past the comma
            if i == span.1 { fields.append((i, i)); break }
        }
        return fields
    }

    static func parseRow(_ b: UnsafeBufferPointer<UInt8>, _ span: (Int, Int), header: [String], imageColumn: Int,
                         idColumn: Int?, keypointIndex: [Int], image: UnsafeMutablePointer<Float>,
                         keypoints: UnsafeMutablePointer<Float>?) throws -> Int {
        let fields: [(Int, Int)]
        do { fields = try splitFields(b, span) } catch let e as RowError { throw e.naming(header) }
        // strtof and friends stop at a NUL: a value holding one would be silently cut short.
        if let p = memchr(b.baseAddress! + span.0, 0, span.1 - span.0) {
            let at = UnsafePointer(p.assumingMemoryBound(to: UInt8.self)) - b.baseAddress!
            let k = fields.firstIndex { at < $0.1 + 1 } ?? 0
            throw RowError(column: header[min(k, header.count - 1)], message: "a NUL byte inside the value")
        }
        guard fields.count == header.count else { throw fieldCountError(fields.count, header: header) }
        var id = 0
        for (c, f) in fields.enumerated() {
            if c == imageColumn {
                try parsePixels(b, f, into: image, column: header[c])
            } else if c == idColumn {
                guard let v = Int(String(decoding: UnsafeBufferPointer(rebasing: b[f.0..<f.1]), as: UTF8.self).trimmingCharacters(in: .whitespaces)) else {
                    throw RowError(column: header[c], message: "'\(text(b, f))' is not an integer")
                }
                id = v
            } else if let keypoints, keypointIndex[c] >= 0 {
                let s = text(b, f).trimmingCharacters(in: .whitespaces)
                if s.isEmpty { continue }  // missing value
                guard let v = Float(s), v.isFinite else {
                    throw RowError(column: header[c], message: "'\(s.prefix(20))' is not a number")
                }
                keypoints[keypointIndex[c]] = v
            }
        }
        return id
    }

    static func text(_ b: UnsafeBufferPointer<UInt8>, _ f: (Int, Int)) -> String {
        String(decoding: UnsafeBufferPointer(rebasing: b[f.0..<min(f.1, f.0 + 40)]), as: UTF8.self)
    }

    /// 9216 space-separated integers 0...255, stored as value / 255.
    @inline(__always)
    static func parsePixels(_ b: UnsafeBufferPointer<UInt8>, _ f: (Int, Int), into out: UnsafeMutablePointer<Float>,
                            column: String) throws {
        var i = f.0, k = 0
        let end = f.1
        while true {
            while i < end && (b[i] == 0x20 || b[i] == 0x09) { i += 1 }
            if i >= end { break }
            var v = 0, digits = 0
            while i < end, b[i] >= 0x30, b[i] <= 0x39 {
                v = v * 10 + Int(b[i] - 0x30); digits += 1; i += 1
                if digits > 6 { break }
            }
            if digits == 0 || (i < end && b[i] != 0x20 && b[i] != 0x09) {
                var j = i
                while j < end && b[j] != 0x20 { j += 1 }
                let start = i - digits
                throw RowError(column: column, message: "pixel \(k + 1) is '\(text(b, (start, j)))', not an integer 0..255")
            }
            if v > 255 { throw RowError(column: column, message: "pixel \(k + 1) is \(v), outside 0..255") }
            if k >= Keypoints.imageSize {
                throw RowError(column: column, message: "more than \(Keypoints.imageSize) pixels (a 96x96 image)")
            }
            out[k] = Float(v) * (1.0 / 255.0)
            k += 1
        }
        if k != Keypoints.imageSize {
            throw RowError(column: column, message: "\(k) pixels, expected \(Keypoints.imageSize) (a 96x96 image)")
        }
    }
}
