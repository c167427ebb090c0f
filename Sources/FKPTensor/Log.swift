import Foundation

/// The one logger: stderr, so stdout carries only data. Every layer may log; none prints otherwise.
public enum Log {
    public static func info(_ s: String) { FileHandle.standardError.write(Data((s + "\n").utf8)) }
    public static func warn(_ s: String) { info("warning: " + s) }
    public static func error(_ s: String) { info("error: " + s) }
}

/// A progress bar with an ETA, on stderr and only when stderr is a terminal.
public final class ProgressLine {
    let enabled = isatty(2) == 1
    let totalEpochs: Int
    var epochSeconds: [Double] = []
    var shown = false
    public init(totalEpochs: Int) { self.totalEpochs = totalEpochs }

    public func batch(_ done: Int, of total: Int, epoch: Int) {
        guard enabled else { return }
        let width = 30, filled = width * done / max(total, 1)
        var eta = ""
        if !epochSeconds.isEmpty {
            let per = epochSeconds.suffix(5).reduce(0, +) / Double(min(epochSeconds.count, 5))
            eta = "  ETA " + formatDuration(per * Double(totalEpochs - epoch + 1) - per * Double(done) / Double(max(total, 1)))
        }
        let line = "\r  epoch \(epoch)/\(totalEpochs) [\(String(repeating: "#", count: filled))\(String(repeating: ".", count: width - filled))] \(done)/\(total)\(eta)\u{1B}[K"
        FileHandle.standardError.write(Data(line.utf8))
        shown = true
    }

    public func epochDone(_ epoch: Int, seconds: Double) { epochSeconds.append(seconds) }

    /// For a stream of items (annotate): done/total, rate and ETA.
    public func items(_ done: Int, of total: Int, noun: String, since start: Date) {
        guard enabled, done > 0 else { return }
        let elapsed = Date().timeIntervalSince(start), rate = Double(done) / max(elapsed, 1e-9)
        let width = 30, filled = width * done / max(total, 1)
        let line = String(format: "\r  [%@%@] %d/%d %@, %.1f/s, ETA %@\u{1B}[K", String(repeating: "#", count: filled),
                          String(repeating: ".", count: width - filled), done, total, noun, rate,
                          formatDuration(Double(total - done) / max(rate, 1e-9)))
        FileHandle.standardError.write(Data(line.utf8))
        shown = true
    }

    public func clear() {
        guard enabled, shown else { return }
        FileHandle.standardError.write(Data("\r\u{1B}[K".utf8))
        shown = false
    }
}

public func formatDuration(_ s: Double) -> String {
    let t = Int(max(s, 0).rounded())
    return t >= 3600 ? "\(t / 3600)h\(t % 3600 / 60)m" : t >= 60 ? "\(t / 60)m\(t % 60)s" : "\(t)s"
}

/// The first line of an error's text (OpenCL errors can carry a build log).
public func firstLine(_ error: Error) -> String { "\(error)".split(separator: "\n").first.map(String.init) ?? "\(error)" }

/// The one error type of a run: a message for the user, logged once by the CLI, and the exit code
/// (1: some inputs failed or the run failed midway; 2: a usage or set-up error found before any work).
public struct FKPError: Error, CustomStringConvertible {
    public let description: String
    public let exitCode: Int32
    public init(_ message: String, exitCode: Int32 = 2) { self.description = message; self.exitCode = exitCode }
    public static func setup(_ message: String) -> FKPError { FKPError(message, exitCode: 2) }
    public static func failed(_ message: String) -> FKPError { FKPError(message, exitCode: 1) }
}

/// A file or system error as a short text for a message that already names the file: the POSIX reason
/// ("No such file or directory", "Permission denied", "No space left on device") where Foundation has
/// one, never Foundation's "The operation could not be completed" sentence or an NSError dump.
public func ioErrorText(_ error: Error) -> String {
    if let e = error as? AtomicWriteError { return e.reason }
    let ns = error as NSError
    if ns.domain == NSPOSIXErrorDomain { return String(cString: strerror(Int32(ns.code))) }
    if let underlying = ns.userInfo[NSUnderlyingErrorKey] as? NSError, underlying.domain == NSPOSIXErrorDomain {
        return String(cString: strerror(Int32(underlying.code)))
    }
    if ns.domain == NSCocoaErrorDomain {
        switch CocoaError.Code(rawValue: ns.code) {
        case .fileNoSuchFile, .fileReadNoSuchFile: return String(cString: strerror(ENOENT))
        case .fileReadNoPermission, .fileWriteNoPermission: return String(cString: strerror(EACCES))
        case .fileWriteOutOfSpace: return String(cString: strerror(ENOSPC))
        case .fileWriteVolumeReadOnly: return String(cString: strerror(EROFS))
        case .fileWriteFileExists: return String(cString: strerror(EEXIST))
        default: break
        }
        let text = ns.localizedDescription
        for prefix in ["The operation could not be completed. ", "The operation couldn’t be completed. "] where text.hasPrefix(prefix) {
            return String(text.dropFirst(prefix.count))
        }
        return text
    }
    return "\(error)"
}
