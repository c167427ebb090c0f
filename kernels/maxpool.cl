// 2x2 max-pool, stride 2, NHWC; an odd last row/column is dropped (Lasagne's ignore_border).
// Work-item (g, z) handles channels [g*cPer, min(C, (g+1)*cPer)) of the pooled windows
// [z*per, min(total, (z+1)*per)) of the B*Ho*Wo grid, walking (n, oy, ox) incrementally. CPU devices
// (PoCL): work-groups of one work-item, cPer = C and a long run of windows, so the innermost loop runs
// over contiguous channels and vectorises (PoCL pays about a microsecond per work-group). GPUs:
// cPer = per = 1, work-groups of (16, 1). global = (ceil(C/cPer) rounded up, ceil(total/per)).

// This work-item's channels [c0, c1) and windows [w0, w1) (returns when empty), the first window's
// (n, oy, ox), and the distance between input rows.
#define RANGE()                                                                      \
    const int c0 = get_global_id(0) * cPer;                                          \
    const int c1 = min(C, c0 + cPer);                                                \
    const int w0 = get_global_id(1) * per;                                           \
    const int w1 = min(total, w0 + per);                                             \
    if (c0 >= c1 || w0 >= w1) return;                                                \
    int row = w0 / Wo, ox = w0 - row * Wo;                                           \
    int n = row / Ho, oy = row - n * Ho;                                             \
    const size_t down = (size_t)W * C

__kernel void maxpool_forward(__global const float* restrict x, __global float* restrict y,
                              const int H, const int W, const int C, const int Ho, const int Wo,
                              const int total, const int per, const int cPer)
{
    RANGE();
    for (int w = w0; w < w1; ++w) {
        const __global float* a = x + ((size_t)(n * H + 2 * oy) * W + 2 * ox) * C;
        const __global float* b = a + down;
        __global float* o = y + (size_t)w * C;
        for (int c = c0; c < c1; ++c) o[c] = fmax(fmax(a[c], a[c + C]), fmax(b[c], b[c + C]));
        if (++ox == Wo) { ox = 0; if (++oy == Ho) { oy = 0; ++n; } }
    }
}

// dy goes to the window's first maximum in the order (0,0) (0,1) (1,0) (1,1); the other three get
// zero, and so does a dropped last row/column (written by the last window's work-item), so every dx
// element is written and nothing has to be cleared first. With reluMask set, the routed value is also
// zeroed where that maximum is <= 0: exactly reluBackward(y: x, dy: dx) run afterwards (x is then the
// ReLU output of the layer below), done in the same pass.
__kernel void maxpool_backward(__global const float* restrict x, __global const float* restrict dy,
                               __global float* restrict dx, const int H, const int W, const int C,
                               const int Ho, const int Wo, const int total, const int per,
                               const int cPer, const int reluMask)
{
    RANGE();
    for (int w = w0; w < w1; ++w) {
        const size_t base = ((size_t)(n * H + 2 * oy) * W + 2 * ox) * C;
        const __global float* a = x + base;
        const __global float* b = a + down;
        __global float* da = dx + base;
        __global float* db = da + down;
        const __global float* g0 = dy + (size_t)w * C;
        for (int c = c0; c < c1; ++c) {
            const float v0 = a[c], v1 = a[c + C], v2 = b[c], v3 = b[c + C];
            int best = 0;
            float m = v0;
            if (v1 > m) { best = 1; m = v1; }
            if (v2 > m) { best = 2; m = v2; }
            if (v3 > m) { best = 3; m = v3; }
            const float g = reluMask && m <= 0.0f ? 0.0f : g0[c];
            da[c] = best == 0 ? g : 0.0f;
            da[c + C] = best == 1 ? g : 0.0f;
            db[c] = best == 2 ? g : 0.0f;
            db[c + C] = best == 3 ? g : 0.0f;
        }
        const bool lastColumn = ox == Wo - 1 && (W & 1);
        const bool lastRow = oy == Ho - 1 && (H & 1);
        for (int c = c0; c < c1; ++c) {
            if (lastColumn) { da[c + 2 * C] = 0.0f; db[c + 2 * C] = 0.0f; }
            if (lastRow) {
                db[c + down] = 0.0f; db[c + C + down] = 0.0f;
                if (lastColumn) db[c + 2 * C + down] = 0.0f;
            }
        }
        if (++ox == Wo) { ox = 0; if (++oy == Ho) { oy = 0; ++n; } }
    }
}
