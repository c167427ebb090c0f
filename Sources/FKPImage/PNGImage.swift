import CPNG
import FKPTensor
import Foundation

/// An 8-bit RGB picture.
public struct RGBImage: Sendable, Equatable {
    public var width: Int
    public var height: Int
    /// RGB interleaved, row-major: `3 * width * height` bytes.
    public var pixels: [UInt8]
    public init(width: Int, height: Int, pixels: [UInt8]) { self.width = width; self.height = height; self.pixels = pixels }
}

/// A grey picture with values in 0...255.
public struct GrayImage: Sendable, Equatable {
    public var width: Int
    public var height: Int
    /// 0...255, row-major: `width * height` values.
    public var pixels: [Float]
    public init(width: Int, height: Int, pixels: [Float]) { self.width = width; self.height = height; self.pixels = pixels }
}

/// Every case names the file it is about.
public enum ImageError: Error, CustomStringConvertible, Equatable {
    /// Missing, unreadable, not a PNG, corrupt or truncated; `reason` is libpng's message.
    case unreadable(path: String, reason: String)
    /// The header announces more than `limit` pixels; refused before any pixel buffer is allocated.
    case tooLarge(path: String, width: Int, height: Int, limit: Int)
    /// Bad arguments, encoder failure or I/O failure while writing.
    case writeFailed(path: String, reason: String)

    public var description: String {
        switch self {
        case let .unreadable(path, reason): return "\(path): cannot decode image: \(reason)"
        case let .tooLarge(path, w, h, limit):
            return "\(path): image is \(w)x\(h) = \(Self.megapixels(w * h)) megapixels, more than the limit of "
                + "\(Self.megapixels(limit)) megapixels (maxPixels = \(limit))"
        case let .writeFailed(path, reason): return "\(path): cannot write PNG: \(reason)"
        }
    }

    static func megapixels(_ n: Int) -> String {
        let mp = Double(n) / 1_000_000
        return mp >= 10 ? String(format: "%.0f", mp) : String(format: "%.6g", mp)
    }
}

/// PNG files through libpng's *simplified* API (png_image_*). libpng reports every error as a return
/// code plus `png_image.message`; it never longjmps across Swift frames, so corrupt, truncated or
/// non-PNG files become thrown `ImageError`s, never crashes.
///
/// Every flavour is accepted: 1/2/4/8/16-bit, grey, grey+alpha, RGB, RGBA, palette (with or without
/// tRNS), Adam7 interlaced. Choices:
/// - Alpha is *dropped*, not composited: a pixel's colour is the colour stored in the file whatever its
///   opacity (libpng is asked for an output format with alpha, so it does not blend, and the alpha
///   byte is then discarded).
/// - 16-bit files without gAMA/sRGB chunks are taken as sRGB-encoded like 8-bit ones (what image tools
///   write), so 16-bit value `v * 257` reads as 8-bit `v`; libpng's default would assume linear light
///   and apply a gamma curve on the way down to 8 bits.
/// - A file with a gAMA/sRGB/cHRM/iCCP chunk is converted by libpng to sRGB, as a viewer would show it.
public enum PNGCodec {
    public static let defaultMaxPixels = 100_000_000

    /// 8-bit RGB; alpha dropped (see above), grey replicated to R = G = B.
    public static func readRGB(path: String, maxPixels: Int = 100_000_000) throws -> RGBImage {
        try toRGB(decode(.file(path), name: path, maxPixels: maxPixels, colour: true))
    }

    /// The same, from a PNG held in memory; `name` is used in error messages.
    public static func decodeRGB(_ data: Data, name: String, maxPixels: Int = 100_000_000) throws -> RGBImage {
        try toRGB(decode(.memory(data), name: name, maxPixels: maxPixels, colour: true))
    }

    /// Grey as ITU-R BT.601 luma, 0.299 R + 0.587 G + 0.114 B of the 8-bit RGB values, computed here (not by
    /// libpng, whose colour-to-grey conversion uses other coefficients in linear light). A grey file is
    /// read as grey directly (its luma is its value), without an RGB buffer in between.
    public static func readGray(path: String, maxPixels: Int = 100_000_000) throws -> GrayImage {
        try toGray(decode(.file(path), name: path, maxPixels: maxPixels, colour: false))
    }

    /// The same, from a PNG held in memory; `name` is used in error messages.
    public static func decodeGray(_ data: Data, name: String, maxPixels: Int = 100_000_000) throws -> GrayImage {
        try toGray(decode(.memory(data), name: name, maxPixels: maxPixels, colour: false))
    }

    /// BT.601 luma of an RGB image.
    public static func gray(_ rgb: RGBImage) -> GrayImage {
        precondition(rgb.pixels.count == 3 * rgb.width * rgb.height, "RGBImage: pixel count does not match its size")
        return GrayImage(width: rgb.width, height: rgb.height, pixels: luma(rgb.pixels, channels: 3))
    }

    /// Writes an 8-bit RGB PNG atomically (temporary file in the same folder, then rename(2)).
    public static func writeRGB(_ img: RGBImage, path: String) throws {
        try write(width: img.width, height: img.height, format: png_uint_32(PNG_FORMAT_RGB), channels: 3,
                  pixels: img.pixels, path: path)
    }

    /// Writes an 8-bit grey PNG atomically (temporary file in the same folder, then rename(2)).
    public static func writeGray8(width: Int, height: Int, pixels: [UInt8], path: String) throws {
        try write(width: width, height: height, format: png_uint_32(PNG_FORMAT_GRAY), channels: 1,
                  pixels: pixels, path: path)
    }

    // MARK: - Decoding

    enum Source {
        case file(String)
        case memory(Data)
    }

    /// Decoded 8-bit samples: 1 (grey), 2 (grey+alpha), 3 (RGB) or 4 (RGBA) channels.
    struct Raw {
        var width: Int
        var height: Int
        var channels: Int
        var bytes: [UInt8]
    }

    /// `colour`: always produce RGB(A); otherwise grey files come out as grey(+alpha).
    static func decode(_ source: Source, name: String, maxPixels: Int, colour: Bool) throws -> Raw {
        var image = png_image()
        image.version = png_uint_32(PNG_IMAGE_VERSION)
        // png_image_free is a no-op once libpng has freed the image itself (on error or after finish_read).
        defer { png_image_free(&image) }

        switch source {
        case let .file(path):
            try ImageFile.requireRegularFile(path)
            guard png_image_begin_read_from_file(&image, path) != 0 else {
                throw ImageError.unreadable(path: name, reason: message(&image))
            }
            return try finish(&image, name: name, maxPixels: maxPixels, colour: colour)
        case let .memory(data):
            // libpng reads from the caller's bytes until finish_read, so both calls happen in here.
            return try data.withUnsafeBytes { raw in
                guard let base = raw.baseAddress, raw.count > 0 else {
                    throw ImageError.unreadable(path: name, reason: "empty data")
                }
                guard png_image_begin_read_from_memory(&image, base, raw.count) != 0 else {
                    throw ImageError.unreadable(path: name, reason: message(&image))
                }
                return try finish(&image, name: name, maxPixels: maxPixels, colour: colour)
            }
        }
    }

    /// After png_image_begin_read_*: check the size from the header, then allocate and decode.
    private static func finish(_ image: inout png_image, name: String, maxPixels: Int, colour: Bool) throws -> Raw {
        let (w, h) = (Int(image.width), Int(image.height))
        let fileFormat = image.format
        let isColour = fileFormat & png_uint_32(PNG_FORMAT_FLAG_COLOR) != 0
        let hasAlpha = fileFormat & png_uint_32(PNG_FORMAT_FLAG_ALPHA) != 0
        let rgb = colour || isColour
        let channels = (rgb ? 3 : 1) + (hasAlpha ? 1 : 0)
        // The header is all that has been read: refuse absurd sizes before allocating the pixel buffer.
        guard w > 0, h > 0, w <= maxPixels / h, w * channels <= Int(Int32.max) else {
            throw ImageError.tooLarge(path: name, width: w, height: h, limit: maxPixels)
        }
        // Output with alpha whenever the file has it: libpng then copies colours unblended and the
        // alpha byte is dropped afterwards. 8 bits per channel, no colour map.
        image.format = (rgb ? png_uint_32(PNG_FORMAT_RGB) : png_uint_32(PNG_FORMAT_GRAY))
            | (hasAlpha ? png_uint_32(PNG_FORMAT_FLAG_ALPHA) : 0)
        // Untagged 16-bit data is sRGB-encoded, like 8-bit data: scale down, no gamma curve.
        image.flags |= png_uint_32(PNG_IMAGE_FLAG_16BIT_sRGB)
        let stride = w * channels
        var ok: Int32 = 0
        let bytes = [UInt8](unsafeUninitializedCapacity: stride * h) { buf, count in
            ok = png_image_finish_read(&image, nil, buf.baseAddress, png_int_32(stride), nil)
            count = ok != 0 ? stride * h : 0
        }
        guard ok != 0 else { throw ImageError.unreadable(path: name, reason: message(&image)) }
        return Raw(width: w, height: h, channels: channels, bytes: bytes)
    }

    static func toRGB(_ raw: Raw) -> RGBImage {
        let n = raw.width * raw.height
        switch raw.channels {
        case 3:
            return RGBImage(width: raw.width, height: raw.height, pixels: raw.bytes)
        case 4:
            let out = [UInt8](unsafeUninitializedCapacity: 3 * n) { dst, count in
                raw.bytes.withUnsafeBufferPointer { src in
                    for i in 0..<n {
                        dst[3 * i] = src[4 * i]; dst[3 * i + 1] = src[4 * i + 1]; dst[3 * i + 2] = src[4 * i + 2]
                    }
                }
                count = 3 * n
            }
            return RGBImage(width: raw.width, height: raw.height, pixels: out)
        default:
            preconditionFailure("toRGB needs decoding with colour: true")
        }
    }

    static func toGray(_ raw: Raw) -> GrayImage {
        let n = raw.width * raw.height
        let pixels: [Float]
        switch raw.channels {
        case 1, 2:
            let step = raw.channels
            pixels = [Float](unsafeUninitializedCapacity: n) { dst, count in
                raw.bytes.withUnsafeBufferPointer { src in
                    for i in 0..<n { dst[i] = Float(src[step * i]) }
                }
                count = n
            }
        default:
            pixels = luma(raw.bytes, channels: raw.channels)
        }
        return GrayImage(width: raw.width, height: raw.height, pixels: pixels)
    }

    /// BT.601 luma of interleaved RGB (channels 3) or RGBA (channels 4, alpha ignored) bytes.
    static func luma(_ bytes: [UInt8], channels: Int) -> [Float] {
        let n = bytes.count / channels
        return [Float](unsafeUninitializedCapacity: n) { dst, count in
            bytes.withUnsafeBufferPointer { src in
                for i in 0..<n {
                    let p = channels * i
                    dst[i] = 0.299 * Float(src[p]) + 0.587 * Float(src[p + 1]) + 0.114 * Float(src[p + 2])
                }
            }
            count = n
        }
    }

    /// libpng's message for the last failure (the `message` field of png_image).
    static func message(_ image: inout png_image) -> String {
        let s = withUnsafeBytes(of: &image.message) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
        return s.isEmpty ? "unknown libpng error" : s
    }

    // MARK: - Encoding

    /// Encodes in memory, then writes atomically.
    static func write(width: Int, height: Int, format: png_uint_32, channels: Int, pixels: [UInt8], path: String) throws {
        guard width > 0, height > 0, width <= Int(Int32.max) / channels, height <= Int(Int32.max) else {
            throw ImageError.writeFailed(path: path, reason: "invalid size \(width)x\(height)")
        }
        guard pixels.count == width * height * channels else {
            throw ImageError.writeFailed(
                path: path, reason: "\(pixels.count) bytes for \(width)x\(height)x\(channels) (expected \(width * height * channels))")
        }
        var image = png_image()
        image.version = png_uint_32(PNG_IMAGE_VERSION)
        image.width = png_uint_32(width)
        image.height = png_uint_32(height)
        image.format = format
        // Speed over size: annotated photos are written by the thousand; PNG_IMAGE_FLAG_FAST picks
        // libpng's quick filter and zlib settings (files ~10-20% larger, encoding several times faster).
        image.flags = png_uint_32(PNG_IMAGE_FLAG_FAST)
        defer { png_image_free(&image) }
        let stride = png_int_32(width * channels)
        var size: png_alloc_size_t = 0
        // First call (no buffer) measures the encoded size, the second encodes.
        let measured = pixels.withUnsafeBytes { png_image_write_to_memory(&image, nil, &size, 0, $0.baseAddress, stride, nil) }
        guard measured != 0 else { throw ImageError.writeFailed(path: path, reason: message(&image)) }
        var encoded = Data(count: Int(size))
        let ok = encoded.withUnsafeMutableBytes { dst in
            pixels.withUnsafeBytes { png_image_write_to_memory(&image, dst.baseAddress, &size, 0, $0.baseAddress, stride, nil) }
        }
        guard ok != 0 else { throw ImageError.writeFailed(path: path, reason: message(&image)) }
        encoded.count = Int(size)
        do { try writeFileAtomically(encoded, to: path) } catch {
            throw ImageError.writeFailed(path: path, reason: ioErrorText(error))
        }
    }
}

