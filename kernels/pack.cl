// Packing kernels: they copy the operands of a GEMM into the panel layouts read by
// gemm_register.cl and gemm_tiled.cl, and build convolution patches on the way (implicit im2col),
// so no separate patch matrix is ever materialised.
//
//   packed A: [Mpad/8][Kpad][8]    element (i, p) at ((i/8)*Kpad + p)*8 + i%8
//   packed B: [Npad/16][Kpad][16]  element (p, j) at ((j/16)*Kpad + p)*16 + j%16
//
// Everything past M, N or K (up to Mpad, Npad, Kpad) is written as zero. Each work-item packs one
// row of A (or one column of B), so neighbouring work-items write neighbouring words. Launches are
// rounded up to the work-group size; the extra work-items return at once.
// Images are NHWC; convolution weights are [k][k][Cin][Cout].

// op(A)(i, p) = trans ? src[p*ld + i] : src[i*ld + p]. global = (Mpad rounded up, chunks): work-item
// (i, z) packs p in [z*chunk, min(Kpad, (z+1)*chunk)).
__kernel void pack_a(__global const float* restrict src, const int ld, const int trans,
                     const int M, const int K, const int Mpad, const int Kpad, const int chunk,
                     __global float* restrict dst)
{
    const int i = get_global_id(0);
    if (i >= Mpad) return;
    const int p0 = get_global_id(1) * chunk;
    const int p1 = min(Kpad, p0 + chunk);
    __global float* d = dst + (size_t)(i >> 3) * Kpad * 8 + (i & 7);
    if (i >= M) {
        for (int p = p0; p < p1; ++p) d[(size_t)p * 8] = 0.0f;
    } else if (trans) {
        for (int p = p0; p < p1; ++p) d[(size_t)p * 8] = p < K ? src[(size_t)p * ld + i] : 0.0f;
    } else {
        for (int p = p0; p < p1; ++p) d[(size_t)p * 8] = p < K ? src[(size_t)i * ld + p] : 0.0f;
    }
}

// op(B)(p, j) = trans ? src[j*ld + p] : src[p*ld + j].
// Not transposed: work-item (p, jp) copies 16 consecutive words of row p into panel jp (vector load
// and store when the panel is full). global = (Kpad rounded up, Npad/16).
__kernel void pack_b(__global const float* restrict src, const int ld, const int K, const int N,
                     const int Kpad, __global float* restrict dst)
{
    const int p = get_global_id(0);
    const int jp = get_global_id(1);
    if (p >= Kpad) return;
    __global float* d = dst + ((size_t)jp * Kpad + p) * 16;
    const int j0 = jp * 16;
    if (p < K && j0 + 16 <= N) {
        vstore16(vload16(0, src + (size_t)p * ld + j0), 0, d);
    } else {
        for (int c = 0; c < 16; ++c) d[c] = (p < K && j0 + c < N) ? src[(size_t)p * ld + j0 + c] : 0.0f;
    }
}

// Transposed: work-item j packs column j; global = (Npad rounded up, chunks), work-item (j, z)
// covering p in [z*chunk, min(Kpad, (z+1)*chunk)).
__kernel void pack_b_t(__global const float* restrict src, const int ld, const int K, const int N,
                       const int Npad, const int Kpad, const int chunk, __global float* restrict dst)
{
    const int j = get_global_id(0);
    if (j >= Npad) return;
    const int p0 = get_global_id(1) * chunk;
    const int p1 = min(Kpad, p0 + chunk);
    __global float* d = dst + (size_t)(j >> 4) * Kpad * 16 + (j & 15);
    if (j >= N) {
        for (int p = p0; p < p1; ++p) d[(size_t)p * 16] = 0.0f;
    } else {
        for (int p = p0; p < p1; ++p) d[(size_t)p * 16] = p < K ? src[(size_t)j * ld + p] : 0.0f;
    }
}

// Convolution forward, A = patches: row i = (n, oy, ox) of B*Ho*Wo, column p = (ky, kx, c) of k*k*C,
// value x[n, oy+ky, ox+kx, c]. global = (Mpad rounded up).
__kernel void pack_a_im2col(__global const float* restrict x, const int H, const int W, const int C,
                            const int k, const int Ho, const int Wo, const int M, const int Mpad,
                            const int Kpad, __global float* restrict dst)
{
    const int i = get_global_id(0);
    if (i >= Mpad) return;
    __global float* d = dst + (size_t)(i >> 3) * Kpad * 8 + (i & 7);
    int p = 0;
    if (i < M) {
        const int pixels = Ho * Wo;
        const int n = i / pixels;
        const int r = i - n * pixels;
        const int oy = r / Wo;
        const int ox = r - oy * Wo;
        const int run = k * C;  // one kernel row of a patch is contiguous in NHWC
        for (int ky = 0; ky < k; ++ky) {
            const __global float* s = x + ((size_t)(n * H + oy + ky) * W + ox) * C;
            for (int q = 0; q < run; ++q, ++p) d[(size_t)p * 8] = s[q];
        }
    }
    for (; p < Kpad; ++p) d[(size_t)p * 8] = 0.0f;
}

// Convolution weight gradient, A = patches transposed: row i = (ky, kx, c) of k*k*C, column
// p = (n, oy, ox) of B*Ho*Wo. Work-item p packs the whole column p. global = (Kpad rounded up).
__kernel void pack_a_im2col_t(__global const float* restrict x, const int H, const int W,
                              const int C, const int k, const int Ho, const int Wo, const int P,
                              const int M, const int Mpad, const int Kpad,
                              __global float* restrict dst)
{
    const int p = get_global_id(0);
    if (p >= Kpad) return;
    int i = 0;
    if (p < P) {
        const int pixels = Ho * Wo;
        const int n = p / pixels;
        const int r = p - n * pixels;
        const int oy = r / Wo;
        const int ox = r - oy * Wo;
        const int run = k * C;
        for (int ky = 0; ky < k; ++ky) {
            const __global float* s = x + ((size_t)(n * H + oy + ky) * W + ox) * C;
            for (int q = 0; q < run; ++q, ++i)
                dst[((size_t)(i >> 3) * Kpad + p) * 8 + (i & 7)] = s[q];
        }
    }
    for (; i < Mpad; ++i) dst[((size_t)(i >> 3) * Kpad + p) * 8 + (i & 7)] = 0.0f;
}

// Convolution input gradient as a "full" correlation: row i = (n, y, x) of B*H*W, column
// p = (ky, kx, co) of k*k*Cout, value dy[n, y-ky, x-kx, co] (zero outside the output).
// global = (Mpad rounded up).
__kernel void pack_a_conv_dx(__global const float* restrict dy, const int H, const int W,
                             const int Cout, const int k, const int Ho, const int Wo, const int M,
                             const int Mpad, const int Kpad, __global float* restrict dst)
{
    const int i = get_global_id(0);
    if (i >= Mpad) return;
    __global float* d = dst + (size_t)(i >> 3) * Kpad * 8 + (i & 7);
    int p = 0;
    if (i < M) {
        const int pixels = H * W;
        const int n = i / pixels;
        const int r = i - n * pixels;
        const int y = r / W;
        const int x = r - y * W;
        for (int ky = 0; ky < k; ++ky) {
            const int oy = y - ky;
            for (int kx = 0; kx < k; ++kx) {
                const int ox = x - kx;
                if (oy >= 0 && oy < Ho && ox >= 0 && ox < Wo) {
                    const __global float* s = dy + ((size_t)(n * Ho + oy) * Wo + ox) * Cout;
                    for (int co = 0; co < Cout; ++co, ++p) d[(size_t)p * 8] = s[co];
                } else {
                    for (int co = 0; co < Cout; ++co, ++p) d[(size_t)p * 8] = 0.0f;
                }
            }
        }
    }
    for (; p < Kpad; ++p) d[(size_t)p * 8] = 0.0f;
}

// Convolution input gradient, B = weights rearranged: row p = (ky, kx, co), column j = ci,
// value w[ky][kx][ci][co]. global = (Npad rounded up).
__kernel void pack_b_conv_dx(__global const float* restrict w, const int Cin, const int Cout,
                             const int k, const int Npad, const int Kpad,
                             __global float* restrict dst)
{
    const int j = get_global_id(0);
    if (j >= Npad) return;
    __global float* d = dst + (size_t)(j >> 4) * Kpad * 16 + (j & 15);
    int p = 0;
    if (j < Cin) {
        for (int kk = 0; kk < k * k; ++kk) {
            const __global float* s = w + ((size_t)kk * Cin + j) * Cout;
            for (int co = 0; co < Cout; ++co, ++p) d[(size_t)p * 16] = s[co];
        }
    }
    for (; p < Kpad; ++p) d[(size_t)p * 16] = 0.0f;
}
