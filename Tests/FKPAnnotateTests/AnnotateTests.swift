import FKPAnnotate
import FKPDetect
import FKPImage
import FKPIngest
import FKPEngine
import FKPExport
import FKPInference
import FKPTensor
import FKPTestSupport
import Foundation
import XCTest

final class AnnotateTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("fkp-annotate-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    /// The face verifier's training boxes: on each sample frame the loosest detector's box that holds the
    /// labelled face (both eye centres and the nose tip) is marked a face, and no other box is.
    func testLabelledBoxesMarkOnlyTheLabelledFace() throws {
        guard FileManager.default.fileExists(atPath: HaarCascade.defaultPath) else {
            print("skipping: \(HaarCascade.defaultPath) is absent (install Debian's opencv-data)")
            throw XCTSkip("\(HaarCascade.defaultPath) is absent")
        }
        let set = try LandmarkFiles.read(repoPath("samples/frames"))
        let images = try ImageFile.readGray(paths: set.images)
        let detector = try XCTUnwrap(try AnnotationSettings.looseCandidates.detector())
        let boxes = FramesEvaluation.labelledBoxes(images, set, detector: detector)
        XCTAssertEqual(boxes.count, set.count)
        var others = 0
        for (i, photo) in boxes.enumerated() {
            let faces = photo.filter(\.isFace)
            XCTAssertEqual(faces.count, 1, "\(set.images[i]): \(photo)")
            let k = set.keypoints[i]
            for f in faces {
                for p in [0, 2, 20] {
                    XCTAssert(k[p] >= f.x && k[p] <= f.x + f.width && k[p + 1] >= f.y && k[p + 1] <= f.y + f.width,
                              "\(set.images[i]): keypoint \(p / 2) outside the face box \(f)")
                }
            }
            others += photo.count - faces.count
        }
        XCTAssertGreaterThan(others, 0, "the loosest detector also boxes other things")
    }

    func testShardParsing() {
        XCTAssertEqual(Shard("2/3")?.select([1, 2, 3, 4, 5, 6]), [2, 5])
        XCTAssertNil(Shard("4/3"))
        XCTAssertNil(Shard("0/3"))
        XCTAssertNil(Shard("1/0"))
    }

    /// The pipeline on several photos at once (one chunk, decode/detect and draw in parallel, the path
    /// the Thread Sanitizer run covers): records in input order, one annotated PNG each, no failures.
    func testPipelineAnnotatesPhotosInOrder() throws {
        let photo = repoPath("samples/photos/skimage_astronaut.png")
        var inputs: [String] = []
        for i in 0..<5 {
            let p = dir.appendingPathComponent("p\(i).png").path
            try FileManager.default.copyItem(atPath: photo, toPath: p)
            inputs.append(p)
        }
        var settings = AnnotationSettings()
        settings.output = dir.appendingPathComponent("out").path
        settings.threads = 2
        let pipeline = try AnnotationPipeline(modelPath: repoPath("samples/model.safetensors"), device: .cpu, threads: 2,
                                              settings: settings)
        var text = ""
        let summary = try pipeline.run(inputs: inputs, shard: nil, records: FaceRecordWriter(format: .csv) { text += $0 })
        XCTAssertEqual(summary.failed, 0)
        XCTAssertEqual(summary.photos, 5)
        let rows = text.split(separator: "\n").dropFirst().map { String($0.split(separator: ",")[0]) }
        XCTAssertEqual(rows, inputs, "one face per copy, in input order")
        for i in 0..<5 { XCTAssertTrue(FileManager.default.fileExists(atPath: dir.appendingPathComponent("out/p\(i).png").path)) }
        XCTAssertEqual(Set(summary.stageSeconds.keys), Set(AnnotationSummary.stages))
    }

    func testCollidingOutputNamesFollowOneRule() {
        let (names, renamed) = OutputGuard.uniqueNames(["x.png", "y.png", "y.jpg", "x.png", "Y.jpeg"], ext: "png")
        XCTAssertEqual(names, ["x.png", "y.png", "y-2.png", "x-2.png", "Y-3.png"])
        XCTAssertEqual(renamed.map(\.to), ["y-2.png", "x-2.png", "Y-3.png"])
    }

    func testFoldersWithTheSameFileNamesGetDistinctOutputs() throws {
        for d in ["d1", "d2"] {
            try FileManager.default.createDirectory(at: dir.appendingPathComponent(d), withIntermediateDirectories: true)
            try Data().write(to: dir.appendingPathComponent("\(d)/x.png"))
        }
        let (photos, missing) = PhotoInputs.collect([dir.appendingPathComponent("d1").path, dir.appendingPathComponent("d2").path,
                                                     dir.appendingPathComponent("nope").path])
        XCTAssertEqual(photos.map(\.output), ["x.png", "x-2.png"])
        XCTAssertEqual(missing.count, 1)
    }

    func testOutputGuardRefusals() throws {
        let input = dir.appendingPathComponent("in.csv").path
        try Data("a".utf8).write(to: URL(fileURLWithPath: input))
        let link = dir.appendingPathComponent("link.csv").path
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: input)
        let g = OutputGuard(inputs: [input])
        XCTAssertNotNil(g.refusal(file: ""))
        XCTAssertNotNil(g.refusal(file: input))
        XCTAssertTrue(g.refusal(file: link)?.contains("symlink") == true, g.refusal(file: link) ?? "")
        XCTAssertNotNil(g.refusal(file: "/dev/null"))
        XCTAssertNotNil(g.refusal(file: dir.path))
        XCTAssertNil(g.refusal(file: dir.appendingPathComponent("new.csv").path))
        XCTAssertThrowsError(try g.prepare(folder: ""))
    }

    func testStaleTemporariesOfDeadRunsAreRemoved() throws {
        // A pid that cannot be running (above Linux's pid_max) and our own (still running).
        let stale = dir.appendingPathComponent("sub/.a.png.tmp-99999999-123").path
        let live = dir.appendingPathComponent(".b.png.tmp-\(getpid())-7").path
        let other = dir.appendingPathComponent(".keep-me").path
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("sub"), withIntermediateDirectories: true)
        // A fresh one of a PID not running here: perhaps a shard on another machine writing into a shared folder.
        let fresh = dir.appendingPathComponent(".c.png.tmp-99999999-5").path
        for p in [stale, live, other, fresh] { try Data().write(to: URL(fileURLWithPath: p)) }
        let old = Date(timeIntervalSinceNow: -120)
        for p in [stale, live] { try FileManager.default.setAttributes([.modificationDate: old], ofItemAtPath: p) }
        XCTAssertEqual(OutputGuard.removeStaleTemporaries(in: dir.path), 1)
        XCTAssertFalse(FileManager.default.fileExists(atPath: stale))
        XCTAssertTrue(FileManager.default.fileExists(atPath: live))
        XCTAssertTrue(FileManager.default.fileExists(atPath: other))
        XCTAssertTrue(FileManager.default.fileExists(atPath: fresh), "a minute-young temporary file is kept")
        XCTAssertEqual(OutputGuard.removeStaleTemporaries(in: dir.path, minimumAge: 0), 1)
        XCTAssertFalse(FileManager.default.fileExists(atPath: fresh))
    }

    /// One NaN rule: an empty CSV field, null in JSON.
    func testRecordsWriteNaNAsEmptyOrNull() throws {
        var points = [Float](repeating: 10, count: 30)
        points[3] = .nan
        let face = FaceRecord(x: 1, y: 2, width: 3, height: 4, score: 5, pose: "left", points: points)
        var csv = ""
        let c = FaceRecordWriter(format: .csv) { csv += $0 }
        c.records(file: "a,b.png", faces: [face])
        c.flush()
        let fields = csv.dropLast().components(separatedBy: ",")
        XCTAssertEqual(fields[0], "\"a")
        XCTAssertEqual(fields[9 + 3], "", "file (2 fields: it holds a comma), faces, face, box, score, then the 30 values")
        XCTAssertEqual(fields.count, 2 + 7 + 30 + 1)
        XCTAssertEqual(fields.last, "left", "the pose comes last")
        var json = ""
        let j = FaceRecordWriter(format: .jsonl) { json += $0 }
        j.records(file: "a.png", faces: [face])
        j.flush()
        let obj = try JSONSerialization.jsonObject(with: Data(json.utf8)) as! [String: Any]
        let eye = (obj["keypoints"] as! [String: [Any]])["right_eye_center"]!
        XCTAssertEqual(eye[0] as? Double, 10)
        XCTAssertTrue(eye[1] is NSNull)
        XCTAssertEqual(obj["pose"] as? String, "left")
    }

    func testFaceFrameMapsBothWays() {
        let frame = FaceFrame(x: 10.5, y: -3, width: 192, height: 96)
        let points: [Float] = [0, 0, 48, 48, 96, 96]
        XCTAssertEqual(frame.toPhoto(points), [10.5, -3, 106.5, 45, 202.5, 93])
        XCTAssertEqual(frame.toFrame(frame.toPhoto(points)), points)
        XCTAssertEqual(KeypointScale.pixels(KeypointScale.scaled(30)), 30)
        XCTAssertEqual(KeypointScale.clampedPixels(2), 96)
    }
}
