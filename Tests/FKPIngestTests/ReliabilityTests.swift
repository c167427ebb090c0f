@testable import FKPIngest
import FKPTensor
import Foundation
import XCTest

/// Issue 11: silent losses and traps in the readers, one test per class.
extension KaggleCSVTests {
    func parseError(_ text: String) -> CSVError? {
        do { _ = try KaggleCSV.parse(Data(text.utf8), name: "r.csv"); return nil } catch { return error as? CSVError }
    }

    func testNULInsideAValueIsAnErrorNotATruncation() throws {
        var values = (0..<30).map { _ in "37.022" }
        values[0] = "3\u{0}7.022"
        let e = try XCTUnwrap(parseError([header, row(values: values, image: pixels(1))].joined(separator: "\n")))
        XCTAssertEqual(e.line, 2)
        XCTAssertEqual(e.column, Keypoints.columns[0])
        XCTAssertTrue(e.message.contains("NUL"), "\(e)")
    }

    func testJunkAfterAClosingQuoteIsAnError() throws {
        var values = (0..<30).map { _ in "1" }
        values[3] = "\"66\"junk"
        let e = try XCTUnwrap(parseError([header, row(values: values, image: pixels(1))].joined(separator: "\n")))
        XCTAssertEqual(e.line, 2)
        XCTAssertEqual(e.column, Keypoints.columns[3])
        XCTAssertTrue(e.message.contains("junk"), "\(e)")
    }

    func testUnterminatedQuoteIsAnError() throws {
        let values = (0..<30).map { _ in "1" }
        let e = try XCTUnwrap(parseError([header, row(values: values, image: "\"" + pixels(1))].joined(separator: "\n")))
        XCTAssertEqual(e.line, 2)
        XCTAssertEqual(e.column, "Image")
        XCTAssertTrue(e.message.contains("never closed"), "\(e)")
    }

    func testDuplicatedColumnIsAnErrorNamingBoth() throws {
        let dup = Keypoints.columns + [Keypoints.columns[5], "Image"]
        let values = (0..<31).map { _ in "1" }
        let e = try XCTUnwrap(parseError([dup.joined(separator: ","), row(values: values, image: pixels(1))].joined(separator: "\n")))
        XCTAssertEqual(e.line, 1)
        XCTAssertEqual(e.column, Keypoints.columns[5])
        XCTAssertTrue(e.message.contains("columns 6 and 31"), "\(e)")
    }

    func testCROnlyLineEndsAreRead() throws {
        let values = (0..<30).map { String($0) }
        let text = [header, row(values: values, image: pixels(2)), row(values: values, image: pixels(3))].joined(separator: "\r") + "\r"
        let r = try KaggleCSV.parse(Data(text.utf8), name: "cr.csv")
        XCTAssertEqual(r.faces.count, 2)
        XCTAssertEqual(r.faces.keypoints?[29], 29)
    }

    /// 50,000 one-character lines: the error comes on line 2, and memory does not follow the line count
    /// (it took 1.9 GB for the image buffers of lines that cannot be rows).
    func testManyShortLinesFailOnLineTwoWithoutMemory() throws {
        let text = "Image\n" + String(repeating: "x\n", count: 50_000)
        let before = peakRSS()
        let e = try XCTUnwrap(parseError(text))
        XCTAssertEqual(e.line, 2)
        XCTAssertTrue(e.message.contains("too short"), "\(e)")
        XCTAssertLessThan(peakRSS() - before, 200 << 20, "parsing a 100 KB file raised the peak memory by >200 MB")
        // With bad rows skipped, every line is reported and nothing is allocated for them either.
        let r = try KaggleCSV.parse(Data(text.utf8), name: "r.csv", skipBadRows: true)
        XCTAssertEqual(r.faces.count, 0)
        XCTAssertEqual(r.skipped.count, 50_000)
        XCTAssertLessThan(peakRSS() - before, 200 << 20)
    }

    func peakRSS() -> Int {
        var u = rusage()
        getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &u)
        return u.ru_maxrss * 1024
    }
}
