// Dense layers on CPU devices (PoCL) with the operands read in place: no packing of the weights
// (hidden4's are 31 MB, which the packed path copied twice per batch). x [batch][in], w [in][out],
// dy [batch][out], all row-major.
//
// Every kernel owns blocks of 6 rows of its C and, for each of its 16-column panels, keeps 6 float16
// accumulators in registers fed by one float16 of B and 6 floats of A per step of k (as
// conv_implicit.cl). Work-item (g, h[, z]) takes panels [g*panels, ...), row blocks [h*perItem, ...)
// [and slice z of k]; the host measures which (panels, perItem) is fastest per shape. Each element is one
// fma chain over k in order, so every tiling gives the same bits.

#define FMA6(p) c0 = fma((float16)(a0[p]), bv, c0); c1 = fma((float16)(a1[p]), bv, c1); \
                c2 = fma((float16)(a2[p]), bv, c2); c3 = fma((float16)(a3[p]), bv, c3); \
                c4 = fma((float16)(a4[p]), bv, c4); c5 = fma((float16)(a5[p]), bv, c5)

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
        __global const float* a0 = x + (size_t)min(i0 + 0, M - 1) * K;
        __global const float* a1 = x + (size_t)min(i0 + 1, M - 1) * K;
        __global const float* a2 = x + (size_t)min(i0 + 2, M - 1) * K;
        __global const float* a3 = x + (size_t)min(i0 + 3, M - 1) * K;
        __global const float* a4 = x + (size_t)min(i0 + 4, M - 1) * K;
        __global const float* a5 = x + (size_t)min(i0 + 5, M - 1) * K;
        for (int jp = get_global_id(0) * panels; jp < jpEnd; ++jp) {
            const int j0 = jp * 16, safe = safe_rows(K, N, j0);
            float16 bvec = (float16)(0.0f);
            if (flags & 1) {
                float t[16];
                for (int j = 0; j < 16; ++j) t[j] = j0 + j < N ? bias[j0 + j] : 0.0f;
                bvec = vload16(0, t);
            }
            float16 c0 = (float16)(0.0f), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, bv;
            for (int p = k0; p < k1; ++p) {
                LOAD_B(bv, w, p, j0, N, N, safe);
                FMA6(p);
            }
            STORE6(0, c0); STORE6(1, c1); STORE6(2, c2); STORE6(3, c3); STORE6(4, c4); STORE6(5, c5);
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
        // a_r[p * M] = x[p][i0 + r] (rows past M repeat the last one, not stored)
        __global const float* a0 = x + min(i0 + 0, M - 1);
        __global const float* a1 = x + min(i0 + 1, M - 1);
        __global const float* a2 = x + min(i0 + 2, M - 1);
        __global const float* a3 = x + min(i0 + 3, M - 1);
        __global const float* a4 = x + min(i0 + 4, M - 1);
        __global const float* a5 = x + min(i0 + 5, M - 1);
        for (int jp = get_global_id(0) * panels; jp < jpEnd; ++jp) {
            const int j0 = jp * 16, safe = safe_rows(K, N, j0);
            float16 c0 = (float16)(0.0f), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, bv;
            for (int p = 0; p < K; ++p) {
                LOAD_B(bv, dy, p, j0, N, N, safe);
                FMA6((size_t)p * M);
            }
            STORE6(0, c0); STORE6(1, c1); STORE6(2, c2); STORE6(3, c3); STORE6(4, c4); STORE6(5, c5);
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
        __global const float* a0 = w + (size_t)min(i0 + 0, M - 1) * K;
        __global const float* a1 = w + (size_t)min(i0 + 1, M - 1) * K;
        __global const float* a2 = w + (size_t)min(i0 + 2, M - 1) * K;
        __global const float* a3 = w + (size_t)min(i0 + 3, M - 1) * K;
        __global const float* a4 = w + (size_t)min(i0 + 4, M - 1) * K;
        __global const float* a5 = w + (size_t)min(i0 + 5, M - 1) * K;
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
