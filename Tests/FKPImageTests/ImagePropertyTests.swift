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
    static func mutations(of seed: [UInt8], count: Int, rngSeed: UInt64, _ read: (Data) -> Void) {
        var rng = Xoshiro(seed: rngSeed)
        for _ in 0..<count {
            var b = seed
            for _ in 0...Int(rng.next() % 4) {
                let i = Int(rng.next() % UInt64(max(b.count, 1)))
                switch rng.next() % 5 {
                case 0 where !b.isEmpty: b[i] ^= UInt8(1 << (rng.next() % 8))
                case 1 where !b.isEmpty: b[i] = [0, 0xFF, 0x7F, 0x80, UInt8(truncatingIfNeeded: rng.next())][Int(rng.next() % 5)]
                case 2: b.insert(contentsOf: (0..<Int(rng.next() % 8)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }, at: i)
                case 3 where !b.isEmpty: b.removeSubrange(i..<min(b.count, i + 1 + Int(rng.next() % 16)))
                default: b = Array(b.prefix(Int(rng.next() % UInt64(b.count + 1))))
                }
            }
            read(Data(b))
        }
    }

    func testMutatedImagesNeverTrap() throws {
        let png = try [UInt8](Data(contentsOf: repoRoot.appendingPathComponent("samples/faces/face_1.png")))
        Self.mutations(of: png, count: 300, rngSeed: 1) { d in
            _ = try? PNGCodec.decodeRGB(d, name: "m.png", maxPixels: 1 << 22)
            _ = try? PNGCodec.decodeGray(d, name: "m.png", maxPixels: 1 << 22)
        }
        let jpeg = [UInt8](try JPEGCodec.encodeRGB(JPEGTests.source))
        Self.mutations(of: jpeg, count: 300, rngSeed: 2) { d in
            _ = try? JPEGCodec.decodeRGB(d, name: "m.jpg", maxPixels: 1 << 22, onWarning: { _ in })
        }
    }

}
