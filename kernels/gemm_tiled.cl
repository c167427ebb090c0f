// GEMM for GPUs: C[M,N] = A[M,K] . B[K,N] from the same packed panels as gemm_register.cl, tiled
// through local memory.
//
// A work-group of 16x16 work-items computes a 64x64 tile of C; each work-item owns a 4x4 block
// (rows ty + 16r, columns tx + 16c, so neighbouring work-items read neighbouring local words).
// Each step of 16 along k, the group copies a 64x16 slice of A and a 16x64 slice of B into local
// memory with coalesced loads (consecutive work-items read consecutive words of the panels).
// Requires Mpad % 64 == 0, Npad % 64 == 0, K % 16 == 0 and kChunk % 16 == 0 (the packers pad
// with zeros); only the store is guarded.
//
// global = (Npad/4, Mpad/4, splits), local = (16, 16, 1). Split z writes to C + z*M*ldc.
// flags: bit 0 adds bias[j], bit 1 applies ReLU.

#define TM 64
#define TN 64
#define TK 16

__kernel __attribute__((reqd_work_group_size(16, 16, 1)))
void gemm_tiled(__global const float* restrict A, __global const float* restrict B,
                __global float* restrict C, const int M, const int N, const int K,
                const int kChunk, const int ldc, __global const float* restrict bias,
                const int flags)
{
    __local float As[TK][TM];
    __local float Bs[TK][TN];
    const int tx = get_local_id(0), ty = get_local_id(1);
    const int bn = get_group_id(0), bm = get_group_id(1), z = get_group_id(2);
    const int tid = ty * 16 + tx;
    const int k0 = z * kChunk;
    const int k1 = min(K, k0 + kChunk);

    float acc[4][4];
    for (int r = 0; r < 4; ++r)
        for (int c = 0; c < 4; ++c) acc[r][c] = 0.0f;

    for (int kb = k0; kb < k1; kb += TK) {
        for (int l = 0; l < 4; ++l) {
            const int e = tid + l * 256;  // 0..1023
            // A: 8 panels of 8 rows; within a panel, 16 steps of k of 8 words each.
            const int ar = e & 7, ap = (e >> 3) & 15, apl = e >> 7;
            As[ap][apl * 8 + ar] = A[((size_t)(bm * 8 + apl) * K + kb + ap) * 8 + ar];
            // B: 4 panels of 16 columns; within a panel, 16 steps of k of 16 words each.
            const int bc = e & 15, bp = (e >> 4) & 15, bpl = e >> 8;
            Bs[bp][bpl * 16 + bc] = B[((size_t)(bn * 4 + bpl) * K + kb + bp) * 16 + bc];
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int p = 0; p < TK; ++p) {
            float av[4], bv[4];
            for (int r = 0; r < 4; ++r) av[r] = As[p][ty + 16 * r];
            for (int c = 0; c < 4; ++c) bv[c] = Bs[p][tx + 16 * c];
            for (int r = 0; r < 4; ++r)
                for (int c = 0; c < 4; ++c) acc[r][c] = fma(av[r], bv[c], acc[r][c]);
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }

    __global float* Cz = C + (size_t)z * M * ldc;
    for (int r = 0; r < 4; ++r) {
        const int i = bm * TM + ty + 16 * r;
        if (i >= M) continue;
        for (int c = 0; c < 4; ++c) {
            const int j = bn * TN + tx + 16 * c;
            if (j >= N) continue;
            float v = acc[r][c];
            if (flags & 1) v += bias[j];
            if (flags & 2) v = fmax(v, 0.0f);
            Cz[(size_t)i * ldc + j] = v;
        }
    }
}
