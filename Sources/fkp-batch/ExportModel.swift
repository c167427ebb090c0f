import ArgumentParser
import FKPAnnotate
import FKPDetect
import FKPExport
import FKPInference
import FKPNets
import FKPTensor
import FKPTrain
import Foundation

struct ExportModel: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export-model",
        abstract: "Write a model for shipping: weights only (no optimizer state), optionally as float16 or int8.",
        discussion: """
        A training checkpoint also holds momentum buffers, the trainer's state and, with early stopping, a second copy of the best weights. export-model keeps the weights and the model's metadata only; --float16 halves the size again (predictions change by far less than a pixel); --int8 quarters it (weight matrices as int8 with one scale per output column, biases as float32; the README gives the measured effect).

        With --second-pass or --frames it makes a photo model instead, used in passes by annotate and evaluate --frames: the input net runs the first pass (from the face detector's box), the --second-pass net the passes after it; --frames measures on the training people of those labelled photos where the detector's boxes put the crop and each net's output offset (its mean error on perfectly aligned crops, added to its predictions), and stores both. Given a photo model, export-model writes it again, its weights unchanged (byte for byte in the storage they had, e.g. --int8 for the bundled model) and its offsets and calibration kept; --frames measures the framing and offsets again and then drops the calibration unless --calibrate-aligned fits it again.

        --calibrate-aligned ROWS.csv fits a photo model's calibration for 96x96 faces in Kaggle's framing (predict, evaluate on a CSV, annotate --no-detect): a linear map from the 30 predicted values to the 30 labelled ones, by least squares over the rows of a Kaggle CSV with labels. Give it rows of the people the nets were trained on, never of those you will measure on. It applies at the passes it was fitted with (--calibration-passes), which become the model's default for such faces.

        Examples:
          fkp-batch export-model net5.safetensors samples/model.safetensors --float16
          fkp-batch export-model mixed.safetensors photo.safetensors --frames ../shared/data/frames --float16
          fkp-batch export-model mixed.safetensors photo.safetensors --second-pass narrow.safetensors --int8
          fkp-batch export-model photo.safetensors photo2.safetensors --frames ../shared/data/frames --int8
          fkp-batch export-model photo.safetensors photo3.safetensors --calibrate-aligned training-people.csv --int8
        """)

    @Argument(help: "Checkpoint written by train, or a photo model to write again.") var input: String
    @Argument(help: "Model file to write.") var output: String
    enum Storage: String, EnumerableFlag {
        case float32, float16, int8
        static func help(for value: Storage) -> ArgumentHelp? {
            switch value {
            case .float32: "Store the weights as float32 (the default)."
            case .float16: "Store the weights as IEEE float16."
            case .int8: "Store weight matrices as int8 with a float32 scale per output column (safetensors I8 + <name>.scale)."
            }
        }
        var dtype: Safetensors.DType {
            switch self { case .float32: .f32; case .float16: .f16; case .int8: .i8 }
        }
    }
    @Flag var storage: Storage = .float32
    @Option(name: .customLong("second-pass"), help: ArgumentHelp("Make a photo model: this net (trained with train --frames --warp narrow) runs the passes after the first.", valueName: "checkpoint"))
    var secondPass: String?
    @Option(help: ArgumentHelp("Make a photo model, with the detector box -> crop framing and each net's output offset measured on the training people of these labelled photos.", valueName: "dir"))
    var frames: String?
    @Option(help: "Passes a photo model makes by default (default: 2, or the input photo model's).") var passes: Int?
    @Option(help: "With --frames: Haar cascade XML.") var cascade: String = HaarCascade.defaultPath
    @Option(name: .customLong("calibrate-aligned"), help: ArgumentHelp("Fit the photo model's calibration for 96x96 faces in Kaggle's framing on the labelled rows of this Kaggle CSV (rows of the nets' training people).", valueName: "rows.csv"))
    var calibrateAligned: String?
    @Option(name: .customLong("calibration-passes"), help: "With --calibrate-aligned: the passes it is fitted for and applied at (default: \(PhotoModelExport.defaultCalibrationPasses)).")
    var calibrationPasses: Int?

    func validate() throws {
        if let passes, passes < 1 { throw ValidationError("--passes must be at least 1") }
        if let calibrationPasses {
            guard calibrateAligned != nil else { throw ValidationError("--calibration-passes needs --calibrate-aligned") }
            guard calibrationPasses >= 1 else { throw ValidationError("--calibration-passes must be at least 1") }
        }
    }

    func run() throws {
        try OutputGuard(inputs: [input, secondPass, calibrateAligned].compactMap { $0 }).check(file: output, option: "OUT")
        let file = try Safetensors.read(path: input)
        if secondPass != nil || frames != nil || calibrateAligned != nil || file.metadata["model"] == "aligned" {
            let made = try PhotoModelExport.write(first: input, firstFile: file, second: secondPass, frames: frames,
                                                  cascade: cascade, passes: passes, calibrationRows: calibrateAligned,
                                                  calibrationPasses: calibrationPasses, output: output, dtype: storage.dtype)
            if let c = made.calibration {
                Log.info(String(format: "calibration for 96x96 faces (%d passes) from %d rows of %@: RMSE on them %.3f -> %.3f px",
                                c.fitted.passes, c.fitted.rows, calibrateAligned ?? "", c.before, c.after))
            }
            Log.info("wrote \(output): photo model, \(made.nets) net(s), \(made.passes) passes, \(made.bytes / 1_000_000) MB (\(storage))")
            return
        }
        try ModelFile.validate(file, path: input, dtype: storage.dtype)
        let weights = file.tensors.filter { !$0.name.hasPrefix("optimizer.") && !$0.name.hasPrefix("best.") }
        var meta = file.metadata
        meta.removeValue(forKey: "trainer_state")
        meta.removeValue(forKey: TrainingSetup.metadataKey)
        meta["exported_from"] = URL(fileURLWithPath: input).lastPathComponent
        try Safetensors.write(Safetensors.File(tensors: weights, metadata: meta), path: output, dtype: storage.dtype)
        Log.info("wrote \(output): \(weights.count) tensors, \(fileSize(atPath: output) / 1_000_000) MB (\(storage))")
    }
}
