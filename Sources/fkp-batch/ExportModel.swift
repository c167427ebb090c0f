import ArgumentParser
import FKPAlign
import FKPDetect
import FKPIngest
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
    @Option(name: .customLong("second-pass"), help: ArgumentHelp("Make a photo model used in passes: the input net runs the first pass, this one the passes after it (both trained with train --frames).", valueName: "checkpoint"))
    var secondPass: String?
    @Option(help: ArgumentHelp("Make a photo model and measure how the face detector's boxes map to its crops on the training people of these labelled photos (stored in the model, used by annotate).", valueName: "dir"))
    var frames: String?
    @Option(help: "Passes a photo model makes by default.") var passes: Int = 2
    @Option(help: "With --frames: Haar cascade XML.") var cascade: String = HaarCascade.defaultPath

    func run() throws {
        guard URL(fileURLWithPath: input).standardizedFileURL != URL(fileURLWithPath: output).standardizedFileURL else {
            throw fail("refusing to overwrite the input \(input)")
        }
        let file: Safetensors.File
        do { file = try Safetensors.read(path: input) } catch { throw fail("\(error)") }
        if secondPass != nil || frames != nil { return try exportAligned(file) }
        let weights = file.tensors.filter { !$0.name.hasPrefix("optimizer.") && !$0.name.hasPrefix("best.") }
        var meta = file.metadata
        meta.removeValue(forKey: "trainer_state")
        meta["exported_from"] = URL(fileURLWithPath: input).lastPathComponent
        try Safetensors.write(Safetensors.File(tensors: weights, metadata: meta), path: output, dtype: float16 ? .f16 : .f32)
        let size = (try? FileManager.default.attributesOfItem(atPath: output)[.size] as? Int) ?? 0
        Log.info("wrote \(output): \(weights.count) tensors, \(size / 1_000_000) MB\(float16 ? " (float16)" : "")")
    }

    func exportAligned(_ first: Safetensors.File) throws {
        var nets: [(file: Safetensors.File, architecture: String)] = []
        for (path, file) in [(input, Optional(first)), (secondPass, nil)] {
            guard let path else { continue }
            let f: Safetensors.File
            do { f = try file ?? Safetensors.read(path: path) } catch { throw fail("\(error)") }
            guard let arch = f.metadata["model"], Architecture.named(arch) != nil else {
                throw fail("\(path): not a single net's checkpoint (model '\(f.metadata["model"] ?? "")')")
            }
            nets.append((f, arch))
        }
        var framing: BoxFraming?
        if let frames {
            let all: LandmarkSet, haar: HaarCascade
            do { all = try LandmarkFiles.read(frames); haar = try HaarCascade(contentsOf: cascade) } catch { throw fail("\(error)") }
            let set = all.subset(all.trainingRows)
            let images: [GrayImage]
            do { images = try FramesEvaluation.decode(set.images) } catch { throw fail("\(error)") }
            let boxes = FramesEvaluation.detect(images, references: set.keypoints, cascade: haar, parameters: .init())
            guard let cal = FramesEvaluation.calibrate(references: set.keypoints, boxes: boxes) else {
                throw fail("\(frames): the detector found none of the \(set.count) training faces; cannot calibrate")
            }
            framing = cal.framing
            Log.info("box -> crop framing from \(cal.faces) of \(set.count) training faces: \(cal.framing)")
        }
        var meta = first.metadata
        meta.removeValue(forKey: "trainer_state")
        meta["exported_from"] = ([input] + (secondPass.map { [$0] } ?? [])).map { URL(fileURLWithPath: $0).lastPathComponent }.joined(separator: " + ")
        do {
            try AlignedModel.save(nets: nets, framing: framing, passes: passes, metadata: meta, path: output, dtype: float16 ? .f16 : .f32)
        } catch { throw fail("\(error)") }
        let size = (try? FileManager.default.attributesOfItem(atPath: output)[.size] as? Int) ?? 0
        Log.info("wrote \(output): photo model, \(nets.count) net(s), \(passes) passes, \(size / 1_000_000) MB\(float16 ? " (float16)" : "")")
    }
}
