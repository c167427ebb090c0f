import ArgumentParser
import FKPEngine
import FKPIngest
import FKPNets
import FKPTensor
import FKPTrain
import Foundation

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a net on a Kaggle-format training CSV.",
        discussion: """
        Uses the rows with all 30 keypoints, shuffles them with --seed and holds out 20% for validation
        (the tutorial's protocol). Prints nolearn's table (epoch, train loss, valid loss, train/val, dur) on
        stderr, writes the weights as safetensors (metadata: model, hyper-parameters, epoch, keypoint
        names, input scaling) and the history as <out>.history.csv, and prints a one-line summary on
        stdout. Losses are mean squared errors of targets scaled to [-1, 1]; RMSE in pixels = sqrt(loss) * 48.

        Examples:
          fkp-batch train --model net1 --data training.csv --epochs 400 --out net1.safetensors
          fkp-batch train --model net2 --data samples/training-sample.csv --epochs 5
        """)

    @Option(help: "Architecture: net1 (MLP) or net2 (CNN).") var model: String = "net1"
    @Option(help: "Training CSV (30 keypoint columns + Image).") var data: String = "samples/training-sample.csv"
    @Option(help: "Epochs to train.") var epochs: Int = 100
    @Option(name: .customLong("batch-size"), help: "Images per mini-batch.") var batchSize: Int = 128
    @Option(help: "Learning rate of SGD with Nesterov momentum.") var lr: Float = 0.01
    @Option(help: "Momentum.") var momentum: Float = 0.9
    @Option(help: "Seed of the split, the initial weights and the shuffles.") var seed: UInt64 = 42
    @Option(help: "Where to write the model (safetensors).") var out: String?
    @Flag(name: .customLong("skip-bad-rows"), help: "Warn about malformed CSV rows and go on instead of stopping.")
    var skipBadRows = false
    @OptionGroup var engine: EngineOptions

    func validate() throws {
        guard Architecture.named(model) != nil else { throw ValidationError("--model must be net1 or net2, not '\(model)'") }
        guard epochs >= 1 else { throw ValidationError("--epochs must be at least 1") }
        guard batchSize >= 1 else { throw ValidationError("--batch-size must be at least 1") }
        guard lr > 0, lr.isFinite else { throw ValidationError("--lr must be a positive number") }
        guard momentum >= 0, momentum < 1 else { throw ValidationError("--momentum must be in [0, 1)") }
    }

    func run() throws {
        let outPath = out ?? "\(model).safetensors"
        if URL(fileURLWithPath: outPath).standardizedFileURL == URL(fileURLWithPath: data).standardizedFileURL {
            throw fail("--out \(outPath) is the training data; refusing to overwrite an input")
        }
        let read: KaggleCSV.Result
        do { read = try KaggleCSV.read(path: data, skipBadRows: skipBadRows) } catch {
            throw fail("\(error)")
        }
        for e in read.skipped { Log.warn("skipped \(e)") }
        let faces = read.faces
        guard faces.keypoints != nil else { throw fail("\(data) has no keypoint columns: it is not a training file") }
        let complete = faces.completeRows
        let split = Split(rows: complete, seed: seed)
        guard split.train.count >= 1, split.valid.count >= 1 else {
            throw fail("\(data): \(complete.count) complete rows; at least 2 are needed to train and validate")
        }
        Log.info("\(data): \(faces.count) rows, \(complete.count) complete; training on \(split.train.count), validating on \(split.valid.count)")
        let backend = engine.makeBackend()
        let net = Net(Architecture.named(model)!, backend: backend, maxBatch: batchSize)
        net.initialise(seed: seed)
        Log.info("\(model): \(net.parameterCount) parameters on \(backend.name)")
        var config = TrainConfig()
        config.epochs = epochs; config.batchSize = batchSize; config.learningRate = lr
        config.momentum = momentum; config.seed = seed
        let trainer = Trainer(net: net, train: TrainingData(faces, rows: split.train),
                              valid: TrainingData(faces, rows: split.valid), config: config)
        let historyPath = historyPath(for: outPath)
        func metadata(epoch: Int) -> [String: String] {
            ["model": model, "epoch": "\(epoch)", "lr": "\(lr)", "momentum": "\(momentum)",
             "batch_size": "\(batchSize)", "seed": "\(seed)", "data": data,
             "train_rows": "\(split.train.count)", "valid_rows": "\(split.valid.count)"]
        }
        Log.info(EpochRecord.tableHeader)
        let started = Date()
        var failure: Error?
        for epoch in 1...epochs {
            do {
                let r = try trainer.runEpoch()
                Log.info(r.tableLine)
                try writeAtomically(Data(trainer.historyCSV.utf8), to: historyPath)
                // Checkpoint now and then so a long run that is killed keeps its progress.
                if epoch % 25 == 0 && epoch < epochs { try net.save(path: outPath, metadata: metadata(epoch: epoch)) }
            } catch let e as TrainingDiverged {
                failure = e
                break
            }
        }
        if let failure {
            throw fail("\(failure); \(outPath) keeps the last good checkpoint, \(historyPath) the losses so far", code: 1)
        }
        try net.save(path: outPath, metadata: metadata(epoch: epochs))
        let last = trainer.history.last!
        Log.info(String(format: "trained %d epochs in %.1f s; wrote %@ and %@", epochs, Date().timeIntervalSince(started),
                        outPath, historyPath))
        print(String(format: "model=%@ epochs=%d train_loss=%.6f valid_loss=%.6f valid_rmse_px=%.3f out=%@",
                     model, epochs, last.trainLoss, last.validLoss, last.validRMSE, outPath))
    }
}

/// model.safetensors -> model.history.csv
func historyPath(for modelPath: String) -> String {
    let url = URL(fileURLWithPath: modelPath)
    let stem = url.pathExtension == "safetensors" ? url.deletingPathExtension() : url
    return stem.path + ".history.csv"
}
