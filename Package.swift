// swift-tools-version:5.9
import PackageDescription
import Foundation

// The hot loops use SIMD16<Float>; without a target CPU they compile to calls of C's fmaf and run
// ~100x slower. The release build is tuned for the CPU it is built on (like -march=native);
// set FKP_TARGET_CPU (e.g. haswell, skylake-avx512, znver4) to build for another machine.
let targetCPU = ProcessInfo.processInfo.environment["FKP_TARGET_CPU"] ?? "native"
let fast: [SwiftSetting] = [
    .unsafeFlags(["-target-cpu", targetCPU, "-enforce-exclusivity=unchecked"]),
]

let package = Package(
    name: "fkp-batch",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "fkp-batch", targets: ["fkp-batch"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        // System libraries: libpng through its simplified API (errors come back as return codes,
        // no longjmp crosses Swift).
        .systemLibrary(name: "CPNG", pkgConfig: "libpng16", providers: [.apt(["libpng-dev"])]),
        // OpenCL: the API's headers (opencl-headers) and entry points that open the system's ICD loader
        // (ocl-icd) at run time, so the binary also starts where there is none. PoCL is the CPU device in CI.
        .target(name: "COpenCL", cSettings: [.unsafeFlags(["-fvisibility=hidden"])], linkerSettings: [.linkedLibrary("dl")]),

        // JPEG through libjpeg-turbo's TurboJPEG API (errors are return codes, no longjmp in Swift).
        .systemLibrary(name: "CJPEG", pkgConfig: "libturbojpeg", providers: [.apt(["libturbojpeg0-dev"])]),

        // Pipeline: ingest -> tensors -> engine (backends) -> nets -> training -> export -> CLI.
        .target(name: "FKPTensor", swiftSettings: fast),
        .target(name: "FKPAlign", swiftSettings: fast),
        .target(name: "FKPEngine", dependencies: ["FKPTensor", "COpenCL"], swiftSettings: fast),
        .target(name: "FKPIngest", dependencies: ["FKPTensor", "CPNG", "CJPEG"], swiftSettings: fast),
        .target(name: "FKPDetect", dependencies: ["FKPIngest"], swiftSettings: fast),
        .target(name: "FKPNets", dependencies: ["FKPTensor", "FKPEngine"], swiftSettings: fast),
        .target(name: "FKPTrain", dependencies: ["FKPNets", "FKPIngest", "FKPAlign", "FKPTensor", "FKPEngine", "FKPDetect"], swiftSettings: fast),
        .target(name: "FKPExport", dependencies: ["FKPIngest", "FKPTensor", "CPNG"], swiftSettings: fast),
        .executableTarget(
            name: "fkp-batch",
            dependencies: [
                "FKPTrain", "FKPExport", "FKPDetect", "COpenCL",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: fast),

        .testTarget(name: "FKPEngineTests", dependencies: ["FKPEngine"], swiftSettings: fast),
        .testTarget(name: "FKPOpenCLTests", dependencies: ["FKPEngine", "FKPNets"], swiftSettings: fast),
        .testTarget(name: "FKPIngestTests", dependencies: ["FKPIngest"], resources: [.copy("Fixtures")], swiftSettings: fast),
        .testTarget(name: "FKPDetectTests", dependencies: ["FKPDetect", "FKPIngest"], exclude: ["Fixtures"], swiftSettings: fast),
        .testTarget(name: "FKPNetsTests", dependencies: ["FKPNets"], swiftSettings: fast),
        .testTarget(name: "FKPTrainTests", dependencies: ["FKPTrain", "FKPExport", "FKPAlign", "FKPIngest", "FKPTensor"], swiftSettings: fast),
        .testTarget(name: "CLITests", dependencies: ["fkp-batch"], swiftSettings: fast),
    ]
)
