import FKPEngine
import FKPTensor

/// A trainable tensor with its gradient and Nesterov velocity, all on the backend's device.
public final class Parameter {
    public let name: String
    public let shape: [Int]
    public let value: DeviceBuffer
    public let gradient: DeviceBuffer
    public let velocity: DeviceBuffer
    public var count: Int { shape.reduce(1, *) }
    /// Glorot-uniform bound for weights (Lasagne's default), nil for biases (zeros).
    let fans: (fanIn: Int, fanOut: Int)?

    /// `trainable: false` (a net that only predicts) leaves gradient and velocity empty.
    init(name: String, shape: [Int], fans: (Int, Int)?, trainable: Bool, backend: Backend) {
        self.name = name
        self.shape = shape
        self.fans = fans
        let n = shape.reduce(1, *)
        value = backend.makeBuffer(count: n)
        gradient = backend.makeBuffer(count: trainable ? n : 0)
        velocity = backend.makeBuffer(count: trainable ? n : 0)
    }
}

/// One layer of a feed-forward net. Buffers are allocated once for the largest batch.
public protocol Layer: AnyObject {
    var name: String { get }
    /// Per-image output shape: [H, W, C] for images, [N] for features.
    var outputShape: [Int] { get }
    var output: DeviceBuffer { get }
    /// d loss / d input, filled by backward when asked for.
    var inputGradient: DeviceBuffer? { get }
    var parameters: [Parameter] { get }
    func forward(_ input: DeviceBuffer, batch: Int, training: Bool)
    /// `outputGradient` may be modified in place (ReLU masking).
    func backward(_ input: DeviceBuffer, outputGradient: DeviceBuffer, batch: Int, needInputGradient: Bool)
}

public final class DenseLayer: Layer {
    public let name: String
    public let inputs, outputs: Int
    public let relu: Bool
    public let output: DeviceBuffer
    public let inputGradient: DeviceBuffer?
    public let weight, bias: Parameter
    public var parameters: [Parameter] { [weight, bias] }
    public var outputShape: [Int] { [outputs] }
    let backend: Backend

    init(name: String, inputs: Int, outputs: Int, relu: Bool, maxBatch: Int, needsInputGradient: Bool, trainable: Bool = true, backend: Backend) {
        (self.name, self.inputs, self.outputs, self.relu, self.backend) = (name, inputs, outputs, relu, backend)
        weight = Parameter(name: "\(name).weight", shape: [inputs, outputs], fans: (inputs, outputs), trainable: trainable, backend: backend)
        bias = Parameter(name: "\(name).bias", shape: [outputs], fans: nil, trainable: trainable, backend: backend)
        output = backend.makeBuffer(count: maxBatch * outputs)
        inputGradient = needsInputGradient ? backend.makeBuffer(count: maxBatch * inputs) : nil
    }

    public func forward(_ input: DeviceBuffer, batch: Int, training: Bool) {
        backend.denseForward(x: input, w: weight.value, b: bias.value, y: output, batch: batch,
                             inputs: inputs, outputs: outputs, relu: relu)
    }

    public func backward(_ input: DeviceBuffer, outputGradient: DeviceBuffer, batch: Int, needInputGradient: Bool) {
        if relu { backend.reluBackward(y: output, dy: outputGradient, count: batch * outputs) }
        backend.denseBackward(x: input, w: weight.value, dy: outputGradient,
                              dx: needInputGradient ? inputGradient : nil, dw: weight.gradient, db: bias.gradient,
                              batch: batch, inputs: inputs, outputs: outputs)
    }
}

public final class ConvLayer: Layer {
    public let name: String
    public let shape: ConvShape  // batch = the largest batch
    public let output: DeviceBuffer
    public let inputGradient: DeviceBuffer?
    public let weight, bias: Parameter
    public var parameters: [Parameter] { [weight, bias] }
    public var outputShape: [Int] { [shape.outHeight, shape.outWidth, shape.outChannels] }
    let backend: Backend

    init(name: String, input: [Int], filters: Int, kernel: Int, maxBatch: Int, needsInputGradient: Bool, trainable: Bool = true, backend: Backend) {
        precondition(input.count == 3, "\(name): a convolution needs an image input, got \(input)")
        self.name = name
        self.backend = backend
        shape = ConvShape(batch: maxBatch, height: input[0], width: input[1], inChannels: input[2],
                          outChannels: filters, kernel: kernel)
        // Lasagne: fan_in = Cin*k*k, fan_out = Cout*k*k.
        weight = Parameter(name: "\(name).weight", shape: [kernel, kernel, input[2], filters],
                           fans: (input[2] * kernel * kernel, filters * kernel * kernel), trainable: trainable, backend: backend)
        bias = Parameter(name: "\(name).bias", shape: [filters], fans: nil, trainable: trainable, backend: backend)
        output = backend.makeBuffer(count: shape.outputCount)
        inputGradient = needsInputGradient ? backend.makeBuffer(count: shape.inputCount) : nil
    }

    func shape(batch: Int) -> ConvShape { var s = shape; s.batch = batch; return s }

    public func forward(_ input: DeviceBuffer, batch: Int, training: Bool) {
        backend.convForward(x: input, w: weight.value, b: bias.value, y: output, shape: shape(batch: batch), relu: true)
    }

    public func backward(_ input: DeviceBuffer, outputGradient: DeviceBuffer, batch: Int, needInputGradient: Bool) {
        let s = shape(batch: batch)
        backend.reluBackward(y: output, dy: outputGradient, count: s.outputCount)
        backend.convBackward(x: input, w: weight.value, dy: outputGradient, dx: needInputGradient ? inputGradient : nil,
                             dw: weight.gradient, db: bias.gradient, shape: s)
    }
}

public final class MaxPoolLayer: Layer {
    public let name: String
    public let shape: PoolShape
    public let output: DeviceBuffer
    public let inputGradient: DeviceBuffer?
    public var parameters: [Parameter] { [] }
    public var outputShape: [Int] { [shape.outHeight, shape.outWidth, shape.channels] }
    let backend: Backend

    init(name: String, input: [Int], maxBatch: Int, trainable: Bool = true, backend: Backend) {
        precondition(input.count == 3, "\(name): pooling needs an image input, got \(input)")
        self.name = name
        self.backend = backend
        shape = PoolShape(batch: maxBatch, height: input[0], width: input[1], channels: input[2])
        output = backend.makeBuffer(count: shape.outputCount)
        inputGradient = trainable ? backend.makeBuffer(count: shape.inputCount) : nil
    }

    func shape(batch: Int) -> PoolShape { var s = shape; s.batch = batch; return s }

    public func forward(_ input: DeviceBuffer, batch: Int, training: Bool) {
        backend.maxPoolForward(x: input, y: output, shape: shape(batch: batch))
    }

    public func backward(_ input: DeviceBuffer, outputGradient: DeviceBuffer, batch: Int, needInputGradient: Bool) {
        if needInputGradient {
            backend.maxPoolBackward(x: input, dy: outputGradient, dx: inputGradient!, shape: shape(batch: batch))
        }
    }
}

/// Inverted dropout: in training each value is kept with probability 1 - rate and scaled by 1/(1 - rate);
/// at validation and prediction the layer passes values through. The mask comes from a counter-based
/// generator keyed by (net seed, layer, step), so the backward pass recomputes it instead of storing it.
public final class DropoutLayer: Layer {
    public let name: String
    public let rate: Float
    public let outputShape: [Int]
    public let output: DeviceBuffer
    public let inputGradient: DeviceBuffer?
    public var parameters: [Parameter] { [] }
    let perImage: Int
    let backend: Backend
    /// Set by the net before each training step.
    var seed: UInt64 = 0
    var training = false

    init(name: String, rate: Float, input: [Int], maxBatch: Int, trainable: Bool = true, backend: Backend) {
        precondition(rate >= 0 && rate < 1, "\(name): dropout rate \(rate) outside [0, 1)")
        (self.name, self.rate, self.outputShape, self.backend) = (name, rate, input, backend)
        perImage = input.reduce(1, *)
        output = backend.makeBuffer(count: maxBatch * perImage)
        inputGradient = trainable ? backend.makeBuffer(count: maxBatch * perImage) : nil
    }

    public func forward(_ input: DeviceBuffer, batch: Int, training: Bool) {
        self.training = training
        backend.dropoutForward(x: input, y: output, count: batch * perImage, rate: training ? rate : 0, seed: seed)
    }

    public func backward(_ input: DeviceBuffer, outputGradient: DeviceBuffer, batch: Int, needInputGradient: Bool) {
        guard needInputGradient else { return }
        backend.dropoutBackward(dy: outputGradient, dx: inputGradient!, count: batch * perImage,
                                rate: training ? rate : 0, seed: seed)
    }
}
