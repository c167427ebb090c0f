import FKPAlign
import FKPEngine
import FKPImage
import FKPInference
import FKPIngest
import FKPNets
import FKPTestSupport
import Foundation
import XCTest

/// The photo model's passes: the passes after the first average the predictions of all its nets, a
/// file says so in its metadata, and int8 storage keeps the predictions.
final class PhotoModelTests: XCTestCase {
    func face() throws -> GrayPlane {
        let img = try PNGCodec.readGray(path: repoPath("samples/faces/face_1.png"))
        let pixels = img.pixels.map { $0 / 255 }
        let buffer = UnsafeMutableBufferPointer<Float>.allocate(capacity: pixels.count)
        _ = buffer.initialize(from: pixels)
        addTeardownBlock { buffer.deallocate() }
        return GrayPlane(width: img.width, height: img.height, pixels: UnsafeBufferPointer(buffer))
    }

    func testLaterPassesAverageAllNets() throws {
        let model = try XCTUnwrap(try ModelFile.loadModel(path: repoPath("samples/model.safetensors"), backend: CPUBackend(threads: 2)) as? AlignedModel)
        XCTAssertEqual(model.nets.count, 2, "the bundled photo model is a coarse and a narrow net")
        XCTAssertTrue(model.ensembleLaterPasses, "its metadata asks for the ensemble")
        model.finalJitters = [.identity]
        let plane = try face()
        let start = [AlignedModel.Face(photo: 0, start: .identity)]

        var crop = Similarity.identity
        let both = model.predict(photos: [plane], faces: start, passes: 2, crops: &crop)[0]
        // Each net alone from the crop that pass 1 gave.
        func alone(_ k: Int) -> [Double] {
            let one = AlignedModel(nets: [model.nets[k]], framing: nil, defaultPasses: 1)
            one.outputOffsets = [model.outputOffsets[k]]
            return one.predict(photos: [plane], faces: [.init(photo: 0, start: crop)], passes: 1)[0]
        }
        let a = alone(0), b = alone(1)
        for c in 0..<30 { XCTAssertEqual(both[c], (a[c] + b[c]) / 2, accuracy: 1e-4, "value \(c)") }
        XCTAssertGreaterThan(zip(a, b).map { abs($0 - $1) }.max()!, 0.01, "two different nets, or the test could not fail")

        // Without the ensemble the last net alone runs the second pass.
        model.ensembleLaterPasses = false
        var crop2 = Similarity.identity
        let last = model.predict(photos: [plane], faces: start, passes: 2, crops: &crop2)[0]
        for c in 0..<30 { XCTAssertEqual(last[c], b[c], accuracy: 1e-4, "value \(c)") }
    }

    /// Saved with int8 weights and read back: the same kind of model (nets, passes, ensemble). The bundled
    /// weights are int8 already, so storing them again as int8 must keep every point (the step of each
    /// column is found again); the error of quantizing float weights is bounded in SafetensorsReliabilityTests.
    func testInt8PhotoModelKeepsItsPredictions() throws {
        let path = repoPath("samples/model.safetensors")
        let file = try Safetensors.read(path: path)
        let model = try XCTUnwrap(try ModelFile.loadModel(file, path: path, backend: CPUBackend(threads: 2)) as? AlignedModel)
        let out = NSTemporaryDirectory() + "int8-\(UUID().uuidString).safetensors"
        defer { try? FileManager.default.removeItem(atPath: out) }
        let nets = try AlignedModel.netFiles(file, path: path)
        XCTAssertEqual(nets.count, 2)
        try AlignedModel.save(nets: nets, framing: model.framing, passes: model.defaultPasses, outputOffsets: model.outputOffsets,
                              metadata: ["note": "test"], path: out, dtype: .i8)
        let back = try XCTUnwrap(try ModelFile.loadModel(path: out, backend: CPUBackend(threads: 2)) as? AlignedModel)
        XCTAssertTrue(back.ensembleLaterPasses)
        XCTAssertEqual(back.outputOffsets.count, 2)
        for k in 0..<2 {
            let a = try XCTUnwrap(model.outputOffsets[k], "the bundled model has offsets"), b = try XCTUnwrap(back.outputOffsets[k])
            for c in 0..<30 { XCTAssertEqual(a[c], b[c], accuracy: 1e-9) }
        }
        XCTAssertEqual(back.defaultPasses, model.defaultPasses)
        let plane = try face()
        let faces = [AlignedModel.Face(photo: 0, start: .identity)]
        let p = model.predict(photos: [plane], faces: faces)[0], q = back.predict(photos: [plane], faces: faces)[0]
        let worst = zip(p, q).map { abs($0 - $1) }.max()!
        XCTAssertLessThan(worst, 0.001, "storing int8 weights again moved a point by \(worst) px")
        XCTAssertEqual(back.nets.count, 2)
    }

    /// Each net's offset is added in the crop, after mirror-averaging: with a crop at twice the photo's
    /// scale, the points move by the offset in crop pixels (half of it in the photo).
    func testOutputOffsetsAreAddedInTheCrop() throws {
        let model = try XCTUnwrap(try ModelFile.loadModel(path: repoPath("samples/model.safetensors"), backend: CPUBackend(threads: 2)) as? AlignedModel)
        model.finalJitters = [.identity]
        let offset = try XCTUnwrap(model.outputOffsets[0])
        XCTAssertGreaterThan(offset.map(abs).max()!, 0.1, "a non-trivial offset, or the test could not fail")
        let plane = try face()
        let start = Similarity(angle: 0.1, scale: 2, center: (48, 48), shift: (-30, -20))
        let faces = [AlignedModel.Face(photo: 0, start: start)]
        let with = start.apply(model.predict(photos: [plane], faces: faces, passes: 1)[0])
        model.outputOffsets = [nil, nil]
        let without = start.apply(model.predict(photos: [plane], faces: faces, passes: 1)[0])
        for c in 0..<30 { XCTAssertEqual(with[c] - without[c], offset[c], accuracy: 1e-4, "value \(c)") }
    }

    /// The measured offsets are each net's mean error on crops aligned by the reference points: with them
    /// added, that mean error is zero.
    func testMeasuredOffsetsCancelTheMeanError() throws {
        let model = try XCTUnwrap(try ModelFile.loadModel(path: repoPath("samples/model.safetensors"), backend: CPUBackend(threads: 2)) as? AlignedModel)
        let set = try LandmarkFiles.read(repoPath("samples/frames"))
        let images = try ImageFile.readGray(paths: set.images)
        let buffers = images.map { img -> UnsafeMutableBufferPointer<Float> in
            let b = UnsafeMutableBufferPointer<Float>.allocate(capacity: img.pixels.count)
            _ = b.initialize(from: img.pixels.map { $0 / 255 })
            return b
        }
        defer { buffers.forEach { $0.deallocate() } }
        let planes = zip(images, buffers).map { GrayPlane(width: $0.width, height: $0.height, pixels: UnsafeBufferPointer($1)) }
        let offsets = model.measureOutputOffsets(photos: planes, references: set.keypoints)
        XCTAssertEqual(offsets.count, 2)
        let transforms = set.keypoints.map { CanonicalFace.alignment(for: $0)! }
        for k in 0..<2 {
            let measured = try XCTUnwrap(offsets[k])
            XCTAssertGreaterThan(measured.map(abs).max()!, 0.05, "a non-trivial offset, or the test could not fail")
            let one = AlignedModel(nets: [model.nets[k]], framing: nil, defaultPasses: 1)
            one.outputOffsets = [measured]
            let p = one.predict(photos: planes, faces: transforms.enumerated().map { .init(photo: $0, start: $1) })
            for c in 0..<30 {
                let mean = zip(p, zip(set.keypoints, transforms)).map { q, rt in rt.1.apply(rt.0)[c] - rt.1.apply(q)[c] }
                    .reduce(0, +) / Double(p.count)
                XCTAssertEqual(mean, 0, accuracy: 1e-4, "net \(k + 1) value \(c)")
            }
        }
    }

    /// A photo model refuses offsets that are not one finite number per output.
    func testMalformedOffsetsAreRefused() throws {
        let path = repoPath("samples/model.safetensors")
        let file = try Safetensors.read(path: path)
        for bad in ["[1,2]", "not json", "[" + Array(repeating: "1", count: 29).joined(separator: ",") + ",1e999]"] {
            var meta = file.metadata
            meta["pass2_output_offset"] = bad
            XCTAssertThrowsError(try ModelFile.loadModel(Safetensors.File(tensors: file.tensors, metadata: meta), path: path,
                                                         backend: CPUBackend(threads: 1), maxBatch: 1), bad) {
                XCTAssertTrue("\($0)".contains("pass2_output_offset"), "\($0)")
            }
        }
    }
}
