// Fuzz target: the Haar cascade XML reader, and a detection pass with what it accepts (a small
// textured image, so every stage and feature of the parsed cascade is evaluated somewhere).
import FKPDetect
import Foundation

let image: [UInt8] = (0..<(48 * 40)).map { i in UInt8(truncatingIfNeeded: (i % 48) * 37 ^ (i / 48) * 91) }

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    if let cascade = try? HaarCascade(data: Data(bytes: data, count: size), path: "fuzz.xml") {
        var p = DetectionParameters()
        p.minNeighbors = 0; p.minSize = 1
        _ = detectFaces(gray8: image, width: 48, height: 40, cascade: cascade, parameters: p, threads: 1)
    }
    return 0
}
