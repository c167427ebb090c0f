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

// partial[z*cols + c] = sum of src[r*cols + c] for r in chunk z (rowsPerChunk rows), in row order.
// Work-item (g, z) handles columns [g*cPer, min(cols, (g+1)*cPer)): CPU devices one work-item per chunk
// with every column (cPer = cols, work-groups of 1, the inner loop over contiguous columns vectorises),
// GPUs one column each (cPer = 1, groups of (16, 1)). global = (ceil(cols/cPer) rounded up, chunks).
__kernel void column_sums_partial(__global const float* restrict src, const int rows,
                                  const int cols, const int rowsPerChunk, const int cPer,
                                  __global float* restrict partial)
{
    const int c0 = get_global_id(0) * cPer;
    const int c1 = min(cols, c0 + cPer);
    const int z = get_global_id(1);
    if (c0 >= c1) return;
    const int r0 = z * rowsPerChunk;
    const int r1 = min(rows, r0 + rowsPerChunk);
    __global float* d = partial + (size_t)z * cols;
    for (int c = c0; c < c1; ++c) d[c] = 0.0f;
    for (int r = r0; r < r1; ++r) {
        const __global float* s = src + (size_t)r * cols;
        for (int c = c0; c < c1; ++c) d[c] += s[c];
    }
}
