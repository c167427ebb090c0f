// Deterministic reductions (PoCL has no float atomics): partial sums are written per chunk and then
// added in chunk order, so results never depend on scheduling.

// dst[e] = sum over z of src[srcOffset + z*len + e], z = 0, 1, ... in order, then (flags bit 0)
// + bias[e % cols] and (flags bit 1) ReLU: the epilogue of a GEMM split along k, and the sum of
// per-chunk partial gradients. Work-item g covers [g*per, (g+1)*per) (see activation.cl).
// global = (ceil(len/per) rounded up).
__kernel void sum_slices(__global const float* restrict src, const int srcOffset, const int slices,
                         const int len, const int cols, __global const float* restrict bias,
                         const int flags, __global float* restrict dst, const int per)
{
    const int e0 = get_global_id(0) * per;
    const int e1 = min(len, e0 + per);
    const __global float* s0 = src + srcOffset;
    for (int e = e0; e < e1; ++e) {
        float s = 0.0f;
        for (int z = 0; z < slices; ++z) s += s0[(size_t)z * len + e];
        if (flags & 1) s += bias[e % cols];
        if (flags & 2) s = fmax(s, 0.0f);
        dst[e] = s;
    }
}

// partial[z*cols + c] = sum of src[r*cols + c] for r in chunk z (rowsPerChunk rows).
// global = (cols rounded up, chunks).
__kernel void column_sums_partial(__global const float* restrict src, const int rows,
                                  const int cols, const int rowsPerChunk,
                                  __global float* restrict partial)
{
    const int c = get_global_id(0);
    const int z = get_global_id(1);
    if (c >= cols) return;
    const int r0 = z * rowsPerChunk;
    const int r1 = min(rows, r0 + rowsPerChunk);
    float s = 0.0f;
    for (int r = r0; r < r1; ++r) s += src[(size_t)r * cols + c];
    partial[(size_t)z * cols + c] = s;
}
