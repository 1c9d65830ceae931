//! The GPU (OpenCL) routes of segpreproc and segpostproc against their CPU routes, and the
//! `compute` choice with its fallbacks, on a real OpenCL implementation: Debian's PoCL
//! (`pocl-opencl-icd`, a CPU OpenCL device, installed by `make deps`).
//!
//! OpenCV chooses its OpenCL device once per process from the environment, so each test
//! runs in a child process of this binary with the environment it needs ([`in_child`]):
//! `OPENCV_OPENCL_DEVICE=:CPU:` (OpenCV takes only GPU devices otherwise) and
//! `FFNETSEG_OPENCL_ALLOW_CPU=1` (the test-only opt-in that lets `compute=gpu` use it).

use std::process::Command;

use ffnetseg::frame::{
    Colorimetry, FrameView, PixelFormat, PlaneLayout, YuvMatrix, YuvRange, plane_layouts,
};
use ffnetseg::opencl::{self, Active, Compute};
use ffnetseg::preprocess::{
    Interpolation, Normalization, PreprocessConfig, Preprocessor, ResizeMode,
};
use ffnetseg::tensor::{DType, Layout, Quantization, TensorSpec};

const CHILD: &str = "FFNETSEG_GPU_TEST_CHILD";

/// Environments the tests run under.
const POCL: &[(&str, &str)] = &[
    ("OPENCV_OPENCL_DEVICE", ":CPU:"),
    (opencl::ALLOW_CPU_ENV, "1"),
];

/// Runs test `name` of this binary in a child process with `env` and returns true there (the
/// caller then runs the test body); in the parent, waits for the child and asserts it passed.
fn in_child(name: &str, env: &[(&str, &str)]) -> bool {
    if std::env::var(CHILD).is_ok() {
        return true;
    }
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(CHILD, "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("the test binary runs again");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && text.contains("1 passed"),
        "{name} failed in its child process:\n{text}"
    );
    false
}

/// Deterministic noise: the harshest input for comparing two routes (every tap differs).
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 33) as u8
        })
        .collect()
}

/// A frame of noise whose rows are `pad` bytes longer than their useful bytes.
struct PaddedFrame {
    format: PixelFormat,
    width: usize,
    height: usize,
    planes: Vec<(Vec<u8>, PlaneLayout)>,
}

impl PaddedFrame {
    fn new(format: PixelFormat, width: usize, height: usize, pad: usize, seed: u64) -> Self {
        let planes = plane_layouts(format, width, height)
            .enumerate()
            .map(|(i, (w, h, c))| {
                let stride = w * c + pad;
                let layout = PlaneLayout {
                    width: w,
                    height: h,
                    channels: c,
                    stride,
                };
                (noise(stride * h, seed + i as u64), layout)
            })
            .collect();
        PaddedFrame {
            format,
            width,
            height,
            planes,
        }
    }

    fn view(&self, colorimetry: Colorimetry) -> FrameView<'_> {
        FrameView::new(
            self.format,
            self.width,
            self.height,
            colorimetry,
            self.planes.iter().map(|(d, l)| (d.as_slice(), *l)),
        )
        .unwrap()
    }
}

fn config(
    w: usize,
    h: usize,
    layout: Layout,
    dtype: DType,
    q: Option<Quantization>,
) -> PreprocessConfig {
    PreprocessConfig {
        target: TensorSpec {
            width: w,
            height: h,
            channels: 3,
            layout,
            dtype,
            quantization: q,
        },
        normalization: Normalization {
            scale: 1.0 / 255.0,
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
        },
        resize: if w == h {
            ResizeMode::Letterbox
        } else {
            ResizeMode::Stretch
        },
        interpolation: Interpolation::Linear,
    }
}

/// The tensor `pre` makes of `frame`, in f32-aligned storage (as GStreamer's pools give).
fn tensor(pre: &mut Preprocessor, frame: &FrameView<'_>) -> Vec<u8> {
    let size = pre.config().target.byte_size();
    let mut storage = vec![0f32; size.div_ceil(4)];
    let bytes = &mut bytemuck_bytes(&mut storage)[..size];
    pre.run(frame, bytes).unwrap();
    bytes.to_vec()
}

fn bytemuck_bytes(v: &mut [f32]) -> &mut [u8] {
    // SAFETY: any f32 storage is valid as bytes; the length is the storage's byte length.
    unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr().cast(), v.len() * 4) }
}

/// The largest difference between two tensors, in their own units (f32 values or steps).
fn worst_difference(a: &[u8], b: &[u8], dtype: DType) -> f64 {
    let values = |t: &[u8]| -> Vec<f64> {
        match dtype {
            DType::F32 => t
                .chunks_exact(4)
                .map(|c| f32::from_ne_bytes(c.try_into().unwrap()) as f64)
                .collect(),
            DType::U8 => t.iter().map(|v| *v as f64).collect(),
            DType::U16 => t
                .chunks_exact(2)
                .map(|c| u16::from_ne_bytes(c.try_into().unwrap()) as f64)
                .collect(),
        }
    };
    values(a)
        .iter()
        .zip(values(b))
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

#[test]
fn gpu_preprocessing_equals_the_cpu_route_in_every_format_layout_and_type() {
    if !in_child(
        "gpu_preprocessing_equals_the_cpu_route_in_every_format_layout_and_type",
        POCL,
    ) {
        return;
    }
    let colorimetries = [
        Colorimetry {
            matrix: YuvMatrix::Bt601,
            range: YuvRange::Limited,
        },
        Colorimetry {
            matrix: YuvMatrix::Bt709,
            range: YuvRange::Full,
        },
    ];
    // Downscale, odd sizes with letterbox, upscale, and OpenCV's exact 2× case.
    let geometries = [
        (322, 242, 64, 48),
        (321, 241, 40, 40),
        (64, 48, 96, 72),
        (128, 96, 64, 48),
    ];
    let types = [
        (DType::F32, None),
        (DType::U8, None),
        (
            DType::U8,
            Some(Quantization {
                scale: 0.0187,
                zero_point: 114,
            }),
        ),
        (
            DType::U16,
            Some(Quantization {
                scale: 0.00007,
                zero_point: 30000,
            }),
        ),
    ];
    let mut checked = 0;
    for format in PixelFormat::ALL {
        for (i, &(fw, fh, tw, th)) in geometries.iter().enumerate() {
            let frame = PaddedFrame::new(format, fw, fh, 5 + i, i as u64);
            let view = frame.view(colorimetries[i % 2]);
            for layout in [Layout::Nchw, Layout::Nhwc] {
                for (dtype, q) in types {
                    let cfg = config(tw, th, layout, dtype, q);
                    let mut cpu = Preprocessor::new(cfg.clone()).unwrap();
                    let mut gpu = Preprocessor::new(cfg).unwrap();
                    let choice = gpu.set_compute(Compute::Gpu, false).unwrap();
                    assert!(choice.active.is_gpu(), "{choice:?}");
                    let want = tensor(&mut cpu, &view);
                    let got = tensor(&mut gpu, &view);
                    // A second frame reuses the kernel, buffers and tables.
                    assert_eq!(tensor(&mut gpu, &view), got, "second frame");
                    assert!(gpu.active().is_gpu(), "{:?}", gpu.take_notice());
                    let tol = if dtype == DType::F32 { 1e-5 } else { 1.0 };
                    let worst = worst_difference(&got, &want, dtype);
                    assert!(
                        worst <= tol,
                        "{format:?} {fw}×{fh}→{tw}×{th} {layout:?} {dtype:?} {q:?}: \
                         GPU differs from CPU by {worst} (tolerance {tol})"
                    );
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(checked, 13 * 4 * 2 * 4);
}

#[test]
fn compute_gpu_on_pocl_runs_on_the_cpu_device_only_with_the_opt_in() {
    let name = "compute_gpu_on_pocl_runs_on_the_cpu_device_only_with_the_opt_in";
    if !in_child(name, &[("OPENCV_OPENCL_DEVICE", ":CPU:")]) {
        return;
    }
    let cfg = config(32, 16, Layout::Nchw, DType::F32, None);
    // auto never takes a CPU OpenCL device, and says nothing about it.
    let mut pre = Preprocessor::new(cfg.clone()).unwrap();
    let auto = pre.set_compute(Compute::Auto, true).unwrap();
    assert_eq!((auto.active, auto.reason), (Active::Cpu, None));
    // gpu without the opt-in: the CPU, with the reason.
    let gpu = pre.set_compute(Compute::Gpu, true).unwrap();
    assert_eq!(gpu.active, Active::Cpu);
    let why = gpu.reason.expect("a reason");
    assert!(
        why.contains("CPU device") && why.contains(opencl::ALLOW_CPU_ENV),
        "{why}"
    );
    // ... an error with disable-cpu-fallback.
    let err = pre
        .set_compute(Compute::Gpu, false)
        .unwrap_err()
        .to_string();
    assert!(err.contains("CPU device"), "{err}");
}

/// Shared by the no-OpenCL cases: gpu falls back with `expect` in the reason.
fn gpu_falls_back_with(expect: &str) {
    let cfg = config(32, 16, Layout::Nchw, DType::F32, None);
    let mut pre = Preprocessor::new(cfg).unwrap();
    let choice = pre.set_compute(Compute::Gpu, true).unwrap();
    assert_eq!(choice.active, Active::Cpu);
    let why = choice.reason.expect("a reason");
    assert!(why.contains(expect), "reason '{why}' should say '{expect}'");
    assert_eq!(pre.set_compute(Compute::Auto, true).unwrap().reason, None);
    assert!(pre.set_compute(Compute::Gpu, false).is_err());
    // And the CPU route still works.
    let frame = PaddedFrame::new(PixelFormat::Nv12, 64, 48, 0, 1);
    assert!(
        tensor(&mut pre, &frame.view(Colorimetry::default()))
            .iter()
            .any(|v| *v != 0)
    );
}

#[test]
fn without_an_icd_gpu_falls_back_to_the_cpu_and_says_why() {
    let empty = std::env::temp_dir().join("ffnetseg-no-icd");
    std::fs::create_dir_all(&empty).unwrap();
    let dir = empty.to_str().unwrap();
    if in_child(
        "without_an_icd_gpu_falls_back_to_the_cpu_and_says_why",
        &[("OCL_ICD_VENDORS", dir), (opencl::ALLOW_CPU_ENV, "1")],
    ) {
        gpu_falls_back_with("no ICD");
    }
}

#[test]
fn with_opencl_disabled_gpu_falls_back_to_the_cpu_and_says_why() {
    if in_child(
        "with_opencl_disabled_gpu_falls_back_to_the_cpu_and_says_why",
        &[("OPENCV_OPENCL_DEVICE", "disabled")],
    ) {
        gpu_falls_back_with("disabled");
    }
}

#[test]
fn without_a_gpu_device_gpu_falls_back_to_the_cpu_and_says_why() {
    // PoCL offers only a CPU device: OpenCV's default (GPU) choice finds none.
    if in_child(
        "without_a_gpu_device_gpu_falls_back_to_the_cpu_and_says_why",
        &[(opencl::ALLOW_CPU_ENV, "1")],
    ) {
        gpu_falls_back_with("no GPU device");
    }
}

#[test]
fn interpolations_without_a_gpu_kernel_fall_back_per_configuration() {
    if !in_child(
        "interpolations_without_a_gpu_kernel_fall_back_per_configuration",
        POCL,
    ) {
        return;
    }
    let mut cfg = config(32, 16, Layout::Nchw, DType::F32, None);
    cfg.interpolation = Interpolation::Area;
    let mut pre = Preprocessor::new(cfg).unwrap();
    let choice = pre.set_compute(Compute::Gpu, true).unwrap();
    assert_eq!(choice.active, Active::Cpu);
    assert!(choice.reason.unwrap().contains("interpolation=area"));
}

// ---- The elements: properties, messages, warnings, errors -------------------------------

use gst::prelude::*;
use gstffnetseg::meta::InputTensor;

/// What a pipeline ending in `appsink name=sink` produced: its samples, the bus messages,
/// and `active-compute` of the element named `stage` while it still ran.
struct Outcome {
    samples: Vec<gst::Sample>,
    messages: Vec<gst::Message>,
    active: String,
}

fn run_to_end(launch: &str, stage: &str) -> Outcome {
    ffnetseg_tests::init();
    let (pipeline, sink) = ffnetseg_tests::launch_with_sink(launch);
    pipeline.set_state(gst::State::Playing).unwrap();
    let mut samples = Vec::new();
    while let Some(s) = sink.try_pull_sample(gst::ClockTime::from_seconds(30)) {
        samples.push(s);
    }
    let active = pipeline
        .by_name(stage)
        .unwrap()
        .property::<String>("active-compute");
    let bus = pipeline.bus().unwrap();
    let messages = std::iter::from_fn(|| bus.pop()).collect();
    pipeline.set_state(gst::State::Null).unwrap();
    Outcome {
        samples,
        messages,
        active,
    }
}

impl Outcome {
    /// The `<element>-compute` messages' (active, reason) fields.
    fn compute_messages(&self, element: &str) -> Vec<(String, String)> {
        let name = format!("{element}-compute");
        self.messages
            .iter()
            .filter_map(|m| match m.view() {
                gst::MessageView::Element(e) => e.structure().filter(|s| s.name() == name.as_str()),
                _ => None,
            })
            .map(|s| (s.get("active").unwrap(), s.get("reason").unwrap()))
            .collect()
    }

    fn texts(&self, kind: gst::MessageType) -> Vec<String> {
        self.messages
            .iter()
            .filter(|m| m.type_() == kind)
            .map(|m| match m.view() {
                gst::MessageView::Warning(w) => w.error().to_string(),
                gst::MessageView::Error(e) => e.error().to_string(),
                _ => String::new(),
            })
            .collect()
    }
}

const PRE_SOURCE: &str = "videotestsrc num-buffers=4 pattern=smpte ! \
    video/x-raw,format=NV12,width=320,height=240";

fn preproc_pipeline(compute: &str, extra: &str) -> String {
    format!(
        "{PRE_SOURCE} ! segpreproc name=stage width=64 height=48 compute={compute} {extra} ! \
         appsink name=sink"
    )
}

fn tensors(o: &Outcome) -> Vec<Vec<f32>> {
    o.samples
        .iter()
        .map(|s| {
            let t = InputTensor::from_buffer(s.buffer().unwrap()).expect("a tensor");
            ffnetseg_tests::tensor_values(&t)
        })
        .collect()
}

#[test]
fn segpreproc_compute_gpu_runs_on_the_opencl_device_and_equals_compute_cpu() {
    let name = "segpreproc_compute_gpu_runs_on_the_opencl_device_and_equals_compute_cpu";
    if !in_child(name, POCL) {
        return;
    }
    let gpu = run_to_end(&preproc_pipeline("gpu", ""), "stage");
    let cpu = run_to_end(&preproc_pipeline("cpu", ""), "stage");
    assert!(
        gpu.active.starts_with("gpu: "),
        "{} {:?}",
        gpu.active,
        gpu.texts(gst::MessageType::Warning)
    );
    assert_eq!(cpu.active, "cpu");
    let said = gpu.compute_messages("segpreproc");
    assert_eq!(said.len(), 1, "{said:?}");
    assert!(
        said[0].0.starts_with("gpu: ") && said[0].1.is_empty(),
        "{said:?}"
    );
    assert!(gpu.texts(gst::MessageType::Warning).is_empty());
    let (g, c) = (tensors(&gpu), tensors(&cpu));
    assert_eq!((g.len(), c.len()), (4, 4));
    for (a, b) in g.iter().zip(&c) {
        let worst = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max);
        assert!(worst <= 1e-5, "GPU tensor differs by {worst}");
    }
}

/// Without a GPU device (PoCL offers a CPU one only): one warning with the reason, the
/// message, `active-compute` = cpu, and every frame still comes out.
fn gpu_request_without_a_gpu_warns_once(element: &str, launch: &str, frames: usize) {
    let o = run_to_end(launch, "stage");
    assert_eq!(o.active, "cpu");
    assert_eq!(o.samples.len(), frames);
    let warnings = o.texts(gst::MessageType::Warning);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("compute=gpu") && warnings[0].contains("no GPU device"),
        "{warnings:?}"
    );
    let said = o.compute_messages(element);
    assert_eq!(said.len(), 1, "{said:?}");
    assert_eq!(said[0].0, "cpu");
    assert!(said[0].1.contains("no GPU device"), "{said:?}");
}

#[test]
fn segpreproc_compute_gpu_without_a_gpu_warns_once_and_runs_on_the_cpu() {
    let name = "segpreproc_compute_gpu_without_a_gpu_warns_once_and_runs_on_the_cpu";
    if in_child(name, &[]) {
        gpu_request_without_a_gpu_warns_once("segpreproc", &preproc_pipeline("gpu", ""), 4);
    }
}

/// With disable-cpu-fallback, `pipeline` stops with an error that says why, and no frame.
fn missing_gpu_is_an_error(pipeline: &str) {
    let o = run_to_end(pipeline, "stage");
    let errors = o.texts(gst::MessageType::Error);
    assert!(
        errors
            .iter()
            .any(|e| e.contains("compute=gpu cannot run") && e.contains("no GPU device")),
        "{errors:?}"
    );
    assert!(o.samples.is_empty());
}

#[test]
fn segpreproc_disable_cpu_fallback_makes_a_missing_gpu_an_error() {
    let name = "segpreproc_disable_cpu_fallback_makes_a_missing_gpu_an_error";
    if in_child(name, &[]) {
        missing_gpu_is_an_error(&preproc_pipeline("gpu", "disable-cpu-fallback=true"));
    }
}

#[test]
fn segpreproc_compute_auto_takes_no_cpu_opencl_device() {
    let name = "segpreproc_compute_auto_takes_no_cpu_opencl_device";
    if in_child(name, POCL) {
        let o = run_to_end(&preproc_pipeline("auto", ""), "stage");
        assert_eq!(o.active, "cpu");
        assert!(o.texts(gst::MessageType::Warning).is_empty());
        assert_eq!(o.samples.len(), 4);
    }
}

// ---- segpostproc's engine: GPU route against the CPU route ------------------------------

use ffnetseg::frame::FrameViewMut;
use ffnetseg::postprocess::{GrayKind, PostprocessConfig, Postprocessor, ScoresView};
use ffnetseg::tensor::{OutputSpec, Region};

/// Model outputs: one-channel probabilities (smooth blob plus noise, exact threshold
/// values) or 19-class logits, for `frames` results.
fn score_frames(
    classes: usize,
    w: usize,
    h: usize,
    layout: Layout,
    frames: usize,
) -> Vec<Vec<f32>> {
    (0..frames)
        .map(|f| {
            let n = noise(classes * w * h, 100 + f as u64);
            (0..classes * w * h)
                .map(|j| {
                    let (k, i) = match layout {
                        Layout::Nchw => (j / (w * h), j % (w * h)),
                        Layout::Nhwc => (j % classes, j / classes),
                    };
                    let (x, y) = ((i % w) as f32 / w as f32, (i / w) as f32 / h as f32);
                    let blob =
                        (-((x - 0.45 - 0.05 * f as f32).powi(2) + (y - 0.5).powi(2)) * 9.0).exp();
                    let jitter = n[j] as f32 / 255.0 - 0.5;
                    if classes == 1 {
                        if i % 17 == 0 {
                            0.55
                        } else {
                            (blob + 0.2 * jitter).clamp(0.0, 1.0)
                        }
                    } else {
                        let favoured = if k == 11 { 4.0 * blob } else { 0.0 };
                        favoured + 2.0 * jitter
                    }
                })
                .collect()
        })
        .collect()
}

/// Feeds `frames` to a CPU and a GPU postprocessor and draws each with `draw` on copies of
/// the same noise frame; returns both outputs of the last frame and the GPU's (active, reason).
fn both_routes(
    config: &PostprocessConfig,
    spec: OutputSpec,
    region: Option<(Region, usize, usize)>,
    frames: &[Vec<f32>],
    canvas: &[u8],
    draw: impl Fn(&mut Postprocessor, &mut [u8]),
) -> (Vec<u8>, Vec<u8>, (Active, Option<String>)) {
    let mut outs = Vec::new();
    let mut gpu_state = (Active::Cpu, None);
    for compute in [Compute::Cpu, Compute::Gpu] {
        let mut post = Postprocessor::new(config.clone()).unwrap();
        post.set_compute(compute, false).unwrap();
        let mut out = canvas.to_vec();
        for data in frames {
            post.update(&ScoresView { data, spec, region }).unwrap();
            out = canvas.to_vec();
            draw(&mut post, &mut out);
        }
        if compute == Compute::Gpu {
            let (a, r) = post.active();
            gpu_state = (a.clone(), r.map(str::to_owned));
        }
        outs.push(out);
    }
    let gpu = outs.pop().unwrap();
    (outs.pop().unwrap(), gpu, gpu_state)
}

/// [`both_routes`] for a GRAY8 output of `kind` on a blank 321×241 frame.
fn gray_routes(
    config: &PostprocessConfig,
    spec: OutputSpec,
    region: Option<(Region, usize, usize)>,
    frames: &[Vec<f32>],
    kind: GrayKind,
) -> (Vec<u8>, Vec<u8>, (Active, Option<String>)) {
    let gray = vec![0u8; 321 * 241];
    both_routes(config, spec, region, frames, &gray, |p, data| {
        let mut f = FrameViewMut::packed(PixelFormat::Gray8, 321, 241, data).unwrap();
        p.render_gray(kind, &mut f).unwrap();
    })
}

fn worst_byte(a: &[u8], b: &[u8]) -> i32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (*x as i32 - *y as i32).abs())
        .max()
        .unwrap_or(0)
}

#[test]
fn gpu_overlay_mask_and_alpha_equal_the_cpu_route_in_every_format() {
    if !in_child(
        "gpu_overlay_mask_and_alpha_equal_the_cpu_route_in_every_format",
        POCL,
    ) {
        return;
    }
    let letterbox = Some((
        Region {
            x: 0,
            y: 14,
            width: 64,
            height: 36,
        },
        64,
        64,
    ));
    let cases = [
        (1, 40, 30, Layout::Nhwc, None, 1.0),
        (1, 40, 30, Layout::Nhwc, None, 0.5),
        (1, 32, 32, Layout::Nhwc, letterbox, 0.7),
        (19, 32, 16, Layout::Nchw, None, 1.0),
        (19, 32, 16, Layout::Nhwc, None, 0.4),
    ];
    let mut checked = 0;
    for (classes, sw, sh, layout, region, smoothing) in cases {
        let spec = OutputSpec {
            classes,
            width: sw,
            height: sh,
            layout,
        };
        let frames = score_frames(classes, sw, sh, layout, 3);
        let config = PostprocessConfig {
            smoothing,
            ..Default::default()
        };
        for format in PixelFormat::ALL {
            for (w, h) in [(321, 241), (640, 360)] {
                let canvas = noise(ffnetseg::frame::packed_frame_size(format, w, h), 7);
                for opacity in [0.5f32, 1.0] {
                    let (cpu, gpu, (active, why)) =
                        both_routes(&config, spec, region, &frames, &canvas, |p, data| {
                            let mut f = FrameViewMut::packed(format, w, h, data).unwrap();
                            p.render_overlay(&mut f, [255, 40, 0], opacity).unwrap();
                        });
                    assert!(active.is_gpu(), "{why:?}");
                    assert_ne!(cpu, canvas, "{format:?}: nothing painted");
                    let worst = worst_byte(&cpu, &gpu);
                    assert!(
                        worst <= 1,
                        "overlay {format:?} {w}×{h} {classes} classes s={smoothing} o={opacity}: off by {worst}"
                    );
                    checked += 1;
                }
            }
        }
        let (cpu, gpu, (active, _)) = gray_routes(&config, spec, region, &frames, GrayKind::Mask);
        assert!(active.is_gpu());
        let on = cpu.iter().filter(|v| **v == 255).count();
        assert!(
            on > 321 * 241 / 50 && on < 321 * 241 / 2,
            "{on} mask pixels"
        );
        assert_eq!(
            worst_byte(&cpu, &gpu),
            0,
            "mask {classes} classes s={smoothing}"
        );
        for blur in [3, 9] {
            let blurred = PostprocessConfig {
                blur,
                ..config.clone()
            };
            let (cpu, gpu, (active, _)) =
                gray_routes(&blurred, spec, region, &frames, GrayKind::Mask);
            assert!(active.is_gpu());
            assert!(cpu.iter().any(|v| *v > 0 && *v < 255), "soft edges");
            let worst = worst_byte(&cpu, &gpu);
            assert!(
                worst <= 1,
                "mask blur={blur} {classes} classes s={smoothing}: off by {worst}"
            );
        }
        let (cpu, gpu, (active, _)) = gray_routes(&config, spec, region, &frames, GrayKind::Soft);
        assert!(active.is_gpu());
        assert!(cpu.iter().any(|v| *v > 0 && *v < 255), "a soft matte");
        let worst = worst_byte(&cpu, &gpu);
        assert!(
            worst <= 1,
            "alpha {classes} classes s={smoothing}: off by {worst}"
        );
    }
    assert_eq!(checked, 5 * 13 * 2 * 2);
    // Soft edges: the blurred mask blended with OpenCV's blendLinear weights.
    let spec = OutputSpec {
        classes: 1,
        width: 40,
        height: 30,
        layout: Layout::Nhwc,
    };
    let frames = score_frames(1, 40, 30, Layout::Nhwc, 2);
    for blur in [3, 7] {
        let config = PostprocessConfig {
            blur,
            smoothing: 0.5,
            ..Default::default()
        };
        for format in [
            PixelFormat::Nv12,
            PixelFormat::I420,
            PixelFormat::Yuy2,
            PixelFormat::Rgbx,
            PixelFormat::Gray8,
        ] {
            let canvas = noise(ffnetseg::frame::packed_frame_size(format, 321, 241), 9);
            let (cpu, gpu, (active, why)) =
                both_routes(&config, spec, None, &frames, &canvas, |p, data| {
                    let mut f = FrameViewMut::packed(format, 321, 241, data).unwrap();
                    p.render_overlay(&mut f, [255, 40, 0], 0.6).unwrap();
                });
            assert!(active.is_gpu(), "{why:?}");
            assert_ne!(cpu, canvas);
            let worst = worst_byte(&cpu, &gpu);
            assert!(worst <= 1, "overlay blur={blur} {format:?}: off by {worst}");
        }
    }
}

#[test]
fn gpu_classes_and_labels_equal_the_cpu_route_and_background_modes_fall_back() {
    if !in_child(
        "gpu_classes_and_labels_equal_the_cpu_route_and_background_modes_fall_back",
        POCL,
    ) {
        return;
    }
    let letterbox = Some((
        Region {
            x: 0,
            y: 8,
            width: 64,
            height: 48,
        },
        64,
        64,
    ));
    for (classes, layout, region) in [
        (19, Layout::Nchw, None),
        (19, Layout::Nhwc, letterbox),
        (1, Layout::Nhwc, None),
    ] {
        let spec = OutputSpec {
            classes,
            width: 32,
            height: 16,
            layout,
        };
        let frames = score_frames(classes, 32, 16, layout, 3);
        let config = PostprocessConfig {
            smoothing: 0.5,
            ..Default::default()
        };
        for format in PixelFormat::ALL {
            let canvas = noise(ffnetseg::frame::packed_frame_size(format, 321, 241), 3);
            let (cpu, gpu, (active, why)) =
                both_routes(&config, spec, region, &frames, &canvas, |p, data| {
                    let mut f = FrameViewMut::packed(format, 321, 241, data).unwrap();
                    p.render_classes(&mut f, 0.5).unwrap();
                });
            assert!(active.is_gpu(), "{why:?}");
            assert_ne!(cpu, canvas);
            let worst = worst_byte(&cpu, &gpu);
            assert!(worst <= 1, "classes {classes} {format:?}: off by {worst}");
        }
        let (cpu, gpu, (active, _)) = gray_routes(&config, spec, region, &frames, GrayKind::Labels);
        assert!(active.is_gpu());
        let person = if classes == 1 { 1 } else { 11 };
        assert!(cpu.contains(&person), "labels {classes}");
        assert_eq!(cpu, gpu, "labels {classes}");
    }
    // No kernel: drawn on the CPU from the device's state.
    let spec = OutputSpec {
        classes: 1,
        width: 40,
        height: 30,
        layout: Layout::Nhwc,
    };
    let frames = score_frames(1, 40, 30, Layout::Nhwc, 3);
    let config = PostprocessConfig {
        smoothing: 0.5,
        ..Default::default()
    };
    let canvas = noise(
        ffnetseg::frame::packed_frame_size(PixelFormat::Nv12, 320, 240),
        3,
    );
    let (cpu, gpu, (active, why)) =
        both_routes(&config, spec, None, &frames, &canvas, |p, data| {
            let mut f = FrameViewMut::packed(PixelFormat::Nv12, 320, 240, data).unwrap();
            p.render_background_blur(&mut f, 9).unwrap();
        });
    assert_eq!(active, Active::Cpu);
    let why = why.unwrap_or_default();
    assert!(
        why.contains("mode=background-blur has no GPU kernel"),
        "{why}"
    );
    assert_ne!(cpu, canvas);
    assert!(worst_byte(&cpu, &gpu) <= 1);
}

// ---- segpostproc, the element ------------------------------------------------------------

/// A person (messi5.jpg) the selfie model finds, 4 frames.
fn postproc_pipeline(compute: &str, extra: &str) -> String {
    format!(
        "filesrc location={} ! jpegdec ! videoconvert ! videoscale ! \
         video/x-raw,format=NV12,width=320,height=240 ! imagefreeze num-buffers=4 ! \
         segpreproc ! ffnetinfer model={} ! segpostproc name=stage compute={compute} {extra} ! \
         appsink name=sink",
        ffnetseg_tests::media("messi5.jpg"),
        ffnetseg_tests::selfie_model()
    )
}

fn frames_bytes(o: &Outcome) -> Vec<Vec<u8>> {
    o.samples
        .iter()
        .map(|s| s.buffer().unwrap().map_readable().unwrap().to_vec())
        .collect()
}

#[test]
fn segpostproc_compute_gpu_runs_on_the_opencl_device_and_equals_compute_cpu() {
    let name = "segpostproc_compute_gpu_runs_on_the_opencl_device_and_equals_compute_cpu";
    if !in_child(name, POCL) {
        return;
    }
    for extra in [
        "mode=overlay smoothing=0.5",
        "mode=mask smoothing=1",
        "mode=alpha",
    ] {
        let gpu = run_to_end(&postproc_pipeline("gpu", extra), "stage");
        let cpu = run_to_end(&postproc_pipeline("cpu", extra), "stage");
        assert!(
            gpu.active.starts_with("gpu: "),
            "{extra}: {} {:?}",
            gpu.active,
            gpu.texts(gst::MessageType::Warning)
        );
        assert_eq!(cpu.active, "cpu");
        let said = gpu.compute_messages("segpostproc");
        assert_eq!(said.len(), 1, "{said:?}");
        assert!(gpu.texts(gst::MessageType::Warning).is_empty());
        let (g, c) = (frames_bytes(&gpu), frames_bytes(&cpu));
        assert_eq!((g.len(), c.len()), (4, 4));
        if extra.contains("mask") {
            let on = c[3].iter().filter(|v| **v == 255).count();
            assert!(
                on * 50 > c[3].len(),
                "the model found the person: {on} pixels"
            );
        }
        for (a, b) in g.iter().zip(&c) {
            assert!(worst_byte(a, b) <= 1, "{extra}: GPU frame differs");
        }
    }
}

#[test]
fn segpostproc_modes_without_a_gpu_kernel_say_so_and_run_on_the_cpu() {
    let name = "segpostproc_modes_without_a_gpu_kernel_say_so_and_run_on_the_cpu";
    if !in_child(name, POCL) {
        return;
    }
    let o = run_to_end(&postproc_pipeline("gpu", "mode=background-blur"), "stage");
    assert_eq!(o.active, "cpu");
    assert_eq!(o.samples.len(), 4);
    let warnings = o.texts(gst::MessageType::Warning);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("mode=background-blur has no GPU kernel"),
        "{warnings:?}"
    );
}

#[test]
fn segpostproc_compute_gpu_without_a_gpu_warns_once_and_runs_on_the_cpu() {
    let name = "segpostproc_compute_gpu_without_a_gpu_warns_once_and_runs_on_the_cpu";
    if in_child(name, &[]) {
        gpu_request_without_a_gpu_warns_once("segpostproc", &postproc_pipeline("gpu", ""), 4);
    }
}

#[test]
fn segpostproc_disable_cpu_fallback_makes_a_missing_gpu_an_error() {
    let name = "segpostproc_disable_cpu_fallback_makes_a_missing_gpu_an_error";
    if in_child(name, &[]) {
        missing_gpu_is_an_error(&postproc_pipeline("gpu", "disable-cpu-fallback=true"));
    }
}
