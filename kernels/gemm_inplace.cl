// GEMMs on CPU devices (PoCL) whose operands are read in place, never copied into panels: the
// convolutions (patches straight from the NHWC images; pack.cl's im2col path copied conv2's 138 MB of
// patches per batch of 128 and read them back) and the dense layers (hidden4's 31 MB of weights, which
// the packed path copied twice per batch). Valid convolution, stride 1, NHWC, weights [k][k][Cin][Cout];
// dense x [batch][in], w [in][out], dy [batch][out]; all row-major.
//
// Every kernel but conv_backward_weights owns blocks of 6 rows of its C and, for each of its 16-column
// panels, keeps 6 float16 accumulators in registers (12 of AVX2's 16 vector registers), fed by one
// float16 of B and one float from each of 6 row pointers per step of k. Work-item (g, h[, z]) takes
// panels [g*panels, ...), row blocks [h*perItem, ...) [and slice z of k]; the host measures which
// (panels, perItem) is fastest per op and shape (GemmTuner). Each element of C is one fma chain over k
// in order, so every tiling gives the same bits.
//
// conv_backward_weights: dw = patches^T . dy as outer products and db = column sums of dy, one slice of
// pixels per work-item.

#define FMA6(i) c0 = fma((float16)(a0[i]), bv, c0); c1 = fma((float16)(a1[i]), bv, c1); \
                c2 = fma((float16)(a2[i]), bv, c2); c3 = fma((float16)(a3[i]), bv, c3); \
                c4 = fma((float16)(a4[i]), bv, c4); c5 = fma((float16)(a5[i]), bv, c5)

// One pixel's outer product into the 6 rows (patch elements at offsets o0..o5 from xp).
#define OUTER6(bv) c0 = fma((float16)(xp[o0]), bv, c0); c1 = fma((float16)(xp[o1]), bv, c1); \
                   c2 = fma((float16)(xp[o2]), bv, c2); c3 = fma((float16)(xp[o3]), bv, c3); \
                   c4 = fma((float16)(xp[o4]), bv, c4); c5 = fma((float16)(xp[o5]), bv, c5)

// a0..a5: the block's rows i0..i0+5 of a row-major matrix (rows past M repeat the last one and are
// never stored).
#define ROWS6(base, ld) \
    __global const float* a0 = (base) + (size_t)min(i0 + 0, M - 1) * (ld);          \
    __global const float* a1 = (base) + (size_t)min(i0 + 1, M - 1) * (ld);          \
    __global const float* a2 = (base) + (size_t)min(i0 + 2, M - 1) * (ld);          \
    __global const float* a3 = (base) + (size_t)min(i0 + 3, M - 1) * (ld);          \
    __global const float* a4 = (base) + (size_t)min(i0 + 4, M - 1) * (ld);          \
    __global const float* a5 = (base) + (size_t)min(i0 + 5, M - 1) * (ld)

// Row r of the block (i0 + r < M) into C[., j0 .. j0+16), with bias and ReLU when flags ask; the last
// panel's columns past N are dropped.
#define STORE6(r, cr) do {                                                           \
        if (i0 + (r) < M) {                                                          \
            float16 v = (cr);                                                        \
            if (flags & 1) v += bvec;                                                \
            if (flags & 2) v = fmax(v, (float16)(0.0f));                             \
            __global float* dst = C + (size_t)(i0 + (r)) * N + j0;                   \
            if (j0 + 16 <= N) {                                                      \
                vstore16(v, 0, dst);                                                 \
            } else {                                                                 \
                float t[16];                                                         \
                vstore16(v, 0, t);                                                   \
                for (int j = 0; j < N - j0; ++j) dst[j] = t[j];                      \
            }                                                                        \
        }                                                                            \
    } while (0)

#define STORE_BLOCK() do {                                                           \
        STORE6(0, c0); STORE6(1, c1); STORE6(2, c2);                                 \
        STORE6(3, c3); STORE6(4, c4); STORE6(5, c5);                                 \
    } while (0)

// bvec = bias[j0 .. j0+16) (zeros past N) when flags ask for a bias.
#define LOAD_BIAS() do {                                                             \
        bvec = (float16)(0.0f);                                                      \
        if (flags & 1) {                                                             \
            float t[16];                                                             \
            for (int j = 0; j < 16; ++j) t[j] = j0 + j < N ? bias[j0 + j] : 0.0f;    \
            bvec = vload16(0, t);                                                    \
        }                                                                            \
    } while (0)

// Columns j0 .. j0+16 of row p of a row-major [.][ldb] matrix with `cols` columns: a plain vector load
// while it stays inside the matrix (columns past `cols` are read from the next row and never stored),
// else element by element with zeros.
#define LOAD_B(bv, b, p, j0, cols, ldb, safe) do {                                   \
        if ((p) < (safe)) {                                                          \
            bv = vload16(0, (b) + (size_t)(p) * (ldb) + (j0));                       \
        } else {                                                                     \
            float t_[16];                                                            \
            for (int j_ = 0; j_ < 16; ++j_)                                          \
                t_[j_] = (j0) + j_ < (cols) ? (b)[(size_t)(p) * (ldb) + (j0) + j_] : 0.0f; \
            bv = vload16(0, t_);                                                     \
        }                                                                            \
    } while (0)

// The first row p at which a 16-wide load at column j0 would run past the end of a rows x ldb matrix.
inline int safe_rows(const int rows, const int ldb, const int j0)
{
    const long last = (long)rows * ldb - j0 - 16;  // the last start index that fits
    return last < 0 ? 0 : min(rows, (int)(last / ldb) + 1);
}

// ---- convolution
// y[M = B*Ho*Wo, N = Cout] = patches(x) . w (+ bias, ReLU). B: packed w, K = k*k*Cin.
// global = (ceil(Npad/16 / panels), ceil(ceil(M/6) / perItem)), work-groups of 1.
__kernel __attribute__((reqd_work_group_size(1, 1, 1)))
void conv_forward(__global const float* restrict x, __global const float* restrict B,
                  __global const float* restrict bias, __global float* restrict C,
                  const int H, const int W, const int Cin, const int k, const int Ho, const int Wo,
                  const int M, const int N, const int flags, const int panels, const int perItem)
{
    const int K = k * k * Cin, run = k * Cin;
    const int jpEnd = min((N + 15) / 16, (int)get_global_id(0) * panels + panels);
    const int blockEnd = min((M + 5) / 6, (int)get_global_id(1) * perItem + perItem);
    for (int blk = get_global_id(1) * perItem; blk < blockEnd; ++blk) {
        const int i0 = blk * 6;
        int base[6];
        for (int r = 0; r < 6; ++r) {
            const int i = min(i0 + r, M - 1);  // rows past M repeat the last one (not stored)
            const int n = i / (Ho * Wo), rem = i - n * Ho * Wo, oy = rem / Wo, ox = rem - oy * Wo;
            base[r] = ((n * H + oy) * W + ox) * Cin;
        }
        for (int jp = get_global_id(0) * panels; jp < jpEnd; ++jp) {
            const int j0 = jp * 16;
            float16 bvec;
            LOAD_BIAS();
            float16 c0 = (float16)(0.0f), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0;
            __global const float* b = B + (size_t)jp * K * 16;
            for (int ky = 0; ky < k; ++ky, b += run * 16) {
                const int off = ky * W * Cin;
                __global const float* a0 = x + base[0] + off;
                __global const float* a1 = x + base[1] + off;
                __global const float* a2 = x + base[2] + off;
                __global const float* a3 = x + base[3] + off;
                __global const float* a4 = x + base[4] + off;
                __global const float* a5 = x + base[5] + off;
                for (int p = 0; p < run; ++p) {
                    const float16 bv = vload16(p, b);
                    FMA6(p);
                }
            }
            STORE_BLOCK();
        }
    }
}

// dx[M = B*H*W, N = Cin] = full correlation of dy with the flipped kernel: row (n, y, x) of A is, for
// each (ky, kx), dy[n, y-ky, x-kx, 0..Cout) or Cout zeros outside dy. B: pack_b_conv_dx's panels (row
// (ky, kx, co), column ci). zeros: at least Cout floats of 0. global and tiling as conv_forward.
__kernel __attribute__((reqd_work_group_size(1, 1, 1)))
void conv_backward_input(__global const float* restrict dy, __global const float* restrict B,
                         __global const float* restrict zeros, __global float* restrict C,
                         const int H, const int W, const int Cout, const int k, const int Ho, const int Wo,
                         const int M, const int N, const int panels, const int perItem)
{
    const int K = k * k * Cout, flags = 0;
    const float16 bvec = (float16)(0.0f);
    const int jpEnd = min((N + 15) / 16, (int)get_global_id(0) * panels + panels);
    const int blockEnd = min((M + 5) / 6, (int)get_global_id(1) * perItem + perItem);
    for (int blk = get_global_id(1) * perItem; blk < blockEnd; ++blk) {
        const int i0 = blk * 6;
        int img[6], py[6], px[6];
        for (int r = 0; r < 6; ++r) {
            const int i = min(i0 + r, M - 1);
            img[r] = i / (H * W);
            const int rem = i - img[r] * H * W;
            py[r] = rem / W;
            px[r] = rem - py[r] * W;
        }
        for (int jp = get_global_id(0) * panels; jp < jpEnd; ++jp) {
            const int j0 = jp * 16;
            float16 c0 = (float16)(0.0f), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0;
            __global const float* b = B + (size_t)jp * K * 16;
            for (int ky = 0; ky < k; ++ky) {
                for (int kx = 0; kx < k; ++kx, b += Cout * 16) {
                    __global const float* a[6];
                    for (int r = 0; r < 6; ++r) {
                        const int oy = py[r] - ky, ox = px[r] - kx;
                        a[r] = oy >= 0 && oy < Ho && ox >= 0 && ox < Wo
                            ? dy + ((size_t)(img[r] * Ho + oy) * Wo + ox) * Cout : zeros;
                    }
                    __global const float* a0 = a[0];
                    __global const float* a1 = a[1];
                    __global const float* a2 = a[2];
                    __global const float* a3 = a[3];
                    __global const float* a4 = a[4];
                    __global const float* a5 = a[5];
                    for (int p = 0; p < Cout; ++p) {
                        const float16 bv = vload16(p, b);
                        FMA6(p);
                    }
                }
            }
            STORE_BLOCK();
        }
    }
}

#define PIXEL_BLOCK 256

// Slice z of the weight and bias gradients, over the pixels q in [z*chunk, min(pixels, (z+1)*chunk)):
// partial[z*K*N + p*N + co] = sum of patch(q)[p] * dy[q][co] (dw[K = k*k*Cin, N = Cout], N a multiple
// of 16) and partial[slices*K*N + z*N + co] = sum of dy[q][co] (db); reduce.cl's sum_slices then adds
// the slices in order. The pixels go in blocks of PIXEL_BLOCK; within a block every 6x16 tile of dw is
// loaded, fed the block's outer products (one float16 of dy and 6 floats of the patch per pixel) and
// stored back, so dy's block stays in cache while all tiles use it. The tiles of the last 6 rows also
// sum dy for db (fma by 1 would add the same). global = slices, work-groups of 1. Each element is one
// chain over the slice's pixels in order.
__kernel __attribute__((reqd_work_group_size(1, 1, 1)))
void conv_backward_weights(__global const float* restrict x, __global const float* restrict dy,
                           __global float* restrict partial, const int H, const int W, const int Cin,
                           const int k, const int Ho, const int Wo, const int pixels, const int N,
                           const int chunk, const int slices)
{
    const int z = get_global_id(0);
    const int K = k * k * Cin, run = k * Cin;
    const int q0 = z * chunk, q1 = min(pixels, q0 + chunk);
    __global float* out = partial + (size_t)z * K * N;
    __global float* outBias = partial + (size_t)slices * K * N + (size_t)z * N;
    int base[PIXEL_BLOCK];
    for (int qb = q0; qb < q1; qb += PIXEL_BLOCK) {
        const int count = min(q1 - qb, PIXEL_BLOCK);
        for (int t = 0; t < count; ++t) {
            const int q = qb + t;
            const int n = q / (Ho * Wo), rem = q - n * Ho * Wo, oy = rem / Wo, ox = rem - oy * Wo;
            base[t] = ((n * H + oy) * W + ox) * Cin;
        }
        for (int i0 = 0; i0 < K; i0 += 6) {
            // Patch element p = (ky, r): image offset ky*W*Cin + r from the patch's corner.
            int o[6];
            for (int r = 0; r < 6; ++r) {
                const int p = min(i0 + r, K - 1);
                o[r] = (p / run) * W * Cin + p % run;
            }
            const int o0 = o[0], o1 = o[1], o2 = o[2], o3 = o[3], o4 = o[4], o5 = o[5];
            const bool last = i0 + 6 >= K;
            for (int j0 = 0; j0 < N; j0 += 16) {
                __global float* dst = out + (size_t)i0 * N + j0;
                float16 c0 = (float16)(0.0f), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, cb = c0;
                if (qb != q0) {
                    c0 = vload16(0, dst);
                    if (i0 + 1 < K) c1 = vload16(0, dst + N);
                    if (i0 + 2 < K) c2 = vload16(0, dst + 2 * N);
                    if (i0 + 3 < K) c3 = vload16(0, dst + 3 * N);
                    if (i0 + 4 < K) c4 = vload16(0, dst + 4 * N);
                    if (i0 + 5 < K) c5 = vload16(0, dst + 5 * N);
                    if (last) cb = vload16(0, outBias + j0);
                }
                __global const float* d = dy + (size_t)qb * N + j0;
                if (last) {
                    for (int t = 0; t < count; ++t) {
                        const float16 bv = vload16(0, d + (size_t)t * N);
                        __global const float* xp = x + base[t];
                        OUTER6(bv);
                        cb += bv;
                    }
                    vstore16(cb, 0, outBias + j0);
                } else {
                    for (int t = 0; t < count; ++t) {
                        const float16 bv = vload16(0, d + (size_t)t * N);
                        __global const float* xp = x + base[t];
                        OUTER6(bv);
                    }
                }
                vstore16(c0, 0, dst);
                if (i0 + 1 < K) vstore16(c1, 0, dst + N);
                if (i0 + 2 < K) vstore16(c2, 0, dst + 2 * N);
                if (i0 + 3 < K) vstore16(c3, 0, dst + 3 * N);
                if (i0 + 4 < K) vstore16(c4, 0, dst + 4 * N);
                if (i0 + 5 < K) vstore16(c5, 0, dst + 5 * N);
            }
        }
    }
}

// ---- dense layers

// Slice z of y[M = batch, N = out] = x . w over k in [z*kChunk, min(K, (z+1)*kChunk)), to C + z*M*N;
// with one slice, + bias and ReLU as flags ask (bit 0, bit 1). global = (panel groups, row-block runs,
// slices).
__kernel __attribute__((reqd_work_group_size(1, 1, 1)))
void dense_forward(__global const float* restrict x, __global const float* restrict w,
                   __global const float* restrict bias, __global float* restrict C, const int M,
                   const int N, const int K, const int kChunk, const int flags, const int panels,
                   const int perItem)
{
    const int z = get_global_id(2);
    const int k0 = z * kChunk, k1 = min(K, k0 + kChunk);
    C += (size_t)z * M * N;
    const int jpEnd = min((N + 15) / 16, (int)get_global_id(0) * panels + panels);
    const int blockEnd = min((M + 5) / 6, (int)get_global_id(1) * perItem + perItem);
    for (int blk = get_global_id(1) * perItem; blk < blockEnd; ++blk) {
        const int i0 = blk * 6;
        ROWS6(x, K);
        for (int jp = get_global_id(0) * panels; jp < jpEnd; ++jp) {
            const int j0 = jp * 16, safe = safe_rows(K, N, j0);
            float16 bvec;
            LOAD_BIAS();
            float16 c0 = (float16)(0.0f), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, bv;
            for (int p = k0; p < k1; ++p) {
                LOAD_B(bv, w, p, j0, N, N, safe);
                FMA6(p);
            }
            STORE_BLOCK();
        }
    }
}

// dw[M = in, N = out] = x^T . dy over the K = batch rows: A[i][p] = x[p*M + i], so the 6 rows of a
// block are 6 neighbouring floats of each row of x. global = (panel groups, row-block runs).
__kernel __attribute__((reqd_work_group_size(1, 1, 1)))
void dense_backward_weights(__global const float* restrict x, __global const float* restrict dy,
                            __global float* restrict C, const int M, const int N, const int K,
                            const int panels, const int perItem)
{
    const int flags = 0;
    const float16 bvec = (float16)(0.0f);
    const int jpEnd = min((N + 15) / 16, (int)get_global_id(0) * panels + panels);
    const int blockEnd = min((M + 5) / 6, (int)get_global_id(1) * perItem + perItem);
    for (int blk = get_global_id(1) * perItem; blk < blockEnd; ++blk) {
        const int i0 = blk * 6;
        // a_r[p * M] = x[p][i0 + r]: columns of x, so the "rows" are neighbouring floats (ld 1).
        ROWS6(x, 1);
        for (int jp = get_global_id(0) * panels; jp < jpEnd; ++jp) {
            const int j0 = jp * 16, safe = safe_rows(K, N, j0);
            float16 c0 = (float16)(0.0f), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, bv;
            for (int p = 0; p < K; ++p) {
                LOAD_B(bv, dy, p, j0, N, N, safe);
                FMA6((size_t)p * M);
            }
            STORE_BLOCK();
        }
    }
}

// dx[batch][in] = dy . w^T, computed as its transpose dx^T[M = in, N = batch] = w . dy^T: A = the rows
// of w in place, B = dy^T packed by pack_b_t ([Npad/16][K = out][16]); each result (i, j) is stored to
// dx[j*M + i]. global = (panel groups, row-block runs).
__kernel __attribute__((reqd_work_group_size(1, 1, 1)))
void dense_backward_input(__global const float* restrict w, __global const float* restrict B,
                          __global float* restrict dx, const int M, const int N, const int K,
                          const int panels, const int perItem)
{
    const int jpEnd = min((N + 15) / 16, (int)get_global_id(0) * panels + panels);
    const int blockEnd = min((M + 5) / 6, (int)get_global_id(1) * perItem + perItem);
    for (int blk = get_global_id(1) * perItem; blk < blockEnd; ++blk) {
        const int i0 = blk * 6;
        ROWS6(w, K);
        for (int jp = get_global_id(0) * panels; jp < jpEnd; ++jp) {
            const int j0 = jp * 16;
            float16 c0 = (float16)(0.0f), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0;
            __global const float* b = B + (size_t)jp * K * 16;
            for (int p = 0; p < K; ++p) {
                const float16 bv = vload16(p, b);
                FMA6(p);
            }
            float t[6][16];
            vstore16(c0, 0, t[0]); vstore16(c1, 0, t[1]); vstore16(c2, 0, t[2]);
            vstore16(c3, 0, t[3]); vstore16(c4, 0, t[4]); vstore16(c5, 0, t[5]);
            const int rows = min(6, M - i0);
            for (int j = 0; j < min(16, N - j0); ++j) {
                __global float* dst = dx + (size_t)(j0 + j) * M + i0;
                for (int r = 0; r < rows; ++r) dst[r] = t[r][j];
            }
        }
    }
}
