import FKPAlign
import FKPEngine
import FKPImage
import FKPInference
import FKPIngest
import FKPNets
import FKPTensor
import FKPTestSupport
import Foundation
import XCTest

@testable import FKPTrain

final class VerifierTests: XCTestCase {
    /// Two photos of a mean-shape face drawn as dots (FrameSamplesTests' photos), each with a box on its
    /// face and one far from it.
    func makeSamples() throws -> (VerifierSamples, FrameSamples) {
        let set = try FrameSamplesTests.dotPhotoSet(for: self)
        let photos = try FrameSamples(set)
        let boxes: [[LabelledBox]] = (0..<photos.count).map { p in
            let inv = photos.alignments[p].inverse
            let c = inv.apply(CanonicalFace.center.x, CanonicalFace.center.y), side = 96 * inv.scale
            return [LabelledBox(x: c.x - side / 2, y: c.y - side / 2, width: side, isFace: true),
                    LabelledBox(x: 0, y: 0, width: 30, isFace: false)]
        }
        return (VerifierSamples(photos, boxes: boxes), photos)
    }

    /// Each kind gets its label, and its transform puts the face where that kind says: near the centre at
    /// about its size for a face, far off or far from its size for a displaced box, outside (or at another
    /// size) for background.
    func testKindsAreLabelledAndFramedAsTheySay() throws {
        let (samples, photos) = try makeSamples()
        XCTAssertEqual(samples.count, 2 * (4 + 1 + 2))
        var seen: [String: Int] = [:]
        for (i, row) in samples.rows.enumerated() {
            for draw in 0..<20 {
                var rng = Xoshiro(seed: UInt64(i * 100 + draw + 1))
                let (t, label) = samples.draw(row, rng: &rng)
                // Where the face's canonical centre lands in the input, and the face's size there.
                let crop = photos.alignments[row.photo].inverse.then(t)
                let c = crop.apply(CanonicalFace.center.x, CanonicalFace.center.y)
                let offset = ((c.x - 48) * (c.x - 48) + (c.y - 48) * (c.y - 48)).squareRoot(), scale = crop.scale
                switch row.kind {
                case .face:
                    XCTAssertEqual(label, 1)
                    XCTAssertLessThan(offset, 0.15 * 96 * 2.0.squareRoot() + 1e-6)
                    XCTAssert(scale > 1 / 1.3 - 1e-9 && scale < 1.3 + 1e-9, "face at scale \(scale)")
                case .displaced:
                    XCTAssertEqual(label, 0)
                    XCTAssert(offset >= 0.35 * 96 - 1e-6 || scale >= 1.8 - 1e-9 || scale <= 1 / 1.8 + 1e-9,
                              "a displaced draw keeps the face at offset \(offset), scale \(scale)")
                case .background:
                    // A square clear of the face, or (when none is found) a displaced draw.
                    XCTAssertEqual(label, 0)
                    let inside = offset < 96 * 0.5.squareRoot() - 1e-6
                    XCTAssert(!inside || scale < 0.4 + 1e-9 || scale > 2.5 - 1e-9 || offset >= 0.35 * 96 - 1e-6
                              || scale >= 1.8 - 1e-9 || scale <= 1 / 1.8 + 1e-9,
                              "background square holds the face at offset \(offset), scale \(scale)")
                case .box(let b):
                    XCTAssertEqual(label, b.isFace ? 1 : 0)
                }
                seen["\(row.kind)".components(separatedBy: "(").first!, default: 0] += 1
            }
        }
        XCTAssertEqual(Set(seen.keys), ["face", "displaced", "background", "box"])
    }

    /// The written input is standardised (mean 0, sd a little below 1), a key gives the same sample every time, and
    /// another key another sample.
    func testWrittenSamplesAreStandardisedAndRepeatable() throws {
        let (samples, _) = try makeSamples()
        var a = [Float](repeating: 0, count: 9216), b = a, c = a
        var ya: Float = -1, yb: Float = -1, yc: Float = -1
        samples.write(row: 0, key: 77, image: &a, target: &ya)
        samples.write(row: 0, key: 77, image: &b, target: &yb)
        samples.write(row: 0, key: 78, image: &c, target: &yc)
        XCTAssertEqual(a, b)
        XCTAssertEqual(ya, 1)
        XCTAssertNotEqual(a, c)
        let mean = a.reduce(0, +) / 9216, sd = (a.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / 9216).squareRoot()
        XCTAssertEqual(mean, 0, accuracy: 1e-4)
        XCTAssert(sd > 0.3 && sd < 1, "sd \(sd): sd / (sd + 0.05) of a crop with some contrast")
    }

    /// The threshold keeps the asked share of the faces; the AUC counts ordered pairs, ties half, and a
    /// NaN score as wrong.
    func testReportThresholdAndAUC() {
        let r = VerifierReport(faceScores: [0.1, 0.5, 0.9, 0.95], otherScores: [0.0, 0.6], keep: 0.75)
        XCTAssertEqual(r.threshold, 0.5)
        XCTAssertEqual(r.facesKept, 3)
        XCTAssertEqual(r.othersRejected, 1)
        XCTAssertEqual(r.auc, 6.0 / 8.0, accuracy: 1e-12)
        XCTAssertEqual(VerifierReport.auc(positive: [0.5], negative: [0.5]), 0.5)
        XCTAssertEqual(VerifierReport.auc(positive: [.nan, 1], negative: [0]), 0.5)
        XCTAssertEqual(VerifierReport.auc(positive: [1], negative: [.nan]), 0)
        XCTAssertEqual(VerifierReport(faceScores: [0.2, 0.3], otherScores: [], keep: 1).threshold, 0.2)
    }

    /// The verifier net: its parameter count, and a pool as its first layer trains (no input gradient).
    func testArchitecture() {
        let net = Net(FaceVerifier.architecture, backend: CPUBackend(threads: 1), maxBatch: 2)
        XCTAssertEqual(net.parameterCount, 82_881)
        XCTAssertEqual(net.outputs, 1)
        net.initialise(seed: 3)
        var x = [Float](repeating: 0, count: 2 * 9216)
        for i in x.indices { x[i] = Float((i * 7919) % 101) / 50 - 1 }
        x.withUnsafeBufferPointer { net.backend.write($0, to: net.input, offset: 0) }
        [Float(1), 0].withUnsafeBufferPointer { net.backend.write($0, to: net.target, offset: 0) }
        let first = net.evaluate(batch: 2)
        for _ in 0..<40 { net.trainStep(batch: 2, learningRate: 0.01, momentum: 0.9) }
        let last = net.evaluate(batch: 2)
        XCTAssert(first.isFinite && last < first * 0.5, "loss \(first) -> \(last)")
    }

    /// A short run on samples/frames (no detector boxes): the valid loss falls, and every epoch leaves a
    /// verifier file that loads, with the threshold of the report.
    func testShortTrainingLowersTheLossAndWritesAVerifier() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("fkp-ver-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        var training = VerifierTraining(frames: repoPath("samples/frames"), out: "\(dir)/v.safetensors")
        training.config.epochs = 6
        training.config.batchSize = 16
        training.config.learningRate = Schedule(0.01)
        var records: [EpochRecord] = [], reports: [VerifierReport] = []
        var sets: [Int] = []
        let report = try training.run(backend: CPUBackend(threads: 2), boxesOf: { images, set in
            sets.append(set.count)
            XCTAssertEqual(images.count, set.count)
            // Per photo a box on its face (the face's aligned square) and one in its top left corner.
            return set.keypoints.map { k in
                let inv = CanonicalFace.alignment(for: k)!.inverse
                let c = inv.apply(CanonicalFace.center.x, CanonicalFace.center.y), side = 96 * inv.scale
                return [LabelledBox(x: c.x - side / 2, y: c.y - side / 2, width: side, isFace: true),
                        LabelledBox(x: 0, y: 0, width: side / 2, isFace: false)]
            }
        }, onEpoch: { records.append($0); reports.append($1) })
        XCTAssertEqual(sets, [12, 8], "training people's photos, then the held-out ones")
        XCTAssertEqual(report.others, 8)
        XCTAssert(report.auc.isFinite && report.auc > 0.5, "AUC \(report.auc)")
        XCTAssertEqual(records.count, 6)
        XCTAssertLessThan(records.last!.validLoss, records.first!.validLoss)
        XCTAssertLessThan(records.last!.validLoss, 0.68, "a constant 0.5 scores ln 2 = 0.693")
        let v = try FaceVerifier.load(path: "\(dir)/v.safetensors", backend: CPUBackend(threads: 1))
        XCTAssertEqual(v.threshold, report.threshold)
        XCTAssertEqual(report.faces, 8, "the held-out photos of samples/frames")
    }

    /// A keypoint model, or a verifier without a threshold, is refused with the file named.
    func testLoadRefusesOtherFiles() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("fkp-ver-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        let net = Net(FaceVerifier.architecture, backend: CPUBackend(threads: 1), maxBatch: 1)
        net.initialise(seed: 1)
        let entries = net.exportParameters().map { Safetensors.Entry(name: $0.name, shape: $0.shape, values: $0.values) }
        try Safetensors.write(Safetensors.File(tensors: entries, metadata: ["model": FaceVerifier.modelName]), path: "\(dir)/a.safetensors")
        XCTAssertThrowsError(try FaceVerifier.load(path: "\(dir)/a.safetensors", backend: CPUBackend(threads: 1))) {
            XCTAssert("\($0)".contains("\(dir)/a.safetensors") && "\($0)".contains("threshold"), "\($0)")
        }
        XCTAssertThrowsError(try FaceVerifier.load(path: repoPath("samples/model.safetensors"), backend: CPUBackend(threads: 1))) {
            XCTAssert("\($0)".contains("not a face verifier"), "\($0)")
        }
    }

    /// The bundled verifier tells the faces of samples/frames, framed as a detector frames them, from
    /// the same photos' displaced boxes and background (fixed draws).
    func testBundledVerifierSeparatesFacesFromOtherBoxes() throws {
        let path = repoPath("samples/verifier.safetensors")
        let v = try FaceVerifier.load(path: path, backend: CPUBackend(threads: 1))
        // The held-out people of samples/frames only: the verifier trained on the others.
        let all = try LandmarkFiles.read(repoPath("samples/frames"))
        let set = all.subset(all.heldOutRows)
        XCTAssertEqual(set.count, 8)
        let samples = VerifierSamples(try FrameSamples(set), boxes: Array(repeating: [], count: set.count))
        let data = samples.fixedSet(seed: 5)
        let scores = v.scores(data.images)
        var faces = 0, facesKept = 0, others = 0, othersRejected = 0
        for i in 0..<data.count {
            if data.targets[i] == 1 { faces += 1; if scores[i] >= v.threshold { facesKept += 1 } }
            else { others += 1; if scores[i] < v.threshold { othersRejected += 1 } }
        }
        XCTAssertGreaterThanOrEqual(Double(facesKept) / Double(faces), 0.9, "\(facesKept) of \(faces) faces kept")
        XCTAssertGreaterThanOrEqual(Double(othersRejected) / Double(others), 0.9, "\(othersRejected) of \(others) other boxes rejected")
    }
}
