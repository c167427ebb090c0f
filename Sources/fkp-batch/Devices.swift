import ArgumentParser
import FKPDetect
import FKPEngine
import FKPExport
import FKPTensor
import Foundation

struct Devices: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List the devices fkp-batch can run on.",
        discussion: """
        Every OpenCL platform and device (through the system's ICD loader), with its type, compute units, memory, OpenCL version and whether fkp-batch can use it, plus the native CPU engine and the kernel set it runs (avx512, avx2+fma or sse2, chosen by the CPU's features; FKP_KERNELS forces a supported one) and the face detector's set that follows it (avx2 or sse2). Use the index with --device opencl:N. Output on stdout: a table, or JSON lines with --format json.
        """)

    @Option(help: "Output.") var format: ReportFormat = .table

    func run() throws {
        let devices = OpenCLRuntime.devices()
        let cores = ProcessInfo.processInfo.activeProcessorCount
        let kernels = CPUKernels.best.name
        let detector = DetectKernels.best.name
        if format == .json {
            print(KeypointWriter.jsonLine(["device": "cpu", "name": "native CPU engine", "type": "CPU", "compute_units": cores,
                                           "kernels": kernels, "detector_kernels": detector, "usable": true]))
            for d in devices {
                print(KeypointWriter.jsonLine(["device": "opencl:\(d.index)", "platform": d.platform, "name": d.name, "type": d.type,
                                "compute_units": d.computeUnits, "global_memory_bytes": d.globalMemory,
                                "opencl_version": d.version, "driver": d.driver, "usable": d.usable, "note": d.note]))
            }
            return
        }
        let rows: [[String]] = [["device", "platform", "name", "type", "CUs", "memory", "OpenCL", "usable"],
                                ["cpu", "-", "native CPU engine (\(kernels) kernels, detector \(detector))", "CPU", "\(cores)", "-", "-", "yes"]]
            + devices.map { d in
                ["opencl:\(d.index)", d.platform, d.name, d.type, "\(d.computeUnits)", formatBytes(d.globalMemory), d.version,
                 d.usable ? "yes" : "no: \(d.note)"]
            }
        printTable(rows)
        if devices.isEmpty {
            Log.info(DeviceChoice.noPlatformHint)
        }
    }
}

func formatBytes(_ n: Int) -> String {
    n >= 1 << 30 ? String(format: "%.1f GiB", Double(n) / Double(1 << 30)) : String(format: "%.0f MiB", Double(n) / Double(1 << 20))
}

/// Left-aligned columns separated by two spaces.
func printTable(_ rows: [[String]]) {
    let widths = (0..<(rows.first?.count ?? 0)).map { c in rows.map { $0[c].count }.max() ?? 0 }
    for row in rows {
        print(row.enumerated().map { c, cell in c == row.count - 1 ? cell : cell.padding(toLength: widths[c], withPad: " ", startingAt: 0) }
            .joined(separator: "  "))
    }
}
