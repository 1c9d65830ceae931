// segpreproc's GPU route: one work item per tensor pixel does what the CPU route does in
// several passes: OpenCV's fixed-point bilinear resize of the luma (or packed RGB) plane,
// two-tap chroma sampling straight from the frame, the fused colour + normalization map,
// clipping, and the store in the tensor's layout and element type (letterbox padding
// included). The arithmetic is the CPU route's, operation for operation, so the tensors
// agree to the bit where the hardware rounds as the CPU does.
//
// Build options: CHROMA 0 (RGB, gray) / 1 (both chroma channels in one plane: NV12, NV21,
// YUY2, UYVY) / 2 (two chroma planes: I420, YV12); NHWC 0/1; DTYPE 0 f32 / 1 u8 / 2 u16.

// No fused multiply-adds: the CPU route rounds after every multiply.
#pragma OPENCL FP_CONTRACT OFF

// Per region column: source pixel and the next one, fixed-point weights (OpenCV's
// INTER_RESIZE_COEF_SCALE = 2048), chroma byte offsets of both taps, chroma weight bits.
#define COL_INTS 7
// Per region row: two source rows and weights, two chroma rows, chroma weight bits.
#define ROW_INTS 7

// OpenCV's HResizeLinear + VResizeLinear<uchar, int, short> for one channel. At an exact
// 2× reduction OpenCV averages 2×2 pixels instead (the same value, except that 2-channel
// images round halves to even: `area_even`).
inline float luma_at(__global const uchar* plane, int stride, int cn, int offset,
                     __global const int* col, __global const int* row, int area_even)
{
    __global const uchar* r0 = plane + row[0] * stride + offset;
    __global const uchar* r1 = plane + row[1] * stride + offset;
    int x0 = col[0] * cn, x1 = col[1] * cn;
    if (area_even)
        return rint((float)(r0[x0] + r0[x1] + r1[x0] + r1[x1]) * 0.25f);
    int h0 = r0[x0] * col[2] + r0[x1] * col[3];
    int h1 = r1[x0] * col[2] + r1[x1] * col[3];
    int v = (((row[2] * (h0 >> 4)) >> 16) + ((row[3] * (h1 >> 4)) >> 16) + 2) >> 2;
    return (float)clamp(v, 0, 255);
}

// The CPU route's sample_at: columns first, then rows, multiply then add.
inline float chroma_at(__global const uchar* plane, int stride, int offset,
                       __global const int* col, __global const int* row)
{
    __global const uchar* top = plane + row[4] * stride + offset;
    __global const uchar* bottom = plane + row[5] * stride + offset;
    float w = as_float(col[6]);
    float t = (float)top[col[4]] + ((float)top[col[5]] - (float)top[col[4]]) * w;
    float b = (float)bottom[col[4]] + ((float)bottom[col[5]] - (float)bottom[col[4]]) * w;
    return t + (b - t) * as_float(row[6]);
}

inline void store(__global uchar* out, int index, float v)
{
#if DTYPE == 0
    *(__global float*)(out + index * 4) = v;
#elif DTYPE == 1
    out[index] = convert_uchar_sat_rte(v);
#else
    *(__global ushort*)(out + index * 2) = convert_ushort_sat_rte(v);
#endif
}

__kernel void tensor_from_frame(
    __global const uchar* luma, int luma_stride, int luma_cn,
    int off0, int off1, int off2, int area_even,
    __global const uchar* chroma_a, int stride_a, int offset_a,
    __global const uchar* chroma_b, int stride_b, int offset_b,
    __global const int* cols, __global const int* rows,
    __global const float* params,
    int rx, int ry, int rw, int rh, int width, int height,
    __global uchar* out)
{
    int x = get_global_id(0), y = get_global_id(1);
    if (x >= width || y >= height)
        return;
    float o[3];
    int u = x - rx, v = y - ry;
    if (u < 0 || v < 0 || u >= rw || v >= rh) {
        // Letterbox padding: the tensor value of black (params 18..20, already rounded).
        o[0] = params[18]; o[1] = params[19]; o[2] = params[20];
    } else {
        __global const int* col = cols + u * COL_INTS;
        __global const int* row = rows + v * ROW_INTS;
        float i0 = luma_at(luma, luma_stride, luma_cn, off0, col, row, area_even);
        float i1, i2;
#if CHROMA == 0
        i1 = luma_at(luma, luma_stride, luma_cn, off1, col, row, area_even);
        i2 = luma_at(luma, luma_stride, luma_cn, off2, col, row, area_even);
#else
        i1 = chroma_at(chroma_a, stride_a, offset_a, col, row);
        i2 = chroma_at(chroma_b, stride_b, offset_b, col, row);
#endif
        for (int c = 0; c < 3; c++) {
            __global const float* m = params + c * 4;
            float s = m[0] * i0 + m[1] * i1 + m[2] * i2 + m[3];
            float lo = params[12 + c], hi = params[15 + c];
            o[c] = s < lo ? lo : (s > hi ? hi : s);
        }
    }
#if NHWC
    int base = (y * width + x) * 3;
    store(out, base, o[0]);
    store(out, base + 1, o[1]);
    store(out, base + 2, o[2]);
#else
    int plane = width * height, at = y * width + x;
    store(out, at, o[0]);
    store(out, plane + at, o[1]);
    store(out, 2 * plane + at, o[2]);
#endif
}
