// Lasagne's nesterov_momentum, in the CPU engine's operation order:
// step = lr*g; v = m*v - step; p += m*v - step. Contraction into fma is off so both backends round alike.
#pragma OPENCL FP_CONTRACT OFF

// Work-item g covers [g*per, (g+1)*per) (see activation.cl). global = (ceil(count/per) rounded up).
__kernel void nesterov_update(__global float* restrict parameter, __global const float* restrict gradient,
                              __global float* restrict velocity, const int count,
                              const float learningRate, const float momentum, const int per)
{
    const int i0 = get_global_id(0) * per;
    const int i1 = min(count, i0 + per);
    for (int i = i0; i < i1; ++i) {
        const float step = learningRate * gradient[i];
        const float v = momentum * velocity[i] - step;
        velocity[i] = v;
        parameter[i] += momentum * v - step;
    }
}
