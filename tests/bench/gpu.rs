//! `ffnetseg-bench gpu`: the GPU (OpenCL) route of segpreproc and segpostproc against their
//! CPU route in the same run: wall time and process CPU time (rusage: user + system, all
//! threads, OpenCL runtime threads included) per frame.
//!
//! On a CPU OpenCL device (PoCL, what `make bench` falls back to without a GPU) the "GPU"
//! route runs on the same cores as the CPU route, plus uploads and downloads: it shows the
//! route's overhead, not a GPU's speed (docs/gpu-stages.md).

use std::time::Instant;

use ffnetseg::frame::{FrameView, FrameViewMut, PixelFormat};
use ffnetseg::opencl::{self, Compute};
use ffnetseg::postprocess::{PostprocessConfig, Postprocessor, ScoresView};
use ffnetseg::tensor::{DType, Layout, OutputSpec, TensorSpec};

use super::{frame_bytes, stretching_preprocessor, tensor_bytes};

/// Process CPU time (user + system of all threads) in seconds.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 * 1e-6;
    t(u.ru_utime) + t(u.ru_stime)
}

/// (wall ms, CPU ms) per call: the median of 5 rounds of `iters` calls, after one warm-up
/// call (kernel builds and first allocations are not measured).
fn per_frame(iters: usize, mut f: impl FnMut()) -> (f64, f64) {
    f();
    let mut rounds: Vec<(f64, f64)> = (0..5)
        .map(|_| {
            let (wall, cpu) = (Instant::now(), cpu_seconds());
            for _ in 0..iters {
                f();
            }
            let n = iters as f64;
            (
                wall.elapsed().as_secs_f64() * 1e3 / n,
                (cpu_seconds() - cpu) * 1e3 / n,
            )
        })
        .collect();
    rounds.sort_by(|a, b| a.0.total_cmp(&b.0));
    rounds[2]
}

fn tensor(width: usize, height: usize, layout: Layout) -> TensorSpec {
    TensorSpec {
        width,
        height,
        channels: 3,
        layout,
        dtype: DType::F32,
        quantization: None,
    }
}

/// One line: segpreproc on a 1080p NV12 frame into `target`, both routes.
fn preproc_line(case: &str, target: TensorSpec, iters: usize, device: &str) {
    let (w, h) = (1920, 1080);
    let src = frame_bytes(PixelFormat::Nv12, w, h);
    let view = FrameView::packed(PixelFormat::Nv12, w, h, &src).unwrap();
    let mut storage = vec![0f32; target.byte_size() / 4];
    let bytes = tensor_bytes(&mut storage);
    let [cpu, gpu] = [Compute::Cpu, Compute::Gpu].map(|compute| {
        let mut pre = stretching_preprocessor(target);
        let choice = pre
            .set_compute(compute, false)
            .expect("the route is available");
        assert_eq!(choice.active.is_gpu(), compute == Compute::Gpu);
        per_frame(iters, || {
            pre.run(&view, bytes).unwrap();
        })
    });
    print_line("segpreproc", case, "", device, cpu, gpu);
}

/// One line: segpostproc `mode` on a 1080p NV12 frame from `scores`, both routes.
fn postproc_line(
    case: &str,
    mode: &str,
    spec: OutputSpec,
    scores: &[f32],
    iters: usize,
    device: &str,
) {
    let (w, h) = (1920, 1080);
    let canvas = frame_bytes(PixelFormat::Nv12, w, h);
    let mut frame = canvas.clone();
    let [cpu, gpu] = [Compute::Cpu, Compute::Gpu].map(|compute| {
        let mut post = Postprocessor::new(PostprocessConfig {
            smoothing: 0.5,
            ..Default::default()
        })
        .unwrap();
        post.set_compute(compute, false)
            .expect("the route is available");
        per_frame(iters, || {
            post.update(&ScoresView {
                data: scores,
                spec,
                region: None,
            })
            .unwrap();
            let mut fv = FrameViewMut::packed(PixelFormat::Nv12, w, h, &mut frame).unwrap();
            match mode {
                "overlay" => post.render_overlay(&mut fv, [0, 255, 0], 0.5).unwrap(),
                _ => post.render_classes(&mut fv, 0.5).unwrap(),
            }
        })
    });
    print_line("segpostproc", case, mode, device, cpu, gpu);
}

fn print_line(stage: &str, case: &str, mode: &str, device: &str, cpu: (f64, f64), gpu: (f64, f64)) {
    println!(
        "{{\"bench\": \"gpu_route\", \"stage\": \"{stage}\", \"case\": \"{case}\", \"mode\": \"{mode}\", \"device\": \"{device}\", \"cpu_route_wall_ms\": {:.3}, \"cpu_route_cpu_ms\": {:.3}, \"gpu_route_wall_ms\": {:.3}, \"gpu_route_cpu_ms\": {:.3}}}",
        cpu.0, cpu.1, gpu.0, gpu.1
    );
}

/// Runs the comparison; false (and nothing printed) when `compute=gpu` has no device.
pub fn gpu_route_benchmarks() -> bool {
    let choice = opencl::choose(Compute::Gpu);
    let device = match opencl::device() {
        Ok(d) if choice.active.is_gpu() => {
            let kind = if d.is_cpu { "CPU" } else { "GPU" };
            format!("{} ({kind} OpenCL device, {})", d.name, d.version).replace('"', "'")
        }
        _ => {
            let why = choice.reason.unwrap_or_default();
            eprintln!("no OpenCL device for the GPU route: {why}");
            return false;
        }
    };
    // Selfie segmentation: 256×256×3 NHWC input, one 256×256 probability map.
    preproc_line(
        "selfie 1080p NV12 → 1×256×256×3",
        tensor(256, 256, Layout::Nhwc),
        20,
        &device,
    );
    let ramp: Vec<f32> = (0..256 * 256)
        .map(|i| ((i % 256) as f32 / 255.0 + (i / 256) as f32 / 255.0) / 2.0)
        .collect();
    let selfie = OutputSpec {
        classes: 1,
        width: 256,
        height: 256,
        layout: Layout::Nhwc,
    };
    postproc_line(
        "selfie 1×256×256 → 1080p NV12",
        "overlay",
        selfie,
        &ramp,
        20,
        &device,
    );
    // FFNet: 1×3×1024×2048 NCHW input, 19×128×256 logits.
    preproc_line(
        "FFNet 1080p NV12 → 1×3×1024×2048",
        tensor(2048, 1024, Layout::Nchw),
        4,
        &device,
    );
    let plane = 128 * 256;
    let logits: Vec<f32> = (0..19 * plane)
        .map(|i| {
            let (k, p) = (i / plane, i % plane);
            if ((p % 256) / 4 + (p / 256) / 2) % 19 == k {
                4.0
            } else {
                ((i * 7) % 13) as f32 * 0.1
            }
        })
        .collect();
    let ffnet = OutputSpec {
        classes: 19,
        width: 256,
        height: 128,
        layout: Layout::Nchw,
    };
    for mode in ["overlay", "classes"] {
        postproc_line(
            "FFNet 19×128×256 → 1080p NV12",
            mode,
            ffnet,
            &logits,
            8,
            &device,
        );
    }
    true
}
