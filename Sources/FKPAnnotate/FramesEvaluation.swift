import Dispatch
import FKPAlign
import FKPDetect
import FKPEngine
import FKPImage
import FKPInference
import FKPIngest
import FKPNets
import FKPTensor
import Foundation

/// The whole photo path measured on labelled photos: detect, crop, passes, map back, compared with the
/// reference keypoints by NME (mean point distance / distance between the reference eye centres). Beside
/// it the same net with perfect crops (each face cut through its own reference alignment) and the mean
/// shape in both crops, so that detection, framing and localisation can be told apart.
public struct FramesReport: Sendable {
    public var photos = 0
    /// Photos where a detected box holds the reference face (both eye centres, nose tip inside it).
    public var found = 0
    /// NME per found face, detector in the loop, after the passes.
    public var detected: [Double] = []
    /// NME per face with a perfect crop and one pass of the last net.
    public var perfect: [Double] = []
    public var meanShapePerfect: [Double] = []
    public var meanShapeDetected: [Double] = []
    /// Mean distance per keypoint over the found faces, in inter-ocular distances.
    public var perKeypoint: [Double] = []
    public var seconds = 0.0
    /// Faces cut for a contact sheet (evenly spread over the found faces), when asked for.
    public var tiles: [Tile] = []

    /// A face cut through its final crop, with the predicted and reference points in tile pixels.
    public struct Tile: Sendable {
        public var side: Int
        /// Grey 0...1, side x side.
        public var pixels: [Float]
        public var predicted: [Double]
        public var reference: [Double]
        public var nme: Double
        public var label: String
    }

}

/// How the detector did on labelled photos (`evaluate --frames DIR --detection`).
public struct DetectionReport: Sendable {
    public var photos = 0
    /// Photos whose labelled face has a box (see FramesEvaluation.matchingBox).
    public var found = 0
    public var foundByPose: [FacePose: Int] = [:]
    /// Scores of the found faces' boxes.
    public var trueScores: [Int] = []
    /// Every box that holds no labelled face, with its photo.
    public var falseBoxes: [(photo: String, detection: Detection)] = []
    public var missed: [String] = []
    /// Wall time of detection alone (photos in parallel), and the pixels searched.
    public var seconds = 0.0
    public var pixels = 0
}

public enum FramesEvaluation {
    /// The detected box that holds the reference face: contains both eye centres and the nose tip; of
    /// several, the one whose centre is nearest the nose.
    public static func matchingBox(_ boxes: [FaceBox], reference k: [Double]) -> FaceBox? {
        func inside(_ b: FaceBox, _ x: Double, _ y: Double) -> Bool {
            x >= Double(b.x) && y >= Double(b.y) && x <= Double(b.x + b.width) && y <= Double(b.y + b.height)
        }
        let ok = boxes.filter { b in [0, 2, 20].allSatisfy { inside(b, k[$0], k[$0 + 1]) } }
        return ok.min { a, b in
            func d(_ b: FaceBox) -> Double {
                let cx = Double(b.x) + Double(b.width) / 2 - k[20], cy = Double(b.y) + Double(b.height) / 2 - k[21]
                return cx * cx + cy * cy
            }
            return d(a) < d(b)
        }
    }

    /// Runs the detector on every photo (in parallel); per photo the matching box or nil.
    public static func detect(_ images: [GrayImage], references: [[Double]], detector: FaceDetector) -> [FaceBox?] {
        detectAll(images, detector: detector).detections.enumerated().map { i, d in
            matchingBox(d.map(\.box), reference: references[i])
        }
    }

    /// Every box the detector finds on labelled photos, marked as holding the labelled face or not (the
    /// face is the `matchingBox`; any other box is not, as in `measureDetection`): the face verifier's
    /// training boxes (`train-verifier`).
    public static func labelledBoxes(_ images: [GrayImage], _ set: LandmarkSet, detector: FaceDetector) -> [[LabelledBox]] {
        detectAll(images, detector: detector).detections.enumerated().map { i, d in
            let match = matchingBox(d.map(\.box), reference: set.keypoints[i])
            return d.map { LabelledBox(x: Double($0.box.x), y: Double($0.box.y), width: Double($0.box.width), isFace: $0.box == match) }
        }
    }

    /// Every photo's detections (photos in parallel, one core each) and the wall time it took.
    static func detectAll(_ images: [GrayImage], detector: FaceDetector) -> (detections: [[Detection]], seconds: Double) {
        let slots = Slots<[Detection]>(count: images.count)
        let started = Date()
        DispatchQueue.concurrentPerform(iterations: images.count) { i in
            slots[i] = detector.detect(in: images[i], threads: 1)
        }
        return (slots.values.map { $0 ?? [] }, Date().timeIntervalSince(started))
    }

    /// The detector measured on labelled photos (one labelled face per photo): a face is found when a
    /// box holds both its eye centres and its nose tip; every other box is counted as false (photos of
    /// one person, so another box is a false face unless the photo shows a second, unlabelled person).
    public static func measureDetection(_ set: LandmarkSet, detector: FaceDetector) throws -> DetectionReport {
        let images = try ImageFile.readGray(paths: set.images)
        let (all, seconds) = detectAll(images, detector: detector)
        var r = DetectionReport()
        r.photos = set.count
        r.seconds = seconds
        r.pixels = images.reduce(0) { $0 + $1.width * $1.height }
        for (i, dets) in all.enumerated() {
            let match = matchingBox(dets.map(\.box), reference: set.keypoints[i])
            if let match, let d = dets.first(where: { $0.box == match }) {
                r.found += 1
                r.foundByPose[d.pose, default: 0] += 1
                r.trueScores.append(d.score)
            } else {
                r.missed.append(set.images[i])
            }
            for d in dets where d.box != match {
                r.falseBoxes.append((set.images[i], d))
            }
        }
        return r
    }

    /// Where `member`'s boxes sit relative to the frontal cascade's box of the same labelled face (both
    /// holding it), as the median shift over the photos where both find it: the `BoxShift` that moves
    /// its boxes onto the frontal framing. nil when no photo has both.
    public static func measureShift(_ set: LandmarkSet, frontal: FaceDetector.Member, member: FaceDetector.Member) throws
        -> (shift: BoxShift, faces: Int)? {
        let images = try ImageFile.readGray(paths: set.images)
        let slots = Slots<BoxShift>(count: images.count)
        DispatchQueue.concurrentPerform(iterations: images.count) { i in
            func box(_ m: FaceDetector.Member) -> FaceBox? {
                matchingBox(detectFaces(in: images[i], cascade: m.cascade, parameters: m.parameters, threads: 1), reference: set.keypoints[i])
            }
            guard let f = box(frontal), let o = box(member) else { return }
            let w = Double(o.width)
            slots[i] = BoxShift(dx: Double(f.x - o.x) / w, dy: Double(f.y - o.y) / w, size: Double(f.width) / w)
        }
        let shifts = slots.values.compactMap { $0 }
        guard !shifts.isEmpty else { return nil }
        return (BoxShift(dx: Statistics.median(shifts.map(\.dx)), dy: Statistics.median(shifts.map(\.dy)),
                         size: Statistics.median(shifts.map(\.size))), shifts.count)
    }

    /// The box -> crop mapping measured on labelled photos: the median of each face's own framing
    /// (medians: a few odd boxes must not move it).
    public static func calibrate(references: [[Double]], boxes: [FaceBox?]) -> (framing: BoxFraming, faces: Int)? {
        var dx: [Double] = [], dy: [Double] = [], size: [Double] = []
        for (k, box) in zip(references, boxes) {
            guard let b = box, let t = CanonicalFace.alignment(for: k) else { continue }
            let f = BoxFraming.of(alignment: t, x: Double(b.x), y: Double(b.y), width: Double(b.width))
            dx.append(f.dx); dy.append(f.dy); size.append(f.size)
        }
        guard !dx.isEmpty else { return nil }
        return (BoxFraming(dx: Statistics.median(dx), dy: Statistics.median(dy), size: Statistics.median(size)), dx.count)
    }

    /// A photo model runs its passes; a model for 96x96 faces gets one crop per face from the box, as
    /// annotate gave it before photo models (the old way, kept measurable side by side).
    public static func run(_ set: LandmarkSet, model: KeypointModel, framing: BoxFraming, detector: FaceDetector,
                           passes: Int? = nil, sheetFaces: Int = 0) throws -> FramesReport {
        let started = Date()
        let images = try ImageFile.readGray(paths: set.images)
        let boxes = detect(images, references: set.keypoints, detector: detector)
        let scaled = images.map { $0.pixels.map { $0 / 255 } }
        var report = FramesReport()
        report.photos = set.count
        var found: [Int] = []
        for i in 0..<set.count where boxes[i] != nil { found.append(i) }
        report.found = found.count
        let mean = CanonicalFace.meanShape
        withPlanes(scaled, sizes: images.map { ($0.width, $0.height) }) { planes in
            let starts = found.map { i -> Similarity in
                let b = boxes[i]!
                return framing.photoToCrop(x: Double(b.x), y: Double(b.y), width: Double(b.width))
            }
            var finalCrops = [Similarity](repeating: .identity, count: found.count)
            let faces = zip(found, starts).map { AlignedModel.Face(photo: $0, start: $1) }
            let detected = finalCrops.withUnsafeMutableBufferPointer { crops in
                (model as? AlignedModel)?.predict(photos: planes, faces: faces, passes: passes, crops: crops.baseAddress)
                    ?? { for j in 0..<faces.count { crops[j] = faces[j].start }; return predictCrops(model, planes, faces) }()
            }
            report.seconds = Date().timeIntervalSince(started)
            report.perKeypoint = [Double](repeating: 0, count: 15)
            for (j, i) in found.enumerated() {
                let ref = set.keypoints[i]
                report.detected.append(CanonicalFace.nme(predicted: detected[j], reference: ref))
                report.meanShapeDetected.append(CanonicalFace.nme(predicted: starts[j].inverse.apply(mean), reference: ref))
                let iod = CanonicalFace.interocular(ref)
                for p in 0..<15 {
                    let dx = detected[j][2 * p] - ref[2 * p], dy = detected[j][2 * p + 1] - ref[2 * p + 1]
                    report.perKeypoint[p] += (dx * dx + dy * dy).squareRoot() / iod / Double(found.count)
                }
            }
            if sheetFaces > 0 && !found.isEmpty {
                let side = 128, zoom = Similarity(a: Double(side) / Double(CanonicalFace.side), b: 0, tx: 0, ty: 0)
                for j in stride(from: 0, to: found.count, by: max(1, found.count / sheetFaces)).prefix(sheetFaces) {
                    let i = found[j], t = finalCrops[j].then(zoom)
                    var px = [Float](repeating: 0, count: side * side)
                    px.withUnsafeMutableBufferPointer { planes[i].warp(into: $0.baseAddress!, side: side, outToSource: t.inverse) }
                    report.tiles.append(.init(side: side, pixels: px, predicted: t.apply(detected[j]), reference: t.apply(set.keypoints[i]),
                                              nme: report.detected[j], label: set.persons[i]))
                }
            }
            // Perfect crops: every face (found or not), its own alignment, one pass of the last net.
            let aligned = (0..<set.count).compactMap { i in CanonicalFace.alignment(for: set.keypoints[i]).map { (i, $0) } }
            let perfectFaces = aligned.map { AlignedModel.Face(photo: $0.0, start: $0.1) }
            let perfect: [[Double]]
            if let photoModel = model as? AlignedModel {
                perfect = photoModel.lastNetAlone().predict(photos: planes, faces: perfectFaces, passes: 1)
            } else {
                perfect = predictCrops(model, planes, perfectFaces)
            }
            for (j, (i, t)) in aligned.enumerated() {
                report.perfect.append(CanonicalFace.nme(predicted: perfect[j], reference: set.keypoints[i]))
                report.meanShapePerfect.append(CanonicalFace.nme(predicted: t.inverse.apply(mean), reference: set.keypoints[i]))
            }
        }
        return report
    }

}

/// A photo model file from trained checkpoints: `first` runs pass 1, `second` (or `first`) the passes
/// after it; `first` may also be a photo model already, whose nets, framing, offsets and calibration
/// are kept. With `frames`, the detector box -> crop framing and each net's output offset are measured
/// on its training people (a calibration is then dropped unless fitted again). With `calibrationRows`
/// (a Kaggle CSV of labelled 96x96 faces of the people the nets were trained on), the calibration for
/// faces in Kaggle's framing is fitted with `calibrationPasses` passes. `firstFile` is `first` as read by
/// the caller.
public enum PhotoModelExport {
    public struct Made {
        public var nets: Int, bytes: Int, passes: Int
        /// The calibration fitted, and the RMSE (px) on its rows before and after it.
        public var calibration: (fitted: AlignedCalibration, before: Double, after: Double)?
    }

    /// Passes a calibration for 96x96 faces is fitted for unless told: those that measured best with it.
    public static let defaultCalibrationPasses = 3

    public static func write(first: String, firstFile: Safetensors.File, second: String?, frames: String?, cascade: String,
                             passes: Int?, calibrationRows: String? = nil, calibrationPasses: Int? = nil,
                             output: String, dtype: Safetensors.DType) throws -> Made {
        var nets: [(file: Safetensors.File, architecture: String)] = []
        var framing: BoxFraming?
        var usedPasses = passes ?? 2
        let isPhotoModel = firstFile.metadata["model"] == "aligned"
        var firstFile = firstFile
        // A calibration about to be fitted again replaces the input's, even a malformed one.
        if calibrationRows != nil { firstFile.metadata.removeValue(forKey: AlignedCalibration.metadataKey) }
        if isPhotoModel {
            guard second == nil else { throw FKPError.setup("\(first) is a photo model already; --second-pass adds a net to a single net's checkpoint") }
            try ModelFile.validate(firstFile, path: first, dtype: dtype)
            nets = try AlignedModel.netFiles(firstFile, path: first)
            usedPasses = passes ?? firstFile.metadata["passes"].flatMap(Int.init) ?? 2
        } else {
            for (path, f) in [(first, firstFile)] + (try second.map { [($0, try Safetensors.read(path: $0))] } ?? []) {
                guard let arch = f.metadata["model"], Preset.named(arch) != nil else {
                    throw FKPError.setup("\(path): not a single net's checkpoint (model '\(f.metadata["model"] ?? "")')")
                }
                try ModelFile.validate(f, path: path, dtype: dtype)
                nets.append((f, arch))
            }
        }
        // A photo model keeps its own metadata (what it was made from); a checkpoint's is the first net's.
        var meta = isPhotoModel ? firstFile.metadata : nets[0].file.metadata
        meta.removeValue(forKey: "trainer_state")
        meta.removeValue(forKey: "training_setup")
        if !isPhotoModel {
            meta["exported_from"] = ([first] + (second.map { [$0] } ?? [])).map { URL(fileURLWithPath: $0).lastPathComponent }
                .joined(separator: " + ")
        }
        // Framing, offsets and calibration as stored in the input, unless measured again below.
        var offsets: [[Double]?] = []
        var calibration: AlignedCalibration?
        if isPhotoModel {
            let outputs = nets.map { Preset.named($0.architecture)?.architecture.outputs ?? Keypoints.count }
            (framing, offsets, calibration) = try AlignedModel.corrections(firstFile, path: first, outputs: outputs)
        }
        // What is kept but was measured on the input's weights as stored (int8 or float).
        let storageChanges = isPhotoModel && (firstFile.metadata["quantization"] != nil) != (dtype == .i8)
        let stale = [offsets.contains { $0 != nil } && frames == nil ? "output offsets (--frames)" : nil,
                     calibration != nil && frames == nil && calibrationRows == nil ? "calibration (--calibrate-aligned)" : nil].compactMap { $0 }
        if storageChanges && !stale.isEmpty {
            Log.warn("\(first)'s \(stale.joined(separator: " and ")) were measured on its weights as stored; in another storage the weights round differently: measure again for exact values")
        }
        if let frames {
            offsets = try measureFraming(nets: nets, frames: frames, cascade: cascade, first: first, passes: usedPasses,
                                         metadata: meta, output: output, dtype: dtype, framing: &framing)
            if calibration != nil && calibrationRows == nil {
                Log.warn("the input's calibration for 96x96 faces was fitted with the old offsets and is dropped; fit it again with --calibrate-aligned")
                calibration = nil
            }
        }
        var fitted: (fitted: AlignedCalibration, before: Double, after: Double)?
        if let calibrationRows {
            fitted = try fitCalibration(rows: calibrationRows, passes: calibrationPasses ?? defaultCalibrationPasses, nets: nets,
                                        framing: framing, usedPasses: usedPasses, offsets: offsets, metadata: meta,
                                        output: output, dtype: dtype)
            calibration = fitted?.fitted
        }
        try AlignedModel.save(nets: nets, framing: framing, passes: usedPasses, outputOffsets: offsets,
                              alignedCalibration: calibration, metadata: meta, path: output, dtype: dtype)
        return Made(nets: nets.count, bytes: fileSize(atPath: output), passes: usedPasses, calibration: fitted)
    }

    /// The model as it will be stored (float16 and int8 round the weights), for measuring on it: written
    /// to a temporary file and read back.
    static func probe<R>(nets: [(file: Safetensors.File, architecture: String)], framing: BoxFraming?, passes: Int,
                         offsets: [[Double]?], metadata: [String: String], output: String, dtype: Safetensors.DType,
                         _ body: (AlignedModel) throws -> R) throws -> R {
        let probe = FileManager.default.temporaryDirectory.appendingPathComponent("fkp-export-\(UUID().uuidString).safetensors").path
        defer { try? FileManager.default.removeItem(atPath: probe) }
        try AlignedModel.save(nets: nets, framing: framing, passes: passes, outputOffsets: offsets, metadata: metadata,
                              path: probe, dtype: dtype)
        return try body(try AlignedModel.load(try Safetensors.read(path: probe), path: output, backend: CPUBackend(), maxBatch: 128))
    }

    /// Fits the calibration for faces in Kaggle's framing on the labelled rows of a Kaggle CSV.
    static func fitCalibration(rows path: String, passes: Int, nets: [(file: Safetensors.File, architecture: String)],
                               framing: BoxFraming?, usedPasses: Int, offsets: [[Double]?], metadata: [String: String],
                               output: String, dtype: Safetensors.DType) throws -> (fitted: AlignedCalibration, before: Double, after: Double) {
        let faces = try KaggleCSV.read(path: path).faces
        guard let keypoints = faces.keypoints else {
            throw FKPError.setup("\(path): no keypoint columns; --calibrate-aligned needs labelled rows")
        }
        let references = (0..<faces.count).map { r in (0..<Keypoints.count).map { Double(keypoints[r * Keypoints.count + $0]) } }
        let predicted = try probe(nets: nets, framing: framing, passes: usedPasses, offsets: offsets, metadata: metadata,
                                  output: output, dtype: dtype) { model -> [[Double]] in
            model.predictAligned(faces.images, passes: passes)
        }
        var calibration: AlignedCalibration
        do {
            calibration = try AlignedCalibration.fit(predictions: predicted, references: references, passes: passes)
            calibration.source = URL(fileURLWithPath: path).lastPathComponent
        } catch let error as AlignedCalibration.FitError {
            throw FKPError.setup("\(path): \(error)")
        }
        // Measured as `evaluate` measures what `predict` writes.
        func rmse(_ p: [[Double]]) -> Double { RMSEReport(predicted: AlignedModel.kaggleValues(p), truth: keypoints).overall }
        return (calibration, rmse(predicted), rmse(predicted.map { calibration.apply($0) }))
    }

    /// Measures the detector box -> crop framing and each net's output offset on the training people of
    /// `frames`; returns the offsets.
    static func measureFraming(nets: [(file: Safetensors.File, architecture: String)], frames: String, cascade: String,
                               first: String, passes: Int, metadata: [String: String], output: String,
                               dtype: Safetensors.DType, framing: inout BoxFraming?) throws -> [[Double]?] {
        let all = try LandmarkFiles.read(frames)
        let set = all.subset(all.trainingRows)
        let images = try ImageFile.readGray(paths: set.images)
        // The frontal cascade alone: the other cascades' boxes are moved onto its framing.
        let boxes = FramesEvaluation.detect(images, references: set.keypoints,
                                            detector: FaceDetector(frontal: try HaarCascade(contentsOf: cascade)))
        guard let cal = FramesEvaluation.calibrate(references: set.keypoints, boxes: boxes) else {
            throw FKPError.setup("\(frames): the detector found none of the \(set.count) training faces; cannot calibrate")
        }
        framing = cal.framing
        Log.info("box -> crop framing from \(cal.faces) of \(set.count) training faces: \(cal.framing)")
        // The offsets are measured on the weights as stored (float16 and int8 round them), without offsets.
        let offsets = try probe(nets: nets, framing: framing, passes: passes, offsets: [], metadata: metadata,
                                output: output, dtype: dtype) { written in
            withPlanes(images.map { $0.pixels.map { $0 / 255 } }, sizes: images.map { ($0.width, $0.height) }) {
                written.measureOutputOffsets(photos: $0, references: set.keypoints)
            }
        }
        for (k, o) in offsets.enumerated() {
            guard let o else { continue }
            guard o.allSatisfy(\.isFinite) else {
                throw FKPError.setup("\(first): net \(k + 1) predicts values that are not finite on the training faces of \(frames); no model written")
            }
            let x: [Double] = stride(from: 0, to: o.count, by: 2).map { o[$0] }
            let y: [Double] = stride(from: 1, to: o.count, by: 2).map { o[$0] }
            let xMean = x.reduce(0, +) / Double(x.count), yMean = y.reduce(0, +) / Double(y.count)
            let line = String(format: "x mean %+.2f px (%+.2f...%+.2f), y mean %+.2f px", xMean, x.min() ?? 0, x.max() ?? 0, yMean)
            Log.info("net \(k + 1) output offset from \(set.count) training faces: \(line)")
        }
        return offsets
    }
}

/// A 96x96-face model on one crop per face (cut through its start transform), back in photo pixels.
func predictCrops(_ model: KeypointModel, _ planes: [GrayPlane], _ faces: [AlignedModel.Face]) -> [[Double]] {
    guard !faces.isEmpty else { return [] }
    let size = CanonicalFace.side * CanonicalFace.side
    let images = Tensor(shape: [faces.count, size])
    DispatchQueue.concurrentPerform(iterations: faces.count) { j in
        planes[faces[j].photo].warp(into: images.data + j * size, side: CanonicalFace.side, outToSource: faces[j].start.inverse)
    }
    return zip(model.predict(images), faces).map { p, f in f.start.inverse.apply(p.map(Double.init)) }
}

/// Grey planes over pixel arrays (0...1), valid for the duration of `body`.
func withPlanes<R>(_ pixels: [[Float]], sizes: [(Int, Int)], _ body: ([GrayPlane]) throws -> R) rethrows -> R {
    let buffers = pixels.map { p -> UnsafeMutableBufferPointer<Float> in
        let b = UnsafeMutableBufferPointer<Float>.allocate(capacity: max(p.count, 1))
        _ = b.initialize(from: p)
        return b
    }
    defer { buffers.forEach { $0.deallocate() } }
    return try body(zip(buffers, sizes).map { GrayPlane(width: $1.0, height: $1.1, pixels: UnsafeBufferPointer($0)) })
}

extension BoxFraming {
    /// Where `model`'s first crop sits relative to a detector box: a photo model's measured framing (or
    /// the frames' default when it has none); for a 96x96-face model the framing annotate gives it,
    /// measured on training.csv's faces (CropMapping).
    public static func firstCrop(for model: KeypointModel) -> BoxFraming {
        if let photoModel = model as? AlignedModel { return photoModel.framing ?? .detectorDefault }
        let c = CropMapping.calibrated
        return BoxFraming(dx: c.dx, dy: c.dy, size: c.size)
    }
}
