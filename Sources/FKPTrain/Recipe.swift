import FKPNets
import FKPTensor

/// A value that changes linearly over the epochs of a run, as nolearn's AdjustVariable does: epoch 1
/// uses `start`; at the end of epoch e the value becomes linspace(start, stop, epochs)[e - 1].
public struct Schedule: Sendable, Equatable, Codable, CustomStringConvertible {
    public var start: Float
    public var stop: Float
    public init(_ start: Float, _ stop: Float? = nil) { self.start = start; self.stop = stop ?? start }

    /// "0.01" (constant) or "0.03:0.0001" (linear).
    public init?(parsing text: String) {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard (1...2).contains(parts.count), let a = Float(parts[0]), a.isFinite else { return nil }
        if parts.count == 2 {
            guard let b = Float(parts[1]), b.isFinite else { return nil }
            self.init(a, b)
        } else { self.init(a) }
    }

    public var isConstant: Bool { start == stop }
    public var description: String { isConstant ? "\(start)" : "\(start):\(stop)" }

    /// The value used during epoch `epoch` (1-based) of a run of `epochs`.
    public func value(epoch: Int, of epochs: Int) -> Float {
        if isConstant || epoch <= 1 || epochs <= 1 { return start }
        let i = min(epoch - 2, epochs - 1)
        return start + (stop - start) * Float(i) / Float(epochs - 1)
    }
}

/// The flip pairs of the 30 keypoint columns: (left, right) x and y columns swapped when mirroring.
public let keypointFlipPairs: [(Int, Int)] = [
    (0, 2), (1, 3), (4, 8), (5, 9), (6, 10), (7, 11), (12, 16), (13, 17), (14, 18), (15, 19), (22, 24), (23, 25),
]

public struct TrainConfig: Sendable {
    public var epochs: Int = 100
    public var batchSize: Int = 128
    public var learningRate = Schedule(0.01)
    public var momentum = Schedule(0.9)
    public var seed: UInt64 = 42
    /// Mirror half of each batch (the flip pairs of the target columns), nil = no augmentation.
    public var flipPairs: [(Int, Int)]? = nil
    /// Stop when the valid loss has not improved for this many epochs, keeping the best weights.
    public var earlyStoppingPatience: Int? = nil
    public init() {}
}

/// The tutorial's models as presets: architecture plus hyper-parameters (any explicit option overrides).
public struct Recipe: Sendable {
    public var architecture: Architecture
    public var config: TrainConfig
    public var summary: String

    public static func preset(_ name: String) -> Recipe? {
        guard let arch = Architecture.named(name) else { return nil }
        var c = TrainConfig()
        let schedules = { (c: inout TrainConfig) in c.learningRate = Schedule(0.03, 0.0001); c.momentum = Schedule(0.9, 0.999) }
        let summary: String
        switch name {
        case "net1": c.epochs = 400; summary = "MLP 9216-100-30 (overfits)"
        case "net2": c.epochs = 1000; summary = "CNN, lr 0.01, momentum 0.9"
        case "net3": c.epochs = 3000; c.flipPairs = keypointFlipPairs; summary = "net2 + flip augmentation"
        case "net4": c.epochs = 1000; schedules(&c); summary = "net2 + lr 0.03->0.0001, momentum 0.9->0.999"
        case "net5": c.epochs = 2000; schedules(&c); c.flipPairs = keypointFlipPairs; summary = "net4 + flip"
        case "net6":
            c.epochs = 3000; schedules(&c); c.flipPairs = keypointFlipPairs; c.earlyStoppingPatience = 200
            summary = "net5 + dropout 0.1/0.2/0.3/0.5, early stopping 200"
        case "net7":
            c.epochs = 10000; schedules(&c); c.flipPairs = keypointFlipPairs; c.earlyStoppingPatience = 200
            summary = "net6 with dense 1000-1000 (dropout 0.5 after each)"
        default: return nil
        }
        return Recipe(architecture: arch, config: c, summary: summary)
    }
}
