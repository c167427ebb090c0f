import COpenCL
import Foundation

/// The two GEMM kernels; both read the same packed panels (kernels/pack.cl).
public enum OpenCLGemmVariant: String, Sendable, CaseIterable {
    /// gemm_register.cl: one work-item per 8x16 block of C in registers, work-groups of 1 (CPU devices, PoCL).
    case registerBlocked
    /// gemm_tiled.cl: 16x16 work-groups, 64x64 tiles through local memory, 4x4 per work-item (GPUs).
    case localTiled
}

/// Settings of an OpenCLBackend beyond the device; the defaults are what the tool uses.
public struct OpenCLBackendOptions: Sendable {
    /// nil: chosen by device type (GPU: localTiled, otherwise registerBlocked).
    public var gemm: OpenCLGemmVariant?
    /// Where compiled programs are cached; nil: FKP_KERNEL_CACHE, $XDG_CACHE_HOME/fkp-batch/kernels or
    /// ~/.cache/fkp-batch/kernels.
    public var cacheDirectory: String?
    public var useCache: Bool
    /// A folder of .cl files to build instead of the embedded kernels; nil: FKP_KERNELS_DIR when set.
    public var kernelsDirectory: String?
    public var buildOptions: String
    /// Measure the GEMM tilings per shape at first use (and cache the choice); false: the first
    /// candidate, unmeasured (every candidate gives the same bits, so this changes speed only).
    public var tuneGemm: Bool
    /// Convolutions and dense layers on CPU devices read their operands in place (gemm_inplace.cl)
    /// instead of packing them into GEMM panels (pack.cl); false forces the packed path (the tests
    /// compare both).
    public var readInPlace: Bool

    public init(gemm: OpenCLGemmVariant? = nil, cacheDirectory: String? = nil, useCache: Bool = true,
                kernelsDirectory: String? = nil, buildOptions: String = "-cl-std=CL1.2",
                tuneGemm: Bool = true, readInPlace: Bool = true) {
        (self.gemm, self.cacheDirectory, self.useCache) = (gemm, cacheDirectory, useCache)
        (self.kernelsDirectory, self.buildOptions) = (kernelsDirectory, buildOptions)
        (self.tuneGemm, self.readInPlace) = (tuneGemm, readInPlace)
    }
}

/// A cl_mem of `count` floats.
final class CLBuffer: DeviceBuffer {
    let mem: cl_mem?
    let count: Int
    init(mem: cl_mem?, count: Int) { (self.mem, self.count) = (mem, count) }
    deinit { if let mem { clReleaseMemObject(mem) } }
}

/// The backend on one OpenCL device. Every buffer lives on the device; the only per-batch transfers are
/// the input/target writes and the loss read (one float). Work is queued in order and runs
/// asynchronously; `read`, `mseLoss` and `synchronize` wait for it.
///
/// The Backend protocol does not throw, so a failure while queueing work (CL_OUT_OF_RESOURCES, ...) is
/// recorded in `failure`: later ops are skipped, `mseLoss` returns NaN, reads give NaN, and `check()`
/// throws it. Construction throws (no platform, no device, a kernel that does not build).
public final class OpenCLBackend: Backend, @unchecked Sendable {
    public let deviceInfo: OpenCLDeviceInfo
    public let gemmVariant: OpenCLGemmVariant
    /// How each program was obtained (source, cache, rebuilt) and how long it took.
    public let programBuilds: [OpenCLProgramBuild]
    /// The cache folder in use (nil when caching is off).
    public let cacheDirectory: String?
    /// The first error met while queueing work, if any.
    public private(set) var failure: OpenCLError?
    public var name: String { "opencl \(deviceInfo.name)" }
    /// The GEMM tiling chosen for each shape met so far, and whether it was measured now or read from
    /// the tuning cache.
    public var gemmChoices: [GemmChoice] { tuner.choices }
    let options: OpenCLBackendOptions
    /// CPU devices (PoCL) get a few long work-items per launch; GPUs one element per work-item.
    let cpuLike: Bool
    let tuner: GemmTuner
    /// Forces one GEMM tiling instead of the measured choice (the tests check that all give the same bits).
    public var gemmTilingOverride: GemmTiling?
    /// The same for the kernels that read their operands in place (gemm_inplace.cl).
    public var inPlaceTilingOverride: GemmTiling?

    let device: cl_device_id
    let context: cl_context
    let queue: cl_command_queue
    let programs: [cl_program]
    let kernels: [String: cl_kernel]

    // Scratch, grown to the largest shape met and then reused.
    private var aPack: CLBuffer?
    private var bPack: CLBuffer?
    private var partial: CLBuffer?
    private var lossBuffer: CLBuffer?
    /// Zeros read by conv_backward_input where the flipped kernel reaches outside dy.
    private var zeros: CLBuffer?

    static let requiredKernels = [
        "gemm_register", "gemm_tiled", "pack_a", "pack_b", "pack_b_t", "pack_a_im2col", "pack_a_im2col_t",
        "pack_a_conv_dx", "pack_b_conv_dx", "sum_slices", "column_sums_partial", "maxpool_forward",
        "maxpool_backward", "relu_backward", "dropout_apply", "mse_loss", "nesterov_update",
        "gemm_register_4", "conv_forward",
        "conv_backward_input", "conv_backward_weights", "dense_forward", "dense_backward_weights",
        "dense_backward_input",
    ]

    /// deviceIndex: an index of `OpenCLRuntime.devices()`; nil: the first usable GPU, else the first
    /// usable device.
    public init(deviceIndex: Int? = nil, options: OpenCLBackendOptions = .init()) throws {
        let all = try OpenCLRuntime.enumerate()
        let chosen: OpenCLRuntime.Found
        if let deviceIndex {
            guard all.indices.contains(deviceIndex) else {
                throw OpenCLError(call: "device selection", code: CL_DEVICE_NOT_FOUND,
                                  detail: "no OpenCL device \(deviceIndex) (there \(all.count == 1 ? "is" : "are") \(all.count))")
            }
            chosen = all[deviceIndex]
            guard chosen.info.usable else {
                throw OpenCLError(call: "device selection", code: CL_DEVICE_NOT_AVAILABLE,
                                  detail: "device \(deviceIndex) (\(chosen.info.name)) is not usable: \(chosen.info.note)")
            }
        } else {
            let usable = all.filter(\.info.usable)
            guard let first = usable.first(where: { $0.info.type == "GPU" }) ?? usable.first else {
                throw OpenCLError(call: "device selection", code: CL_DEVICE_NOT_FOUND,
                                  detail: "no usable OpenCL device among \(all.count)")
            }
            chosen = first
        }
        let info = chosen.info
        let device = chosen.device
        var deviceRef: cl_device_id? = device
        var variant = options.gemm ?? (info.type == "GPU" ? .localTiled : .registerBlocked)
        if variant == .localTiled && info.maxWorkGroupSize < 256 { variant = .registerBlocked }

        var err: cl_int = 0
        guard let context = clCreateContext(nil, 1, &deviceRef, nil, nil, &err), err == CL_SUCCESS else {
            throw OpenCLError(call: "clCreateContext", code: err)
        }
        var programs: [cl_program] = []
        var kernels: [String: cl_kernel] = [:]
        var queue: cl_command_queue?
        var ok = false
        defer {
            if !ok {
                for k in kernels.values { clReleaseKernel(k) }
                for p in programs { clReleaseProgram(p) }
                if let queue { clReleaseCommandQueue(queue) }
                clReleaseContext(context)
            }
        }
        queue = clCreateCommandQueue(context, device, 0, &err)
        guard let queue, err == CL_SUCCESS else { throw OpenCLError(call: "clCreateCommandQueue", code: err) }

        let sources = try Self.kernelSources(directory: options.kernelsDirectory)
        let cacheDir = options.useCache ? (options.cacheDirectory ?? ProgramCache.defaultDirectory()) : nil
        let cache = ProgramCache(directory: cacheDir)
        var builds: [OpenCLProgramBuild] = []
        for file in sources.keys.sorted() {
            let (program, build) = try Self.buildProgram(
                file: file, source: sources[file]!, options: options.buildOptions, context: context,
                device: device, info: info, cache: cache)
            programs.append(program)
            builds.append(build)
            for (name, kernel) in try Self.kernels(of: program, file: file) {
                if let old = kernels[name] { clReleaseKernel(old) }
                kernels[name] = kernel
            }
        }
        for name in Self.requiredKernels where kernels[name] == nil {
            throw OpenCLError(call: "clCreateKernelsInProgram", code: -46, kernel: name,
                              detail: "no kernel named \(name) in the sources")
        }
        ok = true
        self.deviceInfo = info
        self.gemmVariant = variant
        self.device = device
        self.context = context
        self.queue = queue
        self.programs = programs
        self.kernels = kernels
        self.programBuilds = builds
        self.cacheDirectory = cacheDir
        self.options = options
        self.cpuLike = info.type != "GPU"
        // The tuning cache sits next to the compiled programs, keyed like them by the GEMM source and
        // the device and driver, so a new kernel or driver measures afresh.
        let gemmFile = variant == .registerBlocked ? "gemm_register.cl" : "gemm_tiled.cl"
        let tuningKey = ProgramCache.key([sources[gemmFile] ?? "", sources["gemm_inplace.cl"] ?? "",
                                          options.buildOptions, info.platform, info.name, info.version, info.driver,
                                          variant.rawValue])
        self.tuner = GemmTuner(path: cache.path(file: "gemm-tuning", key: tuningKey, suffix: "txt"),
                               measure: options.tuneGemm)
    }

    deinit {
        flushPending()
        clFinish(queue)
        aPack = nil; bPack = nil; partial = nil; lossBuffer = nil; zeros = nil
        for k in kernels.values { clReleaseKernel(k) }
        for p in programs { clReleaseProgram(p) }
        clReleaseCommandQueue(queue)
        clReleaseContext(context)
    }

    /// Throws the first error met while queueing work.
    public func check() throws {
        flushPending()
        if let failure { throw failure }
    }

    // MARK: memory

    public func makeBuffer(count: Int) -> DeviceBuffer {
        flushPending()
        let bytes = max(count, 1) * MemoryLayout<Float>.size
        var err: cl_int = 0
        let mem = clCreateBuffer(context, cl_mem_flags(CL_MEM_READ_WRITE), bytes, nil, &err)
        if err != CL_SUCCESS || mem == nil {
            record(OpenCLError(call: "clCreateBuffer", code: err, detail: "\(bytes) bytes"))
            return CLBuffer(mem: nil, count: count)
        }
        // Zeroed like the CPU engine's tensors.
        var zero: Float = 0
        let s = clEnqueueFillBuffer(queue, mem, &zero, 4, 0, bytes, 0, nil, nil)
        if s != CL_SUCCESS { record(OpenCLError(call: "clEnqueueFillBuffer", code: s)) }
        return CLBuffer(mem: mem, count: count)
    }

    public func write(_ source: UnsafeBufferPointer<Float>, to buffer: DeviceBuffer, offset: Int) {
        precondition(offset + source.count <= buffer.count, "write past the end of a buffer")
        flushPending()
        guard failure == nil, source.count > 0 else { return }
        let s = clEnqueueWriteBuffer(queue, mem(buffer), cl_bool(CL_TRUE), offset * 4, source.count * 4,
                                     source.baseAddress, 0, nil, nil)
        if s != CL_SUCCESS { record(OpenCLError(call: "clEnqueueWriteBuffer", code: s)) }
    }

    public func read(_ buffer: DeviceBuffer, offset: Int, into destination: UnsafeMutableBufferPointer<Float>) {
        precondition(offset + destination.count <= buffer.count, "read past the end of a buffer")
        flushPending()
        guard destination.count > 0 else { return }
        if failure == nil {
            let s = clEnqueueReadBuffer(queue, mem(buffer), cl_bool(CL_TRUE), offset * 4, destination.count * 4,
                                        destination.baseAddress, 0, nil, nil)
            if s == CL_SUCCESS { return }
            record(OpenCLError(call: "clEnqueueReadBuffer", code: s))
        }
        destination.update(repeating: .nan)
    }

    public func synchronize() {
        flushPending()
        guard failure == nil else { return }
        let s = clFinish(queue)
        if s != CL_SUCCESS { record(OpenCLError(call: "clFinish", code: s)) }
    }

    @inline(__always) func mem(_ b: DeviceBuffer) -> cl_mem? { unsafeDowncast(b, to: CLBuffer.self).mem }

    private func record(_ e: OpenCLError) { if failure == nil { failure = e } }

    /// A scratch buffer of at least `count` floats, reallocated only when it must grow.
    private func scratch(_ slot: ReferenceWritableKeyPath<OpenCLBackend, CLBuffer?>, _ count: Int) -> cl_mem? {
        if let b = self[keyPath: slot], b.count >= count { return b.mem }
        self[keyPath: slot] = nil
        let b = makeBuffer(count: count) as! CLBuffer
        self[keyPath: slot] = b
        return b.mem
    }

    // MARK: launching

    enum Arg {
        case mem(cl_mem?)
        case int(Int)
        case float(Float)
        case ulong(UInt64)
    }

    /// Queues `name` over `global` (each a multiple of `local`: callers round up and kernels guard the tail).
    func launch(_ name: String, global: [Int], local: [Int], _ args: [Arg]) {
        guard failure == nil else { return }
        guard let kernel = kernels[name] else {
            record(OpenCLError(call: "launch", code: -46, kernel: name)); return
        }
        for (i, arg) in args.enumerated() {
            var s: cl_int
            switch arg {
            case .mem(let m):
                var v = m
                s = clSetKernelArg(kernel, cl_uint(i), MemoryLayout<cl_mem?>.size, &v)
            case .int(let x):
                precondition(x >= Int(Int32.min) && x <= Int(Int32.max), "\(name): argument \(i) = \(x) overflows int")
                var v = Int32(x)
                s = clSetKernelArg(kernel, cl_uint(i), 4, &v)
            case .float(let x):
                var v = x
                s = clSetKernelArg(kernel, cl_uint(i), 4, &v)
            case .ulong(let x):
                var v = x
                s = clSetKernelArg(kernel, cl_uint(i), 8, &v)
            }
            if s != CL_SUCCESS {
                record(OpenCLError(call: "clSetKernelArg(\(i))", code: s, kernel: name)); return
            }
        }
        precondition(global.count == local.count)
        if global.contains(0) { return }
        for d in global.indices { precondition(global[d] % local[d] == 0, "\(name): global not a multiple of local") }
        let s = global.withUnsafeBufferPointer { g in
            local.withUnsafeBufferPointer { l in
                clEnqueueNDRangeKernel(queue, kernel, cl_uint(global.count), nil, g.baseAddress, l.baseAddress, 0, nil, nil)
            }
        }
        if s != CL_SUCCESS { record(OpenCLError(call: "clEnqueueNDRangeKernel", code: s, kernel: name)) }
    }

    @inline(__always) static func up(_ x: Int, _ m: Int) -> Int { (x + m - 1) / m * m }
    @inline(__always) static func ceilDiv(_ x: Int, _ m: Int) -> Int { (x + m - 1) / m }

    /// An element-wise launch: work-groups of 64, the count rounded up.
    func launch1D(_ name: String, count: Int, _ args: [Arg]) {
        launch(name, global: [Self.up(count, 64)], local: [64], args)
    }

    /// How `count` elements are split into runs of `per`, one run per work-item. PoCL pays about a
    /// microsecond per work-group and vectorises a plain loop, so CPU devices get about 16 runs per
    /// compute unit (at least 4096 elements each) in work-groups of 1; GPUs one element per work-item.
    func runs(_ count: Int, spread: Int = 1) -> (items: Int, per: Int) {
        guard cpuLike else { return (max(count, 1), 1) }
        let want = max(1, 16 * max(1, deviceInfo.computeUnits) / max(1, spread))
        let per = max(min(4096, max(count, 1)), Self.ceilDiv(max(count, 1), want))
        return (Self.ceilDiv(max(count, 1), per), per)
    }

    /// An element-wise launch over runs: the kernel's last argument is the run length.
    func launchRuns(_ name: String, count: Int, _ args: [Arg]) {
        let (items, per) = runs(count)
        let local = cpuLike ? 1 : 64
        launch(name, global: [Self.up(items, local)], local: [local], args + [.int(per)])
    }

    /// A launch over (channel groups, runs of a pixel grid) for the pooling kernels (maxpool.cl): CPU
    /// devices one work-item per run with every channel, GPUs one per (channel, window).
    func channelRuns(channels: Int, total: Int) -> (global: [Int], local: [Int], per: Int, cPer: Int) {
        let (items, per) = runs(total)
        if cpuLike { return ([1, items], [1, 1], per, max(channels, 1)) }
        return ([Self.up(channels, 16), items], [16, 1], per, 1)
    }

    // MARK: deferred op (one-op peephole)

    /// A max-pool backward whose launch waits for the next op: when that op is reluBackward over the
    /// pool's input and gradient (what a conv layer below a pool does next), both run as one pass.
    struct PendingPool {
        var x: DeviceBuffer, dy: DeviceBuffer, dx: DeviceBuffer, shape: PoolShape
    }
    private var pendingPool: PendingPool?
    /// How many pool backward passes ran joined with their ReLU mask (the tests check it happens).
    public private(set) var joinedPoolRelu = 0

    /// Launches the deferred op, if any. Every public entry point calls this first, so queue order is
    /// the order of the calls.
    func flushPending() {
        guard let p = pendingPool else { return }
        pendingPool = nil
        launchPoolBackward(p, reluMask: false)
    }

    private func launchPoolBackward(_ p: PendingPool, reluMask: Bool) {
        let s = p.shape
        let total = s.batch * s.outHeight * s.outWidth
        let (global, local, per, cPer) = channelRuns(channels: s.channels, total: total)
        launch("maxpool_backward", global: global, local: local,
               [.mem(mem(p.x)), .mem(mem(p.dy)), .mem(mem(p.dx)), .int(s.height), .int(s.width), .int(s.channels),
                .int(s.outHeight), .int(s.outWidth), .int(total), .int(per), .int(cPer), .int(reluMask ? 1 : 0)])
    }

    // MARK: GEMM

    struct GemmPlan {
        var m, n, k, mPad, nPad, kPad: Int
    }

    func plan(m: Int, n: Int, k: Int) -> GemmPlan {
        switch gemmVariant {
        case .registerBlocked: return GemmPlan(m: m, n: n, k: k, mPad: Self.up(m, 8), nPad: Self.up(n, 16), kPad: k)
        case .localTiled: return GemmPlan(m: m, n: n, k: k, mPad: Self.up(m, 64), nPad: Self.up(n, 64), kPad: Self.up(k, 16))
        }
    }

    /// Splits along the loop dimension of a packer so that there are enough work-groups.
    private func packChunks(groups: Int, length: Int) -> (chunks: Int, chunk: Int) {
        let want = 8 * max(1, deviceInfo.computeUnits)
        let chunks = max(1, min(Self.ceilDiv(want, max(groups, 1)), length / 256))
        let chunk = Self.ceilDiv(max(length, 1), chunks)
        return (Self.ceilDiv(max(length, 1), chunk), chunk)
    }

    /// Packs op(A)[m,k] (src row-major with leading dimension ld, transposed when trans) into aPack.
    func packA(_ p: GemmPlan, src: cl_mem?, ld: Int, trans: Bool) {
        let dst = scratch(\.aPack, p.mPad * p.kPad)
        let rows = Self.up(p.mPad, 64)
        let (chunks, chunk) = packChunks(groups: rows / 64, length: p.kPad)
        launch("pack_a", global: [rows, chunks], local: [64, 1],
               [.mem(src), .int(ld), .int(trans ? 1 : 0), .int(p.m), .int(p.k), .int(p.mPad), .int(p.kPad),
                .int(chunk), .mem(dst)])
    }

    /// Packs op(B)[k,n] into bPack.
    func packB(_ p: GemmPlan, src: cl_mem?, ld: Int, trans: Bool) {
        let dst = scratch(\.bPack, p.nPad * p.kPad)
        if !trans {
            launch("pack_b", global: [Self.up(p.kPad, 64), p.nPad / 16], local: [64, 1],
                   [.mem(src), .int(ld), .int(p.k), .int(p.n), .int(p.kPad), .mem(dst)])
            return
        }
        let cols = Self.up(p.nPad, 64)
        let (chunks, chunk) = packChunks(groups: cols / 64, length: p.kPad)
        launch("pack_b_t", global: [cols, chunks], local: [64, 1],
               [.mem(src), .int(ld), .int(p.k), .int(p.n), .int(p.nPad), .int(p.kPad), .int(chunk), .mem(dst)])
    }

    /// C[m,n] (leading dimension n) = packed A . packed B (+ bias, ReLU). Long k ranges are split (so that
    /// panels stay in cache, and so that a small C still has enough work-items); the slices are then
    /// summed in order, so results are deterministic.
    func gemm(_ p: GemmPlan, c: cl_mem?, bias: cl_mem?, relu: Bool) {
        let flags = (bias != nil ? 1 : 0) | (relu ? 2 : 0)
        let units = max(1, deviceInfo.computeUnits)
        let (splits, kChunk) = split(p)
        let a = aPack?.mem, b = bPack?.mem
        let target = splits == 1 ? c : scratch(\.partial, splits * p.m * p.n)
        let kernelFlags = splits == 1 ? flags : 0
        let args: [Arg] = [.mem(a), .mem(b), .mem(target), .int(p.m), .int(p.n), .int(p.kPad), .int(kChunk),
                           .int(p.n), .mem(bias ?? target), .int(kernelFlags)]
        switch gemmVariant {
        case .registerBlocked:
            // Each work-item takes one B panel and a run of blocks of 8 or 4 rows. Block height and run
            // length are chosen per shape by measurement (GemmTuner); every choice computes each element
            // of C by the same chain of fma over k, so the choice changes speed, never bits.
            let nPanels = p.nPad / 16
            let candidates = Self.registerCandidates(mPad: p.mPad, nPanels: nPanels, splits: splits, units: units)
            let run = { (t: GemmTiling) in
                self.launch(t.rows == 8 ? "gemm_register" : "gemm_register_4",
                            global: [nPanels, Self.ceilDiv(p.mPad / t.rows, t.perItem), splits], local: [1, 1, 1],
                            args + [.int(t.perItem)])
            }
            let tiling = gemmTilingOverride
                ?? tuner.choose(m: p.m, n: p.n, k: p.kPad, candidates: candidates) { t in self.timed { run(t) } }
            run(tiling)
        case .localTiled:
            launch("gemm_tiled", global: [p.nPad / 4, p.mPad / 4, splits], local: [16, 16, 1], args)
        }
        if splits > 1 {
            launchRuns("sum_slices", count: p.m * p.n,
                       [.mem(target), .int(0), .int(splits), .int(p.m * p.n), .int(p.n), .mem(bias ?? target), .int(flags), .mem(c)])
        }
    }

    /// The register GEMM tilings this backend may choose among for C[m,n] = A[m,k] . B[k,n] (tests
    /// run each through gemmTilingOverride); empty for the tiled variant.
    public func gemmCandidates(m: Int, n: Int, k: Int) -> [GemmTiling] {
        guard gemmVariant == .registerBlocked else { return [] }
        let p = plan(m: m, n: n, k: k)
        return Self.registerCandidates(mPad: p.mPad, nPanels: p.nPad / 16, splits: split(p).splits,
                                       units: max(1, deviceInfo.computeUnits))
    }

    /// How k is split (the partial products are summed in order by sum_slices). A function of the shape
    /// and device only, never of the tiling, so that every tiling gives the same bits.
    func split(_ p: GemmPlan) -> (splits: Int, kChunk: Int) {
        let units = max(1, deviceInfo.computeUnits)
        var splits: Int, kChunk: Int
        switch gemmVariant {
        case .registerBlocked:
            // Split k beyond 2048 into chunks of 1024: an A chunk (32 KiB) and a B chunk (64 KiB) stay in cache.
            kChunk = p.kPad <= 2048 ? max(p.kPad, 1) : 1024
            splits = Self.ceilDiv(max(p.kPad, 1), kChunk)
            // Bound the partial sums to 16 Mi floats.
            while splits > 1 && splits * p.m * p.n > 1 << 24 { kChunk *= 2; splits = Self.ceilDiv(p.kPad, kChunk) }
        case .localTiled:
            let blocks = (p.nPad / 64) * (p.mPad / 64), want = 4 * units
            splits = blocks >= want ? 1 : min(Self.ceilDiv(want, blocks), max(1, p.kPad / 256))
            kChunk = Self.up(Self.ceilDiv(max(p.kPad, 1), splits), 16)
            splits = max(1, Self.ceilDiv(p.kPad, kChunk))
        }
        return (splits, kChunk)
    }

    /// Tilings to try: blocks of 8 and 4 rows, each with runs giving from about 2 to about 64
    /// work-items per compute unit (PoCL pays per work-item; more work-items balance better); the old
    /// default (8 rows, 16 per unit) first.
    static func registerCandidates(mPad: Int, nPanels: Int, splits: Int, units: Int) -> [GemmTiling] {
        var out: [GemmTiling] = []
        for rows in [8, 4] {
            let blocks = mPad / rows
            for perUnit in [16, 2, 4, 8, 32, 64] {
                let groups = min(blocks, max(1, ceilDiv(perUnit * units, nPanels * splits)))
                let t = GemmTiling(rows: rows, perItem: ceilDiv(blocks, groups))
                if !out.contains(t) { out.append(t) }
            }
        }
        return out
    }

    /// Seconds `body`'s queued work takes (the queue is drained before and after); .infinity on failure.
    func timed(_ body: () -> Void) -> Double {
        guard failure == nil, clFinish(queue) == CL_SUCCESS else { return .infinity }
        let t0 = DispatchTime.now().uptimeNanoseconds
        body()
        guard failure == nil, clFinish(queue) == CL_SUCCESS else { return .infinity }
        return Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
    }

    /// out[cols] = column sums of src[rows, cols], in fixed-size chunks added in order.
    func columnSums(_ src: cl_mem?, rows: Int, cols: Int, into out: cl_mem?) {
        let chunks = max(1, min(64, rows / 64))
        let per = Self.ceilDiv(max(rows, 1), chunks)
        let part = scratch(\.partial, chunks * cols)
        let (global0, local0, cPer) = cpuLike ? (1, 1, max(cols, 1)) : (Self.up(cols, 16), 16, 1)
        launch("column_sums_partial", global: [global0, chunks], local: [local0, 1],
               [.mem(src), .int(rows), .int(cols), .int(per), .int(cPer), .mem(part)])
        launchRuns("sum_slices", count: cols,
                   [.mem(part), .int(0), .int(chunks), .int(cols), .int(cols), .mem(part), .int(0), .mem(out)])
    }

    /// C[m,n] = op(A) . op(B) for host-independent use (the bench and tests): a, b, c are device buffers
    /// holding row-major matrices; ta/tb transpose them.
    public func matmul(a: DeviceBuffer, transposeA ta: Bool = false, b: DeviceBuffer, transposeB tb: Bool = false,
                       c: DeviceBuffer, m: Int, n: Int, k: Int) {
        flushPending()
        let p = plan(m: m, n: n, k: k)
        packA(p, src: mem(a), ld: ta ? m : k, trans: ta)
        packB(p, src: mem(b), ld: tb ? k : n, trans: tb)
        gemm(p, c: mem(c), bias: nil, relu: false)
    }

    // MARK: dense

    public func denseForward(x: DeviceBuffer, w: DeviceBuffer, b: DeviceBuffer, y: DeviceBuffer,
                             batch: Int, inputs: Int, outputs: Int, relu: Bool) {
        flushPending()
        let p = plan(m: batch, n: outputs, k: inputs)
        guard readsInPlace else {
            packA(p, src: mem(x), ld: inputs, trans: false)
            packB(p, src: mem(w), ld: outputs, trans: false)
            gemm(p, c: mem(y), bias: mem(b), relu: relu)
            return
        }
        // Long k is split as for the packed GEMM (the slices then summed in order, with bias and ReLU).
        let flags = 1 | (relu ? 2 : 0)
        let (splits, kChunk) = split(p)
        let target = splits == 1 ? mem(y) : scratch(\.partial, splits * batch * outputs)
        inPlaceGemm("dense_forward", m: batch, n: outputs, k: inputs, splits: splits,
                    [.mem(mem(x)), .mem(mem(w)), .mem(mem(b)), .mem(target), .int(batch), .int(outputs), .int(inputs),
                     .int(kChunk), .int(splits == 1 ? flags : 0)])
        if splits > 1 {
            launchRuns("sum_slices", count: batch * outputs,
                       [.mem(target), .int(0), .int(splits), .int(batch * outputs), .int(outputs), .mem(mem(b)),
                        .int(flags), .mem(mem(y))])
        }
    }

    public func denseBackward(x: DeviceBuffer, w: DeviceBuffer, dy: DeviceBuffer, dx: DeviceBuffer?,
                              dw: DeviceBuffer, db: DeviceBuffer, batch: Int, inputs: Int, outputs: Int) {
        flushPending()
        if readsInPlace {
            inPlaceGemm("dense_backward_weights", m: inputs, n: outputs, k: batch,
                        [.mem(mem(x)), .mem(mem(dy)), .mem(mem(dw)), .int(inputs), .int(outputs), .int(batch)])
            columnSums(mem(dy), rows: batch, cols: outputs, into: mem(db))
            if let dx {
                // dx^T[in, B] = w . dy^T: w read in place, dy^T (small) packed.
                let px = plan(m: inputs, n: batch, k: outputs)
                packB(px, src: mem(dy), ld: outputs, trans: true)
                inPlaceGemm("dense_backward_input", m: inputs, n: batch, k: outputs,
                            [.mem(mem(w)), .mem(bPack?.mem), .mem(mem(dx)), .int(inputs), .int(batch), .int(outputs)])
            }
            return
        }
        // dw[in, out] = x^T . dy
        let pw = plan(m: inputs, n: outputs, k: batch)
        packA(pw, src: mem(x), ld: inputs, trans: true)
        packB(pw, src: mem(dy), ld: outputs, trans: false)
        gemm(pw, c: mem(dw), bias: nil, relu: false)
        columnSums(mem(dy), rows: batch, cols: outputs, into: mem(db))
        if let dx {
            // dx[B, in] = dy . w^T
            let px = plan(m: batch, n: inputs, k: outputs)
            packA(px, src: mem(dy), ld: outputs, trans: false)
            packB(px, src: mem(w), ld: outputs, trans: true)
            gemm(px, c: mem(dx), bias: nil, relu: false)
        }
    }

    // MARK: convolution (CPU devices: patches read in place, gemm_inplace.cl; GPUs: packed panels, then GEMM)

    public func convForward(x: DeviceBuffer, w: DeviceBuffer, b: DeviceBuffer, y: DeviceBuffer,
                            shape s: ConvShape, relu: Bool) {
        flushPending()
        let p = plan(m: s.batch * s.outHeight * s.outWidth, n: s.outChannels, k: s.patchSize)
        packB(p, src: mem(w), ld: s.outChannels, trans: false)
        if readsInPlace {
            inPlaceGemm("conv_forward", m: p.m, n: p.n, k: p.k,
                         [.mem(mem(x)), .mem(bPack?.mem), .mem(mem(b)), .mem(mem(y)), .int(s.height), .int(s.width),
                          .int(s.inChannels), .int(s.kernel), .int(s.outHeight), .int(s.outWidth), .int(p.m), .int(p.n),
                          .int(1 | (relu ? 2 : 0))])
        } else {
            launch1D("pack_a_im2col", count: p.mPad,
                     [.mem(mem(x)), .int(s.height), .int(s.width), .int(s.inChannels), .int(s.kernel),
                      .int(s.outHeight), .int(s.outWidth), .int(p.m), .int(p.mPad), .int(p.kPad),
                      .mem(scratch(\.aPack, p.mPad * p.kPad))])
            gemm(p, c: mem(y), bias: mem(b), relu: relu)
        }
    }

    public func convBackward(x: DeviceBuffer, w: DeviceBuffer, dy: DeviceBuffer, dx: DeviceBuffer?,
                             dw: DeviceBuffer, db: DeviceBuffer, shape s: ConvShape) {
        flushPending()
        let pixels = s.batch * s.outHeight * s.outWidth
        if readsInPlace && s.outChannels % 16 == 0 {
            // dw[k*k*Cin, Cout] = patches^T . dy: outer products per slice of pixels, slices added in order.
            // The slicing depends on the shape and device only, so results are deterministic.
            // db comes from the same pass.
            let len = s.patchSize * s.outChannels
            let want = 4 * max(1, deviceInfo.computeUnits)
            let chunk = max(256, Self.ceilDiv(pixels, want))
            let slices = Self.ceilDiv(pixels, chunk)
            if slices == 0 {
                fill(dw, count: len)
                fill(db, count: s.outChannels)
            } else {
                let part = scratch(\.partial, slices * (len + s.outChannels))
                launch("conv_backward_weights", global: [slices], local: [1],
                       [.mem(mem(x)), .mem(mem(dy)), .mem(part), .int(s.height), .int(s.width), .int(s.inChannels),
                        .int(s.kernel), .int(s.outHeight), .int(s.outWidth), .int(pixels), .int(s.outChannels),
                        .int(chunk), .int(slices)])
                launchRuns("sum_slices", count: len,
                           [.mem(part), .int(0), .int(slices), .int(len), .int(len), .mem(part), .int(0), .mem(mem(dw))])
                launchRuns("sum_slices", count: s.outChannels,
                           [.mem(part), .int(slices * len), .int(slices), .int(s.outChannels), .int(s.outChannels),
                            .mem(part), .int(0), .mem(mem(db))])
            }
        } else {
            // dw[k*k*Cin, Cout] = patches^T . dy
            let pw = plan(m: s.patchSize, n: s.outChannels, k: pixels)
            let a = scratch(\.aPack, pw.mPad * pw.kPad)
            launch1D("pack_a_im2col_t", count: pw.kPad,
                     [.mem(mem(x)), .int(s.height), .int(s.width), .int(s.inChannels), .int(s.kernel),
                      .int(s.outHeight), .int(s.outWidth), .int(pixels), .int(pw.m), .int(pw.mPad), .int(pw.kPad), .mem(a)])
            packB(pw, src: mem(dy), ld: s.outChannels, trans: false)
            gemm(pw, c: mem(dw), bias: nil, relu: false)
            columnSums(mem(dy), rows: pixels, cols: s.outChannels, into: mem(db))
        }
        if let dx {
            // dx[B*H*W, Cin] = full correlation of dy with the weights
            let px = plan(m: s.batch * s.height * s.width, n: s.inChannels, k: s.kernel * s.kernel * s.outChannels)
            let bx = scratch(\.bPack, px.nPad * px.kPad)
            launch1D("pack_b_conv_dx", count: px.nPad,
                     [.mem(mem(w)), .int(s.inChannels), .int(s.outChannels), .int(s.kernel), .int(px.nPad),
                      .int(px.kPad), .mem(bx)])
            if readsInPlace {
                let zeros = zeroRun(s.outChannels)
                inPlaceGemm("conv_backward_input", m: px.m, n: px.n, k: px.k,
                             [.mem(mem(dy)), .mem(bx), .mem(zeros), .mem(mem(dx)), .int(s.height), .int(s.width),
                              .int(s.outChannels), .int(s.kernel), .int(s.outHeight), .int(s.outWidth), .int(px.m),
                              .int(px.n)])
            } else {
                let ax = scratch(\.aPack, px.mPad * px.kPad)
                launch1D("pack_a_conv_dx", count: px.mPad,
                         [.mem(mem(dy)), .int(s.height), .int(s.width), .int(s.outChannels), .int(s.kernel),
                          .int(s.outHeight), .int(s.outWidth), .int(px.m), .int(px.mPad), .int(px.kPad), .mem(ax)])
                gemm(px, c: mem(dx), bias: nil, relu: false)
            }
        }
    }

    /// Whether convolutions and dense layers read their operands in place (gemm_inplace.cl):
    /// CPU devices, with the register GEMM.
    public var readsInPlace: Bool { options.readInPlace && gemmVariant == .registerBlocked }

    /// Launches one of the 6x16-block kernels of gemm_inplace.cl over C[m, n] (in `splits` slices of k,
    /// the third global dimension; 1 for the kernels that do not split) with the tiling measured for
    /// (name, m, n, k); the tiling's panels and perItem follow `arguments`.
    func inPlaceGemm(_ name: String, m: Int, n: Int, k: Int, splits: Int = 1, _ arguments: [Arg]) {
        guard m > 0, n > 0 else { return }
        let blocks = Self.ceilDiv(m, 6), nPanels = Self.ceilDiv(n, 16)
        let run = { (t: GemmTiling) in
            let groups = Self.ceilDiv(nPanels, t.panels), items = Self.ceilDiv(blocks, t.perItem)
            self.launch(name, global: [groups, items, splits], local: [1, 1, 1],
                        arguments + [.int(t.panels), .int(t.perItem)])
        }
        let candidates = inPlaceCandidates(m: m, n: n)
        let tiling = inPlaceTilingOverride
            ?? tuner.choose(op: name, m: m, n: n, k: k, candidates: candidates) { t in self.timed { run(t) } }
        run(tiling)
    }

    /// Tilings of the in-place kernels: one, two or all 16-column panels per work-item, and runs of
    /// row blocks giving about 16 to 1024 work-items per compute unit.
    public func inPlaceCandidates(m: Int, n: Int) -> [GemmTiling] {
        let blocks = Self.ceilDiv(max(m, 1), 6), nPanels = Self.ceilDiv(max(n, 1), 16)
        let units = max(1, deviceInfo.computeUnits)
        var out: [GemmTiling] = []
        for panels in Set([1, min(2, nPanels), nPanels]).sorted() {
            let groups = Self.ceilDiv(nPanels, panels)
            for perUnit in [64, 16, 256, 1024] {
                let items = min(blocks, max(1, Self.ceilDiv(perUnit * units, groups)))
                let t = GemmTiling(rows: 6, perItem: Self.ceilDiv(blocks, items), panels: panels)
                if !out.contains(t) { out.append(t) }
            }
        }
        return out
    }

    /// A buffer of at least `count` zeros.
    func zeroRun(_ count: Int) -> cl_mem? {
        if let z = zeros, z.count >= count { return z.mem }
        let z = makeBuffer(count: max(count, 256)) as! CLBuffer
        zeros = z
        fill(z, count: z.count)
        return z.mem
    }

    // MARK: pooling, activation, dropout, loss, update

    public func maxPoolForward(x: DeviceBuffer, y: DeviceBuffer, shape s: PoolShape) {
        flushPending()
        let total = s.batch * s.outHeight * s.outWidth
        let (global, local, per, cPer) = channelRuns(channels: s.channels, total: total)
        launch("maxpool_forward", global: global, local: local,
               [.mem(mem(x)), .mem(mem(y)), .int(s.height), .int(s.width), .int(s.channels),
                .int(s.outHeight), .int(s.outWidth), .int(total), .int(per), .int(cPer)])
    }

    /// Deferred until the next call (see PendingPool): a following reluBackward(y: x, dy: dx) joins it.
    public func maxPoolBackward(x: DeviceBuffer, dy: DeviceBuffer, dx: DeviceBuffer, shape s: PoolShape) {
        flushPending()
        if s.outputCount == 0 {
            fill(dx, count: s.inputCount)
            return
        }
        pendingPool = PendingPool(x: x, dy: dy, dx: dx, shape: s)
    }

    /// Zeroes the first `count` floats of a buffer.
    func fill(_ b: DeviceBuffer, count: Int) {
        guard failure == nil, count > 0 else { return }
        var zero: Float = 0
        let s = clEnqueueFillBuffer(queue, mem(b), &zero, 4, 0, count * 4, 0, nil, nil)
        if s != CL_SUCCESS { record(OpenCLError(call: "clEnqueueFillBuffer", code: s)) }
    }

    public func reluBackward(y: DeviceBuffer, dy: DeviceBuffer, count: Int) {
        // The pool backward just deferred wrote every element of dy (its dx) from y (its x): the mask
        // is applied in that pass (maxpool.cl, reluMask), which gives the same values.
        if let p = pendingPool, p.x === y, p.dx === dy, count == p.shape.inputCount {
            pendingPool = nil
            joinedPoolRelu += 1
            launchPoolBackward(p, reluMask: true)
            return
        }
        flushPending()
        launchRuns("relu_backward", count: count, [.mem(mem(y)), .mem(mem(dy)), .int(count)])
    }

    public func dropoutForward(x: DeviceBuffer, y: DeviceBuffer, count: Int, rate: Float, seed: UInt64) {
        flushPending()
        launchRuns("dropout_apply", count: count,
                   [.mem(mem(x)), .mem(mem(y)), .int(count), .float(rate), .float(1 / (1 - rate)), .ulong(seed)])
    }

    public func dropoutBackward(dy: DeviceBuffer, dx: DeviceBuffer, count: Int, rate: Float, seed: UInt64) {
        flushPending()
        launchRuns("dropout_apply", count: count,
                   [.mem(mem(dy)), .mem(mem(dx)), .int(count), .float(rate), .float(1 / (1 - rate)), .ulong(seed)])
    }

    public func mseLoss(prediction: DeviceBuffer, target: DeviceBuffer, grad: DeviceBuffer,
                        batch: Int, outputs: Int) -> Float {
        flushPending()
        let n = batch * outputs
        let out = scratch(\.lossBuffer, 1)
        launch("mse_loss", global: [64], local: [64],
               [.mem(mem(prediction)), .mem(mem(target)), .mem(mem(grad)), .int(n), .float(Float(2) / Float(n)),
                .mem(out)])
        guard failure == nil else { return .nan }
        var loss: Float = .nan
        let s = clEnqueueReadBuffer(queue, out, cl_bool(CL_TRUE), 0, 4, &loss, 0, nil, nil)
        if s != CL_SUCCESS { record(OpenCLError(call: "clEnqueueReadBuffer", code: s, kernel: "mse_loss")); return .nan }
        return loss
    }

    public func nesterovUpdate(parameter: DeviceBuffer, gradient: DeviceBuffer, velocity: DeviceBuffer,
                               count: Int, learningRate: Float, momentum: Float) {
        flushPending()
        launchRuns("nesterov_update", count: count,
                 [.mem(mem(parameter)), .mem(mem(gradient)), .mem(mem(velocity)), .int(count),
                  .float(learningRate), .float(momentum)])
    }

    // MARK: programs

    static func kernelSources(directory: String?) throws -> [String: String] {
        guard let dir = directory ?? ProcessInfo.processInfo.environment["FKP_KERNELS_DIR"].flatMap({ $0.isEmpty ? nil : $0 }) else {
            return OpenCLKernels.embedded
        }
        let files = ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).filter { $0.hasSuffix(".cl") }
        var out: [String: String] = [:]
        for f in files {
            guard let data = FileManager.default.contents(atPath: dir + "/" + f) else { continue }
            out[f] = String(decoding: data, as: UTF8.self)
        }
        if out.isEmpty {
            throw OpenCLError(call: "loading kernels", code: -30, detail: "no readable .cl files in \(dir) (FKP_KERNELS_DIR)")
        }
        return out
    }

    static func buildProgram(file: String, source: String, options: String, context: cl_context,
                             device: cl_device_id, info: OpenCLDeviceInfo, cache: ProgramCache)
        throws -> (cl_program, OpenCLProgramBuild)
    {
        let t0 = DispatchTime.now().uptimeNanoseconds
        func seconds() -> Double { Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9 }
        let key = ProgramCache.key([source, options, info.platform, info.name, info.version, info.driver])
        let path = cache.path(file: file, key: key)
        var corrupt = false
        if let path, let binary = cache.load(path, corrupt: &corrupt) {
            if let program = fromBinary(binary, options: options, context: context, device: device) {
                return (program, OpenCLProgramBuild(file: file, origin: .cache, seconds: seconds()))
            }
            corrupt = true
        }
        let program = try fromSource(file: file, source: source, options: options, context: context, device: device)
        if let path, let binary = binary(of: program) { cache.store(path, binary) }
        return (program, OpenCLProgramBuild(file: file, origin: corrupt ? .rebuilt : .source, seconds: seconds()))
    }

    static func fromSource(file: String, source: String, options: String, context: cl_context,
                           device: cl_device_id) throws -> cl_program {
        var err: cl_int = 0
        let program: cl_program? = source.withCString { s in
            var ptr: UnsafePointer<CChar>? = s
            var length = strlen(s)
            return clCreateProgramWithSource(context, 1, &ptr, &length, &err)
        }
        guard let program, err == CL_SUCCESS else {
            throw OpenCLError(call: "clCreateProgramWithSource", code: err, kernel: file)
        }
        var dev: cl_device_id? = device
        let status = clBuildProgram(program, 1, &dev, options, nil, nil)
        if status != CL_SUCCESS {
            let log = buildLog(program, device)
            clReleaseProgram(program)
            throw OpenCLError(call: "clBuildProgram", code: status, kernel: file, buildLog: log)
        }
        return program
    }

    static func fromBinary(_ binary: [UInt8], options: String, context: cl_context, device: cl_device_id) -> cl_program? {
        var err: cl_int = 0, binaryStatus: cl_int = 0
        var dev: cl_device_id? = device
        var length = binary.count
        let program: cl_program? = binary.withUnsafeBufferPointer { bp in
            var ptr: UnsafePointer<UInt8>? = bp.baseAddress
            return clCreateProgramWithBinary(context, 1, &dev, &length, &ptr, &binaryStatus, &err)
        }
        guard let program, err == CL_SUCCESS, binaryStatus == CL_SUCCESS else {
            if let program { clReleaseProgram(program) }
            return nil
        }
        if clBuildProgram(program, 1, &dev, options, nil, nil) != CL_SUCCESS {
            clReleaseProgram(program)
            return nil
        }
        return program
    }

    static func binary(of program: cl_program) -> [UInt8]? {
        var size = 0
        guard clGetProgramInfo(program, cl_program_info(CL_PROGRAM_BINARY_SIZES), MemoryLayout<Int>.size, &size, nil)
            == CL_SUCCESS, size > 0 else { return nil }
        var bytes = [UInt8](repeating: 0, count: size)
        let s = bytes.withUnsafeMutableBufferPointer { bp -> cl_int in
            var ptr: UnsafeMutablePointer<UInt8>? = bp.baseAddress
            return clGetProgramInfo(program, cl_program_info(CL_PROGRAM_BINARIES),
                                    MemoryLayout<UnsafeMutablePointer<UInt8>?>.size, &ptr, nil)
        }
        return s == CL_SUCCESS ? bytes : nil
    }

    static func buildLog(_ program: cl_program, _ device: cl_device_id) -> String {
        var size = 0
        let info = cl_program_build_info(CL_PROGRAM_BUILD_LOG)
        guard clGetProgramBuildInfo(program, device, info, 0, nil, &size) == CL_SUCCESS, size > 0 else { return "" }
        var bytes = [UInt8](repeating: 0, count: size)
        guard clGetProgramBuildInfo(program, device, info, size, &bytes, nil) == CL_SUCCESS else { return "" }
        return OpenCLRuntime.cString(bytes)
    }

    static func kernels(of program: cl_program, file: String) throws -> [(String, cl_kernel)] {
        var n: cl_uint = 0
        try clCheck(clCreateKernelsInProgram(program, 0, nil, &n), "clCreateKernelsInProgram", kernel: file)
        var ks = [cl_kernel?](repeating: nil, count: Int(n))
        try clCheck(clCreateKernelsInProgram(program, n, &ks, nil), "clCreateKernelsInProgram", kernel: file)
        var out: [(String, cl_kernel)] = []
        for case let k? in ks {
            var size = 0
            let param = cl_kernel_info(CL_KERNEL_FUNCTION_NAME)
            try clCheck(clGetKernelInfo(k, param, 0, nil, &size), "clGetKernelInfo", kernel: file)
            var bytes = [UInt8](repeating: 0, count: max(size, 1))
            try clCheck(clGetKernelInfo(k, param, size, &bytes, nil), "clGetKernelInfo", kernel: file)
            out.append((OpenCLRuntime.cString(bytes), k))
        }
        return out
    }
}
