// Fuzz target: a training history CSV, and a small loss plot of it (any values must draw or be skipped).
import FKPExport
import Foundation

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    if let h = try? LossHistory.parse(text, path: "fuzz.history.csv") {
        _ = LossPlot.render([h], width: 160, height: 120, title: h.name)
    }
    return 0
}
