import COpenCL
import FKPTensor
import Foundation

/// Where the nets run: `auto`, `cpu`, `opencl` (the first GPU, else the first device) or `opencl:N`.
public enum DeviceChoice: Equatable, Sendable, CustomStringConvertible {
    case auto, cpu, opencl(Int?)

    public init?(_ text: String) {
        switch text {
        case "auto": self = .auto
        case "cpu": self = .cpu
        case "opencl": self = .opencl(nil)
        default:
            guard text.hasPrefix("opencl:"), let n = Int(text.dropFirst(7)), n >= 0 else { return nil }
            self = .opencl(n)
        }
    }

    public var description: String {
        switch self {
        case .auto: return "auto"
        case .cpu: return "cpu"
        case .opencl(let n): return n.map { "opencl:\($0)" } ?? "opencl"
        }
    }

    /// The backend. An explicit OpenCL device that fails is an error; auto falls back to the CPU engine,
    /// with a one-line warning when a GPU was there but unusable.
    public func makeBackend(threads: Int?) throws -> Backend {
        switch self {
        case .cpu:
            return CPUBackend(threads: threads)
        case .opencl(let index):
            do { return try OpenCLBackend(deviceIndex: index) } catch {
                throw DeviceError(description: "--device \(self): \(error)\(Self.loaderNote)")
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

    /// The CPU engine and every usable OpenCL device (bench --all-devices), each built once.
    public static func allBackends(threads: Int?) -> [Backend] {
        var backends: [Backend] = [CPUBackend(threads: threads)]
        for d in OpenCLRuntime.devices() where d.usable {
            do {
                let t0 = Date()
                let b = try OpenCLBackend(deviceIndex: d.index)
                let cold = Date().timeIntervalSince(t0)
                let t1 = Date()
                _ = try OpenCLBackend(deviceIndex: d.index)  // the same kernels again: from the program cache
                Log.info(String(format: "opencl:%d %@: kernels ready in %.2f s (%@), %.3f s from the program cache", d.index, d.name, cold,
                                b.programBuilds.map { "\($0.origin)" }.joined(separator: ","), Date().timeIntervalSince(t1)))
                backends.append(b)
            } catch { Log.warn("opencl:\(d.index) \(d.name) unusable: \(firstLine(error))") }
        }
        return backends
    }

    /// Why OpenCL is missing altogether, when the ICD loader could not be opened; "" otherwise.
    public static var loaderNote: String {
        fkp_opencl_loader_available() == 0 ? " (\(String(cString: fkp_opencl_loader_error())))" : ""
    }

    /// A line for `devices` when no platform is found.
    public static var noPlatformHint: String {
        fkp_opencl_loader_available() == 0 ? "no OpenCL: \(String(cString: fkp_opencl_loader_error())) (package ocl-icd-libopencl1)"
                                           : "no OpenCL platform found (is an ICD such as pocl-opencl-icd installed?)"
    }
}

public struct DeviceError: Error, CustomStringConvertible {
    public let description: String
}

/// The device actually used, for reports.
public func deviceName(_ backend: Backend) -> String { backend is OpenCLBackend ? "opencl" : "cpu" }
