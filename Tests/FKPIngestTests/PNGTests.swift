import FKPIngest
import Foundation
import XCTest

final class PNGTests: XCTestCase {
    func fixture(_ name: String) -> String {
        Bundle.module.url(forResource: "Fixtures/\(name)", withExtension: nil)!.path
    }

    /// The 7x5 grey ramp the fixtures were made from (make_fixtures.py).
    let expected: [Float] = (0..<5).flatMap { y in (0..<7).map { x in Float((x * 37 + y * 11) % 256) } }

    func testEveryFlavourDecodesToTheSameGrey() throws {
        for name in ["gray8", "gray16", "graya8", "rgb8", "rgba8", "rgb16", "palette", "interlaced"] {
            let img = try PNGCodec.readGray(path: fixture("\(name).png"))
            XCTAssertEqual(img.width, 7, name)
            XCTAssertEqual(img.height, 5, name)
            for (a, b) in zip(img.pixels, expected) { XCTAssertEqual(a, b, accuracy: 1, name) }
        }
    }

    func testBT601Luma() {
        let img = RGBImage(width: 3, height: 1, pixels: [255, 0, 0, 0, 255, 0, 0, 0, 255])
        let g = PNGCodec.gray(img)
        XCTAssertEqual(g.pixels[0], 76.245, accuracy: 1e-3)
        XCTAssertEqual(g.pixels[1], 149.685, accuracy: 1e-3)
        XCTAssertEqual(g.pixels[2], 29.07, accuracy: 1e-3)
    }

    func testBrokenFilesAreErrorsNamingTheFile() {
        for name in ["truncated.png", "not-a-png.png"] {
            XCTAssertThrowsError(try PNGCodec.readRGB(path: fixture(name))) { error in
                XCTAssertTrue("\(error)".contains(name), "\(error)")
            }
        }
        XCTAssertThrowsError(try PNGCodec.readRGB(path: "/nonexistent/face.png")) { error in
            XCTAssertTrue("\(error)".contains("/nonexistent/face.png"))
        }
    }

    func testHugeImageIsRefusedBeforeAllocating() {
        XCTAssertThrowsError(try PNGCodec.readRGB(path: fixture("huge-header.png"))) { error in
            guard case let .tooLarge(_, w, h, _) = error as? ImageError else { return XCTFail("\(error)") }
            XCTAssertEqual(w, 20000); XCTAssertEqual(h, 20000)
            XCTAssertTrue("\(error)".contains("megapixels"))
        }
        XCTAssertThrowsError(try PNGCodec.readRGB(path: fixture("gray8.png"), maxPixels: 34))
    }

    func testWriteReadRoundTripIsAtomic() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("png-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let rgb = RGBImage(width: 4, height: 3, pixels: (0..<36).map { UInt8($0 * 7) })
        let path = dir.appendingPathComponent("out.png").path
        try PNGCodec.writeRGB(rgb, path: path)
        XCTAssertEqual(try PNGCodec.readRGB(path: path).pixels, rgb.pixels)
        try PNGCodec.writeGray8(width: 2, height: 2, pixels: [0, 50, 100, 255], path: path)
        XCTAssertEqual(try PNGCodec.readGray(path: path).pixels, [0, 50, 100, 255])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), ["out.png"], "no temp file left")
    }

    func testResizeArea() {
        let constant = GrayImage(width: 37, height: 23, pixels: .init(repeating: 42, count: 37 * 23))
        XCTAssertTrue(resizeArea(constant, width: 9, height: 5).pixels.allSatisfy { abs($0 - 42) < 1e-3 })
        XCTAssertTrue(resizeArea(constant, width: 96, height: 96).pixels.allSatisfy { abs($0 - 42) < 1e-3 })
        // 4x4 -> 2x2: exact block means
        let block = GrayImage(width: 4, height: 4, pixels: (0..<16).map(Float.init))
        XCTAssertEqual(resizeArea(block, width: 2, height: 2).pixels, [2.5, 4.5, 10.5, 12.5])
        // non-integer ratio keeps the mean
        let ramp = GrayImage(width: 10, height: 10, pixels: (0..<100).map { Float($0 % 10 * 10 + $0 / 10) })
        let small = resizeArea(ramp, width: 4, height: 4)
        XCTAssertEqual(small.pixels.reduce(0, +) / 16, ramp.pixels.reduce(0, +) / 100, accuracy: 1e-3)
        // identity
        let face = GrayImage(width: 96, height: 96, pixels: (0..<9216).map { Float($0 % 256) })
        XCTAssertEqual(resizeArea(face, width: 96, height: 96).pixels, face.pixels)
    }
}
