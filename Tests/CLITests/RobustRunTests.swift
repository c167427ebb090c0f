import FKPImage
import FKPTestSupport
import Foundation
import XCTest

/// Runs that meet bad inputs or get killed: every good output and record is written, every bad file is
/// named, and no output a killed run leaves behind is half written.
final class RobustRunTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("fkp-robust-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func path(_ name: String) -> String { dir.appendingPathComponent(name).path }

    /// The bad files of the mixed folder: a truncated PNG, text named .png, an empty .jpg, a FIFO named .png.
    func addBadFiles(to folder: URL) throws -> [String] {
        let photo = try Data(contentsOf: repoRoot.appendingPathComponent("samples/photos/skimage_astronaut.png"))
        try photo.prefix(photo.count / 2).write(to: folder.appendingPathComponent("bad_truncated.png"))
        try Data("just some text\n".utf8).write(to: folder.appendingPathComponent("bad_text.png"))
        try Data().write(to: folder.appendingPathComponent("bad_empty.jpg"))
        XCTAssertEqual(mkfifo(folder.appendingPathComponent("x.png").path, 0o644), 0)
        return ["bad_truncated.png", "bad_text.png", "bad_empty.jpg", "x.png"]
    }

    func rows(_ csv: String) -> [[String]] {
        csv.split(separator: "\n").dropFirst().map { $0.split(separator: ",", omittingEmptySubsequences: false).map(String.init) }
    }

    /// Checks the run over a mixed folder: exit 1; each bad file on one error line; every good photo has
    /// its annotated PNG (decodes, same size as the photo) and its records. Returns the records by file name.
    func checkMixedRun(_ r: Run, input: URL, out: URL, good: [String], bad: [String]) throws -> [String: [[String]]] {
        XCTAssertEqual(r.status, 1, r.stderr)
        let errorLines = r.stderr.split(separator: "\n").filter { $0.hasPrefix("error:") }
        for name in bad {
            XCTAssertEqual(errorLines.filter { $0.contains("/\(name)") }.count, 1, "\(name) is named once: \(r.stderr)")
            XCTAssertFalse(FileManager.default.fileExists(atPath: out.appendingPathComponent(name).path), "no output for \(name)")
        }
        XCTAssertEqual(errorLines.count, bad.count, r.stderr)
        XCTAssertTrue(r.stderr.contains("\(good.count + bad.count) photos"), r.stderr)
        XCTAssertTrue(r.stderr.contains("\(bad.count) failed"), r.stderr)
        var byFile: [String: [[String]]] = [:]
        for row in rows(r.stdout) { byFile[URL(fileURLWithPath: row[0]).lastPathComponent, default: []].append(row) }
        XCTAssertEqual(Set(byFile.keys), Set(good), r.stdout)
        for name in good {
            let photo = try ImageFile.readRGB(path: input.appendingPathComponent(name).path)
            let annotated = try PNGCodec.readRGB(path: out.appendingPathComponent((name as NSString).deletingPathExtension + ".png").path)
            XCTAssertEqual([annotated.width, annotated.height], [photo.width, photo.height], name)
            let faces = byFile[name] ?? []
            XCTAssertEqual(faces.count, max(1, Int(faces.first?[1] ?? "") ?? -1), "\(name): one record per face")
        }
        return byFile
    }

    /// annotate on a folder of good photos, a face that touches the photo's border, and bad files (the issue's
    /// "done when"): every good output and every record is written, every bad file named, exit 1.
    func testMixedFolderWithDetection() throws {
        let input = dir.appendingPathComponent("in"), out = dir.appendingPathComponent("out")
        try FileManager.default.createDirectory(at: input, withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: repoRoot.appendingPathComponent("samples/photos/skimage_astronaut.png"),
                                         to: input.appendingPathComponent("astronaut.png"))
        // A flat grey picture: no face (the cameraman of samples/photos is found since the profile cascade).
        try PNGCodec.writeRGB(RGBImage(width: 64, height: 48, pixels: [UInt8](repeating: 128, count: 64 * 48 * 3)),
                              path: input.appendingPathComponent("camera.png").path)
        // The astronaut cut so that her face touches the top-left corner (her face box is near x 177, y 66,
        // 95 px wide in the whole photo; the detector still finds the cut face, its box 2-4 px from the
        // edges, and the crops of the passes and the drawn points reach past them), as a PNG and a JPEG.
        let full = try PNGCodec.readRGB(path: repoPath("samples/photos/skimage_astronaut.png"))
        let cut = crop(full, x: 186, y: 75, width: 220, height: 200)
        try PNGCodec.writeRGB(cut, path: input.appendingPathComponent("border.png").path)
        try JPEGCodec.encodeRGB(cut, quality: 95).write(to: input.appendingPathComponent("border_jpeg.jpg"))
        let bad = try addBadFiles(to: input)
        let r = try fkpBatch(["annotate", input.path, "-o", out.path])
        let byFile = try checkMixedRun(r, input: input, out: out, good: ["astronaut.png", "camera.png", "border.png", "border_jpeg.jpg"], bad: bad)
        XCTAssertEqual(byFile["camera.png"]?.first?[1], "0", "no face: one record with faces = 0")
        XCTAssertEqual(byFile["astronaut.png"]?.first?[1], "1")
        // (the JPEG of the cut photo is only a good photo here: its compressed face may fall below the detector)
        for name in ["border.png"] {
            let face = try XCTUnwrap(byFile[name]?.first)
            XCTAssertEqual(face[1], "1", "\(name): the face at the border is found")
            let (x, y) = (Int(face[3]) ?? -1, Int(face[4]) ?? -1)
            XCTAssertTrue(min(x, y) <= 4, "\(name): the box touches the border: \(face.prefix(8))")
            XCTAssertEqual(face.count, 39)
            XCTAssertTrue(face[8..<38].allSatisfy { Double($0) != nil }, "\(name): 30 keypoint values: \(face)")
        }
    }

    /// The same with --no-detect on face crops: each box is the whole image and so touches all four borders
    /// (this trapped in drawing before issue 11).
    func testMixedFolderWithoutDetection() throws {
        let input = dir.appendingPathComponent("in"), out = dir.appendingPathComponent("out")
        try FileManager.default.createDirectory(at: input, withIntermediateDirectories: true)
        let good = (1...6).map { "face_\($0).png" }
        for name in good {
            try FileManager.default.copyItem(at: repoRoot.appendingPathComponent("samples/faces/\(name)"), to: input.appendingPathComponent(name))
        }
        let bad = try addBadFiles(to: input)
        let r = try fkpBatch(["annotate", input.path, "-o", out.path, "--no-detect"])
        let byFile = try checkMixedRun(r, input: input, out: out, good: good, bad: bad)
        for name in good {
            let face = try XCTUnwrap(byFile[name]?.first)
            XCTAssertEqual(Array(face[1...6]), ["1", "1", "0", "0", "96", "96"], name)
            XCTAssertTrue(face[8..<38].allSatisfy { Double($0) != nil }, "\(name): \(face)")
            XCTAssertEqual(face.last, "", "no detector, no pose")
        }
    }

    func crop(_ image: RGBImage, x: Int, y: Int, width: Int, height: Int) -> RGBImage {
        var pixels: [UInt8] = []
        pixels.reserveCapacity(width * height * 3)
        for row in y..<(y + height) {
            let start = (row * image.width + x) * 3
            pixels += image.pixels[start..<(start + width * 3)]
        }
        return RGBImage(width: width, height: height, pixels: pixels)
    }

    /// A checkpoint that exists is a whole safetensors file: the header's length and JSON, and data that ends
    /// exactly where the last tensor ends.
    func assertWholeSafetensors(_ path: String, _ context: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        guard data.count >= 8 else { return XCTFail("\(context): \(data.count) bytes", file: file, line: line) }
        let n = data.prefix(8).enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        guard n > 0, 8 + n <= data.count,
              let header = try JSONSerialization.jsonObject(with: data.subdata(in: 8..<(8 + n))) as? [String: Any] else {
            return XCTFail("\(context): header of \(n) bytes in a file of \(data.count)", file: file, line: line)
        }
        let ends = header.compactMap { ($0.value as? [String: Any])?["data_offsets"] as? [Int] }.map { $0[1] }
        XCTAssertFalse(ends.isEmpty, context, file: file, line: line)
        XCTAssertEqual(8 + n + (ends.max() ?? 0), data.count, "\(context): data cut short", file: file, line: line)
        XCTAssertNotNil((header["__metadata__"] as? [String: String])?["trainer_state"], context, file: file, line: line)
    }

    /// kill -9 at random moments during train: the checkpoint, whenever it exists, is a whole safetensors
    /// file with a trainer state, its history is whole lines, and `--resume` from it finishes the run.
    func testTrainKilledAtRandomMomentsResumes() throws {
        let out = path("k.safetensors"), history = path("k.history.csv")
        let epochs = 150
        var delays: [Double] = [], killed = 0
        for attempt in 1...5 {
            let resume = FileManager.default.fileExists(atPath: out)
            let p = Process()
            p.executableURL = fkpBatchBinary
            p.arguments = resume ? ["train", "--resume", out, "--threads", "1"]
                : ["train", "--model", "net1", "--epochs", "\(epochs)", "--batch-size", "32", "--out", out, "--threads", "1"]
            p.currentDirectoryURL = repoRoot
            p.standardOutput = FileHandle.nullDevice
            p.standardError = FileHandle.nullDevice
            try p.run()
            let delay = Double.random(in: 0.3...1.5)
            delays.append(delay)
            Thread.sleep(forTimeInterval: delay)
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
            if p.terminationReason == .uncaughtSignal { killed += 1 }
            let context = "attempt \(attempt), kills after \(delays)"
            if FileManager.default.fileExists(atPath: out) {
                try assertWholeSafetensors(out, context)
                let h = try String(contentsOfFile: history, encoding: .utf8)
                XCTAssertTrue(h.hasPrefix("epoch,train_loss,valid_loss,") && h.hasSuffix("\n"), "\(context): \(h)")
            }
        }
        print("train killed \(killed) of 5 times, after \(delays.map { String(format: "%.2f s", $0) })")
        XCTAssertGreaterThan(killed, 0, "no run was killed before it finished: \(delays)")
        let args = FileManager.default.fileExists(atPath: out) ? ["train", "--resume", out, "--threads", "1"]
            : ["train", "--model", "net1", "--epochs", "\(epochs)", "--batch-size", "32", "--out", out, "--threads", "1"]
        let finish = try fkpBatch(args)
        XCTAssertEqual(finish.status, 0, finish.stderr)
        XCTAssertTrue(finish.stdout.hasPrefix("model=net1 epochs=\(epochs) "), finish.stdout)
        try assertWholeSafetensors(out, "finished")
        let lines = try String(contentsOfFile: history, encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(lines.count, 1 + epochs, "one history line per epoch after resumes")
        XCTAssertEqual(try fkpBatch(["predict", "--model", out, "samples/test-sample.csv"]).status, 0, "the model predicts")
    }
}
