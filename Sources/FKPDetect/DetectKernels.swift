import CDetect

/// One set of the detector's hot loops (a stump cascade's windows, row by row), compiled in the C target
/// CDetect once per instruction set like the engine's kernels and chosen with them: FKP_KERNELS=sse2
/// forces the baseline for both.
public struct DetectKernels: @unchecked Sendable {
    let table: UnsafePointer<fkp_detect_kernels>

    /// "avx2" or "sse2" (x86-64), "base" elsewhere.
    public var name: String { String(cString: table.pointee.name) }

    /// The set that follows the engine's kernel set, chosen once.
    public static let best = DetectKernels(table: fkp_detect_kernels_get())

    /// The set of that name, nil where this CPU does not support it.
    public static func named(_ name: String) -> DetectKernels? {
        fkp_detect_kernels_named(name).map { DetectKernels(table: $0) }
    }

    /// Every set this CPU supports, best first (the tests run each against the Swift reference).
    public static var supported: [DetectKernels] {
        var names: [String] = []
        var p = fkp_detect_kernels_all_names()!
        while let n = p.pointee { names.append(String(cString: n)); p += 1 }
        return names.compactMap(named)
    }
}
