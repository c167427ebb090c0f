import FKPEngine
import FKPTensor
import Foundation


public struct CheckpointError: Error, CustomStringConvertible {
    public let description: String
    public init(description: String) { self.description = description }
}

extension Net {
    /// Metadata keys every fkp-batch checkpoint carries (strings, as safetensors requires).
    public static let layoutNote =
        "NHWC images; conv weights [kh,kw,cin,cout]; dense weights [in,out]; conv features flattened in HWC order"
    public static let scalingNote = "x = pixel / 255; y = (v - 48) / 48; v = y * 48 + 48 clipped to [0, 96]"

    /// The metadata every fkp-batch model file carries, added to `metadata`: the 30 keypoint names when
    /// the model predicts all of them (otherwise `metadata`'s own entry stays), input scaling, layout, format.
    public static func describing(_ metadata: [String: String], allKeypoints: Bool = true) -> [String: String] {
        var meta = metadata
        if allKeypoints { meta["keypoints"] = Keypoints.columns.joined(separator: ",") }
        meta["input_scaling"] = scalingNote
        meta["layout"] = layoutNote
        meta["format"] = "fkp-batch 1"
        return meta
    }

    /// Saves the weights (and, for resuming, the velocities) with a metadata entry describing the model.
    public func save(path: String, metadata: [String: String], includeVelocity: Bool = false,
                     dtype: Safetensors.DType = .f32, extra: [Safetensors.Entry] = []) throws {
        var entries = exportParameters().map { Safetensors.Entry(name: $0.name, shape: $0.shape, values: $0.values) } + extra
        if includeVelocity {
            entries += parameters.map {
                Safetensors.Entry(name: "optimizer.velocity.\($0.name)", shape: $0.shape, values: backend.download($0.velocity))
            }
        }
        var meta = metadata
        meta["model"] = meta["model"] ?? architecture.name
        meta = Net.describing(meta, allKeypoints: architecture.outputs == Keypoints.count)
        try Safetensors.write(Safetensors.File(tensors: entries, metadata: meta), path: path, dtype: dtype)
    }

    /// Loads weights (and velocities when present and asked for) by name; shapes must match exactly.
    public func load(_ file: Safetensors.File, path: String, velocities: Bool = false) throws {
        for p in parameters {
            guard let e = file[p.name] else {
                throw CheckpointError(description: "\(path): tensor \(p.name) is missing (is this a \(architecture.name) model?)")
            }
            guard e.shape == p.shape else {
                throw CheckpointError(description: "\(path): tensor \(p.name) has shape \(e.shape), \(architecture.name) needs \(p.shape)")
            }
            try Net.requireFinite(e, path: path)
            e.values.withUnsafeBufferPointer { backend.write($0, to: p.value, offset: 0) }
            if velocities && trainable, let v = file["optimizer.velocity.\(p.name)"], v.shape == p.shape {
                try Net.requireFinite(v, path: path)
                v.values.withUnsafeBufferPointer { backend.write($0, to: p.velocity, offset: 0) }
            }
        }
    }

    /// A NaN or infinite weight makes every prediction NaN (blank keypoints): refused when a model is read.
    public static func requireFinite(_ e: Safetensors.Entry, path: String) throws {
        let bad = e.values.reduce(0) { $0 + ($1.isFinite ? 0 : 1) }
        guard bad == 0 else {
            let first = e.values.firstIndex { !$0.isFinite }!
            throw CheckpointError(description: "\(path): tensor \(e.name) has \(bad) NaN or infinite value\(bad == 1 ? "" : "s") "
                + "(the first at index \(first): \(e.values[first])); the model is damaged")
        }
    }
}
