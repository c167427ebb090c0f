import ArgumentParser
import FKPAnnotate
import FKPDetect
import FKPExport
import FKPTensor
import Foundation

struct Annotate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Find faces in photos, predict their keypoints, write annotated PNGs and keypoint records.",
        discussion: """
        Inputs: PNG or JPEG files and folders (walked recursively, sorted, hidden files skipped), or - to read paths from stdin, one a line. Each face is found by a HOG detector (dlib's frontal face filters for front, turned and tilted faces, run by fkp-batch; faces found by few windows must pass the bundled face verifier), or with --detector cascade by OpenCV's Haar cascades (Viola-Jones, evaluated by fkp-batch: the frontal cascade, the profile cascade as trained and mirrored, and alt2 confirming weak frontal faces), cropped as the training faces are framed, resized to 96x96 grey and run through the net in batches. For each photo, -o OUT gets OUT/<relative path>.png with the boxes and the 15 points drawn (eyes cyan, eye corners blue, brows yellow, nose red, mouth magenta), written atomically. Two inputs that would get the same output name (d1/x.png and d2/x.png, or y.png and y.jpg) are told apart by one rule: the first in input order keeps the name, later ones get -2, -3, ... with a warning. stdout gets one record per face (CSV with a header, or --format jsonl): file, faces in the photo, face number, box x/y/w/h, detection score (windows of every detector that accepted the face; --min-score drops lower ones), the 30 keypoint columns in photo pixels, then the pose (frontal, left or right: the way the face is turned in the image; new columns come last). A photo with no face gets one record with faces = 0.

        Bad files (truncated, not an image, too large) are reported on stderr and skipped; the exit code is then 1 (0 all good, 2 usage or set-up error). --shard K/N takes every N-th file from the K-th (K = 1..N), so N machines or processes split a set with no overlap; --skip-existing makes a re-run after a crash cheap (a photo's records are written before its PNG, so none is lost; scripts/merge-records.sh merges the records of shards and retries), and temporary files that a killed run left in OUT are removed once a minute old. docs/CLUSTER.md has the recipes for xargs -P, Slurm and Kubernetes.

        Examples:
          fkp-batch annotate samples/photos -o out/
          find /data -name '*.jpg' | fkp-batch annotate - --shard 2/4 -o out/ \\
            --skip-existing > faces.csv
        """)

    @Argument(help: "Photos and folders, or - for a list of paths on stdin.") var inputs: [String]
    @Option(name: [.short, .customLong("output")], help: "Folder for the annotated PNGs (none written without it).")
    var output: String?
    @OptionGroup var model: ModelOption
    @Option(help: "Records on stdout.") var format: RecordFormat = .csv
    @Option(help: ArgumentHelp("Process only every N-th file, starting with the K-th (1-based).", valueName: "K/N"))
    var shard: Shard?
    @Flag(name: .customLong("skip-existing"), help: "Skip photos whose annotated PNG already exists.") var skipExisting = false
    @Flag(name: .customLong("no-detect"), help: "Treat each image as one face that is already cropped, framed as Kaggle's 96x96 faces (the points are those predict gives for it).") var noDetect = false
    @OptionGroup var detection: DetectorOptions
    @Flag(help: "Print the time spent in each stage (decode, detect, net, draw+encode) on stderr.") var stats = false
    @OptionGroup var photoModel: PhotoModelOptions
    @OptionGroup var engine: EngineOptions

    func validate() throws {
        guard !inputs.isEmpty else { throw ValidationError("give photos, folders, or - to read paths from stdin") }
    }

    func run() throws {
        var settings = AnnotationSettings()
        settings.output = output
        settings.skipExisting = skipExisting
        detection.apply(to: &settings)
        if noDetect { settings.cascadePath = nil }
        settings.passes = photoModel.passes
        settings.averaging = !photoModel.noAveraging
        if let threads = engine.threads { settings.threads = threads }
        let pipeline = try AnnotationPipeline(modelPath: model.model, device: engine.device, threads: engine.threads, settings: settings)
        let summary = try pipeline.run(inputs: inputs, shard: shard, records: FaceRecordWriter(format: format))
        Log.info(summary.line)
        if stats { Log.info(summary.stagesLine) }
        if summary.failed > 0 { throw ExitCode(1) }
    }
}
