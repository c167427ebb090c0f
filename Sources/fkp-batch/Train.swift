import ArgumentParser
import Dispatch
import FKPEngine
import FKPExport
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

        Models are the tutorial's presets; any option given explicitly overrides the preset's value:
          net1  MLP 9216-100-30, 400 epochs            net2  CNN, 1000 epochs, lr 0.01, momentum 0.9
          net3  net2 + --augment flip, 3000 epochs     net4  net2 + --lr 0.03:0.0001 --momentum 0.9:0.999
          net5  net4 + flip, 2000 epochs               net6  net5 + dropout, early stopping 200, 3000 epochs
          net7  net6 with dense 1000-1000, 10000 epochs

        The output file is also a checkpoint (weights, momentum buffers, epoch, schedule position, RNG
        state), written atomically now and then, on Ctrl-C (after the current batch) and at the end;
        --resume continues it exactly as an uninterrupted run would. A run that diverges (NaN) stops with
        exit code 1 and leaves the last good checkpoint.

        Examples:
          fkp-batch train --model net1 --data training.csv --out net1.safetensors
          fkp-batch train --model net2 --augment flip --epochs 300 --lr 0.03:0.0001 --momentum 0.9:0.999
          fkp-batch train --resume net5.safetensors
        """)

    @Option(help: "Preset: net1 ... net7 (architecture and the tutorial's hyper-parameters).") var model: String?
    @Option(help: "Training CSV (30 keypoint columns + Image).") var data: String?
    @Option(help: "Epochs to train (default: the preset's).") var epochs: Int?
    @Option(name: .customLong("batch-size"), help: "Images per mini-batch.") var batchSize: Int?
    @Option(help: ArgumentHelp("Learning rate: a number, or START:STOP for a linear schedule over the epochs.", valueName: "lr"))
    var lr: String?
    @Option(help: ArgumentHelp("Nesterov momentum: a number, or START:STOP.", valueName: "momentum")) var momentum: String?
    @Option(help: ArgumentHelp("Augmentation: flip (mirror half of each batch) or none.", valueName: "kind")) var augment: String?
    @Flag(help: "Add net6's dropout (0.1/0.2/0.3 after the pools, 0.5 after the hidden layers) to a CNN preset.")
    var dropout = false
    @Option(name: .customLong("early-stopping"), help: ArgumentHelp("Stop after PATIENCE epochs without a better valid loss; keep the best weights.", valueName: "patience"))
    var earlyStopping: Int?
    @Option(help: "Seed of the split, the initial weights, the shuffles and the augmentation.") var seed: UInt64?
    @Option(help: "Where to write the model (safetensors); default <model>.safetensors.") var out: String?
    @Option(help: ArgumentHelp("Continue the run saved in this checkpoint.", valueName: "checkpoint")) var resume: String?
    @Flag(help: "Train the tutorial's six specialists (eyes, nose, mouth, bottom lip, eye corners, brows), each on every row with its group's values, into one bundle that predict and evaluate use like one model.")
    var specialists = false
    @Option(help: ArgumentHelp("With --specialists: start each from this trained net's weights (all but the output layer).", valueName: "model"))
    var pretrained: String?
    @Option(help: ArgumentHelp("At the end, draw the losses to this PNG (see fkp-batch plot).", valueName: "png")) var plot: String?
    @Flag(name: .customLong("skip-bad-rows"), help: "Warn about malformed CSV rows and go on instead of stopping.")
    var skipBadRows = false
    @OptionGroup var engine: EngineOptions

    func validate() throws {
        if let model, Recipe.preset(model) == nil {
            throw ValidationError("--model must be one of \(Architecture.names.joined(separator: ", ")), not '\(model)'")
        }
        if let epochs, epochs < 1 { throw ValidationError("--epochs must be at least 1") }
        if let batchSize, batchSize < 1 { throw ValidationError("--batch-size must be at least 1") }
        if let lr {
            guard let s = Schedule(parsing: lr), s.start > 0, s.stop > 0 else {
                throw ValidationError("--lr must be a positive number or START:STOP, not '\(lr)'")
            }
        }
        if let momentum {
            guard let s = Schedule(parsing: momentum), (0..<1).contains(s.start), (0..<1).contains(s.stop) else {
                throw ValidationError("--momentum must be in [0, 1), or START:STOP, not '\(momentum)'")
            }
        }
        if let augment, !["flip", "none"].contains(augment) { throw ValidationError("--augment must be flip or none") }
        if let earlyStopping, earlyStopping < 1 { throw ValidationError("--early-stopping must be at least 1") }
        if pretrained != nil && !specialists { throw ValidationError("--pretrained goes with --specialists") }
        if specialists && resume != nil { throw ValidationError("--specialists runs cannot be resumed; run them again") }
        if resume != nil && (model != nil || dropout) {
            throw ValidationError("--resume takes the model from the checkpoint; drop --model/--dropout")
        }
    }

    func run() throws {
        // Settings: the checkpoint's (when resuming), else the preset's, then explicit options on top.
        var resumeFile: Safetensors.File?
        var meta: [String: String] = [:]
        if let resume {
            do { resumeFile = try Safetensors.read(path: resume) } catch { throw fail("\(error)") }
            meta = resumeFile!.metadata
        }
        let modelName = model ?? meta["model"] ?? "net1"
        guard var recipe = Recipe.preset(modelName) else { throw fail("unknown model '\(modelName)' in \(resume ?? "")") }
        if dropout || meta["dropout"] == "true" {
            guard recipe.architecture.isConvolutional else { throw fail("--dropout applies to the CNN presets (net2 ... net7)") }
            recipe.architecture = .net2(hidden: modelName == "net7" ? 1000 : 500, dropout: true,
                                        dropoutAfterHidden5: modelName == "net7", name: modelName)
        }
        var config = recipe.config
        func pick<T>(_ explicit: T?, _ key: String, _ parse: (String) -> T?) -> T? { explicit ?? meta[key].flatMap(parse) }
        config.epochs = epochs ?? pick(nil, "epochs_planned", Int.init) ?? config.epochs
        config.batchSize = pick(batchSize, "batch_size", Int.init) ?? config.batchSize
        config.learningRate = (lr ?? meta["lr"]).flatMap(Schedule.init(parsing:)) ?? config.learningRate
        config.momentum = (momentum ?? meta["momentum"]).flatMap(Schedule.init(parsing:)) ?? config.momentum
        if let a = augment ?? meta["augment"] { config.flipPairs = a == "flip" ? keypointFlipPairs : nil }
        if let e = earlyStopping ?? meta["early_stopping"].flatMap(Int.init) { config.earlyStoppingPatience = e }
        config.seed = pick(seed, "seed", UInt64.init) ?? 42
        let dataPath = data ?? meta["data"] ?? "samples/training-sample.csv"
        let outPath = out ?? resume ?? "\(modelName).safetensors"
        if URL(fileURLWithPath: outPath).standardizedFileURL == URL(fileURLWithPath: dataPath).standardizedFileURL {
            throw fail("--out \(outPath) is the training data; refusing to overwrite an input")
        }

        let read: KaggleCSV.Result
        do { read = try KaggleCSV.read(path: dataPath, skipBadRows: skipBadRows) } catch { throw fail("\(error)") }
        if specialists {
            for e in read.skipped { Log.warn("skipped \(e)") }
            return try trainSpecialists(read.faces, recipe: recipe, config: config, dataPath: dataPath, outPath: outPath)
        }
        for e in read.skipped { Log.warn("skipped \(e)") }
        let faces = read.faces
        guard faces.keypoints != nil else { throw fail("\(dataPath) has no keypoint columns: it is not a training file") }
        let complete = faces.completeRows
        let split = Split(rows: complete, seed: config.seed)
        guard split.train.count >= 1, split.valid.count >= 1 else {
            throw fail("\(dataPath): \(complete.count) complete rows; at least 2 are needed to train and validate")
        }
        Log.info("\(dataPath): \(faces.count) rows, \(complete.count) complete; training on \(split.train.count), validating on \(split.valid.count)")
        do { config = try config.checked(trainingRows: split.train.count) } catch { throw fail("\(error)") }
        let backend = try engine.makeBackend()
        let net = Net(recipe.architecture, backend: backend, maxBatch: config.batchSize)
        net.initialise(seed: config.seed)
        let trainer = Trainer(net: net, train: TrainingData(faces, rows: split.train),
                              valid: TrainingData(faces, rows: split.valid), config: config)
        if let resumeFile {
            do { try trainer.resume(from: resumeFile, path: resume!) } catch { throw fail("\(error)") }
            Log.info("resuming \(resume!) after epoch \(trainer.history.count)")
        }
        Log.info("\(modelName): \(net.parameterCount) parameters on \(backend.name); \(config.epochs) epochs, lr \(config.learningRate), momentum \(config.momentum), batch \(config.batchSize)\(config.flipPairs != nil ? ", flip" : "")\(config.earlyStoppingPatience.map { ", early stopping \($0)" } ?? "")")

        let metadata: [String: String] = [
            "model": modelName, "epochs_planned": "\(config.epochs)", "lr": config.learningRate.description,
            "momentum": config.momentum.description, "batch_size": "\(config.batchSize)", "seed": "\(config.seed)",
            "augment": config.flipPairs != nil ? "flip" : "none", "dropout": "\(recipe.architecture.hasDropout)",
            "early_stopping": config.earlyStoppingPatience.map(String.init) ?? "", "data": dataPath,
            "train_rows": "\(split.train.count)", "valid_rows": "\(split.valid.count)", "device": backend.name,
        ]
        let historyPath = historyPath(for: outPath)
        let interrupt = InterruptFlag()
        let progress = ProgressLine(totalEpochs: config.epochs)
        var lastSave = Date(), saveCost = 0.0
        func checkpoint() throws {
            let t0 = Date()
            try trainer.saveCheckpoint(path: outPath, metadata: metadata)
            try writeFileAtomically(Data(trainer.historyCSV.utf8), to: historyPath)
            saveCost = Date().timeIntervalSince(t0)
            lastSave = Date()
        }

        Log.info(EpochRecord.tableHeader)
        for r in trainer.history { Log.info(r.tableLine) }
        let started = Date()
        var outcome = Trainer.Outcome.finished
        do {
            while trainer.nextEpoch <= config.epochs {
                guard let r = try trainer.runEpoch(shouldStop: { interrupt.isSet },
                                                   onBatch: { progress.batch($0, of: $1, epoch: trainer.nextEpoch) }) else {
                    outcome = .interrupted
                    break
                }
                progress.clear()
                try backend.check()
                Log.info(r.tableLine(best: config.earlyStoppingPatience != nil && trainer.state.bestEpoch == r.epoch))
                progress.epochDone(r.epoch, seconds: r.seconds)
                if trainer.patienceExhausted { outcome = .earlyStopped; break }
                if interrupt.isSet { outcome = .interrupted; break }
                // Checkpoint when it costs under a tenth of the time since the last one.
                if Date().timeIntervalSince(lastSave) >= 10 * saveCost { try checkpoint() }
            }
        } catch let e as TrainingDiverged {
            progress.clear()
            do { try backend.check() } catch { throw fail("\(backend.name) failed: \(error); \(outPath) keeps the last good checkpoint") }
            throw fail("\(e); \(outPath) keeps the last good checkpoint, \(historyPath) the losses so far", code: 1)
        }
        interrupt.restore()
        progress.clear()
        switch outcome {
        case .interrupted:
            try checkpoint()
            Log.info("interrupted: saved the state after epoch \(trainer.history.count) (and the batches since) to \(outPath); continue with: fkp-batch train --resume \(outPath)")
            throw ExitCode(130)
        case .earlyStopped, .finished:
            if outcome == .earlyStopped {
                Log.info("early stopping: no better valid loss for \(config.earlyStoppingPatience!) epochs; keeping epoch \(trainer.state.bestEpoch)")
            }
            trainer.restoreBest()
            try checkpoint()
        }
        if let plot {
            try writeLossPlot([LossHistory(name: modelName, epochs: trainer.history.map(\.epoch),
                                           train: trainer.history.map(\.trainLoss), valid: trainer.history.map(\.validLoss))],
                              to: plot, title: "\(modelName) loss per epoch")
            Log.info("wrote \(plot)")
        }
        let last = trainer.history.last!
        let best = trainer.history[max(0, (config.earlyStoppingPatience != nil ? trainer.state.bestEpoch : last.epoch) - 1)]
        Log.info(String(format: "trained %d epochs in %.1f s; wrote %@ and %@", trainer.history.count,
                        Date().timeIntervalSince(started), outPath, historyPath))
        print(String(format: "model=%@ epochs=%d train_loss=%.6f valid_loss=%.6f valid_rmse_px=%.3f out=%@",
                     modelName, best.epoch, best.trainLoss, best.validLoss, best.validRMSE, outPath))
    }
}

/// model.safetensors -> model.history.csv
func historyPath(for modelPath: String) -> String {
    let url = URL(fileURLWithPath: modelPath)
    let stem = url.pathExtension == "safetensors" ? url.deletingPathExtension() : url
    return stem.path + ".history.csv"
}

/// Ctrl-C (SIGINT) asks the run to stop after the current batch; a second Ctrl-C kills as usual.
final class InterruptFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var set = false
    private var source: DispatchSourceSignal?

    init() {
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

    var isSet: Bool { lock.lock(); defer { lock.unlock() }; return set }

    func restore() {
        source?.cancel()
        signal(SIGINT, SIG_DFL)
    }
}

/// A progress bar with an ETA for the run, on stderr and only when stderr is a terminal.
final class ProgressLine {
    let enabled = isatty(2) == 1
    let totalEpochs: Int
    var epochSeconds: [Double] = []
    var shown = false
    init(totalEpochs: Int) { self.totalEpochs = totalEpochs }

    func batch(_ done: Int, of total: Int, epoch: Int) {
        guard enabled else { return }
        let width = 30, filled = width * done / max(total, 1)
        var eta = ""
        if !epochSeconds.isEmpty {
            let per = epochSeconds.suffix(5).reduce(0, +) / Double(min(epochSeconds.count, 5))
            eta = "  ETA " + formatDuration(per * Double(totalEpochs - epoch + 1) - per * Double(done) / Double(max(total, 1)))
        }
        let line = "\r  epoch \(epoch)/\(totalEpochs) [\(String(repeating: "#", count: filled))\(String(repeating: ".", count: width - filled))] \(done)/\(total)\(eta)\u{1B}[K"
        FileHandle.standardError.write(Data(line.utf8))
        shown = true
    }

    func epochDone(_ epoch: Int, seconds: Double) { epochSeconds.append(seconds) }

    /// For a stream of items (annotate): done/total, rate and ETA.
    func items(_ done: Int, of total: Int, noun: String, since start: Date) {
        guard enabled, done > 0 else { return }
        let elapsed = Date().timeIntervalSince(start), rate = Double(done) / max(elapsed, 1e-9)
        let width = 30, filled = width * done / max(total, 1)
        let line = String(format: "\r  [%@%@] %d/%d %@, %.1f/s, ETA %@\u{1B}[K", String(repeating: "#", count: filled),
                          String(repeating: ".", count: width - filled), done, total, noun, rate,
                          formatDuration(Double(total - done) / max(rate, 1e-9)))
        FileHandle.standardError.write(Data(line.utf8))
        shown = true
    }

    func clear() {
        guard enabled, shown else { return }
        FileHandle.standardError.write(Data("\r\u{1B}[K".utf8))
        shown = false
    }
}

func formatDuration(_ s: Double) -> String {
    let t = Int(max(s, 0).rounded())
    return t >= 3600 ? "\(t / 3600)h\(t % 3600 / 60)m" : t >= 60 ? "\(t / 60)m\(t % 60)s" : "\(t)s"
}

extension Train {
    /// The tutorial's specialists: six nets of the preset's architecture, each with its group's outputs,
    /// trained on the rows that have the group's values. Epochs scale with the rows: a group with fewer
    /// rows trains longer (tutorial: int(1e7 / n), int(4e6 / n) with pre-training); --epochs sets the
    /// epochs of the largest group and the others scale from it.
    func trainSpecialists(_ faces: FaceSet, recipe: Recipe, config base: TrainConfig, dataPath: String, outPath: String) throws {
        guard faces.keypoints != nil else { throw fail("\(dataPath) has no keypoint columns") }
        let backend = try engine.makeBackend()
        let pre: Safetensors.File? = try pretrained.map { p in
            do { return try Safetensors.read(path: p) } catch { throw fail("\(error)") }
        }
        let groups = SpecialistGroup.tutorial
        let counts = groups.map { $0.rows(in: faces).count }
        guard let largest = counts.max(), largest >= 2 else { throw fail("\(dataPath): no group has 2 rows with its values") }
        var nets: [Net] = []
        var summary: [String] = []
        for (k, group) in groups.enumerated() {
            let rows = group.rows(in: faces)
            guard rows.count >= 2 else { throw fail("\(dataPath): only \(rows.count) rows have the \(group.name) values; 2 are needed") }
            var config = base
            let budget = pre != nil ? 4e6 : 1e7
            config.epochs = epochs.map { max(1, Int((Double($0) * Double(largest) / Double(rows.count)).rounded())) }
                ?? max(1, Int(budget / Double(rows.count)))
            config.flipPairs = base.flipPairs == nil ? nil : group.flipPairs.map { ($0[0], $0[1]) }
            let split = Split(rows: rows, seed: config.seed)
            guard let arch = Architecture.named(recipe.architecture.name, outputs: group.columns.count) else {
                throw fail("no architecture \(recipe.architecture.name)")
            }
            do { config = try config.checked(trainingRows: split.train.count) } catch { throw fail("\(error)") }
            let net = Net(arch, backend: backend, maxBatch: config.batchSize)
            net.initialise(seed: config.seed &+ UInt64(k))
            if let pre {
                do { _ = try copyPretrained(from: pre, path: pretrained!, into: net) } catch { throw fail("\(error)") }
            }
            let trainer = Trainer(net: net, train: TrainingData(faces, rows: split.train, columns: group.columns),
                                  valid: TrainingData(faces, rows: split.valid, columns: group.columns), config: config)
            Log.info("specialist \(k + 1)/6 \(group.name): \(rows.count) rows (\(split.train.count) train, \(split.valid.count) valid), \(config.epochs) epochs")
            Log.info(EpochRecord.tableHeader)
            while trainer.nextEpoch <= config.epochs {
                guard let r = try? trainer.runEpoch() else {
                    throw fail("specialist \(group.name) diverged at epoch \(trainer.nextEpoch); nothing was written", code: 1)
                }
                Log.info(r.tableLine(best: config.earlyStoppingPatience != nil && trainer.state.bestEpoch == r.epoch))
                if trainer.patienceExhausted { break }
            }
            trainer.restoreBest()
            try (backend as? OpenCLBackend)?.check()
            let best = trainer.history[(config.earlyStoppingPatience != nil ? trainer.state.bestEpoch : trainer.history.count) - 1]
            summary.append(String(format: "%@=%.3f", group.name, best.validRMSE))
            nets.append(net)
        }
        let bundle = SpecialistBundle(nets: nets, groups: groups)
        try bundle.save(path: outPath, metadata: ["data": dataPath, "seed": "\(base.seed)", "pretrained": pretrained ?? ""])
        Log.info("wrote \(outPath)")
        print("model=specialists base=\(recipe.architecture.name) valid_rmse_px: \(summary.joined(separator: " ")) out=\(outPath)")
    }
}
