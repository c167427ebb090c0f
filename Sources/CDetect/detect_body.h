// The detector's kernels, included once per instruction set by detect.c with FKP_DSET (a name suffix) and
// FKP_DNAME defined (undefined again at the end), under a `#pragma clang attribute` giving each function
// that set's target. The arithmetic is OpenCV's and the Swift reference's (CompiledCascade.evaluate), in
// the same order and precision, so every set gives the same hits: float feature sums, double stage sums,
// and no fused multiply-add (the target is compiled with -ffp-contract=off).

#define FKP_DCAT2(a, b) a##_##b
#define FKP_DCAT(a, b) FKP_DCAT2(a, b)
#define FKP_DFN(name) FKP_DCAT(name, FKP_DSET)
#define FKP_DINLINE static inline __attribute__((always_inline))

FKP_DINLINE float FKP_DFN(rect1)(const int32_t *p, int32_t a, int32_t b, int32_t c, int32_t d) {
    uint32_t s = (uint32_t)p[a] - (uint32_t)p[b] - (uint32_t)p[c] + (uint32_t)p[d];
    return (float)(int32_t)s;
}

// The first stages of `count` windows at x = 0, step, ... with a compile-time step (the loads differ).
FKP_DINLINE void FKP_DFN(first_stages_step)(const fkp_haar_cascade *c, const int32_t *p, const int64_t *q, long count,
                                           long step, int8_t *codes, float *norms) {
    long stage_count = c->stage_count < FKP_DETECT_VECTOR_STAGES ? c->stage_count : FKP_DETECT_VECTOR_STAGES;
    const dv8d area = FKP_SPLAT8(dv8d, c->norm_area);
    for (long i = 0; i < count; i += 8) {
        long x = i * step;
        dv8u s = FKP_LOAD32(p, x + c->n0, step) - FKP_LOAD32(p, x + c->n1, step) -
                 FKP_LOAD32(p, x + c->n2, step) + FKP_LOAD32(p, x + c->n3, step);
        dv8ul sq = FKP_LOAD64(q, x + c->n0, step) - FKP_LOAD64(q, x + c->n1, step) -
                   FKP_LOAD64(q, x + c->n2, step) + FKP_LOAD64(q, x + c->n3, step);
        dv8d sd = __builtin_convertvector((dv8i)s, dv8d);
        dv8d nf = area * __builtin_convertvector((dv8l)sq, dv8d) - sd * sd;
        // sqrt of a negative is NaN, which fails both tests below, as in the scalar code.
        dv8f f = __builtin_convertvector(1.0 / __builtin_elementwise_sqrt(nf), dv8f);
        dv8l valid = (nf > 0) & (area * __builtin_convertvector(f, dv8d) < 0.1);
        // Per lane: 1 while alive, else OpenCV's code (-1 variance, -si for stage si).
        dv8i code = FKP_SPLAT8(dv8i, -1) + (__builtin_convertvector(valid, dv8i) & 2);
        const fkp_haar_stump *st = c->stumps;
        for (long si = 0; si < stage_count; si++) {
            dv8i alive = code == 1;
            if (!__builtin_reduce_or(alive)) break;
            dv8d tmp = (dv8d){0};
            long n = c->stages[si].count;
            for (long k = 0; k < n; k++) {
                const fkp_haar_stump *w = st + k;
                const fkp_haar_feature *ft = &w->feature;
                dv8f v0 = ft->w0 * FKP_RECT8(p, x, step, ft->a0, ft->b0, ft->c0, ft->d0);
                dv8f v1 = ft->w1 * FKP_RECT8(p, x, step, ft->a1, ft->b1, ft->c1, ft->d1);
                dv8f v = v0 + v1;
                if (ft->w2 != 0) {
                    dv8f v2 = ft->w2 * FKP_RECT8(p, x, step, ft->a2, ft->b2, ft->c2, ft->d2);
                    v += v2;
                }
                v *= f;
                // The leaves are single precision in the file, so choosing in float is exact.
                dv8i m = v < w->threshold;
                dv8f leaf = (dv8f)(((dv8i)FKP_SPLAT8(dv8f, w->left) & m) | ((dv8i)FKP_SPLAT8(dv8f, w->right) & ~m));
                tmp += __builtin_convertvector(leaf, dv8d);
            }
            dv8i fail = alive & __builtin_convertvector(tmp < c->stages[si].threshold, dv8i);
            code = (code & ~fail) | (FKP_SPLAT8(dv8i, -(int)si) & fail);
            st += n;
        }
        long lanes = count - i < 8 ? count - i : 8;
        for (long l = 0; l < lanes; l++) {
            codes[i + l] = (int8_t)code[l];
            norms[i + l] = f[l];
        }
    }
}

static void FKP_DFN(first_stages)(const fkp_haar_cascade *c, const int32_t *p, const int64_t *q, long count, long step,
                                  int8_t *codes, float *norms) {
    if (step == 2) FKP_DFN(first_stages_step)(c, p, q, count, 2, codes, norms);
    else FKP_DFN(first_stages_step)(c, p, q, count, 1, codes, norms);
}

static int FKP_DFN(later_stages)(const fkp_haar_cascade *c, const int32_t *p, float vnf, long first) {
    const fkp_haar_stump *st = c->stumps;
    for (long si = 0; si < first; si++) st += c->stages[si].count;
    for (long si = first; si < c->stage_count; si++) {
        long n = c->stages[si].count;
        double tmp = 0;
        for (long k = 0; k < n; k++) {
            const fkp_haar_stump *w = st + k;
            const fkp_haar_feature *ft = &w->feature;
            float v0 = ft->w0 * FKP_DFN(rect1)(p, ft->a0, ft->b0, ft->c0, ft->d0);
            float v1 = ft->w1 * FKP_DFN(rect1)(p, ft->a1, ft->b1, ft->c1, ft->d1);
            float v = v0 + v1;
            if (ft->w2 != 0) {
                float v2 = ft->w2 * FKP_DFN(rect1)(p, ft->a2, ft->b2, ft->c2, ft->d2);
                v += v2;
            }
            v *= vnf;
            tmp += (double)(v >= w->threshold ? w->right : w->left);
        }
        if (tmp < c->stages[si].threshold) return -(int)si;
        st += n;
    }
    return 1;
}

static long FKP_DFN(scan_row)(const fkp_haar_cascade *c, const int32_t *p, const int64_t *q, long count, long step,
                              int8_t *codes, float *norms, int32_t *hits) {
    FKP_DFN(first_stages)(c, p, q, count, step, codes, norms);
    long first = c->stage_count < FKP_DETECT_VECTOR_STAGES ? c->stage_count : FKP_DETECT_VECTOR_STAGES;
    long found = 0;
    for (long i = 0; i < count; i++) {
        int r = codes[i];
        if (r > 0) r = FKP_DFN(later_stages)(c, p + i * step, norms[i], first);
        if (r > 0) hits[found++] = (int32_t)i;
        if (r == 0) i++;
    }
    return found;
}

static const fkp_detect_kernels FKP_DCAT(fkp_detect_set, FKP_DSET) = {
    FKP_DNAME, FKP_DFN(first_stages), FKP_DFN(later_stages), FKP_DFN(scan_row),
};

#undef FKP_DSET
#undef FKP_DNAME
