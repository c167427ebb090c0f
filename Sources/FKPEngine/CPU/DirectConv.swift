// Direct convolution for a grey input (Cin = 1) and a 3x3 kernel: net2's conv1. With K = 9 the im2col
// GEMM is all packing and stores; here each output pixel's Cout channels are a few SIMD16 vectors and
// the 9 taps are broadcast FMAs, with the image and weights streaming through L1.

typealias F16 = SIMD16<Float>

/// Whether the direct path applies to this shape.
func directConvApplies(_ s: ConvShape) -> Bool {
    s.inChannels == 1 && s.kernel == 3 && s.outChannels % 16 == 0
}

/// y[Ho,Wo,Cout] = relu?(conv(x[H,W,1], w[3,3,1,Cout]) + b) for one image.
@inline(__always)
func directConv3x3Forward(_ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>, _ b: UnsafePointer<Float>,
                          _ y: UnsafeMutablePointer<Float>, _ s: ConvShape, relu: Bool) {
    let groups = s.outChannels / 16, cout = s.outChannels
    let wv = UnsafeRawPointer(w), bv = UnsafeRawPointer(b)
    let zero = F16(repeating: 0)
    for g in 0..<groups {
        // the 9 taps' weights of this channel group stay in registers for the whole image
        @inline(__always) func tap(_ t: Int) -> F16 { wv.loadUnaligned(fromByteOffset: (t * cout + g * 16) * 4, as: F16.self) }
        let w0 = tap(0), w1 = tap(1), w2 = tap(2), w3 = tap(3), w4 = tap(4), w5 = tap(5), w6 = tap(6), w7 = tap(7), w8 = tap(8)
        let bias = bv.loadUnaligned(fromByteOffset: g * 64, as: F16.self)
        for oy in 0..<s.outHeight {
            let r0 = x + oy * s.width, r1 = r0 + s.width, r2 = r1 + s.width
            let out = UnsafeMutableRawPointer(y + oy * s.outWidth * cout + g * 16)
            for ox in 0..<s.outWidth {
                var a = bias
                a.addProduct(r0[ox], w0); a.addProduct(r0[ox + 1], w1); a.addProduct(r0[ox + 2], w2)
                a.addProduct(r1[ox], w3); a.addProduct(r1[ox + 1], w4); a.addProduct(r1[ox + 2], w5)
                a.addProduct(r2[ox], w6); a.addProduct(r2[ox + 1], w7); a.addProduct(r2[ox + 2], w8)
                if relu { a = a.replacing(with: zero, where: a .< zero) }
                out.storeBytes(of: a, toByteOffset: ox * cout * 4, as: F16.self)
            }
        }
    }
}

/// dw[3,3,1,Cout] += sum over pixels of x[tap] * dy, db[Cout] += sum of dy, for one image.
@inline(__always)
func directConv3x3WeightGradient(_ x: UnsafePointer<Float>, _ dy: UnsafePointer<Float>,
                                 _ dw: UnsafeMutablePointer<Float>, _ db: UnsafeMutablePointer<Float>, _ s: ConvShape) {
    let groups = s.outChannels / 16, cout = s.outChannels
    let dyv = UnsafeRawPointer(dy)
    for g in 0..<groups {
        var a0 = F16(repeating: 0), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0, a8 = a0, ab = a0
        for oy in 0..<s.outHeight {
            let r0 = x + oy * s.width, r1 = r0 + s.width, r2 = r1 + s.width
            let row = oy * s.outWidth * cout + g * 16
            for ox in 0..<s.outWidth {
                let d = dyv.loadUnaligned(fromByteOffset: (row + ox * cout) * 4, as: F16.self)
                ab += d
                a0.addProduct(r0[ox], d); a1.addProduct(r0[ox + 1], d); a2.addProduct(r0[ox + 2], d)
                a3.addProduct(r1[ox], d); a4.addProduct(r1[ox + 1], d); a5.addProduct(r1[ox + 2], d)
                a6.addProduct(r2[ox], d); a7.addProduct(r2[ox + 1], d); a8.addProduct(r2[ox + 2], d)
            }
        }
        var acc = (a0, a1, a2, a3, a4, a5, a6, a7, a8)
        withUnsafeBytes(of: &acc) { raw in
            for t in 0..<9 {
                let p = UnsafeMutableRawPointer(dw + t * cout + g * 16)
                p.storeBytes(of: p.loadUnaligned(as: F16.self) + raw.loadUnaligned(fromByteOffset: t * 64, as: F16.self), as: F16.self)
            }
        }
        let pb = UnsafeMutableRawPointer(db + g * 16)
        pb.storeBytes(of: pb.loadUnaligned(as: F16.self) + ab, as: F16.self)
    }
}

/// dx[H,W,1] = sum over taps of dy[pixel] . w[tap] (the transposed convolution), for one image.
@inline(__always)
func directConv3x3InputGradient(_ dy: UnsafePointer<Float>, _ w: UnsafePointer<Float>,
                                _ dx: UnsafeMutablePointer<Float>, _ s: ConvShape) {
    let cout = s.outChannels
    dx.update(repeating: 0, count: s.height * s.width)
    for oy in 0..<s.outHeight {
        for ox in 0..<s.outWidth {
            let d = dy + (oy * s.outWidth + ox) * cout
            for ky in 0..<3 {
                for kx in 0..<3 {
                    let wt = w + (ky * 3 + kx) * cout
                    var sum: Float = 0
                    for c in 0..<cout { sum += d[c] * wt[c] }
                    dx[(oy + ky) * s.width + ox + kx] += sum
                }
            }
        }
    }
}
