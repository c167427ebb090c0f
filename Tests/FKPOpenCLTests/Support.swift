import FKPEngine
import FKPTensor
import FKPTestSupport
import Foundation
import XCTest

/// Shared set-up of the OpenCL tests: PoCL's kernel cache and fkp-batch's program cache in temporary
/// folders, one backend per GEMM variant built once per process, and small numeric helpers.
enum CL {
    /// Points POCL_CACHE_DIR (unless already set) and FKP_KERNEL_CACHE at temporary folders. Must run
    /// before the first OpenCL call of the process (PoCL reads its settings when the ICD loads it).
    static let environment: Void = {
        let tmp = NSTemporaryDirectory()
        if ProcessInfo.processInfo.environment["POCL_CACHE_DIR"] == nil {
            let dir = tmp + "/fkp-opencl-tests-pocl-\(getuid())"
            try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            setenv("POCL_CACHE_DIR", dir, 1)
        }
        try? FileManager.default.createDirectory(atPath: programCache, withIntermediateDirectories: true)
        setenv("FKP_KERNEL_CACHE", programCache, 1)
    }()

    /// This process's program cache (each run starts cold, so the cache is exercised every run).
    static let programCache = NSTemporaryDirectory() + "/fkp-opencl-tests-\(getpid())-kernels"

    /// Whether any OpenCL platform exists; tests that need a device skip only when none does.
    static var hasPlatform: Bool {
        _ = environment
        return !OpenCLRuntime.devices().isEmpty
    }

    static func requirePlatform() throws {
        _ = environment
        if !hasPlatform {
            print("SKIP: no OpenCL platform (no ICD vendor registered); install pocl-opencl-icd to run this test")
            throw XCTSkip("no OpenCL platform")
        }
    }

    nonisolated(unsafe) private static var backends: [OpenCLGemmVariant: OpenCLBackend] = [:]

    /// The first CPU-or-GPU device with the given GEMM variant, built once per process.
    static func backend(_ variant: OpenCLGemmVariant = .registerBlocked) throws -> OpenCLBackend {
        try requirePlatform()
        if let b = backends[variant] { return b }
        let b = try OpenCLBackend(options: OpenCLBackendOptions(gemm: variant))
        print("OpenCL backend: \(b.deviceInfo.name) [\(b.deviceInfo.type)], GEMM \(b.gemmVariant); programs: "
              + b.programBuilds.map { "\($0.file) \($0.origin.rawValue) \(String(format: "%.2f", $0.seconds))s" }
              .joined(separator: ", "))
        backends[variant] = b
        return b
    }

    static func random(_ count: Int, _ rng: inout Xoshiro, scale: Float = 1) -> [Float] {
        Seeded.values(count, &rng, scale: scale)
    }

    /// max |a - b| / max |b|, NaN-aware (FKPTestSupport's metric).
    static func error(_ a: [Float], _ b: [Float]) -> Float { Metric.normalisedError(a, b) }
}

extension Backend {
    func upload(_ values: [Float]) -> DeviceBuffer {
        let b = makeBuffer(count: values.count)
        values.withUnsafeBufferPointer { write($0, to: b, offset: 0) }
        return b
    }

    /// An output buffer filled with NaN: an element an op leaves unwritten fails any comparison.
    func unwritten(_ count: Int) -> DeviceBuffer { upload([Float](repeating: .nan, count: count)) }

    func values(_ buffer: DeviceBuffer) -> [Float] {
        var out = [Float](repeating: 0, count: buffer.count)
        out.withUnsafeMutableBufferPointer { read(buffer, offset: 0, into: $0) }
        return out
    }
}
