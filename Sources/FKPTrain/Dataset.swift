import FKPInference
import FKPIngest
import FKPTensor

/// Training data in the nets' units: X = pixel / 255 (already so in FaceSet), y = KeypointScale.scaled(v).
public struct TrainingData: @unchecked Sendable {
    public let images: Tensor   // [n, 9216]
    public let targets: Tensor  // [n, outputs], scaled
    public var count: Int { images.shape[0] }
    public var outputs: Int { targets.shape[1] }

    public init(images: Tensor, targets: Tensor) {
        precondition(images.shape[0] == targets.shape[0])
        self.images = images; self.targets = targets
    }

    /// The rows of `faces` at `rows`, with the keypoint columns `columns` scaled to [-1, 1].
    public init(_ faces: FaceSet, rows: [Int], columns: [Int] = Array(0..<Keypoints.count)) {
        let kp = faces.keypoints!
        images = Tensor(shape: [rows.count, Keypoints.imageSize])
        targets = Tensor(shape: [rows.count, columns.count])
        for (i, r) in rows.enumerated() {
            (images.data + i * Keypoints.imageSize).update(from: faces.images.data + r * Keypoints.imageSize,
                                                            count: Keypoints.imageSize)
            for (j, c) in columns.enumerated() {
                targets[i * columns.count + j] = KeypointScale.scaled(kp[r * Keypoints.count + c])
            }
        }
    }
}

/// The tutorial's split: complete rows, shuffled with a fixed seed, the last 20% held out for validation.
public struct Split {
    public let train: [Int]
    public let valid: [Int]

    public init(rows: [Int], validFraction: Double = 0.2, seed: UInt64 = 42) {
        var order = rows
        var rng = Xoshiro(seed: seed)
        shuffle(&order, &rng)
        let nValid = Int(Double(order.count) * validFraction)
        train = Array(order[..<(order.count - nValid)])
        valid = Array(order[(order.count - nValid)...])
    }
}

/// Fisher-Yates with our own generator, so shuffles are the same on every platform.
public func shuffle<T>(_ a: inout [T], _ rng: inout Xoshiro) {
    if a.count < 2 { return }
    for i in stride(from: a.count - 1, to: 0, by: -1) {
        let j = Int(rng.next() % UInt64(i + 1))
        a.swapAt(i, j)
    }
}
