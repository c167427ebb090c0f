// Fuzz target: a checkpoint's trainer state (JSON in the metadata), decoded and validated against a
// run of 8 training rows, batches of 3 and 10 planned epochs.
import FKPTrain
import Foundation

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    if let state = try? JSONDecoder().decode(TrainerState.self, from: Data(bytes: data, count: size)) {
        _ = try? state.validate(trainRows: 8, batchSize: 3, epochs: 10)
    }
    return 0
}
