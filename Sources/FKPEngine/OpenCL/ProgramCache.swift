import COpenCL
import Foundation

/// How one program of the backend was obtained, for the bench and the tests.
public struct OpenCLProgramBuild: Sendable {
    public enum Origin: String, Sendable {
        /// Built from source (no cache entry, or the cache is off).
        case source
        /// Loaded from a cached device binary.
        case cache
        /// A cache entry existed but was unreadable, corrupt or rejected by the driver: rebuilt from source.
        case rebuilt
    }
    public var file: String
    public var origin: Origin
    public var seconds: Double
}

/// Compiled program binaries on disk, one file per (source, options, device, driver). Entries are
/// written to a temporary file and renamed into place, so a reader never sees half an entry; every
/// entry carries its length and a checksum, and anything that does not check out is rebuilt.
struct ProgramCache {
    /// nil: no caching.
    let directory: String?

    /// FKP_KERNEL_CACHE, else $XDG_CACHE_HOME/fkp-batch/kernels, else ~/.cache/fkp-batch/kernels.
    static func defaultDirectory() -> String? {
        let env = ProcessInfo.processInfo.environment
        if let d = env["FKP_KERNEL_CACHE"], !d.isEmpty { return d }
        if let x = env["XDG_CACHE_HOME"], !x.isEmpty { return x + "/fkp-batch/kernels" }
        if let h = env["HOME"], !h.isEmpty { return h + "/.cache/fkp-batch/kernels" }
        return nil
    }

    static let magic = Array("FKPCLBIN1\n".utf8)

    static func key(_ parts: [String]) -> String {
        // Two independent 64-bit FNV-1a hashes of the parts (length-prefixed) make a 128-bit key.
        var h1: UInt64 = 0xcbf2_9ce4_8422_2325, h2: UInt64 = 0x6c62_272e_07bb_0142
        func feed(_ byte: UInt8) {
            h1 = (h1 ^ UInt64(byte)) &* 0x0000_0100_0000_01b3
            h2 = (h2 ^ UInt64(byte)) &* 0x0000_0100_0000_01b3 ^ (h2 >> 29)
        }
        for part in parts {
            let bytes = Array(part.utf8)
            withUnsafeBytes(of: UInt64(bytes.count).littleEndian) { for b in $0 { feed(b) } }
            for b in bytes { feed(b) }
        }
        return String(format: "%016llx%016llx", h1, h2)
    }

    static func checksum(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in bytes { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01b3 }
        return h
    }

    func path(file: String, key: String, suffix: String = "bin") -> String? {
        guard let directory else { return nil }
        let stem = file.hasSuffix(".cl") ? String(file.dropLast(3)) : file
        return "\(directory)/\(stem)-\(key).\(suffix)"
    }

    /// The cached binary, or nil when there is none; `corrupt` is set when an entry exists but is bad.
    func load(_ path: String, corrupt: inout Bool) -> [UInt8]? {
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        guard let data = FileManager.default.contents(atPath: path) else { corrupt = true; return nil }
        let bytes = [UInt8](data)
        let head = Self.magic.count
        guard bytes.count >= head + 16, Array(bytes[0..<head]) == Self.magic else { corrupt = true; return nil }
        func u64(_ at: Int) -> UInt64 {
            var v: UInt64 = 0
            for i in 0..<8 { v |= UInt64(bytes[at + i]) << (8 * UInt64(i)) }
            return v
        }
        let length = Int(truncatingIfNeeded: u64(head)), sum = u64(head + 8)
        let body = head + 16
        guard length > 0, bytes.count == body + length else { corrupt = true; return nil }
        let payload = Array(bytes[body...])
        guard payload.withUnsafeBytes({ Self.checksum($0) }) == sum else { corrupt = true; return nil }
        return payload
    }

    /// Writes an entry atomically; failures (read-only disk, no home) are ignored: the cache is an optimisation.
    func store(_ path: String, _ binary: [UInt8]) {
        guard directory != nil else { return }
        var out = Self.magic
        func put(_ v: UInt64) { for i in 0..<8 { out.append(UInt8(truncatingIfNeeded: v >> (8 * UInt64(i)))) } }
        put(UInt64(binary.count))
        put(binary.withUnsafeBytes { Self.checksum($0) })
        out += binary
        Self.writeAtomically(path, out)
    }

    /// Writes a file through a temporary file and a rename (readers never see half of it); failures
    /// are ignored, like every cache write.
    static func writeAtomically(_ path: String, _ bytes: [UInt8]) {
        let folder = (path as NSString).deletingLastPathComponent
        try? FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let tmp = "\(path).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        guard FileManager.default.createFile(atPath: tmp, contents: Data(bytes)) else { return }
        if rename(tmp, path) != 0 { unlink(tmp) }
    }
}
