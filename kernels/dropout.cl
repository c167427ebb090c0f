// Inverted dropout with a counter-based generator, identical to FKPEngine's dropoutKeep(seed:index:rate:):
// SplitMix64's finaliser of seed + index * golden ratio (64-bit wrapping arithmetic); the top 24 bits
// as a uniform in [0, 1); kept when that uniform is >= rate. The same kernel serves the backward pass
// (the mask is recomputed from the seed, never stored). scale = 1 / (1 - rate), computed on the host
// in single precision exactly as the CPU engine does, so both backends agree bit for bit.
#pragma OPENCL FP_CONTRACT OFF

// dst[i] = keep(i) ? src[i] * scale : 0. Work-item g covers [g*per, (g+1)*per) (see activation.cl).
// global = (ceil(count/per) rounded up).
__kernel void dropout_apply(__global const float* restrict src, __global float* restrict dst,
                            const int count, const float rate, const float scale, const ulong seed,
                            const int per)
{
    const int i0 = get_global_id(0) * per;
    const int i1 = min(count, i0 + per);
    for (int i = i0; i < i1; ++i) {
        ulong z = seed + (ulong)i * 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        z ^= z >> 31;
        const float u = (float)(uint)(z >> 40) * (1.0f / 16777216.0f);
        dst[i] = u >= rate ? src[i] * scale : 0.0f;
    }
}
