import FKPEngine
import FKPNets
import FKPTensor
import FKPTestSupport
import Foundation
import XCTest

/// Issue 11: safetensors headers with any numbers are errors naming the file, never traps; round trips
/// are exact; mutations of valid files give a value or an error; non-finite weights are refused.
final class SafetensorsReliabilityTests: XCTestCase {
    func file(header: String, dataBytes: Int = 16) -> Data {
        var json = Data(header.utf8)
        while json.count % 8 != 0 { json.append(0x20) }
        var d = Data()
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { d.append(contentsOf: $0) }
        return d + json + Data(count: dataBytes)
    }

    func testOverflowingShapesAndOffsetsAreErrors() {
        let max = Int64.max, min = Int64.min
        let cases: [(String, String)] = [
            ("[0, \(max)]", "[4]"), ("[\(max - 2), \(max)]", "[0]"), ("[\(min), 4]", "[1]"), ("[4, \(min)]", "[1]"),
            ("[0, 16]", "[\(max), 2]"), ("[0, 16]", "[-2, -2]"), ("[0, 16]", "[-1]"), ("[0, 16]", "[4294967296, 4294967296]"),
            ("[0, 16]", "[3037000500, 3037000500]"), ("[8, 0]", "[0]"),
        ]
        for (offsets, shape) in cases {
            let data = file(header: "{\"t\":{\"dtype\":\"F32\",\"shape\":\(shape),\"data_offsets\":\(offsets)}}")
            XCTAssertThrowsError(try Safetensors.decode(data, path: "x.safetensors"), "\(offsets) \(shape)") { e in
                XCTAssertTrue("\(e)".hasPrefix("x.safetensors: ") && "\(e)".contains("tensor t"), "\(e)")
            }
        }
    }

    func testRoundTripIsExact() throws {
        var rng = Xoshiro(seed: 21)
        for trial in 0..<40 {
            let tensors = (0..<(1 + Int(rng.next() % 4))).map { k -> Safetensors.Entry in
                let shape = (0..<Int(rng.next() % 4)).map { _ in Int(rng.next() % 5) }
                let n = shape.reduce(1, *)
                // Bit patterns, NaN payloads and infinities included: the format stores bits.
                let values = (0..<n).map { _ in Float(bitPattern: UInt32(truncatingIfNeeded: rng.next())) }
                return .init(name: "t\(k)", shape: shape, values: values)
            }
            let file = Safetensors.File(tensors: tensors, metadata: trial % 2 == 0 ? ["k": "v\(trial)"] : [:])
            let back = try Safetensors.decode(try Safetensors.encode(file))
            XCTAssertEqual(back.metadata, file.metadata)
            XCTAssertEqual(back.tensors.map(\.name), tensors.map(\.name))
            for (a, b) in zip(back.tensors, tensors) {
                XCTAssertEqual(a.shape, b.shape)
                XCTAssertEqual(a.values.map(\.bitPattern), b.values.map(\.bitPattern))
            }
            // float16: exact for values float16 holds
            let halves = Safetensors.File(tensors: [.init(name: "h", shape: [3], values: [0.5, -2, 65504])], metadata: [:])
            XCTAssertEqual(try Safetensors.decode(try Safetensors.encode(halves, dtype: .f16))["h"]?.values, [0.5, -2, 65504])
        }
    }

    /// int8 storage: matrices come back within half a step of their column's scale, biases exactly, the
    /// scale tensors folded in and gone; the header names I8 and the scales for other tools.
    func testInt8RoundTripIsWithinHalfAStep() throws {
        var rng = Xoshiro(seed: 23)
        let w = (0..<(37 * 5)).map { i in Float(Int(rng.next() % 2001) - 1000) / 100 * (i % 5 == 3 ? 0.001 : 1) }
        let b: [Float] = [0.125, -3.5, 1e-7, 2, 0]
        let zero = [Float](repeating: 0, count: 6)
        let file = Safetensors.File(tensors: [.init(name: "d.b", shape: [5], values: b), .init(name: "d.w", shape: [37, 5], values: w),
                                              .init(name: "z.w", shape: [2, 3], values: zero)], metadata: ["model": "x"])
        let data = try Safetensors.encode(file, dtype: .i8)
        let headerLength = Int(data.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }.littleEndian)
        // A byte per weight, float32 biases and scales: 4*5 + 37*5 + 4*5 + 2*3 + 4*3.
        XCTAssertEqual(data.count - 8 - headerLength, 243)
        let header = String(decoding: data.dropFirst(8).prefix(headerLength), as: UTF8.self)
        XCTAssertTrue(header.contains("\"d.w\":{\"data_offsets\"") && header.contains("\"dtype\":\"I8\"") && header.contains("d.w.scale"), header)
        let back = try Safetensors.decode(data)
        XCTAssertEqual(back.tensors.map(\.name), ["d.b", "d.w", "z.w"])
        XCTAssertEqual(back["d.b"]?.values, b)
        XCTAssertEqual(back["z.w"]?.values, zero)
        XCTAssertEqual(back.metadata["model"], "x")
        XCTAssertNotNil(back.metadata["quantization"])
        let got = try XCTUnwrap(back["d.w"]?.values)
        for c in 0..<5 {
            let column = stride(from: c, to: w.count, by: 5)
            let step = column.map { abs(w[$0]) }.max()! / 127
            for i in column { XCTAssertEqual(got[i], w[i], accuracy: step / 2 * 1.0001, "element \(i)") }
        }
        // Not every value survives: the test must be able to see a change.
        XCTAssertNotEqual(got, w)
        var nan = file
        nan.tensors[1].values[7] = .nan
        XCTAssertThrowsError(try Safetensors.encode(nan, dtype: .i8)) { XCTAssertTrue("\($0)".contains("d.w"), "\($0)") }
    }

    /// An I8 tensor needs its scale: missing or misshapen scales are errors naming both tensors.
    func testInt8WithoutAFittingScaleIsAnError() {
        let noScale = file(header: "{\"q\":{\"dtype\":\"I8\",\"shape\":[2,2],\"data_offsets\":[0,4]}}")
        XCTAssertThrowsError(try Safetensors.decode(noScale, path: "q.safetensors")) { e in
            XCTAssertTrue("\(e)".contains("q.safetensors") && "\(e)".contains("q.scale"), "\(e)")
        }
        let wrongScale = file(header: "{\"q\":{\"dtype\":\"I8\",\"shape\":[2,2],\"data_offsets\":[0,4]},\"q.scale\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[4,16]}}")
        XCTAssertThrowsError(try Safetensors.decode(wrongScale, path: "q.safetensors")) { e in
            XCTAssertTrue("\(e)".contains("expected [2]"), "\(e)")
        }
    }

    func testMutatedFilesNeverTrap() throws {
        let valid = [UInt8](try Safetensors.encode(.init(tensors: [
            .init(name: "a.weight", shape: [2, 3], values: [1, 2, 3, 4, 5, 6]), .init(name: "a.bias", shape: [3], values: [0, 1, 2]),
        ], metadata: ["model": "net1"])))
        Mutations.applyTextual(to: valid, count: 400, rngSeed: 22, alphabet: "0123456789-", filler: "99999999999999999") {
            _ = try? Safetensors.decode($0, path: "m.safetensors")
        }
    }

    func testNonFiniteWeightsAreRefusedAtLoad() throws {
        let cpu = CPUBackend(threads: 1)
        let net = Net(.net1(), backend: cpu, maxBatch: 1)
        net.initialise(seed: 1)
        for bad in [Float.nan, .infinity, -.infinity] {
            var tensors = net.exportParameters().map { Safetensors.Entry(name: $0.name, shape: $0.shape, values: $0.values) }
            tensors[2].values[7] = bad
            let other = Net(.net1(), backend: cpu, maxBatch: 1)
            XCTAssertThrowsError(try other.load(.init(tensors: tensors, metadata: [:]), path: "nan.safetensors")) { e in
                XCTAssertTrue("\(e)".contains("nan.safetensors: tensor \(tensors[2].name) has 1 NaN or infinite value"), "\(e)")
            }
        }
    }
}
