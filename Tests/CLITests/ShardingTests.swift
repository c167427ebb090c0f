import FKPImage
import FKPTestSupport
import Foundation
import XCTest

/// A set of photos for the sharding and robustness tests, built from samples/: the two photos, the six
/// faces, a JPEG that collides with a PNG's output name (astronaut.png and astronaut.jpg), and `copies`
/// more copies of the astronaut in a subfolder. Returns the folder and the number of photos.
func makePhotoSet(in dir: URL, copies: Int) throws -> (folder: URL, count: Int) {
    let fm = FileManager.default
    let root = dir.appendingPathComponent("in")
    for sub in ["photos", "faces", "more"] {
        try fm.createDirectory(at: root.appendingPathComponent(sub), withIntermediateDirectories: true)
    }
    let astronaut = try Data(contentsOf: repoRoot.appendingPathComponent("samples/photos/skimage_astronaut.png"))
    try astronaut.write(to: root.appendingPathComponent("photos/astronaut.png"))
    try fm.copyItem(at: repoRoot.appendingPathComponent("samples/photos/skimage_camera.png"),
                    to: root.appendingPathComponent("photos/camera.png"))
    let jpeg = try JPEGCodec.encodeRGB(try PNGCodec.decodeRGB(astronaut, name: "astronaut"), quality: 90)
    try jpeg.write(to: root.appendingPathComponent("photos/astronaut.jpg"))
    for i in 1...6 {
        try fm.copyItem(at: repoRoot.appendingPathComponent("samples/faces/face_\(i).png"),
                        to: root.appendingPathComponent("faces/face_\(i).png"))
    }
    for i in 0..<copies { try astronaut.write(to: root.appendingPathComponent("more/a\(i).png")) }
    return (root, 9 + copies)
}

/// The visible files under `folder` (hidden temporary files left out), by path relative to it.
func visibleFiles(under folder: URL) -> [String: Data] {
    var files: [String: Data] = [:]
    guard let e = FileManager.default.enumerator(at: folder, includingPropertiesForKeys: [.isRegularFileKey],
                                                 options: [.skipsHiddenFiles]) else { return files }
    let base = folder.standardizedFileURL.path
    for case let url as URL in e where (try? url.resourceValues(forKeys: [.isRegularFileKey]).isRegularFile) == true {
        files[String(url.standardizedFileURL.path.dropFirst(base.count + 1))] = try? Data(contentsOf: url)
    }
    return files
}

/// Runs a shell command line (the recipe as a user types it) in the repository root, FKP binary in $FKP.
func shell(_ command: String) throws -> Run {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/bin/sh")
    p.arguments = ["-c", command]
    p.currentDirectoryURL = repoRoot
    var env = ProcessInfo.processInfo.environment
    env.removeValue(forKey: "FKP_DEVICE")
    env["FKP"] = fkpBatchBinary.path
    p.environment = env
    let out = FileManager.default.temporaryDirectory.appendingPathComponent("sh-\(UUID().uuidString)")
    let err = out.appendingPathExtension("err")
    try Data().write(to: out)
    try Data().write(to: err)
    defer { try? FileManager.default.removeItem(at: out); try? FileManager.default.removeItem(at: err) }
    p.standardOutput = try FileHandle(forWritingTo: out)
    p.standardError = try FileHandle(forWritingTo: err)
    p.standardInput = FileHandle.nullDevice
    try p.run()
    p.waitUntilExit()
    return Run(status: p.terminationStatus, stdout: try String(contentsOf: out, encoding: .utf8),
               stderr: try String(contentsOf: err, encoding: .utf8))
}

/// The documented recipe for many photos (docs/CLUSTER.md): N shards in parallel with xargs -P, retries
/// with --skip-existing after kill -9, and scripts/merge-records.sh. What N shards produce, merged, is
/// what one run produces: the records line for line and the annotated PNGs byte for byte.
final class ShardingTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("fkp-shard-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    /// One run over the folder with the bundled model: its records and its annotated PNGs.
    func oneRun(_ input: URL) throws -> (records: String, pngs: [String: Data]) {
        let out = dir.appendingPathComponent("one")
        let r = try fkpBatch(["annotate", input.path, "-o", out.path, "--threads", "1"])
        XCTAssertEqual(r.status, 0, r.stderr)
        return (r.stdout, visibleFiles(under: out))
    }

    func merge(_ files: [URL]) throws -> Run {
        try shell("scripts/merge-records.sh " + files.map { "'\($0.path)'" }.joined(separator: " "))
    }

    func testShardsInParallelEqualOneRun() throws {
        let (input, count) = try makePhotoSet(in: dir, copies: 3)
        let one = try oneRun(input)
        XCTAssertEqual(one.pngs.count, count)
        XCTAssertNotNil(one.pngs["photos/astronaut-2.png"], "the JPEG's output gets the collision rule's name")
        XCTAssertEqual(one.records.split(separator: "\n").first.map(String.init), "file,faces,face,x,y,w,h,score,"
                       + "left_eye_center_x,left_eye_center_y,right_eye_center_x,right_eye_center_y,left_eye_inner_corner_x,"
                       + "left_eye_inner_corner_y,left_eye_outer_corner_x,left_eye_outer_corner_y,right_eye_inner_corner_x,"
                       + "right_eye_inner_corner_y,right_eye_outer_corner_x,right_eye_outer_corner_y,left_eyebrow_inner_end_x,"
                       + "left_eyebrow_inner_end_y,left_eyebrow_outer_end_x,left_eyebrow_outer_end_y,right_eyebrow_inner_end_x,"
                       + "right_eyebrow_inner_end_y,right_eyebrow_outer_end_x,right_eyebrow_outer_end_y,nose_tip_x,nose_tip_y,"
                       + "mouth_left_corner_x,mouth_left_corner_y,mouth_right_corner_x,mouth_right_corner_y,"
                       + "mouth_center_top_lip_x,mouth_center_top_lip_y,mouth_center_bottom_lip_x,mouth_center_bottom_lip_y,pose")

        // The recipe of docs/CLUSTER.md: N shards at once through xargs -P, one records file each.
        let n = 3
        let out = dir.appendingPathComponent("sharded"), records = dir.appendingPathComponent("records")
        try FileManager.default.createDirectory(at: records, withIntermediateDirectories: true)
        let r = try shell("""
            seq 1 \(n) | xargs -P \(n) -I {} sh -c '"$FKP" annotate "\(input.path)" -o "\(out.path)" --shard {}/\(n) \
            --skip-existing --threads 1 > "\(records.path)/shard-{}.csv"'
            """)
        XCTAssertEqual(r.status, 0, r.stderr)
        let files = (1...n).map { records.appendingPathComponent("shard-\($0).csv") }
        // each shard did its own photos, none twice
        var seen: [String] = []
        for f in files {
            let rows = try String(contentsOf: f, encoding: .utf8).split(separator: "\n").dropFirst()
            XCTAssertFalse(rows.isEmpty, "\(f.lastPathComponent) did nothing")
            seen += Set(rows.map { String($0.split(separator: ",")[0]) })
        }
        XCTAssertEqual(seen.count, count)
        XCTAssertEqual(Set(seen).count, count, "a photo was done by two shards")

        let merged = try merge(files)
        XCTAssertEqual(merged.status, 0, merged.stderr)
        XCTAssertEqual(merged.stdout, one.records, "merged shards differ from one run")
        XCTAssertEqual(merged.stdout.components(separatedBy: "file,faces,face,").count, 2, "one header")
        let sharded = visibleFiles(under: out)
        XCTAssertEqual(Set(sharded.keys), Set(one.pngs.keys))
        for (name, data) in one.pngs { XCTAssertEqual(sharded[name], data, "\(name) differs from one run's") }
    }

    /// Shards killed with SIGKILL at random moments, retried with --skip-existing into new records files
    /// (as the recipe says), until they finish: every annotated PNG that exists after a kill is complete
    /// (decodes, and equals one run's byte for byte), and the merged records of all attempts equal one run.
    func testKilledShardsRetriedWithSkipExistingEqualOneRun() throws {
        let (input, count) = try makePhotoSet(in: dir, copies: 11)
        let one = try oneRun(input)
        let out = dir.appendingPathComponent("sharded"), records = dir.appendingPathComponent("records")
        try FileManager.default.createDirectory(at: records, withIntermediateDirectories: true)
        var files: [URL] = [], delays: [Double] = [], killedMidway = 0, partial = 0
        for k in 1...2 {
            for attempt in 1...4 {
                let file = records.appendingPathComponent("shard-\(k).\(attempt).csv")
                files.append(file)
                try Data().write(to: file)
                let p = Process()
                p.executableURL = fkpBatchBinary
                p.arguments = ["annotate", input.path, "-o", out.path, "--shard", "\(k)/2", "--skip-existing", "--threads", "1"]
                p.currentDirectoryURL = repoRoot
                p.standardOutput = try FileHandle(forWritingTo: file)
                p.standardError = FileHandle.nullDevice
                let before = visibleFiles(under: out).count
                try p.run()
                if attempt < 4 {
                    // Attempts 1 and 3: once this attempt's first PNG is out, plus up to 0.4 s (mid-chunk, in
                    // the middle of writes); attempt 2: anywhere from start-up to the middle of the run.
                    let started = Date()
                    if attempt != 2 {
                        while p.isRunning, visibleFiles(under: out).count == before, Date().timeIntervalSince(started) < 20 {
                            Thread.sleep(forTimeInterval: 0.02)
                        }
                    }
                    Thread.sleep(forTimeInterval: attempt == 2 ? Double.random(in: 0.1...1.5) : Double.random(in: 0...0.4))
                    delays.append(Date().timeIntervalSince(started))
                    kill(p.processIdentifier, SIGKILL)
                }
                p.waitUntilExit()
                if attempt == 4 {
                    XCTAssertEqual(p.terminationStatus, 0, "the last retry of shard \(k) finishes")
                } else if p.terminationReason == .uncaughtSignal {
                    killedMidway += 1
                    if visibleFiles(under: out).count > before { partial += 1 }
                }
                // whatever exists now is complete: it decodes and is one run's PNG
                for (name, data) in visibleFiles(under: out) {
                    XCTAssertNoThrow(try PNGCodec.decodeRGB(data, name: name), "\(name) after a kill at \(delays)")
                    XCTAssertEqual(data, one.pngs[name], "\(name) after a kill at \(delays)")
                }
            }
        }
        print("kills after \(delays.map { String(format: "%.2f s", $0) }); \(killedMidway) of 6 runs killed before they "
              + "finished, \(partial) of them after writing some PNGs")
        XCTAssertGreaterThan(partial, 0, "no kill left a shard half done, so no retry skipped anything: \(delays)")
        XCTAssertEqual(visibleFiles(under: out).count, count)
        let merged = try merge(files)
        XCTAssertEqual(merged.status, 0, merged.stderr)
        XCTAssertEqual(merged.stdout, one.records, "records lost or doubled after kills at \(delays)")
    }

    /// The merge script: one header, a torn last line dropped, a face recorded twice kept once (the later
    /// file wins), quoted file names, the order of one run; errors for files that are not records.
    func testMergeRecordsScript() throws {
        let header = "file,faces,face,x"
        let a = dir.appendingPathComponent("a.csv"), b = dir.appendingPathComponent("b.csv")
        try "\(header)\nb.png,2,1,5\nb.png,2,2,6\n\"c,d.png\",1,1,7\n".write(to: a, atomically: true, encoding: .utf8)
        try "\(header)\na.png,0,,\nb.png,2,1,9\nzz.png,1,1,3".write(to: b, atomically: true, encoding: .utf8)
        let r = try merge([a, b])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.stdout, "\(header)\na.png,0,,\nb.png,2,1,9\nb.png,2,2,6\n\"c,d.png\",1,1,7\n")
        XCTAssertTrue(r.stderr.contains("b.csv: dropping its last, unfinished line"), r.stderr)
        let empty = dir.appendingPathComponent("empty.csv")
        try Data().write(to: empty)
        XCTAssertEqual(try merge([empty, a]).stdout, "\(header)\nb.png,2,1,5\nb.png,2,2,6\n\"c,d.png\",1,1,7\n",
                       "an empty file (a shard killed before its header) is skipped")
        let other = dir.appendingPathComponent("other.csv")
        try "ImageId,x\n1,2\n".write(to: other, atomically: true, encoding: .utf8)
        XCTAssertEqual(try merge([a, other]).status, 1)
        XCTAssertEqual(try merge([a, dir.appendingPathComponent("missing.csv")]).status, 1)
        XCTAssertEqual(try shell("scripts/merge-records.sh").status, 2)
    }
}
