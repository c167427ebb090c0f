import FKPEngine
import FKPNets
import FKPTensor
import Foundation

/// A trained model read from a safetensors file: its architecture comes from the metadata.
public enum ModelFile {
    /// A single net or a specialists bundle, whichever the file holds, for prediction: the nets hold
    /// no training buffers and start with room for one image, growing to the batches actually asked
    /// for, up to `maxBatch` (one face with net2 needs tens of MB, not the 818 MB of 128 training slots).
    public static func loadModel(path: String, backend: Backend, maxBatch: Int = 128) throws -> KeypointModel {
        try loadModel(try Safetensors.read(path: path), path: path, backend: backend, maxBatch: maxBatch)
    }

    public static func loadModel(_ file: Safetensors.File, path: String, backend: Backend, maxBatch: Int = 128) throws -> KeypointModel {
        if file.metadata["model"] == "aligned" {
            return try AlignedModel.load(file, path: path, backend: backend, maxBatch: maxBatch)
        }
        if file.metadata["model"] == "specialists" {
            return try SpecialistBundle.load(file, path: path, backend: backend, maxBatch: maxBatch)
        }
        return SingleNetModel(try load(file, path: path, backend: backend, maxBatch: 1, trainable: false), maxBatch: maxBatch)
    }

    /// Refuses what `loadModel` would refuse (metadata, shapes, NaN or infinite weights), and with
    /// `dtype` .f16 weights that float16 cannot hold: for writing model files that predict can read.
    public static func validate(_ file: Safetensors.File, path: String, dtype: Safetensors.DType = .f32) throws {
        _ = try loadModel(file, path: path, backend: CPUBackend(threads: 1), maxBatch: 1)
        guard dtype == .f16 else { return }
        let limit = Float(Float16.greatestFiniteMagnitude)
        for t in file.tensors where !t.name.hasPrefix("optimizer.") && !t.name.hasPrefix("best.") {
            if let v = t.values.first(where: { abs($0) > limit }) {
                throw CheckpointError(description: "\(path): tensor \(t.name) holds \(v), beyond float16's range (±65504)")
            }
        }
    }

    public static func load(path: String, backend: Backend, maxBatch: Int = 128, trainable: Bool = true) throws -> Net {
        try load(try Safetensors.read(path: path), path: path, backend: backend, maxBatch: maxBatch, trainable: trainable)
    }

    public static func load(_ file: Safetensors.File, path: String, backend: Backend, maxBatch: Int = 128,
                            trainable: Bool = true) throws -> Net {
        guard let name = file.metadata["model"] else {
            throw CheckpointError(description: "\(path): no 'model' entry in the metadata; not an fkp-batch model")
        }
        guard let arch = Preset.named(name)?.architecture else {
            throw CheckpointError(description: "\(path): unknown model '\(name)' (known: \(Preset.names.joined(separator: ", ")))")
        }
        let net = Net(arch, backend: backend, maxBatch: maxBatch, trainable: trainable)
        try net.load(file, path: path)
        return net
    }
}

/// Runs a net over many images (each 9216 floats in 0...1) and returns keypoints in pixels.
public func predictKeypoints(net: Net, images: Tensor) -> [[Float]] {
    let n = images.shape[0], size = net.inputSize, outs = net.outputs
    var result: [[Float]] = []
    result.reserveCapacity(n)
    let out = Tensor(shape: [net.maxBatch * outs])
    var start = 0
    while start < n {
        let b = min(net.maxBatch, n - start)
        net.backend.write(UnsafeBufferPointer(start: images.data + start * size, count: b * size), to: net.input, offset: 0)
        net.forward(batch: b, training: false)
        net.backend.read(net.output, offset: 0, into: UnsafeMutableBufferPointer(start: out.data, count: b * outs))
        for i in 0..<b {
            result.append((0..<outs).map { KeypointScale.clampedPixels(out[i * outs + $0]) })
        }
        start += b
    }
    return result
}

extension ModelFile {
    /// The model a command runs when given none: env FKP_MODEL, else samples/model.safetensors of the
    /// checkout the binary was built in, else the working directory's.
    public static var defaultPath: String {
        if let env = ProcessInfo.processInfo.environment["FKP_MODEL"] { return env }
        return samplesFile("model.safetensors")
    }

    /// A file that ships beside the bundled model (the face verifier, the HOG detector's filters): beside
    /// `model` (the model given to the command) or FKP_MODEL when it is there, else in samples/ of the
    /// checkout the binary was built in, else the working directory's.
    public static func bundledFile(_ name: String, beside model: String? = nil) -> String {
        for m in [model, ProcessInfo.processInfo.environment["FKP_MODEL"]].compactMap({ $0 }) {
            let beside = URL(fileURLWithPath: m).deletingLastPathComponent().appendingPathComponent(name).path
            if FileManager.default.fileExists(atPath: beside) { return beside }
        }
        return samplesFile(name)
    }

    /// samples/<name> of the checkout the binary was built in (up to 5 folders above it), else the
    /// working directory's.
    static func samplesFile(_ name: String) -> String {
        let exe = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        var dir = exe.deletingLastPathComponent()
        for _ in 0..<5 {
            let candidate = dir.appendingPathComponent("samples/\(name)").path
            if FileManager.default.fileExists(atPath: candidate) { return candidate }
            dir = dir.deletingLastPathComponent()
        }
        return "samples/\(name)"
    }

    /// `path`, or the default model; a load error names the default and how to give another.
    public static func loadModel(path: String?, backend: Backend) throws -> KeypointModel {
        do { return try loadModel(path: path ?? defaultPath, backend: backend) } catch {
            throw FKPError.setup("\(error)\(path == nil ? " (the default model; give one with --model)" : "")")
        }
    }
}
