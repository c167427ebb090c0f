@testable import FKPImage
import Foundation
import XCTest

final class JPEGTests: XCTestCase {
    /// 32x16, asymmetric: a 4x2 grid of flat 8x8 blocks of distinct colours (aligned with JPEG's blocks,
    /// 4:4:4, quality 95: they decode within a few levels).
    static let palette: [(UInt8, UInt8, UInt8)] = [
        (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0),
        (0, 255, 255), (255, 0, 255), (255, 255, 255), (0, 0, 0),
    ]
    static let source: RGBImage = {
        let (w, h) = (32, 16)
        var px = [UInt8](repeating: 0, count: 3 * w * h)
        for y in 0..<h {
            for x in 0..<w {
                let c = palette[(y / 8) * 4 + x / 8]
                px[3 * (y * w + x)] = c.0; px[3 * (y * w + x) + 1] = c.1; px[3 * (y * w + x) + 2] = c.2
            }
        }
        return RGBImage(width: w, height: h, pixels: px)
    }()

    func tempDir() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("fkp-jpeg-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        return dir
    }

    func write(_ data: Data, _ name: String, in dir: URL) throws -> String {
        let url = dir.appendingPathComponent(name)
        try data.write(to: url)
        return url.path
    }

    /// An APP1 Exif segment holding only IFD0 with the orientation tag.
    static func exifSegment(orientation: Int, bigEndian: Bool) -> [UInt8] {
        func u16(_ v: Int) -> [UInt8] { bigEndian ? [UInt8(v >> 8), UInt8(v & 0xFF)] : [UInt8(v & 0xFF), UInt8(v >> 8)] }
        func u32(_ v: Int) -> [UInt8] {
            let b = [UInt8(v >> 24), UInt8((v >> 16) & 0xFF), UInt8((v >> 8) & 0xFF), UInt8(v & 0xFF)]
            return bigEndian ? b : b.reversed()
        }
        var tiff: [UInt8] = bigEndian ? [0x4D, 0x4D] : [0x49, 0x49]
        tiff += u16(42) + u32(8)
        // IFD0: two entries (an unrelated one first, then orientation), no next IFD.
        tiff += u16(2)
        tiff += u16(0x010F) + u16(2) + u32(4) + [0x41, 0x43, 0x4D, 0] // Make = "ACM", ASCII inline
        tiff += u16(0x0112) + u16(3) + u32(1) + u16(orientation) + [0, 0]
        tiff += u32(0)
        let body: [UInt8] = Array("Exif".utf8) + [0, 0] + tiff
        let length = body.count + 2
        return [0xFF, 0xE1, UInt8(length >> 8), UInt8(length & 0xFF)] + body
    }

    /// The JPEG with `segment` inserted right after SOI (and after an APP0/JFIF segment when `afterJFIF`).
    static func inserting(_ segment: [UInt8], into jpeg: Data, afterJFIF: Bool) -> Data {
        var bytes = [UInt8](jpeg)
        var at = 2
        if afterJFIF, bytes[2] == 0xFF, bytes[3] == 0xE0 { at = 4 + (Int(bytes[4]) << 8 | Int(bytes[5])) }
        bytes.insert(contentsOf: segment, at: at)
        return Data(bytes)
    }

    func assertClose(_ a: RGBImage, _ b: RGBImage, tolerance: Int = 16, _ message: String, line: UInt = #line) {
        XCTAssertEqual(a.width, b.width, message, line: line)
        XCTAssertEqual(a.height, b.height, message, line: line)
        guard a.pixels.count == b.pixels.count else { return XCTFail("size differs: \(message)", line: line) }
        let worst = zip(a.pixels, b.pixels).map { abs(Int($0) - Int($1)) }.max() ?? 0
        XCTAssertLessThanOrEqual(worst, tolerance, message, line: line)
    }

    func testRoundTripWithoutExif() throws {
        let jpeg = try JPEGCodec.encodeRGB(Self.source)
        XCTAssertEqual(ImageFile.sniff(jpeg), .jpeg)
        XCTAssertNil(JPEGCodec.exifOrientation(jpeg.withUnsafeBytes { UnsafeRawBufferPointer($0) }))
        let path = try write(jpeg, "plain.jpg", in: tempDir())
        let img = try JPEGCodec.readRGB(path: path)
        assertClose(img, Self.source, "plain")
        // ImageFile dispatches on content, not the name.
        let renamed = try write(jpeg, "actually-a-jpeg.png", in: tempDir())
        assertClose(try ImageFile.readRGB(path: renamed), Self.source, "renamed")
    }

    func testOrientationTransformsByHand() {
        // 3x2 image with pixel values = index, one channel shown.
        let px: [UInt8] = (0..<6).flatMap { [UInt8($0), 0, 0] }
        let img = RGBImage(width: 3, height: 2, pixels: px)
        func red(_ o: Int) -> [UInt8] { stride(from: 0, to: 18, by: 3).map { JPEGCodec.oriented(img, o).pixels[$0] } }
        // Stored:  0 1 2 / 3 4 5
        XCTAssertEqual(red(1), [0, 1, 2, 3, 4, 5])
        XCTAssertEqual(red(2), [2, 1, 0, 5, 4, 3])       // mirror
        XCTAssertEqual(red(3), [5, 4, 3, 2, 1, 0])       // 180°
        XCTAssertEqual(red(4), [3, 4, 5, 0, 1, 2])       // flip
        XCTAssertEqual(red(5), [0, 3, 1, 4, 2, 5])       // transpose (2 wide, 3 high)
        XCTAssertEqual(red(6), [3, 0, 4, 1, 5, 2])       // 90° clockwise
        XCTAssertEqual(red(7), [5, 2, 4, 1, 3, 0])       // transverse
        XCTAssertEqual(red(8), [2, 5, 1, 4, 0, 3])       // 90° counter-clockwise
        XCTAssertEqual(JPEGCodec.oriented(img, 6).width, 2)
        XCTAssertEqual(JPEGCodec.oriented(img, 6).height, 3)
        XCTAssertEqual(JPEGCodec.oriented(img, 9), img)  // invalid: unchanged
    }

    func testEveryExifOrientationInBothByteOrders() throws {
        let jpeg = try JPEGCodec.encodeRGB(Self.source)
        let dir = try tempDir()
        for bigEndian in [false, true] {
            for o in 1...8 {
                let name = "o\(o)-\(bigEndian ? "MM" : "II").jpg"
                let data = Self.inserting(Self.exifSegment(orientation: o, bigEndian: bigEndian), into: jpeg, afterJFIF: o % 2 == 0)
                XCTAssertEqual(JPEGCodec.exifOrientation(data.withUnsafeBytes { UnsafeRawBufferPointer($0) }), o, name)
                let img = try ImageFile.readRGB(path: write(data, name, in: dir))
                let expected = JPEGCodec.oriented(Self.source, o)
                assertClose(img, expected, name)
                XCTAssertEqual(img.width, o >= 5 ? 16 : 32, name)
                // Spot checks independent of `oriented`: where does the stored top-left (red) block go?
                let w = img.width, h = img.height
                func pixel(_ x: Int, _ y: Int) -> (Int, Int, Int) {
                    let i = 3 * (y * w + x)
                    return (Int(img.pixels[i]), Int(img.pixels[i + 1]), Int(img.pixels[i + 2]))
                }
                let redCorner: (Int, Int)
                switch o {
                case 1, 5: redCorner = (0, 0)
                case 2, 6: redCorner = (w - 1, 0)
                case 3, 7: redCorner = (w - 1, h - 1)
                default: redCorner = (0, h - 1)
                }
                let p = pixel(redCorner.0, redCorner.1)
                XCTAssertTrue(p.0 > 200 && p.1 < 50 && p.2 < 50, "\(name): red block expected at \(redCorner), got \(p)")
            }
        }
    }

    func testBrokenExifIsIgnored() throws {
        let jpeg = try JPEGCodec.encodeRGB(Self.source)
        var seg = Self.exifSegment(orientation: 6, bigEndian: false)
        seg[10] = 0x58 // "XI": not a TIFF byte-order mark
        let bad = Self.inserting(seg, into: jpeg, afterJFIF: false)
        XCTAssertNil(JPEGCodec.exifOrientation(bad.withUnsafeBytes { UnsafeRawBufferPointer($0) }))
        assertClose(try JPEGCodec.decodeRGB(bad, name: "bad-exif"), Self.source, "bad exif")
        // Out-of-range orientation value.
        let nine = Self.inserting(Self.exifSegment(orientation: 9, bigEndian: true), into: jpeg, afterJFIF: false)
        assertClose(try JPEGCodec.decodeRGB(nine, name: "o9"), Self.source, "orientation 9")
    }

    func testTruncatedJPEGNamesTheFile() throws {
        let source = RGBImage(width: 64, height: 64, pixels: (0..<(3 * 64 * 64)).map { UInt8(($0 * 7) % 251) })
        let jpeg = try JPEGCodec.encodeRGB(source, quality: 90)
        let dir = try tempDir()
        for (name, cut) in [("half.jpg", jpeg.count / 2), ("header-only.jpg", 20), ("no-eoi.jpg", jpeg.count - 200)] {
            let path = try write(jpeg.prefix(cut), name, in: dir)
            for read in [{ try JPEGCodec.readRGB(path: path) }, { try ImageFile.readRGB(path: path) }] {
                XCTAssertThrowsError(try read(), name) { e in
                    guard case .unreadable(let p, let reason)? = e as? ImageError else { return XCTFail("\(name): \(e)") }
                    XCTAssertEqual(p, path)
                    XCTAssertTrue(reason.hasPrefix("JPEG: "), reason)
                    XCTAssertTrue("\(e)".contains(path))
                }
            }
        }
    }

    func testNonImagesNameTheFile() throws {
        let dir = try tempDir()
        let text = try write(Data("hello, this is not a picture\n".utf8), "notes.jpg", in: dir)
        let empty = try write(Data(), "empty.png", in: dir)
        for path in [text, empty] {
            XCTAssertThrowsError(try ImageFile.readRGB(path: path)) { e in
                guard case .unreadable(let p, let reason)? = e as? ImageError else { return XCTFail("\(e)") }
                XCTAssertEqual(p, path)
                XCTAssertTrue(reason.contains("not a PNG or JPEG") || reason.contains("empty"), reason)
            }
            XCTAssertThrowsError(try JPEGCodec.readRGB(path: path)) { e in
                guard case .unreadable(let p, _)? = e as? ImageError else { return XCTFail("\(e)") }
                XCTAssertEqual(p, path)
            }
        }
        let missing = dir.appendingPathComponent("missing.jpg").path
        XCTAssertThrowsError(try ImageFile.readRGB(path: missing)) { e in
            XCTAssertEqual(e as? ImageError, .unreadable(path: missing, reason: "no such file"))
        }
        XCTAssertThrowsError(try ImageFile.readRGB(path: dir.path)) { e in
            XCTAssertEqual(e as? ImageError, .unreadable(path: dir.path, reason: "is a directory"))
        }
    }

    func testHugeHeaderIsRefusedBeforeDecoding() throws {
        var bytes = [UInt8](try JPEGCodec.encodeRGB(Self.source))
        // Patch the SOF0 frame size to 60000 x 50000.
        let sof = try XCTUnwrap((0..<(bytes.count - 1)).first { bytes[$0] == 0xFF && bytes[$0 + 1] == 0xC0 })
        bytes[sof + 5] = UInt8(50000 >> 8); bytes[sof + 6] = UInt8(50000 & 0xFF)
        bytes[sof + 7] = UInt8(60000 >> 8); bytes[sof + 8] = UInt8(60000 & 0xFF)
        let path = try write(Data(bytes), "huge.jpg", in: tempDir())
        XCTAssertThrowsError(try ImageFile.readRGB(path: path)) { e in
            XCTAssertEqual(e as? ImageError, .tooLarge(path: path, width: 60000, height: 50000, limit: 100_000_000))
        }
        // And a small limit applies to ordinary files.
        let ok = try write(JPEGCodec.encodeRGB(Self.source), "small.jpg", in: tempDir())
        XCTAssertThrowsError(try JPEGCodec.readRGB(path: ok, maxPixels: 100)) { e in
            XCTAssertEqual(e as? ImageError, .tooLarge(path: ok, width: 32, height: 16, limit: 100))
        }
    }

    func testImageFileReadsPNGToo() throws {
        let dir = try tempDir()
        let path = dir.appendingPathComponent("x.jpg").path // PNG content with a .jpg name
        try PNGCodec.writeRGB(Self.source, path: path)
        XCTAssertEqual(try ImageFile.readRGB(path: path), Self.source)
    }
}
