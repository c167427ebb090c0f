// Fuzz target: the Kaggle training/test CSV reader, strict and with bad rows skipped.
import FKPIngest
import Foundation

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Data(bytes: data, count: size)
    _ = try? KaggleCSV.parse(bytes, name: "fuzz.csv", skipBadRows: false, threads: 1)
    _ = try? KaggleCSV.parse(bytes, name: "fuzz.csv", skipBadRows: true, threads: 1)
    return 0
}
