import ArgumentParser
import FKPAnnotate
import FKPDetect
import FKPExport
import FKPNets
import FKPTensor
import FKPTrain
import Foundation

struct TrainVerifier: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train-verifier",
        abstract: "Train the face verifier that checks the detector's weak boxes, on labelled photos.",
        discussion: """
        The face verifier is a small CNN that scores whether a detector's box holds a face (annotate's --face-verifier). It learns from photos with 68-point landmarks (the folders train --frames takes), split by person as train --frames splits them: faces framed as a detector frames them, against the same faces moved or scaled far off, background squares, and every box that the Haar cascades find on the photos at their loosest (one neighbour, no checks) that holds no labelled face. Its threshold is set on the held-out people's boxes so that the share --keep of their faces pass (0.999: the lowest held-out face's score), and the file is written after every epoch (an interrupted or diverged run leaves the last good one).

        Example (the bundled samples/verifier.safetensors):
          fkp-batch train-verifier --frames ../shared/data/frames --out samples/verifier.safetensors
        """)

    @Option(help: ArgumentHelp("Labelled photos: a folder with keypoints.csv or iBUG .pts files (see train --frames).", valueName: "dir"))
    var frames: String
    @Option(help: "Where to write the verifier (safetensors).") var out: String = "verifier.safetensors"
    /// The library's defaults, shown in --help.
    private static let defaults = VerifierTraining(frames: "", out: "")
    @Option(help: "Epochs.") var epochs: Int = defaults.config.epochs
    @Option(help: "Learning rate, constant or start:stop.") var lr: String = defaults.config.learningRate.description
    @Option(help: "Share of the held-out faces' boxes the threshold keeps.") var keep: Double = defaults.keep
    @Option(help: "Seed of the weights and the draws.") var seed: UInt64 = defaults.config.seed
    @OptionGroup var engine: EngineOptions

    func validate() throws {
        guard epochs >= 1 else { throw ValidationError("--epochs must be at least 1") }
        guard Schedule(parsing: lr) != nil else { throw ValidationError("--lr: '\(lr)' is not a rate or start:stop") }
        guard keep > 0, keep <= 1 else { throw ValidationError("--keep must be in (0, 1]") }
    }

    func run() throws {
        try OutputGuard(inputs: [frames]).check(file: out, option: "--out")
        var training = VerifierTraining(frames: frames, out: out)
        training.config.epochs = epochs
        training.config.learningRate = Schedule(parsing: lr)!
        training.config.seed = seed
        training.keep = keep
        training.command = (["fkp-batch"] + CommandLine.arguments.dropFirst()).joined(separator: " ")
        let detector: FaceDetector
        do { detector = try AnnotationSettings.looseCandidates.detector()! } catch { throw FKPError.setup("\(error)") }
        let started = Date()
        var first = true
        let report = try training.run(backend: try engine.makeBackend(), boxesOf: { images, set in
            FramesEvaluation.labelledBoxes(images, set, detector: detector)
        }, onEpoch: { record, r in
            if first { Log.info(EpochRecord.tableHeader); first = false }
            Log.info(record.tableLine(best: false) + "  " + r.description)
        })
        Log.info(String(format: "trained %d epochs in %.1f s; wrote %@", epochs, Date().timeIntervalSince(started), out))
        print(String(format: "model=%@ threshold=%.4f faces_kept=%d/%d other_rejected=%d/%d auc=%.4f out=%@", "face-verifier",
                     report.threshold, report.facesKept, report.faces, report.othersRejected, report.others, report.auc, out))
    }
}
