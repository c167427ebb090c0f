import ArgumentParser
import FKPEngine
import FKPExport
import FKPInference
import FKPNets
import FKPTensor
import FKPTrain
import Foundation

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure training and inference speed of net1 and net2.",
        discussion: """
        Trains on --images random 96x96 images (1712 = the tutorial's training set size, batch 128) and reports seconds per epoch, inference images per second at batch 128 and at batch 1 (--batch1-images, a net built for prediction only, as annotate uses) and the GFLOP/s each reaches (a training epoch counts 3x the forward FLOPs). Median of --repeat runs after one warm-up. Results go to stdout (a table, or JSON lines with --format json, as bench/compare.sh reads them next to PyTorch's). --gemm measures the GEMMs of net2's layers instead, on the CPU engine and on every usable OpenCL device with each GEMM kernel; --ops measures net2's convolution and dense layers, forward and backward, as the nets call them (on OpenCL CPU devices both with the operands read in place, the default, and packed).
        """)

    @Option(help: "Models to measure, comma-separated.") var models: String = "net1,net2"
    @Option(help: "Training images per epoch.") var images: Int = 1712
    @Option(help: "Timed repetitions (the median is reported).") var `repeat`: Int = 3
    @Option(name: .customLong("batch1-images"), help: "Images predicted one at a time for the batch-1 inference figure (0: skip).")
    var batch1Images: Int = 256
    @Option(help: "Output.") var format: ReportFormat = .table
    @Flag(name: .customLong("all-devices"), help: "Measure the CPU engine and every usable OpenCL device side by side in one run.")
    var allDevices = false
    @Flag(help: "Also print the time per layer and pass of one training epoch (stderr).") var profile = false
    @Flag(help: "Measure GEMM GFLOP/s on net2's shapes at batch 128 (CPU engine and each OpenCL GEMM kernel).") var gemm = false
    @Flag(help: "Measure net2's convolution and dense layers at batch 128, forward and backward, on the CPU engine and each usable OpenCL device (CPU devices: operands read in place and packed).")
    var ops = false
    @OptionGroup var engine: EngineOptions

    func validate() throws {
        guard images >= 1, `repeat` >= 1, batch1Images >= 0 else { throw ValidationError("--images and --repeat must be at least 1") }
        for m in models.split(separator: ",") where Preset.named(String(m)) == nil {
            throw ValidationError("unknown model '\(m)' in --models")
        }
    }

    func run() throws {
        if gemm { return try gemmRun() }
        if ops { return try opsRun() }
        let backends = allDevices ? DeviceChoice.allBackends(threads: engine.threads) : [try engine.makeBackend()]
        var rng = Xoshiro(seed: 7)
        let x = Tensor(shape: [images, Keypoints.imageSize])
        for i in 0..<x.count { x[i] = rng.nextFloat() }
        let y = Tensor(shape: [images, Keypoints.count])
        for i in 0..<y.count { y[i] = rng.nextFloat() * 2 - 1 }
        let data = TrainingData(images: x, targets: y)
        let noValidation = TrainingData(images: Tensor(shape: [0, Keypoints.imageSize]), targets: Tensor(shape: [0, Keypoints.count]))
        var table = [["model", "backend", "s/epoch", "train GFLOP/s", "infer img/s", "infer GFLOP/s", "batch-1 img/s"]]
        for backend in backends {
            let threads = (backend as? CPUBackend)?.pool.count ?? 0
            for model in models.split(separator: ",").map(String.init) {
                let net = Net(Preset.named(model)!.architecture, backend: backend, maxBatch: 128)
                net.initialise(seed: 1)
                var config = TrainConfig()
                config.learningRate = Schedule(1e-4)  // keep the weights sane over repeated epochs on random data
                let trainer = Trainer(net: net, train: data, valid: noValidation, config: config)
                _ = try? trainer.runEpoch()  // warm-up
                let epoch = Statistics.median((0..<`repeat`).map { _ in
                    seconds { _ = try? trainer.runEpoch(); backend.synchronize() }
                })
                // inference with a copy built for prediction only, as predict and annotate build theirs
                let predictor = net.resized(maxBatch: net.maxBatch, trainable: false)
                _ = predictKeypoints(net: predictor, images: x)  // warm-up
                let infer = Statistics.median((0..<`repeat`).map { _ in seconds { _ = predictKeypoints(net: predictor, images: x) } })
                let ips1 = batch1Images > 0 ? batch1Speed(net, x) : nil
                if profile { printProfile(model, net, predictor, trainer, images: x) }
                let flopPerImage = 2.0 * Double(net.forwardMACs)
                let trainGF = 3 * flopPerImage * Double(images) / epoch / 1e9
                let ips = Double(images) / infer
                let inferGF = flopPerImage * ips / 1e9
                if format == .json {
                    print(KeypointWriter.jsonLine(["impl": "fkp-batch", "model": model, "device": deviceName(backend),
                                                   "backend": backend.name, "threads": threads, "train_images": images,
                                                   "epoch_seconds": epoch, "train_gflops": trainGF,
                                                   "infer_images_per_second": ips, "infer_gflops": inferGF,
                                                   "infer_batch1_images_per_second": ips1.map { $0 as Any } ?? NSNull()]))
                } else {
                    table.append([model, backend.name, String(format: "%.3f", epoch), String(format: "%.1f", trainGF),
                                  String(format: "%.1f", ips), String(format: "%.1f", inferGF),
                                  ips1.map { String(format: "%.1f", $0) } ?? "-"])
                }
            }
        }
        if format == .table { printTable(table) }
    }

    /// Images per second predicting the first --batch1-images images one at a time, with a copy of the
    /// net built for one image and prediction only.
    func batch1Speed(_ net: Net, _ x: Tensor) -> Double {
        let single = net.resized(maxBatch: 1, trainable: false)
        defer {
            if profile {
                single.profile = [:]
                _ = predictKeypoints(net: single, images: x)
                report("batch-1 inference of the \(x.shape[0]) images by layer", single.profile!)
            }
        }
        let n = min(batch1Images, x.shape[0])
        let first = Tensor(shape: [n, x.shape[1]])
        first.data.update(from: x.data, count: first.count)
        _ = predictKeypoints(net: single, images: first)  // warm-up
        let t = Statistics.median((0..<`repeat`).map { _ in seconds { _ = predictKeypoints(net: single, images: first) } })
        return Double(n) / t
    }

    func printProfile(_ model: String, _ net: Net, _ predictor: Net, _ trainer: Trainer, images: Tensor) {
        net.profile = [:]
        _ = try? trainer.runEpoch()
        report("\(model): one epoch by layer and pass", net.profile!)
        net.profile = nil
        predictor.profile = [:]
        _ = predictKeypoints(net: predictor, images: images)
        report("\(model): inference of the \(images.shape[0]) images at batch \(predictor.maxBatch) by layer", predictor.profile!)
        predictor.profile = nil
    }

    func report(_ title: String, _ profile: [String: Double]) {
        let total = profile.values.reduce(0, +)
        Log.info("\(title) (\(String(format: "%.3f", total)) s in layers):")
        for (key, t) in profile.sorted(by: { $0.value > $1.value }) {
            Log.info(String(format: "  %-20@ %8.3f s  %5.1f%%", key, t, 100 * t / total))
        }
    }

    func gemmRun() throws {
        var runs: [(String, (GemmBenchmark.Shape) -> Double)] = [("cpu", { GemmBenchmark.cpu($0, threads: engine.threads, repeats: `repeat`) })]
        for d in OpenCLRuntime.devices() where d.usable {
            for variant in OpenCLGemmVariant.allCases {
                do {
                    let cl = try OpenCLBackend(deviceIndex: d.index, options: OpenCLBackendOptions(gemm: variant))
                    runs.append(("opencl:\(d.index) \(variant.rawValue)", { GemmBenchmark.opencl($0, backend: cl, repeats: `repeat`) }))
                } catch { Log.warn("opencl:\(d.index) \(variant.rawValue) unusable: \(firstLine(error))") }
            }
        }
        var table = [["backend", "gemm", "m x n x k", "ms", "GFLOP/s"]]
        for (name, measure) in runs {
            for s in GemmBenchmark.net2Shapes {
                let t = measure(s), gflops = 2 * Double(s.m * s.n * s.k) / t / 1e9
                if format == .json {
                    print(KeypointWriter.jsonLine(["backend": name, "gemm": s.label, "m": s.m, "n": s.n, "k": s.k,
                                                   "seconds": t, "gflops": gflops]))
                } else {
                    table.append([name, s.label, "\(s.m)x\(s.n)x\(s.k)", String(format: "%.2f", t * 1e3), String(format: "%.1f", gflops)])
                }
            }
        }
        if format == .table { printTable(table) }
    }
}

extension Bench {
    func opsRun() throws {
        var backends: [(String, Backend)] = [("cpu", CPUBackend(threads: engine.threads))]
        for d in OpenCLRuntime.devices() where d.usable {
            for inPlace in d.type == "GPU" ? [true] : [true, false] {
                do {
                    let cl = try OpenCLBackend(deviceIndex: d.index, options: OpenCLBackendOptions(readInPlace: inPlace))
                    backends.append(("opencl:\(d.index)" + (cl.readsInPlace ? " in place" : inPlace ? "" : " packed"), cl))
                } catch { Log.warn("opencl:\(d.index) unusable: \(firstLine(error))") }
            }
        }
        var table = [["backend", "layer", "forward ms", "GFLOP/s", "backward ms", "GFLOP/s"]]
        for (name, be) in backends {
            for c in LayerBenchmark.net2 {
                let (f, b) = LayerBenchmark.measure(c, backend: be, repeats: `repeat`)
                let flops = LayerBenchmark.flops(c)
                if format == .json {
                    print(KeypointWriter.jsonLine(["backend": name, "layer": c.label, "forward_seconds": f, "backward_seconds": b,
                                                   "forward_gflops": flops.forward / f / 1e9, "backward_gflops": flops.backward / b / 1e9]))
                } else {
                    table.append([name, c.label, String(format: "%.2f", f * 1e3), String(format: "%.1f", flops.forward / f / 1e9),
                                  String(format: "%.2f", b * 1e3), String(format: "%.1f", flops.backward / b / 1e9)])
                }
            }
        }
        if format == .table { printTable(table) }
    }
}

func seconds(_ body: () -> Void) -> Double {
    let t0 = Date()
    body()
    return Date().timeIntervalSince(t0)
}
