//! segpostproc's engine: model scores → smoothed foreground probability → mask/alpha at
//! frame resolution → rendering into the frame in its own format.
//!
//! Stage meanings (DESIGN.md §2): `p_t` foreground probability at model resolution (the
//! output itself for one-channel models, the softmax summed over the selected classes
//! for multi-class ones); `s_t = a·p_t + (1−a)·s_{t−1}`, `s_0 = p_0`
//! (`accumulateWeighted`); bilinear upsample (`resize`); `m = s > threshold`
//! (`threshold`); `alpha = blur(m, k×k)` (`blur`); overlay
//! `out = frame·(1 − o·alpha) + colour·o·alpha` (`blendLinear`), plane by plane in the
//! frame's own format.
//!
//! The hard mask and the overlay without blur have a hand-written route ([`Route`], the
//! default): `mask_runs` finds the masked pixels of each row without upsampling the map,
//! and only those are blended (`kernels::blend_span`). The OpenCV route (`resize`,
//! `compare`, `addWeighted`, masked copy) is the tests' reference.

use opencv::core::{self, Mat, Rect, Scalar, Size, Vector};
use opencv::imgproc;
use opencv::prelude::*;

use crate::classes::palette_color;
use crate::cvmat::{ensure_same_data, mat_over, u8_type};
use crate::error::{Error, Result};
use crate::frame::{Colorimetry, FrameViewMut, PixelFormat};
use crate::inference::OutputSpec;
use crate::kernels::{self, Route};
use crate::mask_runs::MaskRuns;
use crate::preprocess::Region;
use crate::tensor::Layout;

#[derive(Debug, Clone, PartialEq)]
pub struct PostprocessConfig {
    /// Weight `a` of the newest frame; 1 turns smoothing off.
    pub smoothing: f32,
    pub threshold: f32,
    /// Box-blur kernel (odd); 1 turns it off.
    pub blur: usize,
    /// Foreground classes of a multi-class model.
    pub classes: Vec<usize>,
}

impl Default for PostprocessConfig {
    fn default() -> Self {
        PostprocessConfig {
            smoothing: 1.0,
            threshold: 0.55,
            blur: 1,
            classes: vec![11, 12],
        }
    }
}

impl PostprocessConfig {
    pub fn validate(&self) -> Result<()> {
        if !(self.smoothing > 0.0 && self.smoothing <= 1.0) {
            return Err(Error::Config(format!(
                "smoothing {} is outside (0, 1]; 1 turns smoothing off",
                self.smoothing
            )));
        }
        if !(0.0..=1.0).contains(&self.threshold) {
            return Err(Error::Config(format!(
                "threshold {} is outside [0, 1]",
                self.threshold
            )));
        }
        if self.blur == 0 || self.blur.is_multiple_of(2) {
            return Err(Error::Config(format!(
                "blur {} must be an odd kernel size (1 turns blurring off)",
                self.blur
            )));
        }
        Ok(())
    }
}

/// Scores as ffnetinfer produced them.
#[derive(Debug, Clone, Copy)]
pub struct ScoresView<'a> {
    pub data: &'a [f32],
    pub spec: OutputSpec,
    /// The picture's region in the model's input tensor (letterboxing), and that tensor's size.
    pub region: Option<(Region, usize, usize)>,
}

/// One channel of a frame plane, as the renderers need to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Channel {
    Y,
    U,
    V,
    R,
    G,
    B,
    /// Alpha or padding: left as the frame had it where possible, opaque otherwise.
    Keep,
}

/// How each plane of a format is rendered: (plane index, columns divisor, channels).
/// YUY2/UYVY are handled as 4-channel pixel pairs so chroma stays unmixed.
fn plane_channels(format: PixelFormat) -> Vec<(usize, usize, Vec<Channel>)> {
    use Channel::*;
    match format {
        PixelFormat::Nv12 => vec![(0, 1, vec![Y]), (1, 1, vec![U, V])],
        PixelFormat::Nv21 => vec![(0, 1, vec![Y]), (1, 1, vec![V, U])],
        PixelFormat::I420 => vec![(0, 1, vec![Y]), (1, 1, vec![U]), (2, 1, vec![V])],
        PixelFormat::Yv12 => vec![(0, 1, vec![Y]), (1, 1, vec![V]), (2, 1, vec![U])],
        PixelFormat::Yuy2 => vec![(0, 2, vec![Y, U, Y, V])],
        PixelFormat::Uyvy => vec![(0, 2, vec![U, Y, V, Y])],
        PixelFormat::Rgb => vec![(0, 1, vec![R, G, B])],
        PixelFormat::Bgr => vec![(0, 1, vec![B, G, R])],
        PixelFormat::Rgba | PixelFormat::Rgbx => vec![(0, 1, vec![R, G, B, Keep])],
        PixelFormat::Bgra | PixelFormat::Bgrx => vec![(0, 1, vec![B, G, R, Keep])],
        PixelFormat::Gray8 => vec![(0, 1, vec![Y])],
    }
}

fn channel_value(ch: Channel, rgb: [u8; 3], yuv: [u8; 3], gray: bool) -> f64 {
    match ch {
        Channel::Y if gray => {
            (0.299 * rgb[0] as f64 + 0.587 * rgb[1] as f64 + 0.114 * rgb[2] as f64).round()
        }
        Channel::Y => yuv[0] as f64,
        Channel::U => yuv[1] as f64,
        Channel::V => yuv[2] as f64,
        Channel::R => rgb[0] as f64,
        Channel::G => rgb[1] as f64,
        Channel::B => rgb[2] as f64,
        Channel::Keep => 255.0,
    }
}

/// Temporal state and scratch images; one per stream.
pub struct Postprocessor {
    config: PostprocessConfig,
    /// s_t at model resolution (H×W f32).
    smoothed: Option<Mat>,
    /// Smoothed per-class probabilities, classes stacked vertically ((C·H)×W f32).
    smoothed_classes: Option<Mat>,
    spec: Option<OutputSpec>,
    region: Option<(Region, usize, usize)>,
    probability: Mat,
    class_probs: Mat,
    softmax_scratch: SoftmaxScratch,
    class_paint: Option<ClassPaint>,
    upsampled: Mat,
    small_u16: Mat,
    up_u16: Mat,
    blended: Mat,
    hard: Mat,
    alpha: Mat,
    weights: Mat,
    inverse: Mat,
    constant: Mat,
    blurred: Mat,
    labels_small: Mat,
    labels: Mat,
    palette_image: Mat,
    route: Route,
    runs: MaskRuns,
    /// Whether `runs` holds the current map and threshold (all planes share them).
    runs_ready: bool,
    colour_terms: Vec<u16>,
}

impl Postprocessor {
    pub fn new(config: PostprocessConfig) -> Result<Self> {
        config.validate()?;
        Ok(Postprocessor {
            config,
            smoothed: None,
            smoothed_classes: None,
            spec: None,
            region: None,
            probability: Mat::default(),
            class_probs: Mat::default(),
            softmax_scratch: SoftmaxScratch::default(),
            class_paint: None,
            upsampled: Mat::default(),
            small_u16: Mat::default(),
            up_u16: Mat::default(),
            blended: Mat::default(),
            hard: Mat::default(),
            alpha: Mat::default(),
            weights: Mat::default(),
            inverse: Mat::default(),
            constant: Mat::default(),
            blurred: Mat::default(),
            labels_small: Mat::default(),
            labels: Mat::default(),
            palette_image: Mat::default(),
            route: Route::default(),
            runs: MaskRuns::default(),
            runs_ready: false,
            colour_terms: Vec::new(),
        })
    }

    pub fn config(&self) -> &PostprocessConfig {
        &self.config
    }

    /// Changes settings; the temporal state is kept (settings do not change the stream).
    pub fn set_config(&mut self, config: PostprocessConfig) -> Result<()> {
        config.validate()?;
        self.config = config;
        self.runs_ready = false;
        Ok(())
    }

    /// Hand-written loops (default) or OpenCV calls only (the reference; benchmarks).
    pub fn set_route(&mut self, route: Route) {
        self.route = route;
    }

    /// Forgets the temporal state (flush, EOS, caps or model change).
    pub fn reset(&mut self) {
        self.runs_ready = false;
        self.smoothed = None;
        self.smoothed_classes = None;
        self.spec = None;
    }

    /// Whether a result has been received since the last reset.
    pub fn has_state(&self) -> bool {
        self.smoothed.is_some()
    }

    /// Feeds one model result: computes p_t and updates s_t.
    pub fn update(&mut self, scores: &ScoresView<'_>) -> Result<()> {
        self.runs_ready = false;
        let spec = scores.spec;
        if scores.data.len() != spec.element_count() {
            return Err(Error::Input(format!(
                "scores hold {} values, their description says {}",
                scores.data.len(),
                spec.element_count()
            )));
        }
        if self.spec.is_some_and(|s| s != spec) {
            // Another model: the old average means nothing for the new one.
            self.reset();
        }
        self.spec = Some(spec);
        self.region = scores.region;
        let (h, w, c) = (spec.height, spec.width, spec.classes);
        let a = self.config.smoothing as f64;

        if c == 1 {
            // SAFETY: the slice holds h*w f32 (checked above); the Mat is copied before `data` is released.
            let view =
                unsafe { mat_over(scores.data.as_ptr().cast(), h, w, core::CV_32FC1, w * 4) }?;
            view.copy_to(&mut self.probability)?;
        } else {
            self.softmax(scores.data, spec)?;
            match self.smoothed_classes.as_mut() {
                Some(s) if a < 1.0 => {
                    imgproc::accumulate_weighted(&self.class_probs, s, a, &core::no_array())?
                }
                Some(s) => self.class_probs.copy_to(s)?,
                None => self.smoothed_classes = Some(self.class_probs.try_clone()?),
            }
            self.selected_probability(spec)?;
            // p from already-smoothed class probabilities is s_t (the sum is linear).
            match self.smoothed.as_mut() {
                Some(s) => self.probability.copy_to(s)?,
                None => self.smoothed = Some(self.probability.try_clone()?),
            }
            return Ok(());
        }
        // Buffers are reused from frame to frame (copy_to keeps same-size storage).
        match self.smoothed.as_mut() {
            Some(s) if a < 1.0 => {
                imgproc::accumulate_weighted(&self.probability, s, a, &core::no_array())?;
            }
            Some(s) => self.probability.copy_to(s)?,
            None => self.smoothed = Some(self.probability.try_clone()?),
        }
        Ok(())
    }

    /// Per-pixel softmax over classes into `class_probs` ((C·H)×W, class-major).
    ///
    /// Whole-plane OpenCV operations (vectorized `exp`, column reductions) on the logits as
    /// C rows of H·W values: ~4× faster than a per-pixel loop over the classes with scalar
    /// `exp` (19×128×256 FFNet logits: `ffnetseg-bench multiclass`).
    fn softmax(&mut self, data: &[f32], spec: OutputSpec) -> Result<()> {
        let (h, w, c) = (spec.height, spec.width, spec.classes);
        let plane = h * w;
        if self.class_probs.rows() != (c * h) as i32 || self.class_probs.cols() != w as i32 {
            self.class_probs = Mat::new_rows_cols_with_default(
                (c * h) as i32,
                w as i32,
                core::CV_32FC1,
                Scalar::all(0.0),
            )?;
        }
        let logits = match spec.layout {
            // SAFETY: `data` holds c*h*w f32 (checked by update); the view is only read here.
            Layout::Nchw => {
                unsafe { mat_over(data.as_ptr().cast(), c, plane, core::CV_32FC1, plane * 4) }?
            }
            Layout::Nhwc => {
                // SAFETY: as above; pixels are rows of c class values.
                let by_pixel =
                    unsafe { mat_over(data.as_ptr().cast(), plane, c, core::CV_32FC1, c * 4) }?;
                let by_class = &mut self.softmax_scratch.by_class;
                core::transpose(&by_pixel, by_class)?;
                // SAFETY: by_class is a continuous c×(h·w) f32 Mat kept in self (no per-frame
                // allocation) and not touched again in this function.
                unsafe { mat_over(by_class.data(), c, plane, core::CV_32FC1, plane * 4) }?
            }
        };
        // SAFETY: class_probs is a continuous (c·h)×w f32 Mat owned by self; this header
        // (c rows of h·w) shares its storage and is dropped at the end of this function.
        let mut probs = unsafe {
            mat_over(
                self.class_probs.data_mut(),
                c,
                plane,
                core::CV_32FC1,
                plane * 4,
            )
        }?;
        let scratch = &mut self.softmax_scratch;
        // Subtracting each pixel's largest logit keeps exp() finite (the result is the same).
        core::reduce(
            &logits,
            &mut scratch.largest,
            0,
            core::REDUCE_MAX,
            core::CV_32F,
        )?;
        for k in 0..c as i32 {
            core::subtract(
                &logits.row(k)?,
                &scratch.largest,
                &mut probs.row_mut(k)?,
                &core::no_array(),
                -1,
            )?;
        }
        core::exp(&probs, &mut scratch.exp)?;
        core::reduce(
            &scratch.exp,
            &mut scratch.total,
            0,
            core::REDUCE_SUM,
            core::CV_32F,
        )?;
        for k in 0..c as i32 {
            core::divide2(
                &scratch.exp.row(k)?,
                &scratch.total,
                &mut probs.row_mut(k)?,
                1.0,
                -1,
            )?;
        }
        Ok(())
    }

    /// p = Σ selected smoothed class probabilities.
    fn selected_probability(&mut self, spec: OutputSpec) -> Result<()> {
        let (h, w, c) = (spec.height, spec.width, spec.classes);
        let probs = self.smoothed_classes.as_ref().expect("set by update");
        if self.probability.rows() != h as i32
            || self.probability.cols() != w as i32
            || self.probability.typ() != core::CV_32FC1
        {
            self.probability = Mat::new_rows_cols_with_default(
                h as i32,
                w as i32,
                core::CV_32FC1,
                Scalar::all(0.0),
            )?;
        } else {
            self.probability
                .set_to(&Scalar::all(0.0), &core::no_array())?;
        }
        for &k in self.config.classes.iter().filter(|k| **k < c) {
            let rows = probs.row_range(&core::Range::new((k * h) as i32, ((k + 1) * h) as i32)?)?;
            imgproc::accumulate(&rows, &mut self.probability, &core::no_array())?;
        }
        Ok(())
    }

    /// The smoothed probability cropped to the picture (letterbox) at model resolution.
    fn cropped(&self) -> Result<Mat> {
        let s = self
            .smoothed
            .as_ref()
            .ok_or_else(|| Error::Input("no model result received yet".into()))?;
        self.crop_rows(s, 0)
    }

    fn crop_rows(&self, m: &Mat, class: usize) -> Result<Mat> {
        let rect = self.crop_rect(class)?;
        Ok(Mat::roi(m, rect)?.try_clone()?)
    }

    /// The picture's part (letterbox) of class `class`'s rows at model resolution.
    fn crop_rect(&self, class: usize) -> Result<Rect> {
        let spec = self
            .spec
            .ok_or_else(|| Error::Input("no model result received yet".into()))?;
        let (h, w) = (spec.height as f64, spec.width as f64);
        let full = Rect::new(
            0,
            (class * spec.height) as i32,
            spec.width as i32,
            spec.height as i32,
        );
        let rect = match self.region {
            Some((r, tw, th)) if r.width != tw || r.height != th => {
                let sx = w / tw as f64;
                let sy = h / th as f64;
                let x = (r.x as f64 * sx).floor() as i32;
                let y = (r.y as f64 * sy).floor() as i32;
                let rw = ((r.width as f64 * sx).ceil() as i32).clamp(1, spec.width as i32 - x);
                let rh = ((r.height as f64 * sy).ceil() as i32).clamp(1, spec.height as i32 - y);
                Rect::new(x, full.y + y, rw, rh)
            }
            _ => full,
        };
        Ok(rect)
    }

    /// Smoothed foreground probability upsampled to `width`×`height` (f32, 0..1): the
    /// soft matte before thresholding.
    pub fn probability_at(&mut self, width: usize, height: usize) -> Result<&Mat> {
        let s = self.cropped()?;
        imgproc::resize(
            &s,
            &mut self.upsampled,
            Size::new(width as i32, height as i32),
            0.0,
            0.0,
            imgproc::INTER_LINEAR,
        )?;
        Ok(&self.upsampled)
    }

    /// The smoothed probability bilinearly upsampled to `size` in 16-bit fixed point
    /// (0..65535). Half the memory traffic of f32 at frame resolution, and 1/65535 steps
    /// are far finer than any threshold needs.
    fn upsampled_u16(&mut self, size: Size) -> Result<()> {
        let rect = self.crop_rect(0)?;
        let s = self
            .smoothed
            .as_ref()
            .ok_or_else(|| Error::Input("no model result received yet".into()))?;
        // The crop is a header over the smoothed map: no copy.
        Mat::roi(s, rect)?.convert_to(&mut self.small_u16, core::CV_16U, 65535.0, 0.0)?;
        imgproc::resize(
            &self.small_u16,
            &mut self.up_u16,
            size,
            0.0,
            0.0,
            imgproc::INTER_LINEAR,
        )?;
        Ok(())
    }

    /// The hard mask `s_up > threshold` at `size` (u8, 0 or 255).
    fn mask_u8(&mut self, size: Size) -> Result<()> {
        if self.route == Route::OpenCv {
            self.upsampled_u16(size)?;
            let t = (self.config.threshold as f64 * 65535.0).floor();
            core::compare(&self.up_u16, &Scalar::all(t), &mut self.hard, core::CMP_GT)?;
            return Ok(());
        }
        if self.hard.size()? != size || self.hard.typ() != core::CV_8UC1 {
            self.hard = Mat::new_size_with_default(size, core::CV_8UC1, Scalar::all(0.0))?;
        }
        let (cols, rows) = (size.width as usize, size.height as usize);
        let mut hard = std::mem::take(&mut self.hard);
        let written = self.write_mask(hard.data_bytes_mut()?, cols, cols, rows);
        self.hard = hard;
        written
    }

    /// The hard mask (0/255) from the runs into rows of `cols` bytes, `stride` apart.
    fn write_mask(
        &mut self,
        out: &mut [u8],
        stride: usize,
        cols: usize,
        rows: usize,
    ) -> Result<()> {
        self.prepare_runs()?;
        self.runs.for_each_row(cols, rows, |y, spans| {
            let row = &mut out[y * stride..y * stride + cols];
            row.fill(0);
            for &(a, b) in spans {
                row[a..b].fill(255);
            }
        });
        Ok(())
    }

    /// Classifies the smoothed map (cropped to the picture) against the threshold, once
    /// per result or setting change.
    fn prepare_runs(&mut self) -> Result<()> {
        if self.runs_ready {
            return Ok(());
        }
        let rect = self.crop_rect(0)?;
        let s = self
            .smoothed
            .as_ref()
            .ok_or_else(|| Error::Input("no model result received yet".into()))?;
        let stride = s.cols() as usize;
        self.runs.prepare(
            s.data_typed::<f32>()?,
            stride,
            (rect.x as usize, rect.y as usize),
            (rect.width as usize, rect.height as usize),
            self.config.threshold,
        )?;
        self.runs_ready = true;
        Ok(())
    }

    /// alpha = blur(s_up > threshold) at `size` as u8 (0..255); without blur, the hard
    /// mask itself.
    fn alpha_u8(&mut self, size: Size) -> Result<()> {
        self.mask_u8(size)?;
        let k = self.config.blur as i32;
        if k > 1 {
            imgproc::blur(
                &self.hard,
                &mut self.alpha,
                Size::new(k, k),
                core::Point::new(-1, -1),
                core::BORDER_DEFAULT,
            )?;
        } else {
            std::mem::swap(&mut self.alpha, &mut self.hard);
        }
        Ok(())
    }

    /// alpha = blur(s_up > threshold) at `width`×`height` (f32 in [0, 1]).
    pub fn alpha_at(&mut self, width: usize, height: usize) -> Result<Mat> {
        self.alpha_u8(Size::new(width as i32, height as i32))?;
        let mut a = Mat::default();
        self.alpha
            .convert_to(&mut a, core::CV_32F, 1.0 / 255.0, 0.0)?;
        Ok(a)
    }

    /// Top class per pixel at model resolution (u8): argmax of the smoothed class
    /// probabilities, or 0/1 for a one-channel model.
    fn labels_small(&mut self) -> Result<()> {
        let spec = self
            .spec
            .ok_or_else(|| Error::Input("no model result received yet".into()))?;
        if spec.classes == 1 {
            let s = self.cropped()?;
            let mut t = Mat::default();
            imgproc::threshold(
                &s,
                &mut t,
                self.config.threshold as f64,
                1.0,
                imgproc::THRESH_BINARY,
            )?;
            t.convert_to(&mut self.labels_small, core::CV_8U, 1.0, 0.0)?;
            return Ok(());
        }
        let probs = self.smoothed_classes.as_ref().expect("multi-class state");
        let planes: Vec<Mat> = (0..spec.classes)
            .map(|k| self.crop_rows(probs, k))
            .collect::<Result<_>>()?;
        let (rows, cols) = (planes[0].rows(), planes[0].cols());
        let mut best = planes[0].try_clone()?;
        self.labels_small =
            Mat::new_rows_cols_with_default(rows, cols, core::CV_8UC1, Scalar::all(0.0))?;
        for (k, p) in planes.iter().enumerate().skip(1) {
            // Where this class beats the best so far, it becomes the label.
            let mut gt = Mat::default();
            core::compare(p, &best, &mut gt, core::CMP_GT)?;
            self.labels_small.set_to(&Scalar::all(k as f64), &gt)?;
            p.copy_to_masked(&mut best, &gt)?;
        }
        Ok(())
    }

    /// Top class per pixel at `width`×`height` (u8, nearest-neighbour upsampling).
    pub fn labels_at(&mut self, width: usize, height: usize) -> Result<&Mat> {
        self.labels_small()?;
        imgproc::resize(
            &self.labels_small,
            &mut self.labels,
            Size::new(width as i32, height as i32),
            0.0,
            0.0,
            imgproc::INTER_NEAREST,
        )?;
        Ok(&self.labels)
    }

    /// Writes a GRAY8 image: `mask` = alpha·255 (0/255 when blur is off),
    /// `soft` = probability·255, `labels` = class index.
    pub fn render_gray(&mut self, kind: GrayKind, out: &mut FrameViewMut<'_>) -> Result<()> {
        if out.format != PixelFormat::Gray8 {
            return Err(Error::Input("mask output must be GRAY8".into()));
        }
        let (w, h) = (out.width, out.height);
        let (data, l) = &mut out.planes[0];
        // SAFETY: FrameViewMut::new checked the plane covers h rows of w bytes at `stride`.
        let mut dst = unsafe { mat_over(data.as_mut_ptr(), h, w, core::CV_8UC1, l.stride) }?;
        let ptr = dst.data();
        match kind {
            GrayKind::Mask if self.route == Route::HandWritten && self.config.blur <= 1 => {
                // Straight into the output buffer: no frame-sized copy.
                let stride = l.stride;
                self.write_mask(data, stride, w, h)?;
            }
            GrayKind::Mask => {
                self.alpha_u8(Size::new(w as i32, h as i32))?;
                self.alpha.copy_to(&mut dst)?;
            }
            GrayKind::Soft => {
                self.upsampled_u16(Size::new(w as i32, h as i32))?;
                self.up_u16
                    .convert_to(&mut dst, core::CV_8U, 255.0 / 65535.0, 0.0)?;
            }
            GrayKind::Labels => {
                let lab = self.labels_at(w, h)?;
                lab.copy_to(&mut dst)?;
            }
        }
        ensure_same_data(&dst, ptr, "mask output")
    }

    /// `out = frame·(1 − o·alpha) + colour·o·alpha`, in place, in the frame's format.
    ///
    /// Alpha is computed at each plane's own resolution (chroma planes are subsampled).
    /// With a hard mask (blur = 1) the hand-written route blends only the masked pixels
    /// (opacity in 1/256 steps); the OpenCV route uses `addWeighted` and a masked copy.
    /// Soft edges need per-pixel weights (`blendLinear`).
    pub fn render_overlay(
        &mut self,
        frame: &mut FrameViewMut<'_>,
        color: [u8; 3],
        opacity: f32,
    ) -> Result<()> {
        let yuv = frame.colorimetry.rgb_to_yuv(color);
        let gray = frame.format == PixelFormat::Gray8;
        if self.route == Route::HandWritten && self.config.blur <= 1 {
            // One pass over the masked pixels only (see mask_runs).
            self.prepare_runs()?;
            for (plane, div, chans) in plane_channels(frame.format) {
                let (data, l) = &mut frame.planes[plane];
                let (cols, rows, stride) = (l.width / div, l.height, l.stride);
                let cn = chans.len();
                let mut pixel = [0u8; 4];
                for (p, ch) in pixel.iter_mut().zip(&chans) {
                    *p = channel_value(*ch, color, yuv, gray) as u8;
                }
                let (keep, terms) = kernels::blend_terms(pixel, opacity);
                self.colour_terms.clear();
                self.colour_terms
                    .extend(terms[..cn].iter().cycle().take(cols * cn).copied());
                let terms = &self.colour_terms;
                self.runs.for_each_row(cols, rows, |y, spans| {
                    let row = &mut data[y * stride..y * stride + cols * cn];
                    for &(a, b) in spans {
                        kernels::blend_span(&mut row[a * cn..b * cn], &terms[a * cn..b * cn], keep);
                    }
                });
            }
            return Ok(());
        }
        let o = opacity as f64;
        for (plane, div, chans) in plane_channels(frame.format) {
            let (data, l) = &mut frame.planes[plane];
            let cols = l.width / div;
            let cn = chans.len();
            // SAFETY: the plane covers l.height rows of l.width*l.channels = cols*cn bytes.
            let mut dst =
                unsafe { mat_over(data.as_mut_ptr(), l.height, cols, u8_type(cn), l.stride) }?;
            let ptr = dst.data();
            let size = Size::new(cols as i32, l.height as i32);
            self.alpha_u8(size)?;
            let mut vals = [0.0; 4];
            for (i, ch) in chans.iter().enumerate() {
                vals[i] = channel_value(*ch, color, yuv, gray);
            }
            let colour = Scalar::new(vals[0], vals[1], vals[2], vals[3]);
            if self.config.blur <= 1 {
                if o >= 1.0 {
                    dst.set_to(&colour, &self.alpha)?;
                } else {
                    fill_constant(&mut self.constant, size, u8_type(cn), colour)?;
                    core::add_weighted(
                        &dst,
                        1.0 - o,
                        &self.constant,
                        o,
                        0.0,
                        &mut self.blended,
                        -1,
                    )?;
                    self.blended.copy_to_masked(&mut dst, &self.alpha)?;
                }
            } else {
                fill_constant(&mut self.constant, size, u8_type(cn), colour)?;
                self.alpha
                    .convert_to(&mut self.weights, core::CV_32F, o / 255.0, 0.0)?;
                one_minus(&self.weights, &mut self.inverse)?;
                let src = dst.try_clone()?;
                imgproc::blend_linear(
                    &src,
                    &self.constant,
                    &self.inverse,
                    &self.weights,
                    &mut dst,
                )?;
            }
            ensure_same_data(&dst, ptr, "overlay")?;
        }
        Ok(())
    }

    /// Keeps the foreground sharp and box-blurs the background:
    /// `out = frame·alpha + blur(frame)·(1 − alpha)`.
    pub fn render_background_blur(
        &mut self,
        frame: &mut FrameViewMut<'_>,
        strength: usize,
    ) -> Result<()> {
        let (w, h) = (frame.width, frame.height);
        self.composite(frame, |_, dst, out| {
            // Kernel scaled to the plane so chroma and luma blur by the same picture distance.
            let (cols, rows) = (dst.cols() as usize, dst.rows() as usize);
            let kx = ((strength * cols).div_ceil(w.max(1)) | 1).max(1) as i32;
            let ky = ((strength * rows).div_ceil(h.max(1)) | 1).max(1) as i32;
            imgproc::blur(
                dst,
                out,
                Size::new(kx, ky),
                core::Point::new(-1, -1),
                core::BORDER_REPLICATE,
            )?;
            Ok(())
        })
    }

    /// Replaces the background with a picture: `out = frame·alpha + picture·(1 − alpha)`.
    pub fn render_background_replace(
        &mut self,
        frame: &mut FrameViewMut<'_>,
        picture: &mut Background,
    ) -> Result<()> {
        let planes = picture.planes_for(frame)?;
        self.composite(frame, |plane, _, out| {
            planes[plane].copy_to(out)?;
            Ok(())
        })
    }

    /// `out = frame·alpha + background·(1 − alpha)` plane by plane, where `background`
    /// fills a plane-sized image (given the plane's index in `plane_channels` and its pixels).
    fn composite(
        &mut self,
        frame: &mut FrameViewMut<'_>,
        mut background: impl FnMut(usize, &Mat, &mut Mat) -> Result<()>,
    ) -> Result<()> {
        for (index, (plane, div, chans)) in plane_channels(frame.format).into_iter().enumerate() {
            let (data, l) = &mut frame.planes[plane];
            let cols = l.width / div;
            let cn = chans.len();
            // SAFETY: as in render_overlay.
            let mut dst =
                unsafe { mat_over(data.as_mut_ptr(), l.height, cols, u8_type(cn), l.stride) }?;
            let ptr = dst.data();
            let size = Size::new(cols as i32, l.height as i32);
            self.alpha_u8(size)?;
            background(index, &dst, &mut self.blurred)?;
            if self.config.blur <= 1 {
                // Background = where the mask is 0.
                core::bitwise_not(&self.alpha, &mut self.hard, &core::no_array())?;
                self.blurred.copy_to_masked(&mut dst, &self.hard)?;
            } else {
                self.alpha
                    .convert_to(&mut self.weights, core::CV_32F, 1.0 / 255.0, 0.0)?;
                one_minus(&self.weights, &mut self.inverse)?;
                let src = dst.try_clone()?;
                imgproc::blend_linear(&src, &self.blurred, &self.weights, &self.inverse, &mut dst)?;
            }
            ensure_same_data(&dst, ptr, "background")?;
        }
        Ok(())
    }

    /// Colours every pixel by its top class (palette), blended with opacity `o`.
    pub fn render_classes(&mut self, frame: &mut FrameViewMut<'_>, opacity: f32) -> Result<()> {
        self.labels_small()?;
        if self.route == Route::HandWritten {
            return self.render_classes_rows(frame, opacity);
        }
        let colorimetry: Colorimetry = frame.colorimetry;
        let gray = frame.format == PixelFormat::Gray8;
        for (plane, div, chans) in plane_channels(frame.format) {
            let (data, l) = &mut frame.planes[plane];
            let cols = l.width / div;
            let cn = chans.len();
            // SAFETY: as in render_overlay.
            let mut dst =
                unsafe { mat_over(data.as_mut_ptr(), l.height, cols, u8_type(cn), l.stride) }?;
            let ptr = dst.data();
            let size = Size::new(cols as i32, l.height as i32);
            imgproc::resize(
                &self.labels_small,
                &mut self.labels,
                size,
                0.0,
                0.0,
                imgproc::INTER_NEAREST,
            )?;
            let mut channels = Vector::<Mat>::new();
            for ch in &chans {
                let mut lut = [0u8; 256];
                for (i, v) in lut.iter_mut().enumerate() {
                    let rgb = palette_color(i);
                    *v = channel_value(*ch, rgb, colorimetry.rgb_to_yuv(rgb), gray) as u8;
                }
                let lut = Mat::from_slice(&lut)?;
                let mut m = Mat::default();
                core::lut(&self.labels, &lut, &mut m)?;
                channels.push(m);
            }
            core::merge(&channels, &mut self.palette_image)?;
            let src = dst.try_clone()?;
            core::add_weighted(
                &src,
                1.0 - opacity as f64,
                &self.palette_image,
                opacity as f64,
                0.0,
                &mut dst,
                -1,
            )?;
            ensure_same_data(&dst, ptr, "class overlay")?;
        }
        Ok(())
    }

    /// The hand-written class overlay: one pass per frame row. Each row's label row is the
    /// nearest model-resolution row (`resize`'s INTER_NEAREST positions), expanded into the
    /// palette's blend terms once per label row and blended with the fixed-point kernel the
    /// mask overlay uses (within one level of `addWeighted`).
    fn render_classes_rows(&mut self, frame: &mut FrameViewMut<'_>, opacity: f32) -> Result<()> {
        let (lw, lh) = (
            self.labels_small.cols() as usize,
            self.labels_small.rows() as usize,
        );
        let key = ClassPaintKey {
            format: frame.format,
            colorimetry: frame.colorimetry,
            opacity_bits: opacity.to_bits(),
            frame: (frame.width, frame.height),
            labels: (lw, lh),
        };
        if self.class_paint.as_ref().is_none_or(|p| p.key != key) {
            self.class_paint = Some(ClassPaint::new(key, frame));
        }
        let paint = self.class_paint.as_ref().expect("built above");
        let labels = self.labels_small.data_bytes()?;
        for plane in &paint.planes {
            let (data, l) = &mut frame.planes[plane.index];
            let (cn, stride) = (plane.channels, l.stride);
            let cols = plane.source_x.len();
            self.colour_terms.resize(cols * cn, 0);
            let mut expanded_row = usize::MAX;
            for (y, &sy) in plane.source_y.iter().enumerate() {
                if sy != expanded_row {
                    let label_row = &labels[sy * lw..(sy + 1) * lw];
                    for (terms, &sx) in self.colour_terms.chunks_exact_mut(cn).zip(&plane.source_x)
                    {
                        let label = label_row[sx] as usize;
                        terms.copy_from_slice(&plane.palette[label * cn..(label + 1) * cn]);
                    }
                    expanded_row = sy;
                }
                let row = &mut data[y * stride..y * stride + cols * cn];
                kernels::blend_span(row, &self.colour_terms, plane.keep);
            }
        }
        Ok(())
    }
}

/// A background picture for `render_background_replace`, converted once per frame
/// size and format into plane-sized images in the frame's own format.
pub struct Background {
    rgb: Mat,
    /// Plane images for the frame shape they were made for.
    cache: Option<(FrameShape, Vec<Mat>)>,
}

/// Format, size and colorimetry: what a converted background depends on.
type FrameShape = (PixelFormat, usize, usize, Colorimetry);

impl Background {
    /// Loads a picture file (PNG, JPEG, …).
    pub fn load(path: &std::path::Path) -> Result<Self> {
        let bgr =
            opencv::imgcodecs::imread(path, opencv::imgcodecs::IMREAD_COLOR).map_err(|e| {
                Error::Config(format!(
                    "cannot read background picture {}: {e}",
                    path.display()
                ))
            })?;
        if bgr.empty() {
            return Err(Error::Config(format!(
                "cannot read background picture {}: missing, unreadable or not an image (PNG, JPEG, BMP …)",
                path.display()
            )));
        }
        let mut rgb = Mat::default();
        imgproc::cvt_color(&bgr, &mut rgb, imgproc::COLOR_BGR2RGB, 0)?;
        Ok(Background { rgb, cache: None })
    }

    /// The picture stretched to the frame, one image per rendered plane (see `plane_channels`).
    fn planes_for(&mut self, frame: &FrameViewMut<'_>) -> Result<&[Mat]> {
        let key = (frame.format, frame.width, frame.height, frame.colorimetry);
        if self.cache.as_ref().is_none_or(|(k, _)| *k != key) {
            let yuv = frame.colorimetry.rgb_to_yuv_rows();
            let gray = frame.format == PixelFormat::Gray8;
            let mut planes = Vec::new();
            for (plane, div, chans) in plane_channels(frame.format) {
                let l = frame.planes[plane].1;
                let size = Size::new((l.width / div) as i32, l.height as i32);
                let mut small = Mat::default();
                imgproc::resize(&self.rgb, &mut small, size, 0.0, 0.0, imgproc::INTER_AREA)?;
                // One row per channel of the plane: a linear map of (R, G, B, 1).
                let rows: Vec<[f64; 4]> = chans
                    .iter()
                    .map(|ch| match ch {
                        Channel::Y if gray => [0.299, 0.587, 0.114, 0.0],
                        Channel::Y => yuv[0],
                        Channel::U => yuv[1],
                        Channel::V => yuv[2],
                        Channel::R => [1.0, 0.0, 0.0, 0.0],
                        Channel::G => [0.0, 1.0, 0.0, 0.0],
                        Channel::B => [0.0, 0.0, 1.0, 0.0],
                        Channel::Keep => [0.0, 0.0, 0.0, 255.0],
                    })
                    .collect();
                let m = Mat::from_slice_2d(&rows)?;
                let mut out = Mat::default();
                core::transform(&small, &mut out, &m)?;
                planes.push(out);
            }
            self.cache = Some((key, planes));
        }
        Ok(&self.cache.as_ref().expect("filled above").1)
    }
}

/// What the class overlay's blend depends on besides the labels themselves.
#[derive(Debug, Clone, Copy, PartialEq)]
struct ClassPaintKey {
    format: PixelFormat,
    colorimetry: Colorimetry,
    opacity_bits: u32,
    frame: (usize, usize),
    labels: (usize, usize),
}

/// Per plane of the frame: the palette's blend terms and the nearest-neighbour positions,
/// built when the stream, the opacity or the model changes, not every frame.
struct ClassPaint {
    key: ClassPaintKey,
    planes: Vec<ClassPaintPlane>,
}

struct ClassPaintPlane {
    /// Index of the plane in the frame.
    index: usize,
    channels: usize,
    keep: u16,
    /// 256 labels × `channels` colour terms of `kernels::blend_span`.
    palette: Vec<u16>,
    /// Label column of each plane column, label row of each plane row.
    source_x: Vec<usize>,
    source_y: Vec<usize>,
}

impl ClassPaint {
    fn new(key: ClassPaintKey, frame: &FrameViewMut<'_>) -> ClassPaint {
        let gray = key.format == PixelFormat::Gray8;
        let opacity = f32::from_bits(key.opacity_bits);
        let planes = plane_channels(key.format)
            .into_iter()
            .map(|(plane, div, chans)| {
                let l = &frame.planes[plane].1;
                let cn = chans.len();
                let mut keep = 256;
                let mut palette = vec![0u16; 256 * cn];
                for (label, terms) in palette.chunks_exact_mut(cn).enumerate() {
                    let rgb = palette_color(label);
                    let yuv = key.colorimetry.rgb_to_yuv(rgb);
                    let mut pixel = [0u8; 4];
                    for (p, ch) in pixel.iter_mut().zip(&chans) {
                        *p = channel_value(*ch, rgb, yuv, gray) as u8;
                    }
                    let (k, t) = kernels::blend_terms(pixel, opacity);
                    keep = k;
                    terms.copy_from_slice(&t[..cn]);
                }
                ClassPaintPlane {
                    index: plane,
                    channels: cn,
                    keep,
                    palette,
                    source_x: nearest_positions(key.labels.0, l.width / div),
                    source_y: nearest_positions(key.labels.1, l.height),
                }
            })
            .collect();
        ClassPaint { key, planes }
    }
}

/// Buffers of the multi-class softmax, kept from frame to frame.
#[derive(Default)]
struct SoftmaxScratch {
    /// Per-pixel largest logit (1 × H·W).
    largest: Mat,
    /// exp(logit − largest), C × H·W.
    exp: Mat,
    /// Σ over classes of `exp` (1 × H·W).
    total: Mat,
    /// NHWC logits transposed to class-major (C × H·W).
    by_class: Mat,
}

/// Which single-channel picture `render_gray` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrayKind {
    Mask,
    Soft,
    Labels,
}

/// The source index of each of `dst` outputs when `src` values are stretched over them by
/// OpenCV's `resize` with INTER_NEAREST (`floor(i · (1 / (dst/src)))`, computed the same way
/// so that the two routes pick the same labels).
fn nearest_positions(src: usize, dst: usize) -> Vec<usize> {
    let step = 1.0 / (dst as f64 / src as f64);
    (0..dst)
        .map(|i| ((i as f64 * step).floor() as usize).min(src - 1))
        .collect()
}

fn one_minus(src: &Mat, dst: &mut Mat) -> Result<()> {
    src.convert_to(dst, core::CV_32F, -1.0, 1.0)?;
    Ok(())
}

fn fill_constant(m: &mut Mat, size: Size, typ: i32, value: Scalar) -> Result<()> {
    if m.cols() != size.width || m.rows() != size.height || m.typ() != typ {
        *m = Mat::new_size_with_default(size, typ, value)?;
    } else {
        m.set_to(&value, &core::no_array())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_channel(v: &[f32], w: usize, h: usize) -> (Vec<f32>, OutputSpec) {
        (
            v.to_vec(),
            OutputSpec {
                classes: 1,
                width: w,
                height: h,
                layout: Layout::Nhwc,
            },
        )
    }

    fn read(m: &Mat) -> Vec<f32> {
        let mut c = Mat::default();
        m.copy_to(&mut c).unwrap();
        c.data_typed::<f32>().unwrap().to_vec()
    }

    #[test]
    fn hand_written_overlay_and_mask_match_the_opencv_route() {
        use crate::frame::packed_frame_size;
        let (sw, sh) = (40, 30);
        let blob: Vec<f32> = (0..sw * sh)
            .map(|i| {
                let (x, y) = ((i % sw) as f32 / sw as f32, (i / sw) as f32 / sh as f32);
                (-((x - 0.5).powi(2) + (y - 0.4).powi(2)) * 12.0).exp()
            })
            .collect();
        let (scores, spec) = one_channel(&blob, sw, sh);
        for format in [
            PixelFormat::Nv12,
            PixelFormat::I420,
            PixelFormat::Rgbx,
            PixelFormat::Yuy2,
        ] {
            for (w, h) in [(321, 241), (640, 360)] {
                for opacity in [0.5, 1.0] {
                    let frame: Vec<u8> = (0..packed_frame_size(format, w, h))
                        .map(|i| (i * 7 % 253) as u8)
                        .collect();
                    let mut outs = Vec::new();
                    let mut masks = Vec::new();
                    for route in [Route::HandWritten, Route::OpenCv] {
                        let mut post = Postprocessor::new(PostprocessConfig::default()).unwrap();
                        post.set_route(route);
                        let view = ScoresView {
                            data: &scores,
                            spec,
                            region: None,
                        };
                        post.update(&view).unwrap();
                        let mut data = frame.clone();
                        let mut fv = FrameViewMut::packed(format, w, h, &mut data).unwrap();
                        post.render_overlay(&mut fv, [255, 0, 0], opacity).unwrap();
                        outs.push(data);
                        let mut mask = vec![0u8; w * h];
                        let mut mv =
                            FrameViewMut::packed(PixelFormat::Gray8, w, h, &mut mask).unwrap();
                        post.render_gray(GrayKind::Mask, &mut mv).unwrap();
                        masks.push(mask);
                    }
                    let fg = masks[0].iter().filter(|m| **m == 255).count();
                    assert!(
                        fg > w * h / 20 && fg < w * h / 2,
                        "{format:?}: {fg} foreground pixels"
                    );
                    // Masks: the same but for rounding right at the threshold.
                    let mask_diff = masks[0]
                        .iter()
                        .zip(&masks[1])
                        .filter(|(a, b)| a != b)
                        .count();
                    assert!(
                        mask_diff * 2000 < w * h,
                        "{format:?} {w}×{h}: {mask_diff} mask pixels differ"
                    );
                    // Blends: within one level (fixed point vs addWeighted), except at those pixels.
                    let far = outs[0]
                        .iter()
                        .zip(&outs[1])
                        .filter(|(a, b)| (**a as i32 - **b as i32).abs() > 1)
                        .count();
                    assert!(
                        far * 500 < outs[0].len(),
                        "{format:?} {w}×{h} o={opacity}: {far} bytes differ"
                    );
                    assert_ne!(outs[0], frame, "{format:?}: nothing painted");
                }
            }
        }
    }

    #[test]
    fn hand_written_class_overlay_matches_the_opencv_route() {
        use crate::frame::packed_frame_size;
        // 5 classes on 13×9 logits: each pixel's winner changes along both axes, so every
        // nearest-neighbour position decides a colour.
        let (c, sw, sh) = (5, 13, 9);
        let logits: Vec<f32> = (0..c * sw * sh)
            .map(|j| {
                let (k, i) = (j / (sw * sh), j % (sw * sh));
                if (i % sw + 2 * (i / sw)) % c == k {
                    3.0
                } else {
                    (j % 7) as f32 * 0.1
                }
            })
            .collect();
        let spec = OutputSpec {
            classes: c,
            width: sw,
            height: sh,
            layout: Layout::Nchw,
        };
        for format in [
            PixelFormat::Nv12,
            PixelFormat::I420,
            PixelFormat::Rgbx,
            PixelFormat::Yuy2,
            PixelFormat::Gray8,
        ] {
            for (w, h) in [(321, 241), (640, 360), (13, 9)] {
                for opacity in [0.5, 1.0] {
                    let frame: Vec<u8> = (0..packed_frame_size(format, w, h))
                        .map(|i| (i * 7 % 253) as u8)
                        .collect();
                    let outs: Vec<Vec<u8>> = [Route::HandWritten, Route::OpenCv]
                        .into_iter()
                        .map(|route| {
                            let mut post =
                                Postprocessor::new(PostprocessConfig::default()).unwrap();
                            post.set_route(route);
                            post.update(&ScoresView {
                                data: &logits,
                                spec,
                                region: None,
                            })
                            .unwrap();
                            let mut data = frame.clone();
                            let mut fv = FrameViewMut::packed(format, w, h, &mut data).unwrap();
                            post.render_classes(&mut fv, opacity).unwrap();
                            data
                        })
                        .collect();
                    // Same labels everywhere, blends within one level (fixed point vs addWeighted).
                    let worst = outs[0]
                        .iter()
                        .zip(&outs[1])
                        .map(|(a, b)| (*a as i32 - *b as i32).abs())
                        .max()
                        .unwrap();
                    assert!(worst <= 1, "{format:?} {w}×{h} o={opacity}: off by {worst}");
                    assert_ne!(outs[0], frame, "{format:?}: nothing painted");
                }
            }
        }
    }

    #[test]
    fn smoothing_follows_the_exponential_average_and_resets() {
        let mut post = Postprocessor::new(PostprocessConfig {
            smoothing: 0.5,
            ..Default::default()
        })
        .unwrap();
        let (p0, spec) = one_channel(&[0.2; 4], 2, 2);
        let (p1, _) = one_channel(&[1.0; 4], 2, 2);
        post.update(&ScoresView {
            data: &p0,
            spec,
            region: None,
        })
        .unwrap();
        assert!(
            read(post.probability_at(2, 2).unwrap())
                .iter()
                .all(|v| (v - 0.2).abs() < 1e-6),
            "s0 = p0"
        );
        post.update(&ScoresView {
            data: &p1,
            spec,
            region: None,
        })
        .unwrap();
        assert!(
            read(post.probability_at(2, 2).unwrap())
                .iter()
                .all(|v| (v - 0.6).abs() < 1e-6),
            "0.5·1 + 0.5·0.2"
        );
        // 0.6 > 0.55: foreground.
        assert!(
            read(&post.alpha_at(4, 4).unwrap())
                .iter()
                .all(|v| *v == 1.0)
        );
        post.reset();
        assert!(!post.has_state());
        post.update(&ScoresView {
            data: &p0,
            spec,
            region: None,
        })
        .unwrap();
        assert!(
            read(post.probability_at(2, 2).unwrap())
                .iter()
                .all(|v| (v - 0.2).abs() < 1e-6),
            "after reset s0 = p0 again"
        );
    }

    #[test]
    fn multiclass_probability_is_the_softmax_of_the_selected_classes() {
        // 3 classes, 1×2 pixels, NCHW: pixel 0 favours class 2, pixel 1 class 0.
        let logits = [
            5.0, 0.0, /* class 1 */ 0.0, 0.0, /* class 2 */ 0.0, 5.0,
        ];
        let logits: Vec<f32> = vec![
            logits[0], logits[4], logits[2], logits[3], logits[1], logits[5],
        ];
        let spec = OutputSpec {
            classes: 3,
            width: 2,
            height: 1,
            layout: Layout::Nchw,
        };
        let mut post = Postprocessor::new(PostprocessConfig {
            classes: vec![2],
            ..Default::default()
        })
        .unwrap();
        post.update(&ScoresView {
            data: &logits,
            spec,
            region: None,
        })
        .unwrap();
        let p = read(post.probability_at(2, 1).unwrap());
        let e5 = 5f32.exp();
        let expected = [1.0 / (e5 + 2.0), e5 / (e5 + 2.0)];
        for i in 0..2 {
            assert!(
                (p[i] - expected[i]).abs() < 1e-5,
                "pixel {i}: {} vs {}",
                p[i],
                expected[i]
            );
        }
        let labels = post.labels_at(2, 1).unwrap();
        assert_eq!(labels.data_typed::<u8>().unwrap(), &[0, 2]);
    }

    #[test]
    fn softmax_matches_the_per_pixel_formula_in_both_layouts() {
        // 19 classes on 5×7 pixels, logits up to ±400 (exp() overflows without the shift),
        // the same numbers once class-major (NCHW) and once pixel-major (NHWC).
        let (c, h, w) = (19, 5, 7);
        let logit = |k: usize, i: usize| ((k * 37 + i * 11) % 23) as f32 * 35.0 - 400.0;
        let nchw: Vec<f32> = (0..c * h * w)
            .map(|j| logit(j / (h * w), j % (h * w)))
            .collect();
        let nhwc: Vec<f32> = (0..c * h * w).map(|j| logit(j % c, j / c)).collect();
        let selected = [11, 12];
        let expected: Vec<f32> = (0..h * w)
            .map(|i| {
                let m = (0..c)
                    .map(|k| logit(k, i))
                    .fold(f32::NEG_INFINITY, f32::max);
                let e = |k: usize| ((logit(k, i) - m) as f64).exp();
                let total: f64 = (0..c).map(e).sum();
                (selected.iter().map(|&k| e(k)).sum::<f64>() / total) as f32
            })
            .collect();
        for (layout, data) in [(Layout::Nchw, &nchw), (Layout::Nhwc, &nhwc)] {
            let mut post = Postprocessor::new(PostprocessConfig {
                classes: selected.to_vec(),
                ..Default::default()
            })
            .unwrap();
            let spec = OutputSpec {
                classes: c,
                width: w,
                height: h,
                layout,
            };
            post.update(&ScoresView {
                data,
                spec,
                region: None,
            })
            .unwrap();
            let p = read(post.probability_at(w, h).unwrap());
            for i in 0..h * w {
                assert!(
                    (p[i] - expected[i]).abs() < 1e-5,
                    "{layout:?} pixel {i}: {} vs {}",
                    p[i],
                    expected[i]
                );
            }
        }
    }

    #[test]
    fn bad_settings_are_refused() {
        for c in [
            PostprocessConfig {
                smoothing: 0.0,
                ..Default::default()
            },
            PostprocessConfig {
                threshold: 1.5,
                ..Default::default()
            },
            PostprocessConfig {
                blur: 4,
                ..Default::default()
            },
        ] {
            assert!(Postprocessor::new(c).is_err());
        }
    }

    #[test]
    fn scores_of_the_wrong_length_are_an_error() {
        let mut post = Postprocessor::new(PostprocessConfig::default()).unwrap();
        let spec = OutputSpec {
            classes: 1,
            width: 4,
            height: 4,
            layout: Layout::Nhwc,
        };
        assert!(
            post.update(&ScoresView {
                data: &[0.0; 3],
                spec,
                region: None
            })
            .is_err()
        );
    }
}
