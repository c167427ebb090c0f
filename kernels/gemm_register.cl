// GEMM for CPU-like devices (PoCL): C[M,N] = A[M,K] . B[K,N] from packed panels.
//
// A is packed as [Mpad/8][K][8] and B as [Npad/16][K][16] (see pack.cl; rows/columns past M/N are
// zero). Each work-item owns an 8x16 block of C and keeps it in eight float16 registers, streaming
// one float8 of A and one float16 of B per step of k. Work-groups are 1x1x1: PoCL then compiles
// one wide, unrolled work-item, which is what reached ~200 GFLOP/s on a 2-core AVX-512 machine.
//
// Each work-item owns one 16-column panel of B and a run of panelsPerItem 8-row panels of A (PoCL pays
// about a microsecond per work-group, so one 8x16 block per work-item would be mostly overhead).
// global = (Npad/16, ceil(Mpad/8 / panelsPerItem), splits). Split z covers k in
// [z*kChunk, min(K, (z+1)*kChunk)) and writes its partial product to C + z*M*ldc (summed in a fixed
// order by sum_slices in reduce.cl); long k ranges are split so that the panels stay in cache.
// flags: bit 0 adds bias[j], bit 1 applies ReLU (only used with one split).
//
// gemm_register_4 is the same with a 4x16 block (half of an A panel, four float16 accumulators): on
// AVX2 the 8x16 block's accumulators alone fill the 16 vector registers. Which one runs, and with how
// many panels per work-item, is measured per shape by the host (GemmTuner). Both compute every
// element of C by the same chain of fma over k, so they give the same bits.

#define MR 8
#define NR 16

#define FMA_ROW(c, s) c = fma((float16)(av.s), bv, c)

#define LOAD_BIAS() do {                                                             \
        if (flags & 1) {                                                             \
            if (full) {                                                              \
                bvec = vload16(0, bias + j0);                                        \
            } else {                                                                 \
                float t[16];                                                         \
                for (int j = 0; j < 16; ++j) t[j] = (j0 + j < N) ? bias[j0 + j] : 0.0f; \
                bvec = vload16(0, t);                                                \
            }                                                                        \
        }                                                                            \
    } while (0)

// What both kernels set up: this work-item's B panel (jp), split (z), k range, run of row blocks
// [blockBegin, blockEnd) of ROWS rows each, bias vector and slice of C.
#define PROLOGUE(ROWS)                                                               \
    const int jp = get_global_id(0);                                                 \
    const int z = get_global_id(2);                                                  \
    const int blockBegin = get_global_id(1) * panelsPerItem;                         \
    const int blockEnd = min((M + (ROWS) - 1) / (ROWS), blockBegin + panelsPerItem); \
    const int k0 = z * kChunk;                                                       \
    const int k1 = min(K, k0 + kChunk);                                              \
    const __global float* b = B + (size_t)jp * K * NR;                               \
    const int j0 = jp * NR;                                                          \
    const bool full = j0 + NR <= N;                                                  \
    float16 bvec = (float16)(0.0f);                                                  \
    LOAD_BIAS();                                                                     \
    __global float* Cz = C + (size_t)z * M * ldc

#define STORE_ROW(r, cr) do {                                                        \
        const int i = i0 + (r);                                                      \
        if (i < M) {                                                                 \
            float16 v = (cr);                                                        \
            if (flags & 1) v += bvec;                                                \
            if (flags & 2) v = fmax(v, (float16)(0.0f));                             \
            __global float* dst = Cz + (size_t)i * ldc + j0;                         \
            if (full) {                                                              \
                vstore16(v, 0, dst);                                                 \
            } else {                                                                 \
                float t[16];                                                         \
                vstore16(v, 0, t);                                                   \
                for (int j = 0; j < N - j0; ++j) dst[j] = t[j];                      \
            }                                                                        \
        }                                                                            \
    } while (0)

__kernel __attribute__((reqd_work_group_size(1, 1, 1)))
void gemm_register(__global const float* restrict A, __global const float* restrict B,
                   __global float* restrict C, const int M, const int N, const int K,
                   const int kChunk, const int ldc, __global const float* restrict bias,
                   const int flags, const int panelsPerItem)
{
    PROLOGUE(MR);
    // The B panel (16 columns x this split's k range) stays in cache while the A panels stream past.
    for (int ip = blockBegin; ip < blockEnd; ++ip) {
        const __global float* a = A + (size_t)ip * K * MR;
        float16 c0 = (float16)(0.0f), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0, c7 = c0;
        for (int p = k0; p < k1; ++p) {
            const float16 bv = vload16(p, b);
            const float8 av = vload8(p, a);
            FMA_ROW(c0, s0); FMA_ROW(c1, s1); FMA_ROW(c2, s2); FMA_ROW(c3, s3);
            FMA_ROW(c4, s4); FMA_ROW(c5, s5); FMA_ROW(c6, s6); FMA_ROW(c7, s7);
        }
        const int i0 = ip * MR;
        STORE_ROW(0, c0); STORE_ROW(1, c1); STORE_ROW(2, c2); STORE_ROW(3, c3);
        STORE_ROW(4, c4); STORE_ROW(5, c5); STORE_ROW(6, c6); STORE_ROW(7, c7);
    }
}

// 4x16 blocks: work-item (jp, g, z) takes B panel jp and the half panels (4 rows of A's 8-row panels)
// [g*panelsPerItem, ...). global = (Npad/16, ceil(Mpad/4 / panelsPerItem), splits).
__kernel __attribute__((reqd_work_group_size(1, 1, 1)))
void gemm_register_4(__global const float* restrict A, __global const float* restrict B,
                     __global float* restrict C, const int M, const int N, const int K,
                     const int kChunk, const int ldc, __global const float* restrict bias,
                     const int flags, const int panelsPerItem)
{
    PROLOGUE(4);
    for (int h = blockBegin; h < blockEnd; ++h) {
        // Rows 4*(h&1) .. +3 of panel h/2: four of each eight words per step of k.
        const __global float* a = A + (size_t)(h >> 1) * K * MR + (h & 1) * 4;
        float16 c0 = (float16)(0.0f), c1 = c0, c2 = c0, c3 = c0;
        for (int p = k0; p < k1; ++p) {
            const float16 bv = vload16(p, b);
            const float4 av = vload4(0, a + (size_t)p * MR);
            FMA_ROW(c0, s0); FMA_ROW(c1, s1); FMA_ROW(c2, s2); FMA_ROW(c3, s3);
        }
        const int i0 = h * 4;
        STORE_ROW(0, c0); STORE_ROW(1, c1); STORE_ROW(2, c2); STORE_ROW(3, c3);
    }
}
