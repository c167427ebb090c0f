import FKPEngine
import FKPInference
import FKPIngest
import FKPNets
import FKPTensor
import FKPTrain
import FKPTestSupport
import Foundation
import XCTest

final class SpecialistTests: XCTestCase {
    /// Kaggle-style blanks made from the real sample: most rows keep only the eye centres, nose tip and
    /// bottom lip, as in Kaggle's own file.
    func testCSVWithBlanksGivesEachGroupItsRows() throws {
        let text = try String(contentsOfFile: repoRoot.appendingPathComponent("samples/training-sample.csv").path, encoding: .utf8)
        var lines = text.split(separator: "\n").map(String.init)
        let keep: Set<Int> = [0, 1, 2, 3, 20, 21, 28, 29]
        for i in 1..<lines.count where i % 3 != 0 {  // two rows in three lose the other 11 keypoints
            var fields = lines[i].split(separator: ",", omittingEmptySubsequences: false).map(String.init)
            for c in 0..<30 where !keep.contains(c) { fields[c] = "" }
            lines[i] = fields.joined(separator: ",")
        }
        let faces = try KaggleCSV.parse(Data(lines.joined(separator: "\n").utf8), name: "blanks.csv").faces
        XCTAssertEqual(faces.completeRows.count, 66)
        let counts = SpecialistGroup.tutorial.map { $0.rows(in: faces).count }
        XCTAssertEqual(counts, [200, 200, 66, 200, 66, 66])

        // Train each specialist briefly (a small architecture keeps the test fast) and predict as a bundle.
        let cpu = CPUBackend(threads: 2)
        var nets: [Net] = []
        for group in SpecialistGroup.tutorial {
            let rows = group.rows(in: faces)
            let split = Split(rows: rows, seed: 1)
            let net = Net(.net1(outputs: group.columns.count), backend: cpu, maxBatch: 32)
            net.initialise(seed: 1)
            var c = TrainConfig()
            c.batchSize = 32; c.epochs = 8; c.flipPairs = group.flipPairs.map { ($0[0], $0[1]) }
            let t = Trainer(net: net, train: TrainingData(faces, rows: split.train, columns: group.columns),
                            valid: TrainingData(faces, rows: split.valid, columns: group.columns), config: c)
            let before = t.loss(on: t.valid)
            while t.nextEpoch <= 8 { _ = try t.runEpoch()! }
            XCTAssertLessThan(t.history.last!.validLoss, before, group.name)
            nets.append(net)
        }
        let bundle = SpecialistBundle(nets: nets, groups: SpecialistGroup.tutorial)
        let predicted = bundle.predict(faces.images)
        XCTAssertTrue(predicted.allSatisfy { $0.count == 30 && $0.allSatisfy { !$0.isNaN } }, "every column filled by its group")
        // the bundle's RMSE counts only labelled values
        let report = RMSEReport(predicted: predicted, truth: faces.keypoints!)
        XCTAssertEqual(report.values, 200 * 8 + 66 * 22)
        print("specialists after 8 epochs on blanks: \(report.overall) px")

        // save and load through the same path predict uses
        let path = NSTemporaryDirectory() + "spec-\(UUID().uuidString).safetensors"
        defer { try? FileManager.default.removeItem(atPath: path) }
        try bundle.save(path: path, metadata: [:])
        let loaded = try ModelFile.loadModel(path: path, backend: cpu)
        XCTAssertEqual(loaded.predict(faces.images), predicted)
    }

    func testGroupsCoverEveryColumnOnce() {
        XCTAssertEqual(SpecialistGroup.tutorial.flatMap(\.columns).sorted(), Array(0..<30))
        // the flip pairs swap a left column with its right twin
        for g in SpecialistGroup.tutorial {
            for p in g.flipPairs {
                let a = Keypoints.columns[g.columns[p[0]]], b = Keypoints.columns[g.columns[p[1]]]
                XCTAssertEqual(a.replacingOccurrences(of: "left", with: "right"), b, g.name)
            }
        }
    }
}
