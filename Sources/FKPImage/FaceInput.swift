import FKPTensor

extension GrayImage {
    /// A face that is already cropped, as a net's input: area-resized to side x side, values in 0...1.
    public func faceInput(side: Int = Keypoints.side) -> [Float] {
        let img = width == side && height == side ? self : resizeArea(self, width: side, height: side)
        return img.pixels.map { $0 / 255 }
    }
}
