// Register-blocked, packed single-precision GEMM (the CPU engine's workhorse).
//
// C[M,N] (+)= op(A)[M,K] . op(B)[K,N], all row-major. A is packed into panels of MR rows laid out
// [K][MR], B into panels of NR columns laid out [K][NR]; the micro-kernel keeps an MR x NR block of C in
// registers (8 SIMD16 accumulators = 8 zmm registers with AVX-512) and streams the two panels.
// Blocking over K (kc) keeps a B micro-panel in L1 and the A block in L2.

let gemmMR = 8
let gemmNR = 16
let gemmKC = 256
let gemmMC = 128

/// Per-worker packing buffers, grown on first use and then reused: no allocation in steady state.
public final class GemmScratch: @unchecked Sendable {
    var aPack: UnsafeMutablePointer<Float>
    var aCapacity: Int
    var bPack: UnsafeMutablePointer<SIMD16<Float>>
    var bCapacity: Int  // in SIMD16 units

    public init() {
        aCapacity = gemmMC * gemmKC
        aPack = .allocate(capacity: aCapacity)
        bCapacity = gemmKC * 64
        bPack = .allocate(capacity: bCapacity)
    }
    deinit { aPack.deallocate(); bPack.deallocate() }

    func ensureB(_ n: Int) {
        if n > bCapacity { bPack.deallocate(); bPack = .allocate(capacity: n); bCapacity = n }
    }
}

/// A read-only matrix operand: element (i, j) of op(M) is base[i*ld + j], or base[j*ld + i] when transposed.
public struct MatrixRef {
    public var base: UnsafePointer<Float>
    public var ld: Int
    public var transposed: Bool
    public init(_ base: UnsafePointer<Float>, ld: Int, transposed: Bool = false) {
        self.base = base; self.ld = ld; self.transposed = transposed
    }
    @inline(__always) func offsetColumns(_ j: Int) -> MatrixRef {
        MatrixRef(base + (transposed ? j * ld : j), ld: ld, transposed: transposed)
    }
    @inline(__always) func offsetRows(_ i: Int) -> MatrixRef {
        MatrixRef(base + (transposed ? i : i * ld), ld: ld, transposed: transposed)
    }
}

/// Single-threaded GEMM. `accumulate`: C += A.B instead of C = A.B.
public func gemm(m: Int, n: Int, k: Int, a: MatrixRef, b: MatrixRef,
                 c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool, scratch: GemmScratch) {
    if m == 0 || n == 0 { return }
    if k == 0 {
        if !accumulate { for i in 0..<m { (c + i * ldc).update(repeating: 0, count: n) } }
        return
    }
    let nPanels = (n + gemmNR - 1) / gemmNR
    var pc = 0
    while pc < k {
        let kc = min(gemmKC, k - pc)
        let acc = accumulate || pc > 0
        scratch.ensureB(nPanels * kc)
        packB(b, rowStart: pc, kc: kc, n: n, into: scratch.bPack)
        var ic = 0
        while ic < m {
            let mc = min(gemmMC, m - ic)
            packA(a, rowStart: ic, mc: mc, colStart: pc, kc: kc, into: scratch.aPack)
            let mPanels = (mc + gemmMR - 1) / gemmMR
            for jp in 0..<nPanels {
                let j0 = jp * gemmNR
                let nr = min(gemmNR, n - j0)
                let bp = scratch.bPack + jp * kc
                for ip in 0..<mPanels {
                    let i0 = ip * gemmMR
                    let mr = min(gemmMR, mc - i0)
                    microKernel(kc: kc, a: scratch.aPack + ip * kc * gemmMR, b: bp,
                                c: c + (ic + i0) * ldc + j0, ldc: ldc, mr: mr, nr: nr, accumulate: acc)
                }
            }
            ic += mc
        }
        pc += kc
    }
}

/// GEMM split by column blocks over `threads` workers (each with its own scratch). Deterministic:
/// every element of C is computed by exactly one worker in the same order as the serial version.
public func gemmParallel(m: Int, n: Int, k: Int, a: MatrixRef, b: MatrixRef,
                         c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool, pool: WorkerPool) {
    let panels = (n + gemmNR - 1) / gemmNR
    let workers = min(pool.count, panels)
    if workers <= 1 || m * n * k < 1 << 16 {
        gemm(m: m, n: n, k: k, a: a, b: b, c: c, ldc: ldc, accumulate: accumulate, scratch: pool.scratch[0])
        return
    }
    let cAddr = UInt(bitPattern: c)
    pool.run(workers) { w in
        let p0 = panels * w / workers, p1 = panels * (w + 1) / workers
        let j0 = p0 * gemmNR, j1 = min(n, p1 * gemmNR)
        if j1 <= j0 { return }
        let cc = UnsafeMutablePointer<Float>(bitPattern: cAddr)! + j0
        gemm(m: m, n: j1 - j0, k: k, a: a, b: b.offsetColumns(j0), c: cc, ldc: ldc,
             accumulate: accumulate, scratch: pool.scratch[w])
    }
}

@inline(__always)
private func packA(_ a: MatrixRef, rowStart: Int, mc: Int, colStart: Int, kc: Int,
                   into dst: UnsafeMutablePointer<Float>) {
    let panels = (mc + gemmMR - 1) / gemmMR
    for ip in 0..<panels {
        let out = dst + ip * kc * gemmMR
        let i0 = rowStart + ip * gemmMR
        let rows = min(gemmMR, mc - ip * gemmMR)
        if a.transposed {
            // element (i, p) at base[p*ld + i]: rows of the panel are contiguous in memory.
            for p in 0..<kc {
                let src = a.base + (colStart + p) * a.ld + i0
                let o = out + p * gemmMR
                for r in 0..<rows { o[r] = src[r] }
                for r in rows..<gemmMR { o[r] = 0 }
            }
        } else {
            for r in 0..<gemmMR {
                if r < rows {
                    let src = a.base + (i0 + r) * a.ld + colStart
                    for p in 0..<kc { out[p * gemmMR + r] = src[p] }
                } else {
                    for p in 0..<kc { out[p * gemmMR + r] = 0 }
                }
            }
        }
    }
}

@inline(__always)
private func packB(_ b: MatrixRef, rowStart: Int, kc: Int, n: Int,
                   into dst: UnsafeMutablePointer<SIMD16<Float>>) {
    let panels = (n + gemmNR - 1) / gemmNR
    for jp in 0..<panels {
        let j0 = jp * gemmNR
        let cols = min(gemmNR, n - j0)
        let out = dst + jp * kc
        if !b.transposed {
            // element (p, j) at base[p*ld + j]: 16 consecutive columns are one vector load.
            if cols == gemmNR {
                for p in 0..<kc {
                    let src = UnsafeRawPointer(b.base + (rowStart + p) * b.ld + j0)
                    out[p] = src.loadUnaligned(as: SIMD16<Float>.self)
                }
            } else {
                for p in 0..<kc {
                    let src = b.base + (rowStart + p) * b.ld + j0
                    var v = SIMD16<Float>(repeating: 0)
                    for j in 0..<cols { v[j] = src[j] }
                    out[p] = v
                }
            }
        } else {
            // element (p, j) at base[j*ld + p]
            let raw = UnsafeMutableRawPointer(out).assumingMemoryBound(to: Float.self)
            for j in 0..<gemmNR {
                if j < cols {
                    let src = b.base + (j0 + j) * b.ld + rowStart
                    for p in 0..<kc { raw[p * gemmNR + j] = src[p] }
                } else {
                    for p in 0..<kc { raw[p * gemmNR + j] = 0 }
                }
            }
        }
    }
}

@inline(__always)
private func microKernel(kc: Int, a: UnsafePointer<Float>, b: UnsafePointer<SIMD16<Float>>,
                         c: UnsafeMutablePointer<Float>, ldc: Int, mr: Int, nr: Int, accumulate: Bool) {
    var c0 = SIMD16<Float>(repeating: 0), c1 = c0, c2 = c0, c3 = c0
    var c4 = c0, c5 = c0, c6 = c0, c7 = c0
    var ap = a
    for p in 0..<kc {
        let bv = b[p]
        c0.addProduct(ap[0], bv); c1.addProduct(ap[1], bv)
        c2.addProduct(ap[2], bv); c3.addProduct(ap[3], bv)
        c4.addProduct(ap[4], bv); c5.addProduct(ap[5], bv)
        c6.addProduct(ap[6], bv); c7.addProduct(ap[7], bv)
        ap += gemmMR
    }
    if mr == gemmMR && nr == gemmNR {
        @inline(__always) func store(_ v: SIMD16<Float>, _ row: Int) {
            let p = UnsafeMutableRawPointer(c + row * ldc)
            if accumulate {
                p.storeBytes(of: p.loadUnaligned(as: SIMD16<Float>.self) &+ v, as: SIMD16<Float>.self)
            } else {
                p.storeBytes(of: v, as: SIMD16<Float>.self)
            }
        }
        store(c0, 0); store(c1, 1); store(c2, 2); store(c3, 3)
        store(c4, 4); store(c5, 5); store(c6, 6); store(c7, 7)
    } else {
        var tile = (c0, c1, c2, c3, c4, c5, c6, c7)
        withUnsafeBytes(of: &tile) { raw in
            let t = raw.bindMemory(to: Float.self)
            for r in 0..<mr {
                let dst = c + r * ldc
                for j in 0..<nr {
                    let v = t[r * gemmNR + j]
                    dst[j] = accumulate ? dst[j] + v : v
                }
            }
        }
    }
}

private extension SIMD16 where Scalar == Float {
    static func &+ (a: Self, b: Self) -> Self { a + b }
}
