// Lasagne's nesterov_momentum, in the CPU engine's operation order:
// step = lr*g; v = m*v - step; p += m*v - step. Contraction into fma is off so both backends round alike.
#pragma OPENCL FP_CONTRACT OFF

// global = (count rounded up).
__kernel void nesterov_update(__global float* restrict parameter, __global const float* restrict gradient,
                              __global float* restrict velocity, const int count,
                              const float learningRate, const float momentum)
{
    const int i = get_global_id(0);
    if (i >= count) return;
    const float step = learningRate * gradient[i];
    const float v = momentum * velocity[i] - step;
    velocity[i] = v;
    parameter[i] += momentum * v - step;
}
