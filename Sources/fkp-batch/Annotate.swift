import ArgumentParser
import Dispatch
import FKPDetect
import FKPEngine
import FKPExport
import FKPIngest
import FKPNets
import FKPTensor
import FKPTrain
import Foundation

struct Annotate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Find faces in photos, predict their keypoints, write annotated PNGs and keypoint records.",
        discussion: """
        Inputs: PNG or JPEG files and folders (walked recursively, sorted, hidden files skipped), or - to
        read paths from stdin, one a line. Each face is found with OpenCV's Haar cascade (Viola-Jones,
        evaluated by fkp-batch), cropped as the training faces are framed, resized to 96x96 grey and run
        through the net in batches. For each photo, -o OUT gets OUT/<relative path>.png with the boxes and
        the 15 points drawn (eyes cyan, eye corners blue, brows yellow, nose red, mouth magenta), written
        atomically. stdout gets one record per face (CSV with a header, or --format jsonl): file, faces in
        the photo, face number, box x/y/w/h, detection score (neighbours), then the 30 keypoint columns
        in photo pixels. A photo with no face gets one record with faces = 0.

        Bad files (truncated, not an image, too large) are reported on stderr and skipped; the exit code
        is then 1 (0 all good, 2 usage or set-up error). --shard K/N takes every N-th file from the K-th
        (K = 1..N), so N machines or processes split a set with no overlap; --skip-existing makes a re-run
        after a crash cheap.

        Examples:
          fkp-batch annotate samples/photos -o out/
          find /data -name '*.jpg' | fkp-batch annotate - --shard 2/4 -o out/ --skip-existing > faces.csv
        """)

    @Argument(help: "Photos and folders, or - for a list of paths on stdin.") var inputs: [String]
    @Option(name: [.short, .customLong("output")], help: "Folder for the annotated PNGs (none written without it).")
    var output: String?
    @Option(help: "Model (default: samples/model.safetensors beside the build, or env FKP_MODEL).") var model: String?
    @Option(help: "Records on stdout: csv or jsonl.") var format: String = "csv"
    @Option(help: ArgumentHelp("Process only every N-th file, starting with the K-th (1-based).", valueName: "K/N"))
    var shard: String?
    @Flag(name: .customLong("skip-existing"), help: "Skip photos whose annotated PNG already exists.") var skipExisting = false
    @Flag(name: .customLong("no-detect"), help: "Treat each image as one face that is already cropped.") var noDetect = false
    @Option(help: "Haar cascade XML.") var cascade: String = HaarCascade.defaultPath
    @Option(name: .customLong("min-neighbors"), help: "Detections a face needs (higher: fewer false faces).") var minNeighbors: Int = 5
    @Option(name: .customLong("min-face"), help: "Smallest face, in photo pixels.") var minFace: Int = 30
    @Option(name: .customLong("scale-factor"), help: "Scale step of the detector's image pyramid.") var scaleFactor: Double = 1.1
    @Flag(help: "Print the time spent in each stage (decode, detect, net, draw+encode) on stderr.") var stats = false
    @OptionGroup var engine: EngineOptions

    func validate() throws {
        guard !inputs.isEmpty else { throw ValidationError("give photos, folders, or - to read paths from stdin") }
        guard ["csv", "jsonl"].contains(format) else { throw ValidationError("--format must be csv or jsonl") }
        if let shard { guard parseShard(shard) != nil else { throw ValidationError("--shard must be K/N with 1 <= K <= N, not '\(shard)'") } }
        guard minNeighbors >= 0 else { throw ValidationError("--min-neighbors must be at least 0") }
        guard minFace >= 1 else { throw ValidationError("--min-face must be at least 1") }
        guard scaleFactor > 1, scaleFactor < 4 else { throw ValidationError("--scale-factor must be in (1, 4)") }
    }

    func parseShard(_ s: String) -> (k: Int, n: Int)? {
        let p = s.split(separator: "/")
        guard p.count == 2, let k = Int(p[0]), let n = Int(p[1]), n >= 1, (1...n).contains(k) else { return nil }
        return (k, n)
    }

    func run() throws {
        // Inputs, then the shard.
        var failed = 0
        var photos: [(path: String, relative: String)] = []
        for input in inputs {
            if input == "-" {
                while let line = readLine() {
                    let p = line.trimmingCharacters(in: .whitespaces)
                    if !p.isEmpty { photos.append((p, URL(fileURLWithPath: p).lastPathComponent)) }
                }
                continue
            }
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: input, isDirectory: &isDir) else {
                Log.error("\(input): no such file or folder"); failed += 1; continue
            }
            if isDir.boolValue { photos += listImages(in: input) } else { photos.append((input, URL(fileURLWithPath: input).lastPathComponent)) }
        }
        if let shard, let (k, n) = parseShard(shard) {
            photos = photos.enumerated().filter { $0.offset % n == k - 1 }.map(\.element)
        }

        let modelPath = model ?? defaultModelPath()
        let backend = try engine.makeBackend()
        let net: KeypointModel
        do { net = try ModelFile.loadModel(path: modelPath, backend: backend) } catch {
            throw fail("\(error)\(model == nil ? " (the default model; give one with --model)" : "")")
        }
        let detector: HaarCascade? = noDetect ? nil : try { () throws -> HaarCascade in
            do { return try HaarCascade(contentsOf: cascade) } catch { throw fail("\(error)") }
        }()
        var params = DetectionParameters()
        params.minNeighbors = minNeighbors; params.minSize = minFace; params.scaleFactor = scaleFactor
        if let output { try? FileManager.default.createDirectory(atPath: output, withIntermediateDirectories: true) }
        let inputSet = Set(photos.map { URL(fileURLWithPath: $0.path).standardizedFileURL.path })

        let writer = RecordWriter(format: format)
        writer.header()
        let timer = StageTimer()
        let progress = ProgressLine(totalEpochs: 1)
        let started = Date()
        var done = 0, faceCount = 0, skipped = 0
        // Photos go through in chunks: decode and detect in parallel, all faces of the chunk through the
        // net as one batch, then draw and encode in parallel; records keep the input order.
        let chunk = 8
        let cores = engine.threads ?? WorkerPool.defaultThreads
        var start = 0
        while start < photos.count {
            let slice = Array(photos[start..<min(start + chunk, photos.count)])
            start += slice.count
            var jobs = slice.map { photo in PhotoJob(path: photo.path, output: output.map { outPath(for: photo.relative, in: $0) }) }
            for i in jobs.indices {
                if let o = jobs[i].output {
                    if inputSet.contains(URL(fileURLWithPath: o).standardizedFileURL.path) {
                        jobs[i].error = "\(o): would overwrite an input; skipped"
                    } else if skipExisting && FileManager.default.fileExists(atPath: o) {
                        jobs[i].skip = true
                    }
                }
            }
            let box = JobBox(jobs)
            DispatchQueue.concurrentPerform(iterations: slice.count) { (i: Int) in
                guard box.jobs[i].error == nil, !box.jobs[i].skip else { return }
                let t0 = Date()
                do {
                    let rgb = try ImageFile.readRGB(path: box.jobs[i].path)
                    let gray = PNGCodec.gray(rgb)
                    let t1 = Date()
                    var faces: [FaceBox]
                    if let detector {
                        // photos already run in parallel; a lone photo gets every core for its scales
                        faces = detectFaces(in: gray, cascade: detector, parameters: params, threads: slice.count == 1 ? cores : 1)
                    } else {
                        faces = [FaceBox(x: 0, y: 0, width: gray.width, height: gray.height, neighbors: 0)]
                    }
                    faces.sort { ($0.y, $0.x) < ($1.y, $1.x) }
                    let crops = faces.map { f -> [Float] in
                        if detector == nil { return resizeArea(gray, width: 96, height: 96).pixels.map { $0 / 255 } }
                        let c = CropMapping.calibrated.crop(for: f)
                        return cropFace(gray, x: c.x, y: c.y, side: c.side)
                    }
                    box.update(i) { $0.rgb = rgb; $0.faces = faces; $0.crops = crops
                        $0.decodeSeconds = t1.timeIntervalSince(t0); $0.detectSeconds = Date().timeIntervalSince(t1) }
                } catch {
                    box.update(i) { $0.error = "\(error)" }
                }
            }
            jobs = box.jobs
            // the net, on every face of the chunk at once
            let all = jobs.flatMap { $0.crops }
            let t0 = Date()
            var predictions: [[Float]] = []
            if !all.isEmpty {
                let images = Tensor(shape: [all.count, Keypoints.imageSize])
                for (i, c) in all.enumerated() { c.withUnsafeBufferPointer { (images.data + i * Keypoints.imageSize).update(from: $0.baseAddress!, count: Keypoints.imageSize) } }
                predictions = net.predict(images)
            }
            timer.add("net", Date().timeIntervalSince(t0))
            var k = 0
            for i in jobs.indices {
                jobs[i].points = jobs[i].faces.enumerated().map { j, f in
                    let crop = detector == nil ? (x: 0.0, y: 0.0, side: 0.0) : CropMapping.calibrated.crop(for: f)
                    let p = predictions[k + j]
                    return p.enumerated().map { c, v in
                        if detector == nil { return v / 96 * Float(c % 2 == 0 ? f.width : f.height) }
                        return Float(c % 2 == 0 ? crop.x : crop.y) + v / 96 * Float(crop.side)
                    }
                }
                k += jobs[i].faces.count
            }
            let drawBox = JobBox(jobs)
            DispatchQueue.concurrentPerform(iterations: jobs.count) { i in
                let job = drawBox.jobs[i]
                guard job.error == nil, !job.skip, let out = job.output, let rgb = job.rgb else { return }
                let t0 = Date()
                var canvas = Canvas(rgb)
                for (f, p) in zip(job.faces, job.points) {
                    FaceDrawing.draw(on: &canvas, box: (f.x, f.y, f.width, f.height), points: p)
                }
                do {
                    try FileManager.default.createDirectory(atPath: URL(fileURLWithPath: out).deletingLastPathComponent().path,
                                                            withIntermediateDirectories: true)
                    try PNGCodec.writeRGB(canvas.image, path: out)
                } catch { drawBox.update(i) { $0.error = "\(error)" } }
                drawBox.update(i) { $0.drawSeconds = Date().timeIntervalSince(t0) }
            }
            for job in drawBox.jobs {
                timer.add("decode", job.decodeSeconds); timer.add("detect", job.detectSeconds); timer.add("draw+encode", job.drawSeconds)
                if let e = job.error { Log.error(e); failed += 1; continue }
                if job.skip { skipped += 1; continue }
                if job.faces.isEmpty { Log.warn("\(job.path): no face found") }
                writer.records(file: job.path, faces: job.faces, points: job.points)
                faceCount += job.faces.count
            }
            done += slice.count
            progress.items(done, of: photos.count, noun: "photos", since: started)
        }
        progress.clear()
        writer.flush()
        let seconds = Date().timeIntervalSince(started)
        Log.info(String(format: "%d photo%@, %d face%@ in %.2f s (%.1f photos/s, %.1f faces/s)%@%@", photos.count,
                        photos.count == 1 ? "" : "s", faceCount, faceCount == 1 ? "" : "s", seconds,
                        Double(photos.count) / max(seconds, 1e-9), Double(faceCount) / max(seconds, 1e-9),
                        skipped > 0 ? ", \(skipped) skipped (existing)" : "", failed > 0 ? ", \(failed) failed" : ""))
        if stats { timer.report(total: seconds) }
        if failed > 0 { throw ExitCode(1) }
    }

    func outPath(for relative: String, in dir: String) -> String {
        let stem = (relative as NSString).deletingPathExtension
        return URL(fileURLWithPath: dir).appendingPathComponent(stem + ".png").path
    }
}

/// Image files under a folder, recursively, sorted, hidden files and folders skipped; each with its path
/// relative to the folder.
func listImages(in folder: String) -> [(path: String, relative: String)] {
    let root = URL(fileURLWithPath: folder)
    guard let e = FileManager.default.enumerator(at: root, includingPropertiesForKeys: [.isRegularFileKey],
                                                 options: [.skipsHiddenFiles]) else { return [] }
    var out: [(String, String)] = []
    let exts: Set<String> = ["png", "jpg", "jpeg"]
    for case let url as URL in e where exts.contains(url.pathExtension.lowercased()) {
        let rel = String(url.standardizedFileURL.path.dropFirst(root.standardizedFileURL.path.count).drop { $0 == "/" })
        out.append(((folder as NSString).appendingPathComponent(rel), rel))  // the path as the user spelled it
    }
    return out.sorted { $0.1 < $1.1 }
}

/// samples/model.safetensors next to the checkout the binary was built in, the working directory's, or FKP_MODEL.
func defaultModelPath() -> String {
    if let env = ProcessInfo.processInfo.environment["FKP_MODEL"] { return env }
    let exe = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
    var dir = exe.deletingLastPathComponent()
    for _ in 0..<5 {
        let candidate = dir.appendingPathComponent("samples/model.safetensors").path
        if FileManager.default.fileExists(atPath: candidate) { return candidate }
        dir = dir.deletingLastPathComponent()
    }
    return "samples/model.safetensors"
}

struct PhotoJob {
    var path: String
    var output: String?
    var skip = false
    var error: String?
    var rgb: RGBImage?
    var faces: [FaceBox] = []
    var crops: [[Float]] = []
    var points: [[Float]] = []
    var decodeSeconds = 0.0, detectSeconds = 0.0, drawSeconds = 0.0
}

/// Jobs shared by the parallel stages; each worker touches only its own index.
final class JobBox: @unchecked Sendable {
    private(set) var jobs: [PhotoJob]
    private let lock = NSLock()
    init(_ jobs: [PhotoJob]) { self.jobs = jobs }
    func update(_ i: Int, _ body: (inout PhotoJob) -> Void) { lock.lock(); body(&jobs[i]); lock.unlock() }
}

final class StageTimer {
    var seconds: [String: Double] = [:]
    func add(_ stage: String, _ s: Double) { seconds[stage, default: 0] += s }
    func report(total: Double) {
        Log.info(String(format: "stages (summed over threads): %@; wall %.2f s",
                        ["decode", "detect", "net", "draw+encode"].map { String(format: "%@ %.2f s", $0, seconds[$0] ?? 0) }.joined(separator: ", "),
                        total))
    }
}

/// One record per face on stdout, CSV or JSON lines.
final class RecordWriter {
    let format: String
    var buffer = ""
    init(format: String) { self.format = format }

    func header() {
        guard format == "csv" else { return }
        buffer += (["file", "faces", "face", "x", "y", "w", "h", "score"] + Keypoints.columns).joined(separator: ",") + "\n"
    }

    func records(file: String, faces: [FaceBox], points: [[Float]]) {
        if faces.isEmpty {
            if format == "csv" { buffer += "\(KeypointWriter.csvField(file)),0" + String(repeating: ",", count: 6 + 30) + "\n" }
            else { buffer += jsonLine(["file": file, "faces": 0]) + "\n" }
        }
        for (j, (f, p)) in zip(faces, points).enumerated() {
            if format == "csv" {
                buffer += "\(KeypointWriter.csvField(file)),\(faces.count),\(j + 1),\(f.x),\(f.y),\(f.width),\(f.height),\(f.neighbors),"
                buffer += p.map(KeypointWriter.format).joined(separator: ",") + "\n"  // NaN: an empty field
            } else {
                var kp: [String: [Double]] = [:]
                for k in 0..<15 { kp[String(Keypoints.columns[2 * k].dropLast(2))] = [Double(p[2 * k]), Double(p[2 * k + 1])].map { ($0 * 100).rounded() / 100 } }
                buffer += jsonLine(["file": file, "faces": faces.count, "face": j + 1,
                                    "box": ["x": f.x, "y": f.y, "w": f.width, "h": f.height], "score": f.neighbors,
                                    "keypoints": kp]) + "\n"
            }
        }
        if buffer.utf8.count > 1 << 16 { flush() }
    }

    func flush() {
        FileHandle.standardOutput.write(Data(buffer.utf8))
        buffer = ""
    }
}
