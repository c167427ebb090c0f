import CDetect
@testable import FKPDetect
import FKPImage
import FKPTestSupport
import Foundation
import XCTest

private let fixturesDir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")
private let cameraPath = repoRoot.appendingPathComponent("samples/photos/skimage_camera.png").path

final class FaceDetectorTests: XCTestCase {
    func cascade(_ path: String) throws -> HaarCascade {
        guard FileManager.default.fileExists(atPath: path) else {
            print("skipping: \(path) is absent (install Debian's opencv-data)")
            throw XCTSkip("\(path) is absent (install Debian's opencv-data)")
        }
        return try HaarCascade(contentsOf: path)
    }

    /// The default detector of annotate: frontal (3 neighbours), profile both ways, alt2 verifier.
    func annotateDetector() throws -> FaceDetector {
        var frontal = DetectionParameters()
        frontal.minNeighbors = 3
        var d = FaceDetector(frontal: try cascade(HaarCascade.defaultPath), profile: try cascade(HaarCascade.profilePath),
                             parameters: frontal)
        d.verifier = try cascade(HaarCascade.verifierPath)
        return d
    }

    /// The Swift reference scan: every window on its own (`CompiledCascade.evaluate`), with OpenCV's skip
    /// after a first-stage rejection.
    func referenceScan(_ plan: ScalePlan, _ compiled: CompiledCascade, _ buffers: ScanBuffers, stride: Int) -> [[Int]] {
        var hits: [[Int]] = []
        var y = 0
        while y < plan.workHeight {
            var x = 0
            while x < plan.workWidth {
                let r = compiled.evaluate(buffers.sum + y * stride + x, buffers.sqsum + y * stride + x)
                if r > 0 { hits.append([x, y]) }
                if r == 0 { x += plan.step }
                x += plan.step
            }
            y += plan.step
        }
        return hits
    }

    /// Every C kernel set this CPU runs against the plain scalar evaluation of the cascade, on the real
    /// windows of both bundled photos at every scale (frontal, profile and mirrored profile cascades):
    /// each window's result code (the first stages, 8 windows a vector, then the later stages one by one)
    /// and normalisation factor, and the hits of a whole scan with OpenCV's skip.
    func testKernelSetsMatchTheScalarReference() throws {
        let sets = DetectKernels.supported
        #if arch(x86_64)
        XCTAssertEqual(sets.last?.name, "sse2", "the baseline set always runs")
        #endif
        XCTAssertFalse(sets.isEmpty)
        XCTAssertTrue(sets.contains { $0.name == DetectKernels.best.name }, "the chosen set is one of them")
        let profile = try cascade(HaarCascade.profilePath)
        let cascades = [try cascade(HaarCascade.defaultPath), profile, profile.mirrored()]
        for path in [fixturesDir.appendingPathComponent("skimage_astronaut.png").path, cameraPath] {
            let img = try PNGCodec.readGray(path: path)
            let bytes = img.bytes8
            for c in cascades {
                var p = DetectionParameters()
                p.minSize = 24
                let plans = scalePlans(imageWidth: img.width, imageHeight: img.height, cascade: c, parameters: p)
                let stride = plans.map(\.width).max()! + 1, rows = plans.map(\.height).max()! + 1
                let compiled = CompiledCascade(c, stride: stride)
                defer { compiled.deallocate() }
                let buffers = ScanBuffers(stride: stride, rows: rows, maxWidth: stride - 1)
                defer { buffers.deallocate() }
                var total = 0, passed = [Int](repeating: 0, count: sets.count)
                for plan in plans {
                    bytes.withUnsafeBufferPointer {
                        buildScaledIntegral(src: $0.baseAddress!, srcWidth: img.width, srcHeight: img.height, dstWidth: plan.width,
                                            dstHeight: plan.height, sum: buffers.sum, sqsum: buffers.sqsum, stride: stride, buffers: buffers)
                    }
                    let slow = referenceScan(plan, compiled, buffers, stride: stride)
                    total += slow.count
                    let positions = (plan.workWidth + plan.step - 1) / plan.step
                    let first = min(Int(FKP_DETECT_VECTOR_STAGES), compiled.stages.count)
                    for (k, set) in sets.enumerated() {
                        var fast: [[Int]] = []
                        scan(plan: plan, compiled: compiled, sum: buffers.sum, sqsum: buffers.sqsum, buffers: buffers,
                             kernels: set) { fast.append([$0, $1]) }
                        XCTAssertEqual(fast, slow, "\(set.name): \(path), \(c.path) at scale \(plan.scale)")
                        // Window by window (no skip), every row.
                        var mismatches = 0
                        withUnsafePointer(to: compiled.kernelCascade) { kc in
                            for y in Swift.stride(from: 0, to: plan.workHeight, by: plan.step) {
                                let prow = buffers.sum + y * stride, qrow = buffers.sqsum + y * stride
                                set.table.pointee.first_stages(kc, prow, qrow, positions, plan.step, buffers.codes, buffers.norms)
                                for i in 0..<positions {
                                    let x = i * plan.step
                                    var code = Int(buffers.codes[i])
                                    if code > 0 {
                                        if buffers.norms[i].bitPattern != compiled.varianceNormFactor(prow + x, qrow + x)?.bitPattern { mismatches += 1 }
                                        code = Int(set.table.pointee.later_stages(kc, prow + x, buffers.norms[i], first))
                                        if code > 0 { passed[k] += 1 }
                                    }
                                    if code != compiled.evaluate(prow + x, qrow + x) { mismatches += 1 }
                                }
                            }
                        }
                        XCTAssertEqual(mismatches, 0, "\(set.name): \(path), \(c.path) at scale \(plan.scale)")
                    }
                }
                for (k, set) in sets.enumerated() {
                    XCTAssertGreaterThan(passed[k], 0, "\(set.name), \(c.path): windows passed every stage")
                }
                if path == cameraPath && c.path == HaarCascade.defaultPath { continue }  // the frontal cascade misses him
                XCTAssertGreaterThan(total, 0, "\(path), \(c.path): the comparison saw hits")
            }
        }
    }

    /// The annotate detector's faces on the bundled photos, with each kernel set: the boxes, scores and
    /// poses the Swift SIMD detector gave before the C kernels (`annotate samples/photos`, main at 5f81d40).
    func testBundledPhotosKeepTheirBoxesWithEveryKernelSet() throws {
        let d = try annotateDetector()
        let expected: [String: Detection] = [
            "skimage_astronaut.png": Detection(box: FaceBox(x: 177, y: 66, width: 95, height: 95, neighbors: 0), score: 40, pose: .frontal),
            "skimage_camera.png": Detection(box: FaceBox(x: 200, y: 105, width: 85, height: 85, neighbors: 0), score: 8, pose: .right),
        ]
        for (name, want) in expected.sorted(by: { $0.key < $1.key }) {
            let img = try PNGCodec.readGray(path: repoRoot.appendingPathComponent("samples/photos/\(name)").path)
            for set in DetectKernels.supported {
                let faces = d.detect(in: img, kernels: set)
                XCTAssertEqual(faces.count, 1, "\(set.name), \(name): \(faces)")
                guard var f = faces.first else { continue }
                f.box.neighbors = 0
                XCTAssertEqual(f, want, "\(set.name), \(name)")
            }
        }
    }

    /// The box check sees exactly the faces scoring below `checkBelow` (boxes as merged) and drops those it
    /// refuses; the others stay as they were.
    func testBoxCheckDropsOnlyRefusedWeakFaces() throws {
        var d = try annotateDetector()
        let img = try PNGCodec.readGray(path: repoRoot.appendingPathComponent("samples/photos/skimage_astronaut.png").path)
        let plain = d.detect(in: img)
        XCTAssertEqual(plain.map(\.score), [40])
        final class Asked: @unchecked Sendable { var boxes: [FaceBox]?; var width = 0 }
        let asked = Asked()
        d.boxCheck = { image, boxes in
            asked.width = image.width
            asked.boxes = boxes
            return boxes.map { _ in 0.2 }
        }
        d.checkBelow = 41
        d.checkThreshold = 0.3
        XCTAssertEqual(d.detect(in: img), [])
        XCTAssertEqual(asked.boxes, plain.map(\.box).map { var b = $0; b.neighbors = asked.boxes?.first?.neighbors ?? 0; return b })
        XCTAssertEqual(asked.width, img.width)
        d.checkBelow = 40
        asked.boxes = nil
        XCTAssertEqual(d.detect(in: img), plain, "a face scoring 40 is not below 40")
        XCTAssertNil(asked.boxes, "no weak face, no call")
        d.checkBelow = 41
        d.checkThreshold = 0.2
        XCTAssertEqual(d.detect(in: img), plain, "a score at the threshold passes")
        d.boxCheck = { _, boxes in boxes.map { _ in .nan } }
        XCTAssertEqual(d.detect(in: img), [], "a NaN score passes nothing")
    }

    /// With several checked faces, exactly those the check scores below its threshold go, whatever their
    /// order.
    func testBoxCheckKeepsTheRightFacesAmongMany() throws {
        var d = try annotateDetector()
        d.members[0].parameters.minNeighbors = 1
        d.verifier = nil
        let img = try PNGCodec.readGray(path: repoRoot.appendingPathComponent("samples/photos/skimage_astronaut.png").path)
        let plain = d.detect(in: img)
        XCTAssert(plain.contains { $0.box.x % 2 == 0 } && plain.contains { $0.box.x % 2 == 1 },
                  "loose settings give boxes at even and odd x: \(plain)")
        // Pass the boxes whose x is even, refuse the others.
        d.boxCheck = { _, boxes in boxes.map { $0.x % 2 == 0 ? 0.9 : 0.1 } }
        d.checkBelow = 1000
        d.checkThreshold = 0.5
        XCTAssertEqual(d.detect(in: img), plain.filter { $0.box.x % 2 == 0 })
    }

    /// The rotation sweep's new faces must reach `rotationCheckThreshold` in the turned photo.
    func testBoxCheckGatesTheRotationSweep() throws {
        var d = try annotateDetector()
        d.rotations = [15]
        d.rotationMinScore = 1
        d.rotationParameters.minNeighbors = 1
        d.verifier = nil
        let img = try PNGCodec.readGray(path: repoRoot.appendingPathComponent("samples/photos/skimage_astronaut.png").path)
        let swept = d.detect(in: img).filter { $0.angle != 0 }
        XCTAssertFalse(swept.isEmpty, "the loose sweep finds something new")
        d.boxCheck = { _, boxes in boxes.map { _ in 0.5 } }
        d.checkBelow = 0
        d.rotationCheckThreshold = 0.6
        XCTAssertTrue(d.detect(in: img).filter { $0.angle != 0 }.isEmpty)
        d.rotationCheckThreshold = 0.5
        XCTAssertEqual(d.detect(in: img).filter { $0.angle != 0 }, swept)
    }

    func testMirroredCascadeFlipsEveryRectangle() throws {
        let c = try cascade(HaarCascade.profilePath)
        let m = c.mirrored()
        XCTAssertEqual(m.mirrored().features, c.features)
        XCTAssertEqual(m.stages, c.stages)
        let r = c.features[0].rects[0], f = m.features[0].rects[0]
        XCTAssertEqual(f.x, c.windowSize.width - r.x - r.width)
        XCTAssertEqual([f.y, f.width, f.height], [r.y, r.width, r.height])
        XCTAssertNotEqual(m.features, c.features)
    }

    /// The cameraman (turned about 45 degrees to the image's right) is found by the mirrored profile
    /// cascade; in the mirrored photo by the profile cascade as trained, at the mirrored place.
    func testTurnedFaceGetsItsPoseBothWays() throws {
        let d = try annotateDetector()
        let img = try PNGCodec.readGray(path: cameraPath)
        let faces = d.detect(in: img)
        XCTAssertEqual(faces.count, 1, "\(faces)")
        let f = try XCTUnwrap(faces.first)
        XCTAssertEqual(f.pose, .right)
        // His face: roughly x 180-280, y 90-200 in the 512x512 photo.
        XCTAssertTrue((170...230).contains(f.box.x) && (80...130).contains(f.box.y) && (60...120).contains(f.box.width), "\(f)")
        var mirrored = img
        for y in 0..<img.height { for x in 0..<img.width { mirrored.pixels[y * img.width + x] = img.pixels[y * img.width + img.width - 1 - x] } }
        let back = d.detect(in: mirrored)
        XCTAssertEqual(back.count, 1, "\(back)")
        XCTAssertEqual(back.first?.pose, .left)
        if let b = back.first {
            XCTAssertEqual(Double(img.width - b.box.x - b.box.width), Double(f.box.x), accuracy: 0.15 * Double(f.box.width))
            XCTAssertEqual(Double(b.box.y), Double(f.box.y), accuracy: 0.15 * Double(f.box.width))
        }
        // Frontal cascade alone: missed, as before the profile cascade.
        XCTAssertEqual(FaceDetector(frontal: try cascade(HaarCascade.defaultPath)).detect(in: img), [])
    }

    func testMergeAddsScoresAndKeepsTheFirstMembersBoxAndPose() {
        let frontal = FaceBox(x: 100, y: 100, width: 50, height: 50, neighbors: 7)
        let profileSame = FaceBox(x: 104, y: 98, width: 48, height: 48, neighbors: 20)
        let profileOther = FaceBox(x: 300, y: 100, width: 50, height: 50, neighbors: 4)
        let weakFrontalInside = FaceBox(x: 102, y: 101, width: 49, height: 49, neighbors: 2)
        let faces = FaceDetector.merge([(profileSame, .left, 1), (profileOther, .right, 2), (frontal, .frontal, 0),
                                        (weakFrontalInside, .frontal, 0)], overlap: 0.3)
        XCTAssertEqual(faces.count, 2)
        XCTAssertEqual(faces[0], Detection(box: frontal, score: 29, pose: .frontal))
        XCTAssertEqual(faces[1], Detection(box: profileOther, score: 4, pose: .right))
        XCTAssertEqual(overlap(frontal, frontal), 1)
        XCTAssertEqual(overlap(frontal, profileOther), 0)
        XCTAssertEqual(overlap(FaceBox(x: 0, y: 0, width: 10, height: 10), FaceBox(x: 5, y: 0, width: 10, height: 10)), 50.0 / 150, accuracy: 1e-12)
    }

    func testBoxShiftMovesOntoTheFrontalFraming() {
        let s = BoxShift(dx: -0.1, dy: 0.2, size: 0.8)
        XCTAssertEqual(s.apply(FaceBox(x: 100, y: 50, width: 100, height: 100, neighbors: 3)),
                       FaceBox(x: 90, y: 70, width: 80, height: 80, neighbors: 3))
        // The mirrored shift puts the box at the mirror place about the profile box's centre.
        XCTAssertEqual(s.mirrored.apply(FaceBox(x: 100, y: 50, width: 100, height: 100, neighbors: 3)),
                       FaceBox(x: 130, y: 70, width: 80, height: 80, neighbors: 3))
        let back = s.mirrored.mirrored
        XCTAssertEqual(back.dx, s.dx, accuracy: 1e-12)
        XCTAssertEqual(back.dy, s.dy, accuracy: 1e-12)
        XCTAssertEqual(back.size, s.size, accuracy: 1e-12)
    }

    /// The verifier and --min-score: a weak frontal face that alt2 does not confirm is dropped; a score
    /// threshold drops faces below it; the astronaut's strong face stays.
    func testVerifierAndMinScore() throws {
        let img = try PNGCodec.readGray(path: fixturesDir.appendingPathComponent("skimage_astronaut.png").path)
        var d = try annotateDetector()
        let faces = d.detect(in: img)
        XCTAssertEqual(faces.count, 1, "\(faces)")
        XCTAssertEqual(faces.first?.pose, .frontal)
        let score = try XCTUnwrap(faces.first?.score)
        XCTAssertGreaterThanOrEqual(score, d.verifyBelow, "strong enough not to need the verifier")
        d.minScore = score
        XCTAssertEqual(d.detect(in: img).count, 1)
        d.minScore = score + 1
        XCTAssertEqual(d.detect(in: img), [])
        // The verifier confirms the face where it is, not on a blank picture.
        let blank = GrayImage(width: 300, height: 300, pixels: [Float](repeating: 0, count: 90000))
        XCTAssertFalse(d.confirms(d.verifier!, faces[0].box, blank.bytes8, 300, 300))
        XCTAssertTrue(d.confirms(d.verifier!, faces[0].box, img.bytes8, img.width, img.height))
    }
}
