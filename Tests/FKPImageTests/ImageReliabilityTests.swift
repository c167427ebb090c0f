@testable import FKPImage
import FKPTensor
import Foundation
import XCTest

extension JPEGTests {
    func testCMYKJPEGIsDecoded() throws {
        // Adobe-convention CMYK of the palette (255 = no ink): c = 255 - r with K = 255.
        let src = Self.source
        var cmyk = [UInt8](repeating: 255, count: 4 * src.width * src.height)
        for i in 0..<(src.width * src.height) { for c in 0..<3 { cmyk[4 * i + c] = src.pixels[3 * i + c] } }
        let data = try JPEGCodec.encodeCMYK(width: src.width, height: src.height, pixels: cmyk)
        let img = try JPEGCodec.decodeRGB(data, name: "cmyk.jpg")
        XCTAssertEqual(img.width, src.width)
        let worst = zip(img.pixels, src.pixels).map { abs(Int($0) - Int($1)) }.max() ?? 0
        XCTAssertLessThanOrEqual(worst, 12, "CMYK decodes to the RGB it was made from")
    }

    /// libjpeg's recoverable corruption decodes, but always says so (on stderr by default).
    func testCorruptJPEGWarns() throws {
        var bytes = [UInt8](try JPEGCodec.encodeRGB(Self.source))
        bytes.insert(contentsOf: [0x12, 0x34], at: bytes.count - 2)  // stray bytes before EOI
        var warnings: [String] = []
        let img = try JPEGCodec.decodeRGB(Data(bytes), name: "stray.jpg", onWarning: { warnings.append($0) })
        XCTAssertEqual(img.width, 32)
        XCTAssertEqual(warnings.count, 1)
        XCTAssertTrue(warnings.first?.hasPrefix("stray.jpg: JPEG: ") == true, "\(warnings)")
        let clean = try JPEGCodec.encodeRGB(Self.source)
        _ = try JPEGCodec.decodeRGB(clean, name: "clean.jpg", onWarning: { warnings.append($0) })
        XCTAssertEqual(warnings.count, 1, "a clean file gives no warning")
    }

    /// A few KB declaring 10000x10000: refused from the header, quickly (it took 1.5 GB and 10 s).
    func testDecompressionBombIsRefusedQuickly() throws {
        var bytes = [UInt8](try JPEGCodec.encodeRGB(Self.source))
        let sof = try XCTUnwrap((0..<(bytes.count - 1)).first { bytes[$0] == 0xFF && bytes[$0 + 1] == 0xC0 })
        bytes[sof + 5] = UInt8(10000 >> 8); bytes[sof + 6] = UInt8(10000 & 0xFF)
        bytes[sof + 7] = UInt8(10000 >> 8); bytes[sof + 8] = UInt8(10000 & 0xFF)
        bytes += [UInt8](repeating: 0, count: 6000 - bytes.count)
        let t0 = Date()
        XCTAssertThrowsError(try JPEGCodec.decodeRGB(Data(bytes), name: "bomb.jpg")) { e in
            XCTAssertTrue("\(e)".contains("pixels per byte"), "\(e)")
        }
        XCTAssertLessThan(Date().timeIntervalSince(t0), 0.5)
    }

    /// The rule: only regular files are read as images. A FIFO named x.png hung forever.
    func testFIFOIsRefusedNotOpened() throws {
        let dir = try tempDir()
        for name in ["x.png", "y.jpg"] {
            let path = dir.appendingPathComponent(name).path
            XCTAssertEqual(mkfifo(path, 0o600), 0)
            let reads: [() throws -> Void] = [{ _ = try ImageFile.readRGB(path: path) }, { _ = try PNGCodec.readGray(path: path) }]
            for read in reads {
                let done = DispatchSemaphore(value: 0)
                nonisolated(unsafe) var message = ""
                Thread.detachNewThread {
                    do { try read() } catch { message = "\(error)" }
                    done.signal()
                }
                if done.wait(timeout: .now() + 5) == .timedOut {
                    XCTFail("\(name): reading a FIFO blocked")
                    let fd = open(path, O_WRONLY | O_NONBLOCK); if fd >= 0 { close(fd) }  // unblock the reader
                    _ = done.wait(timeout: .now() + 5)
                } else {
                    XCTAssertTrue(message.contains("FIFO"), message)
                }
            }
        }
    }
}
