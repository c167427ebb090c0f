import FKPEngine
import FKPInference
import FKPIngest
import FKPNets
import FKPTensor
import FKPTrain
import FKPTestSupport
import Foundation
import XCTest


final class TrainingTests: XCTestCase {
    static let sample: FaceSet = try! KaggleCSV.read(path: repoRoot.appendingPathComponent("samples/training-sample.csv").path).faces

    func testSplitIsTheTutorials() {
        let split = Split(rows: Array(0..<3357))
        XCTAssertEqual(split.train.count, 2686)
        XCTAssertEqual(split.valid.count, 671)
        XCTAssertEqual(Set(split.train + split.valid).count, 3357)
        XCTAssertEqual(Split(rows: Array(0..<3357)).valid, split.valid, "fixed seed, fixed split")
        XCTAssertNotEqual(Split(rows: Array(0..<3357), seed: 1).valid, split.valid)
    }

    func testTargetsAreScaled() {
        let d = TrainingData(Self.sample, rows: [0])
        XCTAssertEqual(d.targets[0], KeypointScale.scaled(Self.sample.keypoints![0]))
        XCTAssertTrue((0..<30).allSatisfy { abs(d.targets[$0]) <= 1 })
    }

    func makeTrainer(_ arch: Architecture, seed: UInt64 = 42, lr: Float = 0.01, threads: Int = 2) -> Trainer {
        let split = Split(rows: Self.sample.completeRows, seed: seed)
        let net = Net(arch, backend: CPUBackend(threads: threads), maxBatch: 32)
        net.initialise(seed: seed)
        var config = TrainConfig()
        config.batchSize = 32; config.learningRate = Schedule(lr); config.seed = seed
        return Trainer(net: net, train: TrainingData(Self.sample, rows: split.train),
                       valid: TrainingData(Self.sample, rows: split.valid), config: config)
    }

    /// A short run on real faces: the loss must fall well below the untrained loss.
    func testLossFallsOnRealFaces() throws {
        let t = makeTrainer(.net1())
        let before = t.loss(on: t.valid)
        var records: [EpochRecord] = []
        for _ in 0..<15 { records.append(try t.runEpoch()!) }
        print(EpochRecord.tableHeader)
        records.forEach { print($0.tableLine) }
        XCTAssertLessThan(records.last!.validLoss, before / 5)
        XCTAssertLessThan(records.last!.trainLoss, records.first!.trainLoss / 2)
        // better than predicting the mean face of the training rows (about 4 px on this data)
        XCTAssertLessThan(records.last!.validRMSE, 7)
    }

    func testConvNetLossFalls() throws {
        let t = makeTrainer(.net2(hidden: 64))
        let before = t.loss(on: t.valid)
        let first = try t.runEpoch()!
        var last = first
        for _ in 0..<5 { last = try t.runEpoch()! }
        print("net2 (hidden 64): valid loss untrained \(before); train loss \(first.trainLoss) -> \(last.trainLoss), valid \(first.validLoss) -> \(last.validLoss)")
        XCTAssertLessThan(last.trainLoss, first.trainLoss * 0.8)
        XCTAssertLessThan(last.validLoss, before * 0.8)
    }

    func testSameSeedAndThreadsGiveTheSameLosses() throws {
        let a = makeTrainer(.net1(), seed: 9), b = makeTrainer(.net1(), seed: 9)
        for _ in 0..<2 {
            let ra = try a.runEpoch()!, rb = try b.runEpoch()!
            XCTAssertEqual(ra.trainLoss, rb.trainLoss)
            XCTAssertEqual(ra.validLoss, rb.validLoss)
        }
    }

    func testDivergenceIsReported() {
        let t = makeTrainer(.net1(), lr: 1e6)
        XCTAssertThrowsError(try { for _ in 0..<5 { _ = try t.runEpoch() } }()) { error in
            XCTAssertTrue(error is TrainingDiverged, "\(error)")
            XCTAssertTrue("\(error)".contains("NaN"))
        }
    }

    func testRMSEReportCountsOnlyLabelledValues() {
        let truth = Tensor(shape: [2, 30], fill: 10)
        truth[1 * 30 + 0] = .nan
        var predicted = [[Float]](repeating: [Float](repeating: 10, count: 30), count: 2)
        predicted[0][0] = 13   // error 3 on left_eye_center_x
        predicted[1][0] = 1000 // unlabelled: ignored
        let r = RMSEReport(predicted: predicted, truth: truth)
        XCTAssertEqual(r.values, 59)
        XCTAssertEqual(r.overall, (9.0 / 59).squareRoot(), accuracy: 1e-9)
        XCTAssertEqual(r.perKeypoint[0], (9.0 / 3).squareRoot(), accuracy: 1e-9)
        XCTAssertEqual(r.perKeypoint[1], 0)
        XCTAssertEqual(r.meanError[0], 3.0, accuracy: 1e-9, "one labelled value off by +3: its mean")
        XCTAssertEqual(r.meanError[1], 0)
        predicted[0][1] = 8
        predicted[1][1] = 9
        XCTAssertEqual(RMSEReport(predicted: predicted, truth: truth).meanError[1], -1.5, accuracy: 1e-9, "signed, not squared")
        predicted[0][2] = .nan
        XCTAssertTrue(RMSEReport(predicted: predicted, truth: truth).meanError[2].isNaN, "a NaN prediction shows")
        XCTAssertEqual(RMSEReport.keypointNames.first, "left_eye_center")
    }
}
