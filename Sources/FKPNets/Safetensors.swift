import FKPTensor
import Foundation

/// The safetensors format (8-byte little-endian header length, a JSON header, raw little-endian data),
/// so that numpy, PyTorch and the `safetensors` library can read fkp-batch's weights.
public enum Safetensors {
    /// How values are stored. `.i8` is for writing shipped models: every tensor of rank 2 or more is
    /// stored as I8 with one F32 scale per last-axis index (a net's output column or channel) in a
    /// companion tensor "<name>.scale" (value = int8 * scale), rank-1 tensors (biases) as F32; reading
    /// folds the scales back in. The metadata says so, for other tools.
    public enum DType: String, Sendable { case f32 = "F32", f16 = "F16", i8 = "I8" }

    /// Suffix of the scale tensor of an I8 tensor.
    public static let scaleSuffix = ".scale"
    static let quantizationNote = "I8 tensors: value = int8 * <name>.scale[last index]"

    /// The I8 values and per-last-axis scales of `t` (symmetric, the largest magnitude maps to 127).
    static func quantize(_ t: Entry) throws -> (q: [Int8], scale: [Float]) {
        if let bad = t.values.first(where: { !$0.isFinite }) {
            throw FormatError(path: "(int8 encoding)", reason: "tensor \(t.name) holds \(bad), which int8 cannot store")
        }
        let columns = max(t.shape.last ?? 1, 1), rows = t.values.count / columns
        var scale = [Float](repeating: 0, count: columns)
        for r in 0..<rows { for c in 0..<columns { scale[c] = max(scale[c], abs(t.values[r * columns + c])) } }
        for c in 0..<columns { scale[c] = scale[c] > 0 ? scale[c] / 127 : 1 }
        var q = [Int8](repeating: 0, count: t.values.count)
        for r in 0..<rows {
            for c in 0..<columns {
                // Clamped: a scale that underflowed to 0 makes the quotient infinite.
                q[r * columns + c] = Int8(min(max((t.values[r * columns + c] / scale[c]).rounded(), -127), 127))
            }
        }
        return (q, scale)
    }

    /// The tensors as written under `dtype`: each with its stored dtype (and its int8 values), scales added.
    private static func stored(_ file: File, dtype: DType) throws -> [(entry: Entry, dtype: DType, int8: [Int8]?)] {
        var out: [(entry: Entry, dtype: DType, int8: [Int8]?)] = []
        for t in file.tensors {
            guard dtype == .i8 else { out.append((t, dtype, nil)); continue }
            guard t.shape.count >= 2, !t.values.isEmpty else { out.append((t, .f32, nil)); continue }
            let (q, scale) = try quantize(t)
            out.append((t, .i8, q))
            out.append((Entry(name: t.name + scaleSuffix, shape: [scale.count], values: scale), .f32, nil))
        }
        return out
    }

    static func width(_ dtype: DType) -> Int {
        switch dtype { case .f32: 4; case .f16: 2; case .i8: 1 }
    }

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
        var metadata = file.metadata
        // The note describes this file's storage: a float copy of an int8 file must not keep it.
        if dtype == .i8 { metadata["quantization"] = quantizationNote } else { metadata.removeValue(forKey: "quantization") }
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        let items = try stored(file, dtype: dtype)
        var offset = 0
        for item in items {
            let t = item.entry
            precondition(t.shape.reduce(1, *) == t.values.count, "\(t.name): shape \(t.shape) vs \(t.values.count) values")
            let bytes = t.values.count * width(item.dtype)
            header[t.name] = ["dtype": item.dtype.rawValue, "shape": t.shape, "data_offsets": [offset, offset + bytes]]
            offset += bytes
        }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        while json.count % 8 != 0 { json.append(0x20) }  // pad so the data starts 8-byte aligned
        var out = Data(capacity: 8 + json.count + offset)
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(json)
        for item in items {
            switch item.dtype {
            case .f32:
                item.entry.values.withUnsafeBufferPointer { p in
                    for v in p { withUnsafeBytes(of: v.bitPattern.littleEndian) { out.append(contentsOf: $0) } }
                }
            case .f16:
                for v in item.entry.values { withUnsafeBytes(of: Float16(v).bitPattern.littleEndian) { out.append(contentsOf: $0) } }
            case .i8:
                item.int8!.withUnsafeBytes { out.append(contentsOf: $0) }
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
        var quantized: [String] = []
        for (name, value) in header {
            if name == "__metadata__" {
                metadata = (value as? [String: String]) ?? [:]
                continue
            }
            guard let info = value as? [String: Any], let dtypeName = info["dtype"] as? String,
                  let shape = info["shape"] as? [Int], let offsets = info["data_offsets"] as? [Int], offsets.count == 2
            else { throw fail("tensor \(name) has a malformed entry") }
            guard let dtype = DType(rawValue: dtypeName) else { throw fail("tensor \(name) has dtype \(dtypeName) (F32, F16 and I8 are read)") }
            // Checked arithmetic throughout: shapes and offsets come from the file and may be anything.
            guard shape.allSatisfy({ $0 >= 0 }) else { throw fail("tensor \(name): negative dimension in shape \(shape)") }
            let width = Self.width(dtype)
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
                values.withUnsafeMutableBufferPointer { v in
                    switch dtype {
                    case .f32:
                        for i in 0..<count { v[i] = Float(bitPattern: UInt32(littleEndian: p.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))) }
                    case .f16:
                        for i in 0..<count { v[i] = Float(Float16(bitPattern: UInt16(littleEndian: p.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)))) }
                    case .i8:
                        for i in 0..<count { v[i] = Float(p.load(fromByteOffset: i, as: Int8.self)) }
                    }
                }
            }
            tensors.append(Entry(name: name, shape: shape, values: values))
            if dtype == .i8 { quantized.append(name) }
        }
        // I8 tensors come back as float values times their scales; the scale tensors are then dropped.
        for name in quantized {
            let scaleName = name + scaleSuffix
            guard let t = tensors.firstIndex(where: { $0.name == name }),
                  let s = tensors.firstIndex(where: { $0.name == scaleName }) else {
                throw fail("I8 tensor \(name) has no F32 scale tensor \(scaleName)")
            }
            let columns = tensors[t].shape.last ?? 1
            guard tensors[s].shape == [columns] else {
                throw fail("scale tensor \(scaleName) has shape \(tensors[s].shape), expected [\(columns)] (the last axis of \(name))")
            }
            let scale = tensors[s].values
            tensors[t].values.withUnsafeMutableBufferPointer { v in
                var i = 0
                while i < v.count {
                    for c in 0..<columns { v[i + c] *= scale[c] }
                    i += columns
                }
            }
        }
        let scales = Set(quantized.map { $0 + scaleSuffix })
        tensors.removeAll { scales.contains($0.name) }
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
