@testable import FKPDetect
import Foundation
import XCTest

/// Issue 11: the cascade reader checks indices and rectangles without overflowing, and random byte
/// mutations of a valid cascade give a cascade or an error, never a trap.
extension DetectTests {
    func testOverflowingIndicesAndRectanglesAreErrors() throws {
        let cases: [(String, String)] = [
            (miniCascade().replacingOccurrences(of: "<internalNodes>0 -1 ", with: "<internalNodes>0 -9223372036854775808 "), "bad child index"),
            (miniCascade().replacingOccurrences(of: "<internalNodes>0 -1 ", with: "<internalNodes>-9223372036854775808 -1 "), "bad child index"),
            (miniCascade(rect: "1 1 9223372036854775807 2 -1."), "outside"),
            (miniCascade(rect: "9223372036854775807 1 2 2 -1."), "outside"),
            (miniCascade(rect: "1 9223372036854775806 2 9223372036854775807 -1."), "outside"),
            (miniCascade(featureIndex: Int.min), "out of range"),
        ]
        for (i, (text, fragment)) in cases.enumerated() {
            XCTAssertThrowsError(try HaarCascade(data: Data(text.utf8), path: "c\(i).xml")) { e in
                XCTAssertTrue("\(e)".contains("c\(i).xml") && "\(e)".contains(fragment), "\(i): \(e)")
            }
        }
    }

    func testMutatedCascadesNeverTrap() {
        let seed = [UInt8](miniCascade().utf8)
        var state: UInt64 = 5
        func next() -> Int { state = state &* 6364136223846793005 &+ 1442695040888963407; return Int(state >> 33) }
        let alphabet = [UInt8]("0123456789-. <>/_".utf8)
        for _ in 0..<400 {
            var b = seed
            for _ in 0...(next() % 4) {
                let i = next() % b.count
                switch next() % 3 {
                case 0: b[i] = alphabet[next() % alphabet.count]
                case 1: b.insert(contentsOf: [UInt8]("9223372036854775807".utf8), at: i)
                default: b.remove(at: i)
                }
            }
            _ = try? HaarCascade(data: Data(b), path: "m.xml")
        }
    }
}

/// Inputs the fuzzer (scripts/fuzz.sh) found crashing; each must now be an error or a cascade.
final class CascadeFuzzRegressionTests: XCTestCase {
    func testFuzzCrashers() throws {
        let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/fuzz")
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasPrefix("cascade-") }.sorted()
        XCTAssertFalse(files.isEmpty)
        for name in files {
            _ = try? HaarCascade(data: Data(contentsOf: dir.appendingPathComponent(name)), path: name)
        }
    }
}
