import ArgumentParser
import FKPAlign
import FKPDetect
import FKPEngine
import FKPExport
import FKPIngest
import FKPNets
import FKPTensor
import FKPTrain
import Foundation

struct Evaluate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "RMSE in pixels of a model on a labelled CSV, overall and per keypoint.",
        discussion: """
        Every labelled value counts (blanks are skipped). The RMSE is in pixels of the 96x96 frame; the
        tutorial's figure of merit (Kaggle scored the same way). Output on stdout: a table, or one JSON
        object with --format json.

        Example:
          fkp-batch evaluate --model net1.safetensors samples/training-sample.csv --format json
        """)

    @Option(help: "Trained model (safetensors).") var model: String
    @Argument(help: "Labelled CSV (30 keypoint columns + Image).") var data: String?
    @Option(help: ArgumentHelp("Instead of a CSV: labelled photos (as train --frames takes them). Runs the whole photo path (detect, crop, passes, map back) and prints faces found and NME, also with perfect crops and for the mean shape. Only the held-out people unless --all-people.", valueName: "dir"))
    var frames: String?
    @Flag(name: .customLong("all-people"), help: "With --frames: every person, not only those held out of training.") var allPeople = false
    @Option(help: "With --frames: passes through the net (default: the model's).") var passes: Int?
    @Option(help: "With --frames: Haar cascade XML.") var cascade: String = HaarCascade.defaultPath
    @Option(help: ArgumentHelp("With --frames: write a contact sheet of 48 faces (reference green, prediction red, NME under each) to this PNG.", valueName: "png"))
    var sheet: String?
    @Option(help: "Output: table or json.") var format: String = "table"
    @Flag(name: .customLong("skip-bad-rows"), help: "Skip malformed CSV rows with a warning.") var skipBadRows = false
    @OptionGroup var engine: EngineOptions

    func validate() throws {
        guard ["table", "json"].contains(format) else { throw ValidationError("--format must be table or json") }
        guard (data == nil) != (frames == nil) else { throw ValidationError("give a labelled CSV or --frames DIR (one of them)") }
        if let passes, passes < 1 { throw ValidationError("--passes must be at least 1") }
    }

    func run() throws {
        if let frames { return try runFrames(frames) }
        let data = self.data!
        let backend = try engine.makeBackend()
        let net: KeypointModel
        let read: KaggleCSV.Result
        do {
            net = try ModelFile.loadModel(path: model, backend: backend)
            read = try KaggleCSV.read(path: data, skipBadRows: skipBadRows)
        } catch { throw fail("\(error)") }
        for e in read.skipped { Log.warn("skipped \(e)") }
        guard let truth = read.faces.keypoints else { throw fail("\(data) has no keypoint columns to evaluate against") }
        let predicted = net.predict(read.faces.images)
        let report = RMSEReport(predicted: predicted, truth: truth)
        if format == "json" {
            var perKeypoint: [String: Double] = [:]
            for (i, name) in RMSEReport.keypointNames.enumerated() { perKeypoint[name] = report.perKeypoint[i] }
            print(KeypointWriter.jsonLine(["model": model, "data": data, "faces": read.faces.count,
                                           "values": report.values, "rmse_px": report.overall,
                                           "per_keypoint_rmse_px": perKeypoint]))
        } else {
            printTable([["keypoint", "RMSE px"]]
                + RMSEReport.keypointNames.enumerated().map { [$1, String(format: "%.3f", report.perKeypoint[$0])] }
                + [["overall (\(report.values) values)", String(format: "%.3f", report.overall)]])
        }
        if !read.skipped.isEmpty { throw ExitCode(1) }
    }

    func runFrames(_ dir: String) throws {
        let backend = try engine.makeBackend()
        let loaded: KeypointModel, all: LandmarkSet, haar: HaarCascade
        do {
            loaded = try ModelFile.loadModel(path: model, backend: backend)
            all = try LandmarkFiles.read(dir)
            haar = try HaarCascade(contentsOf: cascade)
        } catch { throw fail("\(error)") }
        guard let aligned = loaded as? AlignedModel else {
            throw fail("\(model) is a model for 96x96 faces (\(loaded.name)); --frames needs a photo model (made by export-model --second-pass/--frames)")
        }
        let set = allPeople ? all : all.subset(all.heldOutRows)
        let framing = aligned.framing ?? BoxFraming(dx: CropMapping.calibrated.dx, dy: CropMapping.calibrated.dy, size: CropMapping.calibrated.size)
        let r: FramesReport
        do {
            r = try FramesEvaluation.run(set, model: aligned, framing: framing, cascade: haar, passes: passes, sheetFaces: sheet == nil ? 0 : 48)
            if let sheet {
                let tiles = r.tiles.map { ContactSheet.Tile(side: $0.side, pixels: $0.pixels, predicted: $0.predicted, reference: $0.reference,
                                                            caption: String(format: "%.3f", $0.nme)) }
                try PNGCodec.writeRGB(ContactSheet.draw(tiles), path: sheet)
                Log.info("wrote \(sheet)")
            }
        } catch { throw fail("\(error)") }
        let m = FramesReport.median, a = FramesReport.mean
        let rows: [(String, [Double])] = [("detector + net", r.detected), ("detector box + mean shape", r.meanShapeDetected),
                                          ("perfect crop + net (1 pass)", r.perfect), ("perfect crop + mean shape", r.meanShapePerfect)]
        if format == "json" {
            var o: [String: Any] = ["model": model, "frames": dir, "photos": r.photos, "found": r.found,
                                    "people": Set(set.persons).count, "passes": passes ?? aligned.defaultPasses,
                                    "seconds": r.seconds]
            for (name, v) in zip(["detected", "mean_shape_detected", "perfect", "mean_shape_perfect"], rows) {
                o["nme_\(name)_median"] = m(v.1); o["nme_\(name)_mean"] = a(v.1)
            }
            var per: [String: Double] = [:]
            for (i, name) in RMSEReport.keypointNames.enumerated() { per[name] = r.perKeypoint[i] }
            o["per_keypoint_nme"] = per
            print(KeypointWriter.jsonLine(o))
        } else {
            print(String(format: "%d photos of %d people; faces found in %d (%.1f%%); %.1f photos/s (decode, detect, %d passes)",
                         r.photos, Set(set.persons).count, r.found, 100 * Double(r.found) / Double(max(r.photos, 1)),
                         Double(r.photos) / r.seconds, passes ?? aligned.defaultPasses))
            printTable([["NME (mean distance / eye distance)", "median", "mean"]]
                + rows.map { [$0.0, String(format: "%.4f", m($0.1)), String(format: "%.4f", a($0.1))] })
            printTable([["keypoint (detector + net)", "mean NME"]]
                + RMSEReport.keypointNames.enumerated().map { [$1, String(format: "%.4f", r.perKeypoint[$0])] })
        }
    }
}
