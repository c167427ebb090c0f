import ArgumentParser
import COpenCL
import FKPEngine
import FKPNets
import Foundation

/// Where the nets run: `auto`, `cpu`, `opencl` (the first GPU, else the first device) or `opencl:N`.
enum DeviceChoice: Equatable {
    case auto, cpu, opencl(Int?)

    init?(_ text: String) {
        switch text {
        case "auto": self = .auto
        case "cpu": self = .cpu
        case "opencl": self = .opencl(nil)
        default:
            guard text.hasPrefix("opencl:"), let n = Int(text.dropFirst(7)), n >= 0 else { return nil }
            self = .opencl(n)
        }
    }
}

/// Options shared by every command that runs a net.
struct EngineOptions: ParsableArguments {
    @Option(help: ArgumentHelp(
        "Where to run: auto, cpu, opencl or opencl:N (see fkp-batch devices; env FKP_DEVICE). auto takes an OpenCL GPU if there is one, else the native CPU engine.",
        valueName: "device"))
    var device: String = ProcessInfo.processInfo.environment["FKP_DEVICE"] ?? "auto"

    @Option(help: "CPU threads (default: every core; env FKP_THREADS). Same seed and threads give the same losses.")
    var threads: Int?

    func validate() throws {
        guard DeviceChoice(device) != nil else {
            throw ValidationError("--device must be auto, cpu, opencl or opencl:N, not '\(device)'")
        }
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
    }

    /// The backend: an explicit OpenCL device that fails is an error (exit 2); auto falls back to the
    /// CPU engine with a one-line warning.
    func makeBackend() throws -> Backend {
        switch DeviceChoice(device)! {
        case .cpu:
            return CPUBackend(threads: threads)
        case .opencl(let index):
            do { return try OpenCLBackend(deviceIndex: index) } catch {
                let loader = fkp_opencl_loader_available() == 0 ? " (\(String(cString: fkp_opencl_loader_error())))" : ""
                throw fail("--device \(device): \(error)\(loader)")
            }
        case .auto:
            // A GPU is worth it; on a CPU-only machine the native engine beats PoCL on the same cores
            // (net2: 4.3 vs 7.9 s per epoch, see the README) and starts without compiling kernels.
            guard let gpu = OpenCLRuntime.devices().first(where: { $0.type == "GPU" && $0.usable }) else {
                return CPUBackend(threads: threads)
            }
            do { return try OpenCLBackend(deviceIndex: gpu.index) } catch {
                Log.warn("OpenCL GPU \(gpu.name) unusable (\(firstLine(error))); using the CPU engine")
                return CPUBackend(threads: threads)
            }
        }
    }
}

func firstLine(_ error: Error) -> String { "\(error)".split(separator: "\n").first.map(String.init) ?? "\(error)" }

/// The device actually used, for reports.
func deviceName(_ backend: Backend) -> String { backend is OpenCLBackend ? "opencl" : "cpu" }
