//! segpreproc's engine: any supported frame → the model's input tensor.
//!
//! Work is proportional to the model's input, not the camera frame: the frame's planes
//! are resized first, then colour conversion, scaling, mean/std and quantization are
//! applied as one affine map per channel at model resolution ([`colour`]). OpenCV's own
//! `cvtColor` only knows BT.601; the matrix handles BT.601 and BT.709, limited and full
//! range alike.
//!
//! Two routes compute the same tensor ([`Route`]): the hand-written one (default, bilinear
//! only: `rows`, its row loops in `kernels`, its threads in `threads`) and the OpenCV one
//! (`reference`), which tests and benchmarks compare it with and which serves the other
//! interpolations. A third, the GPU route (`gpu`, `compute=gpu`), makes the same tensor
//! with one OpenCL kernel; [`Preprocessor::set_compute`] chooses it.

mod colour;
mod gpu;
mod kernels;
pub mod modelinfo;
mod reference;
mod rows;
mod threads;

use opencv::imgproc;

use crate::error::{Error, Result};
use crate::frame::FrameView;
use crate::kernels::Route;
use crate::opencl::{self, Active, Choice, Compute};
use crate::tensor::{DType, Layout, Region, TensorSpec};
use colour::{ColourSource, Fused};
use reference::Reference;
use rows::{RowBuffers, RowScratch};

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
    /// Fill the whole tensor, aspect ratio not kept (what most segmentation demos do).
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

#[derive(Debug, Clone, PartialEq)]
pub struct PreprocessConfig {
    pub target: TensorSpec,
    pub normalization: Normalization,
    pub resize: ResizeMode,
    pub interpolation: Interpolation,
}

/// Reusable pre-processing state: scratch images are kept between frames so steady state
/// allocates nothing.
pub struct Preprocessor {
    config: PreprocessConfig,
    route: Route,
    /// Threads of the hand-written route: 0 = automatic (several for large tensors only).
    threads: usize,
    /// The colour + normalization map; it changes only with the stream's format or
    /// colorimetry, so it is built once.
    fused: Option<Fused>,
    rows: RowScratch,
    /// Row buffers of the hand-written route, one set per band of rows (thread).
    row_buffers: Vec<RowBuffers>,
    reference: Reference,
    /// Where the tensor is made: the CPU routes above or the OpenCL kernel.
    active: Active,
    gpu: gpu::GpuRoute,
    /// Whether a failing GPU route falls back to the CPU (else the frame fails).
    gpu_fallback: bool,
    /// Why the GPU route stopped during a frame, for the element to announce once.
    notice: Option<String>,
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
            route: Route::default(),
            threads: 0,
            fused: None,
            rows: RowScratch::default(),
            row_buffers: Vec::new(),
            reference: Reference::new(),
            active: Active::Cpu,
            gpu: gpu::GpuRoute::default(),
            gpu_fallback: true,
            notice: None,
        })
    }

    /// Chooses where the tensor is made. `compute=gpu` without a usable OpenCL device (or
    /// without a kernel for this configuration) runs on the CPU and the choice says why,
    /// or is an error when `allow_fallback` is false. Later GPU failures do the same
    /// ([`Self::take_notice`]).
    pub fn set_compute(&mut self, request: Compute, allow_fallback: bool) -> Result<Choice> {
        let mut choice = opencl::choose(request);
        if choice.active.is_gpu()
            && let Some(why) = gpu::supports(&self.config)
        {
            choice.active = Active::Cpu;
            choice.reason = (request == Compute::Gpu).then_some(why);
        }
        if let (Some(why), false) = (&choice.reason, allow_fallback) {
            return Err(Error::Gpu(format!(
                "compute=gpu cannot run: {why} (disable-cpu-fallback is set)"
            )));
        }
        self.active = choice.active.clone();
        self.gpu_fallback = allow_fallback;
        Ok(choice)
    }

    /// Where the tensor is made now.
    pub fn active(&self) -> &Active {
        &self.active
    }

    /// Why the GPU route gave way to the CPU during the last frame, once.
    pub fn take_notice(&mut self) -> Option<String> {
        self.notice.take()
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
        let colour = ColourSource::of(frame);
        if self.fused.as_ref().is_none_or(|f| f.source != colour) {
            self.fused = Some(Fused::new(colour, &t, &self.config.normalization)?);
        }
        let fused = self.fused.as_ref().expect("built above");
        if self.active.is_gpu() {
            match self.gpu.run(frame, fused, t, region, out) {
                Ok(()) => return Ok(region),
                Err(e) if self.gpu_fallback => {
                    self.notice = Some(format!("the GPU route failed ({e}); running on the CPU"));
                    self.active = Active::Cpu;
                }
                Err(e) => return Err(e),
            }
        }
        if region.width != t.width || region.height != t.height {
            fill_padding(out, t, fused.black);
        }
        let interp = self.config.interpolation.cv();
        if self.route == Route::HandWritten
            && interp == imgproc::INTER_LINEAR
            && tensor_is_aligned(out, t.dtype)
        {
            let job = self.rows.job(frame, fused, t, region)?;
            let buffers = &mut self.row_buffers;
            threads::fill_rows(&job, out, t, region, self.threads, buffers);
        } else {
            self.reference.run(frame, fused, interp, out, t, region)?;
        }
        Ok(region)
    }
}

/// Letterbox padding: the tensor value black would have.
fn fill_padding(out: &mut [u8], t: TensorSpec, black: [f64; 3]) {
    let plane = t.width * t.height;
    for (c, &v) in black.iter().enumerate() {
        for i in 0..plane {
            let idx = match t.layout {
                Layout::Nchw => c * plane + i,
                Layout::Nhwc => i * 3 + c,
            };
            match t.dtype {
                DType::F32 => out[idx * 4..idx * 4 + 4].copy_from_slice(&(v as f32).to_ne_bytes()),
                DType::U8 => out[idx] = v.round().clamp(0.0, 255.0) as u8,
                DType::U16 => out[idx * 2..idx * 2 + 2]
                    .copy_from_slice(&(v.round().clamp(0.0, 65535.0) as u16).to_ne_bytes()),
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{
        Colorimetry, ColourKind, PixelFormat, YuvMatrix, YuvRange, packed_frame_size,
    };

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
            .map(bytemuck::pod_read_unaligned)
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
                let yuv_formats = PixelFormat::ALL
                    .into_iter()
                    .filter(|f| matches!(f.info().colour, ColourKind::Yuv(_)));
                for format in yuv_formats {
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
                    let values: Vec<f32> = out
                        .chunks_exact(4)
                        .map(bytemuck::pod_read_unaligned)
                        .collect();
                    for (i, got) in values.into_iter().enumerate() {
                        let got = got as f64;
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
            .map(bytemuck::pod_read_unaligned)
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
                                // f32 storage: aligned as GStreamer's tensors are.
                                let mut storage = vec![0f32; size.div_ceil(4)];
                                let bytes =
                                    &mut bytemuck::cast_slice_mut::<f32, u8>(&mut storage)[..size];
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
                        let a8 = &mut bytemuck::cast_slice_mut::<f32, u8>(&mut a)[..size];
                        let b8 = &mut bytemuck::cast_slice_mut::<f32, u8>(&mut b)[..size];
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
