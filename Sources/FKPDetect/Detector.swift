import CDetect
import Dispatch
import FKPImage
import Foundation

/// A detected face in image pixels.
public struct FaceBox: Sendable, Equatable {
    public var x, y, width, height: Int
    /// Cluster size: how many raw detections were merged into this box (OpenCV's "numDetections"). The
    /// detection score; always > minNeighbors after grouping, 1 when grouping is off (minNeighbors <= 0).
    public var neighbors: Int
    public init(x: Int, y: Int, width: Int, height: Int, neighbors: Int = 1) {
        self.x = x; self.y = y; self.width = width; self.height = height; self.neighbors = neighbors
    }
}

/// The parameters of OpenCV's `CascadeClassifier::detectMultiScale`.
public struct DetectionParameters: Sendable {
    /// The image is shrunk by this factor from one scale to the next; must be > 1.
    public var scaleFactor: Double = 1.1
    /// A cluster of raw detections is kept when it has MORE than this many members (OpenCV's rule:
    /// `n <= minNeighbors` is dropped). 0 or less: no grouping, every raw detection is returned.
    public var minNeighbors: Int = 5
    /// Smallest face (window side) searched, in image pixels. Windows are never smaller than the cascade's.
    public var minSize: Int = 30
    /// Largest face searched; nil: the image size.
    public var maxSize: Int? = nil
    public init() {}
}

/// Viola-Jones detection with `cascade`, following OpenCV 4's `CascadeClassifier::detectMultiScale` on an
/// 8-bit image (the Float grey values are rounded to 0...255 first):
/// - scales: factor = 1, f, f², … (f = scaleFactor); a scale is used when round(window × factor) is within
///   [minSize, maxSize] and the image; the image is shrunk to round(size / factor) with bilinear
///   interpolation (11-bit fixed-point weights, like OpenCV's INTER_LINEAR for 8-bit images), and the
///   cascade's window slides over it with a step of 2 pixels when factor < 2, 1 pixel when factor >= 2
///   (OpenCV's `ystep`, in shrunk-image pixels); after a window rejected by the first stage the next
///   position is skipped too (OpenCV does the same);
/// - per window: mean and variance over the window inset by one pixel; windows with a standard deviation
///   of 10 grey levels or less are rejected (OpenCV's `area * varianceNormFactor < 0.1`); each feature
///   value is Σ weight × rect sum divided by (inset area × standard deviation), compared with the node
///   threshold in single precision; stage sums in double against stageThreshold − 1e-5;
/// - grouping with `groupRectangles(minNeighbors:eps: 0.2)`, then boxes are clipped to the image.
/// `threads` workers (DispatchQueue.concurrentPerform) take whole scales, largest work first.
public func detectFaces(in image: GrayImage, cascade: HaarCascade, parameters: DetectionParameters = .init(),
                        threads: Int = 2) -> [FaceBox] {
    precondition(image.pixels.count == image.width * image.height, "GrayImage: pixel count does not match its size")
    return detectFaces(gray8: image.bytes8, width: image.width, height: image.height, cascade: cascade,
                       parameters: parameters, threads: threads)
}

/// The same on 8-bit grey pixels (row-major, `width * height` bytes).
public func detectFaces(gray8 pixels: [UInt8], width: Int, height: Int, cascade: HaarCascade,
                        parameters: DetectionParameters = .init(), threads: Int = 2,
                        kernels: DetectKernels = .best) -> [FaceBox] {
    let raw = detectCandidates(gray8: pixels, width: width, height: height, cascade: cascade,
                               parameters: parameters, threads: threads, kernels: kernels)
    let grouped = groupRectangles(raw, minNeighbors: parameters.minNeighbors, eps: 0.2)
    // OpenCV's clipObjects: intersect with the image, drop empty boxes.
    return grouped.compactMap { $0.clipped(width: width, height: height) }
}

/// The raw (ungrouped) window hits in image coordinates, each with neighbors = 1, in a deterministic
/// order (by scale, then row, then column) whatever the thread count.
/// `kernels`: the set that runs a stump cascade's windows (the tests run each).
public func detectCandidates(gray8 pixels: [UInt8], width: Int, height: Int, cascade: HaarCascade,
                             parameters: DetectionParameters = .init(), threads: Int = 2,
                             kernels: DetectKernels = .best) -> [FaceBox] {
    precondition(pixels.count == width * height, "detectFaces: pixel count does not match width * height")
    precondition(parameters.scaleFactor > 1, "detectFaces: scaleFactor must be > 1")
    let plans = scalePlans(imageWidth: width, imageHeight: height, cascade: cascade, parameters: parameters)
    guard !plans.isEmpty else { return [] }

    // One stride for every scale (the largest scaled width + 1), so feature offsets are computed once.
    let stride = plans.map(\.width).max()! + 1
    let rows = plans.map(\.height).max()! + 1
    let compiled = CompiledCascade(cascade, stride: stride)
    defer { compiled.deallocate() }

    // Work list: biggest (estimated) first.
    let order = plans.indices.sorted { plans[$0].cost > plans[$1].cost }
    let results = UnsafeMutableBufferPointer<[(scale: Int, x: Int32, y: Int32)]>.allocate(capacity: plans.count)
    results.initialize(repeating: [])
    defer { results.deinitialize(); results.deallocate() }

    pixels.withUnsafeBufferPointer { src in
        distributeTasks(order.count, threads: threads) { next in
            // Buffers once per worker, reused for every scale it takes.
            let buffers = ScanBuffers(stride: stride, rows: rows, maxWidth: stride - 1)
            defer { buffers.deallocate() }
            while let k = next() {
                var found: [(scale: Int, x: Int32, y: Int32)] = []
                let si = order[k]
                let plan = plans[si]
                buildScaledIntegral(src: src.baseAddress!, srcWidth: width, srcHeight: height,
                                    dstWidth: plan.width, dstHeight: plan.height,
                                    sum: buffers.sum, sqsum: buffers.sqsum, stride: stride, buffers: buffers)
                scan(plan: plan, compiled: compiled, sum: buffers.sum, sqsum: buffers.sqsum, buffers: buffers,
                     kernels: kernels) { x, y in
                    found.append((si, Int32(x), Int32(y)))
                }
                // Each scale its own slot: no two workers write the same memory.
                results[si] = found
            }
        }
    }

    var all = results.flatMap { $0 }
    all.sort { ($0.scale, $0.y, $0.x) < ($1.scale, $1.y, $1.x) }
    return all.map { c in
        let p = plans[c.scale]
        return FaceBox(x: Int((Float(c.x) * p.scale).rounded(.toNearestOrEven)),
                       y: Int((Float(c.y) * p.scale).rounded(.toNearestOrEven)),
                       width: p.windowWidth, height: p.windowHeight, neighbors: 1)
    }
}

/// Runs tasks 0..<count on at most `threads` workers (the calling thread alone when one): `worker` is
/// called once per worker with a function that hands out the next task, nil when none is left, so that
/// workers finishing early take more (list the costliest tasks first).
func distributeTasks(_ count: Int, threads: Int, _ worker: (_ next: () -> Int?) -> Void) {
    let workers = max(1, min(threads, count))
    let lock = NSLock()
    var taken = 0
    let next: () -> Int? = {
        lock.lock()
        defer { lock.unlock() }
        guard taken < count else { return nil }
        taken += 1
        return taken - 1
    }
    if workers == 1 {
        worker(next)
    } else {
        DispatchQueue.concurrentPerform(iterations: workers) { _ in worker(next) }
    }
}

// MARK: - Scales

struct ScalePlan: Equatable {
    /// OpenCV keeps the factor as a float.
    var scale: Float
    /// The shrunk image.
    var width: Int, height: Int
    var step: Int
    /// Window positions x in 0..<workWidth, y in 0..<workHeight (before stepping).
    var workWidth: Int, workHeight: Int
    /// The window in image pixels.
    var windowWidth: Int, windowHeight: Int

    var cost: Double {
        Double(workWidth / step + 1) * Double(workHeight / step + 1) + 0.25 * Double(width * height)
    }
}

func scalePlans(imageWidth: Int, imageHeight: Int, cascade: HaarCascade, parameters: DetectionParameters) -> [ScalePlan] {
    let (cw, ch) = cascade.windowSize
    let maxW = min(parameters.maxSize ?? imageWidth, imageWidth)
    let maxH = min(parameters.maxSize ?? imageHeight, imageHeight)
    var plans: [ScalePlan] = []
    var factor = 1.0
    while true {
        defer { factor *= parameters.scaleFactor }
        let ww = Int((Double(cw) * factor).rounded(.toNearestOrEven))
        let wh = Int((Double(ch) * factor).rounded(.toNearestOrEven))
        if ww > maxW || wh > maxH { break }
        if ww < parameters.minSize || wh < parameters.minSize { continue }
        let sc = Float(factor)
        let w = Int((Float(imageWidth) / sc).rounded(.toNearestOrEven))
        let h = Int((Float(imageHeight) / sc).rounded(.toNearestOrEven))
        // OpenCV: working size = (size + 1) - window, positions 0..<working.
        let workW = max(w + 1 - cw, 0), workH = max(h + 1 - ch, 0)
        if workW == 0 || workH == 0 { continue }
        plans.append(ScalePlan(scale: sc, width: w, height: h, step: sc >= 2 ? 1 : 2,
                               workWidth: workW, workHeight: workH,
                               windowWidth: Int((Float(cw) * sc).rounded(.toNearestOrEven)),
                               windowHeight: Int((Float(ch) * sc).rounded(.toNearestOrEven))))
    }
    return plans
}

// MARK: - Resize + integral images

/// Per-thread scratch: integral images (sum with wrapping Int32 arithmetic, squared sum in Int64) and
/// resize row buffers.
final class ScanBuffers {
    let sum: UnsafeMutablePointer<Int32>
    let sqsum: UnsafeMutablePointer<Int64>
    let row: UnsafeMutablePointer<Int32>
    let h0: UnsafeMutablePointer<Int32>
    let h1: UnsafeMutablePointer<Int32>
    let xofs: UnsafeMutablePointer<Int32>
    let alpha: UnsafeMutablePointer<Int32>
    /// The row kernel's scratch (`fkp_detect_kernels.scan_row`): the first stages' result per window, its
    /// variance normalisation factor, and the windows that pass every stage.
    let codes: UnsafeMutablePointer<Int8>
    let norms: UnsafeMutablePointer<Float>
    let hits: UnsafeMutablePointer<Int32>
    /// A block of FKP_DETECT_LANES (8) windows with a step of 2 reads 16 entries from each corner.
    static let padding = 64

    init(stride: Int, rows: Int, maxWidth: Int) {
        // Padding: the vectorised first stage reads whole vectors past the last window of a row.
        sum = .allocate(capacity: stride * rows + ScanBuffers.padding)
        sqsum = .allocate(capacity: stride * rows + ScanBuffers.padding)
        sum.initialize(repeating: 0, count: stride * rows + ScanBuffers.padding)
        sqsum.initialize(repeating: 0, count: stride * rows + ScanBuffers.padding)
        codes = .allocate(capacity: maxWidth)
        norms = .allocate(capacity: maxWidth)
        hits = .allocate(capacity: maxWidth)
        row = .allocate(capacity: maxWidth)
        h0 = .allocate(capacity: maxWidth)
        h1 = .allocate(capacity: maxWidth)
        xofs = .allocate(capacity: maxWidth)
        alpha = .allocate(capacity: maxWidth)
    }

    func deallocate() {
        sum.deallocate(); sqsum.deallocate(); row.deallocate(); h0.deallocate(); h1.deallocate()
        xofs.deallocate(); alpha.deallocate(); codes.deallocate(); norms.deallocate(); hits.deallocate()
    }
}

private let coefBits: Int32 = 11
private let coefOne: Int32 = 1 << 11

/// Bilinear source position for destination index `d` (pixel centres aligned), OpenCV-style: returns the
/// first source index and the weight of that sample in 1/2048 units; at the borders the edge sample
/// gets the full weight.
@inline(__always)
private func linearTap(_ d: Int, scale: Double, size: Int) -> (Int, Int32) {
    var f = Float((Double(d) + 0.5) * scale - 0.5)
    var s = Int(f.rounded(.down))
    f -= Float(s)
    if s < 0 { s = 0; f = 0 }
    if s >= size - 1 { s = size - 1; f = 0 }
    return (s, Int32(((1 - f) * Float(coefOne)).rounded(.toNearestOrEven)))
}

/// Shrinks `src` (srcWidth x srcHeight) to dstWidth x dstHeight and writes its integral images:
/// `sum[(y+1)*stride + (x+1)]` = Σ pixels in rows 0...y, columns 0...x (row 0 and column 0 are 0);
/// `sqsum` the same for squared pixels. The Int32 sum wraps on huge images, which is harmless: every
/// rectangle sum is a difference of four entries taken with wrapping arithmetic and is exact whenever the
/// true rectangle sum fits in 31 bits (a 24x24 window holds at most 146,880).
func buildScaledIntegral(src: UnsafePointer<UInt8>, srcWidth: Int, srcHeight: Int, dstWidth: Int, dstHeight: Int,
                         sum: UnsafeMutablePointer<Int32>, sqsum: UnsafeMutablePointer<Int64>, stride: Int,
                         buffers: ScanBuffers) {
    let sx = Double(srcWidth) / Double(dstWidth)
    let sy = Double(srcHeight) / Double(dstHeight)
    let identity = srcWidth == dstWidth && srcHeight == dstHeight
    let xofs = buffers.xofs, alpha = buffers.alpha
    if !identity {
        for dx in 0..<dstWidth {
            let (s, a) = linearTap(dx, scale: sx, size: srcWidth)
            xofs[dx] = Int32(s)
            alpha[dx] = a
        }
    }
    var hRow0 = buffers.h0, hRow1 = buffers.h1
    var id0 = -1, id1 = -1
    // Horizontal pass of one source row, in 1/2048 units.
    func hresize(_ r: Int, into out: UnsafeMutablePointer<Int32>) {
        let s = src + r * srcWidth
        for dx in 0..<dstWidth {
            let o = Int(xofs[dx])
            let a = alpha[dx]
            let o1 = o + 1 < srcWidth ? o + 1 : o
            out[dx] = Int32(s[o]) &* a &+ Int32(s[o1]) &* (coefOne &- a)
        }
    }

    for x in 0...dstWidth { sum[x] = 0; sqsum[x] = 0 }
    let row = buffers.row
    for dy in 0..<dstHeight {
        if identity {
            let s = src + dy * srcWidth
            for dx in 0..<dstWidth { row[dx] = Int32(s[dx]) }
        } else {
            let (r0, b0) = linearTap(dy, scale: sy, size: srcHeight)
            let r1 = r0 + 1 < srcHeight ? r0 + 1 : r0
            // Reuse horizontally resized rows from the previous output row.
            if id0 != r0 {
                if id1 == r0 { swap(&hRow0, &hRow1); swap(&id0, &id1) } else { hresize(r0, into: hRow0); id0 = r0 }
            }
            if id1 != r1 {
                if r1 == r0 { hRow1.update(from: hRow0, count: dstWidth) } else { hresize(r1, into: hRow1) }
                id1 = r1
            }
            let b1 = coefOne - b0
            let bb0 = Int(b0), bb1 = Int(b1)
            for dx in 0..<dstWidth {
                let v = (bb0 * Int(hRow0[dx]) + bb1 * Int(hRow1[dx]) + (1 << 21)) >> 22
                row[dx] = Int32(v)
            }
        }
        let prev = sum + dy * stride, cur = sum + (dy + 1) * stride
        let qprev = sqsum + dy * stride, qcur = sqsum + (dy + 1) * stride
        cur[0] = 0
        qcur[0] = 0
        var acc: Int32 = 0
        var qacc: Int64 = 0
        for dx in 0..<dstWidth {
            let v = row[dx]
            acc &+= v
            qacc &+= Int64(v * v)
            cur[dx + 1] = prev[dx + 1] &+ acc
            qcur[dx + 1] = qprev[dx + 1] &+ qacc
        }
    }
}

// MARK: - Cascade compiled for one stride

// The C kernels' layout (CDetect.h) is the only one: the Swift evaluation below (tree cascades,
// and the reference the tests hold the kernels to) reads the same arrays.

/// Corner offsets of a feature's rectangles relative to the window's top-left integral entry:
/// sum = p[a] - p[b] - p[c] + p[d].
typealias PackedFeature = fkp_haar_feature
/// A depth-1 tree: feature, threshold, left and right leaf.
typealias PackedStump = fkp_haar_stump
typealias PackedStage = fkp_haar_stage

extension PackedFeature {
    init(_ f: HaarFeature, stride: Int) {
        self.init()
        func ofs(_ i: Int) -> (Int32, Int32, Int32, Int32, Float) {
            guard i < f.rects.count else { return (0, 0, 0, 0, 0) }
            let r = f.rects[i]
            return (Int32(r.x + r.y * stride), Int32(r.x + r.width + r.y * stride),
                    Int32(r.x + (r.y + r.height) * stride), Int32(r.x + r.width + (r.y + r.height) * stride), r.weight)
        }
        (a0, b0, c0, d0, w0) = ofs(0)
        (a1, b1, c1, d1, w1) = ofs(1)
        (a2, b2, c2, d2, w2) = ofs(2)
    }

    /// Σ weight × rectangle sum, in single precision as OpenCV computes it.
    @inline(__always)
    func value(_ p: UnsafePointer<Int32>) -> Float {
        let s0 = p[Int(a0)] &- p[Int(b0)] &- p[Int(c0)] &+ p[Int(d0)]
        let s1 = p[Int(a1)] &- p[Int(b1)] &- p[Int(c1)] &+ p[Int(d1)]
        var v = w0 * Float(s0) + w1 * Float(s1)
        if w2 != 0 {
            let s2 = p[Int(a2)] &- p[Int(b2)] &- p[Int(c2)] &+ p[Int(d2)]
            v += w2 * Float(s2)
        }
        return v
    }
}

struct PackedNode {
    var feature: Int32
    var left: Int32
    var right: Int32
    var threshold: Float
}

struct PackedWeak {
    var firstNode: Int32
    var firstLeaf: Int32
}

/// The cascade laid out for the hot loop at one integral-image stride. Plain pointers; freed by the caller.
struct CompiledCascade {
    let stages: UnsafeMutableBufferPointer<PackedStage>
    let stumps: UnsafeMutableBufferPointer<PackedStump>
    let features: UnsafeMutableBufferPointer<PackedFeature>
    let nodes: UnsafeMutableBufferPointer<PackedNode>
    let weaks: UnsafeMutableBufferPointer<PackedWeak>
    let leaves: UnsafeMutableBufferPointer<Double>
    let isStumpBased: Bool
    /// The variance rectangle: the window inset by one pixel.
    let n0: Int, n1: Int, n2: Int, n3: Int
    let normArea: Double

    init(_ c: HaarCascade, stride: Int) {
        isStumpBased = c.isStumpBased
        stages = .allocate(capacity: c.stages.count)
        for (i, s) in c.stages.enumerated() {
            // stageThreshold − 1e-5 in single precision (OpenCV's THRESHOLD_EPS), compared in double.
            stages[i] = PackedStage(count: s.weak.count, threshold: Double(s.threshold - Float(1e-5)))
        }
        features = .allocate(capacity: c.features.count)
        for (i, f) in c.features.enumerated() { features[i] = PackedFeature(f, stride: stride) }
        let weakCount = c.weakClassifierCount
        if c.isStumpBased {
            stumps = .allocate(capacity: weakCount)
            var k = 0
            for s in c.stages {
                for w in s.weak {
                    let n = w.nodes[0]
                    stumps[k] = PackedStump(feature: features[n.featureIndex], threshold: n.threshold,
                                            left: w.leaves[0], right: w.leaves[1])
                    k += 1
                }
            }
            nodes = .allocate(capacity: 0)
            weaks = .allocate(capacity: 0)
            leaves = .allocate(capacity: 0)
        } else {
            stumps = .allocate(capacity: 0)
            let nodeCount = c.stages.reduce(0) { $0 + $1.weak.reduce(0) { $0 + $1.nodes.count } }
            let leafCount = c.stages.reduce(0) { $0 + $1.weak.reduce(0) { $0 + $1.leaves.count } }
            nodes = .allocate(capacity: nodeCount)
            weaks = .allocate(capacity: weakCount)
            leaves = .allocate(capacity: leafCount)
            var ni = 0, li = 0, wi = 0
            for s in c.stages {
                for w in s.weak {
                    weaks[wi] = PackedWeak(firstNode: Int32(ni), firstLeaf: Int32(li))
                    wi += 1
                    for n in w.nodes {
                        nodes[ni] = PackedNode(feature: Int32(n.featureIndex), left: Int32(n.left),
                                               right: Int32(n.right), threshold: n.threshold)
                        ni += 1
                    }
                    for l in w.leaves { leaves[li] = Double(l); li += 1 }
                }
            }
        }
        let (w, h) = c.windowSize
        n0 = 1 + stride
        n1 = (w - 1) + stride
        n2 = 1 + (h - 1) * stride
        n3 = (w - 1) + (h - 1) * stride
        normArea = Double((w - 2) * (h - 2))
    }

    func deallocate() {
        stages.deallocate(); stumps.deallocate(); features.deallocate(); nodes.deallocate()
        weaks.deallocate(); leaves.deallocate()
    }

    /// 1 / (area × standard deviation) over the inset window, or nil when OpenCV rejects the window
    /// (zero variance, or standard deviation <= 10: `area * factor >= 0.1`).
    @inline(__always)
    func varianceNormFactor(_ p: UnsafePointer<Int32>, _ q: UnsafePointer<Int64>) -> Float? {
        let s = p[n0] &- p[n1] &- p[n2] &+ p[n3]
        let sq = q[n0] &- q[n1] &- q[n2] &+ q[n3]
        let nf = normArea * Double(sq) - Double(s) * Double(s)
        guard nf > 0 else { return nil }
        let f = Float(1.0 / nf.squareRoot())
        return normArea * Double(f) < 0.1 ? f : nil
    }

    /// OpenCV's runAt: 1 if every stage passes, else -(index of the failing stage); -1 also when the
    /// variance check rejects the window (so only a stage-0 failure returns 0).
    @inline(__always)
    func evaluate(_ p: UnsafePointer<Int32>, _ q: UnsafePointer<Int64>) -> Int {
        guard let vnf = varianceNormFactor(p, q) else { return -1 }
        return evaluate(p, vnf: vnf, from: 0)
    }

    /// The stages from `first` on, for a window whose variance normalisation factor is `vnf`. A stump
    /// cascade's windows run in the C kernels (`scan`); this is their reference in the tests.
    func evaluate(_ p: UnsafePointer<Int32>, vnf: Float, from first: Int) -> Int {
        let stageCount = stages.count
        let stageBase = stages.baseAddress!
        if isStumpBased {
            var st = UnsafePointer(stumps.baseAddress!)
            for si in 0..<first { st += stageBase[si].count }
            for si in first..<stageCount {
                let stage = stageBase[si]
                var tmp = 0.0
                for i in 0..<stage.count {
                    let s = st[i]
                    let v = s.feature.value(p) * vnf
                    tmp += Double(v >= s.threshold ? s.right : s.left)
                }
                if tmp < stage.threshold { return -si }
                st += stage.count
            }
            return 1
        } else {
            let nodeBase = nodes.baseAddress!, featBase = features.baseAddress!, leafBase = leaves.baseAddress!
            var wk = UnsafePointer(weaks.baseAddress!)
            for si in 0..<first { wk += stageBase[si].count }
            for si in first..<stageCount {
                let stage = stageBase[si]
                var tmp = 0.0
                for i in 0..<stage.count {
                    let w = wk[i]
                    let root = nodeBase + Int(w.firstNode)
                    var idx: Int32 = 0
                    repeat {
                        let n = root[Int(idx)]
                        let v = featBase[Int(n.feature)].value(p) * vnf
                        idx = v < n.threshold ? n.left : n.right
                    } while idx > 0
                    tmp += leafBase[Int(w.firstLeaf) - Int(idx)]
                }
                if tmp < stage.threshold { return -si }
                wk += stage.count
            }
            return 1
        }
    }
}

/// Slides the window over one scale's integral images; calls `hit(x, y)` (shrunk-image coordinates) for
/// every window that passes all stages. A stump cascade runs a row at a time in the C kernels
/// (`fkp_detect_kernels.scan_row`: the first stages 8 windows per vector, the others one window at a
/// time); a tree cascade (only the verifier, on small regions) window by window here. Both keep the
/// order of visits and OpenCV's skip after a first-stage rejection.
func scan(plan: ScalePlan, compiled: CompiledCascade, sum: UnsafePointer<Int32>, sqsum: UnsafePointer<Int64>,
          buffers: ScanBuffers, kernels: DetectKernels = .best, hit: (Int, Int) -> Void) {
    let step = plan.step
    let stride = compiled.n0 - 1
    guard compiled.isStumpBased else {
        var y = 0
        while y < plan.workHeight {
            let prow = sum + y * stride, qrow = sqsum + y * stride
            var x = 0
            while x < plan.workWidth {
                let r = compiled.evaluate(prow + x, qrow + x)
                if r > 0 { hit(x, y) }
                if r == 0 { x += step }
                x += step
            }
            y += step
        }
        return
    }
    let positions = (plan.workWidth + step - 1) / step
    let scanRow = kernels.table.pointee.scan_row!
    withUnsafePointer(to: compiled.kernelCascade) { c in
        var y = 0
        while y < plan.workHeight {
            let n = scanRow(c, sum + y * stride, sqsum + y * stride, positions, step, buffers.codes, buffers.norms,
                            buffers.hits)
            for k in 0..<n { hit(Int(buffers.hits[k]) * step, y) }
            y += step
        }
    }
}

extension CompiledCascade {
    /// The stump cascade as the C kernels take it (pointers into this cascade's arrays).
    var kernelCascade: fkp_haar_cascade {
        fkp_haar_cascade(stages: stages.baseAddress, stage_count: stages.count, stumps: stumps.baseAddress,
                         n0: n0, n1: n1, n2: n2, n3: n3, norm_area: normArea)
    }
}
