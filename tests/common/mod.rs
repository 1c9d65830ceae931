//! Shared helpers of the ffnetseg test suite: plugin registration, paths of the shipped
//! models and of Debian's opencv-doc media, and pipeline/appsink utilities.

use std::path::{Path, PathBuf};
use std::sync::Once;

use gst::prelude::*;
use gst_video::prelude::*;

mod elements;
pub use elements::*;

/// Initialises GStreamer and registers the plugin from this build (not an installed copy).
pub fn init() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Tests run from a checkout: prefer the checkout's ONNX Runtime when no other is set.
        if std::env::var_os("ORT_DYLIB_PATH").is_none()
            && let Some(lib) = venv_onnxruntime()
        {
            // SAFETY: set once, before any other thread of this test binary reads it.
            unsafe { std::env::set_var("ORT_DYLIB_PATH", lib) };
        }
        gst::init().expect("GStreamer initialises");
        gstffnetseg::plugin_register_static().expect("the plugin registers");
    });
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the repo")
        .to_path_buf()
}

/// libonnxruntime.so from the checkout's virtual environment (made by `make venv`).
pub fn venv_onnxruntime() -> Option<PathBuf> {
    let lib = repo_root().join(".venv/lib");
    for py in std::fs::read_dir(lib).ok()?.flatten() {
        let capi = py.path().join("site-packages/onnxruntime/capi");
        for f in std::fs::read_dir(capi).ok()?.flatten() {
            let name = f.file_name().to_string_lossy().to_string();
            if name.starts_with("libonnxruntime.so.") {
                return Some(f.path());
            }
        }
    }
    None
}

pub fn model(name: &str) -> String {
    repo_root()
        .join("models")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

pub fn selfie_model() -> String {
    model("selfie_segmentation.onnx")
}

pub fn tiny_ffnet_model() -> String {
    model("test_ffnet_tiny.onnx")
}

/// Real media from Debian's opencv-doc package.
pub fn media(name: &str) -> String {
    let p = Path::new("/usr/share/doc/opencv-doc/examples/data").join(name);
    assert!(
        p.exists(),
        "{} is missing: install Debian's opencv-doc (make deps)",
        p.display()
    );
    p.to_string_lossy().into_owned()
}

pub fn golden(name: &str) -> String {
    repo_root()
        .join("tests/golden")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

/// A GRAY8 picture as rows without padding.
#[derive(Debug, Clone)]
pub struct Gray {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

/// Copies a GRAY8 sample into packed rows (strides removed).
pub fn gray_from_sample(sample: &gst::Sample) -> Gray {
    let caps = sample.caps().expect("samples have caps");
    let info = gst_video::VideoInfo::from_caps(caps).expect("video caps");
    assert_eq!(
        info.format(),
        gst_video::VideoFormat::Gray8,
        "expected GRAY8, got {caps}"
    );
    let buffer = sample.buffer().expect("samples have a buffer");
    let frame =
        gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, &info).expect("mappable");
    let (w, h) = (info.width() as usize, info.height() as usize);
    let stride = frame.plane_stride()[0] as usize;
    let plane = frame.plane_data(0).expect("plane 0");
    let mut data = Vec::with_capacity(w * h);
    for y in 0..h {
        data.extend_from_slice(&plane[y * stride..y * stride + w]);
    }
    Gray {
        width: w,
        height: h,
        data,
    }
}

/// Builds `launch` (with an `appsink name=sink`, set to sync=false), not yet started.
pub fn launch_with_sink(launch: &str) -> (gst::Pipeline, gst_app::AppSink) {
    let pipeline = gst::parse::launch(launch)
        .unwrap_or_else(|e| panic!("cannot build {launch}: {e}"))
        .downcast::<gst::Pipeline>()
        .expect("a pipeline");
    let sink = pipeline
        .by_name("sink")
        .expect("an appsink named sink")
        .downcast::<gst_app::AppSink>()
        .expect("an appsink");
    sink.set_property("sync", false);
    (pipeline, sink)
}

/// Runs `pipeline` (which must end in `appsink name=sink`) to EOS or `max` samples,
/// failing on any error message.
pub fn collect_samples(pipeline: &str, max: usize) -> Vec<gst::Sample> {
    let (pipeline, sink) = launch_with_sink(pipeline);
    pipeline
        .set_state(gst::State::Playing)
        .expect("pipeline starts");
    let bus = pipeline.bus().expect("pipelines have a bus");
    let mut samples = Vec::new();
    while samples.len() < max {
        if let Some(msg) = bus.pop_filtered(&[gst::MessageType::Error]) {
            pipeline.set_state(gst::State::Null).ok();
            if let gst::MessageView::Error(e) = msg.view() {
                panic!("pipeline error: {} ({:?})", e.error(), e.debug());
            }
        }
        match sink.try_pull_sample(gst::ClockTime::from_seconds(60)) {
            Some(s) => samples.push(s),
            None => {
                if sink.is_eos() {
                    break;
                }
                if let Some(msg) = bus.pop_filtered(&[gst::MessageType::Error])
                    && let gst::MessageView::Error(e) = msg.view()
                {
                    pipeline.set_state(gst::State::Null).ok();
                    panic!("pipeline error: {} ({:?})", e.error(), e.debug());
                }
                pipeline.set_state(gst::State::Null).ok();
                panic!("no sample within 60 s and no EOS");
            }
        }
    }
    pipeline
        .set_state(gst::State::Null)
        .expect("pipeline stops");
    samples
}

/// Loads a PNG (as GStreamer decodes it) as GRAY8.
pub fn load_gray_png(path: &str) -> Gray {
    let p = format!(
        "filesrc location={path} ! pngdec ! videoconvert ! video/x-raw,format=GRAY8 ! appsink name=sink"
    );
    let samples = collect_samples(&p, 1);
    gray_from_sample(&samples[0])
}

/// Pixel agreement and foreground IoU (foreground = value > 127) of two masks.
pub fn agreement_and_iou(a: &Gray, b: &Gray) -> (f64, f64) {
    assert_eq!(
        (a.width, a.height),
        (b.width, b.height),
        "mask sizes differ"
    );
    let mut same = 0usize;
    let (mut inter, mut union) = (0usize, 0usize);
    for (x, y) in a.data.iter().zip(&b.data) {
        let (fa, fb) = (*x > 127, *y > 127);
        if fa == fb {
            same += 1;
        }
        if fa && fb {
            inter += 1;
        }
        if fa || fb {
            union += 1;
        }
    }
    let iou = if union == 0 {
        1.0
    } else {
        inter as f64 / union as f64
    };
    (same as f64 / a.data.len() as f64, iou)
}

/// Fraction of identical values (label maps).
pub fn exact_agreement(a: &Gray, b: &Gray) -> f64 {
    assert_eq!((a.width, a.height), (b.width, b.height), "sizes differ");
    a.data.iter().zip(&b.data).filter(|(x, y)| x == y).count() as f64 / a.data.len() as f64
}

/// Converts a frame to `format` (same size, default strides) with GStreamer's converter.
pub fn convert_frame(
    buffer: &gst::Buffer,
    info: &gst_video::VideoInfo,
    format: gst_video::VideoFormat,
) -> (gst::Buffer, gst_video::VideoInfo) {
    let out_info = gst_video::VideoInfo::builder(format, info.width(), info.height())
        .build()
        .expect("a valid size");
    let out = convert_into(buffer, info, &out_info);
    (out, out_info)
}

/// Converts a frame to `format` with 16 poisoned (0xEE) bytes after every row of every
/// plane, and a GstVideoMeta that says where the rows are (reading padding shows).
pub fn convert_frame_padded(
    buffer: &gst::Buffer,
    info: &gst_video::VideoInfo,
    format: gst_video::VideoFormat,
) -> (gst::Buffer, gst_video::VideoInfo) {
    let mut out_info = gst_video::VideoInfo::builder(format, info.width(), info.height())
        .build()
        .expect("a valid size");
    let mut align = gst_video::VideoAlignment::new(0, 0, 16, 0, &[0; gst_video::VIDEO_MAX_PLANES]);
    out_info.align(&mut align).expect("an alignable format");
    let mut out = convert_into(buffer, info, &out_info);
    let n = out_info.n_planes() as usize;
    gst_video::VideoMeta::add_full(
        out.get_mut().expect("fresh"),
        gst_video::VideoFrameFlags::empty(),
        format,
        out_info.width(),
        out_info.height(),
        &out_info.offset()[..n],
        &out_info.stride()[..n],
    )
    .expect("a video meta");
    (out, out_info)
}

/// A fresh buffer laid out as `out_info` (0xEE where the converter writes nothing).
fn convert_into(
    buffer: &gst::Buffer,
    info: &gst_video::VideoInfo,
    out_info: &gst_video::VideoInfo,
) -> gst::Buffer {
    let mut out = gst::Buffer::from_mut_slice(vec![0xEEu8; out_info.size()]);
    {
        let in_frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer.as_ref(), info)
            .expect("a mappable input frame");
        let mut out_frame = gst_video::VideoFrameRef::from_buffer_ref_writable(
            out.get_mut().expect("fresh"),
            out_info,
        )
        .expect("a mappable output frame");
        gst_video::VideoConverter::new(info, out_info, None)
            .expect("a converter")
            .frame_ref(&in_frame, &mut out_frame);
    }
    out
}

/// An RGB frame painted by `paint(x, y)`.
pub fn painted_rgb(
    width: u32,
    height: u32,
    paint: impl Fn(usize, usize) -> [u8; 3],
) -> (gst::Buffer, gst_video::VideoInfo) {
    init();
    let info = gst_video::VideoInfo::builder(gst_video::VideoFormat::Rgb, width, height)
        .build()
        .expect("a valid size");
    let mut rgb = gst::Buffer::with_size(info.size()).expect("memory");
    {
        let buf = rgb.get_mut().expect("fresh");
        let mut f = gst_video::VideoFrameRef::from_buffer_ref_writable(buf, &info)
            .expect("a mappable frame");
        let stride = f.plane_stride()[0] as usize;
        let data = f.plane_data_mut(0).expect("plane 0");
        for y in 0..height as usize {
            for x in 0..width as usize {
                data[y * stride + x * 3..][..3].copy_from_slice(&paint(x, y));
            }
        }
    }
    (rgb, info)
}
