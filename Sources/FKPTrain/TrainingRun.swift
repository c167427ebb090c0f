import Dispatch
import FKPEngine
import FKPInference
import FKPIngest
import FKPNets
import FKPTensor
import Foundation

/// What a run trains: the preset, the data and the hyper-parameters. Stored as JSON in the checkpoint's
/// metadata, so a resumed run reads its settings back instead of re-parsing strings.
public struct TrainingSetup: Codable, Sendable {
    public var model: String
    /// net6's dropout added to a CNN preset that has none.
    public var dropout: Bool
    public var data: String
    public var config: TrainConfig
    /// Labelled photos to cut samples from (train --frames) instead of the CSV in `data`.
    public var frames: String?
    /// With frames: "mixed" (wide and narrow moves) or "narrow" (a second-pass net).
    public var warp: String?
    /// Weights to start from instead of random ones.
    public var initWeights: String?

    public static let metadataKey = "training_setup"

    public init(model: String, dropout: Bool = false, data: String, config: TrainConfig? = nil) throws {
        guard let preset = Preset.named(model) else {
            throw FKPError.setup("unknown model '\(model)' (known: \(Preset.names.joined(separator: ", ")))")
        }
        guard !dropout || preset.isConvolutional else { throw FKPError.setup("--dropout applies to the CNN presets (net2 ... net7)") }
        self.model = model; self.dropout = dropout; self.data = data; self.config = config ?? preset.config
    }

    /// The setup a checkpoint was written with.
    public init(storedIn file: Safetensors.File, path: String) throws {
        guard let json = file.metadata[Self.metadataKey],
              let s = try? JSONDecoder().decode(TrainingSetup.self, from: Data(json.utf8)) else {
            throw FKPError.setup("\(path): no training setup in the metadata; it is a final model or was written by an older fkp-batch, not a checkpoint to resume")
        }
        self = s
        _ = try TrainingSetup(model: s.model, dropout: s.dropout, data: s.data, config: s.config)
    }

    public func architecture(outputs: Int = Keypoints.count) -> Architecture {
        Preset.named(model)!.architecture(outputs: outputs, dropout: dropout)
    }

    /// Readable metadata (as Net.describing shows it) plus the setup itself as JSON.
    func metadata(extra: [String: String]) throws -> [String: String] {
        var meta: [String: String] = [
            "model": model, "epochs_planned": "\(config.epochs)", "lr": config.learningRate.description,
            "momentum": config.momentum.description, "batch_size": "\(config.batchSize)", "seed": "\(config.seed)",
            "augment": config.flipPairs != nil ? "flip" : "none", "dropout": "\(architecture().hasDropout)",
            "early_stopping": config.earlyStoppingPatience.map(String.init) ?? "", "data": frames ?? data,
        ]
        if frames != nil { meta["framing"] = "aligned"; meta["warp"] = warp ?? "mixed" }
        if let initWeights { meta["init_weights"] = initWeights }
        meta[Self.metadataKey] = String(decoding: try JSONEncoder().encode(self), as: UTF8.self)
        return meta.merging(extra) { a, _ in a }
    }
}

/// Ctrl-C (SIGINT) asks the run to stop after the current batch; a second Ctrl-C kills as usual.
public final class InterruptFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var set = false
    private var source: DispatchSourceSignal?

    public init() {
        signal(SIGINT, SIG_IGN)
        let s = DispatchSource.makeSignalSource(signal: SIGINT, queue: .global())
        s.setEventHandler { [weak self] in
            guard let self else { return }
            self.lock.lock(); self.set = true; self.lock.unlock()
            FileHandle.standardError.write(Data("\ninterrupt: stopping after the current batch (Ctrl-C again to kill)\n".utf8))
            signal(SIGINT, SIG_DFL)
        }
        s.resume()
        source = s
    }

    public var isSet: Bool { lock.lock(); defer { lock.unlock() }; return set }

    public func restore() {
        source?.cancel()
        signal(SIGINT, SIG_DFL)
    }
}

/// The epoch loop every training run goes through (single nets and each specialist): nolearn's table
/// on stderr, a checkpoint whenever it costs under a tenth of the time since the last one, early
/// stopping, Ctrl-C after the current batch, and TrainingDiverged thrown on a NaN loss.
public enum TrainingLoop {
    public static func run(_ trainer: Trainer, interrupt: InterruptFlag?, progress: ProgressLine?,
                           checkpoint: (() throws -> Void)? = nil) throws -> Trainer.Outcome {
        let config = trainer.config, backend = trainer.net.backend
        Log.info(EpochRecord.tableHeader)
        for r in trainer.history { Log.info(r.tableLine) }
        var lastSave = Date(), saveCost = 0.0
        defer { progress?.clear() }
        while trainer.nextEpoch <= config.epochs {
            guard let r = try trainer.runEpoch(shouldStop: { interrupt?.isSet ?? false },
                                               onBatch: { progress?.batch($0, of: $1, epoch: trainer.nextEpoch) }) else {
                return .interrupted
            }
            progress?.clear()
            try backend.check()
            Log.info(r.tableLine(best: config.earlyStoppingPatience != nil && trainer.state.bestEpoch == r.epoch))
            progress?.epochDone(r.epoch, seconds: r.seconds)
            if trainer.patienceExhausted { return .earlyStopped }
            if interrupt?.isSet == true { return .interrupted }
            if let checkpoint, Date().timeIntervalSince(lastSave) >= 10 * saveCost {
                let t0 = Date()
                try checkpoint()
                saveCost = Date().timeIntervalSince(t0)
                lastSave = Date()
            }
        }
        return .finished
    }

    /// The epoch whose weights a finished run keeps: the best one with early stopping, else the last.
    public static func kept(_ trainer: Trainer) -> EpochRecord {
        let last = trainer.history.last!
        return trainer.history[max(0, (trainer.config.earlyStoppingPatience != nil ? trainer.state.bestEpoch : last.epoch) - 1)]
    }
}

/// model.safetensors -> model.history.csv
public func historyPath(for modelPath: String) -> String {
    let url = URL(fileURLWithPath: modelPath)
    let stem = url.pathExtension == "safetensors" ? url.deletingPathExtension() : url
    return stem.path + ".history.csv"
}

/// One net trained on a Kaggle CSV: the tutorial's split, the loop, checkpoints to `out` and its history
/// beside it. Returns the trainer (history, kept epoch); throws FKPError (setup: 2, diverged: 1,
/// interrupted after saving: 130).
public func trainNet(setup: TrainingSetup, resume: (file: Safetensors.File, path: String)?, out outPath: String,
                     device: DeviceChoice, threads: Int?, skipBadRows: Bool) throws -> Trainer {
    let data = try setup.frames.map { try framesData(dir: $0, warp: setup.warp, seed: setup.config.seed) }
        ?? csvData(path: setup.data, seed: setup.config.seed, skipBadRows: skipBadRows)
    // Buffers are sized by the batch: never larger than the rows there are.
    let config = try setup.config.checked(trainingRows: data.train.count)
    let backend = try device.makeBackend(threads: threads)
    let net = Net(setup.architecture(), backend: backend, maxBatch: config.batchSize)
    net.initialise(seed: config.seed)
    if let initWeights = setup.initWeights, resume == nil {
        try net.load(try Safetensors.read(path: initWeights), path: initWeights)
        Log.info("starting from the weights of \(initWeights)")
    }
    let trainer = Trainer(net: net, train: data.train, valid: data.valid, config: config)
    if let resume {
        try trainer.resume(from: resume.file, path: resume.path)
        Log.info("resuming \(resume.path) after epoch \(trainer.history.count)")
    }
    Log.info("\(setup.model): \(net.parameterCount) parameters on \(backend.name); \(config.epochs) epochs, lr \(config.learningRate), momentum \(config.momentum), batch \(config.batchSize)\(setup.frames != nil ? ", \(setup.warp ?? "mixed") warp" : "")\(config.flipPairs != nil ? ", flip" : "")\(config.earlyStoppingPatience.map { ", early stopping \($0)" } ?? "")")

    let metadata = try setup.metadata(extra: ["train_rows": "\(data.train.count)", "valid_rows": "\(data.valid.count)",
                                              "device": backend.name])
    let historyPath = historyPath(for: outPath)
    func checkpoint() throws {
        try trainer.saveCheckpoint(path: outPath, metadata: metadata)
        try writeFileAtomically(Data(trainer.historyCSV.utf8), to: historyPath)
    }
    let interrupt = InterruptFlag()
    let outcome: Trainer.Outcome
    do {
        outcome = try TrainingLoop.run(trainer, interrupt: interrupt, progress: ProgressLine(totalEpochs: config.epochs),
                                       checkpoint: checkpoint)
    } catch let e as TrainingDiverged {
        do { try backend.check() } catch {
            throw FKPError.setup("\(backend.name) failed: \(error); \(outPath) keeps the last good checkpoint")
        }
        throw FKPError.failed("\(e); \(outPath) keeps the last good checkpoint, \(historyPath) the losses so far")
    }
    interrupt.restore()
    switch outcome {
    case .interrupted:
        try checkpoint()
        throw FKPError("interrupted: saved the state after epoch \(trainer.history.count) (and the batches since) to \(outPath); continue with: fkp-batch train --resume \(outPath)", exitCode: 130)
    case .earlyStopped, .finished:
        if outcome == .earlyStopped {
            Log.info("early stopping: no better valid loss for \(config.earlyStoppingPatience!) epochs; keeping epoch \(trainer.state.bestEpoch)")
        }
        trainer.restoreBest()
        try checkpoint()
    }
    return trainer
}

/// The tutorial's data: complete rows of a Kaggle CSV, split 80/20 by a seeded shuffle.
func csvData(path: String, seed: UInt64, skipBadRows: Bool) throws -> (train: SampleSource, valid: TrainingData) {
    let read = try KaggleCSV.read(path: path, skipBadRows: skipBadRows)
    for e in read.skipped { Log.warn("skipped \(e)") }
    let faces = read.faces
    guard faces.keypoints != nil else { throw FKPError.setup("\(path) has no keypoint columns: it is not a training file") }
    let complete = faces.completeRows
    let split = Split(rows: complete, seed: seed)
    guard split.train.count >= 1, split.valid.count >= 1 else {
        throw FKPError.setup("\(path): \(complete.count) complete rows; at least 2 are needed to train and validate")
    }
    Log.info("\(path): \(faces.count) rows, \(complete.count) complete; training on \(split.train.count), validating on \(split.valid.count)")
    return (TrainingData(faces, rows: split.train), TrainingData(faces, rows: split.valid))
}

/// Labelled photos read and split by person (LandmarkSet.isHeldOut); people on both sides or an error.
func personSplit(_ dir: String) throws -> (all: LandmarkSet, train: [Int], valid: [Int]) {
    let all = try LandmarkFiles.read(dir)
    let trainRows = all.trainingRows, validRows = all.heldOutRows
    guard !trainRows.isEmpty, !validRows.isEmpty else {
        throw FKPError.setup("\(dir): \(all.count) faces of \(Set(all.persons).count) people; the person-wise split needs people on both sides")
    }
    return (all, trainRows, validRows)
}

/// Labelled photos: split by person (LandmarkSet.isHeldOut), training samples cut afresh each time,
/// validation samples cut once (the same draws every epoch).
func framesData(dir: String, warp: String?, seed: UInt64) throws -> (train: SampleSource, valid: TrainingData) {
    let (all, trainRows, validRows) = try personSplit(dir)
    var augmentation = Augmentation.standard
    if warp == "narrow" || warp == "fine" { augmentation.wideShare = 0 }
    if warp == "fine" { augmentation.narrow = Augmentation.fine }
    let t0 = Date()
    let train = try FrameSamples(all.subset(trainRows), augmentation: augmentation)
    let valid = try FrameSamples(all.subset(validRows), augmentation: augmentation).fixedSet(seed: seed)
    Log.info(String(format: "%@: %d faces of %d people; training on %d (%d people), validating on %d held-out faces (%d people); decoded in %.1f s",
                    dir, all.count, Set(all.persons).count, trainRows.count, Set(trainRows.map { all.persons[$0] }).count,
                    validRows.count, Set(validRows.map { all.persons[$0] }).count, Date().timeIntervalSince(t0)))
    return (train, valid)
}
