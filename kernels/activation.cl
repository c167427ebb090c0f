// ReLU backward (the forward bias + ReLU is fused into the GEMM epilogue: gemm_*.cl, flags).

// dy[i] = 0 where y[i] <= 0 (y is the ReLU output). global = (count rounded up).
__kernel void relu_backward(__global const float* restrict y, __global float* restrict dy,
                            const int count)
{
    const int i = get_global_id(0);
    if (i >= count) return;
    if (y[i] <= 0.0f) dy[i] = 0.0f;
}
