//! Embedding ffnetseg in a Rust application.
//!
//! Builds `filesrc ! decodebin ! videoconvert ! segpreproc ! ffnetinfer ! appsink` in code,
//! with the plugin linked in statically (no installation, no GST_PLUGIN_PATH), and reads the
//! scores that ffnetinfer attaches to each frame through `gstffnetseg::meta::Scores`.
//! For every frame it prints the foreground fraction and the latency figures:
//!
//! ```text
//! cargo run --release -p ffnetseg-embed-example -- --frames 30
//! ```
//!
//! ONNX Runtime is found the way the plugin always finds it (ffnetinfer's `ort-library`
//! property, `ORT_DYLIB_PATH`, `~/.local/lib/ffnetseg/libonnxruntime.so` from
//! `make install`, …; see docs/troubleshooting.md).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use gst::prelude::*;
use gstffnetseg::meta::Scores;

const DEFAULT_INPUT: &str = "/usr/share/doc/opencv-doc/examples/data/vtest.avi";

struct Options {
    frames: usize,
    input: PathBuf,
    model: PathBuf,
    /// ffnetinfer's mode property: sync, async or auto.
    mode: String,
}

fn usage() -> String {
    format!(
        "Usage: ffnetseg-embed-example [--frames N] [--input VIDEO] [--model MODEL.onnx] [--mode M]\n\
         \x20 --frames N   frames to segment (default 30; 0 = the whole file)\n\
         \x20 --input      video file (default {DEFAULT_INPUT})\n\
         \x20 --model      ONNX model (default models/selfie_segmentation.onnx of this checkout)\n\
         \x20 --mode       ffnetinfer mode: sync (default), async or auto\n\
         Prints, per frame: the foreground fraction (scores > 0.5; for a multi-class model the\n\
         pixels whose top class is person or rider), the inference time, and how old the\n\
         result is (frame pts − the pts of the frame the scores came from)."
    )
}

fn default_model() -> PathBuf {
    let in_checkout =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/selfie_segmentation.onnx");
    in_checkout
        .canonicalize()
        .unwrap_or_else(|_| PathBuf::from("models/selfie_segmentation.onnx"))
}

fn parse_args() -> Result<Options, String> {
    let mut opts = Options {
        frames: 30,
        input: PathBuf::from(DEFAULT_INPUT),
        model: default_model(),
        mode: "sync".into(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--frames" => {
                let v = value("--frames")?;
                opts.frames = v
                    .parse()
                    .map_err(|_| format!("--frames wants a number, got {v:?}"))?;
            }
            "--input" => opts.input = PathBuf::from(value("--input")?),
            "--model" => opts.model = PathBuf::from(value("--model")?),
            "--mode" => opts.mode = value("--mode")?,
            "-h" | "--help" => {
                // writeln, not println: `--help | head` must not panic on a closed pipe.
                let _ = writeln!(std::io::stdout(), "{}", usage());
                std::process::exit(0);
            }
            other => return Err(format!("unknown option {other}")),
        }
    }
    for (what, path) in [("input", &opts.input), ("model", &opts.model)] {
        if !path.is_file() {
            return Err(format!("the {what} {} does not exist", path.display()));
        }
    }
    Ok(opts)
}

/// What one frame's scores say.
struct FrameResult {
    foreground: f64,
    classes: usize,
    provider: String,
    inference_ms: f64,
    /// Frame pts minus the pts of the frame the scores were computed from (0 in sync mode).
    age_ms: Option<f64>,
    sequence: u64,
}

/// Cityscapes indices of person and rider: the foreground of a multi-class (FFNet) model.
const PERSON_CLASSES: [usize; 2] = [11, 12];

/// `None` when the frame carries no scores (in async mode, frames before the first finished
/// inference).
fn analyse(buffer: &gst::BufferRef) -> Result<Option<FrameResult>, String> {
    let Some(scores) = Scores::from_buffer(buffer) else {
        return Ok(None);
    };
    let values = scores
        .values()
        .map_err(|e| format!("cannot read the scores: {e}"))?;
    let (w, h, c) = (scores.width, scores.height, scores.classes);
    if values.len() != w * h * c {
        return Err(format!(
            "{} scores for {w}×{h}×{c}: the metadata is inconsistent",
            values.len()
        ));
    }
    let nchw = scores.layout.as_str() == "nchw";
    let at = |class: usize, x: usize, y: usize| {
        if nchw {
            values[(class * h + y) * w + x]
        } else {
            values[(y * w + x) * c + class]
        }
    };
    // Only the picture counts: with resize=letterbox the tensor has padding around it.
    // The region is in tensor pixels; the scores may be coarser (FFNet: 1/8).
    let r = scores.region;
    let (tw, th) = (scores.tensor_width.max(1), scores.tensor_height.max(1));
    let x0 = r.x * w / tw;
    let y0 = r.y * h / th;
    let x1 = ((r.x + r.width) * w).div_ceil(tw).clamp(x0 + 1, w);
    let y1 = ((r.y + r.height) * h).div_ceil(th).clamp(y0 + 1, h);
    let mut fg = 0usize;
    for y in y0..y1 {
        for x in x0..x1 {
            let is_fg = if c == 1 {
                at(0, x, y) > 0.5
            } else {
                let top = (0..c)
                    .max_by(|a, b| at(*a, x, y).total_cmp(&at(*b, x, y)))
                    .unwrap_or(0);
                PERSON_CLASSES.contains(&top)
            };
            fg += usize::from(is_fg);
        }
    }
    let age_ms = match (buffer.pts(), scores.source_pts) {
        (Some(pts), Some(src)) => Some((pts.nseconds() as f64 - src.nseconds() as f64) / 1e6),
        _ => None,
    };
    Ok(Some(FrameResult {
        foreground: fg as f64 / ((x1 - x0) * (y1 - y0)) as f64,
        classes: c,
        provider: scores.provider.to_string(),
        inference_ms: scores.inference_ns as f64 / 1e6,
        age_ms,
        sequence: scores.sequence,
    }))
}

fn build_pipeline(opts: &Options) -> Result<(gst::Pipeline, gst_app::AppSink), String> {
    let make = |factory: &str| {
        gst::ElementFactory::make(factory)
            .build()
            .map_err(|_| format!("cannot create {factory}: is its GStreamer plugin installed?"))
    };
    let src = gst::ElementFactory::make("filesrc")
        .property("location", opts.input.to_string_lossy().as_ref())
        .build()
        .map_err(|e| format!("filesrc: {e}"))?;
    let decode = make("decodebin")?;
    let convert = make("videoconvert")?;
    let pre = make("segpreproc")?;
    let infer = gst::ElementFactory::make("ffnetinfer")
        .property("model", opts.model.to_string_lossy().as_ref())
        .build()
        .map_err(|e| format!("ffnetinfer: {e}"))?;
    // An enum property from its nick; an unknown nick would panic, so check it first.
    if !["sync", "async", "auto"].contains(&opts.mode.as_str()) {
        return Err(format!(
            "--mode wants sync, async or auto, got {:?}",
            opts.mode
        ));
    }
    infer.set_property_from_str("mode", &opts.mode);
    let sink = gst_app::AppSink::builder().sync(false).build();

    let pipeline = gst::Pipeline::new();
    pipeline
        .add_many([&src, &decode, &convert, &pre, &infer, sink.upcast_ref()])
        .map_err(|e| e.to_string())?;
    src.link(&decode).map_err(|e| e.to_string())?;
    gst::Element::link_many([&convert, &pre, &infer, sink.upcast_ref()])
        .map_err(|e| e.to_string())?;

    // decodebin's video pad appears once it has found the stream: link it then.
    let convert_weak = convert.downgrade();
    decode.connect_pad_added(move |_, pad| {
        let Some(convert) = convert_weak.upgrade() else {
            return;
        };
        let is_video = pad
            .current_caps()
            .and_then(|caps| caps.structure(0).map(|s| s.name().starts_with("video/")))
            .unwrap_or(false);
        let sinkpad = convert
            .static_pad("sink")
            .expect("videoconvert has a sink pad");
        if is_video
            && !sinkpad.is_linked()
            && let Err(e) = pad.link(&sinkpad)
        {
            eprintln!("cannot link decodebin to videoconvert: {e:?}");
        }
    });
    Ok((pipeline, sink))
}

fn run(opts: &Options) -> Result<(), String> {
    gst::init().map_err(|e| format!("GStreamer does not initialise: {e}"))?;
    // The plugin is linked into this program: register its elements here instead of
    // loading libgstffnetseg.so from the plugin path.
    gstffnetseg::plugin_register_static()
        .map_err(|e| format!("cannot register the ffnetseg elements: {e}"))?;

    let (pipeline, sink) = build_pipeline(opts)?;
    let bus = pipeline.bus().expect("a pipeline has a bus");
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|_| "the pipeline does not start (see the error above)".to_string())?;

    let started = Instant::now();
    let mut results: Vec<FrameResult> = Vec::new();
    let mut frames = 0usize;
    let outcome = loop {
        if opts.frames > 0 && frames >= opts.frames {
            break Ok(());
        }
        if let Some(msg) = bus.pop_filtered(&[gst::MessageType::Error, gst::MessageType::Warning]) {
            match msg.view() {
                gst::MessageView::Error(e) => {
                    break Err(format!(
                        "pipeline error from {}: {}",
                        e.src().map(|s| s.path_string()).unwrap_or_default(),
                        e.error()
                    ));
                }
                gst::MessageView::Warning(w) => eprintln!("warning: {}", w.error()),
                _ => {}
            }
            continue;
        }
        let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_mseconds(200)) else {
            if sink.is_eos() {
                break Ok(());
            }
            if started.elapsed() > Duration::from_secs(120) {
                break Err("no frame for two minutes".into());
            }
            continue;
        };
        let buffer = sample.buffer().ok_or("a sample without a buffer")?;
        if frames == 0
            && let Some(info) = sample
                .caps()
                .and_then(|c| gst_video::VideoInfo::from_caps(c).ok())
        {
            println!(
                "frames: {}×{} {}; model: {}",
                info.width(),
                info.height(),
                info.format().to_str(),
                opts.model.display()
            );
        }
        let pts = buffer
            .pts()
            .map(|p| format!("{:.3} s", p.nseconds() as f64 / 1e9))
            .unwrap_or_else(|| "none".into());
        let r = match analyse(buffer) {
            Ok(Some(r)) => r,
            Ok(None) => {
                println!("frame {frames:3}  pts {pts:>9}  no result yet (no FfnetsegScoresMeta)");
                frames += 1;
                continue;
            }
            Err(e) => break Err(e),
        };
        let age = r
            .age_ms
            .map(|a| format!("{a:.1} ms"))
            .unwrap_or_else(|| "unknown".into());
        println!(
            "frame {:3}  pts {pts:>9}  foreground {:5.1}%  inference {:6.2} ms on {}  result #{} age {age}",
            frames,
            100.0 * r.foreground,
            r.inference_ms,
            r.provider,
            r.sequence,
        );
        results.push(r);
        frames += 1;
    };
    pipeline
        .set_state(gst::State::Null)
        .map_err(|_| "the pipeline does not stop".to_string())?;
    outcome?;

    if frames == 0 {
        return Err("no frame came out of the pipeline".into());
    }
    if results.is_empty() {
        return Err(
            "no frame carried FfnetsegScoresMeta: is ffnetinfer in the pipeline before the appsink?"
                .into(),
        );
    }
    let n = results.len() as f64;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{frames} frames ({} with a result) in {secs:.2} s ({:.1} frames per second); mean foreground {:.1}%, mean inference {:.2} ms on {}, {} class(es)",
        results.len(),
        frames as f64 / secs,
        100.0 * results.iter().map(|r| r.foreground).sum::<f64>() / n,
        results.iter().map(|r| r.inference_ms).sum::<f64>() / n,
        results[0].provider,
        results[0].classes,
    );
    Ok(())
}

fn main() -> ExitCode {
    let opts = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}\n\n{}", usage());
            return ExitCode::from(2);
        }
    };
    match run(&opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
