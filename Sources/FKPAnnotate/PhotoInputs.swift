import FKPExport
import FKPTensor
import Foundation

/// One photo to annotate: its path as the user spelled it, and where its annotated PNG goes (relative to
/// the output folder).
public struct PhotoInput: Sendable, Equatable {
    public var path: String
    public var output: String
    public init(path: String, output: String) { self.path = path; self.output = output }
}

/// Every N-th item starting with the K-th (1-based): N processes split a list with no overlap.
public struct Shard: Sendable, Equatable, CustomStringConvertible {
    public let k: Int
    public let n: Int

    /// "K/N" with 1 <= K <= N.
    public init?(_ text: String) {
        let p = text.split(separator: "/")
        guard p.count == 2, let k = Int(p[0]), let n = Int(p[1]), n >= 1, (1...n).contains(k) else { return nil }
        self.k = k; self.n = n
    }

    public func select<T>(_ items: [T]) -> [T] { items.enumerated().filter { $0.offset % n == k - 1 }.map(\.element) }
    public var description: String { "\(k)/\(n)" }
}

public enum PhotoInputs {
    /// Files, folders (walked recursively, sorted, hidden files skipped) and "-" (paths from stdin, one
    /// a line), in order; inputs that do not exist come back in `missing`. Output names are made unique
    /// over the whole list (before any shard is taken, so every shard agrees on them).
    public static func collect(_ inputs: [String], readLine: () -> String? = { Swift.readLine() }) -> (photos: [PhotoInput], missing: [String]) {
        var found: [(path: String, relative: String)] = [], missing: [String] = []
        for input in inputs {
            if input == "-" {
                while let line = readLine() {
                    let p = line.trimmingCharacters(in: .whitespaces)
                    if !p.isEmpty { found.append((p, URL(fileURLWithPath: p).lastPathComponent)) }
                }
                continue
            }
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: input, isDirectory: &isDir) else { missing.append(input); continue }
            if isDir.boolValue { found += listImages(in: input) } else { found.append((input, URL(fileURLWithPath: input).lastPathComponent)) }
        }
        let (names, renamed) = OutputGuard.uniqueNames(found.map(\.relative), ext: "png")
        for r in renamed {
            Log.warn("two inputs map to the output \(r.from); writing \(r.to) for the later one (the first in input order keeps the name)")
        }
        return (zip(found, names).map { PhotoInput(path: $0.path, output: $1) }, missing)
    }

    /// Image files under a folder, recursively, sorted, hidden files and folders skipped; each with its
    /// path relative to the folder.
    static func listImages(in folder: String) -> [(path: String, relative: String)] {
        let root = URL(fileURLWithPath: folder)
        guard let e = FileManager.default.enumerator(at: root, includingPropertiesForKeys: [.isRegularFileKey],
                                                     options: [.skipsHiddenFiles]) else { return [] }
        var out: [(String, String)] = []
        let exts: Set<String> = ["png", "jpg", "jpeg"]
        for case let url as URL in e where exts.contains(url.pathExtension.lowercased()) {
            let rel = String(url.standardizedFileURL.path.dropFirst(root.standardizedFileURL.path.count).drop { $0 == "/" })
            out.append(((folder as NSString).appendingPathComponent(rel), rel))  // the path as the user spelled it
        }
        return out.sorted { $0.1 < $1.1 }
    }
}
