// swift-tools-version:5.9
import PackageDescription
import Foundation

// The build is portable: the CPU engine's hot kernels live in the C target CKernels, compiled once per
// instruction set (AVX-512, AVX2 + FMA, baseline) and chosen at run time by the CPU's features, so the
// Swift code needs no target CPU. FKP_TARGET_CPU (e.g. native, haswell, znver4) still tunes the Swift
// code for one CPU family; the binary then needs that CPU.
let targetCPU = ProcessInfo.processInfo.environment["FKP_TARGET_CPU"].flatMap { $0.isEmpty ? nil : $0 }
let fast: [SwiftSetting] = [
    .unsafeFlags((targetCPU.map { ["-target-cpu", $0] } ?? []) + ["-enforce-exclusivity=unchecked"]),
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

        // The CPU engine's kernels, one copy per instruction set (see kernels.c); -ffp-contract=fast
        // turns their multiply-adds into FMA where the set has it.
        .target(name: "CKernels", cSettings: [.unsafeFlags(["-O3", "-ffp-contract=fast"])]),
        // The face detector's hot loops, compiled per instruction set the same way and chosen with the
        // engine's set; no contraction, so every set sums as OpenCV does and finds the same faces.
        .target(name: "CDetect", dependencies: ["CKernels"], cSettings: [.unsafeFlags(["-O3", "-ffp-contract=off", "-fno-math-errno"])]),

        // Modules, each using only those above it in this list (docs/ARCHITECTURE.md draws the graph):
        // tensors (+ the stderr logger) -> alignment geometry (similarities, mean shape, warping) -> engine
        // (backends, device choice) -> images -> ingestion (Kaggle CSV, landmark files) -> nets (layers,
        // presets, safetensors) -> inference (model files, photo models in passes, keypoint scaling, crop <->
        // photo) -> training (one loop for nets and specialists; samples cut from photos) -> detection ->
        // export (drawing, plots, records) -> annotation (the photo pipeline, frames evaluation) -> CLI.
        .target(name: "FKPTensor", swiftSettings: fast),
        .target(name: "FKPAlign", swiftSettings: fast),
        .target(name: "FKPEngine", dependencies: ["FKPTensor", "COpenCL", "CKernels"], swiftSettings: fast),
        .target(name: "FKPImage", dependencies: ["FKPTensor", "CPNG", "CJPEG"], swiftSettings: fast),
        .target(name: "FKPIngest", dependencies: ["FKPTensor"], swiftSettings: fast),
        .target(name: "FKPNets", dependencies: ["FKPTensor", "FKPEngine"], swiftSettings: fast),
        .target(name: "FKPInference", dependencies: ["FKPTensor", "FKPEngine", "FKPNets", "FKPAlign"], swiftSettings: fast),
        .target(name: "FKPTrain", dependencies: ["FKPTensor", "FKPEngine", "FKPImage", "FKPIngest", "FKPNets", "FKPInference", "FKPAlign"],
                swiftSettings: fast),
        .target(name: "FKPDetect", dependencies: ["FKPTensor", "FKPImage", "CDetect"], swiftSettings: fast),
        .target(name: "FKPExport", dependencies: ["FKPTensor", "FKPImage"], swiftSettings: fast),
        .target(name: "FKPAnnotate",
                dependencies: ["FKPTensor", "FKPEngine", "FKPImage", "FKPIngest", "FKPInference", "FKPDetect", "FKPExport", "FKPAlign"],
                swiftSettings: fast),
        .executableTarget(
            name: "fkp-batch",
            dependencies: [
                "FKPTensor", "FKPEngine", "FKPImage", "FKPIngest", "FKPNets", "FKPInference", "FKPTrain",
                "FKPDetect", "FKPExport", "FKPAnnotate", "FKPAlign",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: fast),

        // Shared by the tests: the repository root, seeded data, a NaN-aware error metric and the naive
        // reference backend every backend is checked against.
        .target(name: "FKPTestSupport", dependencies: ["FKPTensor", "FKPEngine"], path: "Tests/FKPTestSupport",
                swiftSettings: fast),
        .testTarget(name: "FKPEngineTests", dependencies: ["FKPEngine", "FKPTensor", "FKPTestSupport"], swiftSettings: fast),
        .testTarget(name: "FKPOpenCLTests", dependencies: ["FKPEngine", "FKPNets", "FKPTensor", "FKPTestSupport"],
                    swiftSettings: fast),
        .testTarget(name: "FKPImageTests", dependencies: ["FKPImage", "FKPTensor", "FKPTestSupport"], resources: [.copy("Fixtures")],
                    swiftSettings: fast),
        .testTarget(name: "FKPIngestTests", dependencies: ["FKPIngest", "FKPTensor", "FKPTestSupport"], swiftSettings: fast),
        .testTarget(name: "FKPDetectTests", dependencies: ["FKPDetect", "FKPImage", "FKPTestSupport"],
                    exclude: ["Fixtures"], swiftSettings: fast),
        .testTarget(name: "FKPNetsTests", dependencies: ["FKPNets", "FKPEngine", "FKPTensor", "FKPTestSupport"], swiftSettings: fast),
        .testTarget(name: "FKPTrainTests",
                    dependencies: ["FKPTrain", "FKPInference", "FKPIngest", "FKPNets", "FKPEngine", "FKPTensor",
                                   "FKPTestSupport", "FKPAlign", "FKPImage", "FKPExport"],
                    swiftSettings: fast),
        .testTarget(name: "FKPAnnotateTests",
                    dependencies: ["FKPAnnotate", "FKPInference", "FKPEngine", "FKPExport", "FKPNets", "CDetect",
                                   "FKPTensor", "FKPTestSupport", "FKPDetect", "FKPImage", "FKPIngest"],
                    swiftSettings: fast),
        // Depends on the executable so that it is built before the tests run it.
        .testTarget(name: "CLITests", dependencies: ["fkp-batch", "FKPTestSupport", "FKPImage"], swiftSettings: fast),
    ]
)
