import FKPImage

/// Which way a detected face looks, by the cascade that found it best: `frontal`, or a profile turned
/// towards the image's `left` or `right` edge.
public enum FacePose: String, Sendable, CaseIterable {
    case frontal, left, right
}

/// One face found by a `FaceDetector`.
public struct Detection: Sendable, Equatable {
    /// In the frontal cascade's framing (a profile cascade's box is moved and scaled onto it), so one crop
    /// framing serves every pose.
    public var box: FaceBox
    /// Windows (positions and scales, all cascades) that accepted this face: the cascades' own vote, higher
    /// for a surer face. With one cascade it is OpenCV's neighbour count.
    public var score: Int
    public var pose: FacePose
    /// Degrees the photo was turned (counter-clockwise as seen) for the frontal cascade to find this face
    /// upright: 0 unless only the rotation sweep found it (`FaceDetector.rotations`).
    public var angle: Double
    public init(box: FaceBox, score: Int, pose: FacePose, angle: Double = 0) {
        self.box = box; self.score = score; self.pose = pose; self.angle = angle
    }
}

/// Where a cascade's box sits relative to the frontal cascade's box of the same face, in box widths: the
/// frontal-equivalent box is (x + dx w, y + dy w, size w).
public struct BoxShift: Sendable, Equatable {
    public var dx: Double, dy: Double, size: Double
    public init(dx: Double, dy: Double, size: Double) { self.dx = dx; self.dy = dy; self.size = size }
    public static let none = BoxShift(dx: 0, dy: 0, size: 1)

    func apply(_ b: FaceBox) -> FaceBox {
        let w = Double(b.width)
        let side = Int((size * w).rounded())
        return FaceBox(x: Int((Double(b.x) + dx * w).rounded()), y: Int((Double(b.y) + dy * w).rounded()),
                       width: side, height: side, neighbors: b.neighbors)
    }
}

/// Several Haar cascades run on one photo, their boxes merged by overlap into one list of faces with a
/// shared score and a pose class: OpenCV's frontal cascade, and its profile cascade as trained (faces
/// turned to the image's left) and mirrored (turned to the right).
public struct FaceDetector: Sendable {
    public struct Member: Sendable {
        public var cascade: HaarCascade
        public var pose: FacePose
        public var parameters: DetectionParameters
        public var shift: BoxShift
        public init(cascade: HaarCascade, pose: FacePose, parameters: DetectionParameters, shift: BoxShift = .none) {
            self.cascade = cascade; self.pose = pose; self.parameters = parameters; self.shift = shift
        }
    }

    public var members: [Member]
    /// Faces with a score below this are dropped.
    public var minScore = 0
    /// A second opinion on weak frontal faces: one scoring below `verifyBelow` is kept only when this
    /// cascade, searched around the box at nearby sizes, finds it too (neighbours above
    /// `verifyNeighbors`). Different cascades make different mistakes, so most false faces fail it.
    public var verifier: HaarCascade?
    public var verifyBelow = 20
    public var verifyNeighbors = 1
    /// A learned second opinion (the face verifier net, given as a function so that the detector needs no
    /// net): for the grey photo and some boxes, each one's score (about the chance that it holds a face).
    /// Every face scoring below `checkBelow` in detection, of any pose, must reach `checkThreshold` (after
    /// the cascade verifier, when both are set); a face found only by the rotation sweep must reach
    /// `rotationCheckThreshold` in the turned photo.
    public var boxCheck: BoxCheck?
    public var checkBelow = Int.max
    public var checkThreshold: Float = 0.5
    public var rotationCheckThreshold: Float = 0.5
    public typealias BoxCheck = @Sendable (GrayImage, [FaceBox]) -> [Float]
    /// Boxes of different cascades whose intersection over union reaches this are one face.
    public var mergeOverlap = 0.3
    /// The rotation sweep for tilted heads: the photo turned by each of these angles (degrees,
    /// counter-clockwise as seen) and searched again with the first member's (frontal) cascade and
    /// `rotationParameters`. A box found there that overlaps no face of the upright search is a new face
    /// only when it scores at least `rotationMinScore` and the verifiers (when set: the cascade and the box
    /// check) confirm it in the turned image, where the face is upright; its box is moved back through
    /// the inverse rotation.
    public var rotations: [Double] = []
    public var rotationParameters = DetectionParameters()
    public var rotationMinScore = 6
    /// A HOG detector whose faces are merged with the cascades' ahead of them (its boxes moved onto the
    /// frontal cascade's framing by `hogShift`, its window count the score, its filter's pose).
    public var hog: HOGDetector?
    public var hogShift = BoxShift.none

    public init(members: [Member]) {
        precondition(!members.isEmpty, "FaceDetector: no cascade")
        self.members = members
    }

    /// The HOG detector alone (no cascade, so no rotation sweep), its boxes moved by `shift`.
    public init(hog: HOGDetector, shift: BoxShift) {
        members = []
        self.hog = hog
        hogShift = shift
    }

    /// The frontal cascade alone, as `detectFaces`.
    public init(frontal: HaarCascade, parameters: DetectionParameters = .init()) {
        self.init(members: [Member(cascade: frontal, pose: .frontal, parameters: parameters)])
    }

    /// The frontal cascade with `parameters`, and the profile cascade in both orientations with
    /// `profileParameters` (its boxes moved onto the frontal framing by `BoxShift.profile`).
    public init(frontal: HaarCascade, profile: HaarCascade, parameters: DetectionParameters = .init(),
                profileParameters: DetectionParameters = FaceDetector.profileDefaults) {
        self.init(members: [
            Member(cascade: frontal, pose: .frontal, parameters: parameters),
            Member(cascade: profile, pose: .left, parameters: profileParameters, shift: .profileLeft),
            Member(cascade: profile.mirrored(), pose: .right, parameters: profileParameters, shift: .profileLeft.mirrored),
        ])
    }

    /// Coarser than the frontal search (scale step 1.25, faces from 60 px): the profile cascade costs
    /// about three times the frontal one per window, and these settings keep the whole search within
    /// the frontal-only search's time (README, "annotate").
    public static let profileDefaults: DetectionParameters = {
        var p = DetectionParameters()
        p.scaleFactor = 1.25
        p.minNeighbors = 5
        p.minSize = 60
        return p
    }()

    /// Every member's grouped boxes, moved onto the frontal framing, then merged: the boxes are taken in
    /// member order (the frontal cascade first), each member's by neighbour count, highest first; a box
    /// overlapping a face already taken adds its neighbours to that face's score (the face keeps the box
    /// and pose of the member that found it first: frontal whenever the frontal cascade found it),
    /// otherwise it starts a new face. Faces come back sorted by position (top to bottom, then left to
    /// right).
    /// `kernels`: the set that runs the stump cascades (the tests run each).
    public func detect(in image: GrayImage, threads: Int = 2, kernels: DetectKernels = .best) -> [Detection] {
        let bytes = image.bytes8
        var candidates: [(box: FaceBox, pose: FacePose, member: Int)] = []
        if let hog {
            for d in hog.detect(gray8: bytes, width: image.width, height: image.height, threads: threads) {
                let box = FaceBox(x: Int(d.x.rounded()), y: Int(d.y.rounded()), width: Int(d.width.rounded()),
                                  height: Int(d.height.rounded()), neighbors: d.windows)
                candidates.append((hogShift.apply(box), hog.bank.poses[d.filter], -1))
            }
        }
        for (k, m) in members.enumerated() {
            for b in detectFaces(gray8: bytes, width: image.width, height: image.height, cascade: m.cascade,
                                 parameters: m.parameters, threads: threads, kernels: kernels) {
                candidates.append((m.shift.apply(b), m.pose, k))
            }
        }
        var faces = Self.merge(candidates, overlap: mergeOverlap)
        if let verifier {
            // Frontal faces only: the verifier is a frontal cascade and turns down most profiles. Faces the
            // HOG detector found are its own judgement, not checked.
            let hogBoxes = candidates.filter { $0.member < 0 }.map(\.box)
            faces.removeAll { f in
                f.pose == .frontal && f.score < verifyBelow && !hogBoxes.contains { overlap($0, f.box) >= mergeOverlap }
                    && !confirms(verifier, f.box, bytes, image.width, image.height)
            }
        }
        if let boxCheck {
            let weak = faces.indices.filter { faces[$0].score < checkBelow }
            if !weak.isEmpty {
                // The boxes as they are reported (clipped to the photo), as the verifier was trained on them.
                let scores = boxCheck(image, weak.map { faces[$0].box.clipped(width: image.width, height: image.height) ?? faces[$0].box })
                let refused = Set(zip(weak, scores).filter { !($0.1 >= checkThreshold) }.map(\.0))
                faces = faces.indices.filter { !refused.contains($0) }.map { faces[$0] }
            }
        }
        faces += rotatedFaces(bytes, image.width, image.height, besides: faces, threads: threads, kernels: kernels)
        return faces.filter { $0.score >= minScore }.map { f in
            var f = f
            f.box = f.box.clipped(width: image.width, height: image.height) ?? f.box
            return f
        }.sorted { ($0.box.y, $0.box.x) < ($1.box.y, $1.box.x) }
    }
}

extension FaceDetector {
    /// The rotation sweep's new faces (see `rotations`): strongest first, each overlapping neither a face
    /// of `upright` nor one taken before it.
    func rotatedFaces(_ bytes: [UInt8], _ width: Int, _ height: Int, besides upright: [Detection], threads: Int,
                      kernels: DetectKernels) -> [Detection] {
        var found: [Detection] = []
        // It runs the frontal cascade, the first member: without one (the HOG detector alone) there is none.
        guard !members.isEmpty else { return [] }
        for angle in rotations where angle != 0 {
            let r = Rotation(degrees: angle, width: width, height: height)
            let turned = r.apply(bytes, width: width, height: height)
            var candidates: [(box: FaceBox, turnedBox: FaceBox)] = []
            for b in detectFaces(gray8: turned, width: width, height: height, cascade: members[0].cascade,
                                 parameters: rotationParameters, threads: threads, kernels: kernels)
            where b.neighbors >= rotationMinScore {
                let box = r.boxInPhoto(b)
                guard !upright.contains(where: { overlap($0.box, box) >= mergeOverlap }) else { continue }
                if let verifier, !confirms(verifier, b, turned, width, height) { continue }
                candidates.append((box, b))
            }
            if let boxCheck, !candidates.isEmpty {
                // All of this angle's candidates in one call, read in the turned photo where they are upright.
                let image = GrayImage(width: width, height: height, pixels: turned.map(Float.init))
                let scores = boxCheck(image, candidates.map { $0.turnedBox.clipped(width: width, height: height) ?? $0.turnedBox })
                candidates = zip(candidates, scores).filter { $0.1 >= rotationCheckThreshold }.map(\.0)
            }
            found += candidates.map { Detection(box: $0.box, score: $0.turnedBox.neighbors, pose: .frontal, angle: angle) }
        }
        var faces: [Detection] = []
        for f in found.sorted(by: { ($0.score, -abs($0.angle)) > ($1.score, -abs($1.angle)) })
        where !faces.contains(where: { overlap($0.box, f.box) >= mergeOverlap }) {
            faces.append(f)
        }
        return faces
    }

    /// Merges the members' boxes (see `detect`): in member order, each member's by neighbours, highest
    /// first; a box overlapping a face already taken (intersection over union >= `overlap`) adds its
    /// neighbours to that face's score, else it starts a new face.
    static func merge(_ candidates: [(box: FaceBox, pose: FacePose, member: Int)], overlap minimum: Double) -> [Detection] {
        // Stable order for equal counts: position within the member.
        let order = candidates.indices.sorted {
            (candidates[$0].member, -candidates[$0].box.neighbors, $0) < (candidates[$1].member, -candidates[$1].box.neighbors, $1)
        }
        var faces: [Detection] = []
        for i in order {
            let c = candidates[i]
            if let j = faces.indices.first(where: { overlap(faces[$0].box, c.box) >= minimum }) {
                faces[j].score += c.box.neighbors
            } else {
                faces.append(Detection(box: c.box, score: c.box.neighbors, pose: c.pose))
            }
        }
        return faces
    }

    /// Whether `cascade` finds a face overlapping `box`, searched in the box grown by half its size on
    /// each side at sizes from 0.7 to 1.4 times the box.
    func confirms(_ cascade: HaarCascade, _ box: FaceBox, _ pixels: [UInt8], _ width: Int, _ height: Int) -> Bool {
        let m = box.width / 2
        let x0 = max(box.x - m, 0), y0 = max(box.y - m, 0)
        let x1 = min(box.x + box.width + m, width), y1 = min(box.y + box.height + m, height)
        guard x1 - x0 >= cascade.windowSize.width, y1 - y0 >= cascade.windowSize.height else { return false }
        var region = [UInt8](repeating: 0, count: (x1 - x0) * (y1 - y0))
        for y in y0..<y1 { for x in x0..<x1 { region[(y - y0) * (x1 - x0) + x - x0] = pixels[y * width + x] } }
        var p = DetectionParameters()
        p.minNeighbors = verifyNeighbors
        p.minSize = Int(0.7 * Double(box.width))
        p.maxSize = Int(1.4 * Double(box.width)) + 1
        let local = FaceBox(x: box.x - x0, y: box.y - y0, width: box.width, height: box.height)
        return detectFaces(gray8: region, width: x1 - x0, height: y1 - y0, cascade: cascade, parameters: p, threads: 1)
            .contains { overlap($0, local) >= 0.3 }
    }
}

extension BoxShift {
    /// The mirror image's shift (a box of the mirrored cascade sits mirrored about the box's centre).
    public var mirrored: BoxShift { BoxShift(dx: 1 - size - dx, dy: dy, size: size) }
    /// Measured by `fkp-batch evaluate --frames ../shared/data/frames --detection --all-people`
    /// (`FramesEvaluation.measureShift`, default settings): median over the 823 faces both cascades found.
    public static let profileLeft = BoxShift(dx: -0.0693, dy: 0.0909, size: 0.8542)
}

/// Intersection over union of two boxes.
public func overlap(_ a: FaceBox, _ b: FaceBox) -> Double {
    let w = min(a.x + a.width, b.x + b.width) - max(a.x, b.x)
    let h = min(a.y + a.height, b.y + b.height) - max(a.y, b.y)
    guard w > 0, h > 0 else { return 0 }
    let inter = Double(w * h)
    return inter / (Double(a.width * a.height + b.width * b.height) - inter)
}

extension FaceBox {
    /// The part inside a width x height image, or nil when none is.
    func clipped(width: Int, height: Int) -> FaceBox? {
        let x0 = max(x, 0), y0 = max(y, 0), x1 = min(x + self.width, width), y1 = min(y + self.height, height)
        guard x1 > x0, y1 > y0 else { return nil }
        return FaceBox(x: x0, y: y0, width: x1 - x0, height: y1 - y0, neighbors: neighbors)
    }
}

extension GrayImage {
    /// Grey values rounded to 0...255 bytes, as the cascades see them (NaN and out-of-range values clamp;
    /// .5 rounds away from zero, like lround).
    public var bytes8: [UInt8] {
        pixels.map { v -> UInt8 in
            let r = v.rounded()
            return r >= 255 ? 255 : (r > 0 ? UInt8(r) : 0)
        }
    }
}
