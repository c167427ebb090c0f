import ArgumentParser
import FKPExport
import FKPTensor
import Foundation

@main
struct FKPBatch: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fkp-batch",
        abstract: "Find 15 facial keypoints (eyes, brows, nose, mouth) in faces.",
        discussion: """
        Annotate photos with the bundled model, train the nets of Daniel Nouri's facial keypoints tutorial on Kaggle-format CSV files, evaluate them in pixels, and predict keypoints for new faces.

        Typical use:
          fkp-batch annotate samples/photos -o out/ > faces.csv
          fkp-batch train --model net1 --data training.csv --out net1.safetensors
          fkp-batch evaluate --model net1.safetensors labelled.csv
          fkp-batch predict --model net1.safetensors test.csv \\
            --lookup IdLookupTable.csv -o submission.csv

        Data goes to stdout, logs and progress to stderr. Exit codes: 0 success, 1 some inputs failed (each reported on stderr), 2 usage or set-up error found before any work.
        """,
        subcommands: [Annotate.self, Train.self, Predict.self, Evaluate.self, Plot.self, Bench.self, Devices.self, CalibrateCrop.self, ExportModel.self, TrainVerifier.self])

    /// Every error is reported here, once: FKPError with its exit code, ExitCode as already reported,
    /// usage errors with the parser's text and code 2, anything else from a library as a set-up error.
    static func main() {
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch let e as FKPError {
            if e.exitCode == 130 { Log.info(e.description) } else { Log.error(e.description) }
            Foundation.exit(e.exitCode)
        } catch let e as ExitCode {
            Foundation.exit(e.rawValue)
        } catch {
            let code = exitCode(for: error)
            if code == .success { exit(withError: error) }  // --help, --version
            if code == .validationFailure || error is ValidationError {
                // swift-argument-parser uses 64 (EX_USAGE); fkp-batch promises 2 for any usage error.
                FileHandle.standardError.write(Data((fullMessage(for: error) + "\n").utf8))
                Foundation.exit(2)
            }
            Log.error(describe(error))
            Foundation.exit(2)
        }
    }
}

/// An error's text for the user: Foundation's errors by their localized description (not the raw
/// NSError dump), ours by their description.
func describe(_ error: Error) -> String {
    if type(of: error) is CustomStringConvertible.Type && !(type(of: error) is NSError.Type) && !(error is CocoaError) { return "\(error)" }
    return ioErrorText(error)
}

/// Writes data to `path` atomically (after the output guard), or to stdout when path is nil or "-".
func emit(_ text: String, to path: String?, inputs: [String]) throws {
    guard let path, path != "-" else {
        FileHandle.standardOutput.write(Data(text.utf8))
        return
    }
    try OutputGuard(inputs: inputs).check(file: path)
    do { try writeFileAtomically(Data(text.utf8), to: path) } catch { throw FKPError.failed("\(path): cannot write: \(ioErrorText(error))") }
}
