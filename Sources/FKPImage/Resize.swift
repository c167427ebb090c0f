/// Resizes a grey image, each axis on its own:
/// - shrinking (or keeping) an axis averages areas: each output pixel is the exact area-weighted mean
///   of the input pixels it covers, partly covered pixels weighted by their overlap (OpenCV INTER_AREA);
/// - enlarging an axis interpolates linearly between pixel centres (output centre `j + 0.5` maps to
///   input `(j + 0.5) * in / out - 0.5`, clamped at the borders).
/// Separable: rows first (to the output width), then columns, with weights computed once per axis.
public func resizeArea(_ img: GrayImage, width: Int, height: Int) -> GrayImage {
    precondition(width >= 0 && height >= 0, "resizeArea: negative size \(width)x\(height)")
    precondition(img.pixels.count == img.width * img.height, "resizeArea: pixel count does not match \(img.width)x\(img.height)")
    if img.width == width && img.height == height { return img }
    if width == 0 || height == 0 { return GrayImage(width: width, height: height, pixels: []) }
    precondition(img.width > 0 && img.height > 0, "resizeArea: empty input image")

    let (inW, inH) = (img.width, img.height)
    let hw = ResampleTaps(from: inW, to: width)
    let vw = ResampleTaps(from: inH, to: height)

    // Horizontal pass: inH rows of `width` values.
    var tmp = [Float](repeating: 0, count: inH * width)
    img.pixels.withUnsafeBufferPointer { srcBuf in
        tmp.withUnsafeMutableBufferPointer { dstBuf in
            hw.first.withUnsafeBufferPointer { first in
                hw.offset.withUnsafeBufferPointer { offset in
                    hw.weight.withUnsafeBufferPointer { weight in
                        let src = srcBuf.baseAddress!, dst = dstBuf.baseAddress!, wt = weight.baseAddress!
                        for y in 0..<inH {
                            let row = src + y * inW, out = dst + y * width
                            for x in 0..<width {
                                let p = row + first[x]
                                let lo = offset[x], n = offset[x + 1] - lo
                                var s: Float = 0
                                for t in 0..<n { s += p[t] * wt[lo + t] }
                                out[x] = s
                            }
                        }
                    }
                }
            }
        }
    }

    // Vertical pass: each output row is a weighted sum of whole rows of tmp (contiguous, vectorises).
    var out = [Float](repeating: 0, count: width * height)
    tmp.withUnsafeBufferPointer { srcBuf in
        out.withUnsafeMutableBufferPointer { dstBuf in
            let src = srcBuf.baseAddress!, dst = dstBuf.baseAddress!
            for y in 0..<height {
                let o = dst + y * width
                let lo = vw.offset[y], n = vw.offset[y + 1] - lo
                for t in 0..<n {
                    let r = src + (vw.first[y] + t) * width
                    let w = vw.weight[lo + t]
                    for x in 0..<width { o[x] += r[x] * w }
                }
            }
        }
    }
    return GrayImage(width: width, height: height, pixels: out)
}

/// Resampling weights of one axis, `n` input pixels to `m` output pixels: output `j` is the sum over
/// `t < offset[j+1] - offset[j]` of `input[first[j] + t] * weight[offset[j] + t]`; each output's weights
/// sum to 1.
struct ResampleTaps {
    var first: [Int] = []
    var offset: [Int] = [0]
    var weight: [Float] = []

    init(from n: Int, to m: Int) {
        precondition(n > 0 && m > 0)
        first.reserveCapacity(m)
        offset.reserveCapacity(m + 1)
        if n >= m {
            // Area: measured in units of 1/m input pixel, output j covers [j*n, (j+1)*n) and input i covers
            // [i*m, (i+1)*m): integer overlaps, so the weights (overlap / n) are exact fractions.
            for j in 0..<m {
                let a = j * n, b = (j + 1) * n
                let i0 = a / m, i1 = (b - 1) / m
                first.append(i0)
                for i in i0...i1 {
                    let overlap = min(b, (i + 1) * m) - max(a, i * m)
                    weight.append(Float(Double(overlap) / Double(n)))
                }
                offset.append(weight.count)
            }
        } else {
            // Bilinear between pixel centres.
            for j in 0..<m {
                let c = (Double(2 * j + 1) * Double(n) - Double(m)) / Double(2 * m)  // (j + 0.5) * n / m - 0.5
                let i0 = Int(c.rounded(.down))
                let t = c - Double(i0)
                if i0 < 0 {
                    first.append(0); weight.append(1)
                } else if i0 >= n - 1 {
                    first.append(n - 1); weight.append(1)
                } else if t == 0 {
                    first.append(i0); weight.append(1)
                } else {
                    first.append(i0); weight.append(Float(1 - t)); weight.append(Float(t))
                }
                offset.append(weight.count)
            }
        }
    }
}
