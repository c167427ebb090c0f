// 2x2 max-pool, stride 2, NHWC; an odd last row/column is dropped (Lasagne's ignore_border).
// Both kernels run over the pooled grid as (channel, ox, n*Ho + oy): no divisions, and neighbouring
// work-items touch neighbouring channels. global = (C rounded up to 16, Wo, B*Ho), local = (16, 1, 1).

__kernel void maxpool_forward(__global const float* restrict x, __global float* restrict y,
                              const int H, const int W, const int C, const int Ho, const int Wo)
{
    const int c = get_global_id(0);
    if (c >= C) return;
    const int ox = get_global_id(1);
    const int row = get_global_id(2);  // n*Ho + oy
    const int n = row / Ho, oy = row - n * Ho;
    const size_t base = ((size_t)(n * H + 2 * oy) * W + 2 * ox) * C + c;
    const size_t down = (size_t)W * C;
    y[((size_t)row * Wo + ox) * C + c] = fmax(fmax(x[base], x[base + C]), fmax(x[base + down], x[base + down + C]));
}

// dy goes to the window's first maximum in the order (0,0) (0,1) (1,0) (1,1); the other three get
// zero, and so does a dropped last row/column (written by the last window's work-item), so every dx
// element is written and nothing has to be cleared first.
__kernel void maxpool_backward(__global const float* restrict x, __global const float* restrict dy,
                               __global float* restrict dx, const int H, const int W, const int C,
                               const int Ho, const int Wo)
{
    const int c = get_global_id(0);
    if (c >= C) return;
    const int ox = get_global_id(1);
    const int row = get_global_id(2);
    const int n = row / Ho, oy = row - n * Ho;
    const size_t down = (size_t)W * C;
    const size_t p0 = ((size_t)(n * H + 2 * oy) * W + 2 * ox) * C + c;
    const size_t p1 = p0 + C, p2 = p0 + down, p3 = p2 + C;
    const float g = dy[((size_t)row * Wo + ox) * C + c];
    const float v0 = x[p0], v1 = x[p1], v2 = x[p2], v3 = x[p3];
    int best = 0;
    float m = v0;
    if (v1 > m) { best = 1; m = v1; }
    if (v2 > m) { best = 2; m = v2; }
    if (v3 > m) { best = 3; }
    dx[p0] = best == 0 ? g : 0.0f;
    dx[p1] = best == 1 ? g : 0.0f;
    dx[p2] = best == 2 ? g : 0.0f;
    dx[p3] = best == 3 ? g : 0.0f;
    const bool lastColumn = ox == Wo - 1 && (W & 1);
    const bool lastRow = oy == Ho - 1 && (H & 1);
    if (lastColumn) { dx[p1 + C] = 0.0f; dx[p3 + C] = 0.0f; }
    if (lastRow) {
        dx[p2 + down] = 0.0f; dx[p3 + down] = 0.0f;
        if (lastColumn) dx[p3 + down + C] = 0.0f;
    }
}
