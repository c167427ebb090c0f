/// Two boxes are "similar" when every edge moves by at most eps × the mean of their smaller width and
/// smaller height (OpenCV's SimilarRects).
func similar(_ a: FaceBox, _ b: FaceBox, eps: Double) -> Bool {
    let delta = eps * Double(min(a.width, b.width) + min(a.height, b.height)) * 0.5
    return Double(abs(a.x - b.x)) <= delta && Double(abs(a.y - b.y)) <= delta
        && Double(abs(a.x + a.width - b.x - b.width)) <= delta
        && Double(abs(a.y + a.height - b.y - b.height)) <= delta
}

/// OpenCV's `groupRectangles(rects, weights, groupThreshold: minNeighbors, eps)`:
/// 1. cluster: the connected components of the "similar" relation (transitive closure), numbered in the
///    order of their first member;
/// 2. each cluster becomes the average of its members (each coordinate rounded to nearest), with
///    `neighbors` = the number of members;
/// 3. clusters with `neighbors <= minNeighbors` are dropped;
/// 4. a cluster lying inside another kept cluster (edges within eps × the other's size) is dropped when
///    the other has more than max(3, its own) members, or when it has fewer than 3 members itself.
/// With `minNeighbors <= 0` the boxes come back unchanged with neighbors = 1. The input's `neighbors` are
/// ignored.
public func groupRectangles(_ rects: [FaceBox], minNeighbors: Int, eps: Double = 0.2) -> [FaceBox] {
    if minNeighbors <= 0 || rects.isEmpty {
        return rects.map { var r = $0; r.neighbors = 1; return r }
    }
    let n = rects.count
    // Union-find over all similar pairs.
    var parent = Array(0..<n)
    func find(_ i: Int) -> Int {
        var r = i
        while parent[r] != r { r = parent[r] }
        var j = i
        while parent[j] != r { let nx = parent[j]; parent[j] = r; j = nx }
        return r
    }
    rects.withUnsafeBufferPointer { rp in
        for i in 0..<n {
            for j in (i + 1)..<max(n, i + 1) where similar(rp[i], rp[j], eps: eps) {
                let a = find(i), b = find(j)
                if a != b { parent[max(a, b)] = min(a, b) }
            }
        }
    }
    var label = [Int](repeating: -1, count: n)
    var classOfRoot = [Int: Int]()
    var sums: [(x: Int, y: Int, w: Int, h: Int, n: Int)] = []
    for i in 0..<n {
        let r = find(i)
        let c: Int
        if let k = classOfRoot[r] { c = k } else { c = sums.count; classOfRoot[r] = c; sums.append((0, 0, 0, 0, 0)) }
        label[i] = c
        sums[c].x += rects[i].x; sums[c].y += rects[i].y
        sums[c].w += rects[i].width; sums[c].h += rects[i].height
        sums[c].n += 1
    }
    // Averages as OpenCV computes them: coordinate × (1/n) in single precision, rounded half to even.
    let avg: [FaceBox] = sums.map { s in
        let inv = 1 / Float(s.n)
        func r(_ v: Int) -> Int { Int((Float(v) * inv).rounded(.toNearestOrEven)) }
        return FaceBox(x: r(s.x), y: r(s.y), width: r(s.w), height: r(s.h), neighbors: s.n)
    }
    var out: [FaceBox] = []
    for (i, r1) in avg.enumerated() where r1.neighbors > minNeighbors {
        var inside = false
        for (j, r2) in avg.enumerated() where j != i && r2.neighbors > minNeighbors {
            let dx = Int((Double(r2.width) * eps).rounded(.toNearestOrEven))
            let dy = Int((Double(r2.height) * eps).rounded(.toNearestOrEven))
            if r1.x >= r2.x - dx && r1.y >= r2.y - dy && r1.x + r1.width <= r2.x + r2.width + dx
                && r1.y + r1.height <= r2.y + r2.height + dy
                && (r2.neighbors > max(3, r1.neighbors) || r1.neighbors < 3) {
                inside = true
                break
            }
        }
        if !inside { out.append(r1) }
    }
    return out
}
