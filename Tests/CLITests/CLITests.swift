import FKPTestSupport
import Foundation
import XCTest


/// Runs the built fkp-batch binary as a user or a script would.
struct Run {
    let status: Int32
    let stdout: String
    let stderr: String
}

/// The fkp-batch built beside the test bundle (.build/<config>/).
let fkpBatchBinary: URL = {
    var candidates: [URL] = []
    if let exe = Bundle.main.executableURL { candidates.append(exe.deletingLastPathComponent()) }
    candidates.append(Bundle(for: CLITests.self).bundleURL.deletingLastPathComponent())
    candidates += ["release", "debug"].map { repoRoot.appendingPathComponent(".build/\($0)") }
    for dir in candidates {
        let url = dir.appendingPathComponent("fkp-batch")
        if FileManager.default.isExecutableFile(atPath: url.path) { return url }
    }
    return repoRoot.appendingPathComponent(".build/release/fkp-batch")
}()

func fkpBatch(_ args: [String], stdin: String? = nil, environment: [String: String] = [:]) throws -> Run {
    let p = Process()
    p.executableURL = fkpBatchBinary
    p.arguments = args
    p.currentDirectoryURL = repoRoot
    var env = ProcessInfo.processInfo.environment
    env.removeValue(forKey: "FKP_DEVICE")
    for (k, v) in environment { env[k] = v }
    p.environment = env
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    let input = Pipe()
    p.standardInput = stdin == nil ? FileHandle.nullDevice : input
    try p.run()
    if let stdin {
        input.fileHandleForWriting.write(Data(stdin.utf8))
        try input.fileHandleForWriting.close()
    }
    // Read both pipes concurrently so neither fills up and blocks the child.
    final class Box: @unchecked Sendable { var data = Data() }
    let errBox = Box()
    let group = DispatchGroup()
    group.enter()
    DispatchQueue.global().async { errBox.data = err.fileHandleForReading.readDataToEndOfFile(); group.leave() }
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    group.wait()
    let errData = errBox.data
    p.waitUntilExit()
    return Run(status: p.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
               stderr: String(decoding: errData, as: UTF8.self))
}

final class CLITests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("fkp-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func testHelpTeaches() throws {
        let r = try fkpBatch(["--help"])
        XCTAssertEqual(r.status, 0)
        for word in ["train", "predict", "evaluate", "bench", "Exit codes"] { XCTAssertTrue(r.stdout.contains(word), word) }
        let t = try fkpBatch(["train", "--help"])
        for word in ["--model", "--epochs", "--lr", "--momentum", "--seed", "--out", "Examples", "history.csv"] {
            XCTAssertTrue(t.stdout.contains(word), "train --help lacks \(word)")
        }
    }

    func testUsageErrorsExitWith2() throws {
        for args in [["train", "--model", "net9"], ["train", "--epochs", "0"], ["train", "--device", "tpu"],
                     ["evaluate", "--model", "x"], ["frobnicate"]] {
            let r = try fkpBatch(args)
            XCTAssertEqual(r.status, 2, "\(args): \(r.stderr)")
            XCTAssertTrue(r.stdout.isEmpty, "usage errors go to stderr")
        }
    }

    /// --detector picks the detectors; a wrong name or the rotation sweep without the frontal cascade is a
    /// usage error, and with the HOG detector both bundled photos get one face.
    func testDetectorChoice() throws {
        for args in [["annotate", "samples/photos", "--detector", "dlib"],
                     ["annotate", "samples/photos", "--detector", "hog", "--rotations", "10"],
                     ["annotate", "samples/photos", "--hog-threshold=-5"]] {
            let r = try fkpBatch(args)
            XCTAssertEqual(r.status, 2, "\(args): \(r.stderr)")
            XCTAssertTrue(r.stderr.contains("--detector") || r.stderr.contains("--rotations") || r.stderr.contains("--hog-threshold"), r.stderr)
        }
        let hog = try fkpBatch(["annotate", "samples/photos", "--detector", "hog"])
        XCTAssertEqual(hog.status, 0, hog.stderr)
        let rows = hog.stdout.split(separator: "\n").dropFirst().map { $0.split(separator: ",", omittingEmptySubsequences: false) }
        XCTAssertEqual(rows.count, 2, hog.stdout)
        XCTAssertEqual(rows.map { $0[1] }, ["1", "1"], "one face on each photo")
        let help = try fkpBatch(["annotate", "--help"])
        XCTAssertTrue(help.stdout.contains("--detector") && help.stdout.contains("hog+cascade"), "annotate --help lacks --detector")
        // A model elsewhere (FKP_MODEL) without the verifier and the HOG filters beside it: the bundled ones.
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("fkp-model-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        let model = dir.appendingPathComponent("model.safetensors").path
        try FileManager.default.createSymbolicLink(atPath: model, withDestinationPath: repoPath("samples/model.safetensors"))
        let elsewhere = try fkpBatch(["annotate", "samples/photos"], environment: ["FKP_MODEL": model])
        XCTAssertEqual(elsewhere.status, 0, elsewhere.stderr)
        XCTAssertEqual(elsewhere.stdout, hog.stdout)
    }

    /// Every command that runs a model falls back to the bundled one, as annotate does.
    func testPredictAndEvaluateWithoutModelUseTheBundledOne() throws {
        let pred = try fkpBatch(["predict", "samples/test-sample.csv"])
        XCTAssertEqual(pred.status, 0, pred.stderr)
        XCTAssertEqual(pred.stdout.split(separator: "\n").count, 11)
        let eval = try fkpBatch(["evaluate", "samples/training-sample.csv", "--format", "json"])
        XCTAssertEqual(eval.status, 0, eval.stderr)
        XCTAssertTrue(eval.stdout.contains("\"rmse_px\""), eval.stdout)
    }

    /// An error is logged once, with its text: no bare "error:" line, exit 2 for set-up errors, and
    /// -o "" is refused before any work.
    func testErrorsAreLoggedOnceWithText() throws {
        for args in [["predict", "--model", "missing.safetensors", "samples/test-sample.csv"],
                     ["predict", "samples/test-sample.csv", "-o", ""],
                     ["annotate", "samples/photos", "-o", ""],
                     ["evaluate", "samples/no-such.csv"]] {
            let r = try fkpBatch(args)
            XCTAssertEqual(r.status, 2, "\(args): \(r.stderr)")
            let errors = r.stderr.split(separator: "\n").filter { $0.hasPrefix("error:") }
            XCTAssertEqual(errors.count, 1, "\(args): \(r.stderr)")
            XCTAssertFalse(errors.contains { $0.trimmingCharacters(in: .whitespaces) == "error:" }, r.stderr)
        }
    }

    func testTrainEvaluatePredictOnTheSamples() throws {
        let model = dir.appendingPathComponent("m.safetensors").path
        let train = try fkpBatch(["train", "--model", "net1", "--data", "samples/training-sample.csv",
                                  "--epochs", "3", "--batch-size", "32", "--out", model])
        XCTAssertEqual(train.status, 0, train.stderr)
        XCTAssertTrue(train.stderr.contains("epoch    train loss    valid loss    train/val    dur"), train.stderr)
        XCTAssertTrue(train.stdout.hasPrefix("model=net1 epochs=3 "), train.stdout)
        XCTAssertTrue(train.stdout.contains("valid_rmse_px="))
        let history = try String(contentsOfFile: dir.appendingPathComponent("m.history.csv").path, encoding: .utf8)
        XCTAssertEqual(history.split(separator: "\n").count, 4)
        XCTAssertTrue(history.hasPrefix("epoch,train_loss,valid_loss,train_valid_ratio,seconds,lr,momentum\n"))

        let eval = try fkpBatch(["evaluate", "--model", model, "samples/training-sample.csv", "--format", "json"])
        XCTAssertEqual(eval.status, 0, eval.stderr)
        let json = try JSONSerialization.jsonObject(with: Data(eval.stdout.utf8)) as! [String: Any]
        XCTAssertEqual(json["faces"] as? Int, 200)
        XCTAssertEqual((json["per_keypoint_rmse_px"] as? [String: Double])?.count, 15)
        XCTAssertEqual((json["per_keypoint_mean_error_px"] as? [String: [Double]])?["nose_tip"]?.count, 2)
        XCTAssertLessThan(json["rmse_px"] as! Double, 20)

        let table = try fkpBatch(["evaluate", "--model", model, "samples/training-sample.csv"])
        XCTAssertTrue(table.stdout.contains("nose_tip"), table.stdout)

        let sub = dir.appendingPathComponent("submission.csv").path
        let pred = try fkpBatch(["predict", "--model", model, "samples/test-sample.csv",
                                 "--lookup", "samples/IdLookupTable-sample.csv", "-o", sub])
        XCTAssertEqual(pred.status, 0, pred.stderr)
        let lines = try String(contentsOfFile: sub, encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(lines.first, "RowId,Location")
        XCTAssertEqual(lines.count, 213)
        XCTAssertTrue(lines.dropFirst().allSatisfy { line in
            let v = Double(line.split(separator: ",")[1])!
            return v >= 0 && v <= 96
        })

        // cropped face PNGs: one row each, named by file
        let faces = (1...6).map { "samples/faces/face_\($0).png" }
        let png = try fkpBatch(["predict", "--model", model] + faces)
        XCTAssertEqual(png.status, 0, png.stderr)
        let pngRows = png.stdout.split(separator: "\n")
        XCTAssertTrue(pngRows[0].hasPrefix("image,left_eye_center_x"), png.stdout)
        XCTAssertEqual(pngRows.dropFirst().map { String($0.split(separator: ",")[0]) }, faces)

        let plain = try fkpBatch(["predict", "--model", model, "samples/test-sample.csv"])
        XCTAssertEqual(plain.status, 0, plain.stderr)
        XCTAssertTrue(plain.stdout.hasPrefix("ImageId,left_eye_center_x,"), plain.stdout)
        XCTAssertEqual(plain.stdout.split(separator: "\n").count, 11)

        // An input is never overwritten.
        let clobber = try fkpBatch(["predict", "--model", model, "samples/test-sample.csv", "-o", "samples/test-sample.csv"])
        XCTAssertEqual(clobber.status, 2)
        XCTAssertTrue(clobber.stderr.contains("refusing to overwrite"), clobber.stderr)
    }

    func testBadRowsFailOrAreSkipped() throws {
        let good = try String(contentsOfFile: repoRoot.appendingPathComponent("samples/training-sample.csv").path, encoding: .utf8)
        var lines = good.split(separator: "\n", omittingEmptySubsequences: false).prefix(40).map(String.init)
        lines[5] = lines[5].replacingOccurrences(of: " 1", with: " 999")
        let csv = dir.appendingPathComponent("bad.csv").path
        try lines.joined(separator: "\n").write(toFile: csv, atomically: true, encoding: .utf8)
        let model = dir.appendingPathComponent("b.safetensors").path
        let strict = try fkpBatch(["train", "--data", csv, "--epochs", "1", "--out", model])
        XCTAssertEqual(strict.status, 2)
        XCTAssertTrue(strict.stderr.contains("bad.csv:6: column Image"), strict.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: model))
        let lenient = try fkpBatch(["train", "--data", csv, "--epochs", "1", "--out", model, "--skip-bad-rows"])
        XCTAssertEqual(lenient.status, 0, lenient.stderr)
        XCTAssertTrue(lenient.stderr.contains("warning: skipped"), lenient.stderr)
    }

    func testPredictReportsMissingFilesAndGoesOn() throws {
        let model = dir.appendingPathComponent("m.safetensors").path
        XCTAssertEqual(try fkpBatch(["train", "--data", "samples/training-sample.csv", "--epochs", "1", "--out", model]).status, 0)
        let r = try fkpBatch(["predict", "--model", model, "no-such.csv", "samples/test-sample.csv"])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("no-such.csv"), r.stderr)
        XCTAssertEqual(r.stdout.split(separator: "\n").count, 11, "the good file is still predicted")
    }

    func testEveryPresetTrainsAnEpoch() throws {
        for model in ["net1", "net2", "net3", "net4", "net5", "net6", "net7"] {
            let out = dir.appendingPathComponent("\(model).safetensors").path
            let r = try fkpBatch(["train", "--model", model, "--epochs", "1", "--batch-size", "64", "--out", out])
            XCTAssertEqual(r.status, 0, "\(model): \(r.stderr)")
            XCTAssertTrue(r.stdout.hasPrefix("model=\(model) epochs=1 "), r.stdout)
            // the weights load back for prediction
            let p = try fkpBatch(["predict", "--model", out, "samples/test-sample.csv"])
            XCTAssertEqual(p.status, 0, "\(model): \(p.stderr)")
        }
    }

    func testDivergenceKeepsTheLastGoodCheckpoint() throws {
        let out = dir.appendingPathComponent("d.safetensors").path
        XCTAssertEqual(try fkpBatch(["train", "--epochs", "2", "--out", out]).status, 0)
        let before = try Data(contentsOf: URL(fileURLWithPath: out))
        let r = try fkpBatch(["train", "--resume", out, "--epochs", "4", "--lr", "1e7"])
        XCTAssertEqual(r.status, 1, r.stderr)
        XCTAssertTrue(r.stderr.contains("diverged"), r.stderr)
        XCTAssertTrue(r.stderr.contains("keeps the last good checkpoint"), r.stderr)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: out)), before)
    }

    func testCtrlCSavesACheckpointThatResumes() throws {
        let out = dir.appendingPathComponent("i.safetensors").path
        let p = Process()
        p.executableURL = fkpBatchBinary
        p.arguments = ["train", "--model", "net2", "--epochs", "50", "--batch-size", "16", "--out", out]
        p.currentDirectoryURL = repoRoot
        let err = Pipe()
        p.standardError = err
        p.standardOutput = Pipe()
        try p.run()
        // wait for the first epoch's line, then interrupt
        var seen = ""
        while !seen.contains("      1  ") {
            let chunk = err.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            seen += String(decoding: chunk, as: UTF8.self)
        }
        kill(p.processIdentifier, SIGINT)
        let rest = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        seen += String(decoding: rest, as: UTF8.self)
        XCTAssertEqual(p.terminationStatus, 130, seen)
        XCTAssertTrue(seen.contains("fkp-batch train --resume"), seen)
        let resumed = try fkpBatch(["train", "--resume", out, "--epochs", "3"])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertTrue(resumed.stderr.contains("resuming"), resumed.stderr)
        XCTAssertTrue(resumed.stdout.hasPrefix("model=net2 epochs=3 "), resumed.stdout)
        let history = try String(contentsOfFile: dir.appendingPathComponent("i.history.csv").path, encoding: .utf8)
        XCTAssertEqual(history.split(separator: "\n").count, 4, history)
    }
}

final class PlotTests: XCTestCase {
    func testPlotDrawsHistoriesToPNG() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("plot-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let a = dir.appendingPathComponent("a.history.csv").path, b = dir.appendingPathComponent("b.history.csv").path
        try "epoch,train_loss,valid_loss\n1,0.1,0.05\n2,0.02,0.03\n3,0.01,0.02\n".write(toFile: a, atomically: true, encoding: .utf8)
        try "epoch,train_loss,valid_loss,train_valid_ratio\n1,0.2,0.1,2\n2,0.05,0.04,1.2\n".write(toFile: b, atomically: true, encoding: .utf8)
        let png = dir.appendingPathComponent("l.png").path
        let r = try fkpBatch(["plot", a, b, "-o", png])
        XCTAssertEqual(r.status, 0, r.stderr)
        let data = try Data(contentsOf: URL(fileURLWithPath: png))
        XCTAssertEqual(Array(data.prefix(4)), [0x89, 0x50, 0x4E, 0x47])
        // a broken history names its file and line
        try "epoch,train_loss,valid_loss\n1,x,0.1\n".write(toFile: b, atomically: true, encoding: .utf8)
        let bad = try fkpBatch(["plot", a, b, "-o", png])
        XCTAssertEqual(bad.status, 2)
        XCTAssertTrue(bad.stderr.contains("b.history.csv: line 2"), bad.stderr)
    }
}

final class DeviceTests: XCTestCase {
    func testDevicesListsTheCPUEngineAndOpenCL() throws {
        let r = try fkpBatch(["devices", "--format", "json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let lines = r.stdout.split(separator: "\n").map { try! JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
        XCTAssertEqual(lines.first?["device"] as? String, "cpu")
        if lines.count == 1 { print("no OpenCL platform here: only the CPU engine is listed") }
        for d in lines.dropFirst() {
            XCTAssertTrue((d["device"] as! String).hasPrefix("opencl:"))
            XCTAssertNotNil(d["opencl_version"]); XCTAssertNotNil(d["compute_units"])
        }
    }

    /// The CPU engine's kernel set: the best this CPU has, FKP_KERNELS forcing the baseline, and an
    /// unknown name falling back to the best with a warning; the detector's set follows it.
    func testDevicesNamesTheKernelSet() throws {
        func kernels(_ env: [String: String], key: String = "kernels") throws -> (String?, String) {
            let r = try fkpBatch(["devices", "--format", "json"], environment: env)
            XCTAssertEqual(r.status, 0, r.stderr)
            let first = try JSONSerialization.jsonObject(with: Data(r.stdout.split(separator: "\n")[0].utf8)) as! [String: Any]
            return (first[key] as? String, r.stderr)
        }
        let best = try kernels([:]).0
        XCTAssertNotNil(best)
        let detector = try kernels([:], key: "detector_kernels").0
        #if arch(x86_64)
        XCTAssertTrue(["avx512", "avx2+fma", "sse2"].contains(best!), best!)
        XCTAssertEqual(try kernels(["FKP_KERNELS": "sse2"]).0, "sse2")
        XCTAssertEqual(detector, best == "sse2" ? "sse2" : "avx2")
        XCTAssertEqual(try kernels(["FKP_KERNELS": "sse2"], key: "detector_kernels").0, "sse2")
        #endif
        let (fallback, stderr) = try kernels(["FKP_KERNELS": "no-such-set"])
        XCTAssertEqual(fallback, best)
        XCTAssertTrue(stderr.contains("FKP_KERNELS=no-such-set"), stderr)
        let table = try fkpBatch(["devices"])
        XCTAssertTrue(table.stdout.contains("native CPU engine (\(best!) kernels, detector \(detector!))"), table.stdout)
    }

    /// No OpenCL platform (an empty vendors folder for the ICD loader): auto falls back to the CPU engine
    /// silently, an explicit opencl is a clear error with exit code 2 and writes nothing.
    func testFallbackWithoutAPlatform() throws {
        let empty = FileManager.default.temporaryDirectory.appendingPathComponent("no-icd-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: empty, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: empty) }
        let env = ["OCL_ICD_VENDORS": empty.path, "OPENCL_VENDOR_PATH": empty.path]
        let out = empty.appendingPathComponent("m.safetensors").path
        let auto = try fkpBatch(["train", "--epochs", "1", "--out", out, "--device", "auto"], environment: env)
        XCTAssertEqual(auto.status, 0, auto.stderr)
        XCTAssertTrue(auto.stderr.contains("on cpu"), auto.stderr)
        try FileManager.default.removeItem(atPath: out)
        let explicit = try fkpBatch(["train", "--epochs", "1", "--out", out, "--device", "opencl"], environment: env)
        XCTAssertEqual(explicit.status, 2, explicit.stderr)
        XCTAssertTrue(explicit.stderr.contains("CL_PLATFORM_NOT_FOUND") || explicit.stderr.contains("platform"), explicit.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
        let devices = try fkpBatch(["devices"], environment: env)
        XCTAssertEqual(devices.status, 0)
        XCTAssertTrue(devices.stderr.contains("no OpenCL platform"), devices.stderr)
        // a device index that does not exist
        let bad = try fkpBatch(["predict", "--model", "x.safetensors", "samples/test-sample.csv", "--device", "opencl:99"])
        XCTAssertEqual(bad.status, 2)
    }

    /// No ICD loader at all (simulated by pointing fkp-batch at a library that does not exist): the binary
    /// still starts, auto runs on the CPU engine, an explicit opencl says what is missing.
    func testFallbackWithoutALoader() throws {
        let env = ["FKP_OPENCL_LIBRARY": "/nonexistent/libOpenCL.so.1"]
        let devices = try fkpBatch(["devices"], environment: env)
        XCTAssertEqual(devices.status, 0, devices.stderr)
        XCTAssertTrue(devices.stderr.contains("cannot open the OpenCL ICD loader"), devices.stderr)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("no-loader-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("m.safetensors").path
        XCTAssertEqual(try fkpBatch(["train", "--epochs", "1", "--out", out], environment: env).status, 0)
        let explicit = try fkpBatch(["predict", "--model", out, "samples/test-sample.csv", "--device", "opencl"], environment: env)
        XCTAssertEqual(explicit.status, 2)
        XCTAssertTrue(explicit.stderr.contains("ICD loader"), explicit.stderr)
        XCTAssertTrue(explicit.stdout.isEmpty)
    }

    /// net2 trained on the CPU engine and on OpenCL (PoCL here) from the same seed: the same losses
    /// within 1e-3 relative, printed side by side.
    func testTrainingOnOpenCLMatchesTheCPUEngine() throws {
        guard try fkpBatch(["devices", "--format", "json"]).stdout.contains("opencl:") else {
            print("skipped: no OpenCL platform on this machine")
            throw XCTSkip("no OpenCL platform")
        }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("parity-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        var histories: [[[Double]]] = []
        for device in ["cpu", "opencl"] {
            let out = dir.appendingPathComponent("\(device).safetensors").path
            let r = try fkpBatch(["train", "--model", "net2", "--epochs", "2", "--batch-size", "32", "--out", out, "--device", device])
            XCTAssertEqual(r.status, 0, r.stderr)
            let h = try String(contentsOfFile: dir.appendingPathComponent("\(device).history.csv").path, encoding: .utf8)
            histories.append(h.split(separator: "\n").dropFirst().map { $0.split(separator: ",").dropFirst().prefix(2).map { Double($0)! } })
        }
        for (c, o) in zip(histories[0], histories[1]) {
            print("cpu train \(c[0]) valid \(c[1]) | opencl train \(o[0]) valid \(o[1])")
            XCTAssertEqual(c[0], o[0], accuracy: 1e-3 * c[0])
            XCTAssertEqual(c[1], o[1], accuracy: 1e-3 * c[1])
        }
    }
}

final class AnnotateTests: XCTestCase {
    var dir: URL!
    static var model: String = {
        // A quickly trained model: these tests check the pipeline, not the accuracy.
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("annotate-model-\(getpid()).safetensors").path
        _ = try? fkpBatch(["train", "--model", "net1", "--epochs", "2", "--out", path])
        return path
    }()

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("ann-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func csvRows(_ s: String) -> [[String]] { s.split(separator: "\n").map { $0.split(separator: ",", omittingEmptySubsequences: false).map(String.init) } }

    func testFolderOfPhotos() throws {
        let out = dir.appendingPathComponent("out").path
        let r = try fkpBatch(["annotate", "samples/photos", "-o", out, "--model", Self.model])
        XCTAssertEqual(r.status, 0, r.stderr)
        let rows = csvRows(r.stdout)
        XCTAssertEqual(rows[0].prefix(8), ["file", "faces", "face", "x", "y", "w", "h", "score"])
        XCTAssertEqual(rows[0].count, 39)
        XCTAssertEqual(rows[0].last, "pose", "columns added later come last")
        XCTAssertEqual(rows.count, 3, r.stdout)
        let astronaut = rows.first { $0[0].hasSuffix("skimage_astronaut.png") }!
        XCTAssertEqual(astronaut[1], "1")
        let (x, y, w) = (Double(astronaut[3])!, Double(astronaut[4])!, Double(astronaut[5])!)
        XCTAssertEqual(x, 177, accuracy: 10); XCTAssertEqual(y, 66, accuracy: 10); XCTAssertEqual(w, 95, accuracy: 10)
        // keypoints are in photo pixels, inside the face's neighbourhood
        let points = astronaut[8..<38].map { Double($0)! }
        for k in stride(from: 0, to: 30, by: 2) {
            XCTAssertTrue((x - w / 2)...(x + 1.5 * w) ~= points[k], "x \(points[k])")
            XCTAssertTrue((y - w / 2)...(y + 1.5 * w) ~= points[k + 1], "y \(points[k + 1])")
        }
        XCTAssertEqual(astronaut.last, "frontal")
        // The cameraman, turned about 45 degrees to the image's right: found by the mirrored profile cascade.
        let camera = rows.first { $0[0].hasSuffix("skimage_camera.png") }!
        XCTAssertEqual(camera[1], "1")
        XCTAssertEqual(camera.last, "right")
        XCTAssertFalse(r.stderr.contains("no face found"))
        for name in ["skimage_astronaut.png", "skimage_camera.png"] {
            let png = try Data(contentsOf: URL(fileURLWithPath: out).appendingPathComponent(name))
            XCTAssertEqual(Array(png.prefix(4)), [0x89, 0x50, 0x4E, 0x47])
        }
        let jsonl = try fkpBatch(["annotate", "samples/photos/skimage_astronaut.png", "--format", "jsonl", "--model", Self.model])
        let obj = try JSONSerialization.jsonObject(with: Data(jsonl.stdout.split(separator: "\n")[0].utf8)) as! [String: Any]
        XCTAssertEqual(obj["faces"] as? Int, 1)
        XCTAssertEqual((obj["keypoints"] as? [String: [Double]])?.count, 15)
    }

    func testBadFilesAreReportedAndTheRunGoesOn() throws {
        let input = dir.appendingPathComponent("in")
        try FileManager.default.createDirectory(at: input, withIntermediateDirectories: true)
        let good = try Data(contentsOf: repoRoot.appendingPathComponent("samples/photos/skimage_astronaut.png"))
        try good.write(to: input.appendingPathComponent("a_good.png"))
        try good.prefix(good.count / 3).write(to: input.appendingPathComponent("b_truncated.png"))
        try Data("not an image".utf8).write(to: input.appendingPathComponent("c_text.jpg"))
        try Data().write(to: input.appendingPathComponent("d_empty.png"))
        try good.write(to: input.appendingPathComponent(".hidden.png"))
        let r = try fkpBatch(["annotate", input.path, "-o", dir.appendingPathComponent("out").path, "--model", Self.model])
        XCTAssertEqual(r.status, 1, r.stderr)
        for bad in ["b_truncated.png", "c_text.jpg", "d_empty.png"] { XCTAssertTrue(r.stderr.contains(bad), "\(bad): \(r.stderr)") }
        XCTAssertFalse(r.stdout.contains(".hidden"), "hidden files are skipped")
        XCTAssertEqual(csvRows(r.stdout).count, 2, r.stdout)
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir.appendingPathComponent("out/a_good.png").path))
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("out/b_truncated.png").path))
        let missing = try fkpBatch(["annotate", "no/such/photo.png", "--model", Self.model])
        XCTAssertEqual(missing.status, 1)
        let noModel = try fkpBatch(["annotate", "samples/photos", "--model", "no-such-model.safetensors"])
        XCTAssertEqual(noModel.status, 2)
    }

    func testStdinListShardsAndSkipExisting() throws {
        let input = dir.appendingPathComponent("in")
        try FileManager.default.createDirectory(at: input, withIntermediateDirectories: true)
        let photo = try Data(contentsOf: repoRoot.appendingPathComponent("samples/photos/skimage_astronaut.png"))
        var paths: [String] = []
        for i in 0..<5 {
            let p = input.appendingPathComponent("p\(i).png")
            try photo.write(to: p)
            paths.append(p.path)
        }
        let list = paths.joined(separator: "\n") + "\n"
        let all = try fkpBatch(["annotate", "-", "--model", Self.model], stdin: list)
        XCTAssertEqual(all.status, 0, all.stderr)
        XCTAssertEqual(csvRows(all.stdout).dropFirst().map { $0[0] }, paths)
        // shards: disjoint, together everything
        var seen: [String] = []
        for k in 1...3 {
            let s = try fkpBatch(["annotate", "-", "--shard", "\(k)/3", "--model", Self.model], stdin: list)
            XCTAssertEqual(s.status, 0, s.stderr)
            seen += csvRows(s.stdout).dropFirst().map { $0[0] }
        }
        XCTAssertEqual(seen.sorted(), paths.sorted())
        XCTAssertEqual(Set(seen).count, 5)
        XCTAssertEqual(try fkpBatch(["annotate", "-", "--shard", "4/3"], stdin: list).status, 2)
        // skip-existing: a second run leaves the finished files alone and does the missing one
        let out = dir.appendingPathComponent("out")
        XCTAssertEqual(try fkpBatch(["annotate", input.path, "-o", out.path, "--model", Self.model]).status, 0)
        let kept = out.appendingPathComponent("p0.png").path
        let before = try FileManager.default.attributesOfItem(atPath: kept)[.modificationDate] as! Date
        try FileManager.default.removeItem(at: out.appendingPathComponent("p3.png"))
        Thread.sleep(forTimeInterval: 1.1)
        let again = try fkpBatch(["annotate", input.path, "-o", out.path, "--skip-existing", "--model", Self.model])
        XCTAssertEqual(again.status, 0, again.stderr)
        XCTAssertEqual(csvRows(again.stdout).count, 2, "only p3 is done again")
        XCTAssertEqual(try FileManager.default.attributesOfItem(atPath: kept)[.modificationDate] as! Date, before)
        XCTAssertTrue(FileManager.default.fileExists(atPath: out.appendingPathComponent("p3.png").path))
        // never over an input: -o pointing at the input folder
        let clobber = try fkpBatch(["annotate", input.path, "-o", input.path, "--model", Self.model])
        XCTAssertEqual(clobber.status, 1)
        XCTAssertTrue(clobber.stderr.contains("would overwrite an input"), clobber.stderr)
        XCTAssertEqual(try Data(contentsOf: input.appendingPathComponent("p0.png")), photo)
    }

    func testNoDetectTreatsEachImageAsAFace() throws {
        let r = try fkpBatch(["annotate", "samples/faces", "--no-detect", "--model", Self.model])
        XCTAssertEqual(r.status, 0, r.stderr)
        let rows = csvRows(r.stdout).dropFirst()
        XCTAssertEqual(rows.count, 6)
        XCTAssertTrue(rows.allSatisfy { $0[1] == "1" && $0[5] == "96" })
    }

    /// A face that comes cropped gets the same points from annotate --no-detect as from predict (the
    /// bundled photo model: Kaggle's framing, both nets from the first pass); the 96x96 samples map 1:1.
    func testNoDetectGivesThePointsOfPredict() throws {
        let files = (1...6).map { "samples/faces/face_\($0).png" }
        let annotated = try fkpBatch(["annotate", "--no-detect"] + files)
        let predicted = try fkpBatch(["predict"] + files)
        XCTAssertEqual(annotated.status, 0, annotated.stderr)
        XCTAssertEqual(predicted.status, 0, predicted.stderr)
        let a = csvRows(annotated.stdout).dropFirst().map { Array($0[8..<38]) }
        let p = csvRows(predicted.stdout).dropFirst().map { Array($0[1..<31]) }
        XCTAssertEqual(a.count, 6)
        XCTAssertEqual(p.count, 6)
        var worst = 0.0
        for (x, y) in zip(a, p) { for (u, v) in zip(x, y) { worst = max(worst, abs(Double(u)! - Double(v)!)) } }
        XCTAssertLessThan(worst, 0.011, "annotate and predict differ by \(worst) px (both print 2 decimals)")
    }
}

final class ExportModelTests: XCTestCase {
    func testExportDropsOptimizerStateAndHalvesTheWeights() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("export-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let ckpt = dir.appendingPathComponent("c.safetensors").path, small = dir.appendingPathComponent("s.safetensors").path
        XCTAssertEqual(try fkpBatch(["train", "--epochs", "2", "--out", ckpt]).status, 0)
        let r = try fkpBatch(["export-model", ckpt, small, "--float16"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let big = try FileManager.default.attributesOfItem(atPath: ckpt)[.size] as! Int
        let half = try FileManager.default.attributesOfItem(atPath: small)[.size] as! Int
        XCTAssertLessThan(half, big / 3, "no velocities, half the bytes per weight")
        // the float16 model predicts within a small fraction of a pixel of the float32 one
        let a = try fkpBatch(["predict", "--model", ckpt, "samples/test-sample.csv"]).stdout
        let b = try fkpBatch(["predict", "--model", small, "samples/test-sample.csv"]).stdout
        let va = a.split(separator: "\n").dropFirst().flatMap { $0.split(separator: ",").dropFirst().map { Double($0)! } }
        let vb = b.split(separator: "\n").dropFirst().flatMap { $0.split(separator: ",").dropFirst().map { Double($0)! } }
        XCTAssertEqual(va.count, 300)
        XCTAssertLessThan(zip(va, vb).map { abs($0 - $1) }.max()!, 0.1)
        XCTAssertEqual(try fkpBatch(["export-model", ckpt, ckpt]).status, 2)
    }

    /// --calibrate-aligned fits the photo model's calibration for 96x96 faces on labelled rows: its error
    /// on those rows falls (least squares), evaluate then measures what export-model reported, other
    /// passes run without it, and rows that cannot calibrate are refused with the file named.
    func testCalibrateAlignedFitsOnLabelledRows() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("calibrate-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("m.safetensors").path
        let r = try fkpBatch(["export-model", "samples/model.safetensors", out, "--calibrate-aligned", "samples/training-sample.csv",
                              "--calibration-passes", "2", "--int8"])
        XCTAssertEqual(r.status, 0, r.stderr)
        // "... from 200 rows of samples/training-sample.csv: RMSE on them 1.234 -> 1.111 px"
        let line = try XCTUnwrap(r.stderr.split(separator: "\n").first { $0.contains("RMSE on them") }, r.stderr)
        XCTAssertTrue(line.contains("from 200 rows"), String(line))
        let numbers = line.split(separator: " ").compactMap { Double($0) }
        let before = try XCTUnwrap(numbers.dropLast().last), after = try XCTUnwrap(numbers.last)
        XCTAssertLessThan(after, before - 0.05, String(line))
        // The input's weights (tensor bytes), output offsets, nets and framing are kept: only the
        // calibration is new.
        func parts(_ path: String) throws -> (tensors: NSDictionary, metadata: [String: String], bytes: Data) {
            let data = try Data(contentsOf: URL(fileURLWithPath: path))
            let length = data.prefix(8).enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
            var header = try XCTUnwrap(try JSONSerialization.jsonObject(with: data.subdata(in: 8..<(8 + length))) as? [String: Any])
            let metadata = try XCTUnwrap(header.removeValue(forKey: "__metadata__") as? [String: String])
            return (header as NSDictionary, metadata, data.subdata(in: (8 + length)..<data.count))
        }
        let (old, new) = (try parts(repoPath("samples/model.safetensors")), try parts(out))
        XCTAssertEqual(old.tensors, new.tensors)
        XCTAssertTrue(old.bytes == new.bytes, "the weights' bytes")
        for key in ["pass1_output_offset", "pass2_output_offset", "pass1_model", "pass2_model", "box_framing", "quantization"] {
            XCTAssertNotNil(new.metadata[key], key)
            XCTAssertEqual(old.metadata[key], new.metadata[key], key)
        }
        let calibration = try XCTUnwrap(new.metadata["aligned_calibration"])
        XCTAssertTrue(calibration.contains("\"source\":\"training-sample.csv\""), calibration)
        // Written again as is, the calibration is kept to the byte; as float32, the int8 note goes and
        // the user is told that offsets and calibration were measured on the int8 weights.
        let again = dir.appendingPathComponent("again.safetensors").path
        let copy = try fkpBatch(["export-model", out, again, "--int8"])
        XCTAssertEqual(copy.status, 0, copy.stderr)
        XCTAssertFalse(copy.stderr.contains("warning"), copy.stderr)
        XCTAssertEqual(try parts(again).metadata["aligned_calibration"], calibration)
        let float = try fkpBatch(["export-model", out, again])
        XCTAssertEqual(float.status, 0, float.stderr)
        XCTAssertTrue(float.stderr.contains("warning") && float.stderr.contains("--calibrate-aligned"), float.stderr)
        XCTAssertNil(try parts(again).metadata["quantization"], "float32 tensors are not int8")
        XCTAssertEqual(try parts(again).metadata["aligned_calibration"], calibration)
        let usage = try fkpBatch(["export-model", out, again, "--calibration-passes", "2"])
        XCTAssertEqual(usage.status, 2, usage.stderr)
        XCTAssertTrue(usage.stderr.contains("--calibrate-aligned"), usage.stderr)
        func rmse(_ extra: [String]) throws -> Double {
            let e = try fkpBatch(["evaluate", "--model", out, "samples/training-sample.csv", "--format", "json"] + extra)
            XCTAssertEqual(e.status, 0, e.stderr)
            let json = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(e.stdout.utf8)) as? [String: Any])
            return try XCTUnwrap(json["rmse_px"] as? Double, e.stdout)
        }
        XCTAssertEqual(try rmse([]), after, accuracy: 0.0015, "evaluate runs the calibration's 2 passes by default")
        XCTAssertEqual(try rmse(["--passes", "2"]), after, accuracy: 0.0015)
        XCTAssertGreaterThan(try rmse(["--passes", "3"]), after + 0.05, "not applied at 3 passes")

        let few = dir.appendingPathComponent("few.csv").path
        let text = try String(contentsOfFile: repoPath("samples/training-sample.csv"), encoding: .utf8)
        try text.split(separator: "\n", omittingEmptySubsequences: false).prefix(41).joined(separator: "\n").write(toFile: few, atomically: true, encoding: .utf8)
        for (rows, says) in [("samples/test-sample.csv", "labelled rows"), (few, "at least 62")] {
            let bad = dir.appendingPathComponent("bad.safetensors").path
            let e = try fkpBatch(["export-model", "samples/model.safetensors", bad, "--calibrate-aligned", rows])
            XCTAssertEqual(e.status, 2, e.stderr)
            XCTAssertTrue(e.stderr.contains(URL(fileURLWithPath: rows).lastPathComponent) && e.stderr.contains(says), e.stderr)
            XCTAssertFalse(FileManager.default.fileExists(atPath: bad), "nothing written")
        }
    }
}
