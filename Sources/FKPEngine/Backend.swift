import FKPTensor

/// Memory that lives on a backend's device (host memory for the CPU engine, a cl_mem for OpenCL).
/// Nets allocate every buffer once, sized for the largest batch, and reuse it for every batch.
public protocol DeviceBuffer: AnyObject {
    var count: Int { get }
}

/// A valid, stride-1, square-kernel convolution over NHWC images.
public struct ConvShape: Sendable, Equatable, CustomStringConvertible {
    public var batch, height, width, inChannels, outChannels, kernel: Int
    public init(batch: Int, height: Int, width: Int, inChannels: Int, outChannels: Int, kernel: Int) {
        (self.batch, self.height, self.width) = (batch, height, width)
        (self.inChannels, self.outChannels, self.kernel) = (inChannels, outChannels, kernel)
    }
    public var outHeight: Int { height - kernel + 1 }
    public var outWidth: Int { width - kernel + 1 }
    /// Rows of the im2col patch matrix: kernel*kernel*inChannels (weights are [k][k][Cin][Cout]).
    public var patchSize: Int { kernel * kernel * inChannels }
    public var inputCount: Int { batch * height * width * inChannels }
    public var outputCount: Int { batch * outHeight * outWidth * outChannels }
    public var weightCount: Int { patchSize * outChannels }
    /// Multiply-adds of the forward pass.
    public var macs: Int { batch * outHeight * outWidth * patchSize * outChannels }
    /// The 2x2 max-pool over this convolution's output.
    public var pooled: PoolShape { PoolShape(batch: batch, height: outHeight, width: outWidth, channels: outChannels) }
    public var description: String {
        "conv \(kernel)x\(kernel) \(inChannels)->\(outChannels) on \(batch)x\(height)x\(width)"
    }
}

/// 2x2 max-pool, stride 2, over NHWC images; an odd last row/column is dropped (Lasagne's ignore_border).
public struct PoolShape: Sendable, Equatable {
    public var batch, height, width, channels: Int
    public init(batch: Int, height: Int, width: Int, channels: Int) {
        (self.batch, self.height, self.width, self.channels) = (batch, height, width, channels)
    }
    public var outHeight: Int { height / 2 }
    public var outWidth: Int { width / 2 }
    public var inputCount: Int { batch * height * width * channels }
    public var outputCount: Int { batch * outHeight * outWidth * channels }
}

/// The one interface every backend implements; nets are written once against it.
/// Backward ops overwrite their gradient outputs (they never accumulate into them).
public protocol Backend: AnyObject {
    var name: String { get }

    func makeBuffer(count: Int) -> DeviceBuffer
    func write(_ source: UnsafeBufferPointer<Float>, to buffer: DeviceBuffer, offset: Int)
    func read(_ buffer: DeviceBuffer, offset: Int, into destination: UnsafeMutableBufferPointer<Float>)

    /// y[B,N] = x[B,K] . w[K,N] + b[N], then ReLU if asked.
    func denseForward(x: DeviceBuffer, w: DeviceBuffer, b: DeviceBuffer, y: DeviceBuffer,
                      batch: Int, inputs: Int, outputs: Int, relu: Bool)
    /// dw = x^T . dy, db = column sums of dy, dx = dy . w^T (when dx is given). dy is already ReLU-masked.
    func denseBackward(x: DeviceBuffer, w: DeviceBuffer, dy: DeviceBuffer, dx: DeviceBuffer?,
                       dw: DeviceBuffer, db: DeviceBuffer, batch: Int, inputs: Int, outputs: Int)

    /// y[B,Ho,Wo,Cout] = conv(x[B,H,W,Cin], w[k,k,Cin,Cout]) + b[Cout], then ReLU if asked.
    func convForward(x: DeviceBuffer, w: DeviceBuffer, b: DeviceBuffer, y: DeviceBuffer,
                     shape: ConvShape, relu: Bool)
    /// y = 2x2 max-pool of the convolution's output, for prediction (no gradient will be asked for):
    /// `convOutput` (the convolution's own output buffer) may be left unwritten or used as scratch.
    func convPoolForward(x: DeviceBuffer, w: DeviceBuffer, b: DeviceBuffer, convOutput: DeviceBuffer, y: DeviceBuffer,
                         shape: ConvShape, relu: Bool)
    /// dw, db and (when given) dx of a convolution; dy is already ReLU-masked.
    func convBackward(x: DeviceBuffer, w: DeviceBuffer, dy: DeviceBuffer, dx: DeviceBuffer?,
                      dw: DeviceBuffer, db: DeviceBuffer, shape: ConvShape)

    func maxPoolForward(x: DeviceBuffer, y: DeviceBuffer, shape: PoolShape)
    /// Routes each dy to the first maximum of its window in x; every other dx is zero.
    func maxPoolBackward(x: DeviceBuffer, dy: DeviceBuffer, dx: DeviceBuffer, shape: PoolShape)

    /// dy[i] = 0 where y[i] <= 0 (y is the ReLU output).
    func reluBackward(y: DeviceBuffer, dy: DeviceBuffer, count: Int)

    /// Mean squared error over batch*outputs values; grad = d loss / d pred. Returns the loss (the only
    /// value that comes back to the host each batch).
    func mseLoss(prediction: DeviceBuffer, target: DeviceBuffer, grad: DeviceBuffer,
                 batch: Int, outputs: Int) -> Float

    /// Lasagne's nesterov_momentum: v = m*v - lr*g; p += m*v - lr*g.
    func nesterovUpdate(parameter: DeviceBuffer, gradient: DeviceBuffer, velocity: DeviceBuffer,
                        count: Int, learningRate: Float, momentum: Float)

    /// Inverted dropout: y = x * keep / (1 - rate), keep[i] = dropoutKeep(seed, i, rate) (a counter-based
    /// RNG, so every backend draws the same mask and the backward pass recomputes it instead of storing it).
    func dropoutForward(x: DeviceBuffer, y: DeviceBuffer, count: Int, rate: Float, seed: UInt64)
    /// dx = dy * keep / (1 - rate) with the same mask as the forward pass of that seed.
    func dropoutBackward(dy: DeviceBuffer, dx: DeviceBuffer, count: Int, rate: Float, seed: UInt64)

    /// Waits for queued work (a no-op on the CPU engine).
    func synchronize()

    /// Throws the first device error met since the backend was made (ops themselves cannot throw: a
    /// failed device records its error, skips further work and reports NaN losses).
    func check() throws
}

extension Backend {
    public func check() throws {}

    /// The two ops one after the other (a backend without a fused kernel).
    public func convPoolForward(x: DeviceBuffer, w: DeviceBuffer, b: DeviceBuffer, convOutput: DeviceBuffer, y: DeviceBuffer,
                                shape s: ConvShape, relu: Bool) {
        convForward(x: x, w: w, b: b, y: convOutput, shape: s, relu: relu)
        maxPoolForward(x: convOutput, y: y, shape: s.pooled)
    }

    public func write(_ tensor: Tensor, to buffer: DeviceBuffer) {
        write(UnsafeBufferPointer(tensor.buffer), to: buffer, offset: 0)
    }
    public func read(_ buffer: DeviceBuffer, into tensor: Tensor) {
        read(buffer, offset: 0, into: tensor.buffer)
    }
    public func makeBuffer(from tensor: Tensor) -> DeviceBuffer {
        let b = makeBuffer(count: tensor.count)
        write(tensor, to: b)
        return b
    }
    public func download(_ buffer: DeviceBuffer) -> [Float] {
        let t = Tensor(shape: [buffer.count])
        read(buffer, into: t)
        return t.array
    }
}

/// The counter-based generator of dropout masks, shared by every backend (the OpenCL kernel computes
/// the same function): SplitMix64's finaliser of seed + index * golden ratio, top 24 bits as a uniform in
/// [0, 1); an element is kept when that uniform is >= rate.
@inline(__always)
public func dropoutKeep(seed: UInt64, index: Int, rate: Float) -> Bool {
    var z = seed &+ UInt64(truncatingIfNeeded: index) &* 0x9E37_79B9_7F4A_7C15
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    z ^= z >> 31
    return Float(z >> 40) * (1.0 / 16_777_216.0) >= rate
}
