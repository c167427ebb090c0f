#ifndef FKP_CKERNELS_H
#define FKP_CKERNELS_H

#include <stdint.h>

/// The CPU engine's hot kernels, compiled once per instruction set (AVX-512, AVX2 + FMA, the
/// architecture's baseline) in one portable binary; fkp_kernels_get() picks the best set the CPU and
/// OS support, once. Pointers are plain row-major float arrays; every image is NHWC.
typedef struct {
    /// "avx512", "avx2+fma", "sse2" (x86-64 baseline) or "neon" (arm64); "avx2+fma-wide" (the AVX-512
    /// set's tile shapes on AVX2) exists for the tests and is only used when asked for by name.
    const char *name;
    /// The GEMM micro-tile: A is packed in panels of `mr` rows ([kc][mr]), B in panels of 16 columns
    /// ([kc][16]).
    long mr;
    /// C[mr_used, nr_used] (+)= Apanel . Bpanel over kc; then, when bias is given, + bias[j] and (relu)
    /// max(0, .). Only the first mr_used rows and nr_used columns of C are written.
    void (*gemm_micro)(long kc, const float *a, const float *b, float *c, long ldc, long mr_used, long nr_used,
                       int accumulate, const float *bias, int relu);
    /// The same with A read in place instead of packed: element (i, p) of A is
    /// rows[i][(p / seg) * stride + p % seg] (kc a multiple of seg; seg = kc for a plain row-major matrix,
    /// seg = k*Cin and stride = W*Cin for the patch under an output pixel of a k x k convolution over NHWC).
    /// rows holds mr pointers; those past mr_used are read but not stored (point them at a valid row).
    void (*gemm_micro_rows)(long kc, const float *const *rows, long seg, long stride, const float *b, float *c,
                            long ldc, long mr_used, long nr_used, int accumulate, const float *bias, int relu);
    /// A convolution's weight gradient block C[mr_used][16] (+)= sum over kc output pixels of a_p (x) b_p, read
    /// in place: a_p = a[0..mr_used) (patch values, contiguous in the input image), a advancing a_step per
    /// pixel and a_skip more after `first` pixels and then every `run` (output row ends); b_p = the 16 floats
    /// at b + p * b_step (the output gradient's channels).
    void (*gemm_micro_outer)(long kc, const float *a, long a_step, long a_skip, long first, long run, const float *b,
                             long b_step, float *c, long ldc, long mr_used, int accumulate);
    /// 3x3 convolution of a one-channel image x[h][w] into y[h-2][w-2][cout] (+ bias, ReLU if asked);
    /// cout a multiple of 16.
    void (*conv3x3_c1_forward)(const float *x, const float *w, const float *bias, float *y, long h, long width,
                               long cout, int relu);
    /// The same followed by the 2x2 max-pool, writing only y[(h-2)/2][(w-2)/2][cout] (h: input rows given).
    void (*conv3x3_c1_pool_forward)(const float *x, const float *w, const float *bias, float *y, long h, long width,
                                    long cout, int relu);
    /// dw[9][cout] += sum over pixels of x[pixel + tap] * dy[pixel]; db[cout] += sum of dy (one image).
    void (*conv3x3_c1_weight_grad)(const float *x, const float *dy, float *dw, float *db, long h, long width,
                                   long cout);
    /// The same sums from a gradient that a max-pool backward routed (and its ReLU mask cleared): dy is
    /// zero except at each 2x2 window's recorded position `arg`, where it is pdy if the pooled value py > 0.
    /// Reads the pooled arrays (a quarter of dy's size) instead of dy; oh x ow is the convolution's output.
    void (*conv3x3_c1_weight_grad_pooled)(const float *x, const uint8_t *arg, const float *py, const float *pdy,
                                          float *dw, float *db, long h, long width, long cout);
    /// dx[h][w] = the transposed convolution of dy with w (one image; overwrites dx).
    void (*conv3x3_c1_input_grad)(const float *dy, const float *w, float *dx, long h, long width, long cout);
    /// 2x2 stride-2 max-pool of one image x[h][w][c] into y[h/2][w/2][c]; arg (when not NULL) gets the
    /// position (0..3 = (0,0) (0,1) (1,0) (1,1)) of each window's first maximum.
    void (*maxpool2_forward)(const float *x, float *y, uint8_t *arg, long h, long width, long c);
    /// dx[h][w][c] = dy routed to the recorded first maximum of each window, zero elsewhere (one image;
    /// overwrites all of dx, a dropped odd last row or column included).
    void (*maxpool2_backward)(const uint8_t *arg, const float *dy, float *dx, long h, long width, long c);
    /// ReLU mask of a pool's input gradient dx made by maxpool2_backward: only the recorded positions can
    /// be non-zero, and the ReLU output there is the pooled value y, so dx[pos] = 0 where y <= 0 (one image).
    void (*maxpool2_relu_mask)(const uint8_t *arg, const float *y, float *dx, long h, long width, long c);
} fkp_kernels;

/// The best set for this CPU, chosen on the first call (FKP_KERNELS=avx512|avx2+fma|sse2|... forces a
/// supported one; an unknown or unsupported name falls back to the best with a message on stderr).
const fkp_kernels *fkp_kernels_get(void);
/// The set of that name if this CPU supports it, else NULL (tests run every supported set).
const fkp_kernels *fkp_kernels_named(const char *name);
/// Names of every set compiled in, best first, NULL-terminated.
const char *const *fkp_kernels_all_names(void);

#endif
