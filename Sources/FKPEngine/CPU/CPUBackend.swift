import FKPTensor

extension Tensor: DeviceBuffer {}

/// Growable per-worker float buffers (im2col patches, partial weight gradients). One fixed slot per
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
/// (packed SIMD GEMM, convolutions as per-image im2col + GEMM, images split across cores).
public final class CPUBackend: Backend, @unchecked Sendable {
    public let pool: WorkerPool
    public var name: String { "cpu (\(pool.count) thread\(pool.count == 1 ? "" : "s"))" }
    private let patches: WorkerBuffers
    private let partials: WorkerBuffers

    public init(threads: Int? = nil) {
        pool = WorkerPool(threads: threads)
        patches = WorkerBuffers(workers: pool.count)
        partials = WorkerBuffers(workers: pool.count)
    }

    @inline(__always) func ptr(_ b: DeviceBuffer) -> UnsafeMutablePointer<Float> {
        unsafeDowncast(b, to: Tensor.self).data
    }

    public func makeBuffer(count: Int) -> DeviceBuffer { Tensor(shape: [count]) }

    public func write(_ source: UnsafeBufferPointer<Float>, to buffer: DeviceBuffer, offset: Int) {
        precondition(offset + source.count <= buffer.count, "write past the end of a buffer")
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
        let yp = ptr(y), bp = ptr(b)
        // x[B,K] . w[K,N]
        gemmParallel(m: batch, n: outputs, k: inputs, a: MatrixRef(ptr(x), ld: inputs),
                     b: MatrixRef(ptr(w), ld: outputs), c: yp, ldc: outputs, accumulate: false, pool: pool)
        for r in 0..<batch { biasActivate(yp + r * outputs, bias: bp, channels: outputs, pixels: 1, relu: relu) }
    }

    public func denseBackward(x: DeviceBuffer, w: DeviceBuffer, dy: DeviceBuffer, dx: DeviceBuffer?,
                              dw: DeviceBuffer, db: DeviceBuffer, batch: Int, inputs: Int, outputs: Int) {
        let dyp = ptr(dy)
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
        let xa = UInt(bitPattern: ptr(x)), ya = UInt(bitPattern: ptr(y))
        let wp = ptr(w), bp = ptr(b)
        let pixels = s.outHeight * s.outWidth, kk = s.patchSize
        let inStride = s.height * s.width * s.inChannels, outStride = pixels * s.outChannels
        let direct = directConvApplies(s)
        pool.parallelRanges(s.batch) { worker, images in
            let cols = direct ? nil : self.patches.get(worker, pixels * kk)
            for n in images {
                let xi = UnsafeMutablePointer<Float>(bitPattern: xa)! + n * inStride
                let yi = UnsafeMutablePointer<Float>(bitPattern: ya)! + n * outStride
                if direct {
                    directConv3x3Forward(xi, wp, bp, yi, s, relu: relu)
                    continue
                }
                let cols = cols!
                im2col(xi, s, into: cols)
                // y[P,Cout] = cols[P,K] . w[K,Cout]
                gemm(m: pixels, n: s.outChannels, k: kk, a: MatrixRef(cols, ld: kk),
                     b: MatrixRef(wp, ld: s.outChannels), c: yi, ldc: s.outChannels, accumulate: false,
                     scratch: self.pool.scratch[worker])
                biasActivate(yi, bias: bp, channels: s.outChannels, pixels: pixels, relu: relu)
            }
        }
    }

    public func convBackward(x: DeviceBuffer, w: DeviceBuffer, dy: DeviceBuffer, dx: DeviceBuffer?,
                             dw: DeviceBuffer, db: DeviceBuffer, shape s: ConvShape) {
        let xa = UInt(bitPattern: ptr(x)), dya = UInt(bitPattern: ptr(dy))
        let dxa = dx.map { UInt(bitPattern: ptr($0)) }
        let wp = ptr(w)
        let pixels = s.outHeight * s.outWidth, kk = s.patchSize, cout = s.outChannels
        let inStride = s.height * s.width * s.inChannels, outStride = pixels * cout
        let wCount = s.weightCount
        let workers = max(1, min(pool.count, s.batch))
        // Each worker sums dw and db over its own images into a private buffer; the partial sums are
        // then added in worker order, so the result does not depend on timing.
        let direct = directConvApplies(s)
        pool.parallelRanges(s.batch) { worker, images in
            let cols = direct ? nil : self.patches.get(worker, pixels * kk)
            let part = self.partials.get(worker, wCount + cout)
            part.update(repeating: 0, count: wCount + cout)
            for n in images {
                let xi = UnsafeMutablePointer<Float>(bitPattern: xa)! + n * inStride
                let dyi = UnsafeMutablePointer<Float>(bitPattern: dya)! + n * outStride
                if direct {
                    directConv3x3WeightGradient(xi, dyi, part, part + wCount, s)
                    if let dxa {
                        directConv3x3InputGradient(dyi, wp, UnsafeMutablePointer<Float>(bitPattern: dxa)! + n * inStride, s)
                    }
                    continue
                }
                let cols = cols!
                im2col(xi, s, into: cols)
                // dw[K,Cout] += cols^T[K,P] . dy[P,Cout]
                gemm(m: kk, n: cout, k: pixels, a: MatrixRef(cols, ld: kk, transposed: true),
                     b: MatrixRef(dyi, ld: cout), c: part, ldc: cout, accumulate: true,
                     scratch: self.pool.scratch[worker])
                columnSums(dyi, rows: pixels, columns: cout, into: part + wCount, accumulate: true)
                if let dxa {
                    // dcols[P,K] = dy[P,Cout] . w^T[Cout,K], then scattered back onto the image.
                    gemm(m: pixels, n: kk, k: cout, a: MatrixRef(dyi, ld: cout),
                         b: MatrixRef(wp, ld: cout, transposed: true), c: cols, ldc: kk, accumulate: false,
                         scratch: self.pool.scratch[worker])
                    col2im(cols, s, into: UnsafeMutablePointer<Float>(bitPattern: dxa)! + n * inStride)
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

    // MARK: pooling, activation, loss, update

    public func maxPoolForward(x: DeviceBuffer, y: DeviceBuffer, shape s: PoolShape) {
        let xa = UInt(bitPattern: ptr(x)), ya = UInt(bitPattern: ptr(y))
        pool.parallelRanges(s.batch) { _, images in
            let xp = UnsafeMutablePointer<Float>(bitPattern: xa)!, yp = UnsafeMutablePointer<Float>(bitPattern: ya)!
            for n in images { maxPool2Forward(xp, yp, image: n, s) }
        }
    }

    public func maxPoolBackward(x: DeviceBuffer, dy: DeviceBuffer, dx: DeviceBuffer, shape s: PoolShape) {
        let xa = UInt(bitPattern: ptr(x)), dya = UInt(bitPattern: ptr(dy)), dxa = UInt(bitPattern: ptr(dx))
        pool.parallelRanges(s.batch) { _, images in
            let xp = UnsafeMutablePointer<Float>(bitPattern: xa)!, dyp = UnsafeMutablePointer<Float>(bitPattern: dya)!
            let dxp = UnsafeMutablePointer<Float>(bitPattern: dxa)!
            for n in images { maxPool2Backward(xp, dyp, dxp, image: n, s) }
        }
    }

    public func reluBackward(y: DeviceBuffer, dy: DeviceBuffer, count: Int) {
        let ya = UInt(bitPattern: ptr(y)), dya = UInt(bitPattern: ptr(dy))
        pool.parallelRanges(count, minChunk: 1 << 15) { _, range in
            let yp = UnsafeMutablePointer<Float>(bitPattern: ya)!, dyp = UnsafeMutablePointer<Float>(bitPattern: dya)!
            for i in range { dyp[i] = yp[i] > 0 ? dyp[i] : 0 }  // branch-free: vectorised
        }
    }

    public func dropoutForward(x: DeviceBuffer, y: DeviceBuffer, count: Int, rate: Float, seed: UInt64) {
        dropout(ptr(x), ptr(y), count: count, rate: rate, seed: seed)
    }

    public func dropoutBackward(dy: DeviceBuffer, dx: DeviceBuffer, count: Int, rate: Float, seed: UInt64) {
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

/// cols[P = Ho*Wo, K = k*k*Cin]: row (oy, ox) holds the k x k x Cin patch under that output pixel.
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

/// The adjoint of im2col: dx[H,W,Cin] = sum of the patch gradients over the pixels they came from.
@inline(__always)
func col2im(_ cols: UnsafePointer<Float>, _ s: ConvShape, into dx: UnsafeMutablePointer<Float>) {
    let c = s.inChannels, k = s.kernel, kk = s.patchSize
    let run = k * c
    dx.update(repeating: 0, count: s.height * s.width * c)
    for oy in 0..<s.outHeight {
        for ox in 0..<s.outWidth {
            let src = cols + (oy * s.outWidth + ox) * kk
            for ky in 0..<k {
                let d = dx + ((oy + ky) * s.width + ox) * c
                let r = src + ky * run
                for i in 0..<run { d[i] += r[i] }
            }
        }
    }
}

/// y[P, C] += bias[C], then max(0, .) if relu.
@inline(__always)
func biasActivate(_ y: UnsafeMutablePointer<Float>, bias: UnsafePointer<Float>, channels: Int, pixels: Int, relu: Bool) {
    for p in 0..<pixels {
        let row = y + p * channels
        if relu {
            for ch in 0..<channels { row[ch] = max(row[ch] + bias[ch], 0) }
        } else {
            for ch in 0..<channels { row[ch] += bias[ch] }
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

// MARK: 2x2 max-pool, NHWC: the four inputs of a window are four runs of `channels` contiguous floats.
// Plain branch-free loops over the channels, which LLVM vectorises (Swift's generic SIMD mask
// operations, by contrast, compile to per-lane code here and ran several times slower).

@inline(__always)
func maxPool2Forward(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, image n: Int, _ s: PoolShape) {
    let c = s.channels, rowIn = s.width * c
    for oy in 0..<s.outHeight {
        let r0 = x + ((n * s.height + 2 * oy) * s.width) * c
        let out = y + ((n * s.outHeight + oy) * s.outWidth) * c
        for ox in 0..<s.outWidth {
            let p0 = r0 + 2 * ox * c, p1 = p0 + c, p2 = p0 + rowIn, p3 = p2 + c
            let o = out + ox * c
            for ch in 0..<c {
                let a = p0[ch], b = p1[ch], d = p2[ch], e = p3[ch]
                let m1 = a >= b ? a : b, m2 = d >= e ? d : e
                o[ch] = m1 >= m2 ? m1 : m2
            }
        }
    }
}

/// Each dy goes to the first maximum of its window in the order (0,0) (0,1) (1,0) (1,1); every other dx
/// (and a dropped odd last row or column) is zero. Writes all of dx for the image, so no separate clear.
@inline(__always)
func maxPool2Backward(_ x: UnsafePointer<Float>, _ dy: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>,
                      image n: Int, _ s: PoolShape) {
    let c = s.channels, rowIn = s.width * c
    let imageIn = s.height * s.width * c
    if s.height % 2 == 1 || s.width % 2 == 1 { (dx + n * imageIn).update(repeating: 0, count: imageIn) }
    for oy in 0..<s.outHeight {
        let base = ((n * s.height + 2 * oy) * s.width) * c
        let g = dy + ((n * s.outHeight + oy) * s.outWidth) * c
        for ox in 0..<s.outWidth {
            let o = base + 2 * ox * c
            let p0 = x + o, p1 = p0 + c, p2 = p0 + rowIn, p3 = p2 + c
            let q0 = dx + o, q1 = q0 + c, q2 = q0 + rowIn, q3 = q2 + c
            let gr = g + ox * c
            for ch in 0..<c {
                let a = p0[ch], b = p1[ch], d = p2[ch], e = p3[ch], v = gr[ch]
                // the first maximum wins ties: a unless something is larger, b unless d or e is, ...
                let ta = a >= b && a >= d && a >= e
                let tb = !ta && b >= d && b >= e
                let td = !ta && !tb && d >= e
                q0[ch] = ta ? v : 0
                q1[ch] = tb ? v : 0
                q2[ch] = td ? v : 0
                q3[ch] = ta || tb || td ? 0 : v
            }
        }
    }
}
