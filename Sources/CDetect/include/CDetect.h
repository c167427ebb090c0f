#ifndef FKP_CDETECT_H
#define FKP_CDETECT_H

#include <stdint.h>

/// The face detector's hot loops (Viola-Jones with a stump-based Haar cascade, OpenCV's arithmetic),
/// compiled once per instruction set like the engine's kernels (CKernels.h) and chosen with them.

/// One Haar feature: up to three weighted rectangles, each given by the offsets of its four corners
/// from the window's top-left integral-image entry (sum = p[a] - p[b] - p[c] + p[d]); an unused
/// rectangle has weight 0 and offsets 0.
typedef struct {
    int32_t a0, b0, c0, d0;
    int32_t a1, b1, c1, d1;
    int32_t a2, b2, c2, d2;
    float w0, w1, w2;
} fkp_haar_feature;

/// A depth-1 tree: the feature value (times the window's normalisation factor) below `threshold` gives
/// `left`, else `right`.
typedef struct {
    fkp_haar_feature feature;
    float threshold;
    float left, right;
} fkp_haar_stump;

typedef struct {
    /// Weak classifiers in this stage (consecutive in the stump array).
    long count;
    /// stageThreshold - 1e-5 in single precision (OpenCV's THRESHOLD_EPS), compared in double.
    double threshold;
} fkp_haar_stage;

/// A stump-based cascade laid out for one integral-image stride.
typedef struct {
    const fkp_haar_stage *stages;
    long stage_count;
    const fkp_haar_stump *stumps;
    /// The variance rectangle (the window inset by one pixel): corner offsets and its area.
    long n0, n1, n2, n3;
    double norm_area;
} fkp_haar_cascade;

/// Windows per block of the row kernels: integral images need this many windows' worth of readable
/// entries (times the step) past the last window of a row.
#define FKP_DETECT_LANES 8
/// Stages run a block of windows at once; later stages see few windows and run one window at a time.
#define FKP_DETECT_VECTOR_STAGES 6

typedef struct {
    /// "avx2" or "sse2" on x86-64, "base" elsewhere.
    const char *name;
    /// The variance check and the first min(FKP_DETECT_VECTOR_STAGES, stage_count) stages for `count`
    /// windows of a row at x = 0, step, 2 step, ... (step 1 or 2; p, q: the row's first integral
    /// entries): codes[i] = OpenCV's result (-1 the variance check rejects, 0 stage 0, -s stage s) or 1
    /// (passes them, with its normalisation factor in norms[i]).
    void (*first_stages)(const fkp_haar_cascade *c, const int32_t *p, const int64_t *q, long count, long step,
                         int8_t *codes, float *norms);
    /// The stages from `first` on for one window whose normalisation factor is vnf: 1 if all pass,
    /// else -(the failing stage).
    int (*later_stages)(const fkp_haar_cascade *c, const int32_t *p, float vnf, long first);
    /// A whole row: the windows' first stages, then the later stages for those that pass them, visiting
    /// them in order and skipping the next window after a stage-0 rejection (OpenCV's rule). Writes the
    /// window indices i (x = i * step) of the windows that pass every stage to hits (room for `count`)
    /// and returns how many; codes and norms are scratch of `count` entries.
    long (*scan_row)(const fkp_haar_cascade *c, const int32_t *p, const int64_t *q, long count, long step,
                     int8_t *codes, float *norms, int32_t *hits);
} fkp_detect_kernels;

/// The set that follows the engine's choice (fkp_kernels_get(), so FKP_KERNELS forces both): the set
/// under the engine's baseline, else the AVX2 set (every set of the engine above its baseline implies AVX2).
const fkp_detect_kernels *fkp_detect_kernels_get(void);
/// The set of that name if this CPU supports it, else NULL.
const fkp_detect_kernels *fkp_detect_kernels_named(const char *name);
/// Names of every detector set compiled in, best first, NULL-terminated.
const char *const *fkp_detect_kernels_all_names(void);

/// HOG detection (fhog.c): cells of FKP_FHOG_CELL pixels, each FKP_FHOG_PLANES values (Felzenszwalb's 18
/// orientation bins with sign, 9 without, 4 block energies), stored as planes.
#define FKP_FHOG_CELL 8
#define FKP_FHOG_PLANES 31

/// Bilinear resize with the corners aligned, rounded half up (dlib's resize_image for bytes). 1, or 0
/// out of memory.
int fkp_resize_bilinear(const uint8_t *src, long sw, long sh, uint8_t *dst, long dw, long dh);
/// The HOG cells of a width x height grey image: rows x cols (0 when it is too small).
void fkp_fhog_size(long width, long height, long *rows, long *cols);
/// Writes the cells as FKP_FHOG_PLANES planes of stride_rows x stride_cols (zeroed first), the image's
/// cell (0, 0) at (pad, pad) of each. 1 on success, 0 when the image is too small, -1 out of memory.
int fkp_fhog(const uint8_t *img, long width, long height, float *features, long stride_rows, long stride_cols,
             long pad);

typedef struct {
    int32_t row, col, filter;
    float value;
} fkp_fhog_hit;

/// Every window (top-left cell row, col) of planes of `rows` x `cols` cells where filter k's response
/// reaches thresholds[k]. Filter k on plane p is the sum of terms[k * planes + p] separable terms, term j's
/// column and row vectors (filter_size values each) at ((k * planes + p) * max_terms + j) * filter_size
/// in `columns` and `row_vectors`. `scratch`: fkp_fhog_scan_scratch(...) floats. Writes up to `capacity` hits and
/// returns how many there are (call again with more room when it is larger).
/// The HOG loops run the AVX2 + FMA copy when the detector's kernel set is "avx2", else the baseline
/// copy; fkp_fhog_use("avx2" or "sse2") forces one (0 if this CPU cannot), NULL follows the set again.
int fkp_fhog_use(const char *name);
/// "avx2" or "base": the copy in use.
const char *fkp_fhog_set(void);
/// Floats of scratch that fkp_fhog_scan needs.
long fkp_fhog_scan_scratch(long rows, long cols, long filter_count, long filter_size);
long fkp_fhog_scan(const float *features, long rows, long cols, const int32_t *terms, const float *columns,
                   const float *row_vectors, long max_terms, long filter_count, long filter_size,
                   const float *thresholds, float *scratch, fkp_fhog_hit *hits, long capacity);

#endif
