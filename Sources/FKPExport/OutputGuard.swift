import FKPTensor
import Foundation

/// The checks every command that writes makes before it writes: no empty path, never onto an input
/// (also not through a symlink), never onto a device or other special file, output names that cannot
/// collide, and no stale temporary files from killed runs.
public struct OutputGuard: Sendable {
    /// The inputs, resolved through symlinks.
    let inputs: Set<String>

    public init(inputs: [String]) {
        self.inputs = Set(inputs.filter { $0 != "-" }.map(Self.resolved))
    }

    static func resolved(_ path: String) -> String {
        URL(fileURLWithPath: path).standardizedFileURL.resolvingSymlinksInPath().path
    }

    /// Why `path` must not be written, or nil when it may.
    public func refusal(file path: String, option: String = "-o") -> String? {
        if path.isEmpty { return "\(option) \"\": give a file name" }
        if inputs.contains(Self.resolved(path)) {
            var link = false
            if let type = try? FileManager.default.attributesOfItem(atPath: path)[.type] as? FileAttributeType {
                link = type == .typeSymbolicLink
            }
            return "\(path): would overwrite an input\(link ? " (it is a symlink to one)" : ""); refusing to overwrite it"
        }
        var st = stat()
        if stat(path, &st) == 0 {
            let kind = st.st_mode & S_IFMT
            if kind == S_IFDIR { return "\(path) is a folder, not a file" }
            if kind != S_IFREG { return "\(path) is a device or other special file; refusing to write to it" }
        }
        return nil
    }

    /// Throws a set-up error when `path` must not be written, or cannot be: its folder must exist now
    /// (and be writable), so that a missing folder is found before the work, not after it.
    public func check(file path: String, option: String = "-o") throws {
        if let r = refusal(file: path, option: option) { throw FKPError.setup(r) }
        let parent = URL(fileURLWithPath: path).deletingLastPathComponent().path
        var isDir: ObjCBool = false
        if !FileManager.default.fileExists(atPath: parent, isDirectory: &isDir) {
            throw FKPError.setup("\(path): the folder \(parent) does not exist; create it first")
        }
        if !isDir.boolValue { throw FKPError.setup("\(path): \(parent) is not a folder") }
        if access(parent, W_OK) != 0 {
            throw FKPError.setup("\(path): cannot write into \(parent): \(String(cString: strerror(errno)))")
        }
    }

    /// An output folder: not empty, not an existing file; created when missing.
    public func prepare(folder path: String, option: String = "-o") throws {
        if path.isEmpty { throw FKPError.setup("\(option) \"\": give a folder") }
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDir), !isDir.boolValue {
            throw FKPError.setup("\(option) \(path) is a file; annotated images go into a folder")
        }
        do { try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true) } catch {
            throw FKPError.setup("\(path): cannot create the folder: \(ioErrorText(error))")
        }
    }

    /// Removes the hidden temporary files (`.name.tmp-PID-N`, see writeFileAtomically) that killed runs
    /// left under `folder`. Kept: those of a process still running here (another shard), and those
    /// modified in the last `minimumAge` seconds, which may belong to a shard on another machine writing
    /// into the same shared folder (its PID means nothing here); a write takes well under a minute, so
    /// an older one is left over. Returns how many were removed.
    @discardableResult
    public static func removeStaleTemporaries(in folder: String, minimumAge: TimeInterval = 60) -> Int {
        guard let e = FileManager.default.enumerator(atPath: folder) else { return 0 }
        var removed = 0
        for case let rel as String in e {
            let name = (rel as NSString).lastPathComponent
            guard name.hasPrefix("."), let r = name.range(of: ".tmp-", options: .backwards) else { continue }
            let parts = name[r.upperBound...].split(separator: "-")
            guard parts.count == 2, let pid = Int32(parts[0]), UInt32(parts[1]) != nil else { continue }
            if kill(pid, 0) == 0 || errno == EPERM { continue }  // its writer is still running
            let path = (folder as NSString).appendingPathComponent(rel)
            guard let modified = (try? FileManager.default.attributesOfItem(atPath: path))?[.modificationDate] as? Date,
                  Date().timeIntervalSince(modified) >= minimumAge else { continue }  // may be another machine's
            if (try? FileManager.default.removeItem(atPath: path)) != nil { removed += 1 }
        }
        return removed
    }

    /// Output names for inputs that share a folder: `stem.ext` for each relative path. Names that would
    /// collide (d1/x.png and d2/x.png given as two folders, or y.png and y.jpg side by side) follow one
    /// rule: the first input in order keeps the name, later ones get `stem-2.ext`, `stem-3.ext`, ...
    /// (each reported in `renamed`). Case-insensitive, so the names also stay apart on macOS.
    public static func uniqueNames(_ relatives: [String], ext: String) -> (names: [String], renamed: [(from: String, to: String)]) {
        var taken = Set<String>(), names: [String] = [], renamed: [(String, String)] = []
        for rel in relatives {
            let stem = (rel as NSString).deletingPathExtension
            var name = stem + "." + ext, n = 2
            while taken.contains(name.lowercased()) {
                name = "\(stem)-\(n).\(ext)"
                n += 1
            }
            if n > 2 { renamed.append((stem + "." + ext, name)) }
            taken.insert(name.lowercased())
            names.append(name)
        }
        return (names, renamed)
    }
}
