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
    /// Input-gradient buffers written by a max-pool backward from a record (still unmodified).
    private var routed: [ObjectIdentifier: Record] = [:]

    /// A buffer was (or is about to be) written: records reading it, and a routed gradient in it, are stale.
    func wrote(_ buffer: AnyObject) {
        let id = ObjectIdentifier(buffer)
        lock.lock(); defer { lock.unlock() }
        if valid.isEmpty && routed.isEmpty { return }
        valid.remove(id)
        routed.removeValue(forKey: id)
        for key in valid where records[key]?.y === buffer { valid.remove(key) }
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

    func routed(dx: Tensor, by record: Record) {
        lock.lock(); defer { lock.unlock() }
        routed[ObjectIdentifier(dx)] = record
    }

    /// The record dx was routed by, if dx is unmodified since, the record still valid, and the ReLU whose
    /// mask is asked for is the pool's input over the same values.
    func routedRecord(dx: Tensor, reluOutput y: Tensor, count: Int) -> Record? {
        lock.lock(); defer { lock.unlock() }
        guard let r = routed[ObjectIdentifier(dx)], let x = r.x, x === y, valid.contains(ObjectIdentifier(x)),
              r.shape.inputCount == count, r.y != nil else { return nil }
        return r
    }
}
