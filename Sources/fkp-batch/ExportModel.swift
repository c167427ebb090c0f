import ArgumentParser
import FKPNets
import FKPTrain
import Foundation

struct ExportModel: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export-model",
        abstract: "Write a model for shipping: weights only (no optimizer state), optionally as float16.",
        discussion: """
        A training checkpoint also holds momentum buffers, the trainer's state and, with early stopping,
        a second copy of the best weights. export-model keeps the weights and the model's metadata only;
        --float16 halves the size again (predictions change by far less than a pixel).

        Example:
          fkp-batch export-model net5.safetensors samples/model.safetensors --float16
        """)

    @Argument(help: "Checkpoint written by train.") var input: String
    @Argument(help: "Model file to write.") var output: String
    @Flag(help: "Store the weights as IEEE float16.") var float16 = false

    func run() throws {
        guard URL(fileURLWithPath: input).standardizedFileURL != URL(fileURLWithPath: output).standardizedFileURL else {
            throw fail("refusing to overwrite the input \(input)")
        }
        let file: Safetensors.File
        do { file = try Safetensors.read(path: input) } catch { throw fail("\(error)") }
        do { try ModelFile.validate(file, path: input, dtype: float16 ? .f16 : .f32) } catch { throw fail("\(error)") }
        let weights = file.tensors.filter { !$0.name.hasPrefix("optimizer.") && !$0.name.hasPrefix("best.") }
        var meta = file.metadata
        meta.removeValue(forKey: "trainer_state")
        meta["exported_from"] = URL(fileURLWithPath: input).lastPathComponent
        try Safetensors.write(Safetensors.File(tensors: weights, metadata: meta), path: output, dtype: float16 ? .f16 : .f32)
        let size = (try? FileManager.default.attributesOfItem(atPath: output)[.size] as? Int) ?? 0
        Log.info("wrote \(output): \(weights.count) tensors, \(size / 1_000_000) MB\(float16 ? " (float16)" : "")")
    }
}
