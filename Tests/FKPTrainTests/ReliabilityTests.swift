import FKPEngine
import FKPExport
@testable import FKPInference
import FKPIngest
import FKPNets
import FKPTensor
import FKPTestSupport
@testable import FKPTrain
import Foundation
import XCTest

/// Issue 11: resume validation, memory that follows the data, non-finite weights.
extension RecipeTests {
    /// A checkpoint taken mid-epoch (epoch 1 done, two batches of epoch 2), as JSON to tamper with.
    func midEpochCheckpoint() throws -> (Safetensors.File, [String: Any]) {
        let t = makeTrainer()
        _ = try t.runEpoch()!
        var batches = 0
        XCTAssertNil(try t.runEpoch(shouldStop: { batches >= 2 }, onBatch: { _, _ in batches += 1 }))
        let path = NSTemporaryDirectory() + "tamper-\(UUID().uuidString).safetensors"
        defer { try? FileManager.default.removeItem(atPath: path) }
        try t.saveCheckpoint(path: path, metadata: [:])
        let file = try Safetensors.read(path: path)
        let state = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(file.metadata["trainer_state"]!.utf8)) as? [String: Any])
        return (file, state)
    }

    func testResumeValidatesTheWholeTrainerState() throws {
        let (file, state) = try midEpochCheckpoint()
        let order = state["order"] as! [Int]
        let history = state["history"] as! [[String: Any]]
        let tampers: [(String, (inout [String: Any]) -> Void)] = [
            ("not a permutation", { $0["order"] = [99_999] + order.dropFirst() }),
            ("not a permutation", { $0["order"] = [-1] + order.dropFirst() }),
            ("not a permutation", { $0["order"] = [order[1]] + order.dropFirst() }),
            ("rows, the training data", { $0["order"] = Array(order.dropLast()) }),
            ("position -5", { $0["nextBatchStart"] = -5 }),
            ("position 1000000", { $0["nextBatchStart"] = 1_000_000 }),
            ("batch losses", { $0["batchLosses"] = [] as [Double] }),
            ("step 18446744073709551615", { $0["step"] = UInt64.max }),
            ("best epoch 1, but 0 epochs", { $0["history"] = [] as [Any] }),
            ("past the 6 planned", { $0["history"] = (1...9).map { e in history[0].merging(["epoch": e]) { $1 } } }),
            ("history row 1 is for epoch -3", { $0["history"] = [history[0].merging(["epoch": -3]) { $1 }] }),
            ("best valid loss", { $0["bestValidLoss"] = 0.0 }),
            ("all zeros", { $0["rng"] = [0, 0, 0, 0] }),
            ("no batch order", { $0.removeValue(forKey: "order") }),  // mid-epoch: batch losses but no order
        ]
        for (fragment, tamper) in tampers {
            var s = state
            tamper(&s)
            var f = file
            f.metadata["trainer_state"] = String(decoding: try JSONSerialization.data(withJSONObject: s), as: UTF8.self)
            let t = makeTrainer()
            XCTAssertThrowsError(try t.resume(from: f, path: "ck.safetensors"), fragment) { e in
                XCTAssertTrue("\(e)".hasPrefix("ck.safetensors: trainer state: ") && "\(e)".contains(fragment), "\(fragment): \(e)")
            }
            XCTAssertEqual(t.history.count, 0, "a refused state is not half applied")
        }
        // The untouched state still resumes, and batch sizes below 1 are refused for any state.
        XCTAssertNoThrow(try makeTrainer().resume(from: file, path: "ck.safetensors"))
        let decoded = try JSONDecoder().decode(TrainerState.self, from: Data(file.metadata["trainer_state"]!.utf8))
        for b in [0, -1] {
            XCTAssertThrowsError(try decoded.validate(trainRows: 100, batchSize: b, epochs: 6))
        }
    }

    /// Mutated trainer states (numbers in the JSON changed, digits inserted, bytes dropped): decoding and
    /// validating give a state or an error, never a trap.
    func testMutatedTrainerStatesNeverTrap() throws {
        let (file, _) = try midEpochCheckpoint()
        let seed = [UInt8](file.metadata["trainer_state"]!.utf8)
        Mutations.applyTextual(to: seed, count: 400, rngSeed: 41, alphabet: "0123456789-.e,[]", filler: "9223372036854775807") {
            if let s = try? JSONDecoder().decode(TrainerState.self, from: $0) {
                _ = try? s.validate(trainRows: 160, batchSize: 32, epochs: 6)
            }
        }
    }

    /// `train --batch-size 1000000` on 160 rows allocated buffers for a million images (37 GB).
    func testBatchSizeIsCappedToTheTrainingRows() throws {
        var c = TrainConfig()
        c.batchSize = 1_000_000
        XCTAssertEqual(try c.checked(trainingRows: 160).batchSize, 160)
        c.batchSize = 32
        XCTAssertEqual(try c.checked(trainingRows: 160).batchSize, 32)
        for bad in [0, -1] {
            c.batchSize = bad
            XCTAssertThrowsError(try c.checked(trainingRows: 160))
        }
    }

    /// Predicting one face held buffers for 128 training images (818 MB with the bundled model): a loaded
    /// model holds no training buffers and grows to the batches it is given.
    func testLoadedModelsHoldBuffersForTheBatchesPredicted() throws {
        // A net2 model file (random weights: sizes are what matter here).
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("fkp-buffers-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("net2.safetensors").path
        let made = Net(Preset.named("net2")!.architecture, backend: CPUBackend(threads: 2), maxBatch: 1)
        made.initialise(seed: 3)
        try made.save(path: path, metadata: ["model": "net2"])
        let model = try XCTUnwrap(try ModelFile.loadModel(path: path, backend: CPUBackend(threads: 2)) as? SingleNetModel)
        XCTAssertEqual(model.net.maxBatch, 1)
        XCTAssertFalse(model.net.trainable)
        XCTAssertTrue(model.net.parameters.allSatisfy { $0.gradient.count == 0 && $0.velocity.count == 0 })
        XCTAssertTrue(model.net.layers.allSatisfy { $0.inputGradient == nil })
        let faces = sample.subset(Array(0..<3))
        let one = model.predict(faces.subset([0]).images)
        XCTAssertEqual(model.net.maxBatch, 1)
        let three = model.predict(faces.images)
        XCTAssertEqual(model.net.maxBatch, 3)
        XCTAssertEqual(one[0], three[0], "growing keeps the weights")
        // The same predictions as a training-sized net.
        let full = try ModelFile.load(path: path, backend: CPUBackend(threads: 2), maxBatch: 128)
        XCTAssertEqual(predictKeypoints(net: full, images: faces.images), three)

        // The bundled photo model's nets likewise start at one image and grow to the faces asked for.
        let photo = try XCTUnwrap(try ModelFile.loadModel(path: repoPath("samples/model.safetensors"), backend: CPUBackend(threads: 2)) as? AlignedModel)
        XCTAssertTrue(photo.nets.allSatisfy { $0.maxBatch == 1 && !$0.trainable })
        _ = photo.predict(faces.images)
        XCTAssertTrue(photo.nets.allSatisfy { $0.maxBatch == 3 })
    }

    /// NaN weights gave blank keypoints with exit 0, and export-model wrote such models.
    func testNonFiniteModelsAreRefusedForPredictAndExport() throws {
        let net = Net(.net1(), backend: CPUBackend(threads: 1), maxBatch: 1)
        net.initialise(seed: 1)
        var tensors = net.exportParameters().map { Safetensors.Entry(name: $0.name, shape: $0.shape, values: $0.values) }
        let good = Safetensors.File(tensors: tensors, metadata: ["model": "net1"])
        XCTAssertNoThrow(try ModelFile.validate(good, path: "good.safetensors", dtype: .f16))
        tensors[0].values[3] = .nan
        let bad = Safetensors.File(tensors: tensors, metadata: ["model": "net1"])
        XCTAssertThrowsError(try ModelFile.loadModel(bad, path: "nan.safetensors", backend: CPUBackend(threads: 1))) { e in
            XCTAssertTrue("\(e)".contains("nan.safetensors: tensor \(tensors[0].name) has 1 NaN"), "\(e)")
        }
        XCTAssertThrowsError(try ModelFile.validate(bad, path: "nan.safetensors"))
        tensors[0].values[3] = 1e6  // finite, but infinite once stored as float16
        XCTAssertThrowsError(try ModelFile.validate(.init(tensors: tensors, metadata: ["model": "net1"]), path: "big.safetensors", dtype: .f16)) { e in
            XCTAssertTrue("\(e)".contains("float16"), "\(e)")
        }
    }
}

/// Issue 11: drawing, plots and writers take any input.
final class ExportReliabilityTests: XCTestCase {
    /// Boxes and points touching or crossing the border (or far outside) trapped in Canvas.fill.
    func testFacesAtAndBeyondTheBorderAreClipped() {
        var c = Canvas(width: 50, height: 40)
        let boxes = [(0, 0, 50, 40), (-10, -10, 30, 30), (40, 30, 30, 30), (-100, -100, 10, 10), (200, 5, 20, 20),
                     (45, 35, 1, 1), (0, 0, 0, 0), (-5, 10, -20, 5), (Int.max - 5, Int.max - 5, 10, 10), (Int.min + 5, 0, 10, 10)]
        for (x, y, w, h) in boxes {
            let points: [Float] = [Float(x), Float(y), .nan, 3, .infinity, -.infinity, 1e30, -1e30, 49.9, 39.9, 0, 0]
            FaceDrawing.draw(on: &c, box: (x, y, w, h), points: points)
        }
        XCTAssertNotEqual(c.pixels, Canvas(width: 50, height: 40).pixels, "what is on the canvas is drawn")
        c.text(String(repeating: "LONG TEXT ", count: 100), x: -500, y: 35, .black)
        var phase = 0.0
        c.line(-1e300, 5, 1e300, 5, .black, thickness: 3, dash: (4, 4), dashPhase: &phase)
        c.line(.nan, 0, 10, 10, .black)
        c.line(0, 0, .infinity, 10, .black)
    }

    /// Ordinary and odd histories: tiny, zero, negative, NaN and infinite losses, negative and huge
    /// epochs, long titles and names. What is finite is drawn; the rest is listed.
    func testPlotDrawsWhatIsFiniteAndSaysWhatItSkipped() throws {
        let runs = [
            LossHistory(name: "tiny", epochs: [1, 2, 3], train: [1e-7, 1e-8, 1e-9], valid: [2e-7, 1e-300, 5e-324]),
            LossHistory(name: "odd", epochs: [-5, 0, 7, Int.max], train: [0, -1, .nan, .infinity], valid: [0.5, .nan, 0.1, 0.2]),
            LossHistory(name: "min", epochs: [Int.min, Int.min + 1], train: [1, 2], valid: [3, 4]),
            LossHistory(name: String(repeating: "a very long run name ", count: 20), epochs: [1], train: [0.1], valid: [0.2]),
            LossHistory(name: "ragged", epochs: [1, 2, 3], train: [0.1], valid: [0.1, 0.2]),
            LossHistory(name: "empty", epochs: [], train: [], valid: []),
        ]
        let c = LossPlot.render(runs, title: String(repeating: "a title longer than the plot ", count: 20))
        XCTAssertEqual(c.width, 960)
        let notes = LossPlot.skipped(runs)
        XCTAssertEqual(notes.count, 2, "\(notes)")
        XCTAssertTrue(notes[0].hasPrefix("odd: 5 loss values not drawn"), "\(notes)")
        XCTAssertTrue(notes[1].contains("ragged") && notes[1].contains("2 rows"), "\(notes)")
        XCTAssertTrue(LossPlot.skipped([runs[0]]).isEmpty)
        _ = LossPlot.render(runs, width: 20, height: 10)
        _ = LossPlot.render([])
    }

    /// NaN is null in JSON (it aborted in a try!) and a blank in CSV.
    func testNaNIsNullInJSONAndBlankInCSV() {
        let line = KeypointWriter.jsonLine(["a": Float.nan, "b": [Double.infinity, 1.5], "c": ["d": -Float.infinity], "e": "x"])
        XCTAssertEqual(line, #"{"a":null,"b":[null,1.5],"c":{"d":null},"e":"x"}"#)
        let csv = KeypointWriter.csv(idHeader: "file", ids: ["f"], values: [[.nan] + [Float](repeating: 1, count: 29)])
        XCTAssertTrue(csv.contains("\nf,,1.00,"), csv.components(separatedBy: "\n")[1].prefix(20).description)
    }

    /// A CR-only IdLookupTable gave a header-only submission with exit 0.
    func testLookupTableWithAnyLineEnds() throws {
        for end in ["\n", "\r\n", "\r"] {
            let rows = try LookupTable.parse(["RowId,ImageId,FeatureName,Location", "1,1,left_eye_center_x,", "2,1,nose_tip_y,"]
                .joined(separator: end) + end, path: "l.csv")
            XCTAssertEqual(rows.map(\.rowId), [1, 2])
        }
        XCTAssertThrowsError(try LookupTable.parse("RowId,ImageId,FeatureName,Location\n", path: "h.csv")) { e in
            XCTAssertTrue("\(e)".contains("no rows"), "\(e)")
        }
        XCTAssertThrowsError(try LookupTable.parse("RowId,ImageId,FeatureName\n1,1,nose\u{0}_tip_y\n", path: "n.csv")) { e in
            XCTAssertTrue("\(e)".contains("line 2") && "\(e)".contains("NUL"), "\(e)")
        }
    }

    /// Byte mutations of a history CSV and a lookup table: a value or an error, and any history plots.
    func testMutatedHistoriesAndLookupsNeverTrap() throws {
        let history = try String(contentsOf: repoRoot.appendingPathComponent("docs/runs/net2.history.csv"), encoding: .utf8)
            .split(separator: "\n").prefix(20).joined(separator: "\n")
        let lookup = "RowId,ImageId,FeatureName,Location\n1,1,left_eye_center_x,\n2,3,nose_tip_y,\n"
        var rng = Xoshiro(seed: 31)
        let alphabet = [UInt8]("0123456789-.,eE\n\rnaif ".utf8)
        for (seed, count) in [(history, 300), (lookup, 300)] {
            for _ in 0..<count {
                var b = [UInt8](seed.utf8)
                for _ in 0...Int(rng.next() % 5) where !b.isEmpty {
                    let i = Int(rng.next() % UInt64(b.count))
                    if rng.next() % 2 == 0 { b[i] = alphabet[Int(rng.next() % UInt64(alphabet.count))] } else { b.remove(at: i) }
                }
                let text = String(decoding: b, as: UTF8.self)
                if let h = try? LossHistory.parse(text, path: "m.history.csv") { _ = LossPlot.render([h], width: 120, height: 90) }
                if let rows = try? LookupTable.parse(text, path: "m.csv") {
                    _ = try? KeypointWriter.submission(lookup: rows, predictions: [1: [Float](repeating: .nan, count: 30)])
                }
            }
        }
    }
}
