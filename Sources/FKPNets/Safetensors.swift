import FKPTensor
import Foundation

/// The safetensors format (8-byte little-endian header length, a JSON header, raw little-endian data),
/// so that numpy, PyTorch and the `safetensors` library can read fkp-batch's weights.
public enum Safetensors {
    public enum DType: String, Sendable { case f32 = "F32", f16 = "F16" }

    public struct Entry: Sendable {
        public var name: String
        public var shape: [Int]
        public var values: [Float]
        public init(name: String, shape: [Int], values: [Float]) {
            self.name = name; self.shape = shape; self.values = values
        }
    }

    public struct File: Sendable {
        public var tensors: [Entry]
        public var metadata: [String: String]
        public init(tensors: [Entry], metadata: [String: String]) { self.tensors = tensors; self.metadata = metadata }
        public subscript(name: String) -> Entry? { tensors.first { $0.name == name } }
    }

    public struct FormatError: Error, CustomStringConvertible {
        public let path: String, reason: String
        public var description: String { "\(path): not a valid safetensors file: \(reason)" }
    }

    public static func encode(_ file: File, dtype: DType = .f32) throws -> Data {
        var header: [String: Any] = [:]
        if !file.metadata.isEmpty { header["__metadata__"] = file.metadata }
        var offset = 0
        let width = dtype == .f32 ? 4 : 2
        for t in file.tensors {
            precondition(t.shape.reduce(1, *) == t.values.count, "\(t.name): shape \(t.shape) vs \(t.values.count) values")
            let bytes = t.values.count * width
            header[t.name] = ["dtype": dtype.rawValue, "shape": t.shape, "data_offsets": [offset, offset + bytes]]
            offset += bytes
        }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        while json.count % 8 != 0 { json.append(0x20) }  // pad so the data starts 8-byte aligned
        var out = Data(capacity: 8 + json.count + offset)
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(json)
        for t in file.tensors {
            switch dtype {
            case .f32:
                t.values.withUnsafeBufferPointer { p in
                    for v in p { withUnsafeBytes(of: v.bitPattern.littleEndian) { out.append(contentsOf: $0) } }
                }
            case .f16:
                for v in t.values { withUnsafeBytes(of: Float16(v).bitPattern.littleEndian) { out.append(contentsOf: $0) } }
            }
        }
        return out
    }

    public static func decode(_ data: Data, path: String = "<memory>") throws -> File {
        func fail(_ why: String) -> FormatError { FormatError(path: path, reason: why) }
        guard data.count >= 8 else { throw fail("shorter than 8 bytes") }
        let n = data.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }.littleEndian
        guard n <= UInt64(data.count - 8), n < 100_000_000 else { throw fail("header length \(n) beyond the file") }
        let headerData = data.subdata(in: 8..<(8 + Int(n)))
        guard let header = (try? JSONSerialization.jsonObject(with: headerData)) as? [String: Any] else {
            throw fail("the header is not a JSON object")
        }
        let base = 8 + Int(n)
        var metadata: [String: String] = [:]
        var tensors: [Entry] = []
        for (name, value) in header {
            if name == "__metadata__" {
                metadata = (value as? [String: String]) ?? [:]
                continue
            }
            guard let info = value as? [String: Any], let dtypeName = info["dtype"] as? String,
                  let shape = info["shape"] as? [Int], let offsets = info["data_offsets"] as? [Int], offsets.count == 2
            else { throw fail("tensor \(name) has a malformed entry") }
            guard let dtype = DType(rawValue: dtypeName) else { throw fail("tensor \(name) has dtype \(dtypeName) (F32 and F16 are read)") }
            // Checked arithmetic throughout: shapes and offsets come from the file and may be anything.
            guard shape.allSatisfy({ $0 >= 0 }) else { throw fail("tensor \(name): negative dimension in shape \(shape)") }
            let width = dtype == .f32 ? 4 : 2
            let available = data.count - base
            // With a zero dimension the tensor is empty whatever the others say; otherwise the partial
            // products only grow, so each can be checked against the bytes there are.
            var count = shape.contains(0) ? 0 : 1
            for d in shape where count > 0 {
                let (c, overflow) = count.multipliedReportingOverflow(by: d)
                guard !overflow, c <= available else { throw fail("tensor \(name): shape \(shape) needs more bytes than the file has") }
                count = c
            }
            guard offsets[0] >= 0, offsets[0] <= offsets[1], offsets[1] <= available,
                  offsets[1] - offsets[0] == count * width else {
                throw fail("tensor \(name): offsets \(offsets) do not fit shape \(shape) and the file size")
            }
            var values = [Float](repeating: 0, count: count)
            data.withUnsafeBytes { raw in
                let p = raw.baseAddress! + base + offsets[0]
                for i in 0..<count {
                    if dtype == .f32 {
                        values[i] = Float(bitPattern: UInt32(littleEndian: p.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)))
                    } else {
                        values[i] = Float(Float16(bitPattern: UInt16(littleEndian: p.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))))
                    }
                }
            }
            tensors.append(Entry(name: name, shape: shape, values: values))
        }
        tensors.sort { $0.name < $1.name }
        return File(tensors: tensors, metadata: metadata)
    }

    public static func read(path: String) throws -> File {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw FormatError(path: path, reason: "cannot read: \(ioErrorText(error))")
        }
        return try decode(data, path: path)
    }

    /// Writes atomically: a temporary file beside the target, then rename.
    public static func write(_ file: File, path: String, dtype: DType = .f32) throws {
        try writeFileAtomically(try encode(file, dtype: dtype), to: path)
    }
}
