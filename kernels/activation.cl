// ReLU backward (the forward bias + ReLU is fused into the GEMM epilogue: gemm_*.cl, flags).

// dy[i] = 0 where y[i] <= 0 (y is the ReLU output). Work-item g covers [g*per, (g+1)*per): on CPU
// devices a few long runs (PoCL pays about a microsecond per work-group, and a plain loop vectorises),
// on GPUs per = 1. global = (ceil(count/per) rounded up to the work-group size).
__kernel void relu_backward(__global const float* restrict y, __global float* restrict dy,
                            const int count, const int per)
{
    const int i0 = get_global_id(0) * per;
    const int i1 = min(count, i0 + per);
    // An unconditional store (of dy itself where y > 0) keeps the loop vectorisable.
    for (int i = i0; i < i1; ++i) dy[i] = y[i] <= 0.0f ? 0.0f : dy[i];
}
