//! segpreproc's GPU route (`compute=gpu`): the frame's planes are uploaded once, one
//! OpenCL kernel per format family (`gpu.cl`) makes the whole tensor (resize, chroma
//! sampling, colour + normalization, clipping, layout, element type, letterbox padding),
//! and the tensor is read back into the buffer ffnetinfer reads.
//!
//! The sampling tables (OpenCV's fixed-point bilinear weights for the luma, the two-tap
//! chroma weights of the CPU route) are computed here on the host, once per geometry, so
//! the device needs no double precision (Adreno has none) and samples exactly where the
//! CPU route does.
//!
//! Only bilinear interpolation has a kernel; the others run on the CPU ([`supports`]).

use opencv::core::{Kernel, UMat};

use super::colour::Fused;
use super::rows::chroma_taps;
use super::{Interpolation, PreprocessConfig};
use crate::error::Result;
use crate::frame::{ChromaSite, ColourKind, FrameView};
use crate::opencl::{self, Args};
use crate::tensor::{DType, Layout, Region, TensorSpec};

const SOURCE: &str = include_str!("gpu.cl");
/// Ints per region column and row in the sampling tables (`COL_INTS`, `ROW_INTS` in gpu.cl).
const COL_INTS: usize = 7;
const ROW_INTS: usize = 7;
/// OpenCV's INTER_RESIZE_COEF_SCALE.
const COEF_SCALE: f32 = 2048.0;

/// Why a configuration has no GPU kernel (None: it has one).
pub(super) fn supports(config: &PreprocessConfig) -> Option<String> {
    (config.interpolation != Interpolation::Linear).then(|| {
        format!(
            "interpolation={:?} has no GPU kernel (only linear has)",
            config.interpolation
        )
        .to_lowercase()
    })
}

/// What the sampling tables depend on: frame size, region, chroma site and chroma size.
type TablesKey = (usize, usize, Region, Option<ChromaSite>, [usize; 2]);

/// What the GPU route keeps between frames: the kernel, the device buffers, the tables.
pub(super) struct GpuRoute {
    /// The kernel and the build options it was built with.
    kernel: Option<(String, Kernel)>,
    planes: [UMat; 3],
    cols: UMat,
    rows: UMat,
    params: UMat,
    out: UMat,
    /// Frame and region geometry the tables were built for.
    tables_for: Option<TablesKey>,
    params_for: Option<Vec<u8>>,
}

impl Default for GpuRoute {
    fn default() -> Self {
        GpuRoute {
            kernel: None,
            planes: [UMat::new_def(), UMat::new_def(), UMat::new_def()],
            cols: UMat::new_def(),
            rows: UMat::new_def(),
            params: UMat::new_def(),
            out: UMat::new_def(),
            tables_for: None,
            params_for: None,
        }
    }
}

impl GpuRoute {
    /// The tensor for `frame` into `out` (exactly the tensor's bytes).
    pub(super) fn run(
        &mut self,
        frame: &FrameView<'_>,
        fused: &Fused,
        t: TensorSpec,
        region: Region,
        out: &mut [u8],
    ) -> Result<()> {
        let colour = frame.format.info().colour;
        let chroma = match colour {
            ColourKind::Yuv(site) if site.first.0 == site.second.0 => 1,
            ColourKind::Yuv(_) => 2,
            _ => 0,
        };
        let options = format!(
            "-D CHROMA={chroma} -D NHWC={} -D DTYPE={}",
            (t.layout == Layout::Nhwc) as i32,
            match t.dtype {
                DType::F32 => 0,
                DType::U8 => 1,
                DType::U16 => 2,
            }
        );
        if self.kernel.as_ref().is_none_or(|(o, _)| *o != options) {
            let kernel = opencl::build_kernel("tensor_from_frame", SOURCE, &options)?;
            self.kernel = Some((options, kernel));
        }
        for (umat, (data, l)) in self.planes.iter_mut().zip(frame.planes.iter()) {
            opencl::upload(&data[..l.stride * l.height], umat)?;
        }
        self.update_tables(frame, region)?;
        self.update_params(fused, t)?;
        opencl::device_buffer(&mut self.out, out.len())?;
        self.launch(frame, t, region)?;
        opencl::download(&self.out, out)
    }

    fn launch(&mut self, frame: &FrameView<'_>, t: TensorSpec, region: Region) -> Result<()> {
        let (_, l0) = frame.planes[0];
        let (luma_offsets, (a, b)) = match frame.format.info().colour {
            ColourKind::Yuv(s) => ([s.luma_offset; 3], (s.first, s.second)),
            ColourKind::Rgb { .. } => ([0, 1, 2], ((0, 0), (0, 0))),
            ColourKind::Gray => ([0; 3], ((0, 0), (0, 0))),
        };
        let stride = |plane: usize| frame.planes[plane].1.stride as i32;
        let (_, kernel) = self.kernel.as_mut().expect("built in run");
        let args = Args::new(kernel)
            .buffer(&self.planes[0])?
            .i32(l0.stride as i32)?
            .i32(l0.channels as i32)?
            .i32(luma_offsets[0] as i32)?
            .i32(luma_offsets[1] as i32)?
            .i32(luma_offsets[2] as i32)?
            .i32(area_even(frame, region) as i32)?
            .buffer(&self.planes[a.0])?
            .i32(stride(a.0))?
            .i32(a.1 as i32)?
            .buffer(&self.planes[b.0])?
            .i32(stride(b.0))?
            .i32(b.1 as i32)?
            .buffer(&self.cols)?
            .buffer(&self.rows)?
            .buffer(&self.params)?;
        let args = [
            region.x,
            region.y,
            region.width,
            region.height,
            t.width,
            t.height,
        ]
        .into_iter()
        .try_fold(args, |args, v| args.i32(v as i32))?;
        args.buffer(&self.out)?;
        opencl::run_2d(kernel, t.width, t.height)
    }

    /// The sampling tables for this frame and region, rebuilt when the geometry changes.
    fn update_tables(&mut self, frame: &FrameView<'_>, region: Region) -> Result<()> {
        let site = match frame.format.info().colour {
            ColourKind::Yuv(site) => Some(site),
            _ => None,
        };
        let chroma_size = site.map_or([0, 0], |s| {
            let l = frame.planes[s.first.0].1;
            [l.row_bytes() / s.step, l.height]
        });
        let key = (frame.width, frame.height, region, site, chroma_size);
        if self.tables_for == Some(key) {
            return Ok(());
        }
        let mut cols = Vec::with_capacity(region.width * COL_INTS);
        for i in 0..region.width {
            let (sx, next, a0, a1) = luma_taps(i, frame.width, region.width, true);
            let (k0, k1, w) = chroma_tap(
                site.map(|s| (s.sub.0, s.step)),
                i,
                frame.width,
                region.width,
                chroma_size[0],
            );
            cols.extend_from_slice(&[sx, next, a0, a1, k0, k1, w]);
        }
        let mut rows = Vec::with_capacity(region.height * ROW_INTS);
        for i in 0..region.height {
            let (r0, r1, b0, b1) = luma_taps(i, frame.height, region.height, false);
            let (k0, k1, w) = chroma_tap(
                site.map(|s| (s.sub.1, 1)),
                i,
                frame.height,
                region.height,
                chroma_size[1],
            );
            rows.extend_from_slice(&[r0, r1, b0, b1, k0, k1, w]);
        }
        opencl::upload(bytemuck::cast_slice(&cols), &mut self.cols)?;
        opencl::upload(bytemuck::cast_slice(&rows), &mut self.rows)?;
        self.tables_for = Some(key);
        Ok(())
    }

    /// The colour map, clip bounds and padding values (21 floats), uploaded when they change.
    fn update_params(&mut self, fused: &Fused, t: TensorSpec) -> Result<()> {
        let mut p = [0f32; 21];
        for (c, row) in fused.rows.iter().enumerate() {
            p[c * 4..c * 4 + 4].copy_from_slice(row);
            p[12 + c] = fused.lo[c] as f32;
            p[15 + c] = fused.hi[c] as f32;
            // As the CPU route's fill_padding rounds it.
            p[18 + c] = match t.dtype {
                DType::F32 => fused.black[c] as f32,
                DType::U8 => fused.black[c].round().clamp(0.0, 255.0) as f32,
                DType::U16 => fused.black[c].round().clamp(0.0, 65535.0) as f32,
            };
        }
        let bytes: &[u8] = bytemuck::cast_slice(&p);
        if self.params_for.as_deref() != Some(bytes) {
            opencl::upload(bytes, &mut self.params)?;
            self.params_for = Some(bytes.to_vec());
        }
        Ok(())
    }
}

/// Whether OpenCV's `resize` of this frame's plane 0 to the region is its exact-2× area
/// average with halves rounded to even (2-channel images: YUY2, UYVY; 1, 3 and 4 channels
/// round halves up, as the bilinear formula does).
fn area_even(frame: &FrameView<'_>, region: Region) -> bool {
    let exact_2x = |full: usize, out: usize| {
        let scale = 1.0 / (out as f64 / full as f64);
        (scale - 2.0).abs() < f64::EPSILON
    };
    frame.planes[0].1.channels == 2
        && exact_2x(frame.width, region.width)
        && exact_2x(frame.height, region.height)
}

/// OpenCV's `resize` (INTER_LINEAR, 8-bit) taps for output `i` of `out` from `full`
/// samples: the two source indices and the fixed-point weights, computed as OpenCV does
/// (the scale as `1 / (out / full)`, positions in f32, weights rounded to even). Columns
/// clamp the position (weights 2048, 0 at the edges); rows clamp only the row indices.
fn luma_taps(i: usize, full: usize, out: usize, column: bool) -> (i32, i32, i32, i32) {
    let scale = 1.0 / (out as f64 / full as f64);
    let mut f = ((i as f64 + 0.5) * scale - 0.5) as f32;
    let mut s = f.floor() as i64;
    f -= s as f32;
    let last = full as i64 - 1;
    if column {
        if s < 0 {
            (s, f) = (0, 0.0);
        }
        if s >= last {
            (s, f) = (last, 0.0);
        }
    }
    let weight = |v: f32| (v * COEF_SCALE).round_ties_even() as i32;
    let (a0, a1) = (weight(1.0 - f), weight(f));
    let (r0, r1) = (s.clamp(0, last), (s + 1).clamp(0, last));
    (r0 as i32, r1 as i32, a0, a1)
}

/// The CPU route's chroma taps for output `i` (byte offsets `step` apart in a chroma row,
/// or row indices with `step` 1), the weight as f32 bits; zeros for RGB and gray frames.
fn chroma_tap(
    site: Option<(usize, usize)>,
    i: usize,
    full: usize,
    out: usize,
    samples: usize,
) -> (i32, i32, i32) {
    let Some((sub, step)) = site else {
        return (0, 0, 0);
    };
    let last = samples.max(1) - 1;
    let (k0, k1, w) = chroma_taps(i, full, out, sub);
    (
        (k0.min(last) * step) as i32,
        (k1.min(last) * step) as i32,
        w.to_bits() as i32,
    )
}
