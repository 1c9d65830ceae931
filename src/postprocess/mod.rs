//! segpostproc's engine: model scores → smoothed foreground probability → mask/alpha at
//! frame resolution → rendering into the frame in its own format.
//!
//! Stage meanings: `p_t` foreground probability at model resolution (the output itself
//! for one-channel models, the softmax summed over the selected classes for multi-class
//! ones); `s_t = a·p_t + (1−a)·s_{t−1}`, `s_0 = p_0` (`accumulateWeighted`); bilinear
//! upsample (`resize`); `m = s > threshold` (`threshold`); `alpha = blur(m, k×k)`
//! (`blur`); overlay `out = frame·(1 − o·alpha) + colour·o·alpha` (`blendLinear`), plane
//! by plane in the frame's own format.
//!
//! - `scores`: p_t and s_t (softmax, class selection, smoothing).
//! - `mask`: crop, upsampling, threshold, blur and labels at a requested size.
//! - `mask_runs`: the hard mask as runs of masked pixels, without upsampling the map.
//! - `render`: one file per output family (gray outputs, overlay, background, classes).
//! - `gpu`: the OpenCL route (`compute=gpu`): state on the device, overlay and mask kernels.
//! - `reference`: the OpenCV-only route ([`Route::OpenCv`]) of the renderers, the
//!   reference the hand-written route (the default, `kernels`) is tested against.

mod gpu;
mod kernels;
mod mask;
mod mask_runs;
mod reference;
mod render;
mod scores;

use opencv::core::Mat;

use crate::error::{Error, Result};
use crate::kernels::Route;
use crate::opencl::{self, Active, Choice, Compute};
use crate::tensor::{OutputSpec, Region};
use mask_runs::MaskRuns;
use render::ClassPaint;
use scores::SoftmaxScratch;

pub use gpu::Drawing;
pub use render::Background;

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
    /// The best class probability so far and where a class beats it (labels_small).
    labels_best: Mat,
    labels_beaten: Mat,
    labels: Mat,
    palette_image: Mat,
    route: Route,
    runs: MaskRuns,
    /// Whether `runs` holds the current map and threshold (all planes share them).
    runs_ready: bool,
    colour_terms: Vec<u16>,
    /// The GPU route when `compute` chose it, its device name, and whether a failure falls
    /// back to the CPU.
    gpu: Option<(gpu::GpuPost, String)>,
    gpu_fallback: bool,
    /// The device holds a newer state than `smoothed` (the CPU renderers download it).
    host_stale: bool,
    /// Where the last frame was drawn, and why not on the GPU when it was asked for.
    active: Active,
    reason: Option<String>,
    /// Set when `active` changed, for the element to announce.
    changed: bool,
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
            labels_best: Mat::default(),
            labels_beaten: Mat::default(),
            labels: Mat::default(),
            palette_image: Mat::default(),
            route: Route::default(),
            runs: MaskRuns::default(),
            runs_ready: false,
            colour_terms: Vec::new(),
            gpu: None,
            gpu_fallback: true,
            host_stale: false,
            active: Active::Cpu,
            reason: None,
            changed: false,
        })
    }

    /// Chooses where results are processed and drawn (see `preprocess::Preprocessor::
    /// set_compute`); modes without a GPU kernel still run on the CPU ([`Drawing`]).
    pub fn set_compute(&mut self, request: Compute, allow_fallback: bool) -> Result<Choice> {
        let mut choice = opencl::choose(request);
        self.gpu = None;
        if let Active::Gpu(name) = &choice.active {
            match gpu::GpuPost::new() {
                Ok(g) => self.gpu = Some((g, name.clone())),
                Err(e) => {
                    choice.reason = Some(e.to_string());
                    choice.active = Active::Cpu;
                }
            }
        }
        if let (Some(why), false) = (&choice.reason, allow_fallback) {
            return Err(Error::Gpu(format!(
                "compute=gpu cannot run: {why} (disable-cpu-fallback is set)"
            )));
        }
        self.gpu_fallback = allow_fallback;
        self.active = choice.active.clone();
        self.reason = choice.reason.clone();
        self.smoothed = None;
        self.smoothed_classes = None;
        self.spec = None;
        Ok(choice)
    }

    /// Where the last frame was drawn, and why not on the GPU when it was asked for.
    pub fn active(&self) -> (&Active, Option<&str>) {
        (&self.active, self.reason.as_deref())
    }

    /// Whether [`Self::active`] changed since the last call (the element announces it).
    pub fn take_change(&mut self) -> bool {
        std::mem::take(&mut self.changed)
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
        self.host_stale = false;
        if let Some((g, _)) = self.gpu.as_mut() {
            g.reset();
        }
    }

    /// Whether a result has been received since the last reset.
    pub fn has_state(&self) -> bool {
        self.smoothed.is_some() || self.gpu.as_ref().is_some_and(|(g, _)| g.has_state())
    }
}

/// Which single-channel picture `render_gray` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrayKind {
    Mask,
    Soft,
    Labels,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{FrameViewMut, PixelFormat};
    use crate::tensor::Layout;
    use opencv::prelude::*;

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

    /// Feeds scores that cover the whole model input (no letterbox region).
    fn feed(post: &mut Postprocessor, data: &[f32], spec: OutputSpec) {
        post.update(&ScoresView {
            data,
            spec,
            region: None,
        })
        .unwrap();
    }

    /// Every pixel of the `w`×`h` probability map is within 1e-6 of `expected`.
    fn assert_probability_everywhere(
        post: &mut Postprocessor,
        w: usize,
        h: usize,
        expected: f32,
        why: &str,
    ) {
        let p = read(post.probability_at(w, h).unwrap());
        assert!(
            p.iter().all(|v| (v - expected).abs() < 1e-6),
            "{why}: {p:?}"
        );
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
                        feed(&mut post, &scores, spec);
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
                            feed(&mut post, &logits, spec);
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
        feed(&mut post, &p0, spec);
        assert_probability_everywhere(&mut post, 2, 2, 0.2, "s0 = p0");
        feed(&mut post, &p1, spec);
        assert_probability_everywhere(&mut post, 2, 2, 0.6, "0.5·1 + 0.5·0.2");
        // 0.6 > 0.55: foreground.
        assert!(
            read(&post.alpha_at(4, 4).unwrap())
                .iter()
                .all(|v| *v == 1.0)
        );
        post.reset();
        assert!(!post.has_state());
        feed(&mut post, &p0, spec);
        assert_probability_everywhere(&mut post, 2, 2, 0.2, "after reset s0 = p0 again");
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
        feed(&mut post, &logits, spec);
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
            feed(&mut post, data, spec);
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
