import ArgumentParser
import FKPAnnotate
import FKPEngine
import FKPExport
import FKPInference
import FKPTensor
import Foundation

// Options as types: the parser rejects a bad value with a usage error (exit 2) before any work.
extension DeviceChoice: ExpressibleByArgument {
    public init?(argument: String) { self.init(argument) }
    public var defaultValueDescription: String { description }
}

extension RecordFormat: ExpressibleByArgument {}

extension Shard: ExpressibleByArgument {
    public init?(argument: String) { self.init(argument) }
}

/// Output of the report commands (evaluate, devices, bench).
enum ReportFormat: String, ExpressibleByArgument, CaseIterable {
    case table, json
}

/// Training augmentation.
enum Augment: String, ExpressibleByArgument, CaseIterable {
    case flip, none
}

enum Warp: String, ExpressibleByArgument, CaseIterable {
    case mixed, narrow
}

/// Options shared by every command that runs a net.
struct EngineOptions: ParsableArguments {
    @Option(help: ArgumentHelp(
        "Where to run: auto, cpu, opencl or opencl:N (see fkp-batch devices; env FKP_DEVICE). auto takes an OpenCL GPU if there is one, else the native CPU engine.",
        valueName: "device"))
    var device: DeviceChoice = DeviceChoice(ProcessInfo.processInfo.environment["FKP_DEVICE"] ?? "auto") ?? .auto

    @Option(help: "CPU threads (default: every core; env FKP_THREADS). Same seed and threads give the same losses.")
    var threads: Int?

    func validate() throws {
        if let env = ProcessInfo.processInfo.environment["FKP_DEVICE"], DeviceChoice(env) == nil {
            throw ValidationError("FKP_DEVICE must be auto, cpu, opencl or opencl:N, not '\(env)'")
        }
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
    }

    /// The backend; an explicit device that fails is a set-up error, auto falls back to the CPU engine.
    func makeBackend() throws -> Backend {
        do { return try device.makeBackend(threads: threads) } catch { throw FKPError.setup("\(error)") }
    }
}

/// --model for the commands that run one: the bundled model when not given.
struct ModelOption: ParsableArguments {
    @Option(help: "Trained model (safetensors written by fkp-batch train; default: samples/model.safetensors beside the build, or env FKP_MODEL).")
    var model: String?

    func load(_ engine: EngineOptions) throws -> KeypointModel {
        try ModelFile.loadModel(path: model, backend: try engine.makeBackend())
    }

    /// The model file actually used, for reports and the output guard.
    var path: String { model ?? ModelFile.defaultPath }
}
