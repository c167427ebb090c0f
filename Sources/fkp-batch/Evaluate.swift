import ArgumentParser
import FKPAlign
import FKPAnnotate
import FKPDetect
import FKPExport
import FKPImage
import FKPInference
import FKPIngest
import FKPTensor
import Foundation

struct Evaluate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "RMSE in pixels of a model on a labelled CSV, overall and per keypoint, with each keypoint's mean error (bias).",
        discussion: """
        Every labelled value counts (blanks are skipped). The RMSE is in pixels of the 96x96 frame; the tutorial's figure of merit (Kaggle scored the same way). Output on stdout: a table, or one JSON object with --format json. Without --model, the bundled model.

        Examples:
          fkp-batch evaluate samples/training-sample.csv
          fkp-batch evaluate --model net1.safetensors labelled.csv --format json
        """)

    @OptionGroup var model: ModelOption
    @Argument(help: "Labelled CSV (30 keypoint columns + Image).") var data: String?
    @Option(help: ArgumentHelp("Instead of a CSV: labelled photos (as train --frames takes them). Runs the whole photo path (detect, crop, passes, map back) and prints faces found and NME, also with perfect crops and for the mean shape. Only the held-out people unless --all-people.", valueName: "dir"))
    var frames: String?
    @Flag(name: .customLong("all-people"), help: "With --frames: every person, not only those held out of training.") var allPeople = false
    @OptionGroup var photoModel: PhotoModelOptions
    @Flag(help: "With --frames: measure the face detector alone (no net): faces found, false boxes per photo, speed, and both at several --min-score values.")
    var detection = false
    @OptionGroup(title: "Detector (with --frames)") var detector: DetectorOptions
    @Option(help: ArgumentHelp("With --frames: write a contact sheet of 48 faces (reference green, prediction red, NME under each) to this PNG.", valueName: "png"))
    var sheet: String?
    @Option(help: "Output.") var format: ReportFormat = .table
    @Flag(name: .customLong("skip-bad-rows"), help: "Skip malformed CSV rows with a warning.") var skipBadRows = false
    @OptionGroup var engine: EngineOptions

    func validate() throws {
        guard (data == nil) != (frames == nil) else { throw ValidationError("give a labelled CSV or --frames DIR (one of them)") }
        if detection && frames == nil { throw ValidationError("--detection needs --frames DIR") }
    }

    func run() throws {
        if let frames { return try runFrames(frames) }
        let data = self.data!
        let net = try model.load(engine)
        photoModel.apply(to: net)
        let read = try KaggleCSV.read(path: data, skipBadRows: skipBadRows)
        for e in read.skipped { Log.warn("skipped \(e)") }
        guard let truth = read.faces.keypoints else { throw FKPError.setup("\(data) has no keypoint columns to evaluate against") }
        let predicted = net.predict(read.faces.images)
        let report = RMSEReport(predicted: predicted, truth: truth)
        if format == .json {
            var perKeypoint: [String: Double] = [:], bias: [String: [Double]] = [:]
            for (i, name) in RMSEReport.keypointNames.enumerated() {
                perKeypoint[name] = report.perKeypoint[i]
                bias[name] = [report.meanError[2 * i], report.meanError[2 * i + 1]]
            }
            print(KeypointWriter.jsonLine(["model": model.path, "data": data, "faces": read.faces.count,
                                           "values": report.values, "rmse_px": report.overall,
                                           "per_keypoint_rmse_px": perKeypoint,
                                           "per_keypoint_mean_error_px": bias]))
        } else {
            let e = report.meanError
            printTable([["keypoint", "RMSE px", "mean error x", "mean error y"]]
                + RMSEReport.keypointNames.enumerated().map {
                    [$1, String(format: "%.3f", report.perKeypoint[$0]), String(format: "%+.3f", e[2 * $0]), String(format: "%+.3f", e[2 * $0 + 1])]
                }
                + [["overall (\(report.values) values)", String(format: "%.3f", report.overall), "", ""]])
        }
        if !read.skipped.isEmpty { throw ExitCode(1) }
    }

    func runFrames(_ dir: String) throws {
        if detection { return try runDetection(dir) }
        let loaded = try model.load(engine)
        let aligned = loaded as? AlignedModel
        photoModel.apply(to: loaded)
        if let sheet { try OutputGuard(inputs: [dir, model.path]).check(file: sheet, option: "--sheet") }
        let all = try LandmarkFiles.read(dir)
        let set = allPeople ? all : all.subset(all.heldOutRows)
        let r = try FramesEvaluation.run(set, model: loaded, framing: .firstCrop(for: loaded),
                                         detector: try detector.detector(model: model.model), passes: photoModel.passes, sheetFaces: sheet == nil ? 0 : 48)
        if let sheet {
            try PNGCodec.writeRGB(ContactSheet.draw(r.tiles.map {
                ContactSheet.Tile(side: $0.side, pixels: $0.pixels, predicted: $0.predicted, reference: $0.reference, caption: String(format: "%.3f", $0.nme))
            }), path: sheet)
            Log.info("wrote \(sheet)")
        }
        let rows = [("detected", "detector + net", r.detected), ("mean_shape_detected", "detector box + mean shape", r.meanShapeDetected),
                    ("perfect", "perfect crop + net (one pass)", r.perfect), ("mean_shape_perfect", "perfect crop + mean shape", r.meanShapePerfect)]
        let people = Set(set.persons).count, usedPasses = aligned.map { photoModel.passes ?? $0.defaultPasses } ?? 1
        if format == .json {
            var o: [String: Any] = ["model": model.path, "frames": dir, "photos": r.photos, "found": r.found, "people": people,
                                    "passes": usedPasses, "seconds": r.seconds]
            for (key, _, v) in rows { o["nme_\(key)_median"] = Statistics.median(v); o["nme_\(key)_mean"] = Statistics.mean(v) }
            o["per_keypoint_nme"] = Dictionary(uniqueKeysWithValues: zip(RMSEReport.keypointNames, r.perKeypoint))
            print(KeypointWriter.jsonLine(o))
        } else {
            print(String(format: "%d photos of %d people; faces found in %d (%.1f%%); %.1f photos/s (decode, detect, %d passes)",
                         r.photos, people, r.found, 100 * Double(r.found) / Double(max(r.photos, 1)), Double(r.photos) / r.seconds, usedPasses))
            printTable([["NME (mean distance / eye distance)", "median", "mean"]] + rows.map {
                [$0.1, String(format: "%.4f", Statistics.median($0.2)), String(format: "%.4f", Statistics.mean($0.2))]
            })
            printTable([["keypoint (detector + net)", "mean NME"]]
                + zip(RMSEReport.keypointNames, r.perKeypoint).map { [$0, String(format: "%.4f", $1)] })
        }
    }

    func runDetection(_ dir: String) throws {
        let all = try LandmarkFiles.read(dir)
        let set = allPeople ? all : all.subset(all.heldOutRows)
        let r = try FramesEvaluation.measureDetection(set, detector: try detector.detector(model: model.model))
        let thresholds = [0, 5, 10, 20, 40, 80].filter { $0 >= detector.minScore }
        let sweep = thresholds.map { t in (t, r.trueScores.filter { $0 >= t }.count, r.falseBoxes.filter { $0.detection.score >= t }.count) }
        let photos = Double(max(r.photos, 1))
        if format == .json {
            print(KeypointWriter.jsonLine([
                "frames": dir, "photos": r.photos, "found": r.found, "recall": Double(r.found) / photos,
                "found_by_pose": Dictionary(uniqueKeysWithValues: FacePose.allCases.map { ($0.rawValue, r.foundByPose[$0] ?? 0) }),
                "false_boxes": r.falseBoxes.count, "false_boxes_per_photo": Double(r.falseBoxes.count) / photos,
                "seconds": r.seconds, "photos_per_second": photos / max(r.seconds, 1e-9),
                "by_min_score": sweep.map { ["min_score": $0.0, "found": $0.1, "false_boxes": $0.2] },
                "missed": r.missed,
                "false": r.falseBoxes.map { ["photo": $0.photo, "x": $0.detection.box.x, "y": $0.detection.box.y, "w": $0.detection.box.width,
                                             "h": $0.detection.box.height, "score": $0.detection.score, "pose": $0.detection.pose.rawValue] },
            ]))
            return
        }
        print(String(format: "%d photos of %d people: faces found in %d (%.1f%%; frontal %d, left %d, right %d); %d false boxes (%.3f per photo); detection %.2f s, %.1f photos/s (%.2f megapixels)",
                     r.photos, Set(set.persons).count, r.found, 100 * Double(r.found) / photos, r.foundByPose[.frontal] ?? 0,
                     r.foundByPose[.left] ?? 0, r.foundByPose[.right] ?? 0, r.falseBoxes.count, Double(r.falseBoxes.count) / photos,
                     r.seconds, photos / max(r.seconds, 1e-9), Double(r.pixels) / 1e6))
        printTable([["min score", "found", "found %", "false boxes", "per photo"]] + sweep.map {
            ["\($0.0)", "\($0.1)", String(format: "%.1f", 100 * Double($0.1) / photos), "\($0.2)", String(format: "%.3f", Double($0.2) / photos)]
        })
        for f in r.falseBoxes {
            let b = f.detection.box
            print("false: \(f.photo) box \(b.x),\(b.y),\(b.width),\(b.height) score \(f.detection.score) \(f.detection.pose.rawValue)")
        }
        for m in r.missed { print("missed: \(m)") }
        let d = try detector.detector(model: model.model)
        if d.members.count > 1, let m = try FramesEvaluation.measureShift(set, frontal: d.members[0], member: d.members[1]) {
            print(String(format: "profile box -> frontal box of the same face: dx %.4f, dy %.4f, size %.4f box widths (median of %d faces)",
                         m.shift.dx, m.shift.dy, m.shift.size, m.faces))
        }
    }
}
