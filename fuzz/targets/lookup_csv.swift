// Fuzz target: Kaggle's IdLookupTable reader, then a submission from it.
import FKPExport
import Foundation

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    if let rows = try? LookupTable.parse(text, path: "fuzz.csv") {
        let predictions = Dictionary(rows.prefix(4).map { ($0.imageId, [Float](repeating: .nan, count: 30)) }, uniquingKeysWith: { a, _ in a })
        _ = try? KeypointWriter.submission(lookup: rows, predictions: predictions)
    }
    return 0
}
