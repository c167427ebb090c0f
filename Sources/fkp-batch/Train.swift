import ArgumentParser
import FKPExport
import FKPNets
import FKPTensor
import FKPTrain
import Foundation

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a net on a Kaggle-format training CSV or on labelled photos.",
        discussion: """
        Uses the rows with all 30 keypoints, shuffles them with --seed and holds out 20% for validation (the tutorial's protocol). Prints nolearn's table (epoch, train loss, valid loss, train/val, dur) on stderr, writes the weights as safetensors (metadata: model, hyper-parameters, epoch, keypoint names, input scaling) and the history as <out>.history.csv, and prints a one-line summary on stdout. Losses are mean squared errors of targets scaled to [-1, 1]; RMSE in pixels = sqrt(loss) * 48.

        Models are the tutorial's presets; any option given explicitly overrides the preset's value:
        \(Preset.all.map { "  \($0.name)  \($0.summary), \($0.config.epochs) epochs" }.joined(separator: "\n"))

        The output file is also a checkpoint (weights, momentum buffers, epoch, schedule position, RNG state, and the run's settings), written atomically now and then, on Ctrl-C (after the current batch) and at the end; --resume continues it exactly as an uninterrupted run would. A run that diverges (NaN) stops with exit code 1 and leaves the last good checkpoint.

        Examples:
          fkp-batch train --model net1 --data training.csv --out net1.safetensors
          fkp-batch train --model net2 --augment flip --epochs 300 \\
            --lr 0.03:0.0001 --momentum 0.9:0.999
          fkp-batch train --resume net5.safetensors
          fkp-batch train --model net5 --frames ../shared/data/frames --epochs 344 --device opencl
        """)

    @Option(help: "Preset: net1 ... net7 (architecture and the tutorial's hyper-parameters).") var model: String?
    @Option(help: "Training CSV (30 keypoint columns + Image).") var data: String?
    @Option(help: ArgumentHelp("Train from labelled photos instead of a CSV: a folder with keypoints.csv (image,x0,y0,...,x67,y67) and images/, or a folder of images with iBUG .pts files. Every sample is cut afresh from its photo through a random similarity, light and blur change (see the README); people whose name hashes to 0 mod 5 are held out for validation.", valueName: "dir"))
    var frames: String?
    @Option(help: ArgumentHelp("With --frames: mixed (half the samples moved as much as a detector box is off, half as little as a first pass leaves: a net for every pass), narrow (only the latter: a second-pass net) or fine (half the narrow moves: a net for faces already aligned).", valueName: "kind"))
    var warp: Warp?
    @Option(name: .customLong("init-weights"), help: ArgumentHelp("Start from this trained model's weights (same architecture) instead of random ones: fine-tuning, or a warm restart of the schedule.", valueName: "model"))
    var initWeights: String?
    @Option(help: "Epochs to train (default: the preset's).") var epochs: Int?
    @Option(name: .customLong("batch-size"), help: "Images per mini-batch.") var batchSize: Int?
    @Option(help: ArgumentHelp("Learning rate: a number, or START:STOP for a linear schedule over the epochs.", valueName: "lr"))
    var lr: String?
    @Option(help: ArgumentHelp("Nesterov momentum: a number, or START:STOP.", valueName: "momentum")) var momentum: String?
    @Option(help: ArgumentHelp("Augmentation: flip (mirror half of each batch) or none.", valueName: "kind")) var augment: Augment?
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
        if let model, Preset.named(model) == nil {
            throw ValidationError("--model must be one of \(Preset.names.joined(separator: ", ")), not '\(model)'")
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
        if let earlyStopping, earlyStopping < 1 { throw ValidationError("--early-stopping must be at least 1") }
        if frames != nil && (data != nil || specialists) { throw ValidationError("--frames replaces --data and does not go with --specialists") }
        if warp != nil && frames == nil && resume == nil { throw ValidationError("--warp goes with --frames") }
        if pretrained != nil && !specialists { throw ValidationError("--pretrained goes with --specialists") }
        if specialists && resume != nil { throw ValidationError("--specialists runs cannot be resumed; run them again") }
        if resume != nil && (model != nil || dropout) {
            throw ValidationError("--resume takes the model from the checkpoint; drop --model/--dropout")
        }
    }

    func run() throws {
        // Settings: the checkpoint's (when resuming), else the preset's, then explicit options on top.
        let resumed = try resume.map { path in (file: try Safetensors.read(path: path), path: path) }
        var setup = try resumed.map { try TrainingSetup(storedIn: $0.file, path: $0.path) }
            ?? TrainingSetup(model: model ?? "net1", dropout: dropout, data: data ?? "samples/training-sample.csv")
        if let data { setup.data = data }
        if let frames { setup.frames = frames }
        if let warp { setup.warp = warp.rawValue }
        if let initWeights { setup.initWeights = initWeights }
        if let epochs { setup.config.epochs = epochs }
        if let batchSize { setup.config.batchSize = batchSize }
        if let lr { setup.config.learningRate = Schedule(parsing: lr)! }
        if let momentum { setup.config.momentum = Schedule(parsing: momentum)! }
        if let augment { setup.config.flipPairs = augment == .flip ? keypointFlipPairs : nil }
        if let earlyStopping { setup.config.earlyStoppingPatience = earlyStopping }
        if let seed { setup.config.seed = seed }
        let outPath = out ?? resume ?? "\(setup.model).safetensors"
        let outputs = OutputGuard(inputs: [setup.data] + [setup.frames, pretrained, initWeights].compactMap { $0 })
        try outputs.check(file: outPath, option: "--out")
        try outputs.check(file: historyPath(for: outPath), option: "--out")
        if let plot { try outputs.check(file: plot, option: "--plot") }
        // Weights to start from are read before the data is, so a bad file is a set-up error found first.
        if let initWeights { _ = try Safetensors.read(path: initWeights) }

        if specialists {
            let summary = try trainSpecialists(setup: setup, epochs: epochs, pretrained: pretrained, out: outPath,
                                               device: engine.device, threads: engine.threads, skipBadRows: skipBadRows)
            Log.info("wrote \(outPath)")
            print("model=specialists base=\(setup.model) valid_rmse_px: \(summary.joined(separator: " ")) out=\(outPath)")
            return
        }
        let started = Date()
        let trainer = try trainNet(setup: setup, resume: resumed, out: outPath, device: engine.device, threads: engine.threads,
                                   skipBadRows: skipBadRows)
        if let plot {
            let h = trainer.history
            try LossPlot.write([LossHistory(name: setup.model, epochs: h.map(\.epoch), train: h.map(\.trainLoss),
                                            valid: h.map(\.validLoss))], to: plot, title: "\(setup.model) loss per epoch")
            Log.info("wrote \(plot)")
        }
        let best = TrainingLoop.kept(trainer)
        Log.info(String(format: "trained %d epochs in %.1f s; wrote %@ and %@", trainer.history.count,
                        Date().timeIntervalSince(started), outPath, historyPath(for: outPath)))
        print(String(format: "model=%@ epochs=%d train_loss=%.6f valid_loss=%.6f valid_rmse_px=%.3f out=%@",
                     setup.model, best.epoch, best.trainLoss, best.validLoss, best.validRMSE, outPath))
    }
}
