import Dispatch
import CJPEG
import FKPTensor
import Foundation

/// JPEG files through libjpeg-turbo's TurboJPEG API, which reports every failure as a return code plus
/// `tjGetErrorStr2` (libjpeg's longjmp stays inside the library), so corrupt, truncated or non-JPEG files
/// become thrown `ImageError`s naming the file, never crashes.
///
/// - The size in the header is checked against `maxPixels` before any pixel buffer is allocated.
/// - EXIF orientation (tag 0x0112 of IFD0 in the APP1 "Exif" segment, either byte order) is applied, so
///   the picture comes out as a viewer shows it; values 2...8 mirror/rotate, 1 or none leave it as stored.
/// - Grey JPEGs come out with R = G = B. CMYK and YCCK JPEGs (Photoshop, print workflows) are decoded
///   to CMYK and converted with the Adobe convention TurboJPEG uses (stored values inverted:
///   R = C * K / 255); no colour management.
/// - Decoder *warnings* (libjpeg's recoverable corruption, e.g. stray bytes before a marker or a bad
///   Huffman code) decode anyway and are always reported through `onWarning` (stderr by default), naming
///   the file; "Premature end of JPEG file" is an error: a truncated file is not a half-grey picture.
/// - Decompression bombs: besides `maxPixels`, a file may declare at most `maxPixelsPerByte` pixels per
///   byte of file (at least 2^20 pixels): ordinary JPEGs compress below ~300 pixels per byte, and a tiny
///   file announcing a huge frame is refused before the pixel buffer is allocated.
public enum JPEGCodec {
    public static let maxPixelsPerByte = 4096

    /// Writes a decoder warning on stderr.
    public static let warnOnStderr: @Sendable (String) -> Void = { message in
        FileHandle.standardError.write(Data(("warning: " + message + "\n").utf8))
    }

    /// Decoded 8-bit RGB, EXIF orientation applied.
    public static func readRGB(path: String, maxPixels: Int = 100_000_000,
                               onWarning: (String) -> Void = warnOnStderr) throws -> RGBImage {
        let data = try ImageFile.contents(of: path)
        return try decodeRGB(data, name: path, maxPixels: maxPixels, onWarning: onWarning)
    }

    /// The same from JPEG bytes held in memory; `name` is used in error messages.
    public static func decodeRGB(_ data: Data, name: String, maxPixels: Int = 100_000_000,
                                 onWarning: (String) -> Void = warnOnStderr) throws -> RGBImage {
        guard data.count >= 4 else { throw ImageError.unreadable(path: name, reason: "JPEG: file too short (\(data.count) bytes)") }
        guard data.count <= Int(UInt32.max) else { throw ImageError.unreadable(path: name, reason: "JPEG: file larger than 4 GiB") }
        guard let handle = tjInitDecompress() else {
            throw ImageError.unreadable(path: name, reason: "JPEG: cannot create a TurboJPEG decompressor")
        }
        defer { tjDestroy(handle) }
        return try data.withUnsafeBytes { raw -> RGBImage in
            let buf = raw.bindMemory(to: UInt8.self)
            let size = UInt(buf.count)
            var w: Int32 = 0, h: Int32 = 0, subsamp: Int32 = 0, colorspace: Int32 = 0
            guard tjDecompressHeader3(handle, buf.baseAddress, size, &w, &h, &subsamp, &colorspace) == 0 else {
                throw ImageError.unreadable(path: name, reason: "JPEG: " + errorString(handle))
            }
            let (width, height) = (Int(w), Int(h))
            guard width > 0, height > 0 else {
                throw ImageError.unreadable(path: name, reason: "JPEG: invalid size \(width)x\(height)")
            }
            guard width.multipliedReportingOverflow(by: height).overflow == false, width * height <= maxPixels else {
                throw ImageError.tooLarge(path: name, width: width, height: height, limit: maxPixels)
            }
            guard width * height <= max(1 << 20, maxPixelsPerByte * buf.count) else {
                throw ImageError.unreadable(path: name, reason: "JPEG: declares \(width)x\(height) pixels in a file of "
                    + "\(buf.count) bytes (more than \(maxPixelsPerByte) pixels per byte: a decompression bomb or a truncated file)")
            }
            let cmyk = colorspace == Int32(TJCS_CMYK.rawValue) || colorspace == Int32(TJCS_YCCK.rawValue)
            let channels = cmyk ? 4 : 3
            var pixels = [UInt8](repeating: 0, count: channels * width * height)
            let format = cmyk ? TJPF_CMYK : TJPF_RGB
            let rc = pixels.withUnsafeMutableBufferPointer { dst in
                tjDecompress2(handle, buf.baseAddress, size, dst.baseAddress, w, 0, h, Int32(format.rawValue), 0)
            }
            if rc != 0 {
                let message = errorString(handle)
                let isWarning = tjGetErrorCode(handle) == Int32(TJERR_WARNING.rawValue)
                if !isWarning || message.contains("Premature end") {
                    throw ImageError.unreadable(path: name, reason: "JPEG: " + message)
                }
                onWarning("\(name): JPEG: \(message) (corrupt data; decoded anyway)")
            }
            if cmyk { pixels = rgb(fromInvertedCMYK: pixels) }
            let image = RGBImage(width: width, height: height, pixels: pixels)
            let orientation = exifOrientation(UnsafeRawBufferPointer(raw)) ?? 1
            return oriented(image, orientation)
        }
    }

    /// Encodes 8-bit RGB as a baseline JPEG (for tests and tools; quality 1...100).
    public static func encodeRGB(_ image: RGBImage, quality: Int = 95, subsampling444: Bool = true) throws -> Data {
        guard image.width > 0, image.height > 0, image.pixels.count == 3 * image.width * image.height,
              image.width <= 65_500, image.height <= 65_500 else {
            throw ImageError.writeFailed(path: "<memory>", reason: "JPEG: bad image size \(image.width)x\(image.height)")
        }
        return try compress(image.pixels, width: image.width, height: image.height, format: TJPF_RGB,
                            subsampling: subsampling444 ? TJSAMP_444 : TJSAMP_420, quality: quality)
    }

    /// Adobe-convention CMYK (as stored by Photoshop and TurboJPEG: 255 = no ink) to RGB.
    static func rgb(fromInvertedCMYK p: [UInt8]) -> [UInt8] {
        let n = p.count / 4
        return [UInt8](unsafeUninitializedCapacity: 3 * n) { out, count in
            for i in 0..<n {
                let k = UInt32(p[4 * i + 3])
                for c in 0..<3 { out[3 * i + c] = UInt8((UInt32(p[4 * i + c]) * k + 127) / 255) }
            }
            count = 3 * n
        }
    }

    /// Encodes CMYK pixels (Adobe convention, 4 bytes a pixel) as a YCCK JPEG: for tests of the CMYK path.
    static func encodeCMYK(width: Int, height: Int, pixels: [UInt8], quality: Int = 95) throws -> Data {
        try compress(pixels, width: width, height: height, format: TJPF_CMYK, subsampling: TJSAMP_444, quality: quality)
    }

    /// One TurboJPEG compression of packed pixels in `format`.
    static func compress(_ pixels: [UInt8], width: Int, height: Int, format: TJPF, subsampling: TJSAMP, quality: Int) throws -> Data {
        guard let handle = tjInitCompress() else {
            throw ImageError.writeFailed(path: "<memory>", reason: "JPEG: cannot create a TurboJPEG compressor")
        }
        defer { tjDestroy(handle) }
        var out: UnsafeMutablePointer<UInt8>? = nil
        var outSize: UInt = 0
        defer { if let out { tjFree(out) } }
        let rc = pixels.withUnsafeBufferPointer { src in
            tjCompress2(handle, src.baseAddress, Int32(width), 0, Int32(height), Int32(format.rawValue),
                        &out, &outSize, Int32(subsampling.rawValue), Int32(max(1, min(100, quality))), 0)
        }
        guard rc == 0, let out else { throw ImageError.writeFailed(path: "<memory>", reason: "JPEG: " + errorString(handle)) }
        return Data(bytes: out, count: Int(outSize))
    }

    static func errorString(_ handle: tjhandle) -> String {
        guard let s = tjGetErrorStr2(handle) else { return "unknown TurboJPEG error" }
        let m = String(cString: s)
        return m.isEmpty ? "unknown TurboJPEG error" : m
    }

    // MARK: - EXIF orientation

    /// The orientation tag (0x0112) of the first APP1 "Exif" segment's IFD0, if present and valid (1...8).
    /// Walks the marker segments from SOI up to the first SOS; every read is bounds-checked.
    static func exifOrientation(_ bytes: UnsafeRawBufferPointer) -> Int? {
        let n = bytes.count
        guard n >= 4, bytes[0] == 0xFF, bytes[1] == 0xD8 else { return nil }
        var i = 2
        while i + 4 <= n {
            guard bytes[i] == 0xFF else { return nil }
            var marker = bytes[i + 1]
            // Fill bytes (0xFF 0xFF ...) before a marker.
            while marker == 0xFF && i + 2 < n { i += 1; marker = bytes[i + 1] }
            if marker == 0xDA || marker == 0xD9 { return nil } // start of scan / end of image
            if marker == 0x01 || (0xD0...0xD7).contains(marker) { i += 2; continue } // no length
            guard i + 4 <= n else { return nil }
            let length = Int(bytes[i + 2]) << 8 | Int(bytes[i + 3])
            guard length >= 2, i + 2 + length <= n else { return nil }
            let seg = i + 4, segEnd = i + 2 + length
            if marker == 0xE1, segEnd - seg >= 6,
               bytes[seg] == 0x45, bytes[seg + 1] == 0x78, bytes[seg + 2] == 0x69, bytes[seg + 3] == 0x66,
               bytes[seg + 4] == 0, bytes[seg + 5] == 0 {
                return tiffOrientation(UnsafeRawBufferPointer(rebasing: bytes[(seg + 6)..<segEnd]))
            }
            i = segEnd
        }
        return nil
    }

    /// Orientation from a TIFF structure ("II*\0" little-endian or "MM\0*" big-endian).
    static func tiffOrientation(_ t: UnsafeRawBufferPointer) -> Int? {
        guard t.count >= 8 else { return nil }
        let little: Bool
        if t[0] == 0x49 && t[1] == 0x49 { little = true } else if t[0] == 0x4D && t[1] == 0x4D { little = false } else { return nil }
        func u16(_ o: Int) -> Int? {
            guard o >= 0, o + 2 <= t.count else { return nil }
            return little ? Int(t[o]) | Int(t[o + 1]) << 8 : Int(t[o]) << 8 | Int(t[o + 1])
        }
        func u32(_ o: Int) -> Int? {
            guard o >= 0, o + 4 <= t.count else { return nil }
            let b = (Int(t[o]), Int(t[o + 1]), Int(t[o + 2]), Int(t[o + 3]))
            return little ? b.0 | b.1 << 8 | b.2 << 16 | b.3 << 24 : b.0 << 24 | b.1 << 16 | b.2 << 8 | b.3
        }
        guard u16(2) == 42, let ifd = u32(4), let count = u16(ifd) else { return nil }
        for k in 0..<count {
            let e = ifd + 2 + 12 * k
            guard let tag = u16(e), let type = u16(e + 2) else { return nil }
            if tag == 0x0112 {
                // SHORT (3), count 1: the value sits in the first two bytes of the value field.
                guard type == 3, let v = u16(e + 8), (1...8).contains(v) else { return nil }
                return v
            }
        }
        return nil
    }

    /// The picture as displayed for EXIF orientation `o` (1...8); stored pixel S(x, y), displayed D(x, y):
    /// 2 mirror: S(w-1-x, y); 3 rotate 180: S(w-1-x, h-1-y); 4 flip: S(x, h-1-y); 5 transpose: S(y, x);
    /// 6 rotate 90° clockwise: S(y, h-1-x); 7 transverse: S(w-1-y, h-1-x); 8 rotate 90° counter-clockwise:
    /// S(w-1-y, x). Orientations 5...8 swap width and height.
    public static func oriented(_ img: RGBImage, _ o: Int) -> RGBImage {
        guard (2...8).contains(o) else { return img }
        let (w, h) = (img.width, img.height)
        let swaps = o >= 5
        let (dw, dh) = swaps ? (h, w) : (w, h)
        var out = [UInt8](repeating: 0, count: img.pixels.count)
        img.pixels.withUnsafeBufferPointer { s in
            out.withUnsafeMutableBufferPointer { d in
                for y in 0..<dh {
                    for x in 0..<dw {
                        let sx: Int, sy: Int
                        switch o {
                        case 2: (sx, sy) = (w - 1 - x, y)
                        case 3: (sx, sy) = (w - 1 - x, h - 1 - y)
                        case 4: (sx, sy) = (x, h - 1 - y)
                        case 5: (sx, sy) = (y, x)
                        case 6: (sx, sy) = (y, h - 1 - x)
                        case 7: (sx, sy) = (w - 1 - y, h - 1 - x)
                        default: (sx, sy) = (w - 1 - y, x)
                        }
                        let si = 3 * (sy * w + sx), di = 3 * (y * dw + x)
                        d[di] = s[si]; d[di + 1] = s[si + 1]; d[di + 2] = s[si + 2]
                    }
                }
            }
        }
        return RGBImage(width: dw, height: dh, pixels: out)
    }
}

/// Any supported picture file, by its content (magic bytes), not its name.
public enum ImageFile {
    public enum Format: Equatable, Sendable { case png, jpeg }

    /// PNG (89 50 4E 47 0D 0A 1A 0A) or JPEG (FF D8 FF); nil for anything else.
    public static func sniff(_ data: Data) -> Format? {
        let png: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
        if data.count >= 8 && data.prefix(8).elementsEqual(png) { return .png }
        if data.count >= 3 && data.prefix(3).elementsEqual([0xFF, 0xD8, 0xFF]) { return .jpeg }
        return nil
    }

    /// 8-bit RGB from a PNG or JPEG file (JPEG with EXIF orientation applied); other content is an
    /// `ImageError.unreadable` naming the file.
    public static func readRGB(path: String, maxPixels: Int = 100_000_000) throws -> RGBImage {
        let data = try contents(of: path)
        switch sniff(data) {
        case .png: return try PNGCodec.decodeRGB(data, name: path, maxPixels: maxPixels)
        case .jpeg: return try JPEGCodec.decodeRGB(data, name: path, maxPixels: maxPixels)
        case nil:
            let head = data.prefix(8).map { String(format: "%02x", $0) }.joined(separator: " ")
            throw ImageError.unreadable(path: path, reason: data.isEmpty ? "empty file"
                : "not a PNG or JPEG file (starts with \(head))")
        }
    }

    /// The failure of `readGray(paths:)`: the first failing file in input order, and why.
    public struct ListError: Error, CustomStringConvertible {
        public let index: Int
        public let error: Error
        public var description: String { "\(error)" }
    }

    /// Grey (BT.601 luma, 0...255) of many PNG or JPEG files, decoded on every core; throws the first
    /// failure in input order as a ListError.
    public static func readGray(paths: [String]) throws -> [GrayImage] {
        var images = [GrayImage?](repeating: nil, count: paths.count)
        var errors = [Error?](repeating: nil, count: paths.count)
        let lock = NSLock()
        DispatchQueue.concurrentPerform(iterations: paths.count) { i in
            do {
                let g = PNGCodec.gray(try readRGB(path: paths[i]))
                lock.lock(); images[i] = g; lock.unlock()
            } catch { lock.lock(); errors[i] = error; lock.unlock() }
        }
        if let i = errors.firstIndex(where: { $0 != nil }) { throw ListError(index: i, error: errors[i]!) }
        return images.map { $0! }
    }

    static func contents(of path: String) throws -> Data {
        try requireRegularFile(path)
        do {
            return try Data(contentsOf: URL(fileURLWithPath: path), options: .mappedIfSafe)
        } catch {
            throw ImageError.unreadable(path: path, reason: "cannot read: \(ioErrorText(error))")
        }
    }

    /// The rule: only regular files (or symlinks to them) are read as images. A FIFO, socket or device
    /// could block forever or never end, so it is refused by stat(2) before anything opens it.
    public static func requireRegularFile(_ path: String) throws {
        var st = stat()
        guard stat(path, &st) == 0 else {
            throw ImageError.unreadable(path: path, reason: errno == ENOENT ? "no such file" : String(cString: strerror(errno)))
        }
        switch st.st_mode & S_IFMT {
        case S_IFREG: return
        case S_IFDIR: throw ImageError.unreadable(path: path, reason: "is a directory")
        case S_IFIFO: throw ImageError.unreadable(path: path, reason: "is a FIFO (named pipe), not a regular file")
        default: throw ImageError.unreadable(path: path, reason: "is not a regular file (a device or socket)")
        }
    }
}
