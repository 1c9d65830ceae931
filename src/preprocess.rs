//! segpreproc's engine: any supported frame → the model's input tensor.
//!
//! Work is proportional to the model's input, not the camera frame: the frame's planes
//! are resized first (OpenCV `resize`), then colour conversion, scaling, mean/std and
//! quantization are applied as one affine map per channel at model resolution.
//! OpenCV's own `cvtColor` only knows BT.601; the matrix route handles BT.601 and BT.709,
//! limited and full range alike.
//!
//! Two routes compute the same tensor ([`Route`]): the hand-written one (default, bilinear
//! only) resizes the luma with OpenCV, samples the chroma straight from the frame and does
//! colour, normalization, clipping and the tensor write in one pass per tensor row
//! (`kernels`); the OpenCV route (`remap` for the chroma, `merge`, `transform`, clips,
//! `convertTo`) is the tests' reference and serves the other interpolations.

use opencv::core::{self, Mat, Scalar, Size, Vector};
use opencv::imgproc;
use opencv::prelude::*;

use crate::cvmat::{ensure_same_data, mat_over, u8_type};
use crate::error::{Error, Result};
use crate::frame::{FrameView, PixelFormat};
use crate::kernels::{self, Route};
use crate::tensor::{DType, Layout, Quantization, TensorSpec};

/// `x * scale`, then `(x - mean) / std` per RGB channel.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Normalization {
    pub scale: f32,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl Default for Normalization {
    fn default() -> Self {
        Normalization {
            scale: 1.0 / 255.0,
            mean: [0.0; 3],
            std: [1.0; 3],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResizeMode {
    /// Fill the whole tensor (aspect ratio not kept), as the course demo does.
    #[default]
    Stretch,
    /// Keep the aspect ratio and pad; the used region is reported so post-processing crops it.
    Letterbox,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Interpolation {
    Nearest,
    #[default]
    Linear,
    Area,
    Cubic,
}

impl Interpolation {
    fn cv(self) -> i32 {
        match self {
            Interpolation::Nearest => imgproc::INTER_NEAREST,
            Interpolation::Linear => imgproc::INTER_LINEAR,
            Interpolation::Area => imgproc::INTER_AREA,
            Interpolation::Cubic => imgproc::INTER_CUBIC,
        }
    }
}

/// The part of the tensor that holds the picture (all of it unless letterboxed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    pub x: usize,
    pub y: usize,
    pub width: usize,
    pub height: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PreprocessConfig {
    pub target: TensorSpec,
    pub normalization: Normalization,
    pub resize: ResizeMode,
    pub interpolation: Interpolation,
}

/// Reusable pre-processing state: scratch Mats are kept between frames so steady state
/// allocates nothing.
pub struct Preprocessor {
    config: PreprocessConfig,
    /// Resized planes, kept as a Vector so `merge` reads them without copies.
    planes: Vector<Mat>,
    chroma_split: Mat,
    merged: Mat,
    merged_f32: Mat,
    normalized: Mat,
    channel_scratch: Vector<Mat>,
    chroma_maps: Option<ChromaMaps>,
    clipped: Mat,
    luma: Mat,
    /// Resized luma and interleaved chroma of two-plane formats (NV12, YUY2, …).
    pair: Vector<Mat>,
    fused: Option<Fused>,
    route: Route,
    plan: Option<RowPlan>,
    /// Row buffers of the hand-written route, one set per band of rows (thread).
    row_buffers: Vec<RowBuffers>,
    /// Threads of the hand-written route: 0 = automatic (several for large tensors only).
    threads: usize,
}

/// Where a YUV format keeps its two chroma channels: (plane, byte offset) of each, the
/// bytes between samples, the subsampling, and the number of samples per row and rows.
#[derive(Debug, Clone, Copy, PartialEq)]
struct ChromaLayout {
    first: (usize, usize),
    second: (usize, usize),
    step: usize,
    sub: (usize, usize),
    samples: usize,
    rows: usize,
}

/// Chroma sampling tables of the hand-written route for one frame geometry.
struct RowPlan {
    key: (usize, usize, usize, usize, ChromaLayout),
    /// Per tensor column: byte index (in a chroma row) of the two taps, and the second's weight.
    columns: kernels::Taps,
    /// Per tensor row: the two chroma rows and the second's weight.
    rows: Vec<(usize, usize, f32)>,
    /// Chroma bytes of a row that the taps read.
    row_bytes: usize,
}

/// One tensor row's scratch: three input channels, three outputs.
#[derive(Default)]
struct RowBuffers {
    inputs: [Vec<f32>; 3],
    outputs: [Vec<f32>; 3],
}

/// The fused colour + normalization map for one colour source, with its clip bounds
/// and the tensor value of black.
struct Fused {
    source: ColourSource,
    matrix: Mat,
    /// The same map over the first three input channels plus the offset (hand-written route).
    rows: [[f32; 4]; 3],
    lo: [f64; 3],
    hi: [f64; 3],
    black: [f64; 3],
}

/// remap() coordinates that sample a subsampled chroma plane exactly where a bilinear
/// resize of the full-resolution, nearest-upsampled picture would (what `cvtColor`
/// followed by `resize` does), but at model resolution.
struct ChromaMaps {
    key: (usize, usize, usize, usize, i32, i32),
    map_x: Mat,
    map_y: Mat,
}

/// The two chroma samples (in a grid subsampled by `sub`) that OpenCV's bilinear sample of
/// output pixel `i` reads when resizing `full` nearest-upsampled pixels to `out`, and the
/// second one's weight (0 when both taps fall on the same chroma sample).
fn chroma_taps(i: usize, full: usize, out: usize, sub: usize) -> (usize, usize, f32) {
    let scale = full as f64 / out as f64;
    let xf = (i as f64 + 0.5) * scale - 0.5;
    let mut x0 = xf.floor();
    let mut f = xf - x0;
    if x0 < 0.0 {
        x0 = 0.0;
        f = 0.0;
    }
    let x0 = (x0 as usize).min(full - 1);
    if x0 >= full - 1 {
        f = 0.0;
    }
    let x1 = (x0 + 1).min(full - 1);
    let (k0, k1) = (x0 / sub, x1 / sub);
    (k0, k0 + 1, ((k1 - k0) as f64 * f) as f32)
}

/// Position in the chroma grid of output pixel `i` (see [`chroma_taps`]).
fn chroma_coordinate(i: usize, full: usize, out: usize, sub: usize) -> f32 {
    let (k0, _, w) = chroma_taps(i, full, out, sub);
    k0 as f32 + w
}

impl Preprocessor {
    pub fn new(config: PreprocessConfig) -> Result<Self> {
        let t = &config.target;
        if t.channels != 3 {
            return Err(Error::Model(format!(
                "model input has {} channels; segpreproc produces 3-channel RGB tensors",
                t.channels
            )));
        }
        if t.width == 0 || t.height == 0 {
            return Err(Error::Config("model input size is 0".into()));
        }
        if config.normalization.std.contains(&0.0) {
            return Err(Error::Config("std must not contain 0".into()));
        }
        Ok(Preprocessor {
            config,
            planes: Vector::from_iter([Mat::default(), Mat::default(), Mat::default()]),
            chroma_split: Mat::default(),
            merged: Mat::default(),
            merged_f32: Mat::default(),
            normalized: Mat::default(),
            channel_scratch: Vector::new(),
            chroma_maps: None,
            clipped: Mat::default(),
            luma: Mat::default(),
            pair: Vector::from_iter([Mat::default(), Mat::default()]),
            fused: None,
            route: Route::default(),
            plan: None,
            row_buffers: Vec::new(),
            threads: 0,
        })
    }

    pub fn config(&self) -> &PreprocessConfig {
        &self.config
    }

    /// Hand-written row loops (default) or OpenCV calls only (the reference; benchmarks).
    pub fn set_route(&mut self, route: Route) {
        self.route = route;
    }

    /// Threads the hand-written route splits a tensor's rows over; 0 (the default): one for
    /// tensors under 512 K pixels, else up to 4 (the machine's cores permitting).
    pub fn set_threads(&mut self, threads: usize) {
        self.threads = threads;
    }

    /// Where the picture lands in the tensor for a frame of this size.
    pub fn region_for(&self, width: usize, height: usize) -> Region {
        let t = &self.config.target;
        match self.config.resize {
            ResizeMode::Stretch => Region {
                x: 0,
                y: 0,
                width: t.width,
                height: t.height,
            },
            ResizeMode::Letterbox => {
                let s = (t.width as f64 / width as f64).min(t.height as f64 / height as f64);
                let w = ((width as f64 * s).round() as usize).clamp(1, t.width);
                let h = ((height as f64 * s).round() as usize).clamp(1, t.height);
                Region {
                    x: (t.width - w) / 2,
                    y: (t.height - h) / 2,
                    width: w,
                    height: h,
                }
            }
        }
    }

    /// Fills `out` (exactly `target.byte_size()` bytes) with the tensor for `frame`.
    pub fn run(&mut self, frame: &FrameView<'_>, out: &mut [u8]) -> Result<Region> {
        let t = self.config.target;
        if out.len() != t.byte_size() {
            return Err(Error::Input(format!(
                "tensor buffer has {} bytes, the model input needs {}",
                out.len(),
                t.byte_size()
            )));
        }
        let region = self.region_for(frame.width, frame.height);
        let size = Size::new(region.width as i32, region.height as i32);
        let interp = self.config.interpolation.cv();
        if self.route == Route::HandWritten
            && interp == imgproc::INTER_LINEAR
            && tensor_is_aligned(out, t.dtype)
        {
            self.run_rows(frame, out, region)?;
            return Ok(region);
        }

        // 1. Resize the planes to the region, then gather them into one 3-channel (or
        //    1/4-channel for gray/RGBx) u8 image whose channel order `colour` describes.
        let colour = self.resize_planes(frame, size, interp)?;

        // 2. One affine map: colour conversion ∘ scale ∘ mean/std ∘ quantization.
        // The map only changes with the stream's format or colorimetry: built once.
        self.ensure_fused(colour)?;
        let fused = self.fused.as_ref().expect("built above");
        let (lo, hi, black) = (fused.lo, fused.hi, fused.black);
        self.merged
            .convert_to(&mut self.merged_f32, core::CV_32F, 1.0, 0.0)?;
        core::transform(&self.merged_f32, &mut self.normalized, &fused.matrix)?;
        // Clip to what real RGB in 0..255 maps to (YUV can leave the RGB gamut).
        core::max(
            &self.normalized,
            &Scalar::new(lo[0], lo[1], lo[2], 0.0),
            &mut self.clipped,
        )?;
        core::min(
            &self.clipped,
            &Scalar::new(hi[0], hi[1], hi[2], 0.0),
            &mut self.normalized,
        )?;

        // 3. Write into the tensor in its layout and element type.
        if region.width != t.width || region.height != t.height {
            self.fill_padding(out, black)?;
        }
        self.write_tensor(out, region)?;
        Ok(region)
    }

    /// Builds the colour + normalization map when the colour source changes.
    fn ensure_fused(&mut self, colour: ColourSource) -> Result<()> {
        if self.fused.as_ref().is_none_or(|f| f.source != colour) {
            let (rows, lo, hi, black) = self.fused_matrix(&colour);
            let inputs = rows[0].len() - 1;
            let mut rows_f32 = [[0.0f32; 4]; 3];
            for (dst, src) in rows_f32.iter_mut().zip(&rows) {
                // Inputs beyond the third are padding (RGBx) with coefficient 0.
                for k in 0..inputs.min(3) {
                    dst[k] = src[k] as f32;
                }
                dst[3] = src[inputs] as f32;
            }
            self.fused = Some(Fused {
                source: colour,
                matrix: Mat::from_slice_2d(&rows)?,
                rows: rows_f32,
                lo,
                hi,
                black,
            });
        }
        Ok(())
    }

    /// The hand-written route: OpenCV resizes the luma (or packed RGB) plane to the
    /// region; chroma is sampled straight from the frame's chroma plane at the same
    /// positions as the OpenCV route; colour conversion, normalization, clipping and the
    /// tensor write are then one pass per tensor row, with no intermediate image.
    fn run_rows(&mut self, frame: &FrameView<'_>, out: &mut [u8], region: Region) -> Result<()> {
        let f = frame.format;
        self.ensure_fused(colour_source(f).with_colorimetry(frame))?;
        let (w, h) = (region.width, region.height);

        // 1. Luma (or packed pixels) at region size. YUY2/UYVY are read as 2-channel
        //    pixels; only their luma channel is used from the result.
        let (data, l) = &frame.planes[0];
        let (cols, ch) = match f {
            PixelFormat::Yuy2 | PixelFormat::Uyvy => (frame.width, 2),
            _ => (l.width, l.channels),
        };
        // SAFETY: FrameView::new checked the plane covers `stride * (h-1) + cols*ch` bytes.
        let src = unsafe { mat_over(data.as_ptr(), l.height, cols, u8_type(ch), l.stride) }?;
        imgproc::resize(
            &src,
            &mut self.luma,
            Size::new(w as i32, h as i32),
            0.0,
            0.0,
            imgproc::INTER_LINEAR,
        )?;
        let luma_offsets = match f {
            PixelFormat::Uyvy => [1; 3],
            _ if ch >= 3 => [0, 1, 2],
            _ => [0; 3],
        };

        // 2. Chroma sampling tables, rebuilt only when the geometry changes.
        let chroma = chroma_layout(frame);
        if let Some(c) = chroma {
            let key = (frame.width, frame.height, w, h, c);
            if self.plan.as_ref().is_none_or(|p| p.key != key) {
                self.plan = Some(RowPlan::new(key));
            }
        }

        let t = self.config.target;
        let fused = self.fused.as_ref().expect("built above");
        let black = fused.black;
        if w != t.width || h != t.height {
            self.fill_padding(out, black)?;
        }
        let job = RowJob {
            frame,
            chroma,
            plan: self.plan.as_ref(),
            luma: self.luma.data_bytes()?,
            channels: ch,
            luma_offsets,
            matrix: fused.rows,
            lo: fused.lo.map(|v| v as f32),
            hi: fused.hi.map(|v| v as f32),
            target: t,
            region,
        };
        // Large tensors (FFNet's 1024×2048) are split into bands of rows, one thread each;
        // every row is independent, so the result does not depend on the split.
        let threads = match self.threads {
            0 if w * h >= PARALLEL_MIN_PIXELS => {
                std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_THREADS))
            }
            0 => 1,
            n => n,
        }
        .clamp(1, h.max(1));
        let band = h.div_ceil(threads);
        let bounds: Vec<usize> = (0..=threads).map(|i| (i * band).min(h)).collect();
        let mut parts = tensor_bands(out, t, region.y, &bounds);
        if self.row_buffers.len() < threads {
            self.row_buffers.resize_with(threads, RowBuffers::default);
        }
        if threads == 1 {
            job.fill(0..h, &mut parts[0], &mut self.row_buffers[0]);
        } else {
            let (job, bounds) = (&job, &bounds);
            std::thread::scope(|scope| {
                let bands = parts.iter_mut().zip(self.row_buffers.iter_mut());
                for (i, (part, bufs)) in bands.enumerate() {
                    scope.spawn(move || job.fill(bounds[i]..bounds[i + 1], part, bufs));
                }
            });
        }
        Ok(())
    }

    fn resize_planes(
        &mut self,
        frame: &FrameView<'_>,
        size: Size,
        interp: i32,
    ) -> Result<ColourSource> {
        // The merged image's channels are in the order `colour_source` describes.
        let f = frame.format;
        let plane_mat = |i: usize, channels_override: Option<(usize, usize)>| -> Result<Mat> {
            let (data, l) = &frame.planes[i];
            let (cols, ch) = channels_override.unwrap_or((l.width, l.channels));
            // SAFETY: FrameView::new checked that `data` covers `stride * (h-1) + w*c` bytes.
            unsafe { mat_over(data.as_ptr(), l.height, cols, u8_type(ch), l.stride) }
        };
        match f {
            PixelFormat::Rgb
            | PixelFormat::Bgr
            | PixelFormat::Rgba
            | PixelFormat::Bgra
            | PixelFormat::Rgbx
            | PixelFormat::Bgrx
            | PixelFormat::Gray8 => {
                let src = plane_mat(0, None)?;
                imgproc::resize(&src, &mut self.merged, size, 0.0, 0.0, interp)?;
            }
            PixelFormat::Nv12 | PixelFormat::Nv21 => {
                let y = plane_mat(0, None)?;
                let uv = plane_mat(1, None)?;
                resize_into(&mut self.pair, 0, &y, size, interp)?;
                resize_chroma(
                    &mut self.chroma_maps,
                    &mut self.pair,
                    1,
                    &uv,
                    (frame.width, frame.height),
                    (2, 2),
                    size,
                    interp,
                )?;
                core::merge(&self.pair, &mut self.merged)?;
            }
            PixelFormat::I420 | PixelFormat::Yv12 => {
                let y = plane_mat(0, None)?;
                resize_into(&mut self.planes, 0, &y, size, interp)?;
                for i in 1..3 {
                    let p = plane_mat(i, None)?;
                    resize_chroma(
                        &mut self.chroma_maps,
                        &mut self.planes,
                        i,
                        &p,
                        (frame.width, frame.height),
                        (2, 2),
                        size,
                        interp,
                    )?;
                }
                core::merge(&self.planes, &mut self.merged)?;
            }
            PixelFormat::Yuy2 | PixelFormat::Uyvy => {
                // Seen as 2-channel pixels the luma is one channel; seen as 4-channel
                // pixel pairs (Y0 U Y1 V or U Y0 V Y1) the chroma is two channels.
                let l = frame.planes[0].1;
                let as_pairs = plane_mat(0, Some((l.width / 2, 4)))?;
                // Luma of the real width (an odd width leaves half a pair unused).
                let as_pixels = plane_mat(0, Some((frame.width, 2)))?;
                let (y_ch, u_ch, v_ch) = if f == PixelFormat::Yuy2 {
                    (0, 1, 3)
                } else {
                    (1, 0, 2)
                };
                let luma = &mut self.luma;
                core::extract_channel(&as_pixels, luma, y_ch)?;
                // U and V into one 2-channel image at (w/2)×h.
                if self.chroma_split.rows() != as_pairs.rows()
                    || self.chroma_split.cols() != as_pairs.cols()
                {
                    self.chroma_split = Mat::new_rows_cols_with_default(
                        as_pairs.rows(),
                        as_pairs.cols(),
                        u8_type(2),
                        Scalar::all(0.0),
                    )?;
                }
                core::mix_channels(&as_pairs, &mut self.chroma_split, &[u_ch, 0, v_ch, 1])?;
                resize_into(&mut self.pair, 0, luma, size, interp)?;
                let chroma = std::mem::take(&mut self.chroma_split);
                resize_chroma(
                    &mut self.chroma_maps,
                    &mut self.pair,
                    1,
                    &chroma,
                    (frame.width, frame.height),
                    (2, 1),
                    size,
                    interp,
                )?;
                self.chroma_split = chroma;
                core::merge(&self.pair, &mut self.merged)?;
            }
        }
        Ok(colour_source(f).with_colorimetry(frame))
    }

    /// Rows of the per-channel affine map and the clip bounds, in the tensor's units.
    /// Also returns the tensor value of black (the letterbox padding).
    #[allow(clippy::type_complexity)]
    fn fused_matrix(&self, colour: &ColourSource) -> (Vec<Vec<f64>>, [f64; 3], [f64; 3], [f64; 3]) {
        let base: Vec<Vec<f64>> = colour.to_rgb_rows();
        let n = &self.config.normalization;
        // Integer tensors without quantization parameters take raw pixel values
        // (0..255 for u8, 0..65535 for u16) under the default scale of 1/255.
        let q = self
            .config
            .target
            .quantization
            .or(match self.config.target.dtype {
                DType::F32 => None,
                DType::U8 => Some(Quantization {
                    scale: 1.0 / 255.0,
                    zero_point: 0,
                }),
                DType::U16 => Some(Quantization {
                    scale: 1.0 / 65535.0,
                    zero_point: 0,
                }),
            });
        let mut rows = Vec::with_capacity(3);
        let mut lo = [0.0; 3];
        let mut hi = [0.0; 3];
        let mut black = [0.0; 3];
        for c in 0..3 {
            let mut a = n.scale as f64 / n.std[c] as f64;
            let mut b = -(n.mean[c] as f64) / n.std[c] as f64;
            if let Some(q) = q {
                a /= q.scale as f64;
                b = b / q.scale as f64 + q.zero_point as f64;
            }
            let mut row: Vec<f64> = base[c].iter().map(|v| v * a).collect();
            *row.last_mut().expect("rows have an offset column") += b;
            rows.push(row);
            let (x, y) = (b, a * 255.0 + b);
            lo[c] = x.min(y);
            hi[c] = x.max(y);
            black[c] = b;
        }
        (rows, lo, hi, black)
    }

    /// Letterbox padding: the tensor value black would have.
    fn fill_padding(&self, out: &mut [u8], black: [f64; 3]) -> Result<()> {
        let t = self.config.target;
        let plane = t.width * t.height;
        for (c, &v) in black.iter().enumerate() {
            for i in 0..plane {
                let idx = match t.layout {
                    Layout::Nchw => c * plane + i,
                    Layout::Nhwc => i * 3 + c,
                };
                match t.dtype {
                    DType::F32 => {
                        out[idx * 4..idx * 4 + 4].copy_from_slice(&(v as f32).to_ne_bytes())
                    }
                    DType::U8 => out[idx] = v.round().clamp(0.0, 255.0) as u8,
                    DType::U16 => out[idx * 2..idx * 2 + 2]
                        .copy_from_slice(&(v.round().clamp(0.0, 65535.0) as u16).to_ne_bytes()),
                }
            }
        }
        Ok(())
    }

    fn write_tensor(&mut self, out: &mut [u8], region: Region) -> Result<()> {
        let t = self.config.target;
        let (cv_depth, esize) = match t.dtype {
            DType::F32 => (core::CV_32F, 4),
            DType::U8 => (core::CV_8U, 1),
            DType::U16 => (core::CV_16U, 2),
        };
        match t.layout {
            Layout::Nhwc => {
                let typ = core::CV_MAKETYPE(cv_depth, 3);
                let row = t.width * 3 * esize;
                let offset = region.y * row + region.x * 3 * esize;
                // SAFETY: the region lies inside the tensor, whose rows are `row` bytes.
                let mut dst = unsafe {
                    mat_over(
                        out[offset..].as_ptr(),
                        region.height,
                        region.width,
                        typ,
                        row,
                    )
                }?;
                let ptr = dst.data();
                // convert_to rounds and saturates for integer tensors; a plain copy for f32.
                self.normalized.convert_to(&mut dst, typ, 1.0, 0.0)?;
                ensure_same_data(&dst, ptr, "tensor write")?;
            }
            Layout::Nchw => {
                core::split(&self.normalized, &mut self.channel_scratch)?;
                let plane_bytes = t.width * t.height * esize;
                let row = t.width * esize;
                for c in 0..3 {
                    let offset = c * plane_bytes + region.y * row + region.x * esize;
                    // SAFETY: the region of plane c lies inside the tensor.
                    let mut dst = unsafe {
                        mat_over(
                            out[offset..].as_ptr(),
                            region.height,
                            region.width,
                            cv_depth,
                            row,
                        )
                    }?;
                    let ptr = dst.data();
                    self.channel_scratch
                        .get(c)?
                        .convert_to(&mut dst, cv_depth, 1.0, 0.0)?;
                    ensure_same_data(&dst, ptr, "tensor write")?;
                }
            }
        }
        Ok(())
    }
}

/// Whether `out` can be viewed as the tensor's element type in place.
fn tensor_is_aligned(out: &[u8], dtype: DType) -> bool {
    let align = match dtype {
        DType::F32 => std::mem::align_of::<f32>(),
        DType::U16 => std::mem::align_of::<u16>(),
        DType::U8 => 1,
    };
    (out.as_ptr() as usize).is_multiple_of(align)
}

/// What a format's channels mean before resizing (colorimetry is attached per frame).
fn colour_source(format: PixelFormat) -> ColourSource {
    match format {
        PixelFormat::Nv12 | PixelFormat::I420 | PixelFormat::Yuy2 | PixelFormat::Uyvy => {
            ColourSource::Yuv { swap_uv: false }
        }
        PixelFormat::Nv21 | PixelFormat::Yv12 => ColourSource::Yuv { swap_uv: true },
        PixelFormat::Gray8 => ColourSource::Gray,
        _ => ColourSource::Rgb {
            offsets: format.rgb_offsets().expect("packed RGB family"),
            channels: format.packed_bytes_per_pixel(),
        },
    }
}

/// Where a YUV frame's chroma is (None for RGB and gray frames).
fn chroma_layout(frame: &FrameView<'_>) -> Option<ChromaLayout> {
    let planes = &frame.planes;
    let layout = |first, second, step, sub, samples, rows| ChromaLayout {
        first,
        second,
        step,
        sub,
        samples,
        rows,
    };
    Some(match frame.format {
        PixelFormat::Nv12 | PixelFormat::Nv21 => {
            let l = planes[1].1;
            layout((1, 0), (1, 1), 2, (2, 2), l.width, l.height)
        }
        PixelFormat::I420 | PixelFormat::Yv12 => {
            let l = planes[1].1;
            layout((1, 0), (2, 0), 1, (2, 2), l.width, l.height)
        }
        PixelFormat::Yuy2 | PixelFormat::Uyvy => {
            // Pixel pairs (an odd width still stores a whole last pair).
            let pairs = planes[0].1.width / 2;
            let (u, v) = if frame.format == PixelFormat::Yuy2 {
                (1, 3)
            } else {
                (0, 2)
            };
            layout((0, u), (0, v), 4, (2, 1), pairs, frame.height)
        }
        _ => return None,
    })
}

/// Tensors with at least this many pixels are written by several threads.
const PARALLEL_MIN_PIXELS: usize = 512 * 1024;
/// The most threads one tensor is split over (memory bandwidth, not cores, limits beyond).
const MAX_THREADS: usize = 4;

/// What every row of the hand-written route reads: shared, read-only, by all threads.
struct RowJob<'a> {
    frame: &'a FrameView<'a>,
    chroma: Option<ChromaLayout>,
    plan: Option<&'a RowPlan>,
    /// The luma (or packed pixels) resized to the region, `channels` bytes a pixel.
    luma: &'a [u8],
    channels: usize,
    luma_offsets: [usize; 3],
    matrix: [[f32; 4]; 3],
    lo: [f32; 3],
    hi: [f32; 3],
    target: TensorSpec,
    region: Region,
}

/// The tensor bytes of a band of tensor rows: one slice for NHWC, one per plane for NCHW.
struct TensorBand<'a> {
    planes: Vec<&'a mut [u8]>,
    /// The tensor row the slices start at.
    first_row: usize,
}

/// Splits the tensor into disjoint bands: band i holds region rows `bounds[i]..bounds[i+1]`
/// (tensor rows shifted by `top`, the region's first row).
fn tensor_bands<'a>(
    out: &'a mut [u8],
    t: TensorSpec,
    top: usize,
    bounds: &[usize],
) -> Vec<TensorBand<'a>> {
    let element = t.dtype.size();
    let (planes, row_bytes): (Vec<&mut [u8]>, usize) = match t.layout {
        Layout::Nhwc => (vec![out], t.width * 3 * element),
        Layout::Nchw => (
            out.chunks_mut(t.width * t.height * element).collect(),
            t.width * element,
        ),
    };
    let mut bands: Vec<TensorBand<'a>> = bounds
        .windows(2)
        .map(|b| TensorBand {
            planes: Vec::new(),
            first_row: top + b[0],
        })
        .collect();
    for plane in planes {
        let (_, mut rest) = plane.split_at_mut(top * row_bytes);
        for (band, b) in bands.iter_mut().zip(bounds.windows(2)) {
            let (mine, after) = rest.split_at_mut((b[1] - b[0]) * row_bytes);
            band.planes.push(mine);
            rest = after;
        }
    }
    bands
}

impl RowJob<'_> {
    /// Region rows `rows` into `band`: luma widened, chroma sampled, colour matrix and
    /// normalization, then the tensor's layout and element type.
    fn fill(&self, rows: std::ops::Range<usize>, band: &mut TensorBand<'_>, bufs: &mut RowBuffers) {
        let (w, ch, t) = (self.region.width, self.channels, self.target);
        for v in bufs.inputs.iter_mut().chain(bufs.outputs.iter_mut()) {
            v.resize(w, 0.0);
        }
        for r in rows {
            let row = &self.luma[r * w * ch..(r + 1) * w * ch];
            let [i0, i1, i2] = &mut bufs.inputs;
            match (self.chroma, self.plan) {
                (Some(c), Some(plan)) => {
                    kernels::widen_strided(&row[self.luma_offsets[0]..], ch, i0);
                    plan.sample_chroma(self.frame, c, r, [i1, i2]);
                }
                _ => {
                    for (k, dst) in [i0, i1, i2].into_iter().enumerate() {
                        kernels::widen_strided(&row[self.luma_offsets[k]..], ch, dst);
                    }
                }
            }
            let [c0, c1, c2] = &bufs.inputs;
            let [o0, o1, o2] = &mut bufs.outputs;
            kernels::affine3([c0, c1, c2], &self.matrix, self.lo, self.hi, [o0, o1, o2]);

            // Into the band, in the tensor's layout and element type.
            let pixel = (self.region.y + r - band.first_row) * t.width + self.region.x;
            let outputs: [&[f32]; 3] = [&bufs.outputs[0], &bufs.outputs[1], &bufs.outputs[2]];
            match (t.dtype, t.layout) {
                (DType::F32, Layout::Nhwc) => {
                    // SAFETY: every bit pattern is a valid f32; alignment was checked.
                    let (_, out, _) = unsafe { band.planes[0].align_to_mut::<f32>() };
                    kernels::interleave3_f32(outputs, &mut out[pixel * 3..(pixel + w) * 3]);
                }
                (DType::F32, Layout::Nchw) => {
                    for (plane, o) in band.planes.iter_mut().zip(outputs) {
                        // SAFETY: as above.
                        let (_, out, _) = unsafe { plane.align_to_mut::<f32>() };
                        out[pixel..pixel + w].copy_from_slice(o);
                    }
                }
                (DType::U8, Layout::Nhwc) => {
                    for (k, o) in outputs.into_iter().enumerate() {
                        let out = &mut band.planes[0][pixel * 3 + k..(pixel + w) * 3];
                        kernels::round_to_u8(o, 3, out);
                    }
                }
                (DType::U8, Layout::Nchw) => {
                    for (plane, o) in band.planes.iter_mut().zip(outputs) {
                        kernels::round_to_u8(o, 1, &mut plane[pixel..pixel + w]);
                    }
                }
                (DType::U16, Layout::Nhwc) => {
                    // SAFETY: every bit pattern is a valid u16; alignment was checked.
                    let (_, out, _) = unsafe { band.planes[0].align_to_mut::<u16>() };
                    for (k, o) in outputs.into_iter().enumerate() {
                        kernels::round_to_u16(o, 3, &mut out[pixel * 3 + k..(pixel + w) * 3]);
                    }
                }
                (DType::U16, Layout::Nchw) => {
                    for (plane, o) in band.planes.iter_mut().zip(outputs) {
                        // SAFETY: as above.
                        let (_, out, _) = unsafe { plane.align_to_mut::<u16>() };
                        kernels::round_to_u16(o, 1, &mut out[pixel..pixel + w]);
                    }
                }
            }
        }
    }
}

impl RowPlan {
    fn new(key: (usize, usize, usize, usize, ChromaLayout)) -> RowPlan {
        let (full_w, full_h, w, h, c) = key;
        let last = c.samples.max(1) - 1;
        let (mut first, mut next, mut weight) = (vec![], vec![], vec![]);
        for i in 0..w {
            let (k0, k1, f) = chroma_taps(i, full_w, w, c.sub.0);
            // Odd widths leave a last pixel without its own chroma pair: replicate.
            first.push((k0.min(last) * c.step) as u32);
            next.push((k1.min(last) * c.step) as u32);
            weight.push(f);
        }
        let last_row = c.rows.max(1) - 1;
        let rows = (0..h)
            .map(|i| {
                let (k0, k1, f) = chroma_taps(i, full_h, h, c.sub.1);
                (k0.min(last_row), k1.min(last_row), f)
            })
            .collect();
        let row_bytes = next.iter().max().map_or(0, |n| *n as usize + c.step);
        RowPlan {
            key,
            columns: kernels::Taps::new(first, next, weight),
            rows,
            row_bytes,
        }
    }

    /// Both chroma channels of tensor row `r`, two taps per axis straight from the frame.
    fn sample_chroma(
        &self,
        frame: &FrameView<'_>,
        c: ChromaLayout,
        r: usize,
        outputs: [&mut Vec<f32>; 2],
    ) {
        let (k0, k1, row_weight) = self.rows[r];
        // Up to 3 bytes beyond the last tap where the buffer has them: the vector loop
        // reads 4 bytes per tap.
        let rows = |plane: usize| {
            let (data, l) = &frame.planes[plane];
            let row =
                |k: usize| &data[k * l.stride..(k * l.stride + self.row_bytes + 3).min(data.len())];
            (row(k0), row(k1))
        };
        let [u, v] = outputs;
        if c.first.0 == c.second.0 {
            let (top, bottom) = rows(c.first.0);
            kernels::sample_rows(
                top,
                bottom,
                &self.columns,
                row_weight,
                [Some((c.first.1, u)), Some((c.second.1, v))],
            );
        } else {
            for ((plane, offset), out) in [c.first, c.second].into_iter().zip([u, v]) {
                let (top, bottom) = rows(plane);
                kernels::sample_rows(
                    top,
                    bottom,
                    &self.columns,
                    row_weight,
                    [Some((offset, out)), None],
                );
            }
        }
    }
}

/// What the channels of the merged, resized image mean.
#[derive(Debug, Clone, Copy, PartialEq)]
enum ColourSource {
    Rgb {
        offsets: [usize; 3],
        channels: usize,
    },
    Gray,
    Yuv {
        swap_uv: bool,
    },
    YuvWith {
        swap_uv: bool,
        matrix: [[f64; 4]; 3],
    },
}

impl ColourSource {
    fn with_colorimetry(self, frame: &FrameView<'_>) -> Self {
        match self {
            ColourSource::Yuv { swap_uv } => ColourSource::YuvWith {
                swap_uv,
                matrix: frame.colorimetry.yuv_to_rgb(),
            },
            other => other,
        }
    }

    /// 3 rows of (input channels + 1) coefficients giving R, G, B in 0..255.
    fn to_rgb_rows(self) -> Vec<Vec<f64>> {
        match self {
            ColourSource::Rgb { offsets, channels } => (0..3)
                .map(|c| {
                    let mut r = vec![0.0; channels + 1];
                    r[offsets[c]] = 1.0;
                    r
                })
                .collect(),
            ColourSource::Gray => (0..3).map(|_| vec![1.0, 0.0]).collect(),
            ColourSource::YuvWith { swap_uv, matrix } => matrix
                .iter()
                .map(|r| {
                    if swap_uv {
                        vec![r[0], r[2], r[1], r[3]]
                    } else {
                        r.to_vec()
                    }
                })
                .collect(),
            ColourSource::Yuv { .. } => unreachable!("colorimetry is attached before use"),
        }
    }
}

/// Resizes `src` into element `i` of `planes`, reusing its memory when the size matches.
fn resize_into(
    planes: &mut Vector<Mat>,
    i: usize,
    src: &Mat,
    size: Size,
    interp: i32,
) -> Result<()> {
    // `get` hands out a header sharing the element's data, so a same-size resize writes
    // straight into it; only a reallocation needs storing back.
    let mut dst = planes.get(i)?;
    let before = dst.data();
    imgproc::resize(src, &mut dst, size, 0.0, 0.0, interp)?;
    if dst.data() != before {
        planes.set(i, dst)?;
    }
    Ok(())
}

/// Brings a subsampled chroma plane to the region size (element `index` of `planes`).
/// With bilinear interpolation it samples where `cvtColor` (nearest chroma upsampling)
/// followed by `resize` would, so results match the full-resolution route without its cost.
#[allow(clippy::too_many_arguments)]
fn resize_chroma(
    maps: &mut Option<ChromaMaps>,
    planes: &mut Vector<Mat>,
    index: usize,
    src: &Mat,
    (full_w, full_h): (usize, usize),
    sub: (usize, usize),
    size: Size,
    interp: i32,
) -> Result<()> {
    if interp != imgproc::INTER_LINEAR {
        return resize_into(planes, index, src, size, interp);
    }
    let key = (full_w, full_h, sub.0, sub.1, size.width, size.height);
    if maps.as_ref().is_none_or(|m| m.key != key) {
        let (w, h) = (size.width as usize, size.height as usize);
        let xs: Vec<f32> = (0..w)
            .map(|i| chroma_coordinate(i, full_w, w, sub.0))
            .collect();
        let ys: Vec<f32> = (0..h)
            .map(|i| chroma_coordinate(i, full_h, h, sub.1))
            .collect();
        let mut map_x =
            Mat::new_rows_cols_with_default(h as i32, w as i32, core::CV_32FC1, Scalar::all(0.0))?;
        let mut map_y =
            Mat::new_rows_cols_with_default(h as i32, w as i32, core::CV_32FC1, Scalar::all(0.0))?;
        {
            let mx = map_x.data_typed_mut::<f32>()?;
            let my = map_y.data_typed_mut::<f32>()?;
            for r in 0..h {
                mx[r * w..(r + 1) * w].copy_from_slice(&xs);
                my[r * w..(r + 1) * w].fill(ys[r]);
            }
        }
        *maps = Some(ChromaMaps { key, map_x, map_y });
    }
    let maps = maps.as_ref().expect("built above");
    let mut dst = planes.get(index)?;
    let before = dst.data();
    imgproc::remap(
        src,
        &mut dst,
        &maps.map_x,
        &maps.map_y,
        imgproc::INTER_LINEAR,
        core::BORDER_REPLICATE,
        Scalar::all(0.0),
    )?;
    if dst.data() != before {
        planes.set(index, dst)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{Colorimetry, YuvMatrix, YuvRange, packed_frame_size};

    fn config(w: usize, h: usize, layout: Layout, dtype: DType) -> PreprocessConfig {
        PreprocessConfig {
            target: TensorSpec {
                width: w,
                height: h,
                channels: 3,
                layout,
                dtype,
                quantization: None,
            },
            normalization: Normalization::default(),
            resize: ResizeMode::Stretch,
            interpolation: Interpolation::Linear,
        }
    }

    #[test]
    fn rgb_at_model_size_is_copied_exactly_into_u8_nhwc() {
        let (w, h) = (8, 4);
        let data: Vec<u8> = (0..w * h * 3).map(|i| (i * 7 % 256) as u8).collect();
        let frame = FrameView::packed(PixelFormat::Rgb, w, h, &data).unwrap();
        let mut pre = Preprocessor::new(config(w, h, Layout::Nhwc, DType::U8)).unwrap();
        let mut out = vec![0u8; w * h * 3];
        pre.run(&frame, &mut out).unwrap();
        assert_eq!(out, data);
    }

    #[test]
    fn bgrx_is_reordered_to_rgb_planes() {
        let (w, h) = (4, 2);
        let mut data = Vec::new();
        for _ in 0..w * h {
            data.extend_from_slice(&[10, 20, 30, 99]); // B G R x
        }
        let frame = FrameView::packed(PixelFormat::Bgrx, w, h, &data).unwrap();
        let mut pre = Preprocessor::new(config(w, h, Layout::Nchw, DType::F32)).unwrap();
        let mut out = vec![0u8; w * h * 3 * 4];
        pre.run(&frame, &mut out).unwrap();
        let v: Vec<f32> = out
            .chunks_exact(4)
            .map(|b| f32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let plane = w * h;
        assert!((v[0] - 30.0 / 255.0).abs() < 1e-6, "R plane first");
        assert!((v[plane] - 20.0 / 255.0).abs() < 1e-6);
        assert!((v[2 * plane] - 10.0 / 255.0).abs() < 1e-6);
    }

    /// Textbook YCbCr encodings, written out independently of Colorimetry.
    fn encode(rgb: [f64; 3], kr: f64, kb: f64, limited: bool) -> [u8; 3] {
        let [r, g, b] = rgb;
        let y = kr * r + (1.0 - kr - kb) * g + kb * b;
        let cb = (b - y) / (2.0 * (1.0 - kb));
        let cr = (r - y) / (2.0 * (1.0 - kr));
        let (ys, yo, cs) = if limited {
            (219.0, 16.0, 224.0)
        } else {
            (255.0, 0.0, 255.0)
        };
        [
            (y * ys + yo).round() as u8,
            (cb * cs + 128.0).round() as u8,
            (cr * cs + 128.0).round() as u8,
        ]
    }

    #[test]
    fn yuv_formats_convert_with_the_stream_matrix_and_range() {
        let rgb = [0.8, 0.3, 0.15];
        for (matrix, kr, kb) in [
            (YuvMatrix::Bt601, 0.299, 0.114),
            (YuvMatrix::Bt709, 0.2126, 0.0722),
        ] {
            for (range, limited) in [(YuvRange::Limited, true), (YuvRange::Full, false)] {
                let [y, u, v] = encode(rgb, kr, kb, limited);
                for format in [
                    PixelFormat::Nv12,
                    PixelFormat::Nv21,
                    PixelFormat::I420,
                    PixelFormat::Yv12,
                    PixelFormat::Yuy2,
                    PixelFormat::Uyvy,
                ] {
                    let (w, h) = (6, 4);
                    let mut data = vec![0u8; packed_frame_size(format, w, h)];
                    let luma = w * h;
                    match format {
                        PixelFormat::Nv12 | PixelFormat::Nv21 => {
                            data[..luma].fill(y);
                            for px in data[luma..].chunks_exact_mut(2) {
                                if format == PixelFormat::Nv12 {
                                    px.copy_from_slice(&[u, v])
                                } else {
                                    px.copy_from_slice(&[v, u])
                                }
                            }
                        }
                        PixelFormat::I420 | PixelFormat::Yv12 => {
                            data[..luma].fill(y);
                            let c = luma / 4;
                            let (first, second) = if format == PixelFormat::I420 {
                                (u, v)
                            } else {
                                (v, u)
                            };
                            data[luma..luma + c].fill(first);
                            data[luma + c..].fill(second);
                        }
                        PixelFormat::Yuy2 => data
                            .chunks_exact_mut(4)
                            .for_each(|p| p.copy_from_slice(&[y, u, y, v])),
                        PixelFormat::Uyvy => data
                            .chunks_exact_mut(4)
                            .for_each(|p| p.copy_from_slice(&[u, y, v, y])),
                        _ => unreachable!(),
                    }
                    let mut frame = FrameView::packed(format, w, h, &data).unwrap();
                    frame.colorimetry = Colorimetry { matrix, range };
                    let mut pre =
                        Preprocessor::new(config(3, 2, Layout::Nhwc, DType::F32)).unwrap();
                    let mut out = vec![0u8; 3 * 2 * 3 * 4];
                    pre.run(&frame, &mut out).unwrap();
                    for (i, b) in out.chunks_exact(4).enumerate() {
                        let got = f32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as f64;
                        assert!(
                            (got - rgb[i % 3]).abs() < 2.0 / 255.0,
                            "{format:?} {matrix:?} {range:?} channel {}: {got} vs {}",
                            i % 3,
                            rgb[i % 3]
                        );
                    }
                }
            }
        }
    }

    /// A smooth picture in every format: two gradients and a soft blob.
    fn smooth_frame(format: PixelFormat, w: usize, h: usize) -> Vec<u8> {
        let rgb: Vec<[f64; 3]> = (0..w * h)
            .map(|i| {
                let (x, y) = ((i % w) as f64 / w as f64, (i / w) as f64 / h as f64);
                let blob = (-((x - 0.4).powi(2) + (y - 0.6).powi(2)) * 20.0).exp();
                [
                    0.1 + 0.8 * x,
                    0.2 + 0.6 * y * (1.0 - blob),
                    0.15 + 0.7 * blob,
                ]
            })
            .collect();
        let yuv: Vec<[u8; 3]> = rgb.iter().map(|c| encode(*c, 0.299, 0.114, true)).collect();
        let at = |x: usize, y: usize| yuv[y.min(h - 1) * w + x.min(w - 1)];
        let mut data = vec![0u8; packed_frame_size(format, w, h)];
        let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
        match format {
            PixelFormat::Nv12 | PixelFormat::Nv21 | PixelFormat::I420 | PixelFormat::Yv12 => {
                for y in 0..h {
                    for x in 0..w {
                        data[y * w + x] = at(x, y)[0];
                    }
                }
                for y in 0..ch {
                    for x in 0..cw {
                        let [_, u, v] = at(2 * x, 2 * y);
                        let (a, b) = match format {
                            PixelFormat::Nv12 | PixelFormat::I420 => (u, v),
                            _ => (v, u),
                        };
                        if matches!(format, PixelFormat::Nv12 | PixelFormat::Nv21) {
                            data[w * h + (y * cw + x) * 2] = a;
                            data[w * h + (y * cw + x) * 2 + 1] = b;
                        } else {
                            data[w * h + y * cw + x] = a;
                            data[w * h + cw * ch + y * cw + x] = b;
                        }
                    }
                }
            }
            PixelFormat::Yuy2 | PixelFormat::Uyvy => {
                let row = data.len() / h;
                for y in 0..h {
                    for x in (0..w).step_by(2) {
                        let [y0, u, v] = at(x, y);
                        let y1 = at(x + 1, y)[0];
                        let px = if format == PixelFormat::Yuy2 {
                            [y0, u, y1, v]
                        } else {
                            [u, y0, v, y1]
                        };
                        data[y * row + x * 2..][..4].copy_from_slice(&px);
                    }
                }
            }
            _ => {
                let cn = format.packed_bytes_per_pixel();
                for (i, c) in rgb.iter().enumerate() {
                    let px = c.map(|v| (v * 255.0).round() as u8);
                    match format.rgb_offsets() {
                        Some(o) => {
                            for k in 0..3 {
                                data[i * cn + o[k]] = px[k];
                            }
                        }
                        None => data[i] = yuv[i][0],
                    }
                }
            }
        }
        data
    }

    fn tensor_f32(out: &[u8]) -> Vec<f32> {
        out.chunks_exact(4)
            .map(|b| f32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    }

    #[test]
    fn splitting_rows_over_threads_gives_the_same_tensor() {
        // Bands of rows in every layout and element type, with and without letterbox
        // padding, more threads than some bands have rows: byte for byte one thread's result.
        for format in [
            PixelFormat::Nv12,
            PixelFormat::I420,
            PixelFormat::Yuy2,
            PixelFormat::Rgb,
        ] {
            for (fw, fh, tw, th) in [(322, 242, 64, 48), (321, 241, 40, 40), (64, 48, 96, 7)] {
                let data = smooth_frame(format, fw, fh);
                let frame = FrameView::packed(format, fw, fh, &data).unwrap();
                for layout in [Layout::Nhwc, Layout::Nchw] {
                    for dtype in [DType::F32, DType::U8, DType::U16] {
                        let mut cfg = config(tw, th, layout, dtype);
                        if tw == th {
                            cfg.resize = ResizeMode::Letterbox;
                        }
                        let size = cfg.target.byte_size();
                        let tensors: Vec<Vec<u8>> = [1, 3, 5]
                            .into_iter()
                            .map(|threads| {
                                let mut pre = Preprocessor::new(cfg.clone()).unwrap();
                                pre.set_threads(threads);
                                let mut storage = vec![0f32; size.div_ceil(4)];
                                // SAFETY: plain bytes of f32 storage (aligned as GStreamer's).
                                let bytes = unsafe {
                                    std::slice::from_raw_parts_mut(
                                        storage.as_mut_ptr().cast::<u8>(),
                                        size,
                                    )
                                };
                                pre.run(&frame, bytes).unwrap();
                                bytes.to_vec()
                            })
                            .collect();
                        assert!(tensors[0].iter().any(|v| *v != 0));
                        for t in &tensors[1..] {
                            assert!(
                                t == &tensors[0],
                                "{format:?} {fw}×{fh}→{tw}×{th} {layout:?} {dtype:?}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn hand_written_route_matches_the_opencv_route_in_every_format_and_layout() {
        for format in PixelFormat::ALL {
            for (fw, fh, tw, th) in [(322, 242, 64, 48), (321, 241, 40, 40), (64, 48, 96, 72)] {
                let data = smooth_frame(format, fw, fh);
                let frame = FrameView::packed(format, fw, fh, &data).unwrap();
                for layout in [Layout::Nhwc, Layout::Nchw] {
                    for dtype in [DType::F32, DType::U8] {
                        let mut cfg = config(tw, th, layout, dtype);
                        cfg.normalization = Normalization {
                            scale: 1.0 / 255.0,
                            mean: [0.485, 0.456, 0.406],
                            std: [0.229, 0.224, 0.225],
                        };
                        if dtype == DType::U8 {
                            cfg.normalization = Normalization::default();
                        }
                        if tw == th {
                            cfg.resize = ResizeMode::Letterbox;
                        }
                        let mut ours = Preprocessor::new(cfg.clone()).unwrap();
                        let mut reference = Preprocessor::new(cfg).unwrap();
                        reference.set_route(Route::OpenCv);
                        let size = ours.config().target.byte_size();
                        // f32 storage keeps the tensor aligned as GStreamer's allocator does.
                        let mut a = vec![0f32; size.div_ceil(4)];
                        let mut b = vec![0f32; size.div_ceil(4)];
                        // SAFETY: plain bytes of f32 storage.
                        let (a8, b8) = unsafe {
                            (
                                std::slice::from_raw_parts_mut(a.as_mut_ptr().cast::<u8>(), size),
                                std::slice::from_raw_parts_mut(b.as_mut_ptr().cast::<u8>(), size),
                            )
                        };
                        ours.run(&frame, a8).unwrap();
                        reference.run(&frame, b8).unwrap();
                        // RGB sources agree to rounding; YUV sources differ by the OpenCV
                        // route's 8-bit chroma and 1/32-pixel remap positions.
                        let yuv = format.rgb_offsets().is_none() && format != PixelFormat::Gray8;
                        let (got, want): (Vec<f32>, Vec<f32>) = match dtype {
                            DType::F32 => (tensor_f32(a8), tensor_f32(b8)),
                            _ => (
                                a8.iter().map(|v| *v as f32 / 255.0).collect(),
                                b8.iter().map(|v| *v as f32 / 255.0).collect(),
                            ),
                        };
                        // In units of one 8-bit level before normalization.
                        let level = match dtype {
                            DType::F32 => 1.0 / 255.0 / 0.224,
                            _ => 1.0 / 255.0,
                        };
                        let tol = match (yuv, dtype) {
                            (false, DType::F32) => 1e-4,
                            (false, _) => 1.01 * level,
                            (true, _) => 2.01 * level,
                        };
                        let worst = got
                            .iter()
                            .zip(&want)
                            .map(|(x, y)| (x - y).abs())
                            .fold(0.0f32, f32::max);
                        assert!(
                            worst <= tol,
                            "{format:?} {fw}×{fh}→{tw}×{th} {layout:?} {dtype:?}: max diff {worst} (tol {tol})"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn letterbox_keeps_the_aspect_ratio_and_centres_the_picture() {
        let mut c = config(64, 64, Layout::Nchw, DType::F32);
        c.resize = ResizeMode::Letterbox;
        let pre = Preprocessor::new(c).unwrap();
        assert_eq!(
            pre.region_for(1920, 1080),
            Region {
                x: 0,
                y: 14,
                width: 64,
                height: 36
            }
        );
        assert_eq!(
            pre.region_for(480, 640),
            Region {
                x: 8,
                y: 0,
                width: 48,
                height: 64
            }
        );
    }

    #[test]
    fn wrong_tensor_buffer_size_is_an_error_not_a_panic() {
        let data = vec![0u8; 4 * 4 * 3];
        let frame = FrameView::packed(PixelFormat::Rgb, 4, 4, &data).unwrap();
        let mut pre = Preprocessor::new(config(4, 4, Layout::Nchw, DType::F32)).unwrap();
        let mut out = vec![0u8; 7];
        assert!(pre.run(&frame, &mut out).is_err());
    }
}
