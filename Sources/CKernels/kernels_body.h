// The kernels' one source, included once per instruction set by kernels.c with FKP_SET (a name suffix),
// FKP_NAME, FKP_MR (the GEMM micro-tile's rows) and FKP_VW (floats per register) defined (undefined again
// at the end), under a `#pragma clang attribute` that gives every
// function here that set's target attribute. Plain C with clang's vector extensions: the compiler maps a
// 16-float vector onto one zmm, two ymm or four xmm registers, and `acc += a * b` onto FMA where the
// set has it (-ffp-contract=fast), so the three sets share one text and one summation order.

#define FKP_CAT2(a, b) a##_##b
#define FKP_CAT(a, b) FKP_CAT2(a, b)
#define FKP_FN(name) FKP_CAT(name, FKP_SET)

// Writes an MR x 16 block of sums into C: added to C (accumulate), then + bias and ReLU (relu) when bias
// is given; only the first mr_used rows and nr_used columns.
static inline __attribute__((always_inline)) void FKP_FN(gemm_store)(v16 *acc, float *c, long ldc, long mr_used,
                                                                      long nr_used, int accumulate, const float *bias,
                                                                      int relu) {
    v16 bz = (v16){0};
    if (bias) {
        if (nr_used == 16) bz = *(const v16u *)bias;
        else for (long j = 0; j < nr_used; j++) bz[j] = bias[j];
    }
    if (mr_used == FKP_MR && nr_used == 16) {
        for (int i = 0; i < FKP_MR; i++) {
            v16u *row = (v16u *)(c + i * ldc);
            v16 v = accumulate ? *row + acc[i] : acc[i];
            if (bias) {
                v += bz;
                if (relu) v = relu16(v);
            }
            *row = v;
        }
        return;
    }
    for (long i = 0; i < mr_used; i++) {
        float *row = c + i * ldc;
        for (long j = 0; j < nr_used; j++) {
            float v = accumulate ? row[j] + acc[i][j] : acc[i][j];
            if (bias) {
                v += bz[j];
                if (relu) v = v < 0 ? 0 : v;
            }
            row[j] = v;
        }
    }
}

static void FKP_FN(gemm_micro)(long kc, const float *a, const float *b, float *c, long ldc, long mr_used,
                               long nr_used, int accumulate, const float *bias, int relu) {
    v16 acc[FKP_MR];
    for (int i = 0; i < FKP_MR; i++) acc[i] = (v16){0};
    const v16u *bp = (const v16u *)b;  // Swift aligns the packed panel to 16 bytes only
    for (long p = 0; p < kc; p++) {
        v16 bv = bp[p];
        const float *ap = a + p * FKP_MR;
        for (int i = 0; i < FKP_MR; i++) acc[i] += ap[i] * bv;
    }
    FKP_FN(gemm_store)(acc, c, ldc, mr_used, nr_used, accumulate, bias, relu);
}

// The same sums with A read in place: no packing pass over A (for a convolution, no im2col either).
// Summed over p in the same order as gemm_micro, so both give the same bits.
static void FKP_FN(gemm_micro_rows)(long kc, const float *const *rows, long seg, long stride, const float *b,
                                    float *c, long ldc, long mr_used, long nr_used, int accumulate,
                                    const float *bias, int relu) {
    v16 acc[FKP_MR];
    const float *r[FKP_MR];
    for (int i = 0; i < FKP_MR; i++) {
        acc[i] = (v16){0};
        r[i] = rows[i];
    }
    const v16u *bp = (const v16u *)b;
    for (long s0 = 0; s0 < kc; s0 += seg) {
        for (long p = 0; p < seg; p++) {
            v16 bv = bp[p];
            for (int i = 0; i < FKP_MR; i++) acc[i] += r[i][p] * bv;
        }
        bp += seg;
        for (int i = 0; i < FKP_MR; i++) r[i] += stride;
    }
    FKP_FN(gemm_store)(acc, c, ldc, mr_used, nr_used, accumulate, bias, relu);
}

// A convolution's weight gradient without im2col or packing: C[i][j] (+)= sum over kc output pixels p of
// a_p[i] * b_p[j], a_p the mr patch values at a (one kernel row of the patch: contiguous floats of the
// input image), b_p the 16 output-gradient channels at b + p * b_step. a moves a_step per pixel and
// a_skip more where an output row ends (after `first` pixels, then every `run`). Summed over p in order,
// as the GEMM over im2col's columns sums them.
static void FKP_FN(gemm_micro_outer)(long kc, const float *a, long a_step, long a_skip, long first, long run,
                                     const float *b, long b_step, float *c, long ldc, long mr_used, int accumulate) {
    v16 acc[FKP_MR];
    for (int i = 0; i < FKP_MR; i++) acc[i] = (v16){0};
    long left = first;
    if (mr_used == FKP_MR) {
        for (long p = 0; p < kc; p++) {
            v16 bv = *(const v16u *)(b + p * b_step);
            for (int i = 0; i < FKP_MR; i++) acc[i] += a[i] * bv;
            a += a_step;
            if (--left == 0) { a += a_skip; left = run; }
        }
    } else {
        // A partial tile reads only its own rows (the ones past it may lie outside the image): the rows
        // beyond repeat its last one and are not stored, so the loop keeps its fixed shape.
        long off[FKP_MR];
        for (int i = 0; i < FKP_MR; i++) off[i] = i < mr_used ? i : mr_used - 1;
        for (long p = 0; p < kc; p++) {
            v16 bv = *(const v16u *)(b + p * b_step);
            for (int i = 0; i < FKP_MR; i++) acc[i] += a[off[i]] * bv;
            a += a_step;
            if (--left == 0) { a += a_skip; left = run; }
        }
    }
    FKP_FN(gemm_store)(acc, c, ldc, mr_used, 16, accumulate, 0, 0);
}

// The direct 3x3 kernels work on groups of FKP_VW channels, one register each, so the 9 taps (or 10
// sums) and the accumulator fit the register file of every set.
typedef float FKP_FN(vn) __attribute__((vector_size(FKP_VW * 4)));
typedef int FKP_FN(vni) __attribute__((vector_size(FKP_VW * 4)));
typedef float FKP_FN(vnu) __attribute__((vector_size(FKP_VW * 4), aligned(4)));
typedef uint8_t FKP_FN(vnb) __attribute__((vector_size(FKP_VW), aligned(1)));
#define vn FKP_FN(vn)
#define vni FKP_FN(vni)
#define vnu FKP_FN(vnu)
#define vnb FKP_FN(vnb)

static void FKP_FN(conv3x3_c1_forward)(const float *x, const float *w, const float *bias, float *y, long h,
                                       long width, long cout, int relu) {
    long oh = h - 2, ow = width - 2;
    for (long g = 0; g < cout; g += FKP_VW) {
        vn t[9];
        for (int k = 0; k < 9; k++) t[k] = *(const vnu *)(w + k * cout + g);
        vn bv = *(const vnu *)(bias + g);
        for (long oy = 0; oy < oh; oy++) {
            const float *r0 = x + oy * width, *r1 = r0 + width, *r2 = r1 + width;
            float *out = y + oy * ow * cout + g;
            for (long ox = 0; ox < ow; ox++) {
                vn a = bv;
                a += r0[ox] * t[0]; a += r0[ox + 1] * t[1]; a += r0[ox + 2] * t[2];
                a += r1[ox] * t[3]; a += r1[ox + 1] * t[4]; a += r1[ox + 2] * t[5];
                a += r2[ox] * t[6]; a += r2[ox + 1] * t[7]; a += r2[ox + 2] * t[8];
                if (relu) a = (vn)((vni)a & ~(vni)(a < 0));
                *(vnu *)(out + ox * cout) = a;
            }
        }
    }
}

// The same convolution with the 2x2 max-pool of its output in one pass (prediction): only the pooled
// rows are written, a quarter of the convolution's output, which is what made conv1 store-bound. Each
// value is summed as conv3x3_c1_forward sums it and the window's maximum is taken in maxpool2_forward's
// order, so the result has the two ops' bits. h is the input rows given (2 * pooled rows + 2).
static void FKP_FN(conv3x3_c1_pool_forward)(const float *x, const float *w, const float *bias, float *y, long h,
                                            long width, long cout, int relu) {
    long ph = (h - 2) / 2, pw = (width - 2) / 2;
    for (long g = 0; g < cout; g += FKP_VW) {
        vn t[9];
        for (int k = 0; k < 9; k++) t[k] = *(const vnu *)(w + k * cout + g);
        vn bv = *(const vnu *)(bias + g);
        for (long py = 0; py < ph; py++) {
            const float *rows[4];
            for (int r = 0; r < 4; r++) rows[r] = x + (2 * py + r) * width;
            float *out = y + py * pw * cout + g;
            for (long px = 0; px < pw; px++) {
                vn v[4];  // (0,0) (0,1) (1,0) (1,1) of the window
                for (int q = 0; q < 4; q++) {
                    const float *r0 = rows[q >> 1], *r1 = rows[(q >> 1) + 1], *r2 = rows[(q >> 1) + 2];
                    long ox = 2 * px + (q & 1);
                    vn a = bv;
                    a += r0[ox] * t[0]; a += r0[ox + 1] * t[1]; a += r0[ox + 2] * t[2];
                    a += r1[ox] * t[3]; a += r1[ox + 1] * t[4]; a += r1[ox + 2] * t[5];
                    a += r2[ox] * t[6]; a += r2[ox + 1] * t[7]; a += r2[ox + 2] * t[8];
                    if (relu) a = (vn)((vni)a & ~(vni)(a < 0));
                    v[q] = a;
                }
                vni top = (vni)(v[0] >= v[1]), bottom = (vni)(v[2] >= v[3]);
                vni m1 = ((vni)v[0] & top) | ((vni)v[1] & ~top), m2 = ((vni)v[2] & bottom) | ((vni)v[3] & ~bottom);
                vni first = (vni)((vn)m1 >= (vn)m2);
                *(vnu *)(out + px * cout) = (vn)((m1 & first) | (m2 & ~first));
            }
        }
    }
}

static void FKP_FN(conv3x3_c1_weight_grad)(const float *x, const float *dy, float *dw, float *db, long h,
                                           long width, long cout) {
    long oh = h - 2, ow = width - 2;
    for (long g = 0; g < cout; g += FKP_VW) {
        vn a[9], ab = (vn){0};
        for (int k = 0; k < 9; k++) a[k] = (vn){0};
        for (long oy = 0; oy < oh; oy++) {
            const float *r0 = x + oy * width, *r1 = r0 + width, *r2 = r1 + width;
            const float *row = dy + oy * ow * cout + g;
            for (long ox = 0; ox < ow; ox++) {
                vn d = *(const vnu *)(row + ox * cout);
                ab += d;
                a[0] += r0[ox] * d; a[1] += r0[ox + 1] * d; a[2] += r0[ox + 2] * d;
                a[3] += r1[ox] * d; a[4] += r1[ox + 1] * d; a[5] += r1[ox + 2] * d;
                a[6] += r2[ox] * d; a[7] += r2[ox + 1] * d; a[8] += r2[ox + 2] * d;
            }
        }
        for (int k = 0; k < 9; k++) *(vnu *)(dw + k * cout + g) += a[k];
        *(vnu *)(db + g) += ab;
    }
}

// Visits the pixels in the dense kernel's order (row by row) and skips only zero terms, which never
// change a sum that starts at +0; so both give the same bits, whichever the history of the buffers.
static void FKP_FN(conv3x3_c1_weight_grad_pooled)(const float *x, const uint8_t *arg, const float *py,
                                                  const float *pdy, float *dw, float *db, long h, long width,
                                                  long cout) {
    long oh = h - 2, ow = width - 2, ph = oh / 2, pw = ow / 2;
    for (long g = 0; g < cout; g += FKP_VW) {
        vn a[9], ab = (vn){0};
        for (int k = 0; k < 9; k++) a[k] = (vn){0};
        for (long oy = 0; oy < 2 * ph; oy++) {
            const float *r0 = x + oy * width, *r1 = r0 + width, *r2 = r1 + width;
            int rowq = (int)(oy & 1) * 2;
            for (long wx = 0; wx < pw; wx++) {
                long o = ((oy >> 1) * pw + wx) * cout + g;
                vn yv = *(const vnu *)(py + o);
                vni d = (vni)*(const vnu *)(pdy + o) & (vni)(yv > 0);  // the ReLU mask (NaN fails it)
                vni k = __builtin_convertvector(*(const vnb *)(arg + o), vni);
                for (int c = 0; c < 2; c++) {
                    vn dq = (vn)(d & (k == rowq + c));
                    long ox = 2 * wx + c;
                    ab += dq;
                    a[0] += r0[ox] * dq; a[1] += r0[ox + 1] * dq; a[2] += r0[ox + 2] * dq;
                    a[3] += r1[ox] * dq; a[4] += r1[ox + 1] * dq; a[5] += r1[ox + 2] * dq;
                    a[6] += r2[ox] * dq; a[7] += r2[ox + 1] * dq; a[8] += r2[ox + 2] * dq;
                }
            }
        }
        for (int k = 0; k < 9; k++) *(vnu *)(dw + k * cout + g) += a[k];
        *(vnu *)(db + g) += ab;
    }
}

static void FKP_FN(conv3x3_c1_input_grad)(const float *dy, const float *w, float *dx, long h, long width,
                                          long cout) {
    long oh = h - 2, ow = width - 2;
    for (long i = 0; i < h * width; i++) dx[i] = 0;
    for (long oy = 0; oy < oh; oy++) {
        for (long ox = 0; ox < ow; ox++) {
            const float *d = dy + (oy * ow + ox) * cout;
            for (int ky = 0; ky < 3; ky++) {
                for (int kx = 0; kx < 3; kx++) {
                    const float *wt = w + (ky * 3 + kx) * cout;
                    float sum = 0;
                    for (long ch = 0; ch < cout; ch++) sum += d[ch] * wt[ch];
                    dx[(oy + ky) * width + ox + kx] += sum;
                }
            }
        }
    }
}

// 2x2 max-pool: the four inputs of a window are four runs of c contiguous floats (NHWC). Branch-free
// loops over the channels, which the compiler vectorises.
static void FKP_FN(maxpool2_forward)(const float *x, float *y, uint8_t *arg, long h, long width, long c) {
    long oh = h / 2, ow = width / 2, row_in = width * c;
    for (long oy = 0; oy < oh; oy++) {
        const float *r0 = x + 2 * oy * row_in;
        float *out = y + oy * ow * c;
        uint8_t *ao = arg ? arg + oy * ow * c : 0;
        for (long ox = 0; ox < ow; ox++) {
            const float *p0 = r0 + 2 * ox * c, *p1 = p0 + c, *p2 = p0 + row_in, *p3 = p2 + c;
            float *o = out + ox * c;
            if (ao) {
                uint8_t *ai = ao + ox * c;
                for (long ch = 0; ch < c; ch++) {
                    float a = p0[ch], b = p1[ch], d = p2[ch], e = p3[ch];
                    // the first maximum in the order a, b, d, e wins ties
                    float m1 = a >= b ? a : b, m2 = d >= e ? d : e;
                    int i1 = a >= b ? 0 : 1, i2 = d >= e ? 2 : 3;
                    int top = m1 >= m2;
                    o[ch] = top ? m1 : m2;
                    ai[ch] = (uint8_t)(top ? i1 : i2);
                }
            } else {
                for (long ch = 0; ch < c; ch++) {
                    float a = p0[ch], b = p1[ch], d = p2[ch], e = p3[ch];
                    float m1 = a >= b ? a : b, m2 = d >= e ? d : e;
                    o[ch] = m1 >= m2 ? m1 : m2;
                }
            }
        }
    }
}

static void FKP_FN(maxpool2_backward)(const uint8_t *arg, const float *dy, float *dx, long h, long width, long c) {
    long oh = h / 2, ow = width / 2, row_in = width * c;
    if (h % 2 || width % 2) for (long i = 0; i < h * row_in; i++) dx[i] = 0;
    // A big image's gradient is not read again while it could still be in cache (the next op streams the
    // whole batch): write it with non-temporal stores, which skip reading each line before writing it.
    int stream = c % FKP_VW == 0 && (uintptr_t)dx % sizeof(vn) == 0 && h * row_in * 4 >= (256 << 10);
    for (long oy = 0; oy < oh; oy++) {
        float *r0 = dx + 2 * oy * row_in;
        const float *g = dy + oy * ow * c;
        const uint8_t *ao = arg + oy * ow * c;
        for (long ox = 0; ox < ow; ox++) {
            float *q0 = r0 + 2 * ox * c, *q1 = q0 + c, *q2 = q0 + row_in, *q3 = q2 + c;
            const float *gr = g + ox * c;
            const uint8_t *ai = ao + ox * c;
            if (stream) {
                for (long ch = 0; ch < c; ch += FKP_VW) {
                    vni v = (vni)*(const vnu *)(gr + ch);
                    vni k = __builtin_convertvector(*(const vnb *)(ai + ch), vni);
                    __builtin_nontemporal_store((vn)(v & (k == 0)), (vn *)(q0 + ch));
                    __builtin_nontemporal_store((vn)(v & (k == 1)), (vn *)(q1 + ch));
                    __builtin_nontemporal_store((vn)(v & (k == 2)), (vn *)(q2 + ch));
                    __builtin_nontemporal_store((vn)(v & (k == 3)), (vn *)(q3 + ch));
                }
                continue;
            }
            for (long ch = 0; ch < c; ch++) {
                float v = gr[ch];
                int k = ai[ch];
                q0[ch] = k == 0 ? v : 0;
                q1[ch] = k == 1 ? v : 0;
                q2[ch] = k == 2 ? v : 0;
                q3[ch] = k == 3 ? v : 0;
            }
        }
    }
    if (stream) FKP_STORE_FENCE();
}

static void FKP_FN(maxpool2_relu_mask)(const uint8_t *arg, const float *y, float *dx, long h, long width, long c) {
    long oh = h / 2, ow = width / 2, row_in = width * c;
    for (long oy = 0; oy < oh; oy++) {
        for (long ox = 0; ox < ow; ox++) {
            long o = (oy * ow + ox) * c;
            float *q0 = dx + 2 * oy * row_in + 2 * ox * c;
            for (long ch = 0; ch < c; ch++) {
                if (!(y[o + ch] > 0)) {
                    int k = arg[o + ch];
                    q0[(k >> 1) * row_in + (k & 1) * c + ch] = 0;
                }
            }
        }
    }
}

static const fkp_kernels FKP_FN(fkp_set) = {
    .name = FKP_NAME,
    .mr = FKP_MR,
    .gemm_micro = FKP_FN(gemm_micro),
    .gemm_micro_rows = FKP_FN(gemm_micro_rows),
    .gemm_micro_outer = FKP_FN(gemm_micro_outer),
    .conv3x3_c1_forward = FKP_FN(conv3x3_c1_forward),
    .conv3x3_c1_pool_forward = FKP_FN(conv3x3_c1_pool_forward),
    .conv3x3_c1_weight_grad = FKP_FN(conv3x3_c1_weight_grad),
    .conv3x3_c1_weight_grad_pooled = FKP_FN(conv3x3_c1_weight_grad_pooled),
    .conv3x3_c1_input_grad = FKP_FN(conv3x3_c1_input_grad),
    .maxpool2_forward = FKP_FN(maxpool2_forward),
    .maxpool2_backward = FKP_FN(maxpool2_backward),
    .maxpool2_relu_mask = FKP_FN(maxpool2_relu_mask),
};

#undef vn
#undef vni
#undef vnu
#undef vnb
#undef FKP_CAT2
#undef FKP_CAT
#undef FKP_FN
#undef FKP_SET
#undef FKP_NAME
#undef FKP_MR
#undef FKP_VW
