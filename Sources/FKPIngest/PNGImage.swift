import CPNG
import Foundation

public struct RGBImage: Sendable {
    public var width: Int
    public var height: Int
    /// RGB interleaved, row-major.
    public var pixels: [UInt8]
    public init(width: Int, height: Int, pixels: [UInt8]) { self.width = width; self.height = height; self.pixels = pixels }
}

public struct GrayImage: Sendable {
    public var width: Int
    public var height: Int
    /// 0...255, row-major.
    public var pixels: [Float]
    public init(width: Int, height: Int, pixels: [Float]) { self.width = width; self.height = height; self.pixels = pixels }
}

public enum ImageError: Error, CustomStringConvertible, Equatable {
    case unreadable(path: String, reason: String)
    case tooLarge(path: String, width: Int, height: Int, limit: Int)
    case writeFailed(path: String, reason: String)

    public var description: String {
        switch self {
        case let .unreadable(path, reason): return "\(path): cannot decode PNG: \(reason)"
        case let .tooLarge(path, w, h, limit):
            return "\(path): \(w)x\(h) is \(w * h / 1_000_000) megapixels, more than the limit of \(limit / 1_000_000)"
        case let .writeFailed(path, reason): return "\(path): cannot write PNG: \(reason)"
        }
    }
}

/// PNG through libpng's simplified API: every flavour (1-16 bit, grey, grey+alpha, RGB, RGBA, palette,
/// interlaced) is converted by libpng to 8-bit RGB; errors come back as return codes and messages, so
/// no longjmp ever crosses Swift frames.
public enum PNGCodec {
    public static func readRGB(path: String, maxPixels: Int = 100_000_000) throws -> RGBImage {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw ImageError.unreadable(path: path, reason: error.localizedDescription)
        }
        return try decodeRGB(data, name: path, maxPixels: maxPixels)
    }

    public static func decodeRGB(_ data: Data, name: String, maxPixels: Int = 100_000_000) throws -> RGBImage {
        var image = png_image()
        image.version = png_uint_32(PNG_IMAGE_VERSION)
        let ok = data.withUnsafeBytes { raw -> Int32 in
            guard let base = raw.baseAddress, raw.count > 0 else { return 0 }
            return png_image_begin_read_from_memory(&image, base, raw.count)
        }
        guard ok != 0 else {
            let msg = data.isEmpty ? "empty file" : message(&image)
            png_image_free(&image)
            throw ImageError.unreadable(path: name, reason: msg)
        }
        let (w, h) = (Int(image.width), Int(image.height))
        // Refuse before allocating anything the size of the image.
        guard w > 0, h > 0, w * h <= maxPixels else {
            png_image_free(&image)
            throw ImageError.tooLarge(path: name, width: w, height: h, limit: maxPixels)
        }
        // A 16-bit file is read as 16-bit values: the simplified API treats 16-bit data as linear and
        // would otherwise apply an sRGB curve on the way down to 8 bits.
        let sixteen = image.format & png_uint_32(PNG_FORMAT_FLAG_LINEAR) != 0
        image.format = png_uint_32(PNG_FORMAT_RGB) | (sixteen ? png_uint_32(PNG_FORMAT_FLAG_LINEAR) : 0)
        var pixels = [UInt8](repeating: 0, count: w * h * 3)
        // Alpha is composited over white (the background a viewer would show).
        var white = png_color(red: 255, green: 255, blue: 255)
        var done: Int32
        if sixteen {
            var wide = [UInt16](repeating: 0, count: w * h * 3)
            done = wide.withUnsafeMutableBytes { png_image_finish_read(&image, &white, $0.baseAddress, png_int_32(w * 3), nil) }
            for i in wide.indices { pixels[i] = UInt8((UInt32(wide[i]) + 128) / 257) }
        } else {
            done = pixels.withUnsafeMutableBytes { png_image_finish_read(&image, &white, $0.baseAddress, png_int_32(w * 3), nil) }
        }
        guard done != 0 else {
            let msg = message(&image)
            png_image_free(&image)
            throw ImageError.unreadable(path: name, reason: msg)
        }
        png_image_free(&image)
        return RGBImage(width: w, height: h, pixels: pixels)
    }

    /// Grey by ITU-R BT.601 luma (0.299 R + 0.587 G + 0.114 B) of the 8-bit RGB values.
    public static func readGray(path: String, maxPixels: Int = 100_000_000) throws -> GrayImage {
        gray(try readRGB(path: path, maxPixels: maxPixels))
    }

    public static func gray(_ rgb: RGBImage) -> GrayImage {
        let n = rgb.width * rgb.height
        var out = [Float](repeating: 0, count: n)
        rgb.pixels.withUnsafeBufferPointer { p in
            for i in 0..<n {
                out[i] = 0.299 * Float(p[3 * i]) + 0.587 * Float(p[3 * i + 1]) + 0.114 * Float(p[3 * i + 2])
            }
        }
        return GrayImage(width: rgb.width, height: rgb.height, pixels: out)
    }

    public static func writeRGB(_ img: RGBImage, path: String) throws {
        try write(width: img.width, height: img.height, format: png_uint_32(PNG_FORMAT_RGB), channels: 3,
                  pixels: img.pixels, path: path)
    }

    public static func writeGray8(width: Int, height: Int, pixels: [UInt8], path: String) throws {
        try write(width: width, height: height, format: png_uint_32(PNG_FORMAT_GRAY), channels: 1, pixels: pixels, path: path)
    }

    /// Encodes in memory, then writes atomically (temp file + rename).
    static func write(width: Int, height: Int, format: png_uint_32, channels: Int, pixels: [UInt8], path: String) throws {
        precondition(pixels.count == width * height * channels)
        var image = png_image()
        image.version = png_uint_32(PNG_IMAGE_VERSION)
        image.width = png_uint_32(width)
        image.height = png_uint_32(height)
        image.format = format
        var size: png_alloc_size_t = 0
        let stride = png_int_32(width * channels)
        // First call measures, second encodes.
        guard pixels.withUnsafeBytes({ png_image_write_to_memory(&image, nil, &size, 0, $0.baseAddress, stride, nil) }) != 0 else {
            let msg = message(&image); png_image_free(&image)
            throw ImageError.writeFailed(path: path, reason: msg)
        }
        var out = Data(count: Int(size))
        let ok = out.withUnsafeMutableBytes { dst in
            pixels.withUnsafeBytes { png_image_write_to_memory(&image, dst.baseAddress, &size, 0, $0.baseAddress, stride, nil) }
        }
        png_image_free(&image)
        guard ok != 0 else { throw ImageError.writeFailed(path: path, reason: "encoding failed") }
        out.count = Int(size)
        do { try writeFileAtomically(out, to: path) } catch {
            throw ImageError.writeFailed(path: path, reason: "\(error)")
        }
    }

    static func message(_ image: inout png_image) -> String {
        withUnsafeBytes(of: &image.message) { raw in
            let s = String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            return s.isEmpty ? "unknown libpng error" : s
        }
    }
}

/// Temp file in the destination's folder, then rename: readers never see half a file.
public func writeFileAtomically(_ data: Data, to path: String) throws {
    let url = URL(fileURLWithPath: path)
    let tmp = url.deletingLastPathComponent()
        .appendingPathComponent(".\(url.lastPathComponent).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
    do {
        try data.write(to: tmp)
        guard rename(tmp.path, url.path) == 0 else {
            throw CocoaError(.fileWriteUnknown, userInfo: [NSLocalizedDescriptionKey: "rename: \(String(cString: strerror(errno)))"])
        }
    } catch {
        try? FileManager.default.removeItem(at: tmp)
        throw error
    }
}

/// Area-averaging resize when shrinking (each output pixel is the exact area-weighted mean of the input
/// it covers, like OpenCV's INTER_AREA), bilinear with pixel-centre alignment when enlarging. Separable:
/// rows first, then columns, with precomputed weights.
public func resizeArea(_ img: GrayImage, width: Int, height: Int) -> GrayImage {
    if img.width == width && img.height == height { return img }
    let hw = resampleWeights(from: img.width, to: width)
    let vw = resampleWeights(from: img.height, to: height)
    // horizontal pass: [img.height, width]
    var tmp = [Float](repeating: 0, count: img.height * width)
    img.pixels.withUnsafeBufferPointer { src in
        tmp.withUnsafeMutableBufferPointer { dst in
            for y in 0..<img.height {
                let row = src.baseAddress! + y * img.width
                for (x, taps) in hw.enumerated() {
                    var s: Float = 0
                    for (i, w) in taps { s += row[i] * w }
                    dst[y * width + x] = s
                }
            }
        }
    }
    var out = [Float](repeating: 0, count: width * height)
    tmp.withUnsafeBufferPointer { src in
        out.withUnsafeMutableBufferPointer { dst in
            for (y, taps) in vw.enumerated() {
                let o = dst.baseAddress! + y * width
                for (i, w) in taps {
                    let r = src.baseAddress! + i * width
                    for x in 0..<width { o[x] += r[x] * w }
                }
            }
        }
    }
    return GrayImage(width: width, height: height, pixels: out)
}

/// For each output index, the input indices and weights (summing to 1).
func resampleWeights(from n: Int, to m: Int) -> [[(Int, Float)]] {
    let scale = Double(n) / Double(m)
    return (0..<m).map { j in
        if scale >= 1 {  // shrinking: area coverage of [j*scale, (j+1)*scale)
            let a = Double(j) * scale, b = Double(j + 1) * scale
            var taps: [(Int, Float)] = []
            var i = Int(a.rounded(.down))
            while Double(i) < b && i < n {
                let overlap = min(b, Double(i + 1)) - max(a, Double(i))
                if overlap > 1e-9 { taps.append((i, Float(overlap / scale))) }
                i += 1
            }
            return taps
        } else {  // enlarging: bilinear between pixel centres
            let c = (Double(j) + 0.5) * scale - 0.5
            let i0 = Int(c.rounded(.down)), t = Float(c - Double(i0))
            let lo = min(max(i0, 0), n - 1), hi = min(max(i0 + 1, 0), n - 1)
            return lo == hi ? [(lo, Float(1))] : [(lo, 1 - t), (hi, t)]
        }
    }
}
