// Mean squared error and its gradient in one pass. A single work-group of 64 strides over the
// batch*outputs values, writes grad = scale * (p - t) (scale = 2 / n from the host) and reduces the
// squared errors in local memory in a fixed order; loss[0] = sum / n is the only value read back.
#pragma OPENCL FP_CONTRACT OFF

#define GROUP 64

__kernel __attribute__((reqd_work_group_size(GROUP, 1, 1)))
void mse_loss(__global const float* restrict prediction, __global const float* restrict target,
              __global float* restrict grad, const int n, const float scale,
              __global float* restrict loss)
{
    __local float sums[GROUP];
    const int l = get_local_id(0);
    float s = 0.0f;
    for (int i = l; i < n; i += GROUP) {
        const float d = prediction[i] - target[i];
        s += d * d;
        grad[i] = scale * d;
    }
    sums[l] = s;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int step = GROUP / 2; step > 0; step >>= 1) {
        if (l < step) sums[l] += sums[l + step];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (l == 0) loss[0] = sums[0] / (float)n;
}
