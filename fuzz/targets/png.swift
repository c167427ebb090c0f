// Fuzz target: the PNG decoder (colour and grey paths), with a pixel cap so huge frames are refused.
import FKPImage
import Foundation

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Data(bytes: data, count: size)
    _ = try? PNGCodec.decodeRGB(bytes, name: "fuzz.png", maxPixels: 1 << 22)
    _ = try? PNGCodec.decodeGray(bytes, name: "fuzz.png", maxPixels: 1 << 22)
    return 0
}
