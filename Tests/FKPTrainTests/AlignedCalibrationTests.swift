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

/// The calibration of faces in Kaggle's framing: a least-squares linear map from the 30 predicted values
/// to the 30 labelled ones, stored in the photo model and applied at the passes it was fitted for.
final class AlignedCalibrationTests: XCTestCase {
    /// Predictions spread as faces are (around 48 px, a few px apart).
    func randomPredictions(_ n: Int, seed: UInt64) -> [[Double]] {
        var rng = Xoshiro(seed: seed)
        return (0..<n).map { _ in (0..<30).map { _ in 48 + 20 * (Double(rng.next() % 10_000) / 10_000 - 0.5) } }
    }

    /// Exact references from a known map are fitted back to that map.
    func testFitRecoversAKnownLinearMap() throws {
        var rng = Xoshiro(seed: 7)
        var w = [Double](repeating: 0, count: 31 * 30)
        for j in 0..<30 { w[j] = Double(rng.next() % 1000) / 100 - 5 }
        for i in 0..<30 { for j in 0..<30 { w[(1 + i) * 30 + j] = (i == j ? 0.8 : 0) + Double(rng.next() % 1000) / 10_000 - 0.05 } }
        let truth = AlignedCalibration(passes: 2, rows: 0, weights: w)
        let p = randomPredictions(300, seed: 1)
        let r = p.map { truth.apply($0) }
        let fitted = try AlignedCalibration.fit(predictions: p, references: r, passes: 2)
        XCTAssertEqual(fitted.passes, 2)
        XCTAssertEqual(fitted.rows, 300)
        for k in w.indices { XCTAssertEqual(fitted.weights[k], w[k], accuracy: 1e-6, "weight \(k)") }
        // apply: intercept plus weighted sum, checked against a plain loop.
        let x = p[0], y = truth.apply(x)
        for j in 0..<30 {
            var v = w[j]
            for i in 0..<30 { v += x[i] * w[(1 + i) * 30 + j] }
            XCTAssertEqual(y[j], v, accuracy: 1e-9)
        }
    }

    /// Least squares: on noisy references the fit's error is no larger than leaving the predictions as
    /// they are (the identity is one of the maps it chooses among), and smaller when they are biased.
    func testFitNeverLosesToTheIdentityOnItsRows() throws {
        var rng = Xoshiro(seed: 3)
        let p = randomPredictions(400, seed: 2)
        let r: [[Double]] = p.map { row in
            row.map { v -> Double in
                let noise = Double(rng.next() % 1000) / 500 - 1
                return 0.9 * (v - 48) + 48.5 + noise
            }
        }
        let fitted = try AlignedCalibration.fit(predictions: p, references: r, passes: 1)
        func rmse(_ q: [[Double]]) -> Double {
            var sum = 0.0
            for (a, b) in zip(q, r) { for c in 0..<30 { sum += (a[c] - b[c]) * (a[c] - b[c]) } }
            return (sum / Double(30 * q.count)).squareRoot()
        }
        let before = rmse(p), after = rmse(p.map { fitted.apply($0) })
        XCTAssertLessThan(after, before * 0.8, "a scale and shift of every value is learnt: \(before) -> \(after)")
        XCTAssertEqual(rmse(p.map { AlignedCalibration.identity(passes: 1).apply($0) }), before, accuracy: 1e-12)
    }

    /// Rows with a missing value are skipped; too few rows, or predictions that never vary, are refused.
    func testFitSkipsIncompleteRowsAndRefusesWhatCannotBeFitted() throws {
        let p = randomPredictions(100, seed: 4)
        var r = p
        r[0][5] = .nan
        var q = p
        q[1][0] = .infinity
        let fitted = try AlignedCalibration.fit(predictions: q, references: r, passes: 3)
        XCTAssertEqual(fitted.rows, 98)
        XCTAssertThrowsError(try AlignedCalibration.fit(predictions: Array(p.prefix(61)), references: Array(p.prefix(61)), passes: 3)) {
            XCTAssertEqual($0 as? AlignedCalibration.FitError, .tooFewRows(usable: 61, needed: 62))
        }
        let constant = [[Double]](repeating: [Double](repeating: 40, count: 30), count: 100)
        XCTAssertThrowsError(try AlignedCalibration.fit(predictions: constant, references: p, passes: 3)) {
            XCTAssertEqual($0 as? AlignedCalibration.FitError, .singular)
        }
    }

    func testApplyMakesANaNPredictionNaN() {
        var p = [Double](repeating: 48, count: 30)
        p[3] = .nan
        XCTAssertTrue(AlignedCalibration.identity(passes: 1).apply(p).allSatisfy(\.isNaN))
    }

    func bundled() throws -> (file: Safetensors.File, path: String) {
        let path = repoPath("samples/model.safetensors")
        return (try Safetensors.read(path: path), path)
    }

    /// Written into a photo model's metadata and read back: the same map, and the model's default passes
    /// for 96x96 faces become the calibration's. Malformed ones are refused with the key named.
    func testStoredInThePhotoModelAndRefusedWhenMalformed() throws {
        let (file, path) = try bundled()
        let out = NSTemporaryDirectory() + "calibrated-\(UUID().uuidString).safetensors"
        defer { try? FileManager.default.removeItem(atPath: out) }
        var w = AlignedCalibration.identity(passes: 5).weights
        w[0] = 1.25; w[31 * 30 - 1] = 0.987654321
        let calibration = AlignedCalibration(passes: 5, rows: 123, weights: w)
        try AlignedModel.save(nets: try AlignedModel.netFiles(file, path: path), framing: nil, passes: 3,
                              alignedCalibration: calibration, metadata: [:], path: out, dtype: .i8)
        let back = try XCTUnwrap(try ModelFile.loadModel(path: out, backend: CPUBackend(threads: 1), maxBatch: 1) as? AlignedModel)
        let c = try XCTUnwrap(back.alignedCalibration)
        XCTAssertEqual(c.passes, 5)
        XCTAssertEqual(c.rows, 123)
        for k in w.indices { XCTAssertEqual(c.weights[k], w[k], accuracy: 1e-7 * max(1, abs(w[k]))) }
        XCTAssertEqual(back.alignedFacePasses, 5)
        XCTAssertEqual(back.defaultPasses, 3, "photos keep their own passes")

        let good = calibration.json
        for bad in ["not json", good.replacingOccurrences(of: "\"passes\":5", with: "\"passes\":0"),
                    good.replacingOccurrences(of: "[1.25,", with: "[")] {
            var meta = file.metadata
            meta[AlignedCalibration.metadataKey] = bad
            XCTAssertThrowsError(try ModelFile.loadModel(Safetensors.File(tensors: file.tensors, metadata: meta), path: path,
                                                         backend: CPUBackend(threads: 1), maxBatch: 1), bad) {
                XCTAssertTrue("\($0)".contains(AlignedCalibration.metadataKey), "\($0)")
            }
        }
    }

    /// The map works in the 96x96 frame: a shift of 1 px there moves a 96x96 face's points by 1 px; on the
    /// same face at twice the size, x -> 1.05 x - 2.4 there is x -> 1.05 x - 4.8 in the photo; at other
    /// passes it is not applied.
    func testAppliedInTheKaggleFrameAtItsPassesOnly() throws {
        let (file, path) = try bundled()
        let model = try XCTUnwrap(try ModelFile.loadModel(file, path: path, backend: CPUBackend(threads: 2)) as? AlignedModel)
        model.alignedCalibration = nil
        model.alignedFacePasses = 2
        model.finalJitters = [.identity]
        let faces = try KaggleCSV.read(path: repoPath("samples/test-sample.csv")).faces.subset([0, 1])
        let plain = model.predict(faces.images)
        var w = AlignedCalibration.identity(passes: 2).weights
        for j in stride(from: 0, to: 30, by: 2) { w[j] = 1 }  // +1 px in every x
        model.alignedCalibration = AlignedCalibration(passes: 2, rows: 0, weights: w)
        let shifted = model.predict(faces.images)
        for f in 0..<2 {
            for c in 0..<30 where plain[f][c] < 94 {
                XCTAssertEqual(shifted[f][c] - plain[f][c], c % 2 == 0 ? 1 : 0, accuracy: 1e-4, "face \(f) value \(c)")
            }
        }
        model.alignedFacePasses = 3
        let otherPasses = model.predict(faces.images)
        model.alignedCalibration = nil
        XCTAssertEqual(otherPasses, model.predict(faces.images), "not applied at 3 passes")

        // The first face at twice its size (each pixel doubled), cropped as annotate --no-detect does.
        let side = 192
        let big = UnsafeMutableBufferPointer<Float>.allocate(capacity: side * side)
        defer { big.deallocate() }
        for y in 0..<side { for x in 0..<side { big[y * side + x] = faces.images.data[(y / 2) * 96 + x / 2] } }
        let plane = GrayPlane(width: side, height: side, pixels: UnsafeBufferPointer(big))
        let start = [AlignedModel.Face(photo: 0, start: Similarity(a: 0.5, b: 0, tx: 0, ty: 0).then(CanonicalFace.kaggleFrame))]
        model.alignedFacePasses = 2
        let before = model.predictAligned(photos: [plane], faces: start)[0]
        var stretch = AlignedCalibration.identity(passes: 2).weights
        for j in stride(from: 0, to: 30, by: 2) { stretch[j] = -2.4; stretch[(1 + j) * 30 + j] = 1.05 }
        model.alignedCalibration = AlignedCalibration(passes: 2, rows: 0, weights: stretch)
        let after = model.predictAligned(photos: [plane], faces: start)[0]
        for c in 0..<30 { XCTAssertEqual(after[c], c % 2 == 0 ? 1.05 * before[c] - 4.8 : before[c], accuracy: 1e-4, "value \(c)") }
    }

    /// The bundled model on the aligned 96x96 faces of the people held out of its training (the rows of
    /// ../shared/data/fkd/training.csv whose frame's person the split holds out, matched by shape as
    /// bench/heldout_fkd.py does): RMSE at most 2.0 px with its calibration (issue 9's bar), and below the
    /// same passes without it.
    func testBundledModelOnTheHeldOutPeoplesAlignedFaces() throws {
        let shared = repoRoot.deletingLastPathComponent().appendingPathComponent("shared/data")
        let csv = shared.appendingPathComponent("fkd/training.csv").path, frames = shared.appendingPathComponent("frames").path
        guard FileManager.default.fileExists(atPath: csv), FileManager.default.fileExists(atPath: frames) else {
            print("skipped: \(csv) or \(frames) is absent (the data set sits beside the clone in CI only)")
            throw XCTSkip("\(csv) or \(frames) is absent")
        }
        let set = try LandmarkFiles.read(frames)
        let rows = try KaggleCSV.read(path: csv).faces
        let labels = try XCTUnwrap(rows.keypoints)
        // A face's 15 points without position and size: the row's are the frame's moved and scaled.
        func normalised(_ k: [Double]) -> [Double] {
            let mx = stride(from: 0, to: 30, by: 2).map { k[$0] }.reduce(0, +) / 15
            let my = stride(from: 1, to: 30, by: 2).map { k[$0] }.reduce(0, +) / 15
            let centred = k.enumerated().map { $0.offset % 2 == 0 ? $0.element - mx : $0.element - my }
            let norm = centred.map { $0 * $0 }.reduce(0, +).squareRoot()
            return centred.map { $0 / norm }
        }
        let frameShapes = set.keypoints.map(normalised)
        var heldOut: [Int] = []
        for r in 0..<rows.count {
            let k = normalised((0..<30).map { Double(labels[r * 30 + $0]) })
            var best = 0, bestDistance = Double.infinity
            for (f, s) in frameShapes.enumerated() {
                let d = zip(k, s).map { ($0 - $1) * ($0 - $1) }.reduce(0, +)
                if d < bestDistance { bestDistance = d; best = f }
            }
            if LandmarkSet.isHeldOut(person: set.persons[best]) { heldOut.append(r) }
        }
        XCTAssertEqual(heldOut.count, 638, "the held-out people's rows (52 people)")
        let faces = rows.subset(heldOut)
        let model = try XCTUnwrap(try ModelFile.loadModel(path: repoPath("samples/model.safetensors"), backend: CPUBackend(threads: 2)) as? AlignedModel)
        let calibration = try XCTUnwrap(model.alignedCalibration, "the bundled model has a calibration for 96x96 faces")
        func rmse(_ p: [[Float]]) -> Double { RMSEReport(predicted: p, truth: faces.keypoints!).overall }
        let calibrated = rmse(model.predict(faces.images))
        model.alignedCalibration = nil
        let plain = rmse(model.predict(faces.images))
        print("held-out rows, \(calibration.passes) passes: \(plain) px without the calibration, \(calibrated) px with it")
        XCTAssertLessThanOrEqual(calibrated, 2.0)
        XCTAssertLessThan(calibrated, plain - 0.05)
    }
}
