// segpostproc's GPU route. The CPU route's arithmetic, operation for operation (no fused
// multiply-adds), so masks agree with it wherever the smoothed map does.
#pragma OPENCL FP_CONTRACT OFF

// One work item per model pixel: p_t (softmax over the classes for multi-class models, as
// the CPU route's max / exp / sum / divide), the exponential average of the class
// probabilities (or of p for one-channel models) kept in `class_state` / `smoothed`, and
// the sum of the selected classes. `restart`: the first result (s_0 = p_0); `a` = 1 copies.
__kernel void update_scores(
    __global const float* scores, int classes, int nhwc, int plane,
    __global float* class_state, __global float* smoothed,
    __global const int* selected, int n_selected, float a, int restart)
{
    int i = get_global_id(0);
    if (i >= plane || get_global_id(1) != 0)
        return;
    int keep = !restart && a < 1.0f;
    float b = 1.0f - a;
    if (classes == 1) {
        float p = scores[i];
        smoothed[i] = keep ? p * a + smoothed[i] * b : p;
        return;
    }
    float m = -INFINITY;
    for (int k = 0; k < classes; k++)
        m = fmax(m, nhwc ? scores[i * classes + k] : scores[k * plane + i]);
    float total = 0.0f;
    for (int k = 0; k < classes; k++)
        total += exp((nhwc ? scores[i * classes + k] : scores[k * plane + i]) - m);
    for (int k = 0; k < classes; k++) {
        float p = exp((nhwc ? scores[i * classes + k] : scores[k * plane + i]) - m) / total;
        __global float* s = class_state + k * plane + i;
        *s = keep ? p * a + *s * b : p;
    }
    float sum = 0.0f;
    for (int j = 0; j < n_selected; j++)
        sum += class_state[selected[j] * plane + i];
    smoothed[i] = sum;
}

// The bilinear upsample of s at one pixel of a painted plane (mask_runs.rs's formula: rows
// first, then columns; sampling tables from its Axis), then by `output`: 0 the overlay blend
// of pixels above the threshold, `(p·keep + term) >> 8`; 1 the hard mask byte (0/255);
// 2 the soft matte byte, s·255 rounded (mode=alpha).
#define OVERLAY 0
#define MASK 1
#define SOFT 2
__kernel void paint_plane(
    __global uchar* pixels, int stride, int cn, int cols, int rows,
    __global const float* map, int map_stride, int cx, int cy, int cw, int ch,
    __global const int* ax, __global const int* ay, float threshold,
    int keep, int t0, int t1, int t2, int t3, int output)
{
    int x = get_global_id(0), y = get_global_id(1);
    if (x >= cols || y >= rows)
        return;
    int s = ax[2 * x], band = ay[2 * y];
    float fx = as_float(ax[2 * x + 1]), fy = as_float(ay[2 * y + 1]);
    int s1 = min(s + 1, cw - 1), b1 = min(band + 1, ch - 1);
    __global const float* top = map + (cy + band) * map_stride + cx;
    __global const float* bottom = map + (cy + b1) * map_stride + cx;
    float left = top[s] * (1.0f - fy) + bottom[s] * fy;
    float right = top[s1] * (1.0f - fy) + bottom[s1] * fy;
    float v = left * (1.0f - fx) + right * fx;
    int masked = v > threshold;
    __global uchar* p = pixels + y * stride + x * cn;
    if (output == SOFT) {
        p[0] = convert_uchar_sat_rte(v * 255.0f);
        return;
    }
    if (output == MASK) {
        p[0] = masked ? 255 : 0;
        return;
    }
    if (!masked)
        return;
    int terms[4] = {t0, t1, t2, t3};
    for (int k = 0; k < cn; k++)
        p[k] = (uchar)((p[k] * keep + terms[k]) >> 8);
}

// OpenCV's `blur` (k×k box, BORDER_REFLECT_101) of the hard mask: mode=mask with blur > 1.
inline int reflect101(int i, int n)
{
    if (n == 1)
        return 0;
    i = i < 0 ? -i : i;
    return i >= n ? 2 * n - 2 - i : i;
}

__kernel void box_blur(__global const uchar* hard, int cols, int rows, int k,
                       __global uchar* out)
{
    int x = get_global_id(0), y = get_global_id(1);
    if (x >= cols || y >= rows)
        return;
    int r = k / 2, sum = 0;
    for (int dy = -r; dy <= r; dy++) {
        __global const uchar* row = hard + reflect101(y + dy, rows) * cols;
        for (int dx = -r; dx <= r; dx++)
            sum += row[reflect101(x + dx, cols)];
    }
    out[y * cols + x] = convert_uchar_sat_rte((float)sum / (float)(k * k));
}

// mode=overlay with blur > 1: OpenCV's blendLinear of the plane and the colour with the
// weights the CPU route gives it, w = alpha·o/255 and 1 − w.
__kernel void blend_soft(__global uchar* pixels, int cn, int cols, int rows,
                         __global const uchar* alpha, float scale,
                         int c0, int c1, int c2, int c3)
{
    int x = get_global_id(0), y = get_global_id(1);
    if (x >= cols || y >= rows)
        return;
    float w2 = (float)alpha[y * cols + x] * scale;
    float w1 = w2 * -1.0f + 1.0f;
    float den = w1 + w2 + 1e-5f;
    int c[4] = {c0, c1, c2, c3};
    __global uchar* p = pixels + (y * cols + x) * cn;
    for (int k = 0; k < cn; k++)
        p[k] = convert_uchar_sat_rte(((float)p[k] * w1 + (float)c[k] * w2) / den);
}

// mode=classes and mode=labels: the top class of the smoothed class probabilities (the first
// of equals; `> threshold` for one-channel models) at the nearest model pixel (resize's
// INTER_NEAREST positions, tables from render::nearest_positions), then the palette blend
// `(p·keep + term) >> 8` or the label byte.
__kernel void paint_classes(__global uchar* pixels, int cn, int cols, int rows,
                            __global const float* state, int classes, int map_w, int map_h,
                            int cx, int cy, float threshold,
                            __global const int* sx, __global const int* sy,
                            __global const int* palette, int keep, int write_label)
{
    int x = get_global_id(0), y = get_global_id(1);
    if (x >= cols || y >= rows)
        return;
    int px = cx + sx[x], py = cy + sy[y];
    int label = 0;
    if (classes == 1) {
        label = state[py * map_w + px] > threshold;
    } else {
        float best = state[py * map_w + px];
        for (int k = 1; k < classes; k++) {
            float v = state[(k * map_h + py) * map_w + px];
            if (v > best) {
                best = v;
                label = k;
            }
        }
    }
    label = min(label, 255);
    __global uchar* p = pixels + (y * cols + x) * cn;
    if (write_label) {
        p[0] = (uchar)label;
        return;
    }
    for (int k = 0; k < cn; k++)
        p[k] = (uchar)((p[k] * keep + palette[label * cn + k]) >> 8);
}
