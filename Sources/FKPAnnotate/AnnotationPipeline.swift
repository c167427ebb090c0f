import Dispatch
import FKPAlign
import FKPDetect
import FKPEngine
import FKPExport
import FKPImage
import FKPInference
import FKPTensor
import Foundation

/// How annotate finds and crops faces.
public struct AnnotationSettings: Sendable {
    /// Folder for the annotated PNGs; nil writes none.
    public var output: String?
    public var skipExisting = false
    /// nil: each image is one face that is already cropped.
    public var cascadePath: String? = HaarCascade.defaultPath
    /// The profile cascade, run as trained and mirrored beside the frontal one; nil: frontal faces only.
    public var profileCascadePath: String? = HaarCascade.profilePath
    /// Which detectors find the faces. Switch with `init(detector:)`, which sets the checks that go with
    /// each (the face verifier for the HOG detector's weak faces).
    public var faceDetector = AnnotationSettings.defaultDetector
    /// The model the command runs (nil: the default): the bundled verifier and HOG filters are looked for
    /// beside it first (`ModelFile.bundledFile`).
    public var modelPath: String?
    /// The HOG detector's filters (`HOGFaceFile`); nil: the bundled `face-hog.safetensors`.
    public var hogPath: String? = nil
    /// Added to its filters' thresholds (dlib's own is 0). At -0.5, with the learned face verifier on
    /// faces of fewer than 5 windows, it finds all 90 faces of ../shared/data/photos with 1 false box and
    /// 632 of the 638 held-out frames (README, "The HOG detector").
    public var hogThreshold: Double = -0.5
    public var hogUpsample = true
    /// The frontal cascade takes faces from 3 neighbours (OpenCV's default is 5): weak faces (below
    /// `verifyBelow`) must be confirmed by the verifier, which turns down most false ones.
    public var detection: DetectionParameters = { var p = DetectionParameters(); p.minNeighbors = 3; return p }()
    public var profileDetection = FaceDetector.profileDefaults
    /// Faces with a lower detection score are dropped.
    public var minScore = 0
    /// The cascade that must confirm faces scoring below `verifyBelow` (nil: none is checked).
    public var verifierPath: String? = HaarCascade.verifierPath
    public var verifyBelow: Int? = 20
    public var verifyNeighbors = 1
    /// The learned face verifier (`FaceVerifier`, a file, `AnnotationSettings.bundled` or nil: none, the
    /// default with the cascades; README, "annotate", says why):
    /// faces scoring below `faceVerifyBelow` must pass it, at its file's threshold unless
    /// `faceVerifierThreshold` says otherwise; faces found only by the rotation sweep at
    /// `rotationVerifierThreshold`.
    public var faceVerifierPath: String? = nil
    public var faceVerifierThreshold: Float?
    public var faceVerifyBelow = 20
    /// The detectors annotate runs unless told otherwise.
    public static let defaultDetector = FaceDetectorKind.hog
    /// `faceVerifierPath` naming the bundled verifier, found beside `modelPath` when it is there.
    public static let bundled = "bundled"

    public var rotationVerifierThreshold: Float = 0.8
    /// The rotation sweep for tilted heads (`FaceDetector.rotations`): angles in degrees, empty for none.
    public var rotations: [Double] = []
    /// Its frontal search (the frontal cascade's parameters unless changed) and the score a face found
    /// only there needs.
    public var rotationDetection: DetectionParameters? = nil
    public var rotationMinScore = 6
    /// Cores for a lone photo's detector scales (photos of a chunk otherwise run one per core).
    public var threads = WorkerPool.defaultThreads
    /// Photos decoded and detected together; all their faces go through the net as one batch.
    public var chunk = 8
    /// A photo model's passes (nil: the model's own default).
    public var passes: Int?
    /// A photo model's mirror- and jitter-averaging (off: 12x fewer net runs per face, a little less precise).
    public var averaging = true
    /// The settings for a detector: with the HOG detector alone, the learned face verifier (bundled beside
    /// the model) checks every face that fewer than 5 windows found; the cascades keep the alt2 check.
    public init(detector: FaceDetectorKind = AnnotationSettings.defaultDetector) {
        faceDetector = detector
        if detector == .hog {
            faceVerifierPath = AnnotationSettings.bundled
            faceVerifyBelow = 5
        }
    }
}

extension AnnotationSettings {
    /// Every box a cascade finds with a single neighbour, at a finer scale step and (profiles) from 30 px,
    /// unchecked: more of the cascades' mistakes than annotate ever sees, for the face verifier to learn
    /// from (`train-verifier`).
    public static var looseCandidates: AnnotationSettings {
        var s = AnnotationSettings(detector: .cascade)
        s.detection.minNeighbors = 1
        s.detection.scaleFactor = 1.05
        s.profileDetection.minNeighbors = 1
        s.profileDetection.scaleFactor = 1.1
        s.profileDetection.minSize = 30
        s.verifierPath = nil
        s.faceVerifierPath = nil
        return s
    }

    func hogDetector() throws -> HOGDetector {
        var hog = HOGDetector(bank: try HOGFaceFile.load(path: hogPath ?? HOGFaceFile.defaultPath(beside: modelPath)))
        hog.threshold = hogThreshold
        hog.upsample = hogUpsample
        return hog
    }

    /// The detector these settings describe (nil with no cascade: every image is one cropped face).
    public func detector() throws -> FaceDetector? {
        guard let cascadePath else { return nil }
        var d: FaceDetector
        if faceDetector == .hog {
            guard rotations.allSatisfy({ $0 == 0 }) else {
                throw DetectorSettingsError(description: "the rotation sweep runs the frontal cascade: use it with --detector cascade or hog+cascade")
            }
            d = FaceDetector(hog: try hogDetector(), shift: HOGFaceFile.frontalShift)
        } else {
            let frontal = try HaarCascade(contentsOf: cascadePath)
            d = try profileCascadePath.map {
                FaceDetector(frontal: frontal, profile: try HaarCascade(contentsOf: $0), parameters: detection, profileParameters: profileDetection)
            } ?? FaceDetector(frontal: frontal, parameters: detection)
            if let verifierPath, let verifyBelow {
                d.verifier = try HaarCascade(contentsOf: verifierPath)
                d.verifyBelow = verifyBelow
                d.verifyNeighbors = verifyNeighbors
            }
        }
        d.minScore = minScore
        if faceDetector == .hogAndCascade {
            d.hog = try hogDetector()
            d.hogShift = HOGFaceFile.frontalShift
        }
        if let given = faceVerifierPath {
            let faceVerifierPath = given == AnnotationSettings.bundled ? FaceVerifier.defaultPath(beside: modelPath) : given
            // A small net: on one CPU thread beside the detector's own work, whatever runs the keypoint net.
            let verifier = try FaceVerifier.load(path: faceVerifierPath, backend: CPUBackend(threads: 1))
            d.boxCheck = { image, boxes in
                let plane = image.pixels.map { $0 / 255 }
                return plane.withUnsafeBufferPointer { px in
                    verifier.scores(GrayPlane(width: image.width, height: image.height, pixels: px),
                                    boxes: boxes.map { (Double($0.x), Double($0.y), Double($0.width)) })
                }
            }
            d.checkBelow = faceVerifyBelow
            d.checkThreshold = faceVerifierThreshold ?? verifier.threshold
            d.rotationCheckThreshold = rotationVerifierThreshold
        }
        d.rotations = rotations
        d.rotationParameters = rotationDetection ?? detection
        d.rotationMinScore = rotationMinScore
        return d
    }
}

/// Which detectors find the faces (`AnnotationSettings.faceDetector`).
public enum FaceDetectorKind: String, Sendable, CaseIterable {
    /// OpenCV's frontal cascade (weak faces checked by alt2) and profile cascade.
    case cascade
    /// The HOG detector alone (dlib's frontal face filters: front, half-profiles, tilted).
    case hog
    /// The HOG detector and both cascades (its faces not checked by alt2).
    case hogAndCascade = "hog+cascade"
}

public struct DetectorSettingsError: Error, CustomStringConvertible {
    public let description: String
}

/// What a run did, with the time spent in each stage (summed over threads).
public struct AnnotationSummary: Sendable {
    public var photos = 0, faces = 0, skipped = 0, failed = 0
    public var seconds = 0.0
    public var stageSeconds: [String: Double] = [:]
    public static let stages = ["decode", "detect", "net", "draw+encode"]

    public var line: String {
        String(format: "%d photo%@, %d face%@ in %.2f s (%.1f photos/s, %.1f faces/s)%@%@", photos,
               photos == 1 ? "" : "s", faces, faces == 1 ? "" : "s", seconds,
               Double(photos) / max(seconds, 1e-9), Double(faces) / max(seconds, 1e-9),
               skipped > 0 ? ", \(skipped) skipped (existing)" : "", failed > 0 ? ", \(failed) failed" : "")
    }

    public var stagesLine: String {
        String(format: "stages (summed over threads): %@; wall %.2f s",
               Self.stages.map { String(format: "%@ %.2f s", $0, stageSeconds[$0] ?? 0) }.joined(separator: ", "), seconds)
    }
}

/// The photo pipeline: paths in -> decode -> detect -> crop -> net -> map back to photo pixels -> records
/// (in input order) and annotated PNGs out. Photos go through in chunks: decode, detect and crop in
/// parallel, all faces of the chunk through the net as one batch, then draw and encode in parallel.
public final class AnnotationPipeline {
    public let model: KeypointModel
    public let settings: AnnotationSettings
    let detector: FaceDetector?

    /// Loads the model (the bundled one when `modelPath` is nil) and the cascade; set-up errors throw.
    public init(modelPath: String?, device: DeviceChoice, threads: Int?, settings: AnnotationSettings) throws {
        var settings = settings
        if settings.modelPath == nil { settings.modelPath = modelPath }
        self.settings = settings
        model = try ModelFile.loadModel(path: modelPath, backend: try device.makeBackend(threads: threads))
        if let photoModel = model as? AlignedModel, !settings.averaging { photoModel.averageNone() }
        do { detector = try settings.detector() } catch { throw FKPError.setup("\(error)") }
    }

    /// Annotates `inputs` (files, folders or "-"), or the `shard` of them, writing records to `records`.
    /// Bad photos are logged and counted in `failed`; nothing here throws once the run has started.
    public func run(inputs: [String], shard: Shard?, records: FaceRecordWriter) throws -> AnnotationSummary {
        var (photos, missing) = PhotoInputs.collect(inputs)
        var summary = AnnotationSummary()
        for m in missing { Log.error("\(m): no such file or folder"); summary.failed += 1 }
        if let shard { photos = shard.select(photos) }
        let guardian = OutputGuard(inputs: photos.map(\.path))
        if let output = settings.output {
            try guardian.prepare(folder: output)
            OutputGuard.removeStaleTemporaries(in: output)
        }
        records.header()
        let progress = ProgressLine(totalEpochs: 1)
        let started = Date()
        var start = 0
        while start < photos.count {
            let chunk = Array(photos[start..<min(start + settings.chunk, photos.count)])
            start += chunk.count
            let jobs = chunk.map { photo -> Job in
                let out = settings.output.map { URL(fileURLWithPath: $0).appendingPathComponent(photo.output).path }
                var job = Job(path: photo.path, output: out)
                if let out {
                    if let refusal = guardian.refusal(file: out) { job.error = refusal + "; skipped" }
                    else if settings.skipExisting && FileManager.default.fileExists(atPath: out) { job.skip = true }
                }
                return job
            }
            let found = detectAndCrop(jobs)
            let t0 = Date()
            let points = predict(found)
            summary.stageSeconds["net", default: 0] += Date().timeIntervalSince(t0)
            // The chunk's records reach stdout before any of its annotated PNGs exists: a photo whose PNG
            // exists has its records written, so a retry with --skip-existing after a kill loses none
            // (a killed run's records of photos without a PNG are written again by the retry; see
            // scripts/merge-records.sh).
            for i in jobs.indices {
                let f = found[i]
                summary.stageSeconds["decode", default: 0] += f?.decodeSeconds ?? 0
                summary.stageSeconds["detect", default: 0] += f?.detectSeconds ?? 0
                if let error = jobs[i].error ?? f?.error {
                    Log.error(error)
                    summary.failed += 1
                    continue
                }
                if jobs[i].skip { summary.skipped += 1; continue }
                let faces = f?.faces ?? []
                if faces.isEmpty { Log.warn("\(jobs[i].path): no face found") }
                records.records(file: jobs[i].path, faces: zip(faces, points[i]).map { d, p in
                    FaceRecord(x: d.box.x, y: d.box.y, width: d.box.width, height: d.box.height, score: d.score,
                               pose: detector == nil ? "" : d.pose.rawValue, points: p)
                })
                summary.faces += faces.count
            }
            records.flush()
            let drawn = draw(jobs, found, points)
            for i in jobs.indices {
                summary.stageSeconds["draw+encode", default: 0] += drawn[i]?.seconds ?? 0
                // The records are out; the photo still counts as failed when its PNG could not be written.
                if let error = drawn[i]?.error {
                    Log.error("\(jobs[i].path): \(error)")
                    summary.failed += 1
                }
            }
            summary.photos += chunk.count
            progress.items(summary.photos, of: photos.count, noun: "photos", since: started)
        }
        progress.clear()
        records.flush()
        summary.photos = photos.count
        summary.seconds = Date().timeIntervalSince(started)
        return summary
    }

    /// A photo's input: read-only once the chunk's workers start.
    struct Job: Sendable {
        var path: String
        var output: String?
        var skip = false
        var error: String?
    }

    /// What decode + detect + crop made of one photo.
    struct Found: Sendable {
        var rgb: RGBImage?
        var faces: [Detection] = []
        var frames: [FaceFrame] = []
        var crops: [[Float]] = []
        /// For a photo model: the grey photo in 0...1 and each face's first photo -> crop transform.
        var plane: (width: Int, height: Int, pixels: [Float])?
        var starts: [Similarity] = []
        var error: String?
        var decodeSeconds = 0.0, detectSeconds = 0.0
    }

    struct Drawn: Sendable {
        var error: String?
        var seconds = 0.0
    }

    /// Decode, detect and crop each photo of the chunk on its own core; each worker writes only its slot.
    func detectAndCrop(_ jobs: [Job]) -> [Found?] {
        let slots = Slots<Found>(count: jobs.count)
        let lone = jobs.count == 1
        DispatchQueue.concurrentPerform(iterations: jobs.count) { i in
            let job = jobs[i]
            guard job.error == nil, !job.skip else { return }
            slots[i] = decodeDetectCrop(job.path, detectorThreads: lone ? settings.threads : 1)
        }
        return slots.values
    }

    func decodeDetectCrop(_ path: String, detectorThreads: Int) -> Found {
        let t0 = Date()
        let rgb: RGBImage
        do { rgb = try ImageFile.readRGB(path: path) } catch { return Found(error: "\(error)") }
        let gray = PNGCodec.gray(rgb)
        let t1 = Date()
        var found = Found(rgb: rgb)
        if let detector {
            found.faces = detector.detect(in: gray, threads: detectorThreads)
            for f in found.faces.map(\.box) {
                if let photoModel {
                    found.starts.append(BoxFraming.firstCrop(for: photoModel)
                        .photoToCrop(x: Double(f.x), y: Double(f.y), width: Double(f.width)))
                } else {
                    let c = CropMapping.calibrated.crop(for: f)
                    found.frames.append(FaceFrame(x: c.x, y: c.y, side: c.side))
                    found.crops.append(cropFace(gray, x: c.x, y: c.y, side: c.side))
                }
            }
        } else {
            found.faces = [Detection(box: FaceBox(x: 0, y: 0, width: gray.width, height: gray.height, neighbors: 0), score: 0, pose: .frontal)]
            if photoModel != nil {
                // The image is a face cropped as Kaggle's are (as `predict` takes PNG faces): its width maps
                // to 96 pixels, then Kaggle's framing to the canonical crop.
                let s = Double(CanonicalFace.side) / Double(gray.width)
                found.starts = [Similarity(a: s, b: 0, tx: 0, ty: 0).then(CanonicalFace.kaggleFrame)]
            } else {
                found.frames = [FaceFrame(x: 0, y: 0, width: Double(gray.width), height: Double(gray.height))]
                found.crops = [gray.faceInput()]
            }
        }
        if photoModel != nil && !found.starts.isEmpty {
            found.plane = (gray.width, gray.height, gray.pixels.map { $0 / 255 })
        }
        found.decodeSeconds = t1.timeIntervalSince(t0)
        found.detectSeconds = Date().timeIntervalSince(t1)
        return found
    }

    /// A photo model's passes (see AlignedModel), when the model is one.
    var photoModel: AlignedModel? { model as? AlignedModel }

    /// Every face of the chunk through the net at once; keypoints mapped back to photo pixels.
    func predict(_ found: [Found?]) -> [[[Float]]] {
        if let photoModel { return predictInPasses(found, photoModel) }
        let all = found.flatMap { $0?.crops ?? [] }
        var predictions: [[Float]] = []
        if !all.isEmpty {
            let images = Tensor(shape: [all.count, Keypoints.imageSize])
            for (i, c) in all.enumerated() {
                c.withUnsafeBufferPointer { (images.data + i * Keypoints.imageSize).update(from: $0.baseAddress!, count: Keypoints.imageSize) }
            }
            predictions = model.predict(images)
        }
        var k = 0
        return found.map { f in
            let frames = f?.frames ?? []
            defer { k += frames.count }
            return frames.enumerated().map { j, frame in frame.toPhoto(predictions[k + j]) }
        }
    }

    /// Every face of the chunk in the photo model's passes, read from the whole photos.
    func predictInPasses(_ found: [Found?], _ photoModel: AlignedModel) -> [[[Float]]] {
        var owners: [Int] = [], faces: [AlignedModel.Face] = []
        for (i, f) in found.enumerated() where f?.plane != nil {
            owners.append(i)
            for start in f!.starts { faces.append(AlignedModel.Face(photo: owners.count - 1, start: start)) }
        }
        let pixels = owners.map { found[$0]!.plane!.pixels }
        let points = withPlanes(pixels, sizes: owners.map { (found[$0]!.plane!.width, found[$0]!.plane!.height) }) {
            // Faces that come cropped run as 96x96 faces do in `AlignedModel.predict(_:)`.
            detector == nil
                ? photoModel.predictAligned(photos: $0, faces: faces, passes: settings.passes)
                : photoModel.predict(photos: $0, faces: faces, passes: settings.passes)
        }
        var k = 0
        return found.map { f in
            let n = f?.plane != nil ? f!.starts.count : 0
            defer { k += n }
            return (0..<n).map { j in points[k + j].map { Float($0) } }
        }
    }

    /// Draw and encode each annotated photo on its own core; each worker writes only its slot.
    func draw(_ jobs: [Job], _ found: [Found?], _ points: [[[Float]]]) -> [Drawn?] {
        let slots = Slots<Drawn>(count: jobs.count)
        DispatchQueue.concurrentPerform(iterations: jobs.count) { i in
            guard let out = jobs[i].output, let f = found[i], f.error == nil, let rgb = f.rgb else { return }
            let t0 = Date()
            var canvas = Canvas(rgb)
            for (b, p) in zip(f.faces.map(\.box), points[i]) {
                FaceDrawing.draw(on: &canvas, box: (b.x, b.y, b.width, b.height), points: p)
            }
            var drawn = Drawn()
            do {
                try FileManager.default.createDirectory(atPath: URL(fileURLWithPath: out).deletingLastPathComponent().path,
                                                        withIntermediateDirectories: true)
                try PNGCodec.writeRGB(canvas.image, path: out)
            } catch { drawn.error = "\(error)" }
            drawn.seconds = Date().timeIntervalSince(t0)
            slots[i] = drawn
        }
        return slots.values
    }
}

/// One result slot per worker: worker i writes only slot i, and the slots are read only after
/// concurrentPerform has returned, so no two threads touch the same memory and no lock is needed.
final class Slots<T>: @unchecked Sendable {
    private let base: UnsafeMutablePointer<T?>
    let count: Int
    init(count: Int) {
        self.count = count
        base = .allocate(capacity: max(count, 1))
        base.initialize(repeating: nil, count: count)
    }
    deinit { base.deinitialize(count: count); base.deallocate() }
    subscript(i: Int) -> T? {
        get { base[i] }
        set { base[i] = newValue }
    }
    var values: [T?] { Array(UnsafeBufferPointer(start: base, count: count)) }
}
