// 2x2 max-pool, stride 2, NHWC; an odd last row/column is dropped (Lasagne's ignore_border).

// One work-item per output element. global = (B*Ho*Wo*C rounded up).
__kernel void maxpool_forward(__global const float* restrict x, __global float* restrict y,
                              const int H, const int W, const int C, const int Ho, const int Wo,
                              const int total)
{
    const int e = get_global_id(0);
    if (e >= total) return;
    const int c = e % C;
    int t = e / C;
    const int ox = t % Wo; t /= Wo;
    const int oy = t % Ho;
    const int n = t / Ho;
    const size_t base = ((size_t)(n * H + 2 * oy) * W + 2 * ox) * C + c;
    const size_t row = (size_t)W * C;
    y[e] = fmax(fmax(x[base], x[base + C]), fmax(x[base + row], x[base + row + C]));
}

// One work-item per input element: it receives dy of its window when it is the window's first
// maximum in the order (0,0) (0,1) (1,0) (1,1), and zero otherwise (also in a dropped row/column).
// Writing every dx element means nothing has to be cleared first. global = (B*H*W*C rounded up).
__kernel void maxpool_backward(__global const float* restrict x, __global const float* restrict dy,
                               __global float* restrict dx, const int H, const int W, const int C,
                               const int Ho, const int Wo, const int total)
{
    const int e = get_global_id(0);
    if (e >= total) return;
    const int c = e % C;
    int t = e / C;
    const int xx = t % W; t /= W;
    const int yy = t % H;
    const int n = t / H;
    const int oy = yy >> 1, ox = xx >> 1;
    if (oy >= Ho || ox >= Wo) { dx[e] = 0.0f; return; }
    const size_t base = ((size_t)(n * H + 2 * oy) * W + 2 * ox) * C + c;
    const size_t row = (size_t)W * C;
    size_t best = base;
    if (x[base + C] > x[best]) best = base + C;
    if (x[base + row] > x[best]) best = base + row;
    if (x[base + row + C] > x[best]) best = base + row + C;
    dx[e] = (best == (size_t)e) ? dy[((size_t)(n * Ho + oy) * Wo + ox) * C + c] : 0.0f;
}
