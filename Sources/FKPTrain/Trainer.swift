import FKPEngine
import FKPNets
import FKPTensor
import Foundation

public struct TrainConfig: Sendable {
    public var epochs: Int = 100
    public var batchSize: Int = 128
    public var learningRate: Float = 0.01
    public var momentum: Float = 0.9
    public var seed: UInt64 = 42
    public init() {}
}

/// One row of nolearn's table and of the history CSV.
public struct EpochRecord: Sendable, Equatable {
    public var epoch: Int
    public var trainLoss: Double
    public var validLoss: Double
    public var seconds: Double
    public var learningRate: Float
    public var momentum: Float
    public var ratio: Double { validLoss > 0 ? trainLoss / validLoss : .nan }
    /// Validation RMSE in pixels of the 96x96 frame.
    public var validRMSE: Double { validLoss.squareRoot() * 48 }

    public static let csvHeader = "epoch,train_loss,valid_loss,train_valid_ratio,seconds,lr,momentum"
    public var csvLine: String {
        String(format: "%d,%.6f,%.6f,%.4f,%.3f,%g,%g", epoch, trainLoss, validLoss, ratio, seconds,
               Double(learningRate), Double(momentum))
    }
    public static let tableHeader = "  epoch    train loss    valid loss    train/val    dur\n-------  ------------  ------------  -----------  -----"
    public var tableLine: String {
        String(format: "%7d  %12.5f  %12.5f  %11.5f  %.2fs", epoch, trainLoss, validLoss, ratio, seconds)
    }
}

public struct TrainingDiverged: Error, CustomStringConvertible {
    public let epoch: Int
    public let batch: Int
    public var description: String {
        "training diverged: the loss became NaN or infinite at epoch \(epoch), batch \(batch); try a lower --lr"
    }
}

/// Mini-batch SGD with Nesterov momentum, batches reshuffled every epoch, exactly as the tutorial trains.
public final class Trainer {
    public let net: Net
    public let train: TrainingData
    public let valid: TrainingData
    public var config: TrainConfig
    public private(set) var history: [EpochRecord] = []
    var rng: Xoshiro
    private let stageX: Tensor
    private let stageY: Tensor

    public init(net: Net, train: TrainingData, valid: TrainingData, config: TrainConfig) {
        precondition(train.outputs == net.outputs && config.batchSize <= net.maxBatch)
        self.net = net; self.train = train; self.valid = valid; self.config = config
        rng = Xoshiro(seed: config.seed &+ 1)
        stageX = Tensor(shape: [net.maxBatch, net.inputSize])
        stageY = Tensor(shape: [net.maxBatch, net.outputs])
    }

    /// Copies rows of `data` into the net's input and target buffers.
    func load(_ data: TrainingData, rows: ArraySlice<Int>) {
        let size = net.inputSize, outs = net.outputs
        for (i, r) in rows.enumerated() {
            (stageX.data + i * size).update(from: data.images.data + r * size, count: size)
            (stageY.data + i * outs).update(from: data.targets.data + r * outs, count: outs)
        }
        net.backend.write(UnsafeBufferPointer(start: stageX.data, count: rows.count * size), to: net.input, offset: 0)
        net.backend.write(UnsafeBufferPointer(start: stageY.data, count: rows.count * outs), to: net.target, offset: 0)
    }

    /// Mean squared error over a whole set (batch losses weighted by batch size).
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

    /// Trains one epoch; returns its record. Throws TrainingDiverged on a non-finite loss.
    public func runEpoch() throws -> EpochRecord {
        let started = Date()
        let epoch = history.count + 1
        var order = Array(0..<train.count)
        shuffle(&order, &rng)
        var losses: [Double] = []
        var start = 0
        while start < order.count {
            let end = min(start + config.batchSize, order.count)
            load(train, rows: order[start..<end])
            let loss = net.trainStep(batch: end - start, learningRate: config.learningRate, momentum: config.momentum)
            if !loss.isFinite { throw TrainingDiverged(epoch: epoch, batch: losses.count + 1) }
            losses.append(Double(loss))
            start = end
        }
        let trainLoss = losses.reduce(0, +) / Double(max(losses.count, 1))
        let validLoss = loss(on: valid)
        if !validLoss.isFinite { throw TrainingDiverged(epoch: epoch, batch: 0) }
        let record = EpochRecord(epoch: epoch, trainLoss: trainLoss, validLoss: validLoss,
                                 seconds: Date().timeIntervalSince(started),
                                 learningRate: config.learningRate, momentum: config.momentum)
        history.append(record)
        return record
    }

    public var historyCSV: String {
        ([EpochRecord.csvHeader] + history.map(\.csvLine)).joined(separator: "\n") + "\n"
    }
}
