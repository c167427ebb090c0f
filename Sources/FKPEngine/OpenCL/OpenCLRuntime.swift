import COpenCL

/// One OpenCL device as `fkp-batch devices` lists it.
public struct OpenCLDeviceInfo: Sendable, Equatable {
    /// Position in the flattened list of every device of every platform (the N of `--device opencl:N`).
    public var index: Int
    public var platform: String
    public var name: String
    /// "GPU", "CPU", "ACCELERATOR" (or "OTHER").
    public var type: String
    public var computeUnits: Int
    /// Bytes of global memory.
    public var globalMemory: Int
    /// CL_DEVICE_VERSION, e.g. "OpenCL 3.0 PoCL ...".
    public var version: String
    /// CL_DRIVER_VERSION.
    public var driver: String
    /// Whether fkp-batch can run on it (available, has a compiler, OpenCL >= 1.2, enough memory).
    public var usable: Bool
    /// Why it is not usable, or a remark about it.
    public var note: String
    /// Largest single allocation and work-group, in bytes and work-items.
    public var maxAllocation: Int
    public var maxWorkGroupSize: Int
}

/// Enumerates platforms and devices; never crashes when there is no ICD or platform.
public enum OpenCLRuntime {
    public static func devices() -> [OpenCLDeviceInfo] {
        (try? enumerate().map(\.info)) ?? []
    }

    struct Found {
        var info: OpenCLDeviceInfo
        var platform: cl_platform_id
        var device: cl_device_id
    }

    /// Every device of every platform. Throws CL_PLATFORM_NOT_FOUND_KHR (or the loader's error) when
    /// there is no platform at all.
    static func enumerate() throws -> [Found] {
        var count: cl_uint = 0
        let status = clGetPlatformIDs(0, nil, &count)
        if status == -1001 || (status == CL_SUCCESS && count == 0) {
            throw OpenCLError(call: "clGetPlatformIDs", code: -1001,
                              detail: "no OpenCL platform (the ICD loader found no vendor driver)")
        }
        try clCheck(status, "clGetPlatformIDs")
        var platforms = [cl_platform_id?](repeating: nil, count: Int(count))
        try clCheck(clGetPlatformIDs(count, &platforms, nil), "clGetPlatformIDs")
        var found: [Found] = []
        for case let platform? in platforms {
            let platformName = platformString(platform, cl_platform_info(CL_PLATFORM_NAME))
            var n: cl_uint = 0
            let s = clGetDeviceIDs(platform, cl_device_type(0xFFFF_FFFF), 0, nil, &n)
            if s == CL_DEVICE_NOT_FOUND || n == 0 { continue }
            try clCheck(s, "clGetDeviceIDs")
            var ids = [cl_device_id?](repeating: nil, count: Int(n))
            try clCheck(clGetDeviceIDs(platform, cl_device_type(0xFFFF_FFFF), n, &ids, nil), "clGetDeviceIDs")
            for case let device? in ids {
                found.append(Found(info: describe(device, platform: platformName, index: found.count),
                                   platform: platform, device: device))
            }
        }
        return found
    }

    static func describe(_ d: cl_device_id, platform: String, index: Int) -> OpenCLDeviceInfo {
        let type: cl_device_type = scalar(d, CL_DEVICE_TYPE, 0)
        let typeName = type & 4 != 0 ? "GPU" : type & 2 != 0 ? "CPU" : type & 8 != 0 ? "ACCELERATOR" : "OTHER"
        let version = deviceString(d, cl_device_info(CL_DEVICE_VERSION))
        let available: cl_bool = scalar(d, CL_DEVICE_AVAILABLE, 0)
        let compiler: cl_bool = scalar(d, CL_DEVICE_COMPILER_AVAILABLE, 0)
        let memory: cl_ulong = scalar(d, CL_DEVICE_GLOBAL_MEM_SIZE, 0)
        let maxAlloc: cl_ulong = scalar(d, CL_DEVICE_MAX_MEM_ALLOC_SIZE, 0)
        let units: cl_uint = scalar(d, CL_DEVICE_MAX_COMPUTE_UNITS, 0)
        let group: Int = scalar(d, CL_DEVICE_MAX_WORK_GROUP_SIZE, 0)
        var usable = true
        var notes: [String] = []
        if available == 0 { usable = false; notes.append("not available") }
        if compiler == 0 { usable = false; notes.append("no OpenCL C compiler") }
        if let v = parseVersion(version), v < (1, 2) {
            usable = false; notes.append("needs OpenCL 1.2")
        }
        if memory < 256 << 20 { usable = false; notes.append("under 256 MiB of memory") }
        if usable {
            notes.append(typeName == "GPU" ? "local-memory tiled GEMM" : "register-blocked GEMM")
        }
        return OpenCLDeviceInfo(
            index: index, platform: platform, name: deviceString(d, cl_device_info(CL_DEVICE_NAME)),
            type: typeName, computeUnits: Int(units), globalMemory: Int(memory), version: version,
            driver: deviceString(d, cl_device_info(CL_DRIVER_VERSION)), usable: usable,
            note: notes.joined(separator: "; "), maxAllocation: Int(maxAlloc), maxWorkGroupSize: group)
    }

    static func parseVersion(_ s: String) -> (Int, Int)? {
        // "OpenCL <major>.<minor> <vendor info>"
        let parts = s.split(separator: " ")
        guard parts.count >= 2 else { return nil }
        let mm = parts[1].split(separator: ".")
        guard mm.count >= 2, let a = Int(mm[0]), let b = Int(mm[1]) else { return nil }
        return (a, b)
    }

    static func scalar<T>(_ d: cl_device_id, _ param: Int32, _ fallback: T) -> T {
        var v = fallback
        let s = withUnsafeMutableBytes(of: &v) { raw in
            clGetDeviceInfo(d, cl_device_info(param), raw.count, raw.baseAddress, nil)
        }
        return s == CL_SUCCESS ? v : fallback
    }

    static func deviceString(_ d: cl_device_id, _ param: cl_device_info) -> String {
        var size = 0
        guard clGetDeviceInfo(d, param, 0, nil, &size) == CL_SUCCESS, size > 0 else { return "" }
        var bytes = [UInt8](repeating: 0, count: size)
        guard clGetDeviceInfo(d, param, size, &bytes, nil) == CL_SUCCESS else { return "" }
        return cString(bytes)
    }

    static func platformString(_ p: cl_platform_id, _ param: cl_platform_info) -> String {
        var size = 0
        guard clGetPlatformInfo(p, param, 0, nil, &size) == CL_SUCCESS, size > 0 else { return "" }
        var bytes = [UInt8](repeating: 0, count: size)
        guard clGetPlatformInfo(p, param, size, &bytes, nil) == CL_SUCCESS else { return "" }
        return cString(bytes)
    }

    static func cString(_ bytes: [UInt8]) -> String {
        let end = bytes.firstIndex(of: 0) ?? bytes.count
        return String(decoding: bytes[..<end], as: UTF8.self).trimmingSpaces()
    }
}

private extension String {
    func trimmingSpaces() -> String {
        let c: Character = " "
        var s = Substring(self)
        while s.first == c { s.removeFirst() }
        while s.last == c { s.removeLast() }
        return String(s)
    }
}
