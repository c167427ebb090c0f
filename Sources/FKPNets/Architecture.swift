/// What a net is made of, independent of any backend. Input: one 96x96 grey face, NHWC.
public enum LayerSpec: Equatable, Sendable {
    case conv(name: String, filters: Int, kernel: Int)
    case pool(name: String)
    case dense(name: String, units: Int)
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

    /// The tutorial's net2: three conv/pool stages, two dense 500 layers, 30 outputs (96->94->47->46->23->22->11).
    public static func net2(outputs: Int = 30, hidden: Int = 500) -> Architecture {
        Architecture(name: "net2", layers: [
            .conv(name: "conv1", filters: 32, kernel: 3), .pool(name: "pool1"),
            .conv(name: "conv2", filters: 64, kernel: 2), .pool(name: "pool2"),
            .conv(name: "conv3", filters: 128, kernel: 2), .pool(name: "pool3"),
            .dense(name: "hidden4", units: hidden), .dense(name: "hidden5", units: hidden),
            .output(units: outputs),
        ])
    }

    public static func named(_ name: String) -> Architecture? {
        switch name {
        case "net1": return .net1()
        case "net2": return .net2()
        default: return nil
        }
    }
}
