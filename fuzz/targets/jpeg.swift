// Fuzz target: the JPEG decoder (TurboJPEG, EXIF orientation, CMYK), warnings discarded.
import FKPImage
import Foundation

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Data(bytes: data, count: size)
    _ = try? JPEGCodec.decodeRGB(bytes, name: "fuzz.jpg", maxPixels: 1 << 22, onWarning: { _ in })
    return 0
}
