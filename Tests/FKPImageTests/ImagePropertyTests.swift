@testable import FKPImage
import FKPTensor
import FKPTestSupport
import Foundation
import XCTest

/// Seeded property tests of the image codecs: PNG write -> read is exact, and byte mutations of valid
/// PNG and JPEG files give a picture or an error, never a trap.
final class ImagePropertyTests: XCTestCase {
    func testPNGRoundTripIsExact() throws {
        var rng = Xoshiro(seed: 12)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("fkp-prop-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        for i in 0..<30 {
            let (w, h) = (1 + Int(rng.next() % 40), 1 + Int(rng.next() % 40))
            let img = RGBImage(width: w, height: h, pixels: (0..<(3 * w * h)).map { _ in UInt8(truncatingIfNeeded: rng.next()) })
            let path = dir.appendingPathComponent("\(i).png").path
            try PNGCodec.writeRGB(img, path: path)
            XCTAssertEqual(try PNGCodec.readRGB(path: path), img)
            let grey = (0..<(w * h)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            try PNGCodec.writeGray8(width: w, height: h, pixels: grey, path: path)
            XCTAssertEqual(try PNGCodec.readGray(path: path).pixels, grey.map(Float.init))
        }
    }

    /// Flips, overwrites, inserts and deletes bytes of `seed`, `count` times, and hands each result to `read`.
    func testMutatedImagesNeverTrap() throws {
        let png = try [UInt8](Data(contentsOf: repoRoot.appendingPathComponent("samples/faces/face_1.png")))
        Mutations.apply(to: png, count: 300, rngSeed: 1) { d in
            _ = try? PNGCodec.decodeRGB(d, name: "m.png", maxPixels: 1 << 22)
            _ = try? PNGCodec.decodeGray(d, name: "m.png", maxPixels: 1 << 22)
        }
        let jpeg = [UInt8](try JPEGCodec.encodeRGB(JPEGTests.source))
        Mutations.apply(to: jpeg, count: 300, rngSeed: 2) { d in
            _ = try? JPEGCodec.decodeRGB(d, name: "m.jpg", maxPixels: 1 << 22, onWarning: { _ in })
        }
    }

}
