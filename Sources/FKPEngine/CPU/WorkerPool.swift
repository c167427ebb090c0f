import Dispatch
import Foundation

/// The CPU engine's threads: `count` workers, each with its own GEMM scratch, and the kernel set they
/// run. Work is split into fixed, contiguous ranges by worker index, so results do not depend on
/// scheduling.
public final class WorkerPool: @unchecked Sendable {
    public let count: Int
    public let kernels: CPUKernels
    public let scratch: [GemmScratch]

    public init(threads: Int? = nil, kernels: CPUKernels = .best) {
        let n = max(1, threads ?? WorkerPool.defaultThreads)
        count = n
        self.kernels = kernels
        scratch = (0..<n).map { _ in GemmScratch(kernels: kernels) }
    }

    /// FKP_THREADS, else every core the process may use.
    public static var defaultThreads: Int {
        if let s = ProcessInfo.processInfo.environment["FKP_THREADS"], let n = Int(s), n > 0 { return n }
        return ProcessInfo.processInfo.activeProcessorCount
    }

    /// Runs body(worker) for worker in 0..<n (n <= count) in parallel.
    public func run(_ n: Int, _ body: (Int) -> Void) {
        if n <= 1 { body(0); return }
        DispatchQueue.concurrentPerform(iterations: n, execute: body)
    }

    /// Splits 0..<total into `count` contiguous ranges and runs them in parallel.
    public func parallelRanges(_ total: Int, minChunk: Int = 1, _ body: (Int, Range<Int>) -> Void) {
        let workers = max(1, min(count, total / max(minChunk, 1)))
        run(workers) { w in
            let lo = total * w / workers, hi = total * (w + 1) / workers
            if hi > lo { body(w, lo..<hi) }
        }
    }
}
