import CDetect
import Dispatch

/// Linear filters over HOG cells, one per pose, as a HOG sliding-window detector uses them (dlib's frontal
/// face detector is five: front, turned either way, and tilted either way). Each filter is kept in
/// separable form: on each HOG plane, a sum of a few (column vector x row vector) terms.
public struct HOGFilterBank: Sendable {
    /// HOG planes per cell, so per filter (Felzenszwalb's 31 values).
    public static let planes = Int(FKP_FHOG_PLANES)
    /// Cells per filter side (a square window of `size * FKP_FHOG_CELL` pixels).
    public let size: Int
    /// Terms per filter and plane ([count, 31]), at most `maxTerms`.
    public let terms: [Int32]
    public let maxTerms: Int
    /// [count, 31, maxTerms, size] each; unused terms are zero.
    public let columns: [Float], rows: [Float]
    /// A window is a face when filter k's response minus `biases[k]` reaches the detector's threshold.
    public let biases: [Float]
    public let poses: [FacePose]
    /// Non-maximum suppression: two boxes are one face when their intersection covers more than `iou` of
    /// the rectangle around both, or more than `covered` of either box.
    public let iou: Double, covered: Double

    public init(size: Int, terms: [Int32], maxTerms: Int, columns: [Float], rows: [Float], biases: [Float],
                poses: [FacePose], iou: Double, covered: Double) {
        let count = biases.count, planes = Self.planes
        precondition(size > 0 && maxTerms > 0 && terms.count == count * planes && poses.count == count)
        precondition(columns.count == count * planes * maxTerms * size && rows.count == columns.count)
        precondition(terms.allSatisfy { (0...Int32(maxTerms)).contains($0) })
        self.size = size; self.terms = terms; self.maxTerms = maxTerms; self.columns = columns; self.rows = rows
        self.biases = biases; self.poses = poses; self.iou = iou; self.covered = covered
    }
    public var count: Int { biases.count }
}

/// One face found by a `HOGDetector`, in photo pixels.
public struct HOGDetection: Sendable, Equatable {
    public var x, y, width, height: Double
    /// The best window's response minus its filter's bias: 0 at the detection threshold, higher surer.
    public var score: Double
    /// The filter (pose) of the best window.
    public var filter: Int
    /// Windows (positions and scales, every filter) above the threshold that this face suppressed, itself
    /// included.
    public var windows: Int
}

/// A HOG sliding-window detector (Dalal and Triggs, with Felzenszwalb's cells), computed as dlib's
/// `scan_fhog_pyramid` computes it: the photo optionally doubled, a pyramid of 5/6 steps down to 64
/// pixels, HOG cells of 8 pixels with the window allowed past the photo's edge (padded with zero cells),
/// every filter at every cell, then non-maximum suppression, strongest first.
public struct HOGDetector: Sendable {
    public var bank: HOGFilterBank
    /// Double the photo first: windows of 80 pixels then find faces from about 40 pixels wide.
    public var upsample = true
    /// Photos with more pixels than this are searched at their size (faces from about 80 px): doubled,
    /// a 24 MP photo would take about 0.3 GB per pyramid level and four times the time.
    public var maxUpsamplePixels = 4_000_000
    /// Added to every filter's bias: below 0 finds more (and more false) faces.
    public var threshold: Double = 0
    /// The pyramid stops before a level narrower or lower than this.
    public var minLevelSize = 64

    public init(bank: HOGFilterBank) { self.bank = bank }

    public func detect(gray8 pixels: [UInt8], width: Int, height: Int, threads: Int = 2) -> [HOGDetection] {
        guard width > 1, height > 1 else { return [] }
        // Level 0, doubled as dlib's pyramid_up does (2w + 2 by 2h + 1, corners aligned).
        var levels: [(w: Int, h: Int, pixels: [UInt8])] = []
        let doubled = upsample && width * height <= maxUpsamplePixels
        if doubled {
            let w = 2 * width + 2, h = 2 * height + 1
            var up = [UInt8](repeating: 0, count: w * h)
            resize(pixels, width, height, &up, w, h)
            levels.append((w, h, up))
        } else {
            levels.append((width, height, pixels))
        }
        // As many levels as dlib's rect_down steps stay at least minLevelSize in both directions.
        var count = 0
        var rect = (l: 0, t: 0, r: levels[0].w - 1, b: levels[0].h - 1)
        repeat {
            func down(_ v: Int) -> Int { Int(((Double(v) - 0.3) * 5 / 6).rounded(.toNearestOrAwayFromZero)) }
            rect = (down(rect.l), down(rect.t), down(rect.r), down(rect.b))
            count += 1
        } while rect.r - rect.l + 1 >= minLevelSize && rect.b - rect.t + 1 >= minLevelSize
        while levels.count < count {
            let last = levels[levels.count - 1]
            let w = 5 * last.w / 6, h = 5 * last.h / 6
            var out = [UInt8](repeating: 0, count: w * h)
            resize(last.pixels, last.w, last.h, &out, w, h)
            levels.append((w, h, out))
        }
        var perLevel = [[(box: (Double, Double, Double, Double), score: Double, filter: Int)]](repeating: [], count: levels.count)
        let thresholds = (0..<bank.count).map { bank.biases[$0] + Float(threshold) }
        let lock = DispatchQueue(label: "hog.levels")
        let levelWork = { (l: Int) in
            let hits = scan(levels[l].pixels, levels[l].w, levels[l].h, thresholds)
            let found = hits.map { hit -> (box: (Double, Double, Double, Double), score: Double, filter: Int) in
                var (x0, y0, x1, y1) = windowBox(hit.row, hit.col)
                // Back up the pyramid (dlib's point_up, 6/5 and 0.3 per level), rounded as its rectangles are.
                for _ in 0..<l { x0 = x0 * 1.2 + 0.3; y0 = y0 * 1.2 + 0.3; x1 = x1 * 1.2 + 0.3; y1 = y1 * 1.2 + 0.3 }
                (x0, y0, x1, y1) = (x0.rounded(), y0.rounded(), x1.rounded(), y1.rounded())
                return ((x0, y0, x1, y1), Double(hit.value - bank.biases[Int(hit.filter)]), Int(hit.filter))
            }
            lock.sync { perLevel[l] = found }
        }
        // `threads` workers take the levels largest first (each holds one level's cells at a time).
        distributeTasks(levels.count, threads: threads) { next in
            while let l = next() { levelWork(l) }
        }
        let all = perLevel.flatMap { $0 }.sorted { $0.score > $1.score }
        var kept: [(box: (Double, Double, Double, Double), score: Double, filter: Int, windows: Int)] = []
        for c in all {
            if let j = kept.firstIndex(where: { suppresses($0.box, c.box) }) { kept[j].windows += 1; continue }
            kept.append((c.box, c.score, c.filter, 1))
        }
        // Inclusive pixel rectangles of level 0 -> photo pixels (x0, y0, width, height).
        let sx = doubled ? Double(width - 1) / Double(levels[0].w - 1) : 1
        let sy = doubled ? Double(height - 1) / Double(levels[0].h - 1) : 1
        return kept.map { k in
            let (x0, y0, x1, y1) = k.box
            return HOGDetection(x: x0 * sx, y: y0 * sy, width: (x1 + 1 - x0) * sx, height: (y1 + 1 - y0) * sy,
                                score: k.score, filter: k.filter, windows: k.windows)
        }
    }

    func resize(_ src: [UInt8], _ sw: Int, _ sh: Int, _ dst: inout [UInt8], _ dw: Int, _ dh: Int) {
        precondition(fkp_resize_bilinear(src, sw, sh, &dst, dw, dh) == 1, "HOG detector: out of memory resizing to \(dw) x \(dh)")
    }

    /// HOG cells of one level and every filter's hits on them.
    func scan(_ pixels: [UInt8], _ w: Int, _ h: Int, _ thresholds: [Float]) -> [fkp_fhog_hit] {
        var rows = 0, cols = 0
        fkp_fhog_size(w, h, &rows, &cols)
        guard rows > 0, cols > 0 else { return [] }
        // Zero cells around the image: (size - 1) / 2 before, size / 2 after, as dlib pads for its filter.
        let pad = (bank.size - 1) / 2, sr = rows + bank.size - 1, sc = cols + bank.size - 1
        var features = [Float](repeating: 0, count: sr * sc * HOGFilterBank.planes)
        let made = fkp_fhog(pixels, w, h, &features, sr, sc, pad)
        // Out of memory in C is as fatal as in Swift, and says so instead of finding no face.
        precondition(made >= 0, "HOG detector: out of memory for the cells of a \(w) x \(h) image")
        guard made == 1 else { return [] }
        var scratch = [Float](repeating: 0, count: fkp_fhog_scan_scratch(sr, sc, bank.count, bank.size))
        var capacity = 1024
        while true {
            var hits = [fkp_fhog_hit](repeating: fkp_fhog_hit(), count: capacity)
            let n = fkp_fhog_scan(features, sr, sc, bank.terms, bank.columns, bank.rows, bank.maxTerms, bank.count,
                                  bank.size, thresholds, &scratch, &hits, capacity)
            if n <= capacity { return Array(hits[0..<n]) }
            capacity = n
        }
    }

    /// The pixel rectangle (inclusive) of the window whose top-left cell is (row, col) in the padded cells:
    /// cell q covers pixels from (q + 1 - (size - 1) / 2) * 8 + 1, moved half a cell outward (dlib's
    /// fhog_to_image).
    func windowBox(_ row: Int32, _ col: Int32) -> (Double, Double, Double, Double) {
        let cell = Int(FKP_FHOG_CELL), shift = (bank.size - 1) / 2
        func pixel(_ q: Int) -> Double {
            let p = (q + 1 - shift) * cell + 1
            return Double(p + (p >= 0 ? cell / 2 : -cell / 2))
        }
        let r = Int(row), c = Int(col)
        return (pixel(c), pixel(r), pixel(c + bank.size - 1), pixel(r + bank.size - 1))
    }

    /// dlib's box overlap test on inclusive rectangles: the intersection over the rectangle around both,
    /// or over either box.
    func suppresses(_ a: (Double, Double, Double, Double), _ b: (Double, Double, Double, Double)) -> Bool {
        func area(_ r: (Double, Double, Double, Double)) -> Double { max(0, r.2 - r.0 + 1) * max(0, r.3 - r.1 + 1) }
        let inner = area((max(a.0, b.0), max(a.1, b.1), min(a.2, b.2), min(a.3, b.3)))
        guard inner > 0 else { return false }
        let outer = area((min(a.0, b.0), min(a.1, b.1), max(a.2, b.2), max(a.3, b.3)))
        return inner / outer > bank.iou || inner / area(a) > bank.covered || inner / area(b) > bank.covered
    }
}
