import FKPTensor
import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif

/// Why a cascade file could not be loaded; every case names the file.
public enum CascadeError: Error, CustomStringConvertible, Equatable {
    /// Missing or unreadable file.
    case unreadable(path: String, reason: String)
    /// Not well-formed XML, or XML that is not an OpenCV cascade (missing or malformed elements).
    case invalid(path: String, reason: String)
    /// A valid cascade of a kind this detector does not evaluate (old format, LBP/HOG features, tilted
    /// Haar features, non-BOOST stages).
    case unsupported(path: String, reason: String)

    public var description: String {
        switch self {
        case let .unreadable(path, reason): return "\(path): cannot read cascade file: \(reason)"
        case let .invalid(path, reason): return "\(path): not a valid OpenCV Haar cascade: \(reason)"
        case let .unsupported(path, reason): return "\(path): unsupported cascade: \(reason)"
        }
    }
}

/// One rectangle of a Haar feature, in window coordinates, with its weight.
struct HaarRect: Equatable {
    var x: Int, y: Int, width: Int, height: Int
    var weight: Float
}

/// A Haar feature: 2 or 3 weighted rectangles (upright only; tilted features are rejected at load).
struct HaarFeature: Equatable {
    var rects: [HaarRect]
}

/// A node of a weak classifier's decision tree. `left`/`right` > 0: index of the next node (relative to
/// the tree's first node); <= 0: leaf number `-value` (OpenCV's encoding).
struct TreeNode: Equatable {
    var left: Int
    var right: Int
    var featureIndex: Int
    var threshold: Float
}

struct WeakClassifier: Equatable {
    var nodes: [TreeNode]
    var leaves: [Float]
}

struct Stage: Equatable {
    /// As in the file; the detector compares against `threshold - 1e-5` (OpenCV's THRESHOLD_EPS).
    var threshold: Float
    var weak: [WeakClassifier]
}

/// A trained Viola-Jones cascade in OpenCV's "new" XML format (`<cascade>` with `<stageType>BOOST`,
/// `<featureType>HAAR`), e.g. the files of Debian's opencv-data package. Parsed with Foundation's
/// `XMLParser`. Stump cascades and tree cascades (`haarcascade_frontalface_alt_tree.xml`) are both
/// evaluated; cascades with *tilted* (45°) features are rejected with `CascadeError.unsupported`
/// (frontalface_default/alt/alt2/alt_tree, profileface and eye have none). Immutable after `init`.
public final class HaarCascade: @unchecked Sendable {
    public static let defaultPath = "/usr/share/opencv4/haarcascades/haarcascade_frontalface_default.xml"
    /// OpenCV's profile-face cascade (faces turned to the image's left), from the same package.
    public static let profilePath = "/usr/share/opencv4/haarcascades/haarcascade_profileface.xml"
    /// OpenCV's second frontal cascade (Lienhart's "alt2", trees of two nodes), a second opinion on weak faces.
    public static let verifierPath = "/usr/share/opencv4/haarcascades/haarcascade_frontalface_alt2.xml"

    /// Offset of the first "<?" that is not the XML declaration at the start ("<?xml" and white space).
    static func processingInstruction(in data: Data) -> Int? {
        let bytes = [UInt8](data)
        let start = bytes.starts(with: [0xEF, 0xBB, 0xBF]) ? 3 : 0
        var i = start
        while i + 1 < bytes.count {
            if bytes[i] == 0x3C && bytes[i + 1] == 0x3F {  // "<?"
                let declaration = i == start && bytes.count > i + 5 && Array(bytes[(i + 2)..<(i + 5)]) == [0x78, 0x6D, 0x6C]
                    && [0x20, 0x09, 0x0A, 0x0D].contains(bytes[i + 5])
                if !declaration { return i }
            }
            i += 1
        }
        return nil
    }

    /// Offset of the first byte that is not part of valid UTF-8, nil for valid text.
    static func firstInvalidUTF8(_ data: Data) -> Int? {
        var decoder = UTF8()
        var it = data.makeIterator()
        var offset = 0, start = 0
        while true {
            switch decoder.decode(&it) {
            case .scalarValue(let u): start = offset + UTF8.width(u); offset = start
            case .emptyInput: return nil
            case .error: return start
            }
        }
    }

    /// The file it was read from.
    public let path: String
    let width: Int
    let height: Int
    let stages: [Stage]
    let features: [HaarFeature]
    /// Every weak classifier is a single node (OpenCV's stump fast path).
    let isStumpBased: Bool

    /// The training window (24x24 for frontalface_default).
    public var windowSize: (width: Int, height: Int) { (width, height) }
    public var stageCount: Int { stages.count }
    public var featureCount: Int { features.count }
    public var weakClassifierCount: Int { stages.reduce(0) { $0 + $1.weak.count } }

    public convenience init(contentsOf path: String) throws {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            let reason = FileManager.default.fileExists(atPath: path) ? ioErrorText(error) : "no such file"
            throw CascadeError.unreadable(path: path, reason: reason)
        }
        try self.init(data: data, path: path)
    }

    /// The cascade from XML bytes; `path` names it in errors.
    public init(data: Data, path: String) throws {
        self.path = path
        // Foundation's XMLParser traps on element names that are not valid UTF-8 (found by fuzzing), so
        // the rule is: a cascade is UTF-8 text (OpenCV writes ASCII), checked before parsing.
        if let bad = Self.firstInvalidUTF8(data) {
            throw CascadeError.invalid(path: path, reason: "not UTF-8 text (byte \(bad)); a cascade is ASCII XML")
        }
        // It also dereferences NULL for a processing instruction without data (found by fuzzing): none
        // but the leading <?xml ...?> declaration is accepted (OpenCV writes no others).
        if let pi = Self.processingInstruction(in: data) {
            throw CascadeError.invalid(path: path, reason: "processing instruction at byte \(pi) (only the <?xml ...?> declaration is read)")
        }
        let builder = CascadeXMLBuilder()
        let parser = XMLParser(data: data)
        parser.delegate = builder
        let ok = parser.parse()
        if let err = builder.error { throw err.error(path: path) }
        guard ok else {
            let e = parser.parserError as NSError?
            let msg = e.map { "XML error \($0.code) at line \(parser.lineNumber)" } ?? "XML parse failed"
            throw CascadeError.invalid(path: path, reason: msg)
        }
        let b = builder
        guard b.closedRoot else {
            throw CascadeError.invalid(path: path, reason: "XML document is truncated (<\(b.openElement ?? "?")> is never closed)")
        }
        guard b.sawCascadeRoot else {
            throw CascadeError.invalid(path: path, reason: "no <cascade> element under <opencv_storage>")
        }
        guard let stageType = b.stageType else { throw CascadeError.invalid(path: path, reason: "missing <stageType>") }
        guard stageType == "BOOST" else {
            throw CascadeError.unsupported(path: path, reason: "stageType \(stageType) (only BOOST is supported)")
        }
        guard let featureType = b.featureType else { throw CascadeError.invalid(path: path, reason: "missing <featureType>") }
        guard featureType == "HAAR" else {
            throw CascadeError.unsupported(path: path, reason: "featureType \(featureType) (only HAAR is supported)")
        }
        guard let w = b.width, let h = b.height, w > 2, h > 2, w <= 4096, h <= 4096 else {
            throw CascadeError.invalid(path: path, reason: "missing or bad <width>/<height>")
        }
        guard !b.stages.isEmpty else { throw CascadeError.invalid(path: path, reason: "no stages") }
        guard !b.features.isEmpty else { throw CascadeError.invalid(path: path, reason: "no features") }
        if b.tiltedCount > 0 {
            throw CascadeError.unsupported(path: path, reason:
                "\(b.tiltedCount) tilted (45°) Haar features; only upright features are implemented")
        }
        if let n = b.declaredStageCount, n != b.stages.count {
            throw CascadeError.invalid(path: path, reason: "<stageNum> says \(n) stages but \(b.stages.count) are present")
        }
        // Validate every reference so the hot loop can index without checks.
        for (fi, f) in b.features.enumerated() {
            guard (1...3).contains(f.rects.count) else {
                throw CascadeError.invalid(path: path, reason: "feature \(fi) has \(f.rects.count) rectangles (1 to 3 expected)")
            }
            // Written as subtractions: x + width overflows for widths near Int.max.
            for r in f.rects where r.x < 0 || r.y < 0 || r.width <= 0 || r.height <= 0 || r.width > w - r.x || r.height > h - r.y {
                throw CascadeError.invalid(path: path, reason: "feature \(fi) has a rectangle outside the \(w)x\(h) window")
            }
        }
        var stumps = true
        for (si, s) in b.stages.enumerated() {
            guard !s.weak.isEmpty else { throw CascadeError.invalid(path: path, reason: "stage \(si) has no weak classifiers") }
            for (wi, wc) in s.weak.enumerated() {
                let where_ = "stage \(si), weak classifier \(wi)"
                guard !wc.nodes.isEmpty, wc.leaves.count == wc.nodes.count + 1 else {
                    throw CascadeError.invalid(path: path, reason: "\(where_): \(wc.nodes.count) nodes and \(wc.leaves.count) leaves")
                }
                if wc.nodes.count > 1 { stumps = false }
                for n in wc.nodes {
                    guard n.featureIndex >= 0, n.featureIndex < b.features.count else {
                        throw CascadeError.invalid(path: path, reason: "\(where_): feature index \(n.featureIndex) out of range")
                    }
                    for c in [n.left, n.right] {
                        // -c traps for Int.min: compare without negating.
                        guard c > 0 ? c < wc.nodes.count : c > -wc.leaves.count else {
                            throw CascadeError.invalid(path: path, reason: "\(where_): bad child index \(c)")
                        }
                    }
                }
                if wc.nodes.count == 1 && !(wc.nodes[0].left == 0 && wc.nodes[0].right == -1) {
                    throw CascadeError.invalid(path: path, reason: "\(where_): a stump must have children 0 -1")
                }
                // Trees must not loop: children point forward.
                for (ni, n) in wc.nodes.enumerated() where (n.left > 0 && n.left <= ni) || (n.right > 0 && n.right <= ni) {
                    throw CascadeError.invalid(path: path, reason: "\(where_): tree node \(ni) points backwards")
                }
            }
        }
        width = w
        height = h
        stages = b.stages
        features = b.features
        isStumpBased = stumps
    }

    init(path: String, width: Int, height: Int, stages: [Stage], features: [HaarFeature], isStumpBased: Bool) {
        self.path = path; self.width = width; self.height = height
        self.stages = stages; self.features = features; self.isStumpBased = isStumpBased
    }

    /// The same cascade for the mirror image: every rectangle flipped about the window's vertical axis.
    /// Scanning an image with it finds what the cascade finds in the mirrored image (a profile cascade
    /// trained on faces turned one way finds those turned the other way), without mirroring the image.
    public func mirrored() -> HaarCascade {
        let flipped = features.map { f in
            HaarFeature(rects: f.rects.map { HaarRect(x: width - $0.x - $0.width, y: $0.y, width: $0.width, height: $0.height, weight: $0.weight) })
        }
        return HaarCascade(path: path + " (mirrored)", width: width, height: height, stages: stages, features: flipped,
                           isStumpBased: isStumpBased)
    }
}

/// SAX builder for the cascade XML. Paths are tracked by element names below the top-level node
/// (`opencv_storage` > `cascade`).
private final class CascadeXMLBuilder: NSObject, XMLParserDelegate {
    enum Failure {
        case invalid(String)
        case unsupported(String)
        func error(path: String) -> CascadeError {
            switch self {
            case let .invalid(r): return .invalid(path: path, reason: r)
            case let .unsupported(r): return .unsupported(path: path, reason: r)
            }
        }
    }

    var error: Failure?
    var sawCascadeRoot = false
    var stageType: String?
    var featureType: String?
    var width: Int?
    var height: Int?
    var declaredStageCount: Int?
    var stages: [Stage] = []
    var features: [HaarFeature] = []
    var tiltedCount = 0
    /// The root element's end tag was seen (XMLParser accepts a document cut short at end of input).
    var closedRoot = false
    /// The innermost open element, for the "truncated" message.
    var openElement: String? { stack.last }

    private var stack: [String] = []
    private var text = ""

    private func fail(_ f: Failure, _ parser: XMLParser) {
        if error == nil { error = f }
        parser.abortParsing()
    }

    func parser(_ parser: XMLParser, didStartElement name: String, namespaceURI: String?,
                qualifiedName: String?, attributes: [String: String] = [:]) {
        stack.append(name)
        text = ""
        let d = stack.count
        if d == 1 {
            if name != "opencv_storage" { fail(.invalid("root element is <\(name)>, not <opencv_storage>"), parser) }
            return
        }
        if d == 2 {
            if attributes["type_id"] == "opencv-haar-classifier" {
                fail(.unsupported("old-format cascade (<\(name) type_id=\"opencv-haar-classifier\">); "
                    + "only the new <cascade> format is supported"), parser)
                return
            }
            if name == "cascade" { sawCascadeRoot = true }
            return
        }
        guard sawCascadeRoot, stack[1] == "cascade" else { return }
        // stages/_ : a stage
        if d == 4, name == "_", stack[2] == "stages" {
            stages.append(Stage(threshold: .nan, weak: []))
        } else if d == 6, name == "_", stack[2] == "stages", stack[4] == "weakClassifiers", !stages.isEmpty {
            stages[stages.count - 1].weak.append(WeakClassifier(nodes: [], leaves: []))
        } else if d == 4, name == "_", stack[2] == "features" {
            features.append(HaarFeature(rects: []))
        }
    }

    func parser(_ parser: XMLParser, foundCharacters string: String) {
        text += string
    }

    func parser(_ parser: XMLParser, didEndElement name: String, namespaceURI: String?, qualifiedName: String?) {
        defer { stack.removeLast(); text = "" }
        let d = stack.count
        if d == 1 { closedRoot = true }
        guard d >= 3, sawCascadeRoot, stack[1] == "cascade" else { return }
        let t = text.trimmingCharacters(in: .whitespacesAndNewlines)
        switch (d, stack[2]) {
        case (3, _):
            switch name {
            case "stageType": stageType = t
            case "featureType": featureType = t
            case "width": width = Int(t); if width == nil { fail(.invalid("bad <width> \"\(t)\""), parser) }
            case "height": height = Int(t); if height == nil { fail(.invalid("bad <height> \"\(t)\""), parser) }
            case "stageNum": declaredStageCount = Int(t)
            default: break
            }
        case (5, "stages") where name == "stageThreshold":
            guard let v = Double(t), !stages.isEmpty else { fail(.invalid("bad <stageThreshold> \"\(t)\""), parser); return }
            stages[stages.count - 1].threshold = Float(v)
        case (7, "stages") where stack[4] == "weakClassifiers" && (name == "internalNodes" || name == "leafValues"):
            guard !stages.isEmpty, !stages[stages.count - 1].weak.isEmpty else { return }
            let tokens = t.split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == "\t" || $0 == "\r" })
            let si = stages.count - 1, wi = stages[si].weak.count - 1
            if name == "leafValues" {
                var leaves: [Float] = []
                for tok in tokens {
                    guard let v = Double(tok) else { fail(.invalid("stage \(si): bad leaf value \"\(tok)\""), parser); return }
                    leaves.append(Float(v))
                }
                stages[si].weak[wi].leaves = leaves
            } else {
                guard tokens.count % 4 == 0, !tokens.isEmpty else {
                    fail(.invalid("stage \(si): <internalNodes> has \(tokens.count) numbers, not 4 per node "
                        + "(categorical/LBP nodes are not supported)"), parser)
                    return
                }
                var nodes: [TreeNode] = []
                for k in stride(from: 0, to: tokens.count, by: 4) {
                    guard let l = Int(tokens[k]), let r = Int(tokens[k + 1]), let f = Int(tokens[k + 2]),
                          let th = Double(tokens[k + 3]) else {
                        fail(.invalid("stage \(si): bad <internalNodes> \"\(t)\""), parser)
                        return
                    }
                    nodes.append(TreeNode(left: l, right: r, featureIndex: f, threshold: Float(th)))
                }
                stages[si].weak[wi].nodes = nodes
            }
        case (6, "features") where name == "_" && stack[4] == "rects":
            guard !features.isEmpty else { return }
            let tokens = t.split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == "\t" || $0 == "\r" })
            guard tokens.count == 5, let x = Int(tokens[0]), let y = Int(tokens[1]), let w = Int(tokens[2]),
                  let h = Int(tokens[3]), let wt = Double(tokens[4]) else {
                fail(.invalid("feature \(features.count - 1): bad rectangle \"\(t)\" (expected \"x y w h weight\")"), parser)
                return
            }
            features[features.count - 1].rects.append(HaarRect(x: x, y: y, width: w, height: h, weight: Float(wt)))
        case (5, "features") where name == "tilted":
            if let v = Int(t), v != 0 { tiltedCount += 1 }
        default:
            break
        }
        if d == 4, name == "_", stack[2] == "stages", let s = stages.last, s.threshold.isNaN {
            fail(.invalid("stage \(stages.count - 1) has no <stageThreshold>"), parser)
        }
    }
}
