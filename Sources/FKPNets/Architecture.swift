/// What a net is made of, independent of any backend. Input: one 96x96 grey face, NHWC.
public enum LayerSpec: Equatable, Sendable {
    case conv(name: String, filters: Int, kernel: Int)
    case pool(name: String)
    case dense(name: String, units: Int)
    /// Inverted dropout (training only) with this drop probability.
    case dropout(name: String, rate: Float)
    /// The linear output layer.
    case output(units: Int)
}

public struct Architecture: Equatable, Sendable {
    public var name: String
    public var inputShape: [Int]
    public var layers: [LayerSpec]
    public init(name: String, inputShape: [Int] = [96, 96, 1], layers: [LayerSpec]) {
        self.name = name; self.inputShape = inputShape; self.layers = layers
    }
    public var outputs: Int {
        if case .output(let n) = layers.last { return n }
        preconditionFailure("\(name): the last layer must be the output layer")
    }

    /// The tutorial's net1: 9216 -> dense 100 (ReLU) -> 30.
    public static func net1(outputs: Int = 30) -> Architecture {
        Architecture(name: "net1", layers: [.dense(name: "hidden", units: 100), .output(units: outputs)])
    }

    /// The tutorial's net2: three conv/pool stages, two dense layers, 30 outputs (96->94->47->46->23->22->11).
    /// With `dropout`, net6's rates: 0.1 after pool1, 0.2 after pool2, 0.3 after pool3, 0.5 after each
    /// hidden layer but the last (net6: after hidden4; net7: after hidden4 and hidden5).
    public static func net2(outputs: Int = 30, hidden: Int = 500, dropout: Bool = false, dropoutAfterHidden5: Bool = false,
                            name: String = "net2") -> Architecture {
        var layers: [LayerSpec] = [.conv(name: "conv1", filters: 32, kernel: 3), .pool(name: "pool1")]
        if dropout { layers.append(.dropout(name: "dropout1", rate: 0.1)) }
        layers += [.conv(name: "conv2", filters: 64, kernel: 2), .pool(name: "pool2")]
        if dropout { layers.append(.dropout(name: "dropout2", rate: 0.2)) }
        layers += [.conv(name: "conv3", filters: 128, kernel: 2), .pool(name: "pool3")]
        if dropout { layers.append(.dropout(name: "dropout3", rate: 0.3)) }
        layers.append(.dense(name: "hidden4", units: hidden))
        if dropout { layers.append(.dropout(name: "dropout4", rate: 0.5)) }
        layers.append(.dense(name: "hidden5", units: hidden))
        if dropout && dropoutAfterHidden5 { layers.append(.dropout(name: "dropout5", rate: 0.5)) }
        layers.append(.output(units: outputs))
        return Architecture(name: name, layers: layers)
    }

    public var isConvolutional: Bool { layers.contains { if case .conv = $0 { return true } else { return false } } }
    public var hasDropout: Bool { layers.contains { if case .dropout = $0 { return true } else { return false } } }
}
