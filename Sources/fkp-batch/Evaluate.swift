import ArgumentParser
import FKPExport
import FKPInference
import FKPIngest
import FKPTensor
import Foundation

struct Evaluate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "RMSE in pixels of a model on a labelled CSV, overall and per keypoint.",
        discussion: """
        Every labelled value counts (blanks are skipped). The RMSE is in pixels of the 96x96 frame; the tutorial's figure of merit (Kaggle scored the same way). Output on stdout: a table, or one JSON object with --format json. Without --model, the bundled model.

        Examples:
          fkp-batch evaluate samples/training-sample.csv
          fkp-batch evaluate --model net1.safetensors labelled.csv --format json
        """)

    @OptionGroup var model: ModelOption
    @Argument(help: "Labelled CSV (30 keypoint columns + Image).") var data: String
    @Option(help: "Output.") var format: ReportFormat = .table
    @Flag(name: .customLong("skip-bad-rows"), help: "Skip malformed CSV rows with a warning.") var skipBadRows = false
    @OptionGroup var engine: EngineOptions

    func run() throws {
        let net = try model.load(engine)
        let read = try KaggleCSV.read(path: data, skipBadRows: skipBadRows)
        for e in read.skipped { Log.warn("skipped \(e)") }
        guard let truth = read.faces.keypoints else { throw FKPError.setup("\(data) has no keypoint columns to evaluate against") }
        let predicted = net.predict(read.faces.images)
        let report = RMSEReport(predicted: predicted, truth: truth)
        if format == .json {
            var perKeypoint: [String: Double] = [:]
            for (i, name) in RMSEReport.keypointNames.enumerated() { perKeypoint[name] = report.perKeypoint[i] }
            print(KeypointWriter.jsonLine(["model": model.path, "data": data, "faces": read.faces.count,
                                           "values": report.values, "rmse_px": report.overall,
                                           "per_keypoint_rmse_px": perKeypoint]))
        } else {
            printTable([["keypoint", "RMSE px"]]
                + RMSEReport.keypointNames.enumerated().map { [$1, String(format: "%.3f", report.perKeypoint[$0])] }
                + [["overall (\(report.values) values)", String(format: "%.3f", report.overall)]])
        }
        if !read.skipped.isEmpty { throw ExitCode(1) }
    }
}
