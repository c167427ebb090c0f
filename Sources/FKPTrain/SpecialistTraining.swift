import FKPEngine
import FKPInference
import FKPIngest
import FKPNets
import FKPTensor
import Foundation

extension SpecialistGroup {
    /// Rows of `faces` that have every value of this group.
    public func rows(in faces: FaceSet) -> [Int] {
        guard let k = faces.keypoints else { return [] }
        return (0..<faces.count).filter { r in columns.allSatisfy { !k[r * Keypoints.count + $0].isNaN } }
    }
}

/// Copies every layer but the output layer from a trained net (the tutorial's supervised pre-training).
public func copyPretrained(from file: Safetensors.File, path: String, into net: Net) throws -> Int {
    var copied = 0
    for p in net.parameters where !p.name.hasPrefix("output.") {
        guard let e = file[p.name], e.shape == p.shape else {
            throw CheckpointError(description: "\(path): \(p.name) is missing or has another shape; pre-train with the same architecture")
        }
        try Net.requireFinite(e, path: path)
        e.values.withUnsafeBufferPointer { net.backend.write($0, to: p.value, offset: 0) }
        copied += 1
    }
    return copied
}

/// The tutorial's specialists: six nets of the preset's architecture, each with its group's outputs,
/// trained on the rows that have the group's values, through the same loop as a single net (no
/// checkpoints: the bundle is written once, at the end). Epochs scale with the rows: a group with fewer
/// rows trains longer (tutorial: int(1e7 / n), int(4e6 / n) with pre-training); `epochs` sets the epochs
/// of the largest group and the others scale from it. Returns "group=rmse" per specialist.
public func trainSpecialists(setup: TrainingSetup, epochs: Int?, pretrained: String?, out outPath: String,
                             device: DeviceChoice, threads: Int?, skipBadRows: Bool) throws -> [String] {
    let dataPath = setup.data, base = setup.config
    let read = try KaggleCSV.read(path: dataPath, skipBadRows: skipBadRows)
    for e in read.skipped { Log.warn("skipped \(e)") }
    let faces = read.faces
    guard faces.keypoints != nil else { throw FKPError.setup("\(dataPath) has no keypoint columns") }
    let backend = try device.makeBackend(threads: threads)
    let pre = try pretrained.map { try Safetensors.read(path: $0) }
    let groups = SpecialistGroup.tutorial
    let counts = groups.map { $0.rows(in: faces).count }
    guard let largest = counts.max(), largest >= 2 else { throw FKPError.setup("\(dataPath): no group has 2 rows with its values") }
    var nets: [Net] = []
    var summary: [String] = []
    let interrupt = InterruptFlag()
    defer { interrupt.restore() }
    for (k, group) in groups.enumerated() {
        let rows = group.rows(in: faces)
        guard rows.count >= 2 else { throw FKPError.setup("\(dataPath): only \(rows.count) rows have the \(group.name) values; 2 are needed") }
        var config = base
        let budget = pre != nil ? 4e6 : 1e7
        config.epochs = epochs.map { max(1, Int((Double($0) * Double(largest) / Double(rows.count)).rounded())) }
            ?? max(1, Int(budget / Double(rows.count)))
        config.flipPairs = base.flipPairs == nil ? nil : group.flipPairs.map { ($0[0], $0[1]) }
        let split = Split(rows: rows, seed: config.seed)
        config = try config.checked(trainingRows: split.train.count)
        let net = Net(setup.architecture(outputs: group.columns.count), backend: backend, maxBatch: config.batchSize)
        net.initialise(seed: config.seed &+ UInt64(k))
        if let pre { _ = try copyPretrained(from: pre, path: pretrained!, into: net) }
        let trainer = Trainer(net: net, train: TrainingData(faces, rows: split.train, columns: group.columns),
                              valid: TrainingData(faces, rows: split.valid, columns: group.columns), config: config)
        Log.info("specialist \(k + 1)/6 \(group.name): \(rows.count) rows (\(split.train.count) train, \(split.valid.count) valid), \(config.epochs) epochs")
        let outcome: Trainer.Outcome
        do { outcome = try TrainingLoop.run(trainer, interrupt: interrupt, progress: nil) } catch {
            throw FKPError.failed("specialist \(group.name) diverged at epoch \(trainer.nextEpoch); nothing was written")
        }
        if outcome == .interrupted { throw FKPError("interrupted during specialist \(group.name); nothing was written", exitCode: 130) }
        trainer.restoreBest()
        summary.append(String(format: "%@=%.3f", group.name, TrainingLoop.kept(trainer).validRMSE))
        nets.append(net)
    }
    let bundle = SpecialistBundle(nets: nets, groups: groups)
    try bundle.save(path: outPath, metadata: ["data": dataPath, "seed": "\(base.seed)", "pretrained": pretrained ?? ""])
    return summary
}
