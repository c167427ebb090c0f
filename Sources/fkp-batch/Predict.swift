import ArgumentParser
import FKPExport
import FKPImage
import FKPInference
import FKPIngest
import FKPTensor
import Foundation

struct Predict: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Predict keypoints for faces in a Kaggle CSV or in PNG files of cropped faces.",
        discussion: """
        Inputs are Kaggle-format CSV files (ImageId,Image or training-style) and/or PNG files of faces that are already cropped (any size: converted to grey with ITU-R BT.601 luma and resized to 96x96). Output: with --lookup, a Kaggle submission (RowId,Location); otherwise one CSV row per image (ImageId or file, then the 30 keypoint columns in pixels of the 96x96 frame; an empty field where a model has no value). Written to -o atomically, or to stdout. A bad input is reported and skipped; the exit code is then 1. Without --model, the bundled model.

        Examples:
          fkp-batch predict samples/test-sample.csv
          fkp-batch predict --model net2.safetensors test.csv \\
            --lookup IdLookupTable.csv -o submission.csv
          fkp-batch predict --model net1.safetensors samples/faces/*.png
        """)

    @OptionGroup var model: ModelOption
    @Argument(help: "CSV or PNG files.") var inputs: [String]
    @Option(help: "Kaggle IdLookupTable.csv: write a submission (RowId,Location).") var lookup: String?
    @Option(name: [.short, .customLong("output")], help: "Output file (default: stdout).") var output: String?
    @Flag(name: .customLong("skip-bad-rows"), help: "Skip malformed CSV rows with a warning.") var skipBadRows = false
    @OptionGroup var photoModel: PhotoModelOptions
    @OptionGroup var engine: EngineOptions

    func validate() throws {
        guard !inputs.isEmpty else { throw ValidationError("give at least one CSV or PNG file") }
    }

    func run() throws {
        let inputFiles = inputs + [model.path] + (lookup.map { [$0] } ?? [])
        if let output, output != "-" { try OutputGuard(inputs: inputFiles).check(file: output) }
        let net = try model.load(engine)
        photoModel.apply(to: net)
        var ids: [String] = []
        var imageIds: [Int?] = []
        var rows: [[Float]] = []
        var failed = 0
        var pngs: [String] = []
        for path in inputs {
            if path.lowercased().hasSuffix(".png") { pngs.append(path); continue }
            do {
                let read = try KaggleCSV.read(path: path, skipBadRows: skipBadRows)
                for e in read.skipped { Log.warn("skipped \(e)"); failed += 1 }
                let faces = read.faces
                rows += net.predict(faces.images)
                for i in 0..<faces.count {
                    let id = faces.imageIds?[i]
                    imageIds.append(id)
                    ids.append(id.map(String.init) ?? "\(path):\(faces.lines[i])")
                }
            } catch {
                Log.error("\(error)")
                failed += 1
            }
        }
        if !pngs.isEmpty {
            let faces = Tensor(shape: [pngs.count, Keypoints.imageSize])
            var good: [Int] = []
            for (i, path) in pngs.enumerated() {
                do {
                    let face = try PNGCodec.readGray(path: path).faceInput()
                    (faces.data + good.count * Keypoints.imageSize).update(from: face, count: Keypoints.imageSize)
                    good.append(i)
                } catch {
                    Log.error("\(error)")
                    failed += 1
                }
            }
            let packed = Tensor(shape: [good.count, Keypoints.imageSize])
            packed.data.update(from: faces.data, count: packed.count)
            rows += net.predict(packed)
            for i in good { ids.append(pngs[i]); imageIds.append(nil) }
        }
        let text: String
        if let lookup {
            var byId: [Int: [Float]] = [:]
            for (id, row) in zip(imageIds, rows) { if let id { byId[id] = row } }
            text = try KeypointWriter.submission(lookup: try LookupTable.read(path: lookup), predictions: byId)
        } else {
            text = KeypointWriter.csv(idHeader: imageIds.contains { $0 == nil } ? "image" : "ImageId", ids: ids, values: rows)
        }
        try emit(text, to: output, inputs: inputFiles)
        Log.info("predicted \(rows.count) faces\(failed > 0 ? ", \(failed) inputs failed" : "")")
        if failed > 0 { throw ExitCode(1) }
    }
}
