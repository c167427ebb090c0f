import FKPEngine
import FKPNets
import FKPTensor
import Foundation

/// The tutorial's six specialists: each predicts one group of keypoints and is trained on every row that
/// has that group's values (most rows of Kaggle's file carry only a few keypoints).
public struct SpecialistGroup: Sendable, Equatable {
    public var name: String
    /// Indices into the 30 canonical columns, in the group's own order (x, y alternating).
    public var columns: [Int]
    /// Flip pairs in the group's local indices.
    public var flipPairs: [[Int]]

    public static let tutorial: [SpecialistGroup] = [
        .init(name: "eye_centers", columns: [0, 1, 2, 3], flipPairs: [[0, 2], [1, 3]]),
        .init(name: "nose_tip", columns: [20, 21], flipPairs: []),
        .init(name: "mouth_corners_top_lip", columns: [22, 23, 24, 25, 26, 27], flipPairs: [[0, 2], [1, 3]]),
        .init(name: "bottom_lip", columns: [28, 29], flipPairs: []),
        .init(name: "eye_corners", columns: [4, 5, 8, 9, 6, 7, 10, 11], flipPairs: [[0, 2], [1, 3], [4, 6], [5, 7]]),
        .init(name: "eyebrows", columns: [12, 13, 16, 17, 14, 15, 18, 19], flipPairs: [[0, 2], [1, 3], [4, 6], [5, 7]]),
    ]
}

/// Something that maps 96x96 faces to 30 keypoint values in pixels: one net, or a bundle of specialists.
public protocol KeypointModel: AnyObject {
    var name: String { get }
    func predict(_ images: Tensor) -> [[Float]]
}

public final class SingleNetModel: KeypointModel {
    public private(set) var net: Net
    /// The largest batch the net grows to (it starts at whatever size it was built with).
    public let maxBatch: Int
    public var name: String { net.architecture.name }
    public init(_ net: Net, maxBatch: Int? = nil) { self.net = net; self.maxBatch = max(maxBatch ?? net.maxBatch, 1) }
    public func predict(_ images: Tensor) -> [[Float]] {
        net = grown(net, toFit: images.shape[0], cap: maxBatch)
        return predictKeypoints(net: net, images: images)
    }
}

/// `net`, or a copy with buffers for `count` images (at most `cap`) when it has fewer: buffers follow
/// the batches actually predicted.
func grown(_ net: Net, toFit count: Int, cap: Int) -> Net {
    let need = min(max(count, 1), cap)
    return need > net.maxBatch ? net.resized(maxBatch: need) : net
}

/// Six nets, each filling its group's columns of the 30.
public final class SpecialistBundle: KeypointModel {
    public private(set) var nets: [Net]
    public let groups: [SpecialistGroup]
    public let maxBatch: Int
    public var name: String { "specialists" }

    public init(nets: [Net], groups: [SpecialistGroup], maxBatch: Int? = nil) {
        precondition(nets.count == groups.count)
        self.nets = nets; self.groups = groups
        self.maxBatch = max(maxBatch ?? nets.map(\.maxBatch).max() ?? 1, 1)
    }

    public func predict(_ images: Tensor) -> [[Float]] {
        var out = [[Float]](repeating: [Float](repeating: .nan, count: Keypoints.count), count: images.shape[0])
        nets = nets.map { grown($0, toFit: images.shape[0], cap: maxBatch) }
        for (net, group) in zip(nets, groups) {
            for (i, row) in predictKeypoints(net: net, images: images).enumerated() {
                for (j, c) in group.columns.enumerated() { out[i][c] = row[j] }
            }
        }
        return out
    }

    static let prefix = "specialist"

    /// One safetensors file: tensors "specialist<k>.<name>", metadata naming the base architecture and groups.
    public func save(path: String, metadata: [String: String]) throws {
        var entries: [Safetensors.Entry] = []
        for (k, net) in nets.enumerated() {
            entries += net.exportParameters().map { .init(name: "\(Self.prefix)\(k + 1).\($0.name)", shape: $0.shape, values: $0.values) }
        }
        var meta = metadata
        meta["model"] = "specialists"
        meta["base"] = nets[0].architecture.name
        meta["groups"] = String(decoding: try JSONSerialization.data(withJSONObject: groups.map { ["name": $0.name, "columns": $0.columns, "flip_pairs": $0.flipPairs] }), as: UTF8.self)
        try Safetensors.write(Safetensors.File(tensors: entries, metadata: Net.describing(meta)), path: path)
    }

    public static func load(_ file: Safetensors.File, path: String, backend: Backend, maxBatch: Int) throws -> SpecialistBundle {
        guard let base = file.metadata["base"], let groupsJSON = file.metadata["groups"],
              let raw = try? JSONSerialization.jsonObject(with: Data(groupsJSON.utf8)) as? [[String: Any]] else {
            throw CheckpointError(description: "\(path): a specialists bundle needs 'base' and 'groups' metadata")
        }
        let groups = try raw.map { g -> SpecialistGroup in
            guard let name = g["name"] as? String, let cols = g["columns"] as? [Int], cols.allSatisfy({ (0..<30).contains($0) }),
                  let pairs = g["flip_pairs"] as? [[Int]] else {
                throw CheckpointError(description: "\(path): malformed group in the metadata")
            }
            return SpecialistGroup(name: name, columns: cols, flipPairs: pairs)
        }
        var nets: [Net] = []
        for (k, g) in groups.enumerated() {
            guard let arch = Preset.named(base)?.architecture(outputs: g.columns.count) else {
                throw CheckpointError(description: "\(path): unknown base architecture '\(base)'")
            }
            let prefix = "\(Self.prefix)\(k + 1)."
            nets.append(try loadPredictionNet(arch, from: file, prefix: prefix, path: "\(path) (\(prefix.dropLast()))", backend: backend))
        }
        return SpecialistBundle(nets: nets, groups: groups, maxBatch: maxBatch)
    }
}

/// One net of a bundle file (its tensors named "<prefix><name>"), built for prediction only (no training
/// buffers, room for one image; it grows to the batches asked for).
func loadPredictionNet(_ arch: Architecture, from file: Safetensors.File, prefix: String, path: String, backend: Backend) throws -> Net {
    let net = Net(arch, backend: backend, maxBatch: 1, trainable: false)
    let sub = Safetensors.File(tensors: file.tensors.filter { $0.name.hasPrefix(prefix) }.map {
        .init(name: String($0.name.dropFirst(prefix.count)), shape: $0.shape, values: $0.values)
    }, metadata: [:])
    try net.load(sub, path: path)
    return net
}
