import ArgumentParser
import FKPDetect
import FKPIngest
import FKPTensor
import Foundation

struct CalibrateCrop: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "calibrate-crop",
        abstract: "Measure how detector boxes map to the nets' face framing, on training faces.",
        discussion: """
        Runs the face detector on the 96x96 faces of a training CSV and prints the mean offset and size of the training frame relative to the box found (in box widths), with their spread. annotate crops each detected face this way; the built-in mapping came from ../shared/data/fkd/training.csv.
        """)

    @Argument(help: "Training CSV.") var data: String
    @Option(help: "Faces to use.") var limit: Int = 1000
    @Option(help: "Haar cascade XML.") var cascade: String = HaarCascade.defaultPath

    func run() throws {
        let faces = try KaggleCSV.read(path: data).faces
        let c = try HaarCascade(contentsOf: cascade)
        let cal = CropMapping.calibrate(faces.images, cascade: c, limit: limit)
        print(String(format: "faces %d, one box found in %d; mapping: %@; spread dx %.4f dy %.4f size %.4f",
                     cal.faces, cal.detected, cal.mapping.description, cal.spread.dx, cal.spread.dy, cal.spread.size))
    }
}
