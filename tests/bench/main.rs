//! ffnetseg-bench: stage and pipeline benchmarks, each as a ratio against a peer measured
//! in the same run (these machines are shared and noisy; absolute times are for context).
//!
//! Prints one JSON object per line; `pipelines/bench.sh` (make bench) turns them, with
//! the Python peer's results, into BENCHMARKS.md.

mod gpu;

use std::time::{Duration, Instant};

use gst::prelude::*;

use ffnetseg::frame::{Colorimetry, FrameView, FrameViewMut, PixelFormat, packed_frame_size};
use ffnetseg::inference::{InferenceSession, Provider, SessionConfig};
use ffnetseg::kernels::Route;
use ffnetseg::postprocess::{GrayKind, PostprocessConfig, Postprocessor, ScoresView};
use ffnetseg::preprocess::{
    Interpolation, Normalization, PreprocessConfig, Preprocessor, ResizeMode,
};
use ffnetseg::tensor::OutputSpec;
use ffnetseg::tensor::{DType, Layout, TensorSpec};
use ffnetseg_tests::*;

/// Median per-iteration time of `rounds` batches of `iters` calls.
fn median_ms(rounds: usize, iters: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut v: Vec<f64> = (0..rounds)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..iters {
                f();
            }
            t.elapsed().as_secs_f64() * 1e3 / iters as f64
        })
        .collect();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A frame with content (gradients), so nothing is trivially constant.
fn frame_bytes(format: PixelFormat, w: usize, h: usize) -> Vec<u8> {
    (0..packed_frame_size(format, w, h))
        .map(|i| ((i * 31 + i / w) % 251) as u8)
        .collect()
}

fn selfie_contract() -> TensorSpec {
    TensorSpec {
        width: 256,
        height: 256,
        channels: 3,
        layout: Layout::Nhwc,
        dtype: DType::F32,
        quantization: None,
    }
}

/// segpreproc's defaults: the whole frame stretched onto `target`, bilinear, x/255.
fn stretching_preprocessor(target: TensorSpec) -> Preprocessor {
    Preprocessor::new(PreprocessConfig {
        target,
        normalization: Normalization::default(),
        resize: ResizeMode::Stretch,
        interpolation: Interpolation::Linear,
    })
    .unwrap()
}

fn stage_benchmarks() {
    opencv::core::set_num_threads(1).expect("OpenCV threads");
    for (w, h, label) in [
        (1280, 720, "720p"),
        (1920, 1080, "1080p"),
        (3840, 2160, "4K"),
    ] {
        for format in [PixelFormat::Nv12, PixelFormat::Rgb] {
            let src = frame_bytes(format, w, h);
            let mut dst = vec![0u8; src.len()];
            let iters = if w > 2000 { 10 } else { 30 };
            let memcpy = median_ms(7, iters, || {
                dst.copy_from_slice(&src);
                std::hint::black_box(&dst);
            });
            let mut tensor = vec![0f32; selfie_contract().byte_size() / 4];
            let view = FrameView::packed(format, w, h, &src).unwrap();
            let mut pre_ms = [0.0; 2];
            for (route, ms) in [Route::HandWritten, Route::OpenCv]
                .into_iter()
                .zip(&mut pre_ms)
            {
                let mut pre = stretching_preprocessor(selfie_contract());
                pre.set_route(route);
                // The tensor as f32 storage: aligned like GStreamer's buffers.
                let bytes = tensor_bytes(&mut tensor);
                *ms = median_ms(7, iters, || {
                    pre.run(&view, bytes).unwrap();
                });
            }
            let spec = OutputSpec {
                classes: 1,
                width: 256,
                height: 256,
                layout: Layout::Nhwc,
            };
            // A diagonal ramp: about 45% of the frame above the 0.55 threshold, with a
            // long edge; and a map above it everywhere (the blend's worst case).
            let ramp: Vec<f32> = (0..256 * 256)
                .map(|i| ((i % 256) as f32 / 255.0 + (i / 256) as f32 / 255.0) / 2.0)
                .collect();
            let everywhere = vec![0.9f32; 256 * 256];
            let mut frame = src.clone();
            let mut overlay = |route: Route, scores: &[f32]| {
                let mut post = Postprocessor::new(PostprocessConfig {
                    smoothing: 0.5,
                    ..Default::default()
                })
                .unwrap();
                post.set_route(route);
                median_ms(7, iters, || {
                    post.update(&ScoresView {
                        data: scores,
                        spec,
                        region: None,
                    })
                    .unwrap();
                    let mut fv = FrameViewMut::packed(format, w, h, &mut frame).unwrap();
                    fv.colorimetry = Colorimetry::default();
                    post.render_overlay(&mut fv, [0, 255, 0], 0.5).unwrap();
                })
            };
            let post_ms = overlay(Route::HandWritten, &ramp);
            let post_opencv_ms = overlay(Route::OpenCv, &ramp);
            let post_full_ms = overlay(Route::HandWritten, &everywhere);
            println!(
                "{{\"bench\": \"stage\", \"size\": \"{label}\", \"format\": \"{}\", \"memcpy_ms\": {memcpy:.4}, \"segpreproc_ms\": {:.4}, \"segpreproc_opencv_ms\": {:.4}, \"segpostproc_overlay_ms\": {post_ms:.4}, \"segpostproc_overlay_opencv_ms\": {post_opencv_ms:.4}, \"segpostproc_overlay_full_mask_ms\": {post_full_ms:.4}}}",
                format.gst_name(),
                pre_ms[0],
                pre_ms[1]
            );
        }
    }
}

/// The FFNet shape of the stages: 1080p NV12 camera frame, 1024×2048 NCHW f32 tensor,
/// 19 Cityscapes logits at 128×256. With the model on a GPU (FFNet-40S: ~6 ms on an H200),
/// these CPU stages decide the frame rate.
fn multiclass_benchmarks() {
    opencv::core::set_num_threads(1).expect("OpenCV threads");
    let (w, h) = (1920, 1080);
    let format = PixelFormat::Nv12;
    let src = frame_bytes(format, w, h);
    let view = FrameView::packed(format, w, h, &src).unwrap();
    let target = TensorSpec {
        width: 2048,
        height: 1024,
        channels: 3,
        layout: Layout::Nchw,
        dtype: DType::F32,
        quantization: None,
    };
    let mut tensor = vec![0f32; target.byte_size() / 4];
    let bytes = tensor_bytes(&mut tensor);
    // Automatic threads (rows split over up to 4 for a tensor this large), then one thread.
    let [pre_ms, pre_one_thread_ms] = [0, 1].map(|threads| {
        let mut pre = stretching_preprocessor(target);
        pre.set_threads(threads);
        median_ms(7, 5, || {
            pre.run(&view, bytes).unwrap();
        })
    });
    let pre_threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));

    let spec = OutputSpec {
        classes: 19,
        width: 256,
        height: 128,
        layout: Layout::Nchw,
    };
    // Logits with structure: each class wins in its own diagonal band, "person" (11) in
    // about a fifth of the picture.
    let plane = 128 * 256;
    let logits: Vec<f32> = (0..19 * plane)
        .map(|i| {
            let (k, p) = (i / plane, i % plane);
            let band = ((p % 256) / 4 + (p / 256) / 2) % 19;
            if band == k {
                4.0
            } else {
                ((i * 7) % 13) as f32 * 0.1
            }
        })
        .collect();
    let mut frame = src.clone();
    let mut gray = vec![0u8; w * h];
    let mut post = |mode: &str| {
        let mut post = Postprocessor::new(PostprocessConfig {
            smoothing: 0.5,
            ..Default::default()
        })
        .unwrap();
        median_ms(7, 5, || {
            post.update(&ScoresView {
                data: &logits,
                spec,
                region: None,
            })
            .unwrap();
            match mode {
                "mask" => {
                    let mut out =
                        FrameViewMut::packed(PixelFormat::Gray8, w, h, &mut gray).unwrap();
                    post.render_gray(GrayKind::Mask, &mut out).unwrap();
                }
                "overlay" => {
                    let mut fv = FrameViewMut::packed(format, w, h, &mut frame).unwrap();
                    post.render_overlay(&mut fv, [0, 255, 0], 0.5).unwrap();
                }
                _ => {
                    let mut fv = FrameViewMut::packed(format, w, h, &mut frame).unwrap();
                    post.render_classes(&mut fv, 0.5).unwrap();
                }
            }
        })
    };
    let (mask_ms, overlay_ms, classes_ms) = (post("mask"), post("overlay"), post("classes"));
    println!(
        "{{\"bench\": \"stage_multiclass\", \"size\": \"1080p\", \"format\": \"NV12\", \"tensor\": \"1x3x1024x2048 f32\", \"scores\": \"1x19x128x256\", \"segpreproc_ms\": {pre_ms:.3}, \"segpreproc_threads\": {pre_threads}, \"segpreproc_one_thread_ms\": {pre_one_thread_ms:.3}, \"segpostproc_mask_ms\": {mask_ms:.3}, \"segpostproc_overlay_ms\": {overlay_ms:.3}, \"segpostproc_classes_ms\": {classes_ms:.3}}}"
    );
}

/// Bytes of f32 storage (an aligned tensor buffer).
fn tensor_bytes(storage: &mut [f32]) -> &mut [u8] {
    // SAFETY: any f32 storage is valid as bytes; the length is in bytes.
    unsafe { std::slice::from_raw_parts_mut(storage.as_mut_ptr().cast::<u8>(), storage.len() * 4) }
}

/// Pushes the same frame `n` times through `chain` (between appsrc and fakesink); returns seconds.
fn pipeline_seconds(chain: &str, caps: &gst::Caps, frame: &gst::Buffer, n: usize) -> f64 {
    let launch = format!("appsrc name=src format=time ! {chain} ! fakesink sync=false name=sink");
    let pipeline = gst::parse::launch(&launch)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let src = pipeline
        .by_name("src")
        .unwrap()
        .downcast::<gst_app::AppSrc>()
        .unwrap();
    src.set_caps(Some(caps));
    src.set_max_buffers(4);
    src.set_block(true);
    pipeline.set_state(gst::State::Playing).unwrap();
    let frames: Vec<gst::Buffer> = (0..n)
        .map(|i| {
            let mut b = frame.copy();
            b.get_mut()
                .unwrap()
                .set_pts(gst::ClockTime::from_mseconds(33 * i as u64));
            b
        })
        .collect();
    let t = Instant::now();
    for b in frames {
        src.push_buffer(b).unwrap();
    }
    src.end_of_stream().unwrap();
    let bus = pipeline.bus().unwrap();
    let msg = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(600),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .expect("EOS");
    let secs = t.elapsed().as_secs_f64();
    if let gst::MessageView::Error(e) = msg.view() {
        panic!("{chain}: {}", e.error());
    }
    pipeline.set_state(gst::State::Null).unwrap();
    secs
}

fn nv12_1080p() -> (gst::Buffer, gst::Caps) {
    let info = gst_video::VideoInfo::builder(gst_video::VideoFormat::Nv12, 1920, 1080)
        .fps(gst::Fraction::new(30, 1))
        .build()
        .unwrap();
    let data = frame_bytes(PixelFormat::Nv12, 1920, 1080);
    (gst::Buffer::from_mut_slice(data), info.to_caps().unwrap())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn element_benchmarks(threads: usize) {
    let (frame, caps) = nv12_1080p();
    let n = 60;
    // segpreproc against stock videoconvert ! videoscale making a 256×256 RGB picture
    // (which is not even normalized: the peer does less work).
    let mut ours = Vec::new();
    let mut stock = Vec::new();
    let mut copy = Vec::new();
    for _ in 0..3 {
        ours.push(pipeline_seconds(
            "segpreproc width=256 height=256 layout=nhwc",
            &caps,
            &frame,
            n,
        ));
        stock.push(pipeline_seconds(
            "videoconvert ! videoscale ! video/x-raw,format=RGB,width=256,height=256",
            &caps,
            &frame,
            n,
        ));
        copy.push(pipeline_seconds("identity", &caps, &frame, n));
    }
    let (ours, stock, base) = (median(ours), median(stock), median(copy));
    println!(
        "{{\"bench\": \"segpreproc_vs_videoconvert\", \"frames\": {n}, \"segpreproc_ms\": {:.3}, \"videoconvert_videoscale_ms\": {:.3}, \"empty_pipeline_ms\": {:.3}}}",
        ours * 1e3 / n as f64,
        stock * 1e3 / n as f64,
        base * 1e3 / n as f64
    );

    // ffnetinfer against a bare ONNX Runtime run of the same model and threads. The
    // frames already carry segpreproc's tensor, so the pipeline times ffnetinfer alone.
    let model = selfie_model();
    let tensor_frame = {
        let mut h =
            gst_check::Harness::new_parse(&format!("segpreproc ! ffnetinfer model={model}"));
        h.set_src_caps(caps.clone());
        let out = h.push_and_pull(frame.copy()).unwrap();
        let mut b = out.copy();
        // Keep the tensor, drop the scores: ffnetinfer makes them again.
        if let Ok(m) = gst::meta::CustomMeta::from_mut_buffer(
            b.get_mut().unwrap(),
            gstffnetseg::meta::SCORES_META,
        ) {
            m.remove().unwrap();
        }
        b
    };
    let tensor = gstffnetseg::meta::InputTensor::from_buffer(&tensor_frame).unwrap();
    let input = tensor.tensor.map_readable().unwrap().to_vec();
    let mut session = InferenceSession::open(&SessionConfig {
        threads,
        provider: Provider::Cpu,
        ..SessionConfig::new(&model)
    })
    .unwrap();
    let mut out = vec![0f32; 256 * 256];
    let mut bare = Vec::new();
    let mut with_element = Vec::new();
    let chain = format!("ffnetinfer model={model} provider=cpu threads={threads}");
    // More, longer rounds than elsewhere: the difference measured here is small.
    let n = 200;
    for _ in 0..9 {
        let t = Instant::now();
        for _ in 0..n {
            session.run(&input, &mut out).unwrap();
        }
        bare.push(t.elapsed().as_secs_f64());
        with_element.push(pipeline_seconds(&chain, &caps, &tensor_frame, n));
    }
    let (bare, with_element) = (median(bare), median(with_element));
    println!(
        "{{\"bench\": \"ffnetinfer_overhead\", \"frames\": {n}, \"threads\": {threads}, \"bare_ort_ms\": {:.3}, \"pipeline_ms\": {:.3}}}",
        bare * 1e3 / n as f64,
        with_element * 1e3 / n as f64
    );
}

/// The whole chain on a real video's frames, decoded into memory first (decoding is not
/// timed; the Python peer does the same).
fn end_to_end(video: &str, frames: usize, scale: Option<(u32, u32)>, threads: usize) {
    let scale_caps = scale
        .map(|(w, h)| format!("! videoscale ! video/x-raw,width={w},height={h}"))
        .unwrap_or_default();
    let p = format!(
        "filesrc location={video} ! decodebin ! videoconvert ! video/x-raw,format=I420 {scale_caps} ! appsink name=sink"
    );
    let samples = collect_samples(&p, frames);
    let caps = samples[0].caps().unwrap().to_owned();
    let info = gst_video::VideoInfo::from_caps(&caps).unwrap();
    let buffers: Vec<gst::Buffer> = samples.iter().map(|s| s.buffer_owned().unwrap()).collect();
    let chain = format!(
        "segpreproc ! ffnetinfer model={} provider=cpu threads={threads} ! segpostproc mode=overlay smoothing=0.5",
        selfie_model()
    );
    let mut runs = Vec::new();
    for _ in 0..3 {
        let launch = format!("appsrc name=src format=time ! {chain} ! fakesink sync=false");
        let pipeline = gst::parse::launch(&launch)
            .unwrap()
            .downcast::<gst::Pipeline>()
            .unwrap();
        let src = pipeline
            .by_name("src")
            .unwrap()
            .downcast::<gst_app::AppSrc>()
            .unwrap();
        src.set_caps(Some(&caps));
        src.set_max_buffers(4);
        src.set_block(true);
        pipeline.set_state(gst::State::Playing).unwrap();
        // Copies are made before timing (segpostproc draws into them).
        let copies: Vec<gst::Buffer> = buffers.iter().map(|b| b.copy_deep().unwrap()).collect();
        let t = Instant::now();
        for b in copies {
            src.push_buffer(b).unwrap();
        }
        src.end_of_stream().unwrap();
        pipeline
            .bus()
            .unwrap()
            .timed_pop_filtered(gst::ClockTime::from_seconds(600), &[gst::MessageType::Eos])
            .expect("EOS");
        runs.push(t.elapsed().as_secs_f64());
        pipeline.set_state(gst::State::Null).unwrap();
    }
    let secs = median(runs);
    println!(
        "{{\"bench\": \"end_to_end\", \"width\": {}, \"height\": {}, \"frames\": {}, \"seconds\": {secs:.4}, \"fps\": {:.2}, \"threads\": {threads}}}",
        info.width(),
        info.height(),
        buffers.len(),
        buffers.len() as f64 / secs
    );
}

/// A live 1080p30 NV12 camera, a model slower than the camera, async inference: how many
/// frames the display side renders and drops (fpsdisplaysink, synchronised to the clock).
fn live_async(seconds: u64) {
    let launch = format!(
        "videotestsrc is-live=true pattern=ball ! video/x-raw,format=NV12,width=1920,height=1080,framerate=30/1 ! \
         segpreproc ! ffnetinfer name=infer mode=async model={} ! segpostproc mode=overlay ! \
         fpsdisplaysink name=fps video-sink=fakesink text-overlay=false sync=true signal-fps-measurements=false",
        model("test_slow_segmenter.onnx")
    );
    let pipeline = gst::parse::launch(&launch)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    std::thread::sleep(Duration::from_secs(seconds));
    let fps = pipeline.by_name("fps").unwrap();
    let infer = pipeline.by_name("infer").unwrap();
    let rendered = fps.property::<u32>("frames-rendered");
    let dropped = fps.property::<u32>("frames-dropped");
    let inferences: u64 = infer.property("inferences");
    let mean_ms: f64 = infer.property("mean-inference-ms");
    pipeline.set_state(gst::State::Null).unwrap();
    println!(
        "{{\"bench\": \"live_async_1080p30\", \"seconds\": {seconds}, \"frames_rendered\": {rendered}, \"frames_dropped\": {dropped}, \"inferences\": {inferences}, \"mean_inference_ms\": {mean_ms:.1}}}"
    );
}

fn main() {
    init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let which = args.first().map(String::as_str).unwrap_or("all");
    let threads = 2;
    if matches!(which, "all" | "stages") {
        stage_benchmarks();
    }
    if matches!(which, "all" | "multiclass") {
        multiclass_benchmarks();
    }
    if matches!(which, "all" | "elements") {
        element_benchmarks(threads);
    }
    if matches!(which, "all" | "e2e") {
        let video = media("vtest.avi");
        end_to_end(&video, 120, None, threads);
        end_to_end(&video, 120, Some((1920, 1080)), threads);
    }
    if matches!(which, "all" | "live") {
        live_async(10);
    }
    // Not in "all": OpenCV picks its OpenCL device from the environment at start, so
    // pipelines/bench.sh runs this on its own (with PoCL's CPU device when there is no GPU).
    if which == "gpu" && !gpu::gpu_route_benchmarks() {
        std::process::exit(2);
    }
}
