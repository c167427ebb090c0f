// Register-blocked, packed single-precision GEMM (the CPU engine's workhorse).
//
// C[M,N] (+)= op(A)[M,K] . op(B)[K,N], all row-major. A is packed into panels of MR rows laid out
// [K][MR], B into panels of NR = 16 columns laid out [K][16]; the micro-kernel (C target CKernels, one
// per instruction set; MR = 6 with AVX2: 12 ymm accumulators) keeps an MR x 16 block of C in registers
// and streams the two panels. Blocking over K (kc) keeps a B micro-panel in L1 and the A block in L2.
// A row-major (not transposed) A is not packed: its micro-kernel reads the MR rows in place, which for
// the GEMMs of a convolution's forward pass (K = 128-256, N = 64-128) saved a copy of A that cost as much
// as a third of the multiply-adds' time. Each element of C is summed over k in the same order whatever
// MR, blocking, packing or thread count.

import CKernels

let gemmNR = 16
let gemmKC = 256
let gemmMC = 128

/// Per-worker packing buffers, grown on first use and then reused: no allocation in steady state.
public final class GemmScratch: @unchecked Sendable {
    let kernels: CPUKernels
    /// Rows of an A block: gemmMC rounded down to whole micro-panels.
    let mc: Int
    var aPack: UnsafeMutablePointer<Float>
    var bPack: UnsafeMutablePointer<SIMD16<Float>>
    var bCapacity: Int  // in SIMD16 units
    /// The MR row pointers handed to gemm_micro_rows.
    let rows: UnsafeMutablePointer<UnsafePointer<Float>?>

    public init(kernels: CPUKernels = .best) {
        self.kernels = kernels
        mc = max(kernels.mr, gemmMC / kernels.mr * kernels.mr)
        aPack = .allocate(capacity: mc * gemmKC)
        bCapacity = gemmKC * 64
        bPack = .allocate(capacity: bCapacity)
        rows = .allocate(capacity: kernels.mr)
    }
    deinit { aPack.deallocate(); bPack.deallocate(); rows.deallocate() }

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

/// B packed whole (every K row, panels of 16 columns laid out [panel][K][16]) once for several GEMMs
/// with the same right operand: a layer's weights over the images of a batch.
public struct PackedB {
    public let panels: UnsafePointer<SIMD16<Float>>
    public let k, n: Int
}

/// Floats a PackedB of k x n takes.
public func packedBCount(k: Int, n: Int) -> Int { (n + gemmNR - 1) / gemmNR * gemmNR * k }

/// Packs op(B)[k, n] into `storage` (packedBCount(k:n:) floats, 64-byte aligned as Tensor data is).
public func packB(_ b: MatrixRef, k: Int, n: Int, into storage: UnsafeMutablePointer<Float>) -> PackedB {
    let panels = UnsafeMutableRawPointer(storage).assumingMemoryBound(to: SIMD16<Float>.self)
    packB(b, rowStart: 0, kc: k, n: n, into: panels, panelStride: k)
    return PackedB(panels: UnsafePointer(panels), k: k, n: n)
}

/// The same with the panels shared out among the pool's workers.
func packBParallel(_ b: MatrixRef, k: Int, n: Int, into storage: UnsafeMutablePointer<Float>, pool: WorkerPool) -> PackedB {
    let panels = UnsafeMutableRawPointer(storage).assumingMemoryBound(to: SIMD16<Float>.self)
    let count = (n + gemmNR - 1) / gemmNR, address = UInt(bitPattern: panels)
    pool.parallelRanges(count, minChunk: max(1, (1 << 16) / max(k * gemmNR, 1))) { _, range in
        let j0 = range.lowerBound * gemmNR, j1 = min(n, range.upperBound * gemmNR)
        let out = UnsafeMutablePointer<SIMD16<Float>>(bitPattern: address)! + range.lowerBound * k
        packB(b.offsetColumns(j0), rowStart: 0, kc: k, n: j1 - j0, into: out, panelStride: k)
    }
    return PackedB(panels: UnsafePointer(panels), k: k, n: n)
}

/// Single-threaded GEMM. `accumulate`: C += A.B instead of C = A.B. `bias` (N values, added once after
/// the sum) and `relu` form the epilogue of the last K block, so C is not read again for them.
/// `packed`: B already packed whole (then `b` is not read).
public func gemm(m: Int, n: Int, k: Int, a: MatrixRef, b: MatrixRef,
                 c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool, scratch: GemmScratch,
                 bias: UnsafePointer<Float>? = nil, relu: Bool = false, packed: PackedB? = nil) {
    if m == 0 || n == 0 { return }
    if k == 0 {
        for i in 0..<m {
            let row = c + i * ldc
            if !accumulate { row.update(repeating: 0, count: n) }
            if let bias { for j in 0..<n { row[j] = relu ? max(row[j] + bias[j], 0) : row[j] + bias[j] } }
        }
        return
    }
    precondition(packed == nil || (packed!.k == k && packed!.n == n), "packed B is \(packed!.k)x\(packed!.n), not \(k)x\(n)")
    let kern = scratch.kernels.k, mrK = kern.mr
    let nPanels = (n + gemmNR - 1) / gemmNR
    let rows = scratch.rows
    var pc = 0
    while pc < k {
        let kc = min(gemmKC, k - pc)
        let acc = accumulate || pc > 0
        let last = pc + kc == k
        // panel jp of this K block
        let bBase: UnsafePointer<SIMD16<Float>>, bStride: Int
        if let packed {
            (bBase, bStride) = (packed.panels + pc, k)
        } else {
            scratch.ensureB(nPanels * kc)
            packB(b, rowStart: pc, kc: kc, n: n, into: scratch.bPack, panelStride: kc)
            (bBase, bStride) = (UnsafePointer(scratch.bPack), kc)
        }
        var ic = 0
        while ic < m {
            let mc = min(scratch.mc, m - ic)
            if a.transposed { packA(a, rowStart: ic, mc: mc, colStart: pc, kc: kc, mr: mrK, into: scratch.aPack) }
            let mPanels = (mc + mrK - 1) / mrK
            for jp in 0..<nPanels {
                let j0 = jp * gemmNR
                let nr = min(gemmNR, n - j0)
                let bp = UnsafeRawPointer(bBase + jp * bStride).assumingMemoryBound(to: Float.self)
                let bj = last ? bias.map { $0 + j0 } : nil
                for ip in 0..<mPanels {
                    let i0 = ip * mrK, used = min(mrK, mc - i0)
                    let cp = c + (ic + i0) * ldc + j0
                    if a.transposed {
                        kern.gemm_micro(kc, scratch.aPack + ip * kc * mrK, bp, cp, ldc, used, nr, acc ? 1 : 0, bj, relu ? 1 : 0)
                    } else {
                        for r in 0..<mrK { rows[r] = a.base + (ic + i0 + min(r, used - 1)) * a.ld + pc }
                        kern.gemm_micro_rows(kc, rows, kc, 0, bp, cp, ldc, used, nr, acc ? 1 : 0, bj, relu ? 1 : 0)
                    }
                }
            }
            ic += mc
        }
        pc += kc
    }
}

/// One image's convolution output pixels `pixels` (indices oy * outWidth + ox) as a GEMM whose A rows are
/// the patches read in place from the NHWC image x (no im2col: a patch is `kernel` runs of kernel*Cin
/// contiguous floats, one per kernel row): y[p, Cout] = patch(p) . w + bias, ReLU. y points at the first
/// pixel's output; w is packed whole ([k*k*Cin] x Cout). The sums are those of im2col + gemm.
func convGemm(x: UnsafePointer<Float>, shape s: ConvShape, pixels: Range<Int>, w: PackedB,
              bias: UnsafePointer<Float>, relu: Bool, y: UnsafeMutablePointer<Float>, scratch: GemmScratch) {
    let kern = scratch.kernels.k, mr = kern.mr, rows = scratch.rows
    let cout = s.outChannels, kk = s.patchSize, seg = s.kernel * s.inChannels, stride = s.width * s.inChannels
    precondition(w.k == kk && w.n == cout, "packed weights \(w.k)x\(w.n) for \(s)")
    let nPanels = (cout + gemmNR - 1) / gemmNR
    var q = pixels.lowerBound
    while q < pixels.upperBound {
        let used = min(mr, pixels.upperBound - q)
        for r in 0..<mr {
            let p = q + min(r, used - 1)
            rows[r] = x + ((p / s.outWidth) * s.width + p % s.outWidth) * s.inChannels
        }
        let yq = y + (q - pixels.lowerBound) * cout
        for jp in 0..<nPanels {
            let j0 = jp * gemmNR
            let bp = UnsafeRawPointer(w.panels + jp * kk).assumingMemoryBound(to: Float.self)
            kern.gemm_micro_rows(kk, rows, seg, stride, bp, yq + j0, cout, used, min(gemmNR, cout - j0), 0, bias + j0,
                                 relu ? 1 : 0)
        }
        q += mr
    }
}

/// dw[K = k*k*Cin, Cout] += sum over one image's output pixels of patch(p) (x) dy(p): the weight gradient
/// of a convolution as im2col^T . dy, with neither im2col nor packing (gemm_micro_outer reads patch runs
/// from x and channel blocks from dy in place). Pixels are taken in blocks of gemmKC, each block's sum
/// added to dw, as gemm sums them: the same bits. Needs Cout a multiple of 16 (whole 16-float rows of dy).
func convWeightGrad(x: UnsafePointer<Float>, dy: UnsafePointer<Float>, shape s: ConvShape,
                    dw: UnsafeMutablePointer<Float>, scratch: GemmScratch) {
    let kern = scratch.kernels.k, mr = kern.mr
    let c = s.inChannels, cout = s.outChannels, seg = s.kernel * c, ow = s.outWidth
    let pixels = s.outHeight * ow
    precondition(cout % gemmNR == 0, "convWeightGrad needs Cout a multiple of 16, not \(cout)")
    var pc = 0
    while pc < pixels {
        let kc = min(gemmKC, pixels - pc)
        let oy = pc / ow, ox = pc % ow
        for ky in 0..<s.kernel {
            let a0 = x + ((oy + ky) * s.width + ox) * c
            var t = 0
            while t < seg {  // tiles stay inside one kernel row's run, where patch values are contiguous
                let used = min(mr, seg - t), row = ky * seg + t
                for j0 in stride(from: 0, to: cout, by: gemmNR) {
                    kern.gemm_micro_outer(kc, a0 + t, c, (s.kernel - 1) * c, ow - ox, ow, dy + pc * cout + j0, cout,
                                          dw + row * cout + j0, cout, used, 1)
                }
                t += mr
            }
        }
        pc += kc
    }
}

/// GEMM split by column blocks over `threads` workers (each with its own scratch). Deterministic:
/// every element of C is computed by exactly one worker in the same order as the serial version.
public func gemmParallel(m: Int, n: Int, k: Int, a: MatrixRef, b: MatrixRef,
                         c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool, pool: WorkerPool,
                         bias: UnsafePointer<Float>? = nil, relu: Bool = false, packed: PackedB? = nil) {
    let panels = (n + gemmNR - 1) / gemmNR
    let workers = min(pool.count, panels)
    if workers <= 1 || m * n * k < 1 << 16 {
        gemm(m: m, n: n, k: k, a: a, b: b, c: c, ldc: ldc, accumulate: accumulate, scratch: pool.scratch[0],
             bias: bias, relu: relu, packed: packed)
        return
    }
    let cAddr = UInt(bitPattern: c)
    pool.run(workers) { w in
        let p0 = panels * w / workers, p1 = panels * (w + 1) / workers
        let j0 = p0 * gemmNR, j1 = min(n, p1 * gemmNR)
        if j1 <= j0 { return }
        let cc = UnsafeMutablePointer<Float>(bitPattern: cAddr)! + j0
        gemm(m: m, n: j1 - j0, k: k, a: a, b: b.offsetColumns(j0), c: cc, ldc: ldc,
             accumulate: accumulate, scratch: pool.scratch[w], bias: bias.map { $0 + j0 }, relu: relu,
             packed: packed.map { PackedB(panels: $0.panels + p0 * k, k: k, n: j1 - j0) })
    }
}

/// Packs the transposed A's rows rowStart..<rowStart+mc, columns colStart..<colStart+kc into panels of
/// gemmMR rows laid out [kc][gemmMR] (a row-major A is read in place instead).
@inline(__always)
private func packA(_ a: MatrixRef, rowStart: Int, mc: Int, colStart: Int, kc: Int, mr gemmMR: Int,
                   into dst: UnsafeMutablePointer<Float>) {
    let panels = (mc + gemmMR - 1) / gemmMR
    for ip in 0..<panels {
        let out = dst + ip * kc * gemmMR
        let i0 = rowStart + ip * gemmMR
        let rows = min(gemmMR, mc - ip * gemmMR)
        // element (i, p) at base[p*ld + i]: rows of the panel are contiguous in memory.
        for p in 0..<kc {
            let src = a.base + (colStart + p) * a.ld + i0
            let o = out + p * gemmMR
            for r in 0..<rows { o[r] = src[r] }
            for r in rows..<gemmMR { o[r] = 0 }
        }
    }
}

@inline(__always)
private func packB(_ b: MatrixRef, rowStart: Int, kc: Int, n: Int,
                   into dst: UnsafeMutablePointer<SIMD16<Float>>, panelStride: Int) {
    let panels = (n + gemmNR - 1) / gemmNR
    for jp in 0..<panels {
        let j0 = jp * gemmNR
        let cols = min(gemmNR, n - j0)
        let out = dst + jp * panelStride
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
