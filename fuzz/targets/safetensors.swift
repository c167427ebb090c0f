// Fuzz target: the safetensors reader, and loading what it returns as a model (shapes, finite weights).
import FKPEngine
import FKPNets
import FKPInference
import Foundation

let backend = CPUBackend(threads: 1)

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    if let file = try? Safetensors.decode(Data(bytes: data, count: size), path: "fuzz.safetensors") {
        _ = try? ModelFile.loadModel(file, path: "fuzz.safetensors", backend: backend, maxBatch: 1)
    }
    return 0
}
