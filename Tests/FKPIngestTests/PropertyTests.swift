@testable import FKPIngest
import FKPTensor
import FKPTestSupport
import Foundation
import XCTest

/// Seeded property tests: write -> read round trips are exact, and byte mutations of valid files give a
/// value or an error, never a trap.
final class ReaderPropertyTests: XCTestCase {
    func testKaggleCSVRoundTripIsExact() throws {
        var rng = Xoshiro(seed: 11)
        for trial in 0..<20 {
            let n = 1 + Int(rng.next() % 4)
            var pixels: [[Int]] = [], values: [[Float?]] = []
            var text = (Keypoints.columns + ["Image"]).joined(separator: ",") + (trial % 2 == 0 ? "\n" : "\r\n")
            for _ in 0..<n {
                let p = (0..<Keypoints.imageSize).map { _ in Int(rng.next() % 256) }
                let v: [Float?] = (0..<Keypoints.count).map { _ in rng.next() % 5 == 0 ? nil : rng.nextFloat() * 96 }
                pixels.append(p); values.append(v)
                let fields = v.map { $0.map { x in rng.next() % 2 == 0 ? "\(x)" : "\"\(x)\"" } ?? "" }
                text += (fields + [p.map(String.init).joined(separator: " ")]).joined(separator: ",") + (trial % 2 == 0 ? "\n" : "\r\n")
            }
            let faces = try KaggleCSV.parse(Data(text.utf8), name: "rt.csv").faces
            XCTAssertEqual(faces.count, n)
            for r in 0..<n {
                for c in 0..<Keypoints.count {
                    let got = faces.keypoints![r * Keypoints.count + c]
                    if let want = values[r][c] { XCTAssertEqual(got, want) } else { XCTAssertTrue(got.isNaN) }
                }
                XCTAssertTrue((0..<Keypoints.imageSize).allSatisfy { faces.images[r * Keypoints.imageSize + $0] == Float(pixels[r][$0]) * (1.0 / 255.0) })  // the reader scales so
            }
        }
    }

    func testMutatedCSVNeverTraps() throws {
        let pixels = (0..<Keypoints.imageSize).map { String($0 % 256) }.joined(separator: " ")
        let text = (Keypoints.columns + ["Image"]).joined(separator: ",") + "\n"
            + (0..<30).map { "\"\(Double($0) + 0.25)\"" }.joined(separator: ",") + "," + pixels + "\n"
        Mutations.apply(to: [UInt8](text.utf8), count: 300, rngSeed: 3) { d in
            _ = try? KaggleCSV.parse(d, name: "m.csv", threads: 1)
            _ = try? KaggleCSV.parse(d, name: "m.csv", skipBadRows: true, threads: 1)
        }
    }
}
