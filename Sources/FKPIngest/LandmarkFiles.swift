import FKPTensor
import Foundation

/// Labelled photos: image files with 68 facial landmarks each (300-W / iBUG numbering, 0-based), and
/// the 15 Kaggle keypoints derived from them. Two layouts are read:
/// - a landmark CSV `image,x0,y0,...,x67,y67` with the images beside it (in `images/` or the CSV's folder),
///   as ../shared/data/frames is laid out;
/// - a folder of images, each with an iBUG `.pts` file of the same name (300-W, LFPW, HELEN, AFW...).
public struct LandmarkSet: Sendable {
    /// Image paths as found (readable from the current directory).
    public var images: [String]
    /// 30 values per image in Kaggle's column order, photo pixels.
    public var keypoints: [[Double]]
    /// The person each image shows (see `person(of:)`), for splitting by person.
    public var persons: [String]
    /// Where each record came from, for messages: "file:line".
    public var origins: [String]
    public var count: Int { images.count }

    public init(images: [String], keypoints: [[Double]], persons: [String], origins: [String]) {
        self.images = images; self.keypoints = keypoints; self.persons = persons; self.origins = origins
    }

    /// The subset at `rows`, in that order.
    public func subset(_ rows: [Int]) -> LandmarkSet {
        LandmarkSet(images: rows.map { images[$0] }, keypoints: rows.map { keypoints[$0] },
                    persons: rows.map { persons[$0] }, origins: rows.map { origins[$0] })
    }

    /// The person-wise split rule, documented in the README: a person is held out for validation when
    /// the FNV-1a 64-bit hash of their name is divisible by 5 (about a fifth of the people). A rule on the
    /// name alone keeps a person on one side whatever else is in the folder, and is easy to reproduce.
    public static func isHeldOut(person: String) -> Bool { fnv1a64(person) % 5 == 0 }

    public var heldOutRows: [Int] { (0..<count).filter { Self.isHeldOut(person: persons[$0]) } }
    public var trainingRows: [Int] { (0..<count).filter { !Self.isHeldOut(person: persons[$0]) } }

    /// A person is the file name without folder, extension and a trailing frame number `_NN` or `_NNb`
    /// (YouTube Faces frames: `Zhang_Ziyi_41b.jpg` -> `Zhang_Ziyi`); other names are their own person.
    public static func person(of path: String) -> String {
        var name = (path as NSString).lastPathComponent
        if let dot = name.lastIndex(of: "."), dot != name.startIndex { name = String(name[..<dot]) }
        guard let us = name.lastIndex(of: "_") else { return name }
        var tail = name[name.index(after: us)...]
        if tail.hasSuffix("b") { tail = tail.dropLast() }
        return !tail.isEmpty && tail.allSatisfy(\.isASCII) && tail.allSatisfy(\.isNumber) ? String(name[..<us]) : name
    }

    public static func fnv1a64(_ s: String) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in s.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        return h
    }
}

public struct LandmarkError: Error, CustomStringConvertible {
    public let description: String
    init(_ file: String, _ line: Int?, _ what: String) {
        description = line.map { "\(file):\($0): \(what)" } ?? "\(file): \(what)"
    }
}

/// The 68 -> 15 mapping (0-based 300-W indices; "left" is the subject's left), the one place it is written.
public enum Landmarks68 {
    public static let count = 68

    /// Kaggle's 15 keypoints (30 values) from 136 landmark values.
    public static func kaggleKeypoints(_ p: [Double]) -> [Double] {
        precondition(p.count == 2 * count)
        func pt(_ i: Int) -> (Double, Double) { (p[2 * i], p[2 * i + 1]) }
        func mean(_ r: ClosedRange<Int>) -> (Double, Double) {
            let n = Double(r.count)
            return (r.map { p[2 * $0] }.reduce(0, +) / n, r.map { p[2 * $0 + 1] }.reduce(0, +) / n)
        }
        let points = [mean(42...47), mean(36...41), pt(42), pt(45), pt(39), pt(36), pt(22), pt(26),
                      pt(21), pt(17), pt(30), pt(54), pt(48), pt(51), pt(57)]
        return points.flatMap { [$0.0, $0.1] }
    }
}

public enum LandmarkFiles {
    /// Reads `path`: a landmark CSV, or a folder holding `keypoints.csv` (images in `images/` or beside
    /// it), or a folder of images with `.pts` files. Records whose image is missing are errors, named.
    public static func read(_ path: String) throws -> LandmarkSet {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw LandmarkError(path, nil, "no such file or folder")
        }
        if !isDir.boolValue { return try readCSV(path) }
        let csv = (path as NSString).appendingPathComponent("keypoints.csv")
        if FileManager.default.fileExists(atPath: csv) { return try readCSV(csv) }
        return try readPtsFolder(path)
    }

    /// `image,x0,y0,...,x67,y67` with a header; image names are looked up in `images/` beside the CSV,
    /// then beside the CSV itself.
    public static func readCSV(_ path: String) throws -> LandmarkSet {
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw LandmarkError(path, nil, "cannot read: \(ioErrorText(error))")
        }
        let folder = (path as NSString).deletingLastPathComponent
        let imagesDir = (folder as NSString).appendingPathComponent("images")
        let hasImagesDir = FileManager.default.fileExists(atPath: imagesDir)
        var set = LandmarkSet(images: [], keypoints: [], persons: [], origins: [])
        var lineNo = 0
        for raw in text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" }) {
            lineNo += 1
            let line = raw.hasSuffix("\r") ? raw.dropLast() : raw
            if line.isEmpty { continue }
            let fields = line.split(separator: ",", omittingEmptySubsequences: false)
            if lineNo == 1 {
                guard fields.count == 1 + 2 * Landmarks68.count, fields[0] == "image" else {
                    throw LandmarkError(path, 1, "expected the header image,x0,y0,...,x67,y67 (137 columns), found \(fields.count) columns")
                }
                continue
            }
            guard fields.count == 1 + 2 * Landmarks68.count else {
                throw LandmarkError(path, lineNo, "expected 137 fields (image and 68 x, y pairs), found \(fields.count)")
            }
            var p = [Double](repeating: 0, count: 2 * Landmarks68.count)
            for i in 0..<p.count {
                guard let v = Double(fields[i + 1]), v.isFinite else {
                    throw LandmarkError(path, lineNo, "column \(i + 2) ('\(fields[i + 1])') is not a finite number")
                }
                p[i] = v
            }
            let name = String(fields[0])
            guard !name.isEmpty, !name.contains("/"), name != ".", name != ".." else {
                throw LandmarkError(path, lineNo, "bad image name '\(name)' (a plain file name is expected)")
            }
            let image = ((hasImagesDir ? imagesDir : folder) as NSString).appendingPathComponent(name)
            set.images.append(image)
            set.keypoints.append(Landmarks68.kaggleKeypoints(p))
            set.persons.append(LandmarkSet.person(of: name))
            set.origins.append("\(path):\(lineNo)")
        }
        guard set.count > 0 else { throw LandmarkError(path, nil, "no landmark records") }
        return set
    }

    /// A folder of images, each with `NAME.pts` (iBUG: `version: 1`, `n_points: 68`, `{`, 68 lines "x y", `}`).
    /// iBUG's coordinates are 1-based pixel centres (Matlab), so 0.5 is subtracted to reach ours (centre of
    /// pixel k at k + 0.5).
    public static func readPtsFolder(_ folder: String) throws -> LandmarkSet {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
        var set = LandmarkSet(images: [], keypoints: [], persons: [], origins: [])
        for name in names.sorted() where name.hasSuffix(".pts") && !name.hasPrefix(".") {
            let stem = String(name.dropLast(4))
            guard let image = ["png", "jpg", "jpeg", "PNG", "JPG", "JPEG"].lazy
                .map({ (folder as NSString).appendingPathComponent("\(stem).\($0)") })
                .first(where: { FileManager.default.fileExists(atPath: $0) }) else {
                throw LandmarkError((folder as NSString).appendingPathComponent(name), nil, "no image of the same name (.png or .jpg)")
            }
            let ptsPath = (folder as NSString).appendingPathComponent(name)
            let p = try readPts(ptsPath)
            set.images.append(image)
            set.keypoints.append(Landmarks68.kaggleKeypoints(p.map { $0 - 0.5 }))
            set.persons.append(LandmarkSet.person(of: image))
            set.origins.append(ptsPath)
        }
        guard set.count > 0 else { throw LandmarkError(folder, nil, "no keypoints.csv and no .pts files") }
        return set
    }

    /// The 136 values of one iBUG .pts file.
    public static func readPts(_ path: String) throws -> [Double] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { throw LandmarkError(path, nil, "cannot read") }
        var values: [Double] = []
        var inside = false
        for (i, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespacesAndNewlines)
            if line == "{" { inside = true; continue }
            if line == "}" { inside = false; continue }
            guard inside, !line.isEmpty else { continue }
            let parts = line.split(separator: " ")
            guard parts.count == 2, let x = Double(parts[0]), let y = Double(parts[1]), x.isFinite, y.isFinite else {
                throw LandmarkError(path, i + 1, "expected 'x y', found '\(line)'")
            }
            values += [x, y]
        }
        guard values.count == 2 * Landmarks68.count else {
            throw LandmarkError(path, nil, "expected 68 points, found \(values.count / 2)")
        }
        return values
    }
}
