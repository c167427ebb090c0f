import Foundation

/// Writes `data` to a temporary file in the destination's folder, then rename(2)s it over `path`:
/// readers see the old file or the whole new one, never half a file. The temporary file is removed on
/// failure.
public func writeFileAtomically(_ data: Data, to path: String) throws {
    let url = URL(fileURLWithPath: path)
    let tmp = url.deletingLastPathComponent()
        .appendingPathComponent(".\(url.lastPathComponent).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
    do {
        try data.write(to: tmp, options: .withoutOverwriting)
        guard rename(tmp.path, url.path) == 0 else {
            let reason = String(cString: strerror(errno))
            throw AtomicWriteError(path: path, reason: "rename: \(reason)")
        }
    } catch let e as AtomicWriteError {
        try? FileManager.default.removeItem(at: tmp)
        throw e
    } catch {
        try? FileManager.default.removeItem(at: tmp)
        throw AtomicWriteError(path: path, reason: ioErrorText(error))
    }
}

/// The size in bytes of the file at `path`, 0 when it cannot be read (for reports after writing).
public func fileSize(atPath path: String) -> Int {
    (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
}

/// A failed `writeFileAtomically`: the target and the system's reason ("No such file or directory",
/// "No space left on device"); `ioErrorText` of it is the reason alone, for messages that name the file.
public struct AtomicWriteError: Error, CustomStringConvertible {
    public let path: String
    public let reason: String
    public var description: String { "\(path): cannot write: \(reason)" }
}
