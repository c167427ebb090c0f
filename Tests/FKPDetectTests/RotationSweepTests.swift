@testable import FKPDetect
import FKPImage
import FKPTestSupport
import Foundation
import XCTest

/// The rotation sweep (`FaceDetector.rotations`), with FaceDetectorTests' cascades and detector.
extension FaceDetectorTests {
    /// A point goes to the rotated image and back; a bright spot lands where `target` says (counter-clockwise
    /// as seen: a point right of the centre moves up); a box found there comes back centred on the spot.
    func testRotationMapsPointsPixelsAndBoxesBack() {
        let (w, h) = (200, 120)
        let r = Rotation(degrees: 30, width: w, height: h)
        let (tx, ty) = r.target(150, 40)
        let (bx, by) = r.source(tx, ty)
        XCTAssertEqual(bx, 150, accuracy: 1e-9)
        XCTAssertEqual(by, 40, accuracy: 1e-9)
        let right = r.target(r.cx + 10, r.cy)
        XCTAssertLessThan(right.y, r.cy - 4, "counter-clockwise as seen")

        var pixels = [UInt8](repeating: 0, count: w * h)
        for y in 38...42 { for x in 148...152 { pixels[y * w + x] = 255 } }
        let turned = r.apply(pixels, width: w, height: h)
        // The spot's centre of mass.
        var (mass, mx, my) = (0.0, 0.0, 0.0)
        for (i, v) in turned.enumerated() { mass += Double(v); mx += Double(v) * Double(i % w); my += Double(v) * Double(i / w) }
        XCTAssertEqual(mass, 25 * 255, accuracy: 0.1 * 25 * 255, "the spot is kept whole")
        XCTAssertEqual(mx / mass, tx, accuracy: 0.5)
        XCTAssertEqual(my / mass, ty, accuracy: 0.5)

        let found = FaceBox(x: Int(tx.rounded()) - 20, y: Int(ty.rounded()) - 20, width: 40, height: 40, neighbors: 7)
        let back = r.boxInPhoto(found)
        XCTAssertEqual([back.width, back.height, back.neighbors], [40, 40, 7])
        XCTAssertEqual(Double(back.x) + 20, 150, accuracy: 1)
        XCTAssertEqual(Double(back.y) + 20, 40, accuracy: 1)
        XCTAssertEqual(Rotation(degrees: 0, width: w, height: h).apply(pixels, width: w, height: h), pixels)
    }

    /// The astronaut's face tilted by 35 degrees: the upright search misses it; the sweep, turning the
    /// photo back by -35 degrees, finds it where it is in the tilted photo.
    func testSweepFindsATiltedFaceTheUprightSearchMisses() throws {
        let img = try PNGCodec.readGray(path: repoRoot.appendingPathComponent("samples/photos/skimage_astronaut.png").path)
        let tilt = Rotation(degrees: 35, width: img.width, height: img.height)
        let tilted = tilt.apply(img.bytes8, width: img.width, height: img.height)
        let photo = GrayImage(width: img.width, height: img.height, pixels: tilted.map(Float.init))
        // The upright face (FaceDetectorTests: 177, 66, 95) and its centre in the tilted photo.
        let centre = tilt.target(177 + 47.5, 66 + 47.5)
        let expected = FaceBox(x: Int(centre.x - 47.5), y: Int(centre.y - 47.5), width: 95, height: 95)

        var d = try annotateDetector()
        d.rotationParameters = d.members[0].parameters
        XCTAssertFalse(d.detect(in: photo).contains { overlap($0.box, expected) >= 0.3 }, "upright search misses it")
        d.rotations = [-35]
        let faces = d.detect(in: photo).filter { overlap($0.box, expected) >= 0.3 }
        XCTAssertEqual(faces.count, 1, "\(faces)")
        let f = try XCTUnwrap(faces.first)
        XCTAssertEqual(f.angle, -35)
        XCTAssertEqual(f.pose, .frontal)
        XCTAssertEqual(Double(f.box.x + f.box.width / 2), centre.x, accuracy: 0.1 * 95)
        XCTAssertEqual(Double(f.box.y + f.box.height / 2), centre.y, accuracy: 0.1 * 95)
        XCTAssertEqual(Double(f.box.width), 95, accuracy: 0.2 * 95)
    }

    /// The sweep is off by default, and when on it adds no face to the bundled photos (each keeps its one
    /// face, found upright).
    func testDefaultIsOffAndTheBundledPhotosKeepTheirFaces() throws {
        XCTAssertEqual(try annotateDetector().rotations, [])
        var d = try annotateDetector()
        d.rotationParameters = d.members[0].parameters
        d.rotations = [12, -12, 22, -22]
        for name in ["skimage_astronaut.png", "skimage_camera.png"] {
            let img = try PNGCodec.readGray(path: repoRoot.appendingPathComponent("samples/photos/\(name)").path)
            let faces = d.detect(in: img)
            XCTAssertEqual(faces, try annotateDetector().detect(in: img), name)
            XCTAssertEqual(faces.map(\.angle), [0], name)
        }
    }
}
