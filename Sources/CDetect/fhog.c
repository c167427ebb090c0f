// The HOG face detector's hot loops: Felzenszwalb's 31-value HOG cells ("fHOG", as dlib computes them
// for its frontal face detector), the pyramid's bilinear resize, and the linear filters run over every
// cell position. Plain C written for the compiler's vectoriser (-O3); one image (a pyramid level) per
// call, so the caller runs levels on several threads.
#include "CDetect.h"
#include "CKernels.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int fkp_resize_bilinear(const uint8_t *src, long sw, long sh, uint8_t *dst, long dw, long dh) {
    // Corner-aligned (source (sw-1)/(dw-1) per output pixel), rounded half up: dlib's resize_image.
    const double xs = (double)(sw - 1) / (double)(dw > 1 ? dw - 1 : 1);
    const double ys = (double)(sh - 1) / (double)(dh > 1 ? dh - 1 : 1);
    long *lefts = malloc(sizeof(long) * (size_t)dw);
    float *fxs = malloc(sizeof(float) * (size_t)dw), *top = malloc(sizeof(float) * (size_t)sw);
    float *bottom = malloc(sizeof(float) * (size_t)sw);
    if (!lefts || !fxs || !top || !bottom) { free(lefts); free(fxs); free(top); free(bottom); return 0; }
    for (long c = 0; c < dw; c++) {
        const double x = c * xs;
        lefts[c] = (long)floor(x);
        if (lefts[c] > sw - 1) lefts[c] = sw - 1;
        fxs[c] = (float)(x - lefts[c]);
    }
    for (long r = 0; r < dh; r++) {
        const double y = r * ys;
        const long t = (long)floor(y), b = t + 1 < sh ? t + 1 : sh - 1;
        const float fy = (float)(y - t);
        // The two source rows blended first (one multiply per source pixel), then along the row.
        for (long x = 0; x < sw; x++) {
            top[x] = (float)src[t * sw + x];
            bottom[x] = (float)src[b * sw + x];
        }
        for (long x = 0; x < sw; x++) top[x] = (1 - fy) * top[x] + fy * bottom[x];
        uint8_t *out = dst + r * dw;
        for (long c = 0; c < dw; c++) {
            const long l = lefts[c], rr = l + 1 < sw ? l + 1 : sw - 1;
            const float v = (1 - fxs[c]) * top[l] + fxs[c] * top[rr];
            out[c] = (uint8_t)(v + 0.5f);
        }
    }
    free(lefts); free(fxs); free(top); free(bottom);
    return 1;
}

void fkp_fhog_size(long width, long height, long *rows, long *cols) {
    const long cr = (long)((float)height / FKP_FHOG_CELL + 0.5f), cc = (long)((float)width / FKP_FHOG_CELL + 0.5f);
    *rows = cr > 2 ? cr - 2 : 0;
    *cols = cc > 2 ? cc - 2 : 0;
}

typedef float fv8 __attribute__((vector_size(32)));
typedef int32_t iv8 __attribute__((vector_size(32)));

// Unit vectors of the 9 orientations (20 degrees apart); a gradient votes for the nearest of these 9 and
// their opposites (18 contrast-sensitive bins).
static const float directions[9][2] = {
    {1.0000f, 0.0000f}, {0.9397f, 0.3420f}, {0.7660f, 0.6428f}, {0.500f, 0.8660f}, {0.1736f, 0.9848f},
    {-0.1736f, 0.9848f}, {-0.5000f, 0.8660f}, {-0.7660f, 0.6428f}, {-0.9397f, 0.3420f}};

// Compiled twice, as the scan below: inlined into a wrapper for any x86-64 and one for AVX2 with FMA.
static inline __attribute__((always_inline)) int fhog_body(const uint8_t *img, long width, long height,
                                                           float *features, long stride_rows, long stride_cols,
                                                           long pad) {
    const long cell = FKP_FHOG_CELL;
    const long cells_nr = (long)((float)height / cell + 0.5f), cells_nc = (long)((float)width / cell + 0.5f);
    if (cells_nr < 3 || cells_nc < 3) return 0;
    const long hog_nr = cells_nr - 2, hog_nc = cells_nc - 2;
    // Histograms with a border of one cell all round (votes near the edge land there, unused).
    const long hcols = cells_nc + 2;
    float *hist = calloc((size_t)(cells_nr + 2) * hcols * 18, sizeof(float));
    float *norm = calloc((size_t)cells_nr * cells_nc, sizeof(float));
    if (!hist || !norm) { free(hist); free(norm); return -1; }
    const long visible_nr = (cells_nr * cell < height ? cells_nr * cell : height) - 1;
    const long visible_nc = (cells_nc * cell < width ? cells_nc * cell : width) - 1;
    // Per column: the cell to the left of the pixel's centre and the bilinear weight of the one after it;
    // per row of pixels: gradients, their lengths and orientation bins, each loop over a whole row so
    // that it vectorises.
    const size_t room = (size_t)width + 8;  // whole vectors of 8 past the last pixel
    long *ixps = malloc(sizeof(long) * room);
    float *vx0s = malloc(sizeof(float) * room), *gxs = calloc(room, sizeof(float));
    float *gys = calloc(room, sizeof(float)), *best = malloc(sizeof(float) * room);
    int32_t *bins = malloc(sizeof(int32_t) * room);
    float *rowhist = malloc(sizeof(float) * (size_t)hcols * 18);
    if (!ixps || !vx0s || !gxs || !gys || !best || !bins || !rowhist) {
        free(ixps); free(vx0s); free(gxs); free(gys); free(best); free(bins); free(rowhist); free(hist); free(norm);
        return -1;
    }
    for (long x = 0; x < width; x++) {
        const float xp = (float)((x + 0.5) / (double)cell - 0.5);
        ixps[x] = (long)floorf(xp);
        vx0s[x] = xp - ixps[x];
    }
    for (long y = 1; y < visible_nr; y++) {
        const float yp = (float)((y + 0.5) / (double)cell - 0.5);
        const long iyp = (long)floorf(yp);
        const float vy0 = yp - iyp, vy1 = 1.0f - vy0;
        const uint8_t *row = img + y * width;
        for (long x = 1; x < visible_nc; x++) {
            gxs[x] = (float)((int)row[x + 1] - (int)row[x - 1]);
            gys[x] = (float)((int)row[x + width] - (int)row[x - width]);
        }
        // The nearest of the 18 directions (first wins a tie; none beats 0, so a flat pixel votes bin 0),
        // eight pixels at a time.
        for (long x = 1; x < visible_nc; x += 8) {
            fv8 gx, gy, b = {0, 0, 0, 0, 0, 0, 0, 0};
            iv8 bin = {0, 0, 0, 0, 0, 0, 0, 0};
            memcpy(&gx, gxs + x, sizeof gx);
            memcpy(&gy, gys + x, sizeof gy);
            for (int o = 0; o < 9; o++) {
                const fv8 dot = directions[o][0] * gx + directions[o][1] * gy;
                iv8 up = dot > b;
                b = (fv8)(((iv8)dot & up) | ((iv8)b & ~up));
                bin = (o & up) | (bin & ~up);
                const fv8 neg = -dot;
                const iv8 down = neg > b;
                b = (fv8)(((iv8)neg & down) | ((iv8)b & ~down));
                bin = ((o + 9) & down) | (bin & ~down);
            }
            const fv8 len2 = gx * gx + gy * gy;
            memcpy(bins + x, &bin, sizeof bin);
            memcpy(best + x, &len2, sizeof len2);
        }
        for (long x = 1; x < visible_nc; x++) best[x] = sqrtf(best[x]);
        // The row's votes split between the two cell columns around each pixel first, then between the
        // two cell rows around it (the same weights for the whole pixel row): half the scattered adds.
        memset(rowhist, 0, sizeof(float) * (size_t)hcols * 18);
        for (long x = 1; x < visible_nc; x++) {
            const float v = best[x], vx0 = vx0s[x];
            float *h = rowhist + (ixps[x] + 1) * 18 + bins[x];
            h[0] += (1.0f - vx0) * v;
            h[18] += vx0 * v;
        }
        float *up = hist + (iyp + 1) * hcols * 18, *down = up + hcols * 18;
        for (long i = 0; i < hcols * 18; i++) {
            up[i] += vy1 * rowhist[i];
            down[i] += vy0 * rowhist[i];
        }
    }
    free(ixps); free(vx0s); free(gxs); free(gys); free(best); free(bins); free(rowhist);
    for (long r = 0; r < cells_nr; r++)
        for (long c = 0; c < cells_nc; c++) {
            const float *h = hist + ((r + 1) * hcols + c + 1) * 18;
            float e = 0;
            for (int o = 0; o < 9; o++) e += (h[o] + h[o + 9]) * (h[o] + h[o + 9]);
            norm[r * cells_nc + c] = e;
        }
    // The caller's array holds (hog_nr + 2 pad) x (hog_nc + 2 pad) cells of FKP_FHOG_PLANES floats; the
    // border stays zero, so windows may reach past the image's edge (a face cut by it).
    memset(features, 0, sizeof(float) * (size_t)stride_rows * stride_cols * FKP_FHOG_PLANES);
    const float eps = 0.0001f;
#define N(r, c) norm[(r) * cells_nc + (c)]
    for (long y = 0; y < hog_nr; y++)
        for (long x = 0; x < hog_nc; x++) {
            // The cell's histogram normalised by each of the four 2x2 blocks that hold it.
            float nn[4], n[4];
            const float z[4] = {N(y + 1, x + 1) + N(y + 1, x + 2) + N(y + 2, x + 1) + N(y + 2, x + 2),
                                N(y, x + 1) + N(y, x + 2) + N(y + 1, x + 1) + N(y + 1, x + 2),
                                N(y + 1, x) + N(y + 1, x + 1) + N(y + 2, x) + N(y + 2, x + 1),
                                N(y, x) + N(y, x + 1) + N(y + 1, x) + N(y + 1, x + 1)};
            for (int k = 0; k < 4; k++) { nn[k] = 0.2f * sqrtf(z[k] + eps); n[k] = 0.1f / nn[k]; }
            const float *h = hist + ((y + 2) * hcols + x + 2) * 18;
            float *out = features + (y + pad) * stride_cols + x + pad;
            const long plane = stride_rows * stride_cols;
            float t[4] = {0, 0, 0, 0};
            for (int o = 0; o < 18; o++) {
                float s = 0;
                for (int k = 0; k < 4; k++) {
                    const float v = (h[o] < nn[k] ? h[o] : nn[k]) * n[k];
                    s += v;
                    t[k] += v;
                }
                out[o * plane] = s;
            }
            for (int o = 0; o < 9; o++) {
                const float u = h[o] + h[o + 9];
                float s = 0;
                for (int k = 0; k < 4; k++) s += (u < nn[k] ? u : nn[k]) * n[k];
                out[(18 + o) * plane] = s;
            }
            for (int k = 0; k < 4; k++) out[(27 + k) * plane] = t[k] * (2 * 0.2357f);
        }
#undef N
    free(hist);
    free(norm);
    return 1;
}

static int fhog_generic(const uint8_t *img, long width, long height, float *features, long stride_rows,
                        long stride_cols, long pad) {
    return fhog_body(img, width, height, features, stride_rows, stride_cols, pad);
}

#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) static int fhog_avx2(const uint8_t *img, long width, long height, float *features,
                                                         long stride_rows, long stride_cols, long pad) {
    return fhog_body(img, width, height, features, stride_rows, stride_cols, pad);
}
#endif

// -1: follow the detector's kernel set (fkp_detect_kernels_get: the engine's choice, FKP_KERNELS); else
// forced by fkp_fhog_use.
static _Atomic int forced = -1;

int fkp_fhog_use(const char *name) {
    if (!name) { forced = -1; return 1; }
#if defined(__x86_64__)
    if (strcmp(name, "avx2") == 0) {
        if (!fkp_detect_kernels_named("avx2")) return 0;
        forced = 1;
        return 1;
    }
#endif
    if (strcmp(name, "sse2") == 0 || strcmp(name, "base") == 0) { forced = 0; return 1; }
    return 0;
}

static int use_avx2(void) {
#if defined(__x86_64__)
    if (forced >= 0) return forced;
    return strcmp(fkp_detect_kernels_get()->name, "avx2") == 0;
#else
    return 0;
#endif
}

const char *fkp_fhog_set(void) { return use_avx2() ? "avx2" : "base"; }

int fkp_fhog(const uint8_t *img, long width, long height, float *features, long stride_rows, long stride_cols,
             long pad) {
#if defined(__x86_64__)
    if (use_avx2()) return fhog_avx2(img, width, height, features, stride_rows, stride_cols, pad);
#endif
    return fhog_generic(img, width, height, features, stride_rows, stride_cols, pad);
}

// Each filter is a sum of separable terms per HOG plane (a column vector times a row vector, dlib's
// rank-reduced form of its filters): per term, every row of the plane is filtered by the row vector, then
// every column of that by the column vector, added into the filter's response. Loops run along rows, so
// they vectorise; compiled twice: for any x86-64, and for AVX2 with FMA.
// One row of out_c outputs of a 1-D filter of fs taps: dst[c] = (add ? dst[c] : 0) + sum over k of
// w[i] * src[c + i * step] (step 1: along a row; step out_c: down the columns of the row-filtered strip).
// Eight outputs a vector, four vectors at a time (independent sums: no waiting on one), then the rest.
// A macro, not a function, so that each copy of the scan compiles it with its own target and fp-contract.
#define FKP_SCAN_TAPS(dst_, src_, step_, w_, add_)                                                           \
    {                                                                                                      \
        float *restrict dst = (dst_);                                                                      \
        const float *restrict src = (src_), *restrict w = (w_);                                            \
        const long step = (step_);                                                                         \
        long c = 0;                                                                                        \
        for (; c + 32 <= out_c; c += 32) {                                                                 \
            fv8 a0 = {0, 0, 0, 0, 0, 0, 0, 0}, a1 = a0, a2 = a0, a3 = a0, v0, v1, v2, v3;                  \
            if (add_) {                                                                                    \
                memcpy(&a0, dst + c, sizeof a0); memcpy(&a1, dst + c + 8, sizeof a1);                      \
                memcpy(&a2, dst + c + 16, sizeof a2); memcpy(&a3, dst + c + 24, sizeof a3);                \
            }                                                                                              \
            for (long i = 0; i < fs; i++) {                                                                \
                const float *restrict x = src + c + i * step;                                              \
                memcpy(&v0, x, sizeof v0); memcpy(&v1, x + 8, sizeof v1);                                  \
                memcpy(&v2, x + 16, sizeof v2); memcpy(&v3, x + 24, sizeof v3);                            \
                a0 += w[i] * v0; a1 += w[i] * v1; a2 += w[i] * v2; a3 += w[i] * v3;                       \
            }                                                                                              \
            memcpy(dst + c, &a0, sizeof a0); memcpy(dst + c + 8, &a1, sizeof a1);                          \
            memcpy(dst + c + 16, &a2, sizeof a2); memcpy(dst + c + 24, &a3, sizeof a3);                    \
        }                                                                                                  \
        for (; c + 8 <= out_c; c += 8) {                                                                   \
            fv8 acc = {0, 0, 0, 0, 0, 0, 0, 0}, v;                                                         \
            if (add_) memcpy(&acc, dst + c, sizeof acc);                                                   \
            for (long i = 0; i < fs; i++) { memcpy(&v, src + c + i * step, sizeof v); acc += w[i] * v; }  \
            memcpy(dst + c, &acc, sizeof acc);                                                             \
        }                                                                                                  \
        for (; c < out_c; c++) {                                                                           \
            float acc = (add_) ? dst[c] : 0;                                                               \
            for (long i = 0; i < fs; i++) acc += w[i] * src[c + i * step];                                 \
            dst[c] = acc;                                                                                  \
        }                                                                                                  \
    }

#define FKP_SCAN_STRIP 64
#define FKP_SCAN_BODY                                                                                        \
    const long fs = filter_size, out_r = rows - fs + 1, out_c = cols - fs + 1;                             \
    if (out_r <= 0 || out_c <= 0) return 0;                                                                \
    /* Strips of FKP_SCAN_STRIP output rows, so that the rows they read and the row-filtered rows stay in   \
       cache while every filter's terms go over them. scratch: filter_count strips of responses, then one  \
       strip (plus fs - 1 rows) of row-filtered values. */                                                 \
    float *restrict sal = scratch, *restrict tmp = scratch + filter_count * FKP_SCAN_STRIP * out_c;        \
    long found = 0;                                                                                        \
    for (long r0 = 0; r0 < out_r; r0 += FKP_SCAN_STRIP) {                                                  \
        const long n_out = out_r - r0 < FKP_SCAN_STRIP ? out_r - r0 : FKP_SCAN_STRIP, n_in = n_out + fs - 1; \
        memset(sal, 0, sizeof(float) * (size_t)(filter_count * FKP_SCAN_STRIP * out_c));                  \
        for (long p = 0; p < FKP_FHOG_PLANES; p++) {                                                       \
            const float *restrict plane = features + p * rows * cols + r0 * cols;                          \
            for (long k = 0; k < filter_count; k++) {                                                      \
                float *restrict ks = sal + k * FKP_SCAN_STRIP * out_c;                                     \
                for (long j = 0; j < terms[k * FKP_FHOG_PLANES + p]; j++) {                               \
                    const float *restrict cv = columns + ((k * FKP_FHOG_PLANES + p) * max_terms + j) * fs; \
                    const float *restrict rv = row_vectors + ((k * FKP_FHOG_PLANES + p) * max_terms + j) * fs; \
                    for (long r = 0; r < n_in; r++) /* along the rows: a row's fs neighbours */           \
                        FKP_SCAN_TAPS(tmp + r * out_c, plane + r * cols, 1, rv, 0)                         \
                    for (long r = 0; r < n_out; r++) /* down the columns, added to the response */        \
                        FKP_SCAN_TAPS(ks + r * out_c, tmp + r * out_c, out_c, cv, 1)                       \
                }                                                                                          \
            }                                                                                              \
        }                                                                                                  \
        for (long k = 0; k < filter_count; k++)                                                            \
            for (long r = 0; r < n_out; r++)                                                               \
                for (long c = 0; c < out_c; c++) {                                                         \
                    const float v = sal[(k * FKP_SCAN_STRIP + r) * out_c + c];                             \
                    if (v >= thresholds[k]) {                                                              \
                        if (found < capacity)                                                              \
                            hits[found] = (fkp_fhog_hit){.row = (int32_t)(r0 + r), .col = (int32_t)c,      \
                                                         .filter = (int32_t)k, .value = v};                \
                        found++;                                                                           \
                    }                                                                                      \
                }                                                                                          \
    }                                                                                                      \
    return found;

#define FKP_SCAN_ARGS                                                                                        \
    const float *features, long rows, long cols, const int32_t *terms, const float *columns,               \
        const float *row_vectors, long max_terms, long filter_count, long filter_size, const float *thresholds, \
        float *scratch, fkp_fhog_hit *hits, long capacity

long fkp_fhog_scan_scratch(long rows, long cols, long filter_count, long filter_size) {
    const long out_c = cols - filter_size + 1 > 0 ? cols - filter_size + 1 : 0;
    return (filter_count * FKP_SCAN_STRIP + FKP_SCAN_STRIP + filter_size - 1) * out_c;
}

static long scan_generic(FKP_SCAN_ARGS) { FKP_SCAN_BODY }

#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) static long scan_avx2(FKP_SCAN_ARGS) {
#pragma clang fp contract(fast)
    FKP_SCAN_BODY
}
#endif

long fkp_fhog_scan(FKP_SCAN_ARGS) {
#if defined(__x86_64__)
    if (use_avx2())
        return scan_avx2(features, rows, cols, terms, columns, row_vectors, max_terms, filter_count, filter_size,
                         thresholds, scratch, hits, capacity);
#endif
    return scan_generic(features, rows, cols, terms, columns, row_vectors, max_terms, filter_count, filter_size,
                        thresholds, scratch, hits, capacity);
}
