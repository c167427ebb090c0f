import FKPEngine
import FKPTensor

/// The plain reference every backend is checked against: each op as the naive loops of its definition
/// (llm.c's *_cpu functions), sums in Double, no blocking, no threads, no SIMD. Slow on purpose: it is
/// only run on test shapes.
public final class ReferenceBackend: Backend {
    public final class Buffer: DeviceBuffer {
        public var values: [Float]
        public var count: Int { values.count }
        init(count: Int) { values = [Float](repeating: 0, count: count) }
    }

    public init() {}
    public var name: String { "reference" }

    func buf(_ b: DeviceBuffer) -> Buffer { b as! Buffer }

    public func makeBuffer(count: Int) -> DeviceBuffer { Buffer(count: count) }

    public func write(_ source: UnsafeBufferPointer<Float>, to buffer: DeviceBuffer, offset: Int) {
        for (i, v) in source.enumerated() { buf(buffer).values[offset + i] = v }
    }

    public func read(_ buffer: DeviceBuffer, offset: Int, into destination: UnsafeMutableBufferPointer<Float>) {
        for i in destination.indices { destination[i] = buf(buffer).values[offset + i] }
    }

    public func denseForward(x: DeviceBuffer, w: DeviceBuffer, b: DeviceBuffer, y: DeviceBuffer,
                             batch: Int, inputs: Int, outputs: Int, relu: Bool) {
        let xv = buf(x).values, wv = buf(w).values, bv = buf(b).values, yb = buf(y)
        for n in 0..<batch { for o in 0..<outputs {
            var s = Double(bv[o])
            for i in 0..<inputs { s += Double(xv[n * inputs + i]) * Double(wv[i * outputs + o]) }
            yb.values[n * outputs + o] = relu ? max(Float(s), 0) : Float(s)
        } }
    }

    public func denseBackward(x: DeviceBuffer, w: DeviceBuffer, dy: DeviceBuffer, dx: DeviceBuffer?,
                              dw: DeviceBuffer, db: DeviceBuffer, batch: Int, inputs: Int, outputs: Int) {
        let xv = buf(x).values, wv = buf(w).values, dyv = buf(dy).values
        for i in 0..<inputs { for o in 0..<outputs {
            var s = 0.0
            for n in 0..<batch { s += Double(xv[n * inputs + i]) * Double(dyv[n * outputs + o]) }
            buf(dw).values[i * outputs + o] = Float(s)
        } }
        for o in 0..<outputs {
            var s = 0.0
            for n in 0..<batch { s += Double(dyv[n * outputs + o]) }
            buf(db).values[o] = Float(s)
        }
        guard let dx else { return }
        for n in 0..<batch { for i in 0..<inputs {
            var s = 0.0
            for o in 0..<outputs { s += Double(dyv[n * outputs + o]) * Double(wv[i * outputs + o]) }
            buf(dx).values[n * inputs + i] = Float(s)
        } }
    }

    // NHWC images, weights [k][k][Cin][Cout].
    func xIndex(_ s: ConvShape, _ n: Int, _ y: Int, _ x: Int, _ c: Int) -> Int { ((n * s.height + y) * s.width + x) * s.inChannels + c }
    func yIndex(_ s: ConvShape, _ n: Int, _ y: Int, _ x: Int, _ c: Int) -> Int { ((n * s.outHeight + y) * s.outWidth + x) * s.outChannels + c }
    func wIndex(_ s: ConvShape, _ ky: Int, _ kx: Int, _ ci: Int, _ co: Int) -> Int { ((ky * s.kernel + kx) * s.inChannels + ci) * s.outChannels + co }

    public func convForward(x: DeviceBuffer, w: DeviceBuffer, b: DeviceBuffer, y: DeviceBuffer, shape s: ConvShape, relu: Bool) {
        let xv = buf(x).values, wv = buf(w).values, bv = buf(b).values
        for n in 0..<s.batch { for oy in 0..<s.outHeight { for ox in 0..<s.outWidth { for co in 0..<s.outChannels {
            var acc = Double(bv[co])
            for ky in 0..<s.kernel { for kx in 0..<s.kernel { for ci in 0..<s.inChannels {
                acc += Double(xv[xIndex(s, n, oy + ky, ox + kx, ci)]) * Double(wv[wIndex(s, ky, kx, ci, co)])
            } } }
            buf(y).values[yIndex(s, n, oy, ox, co)] = relu ? max(Float(acc), 0) : Float(acc)
        } } } }
    }

    public func convBackward(x: DeviceBuffer, w: DeviceBuffer, dy: DeviceBuffer, dx: DeviceBuffer?,
                             dw: DeviceBuffer, db: DeviceBuffer, shape s: ConvShape) {
        let xv = buf(x).values, wv = buf(w).values, dyv = buf(dy).values
        var dwAcc = [Double](repeating: 0, count: s.weightCount), dbAcc = [Double](repeating: 0, count: s.outChannels)
        var dxAcc = [Double](repeating: 0, count: s.inputCount)
        for n in 0..<s.batch { for oy in 0..<s.outHeight { for ox in 0..<s.outWidth { for co in 0..<s.outChannels {
            let g = Double(dyv[yIndex(s, n, oy, ox, co)])
            dbAcc[co] += g
            for ky in 0..<s.kernel { for kx in 0..<s.kernel { for ci in 0..<s.inChannels {
                dwAcc[wIndex(s, ky, kx, ci, co)] += g * Double(xv[xIndex(s, n, oy + ky, ox + kx, ci)])
                dxAcc[xIndex(s, n, oy + ky, ox + kx, ci)] += g * Double(wv[wIndex(s, ky, kx, ci, co)])
            } } }
        } } } }
        for i in dwAcc.indices { buf(dw).values[i] = Float(dwAcc[i]) }
        for i in dbAcc.indices { buf(db).values[i] = Float(dbAcc[i]) }
        if let dx { for i in dxAcc.indices { buf(dx).values[i] = Float(dxAcc[i]) } }
    }

    /// The first maximum of each 2x2 window (row-major order), as the backward pass routes it.
    func argmax(_ xv: [Float], _ s: PoolShape, _ n: Int, _ oy: Int, _ ox: Int, _ c: Int) -> Int {
        var best = -1
        for dy in 0..<2 { for dx in 0..<2 {
            let i = ((n * s.height + 2 * oy + dy) * s.width + 2 * ox + dx) * s.channels + c
            if best < 0 || xv[i] > xv[best] { best = i }
        } }
        return best
    }

    public func maxPoolForward(x: DeviceBuffer, y: DeviceBuffer, shape s: PoolShape) {
        let xv = buf(x).values
        for n in 0..<s.batch { for oy in 0..<s.outHeight { for ox in 0..<s.outWidth { for c in 0..<s.channels {
            buf(y).values[((n * s.outHeight + oy) * s.outWidth + ox) * s.channels + c] = xv[argmax(xv, s, n, oy, ox, c)]
        } } } }
    }

    public func maxPoolBackward(x: DeviceBuffer, dy: DeviceBuffer, dx: DeviceBuffer, shape s: PoolShape) {
        let xv = buf(x).values, dyv = buf(dy).values
        for i in 0..<s.inputCount { buf(dx).values[i] = 0 }
        for n in 0..<s.batch { for oy in 0..<s.outHeight { for ox in 0..<s.outWidth { for c in 0..<s.channels {
            buf(dx).values[argmax(xv, s, n, oy, ox, c)] = dyv[((n * s.outHeight + oy) * s.outWidth + ox) * s.channels + c]
        } } } }
    }

    public func reluBackward(y: DeviceBuffer, dy: DeviceBuffer, count: Int) {
        for i in 0..<count where !(buf(y).values[i] > 0) { buf(dy).values[i] = 0 }
    }

    public func mseLoss(prediction: DeviceBuffer, target: DeviceBuffer, grad: DeviceBuffer, batch: Int, outputs: Int) -> Float {
        let p = buf(prediction).values, t = buf(target).values, n = batch * outputs
        var sum = 0.0
        for i in 0..<n {
            let d = Double(p[i]) - Double(t[i])
            sum += d * d
            buf(grad).values[i] = Float(2 * d / Double(n))
        }
        return Float(sum / Double(n))
    }

    public func nesterovUpdate(parameter: DeviceBuffer, gradient: DeviceBuffer, velocity: DeviceBuffer,
                               count: Int, learningRate lr: Float, momentum m: Float) {
        for i in 0..<count {
            let g = Double(buf(gradient).values[i])
            let v = Double(m) * Double(buf(velocity).values[i]) - Double(lr) * g
            buf(velocity).values[i] = Float(v)
            buf(parameter).values[i] = Float(Double(buf(parameter).values[i]) + Double(m) * v - Double(lr) * g)
        }
    }

    public func dropoutForward(x: DeviceBuffer, y: DeviceBuffer, count: Int, rate: Float, seed: UInt64) {
        for i in 0..<count {
            buf(y).values[i] = dropoutKeep(seed: seed, index: i, rate: rate) ? Float(Double(buf(x).values[i]) / (1 - Double(rate))) : 0
        }
    }

    public func dropoutBackward(dy: DeviceBuffer, dx: DeviceBuffer, count: Int, rate: Float, seed: UInt64) {
        dropoutForward(x: dy, y: dx, count: count, rate: rate, seed: seed)
    }

    public func synchronize() {}
}

/// The reference as plain functions on host arrays, for tests of kernels below the Backend interface.
public enum Reference {
    /// C[m,n] = op(A) . op(B), A [m,k] (or [k,m] transposed), B [k,n] (or [n,k] transposed), in Double.
    public static func gemm(_ m: Int, _ n: Int, _ k: Int, _ a: [Float], ta: Bool, _ b: [Float], tb: Bool) -> [Float] {
        var c = [Float](repeating: 0, count: m * n)
        for i in 0..<m { for j in 0..<n {
            var s: Double = 0
            for p in 0..<k { s += Double(ta ? a[p * m + i] : a[i * k + p]) * Double(tb ? b[j * k + p] : b[p * n + j]) }
            c[i * n + j] = Float(s)
        } }
        return c
    }

    /// A convolution's forward pass (NHWC, weights [k][k][Cin][Cout]) through ReferenceBackend.
    public static func conv(_ x: [Float], _ w: [Float], _ b: [Float], _ s: ConvShape, relu: Bool) -> [Float] {
        let r = ReferenceBackend()
        let y = r.makeBuffer(count: s.outputCount)
        r.convForward(x: r.upload(x), w: r.upload(w), b: r.upload(b), y: y, shape: s, relu: relu)
        return r.buf(y).values
    }
}

extension ReferenceBackend {
    func upload(_ values: [Float]) -> DeviceBuffer {
        let b = Buffer(count: values.count)
        b.values = values
        return b
    }
}
