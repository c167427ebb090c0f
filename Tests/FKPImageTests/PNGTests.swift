import FKPImage
import Foundation
import XCTest

final class PNGTests: XCTestCase {
    func fixture(_ name: String) throws -> String {
        let url = try XCTUnwrap(Bundle.module.url(forResource: "Fixtures/\(name)", withExtension: nil), "fixture \(name)")
        return url.path
    }

    /// The 7x5 picture of make_fixtures.py: grey (x*37 + y*11) % 256.
    let expected: [Float] = (0..<5).flatMap { y in (0..<7).map { x in Float((x * 37 + y * 11) % 256) } }

    static let flavours = [
        "gray8", "gray16", "graya8", "graya16", "rgb8", "rgb16", "rgba8", "rgba16",
        "palette", "palette-trns", "interlaced", "interlaced-rgba8",
    ]

    func testEveryFlavourDecodesToTheSameGrey() throws {
        for name in Self.flavours {
            let img = try PNGCodec.readGray(path: fixture("\(name).png"))
            XCTAssertEqual(img.width, 7, name)
            XCTAssertEqual(img.height, 5, name)
            XCTAssertEqual(img.pixels.count, 35, name)
            for (i, (a, b)) in zip(img.pixels, expected).enumerated() {
                XCTAssertEqual(a, b, accuracy: 1, "\(name) pixel \(i)")
            }
        }
    }

    func testEveryFlavourDecodesToTheSameRGBWithAlphaDropped() throws {
        for name in Self.flavours {
            let img = try PNGCodec.readRGB(path: fixture("\(name).png"))
            XCTAssertEqual(img.width, 7, name)
            XCTAssertEqual(img.height, 5, name)
            XCTAssertEqual(img.pixels.count, 3 * 35, name)
            for (i, v) in img.pixels.enumerated() {
                XCTAssertEqual(Float(v), expected[i / 3], accuracy: 1, "\(name) byte \(i)")
            }
        }
    }

    func testDecodeFromMemoryMatchesFile() throws {
        let path = try fixture("rgba16.png")
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        XCTAssertEqual(try PNGCodec.decodeRGB(data, name: "mem"), try PNGCodec.readRGB(path: path))
        XCTAssertEqual(try PNGCodec.decodeGray(data, name: "mem"), try PNGCodec.readGray(path: path))
    }

    func testBT601Luma() throws {
        let img = RGBImage(width: 3, height: 1, pixels: [255, 0, 0, 0, 255, 0, 0, 0, 255])
        let g = PNGCodec.gray(img)
        XCTAssertEqual(g.pixels[0], 76.245, accuracy: 1e-3)
        XCTAssertEqual(g.pixels[1], 149.685, accuracy: 1e-3)
        XCTAssertEqual(g.pixels[2], 29.07, accuracy: 1e-3)
    }

    /// Colour files through readGray: our BT.601 on the 8-bit values, not libpng's own grey conversion.
    func testReadGrayOfAColourFileIsBT601() throws {
        try withTemporaryDirectory { dir in
            let colours: [UInt8] = [255, 0, 0, 0, 255, 0, 0, 0, 255, 200, 100, 50, 10, 20, 30, 255, 255, 255]
            let path = dir + "/colour.png"
            try PNGCodec.writeRGB(RGBImage(width: 3, height: 2, pixels: colours), path: path)
            let g = try PNGCodec.readGray(path: path)
            XCTAssertEqual(g.width, 3); XCTAssertEqual(g.height, 2)
            for i in 0..<6 {
                let (r, gr, b) = (Float(colours[3 * i]), Float(colours[3 * i + 1]), Float(colours[3 * i + 2]))
                XCTAssertEqual(g.pixels[i], 0.299 * r + 0.587 * gr + 0.114 * b, accuracy: 1e-3, "pixel \(i)")
            }
        }
    }

    func testBrokenFilesAreErrorsNamingTheFileAndLibpngsMessage() throws {
        for name in ["truncated.png", "corrupt.png", "not-a-png.png"] {
            let path = try fixture(name)
            for read in [{ _ = try PNGCodec.readRGB(path: path) }, { _ = try PNGCodec.readGray(path: path) }] {
                XCTAssertThrowsError(try read()) { error in
                    guard case let .unreadable(p, reason) = error as? ImageError else { return XCTFail("\(name): \(error)") }
                    XCTAssertEqual(p, path)
                    XCTAssertFalse(reason.isEmpty, name)
                    XCTAssertNotEqual(reason, "unknown libpng error", name)
                    XCTAssertTrue("\(error)".contains(path), "\(error)")
                    XCTAssertTrue("\(error)".contains(reason), "\(error)")
                }
            }
        }
        XCTAssertThrowsError(try PNGCodec.readRGB(path: "/nonexistent/face.png")) { error in
            XCTAssertTrue("\(error)".contains("/nonexistent/face.png"), "\(error)")
        }
        try withTemporaryDirectory { dir in
            let empty = dir + "/empty.png"
            XCTAssertTrue(FileManager.default.createFile(atPath: empty, contents: Data()))
            XCTAssertThrowsError(try PNGCodec.readGray(path: empty)) { error in
                XCTAssertTrue("\(error)".contains(empty), "\(error)")
            }
            XCTAssertThrowsError(try PNGCodec.decodeRGB(Data(), name: "empty-data"))
        }
    }

    func testHugeImageIsRefusedFromTheHeader() throws {
        // The fixture holds 64 bytes of image data: had the decoder gone past the header it would fail
        // with .unreadable (or allocate 1.2 GB first); .tooLarge shows it stopped at the header.
        let path = try fixture("huge-header.png")
        for read in [{ _ = try PNGCodec.readRGB(path: path) }, { _ = try PNGCodec.readGray(path: path) }] {
            XCTAssertThrowsError(try read()) { error in
                guard case let .tooLarge(p, w, h, limit) = error as? ImageError else { return XCTFail("\(error)") }
                XCTAssertEqual(p, path)
                XCTAssertEqual(w, 20000); XCTAssertEqual(h, 20000); XCTAssertEqual(limit, 100_000_000)
                XCTAssertTrue("\(error)".contains(path), "\(error)")
                XCTAssertTrue("\(error)".contains("20000x20000 = 400 megapixels"), "\(error)")
            }
        }
        // maxPixels applies to every file: 7x5 = 35 pixels.
        XCTAssertThrowsError(try PNGCodec.readRGB(path: fixture("gray8.png"), maxPixels: 34)) { error in
            guard case .tooLarge(_, 7, 5, 34) = error as? ImageError else { return XCTFail("\(error)") }
        }
        XCTAssertNoThrow(try PNGCodec.readRGB(path: fixture("gray8.png"), maxPixels: 35))
    }

    func testWriteReadRoundTripIsAtomic() throws {
        try withTemporaryDirectory { dir in
            let path = dir + "/out.png"
            let rgb = RGBImage(width: 4, height: 3, pixels: (0..<36).map { UInt8($0 * 7) })
            try PNGCodec.writeRGB(rgb, path: path)
            XCTAssertEqual(try PNGCodec.readRGB(path: path), rgb)
            // overwrite the same file with a grey one
            let grey: [UInt8] = [0, 50, 100, 255, 1, 254]
            try PNGCodec.writeGray8(width: 3, height: 2, pixels: grey, path: path)
            let g = try PNGCodec.readGray(path: path)
            XCTAssertEqual(g.width, 3); XCTAssertEqual(g.height, 2)
            XCTAssertEqual(g.pixels, grey.map(Float.init))
            XCTAssertEqual(try PNGCodec.readRGB(path: path).pixels, grey.flatMap { [$0, $0, $0] })
            XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), ["out.png"], "no temporary file left")

            // failures are errors naming the path, and leave nothing behind
            let missingDir = dir + "/no/such/dir/x.png"
            XCTAssertThrowsError(try PNGCodec.writeRGB(rgb, path: missingDir)) { error in
                guard case .writeFailed(missingDir, _) = error as? ImageError else { return XCTFail("\(error)") }
            }
            XCTAssertThrowsError(try PNGCodec.writeGray8(width: 3, height: 3, pixels: grey, path: path)) { error in
                guard case .writeFailed(path, _) = error as? ImageError else { return XCTFail("\(error)") }
            }
            XCTAssertThrowsError(try PNGCodec.writeGray8(width: 0, height: 0, pixels: [], path: path))
            XCTAssertEqual(try PNGCodec.readGray(path: path).pixels, grey.map(Float.init), "old file untouched")
            XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), ["out.png"])
        }
    }

    /// The committed sample faces are the first rows of test.csv (samples/test-sample.csv), pixel for pixel.
    func testSampleFacesMatchTheCSV() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let csv = root.appendingPathComponent("samples/test-sample.csv")
        guard let text = try? String(contentsOf: csv, encoding: .utf8) else { throw XCTSkip("no \(csv.path)") }
        let rows = text.split(separator: "\n").dropFirst().prefix(6)
        XCTAssertEqual(rows.count, 6)
        for row in rows {
            let parts = row.split(separator: ",")
            let id = String(parts[0])
            let pixels = parts[1].split(separator: " ").map { Float($0)! }
            let img = try PNGCodec.readGray(path: root.appendingPathComponent("samples/faces/face_\(id).png").path)
            XCTAssertEqual(img.width, 96); XCTAssertEqual(img.height, 96)
            XCTAssertEqual(img.pixels, pixels, "face_\(id).png")
        }
    }

    // MARK: - resizeArea

    func testResizeConstantStaysConstant() {
        let constant = GrayImage(width: 37, height: 23, pixels: .init(repeating: 42, count: 37 * 23))
        for (w, h) in [(9, 5), (96, 96), (12, 40), (36, 22), (1, 1), (37, 100)] {
            let r = resizeArea(constant, width: w, height: h)
            XCTAssertEqual(r.width, w); XCTAssertEqual(r.height, h); XCTAssertEqual(r.pixels.count, w * h)
            XCTAssertTrue(r.pixels.allSatisfy { abs($0 - 42) < 1e-4 }, "\(w)x\(h)")
        }
    }

    func testResizeHalvingIsExactBlockMeans() {
        let block = GrayImage(width: 4, height: 4, pixels: (0..<16).map(Float.init))
        XCTAssertEqual(resizeArea(block, width: 2, height: 2).pixels, [2.5, 4.5, 10.5, 12.5])
        XCTAssertEqual(resizeArea(block, width: 1, height: 1).pixels, [7.5])
    }

    func testResizeIdentity() {
        let face = GrayImage(width: 96, height: 96, pixels: (0..<9216).map { Float(($0 * 31) % 256) })
        XCTAssertEqual(resizeArea(face, width: 96, height: 96), face)
        // one axis kept, the other shrunk: the kept axis is untouched
        let rows = resizeArea(face, width: 96, height: 48)
        for x in 0..<96 { XCTAssertEqual(rows.pixels[x], (face.pixels[x] + face.pixels[96 + x]) / 2) }
    }

    func testResizeNonIntegerRatioIsTheAreaWeightedMean() {
        // 10 -> 4: each output covers 2.5 inputs.
        let line = GrayImage(width: 10, height: 1, pixels: [3, 1, 4, 1, 5, 9, 2, 6, 5, 3])
        let r = resizeArea(line, width: 4, height: 1)
        let p = line.pixels
        let want: [Float] = [
            (p[0] + p[1] + 0.5 * p[2]) / 2.5,
            (0.5 * p[2] + p[3] + p[4]) / 2.5,
            (p[5] + p[6] + 0.5 * p[7]) / 2.5,
            (0.5 * p[7] + p[8] + p[9]) / 2.5,
        ]
        for (a, b) in zip(r.pixels, want) { XCTAssertEqual(a, b, accuracy: 1e-5) }

        // the mean is kept in 2-D, for ratios that do not divide
        let ramp = GrayImage(width: 10, height: 10, pixels: (0..<100).map { Float(($0 * 37) % 101) })
        let mean = ramp.pixels.reduce(0, +) / 100
        for (w, h) in [(4, 4), (3, 7), (7, 3), (9, 9)] {
            let small = resizeArea(ramp, width: w, height: h)
            XCTAssertEqual(small.pixels.reduce(0, +) / Float(w * h), mean, accuracy: 1e-3, "\(w)x\(h)")
        }
        // against a brute-force area average: 7x5 -> 3x2
        let img = GrayImage(width: 7, height: 5, pixels: expected)
        let out = resizeArea(img, width: 3, height: 2)
        for oy in 0..<2 {
            for ox in 0..<3 {
                var s: Double = 0
                for y in 0..<5 {
                    for x in 0..<7 {
                        let wx = overlap(Double(x), Double(x + 1), Double(ox) * 7 / 3, Double(ox + 1) * 7 / 3)
                        let wy = overlap(Double(y), Double(y + 1), Double(oy) * 5 / 2, Double(oy + 1) * 5 / 2)
                        s += wx * wy * Double(expected[y * 7 + x])
                    }
                }
                XCTAssertEqual(Double(out.pixels[oy * 3 + ox]), s / (7.0 / 3 * 5.0 / 2), accuracy: 1e-3)
            }
        }
    }

    func testResizeEnlargingIsBilinearBetweenPixelCentres() {
        let line = GrayImage(width: 2, height: 1, pixels: [0, 10])
        XCTAssertEqual(resizeArea(line, width: 4, height: 1).pixels, [0, 2.5, 7.5, 10])
        let square = GrayImage(width: 2, height: 2, pixels: [0, 10, 20, 30])
        let big = resizeArea(square, width: 4, height: 4)
        XCTAssertEqual(big.pixels[0], 0)
        XCTAssertEqual(big.pixels[5], 7.5)  // (0.75, 0.75) weights on 0, (0.25, 0.75) on 10, ...
        XCTAssertEqual(big.pixels[15], 30)
        // a single pixel grows into a constant
        XCTAssertEqual(resizeArea(GrayImage(width: 1, height: 1, pixels: [7]), width: 3, height: 2).pixels, [Float](repeating: 7, count: 6))
    }

    func testResizeLargePhotoKeepsTheMean() {
        // A 12-megapixel photo down to 96x96 (separable passes, precomputed weights). Speed is the
        // bench's business, not a timed test's.
        let (w, h) = (4000, 3000)
        let photo = GrayImage(width: w, height: h, pixels: (0..<(w * h)).map { Float($0 % 251) })
        let small = resizeArea(photo, width: 96, height: 96)
        XCTAssertEqual(small.pixels.count, 9216)
        let mean = photo.pixels.reduce(0.0) { $0 + Double($1) } / Double(w * h)  // Double: 12M Float adds drift
        XCTAssertEqual(Double(small.pixels.reduce(0, +) / 9216), mean, accuracy: 0.01)
    }

    // MARK: - helpers

    func overlap(_ a0: Double, _ a1: Double, _ b0: Double, _ b1: Double) -> Double { max(0, min(a1, b1) - max(a0, b0)) }

    func withTemporaryDirectory(_ body: (String) throws -> Void) throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("png-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        try body(dir.path)
    }
}
