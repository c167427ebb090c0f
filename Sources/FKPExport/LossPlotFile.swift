import FKPImage

extension LossPlot {
    /// Renders the runs and writes the PNG atomically.
    public static func write(_ runs: [LossHistory], to path: String, title: String) throws {
        try PNGCodec.writeRGB(render(runs, title: title).image, path: path)
    }
}
