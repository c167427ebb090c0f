import FKPEngine
import FKPTensor
import Dispatch
import Foundation

/// A feed-forward net built from an Architecture on one backend, with every buffer allocated once
/// for `maxBatch` images.
public final class Net {
    public let architecture: Architecture
    public let backend: Backend
    public let maxBatch: Int
    /// False for a net that only predicts: no gradients, velocities or input gradients are allocated
    /// (for net2 that is two thirds of the memory), and training it is a programming error.
    public let trainable: Bool
    public let layers: [Layer]
    public let input: DeviceBuffer
    public let target: DeviceBuffer
    let outputGradient: DeviceBuffer

    public var parameters: [Parameter] { layers.flatMap(\.parameters) }
    /// When set, seconds spent per layer and pass ("conv1 forward", ...) are added up here (the bench's
    /// --profile); each timed op is followed by a synchronize so that queued devices are measured too.
    public var profile: [String: Double]?
    /// Training steps taken (keys the dropout masks; saved in checkpoints so a resumed run draws the same).
    public var step: UInt64 = 0
    /// Seed of the dropout masks, set by initialise.
    public var dropoutSeed: UInt64 = 0
    public var parameterCount: Int { parameters.reduce(0) { $0 + $1.count } }
    public var inputSize: Int { architecture.inputShape.reduce(1, *) }
    public var outputs: Int { architecture.outputs }
    public var output: DeviceBuffer { layers.last!.output }
    /// What training minimises: the keypoint nets' mean squared error, or (a classifier such as the face
    /// verifier) the logistic loss of its output taken as a logit.
    public var loss: Loss = .meanSquared
    public enum Loss: String, Sendable { case meanSquared = "mse", logistic }

    public init(_ architecture: Architecture, backend: Backend, maxBatch: Int, trainable: Bool = true) {
        precondition(maxBatch >= 1, "maxBatch \(maxBatch) (at least 1)")
        self.architecture = architecture
        self.backend = backend
        self.maxBatch = maxBatch
        self.trainable = trainable
        var shape = architecture.inputShape
        var built: [Layer] = []
        for spec in architecture.layers {
            let first = built.isEmpty
            let layer: Layer
            switch spec {
            case let .conv(name, filters, kernel):
                layer = ConvLayer(name: name, input: shape, filters: filters, kernel: kernel, maxBatch: maxBatch,
                                  needsInputGradient: !first && trainable, trainable: trainable, backend: backend)
            case let .pool(name):
                layer = MaxPoolLayer(name: name, input: shape, maxBatch: maxBatch, trainable: trainable, backend: backend)
            case let .dense(name, units):
                layer = DenseLayer(name: name, inputs: shape.reduce(1, *), outputs: units, relu: true,
                                   maxBatch: maxBatch, needsInputGradient: !first && trainable, trainable: trainable, backend: backend)
            case let .dropout(name, rate):
                layer = DropoutLayer(name: name, rate: rate, input: shape, maxBatch: maxBatch, trainable: trainable, backend: backend)
            case let .output(units):
                layer = DenseLayer(name: "output", inputs: shape.reduce(1, *), outputs: units, relu: false,
                                   maxBatch: maxBatch, needsInputGradient: !first && trainable, trainable: trainable, backend: backend)
            }
            built.append(layer)
            shape = layer.outputShape
        }
        layers = built
        input = backend.makeBuffer(count: maxBatch * architecture.inputShape.reduce(1, *))
        target = backend.makeBuffer(count: maxBatch * architecture.outputs)
        outputGradient = backend.makeBuffer(count: maxBatch * architecture.outputs)
    }

    /// The same net (weights copied; the same trainability unless `trainable` says) with buffers for
    /// `maxBatch` images.
    public func resized(maxBatch: Int, trainable: Bool? = nil) -> Net {
        let trainable = trainable ?? self.trainable
        let net = Net(architecture, backend: backend, maxBatch: maxBatch, trainable: trainable)
        for (p, q) in zip(parameters, net.parameters) {
            backend.download(p.value).withUnsafeBufferPointer { backend.write($0, to: q.value, offset: 0) }
            if trainable { backend.download(p.velocity).withUnsafeBufferPointer { backend.write($0, to: q.velocity, offset: 0) } }
        }
        net.step = step
        net.dropoutSeed = dropoutSeed
        net.loss = loss
        return net
    }

    /// Lasagne's initialisation: Glorot-uniform weights (bound sqrt(6 / (fan_in + fan_out))), zero biases,
    /// zero velocities. Parameters are drawn in layer order from one seeded generator.
    public func initialise(seed: UInt64) {
        var rng = Xoshiro(seed: seed)
        dropoutSeed = seed ^ 0x5DEE_CE66_D1CE_4E5B
        step = 0
        for p in parameters {
            let t = Tensor(shape: [p.count])
            if let (fanIn, fanOut) = p.fans {
                let bound = (6.0 / Float(fanIn + fanOut)).squareRoot()
                for i in 0..<t.count { t[i] = (rng.nextFloat() * 2 - 1) * bound }
            }
            backend.write(t, to: p.value)
            if trainable { backend.write(Tensor(shape: [p.count]), to: p.velocity) }
        }
    }

    /// Runs the net on the first `batch` images already in `input`; the result is in `output`. In a net
    /// built for prediction only, a convolution followed by a max-pool runs as one op (the backend's
    /// convPoolForward) and leaves the convolution's output unwritten: no gradient can follow to read it.
    public func forward(batch: Int, training: Bool) {
        precondition(batch > 0 && batch <= maxBatch, "batch \(batch) outside 1...\(maxBatch)")
        var x = input
        var i = 0
        while i < layers.count {
            if !trainable, let conv = layers[i] as? ConvLayer, i + 1 < layers.count, let pool = layers[i + 1] as? MaxPoolLayer {
                timed("\(conv.name)+\(pool.name) forward") {
                    backend.convPoolForward(x: x, w: conv.weight.value, b: conv.bias.value, convOutput: conv.output,
                                            y: pool.output, shape: conv.shape(batch: batch), relu: true)
                }
                x = pool.output
                i += 2
                continue
            }
            let layer = layers[i]
            timed("\(layer.name) forward") { layer.forward(x, batch: batch, training: training) }
            x = layer.output
            i += 1
        }
    }

    /// Forward + MSE + backward + Nesterov update on the batch in `input`/`target`. Returns the loss.
    @discardableResult
    public func trainStep(batch: Int, learningRate: Float, momentum: Float) -> Float {
        precondition(trainable, "trainStep on a net built for prediction only")
        step += 1
        for (i, layer) in layers.enumerated() {
            if let d = layer as? DropoutLayer {
                var mix = Xoshiro(seed: dropoutSeed &+ step &* 0x9E37_79B9_7F4A_7C15 &+ UInt64(i))
                d.seed = mix.next()
            }
        }
        forward(batch: batch, training: true)
        let loss = lossAndGradient(batch: batch)
        backward(batch: batch)
        timed("update") {
            for p in parameters {
                backend.nesterovUpdate(parameter: p.value, gradient: p.gradient, velocity: p.velocity, count: p.count,
                                       learningRate: learningRate, momentum: momentum)
            }
        }
        return loss
    }

    /// Fills every parameter's gradient for the loss whose output gradient was just computed.
    public func backward(batch: Int) {
        var grad = outputGradient
        for i in stride(from: layers.count - 1, through: 0, by: -1) {
            let layerInput = i == 0 ? input : layers[i - 1].output
            timed("\(layers[i].name) backward") {
                layers[i].backward(layerInput, outputGradient: grad, batch: batch, needInputGradient: i > 0)
            }
            if i > 0 { grad = layers[i].inputGradient! }
        }
    }

    @inline(__always) func timed(_ key: String, _ body: () -> Void) {
        guard profile != nil else { body(); return }
        let t0 = DispatchTime.now().uptimeNanoseconds
        body()
        backend.synchronize()
        profile![key, default: 0] += Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
    }

    /// Loss on the batch in `input`/`target` without training.
    public func evaluate(batch: Int) -> Float {
        forward(batch: batch, training: false)
        return lossAndGradient(batch: batch)
    }

    /// The loss of the batch's output against `target`, with its gradient written to `outputGradient`.
    func lossAndGradient(batch: Int) -> Float {
        switch loss {
        case .meanSquared:
            return backend.mseLoss(prediction: output, target: target, grad: outputGradient, batch: batch, outputs: outputs)
        case .logistic:
            // A few values per batch: computed on the host whatever the backend.
            let n = batch * outputs
            var z = [Float](repeating: 0, count: n), t = z, g = z
            z.withUnsafeMutableBufferPointer { backend.read(output, offset: 0, into: $0) }
            t.withUnsafeMutableBufferPointer { backend.read(target, offset: 0, into: $0) }
            let value = logisticLoss(logits: z, targets: t, gradient: &g)
            g.withUnsafeBufferPointer { backend.write($0, to: outputGradient, offset: 0) }
            return value
        }
    }

    /// Multiply-adds of one forward pass over one image.
    public var forwardMACs: Int {
        layers.reduce(0) { sum, layer in
            if let c = layer as? ConvLayer { var s = c.shape; s.batch = 1; return sum + s.macs }
            if let d = layer as? DenseLayer { return sum + d.inputs * d.outputs }
            return sum
        }
    }

    /// The named parameters as host tensors.
    public func exportParameters() -> [(name: String, shape: [Int], values: [Float])] {
        parameters.map { ($0.name, $0.shape, backend.download($0.value)) }
    }
}

/// Mean binary cross-entropy of sigmoid(z) against targets t in 0...1, in the form that neither overflows
/// nor loses a confident mistake: max(z, 0) - z t + log(1 + exp(-|z|)). `gradient` gets d loss / d z =
/// (sigmoid(z) - t) / n.
public func logisticLoss(logits z: [Float], targets t: [Float], gradient g: inout [Float]) -> Float {
    precondition(z.count == t.count && g.count == z.count && !z.isEmpty)
    let n = Double(z.count)
    var sum = 0.0
    for i in z.indices {
        let x = Double(z[i]), y = Double(t[i])
        sum += max(x, 0) - x * y + log1p(exp(-abs(x)))
        g[i] = Float((sigmoid(x) - y) / n)
    }
    return Float(sum / n)
}

/// 1 / (1 + exp(-x)), without overflow for large |x|.
public func sigmoid(_ x: Double) -> Double {
    x >= 0 ? 1 / (1 + exp(-x)) : exp(x) / (1 + exp(x))
}
