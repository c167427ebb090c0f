import ArgumentParser
import FKPExport
import FKPTensor
import Foundation

struct Plot: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Plot train (dashed) and valid (solid) loss per epoch of one or more runs, log scale.",
        discussion: """
        Reads the history CSVs that `fkp-batch train` writes next to each model and draws them in one picture, one colour per run, named by file: the tutorial's way of showing overfitting (net1 vs net2) and the value of augmentation (net2 vs net3).

        Example:
          fkp-batch plot net1.history.csv net2.history.csv -o losses.png
        """)

    @Argument(help: "History CSV files (epoch,train_loss,valid_loss,...).") var histories: [String]
    @Option(name: [.short, .customLong("output")], help: "PNG to write.") var output: String = "losses.png"
    @Option(help: "Title above the plot.") var title: String = "loss per epoch"

    func validate() throws {
        guard !histories.isEmpty else { throw ValidationError("give at least one history CSV") }
        guard output.lowercased().hasSuffix(".png") else { throw ValidationError("-o must name a .png file") }
    }

    func run() throws {
        try OutputGuard(inputs: histories).check(file: output)
        let runs = try histories.map { try LossHistory.read(path: $0) }
        try LossPlot.write(runs, to: output, title: title)
        Log.info("wrote \(output) (\(runs.count) run\(runs.count == 1 ? "" : "s"))")
    }
}
