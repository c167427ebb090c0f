import ArgumentParser
import FKPAnnotate
import FKPDetect
import FKPEngine
import FKPExport
import FKPInference
import FKPTensor
import Foundation

// Options as types: the parser rejects a bad value with a usage error (exit 2) before any work.
extension DeviceChoice: ExpressibleByArgument {
    public init?(argument: String) { self.init(argument) }
    public var defaultValueDescription: String { description }
}

extension RecordFormat: ExpressibleByArgument {}

extension Shard: ExpressibleByArgument {
    public init?(argument: String) { self.init(argument) }
}

/// Output of the report commands (evaluate, devices, bench).
enum ReportFormat: String, ExpressibleByArgument, CaseIterable {
    case table, json
}

/// Training augmentation.
enum Augment: String, ExpressibleByArgument, CaseIterable {
    case flip, none
}

enum Warp: String, ExpressibleByArgument, CaseIterable {
    case mixed, narrow, fine
}

/// Options shared by every command that runs a net.
struct EngineOptions: ParsableArguments {
    @Option(help: ArgumentHelp(
        "Where to run: auto, cpu, opencl or opencl:N (see fkp-batch devices; env FKP_DEVICE). auto takes an OpenCL GPU if there is one, else the native CPU engine.",
        valueName: "device"))
    var device: DeviceChoice = DeviceChoice(ProcessInfo.processInfo.environment["FKP_DEVICE"] ?? "auto") ?? .auto

    @Option(help: "CPU threads (default: every core; env FKP_THREADS). Same seed and threads give the same losses.")
    var threads: Int?

    func validate() throws {
        if let env = ProcessInfo.processInfo.environment["FKP_DEVICE"], DeviceChoice(env) == nil {
            throw ValidationError("FKP_DEVICE must be auto, cpu, opencl or opencl:N, not '\(env)'")
        }
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
    }

    /// The backend; an explicit device that fails is a set-up error, auto falls back to the CPU engine.
    func makeBackend() throws -> Backend {
        do { return try device.makeBackend(threads: threads) } catch { throw FKPError.setup("\(error)") }
    }
}

/// --model for the commands that run one: the bundled model when not given.
struct ModelOption: ParsableArguments {
    @Option(help: "Trained model (safetensors written by fkp-batch train; default: samples/model.safetensors beside the build, or env FKP_MODEL).")
    var model: String?

    func load(_ engine: EngineOptions) throws -> KeypointModel {
        try ModelFile.loadModel(path: model, backend: try engine.makeBackend())
    }

    /// The model file actually used, for reports and the output guard.
    var path: String { model ?? ModelFile.defaultPath }
}

/// How a photo model runs, shared by annotate, predict and evaluate (a model for 96x96 faces ignores both).
struct PhotoModelOptions: ParsableArguments {
    @Option(help: "Passes of a photo model: 1 predicts in the first crop (from the detector's box, or the 96x96 face); each further pass realigns the crop on the last prediction (default: the model's for photos, 3 for the bundled model; for 96x96 faces the passes its calibration for them was fitted with, 3 for the bundled model, else 2; that calibration applies only at those passes).")
    var passes: Int?
    @Flag(name: .customLong("no-averaging"), help: "A photo model predicts each crop once instead of averaging it with its mirror image, with the crop 8% larger and smaller (last pass) and with its other net: one net run per face and pass (the bundled model: 3 instead of 18), a little less precise (README, \"Photo models\").")
    var noAveraging = false

    func validate() throws {
        if let passes, passes < 1 { throw ValidationError("--passes must be at least 1") }
    }

    /// Sets a loaded photo model to these options.
    func apply(to model: KeypointModel) {
        guard let aligned = model as? AlignedModel else { return }
        if noAveraging { aligned.averageNone() }
        if let passes { aligned.defaultPasses = passes; aligned.alignedFacePasses = passes }
    }
}

/// The face detector's options, shared by annotate and evaluate --frames.
struct DetectorOptions: ParsableArguments {
    @Option(name: .customLong("detector"), help: ArgumentHelp("Which detectors find the faces: 'hog' (a HOG detector with dlib's frontal face filters, its weak faces checked by the bundled face verifier), 'cascade' (OpenCV's frontal and profile Haar cascades, as before 30 Nov 2026) or 'hog+cascade' (all of them). The cascade options below (--cascade to --rotation-scale-factor) apply to 'cascade' and 'hog+cascade'. README, \"The HOG detector\", compares them.", valueName: "kind"))
    var faceDetector: String = AnnotationSettings().faceDetector.rawValue
    @Option(name: .customLong("hog-detector"), help: ArgumentHelp("The HOG detector's filters (default: samples/face-hog.safetensors beside the model, or env FKP_HOG_DETECTOR).", valueName: "file"))
    var hogDetector: String?
    @Option(name: .customLong("hog-threshold"), help: ArgumentHelp("Added to the HOG detector's threshold (dlib's is 0; lower: more faces, and more false ones; give a negative value as --hog-threshold=-0.5).", valueName: "t"))
    var hogThreshold: Double = AnnotationSettings().hogThreshold
    @Flag(name: .customLong("no-hog-upsample"), help: "Search the photo at its size instead of doubled: the HOG detector then finds faces from about 80 px instead of 40, four times faster.")
    var noHogUpsample = false
    @Option(help: "Frontal-face Haar cascade XML.") var cascade: String = HaarCascade.defaultPath
    @Option(name: .customLong("profile-cascade"), help: "Profile-face Haar cascade XML, run as trained and mirrored (faces turned left and right).")
    var profileCascade: String = HaarCascade.profilePath
    @Flag(name: .customLong("no-profile"), help: "Frontal cascade only (as before the profile cascade was added).") var noProfile = false
    @Option(name: .customLong("min-neighbors"), help: "Detections a face needs from the frontal cascade (higher: fewer false faces).") var minNeighbors: Int = AnnotationSettings().detection.minNeighbors
    @Option(name: .customLong("profile-min-neighbors"), help: "The same for the profile cascade.") var profileMinNeighbors: Int = FaceDetector.profileDefaults.minNeighbors
    @Option(name: .customLong("min-face"), help: "Smallest face, in photo pixels.") var minFace: Int = 30
    @Option(name: .customLong("scale-factor"), help: "Scale step of the detector's image pyramid.") var scaleFactor: Double = 1.1
    @Option(name: .customLong("profile-scale-factor"), help: "The same for the profile cascade.") var profileScaleFactor: Double = FaceDetector.profileDefaults.scaleFactor
    @Option(name: .customLong("profile-min-face"), help: "Smallest profile face, in photo pixels.") var profileMinFace: Int = FaceDetector.profileDefaults.minSize
    @Option(name: .customLong("verify-below"), help: "Faces scoring below this must be confirmed by the verifier cascade searched around the box (0: no check).")
    var verifyBelow: Int = AnnotationSettings().verifyBelow ?? 0
    @Option(name: .customLong("verify-neighbors"), help: "Detections the verifier needs around a weak face.") var verifyNeighbors: Int = AnnotationSettings().verifyNeighbors
    @Option(name: .customLong("verifier-cascade"), help: "The verifier's Haar cascade XML.") var verifierCascade: String = HaarCascade.verifierPath
    @Option(name: .customLong("face-verifier"), help: ArgumentHelp("A learned face verifier that weak faces must pass (made by train-verifier): a file, 'bundled' (samples/verifier.safetensors beside the model, or env FKP_VERIFIER) or 'none' (default: 'bundled' with --detector hog, else 'none').", valueName: "file"))
    var faceVerifier: String?
    @Option(name: .customLong("face-verify-below"), help: ArgumentHelp("Faces of any pose scoring below this must pass the face verifier (0: the verifier is off, for the rotation sweep too; default: 5 with --detector hog, else 20).", valueName: "score"))
    var faceVerifyBelow: Int?
    @Option(name: .customLong("face-verifier-threshold"), help: ArgumentHelp("Score a box needs from the face verifier (about the chance that it holds a face; default: the file's, set by train-verifier --keep on held-out faces: the bundled one's is the lowest held-out face's score).", valueName: "t"))
    var faceVerifierThreshold: Float?
    @Option(name: .customLong("rotation-face-verifier-threshold"), help: ArgumentHelp("Score a face found only by the rotation sweep needs from the face verifier, in the turned photo.", valueName: "t"))
    var rotationFaceVerifierThreshold: Float = AnnotationSettings().rotationVerifierThreshold
    @Option(name: .customLong("rotations"), help: "Rotation sweep for tilted heads: angles in degrees, comma-separated, at which the photo is turned and searched again with the frontal cascade ('none': no sweep).")
    var rotations: String = AnnotationSettings().rotations.map { String(format: "%g", $0) }.joined(separator: ",")
    @Option(name: .customLong("rotation-min-score"), help: "Score a face found only in a turned photo needs (it must also pass the verifier there).")
    var rotationMinScore: Int = AnnotationSettings().rotationMinScore
    @Option(name: .customLong("rotation-min-face"), help: "Smallest face searched in the turned photos, in photo pixels (default: --min-face).")
    var rotationMinFace: Int?
    @Option(name: .customLong("rotation-scale-factor"), help: "Scale step of the turned photos' search (default: --scale-factor).")
    var rotationScaleFactor: Double?
    @Option(name: .customLong("min-score"), help: "Drop faces whose detection score (windows of all cascades that accepted the face) is below this.")
    var minScore: Int = 0

    func validate() throws {
        guard minNeighbors >= 0, profileMinNeighbors >= 0 else { throw ValidationError("--min-neighbors and --profile-min-neighbors must be at least 0") }
        guard minFace >= 1, profileMinFace >= 1 else { throw ValidationError("--min-face and --profile-min-face must be at least 1") }
        guard scaleFactor > 1, scaleFactor < 4, profileScaleFactor > 1, profileScaleFactor < 4 else { throw ValidationError("--scale-factor must be in (1, 4)") }
        guard minScore >= 0 else { throw ValidationError("--min-score must be at least 0") }
        guard let kind = FaceDetectorKind(rawValue: faceDetector) else {
            throw ValidationError("--detector: '\(faceDetector)' is not one of \(FaceDetectorKind.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        guard hogThreshold.isFinite, abs(hogThreshold) <= 3 else {
            throw ValidationError("--hog-threshold must be a number from -3 to 3 (responses above the filters' thresholds are a few units at most)")
        }
        let angles = try rotationAngles()
        if kind == .hog, angles.contains(where: { $0 != 0 }) {
            throw ValidationError("--rotations turns the photo for the frontal cascade: use it with --detector cascade or hog+cascade")
        }
        if let f = rotationScaleFactor, !(f > 1 && f < 4) { throw ValidationError("--rotation-scale-factor must be in (1, 4)") }
        if let m = rotationMinFace, m < 1 { throw ValidationError("--rotation-min-face must be at least 1") }
        if let b = faceVerifyBelow, b < 0 { throw ValidationError("--face-verify-below must be at least 0") }
        if let t = faceVerifierThreshold, !t.isFinite { throw ValidationError("--face-verifier-threshold must be a number") }
        guard rotationFaceVerifierThreshold.isFinite else { throw ValidationError("--rotation-face-verifier-threshold must be a number") }
    }

    /// These options applied to annotate's settings.
    func apply(to s: inout AnnotationSettings) {
        // The checks that go with the detector, unless given.
        let kind = FaceDetectorKind(rawValue: faceDetector) ?? s.faceDetector
        let preset = AnnotationSettings(detector: kind)
        s.faceDetector = kind
        s.cascadePath = cascade
        s.hogPath = hogDetector
        s.hogThreshold = hogThreshold
        s.hogUpsample = !noHogUpsample
        s.profileCascadePath = noProfile ? nil : profileCascade
        s.detection.minNeighbors = minNeighbors
        s.detection.minSize = minFace
        s.detection.scaleFactor = scaleFactor
        s.profileDetection.minNeighbors = profileMinNeighbors
        s.profileDetection.minSize = profileMinFace
        s.profileDetection.scaleFactor = profileScaleFactor
        s.minScore = minScore
        s.verifierPath = verifyBelow > 0 ? verifierCascade : nil
        s.verifyBelow = verifyBelow
        s.verifyNeighbors = verifyNeighbors
        let below = faceVerifyBelow ?? preset.faceVerifyBelow
        switch faceVerifier {
        case nil: s.faceVerifierPath = below == 0 ? nil : preset.faceVerifierPath
        case "none"?: s.faceVerifierPath = nil
        case AnnotationSettings.bundled?: s.faceVerifierPath = below == 0 ? nil : AnnotationSettings.bundled
        case let path?: s.faceVerifierPath = below == 0 ? nil : path
        }
        s.faceVerifyBelow = below
        s.faceVerifierThreshold = faceVerifierThreshold
        s.rotationVerifierThreshold = rotationFaceVerifierThreshold
        s.rotations = (try? rotationAngles()) ?? []
        s.rotationMinScore = rotationMinScore
        var r = s.detection
        if let rotationMinFace { r.minSize = rotationMinFace }
        if let rotationScaleFactor { r.scaleFactor = rotationScaleFactor }
        s.rotationDetection = r
    }

    /// `--rotations` as degrees: a comma-separated list, or none.
    func rotationAngles() throws -> [Double] {
        let text = rotations.trimmingCharacters(in: .whitespaces)
        if text.isEmpty || text == "none" { return [] }
        return try text.split(separator: ",").map { part in
            let p = part.trimmingCharacters(in: .whitespaces)
            guard let a = Double(p), a.isFinite, abs(a) < 90 else {
                throw ValidationError("--rotations: '\(p)' is not an angle in degrees between -90 and 90 (give e.g. 12,-12 or none)")
            }
            return a
        }
    }

    /// The detector, its bundled files looked for beside `model` (the command's --model) first.
    func detector(model: String?) throws -> FaceDetector {
        var s = AnnotationSettings(detector: FaceDetectorKind(rawValue: faceDetector) ?? AnnotationSettings.defaultDetector)
        s.modelPath = model
        apply(to: &s)
        do { return try s.detector()! } catch { throw FKPError.setup("\(error)") }
    }
}
