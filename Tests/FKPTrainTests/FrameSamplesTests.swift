import FKPAlign
import FKPImage
import FKPInference
import FKPIngest
import FKPTensor
import FKPTestSupport
import Foundation
import XCTest

@testable import FKPTrain

final class FrameSamplesTests: XCTestCase {
    /// A photo of bright 5x5 dots at the 15 keypoints (the mean shape moved by `t`) on a dark ground.
    static func dotPhoto(_ t: Similarity, width: Int = 240, height: Int = 200, path: String) throws -> [Double] {
        let k = t.apply(CanonicalFace.meanShape)
        var px = [UInt8](repeating: 20, count: 3 * width * height)
        for p in stride(from: 0, to: 30, by: 2) {
            let cx = Int(k[p]), cy = Int(k[p + 1])
            for y in (cy - 2)...(cy + 2) { for x in (cx - 2)...(cx + 2) where x >= 0 && y >= 0 && x < width && y < height {
                for c in 0..<3 { px[3 * (y * width + x) + c] = 250 }
            } }
        }
        try PNGCodec.writeRGB(RGBImage(width: width, height: height, pixels: px), path: path)
        // Dots are centred on the pixel (cx, cy): centre cx + 0.5.
        return stride(from: 0, to: 30, by: 2).flatMap { [Double(Int(k[$0])) + 0.5, Double(Int(k[$0 + 1])) + 0.5] }
    }

    /// Two dot photos of two people in a temporary folder that `test` removes when it ends.
    static func dotPhotoSet(for test: XCTestCase) throws -> LandmarkSet {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("fkp-frames-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        test.addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        var set = LandmarkSet(images: [], keypoints: [], persons: [], origins: [])
        for (i, t) in [Similarity(angle: 0.2, scale: 1.5, center: (48, 48), shift: (60, 40)),
                       Similarity(angle: -0.3, scale: 0.9, center: (48, 48), shift: (80, 30))].enumerated() {
            let path = "\(dir)/p\(i)_0\(i).png"
            set.keypoints.append(try dotPhoto(t, path: path))
            set.images.append(path); set.persons.append("p\(i)"); set.origins.append(path)
        }
        return set
    }

    func makeSamples(_ augmentation: Augmentation) throws -> FrameSamples {
        try FrameSamples(try Self.dotPhotoSet(for: self), augmentation: augmentation)
    }

    /// `--warp fine`: only narrow draws, half the narrow moves.
    func testFineWarpHalvesTheNarrowMoves() throws {
        let (train, _) = try framesData(dir: repoPath("samples/frames"), warp: "fine", seed: 1)
        let a = try XCTUnwrap(train as? FrameSamples).augmentation
        XCTAssertEqual(a.wideShare, 0)
        XCTAssertEqual(a.narrow, Augmentation.fine)
        let n = Augmentation.standard.narrow
        XCTAssertEqual([a.narrow.rotationDegrees * 2, a.narrow.scale * 2, a.narrow.shift * 2], [n.rotationDegrees, n.scale, n.shift])
        let (narrow, _) = try framesData(dir: repoPath("samples/frames"), warp: "narrow", seed: 1)
        XCTAssertEqual(try XCTUnwrap(narrow as? FrameSamples).augmentation.narrow, n)
    }

    /// Whatever the draw, each target lands on its dot in the cut image: image and targets go through one
    /// transform. (A mismatch of half a pixel or a swapped axis fails this.)
    func testTargetsFollowTheImage() throws {
        var strong = Augmentation.standard
        strong.brightness = 0; strong.contrast = 0; strong.gamma = 0; strong.lowResShare = 0
        let samples = try makeSamples(strong)
        var image = [Float](repeating: 0, count: 9216), target = [Float](repeating: 0, count: 30)
        var checked = 0
        for key in 0..<40 {
            let row = key % 2
            samples.write(row: row, key: UInt64(key) &* 7919, image: &image, target: &target)
            for p in stride(from: 0, to: 30, by: 2) {
                let x = KeypointScale.pixels(target[p]), y = KeypointScale.pixels(target[p + 1])
                guard x > 2, y > 2, x < 94, y < 94 else { continue }
                XCTAssertGreaterThan(image[Int(y) * 96 + Int(x)], 0.6, "key \(key) point \(p / 2) at (\(x), \(y)) misses its dot")
                checked += 1
            }
        }
        XCTAssertGreaterThan(checked, 400)
    }

    func testPerfectCropPutsTheFaceOnTheMeanShape() throws {
        let samples = try makeSamples(.none)
        var image = [Float](repeating: 0, count: 9216), target = [Float](repeating: 0, count: 30)
        samples.write(row: 0, key: 1, image: &image, target: &target)
        for c in 0..<30 { XCTAssertEqual(Double(KeypointScale.pixels(target[c])), CanonicalFace.meanShape[c], accuracy: 0.6) }
    }

    func testSameKeySameSample() throws {
        let samples = try makeSamples(.standard)
        var a = [Float](repeating: 0, count: 9216), b = a, ta = [Float](repeating: 0, count: 30), tb = ta
        samples.write(row: 1, key: 99, image: &a, target: &ta)
        samples.write(row: 1, key: 99, image: &b, target: &tb)
        XCTAssertEqual(a, b); XCTAssertEqual(ta, tb)
        samples.write(row: 1, key: 100, image: &b, target: &tb)
        XCTAssertNotEqual(ta, tb)
    }

    func testSimilarityFitAndInverse() {
        let t = Similarity(angle: 0.7, scale: 2.5, center: (10, 20), shift: (3, -4))
        let p: [Double] = [1, 2, 30, 5, -7, 11, 40, 40]
        let fit = Similarity.fit(from: p, to: t.apply(p))!
        XCTAssertEqual(fit.a, t.a, accuracy: 1e-9); XCTAssertEqual(fit.b, t.b, accuracy: 1e-9)
        XCTAssertEqual(fit.tx, t.tx, accuracy: 1e-9); XCTAssertEqual(fit.ty, t.ty, accuracy: 1e-9)
        let back = t.then(t.inverse).apply(p)
        for i in 0..<p.count { XCTAssertEqual(back[i], p[i], accuracy: 1e-9) }
        XCTAssertNil(Similarity.fit(from: [1, 1, 1, 1], to: [2, 2, 3, 3]), "coincident points define no transform")
        XCTAssertNil(Similarity.fit(from: [1, .nan, 1, 1], to: [2, 2, 3, 3]), "one usable point is not enough")
    }

    func testPersonRuleAndHeldOutSplit() {
        XCTAssertEqual(LandmarkSet.person(of: "images/Zhang_Ziyi_41b.jpg"), "Zhang_Ziyi")
        XCTAssertEqual(LandmarkSet.person(of: "Abdel_Aziz_Al-Hakim_00.jpg"), "Abdel_Aziz_Al-Hakim")
        XCTAssertEqual(LandmarkSet.person(of: "group_photo.png"), "group_photo")
        // The rule is FNV-1a 64 of the name, mod 5 (documented; the Python in bench/ uses the same).
        XCTAssertEqual(LandmarkSet.fnv1a64(""), 0xcbf2_9ce4_8422_2325)
        XCTAssertEqual(LandmarkSet.fnv1a64("a"), 0xaf63_dc4c_8601_ec8c)
    }
}
