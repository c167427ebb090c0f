import FKPEngine
import FKPTestSupport
import Foundation
import XCTest

/// Embedding, the program cache, build errors, device listing and the no-platform path.
final class OpenCLInfrastructureTests: XCTestCase {
    /// EmbeddedKernels.swift must be regenerated (scripts/embed_kernels.py) whenever kernels/ changes.
    func testEmbeddedKernelsMatchKernelsFolder() throws {
        let dir = repoRoot.appendingPathComponent("kernels")
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".cl") }.sorted()
        XCTAssertFalse(files.isEmpty, "no kernels in \(dir.path)")
        XCTAssertEqual(files, OpenCLKernels.embedded.keys.sorted(),
                       "Sources/FKPEngine/OpenCL/EmbeddedKernels.swift is out of date: run scripts/embed_kernels.py")
        for f in files {
            var text = try String(contentsOf: dir.appendingPathComponent(f), encoding: .utf8)
            if text.hasSuffix("\n") { text.removeLast() }
            XCTAssertEqual(OpenCLKernels.embedded[f], text,
                           "\(f) differs from its embedded copy: run scripts/embed_kernels.py")
        }
    }

    func testDevicesListsPoCLOrNothing() throws {
        try CL.requirePlatform()
        let devices = OpenCLRuntime.devices()
        for d in devices {
            print("device \(d.index): \(d.platform) / \(d.name) [\(d.type)] \(d.computeUnits) CU, "
                  + "\(d.globalMemory >> 20) MiB, \(d.version), driver \(d.driver), usable \(d.usable) \(d.note)")
        }
        XCTAssertEqual(devices.map(\.index), Array(devices.indices))
        XCTAssertTrue(devices.contains { $0.usable })
        XCTAssertThrowsError(try OpenCLBackend(deviceIndex: devices.count)) { e in
            XCTAssertTrue("\(e)".contains("CL_DEVICE_NOT_FOUND"), "\(e)")
        }
    }

    func testProgramCacheHitAndCorruptEntryRebuilt() throws {
        try CL.requirePlatform()
        let dir = NSTemporaryDirectory() + "/fkp-opencl-cache-test-\(getpid())"
        try? FileManager.default.removeItem(atPath: dir)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let options = OpenCLBackendOptions(cacheDirectory: dir)
        func build() throws -> (OpenCLBackend, Double) {
            let t0 = Date()
            let b = try OpenCLBackend(options: options)
            return (b, Date().timeIntervalSince(t0))
        }
        let (cold, coldTime) = try build()
        XCTAssertTrue(cold.programBuilds.allSatisfy { $0.origin == .source }, "\(cold.programBuilds)")
        let entries = try FileManager.default.contentsOfDirectory(atPath: dir).sorted()
        XCTAssertEqual(entries.filter { $0.hasSuffix(".bin") }.count, cold.programBuilds.count, "\(entries)")
        XCTAssertFalse(entries.contains { $0.contains(".tmp") }, "temporary files left: \(entries)")

        let (warm, warmTime) = try build()
        XCTAssertTrue(warm.programBuilds.allSatisfy { $0.origin == .cache }, "\(warm.programBuilds)")
        print(String(format: "program cache: cold construction %.3f s, warm %.3f s (PoCL's own cache may make 'cold' fast)",
                     coldTime, warmTime))

        // Corrupt one entry (flip bytes in the middle), truncate another, and replace a third with a
        // well-formed entry whose binary the driver cannot load: all three are rebuilt, none is fatal.
        let bins = entries.filter { $0.hasSuffix(".bin") }.map { dir + "/" + $0 }
        var data = try Data(contentsOf: URL(fileURLWithPath: bins[0]))
        for i in stride(from: data.count / 2, to: min(data.count, data.count / 2 + 64), by: 1) { data[i] ^= 0x5A }
        try data.write(to: URL(fileURLWithPath: bins[0]))
        try Data(data.prefix(20)).write(to: URL(fileURLWithPath: bins[1]))
        try wellFormedEntry(Array("not a PoCL binary at all".utf8)).write(to: URL(fileURLWithPath: bins[2]))
        let (again, _) = try build()
        let origins = Dictionary(uniqueKeysWithValues: again.programBuilds.map { ($0.file, $0.origin) })
        let rebuilt = again.programBuilds.filter { $0.origin == .rebuilt }.count
        XCTAssertEqual(rebuilt, 3, "\(origins)")
        XCTAssertEqual(again.programBuilds.filter { $0.origin == .cache }.count, again.programBuilds.count - 3)
        // ... and the rebuilt entries are good again.
        let (last, _) = try build()
        XCTAssertTrue(last.programBuilds.allSatisfy { $0.origin == .cache }, "\(last.programBuilds)")
        // The rebuilt backend computes.
        let x = again.upload([1, 2, 3, 4]), y = again.makeBuffer(count: 1)
        again.maxPoolForward(x: x, y: y, shape: PoolShape(batch: 1, height: 2, width: 2, channels: 1))
        XCTAssertEqual(again.values(y), [4])
    }

    /// A cache entry in ProgramCache's format (magic, length, FNV-1a checksum, payload) around `payload`.
    func wellFormedEntry(_ payload: [UInt8]) -> Data {
        var out = Array("FKPCLBIN1\n".utf8)
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in payload { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01b3 }
        for v in [UInt64(payload.count), h] { for i in 0..<8 { out.append(UInt8(truncatingIfNeeded: v >> (8 * UInt64(i)))) } }
        return Data(out + payload)
    }

    func testSyntaxErrorReportsBuildLog() throws {
        try CL.requirePlatform()
        let dir = NSTemporaryDirectory() + "/fkp-opencl-broken-\(getpid())"
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for (name, source) in OpenCLKernels.embedded {
            let text = name == "activation.cl" ? source + "\n__kernel void broken(__global float* x) { x[0] = undeclared_thing + ; }\n" : source
            try text.write(toFile: dir + "/" + name, atomically: true, encoding: .utf8)
        }
        XCTAssertThrowsError(try OpenCLBackend(options: OpenCLBackendOptions(useCache: false, kernelsDirectory: dir))) { e in
            guard let e = e as? OpenCLError else { return XCTFail("not an OpenCLError: \(e)") }
            print("build failure as reported:\n\(e)")
            XCTAssertEqual(e.call, "clBuildProgram")
            XCTAssertEqual(e.codeName, "CL_BUILD_PROGRAM_FAILURE")
            XCTAssertEqual(e.kernel, "activation.cl")
            XCTAssertTrue(e.buildLog?.contains("undeclared_thing") ?? false, "log: \(e.buildLog ?? "nil")")
            XCTAssertTrue(e.description.contains("build log"), e.description)
        }
    }

    func testErrorNames() {
        XCTAssertEqual(openCLErrorName(-5), "CL_OUT_OF_RESOURCES")
        XCTAssertEqual(openCLErrorName(-1001), "CL_PLATFORM_NOT_FOUND_KHR")
        let e = OpenCLError(call: "clEnqueueNDRangeKernel", code: -54, kernel: "gemm_tiled")
        XCTAssertEqual(e.description, "OpenCL: clEnqueueNDRangeKernel failed with CL_INVALID_WORK_GROUP_SIZE (-54) [gemm_tiled]")
    }

    /// Re-runs this test bundle's `testNoPlatformInChild` in a child process whose ICD loader sees an
    /// empty vendor folder (OCL_ICD_VENDORS): the device list is empty and the backend throws cleanly.
    func testNoPlatformFailsCleanly() throws {
        let empty = NSTemporaryDirectory() + "/fkp-opencl-no-vendors-\(getpid())"
        try FileManager.default.createDirectory(atPath: empty, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: empty) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: CommandLine.arguments[0])
        process.arguments = ["FKPOpenCLTests.OpenCLInfrastructureTests/testNoPlatformInChild"]
        var env = ProcessInfo.processInfo.environment
        env["OCL_ICD_VENDORS"] = empty
        env["OCL_ICD_FILENAMES"] = nil
        env["FKP_OPENCL_CHILD_NO_PLATFORM"] = "1"
        process.environment = env
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0, "child failed:\n\(output)")
        XCTAssertTrue(output.contains("no-platform child: ok"), "child output:\n\(output)")
    }

    /// Runs only inside the child of testNoPlatformFailsCleanly; elsewhere it is reported as skipped, not
    /// as a pass it did not earn.
    func testNoPlatformInChild() throws {
        guard ProcessInfo.processInfo.environment["FKP_OPENCL_CHILD_NO_PLATFORM"] == "1" else {
            throw XCTSkip("runs in testNoPlatformFailsCleanly's child process")
        }
        XCTAssertEqual(OpenCLRuntime.devices(), [])
        XCTAssertThrowsError(try OpenCLBackend()) { e in
            print("no-platform error: \(e)")
            XCTAssertEqual((e as? OpenCLError)?.codeName, "CL_PLATFORM_NOT_FOUND_KHR")
        }
        print("no-platform child: ok")
    }
}
