import ArgumentParser
import FKPNets
import FKPTensor
import Foundation

@main
struct FKPBatch: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fkp-batch",
        abstract: "Find 15 facial keypoints (eyes, brows, nose, mouth) in 96x96 face images.",
        discussion: """
        Train the nets of Daniel Nouri's facial keypoints tutorial on Kaggle-format CSV files, evaluate them
        in pixels, and predict keypoints for new faces.

        Typical use:
          fkp-batch train --model net1 --data training.csv --epochs 400 --out net1.safetensors
          fkp-batch evaluate --model net1.safetensors labelled.csv
          fkp-batch predict --model net1.safetensors test.csv --lookup IdLookupTable.csv -o submission.csv

        Data goes to stdout, logs and progress to stderr. Exit codes: 0 success, 1 some inputs failed
        (reported on stderr), 2 usage or set-up error.
        """,
        subcommands: [Annotate.self, Train.self, Predict.self, Evaluate.self, Plot.self, Bench.self, Devices.self, CalibrateCrop.self, ExportModel.self])

    static func main() {
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            let code = exitCode(for: error)
            if code == .success || code == .failure {
                if code == .failure { Log.error(fullMessage(for: error)) }
                exit(withError: error)
            }
            if code == .validationFailure || error is ValidationError {
                // swift-argument-parser uses 64 (EX_USAGE); fkp-batch promises 2 for any usage error.
                let message = fullMessage(for: error)
                FileHandle.standardError.write(Data((message + "\n").utf8))
                Foundation.exit(2)
            }
            exit(withError: error)
        }
    }
}

/// Logs go to stderr, so stdout carries only data.
enum Log {
    static func info(_ s: String) { FileHandle.standardError.write(Data((s + "\n").utf8)) }
    static func warn(_ s: String) { info("warning: " + s) }
    static func error(_ s: String) { info("error: " + s) }
}

/// A failure that has already been explained; exits with the given code.
struct Failure: Error, CustomStringConvertible {
    let message: String
    let code: Int32
    var description: String { message }
}

func fail(_ message: String, code: Int32 = 2) -> ExitCode {
    Log.error(message)
    return ExitCode(code)
}

/// Writes data to `path` atomically, or to stdout when path is nil or "-".
func emit(_ text: String, to path: String?, inputs: [String] = []) throws {
    guard let path, path != "-" else {
        FileHandle.standardOutput.write(Data(text.utf8))
        return
    }
    let target = URL(fileURLWithPath: path).standardizedFileURL.path
    if inputs.contains(where: { URL(fileURLWithPath: $0).standardizedFileURL.path == target }) {
        throw fail("refusing to overwrite the input \(path)")
    }
    try writeFileAtomically(Data(text.utf8), to: path)
}
