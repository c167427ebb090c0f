// Direct convolution for layers with a small patch on CPU devices (net2's conv1: 1 channel, 3x3),
// where im2col + GEMM would copy each input value k*k times and run a GEMM with k = 9 that is bound by
// memory, not arithmetic. NHWC images, weights [k][k][Cin][Cout]. Limits (checked by the host):
// P = k*k*Cin <= MAXP, Cout <= MAXC, P*Cout <= MAXACC.
//
// Work-item z handles the output pixels [z*per, min(total, (z+1)*per)) of the B*Ho*Wo grid, all
// channels; the innermost loops run over contiguous output channels, so they vectorise.
// Work-groups of one work-item; global = ceil(total/per).

#define MAXP 32
#define MAXC 256
#define MAXACC 2048

// y = sum over the patch (in patch order, from zero, by fma) + b, then ReLU when relu != 0: the same
// operations in the same order as the GEMM kernels with their epilogue, so the same bits.
__kernel void conv_direct_forward(__global const float* restrict x, __global const float* restrict w,
                                  __global const float* restrict b, __global float* restrict y,
                                  const int H, const int W, const int Cin, const int k, const int Ho,
                                  const int Wo, const int Cout, const int total, const int per,
                                  const int relu)
{
    const int q0 = get_global_id(0) * per;
    const int q1 = min(total, q0 + per);
    if (q0 >= q1) return;
    const int P = k * k * Cin, run = k * Cin;
    float xs[MAXP], acc[MAXC];
    int row = q0 / Wo, ox = q0 - row * Wo;
    int n = row / Ho, oy = row - n * Ho;
    for (int q = q0; q < q1; ++q) {
        int p = 0;
        for (int ky = 0; ky < k; ++ky) {
            const __global float* s = x + ((size_t)(n * H + oy + ky) * W + ox) * Cin;
            for (int t = 0; t < run; ++t, ++p) xs[p] = s[t];
        }
        for (int co = 0; co < Cout; ++co) acc[co] = 0.0f;
        for (p = 0; p < P; ++p) {
            const float v = xs[p];
            const __global float* wp = w + (size_t)p * Cout;
            for (int co = 0; co < Cout; ++co) acc[co] = fma(v, wp[co], acc[co]);
        }
        __global float* o = y + (size_t)q * Cout;
        if (relu) {
            for (int co = 0; co < Cout; ++co) o[co] = fmax(acc[co] + b[co], 0.0f);
        } else {
            for (int co = 0; co < Cout; ++co) o[co] = acc[co] + b[co];
        }
        if (++ox == Wo) { ox = 0; if (++oy == Ho) { oy = 0; ++n; } }
    }
}

// Weight and bias gradients of chunk z: partial[z*P*Cout + p*Cout + co] = sum over the chunk's pixels
// (in order) of patch[p] * dy[co], and partial[chunks*P*Cout + z*Cout + co] = sum of dy[co];
// sum_slices (reduce.cl) then adds the chunks in order. dy is read once for both.
__kernel void conv_direct_backward_weights(__global const float* restrict x,
                                           __global const float* restrict dy,
                                           __global float* restrict partial, const int H, const int W,
                                           const int Cin, const int k, const int Ho, const int Wo,
                                           const int Cout, const int total, const int per,
                                           const int chunks)
{
    const int z = get_global_id(0);
    if (z >= chunks) return;
    const int q0 = z * per;
    const int q1 = min(total, q0 + per);
    const int P = k * k * Cin, run = k * Cin;
    float xs[MAXP], acc[MAXACC], bsum[MAXC];
    for (int e = 0; e < P * Cout; ++e) acc[e] = 0.0f;
    for (int co = 0; co < Cout; ++co) bsum[co] = 0.0f;
    if (q0 < q1) {
        int row = q0 / Wo, ox = q0 - row * Wo;
        int n = row / Ho, oy = row - n * Ho;
        for (int q = q0; q < q1; ++q) {
            const __global float* g = dy + (size_t)q * Cout;
            for (int co = 0; co < Cout; ++co) bsum[co] += g[co];
            int p = 0;
            for (int ky = 0; ky < k; ++ky) {
                const __global float* s = x + ((size_t)(n * H + oy + ky) * W + ox) * Cin;
                for (int t = 0; t < run; ++t, ++p) xs[p] = s[t];
            }
            for (p = 0; p < P; ++p) {
                const float v = xs[p];
                float* a = acc + p * Cout;
                for (int co = 0; co < Cout; ++co) a[co] = fma(v, g[co], a[co]);
            }
            if (++ox == Wo) { ox = 0; if (++oy == Ho) { oy = 0; ++n; } }
        }
    }
    __global float* d = partial + (size_t)z * P * Cout;
    for (int e = 0; e < P * Cout; ++e) d[e] = acc[e];
    __global float* bd = partial + ((size_t)chunks * P + z) * Cout;
    for (int co = 0; co < Cout; ++co) bd[co] = bsum[co];
}
