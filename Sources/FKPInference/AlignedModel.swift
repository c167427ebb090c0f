import Dispatch
import FKPAlign
import FKPEngine
import FKPNets
import FKPTensor
import Foundation

/// A model for whole photos, used in passes: pass 1 cuts each face through its first photo -> crop
/// transform (from a detector box, or given); every later pass fits the similarity that takes the last
/// prediction onto the mean shape, cuts the face again through it (rotation included) and predicts
/// again; the points go back to the photo through the inverse. `nets[0]` runs pass 1, `nets.last` the
/// passes after it (a robust net for the coarse pass, a precise one for the fine passes), or all of
/// them averaged in the passes after the first.
public final class AlignedModel: KeypointModel {
    /// Built for prediction (no training buffers), grown to the batches asked for, up to `maxBatch`.
    public private(set) var nets: [Net]
    public let maxBatch: Int
    /// The detector box -> first crop mapping this model was calibrated with, when it was.
    public var framing: BoxFraming?
    /// Passes used when none is asked for.
    public var defaultPasses: Int
    /// Average each prediction with that of the mirrored crop (twice the net's work).
    public var mirrorAverage = true
    /// The passes after the first average the predictions of all nets, not only the last net's. With the
    /// coarse and the narrow net of the bundled model, on the held-out frames, median NME 0.0725 -> 0.0708
    /// (2 passes) and 0.0734 -> 0.0699 (3 passes); README, "Photo models".
    public var ensembleLaterPasses = false

    public init(nets: [Net], framing: BoxFraming?, defaultPasses: Int, maxBatch: Int? = nil) {
        precondition(!nets.isEmpty)
        self.nets = nets; self.framing = framing; self.defaultPasses = defaultPasses
        self.maxBatch = max(maxBatch ?? nets.map(\.maxBatch).max() ?? 1, 1)
    }

    public var name: String { "aligned" }

    /// One face to predict: which photo, and its first photo -> crop transform.
    public struct Face {
        public var photo: Int
        public var start: Similarity
        public init(photo: Int, start: Similarity) { self.photo = photo; self.start = start }
    }

    /// Keypoints (30 values, photo pixels) of every face, after `passes` passes. `crops`, when given,
    /// receives each face's final photo -> crop transform.
    public func predict(photos: [GrayPlane], faces: [Face], passes: Int? = nil,
                        crops: UnsafeMutablePointer<Similarity>? = nil) -> [[Double]] {
        let n = faces.count
        guard n > 0 else { return [] }
        var transforms = faces.map(\.start)
        var points = [[Double]](repeating: [], count: n)
        let total = max(1, passes ?? defaultPasses)
        nets = nets.map { grown($0, toFit: n, cap: maxBatch) }
        for pass in 0..<total {
            let net = pass == 0 ? nets[0] : nets[nets.count - 1]
            // The passes after the first may average every net: an ensemble.
            let passNets = pass > 0 && ensembleLaterPasses ? nets : [net]
            if pass > 0 {
                for i in 0..<n {
                    // A prediction that defines no face keeps the last crop.
                    if let t = CanonicalFace.alignment(for: points[i]) { transforms[i] = t }
                }
            }
            // The last pass averages over slightly moved crops too (each mapped back on its own).
            let jitters = pass == total - 1 && total > 1 ? finalJitters : [.identity]
            var sum = [[Double]](repeating: [Double](repeating: 0, count: net.outputs), count: n)
            let runs = Double(jitters.count * passNets.count)
            for jitter in jitters {
                let moved = transforms.map { $0.then(jitter) }
                for net in passNets {
                    let p = run(net, photos: photos, faces: faces, transforms: moved)
                    for i in 0..<n { for c in 0..<net.outputs { sum[i][c] += p[i][c] / runs } }
                }
            }
            points = sum
        }
        if let crops { for i in 0..<n { crops[i] = transforms[i] } }
        return points
    }

    /// Small moves of the final crop (about the crop centre) whose predictions are averaged: as is, 8%
    /// larger and smaller. On the held-out frames (bundled model: two nets, 3 passes, ensemble) the median
    /// NME was 0.0705 with no moves, 0.0699 with these, 0.0699 with turns of 0.08 rad added (dropped: two
    /// more runs of every net), 0.0712 with shifts of 4% added.
    public var finalJitters: [Similarity] = {
        let c = CanonicalFace.center, d = 0.08
        return [.identity, Similarity(angle: 0, scale: 1 + d, center: c), Similarity(angle: 0, scale: 1 / (1 + d), center: c)]
    }()

    /// No mirror-, jitter- or net-averaging: one net run per face and pass.
    public func averageNone() {
        mirrorAverage = false
        ensembleLaterPasses = false
        finalJitters = [.identity]
    }

    /// One net over every face's crop (mirror-averaged when set); points back in photo pixels.
    func run(_ net: Net, photos: [GrayPlane], faces: [Face], transforms: [Similarity]) -> [[Double]] {
        let n = faces.count, side = CanonicalFace.side, size = side * side
        var points = [[Double]](repeating: [], count: n)
        let mirrorAverage = self.mirrorAverage
        var start = 0
        var batchImages = [Float](repeating: 0, count: min(n, net.maxBatch) * size)
        var out = [Float](repeating: 0, count: min(n, net.maxBatch) * net.outputs)
        while start < n {
            let b = min(net.maxBatch, n - start)
            batchImages.withUnsafeMutableBufferPointer { buf in
                let base = buf.baseAddress!
                DispatchQueue.concurrentPerform(iterations: b) { j in
                    let f = faces[start + j]
                    photos[f.photo].warp(into: base + j * size, side: side, outToSource: transforms[start + j].inverse)
                }
                net.backend.write(UnsafeBufferPointer(start: base, count: b * size), to: net.input, offset: 0)
            }
            net.forward(batch: b, training: false)
            out.withUnsafeMutableBufferPointer { net.backend.read(net.output, offset: 0, into: UnsafeMutableBufferPointer(start: $0.baseAddress!, count: b * net.outputs)) }
            if mirrorAverage {
                // The same crops mirrored, predicted, mirrored back and averaged with the plain ones:
                // the net's left/right biases cancel (measured in the README).
                var mirrored = [Float](repeating: 0, count: b * net.outputs)
                batchImages.withUnsafeMutableBufferPointer { buf in
                    for j in 0..<b { mirrorImageInPlace(buf.baseAddress! + j * size) }
                    net.backend.write(UnsafeBufferPointer(start: buf.baseAddress!, count: b * size), to: net.input, offset: 0)
                }
                net.forward(batch: b, training: false)
                mirrored.withUnsafeMutableBufferPointer { net.backend.read(net.output, offset: 0, into: UnsafeMutableBufferPointer(start: $0.baseAddress!, count: b * net.outputs)) }
                for j in 0..<b {
                    mirrored.withUnsafeMutableBufferPointer { mirrorTargets($0.baseAddress! + j * net.outputs, pairs: keypointFlipPairs, count: net.outputs) }
                    for c in 0..<net.outputs { out[j * net.outputs + c] = (out[j * net.outputs + c] + mirrored[j * net.outputs + c]) / 2 }
                }
            }
            for j in 0..<b {
                let crop = (0..<net.outputs).map { Double(KeypointScale.pixels(out[j * net.outputs + $0])) }
                points[start + j] = transforms[start + j].inverse.apply(crop)
            }
            start += b
        }
        return points
    }

    /// 96x96 faces (rows of 9216 values in 0...1), each its own photo framed as the canonical crop:
    /// the passes as for photos, the result in the 96x96 frame clipped to [0, 96] (Kaggle's files).
    public func predict(_ images: Tensor) -> [[Float]] {
        let n = images.shape[0], size = CanonicalFace.side * CanonicalFace.side
        let planes = (0..<n).map { GrayPlane(width: 96, height: 96, pixels: UnsafeBufferPointer(start: images.data + $0 * size, count: size)) }
        return predict(photos: planes, faces: (0..<n).map { Face(photo: $0, start: .identity) })
            .map { $0.map { Float(min(max($0, 0), 96)) } }
    }

    // MARK: file

    static let prefix = "pass"

    /// One safetensors file: tensors "pass1.<name>" (and "pass2.<name>"), metadata model = "aligned",
    /// the architectures, the framing and the default passes.
    public static func save(nets: [(file: Safetensors.File, architecture: String)], framing: BoxFraming?, passes: Int,
                            metadata: [String: String], path: String, dtype: Safetensors.DType) throws {
        var tensors: [Safetensors.Entry] = []
        var meta = metadata
        meta["model"] = "aligned"
        meta["passes"] = "\(passes)"
        meta["framing"] = "aligned"
        if nets.count > 1 { meta["later_passes"] = "all nets" }
        if let framing { meta["box_framing"] = String(decoding: try JSONEncoder().encode(framing), as: UTF8.self) }
        for (k, n) in nets.enumerated() {
            meta["pass\(k + 1)_model"] = n.architecture
            for t in n.file.tensors where !t.name.hasPrefix("optimizer.") && !t.name.hasPrefix("best.") {
                tensors.append(.init(name: "\(prefix)\(k + 1).\(t.name)", shape: t.shape, values: t.values))
            }
        }
        try Safetensors.write(Safetensors.File(tensors: tensors, metadata: meta), path: path, dtype: dtype)
    }

    public static func load(_ file: Safetensors.File, path: String, backend: Backend, maxBatch: Int) throws -> AlignedModel {
        var nets: [Net] = []
        var k = 1
        while let archName = file.metadata["pass\(k)_model"] {
            guard let arch = Preset.named(archName)?.architecture else {
                throw CheckpointError(description: "\(path): unknown architecture '\(archName)' for pass \(k)")
            }
            nets.append(try loadPredictionNet(arch, from: file, prefix: "\(prefix)\(k).", path: "\(path) (pass \(k))", backend: backend))
            k += 1
        }
        guard !nets.isEmpty else { throw CheckpointError(description: "\(path): an aligned model without nets (no pass1_model)") }
        let framing = file.metadata["box_framing"].flatMap { try? JSONDecoder().decode(BoxFraming.self, from: Data($0.utf8)) }
        let passes = file.metadata["passes"].flatMap(Int.init) ?? 2
        let model = AlignedModel(nets: nets, framing: framing, defaultPasses: max(1, passes), maxBatch: maxBatch)
        model.ensembleLaterPasses = file.metadata["later_passes"] == "all nets"
        return model
    }
}

