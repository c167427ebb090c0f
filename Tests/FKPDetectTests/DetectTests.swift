@testable import FKPDetect
import FKPImage
import FKPTestSupport
import Foundation
import XCTest

/// Located through #filePath (the test target has no resources).
private let fixturesDir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")
/// ../shared/data/photos relative to the repository root.
private let photosDir = repoRoot.deletingLastPathComponent().appendingPathComponent("shared/data/photos")

final class DetectTests: XCTestCase {
    func defaultCascade() throws -> HaarCascade {
        guard FileManager.default.fileExists(atPath: HaarCascade.defaultPath) else {
            print("skipping: \(HaarCascade.defaultPath) is absent (install Debian's opencv-data)")
            throw XCTSkip("\(HaarCascade.defaultPath) is absent (install Debian's opencv-data)")
        }
        return try HaarCascade(contentsOf: HaarCascade.defaultPath)
    }

    func tempFile(_ name: String, _ contents: String) throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("fkp-detect-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent(name)
        try contents.write(to: url, atomically: true, encoding: .utf8)
        return url.path
    }

    // MARK: Cascade parsing

    func testParsesFrontalFaceDefault() throws {
        let c = try defaultCascade()
        XCTAssertEqual(c.windowSize.width, 24)
        XCTAssertEqual(c.windowSize.height, 24)
        XCTAssertEqual(c.stageCount, 25)
        XCTAssertEqual(c.featureCount, 2913)
        XCTAssertEqual(c.weakClassifierCount, 2913)
        XCTAssertTrue(c.isStumpBased)
        // First stage, first stump and first feature as written in the file.
        XCTAssertEqual(c.stages[0].weak.count, 9)
        XCTAssertEqual(c.stages[0].threshold, Float(-5.0425500869750977), accuracy: 1e-6)
        XCTAssertEqual(c.stages[0].weak[0].nodes[0], TreeNode(left: 0, right: -1, featureIndex: 0, threshold: Float(-3.1511999666690826e-02)))
        XCTAssertEqual(c.stages[0].weak[0].leaves, [Float(2.0875380039215088), Float(-2.2172100543975830)])
        XCTAssertEqual(c.features[0].rects, [HaarRect(x: 6, y: 4, width: 12, height: 9, weight: -1),
                                             HaarRect(x: 6, y: 7, width: 12, height: 3, weight: 3)])
        XCTAssertEqual(c.features.last!.rects.count, 3)
        XCTAssertEqual(c.stages.map(\.weak.count).max(), 211) // <maxWeakCount> in <stageParams>
        XCTAssertEqual(c.stages.last!.weak.count, 200)
    }

    func testParsesTreeCascade() throws {
        // alt2 has two-node trees as weak classifiers.
        let path = "/usr/share/opencv4/haarcascades/haarcascade_frontalface_alt2.xml"
        guard FileManager.default.fileExists(atPath: path) else { throw XCTSkip("\(path) is absent") }
        let c = try HaarCascade(contentsOf: path)
        XCTAssertEqual(c.windowSize.width, 20)
        XCTAssertEqual(c.stageCount, 20)
        XCTAssertFalse(c.isStumpBased)
        XCTAssertEqual(c.stages[0].weak[0].nodes.count, 2)
    }

    func testMissingCascadeNamesTheFile() {
        let path = "/nonexistent/dir/cascade.xml"
        XCTAssertThrowsError(try HaarCascade(contentsOf: path)) { e in
            XCTAssertEqual(e as? CascadeError, .unreadable(path: path, reason: "no such file"))
            XCTAssertTrue("\(e)".contains(path), "\(e)")
        }
    }

    func testCorruptCascadesNameTheFile() throws {
        let cases: [(String, String, String)] = [
            ("notxml.xml", "this is not XML <<<", "XML"),
            ("truncated.xml", "<?xml version=\"1.0\"?><opencv_storage><cascade><stageType>BOOST</stageType><featureType>HAAR", "XML"),
            ("other.xml", "<?xml version=\"1.0\"?><svg><g/></svg>", "opencv_storage"),
            ("empty.xml", "<?xml version=\"1.0\"?><opencv_storage></opencv_storage>", "<cascade>"),
            ("lbp.xml", "<?xml version=\"1.0\"?><opencv_storage><cascade><stageType>BOOST</stageType><featureType>LBP</featureType><width>24</width><height>24</height></cascade></opencv_storage>", "LBP"),
            ("nostages.xml", "<?xml version=\"1.0\"?><opencv_storage><cascade><stageType>BOOST</stageType><featureType>HAAR</featureType><width>24</width><height>24</height><stages></stages><features></features></cascade></opencv_storage>", "no stages"),
            ("old.xml", "<?xml version=\"1.0\"?><opencv_storage><haarcascade_frontalface type_id=\"opencv-haar-classifier\"><size>24 24</size></haarcascade_frontalface></opencv_storage>", "old-format"),
            ("badref.xml", miniCascade(featureIndex: 5), "out of range"),
            ("badrect.xml", miniCascade(rect: "20 20 10 10 -1."), "outside"),
        ]
        for (name, text, fragment) in cases {
            let path = try tempFile(name, text)
            XCTAssertThrowsError(try HaarCascade(contentsOf: path), name) { e in
                XCTAssertTrue(e is CascadeError, "\(name): \(e)")
                XCTAssertTrue("\(e)".contains(path), "\(name): \(e)")
                XCTAssertTrue("\(e)".contains(fragment), "\(name): \(e)")
            }
        }
        // The same builder with valid values parses.
        let ok = try HaarCascade(contentsOf: tempFile("ok.xml", miniCascade()))
        XCTAssertEqual(ok.stageCount, 1)
        XCTAssertEqual(ok.windowSize.width, 24)
    }

    func testTiltedFeaturesAreRejected() throws {
        let path = try tempFile("tilted.xml", miniCascade(tilted: true))
        XCTAssertThrowsError(try HaarCascade(contentsOf: path)) { e in
            guard case .unsupported(let p, let reason)? = e as? CascadeError else { return XCTFail("\(e)") }
            XCTAssertEqual(p, path)
            XCTAssertTrue(reason.contains("tilted"), reason)
        }
        let real = "/usr/share/opencv4/haarcascades/haarcascade_upperbody.xml"
        if FileManager.default.fileExists(atPath: real) {
            XCTAssertThrowsError(try HaarCascade(contentsOf: real)) { e in XCTAssertTrue("\(e)".contains("tilted"), "\(e)") }
        }
    }

    /// A one-stage, one-stump cascade.
    func miniCascade(featureIndex: Int = 0, rect: String = "6 4 12 9 -1.", tilted: Bool = false) -> String {
        """
        <?xml version="1.0"?>
        <opencv_storage>
        <cascade type_id="opencv-cascade-classifier"><stageType>BOOST</stageType>
          <featureType>HAAR</featureType><height>24</height><width>24</width>
          <stageNum>1</stageNum>
          <stages><_><maxWeakCount>1</maxWeakCount><stageThreshold>-1.0</stageThreshold>
            <weakClassifiers><_><internalNodes>0 -1 \(featureIndex) 0.01</internalNodes>
              <leafValues>1.0 -1.0</leafValues></_></weakClassifiers></_></stages>
          <features><_><rects><_>\(rect)</_><_>6 7 12 3 3.</_></rects>\(tilted ? "<tilted>1</tilted>" : "")</_></features>
        </cascade>
        </opencv_storage>
        """
    }

    // MARK: Integral images and features

    func scratch(_ w: Int, _ h: Int) -> ScanBuffers { ScanBuffers(stride: w + 1, rows: h + 1, maxWidth: w) }

    func testIntegralImageMatchesBruteForce() {
        let (w, h) = (13, 9)
        var rng = SystemRandomNumberGenerator()
        let img = (0..<(w * h)).map { _ in UInt8.random(in: 0...255, using: &rng) }
        let b = scratch(w, h)
        defer { b.deallocate() }
        img.withUnsafeBufferPointer { src in
            buildScaledIntegral(src: src.baseAddress!, srcWidth: w, srcHeight: h, dstWidth: w, dstHeight: h,
                                sum: b.sum, sqsum: b.sqsum, stride: w + 1, buffers: b)
        }
        for y in 0...h {
            for x in 0...w {
                var s = 0, q = 0
                for yy in 0..<y { for xx in 0..<x { let v = Int(img[yy * w + xx]); s += v; q += v * v } }
                XCTAssertEqual(Int(b.sum[y * (w + 1) + x]), s, "sum at \(x),\(y)")
                XCTAssertEqual(Int(b.sqsum[y * (w + 1) + x]), q, "sqsum at \(x),\(y)")
            }
        }
    }

    /// On a big white image the Int32 running sum wraps (3000² × 255 > 2³¹) but every rectangle sum taken
    /// with wrapping arithmetic stays exact; the Int64 squared sum does not wrap at all.
    func testIntegralRectSumsStayExactOnLargeImages() {
        let (w, h) = (3000, 3000)
        let img = [UInt8](repeating: 255, count: w * h)
        let b = scratch(w, h)
        defer { b.deallocate() }
        img.withUnsafeBufferPointer { src in
            buildScaledIntegral(src: src.baseAddress!, srcWidth: w, srcHeight: h, dstWidth: w, dstHeight: h,
                                sum: b.sum, sqsum: b.sqsum, stride: w + 1, buffers: b)
        }
        let s = w + 1
        let (x0, y0, x1, y1) = (2970, 2970, 3000, 3000)
        let rect = b.sum[y0 * s + x0] &- b.sum[y0 * s + x1] &- b.sum[y1 * s + x0] &+ b.sum[y1 * s + x1]
        XCTAssertEqual(rect, 30 * 30 * 255)
        XCTAssertEqual(b.sqsum[h * s + w], Int64(w * h) * 255 * 255)
    }

    func testShrinkingKeepsFlatImagesFlatAndAveragesPairs() {
        // 4x2 -> 2x1: centres map exactly between source pixels, so each output is the mean of a 2x2 block.
        let img: [UInt8] = [10, 20, 100, 200, 30, 40, 0, 100]
        let b = scratch(4, 2)
        defer { b.deallocate() }
        img.withUnsafeBufferPointer { src in
            buildScaledIntegral(src: src.baseAddress!, srcWidth: 4, srcHeight: 2, dstWidth: 2, dstHeight: 1,
                                sum: b.sum, sqsum: b.sqsum, stride: 3, buffers: b)
        }
        // Row 1 of the integral: [0, 25, 25 + 100].
        XCTAssertEqual(b.sum[3 + 1], 25)
        XCTAssertEqual(b.sum[3 + 2], 125)
    }

    func testFeatureValueAndVarianceNormalisation() throws {
        let c = try defaultCascade()
        let (w, h) = (24, 24)
        let img = (0..<(w * h)).map { i in UInt8((i % w) * 7 + (i / w) * 3 + (i * 31 % 17)) }
        let b = scratch(w, h)
        defer { b.deallocate() }
        img.withUnsafeBufferPointer { src in
            buildScaledIntegral(src: src.baseAddress!, srcWidth: w, srcHeight: h, dstWidth: w, dstHeight: h,
                                sum: b.sum, sqsum: b.sqsum, stride: w + 1, buffers: b)
        }
        let compiled = CompiledCascade(c, stride: w + 1)
        defer { compiled.deallocate() }
        func rectSum(_ r: HaarRect) -> Double {
            var s = 0.0
            for y in r.y..<(r.y + r.height) { for x in r.x..<(r.x + r.width) { s += Double(img[y * w + x]) } }
            return s
        }
        // Raw feature values: Σ weight × pixel sum.
        for fi in [0, 1, 100, 2912] {
            let f = c.features[fi]
            let expected = f.rects.reduce(0.0) { $0 + Double($1.weight) * rectSum($1) }
            XCTAssertEqual(Double(compiled.features[fi].value(b.sum)), expected, accuracy: 1e-3, "feature \(fi)")
        }
        // Normalisation: 1 / (area × standard deviation) over the window inset by one pixel.
        var s = 0.0, q = 0.0
        for y in 1..<23 { for x in 1..<23 { let v = Double(img[y * w + x]); s += v; q += v * v } }
        let area = 22.0 * 22.0
        let std = (q / area - (s / area) * (s / area)).squareRoot()
        XCTAssertGreaterThan(std, 10)
        let vnf = try XCTUnwrap(compiled.varianceNormFactor(b.sum, b.sqsum))
        XCTAssertEqual(Double(vnf), 1 / (area * std), accuracy: 1e-6 / (area * std))
        // A flat window (std 0) and a low-contrast one (std <= 10) are rejected like OpenCV does.
        let flat = [UInt8](repeating: 128, count: w * h)
        let low = (0..<(w * h)).map { i in UInt8(120 + (i % 2) * 10) } // std 5
        for (name, im) in [("flat", flat), ("low contrast", low)] {
            im.withUnsafeBufferPointer { src in
                buildScaledIntegral(src: src.baseAddress!, srcWidth: w, srcHeight: h, dstWidth: w, dstHeight: h,
                                    sum: b.sum, sqsum: b.sqsum, stride: w + 1, buffers: b)
            }
            XCTAssertNil(compiled.varianceNormFactor(b.sum, b.sqsum), name)
            XCTAssertEqual(compiled.evaluate(b.sum, b.sqsum), -1, name)
        }
    }

    // MARK: Scales

    func testScalePlanFollowsOpenCV() throws {
        let c = try defaultCascade()
        let plans = scalePlans(imageWidth: 200, imageHeight: 100, cascade: c, parameters: .init())
        // 24 × 1.1^k: 24, 26.4, 29.04 are below 30; the first used factor is 1.1³ (window 32).
        XCTAssertEqual(plans.first?.windowWidth, 32)
        XCTAssertEqual(Double(plans.first!.scale), 1.331, accuracy: 1e-5)
        XCTAssertEqual(plans.first?.width, 150)
        XCTAssertEqual(plans.first?.height, 75)
        XCTAssertEqual(plans.first?.step, 2)
        XCTAssertEqual(plans.first?.workWidth, 150 + 1 - 24)
        // The last window fits the image height.
        XCTAssertLessThanOrEqual(plans.last!.windowHeight, 100)
        XCTAssertTrue(plans.allSatisfy { $0.step == ($0.scale >= 2 ? 1 : 2) })
        var p = DetectionParameters()
        p.maxSize = 60
        XCTAssertTrue(scalePlans(imageWidth: 200, imageHeight: 100, cascade: c, parameters: p).allSatisfy { $0.windowWidth <= 60 })
        XCTAssertTrue(scalePlans(imageWidth: 20, imageHeight: 20, cascade: c, parameters: .init()).isEmpty)
    }

    // MARK: Grouping

    func testGroupingClustersAveragesAndThresholds() {
        func box(_ x: Int, _ y: Int, _ s: Int) -> FaceBox { FaceBox(x: x, y: y, width: s, height: s) }
        // Cluster A: 4 near-identical boxes; cluster B: 2 boxes far away; C: a lone box.
        let a = [box(100, 100, 50), box(102, 101, 50), box(98, 99, 52), box(101, 100, 48)]
        let bb = [box(300, 50, 40), box(303, 52, 40)]
        let c = [box(10, 300, 30)]
        let all = a + bb + c
        let g3 = groupRectangles(all, minNeighbors: 3)
        XCTAssertEqual(g3, [FaceBox(x: 100, y: 100, width: 50, height: 50, neighbors: 4)])
        let g1 = groupRectangles(all, minNeighbors: 1)
        XCTAssertEqual(g1, [FaceBox(x: 100, y: 100, width: 50, height: 50, neighbors: 4),
                            FaceBox(x: 302, y: 51, width: 40, height: 40, neighbors: 2)]) // 301.5 -> 302 (half to even)
        // OpenCV drops clusters with n <= minNeighbors: 4 members pass 3 but not 4.
        XCTAssertEqual(groupRectangles(a, minNeighbors: 4), [])
        // minNeighbors 0: no grouping.
        XCTAssertEqual(groupRectangles(all, minNeighbors: 0).count, all.count)
        XCTAssertTrue(groupRectangles(all, minNeighbors: 0).allSatisfy { $0.neighbors == 1 })
    }

    func testGroupingIsTransitive() {
        // Each box is similar only to its neighbours in the chain, yet all end up in one cluster.
        let chain = (0..<6).map { FaceBox(x: $0 * 8, y: 0, width: 50, height: 50) }
        XCTAssertFalse(similar(chain[0], chain[2], eps: 0.2)) // delta = 10, dx = 16
        XCTAssertTrue(similar(chain[0], chain[1], eps: 0.2))
        let g = groupRectangles(chain, minNeighbors: 2)
        XCTAssertEqual(g, [FaceBox(x: 20, y: 0, width: 50, height: 50, neighbors: 6)])
    }

    func testGroupingDropsSmallBoxesInsideBigOnes() {
        let big = (0..<8).map { FaceBox(x: 100 + $0 % 2, y: 100, width: 100, height: 100) }
        let small = (0..<4).map { FaceBox(x: 130 + $0 % 2, y: 130, width: 30, height: 30) }
        // Small cluster (4) inside the big one (8 > max(3, 4)): dropped.
        XCTAssertEqual(groupRectangles(big + small, minNeighbors: 2).map(\.neighbors), [8])
        // The same small cluster with more members than the big one is kept.
        let many = (0..<10).map { FaceBox(x: 130 + $0 % 2, y: 130, width: 30, height: 30) }
        XCTAssertEqual(groupRectangles(big + many, minNeighbors: 2).map(\.neighbors), [8, 10])
    }

    // MARK: Detection

    func testBlankImageHasNoFaces() throws {
        let c = try defaultCascade()
        let img = GrayImage(width: 320, height: 240, pixels: [Float](repeating: 128, count: 320 * 240))
        XCTAssertEqual(detectFaces(in: img, cascade: c), [])
        XCTAssertEqual(detectCandidates(gray8: [UInt8](repeating: 128, count: 320 * 240), width: 320, height: 240, cascade: c), [])
        // Smaller than the minimum face.
        XCTAssertEqual(detectFaces(in: GrayImage(width: 20, height: 20, pixels: [Float](repeating: 0, count: 400)), cascade: c), [])
    }

    func testAstronautHasExactlyOneFace() throws {
        let c = try defaultCascade()
        let img = try PNGCodec.readGray(path: fixturesDir.appendingPathComponent("skimage_astronaut.png").path)
        XCTAssertEqual(img.width, 512)
        let faces = detectFaces(in: img, cascade: c)
        XCTAssertEqual(faces.count, 1, "\(faces)")
        let f = try XCTUnwrap(faces.first)
        // Eileen Collins' face: roughly x 175-280, y 60-175 in the 512x512 picture.
        XCTAssertTrue((150...200).contains(f.x), "\(f)")
        XCTAssertTrue((50...100).contains(f.y), "\(f)")
        XCTAssertTrue((80...140).contains(f.width), "\(f)")
        XCTAssertEqual(f.width, f.height)
        XCTAssertGreaterThan(f.neighbors, 5)
        // Thread count does not change anything (the raw hits are sorted).
        XCTAssertEqual(detectFaces(in: img, cascade: c, threads: 1), faces)
        XCTAssertEqual(detectFaces(in: img, cascade: c, threads: 3), faces)
    }

    /// Faces per photo and time, for the report. Runs only with FKP_DETECT_PHOTOS=1.
    /// The 24 photos of ../shared/data/photos: 90 faces, a face in every photo but skimage_camera (whose
    /// turned face the cascade misses), as OpenCV's CascadeClassifier finds with the same cascade. One
    /// line per photo on stdout for comparing boxes; speed belongs to `bench`, not here.
    func testPhotosReport() throws {
        guard FileManager.default.fileExists(atPath: photosDir.path) else {
            print("skipping: \(photosDir.path) is absent")
            throw XCTSkip("\(photosDir.path) is absent")
        }
        let c = try defaultCascade()
        let names = try FileManager.default.contentsOfDirectory(atPath: photosDir.path).filter { $0.hasSuffix(".png") }.sorted()
        var faces = 0, empty: [String] = []
        for name in names {
            let img = try PNGCodec.readGray(path: photosDir.appendingPathComponent(name).path)
            let found = detectFaces(in: img, cascade: c, threads: 2)
            faces += found.count
            if found.isEmpty { empty.append(name) }
            print(String(format: "{\"photo\": \"%@\", \"size\": \"%dx%d\", \"faces\": %d, \"boxes\": \"%@\"}",
                         name, img.width, img.height, found.count,
                         found.map { "\($0.x),\($0.y),\($0.width),\($0.height),n=\($0.neighbors)" }.joined(separator: " ")))
        }
        XCTAssertEqual(names.count, 24)
        XCTAssertEqual(faces, 90)
        XCTAssertEqual(empty, ["skimage_camera.png"])
    }
}
