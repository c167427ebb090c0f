import FKPEngine
import FKPInference
import FKPIngest
import FKPNets
import FKPTensor
import FKPTrain
import FKPTestSupport
import Foundation
import XCTest

final class RecipeTests: XCTestCase {
    var sample: FaceSet { TrainingTests.sample }

    func testScheduleFollowsNolearnsAdjustVariable() {
        let s = Schedule(parsing: "0.03:0.0001")!
        XCTAssertEqual(s.value(epoch: 1, of: 5), 0.03)
        XCTAssertEqual(s.value(epoch: 2, of: 5), 0.03)  // linspace[0], set at the end of epoch 1
        XCTAssertEqual(s.value(epoch: 3, of: 5), 0.03 + (0.0001 - 0.03) / 4, accuracy: 1e-7)
        XCTAssertEqual(s.value(epoch: 5, of: 5), 0.03 + (0.0001 - 0.03) * 3 / 4, accuracy: 1e-7)
        XCTAssertEqual(Schedule(parsing: "0.9")!.value(epoch: 7, of: 10), 0.9)
        XCTAssertNil(Schedule(parsing: "a:b"))
        XCTAssertNil(Schedule(parsing: "1:2:3"))
    }

    /// The setup a checkpoint stores comes back as it was written (flip pairs, schedules, patience).
    func testTrainingSetupRoundTripsThroughJSON() throws {
        var setup = try TrainingSetup(model: "net5", dropout: true, data: "train.csv")
        setup.config.earlyStoppingPatience = 7
        let back = try JSONDecoder().decode(TrainingSetup.self, from: JSONEncoder().encode(setup))
        XCTAssertEqual(back.model, "net5")
        XCTAssertTrue(back.dropout)
        XCTAssertEqual(back.config.learningRate, Schedule(0.03, 0.0001))
        XCTAssertEqual(back.config.flipPairs?.map { [$0.0, $0.1] }, keypointFlipPairs.map { [$0.0, $0.1] })
        XCTAssertEqual(back.config.earlyStoppingPatience, 7)
        XCTAssertEqual(back.architecture(), setup.architecture())
        XCTAssertTrue(back.architecture().hasDropout)
        XCTAssertThrowsError(try TrainingSetup(model: "net1", dropout: true, data: "x"), "dropout needs a CNN")
        XCTAssertThrowsError(try TrainingSetup(model: "net9", data: "x"))
    }

    func testPresetsMatchTheTutorial() {
        XCTAssertEqual(Preset.named("net1")!.config.epochs, 400)
        XCTAssertNil(Preset.named("net2")!.config.flipPairs)
        XCTAssertNotNil(Preset.named("net3")!.config.flipPairs)
        XCTAssertEqual(Preset.named("net4")!.config.learningRate, Schedule(0.03, 0.0001))
        XCTAssertEqual(Preset.named("net4")!.config.momentum, Schedule(0.9, 0.999))
        XCTAssertEqual(Preset.named("net6")!.config.earlyStoppingPatience, 200)
        let cpu = CPUBackend(threads: 1)
        XCTAssertEqual(Net(Preset.named("net6")!.architecture, backend: cpu, maxBatch: 1).parameterCount, 8_051_502)
        XCTAssertEqual(Net(Preset.named("net7")!.architecture, backend: cpu, maxBatch: 1).parameterCount, 16_561_502)
        let rates = Preset.named("net7")!.architecture.layers.compactMap { l -> Float? in
            if case let .dropout(_, r) = l { return r } else { return nil }
        }
        XCTAssertEqual(rates, [0.1, 0.2, 0.3, 0.5, 0.5])
    }

    /// A real face, mirrored with its keypoints: the left eye's label must sit on the left eye.
    func testFlipPutsTheLeftEyeOnTheLeftEye() {
        let kp = sample.keypoints!
        var worst: Float = 0
        for r in 0..<20 {
            let image = Array(UnsafeBufferPointer(start: sample.images.data + r * 9216, count: 9216))
            let points = Array(UnsafeBufferPointer(start: kp.data + r * 30, count: 30))
            let (mirrored, flipped) = mirrorFace(image: image, keypoints: points)
            // the subject's left eye is still on the image's right, the right eye on its left
            XCTAssertGreaterThan(flipped[0], 48)
            XCTAssertLessThan(flipped[2], 48)
            // y coordinates move with their points: the new left eye has the old right eye's height
            XCTAssertEqual(flipped[1], points[3])
            XCTAssertEqual(flipped[22], 96 - points[24], accuracy: 1e-4)  // mouth left <- mirrored mouth right
            // the 7x7 patch under the new left-eye label is the mirrored patch under the old right-eye label
            func patch(_ img: [Float], _ x: Float, _ y: Float, mirror: Bool) -> [Float] {
                var out: [Float] = []
                for dy in -3...3 { for dx in -3...3 {
                    let px = Int((x - 0.5).rounded()) + (mirror ? -dx : dx), py = Int((y - 0.5).rounded()) + dy
                    out.append(img[min(max(py, 0), 95) * 96 + min(max(px, 0), 95)])
                } }
                return out
            }
            let a = patch(mirrored, flipped[0], flipped[1], mirror: false)
            let b = patch(image, points[2], points[3], mirror: true)
            worst = max(worst, zip(a, b).map { abs($0 - $1) }.max()!)
            // and twice mirrored is the original
            let (back, backPoints) = mirrorFace(image: mirrored, keypoints: flipped)
            XCTAssertEqual(back, image)
            for (u, v) in zip(backPoints, points) { XCTAssertEqual(u, v, accuracy: 1e-4) }
        }
        XCTAssertLessThan(worst, 1e-6)
    }

    func makeTrainer(_ arch: Architecture = .net1(), configure: (inout TrainConfig) -> Void = { _ in }) -> Trainer {
        let split = Split(rows: sample.completeRows, seed: 3)
        let net = Net(arch, backend: CPUBackend(threads: 2), maxBatch: 32)
        net.initialise(seed: 3)
        var c = TrainConfig()
        c.batchSize = 32; c.seed = 3; c.epochs = 6
        configure(&c)
        return Trainer(net: net, train: TrainingData(sample, rows: split.train), valid: TrainingData(sample, rows: split.valid), config: c)
    }

    func weights(_ t: Trainer) -> [[Float]] { t.net.parameters.map { t.net.backend.download($0.value) } }

    /// Stopping mid-epoch, saving, and resuming in a new process-like trainer gives exactly the losses and
    /// weights of an uninterrupted run, with flip, dropout and schedules all drawing random numbers.
    func testInterruptAndResumeEqualsAnUninterruptedRun() throws {
        let arch = Architecture.net2(hidden: 32, dropout: true)
        let configure: (inout TrainConfig) -> Void = {
            $0.epochs = 3; $0.flipPairs = keypointFlipPairs; $0.learningRate = Schedule(0.02, 0.005); $0.momentum = Schedule(0.9, 0.95)
        }
        let straight = makeTrainer(arch, configure: configure)
        for _ in 0..<3 { _ = try straight.runEpoch()! }

        let first = makeTrainer(arch, configure: configure)
        _ = try first.runEpoch()!
        var batches = 0
        XCTAssertNil(try first.runEpoch(shouldStop: { batches >= 2 }, onBatch: { _, _ in batches += 1 }), "stops mid-epoch")
        let path = NSTemporaryDirectory() + "resume-\(UUID().uuidString).safetensors"
        defer { try? FileManager.default.removeItem(atPath: path) }
        try first.saveCheckpoint(path: path, metadata: [:])

        let second = makeTrainer(arch, configure: configure)
        try second.resume(from: try Safetensors.read(path: path), path: path)
        while second.nextEpoch <= 3 { _ = try second.runEpoch()! }
        XCTAssertEqual(second.history.map(\.trainLoss), straight.history.map(\.trainLoss))
        XCTAssertEqual(second.history.map(\.validLoss), straight.history.map(\.validLoss))
        XCTAssertEqual(weights(second), weights(straight))
        print("uninterrupted: \(straight.history.map(\.validLoss)); resumed: \(second.history.map(\.validLoss))")
    }

    func testEarlyStoppingKeepsTheBestWeights() throws {
        // A learning rate that overshoots after a few epochs makes the valid loss stop improving.
        let t = makeTrainer { $0.epochs = 40; $0.earlyStoppingPatience = 2; $0.learningRate = Schedule(0.05, 0.2) }
        while t.nextEpoch <= 40 {
            _ = try t.runEpoch()!
            if t.patienceExhausted { break }
        }
        XCTAssertTrue(t.patienceExhausted, "stopped early: \(t.history.map(\.validLoss))")
        XCTAssertEqual(t.history.count - t.state.bestEpoch, 2)
        t.restoreBest()
        XCTAssertEqual(t.loss(on: t.valid), t.state.bestValidLoss, accuracy: 1e-9)
        XCTAssertEqual(t.state.bestValidLoss, t.history.map(\.validLoss).min()!)
    }

    func testFlipReachesTheBatches() throws {
        // A flipped batch gives another loss than the same batch unflipped. (That flip narrows the gap
        // between train and valid loss is shown by longer runs: see the README.)
        let plain = makeTrainer(), flipped = makeTrainer { $0.flipPairs = keypointFlipPairs }
        let a = try plain.runEpoch()!, b = try flipped.runEpoch()!
        XCTAssertNotEqual(a.trainLoss, b.trainLoss)
    }
}
