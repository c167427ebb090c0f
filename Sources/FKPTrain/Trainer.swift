import Dispatch
import FKPEngine
import FKPInference
import FKPNets
import FKPTensor
import Foundation

/// One row of nolearn's table and of the history CSV.
public struct EpochRecord: Sendable, Equatable, Codable {
    public var epoch: Int
    public var trainLoss: Double
    public var validLoss: Double
    public var seconds: Double
    public var learningRate: Float
    public var momentum: Float
    public var ratio: Double { validLoss > 0 ? trainLoss / validLoss : .nan }
    /// Validation RMSE in pixels of the 96x96 frame.
    public var validRMSE: Double { KeypointScale.rmsePixels(meanSquaredError: validLoss) }

    public static let csvHeader = "epoch,train_loss,valid_loss,train_valid_ratio,seconds,lr,momentum"
    public var csvLine: String {
        String(format: "%d,%.6f,%.6f,%.4f,%.3f,%g,%g", epoch, trainLoss, validLoss, ratio, seconds,
               Double(learningRate), Double(momentum))
    }
    public static let tableHeader = "  epoch    train loss    valid loss    train/val    dur\n-------  ------------  ------------  -----------  -----"
    public func tableLine(best: Bool = false) -> String {
        String(format: "%7d  %12.5f  %12.5f  %11.5f  %.2fs", epoch, trainLoss, validLoss, ratio, seconds) + (best ? "  *" : "")
    }
    public var tableLine: String { tableLine() }
}

public struct TrainingDiverged: Error, CustomStringConvertible {
    public let epoch: Int
    public let batch: Int
    public var description: String {
        "training diverged: the loss became NaN or infinite at epoch \(epoch), batch \(batch); try a lower --lr"
    }
}

/// Everything besides the weights and velocities that a resumed run needs to continue exactly as an
/// uninterrupted one would: saved as JSON in the checkpoint's metadata.
public struct TrainerState: Codable, Sendable, Equatable {
    public var history: [EpochRecord] = []
    var rng: Xoshiro
    /// The current epoch's batch order and progress, when stopped mid-epoch.
    var order: [Int]? = nil
    var nextBatchStart = 0
    var batchLosses: [Double] = []
    var epochSeconds = 0.0
    var step: UInt64 = 0
    var dropoutSeed: UInt64 = 0
    public var bestValidLoss = Double.infinity
    public var bestEpoch = 0

    /// Checks a state read from a file against the run it is to continue: `trainRows` training rows,
    /// `batchSize` rows a batch, `epochs` planned. Everything a resumed run indexes or counts with is
    /// checked, so a damaged or hand-edited checkpoint fails here with a reason instead of trapping,
    /// reading out of bounds or training on the wrong rows later.
    public func validate(trainRows: Int, batchSize: Int, epochs: Int) throws {
        func bad(_ why: String) -> CheckpointError { CheckpointError(description: "trainer state: " + why) }
        guard batchSize >= 1 else { throw bad("batch size \(batchSize) (at least 1)") }
        guard history.count <= epochs else {
            throw bad("\(history.count) epochs done, past the \(epochs) planned (give a larger --epochs to continue)")
        }
        for (i, r) in history.enumerated() {
            guard r.epoch == i + 1 else { throw bad("history row \(i + 1) is for epoch \(r.epoch); epochs must run 1, 2, 3, ...") }
            guard r.trainLoss.isFinite, r.trainLoss >= 0, r.validLoss.isNaN || r.validLoss >= 0 else {
                throw bad("epoch \(r.epoch) has losses \(r.trainLoss) / \(r.validLoss)")
            }
        }
        guard bestEpoch >= 0, bestEpoch <= history.count else {
            throw bad("best epoch \(bestEpoch), but \(history.count) epochs are done")
        }
        guard bestEpoch == 0 ? bestValidLoss == .infinity || bestValidLoss.isNaN : bestValidLoss == history[bestEpoch - 1].validLoss else {
            throw bad("best valid loss \(bestValidLoss) does not match epoch \(bestEpoch)'s")
        }
        if let order {
            guard order.count == trainRows else {
                throw bad("the batch order has \(order.count) rows, the training data \(trainRows)")
            }
            var seen = [Bool](repeating: false, count: trainRows)
            for i in order {
                guard i >= 0, i < trainRows, !seen[i] else {
                    throw bad("the batch order is not a permutation of the \(trainRows) training rows (row \(i))")
                }
                seen[i] = true
            }
            guard nextBatchStart >= 0, nextBatchStart <= order.count else {
                throw bad("position \(nextBatchStart) outside the epoch's \(order.count) rows")
            }
            // Every batch before the position took at least one row (the batch size may have changed
            // since, so it bounds nothing here).
            guard batchLosses.count <= nextBatchStart, batchLosses.isEmpty == (nextBatchStart == 0) else {
                throw bad("\(batchLosses.count) batch losses for position \(nextBatchStart)")
            }
        } else {
            // Between epochs the position is left over from the last one and unused (reset with the order).
            guard batchLosses.isEmpty else { throw bad("batch losses of an epoch but no batch order") }
        }
        guard batchLosses.allSatisfy({ $0.isFinite && $0 >= 0 }) else { throw bad("a batch loss is negative or not finite") }
        guard epochSeconds.isFinite, epochSeconds >= 0 else { throw bad("epoch time \(epochSeconds)") }
        // One step per batch, and a batch takes at least one row: a bound that also keeps step + 1 from overflowing.
        let (rows, overflow) = (history.count + 1).multipliedReportingOverflow(by: max(trainRows, 1))
        guard !overflow, step <= UInt64(rows) else { throw bad("step \(step) is more than \(history.count + 1) epochs can take") }
        guard rng.s != (0, 0, 0, 0) else { throw bad("the random generator's state is all zeros") }
    }
}

extension TrainConfig {
    /// The configuration for `trainingRows` rows: a batch size below 1 is an error, and one above the
    /// row count is capped to it (the same batches, without buffers for rows that do not exist), so
    /// memory follows the data and not the option.
    public func checked(trainingRows: Int) throws -> TrainConfig {
        guard batchSize >= 1 else { throw CheckpointError(description: "batch size \(batchSize) (at least 1)") }
        guard epochs >= 0 else { throw CheckpointError(description: "\(epochs) epochs (at least 0)") }
        var c = self
        c.batchSize = min(batchSize, max(trainingRows, 1))
        return c
    }
}

/// Mini-batch SGD with Nesterov momentum, batches reshuffled every epoch, exactly as the tutorial trains;
/// with schedules, flip augmentation, early stopping, interruption and resumption.
public final class Trainer {
    public enum Outcome: Equatable { case finished, earlyStopped, interrupted }

    public let net: Net
    /// Training samples: fixed faces, or faces drawn afresh from photos each time (augmentation).
    public let train: SampleSource
    public let valid: TrainingData
    public var config: TrainConfig
    public private(set) var state: TrainerState
    public var history: [EpochRecord] { state.history }
    /// The best weights so far (early stopping), host copies in parameter order.
    public private(set) var bestWeights: [[Float]]?
    private let stageX: Tensor
    private let stageY: Tensor

    public init(net: Net, train: SampleSource, valid: TrainingData, config: TrainConfig) {
        precondition(train.outputs == net.outputs && config.batchSize <= net.maxBatch)
        self.net = net; self.train = train; self.valid = valid; self.config = config
        state = TrainerState(rng: Xoshiro(seed: config.seed &+ 1))
        stageX = Tensor(shape: [net.maxBatch, net.inputSize])
        stageY = Tensor(shape: [net.maxBatch, net.outputs])
    }

    /// Copies rows of `data` into the net's input and target buffers, mirroring the rows in `flip`.
    /// `keys` (one per row) are the draws of a source that cuts samples afresh; fixed data ignores them.
    func load(_ data: SampleSource, rows: ArraySlice<Int>, flip: Set<Int> = [], keys: ((Int) -> UInt64)? = nil) {
        let size = net.inputSize, outs = net.outputs
        let stageX = self.stageX, stageY = self.stageY
        let fill = { (i: Int) in
            let r = rows[rows.startIndex + i]
            let dst = stageX.data + i * size, y = stageY.data + i * outs
            data.write(row: r, key: keys?(i) ?? 0, image: dst, target: y)
        }
        // Drawn samples cost a warp each: spread them over the cores (each row owns its slots).
        if keys != nil && rows.count > 1 {
            DispatchQueue.concurrentPerform(iterations: rows.count, execute: fill)
        } else {
            for i in 0..<rows.count { fill(i) }
        }
        for i in flip.sorted() {
            let row = stageX.data + i * size
            mirrorImageInPlace(row)
            mirrorTargets(stageY.data + i * outs, pairs: config.flipPairs ?? [], count: outs)
        }
        net.backend.write(UnsafeBufferPointer(start: stageX.data, count: rows.count * size), to: net.input, offset: 0)
        net.backend.write(UnsafeBufferPointer(start: stageY.data, count: rows.count * outs), to: net.target, offset: 0)
    }

    /// The net's loss (mean squared error, or the logistic loss of a classifier) over a whole set (batch
    /// losses weighted by batch size).
    public func loss(on data: TrainingData) -> Double {
        var sum = 0.0
        var start = 0
        let rows = Array(0..<data.count)
        while start < data.count {
            let end = min(start + config.batchSize, data.count)
            load(data, rows: rows[start..<end])
            sum += Double(net.evaluate(batch: end - start)) * Double(end - start)
            start = end
        }
        return data.count > 0 ? sum / Double(data.count) : .nan
    }

    public var nextEpoch: Int { state.history.count + 1 }

    /// Trains one epoch (or finishes the interrupted one); nil when `shouldStop` asked to stop mid-epoch.
    /// Throws TrainingDiverged on a non-finite loss.
    public func runEpoch(shouldStop: () -> Bool = { false }, onBatch: (Int, Int) -> Void = { _, _ in }) throws -> EpochRecord? {
        let epoch = nextEpoch
        let lr = config.learningRate.value(epoch: epoch, of: config.epochs)
        let momentum = config.momentum.value(epoch: epoch, of: config.epochs)
        if state.order == nil {
            var order = Array(0..<train.count)
            shuffle(&order, &state.rng)
            state.order = order
            state.nextBatchStart = 0
            state.batchLosses = []
            state.epochSeconds = 0
        }
        let order = state.order!
        let batches = (order.count + config.batchSize - 1) / config.batchSize
        let started = Date()
        while state.nextBatchStart < order.count {
            if shouldStop() {
                state.epochSeconds += Date().timeIntervalSince(started)
                syncState()
                return nil
            }
            let start = state.nextBatchStart
            let end = min(start + config.batchSize, order.count)
            var flip = Set<Int>()
            if config.flipPairs != nil {
                // half of the batch, chosen at random (nolearn's FlipBatchIterator)
                var idx = Array(0..<(end - start))
                shuffle(&idx, &state.rng)
                flip = Set(idx.prefix((end - start) / 2))
            }
            let seed = config.seed
            load(train, rows: order[start..<end], flip: flip,
                 keys: train.drawsAfresh ? { sampleKey(seed: seed, epoch: epoch, position: start + $0) } : nil)
            let loss = net.trainStep(batch: end - start, learningRate: lr, momentum: momentum)
            if !loss.isFinite { throw TrainingDiverged(epoch: epoch, batch: state.batchLosses.count + 1) }
            state.batchLosses.append(Double(loss))
            state.nextBatchStart = end
            onBatch(state.batchLosses.count, batches)
        }
        let trainLoss = state.batchLosses.reduce(0, +) / Double(max(state.batchLosses.count, 1))
        // An empty validation set (the bench) has no valid loss: NaN, which is not divergence.
        let validLoss = loss(on: valid)
        if valid.count > 0 && !validLoss.isFinite { throw TrainingDiverged(epoch: epoch, batch: 0) }
        state.epochSeconds += Date().timeIntervalSince(started)
        let record = EpochRecord(epoch: epoch, trainLoss: trainLoss, validLoss: validLoss, seconds: state.epochSeconds,
                                 learningRate: lr, momentum: momentum)
        state.history.append(record)
        state.order = nil
        state.batchLosses = []
        if validLoss < state.bestValidLoss {
            state.bestValidLoss = validLoss
            state.bestEpoch = epoch
            if config.earlyStoppingPatience != nil { bestWeights = net.parameters.map { net.backend.download($0.value) } }
        }
        syncState()
        return record
    }

    /// Whether early stopping's patience has run out.
    public var patienceExhausted: Bool {
        guard let p = config.earlyStoppingPatience else { return false }
        return nextEpoch - 1 - state.bestEpoch >= p
    }

    /// Puts the best weights (early stopping) back into the net.
    public func restoreBest() {
        guard let best = bestWeights else { return }
        for (p, w) in zip(net.parameters, best) { w.withUnsafeBufferPointer { net.backend.write($0, to: p.value, offset: 0) } }
    }

    private func syncState() {
        state.step = net.step
        state.dropoutSeed = net.dropoutSeed
    }

    public var historyCSV: String {
        ([EpochRecord.csvHeader] + history.map(\.csvLine)).joined(separator: "\n") + "\n"
    }

    // MARK: checkpoints

    /// Weights, velocities, trainer state and (with early stopping) the best weights, in one safetensors file.
    public func saveCheckpoint(path: String, metadata: [String: String]) throws {
        syncState()
        var meta = metadata
        meta["trainer_state"] = String(decoding: try JSONEncoder().encode(state), as: UTF8.self)
        meta["epoch"] = "\(history.count)"
        var extra: [Safetensors.Entry] = []
        if let best = bestWeights {
            extra = zip(net.parameters, best).map { Safetensors.Entry(name: "best.\($0.name)", shape: $0.shape, values: $1) }
        }
        try net.save(path: path, metadata: meta, includeVelocity: true, extra: extra)
    }

    /// Continues from a checkpoint written by saveCheckpoint.
    public func resume(from file: Safetensors.File, path: String) throws {
        guard let json = file.metadata["trainer_state"] else {
            throw CheckpointError(description: "\(path): no trainer state in the metadata; it is a final model, not a checkpoint to resume")
        }
        let s: TrainerState
        do { s = try JSONDecoder().decode(TrainerState.self, from: Data(json.utf8)) } catch {
            throw CheckpointError(description: "\(path): the trainer state is not readable JSON of the expected form")
        }
        do { try s.validate(trainRows: train.count, batchSize: config.batchSize, epochs: config.epochs) } catch {
            throw CheckpointError(description: "\(path): \(error)")
        }
        try net.load(file, path: path, velocities: true)
        state = s
        net.step = s.step
        net.dropoutSeed = s.dropoutSeed
        if file["best.\(net.parameters[0].name)"] != nil {
            bestWeights = try net.parameters.map { p in
                guard let e = file["best.\(p.name)"], e.shape == p.shape else {
                    throw CheckpointError(description: "\(path): best.\(p.name) is missing or has the wrong shape")
                }
                return e.values
            }
        }
    }
}

/// Public for tests and the plot of a flipped face: mirrors one face and its 30 pixel keypoints.
public func mirrorFace(image: [Float], keypoints: [Float], pairs: [(Int, Int)] = keypointFlipPairs) -> ([Float], [Float]) {
    var img = [Float](repeating: 0, count: image.count)
    image.withUnsafeBufferPointer { s in img.withUnsafeMutableBufferPointer { d in mirrorImage(s.baseAddress!, into: d.baseAddress!) } }
    var scaled = keypoints.map(KeypointScale.scaled)
    scaled.withUnsafeMutableBufferPointer { mirrorTargets($0.baseAddress!, pairs: pairs, count: keypoints.count) }
    return (img, scaled.map(KeypointScale.pixels))
}
