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
    /// Passes for faces that come aligned (Kaggle's 96x96 faces), whose first crop is as good as a
    /// realigned one: on the aligned faces of the held-out people, 1 pass 2.233 px RMSE, 2 passes 2.029,
    /// 3 passes 2.055 (the nets track a face's size only weakly, so each further pass shrinks the
    /// predicted face a little; README, "Photo models"). A model with an `alignedCalibration` loads with
    /// its passes instead (3 for the bundled model: the calibration undoes that shrink).
    public var alignedFacePasses = 2
    /// The linear map of faces in Kaggle's framing onto their references, applied by `predictAligned`
    /// when it runs the passes the map was fitted on (a model that has one defaults to those passes).
    public var alignedCalibration: AlignedCalibration?
    /// Per net, 30 values in crop pixels added to its prediction (after mirror-averaging): the mean error
    /// of the net on perfectly aligned crops of its training people. A net trained with flips predicts
    /// a left-right symmetric answer, but the frames' labels sit about 0.5-0.8 px right of that (their
    /// convention, not the faces), a bias no weight can learn and mirror-averaging cancels (README,
    /// "Photo models").
    public var outputOffsets: [[Double]?]

    public init(nets: [Net], framing: BoxFraming?, defaultPasses: Int, maxBatch: Int? = nil) {
        precondition(!nets.isEmpty)
        self.nets = nets; self.framing = framing; self.defaultPasses = defaultPasses
        self.outputOffsets = nets.map { _ in nil }
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
    /// receives each face's final photo -> crop transform. `startAligned`: the first crops are as good
    /// as realigned ones, so the first pass runs as the later ones do (every net when they are averaged).
    public func predict(photos: [GrayPlane], faces: [Face], passes: Int? = nil, startAligned: Bool = false,
                        crops: UnsafeMutablePointer<Similarity>? = nil) -> [[Double]] {
        let n = faces.count
        guard n > 0 else { return [] }
        var transforms = faces.map(\.start)
        var points = [[Double]](repeating: [], count: n)
        let total = max(1, passes ?? defaultPasses)
        nets = nets.map { grown($0, toFit: n, cap: maxBatch) }
        for pass in 0..<total {
            let later = pass > 0 || startAligned
            let net = later ? nets.count - 1 : 0
            // The passes after the first may average every net: an ensemble.
            let passNets = later && ensembleLaterPasses ? Array(nets.indices) : [net]
            if pass > 0 {
                for i in 0..<n {
                    // A prediction that defines no face keeps the last crop.
                    if let t = CanonicalFace.alignment(for: points[i]) { transforms[i] = t }
                }
            }
            // The last pass averages over slightly moved crops too (each mapped back on its own).
            let jitters = pass == total - 1 && total > 1 ? finalJitters : [.identity]
            let outputs = nets[net].outputs
            var sum = [[Double]](repeating: [Double](repeating: 0, count: outputs), count: n)
            let runs = Double(jitters.count * passNets.count)
            for jitter in jitters {
                let moved = transforms.map { $0.then(jitter) }
                for k in passNets {
                    let p = run(k, photos: photos, faces: faces, transforms: moved)
                    for i in 0..<n { for c in 0..<outputs { sum[i][c] += p[i][c] / runs } }
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

    /// The last net alone (with its offset and mirror setting), one pass by default: the precise net.
    public func lastNetAlone() -> AlignedModel {
        let model = AlignedModel(nets: [nets[nets.count - 1]], framing: nil, defaultPasses: 1, maxBatch: maxBatch)
        model.outputOffsets = [outputOffsets[outputOffsets.count - 1]]
        model.mirrorAverage = mirrorAverage
        return model
    }

    /// No mirror-, jitter- or net-averaging: one net run per face and pass.
    public func averageNone() {
        mirrorAverage = false
        ensembleLaterPasses = false
        finalJitters = [.identity]
    }

    /// The mean error (reference - prediction, in crop pixels) of each net alone, as it runs here
    /// (mirror-averaged when set) but without its offset, on crops aligned by the reference points
    /// themselves: the `outputOffsets` to store. Faces whose points define no alignment are skipped;
    /// nil for a net when a value was never labelled.
    public func measureOutputOffsets(photos: [GrayPlane], references: [[Double]]) -> [[Double]?] {
        var faces: [Face] = [], refs: [[Double]] = []
        for (i, r) in references.enumerated() {
            if let t = CanonicalFace.alignment(for: r) { faces.append(Face(photo: i, start: t)); refs.append(r) }
        }
        guard !faces.isEmpty else { return nets.map { _ in nil } }
        let saved = outputOffsets
        defer { outputOffsets = saved }
        outputOffsets = nets.map { _ in nil }
        nets = nets.map { grown($0, toFit: faces.count, cap: maxBatch) }
        let transforms = faces.map(\.start)
        return nets.indices.map { k in
            let predicted = run(k, photos: photos, faces: faces, transforms: transforms)
            var sum = [Double](repeating: 0, count: nets[k].outputs), count = [Int](repeating: 0, count: nets[k].outputs)
            for i in faces.indices {
                let p = transforms[i].apply(predicted[i]), r = transforms[i].apply(refs[i])
                // A missing reference value is skipped; a NaN prediction is not (it makes the offset NaN).
                for c in 0..<min(p.count, r.count) where r[c].isFinite { sum[c] += r[c] - p[c]; count[c] += 1 }
            }
            guard count.allSatisfy({ $0 > 0 }) else { return nil }
            return zip(sum, count).map { $0 / Double($1) }
        }
    }

    /// Net `k` over every face's crop (mirror-averaged when set, its offset added); points back in
    /// photo pixels.
    func run(_ k: Int, photos: [GrayPlane], faces: [Face], transforms: [Similarity]) -> [[Double]] {
        let net = nets[k], offset = outputOffsets[k]
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
                var crop = (0..<net.outputs).map { Double(KeypointScale.pixels(out[j * net.outputs + $0])) }
                if let offset { for c in 0..<min(crop.count, offset.count) { crop[c] += offset[c] } }
                points[start + j] = transforms[start + j].inverse.apply(crop)
            }
            start += b
        }
        return points
    }

    /// Faces that come cropped in Kaggle's framing (each `start` maps its photo onto the 96x96 frame,
    /// then through `CanonicalFace.kaggleFrame`): `passes` passes (default `alignedFacePasses`), the
    /// first already as a later one; then, when they are the calibration's passes, the calibration,
    /// applied in the 96x96 frame. Points in photo pixels.
    public func predictAligned(photos: [GrayPlane], faces: [Face], passes: Int? = nil) -> [[Double]] {
        let total = max(1, passes ?? alignedFacePasses)
        var points = predict(photos: photos, faces: faces, passes: total, startAligned: true)
        guard let calibration = alignedCalibration, calibration.passes == total else { return points }
        let frameFromCrop = CanonicalFace.kaggleFrame.inverse
        for i in points.indices where points[i].count == AlignedCalibration.values {
            let toFrame = faces[i].start.then(frameFromCrop)
            points[i] = toFrame.inverse.apply(calibration.apply(toFrame.apply(points[i])))
        }
        return points
    }

    /// 96x96 faces (rows of 9216 values in 0...1) in Kaggle's framing, each its own photo:
    /// `predictAligned`, in pixels of the 96x96 frame (not clipped: what the calibration is fitted on).
    public func predictAligned(_ images: Tensor, passes: Int? = nil) -> [[Double]] {
        let n = images.shape[0], size = CanonicalFace.side * CanonicalFace.side
        let planes = (0..<n).map { GrayPlane(width: 96, height: 96, pixels: UnsafeBufferPointer(start: images.data + $0 * size, count: size)) }
        return predictAligned(photos: planes, faces: (0..<n).map { Face(photo: $0, start: CanonicalFace.kaggleFrame) }, passes: passes)
    }

    /// `predictAligned`, as Kaggle's files hold values (`kaggleValues`).
    public func predict(_ images: Tensor) -> [[Float]] {
        Self.kaggleValues(predictAligned(images))
    }

    /// Points in the 96x96 frame as Kaggle's files hold them: Float, clipped to [0, 96].
    public static func kaggleValues(_ points: [[Double]]) -> [[Float]] {
        points.map { $0.map { Float(min(max($0, 0), 96)) } }
    }

    // MARK: file

    static let prefix = "pass"
    /// Metadata key (after "passK_") of a net's output offset: a JSON array of crop pixels.
    static let offsetKey = "output_offset"

    /// One safetensors file: tensors "pass1.<name>" (and "pass2.<name>"), metadata model = "aligned",
    /// the architectures, the framing and the default passes.
    public static func save(nets: [(file: Safetensors.File, architecture: String)], framing: BoxFraming?, passes: Int,
                            outputOffsets: [[Double]?] = [], alignedCalibration: AlignedCalibration? = nil,
                            metadata: [String: String], path: String, dtype: Safetensors.DType) throws {
        var tensors: [Safetensors.Entry] = []
        var meta = metadata
        meta[AlignedCalibration.metadataKey] = alignedCalibration?.json
        meta["model"] = "aligned"
        meta["passes"] = "\(passes)"
        meta["framing"] = "aligned"
        if nets.count > 1 { meta["later_passes"] = "all nets" }
        if let framing {
            // Sorted keys: the same model gives the same bytes.
            let encoder = JSONEncoder()
            encoder.outputFormatting = .sortedKeys
            meta["box_framing"] = String(decoding: try encoder.encode(framing), as: UTF8.self)
        }
        for (k, n) in nets.enumerated() {
            meta["pass\(k + 1)_model"] = n.architecture
            meta.removeValue(forKey: "pass\(k + 1)_\(offsetKey)")
            if k < outputOffsets.count, let offset = outputOffsets[k] {
                meta["pass\(k + 1)_\(offsetKey)"] = "[" + offset.map { String(format: "%.4f", $0) }.joined(separator: ",") + "]"
            }
            for t in n.file.tensors where !t.name.hasPrefix("optimizer.") && !t.name.hasPrefix("best.") {
                tensors.append(.init(name: "\(prefix)\(k + 1).\(t.name)", shape: t.shape, values: t.values))
            }
        }
        try Safetensors.write(Safetensors.File(tensors: tensors, metadata: meta), path: path, dtype: dtype)
    }

    /// The nets of a photo model file as single-net files (tensors without their "passK." prefix), to
    /// write them again (with a new framing or new offsets).
    public static func netFiles(_ file: Safetensors.File, path: String) throws -> [(file: Safetensors.File, architecture: String)] {
        var nets: [(file: Safetensors.File, architecture: String)] = []
        var k = 1
        while let arch = file.metadata["pass\(k)_model"] {
            let p = "\(prefix)\(k)."
            let tensors = file.tensors.filter { $0.name.hasPrefix(p) }.map {
                Safetensors.Entry(name: String($0.name.dropFirst(p.count)), shape: $0.shape, values: $0.values)
            }
            nets.append((Safetensors.File(tensors: tensors, metadata: [:]), arch))
            k += 1
        }
        guard !nets.isEmpty else { throw CheckpointError(description: "\(path): an aligned model without nets (no pass1_model)") }
        return nets
    }

    public static func load(_ file: Safetensors.File, path: String, backend: Backend, maxBatch: Int) throws -> AlignedModel {
        let nets = try netFiles(file, path: path).enumerated().map { k, n in
            guard let arch = Preset.named(n.architecture)?.architecture else {
                throw CheckpointError(description: "\(path): unknown architecture '\(n.architecture)' for pass \(k + 1)")
            }
            return try loadPredictionNet(arch, from: n.file, prefix: "", path: "\(path) (pass \(k + 1))", backend: backend)
        }
        let stored = try corrections(file, path: path, outputs: nets.map(\.outputs))
        let passes = file.metadata["passes"].flatMap(Int.init) ?? 2
        let model = AlignedModel(nets: nets, framing: stored.framing, defaultPasses: max(1, passes), maxBatch: maxBatch)
        model.ensembleLaterPasses = file.metadata["later_passes"] == "all nets"
        model.outputOffsets = stored.offsets
        if let calibration = stored.calibration {
            model.alignedCalibration = calibration
            model.alignedFacePasses = calibration.passes
        }
        return model
    }

    /// What a photo model file stores beside its nets' weights, checked: the box framing, each net's
    /// output offset (`outputs[k]` values for net k) and the calibration for 96x96 faces. Read without
    /// building the nets (export-model writes them again).
    public static func corrections(_ file: Safetensors.File, path: String, outputs: [Int]) throws
        -> (framing: BoxFraming?, offsets: [[Double]?], calibration: AlignedCalibration?) {
        let framing = file.metadata["box_framing"].flatMap { try? JSONDecoder().decode(BoxFraming.self, from: Data($0.utf8)) }
        let offsets = try outputs.enumerated().map { k, count -> [Double]? in
            guard let text = file.metadata["pass\(k + 1)_\(offsetKey)"] else { return nil }
            guard let values = try? JSONDecoder().decode([Double].self, from: Data(text.utf8)),
                  values.count == count, values.allSatisfy(\.isFinite) else {
                throw CheckpointError(description: "\(path): pass\(k + 1)_\(offsetKey) is not \(count) finite numbers")
            }
            return values
        }
        let calibration = try file.metadata[AlignedCalibration.metadataKey].map { try AlignedCalibration(json: $0, path: path) }
        return (framing, offsets, calibration)
    }
}

