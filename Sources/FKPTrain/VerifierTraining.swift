import Dispatch
import FKPAlign
import FKPEngine
import FKPImage
import FKPInference
import FKPIngest
import FKPNets
import FKPTensor
import Foundation

/// Samples for the face verifier, cut afresh from labelled photos at every draw (96x96, standardised as
/// `FaceVerifier.cut` does), target 1 for a face and 0 for anything else:
/// - `face`: the face through its alignment and a move as large as a detector's box is off (shift 15%,
///   size 30%, turn 25 degrees);
/// - `displaced`: the same face moved or scaled far beyond that (shift 35-160% of the crop: part of the
///   face, the hair, the collar, the shirt; or the face at
///   1/3-1/1.8 or 1.8-3 times its size): part of a face, or a face lost in a large box, is not a face box;
/// - `background`: a square anywhere in the photo that keeps clear of the face;
/// - `box`: a detector's own box on the photo, moved a little (5%); its label is whether it holds the face.
///   The false ones are the hard negatives: what the cascades mistake for faces.
/// Each is read at the verifier's 48x48 (or lower: a small face) and enlarged; light and a mirror image
/// are drawn for every kind alike.
public final class VerifierSamples: SampleSource, @unchecked Sendable {
    public enum Kind: Sendable, Equatable {
        case face, displaced, background
        case box(LabelledBox)
    }
    public struct Row: Sendable, Equatable {
        public var photo: Int
        public var kind: Kind
    }
    public let photos: FrameSamples
    public let rows: [Row]
    public var count: Int { rows.count }
    public var outputs: Int { 1 }
    public var drawsAfresh: Bool { true }

    /// Per photo: two face draws, one displaced, one background; then every box of `boxes` (one list per
    /// photo), the false ones twice.
    public init(_ photos: FrameSamples, boxes: [[LabelledBox]]) {
        precondition(boxes.count == photos.count)
        self.photos = photos
        var rows: [Row] = []
        for p in 0..<photos.count {
            rows += [Row(photo: p, kind: .face), Row(photo: p, kind: .face), Row(photo: p, kind: .displaced),
                     Row(photo: p, kind: .background)]
            for b in boxes[p] { rows += Array(repeating: Row(photo: p, kind: .box(b)), count: b.isFace ? 1 : 2) }
        }
        self.rows = rows
    }

    /// Wider than the photo model's wide range (shift 12%, size 20%): boxes of faces the nets have not
    /// seen (turned heads, hair, hats) sit further off.
    public static let faceRange = Augmentation.Range(rotationDegrees: 25, scale: 0.3, shift: 0.15)
    static let boxRange = Augmentation.Range(rotationDegrees: 0, scale: 0.05, shift: 0.05)

    /// The photo -> input transform of one draw and its target.
    func draw(_ row: Row, rng: inout Xoshiro) -> (Similarity, Float) {
        let alignment = photos.alignments[row.photo]
        func uniform(_ lo: Double, _ hi: Double) -> Double { lo + Double(rng.nextFloat()) * (hi - lo) }
        // Half the negatives at any angle: a texture upside down is still no face.
        func negativeTurn() -> Double { (rng.next() % 2 == 0 ? uniform(-180, 180) : uniform(-25, 25)) * .pi / 180 }
        func displaced() -> Similarity {
            var scale = 1.0, shift = (x: 0.0, y: 0.0)
            if rng.next() % 2 == 0 {
                let d = uniform(0.35, 1.6) * Double(CanonicalFace.side), a = uniform(0, 2 * .pi)
                shift = (d * cos(a), d * sin(a))
                scale = exp(uniform(-0.2, 0.2))
            } else {
                scale = rng.next() % 2 == 0 ? uniform(1.8, 3) : 1 / uniform(1.8, 3)
            }
            let turn = negativeTurn()
            return alignment.then(Similarity(angle: turn, scale: scale, center: CanonicalFace.center, shift: shift))
        }
        switch row.kind {
        case .face:
            return (alignment.then(Augmentation.jitter(Self.faceRange, rng: &rng)), 1)
        case .displaced:
            return (displaced(), 0)
        case .background:
            let (w, h) = photos.size(row: row.photo)
            let face = alignment.inverse.apply(CanonicalFace.center.x, CanonicalFace.center.y)
            let faceSide = Double(CanonicalFace.side) * alignment.inverse.scale
            let limit = Double(min(w, h)), n = Double(CanonicalFace.side)
            // A square clear of the face: one that holds the face centre at a size near the face's is a
            // face box, not background. When a few tries find none (a face filling the photo), a
            // displaced draw instead.
            for _ in 0..<8 {
                let side = uniform(0.1, 0.9) * limit
                let x = uniform(0, Double(w) - side), y = uniform(0, Double(h) - side)
                // Clear of the face at any turn: the face centre outside the square's circumcircle.
                let dx = face.x - (x + side / 2), dy = face.y - (y + side / 2)
                let holdsFace = (dx * dx + dy * dy).squareRoot() < side * 0.5.squareRoot()
                if !holdsFace || side > 2.5 * faceSide || side < 0.4 * faceSide {
                    let square = Similarity(a: n / side, b: 0, tx: -x * n / side, ty: -y * n / side)
                    return (square.then(Similarity(angle: negativeTurn(), scale: 1, center: CanonicalFace.center)), 0)
                }
            }
            return (displaced(), 0)
        case .box(let b):
            return (FaceVerifier.photoToInput(x: b.x, y: b.y, width: b.width).then(Augmentation.jitter(Self.boxRange, rng: &rng)),
                    b.isFace ? 1 : 0)
        }
    }

    public func write(row: Int, key: UInt64, image: UnsafeMutablePointer<Float>, target: UnsafeMutablePointer<Float>) {
        var rng = Xoshiro(seed: key)
        let (t, label) = draw(rows[row], rng: &rng)
        let a = photos.augmentation
        let lowRes = Double(rng.nextFloat()) < a.lowResShare
        let lowSide = 20 + Int(rng.next() % UInt64(FaceVerifier.resolution - 20))
        photos.cut(row: rows[row].photo, photoToCrop: t, into: image, lowResSide: lowRes ? lowSide : FaceVerifier.resolution)
        a.changeLight(image, rng: &rng)
        if rng.next() % 2 == 0 { mirrorImageInPlace(image) }
        FaceVerifier.standardise(image)
        target[0] = label
    }
}

/// How a verifier does on a detector's boxes of labelled photos.
public struct VerifierReport: Sendable, CustomStringConvertible {
    public var faces = 0, others = 0
    /// Faces kept and other boxes rejected at the threshold.
    public var facesKept = 0, othersRejected = 0
    public var threshold: Float = 0
    /// Area under the ROC curve: the chance that a face's box scores above another box.
    public var auc = 0.0

    /// The threshold that keeps the share `keep` of the faces' boxes, and the figures at it.
    public init(faceScores: [Float], otherScores: [Float], keep: Double) {
        faces = faceScores.count; others = otherScores.count
        let sorted = faceScores.sorted()
        if !sorted.isEmpty {
            let drop = min(Int((Double(sorted.count) * (1 - keep)).rounded(.down)), sorted.count - 1)
            threshold = sorted[drop]
        }
        facesKept = faceScores.filter { $0 >= threshold }.count
        othersRejected = otherScores.filter { $0 < threshold }.count
        auc = Self.auc(positive: faceScores, negative: otherScores)
    }

    /// Mann-Whitney: pairs (face, other) ordered right, ties counted half; NaN scores count as wrong.
    public static func auc(positive: [Float], negative: [Float]) -> Double {
        guard !positive.isEmpty, !negative.isEmpty else { return .nan }
        let neg = negative.map { $0.isNaN ? Float.infinity : $0 }.sorted()
        var sum = 0.0
        for p in positive {
            guard !p.isNaN else { continue }
            var lo = 0, hi = neg.count
            while lo < hi { let m = (lo + hi) / 2; if neg[m] < p { lo = m + 1 } else { hi = m } }
            var eq = lo
            while eq < neg.count && neg[eq] == p { eq += 1 }
            sum += Double(lo) + 0.5 * Double(eq - lo)
        }
        return sum / (Double(positive.count) * Double(negative.count))
    }

    public var description: String {
        String(format: "threshold %.3f: faces kept %d of %d (%.1f%%), other boxes rejected %d of %d (%.1f%%); AUC %.4f",
               threshold, facesKept, faces, 100 * Double(facesKept) / Double(max(faces, 1)), othersRejected, others,
               100 * Double(othersRejected) / Double(max(others, 1)), auc)
    }
}

/// `fkp-batch train-verifier`: trains a FaceVerifier on labelled photos (training people), sets its
/// threshold on the held-out people's detector boxes and writes it after every epoch (atomically).
public struct VerifierTraining {
    public var frames: String
    public var out: String
    public var config: TrainConfig
    /// Share of the held-out faces' boxes the threshold keeps (0.999: with a few hundred faces, the
    /// lowest one's score: the verifier vetoes only what scores below every held-out face).
    public var keep = 0.999
    /// Stored in the file: the command that made it.
    public var command = ""

    public init(frames: String, out: String) {
        self.frames = frames; self.out = out
        config = TrainConfig()
        config.epochs = 30
        config.batchSize = 128
        config.learningRate = Schedule(0.01, 0.0003)
        config.momentum = Schedule(0.9, 0.99)
        config.seed = 1
    }

    /// `boxesOf` runs the detector on photos and labels each box (see FramesEvaluation.labelledBoxes).
    public func run(backend: Backend, boxesOf: ([GrayImage], LandmarkSet) -> [[LabelledBox]],
                    onEpoch: (EpochRecord, VerifierReport) -> Void = { _, _ in }) throws -> VerifierReport {
        let (all, trainRows, validRows) = try personSplit(frames)
        let trainSet = all.subset(trainRows), validSet = all.subset(validRows)
        let trainPhotos = try FrameSamples(trainSet), validPhotos = try FrameSamples(validSet)
        let t0 = Date()
        let trainBoxes = boxesOf(trainPhotos.grayImages(), trainSet)
        let validBoxes = boxesOf(validPhotos.grayImages(), validSet)
        func count(_ b: [[LabelledBox]], _ face: Bool) -> Int { b.reduce(0) { $0 + $1.filter { $0.isFace == face }.count } }
        Log.info(String(format: "%@: training on %d photos (%d detector boxes on faces, %d not), threshold on %d held-out photos (%d, %d); detected in %.1f s",
                        frames, trainRows.count, count(trainBoxes, true), count(trainBoxes, false), validRows.count,
                        count(validBoxes, true), count(validBoxes, false), Date().timeIntervalSince(t0)))
        let train = VerifierSamples(trainPhotos, boxes: trainBoxes)
        let config = try config.checked(trainingRows: train.count)
        let valid = VerifierSamples(validPhotos, boxes: validBoxes).fixedSet(seed: config.seed)
        let net = Net(FaceVerifier.architecture, backend: backend, maxBatch: config.batchSize)
        net.loss = .logistic
        net.initialise(seed: config.seed)
        let trainer = Trainer(net: net, train: train, valid: valid, config: config)
        Log.info("\(FaceVerifier.modelName): \(net.parameterCount) parameters on \(backend.name); \(train.count) samples per epoch, \(valid.count) to validate; \(config.epochs) epochs, lr \(config.learningRate), momentum \(config.momentum)")

        // The held-out boxes cut once, by FaceVerifier.cut: what annotate's check reads.
        let boxCrops = validBoxes.flatMap { $0 }
        guard boxCrops.contains(where: \.isFace) else {
            throw FKPError.setup("\(frames): the detector boxes no held-out face, so no threshold can be set")
        }
        let crops = Tensor(shape: [boxCrops.count, Keypoints.imageSize])
        let firstBox = validBoxes.reduce(into: [0]) { $0.append($0.last! + $1.count) }
        DispatchQueue.concurrentPerform(iterations: validBoxes.count) { p in
            let (w, h) = validPhotos.size(row: p)
            validPhotos.plane(row: p).withUnsafeBufferPointer { px in
                for (k, b) in validBoxes[p].enumerated() {
                    FaceVerifier.cut(GrayPlane(width: w, height: h, pixels: px), x: b.x, y: b.y, width: b.width,
                                     into: crops.data + (firstBox[p] + k) * Keypoints.imageSize)
                }
            }
        }
        var report: VerifierReport?
        while trainer.nextEpoch <= config.epochs {
            guard let record = try trainer.runEpoch() else { break }
            let checker = FaceVerifier(net: net.resized(maxBatch: 64, trainable: false), threshold: 0, path: out)
            let scores = checker.scores(crops)
            var faceScores: [Float] = [], otherScores: [Float] = []
            guard scores.allSatisfy(\.isFinite) else { throw TrainingDiverged(epoch: record.epoch, batch: 0) }
            for (i, b) in boxCrops.enumerated() { if b.isFace { faceScores.append(scores[i]) } else { otherScores.append(scores[i]) } }
            let r = VerifierReport(faceScores: faceScores, otherScores: otherScores, keep: keep)
            try save(net, threshold: r.threshold, report: r, epoch: record.epoch)
            onEpoch(record, r)
            report = r
        }
        return report ?? VerifierReport(faceScores: [], otherScores: [], keep: keep)
    }

    func save(_ net: Net, threshold: Float, report: VerifierReport, epoch: Int) throws {
        let meta = [
            "model": FaceVerifier.modelName,
            "threshold": String(threshold),
            "input": FaceVerifier.inputNote,
            "score": FaceVerifier.scoreNote,
            "layout": Net.layoutNote,
            "format": "fkp-batch 1",
            "epoch": "\(epoch)",
            "held_out": report.description,
            "command": command,
        ]
        let entries = net.exportParameters().map { Safetensors.Entry(name: $0.name, shape: $0.shape, values: $0.values) }
        try Safetensors.write(Safetensors.File(tensors: entries, metadata: meta), path: out)
    }
}
