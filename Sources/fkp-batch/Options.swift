import ArgumentParser
import FKPEngine
import FKPNets
import Foundation

/// Options shared by every command that runs a net.
struct EngineOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Where to run: auto or cpu (env FKP_DEVICE).", valueName: "device"))
    var device: String = ProcessInfo.processInfo.environment["FKP_DEVICE"] ?? "auto"

    @Option(help: "CPU threads (default: every core; env FKP_THREADS). Same seed and threads give the same losses.")
    var threads: Int?

    func validate() throws {
        guard ["auto", "cpu"].contains(device) else {
            throw ValidationError("--device must be auto or cpu, not '\(device)'")
        }
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
    }

    func makeBackend() throws -> Backend { CPUBackend(threads: threads) }
}

extension EngineOptions {
    /// The device actually used, for reports ("cpu" until the OpenCL backend lands).
    var deviceName: String { "cpu" }
}
