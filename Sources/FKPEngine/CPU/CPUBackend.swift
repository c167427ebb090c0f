import CKernels
import FKPTensor
import Foundation

extension Tensor: DeviceBuffer {}

/// Growable per-worker float buffers (patch gradients, partial weight gradients). One fixed slot per
/// worker: worker i touches only slot i. (A Swift array here was modified by one worker while others
/// read it, which Thread Sanitizer reports as a race: a reader's retain can make the writer copy it.)
final class WorkerBuffers: @unchecked Sendable {
    private let buffers: UnsafeMutablePointer<Tensor>
    private let workers: Int
    init(workers: Int) {
        self.workers = workers
        buffers = .allocate(capacity: workers)
        for i in 0..<workers { (buffers + i).initialize(to: Tensor(shape: [0])) }
    }
    deinit { buffers.deinitialize(count: workers); buffers.deallocate() }
    func get(_ worker: Int, _ count: Int) -> UnsafeMutablePointer<Float> {
        if buffers[worker].count < count { buffers[worker] = Tensor(shape: [count]) }
        return buffers[worker].data
    }
}

/// The native CPU engine: the reference every other backend is checked against, and fast
/// (register-blocked SIMD GEMM with bias and ReLU in its epilogue, forward weights packed once;
/// convolutions as implicit GEMMs that read their patches from the image, a direct kernel for a 3x3
/// convolution of one channel, images split across cores). The kernels come from the best instruction
/// set the CPU has (CPUKernels).
public final class CPUBackend: Backend, @unchecked Sendable {
    public let pool: WorkerPool
    public var kernels: CPUKernels { pool.kernels }
    public var name: String { "cpu (\(pool.count) thread\(pool.count == 1 ? "" : "s"))" }
    private let patches: WorkerBuffers
    private let partials: WorkerBuffers
    /// w^T of a convolution packed as GEMM B panels, once per backward call for all its images.
    private let packedTransposed = WorkerBuffers(workers: 1)
    /// Forward weights packed as GEMM B panels, while unchanged.
    private let packs = PackedWeights()
    private let pools = PoolRecords()

    public init(threads: Int? = nil, kernels: CPUKernels = .best) {
        pool = WorkerPool(threads: threads, kernels: kernels)
        patches = WorkerBuffers(workers: pool.count)
        partials = WorkerBuffers(workers: pool.count)
    }

    /// Every op reports each buffer it writes, before writing: pool records and packed weights that read it
    /// are stale.
    @inline(__always) private func wrote(_ b: AnyObject) {
        pools.wrote(b)
        packs.wrote(b)
    }

    @inline(__always) func ptr(_ b: DeviceBuffer) -> UnsafeMutablePointer<Float> {
        unsafeDowncast(b, to: Tensor.self).data
    }

    public func makeBuffer(count: Int) -> DeviceBuffer { Tensor(shape: [count]) }

    public func write(_ source: UnsafeBufferPointer<Float>, to buffer: DeviceBuffer, offset: Int) {
        precondition(offset + source.count <= buffer.count, "write past the end of a buffer")
        wrote(buffer)
        (ptr(buffer) + offset).update(from: source.baseAddress!, count: source.count)
    }

    public func read(_ buffer: DeviceBuffer, offset: Int, into destination: UnsafeMutableBufferPointer<Float>) {
        precondition(offset + destination.count <= buffer.count, "read past the end of a buffer")
        destination.baseAddress!.update(from: ptr(buffer) + offset, count: destination.count)
    }

    public func synchronize() {}

    // MARK: dense

    public func denseForward(x: DeviceBuffer, w: DeviceBuffer, b: DeviceBuffer, y: DeviceBuffer,
                             batch: Int, inputs: Int, outputs: Int, relu: Bool) {
        wrote(y)
        // x[B,K] . w[K,N] + b, ReLU
        gemmParallel(m: batch, n: outputs, k: inputs, a: MatrixRef(ptr(x), ld: inputs),
                     b: MatrixRef(ptr(w), ld: outputs), c: ptr(y), ldc: outputs, accumulate: false, pool: pool,
                     bias: ptr(b), relu: relu, packed: packed(w, k: inputs, n: outputs))
    }

    public func denseBackward(x: DeviceBuffer, w: DeviceBuffer, dy: DeviceBuffer, dx: DeviceBuffer?,
                              dw: DeviceBuffer, db: DeviceBuffer, batch: Int, inputs: Int, outputs: Int) {
        let dyp = ptr(dy)
        wrote(dw); wrote(db)
        if let dx { wrote(dx) }
        // dw[K,N] = x^T[K,B] . dy[B,N]
        gemmParallel(m: inputs, n: outputs, k: batch, a: MatrixRef(ptr(x), ld: inputs, transposed: true),
                     b: MatrixRef(dyp, ld: outputs), c: ptr(dw), ldc: outputs, accumulate: false, pool: pool)
        columnSums(dyp, rows: batch, columns: outputs, into: ptr(db))
        if let dx {
            // dx[B,K] = dy[B,N] . w^T[N,K]
            gemmParallel(m: batch, n: inputs, k: outputs, a: MatrixRef(dyp, ld: outputs),
                         b: MatrixRef(ptr(w), ld: outputs, transposed: true), c: ptr(dx), ldc: inputs,
                         accumulate: false, pool: pool)
        }
    }

    // MARK: convolution

    public func convForward(x: DeviceBuffer, w: DeviceBuffer, b: DeviceBuffer, y: DeviceBuffer,
                            shape s: ConvShape, relu: Bool) {
        wrote(y)
        let xa = UInt(bitPattern: ptr(x)), ya = UInt(bitPattern: ptr(y))
        let wp = ptr(w), bp = ptr(b)
        let pixels = s.outHeight * s.outWidth, kk = s.patchSize
        let inStride = s.height * s.width * s.inChannels, outStride = pixels * s.outChannels
        let direct = directConvApplies(s)
        let kern = kernels.k, cout = s.outChannels
        let packed = direct ? nil : self.packed(w, k: kk, n: cout)
        forEachImageRows(s.batch, rows: s.outHeight) { worker, n, rows in
            let r0 = rows.lowerBound
            let xi = UnsafeMutablePointer<Float>(bitPattern: xa)! + n * inStride
            let yi = UnsafeMutablePointer<Float>(bitPattern: ya)! + n * outStride + r0 * s.outWidth * cout
            if let packed {
                // y[P,Cout] = patches[P,K] . w[K,Cout] + b, ReLU
                convGemm(x: xi, shape: s, pixels: r0 * s.outWidth..<rows.upperBound * s.outWidth, w: packed, bias: bp,
                         relu: relu, y: yi, scratch: self.pool.scratch[worker])
            } else {
                kern.conv3x3_c1_forward(xi + r0 * s.width, wp, bp, yi, rows.count + 2, s.width, cout, relu ? 1 : 0)
            }
        }
    }

    public func convPoolForward(x: DeviceBuffer, w: DeviceBuffer, b: DeviceBuffer, convOutput: DeviceBuffer, y: DeviceBuffer,
                                shape s: ConvShape, relu: Bool) {
        wrote(convOutput); wrote(y)
        let xa = UInt(bitPattern: ptr(x)), ya = UInt(bitPattern: ptr(y))
        let wp = ptr(w), bp = ptr(b)
        let cout = s.outChannels, ph = s.outHeight / 2, pw = s.outWidth / 2
        let inStride = s.height * s.width * s.inChannels, outStride = ph * pw * cout
        let kern = kernels.k
        let packed = directConvApplies(s) ? nil : self.packed(w, k: s.patchSize, n: cout)
        forEachImageRows(s.batch, rows: ph) { worker, n, pooledRows in
            let xi = UnsafeMutablePointer<Float>(bitPattern: xa)! + n * inStride
            let yi = UnsafeMutablePointer<Float>(bitPattern: ya)! + n * outStride
            guard let packed else {
                kern.conv3x3_c1_pool_forward(xi + 2 * pooledRows.lowerBound * s.width, wp, bp, yi + pooledRows.lowerBound * pw * cout,
                                             2 * pooledRows.count + 2, s.width, cout, relu ? 1 : 0)
                return
            }
            // two convolution rows at a time, pooled while they are in L1
            let convRows = self.patches.get(worker, 2 * s.outWidth * cout)
            for py in pooledRows {
                convGemm(x: xi, shape: s, pixels: 2 * py * s.outWidth..<(2 * py + 2) * s.outWidth, w: packed, bias: bp,
                         relu: relu, y: convRows, scratch: self.pool.scratch[worker])
                kern.maxpool2_forward(convRows, yi + py * pw * cout, nil, 2, s.outWidth, cout)
            }
        }
    }

    /// Weights w[k, n] packed as GEMM B panels (cached while w is unchanged).
    private func packed(_ w: DeviceBuffer, k: Int, n: Int) -> PackedB {
        packs.packed(unsafeDowncast(w, to: Tensor.self), k: k, n: n, pool: pool)
    }

    /// body(worker, image, rows) over every image of a batch, in parallel: each image whole when there are
    /// images enough for every worker, else its `rows` output rows split among the workers (a single photo
    /// at inference still uses every core). Every value is computed the same way either way.
    private func forEachImageRows(_ batch: Int, rows: Int, _ body: (_ worker: Int, _ image: Int, _ rows: Range<Int>) -> Void) {
        let parts = batch < pool.count ? pool.count : 1
        pool.parallelRanges(batch * parts) { worker, units in
            for u in units {
                let part = u % parts, r0 = rows * part / parts, r1 = rows * (part + 1) / parts
                if r1 > r0 { body(worker, u / parts, r0..<r1) }
            }
        }
    }

    public func convBackward(x: DeviceBuffer, w: DeviceBuffer, dy: DeviceBuffer, dx: DeviceBuffer?,
                             dw: DeviceBuffer, db: DeviceBuffer, shape s: ConvShape) {
        let xa = UInt(bitPattern: ptr(x)), dya = UInt(bitPattern: ptr(dy))
        wrote(dw); wrote(db)
        if let dx { wrote(dx) }
        let dxa = dx.map { UInt(bitPattern: ptr($0)) }
        let wp = ptr(w)
        let kern = kernels.k
        let pixels = s.outHeight * s.outWidth, kk = s.patchSize, cout = s.outChannels
        let inStride = s.height * s.width * s.inChannels, outStride = pixels * cout
        let wCount = s.weightCount
        let workers = max(1, min(pool.count, s.batch))
        // Each worker sums dw and db over its own images into a private buffer; the partial sums are
        // then added in worker order, so the result does not depend on timing.
        let direct = directConvApplies(s)
        let pooled = direct ? pooledGradient(dy, of: s) : nil
        let pooledStride = (s.outHeight / 2) * (s.outWidth / 2) * cout
        // dcols[P,K] = dy[P,Cout] . w^T[Cout,K]: w^T packed once for every image
        let packedT = dxa == nil || direct ? nil : packBParallel(MatrixRef(wp, ld: cout, transposed: true), k: cout, n: kk,
                                                                 into: packedTransposed.get(0, packedBCount(k: cout, n: kk)), pool: pool)
        pool.parallelRanges(s.batch) { worker, images in
            let cols = direct ? nil : self.patches.get(worker, pixels * kk)
            let part = self.partials.get(worker, wCount + cout)
            part.update(repeating: 0, count: wCount + cout)
            for n in images {
                let xi = UnsafeMutablePointer<Float>(bitPattern: xa)! + n * inStride
                let dyi = UnsafeMutablePointer<Float>(bitPattern: dya)! + n * outStride
                if direct {
                    if let pooled {
                        // dy is a pool's routed, ReLU-masked gradient: the sums from the pooled arrays
                        let o = n * pooledStride
                        kern.conv3x3_c1_weight_grad_pooled(xi, pooled.arg + o, pooled.y + o, pooled.dy + o, part, part + wCount,
                                                           s.height, s.width, cout)
                    } else {
                        kern.conv3x3_c1_weight_grad(xi, dyi, part, part + wCount, s.height, s.width, cout)
                    }
                    if let dxa {
                        kern.conv3x3_c1_input_grad(dyi, wp, UnsafeMutablePointer<Float>(bitPattern: dxa)! + n * inStride,
                                                   s.height, s.width, cout)
                    }
                    continue
                }
                let cols = cols!
                // dw[K,Cout] += cols^T[K,P] . dy[P,Cout]
                if cout % gemmNR == 0 {
                    convWeightGrad(x: xi, dy: dyi, shape: s, dw: part, scratch: self.pool.scratch[worker])
                } else {
                    im2col(xi, s, into: cols)
                    gemm(m: kk, n: cout, k: pixels, a: MatrixRef(cols, ld: kk, transposed: true),
                         b: MatrixRef(dyi, ld: cout), c: part, ldc: cout, accumulate: true,
                         scratch: self.pool.scratch[worker])
                }
                columnSums(dyi, rows: pixels, columns: cout, into: part + wCount, accumulate: true)
                if let dxa {
                    // dcols[P,K] = dy[P,Cout] . w^T[Cout,K], then scattered back onto the image, a few output
                    // rows at a time so that dcols is added while it is in L1 (not written out and read back).
                    let dxi = UnsafeMutablePointer<Float>(bitPattern: dxa)! + n * inStride
                    dxi.update(repeating: 0, count: inStride)
                    let chunk = max(1, 192 / s.outWidth)
                    for r0 in stride(from: 0, to: s.outHeight, by: chunk) {
                        let rows = r0..<min(r0 + chunk, s.outHeight)
                        gemm(m: rows.count * s.outWidth, n: kk, k: cout, a: MatrixRef(dyi + r0 * s.outWidth * cout, ld: cout),
                             b: MatrixRef(wp, ld: cout, transposed: true), c: cols, ldc: kk, accumulate: false,
                             scratch: self.pool.scratch[worker], packed: packedT)
                        col2im(cols, s, rows: rows, into: dxi)
                    }
                }
            }
        }
        let dwp = ptr(dw), dbp = ptr(db)
        let first = partials.get(0, wCount + cout)
        dwp.update(from: first, count: wCount)
        dbp.update(from: first + wCount, count: cout)
        for worker in 1..<max(workers, 1) {
            let part = partials.get(worker, wCount + cout)
            add(part, into: dwp, count: wCount)
            add(part + wCount, into: dbp, count: cout)
        }
    }

    /// The pooled arrays behind dy when dy is a max-pool's routed, ReLU-masked gradient of this
    /// convolution's output shape (then dy is zero except at the recorded positions).
    private func pooledGradient(_ dy: DeviceBuffer, of s: ConvShape) -> (arg: UnsafePointer<UInt8>, y: UnsafePointer<Float>, dy: UnsafePointer<Float>)? {
        guard let routing = pools.routing(of: unsafeDowncast(dy, to: Tensor.self)), routing.masked,
              routing.record.shape == s.pooled,
              let py = routing.record.y, let pdy = routing.dy else { return nil }
        return (UnsafePointer(routing.record.arg), UnsafePointer(py.data), UnsafePointer(pdy.data))
    }

    // MARK: pooling, activation, loss, update

    public func maxPoolForward(x: DeviceBuffer, y: DeviceBuffer, shape s: PoolShape) {
        wrote(y)
        // Arg-max positions are recorded only for an input whose gradient has been asked for (training):
        // then the backward pass is a scatter that does not read x again.
        let arg = pools.recordForward(x: unsafeDowncast(x, to: Tensor.self), y: unsafeDowncast(y, to: Tensor.self), shape: s)
        let xa = UInt(bitPattern: ptr(x)), ya = UInt(bitPattern: ptr(y)), aa = arg.map { UInt(bitPattern: $0) }
        let inStride = s.height * s.width * s.channels, outStride = s.outHeight * s.outWidth * s.channels
        let kern = kernels.k
        let rowOut = s.outWidth * s.channels
        forEachImageRows(s.batch, rows: s.outHeight) { _, n, rows in
            let xp = UnsafePointer<Float>(bitPattern: xa)!, yp = UnsafeMutablePointer<Float>(bitPattern: ya)!
            let o = n * outStride + rows.lowerBound * rowOut
            kern.maxpool2_forward(xp + n * inStride + 2 * rows.lowerBound * s.width * s.channels, yp + o,
                                  aa.map { UnsafeMutablePointer<UInt8>(bitPattern: $0)! + o }, 2 * rows.count, s.width, s.channels)
        }
    }

    public func maxPoolBackward(x: DeviceBuffer, dy: DeviceBuffer, dx: DeviceBuffer, shape s: PoolShape) {
        wrote(dx)
        let xt = unsafeDowncast(x, to: Tensor.self)
        var record = pools.record(for: xt, shape: s)
        if record == nil {
            // No forward pass recorded for this x (the first training step, or a caller that skipped
            // forward): find the positions now, and record them in later forward passes on this x.
            pools.wantArgs(xt)
            let scratchY = Tensor(shape: [s.outputCount])
            maxPoolForward(x: x, y: scratchY, shape: s)
            record = pools.record(for: xt, shape: s)
        }
        let r = record!
        perImage(s, kernels.k.maxpool2_backward, arg: r.arg, pooled: ptr(dy), full: ptr(dx))
        pools.routed(dx: unsafeDowncast(dx, to: Tensor.self), dy: unsafeDowncast(dy, to: Tensor.self), by: r)
    }

    /// kernel(arg, pooled, full, h, w, c) for each image of a pool's batch, images split across the workers
    /// (`pooled`: an array of the pool's output shape, `full`: one of its input shape).
    private func perImage(_ s: PoolShape,
                          _ kernel: @convention(c) (UnsafePointer<UInt8>?, UnsafePointer<Float>?, UnsafeMutablePointer<Float>?, Int, Int, Int) -> Void,
                          arg: UnsafePointer<UInt8>, pooled: UnsafePointer<Float>, full: UnsafeMutablePointer<Float>) {
        let outStride = s.outHeight * s.outWidth * s.channels, inStride = s.height * s.width * s.channels
        let aa = UInt(bitPattern: arg), pa = UInt(bitPattern: pooled), fa = UInt(bitPattern: full)
        pool.parallelRanges(s.batch) { _, images in
            for n in images {
                kernel(UnsafePointer(bitPattern: aa)! + n * outStride, UnsafePointer(bitPattern: pa)! + n * outStride,
                       UnsafeMutablePointer(bitPattern: fa)! + n * inStride, s.height, s.width, s.channels)
            }
        }
    }

    public func reluBackward(y: DeviceBuffer, dy: DeviceBuffer, count: Int) {
        let dyt = unsafeDowncast(dy, to: Tensor.self)
        if let routing = pools.routing(of: dyt), !routing.masked, routing.record.x === y,
           routing.record.shape.inputCount == count, let py = routing.record.y, let pdy = routing.dy {
            // dy came from a max-pool backward over y: only the recorded positions can be non-zero, and
            // y there is the pooled value, so the mask is a sparse pass over the pool's output.
            let r = routing.record
            wrote(dy)
            perImage(r.shape, kernels.k.maxpool2_relu_mask, arg: r.arg, pooled: py.data, full: dyt.data)
            pools.routed(dx: dyt, dy: pdy, by: r, masked: true)
            return
        }
        wrote(dy)
        let ya = UInt(bitPattern: ptr(y)), dya = UInt(bitPattern: ptr(dy))
        pool.parallelRanges(count, minChunk: 1 << 15) { _, range in
            let yp = UnsafeMutablePointer<Float>(bitPattern: ya)!, dyp = UnsafeMutablePointer<Float>(bitPattern: dya)!
            for i in range { dyp[i] = yp[i] > 0 ? dyp[i] : 0 }  // branch-free: vectorised
        }
    }

    public func dropoutForward(x: DeviceBuffer, y: DeviceBuffer, count: Int, rate: Float, seed: UInt64) {
        wrote(y)
        dropout(ptr(x), ptr(y), count: count, rate: rate, seed: seed)
    }

    public func dropoutBackward(dy: DeviceBuffer, dx: DeviceBuffer, count: Int, rate: Float, seed: UInt64) {
        wrote(dx)
        dropout(ptr(dy), ptr(dx), count: count, rate: rate, seed: seed)
    }

    private func dropout(_ src: UnsafeMutablePointer<Float>, _ dst: UnsafeMutablePointer<Float>, count: Int, rate: Float, seed: UInt64) {
        let sa = UInt(bitPattern: src), da = UInt(bitPattern: dst)
        let scale = 1 / (1 - rate)
        pool.parallelRanges(count, minChunk: 1 << 15) { _, range in
            let s = UnsafeMutablePointer<Float>(bitPattern: sa)!, d = UnsafeMutablePointer<Float>(bitPattern: da)!
            for i in range { d[i] = dropoutKeep(seed: seed, index: i, rate: rate) ? s[i] * scale : 0 }
        }
    }

    public func mseLoss(prediction: DeviceBuffer, target: DeviceBuffer, grad: DeviceBuffer,
                        batch: Int, outputs: Int) -> Float {
        wrote(grad)
        let p = ptr(prediction), t = ptr(target), g = ptr(grad)
        let n = batch * outputs
        let scale = Float(2) / Float(n)
        var sum: Double = 0
        for i in 0..<n {
            let d = p[i] - t[i]
            sum += Double(d * d)
            g[i] = scale * d
        }
        return Float(sum / Double(n))
    }

    public func nesterovUpdate(parameter: DeviceBuffer, gradient: DeviceBuffer, velocity: DeviceBuffer,
                               count: Int, learningRate lr: Float, momentum m: Float) {
        wrote(parameter); wrote(velocity)
        let pa = UInt(bitPattern: ptr(parameter)), ga = UInt(bitPattern: ptr(gradient))
        let va = UInt(bitPattern: ptr(velocity))
        pool.parallelRanges(count, minChunk: 1 << 16) { _, range in
            let p = UnsafeMutablePointer<Float>(bitPattern: pa)!, g = UnsafeMutablePointer<Float>(bitPattern: ga)!
            let v = UnsafeMutablePointer<Float>(bitPattern: va)!
            for i in range {
                let step = lr * g[i]
                let nv = m * v[i] - step
                v[i] = nv
                p[i] += m * nv - step
            }
        }
    }
}

// MARK: helpers (shape comments: NHWC images, [k][k][Cin][Cout] weights)

/// cols[P = Ho*Wo, K = k*k*Cin]: row (oy, ox) holds the k x k x Cin patch under that output pixel (the
/// weight gradient's path when Cout is not a multiple of 16).
@inline(__always)
func im2col(_ x: UnsafePointer<Float>, _ s: ConvShape, into cols: UnsafeMutablePointer<Float>) {
    let c = s.inChannels, k = s.kernel, kk = s.patchSize
    let run = k * c  // one kernel row of the patch is contiguous in NHWC
    for oy in 0..<s.outHeight {
        for ox in 0..<s.outWidth {
            let dst = cols + (oy * s.outWidth + ox) * kk
            for ky in 0..<k {
                (dst + ky * run).update(from: x + ((oy + ky) * s.width + ox) * c, count: run)
            }
        }
    }
}

/// The adjoint of im2col for output rows `rows` (cols' first row is the first of them): dx[H,W,Cin] +=
/// the patch gradients over the pixels they came from (the caller zeroes dx once per image).
@inline(__always)
func col2im(_ cols: UnsafePointer<Float>, _ s: ConvShape, rows: Range<Int>, into dx: UnsafeMutablePointer<Float>) {
    let c = s.inChannels, k = s.kernel, kk = s.patchSize
    let run = k * c
    for oy in rows {
        for ox in 0..<s.outWidth {
            let src = cols + ((oy - rows.lowerBound) * s.outWidth + ox) * kk
            for ky in 0..<k {
                let d = dx + ((oy + ky) * s.width + ox) * c
                let r = src + ky * run
                for i in 0..<run { d[i] += r[i] }
            }
        }
    }
}

@inline(__always)
func columnSums(_ m: UnsafePointer<Float>, rows: Int, columns: Int, into out: UnsafeMutablePointer<Float>,
                accumulate: Bool = false) {
    if !accumulate { out.update(repeating: 0, count: columns) }
    for r in 0..<rows {
        let row = m + r * columns
        for j in 0..<columns { out[j] += row[j] }
    }
}

@inline(__always)
func add(_ src: UnsafePointer<Float>, into dst: UnsafeMutablePointer<Float>, count: Int) {
    for i in 0..<count { dst[i] += src[i] }
}

/// Whether the direct kernel applies: a grey input (Cin = 1) and a 3x3 kernel, net2's conv1. With K = 9
/// the im2col GEMM is all packing and stores; the direct kernel keeps the 9 taps in registers.
func directConvApplies(_ s: ConvShape) -> Bool {
    s.inChannels == 1 && s.kernel == 3 && s.outChannels % 16 == 0
}
