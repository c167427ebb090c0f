import FKPTensor
import Foundation

/// The CPU engine's memory of max-pool forward passes, so that the backward pass is a scatter from
/// recorded arg-max positions (one byte per pooled value) instead of a second read and comparison of the
/// pool's input, and so that the ReLU mask of the gradient it produces is a sparse pass.
///
/// A record is keyed by the pool's input buffer and is valid while neither that input nor the pool's
/// output has been written since: every CPUBackend op that writes a buffer reports it here (`wrote`), and
/// a record is dropped when one of its buffers is written. Arg-max positions are only recorded for inputs
/// whose gradient was asked for once (training), so a net that only predicts pays nothing. Storage is
/// allocated once per input buffer and reused for every batch.
final class PoolRecords: @unchecked Sendable {
    final class Record {
        weak var x: Tensor?
        weak var y: Tensor?
        var shape: PoolShape
        var arg: UnsafeMutablePointer<UInt8>
        var capacity: Int
        /// Counts forward passes recorded here (arg is overwritten by each).
        var generation = 0
        init(x: Tensor, y: Tensor, shape: PoolShape) {
            self.x = x; self.y = y; self.shape = shape
            capacity = shape.outputCount
            arg = .allocate(capacity: capacity)
        }
        deinit { arg.deallocate() }
    }

    private let lock = NSLock()
    /// Valid records by pool input; kept (as storage) after they are invalidated.
    private var records: [ObjectIdentifier: Record] = [:]
    private var valid: Set<ObjectIdentifier> = []
    /// Pool inputs whose gradient was asked for.
    private var wanted: Set<ObjectIdentifier> = []
    /// A gradient written by a max-pool backward: dx = dy routed to the positions of one forward pass of
    /// a record, and, once masked, cleared where the pooled value is not positive (the ReLU mask).
    struct Routed {
        let record: Record
        let generation: Int
        weak var dy: Tensor?
        var masked: Bool
    }
    /// Routed gradients by dx buffer, while dx and the pool's dy are unmodified.
    private var routed: [ObjectIdentifier: Routed] = [:]

    /// A buffer was (or is about to be) written: records reading it, and a routed gradient in it, are stale.
    func wrote(_ buffer: AnyObject) {
        let id = ObjectIdentifier(buffer)
        lock.lock(); defer { lock.unlock() }
        if valid.isEmpty && routed.isEmpty { return }
        valid.remove(id)
        routed.removeValue(forKey: id)
        for key in valid where records[key]?.y === buffer { valid.remove(key) }
        for (key, r) in routed where r.dy == nil || r.dy === buffer { routed.removeValue(forKey: key) }
    }

    func wantArgs(_ x: Tensor) {
        lock.lock(); defer { lock.unlock() }
        wanted.insert(ObjectIdentifier(x))
    }

    /// Where a forward pass over x should put its arg-max positions (nil: x's gradient is never asked for).
    func recordForward(x: Tensor, y: Tensor, shape: PoolShape) -> UnsafeMutablePointer<UInt8>? {
        let id = ObjectIdentifier(x)
        lock.lock(); defer { lock.unlock() }
        guard wanted.contains(id) else { return nil }
        let r: Record
        if let old = records[id], old.x === x, old.capacity >= shape.outputCount {
            (old.y, old.shape) = (y, shape)
            old.generation += 1
            r = old
        } else {
            r = Record(x: x, y: y, shape: shape)
            records[id] = r
        }
        valid.insert(id)
        return r.arg
    }

    /// The valid record of a forward pass over x with this shape.
    func record(for x: Tensor, shape: PoolShape) -> Record? {
        let id = ObjectIdentifier(x)
        lock.lock(); defer { lock.unlock() }
        guard valid.contains(id), let r = records[id], r.x === x, r.shape == shape else { return nil }
        return r
    }

    func routed(dx: Tensor, dy: Tensor, by record: Record, masked: Bool = false) {
        lock.lock(); defer { lock.unlock() }
        routed[ObjectIdentifier(dx)] = Routed(record: record, generation: record.generation, dy: dy, masked: masked)
    }

    /// How dx was routed, if dx and the pool's dy are unmodified since and the record still holds that
    /// forward pass (valid, same generation).
    func routing(of dx: Tensor) -> Routed? {
        lock.lock(); defer { lock.unlock() }
        guard let r = routed[ObjectIdentifier(dx)], r.dy != nil, let x = r.record.x, r.record.y != nil,
              valid.contains(ObjectIdentifier(x)), r.record.generation == r.generation else { return nil }
        return r
    }
}
