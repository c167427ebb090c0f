import FKPTensor
import Foundation

/// Layers' weights packed as GEMM B panels, kept until the weight buffer is written again: a net that only
/// predicts packs each layer once (net2's hidden4, 31 MB, was packed again for every batch, which at
/// batch 1 cost as much as the multiply-adds), a training step's update makes the next forward pass
/// repack. Every CPUBackend op that writes a buffer reports it here (`wrote`), as for PoolRecords.
final class PackedWeights: @unchecked Sendable {
    private final class Entry {
        weak var weights: Tensor?
        let storage: Tensor
        var packed: PackedB
        /// False once the weights were written: the storage is kept and packed into again (a training
        /// step allocates nothing).
        var valid = true
        init(weights: Tensor, storage: Tensor, packed: PackedB) {
            self.weights = weights; self.storage = storage; self.packed = packed
        }
    }

    private let lock = NSLock()
    private var entries: [ObjectIdentifier: Entry] = [:]

    /// w[k, n] (row-major) packed whole, from the cache while w is unchanged; packed by the pool's workers,
    /// a share of the panels each, when not.
    func packed(_ w: Tensor, k: Int, n: Int, pool: WorkerPool) -> PackedB {
        let id = ObjectIdentifier(w)
        lock.lock()
        let old = entries[id].flatMap { $0.weights === w && $0.packed.k == k && $0.packed.n == n ? $0 : nil }
        lock.unlock()
        if let old, old.valid { return old.packed }
        let storage = old?.storage ?? Tensor(shape: [packedBCount(k: k, n: n)])
        let packed = packBParallel(MatrixRef(w.data, ld: n), k: k, n: n, into: storage.data, pool: pool)
        lock.lock()
        entries = entries.filter { $0.value.weights != nil }  // weights freed: their packing goes too
        entries[id] = Entry(weights: w, storage: storage, packed: packed)
        lock.unlock()
        return packed
    }

    /// A buffer was (or is about to be) written: its packing is stale.
    func wrote(_ buffer: AnyObject) {
        lock.lock(); defer { lock.unlock() }
        entries[ObjectIdentifier(buffer)]?.valid = false
    }
}
