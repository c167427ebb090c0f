import FKPIngest
import FKPTensor
import FKPTestSupport
import Foundation
import XCTest


final class KaggleCSVTests: XCTestCase {
    let header = (Keypoints.columns + ["Image"]).joined(separator: ",")

    func pixels(_ v: Int, count: Int = 9216) -> String {
        (0..<count).map { _ in String(v) }.joined(separator: " ")
    }

    func row(values: [String], image: String) -> String {
        (values + [image]).joined(separator: ",")
    }

    func testTrainingRowsWithBlanksCRLFAndQuotes() throws {
        var values = (0..<30).map { String(Double($0) + 0.5) }
        let full = row(values: values, image: pixels(255))
        values[4] = ""; values[29] = ""
        let blanks = row(values: values.map { $0.isEmpty ? $0 : "\"\($0)\"" }, image: "\"" + pixels(0) + "\"")
        let text = [header, full, blanks].joined(separator: "\r\n") + "\r\n"
        let r = try KaggleCSV.parse(Data(text.utf8), name: "t.csv")
        XCTAssertEqual(r.faces.count, 2)
        XCTAssertEqual(r.faces.lines, [2, 3])
        let kp = r.faces.keypoints!
        XCTAssertEqual(kp[0], 0.5)
        XCTAssertEqual(kp[29], 29.5)
        XCTAssertTrue(kp[30 + 4].isNaN)
        XCTAssertTrue(kp[30 + 29].isNaN)
        XCTAssertEqual(kp[30 + 5], 5.5)
        XCTAssertEqual(r.faces.images[0], 1)
        XCTAssertEqual(r.faces.images[9216], 0)
        XCTAssertEqual(r.faces.completeRows, [0])
    }

    func testTestFileWithImageIds() throws {
        let text = "ImageId,Image\n7,\(pixels(51))\n9,\(pixels(102))\n"
        let r = try KaggleCSV.parse(Data(text.utf8), name: "test.csv")
        XCTAssertNil(r.faces.keypoints)
        XCTAssertEqual(r.faces.imageIds, [7, 9])
        XCTAssertEqual(r.faces.images[9216], 0.4, accuracy: 1e-6)
    }

    func testColumnsInAnotherOrderMapToTheCanonicalOrder() throws {
        let cols = Array(Keypoints.columns.reversed())
        let text = (cols + ["Image"]).joined(separator: ",") + "\n" + row(values: (0..<30).map { String($0) }, image: pixels(1)) + "\n"
        let r = try KaggleCSV.parse(Data(text.utf8), name: "x.csv")
        XCTAssertEqual(r.faces.keypoints![29], 0)  // mouth_center_bottom_lip_y was the first column
        XCTAssertEqual(r.faces.keypoints![0], 29)
    }

    func testBadRowsNameFileLineAndColumn() {
        let values = (0..<30).map { _ in "1" }
        let cases: [(String, String)] = [
            (row(values: values, image: pixels(1, count: 9215)), "9215 pixels"),
            (row(values: values, image: pixels(1) + " 7"), "more than 9216"),
            (row(values: values, image: pixels(1, count: 9215) + " 300"), "outside 0..255"),
            (row(values: values, image: pixels(1, count: 100) + " x7 " + pixels(1, count: 9115)), "pixel 101"),
            (row(values: ["abc"] + values.dropFirst(), image: pixels(1)), "'abc' is not a number"),
            (values.joined(separator: ","), "fields"),
        ]
        for (bad, expected) in cases {
            let text = [header, row(values: values, image: pixels(1)), bad].joined(separator: "\n")
            XCTAssertThrowsError(try KaggleCSV.parse(Data(text.utf8), name: "bad.csv")) { error in
                let e = error as! CSVError
                XCTAssertEqual(e.file, "bad.csv")
                XCTAssertEqual(e.line, 3)
                XCTAssertTrue(e.description.contains(expected), "\(e) should mention \(expected)")
                XCTAssertTrue(e.description.hasPrefix("bad.csv:3: column "), "\(e)")
            }
            // --skip-bad-rows: a warning per row and the good rows kept.
            let r = try? KaggleCSV.parse(Data(text.utf8), name: "bad.csv", skipBadRows: true)
            XCTAssertEqual(r?.faces.count, 1)
            XCTAssertEqual(r?.skipped.count, 1)
            XCTAssertEqual(r?.faces.lines, [2])
        }
    }

    func testHeaderProblems() {
        XCTAssertThrowsError(try KaggleCSV.parse(Data(), name: "e.csv")) { XCTAssertTrue("\($0)".contains("empty")) }
        XCTAssertThrowsError(try KaggleCSV.parse(Data("a,b\n1,2\n".utf8), name: "h.csv")) {
            XCTAssertTrue("\($0)".contains("no Image column"), "\($0)")
        }
        XCTAssertThrowsError(try KaggleCSV.parse(Data("ImageId,Colour,Image\n".utf8), name: "h.csv")) {
            XCTAssertTrue("\($0)".contains("column Colour"), "\($0)")
        }
    }

    func testBundledSampleReads() throws {
        let r = try KaggleCSV.read(path: repoRoot.appendingPathComponent("samples/training-sample.csv").path)
        XCTAssertEqual(r.faces.count, 200)
        XCTAssertEqual(r.faces.completeRows.count, 200)
        // left eye on the image's right, right eye on its left
        let kp = r.faces.keypoints!
        XCTAssertGreaterThan(kp[0], 55)
        XCTAssertLessThan(kp[2], 41)
    }

    func testFullTrainingFileParsesQuickly() throws {
        let path = repoRoot.deletingLastPathComponent().appendingPathComponent("shared/data/fkd/training.csv").path
        guard FileManager.default.fileExists(atPath: path) else {
            print("skipped: \(path) is absent (it is only beside CI's clone)")
            throw XCTSkip("\(path) is absent")
        }
        let t0 = Date()
        let r = try KaggleCSV.read(path: path)
        let seconds = Date().timeIntervalSince(t0)
        XCTAssertEqual(r.faces.count, 3357)
        XCTAssertEqual(r.faces.completeRows.count, 3357)
        print("parsed \(path) (\(r.faces.count) rows) in \(String(format: "%.2f", seconds)) s")
    }
}
