import FKPTestSupport
import Foundation
import XCTest

/// Exit codes and messages as the README states them: 0 ok, 1 some inputs failed (the rest done), 2 usage
/// or set-up error found before any work. A set-up error is one `error:` line that names the file and
/// says what is wrong in plain words (no Foundation "The operation could not be completed" sentence, no
/// NSError dump), printed once, with nothing on stdout and nothing written.
final class ExitCodeTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("fkp-exit-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func path(_ name: String) -> String { dir.appendingPathComponent(name).path }

    /// Checks a set-up error: exit 2, stdout empty, one plain `error:` line that contains `mentions`.
    func assertSetupError(_ args: [String], mentions: [String], file: StaticString = #filePath, line: UInt = #line) throws {
        let r = try fkpBatch(args)
        XCTAssertEqual(r.status, 2, "\(args): \(r.stderr)", file: file, line: line)
        XCTAssertEqual(r.stdout, "", "\(args): nothing on stdout", file: file, line: line)
        let errors = r.stderr.split(separator: "\n").filter { $0.hasPrefix("error:") }
        XCTAssertEqual(errors.count, 1, "\(args): one error line: \(r.stderr)", file: file, line: line)
        guard let message = errors.first else { return }
        XCTAssertGreaterThan(message.dropFirst("error:".count).trimmingCharacters(in: .whitespaces).count, 10,
                             "\(args): an error with text", file: file, line: line)
        for m in mentions { XCTAssertTrue(message.contains(m), "\(args): '\(m)' not in \(message)", file: file, line: line) }
        for raw in ["could not be completed", "couldn’t be completed", "Error Domain", "NSCocoaErrorDomain", "UserInfo"] {
            XCTAssertFalse(r.stderr.contains(raw), "\(args): raw Foundation text: \(r.stderr)", file: file, line: line)
        }
        XCTAssertFalse(r.stderr.contains("epoch    train loss"), "\(args): found only after training started", file: file, line: line)
        XCTAssertFalse(r.stderr.contains(" rows, "), "\(args): found only after the data was read", file: file, line: line)
    }

    /// An output file in a folder that does not exist: before, predict exited 1 with "The operation could
    /// not be completed. The file doesn't exist." after predicting, train exited 2 after its epochs with no
    /// file named (for --plot: after every epoch, with an NSError dump), plot and export-model likewise.
    func testOutputInAMissingFolderIsASetupErrorBeforeAnyWork() throws {
        let missing = path("no-such-folder")
        let cases: [[String]] = [
            ["predict", "samples/test-sample.csv", "-o", "\(missing)/p.csv"],
            ["train", "--epochs", "2", "--out", "\(missing)/m.safetensors"],
            ["train", "--epochs", "2", "--out", path("m.safetensors"), "--plot", "\(missing)/losses.png"],
            ["plot", "docs/runs/photo-mixed.history.csv", "-o", "\(missing)/losses.png"],
            ["export-model", "samples/model.safetensors", "\(missing)/small.safetensors"],
            ["evaluate", "--frames", "samples/frames", "--sheet", "\(missing)/sheet.png"],
        ]
        for args in cases {
            try assertSetupError(args, mentions: [missing, "does not exist"])
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: missing))
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("m.safetensors")), "train wrote nothing")
        // a file where the folder should be
        try Data("x".utf8).write(to: dir.appendingPathComponent("plain"))
        try assertSetupError(["predict", "samples/test-sample.csv", "-o", path("plain/p.csv")], mentions: [path("plain"), "not a folder"])
    }

    /// Missing or unreadable inputs that the run cannot start without: the file and the reason, in words.
    /// Before, these read "cannot read: The operation could not be completed. The file doesn't exist.".
    func testMissingSetupFilesSayWhatIsWrongInWords() throws {
        let none = path("none")
        let cases: [([String], [String])] = [
            (["annotate", "samples/photos", "--model", "\(none).safetensors"], ["\(none).safetensors", "No such file"]),
            (["predict", "--model", "\(none).safetensors", "samples/test-sample.csv"], ["\(none).safetensors", "No such file"]),
            (["evaluate", "--model", "\(none).safetensors", "samples/training-sample.csv"], ["\(none).safetensors", "No such file"]),
            (["train", "--resume", "\(none).safetensors"], ["\(none).safetensors", "No such file"]),
            (["export-model", "\(none).safetensors", path("o.safetensors")], ["\(none).safetensors", "No such file"]),
            (["train", "--data", "\(none).csv", "--epochs", "1", "--out", path("t.safetensors")], ["\(none).csv", "No such file"]),
            (["calibrate-crop", "\(none).csv"], ["\(none).csv", "No such file"]),
            (["train", "--init-weights", "\(none).safetensors", "--epochs", "1", "--out", path("i.safetensors")],
             ["\(none).safetensors", "No such file"]),
            (["predict", "samples/test-sample.csv", "--lookup", "\(none).csv"], ["\(none).csv", "No such file"]),
            (["plot", "\(none).history.csv", "-o", path("l.png")], ["\(none).history.csv"]),
            (["annotate", "samples/photos", "--detector", "cascade", "--cascade", "\(none).xml"], ["\(none).xml", "no such file"]),
            (["annotate", "samples/photos", "--detector", "cascade", "--cascade", "samples/test-sample.csv"], ["samples/test-sample.csv", "cascade"]),
            (["annotate", "samples/photos", "--hog-detector", "\(none).safetensors"], ["\(none).safetensors", "No such file"]),
            (["annotate", "samples/photos", "--hog-detector", "samples/verifier.safetensors"], ["samples/verifier.safetensors", "not a HOG face detector"]),
            (["annotate", "samples/photos", "--model", "samples/test-sample.csv"], ["samples/test-sample.csv", "safetensors"]),
        ]
        for (args, mentions) in cases { try assertSetupError(args, mentions: mentions) }
    }

    /// annotate's set-up errors come before any photo: no header on stdout, no output folder made.
    func testAnnotateSetupErrorsComeBeforeAnyPhoto() throws {
        let out = path("out")
        try assertSetupError(["annotate", "samples/photos", "-o", out, "--model", path("none.safetensors")], mentions: ["none.safetensors"])
        try assertSetupError(["annotate", "samples/photos", "-o", out, "--detector", "cascade", "--cascade", path("none.xml")], mentions: ["none.xml"])
        try assertSetupError(["annotate", "samples/photos", "-o", out, "--hog-detector", path("none.safetensors")], mentions: ["none.safetensors"])
        try assertSetupError(["annotate", "samples/photos", "-o", out, "--face-verifier", path("none.safetensors")], mentions: ["none.safetensors"])
        try assertSetupError(["annotate", "samples/photos", "-o", out, "--face-verifier", "samples/model.safetensors"],
                             mentions: ["samples/model.safetensors", "not a face verifier"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: out), "the output folder is made only once the set-up is good")
        try Data("x".utf8).write(to: dir.appendingPathComponent("file"))
        try assertSetupError(["annotate", "samples/photos", "-o", path("file")], mentions: [path("file"), "is a file"])
        try assertSetupError(["annotate", "samples/photos", "-o", "/proc/no/such"], mentions: ["/proc/no/such", "cannot create the folder"])
    }

    /// Some inputs bad, the rest done: exit 1, each bad input named once, the good ones on stdout.
    func testSomeInputsFailedIsExit1WithEachNamedOnce() throws {
        let text = path("text.png")
        try Data("not an image".utf8).write(to: URL(fileURLWithPath: text))
        let predict = try fkpBatch(["predict", "samples/faces/face_1.png", text, path("gone.csv"), "samples/test-sample.csv"])
        XCTAssertEqual(predict.status, 1, predict.stderr)
        XCTAssertEqual(predict.stdout.split(separator: "\n").count, 1 + 1 + 10, predict.stdout)
        for name in [text, path("gone.csv")] {
            XCTAssertEqual(predict.stderr.components(separatedBy: name).count - 1, 1, "\(name) named once: \(predict.stderr)")
        }
        XCTAssertFalse(predict.stderr.contains("could not be completed"), predict.stderr)
        let annotate = try fkpBatch(["annotate", "samples/photos/skimage_astronaut.png", text, path("gone.png")])
        XCTAssertEqual(annotate.status, 1, annotate.stderr)
        XCTAssertEqual(annotate.stdout.split(separator: "\n").count, 2, annotate.stdout)
        for name in [text, path("gone.png")] {
            XCTAssertEqual(annotate.stderr.split(separator: "\n").filter { $0.hasPrefix("error:") && $0.contains(name) }.count, 1,
                           "\(name) named once: \(annotate.stderr)")
        }
    }
}
