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

/// A trainer's hyper-parameters. Codable: a checkpoint stores it, and a resumed run reads it back.
public struct TrainConfig: Sendable, Codable {
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

    enum CodingKeys: String, CodingKey { case epochs, batchSize, learningRate, momentum, seed, flipPairs, earlyStoppingPatience }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        epochs = try c.decode(Int.self, forKey: .epochs)
        batchSize = try c.decode(Int.self, forKey: .batchSize)
        learningRate = try c.decode(Schedule.self, forKey: .learningRate)
        momentum = try c.decode(Schedule.self, forKey: .momentum)
        seed = try c.decode(UInt64.self, forKey: .seed)
        flipPairs = try c.decodeIfPresent([[Int]].self, forKey: .flipPairs).map { try $0.map { p in
            guard p.count == 2 else { throw DecodingError.dataCorruptedError(forKey: .flipPairs, in: c, debugDescription: "a flip pair has two columns") }
            return (p[0], p[1])
        } }
        earlyStoppingPatience = try c.decodeIfPresent(Int.self, forKey: .earlyStoppingPatience)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(epochs, forKey: .epochs)
        try c.encode(batchSize, forKey: .batchSize)
        try c.encode(learningRate, forKey: .learningRate)
        try c.encode(momentum, forKey: .momentum)
        try c.encode(seed, forKey: .seed)
        try c.encodeIfPresent(flipPairs.map { $0.map { [$0.0, $0.1] } }, forKey: .flipPairs)
        try c.encodeIfPresent(earlyStoppingPatience, forKey: .earlyStoppingPatience)
    }
}

/// The tutorial's models: architecture plus hyper-parameters (any explicit option overrides). The one
/// table of them: model files name their architecture by preset, train and bench take these names.
public struct Preset: Sendable {
    public var name: String
    public var summary: String
    public var config: TrainConfig
    /// Units of the two dense layers of a CNN preset; nil for the MLP.
    var hidden: Int?
    var dropout: Bool

    public var architecture: Architecture { architecture(outputs: Keypoints.count) }
    public var isConvolutional: Bool { hidden != nil }

    /// The preset's layers with `outputs` outputs (specialists), with net6's dropout added on request.
    public func architecture(outputs: Int, dropout extraDropout: Bool = false) -> Architecture {
        guard let hidden else { return .net1(outputs: outputs) }
        let withDropout = dropout || extraDropout
        return .net2(outputs: outputs, hidden: hidden, dropout: withDropout, dropoutAfterHidden5: withDropout && hidden == 1000, name: name)
    }

    public static let all: [Preset] = {
        func make(_ name: String, _ summary: String, hidden: Int? = 500, dropout: Bool = false,
                  epochs: Int, schedules: Bool = false, flip: Bool = false, patience: Int? = nil) -> Preset {
            var c = TrainConfig()
            c.epochs = epochs
            if schedules { c.learningRate = Schedule(0.03, 0.0001); c.momentum = Schedule(0.9, 0.999) }
            if flip { c.flipPairs = keypointFlipPairs }
            c.earlyStoppingPatience = patience
            return Preset(name: name, summary: summary, config: c, hidden: hidden, dropout: dropout)
        }
        return [
            make("net1", "MLP 9216-100-30 (overfits)", hidden: nil, epochs: 400),
            make("net2", "CNN, lr 0.01, momentum 0.9", epochs: 1000),
            make("net3", "net2 + flip augmentation", epochs: 3000, flip: true),
            make("net4", "net2 + lr 0.03->0.0001, momentum 0.9->0.999", epochs: 1000, schedules: true),
            make("net5", "net4 + flip", epochs: 2000, schedules: true, flip: true),
            make("net6", "net5 + dropout 0.1/0.2/0.3/0.5, early stopping 200", dropout: true, epochs: 3000, schedules: true,
                 flip: true, patience: 200),
            make("net7", "net6 with dense 1000-1000 (dropout 0.5 after each)", hidden: 1000, dropout: true, epochs: 10000,
                 schedules: true, flip: true, patience: 200),
        ]
    }()

    public static var names: [String] { all.map(\.name) }
    public static func named(_ name: String) -> Preset? { all.first { $0.name == name } }
}
