// Fuzz target: the Haar cascade XML reader.
import FKPDetect
import Foundation

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    _ = try? HaarCascade(data: Data(bytes: data, count: size), path: "fuzz.xml")
    return 0
}
