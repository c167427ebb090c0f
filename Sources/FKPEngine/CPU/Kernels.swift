import CKernels

/// One set of the CPU engine's hot kernels (GEMM micro-kernel, the direct 3x3 convolution on one
/// channel, 2x2 max-pool), compiled in the C target CKernels once per instruction set so that one
/// portable binary runs everywhere and still uses AVX2 + FMA or AVX-512 where the CPU has them.
public struct CPUKernels: @unchecked Sendable {
    let table: UnsafePointer<fkp_kernels>
    var k: fkp_kernels { table.pointee }

    /// "avx512", "avx2+fma", "sse2" (x86-64 baseline) or "neon" (arm64).
    public var name: String { String(cString: table.pointee.name) }
    /// Rows of the GEMM micro-tile (A is packed in panels of this many rows).
    public var mr: Int { table.pointee.mr }

    /// The best set this CPU supports, chosen once (FKP_KERNELS forces another supported one).
    public static let best = CPUKernels(table: fkp_kernels_get())

    /// The set of that name, nil where this CPU does not support it.
    public static func named(_ name: String) -> CPUKernels? {
        fkp_kernels_named(name).map { CPUKernels(table: $0) }
    }

    /// Every set this CPU supports, best first (the tests run each against the reference).
    public static var supported: [CPUKernels] {
        var names: [String] = []
        var p = fkp_kernels_all_names()!
        while let n = p.pointee { names.append(String(cString: n)); p += 1 }
        return names.compactMap(named)
    }
}
