import ArgumentParser
import FKPEngine
import FKPExport
import FKPNets
import FKPTensor
import FKPTrain
import Foundation

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure training and inference speed of net1 and net2.",
        discussion: """
        Trains on --images random 96x96 images (1712 = the tutorial's training set size, batch 128) and
        reports seconds per epoch, inference images per second and the GFLOP/s each reaches (a training
        epoch counts 3x the forward FLOPs). Median of --repeat runs after one warm-up. Results go to stdout
        (a table, or JSON lines with --format json, as bench/compare.sh reads them next to PyTorch's).
        """)

    @Option(help: "Models to measure, comma-separated.") var models: String = "net1,net2"
    @Option(help: "Training images per epoch.") var images: Int = 1712
    @Option(help: "Timed repetitions (the median is reported).") var `repeat`: Int = 3
    @Option(help: "Output: table or json.") var format: String = "table"
    @Flag(name: .customLong("all-devices"), help: "Measure the CPU engine and every usable OpenCL device side by side in one run.")
    var allDevices = false
    @Flag(help: "Also print the time per layer and pass of one training epoch (stderr).") var profile = false
    @OptionGroup var engine: EngineOptions

    func validate() throws {
        guard images >= 1, `repeat` >= 1 else { throw ValidationError("--images and --repeat must be at least 1") }
        guard ["table", "json"].contains(format) else { throw ValidationError("--format must be table or json") }
        for m in models.split(separator: ",") where Architecture.named(String(m)) == nil {
            throw ValidationError("unknown model '\(m)' in --models")
        }
    }

    func run() throws {
        var backends: [Backend] = [try engine.makeBackend()]
        if allDevices {
            backends = [CPUBackend(threads: engine.threads)]
            for d in OpenCLRuntime.devices() where d.usable {
                do {
                    let t0 = Date()
                    let b = try OpenCLBackend(deviceIndex: d.index)
                    let cold = Date().timeIntervalSince(t0)
                    let t1 = Date()
                    _ = try OpenCLBackend(deviceIndex: d.index)  // the same kernels again: from the program cache
                    Log.info(String(format: "opencl:%d %@: kernels ready in %.2f s (%@), %.3f s from the program cache", d.index, d.name, cold,
                                    b.programBuilds.map { "\($0.origin)" }.joined(separator: ","), Date().timeIntervalSince(t1)))
                    backends.append(b)
                } catch { Log.warn("opencl:\(d.index) \(d.name) unusable: \(firstLine(error))") }
            }
        }
        var rng = Xoshiro(seed: 7)
        let x = Tensor(shape: [images, Keypoints.imageSize])
        for i in 0..<x.count { x[i] = rng.nextFloat() }
        let y = Tensor(shape: [images, Keypoints.count])
        for i in 0..<y.count { y[i] = rng.nextFloat() * 2 - 1 }
        let data = TrainingData(images: x, targets: y)
        var table = [["model", "backend", "s/epoch", "train GFLOP/s", "infer img/s", "infer GFLOP/s"]]
        for backend in backends {
        let threads = (backend as? CPUBackend)?.pool.count ?? 0
        for model in models.split(separator: ",").map(String.init) {
            let net = Net(Architecture.named(model)!, backend: backend, maxBatch: 128)
            net.initialise(seed: 1)
            var config = TrainConfig()
            config.learningRate = Schedule(1e-4)  // keep the weights sane over repeated epochs on random data
            let trainer = Trainer(net: net, train: data, valid: TrainingData(images: Tensor(shape: [0, Keypoints.imageSize]), targets: Tensor(shape: [0, Keypoints.count])), config: config)
            _ = try? trainer.runEpoch()  // warm-up
            var epochTimes: [Double] = []
            for _ in 0..<`repeat` {
                let t0 = Date()
                _ = try? trainer.runEpoch()
                backend.synchronize()
                epochTimes.append(Date().timeIntervalSince(t0))
            }
            var inferTimes: [Double] = []
            for _ in 0..<`repeat` {
                let t0 = Date()
                _ = predictKeypoints(net: net, images: x)
                inferTimes.append(Date().timeIntervalSince(t0))
            }
            let epoch = median(epochTimes), infer = median(inferTimes)
            if profile {
                net.profile = [:]
                _ = try? trainer.runEpoch()
                let total = net.profile!.values.reduce(0, +)
                Log.info("\(model): one epoch by layer and pass (\(String(format: "%.3f", total)) s in layers):")
                for (key, t) in net.profile!.sorted(by: { $0.value > $1.value }) {
                    Log.info(String(format: "  %-20@ %8.3f s  %5.1f%%", key, t, 100 * t / total))
                }
                net.profile = nil
            }
            let flopPerImage = 2.0 * Double(net.forwardMACs)
            let trainGF = 3 * flopPerImage * Double(images) / epoch / 1e9
            let ips = Double(images) / infer
            let inferGF = flopPerImage * ips / 1e9
            if format == "json" {
                print(jsonLine(["impl": "fkp-batch", "model": model, "device": deviceName(backend), "backend": backend.name,
                                "threads": threads, "train_images": images, "epoch_seconds": epoch,
                                "train_gflops": trainGF, "infer_images_per_second": ips, "infer_gflops": inferGF]))
            } else {
                table.append([model, backend.name, String(format: "%.3f", epoch), String(format: "%.1f", trainGF),
                              String(format: "%.1f", ips), String(format: "%.1f", inferGF)])
            }
        }
        }
        if format == "table" { printTable(table) }
    }
}

func median(_ xs: [Double]) -> Double {
    let s = xs.sorted()
    return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
}

/// One JSON object per line (the writer shared with the data commands).
func jsonLine(_ object: [String: Any]) -> String { KeypointWriter.jsonLine(object) }
