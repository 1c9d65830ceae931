//! Reliability: contract-breaking models, a missing or too old ONNX Runtime, malformed
//! settings, odd and huge frames, renegotiation, inference failing mid-stream, resets of
//! the temporal state, async results across flushes, hot model swap, state cycles and
//! pipelines running side by side. Nothing may crash, hang or pass silently: every failure
//! is a GStreamer error or warning that names the problem.
//!
//! Hangs fail instead of blocking: every bus pop and sample pull has a timeout, and going
//! to NULL happens on a helper thread watched with a timeout. No test sleeps to
//! synchronise; the polling loops below only pace themselves and end on a deadline.
//!
//! The small models come from `tests/data/make_bad_models.py` (see its docstring).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use gst::glib;
use gst::prelude::*;

use ffnetseg::frame::PixelFormat;
use ffnetseg_tests::*;
use gstffnetseg::meta::Scores;

const BUS_TIMEOUT: gst::ClockTime = gst::ClockTime::from_seconds(30);

fn data_model(name: &str) -> String {
    let p = repo_root().join("tests/data").join(name);
    assert!(
        p.exists(),
        "{} is missing: run .venv/bin/python tests/data/make_bad_models.py",
        p.display()
    );
    p.to_string_lossy().into_owned()
}

fn pipeline(desc: &str) -> gst::Pipeline {
    init();
    gst::parse::launch(desc)
        .unwrap_or_else(|e| panic!("cannot build {desc}: {e}"))
        .downcast::<gst::Pipeline>()
        .expect("a pipeline")
}

/// Sets NULL on a helper thread; a pipeline that hangs there fails the test.
fn stop(pipeline: &gst::Pipeline) {
    let p = pipeline.clone();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(p.set_state(gst::State::Null).is_ok());
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(ok) => assert!(ok, "the pipeline refuses to go to NULL"),
        Err(_) => panic!("the pipeline hangs going to NULL"),
    }
}

/// What a pipeline said on its bus until it ended.
#[derive(Debug, Default)]
struct Outcome {
    /// (source element name, message, debug) of each error, in order.
    errors: Vec<(String, String, String)>,
    warnings: Vec<(String, String)>,
    eos: bool,
    /// Whether an EOS message came before the first error.
    eos_before_error: bool,
}

fn src_name(msg: &gst::MessageRef) -> String {
    msg.src().map(|s| s.name().to_string()).unwrap_or_default()
}

/// Plays `pipeline` until EOS or its first error (collecting warnings), then goes to NULL.
fn play_to_end(pipeline: &gst::Pipeline) -> Outcome {
    let bus = pipeline.bus().unwrap();
    let _ = pipeline.set_state(gst::State::Playing);
    let mut out = Outcome::default();
    loop {
        let Some(msg) = bus.timed_pop(BUS_TIMEOUT) else {
            stop(pipeline);
            panic!("neither EOS nor an error within {BUS_TIMEOUT}: {out:?}");
        };
        match msg.view() {
            gst::MessageView::Error(e) => {
                out.errors.push((
                    src_name(&msg),
                    e.error().to_string(),
                    e.debug().map(|d| d.to_string()).unwrap_or_default(),
                ));
                break;
            }
            gst::MessageView::Warning(w) => {
                out.warnings.push((src_name(&msg), w.error().to_string()))
            }
            gst::MessageView::Eos(_) => {
                out.eos = true;
                out.eos_before_error = true;
                break;
            }
            _ => {}
        }
    }
    stop(pipeline);
    out
}

/// The first error of a pipeline that must fail; panics when it reaches EOS instead.
fn start_error(desc: &str) -> (String, String) {
    let out = play_to_end(&pipeline(desc));
    assert!(!out.eos, "{desc}: reached EOS instead of failing");
    let (src, msg, _) = out.errors.into_iter().next().expect("an error");
    (src, msg)
}

/// Every score of a frame, and their mean.
fn score_values(buffer: &gst::BufferRef) -> Option<(Scores, Vec<f32>)> {
    let s = Scores::from_buffer(buffer)?;
    let v = s.values().expect("scores are readable");
    Some((s, v))
}

fn mean(v: &[f32]) -> f32 {
    v.iter().sum::<f32>() / v.len().max(1) as f32
}

/// Asserts that every score is `want` within `tol` (the brightness models give a frame's
/// own brightness, so this says which frame a result came from).
fn assert_scores_near(v: &[f32], want: f32, tol: f32, what: &str) {
    let (lo, hi) = v
        .iter()
        .fold((f32::MAX, f32::MIN), |(lo, hi), x| (lo.min(*x), hi.max(*x)));
    assert!(
        (lo - want).abs() <= tol && (hi - want).abs() <= tol,
        "{what}: scores in [{lo}, {hi}], expected {want} ± {tol}"
    );
}

/// A frame of `format` painted by `paint(x, y)` (RGB), made by GStreamer's converter.
/// `padded`: 16 poisoned (0xEE) bytes after every row and a GstVideoMeta saying so;
/// otherwise GStreamer's default packed layout and no meta.
fn frame(
    format: gst_video::VideoFormat,
    width: u32,
    height: u32,
    padded: bool,
    paint: impl Fn(usize, usize) -> [u8; 3],
) -> (gst::Buffer, gst_video::VideoInfo) {
    let (rgb, rgb_info) = painted_rgb(width, height, paint);
    if padded {
        convert_frame_padded(&rgb, &rgb_info, format)
    } else {
        convert_frame(&rgb, &rgb_info, format)
    }
}

fn solid(
    format: gst_video::VideoFormat,
    width: u32,
    height: u32,
    rgb: [u8; 3],
) -> (gst::Buffer, gst_video::VideoInfo) {
    frame(format, width, height, false, |_, _| rgb)
}

fn with_pts(buffer: &gst::Buffer, pts: gst::ClockTime) -> gst::Buffer {
    let mut b = buffer.copy();
    b.get_mut().unwrap().set_pts(pts);
    b
}

const WHITE: [u8; 3] = [255, 255, 255];
const BLACK: [u8; 3] = [0, 0, 0];

/// Copies warnings GLib logs in our elements' domains (property refusals) and GLib's own
/// GObject domain (out-of-range values), for the tests to read.
fn logged_warnings() -> &'static Mutex<Vec<String>> {
    static LOG: Mutex<Vec<String>> = Mutex::new(Vec::new());
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        for domain in ["segpreproc", "ffnetinfer", "segpostproc", "GLib-GObject"] {
            glib::log_set_handler(
                Some(domain),
                glib::LogLevels::LEVEL_WARNING | glib::LogLevels::LEVEL_CRITICAL,
                false,
                false,
                |domain, _level, msg| {
                    let line = format!("{}: {msg}", domain.unwrap_or(""));
                    // Still shown, as GLib's default handler would.
                    eprintln!("(captured warning) {line}");
                    LOG.lock().unwrap().push(line)
                },
            );
        }
        // The elements warn through their GStreamer debug categories.
        for category in ["segpreproc", "ffnetinfer", "segpostproc"] {
            gst::log::set_threshold_for_name(category, gst::DebugLevel::Warning);
        }
        gst::log::add_log_function(|cat, level, _, _, _, _, msg| {
            let ours = matches!(cat.name(), "segpreproc" | "ffnetinfer" | "segpostproc");
            if ours
                && level == gst::DebugLevel::Warning
                && let Some(m) = msg.get()
            {
                LOG.lock().unwrap().push(format!("{}: {m}", cat.name()));
            }
        });
    });
    &LOG
}

/// Sets a property from text the way gst-launch-1.0 does (`gst_util_set_object_arg`):
/// GObject refuses out-of-range values with a warning instead of panicking like
/// glib-rs' typed setters.
fn set_from_launch_text(element: &gst::Element, name: &str, value: &str) {
    use glib::translate::ToGlibPtr;
    let name = std::ffi::CString::new(name).unwrap();
    let value = std::ffi::CString::new(value).unwrap();
    let obj: *mut glib::gobject_ffi::GObject =
        element.upcast_ref::<glib::Object>().to_glib_none().0;
    // SAFETY: a live GObject and two NUL-terminated strings.
    unsafe { gst::ffi::gst_util_set_object_arg(obj, name.as_ptr(), value.as_ptr()) };
}

// ---------------------------------------------------------------------------------------
// Models that break the contract; dynamic spatial dimensions
// ---------------------------------------------------------------------------------------

#[test]
fn a_score_map_one_pixel_high_runs_with_a_warning() {
    let desc = format!(
        "videotestsrc num-buffers=2 ! video/x-raw,width=64,height=48 ! segpreproc ! \
         ffnetinfer name=infer model={} ! segpostproc mode=mask ! fakesink",
        data_model("one_row_map.onnx")
    );
    let out = play_to_end(&pipeline(&desc));
    assert!(out.eos && out.errors.is_empty(), "{out:?}");
    assert!(
        out.warnings
            .iter()
            .any(|(src, w)| src == "infer" && w.contains("one pixel high")),
        "no warning about the 32×1 map: {:?}",
        out.warnings
    );
}

#[test]
fn contract_breaking_models_fail_at_start_naming_the_problem() {
    for (file, expect) in [
        ("rank3_input.onnx", &["input 'image'", "4-D"][..]),
        (
            "int64_input.onnx",
            &["input 'image'", "Int64", "float32, uint8 or uint16"][..],
        ),
        (
            "two_inputs.onnx",
            &["2 inputs", "exactly one image input"][..],
        ),
        ("output_1d.onnx", &["output 'mask'", "1×C×H×W"][..]),
        ("output_5d.onnx", &["output 'mask'", "1×C×H×W"][..]),
        (
            "detector.onnx",
            &["output 'mask'", "[1, 100, 6]", "detector"][..],
        ),
        (
            "classifier.onnx",
            &["output 'mask'", "classifier", "segmentation"][..],
        ),
    ] {
        let desc = format!(
            "videotestsrc num-buffers=1 ! video/x-raw,width=64,height=48 ! segpreproc ! \
             ffnetinfer name=infer model={} ! fakesink",
            data_model(file)
        );
        let (src, text) = start_error(&desc);
        assert_eq!(
            src, "infer",
            "{file}: the error comes from ffnetinfer: {text}"
        );
        for e in expect {
            assert!(text.contains(e), "{file}: '{e}' missing from: {text}");
        }
    }
}

#[test]
fn dynamic_spatial_dims_without_a_size_ask_for_segpreproc_width_and_height() {
    let desc = format!(
        "videotestsrc num-buffers=1 ! video/x-raw,width=64,height=48 ! segpreproc ! \
         ffnetinfer model={} ! fakesink",
        data_model("dynamic_hw.onnx")
    );
    let (_, text) = start_error(&desc);
    assert!(
        text.contains("segpreproc") && text.contains("width") && text.contains("height"),
        "the message must tell the user to set segpreproc's width and height: {text}"
    );
}

#[test]
fn dynamic_spatial_dims_work_when_segpreproc_sets_the_size() {
    init();
    for (w, h) in [(64, 48), (40, 24)] {
        let desc = format!(
            "videotestsrc num-buffers=3 pattern=white ! video/x-raw,format=NV12,width=160,height=120 ! \
             segpreproc width={w} height={h} ! ffnetinfer model={} ! segpostproc mode=mask ! appsink name=sink",
            data_model("dynamic_hw.onnx")
        );
        let samples = collect_samples(&desc, 3);
        assert_eq!(samples.len(), 3);
        for s in &samples {
            let (scores, v) = score_values(s.buffer().unwrap()).expect("scores on every frame");
            assert_eq!(
                (scores.classes, scores.width, scores.height),
                (1, w, h),
                "the scores have the size segpreproc was told"
            );
            assert_scores_near(&v, 1.0, 0.02, "white frames");
            let mask = gray_from_sample(s);
            assert_eq!((mask.width, mask.height), (160, 120));
            assert!(mask.data.iter().all(|p| *p == 255), "white is foreground");
        }
    }
}

// ---------------------------------------------------------------------------------------
// ONNX Runtime missing or too old (subprocesses: one library per process)
// ---------------------------------------------------------------------------------------

/// A private directory holding only this checkout's plugin (the newest build), so a
/// subprocess tests it and not the per-user install.
fn plugin_dir(tmp: &Path) -> PathBuf {
    let release = repo_root().join("target/release");
    let lib = [
        release.join("libgstffnetseg.so"),
        release.join("deps/libgstffnetseg.so"),
    ]
    .into_iter()
    .filter_map(|p| Some((std::fs::metadata(&p).ok()?.modified().ok()?, p)))
    .max()
    .map(|(_, p)| p)
    .expect("libgstffnetseg.so is built by `cargo build --release -p gstffnetseg`");
    let dir = tmp.join("plugins");
    std::fs::create_dir_all(&dir).unwrap();
    // A copy, not a link: a concurrent rebuild must not change the plugin mid-test.
    std::fs::copy(&lib, dir.join("libgstffnetseg.so")).expect("copying the plugin");
    dir
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ffnetseg-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs gst-launch-1.0 with an empty HOME (no ~/.local/lib/ffnetseg), a private registry and
/// this build's plugin; returns (exit code, stdout+stderr). A hang past 60 s fails.
fn gst_launch_without_ort(tmp: &Path, ort: Option<&Path>, args: &str) -> (Option<i32>, String) {
    let home = tmp.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let mut cmd = Command::new("gst-launch-1.0");
    cmd.args(args.split_whitespace())
        .env("HOME", &home)
        .env_remove("XDG_DATA_HOME")
        .env("GST_PLUGIN_PATH", plugin_dir(tmp))
        .env("GST_REGISTRY", tmp.join("registry.bin"))
        .env_remove("ORT_DYLIB_PATH")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(p) = ort {
        cmd.env("ORT_DYLIB_PATH", p);
    }
    let child = cmd.spawn().expect("gst-launch-1.0 runs");
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(out) => out.expect("gst-launch-1.0 finishes"),
        Err(_) => {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
            panic!("gst-launch-1.0 {args} hangs");
        }
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

const FAKE_ORT_C: &str = r#"
/* A libonnxruntime.so that only says it is ONNX Runtime 1.10.0 (ort needs >= 1.22). */
#include <stddef.h>
typedef struct OrtApiBase {
    const void *(*GetApi)(unsigned int version);
    const char *(*GetVersionString)(void);
} OrtApiBase;
static const void *get_api(unsigned int version) { (void)version; return NULL; }
static const char *get_version_string(void) { return "1.10.0"; }
static const OrtApiBase base = { get_api, get_version_string };
const OrtApiBase *OrtGetApiBase(void) { return &base; }
"#;

#[test]
fn missing_or_too_old_onnx_runtime_fails_naming_the_library_and_the_fix() {
    let tmp = temp_dir("ort");
    let model = selfie_model();
    let pipeline = format!(
        "videotestsrc num-buffers=1 ! video/x-raw,width=64,height=48 ! segpreproc ! \
         ffnetinfer model={model} ! fakesink"
    );
    let check = |code: Option<i32>, text: &str, expect: &[&str]| {
        assert!(
            matches!(code, Some(c) if c != 0),
            "gst-launch must fail with an exit code (not a signal): {code:?}\n{text}"
        );
        assert!(
            !text.to_lowercase().contains("panicked"),
            "a panic:\n{text}"
        );
        for e in expect {
            assert!(text.contains(e), "'{e}' missing from:\n{text}");
        }
    };

    // (a) ORT_DYLIB_PATH names a file that does not exist.
    let missing = tmp.join("nowhere/libonnxruntime.so");
    let (code, text) = gst_launch_without_ort(&tmp, Some(&missing), &pipeline);
    check(
        code,
        &text,
        &[
            &missing.to_string_lossy(),
            "missing",
            "ORT_DYLIB_PATH",
            "make install",
        ],
    );

    // (b) A library that is ONNX Runtime 1.10.0.
    let fake_dir = tmp.join("fake");
    std::fs::create_dir_all(&fake_dir).unwrap();
    let src = fake_dir.join("fake_ort.c");
    std::fs::write(&src, FAKE_ORT_C).unwrap();
    let fake = fake_dir.join("libonnxruntime.so");
    let status = Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&fake)
        .arg(&src)
        .status()
        .expect("a C compiler (cc)");
    assert!(status.success(), "cc failed");
    let (code, text) = gst_launch_without_ort(&tmp, Some(&fake), &pipeline);
    check(
        code,
        &text,
        &[&fake.to_string_lossy(), "1.10.0", "1.23", "ORT_DYLIB_PATH"],
    );

    // (c) ffnetinfer's ort-library names a missing file.
    let (code, text) = gst_launch_without_ort(
        &tmp,
        None,
        &pipeline.replace(
            "ffnetinfer ",
            &format!("ffnetinfer ort-library={} ", missing.display()),
        ),
    );
    check(
        code,
        &text,
        &[&missing.to_string_lossy(), "does not exist", "ort-library"],
    );
    std::fs::remove_dir_all(&tmp).ok();
}

// ---------------------------------------------------------------------------------------
// Malformed settings keep the old value
// ---------------------------------------------------------------------------------------

#[test]
fn malformed_and_out_of_range_settings_keep_the_old_value_with_a_warning() {
    init();
    let log = logged_warnings();
    let infer = gst::ElementFactory::make("ffnetinfer").build().unwrap();
    infer.set_property("provider-options", "backend_type=htp");
    for bad in ["backend_type", "=htp", "a=1,garbage", ",=,"] {
        infer.set_property("provider-options", bad);
        assert_eq!(
            infer.property::<String>("provider-options"),
            "backend_type=htp",
            "provider-options '{bad}' must be refused"
        );
        let logged = log.lock().unwrap().clone();
        assert!(
            logged
                .iter()
                .any(|m| m.starts_with("ffnetinfer:") && m.contains("key=value")),
            "a warning explains provider-options '{bad}': {logged:?}"
        );
    }
    for (name, bad, keep) in [("threads", "100000", "0"), ("interval", "0", "1")] {
        set_from_launch_text(&infer, name, bad);
        let v = infer.property_value(name);
        assert_eq!(
            v.serialize().unwrap().as_str(),
            keep,
            "ffnetinfer {name}={bad} must be refused"
        );
    }

    let post = gst::ElementFactory::make("segpostproc").build().unwrap();
    for (name, bad, keep) in [
        ("threshold", "1.5", "0.55000000000000004"),
        ("threshold", "-0.1", "0.55000000000000004"),
        ("smoothing", "0", "0.5"),
        ("opacity", "2", "0.5"),
        ("blur", "0", "1"),
        ("blur", "257", "1"),
        ("blur", "100001", "1"),
        ("background-blur", "40", "41"),
        ("background-blur", "4097", "41"),
    ] {
        log.lock().unwrap().clear();
        set_from_launch_text(&post, name, bad);
        let got = post.property_value(name).serialize().unwrap().to_string();
        assert_eq!(got, keep, "segpostproc {name}={bad} must be refused");
        let logged = log.lock().unwrap().clone();
        assert!(
            logged.iter().any(|m| m.contains(name)),
            "{name}={bad}: a warning names the property: {logged:?}"
        );
    }
    for (name, bad, keep) in [
        ("classes", "person,banana", "person,rider"),
        ("classes", ",,", "person,rider"),
        ("classes", "1000", "person,rider"),
        ("color", "#12345", "#00ff00"),
        ("color", "#gg0000", "#00ff00"),
        ("color", "300,0,0", "#00ff00"),
        ("color", "1,2", "#00ff00"),
        ("color", "", "#00ff00"),
    ] {
        log.lock().unwrap().clear();
        post.set_property(name, bad);
        assert_eq!(
            post.property::<String>(name),
            keep,
            "segpostproc {name}='{bad}' must be refused"
        );
        let logged = log.lock().unwrap().clone();
        assert!(
            logged
                .iter()
                .any(|m| m.starts_with("segpostproc:") && m.contains("keeping the previous value")),
            "{name}='{bad}': a warning says what was wrong: {logged:?}"
        );
    }

    let pre = gst::ElementFactory::make("segpreproc").build().unwrap();
    pre.set_property("mean", "0.485,0.456,0.406");
    pre.set_property("std", "0.229,0.224,0.225");
    for (name, bad) in [
        ("mean", "0.5,0.5"),
        ("mean", "a,b,c"),
        ("std", "0,1,1"),
        ("std", "1,2,3,4"),
    ] {
        let before = pre.property::<String>(name);
        pre.set_property(name, bad);
        assert_eq!(
            pre.property::<String>(name),
            before,
            "segpreproc {name}='{bad}' must be refused"
        );
    }
    for (name, bad, keep) in [
        ("width", "70000", "0"),
        ("scale", "1e9", "0.0039215686274509803"),
    ] {
        set_from_launch_text(&pre, name, bad);
        assert_eq!(
            pre.property_value(name).serialize().unwrap().as_str(),
            keep,
            "segpreproc {name}={bad} must be refused"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Frames: tiny, huge, renegotiated, packed and padded; segpostproc alone
// ---------------------------------------------------------------------------------------

fn gst_format(f: PixelFormat) -> gst_video::VideoFormat {
    gst_video::VideoFormat::from_string(f.gst_name())
}

/// A white frame through the whole pipeline in overlay and mask mode: scores on the
/// frame, the frame's format and size kept, every pixel painted (overlay) or foreground.
fn tiny_frame_round_trip(format: gst_video::VideoFormat, w: u32, h: u32) {
    let (input, info) = solid(format, w, h, WHITE);
    let caps = info.to_caps().unwrap();
    for mode in ["overlay", "mask"] {
        let mut harness = gst_check::Harness::new_parse(&format!(
            "segpreproc ! ffnetinfer model={} ! segpostproc mode={mode} smoothing=1 opacity=1 color=#000000",
            data_model("brightness.onnx")
        ));
        harness.set_src_caps(caps.clone());
        let what = format!("{format:?} {w}×{h} {mode}");
        // Synchronous all the way: a frame that passes is waiting at the harness's sink.
        let flow = harness.push(with_pts(&input, gst::ClockTime::ZERO));
        assert_eq!(
            flow,
            Ok(gst::FlowSuccess::Ok),
            "{what}: the pipeline refused the frame"
        );
        let out = harness
            .try_pull()
            .unwrap_or_else(|| panic!("{what}: no frame came out"));
        let (_, v) = score_values(&out).unwrap_or_else(|| panic!("{what}: no scores"));
        assert_scores_near(&v, 1.0, 0.03, &what);
        let out_caps = harness.sinkpad().unwrap().current_caps().unwrap();
        let out_info = gst_video::VideoInfo::from_caps(&out_caps).unwrap();
        assert_eq!((out_info.width(), out_info.height()), (w, h), "{what}");
        let sample = gst::Sample::builder().buffer(&out).caps(&out_caps).build();
        if mode == "mask" {
            let g = gray_from_sample(&sample);
            assert!(g.data.iter().all(|p| *p == 255), "{what}: {:?}", g.data);
        } else {
            assert_eq!(
                out_info.format(),
                format,
                "{what}: overlay keeps the format"
            );
            // Opaque black over a white frame: every pixel must have been painted.
            let g = to_gray(&out, &out_info);
            assert!(
                g.iter().all(|p| *p < 40),
                "{what}: unpainted pixels (luma {g:?})"
            );
        }
    }
}

/// A frame's luma (via GStreamer's converter), packed rows.
fn to_gray(buffer: &gst::Buffer, info: &gst_video::VideoInfo) -> Vec<u8> {
    let (out, gray_info) = convert_frame(buffer, info, gst_video::VideoFormat::Gray8);
    let caps = gray_info.to_caps().unwrap();
    gray_from_sample(&gst::Sample::builder().buffer(&out).caps(&caps).build()).data
}

#[test]
fn every_format_at_1x1_and_2x2_passes_the_whole_pipeline() {
    for f in PixelFormat::ALL {
        for (w, h) in [(1, 1), (2, 2), (1, 2), (2, 1), (3, 3)] {
            tiny_frame_round_trip(gst_format(f), w, h);
        }
    }
}

#[test]
fn packed_yuv_frames_of_odd_width_pass_the_whole_pipeline() {
    let mut failures = Vec::new();
    for f in [PixelFormat::Yuy2, PixelFormat::Uyvy] {
        for (w, h) in [(1, 1), (1, 2), (3, 3), (5, 2), (321, 5)] {
            let r = std::panic::catch_unwind(|| tiny_frame_round_trip(gst_format(f), w, h));
            if let Err(e) = r {
                let text = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                failures.push(text.lines().next().unwrap_or_default().to_string());
            }
        }
    }
    assert!(failures.is_empty(), "failures:\n{}", failures.join("\n"));
}

#[test]
fn frames_of_8k_pass_the_whole_pipeline() {
    for format in ["NV12", "RGB"] {
        for mode in ["overlay", "mask"] {
            let desc = format!(
                "videotestsrc num-buffers=2 pattern=white ! \
                 video/x-raw,format={format},width=7680,height=4320 ! segpreproc ! \
                 ffnetinfer model={} ! segpostproc mode={mode} ! appsink name=sink",
                data_model("brightness.onnx")
            );
            let samples = collect_samples(&desc, 2);
            assert_eq!(samples.len(), 2, "{format} {mode}");
            for s in &samples {
                let info = gst_video::VideoInfo::from_caps(s.caps().unwrap()).unwrap();
                assert_eq!((info.width(), info.height()), (7680, 4320));
                let want = if mode == "mask" { "GRAY8" } else { format };
                assert_eq!(info.format().to_str(), want);
                let (_, v) = score_values(s.buffer().unwrap()).expect("scores");
                assert_scores_near(&v, 1.0, 0.03, &format!("8K {format} {mode}"));
                if mode == "mask" {
                    let g = gray_from_sample(s);
                    assert!(g.data.iter().all(|p| *p == 255), "8K {format}: mask");
                }
            }
        }
    }
}

/// appsrc → pipeline → appsink, frames pushed and pulled one at a time.
struct AppPipeline {
    pipeline: gst::Pipeline,
    src: gst_app::AppSrc,
    sink: gst_app::AppSink,
}

impl AppPipeline {
    fn new(middle: &str) -> Self {
        let pipeline = pipeline(&format!(
            "appsrc name=src format=time ! {middle} ! appsink name=sink sync=false"
        ));
        let src = pipeline
            .by_name("src")
            .unwrap()
            .downcast::<gst_app::AppSrc>()
            .unwrap();
        let sink = pipeline
            .by_name("sink")
            .unwrap()
            .downcast::<gst_app::AppSink>()
            .unwrap();
        pipeline.set_state(gst::State::Playing).unwrap();
        AppPipeline {
            pipeline,
            src,
            sink,
        }
    }

    fn push(
        &self,
        buffer: gst::Buffer,
        caps: &gst::Caps,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        if self.src.caps().as_ref() != Some(caps) {
            self.src.set_caps(Some(caps));
        }
        self.src.push_buffer(buffer)
    }

    /// The next sample, or None after 30 s (and the bus's error, if any, in the panic).
    fn pull(&self) -> Option<gst::Sample> {
        self.sink.try_pull_sample(BUS_TIMEOUT)
    }

    fn pull_or_fail(&self) -> gst::Sample {
        self.pull().unwrap_or_else(|| {
            let bus = self.pipeline.bus().unwrap();
            let err = bus.pop_filtered(&[gst::MessageType::Error]);
            stop(&self.pipeline);
            panic!("no frame within 30 s; bus error: {err:?}")
        })
    }

    fn no_errors(&self) {
        let bus = self.pipeline.bus().unwrap();
        if let Some(msg) = bus.pop_filtered(&[gst::MessageType::Error]) {
            stop(&self.pipeline);
            panic!("pipeline error: {msg:?}");
        }
    }
}

impl Drop for AppPipeline {
    fn drop(&mut self) {
        stop(&self.pipeline);
    }
}

#[test]
fn caps_renegotiate_mid_stream_to_another_size_and_format() {
    // White 320×240 NV12, then black 642×362 RGB, then white 97×61 I420: every frame comes
    // out with its own size and format and carries scores computed from itself; the
    // smoothing (a = 0.5) restarts with each caps change, so the alpha matte of the first
    // frame after a change is that frame's own (0 or 255), not a blend with the last stream.
    for mode in ["overlay", "alpha"] {
        let app = AppPipeline::new(&format!(
            "segpreproc ! ffnetinfer model={} ! segpostproc mode={mode} smoothing=0.5",
            data_model("brightness.onnx")
        ));
        let mut pts = 0;
        for (format, w, h, colour, value) in [
            (gst_video::VideoFormat::Nv12, 320, 240, WHITE, 1.0f32),
            (gst_video::VideoFormat::Rgb, 642, 362, BLACK, 0.0),
            (gst_video::VideoFormat::I420, 97, 61, WHITE, 1.0),
        ] {
            let (buf, info) = solid(format, w, h, colour);
            let caps = info.to_caps().unwrap();
            for i in 0..3 {
                app.push(with_pts(&buf, gst::ClockTime::from_mseconds(pts)), &caps)
                    .unwrap();
                pts += 40;
                let s = app.pull_or_fail();
                let what = format!("{mode} {format:?} {w}×{h} frame {i}");
                let out = gst_video::VideoInfo::from_caps(s.caps().unwrap()).unwrap();
                assert_eq!((out.width(), out.height()), (w, h), "{what}");
                if mode == "overlay" {
                    assert_eq!(out.format(), format, "{what}");
                } else {
                    assert_eq!(out.format(), gst_video::VideoFormat::Gray8, "{what}");
                    let g = gray_from_sample(&s);
                    let want = (value * 255.0) as u8;
                    assert!(
                        g.data.iter().all(|p| p.abs_diff(want) <= 3),
                        "{what}: alpha should be {want} (no smoothing across caps), got {:?}",
                        &g.data[..8]
                    );
                }
                let (scores, v) = score_values(s.buffer().unwrap()).expect("scores");
                assert_eq!(scores.source_pts, s.buffer().unwrap().pts(), "{what}");
                assert_scores_near(&v, value, 0.03, &what);
            }
        }
        app.no_errors();
    }
}

#[test]
fn packed_frames_without_video_meta_and_padded_frames_with_it_give_the_same_result() {
    // A diagonal gradient at an odd size; the padded copy has poisoned padding bytes.
    let paint = |x: usize, y: usize| {
        let v = ((x * 5 + y * 3) % 256) as u8;
        [v, 255 - v, v / 2]
    };
    for format in [
        gst_video::VideoFormat::I420,
        gst_video::VideoFormat::Nv12,
        gst_video::VideoFormat::Rgb,
        gst_video::VideoFormat::Yuy2,
        gst_video::VideoFormat::Gray8,
    ] {
        let mut results = Vec::new();
        for padded in [false, true] {
            let (buf, info) = frame(format, 322, 241, padded, paint);
            assert_eq!(buf.meta::<gst_video::VideoMeta>().is_some(), padded);
            let mut h = gst_check::Harness::new_parse(&format!(
                "segpreproc ! ffnetinfer model={} ! segpostproc mode=alpha smoothing=1",
                data_model("brightness.onnx")
            ));
            h.set_src_caps(info.to_caps().unwrap());
            let out = h
                .push_and_pull(with_pts(&buf, gst::ClockTime::ZERO))
                .unwrap();
            let caps = h.sinkpad().unwrap().current_caps().unwrap();
            let (_, scores) = score_values(&out).expect("scores");
            let alpha = gray_from_sample(&gst::Sample::builder().buffer(&out).caps(&caps).build());
            results.push((scores, alpha.data));
        }
        assert_eq!(
            results[0].0, results[1].0,
            "{format:?}: scores differ between packed and padded frames"
        );
        assert_eq!(
            results[0].1, results[1].1,
            "{format:?}: alpha differs between packed and padded frames"
        );
    }
}

#[test]
fn segpostproc_without_ffnetinfer_warns_once_and_passes_frames() {
    let paint = |x: usize, y: usize| [(x * 7) as u8, (y * 11) as u8, 90];
    for (mode, gray) in [
        ("overlay", false),
        ("mask", true),
        ("background-blur", false),
    ] {
        let app = AppPipeline::new(&format!("segpostproc mode={mode}"));
        let (buf, info) = frame(gst_video::VideoFormat::Nv12, 64, 48, false, paint);
        let caps = info.to_caps().unwrap();
        for i in 0..5 {
            app.push(with_pts(&buf, gst::ClockTime::from_mseconds(40 * i)), &caps)
                .unwrap();
            let s = app.pull_or_fail();
            let out = s.buffer().unwrap();
            if gray {
                let g = gray_from_sample(&s);
                assert_eq!((g.width, g.height), (64, 48));
                assert!(
                    g.data.iter().all(|p| *p == 0),
                    "{mode}: black without scores"
                );
            } else {
                assert_eq!(
                    out.map_readable().unwrap().as_slice(),
                    buf.map_readable().unwrap().as_slice(),
                    "{mode}: the frame passes unchanged"
                );
            }
        }
        app.src.end_of_stream().unwrap();
        let bus = app.pipeline.bus().unwrap();
        let mut warnings = Vec::new();
        loop {
            let msg = bus.timed_pop(BUS_TIMEOUT).expect("EOS within 30 s");
            match msg.view() {
                gst::MessageView::Warning(w) => warnings.push(w.error().to_string()),
                gst::MessageView::Error(e) => panic!("{mode}: {}", e.error()),
                gst::MessageView::Eos(_) => break,
                _ => {}
            }
        }
        assert_eq!(
            warnings.len(),
            1,
            "{mode}: exactly one warning: {warnings:?}"
        );
        assert!(
            warnings[0].contains("put ffnetinfer before segpostproc"),
            "{}",
            warnings[0]
        );
    }
}

#[test]
fn async_inference_start_posts_no_missing_ffnetinfer_warning() {
    // A correct pipeline: the first frames of async inference carry no result yet. That is
    // not the "no ffnetinfer upstream" mistake the warning describes.
    let desc = format!(
        "videotestsrc num-buffers=20 ! video/x-raw,width=160,height=120 ! segpreproc ! \
         ffnetinfer mode=async model={} ! segpostproc ! fakesink",
        model("test_slow_segmenter.onnx")
    );
    let out = play_to_end(&pipeline(&desc));
    assert!(out.eos && out.errors.is_empty(), "{out:?}");
    assert!(
        out.warnings.is_empty(),
        "a correct async pipeline got warnings: {:?}",
        out.warnings
    );
}

// ---------------------------------------------------------------------------------------
// Inference failing mid-stream
// ---------------------------------------------------------------------------------------

#[test]
fn inference_failing_mid_stream_is_an_error_and_a_clean_stop() {
    // fail_on_bright.onnx runs on black frames and fails inside ONNX Runtime (Gather index
    // out of range) on bright ones.
    let app = AppPipeline::new(&format!(
        "segpreproc ! ffnetinfer name=infer model={} ! segpostproc mode=mask",
        data_model("fail_on_bright.onnx")
    ));
    let (black, info) = solid(gst_video::VideoFormat::Rgb, 64, 48, BLACK);
    let (white, _) = solid(gst_video::VideoFormat::Rgb, 64, 48, WHITE);
    let caps = info.to_caps().unwrap();
    for i in 0..3 {
        app.push(
            with_pts(&black, gst::ClockTime::from_mseconds(40 * i)),
            &caps,
        )
        .unwrap();
        let s = app.pull_or_fail();
        let (scores, v) = score_values(s.buffer().unwrap()).expect("black frames run");
        assert_eq!((scores.classes, scores.width, scores.height), (1, 32, 32));
        assert_scores_near(&v, 0.25, 1e-6, "black frame");
    }
    for i in 3..6 {
        // appsrc queues; the failure shows on the bus, not here.
        let _ = app.push(
            with_pts(&white, gst::ClockTime::from_mseconds(40 * i)),
            &caps,
        );
    }
    let bus = app.pipeline.bus().unwrap();
    let msg = bus
        .timed_pop_filtered(
            BUS_TIMEOUT,
            &[gst::MessageType::Error, gst::MessageType::Eos],
        )
        .expect("an error within 30 s (not a hang)");
    let gst::MessageView::Error(e) = msg.view() else {
        panic!("EOS instead of an error: {msg:?}")
    };
    assert_eq!(src_name(&msg), "infer");
    let text = e.error().to_string();
    assert!(
        text.contains("inference failed") && text.contains("Gather") && text.contains("out of"),
        "the error names the failure: {text}"
    );
    // No frame after the failure reaches the sink, and none carries a stale result.
    assert!(
        app.sink.try_pull_sample(gst::ClockTime::ZERO).is_none(),
        "a frame passed after inference failed"
    );
    // Dropping `app` goes to NULL through `stop`, which fails the test on a hang.
}

#[test]
fn async_inference_failing_mid_stream_stops_the_stream() {
    let app = AppPipeline::new(&format!(
        "segpreproc ! ffnetinfer name=infer mode=async model={}",
        data_model("fail_on_bright.onnx")
    ));
    let (black, info) = solid(gst_video::VideoFormat::Rgb, 64, 48, BLACK);
    let (white, _) = solid(gst_video::VideoFormat::Rgb, 64, 48, WHITE);
    let caps = info.to_caps().unwrap();
    // Black frames until one carries a result (the worker runs).
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut pts = 0;
    loop {
        assert!(Instant::now() < deadline, "no async result within 30 s");
        app.push(with_pts(&black, gst::ClockTime::from_mseconds(pts)), &caps)
            .unwrap();
        pts += 40;
        if Scores::from_buffer(app.pull_or_fail().buffer().unwrap()).is_some() {
            break;
        }
        std::thread::yield_now();
    }
    app.push(with_pts(&white, gst::ClockTime::from_mseconds(pts)), &caps)
        .unwrap();
    pts += 40;
    let _ = app.pull_or_fail();
    let bus = app.pipeline.bus().unwrap();
    let msg = bus
        .timed_pop_filtered(BUS_TIMEOUT, &[gst::MessageType::Error])
        .expect("the worker's failure is an error on the bus");
    let gst::MessageView::Error(e) = msg.view() else {
        unreachable!()
    };
    assert!(e.error().to_string().contains("inference failed"));
    // After the error the element must stop the stream, as in sync mode: no frame more.
    let _ = app.push(with_pts(&black, gst::ClockTime::from_mseconds(pts)), &caps);
    assert!(
        app.sink
            .try_pull_sample(gst::ClockTime::from_seconds(5))
            .is_none(),
        "frames keep flowing (with the last result) after inference failed"
    );
}

// ---------------------------------------------------------------------------------------
// Resets of the temporal smoothing; async results across flushes; hot swap
// ---------------------------------------------------------------------------------------

/// segpreproc ! ffnetinfer (brightness) ! segpostproc mode=alpha smoothing=0.5 in a harness:
/// the alpha of a frame is 255·s, where s is the frame's brightness smoothed over the stream.
struct AlphaHarness {
    h: gst_check::Harness,
    pts: u64,
}

impl AlphaHarness {
    fn new(extra: &str, caps: &gst::Caps) -> Self {
        init();
        let mut h = gst_check::Harness::new_parse(&format!(
            "segpreproc ! ffnetinfer name=infer model={} {extra} ! segpostproc mode=alpha smoothing=0.5",
            data_model("brightness.onnx")
        ));
        h.set_src_caps(caps.clone());
        AlphaHarness { h, pts: 0 }
    }

    /// Pushes `buf` and returns the mean alpha (0..255) of the frame that comes out.
    fn alpha(&mut self, buf: &gst::Buffer) -> f32 {
        let out = self
            .h
            .push_and_pull(with_pts(buf, gst::ClockTime::from_mseconds(self.pts)))
            .expect("a frame comes out");
        self.pts += 40;
        let caps = self.h.sinkpad().unwrap().current_caps().unwrap();
        let g = gray_from_sample(&gst::Sample::builder().buffer(&out).caps(&caps).build());
        g.data.iter().map(|p| *p as f32).sum::<f32>() / g.data.len() as f32
    }

    fn segment(&mut self) {
        assert!(
            self.h
                .push_event(gst::event::Segment::new(&gst::FormattedSegment::<
                    gst::ClockTime,
                >::new()))
        );
    }

    fn infer(&self) -> gst::Element {
        self.h
            .element()
            .unwrap()
            .downcast::<gst::Bin>()
            .unwrap()
            .by_name("infer")
            .unwrap()
    }
}

fn white_then(
    reset: impl FnOnce(&mut AlphaHarness, &gst::Buffer, &gst::Caps) -> f32,
) -> (f32, f32) {
    let (white, info) = solid(gst_video::VideoFormat::Nv12, 64, 48, WHITE);
    let caps = info.to_caps().unwrap();
    let mut h = AlphaHarness::new("", &caps);
    let mut a = 0.0;
    for _ in 0..3 {
        a = h.alpha(&white);
    }
    (a, reset(&mut h, &white, &caps))
}

#[test]
fn flush_eos_and_caps_changes_reset_the_smoothing() {
    let (black, _) = solid(gst_video::VideoFormat::Nv12, 64, 48, BLACK);
    // Without a reset, black after white is smoothed: 0.5 · 255.
    let (before, smoothed) = white_then(|h, _, _| h.alpha(&black));
    assert!(before > 254.0, "white frames: alpha {before}");
    assert!(
        (smoothed - 127.5).abs() < 2.0,
        "control: black after white without a reset is smoothed: {smoothed}"
    );

    let (_, after_flush) = white_then(|h, _, _| {
        assert!(h.h.push_event(gst::event::FlushStart::new()));
        assert!(h.h.push_event(gst::event::FlushStop::new(true)));
        h.segment();
        h.alpha(&black)
    });
    assert!(after_flush < 1.0, "flush: alpha {after_flush}, expected 0");

    let (_, after_eos) = white_then(|h, _, _| {
        assert!(h.h.push_event(gst::event::Eos::new()));
        assert!(h.h.push_event(gst::event::StreamStart::new("second-stream")));
        h.segment();
        h.alpha(&black)
    });
    assert!(
        after_eos < 1.0,
        "EOS + new stream: alpha {after_eos}, expected 0"
    );

    let (_, after_caps) = white_then(|h, _, _| {
        let (black_rgb, info) = solid(gst_video::VideoFormat::Rgb, 80, 40, BLACK);
        h.h.set_src_caps(info.to_caps().unwrap());
        h.alpha(&black_rgb)
    });
    assert!(
        after_caps < 1.0,
        "caps change: alpha {after_caps}, expected 0"
    );
}

#[test]
fn a_new_segment_resets_the_smoothing() {
    let (black, _) = solid(gst_video::VideoFormat::Nv12, 64, 48, BLACK);
    let (_, after_segment) = white_then(|h, _, _| {
        let mut seg = gst::FormattedSegment::<gst::ClockTime>::new();
        seg.set_start(gst::ClockTime::from_seconds(100));
        seg.set_time(gst::ClockTime::from_seconds(100));
        assert!(h.h.push_event(gst::event::Segment::new(&seg)));
        h.pts = 100_000;
        h.alpha(&black)
    });
    assert!(
        after_segment < 1.0,
        "new segment: alpha {after_segment}, expected 0"
    );
}

#[test]
fn a_flushing_seek_resets_the_smoothing_in_a_playing_pipeline() {
    init();
    let p = pipeline(&format!(
        "videotestsrc name=src pattern=white ! video/x-raw,format=NV12,width=64,height=48,framerate=25/1 ! \
         segpreproc ! ffnetinfer model={} ! segpostproc mode=alpha smoothing=0.5 ! \
         appsink name=sink sync=false max-buffers=1 drop=false",
        data_model("brightness.onnx")
    ));
    let sink = p
        .by_name("sink")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    p.set_state(gst::State::Playing).unwrap();
    let mean_alpha = |s: &gst::Sample| {
        let g = gray_from_sample(s);
        g.data.iter().map(|p| *p as f32).sum::<f32>() / g.data.len() as f32
    };
    for _ in 0..3 {
        let s = sink.try_pull_sample(BUS_TIMEOUT).expect("a frame");
        assert!(mean_alpha(&s) > 254.0);
    }
    p.by_name("src")
        .unwrap()
        .set_property_from_str("pattern", "black");
    let target = gst::ClockTime::from_seconds(100);
    p.seek_simple(gst::SeekFlags::FLUSH | gst::SeekFlags::ACCURATE, target)
        .expect("videotestsrc seeks");
    // Frames made before the seek (black, smoothed) may still come; the first one of the
    // new segment must be its own unsmoothed alpha.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(Instant::now() < deadline, "no frame after the seek");
        let s = sink.try_pull_sample(BUS_TIMEOUT).expect("a frame");
        if s.buffer().unwrap().pts().is_some_and(|t| t >= target) {
            let a = mean_alpha(&s);
            assert!(
                a < 1.0,
                "first frame after a flushing seek: alpha {a}, expected 0"
            );
            break;
        }
    }
    if let Some(msg) = p.bus().unwrap().pop_filtered(&[gst::MessageType::Error]) {
        panic!("{msg:?}");
    }
    stop(&p);
}

#[test]
fn a_hot_model_swap_resets_the_smoothing() {
    let (white, info) = solid(gst_video::VideoFormat::Nv12, 64, 48, WHITE);
    let mut h = AlphaHarness::new("", &info.to_caps().unwrap());
    for _ in 0..3 {
        assert!(h.alpha(&white) > 254.0);
    }
    // inverse_brightness.onnx: the same contract, scores 1 − brightness (0 on white).
    h.infer()
        .set_property("model", data_model("inverse_brightness.onnx"));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(Instant::now() < deadline, "the new model never took over");
        let out =
            h.h.push_and_pull(with_pts(&white, gst::ClockTime::from_mseconds(h.pts)))
                .unwrap();
        h.pts += 40;
        let (_, v) = score_values(&out).expect("scores ride along to the alpha frame");
        if mean(&v) < 0.5 {
            let caps = h.h.sinkpad().unwrap().current_caps().unwrap();
            let g = gray_from_sample(&gst::Sample::builder().buffer(&out).caps(&caps).build());
            let a = g.data.iter().map(|p| *p as f32).sum::<f32>() / g.data.len() as f32;
            assert!(
                a < 1.0,
                "first frame of the new model: alpha {a} (smoothed with the old model's results)"
            );
            break;
        }
        std::thread::yield_now();
    }
}

#[test]
fn async_results_from_before_a_flush_are_never_attached_after_it() {
    // The slow model (100–300 ms) keeps a job in flight when the flush comes. Frames of
    // round r have pts ≥ r·100 s, so a result's source-pts says which round it is from.
    init();
    let (buf, info) = solid(gst_video::VideoFormat::Nv12, 64, 48, WHITE);
    let mut h = gst_check::Harness::new_parse(&format!(
        "segpreproc ! ffnetinfer mode=async model={}",
        model("test_slow_segmenter.onnx")
    ));
    h.set_src_caps(info.to_caps().unwrap());
    let mut last_sequence = 0;
    for round in 1..=4u64 {
        let base = gst::ClockTime::from_seconds(100 * round);
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut i = 0;
        let mut got_own_result = false;
        while !got_own_result {
            assert!(
                Instant::now() < deadline,
                "round {round}: no result within 60 s"
            );
            let pts = base + gst::ClockTime::from_mseconds(40 * i);
            i += 1;
            let out = h.push_and_pull(with_pts(&buf, pts)).unwrap();
            if let Some(s) = Scores::from_buffer(&out) {
                let src = s.source_pts.expect("source-pts");
                assert!(
                    src >= base && src <= pts,
                    "round {round}: frame {pts} carries the result of {src}, from before the flush"
                );
                assert!(
                    s.sequence > last_sequence || got_own_result,
                    "sequence goes back"
                );
                last_sequence = s.sequence;
                got_own_result = true;
            } else {
                // Pacing only (the worker needs 100–300 ms); correctness does not depend on it.
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        // One more frame starts a job that is still running when the flush comes.
        let _ = h
            .push_and_pull(with_pts(&buf, base + gst::ClockTime::from_mseconds(40 * i)))
            .unwrap();
        assert!(h.push_event(gst::event::FlushStart::new()));
        assert!(h.push_event(gst::event::FlushStop::new(true)));
        assert!(
            h.push_event(gst::event::Segment::new(&gst::FormattedSegment::<
                gst::ClockTime,
            >::new()))
        );
    }
}

#[test]
fn async_hot_swap_to_a_contract_breaker_keeps_the_old_model_then_a_valid_one_takes_over() {
    let app = AppPipeline::new(&format!(
        "segpreproc ! ffnetinfer name=infer mode=async model={}",
        data_model("brightness.onnx")
    ));
    let infer = app.pipeline.by_name("infer").unwrap();
    let (white, info) = solid(gst_video::VideoFormat::I420, 64, 48, WHITE);
    let caps = info.to_caps().unwrap();
    let mut pts = 0;
    let mut next = |app: &AppPipeline| {
        app.push(with_pts(&white, gst::ClockTime::from_mseconds(pts)), &caps)
            .unwrap();
        pts += 40;
        let s = app.pull_or_fail();
        score_values(s.buffer().unwrap()).map(|(_, v)| mean(&v))
    };
    let until =
        |app: &AppPipeline, next: &mut dyn FnMut(&AppPipeline) -> Option<f32>, want: f32| {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                assert!(
                    Instant::now() < deadline,
                    "no result near {want} within 30 s"
                );
                if next(app).is_some_and(|m| (m - want).abs() < 0.03) {
                    return;
                }
                std::thread::yield_now();
            }
        };
    until(&app, &mut next, 1.0);

    infer.set_property("model", data_model("two_inputs.onnx"));
    let bus = app.pipeline.bus().unwrap();
    let msg = bus
        .timed_pop_filtered(
            BUS_TIMEOUT,
            &[gst::MessageType::Warning, gst::MessageType::Error],
        )
        .expect("a warning about the refused model");
    let gst::MessageView::Warning(w) = msg.view() else {
        panic!("an error instead of a warning: {msg:?}")
    };
    let text = w.error().to_string();
    assert!(
        text.contains("2 inputs") && text.contains("previous one keeps running"),
        "{text}"
    );
    for _ in 0..5 {
        let m = next(&app).expect("results continue");
        assert!((m - 1.0).abs() < 0.03, "the old model keeps running: {m}");
    }

    infer.set_property("model", data_model("inverse_brightness.onnx"));
    until(&app, &mut next, 0.0);
    for _ in 0..5 {
        let m = next(&app).expect("results continue");
        assert!(m < 0.03, "only the new model's results after the swap: {m}");
    }
    app.no_errors();
}

// ---------------------------------------------------------------------------------------
// State cycles and pipelines side by side
// ---------------------------------------------------------------------------------------

fn proc_status(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix(field)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

/// NULL → PLAYING (prerolled: a frame went through all three elements) → NULL, 500 times
/// (FFNETSEG_STATE_CYCLES overrides; tests/reliability/valgrind.sh runs 50), alternating
/// sync and async inference.
#[test]
fn null_playing_cycles_do_not_crash_hang_or_leak_threads() {
    let cycles: usize = std::env::var("FFNETSEG_STATE_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let p = pipeline(&format!(
        "videotestsrc ! video/x-raw,width=64,height=48 ! segpreproc ! \
         ffnetinfer name=infer model={} ! segpostproc ! fakesink name=sink",
        tiny_ffnet_model()
    ));
    let frames = Arc::new(AtomicU64::new(0));
    let counter = frames.clone();
    p.by_name("sink")
        .unwrap()
        .static_pad("sink")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            counter.fetch_add(1, Ordering::Relaxed);
            gst::PadProbeReturn::Ok
        });
    let infer = p.by_name("infer").unwrap();
    let bus = p.bus().unwrap();
    let mut baseline = None;
    for i in 0..cycles {
        infer.set_property_from_str("mode", if i % 2 == 0 { "sync" } else { "async" });
        let before = frames.load(Ordering::Relaxed);
        let _ = p.set_state(gst::State::Playing);
        let (res, state, _) = p.state(gst::ClockTime::from_seconds(30));
        if let Some(msg) = bus.pop_filtered(&[gst::MessageType::Error]) {
            stop(&p);
            panic!("cycle {i}: {msg:?}");
        }
        assert!(
            res.is_ok() && state == gst::State::Playing,
            "cycle {i}: not PLAYING within 30 s ({res:?}, {state:?})"
        );
        assert!(
            frames.load(Ordering::Relaxed) > before,
            "cycle {i}: no frame reached the sink"
        );
        if i % 2 == 0 {
            // Sync: the prerolled frame waited for its own inference.
            assert!(
                infer.property::<u64>("inferences") >= 1,
                "cycle {i}: no inference"
            );
        }
        stop(&p);
        if i == 1 {
            baseline = Some((proc_status("Threads:"), open_fds()));
        }
    }
    if let Some((threads, fds)) = baseline {
        let (t, f) = (proc_status("Threads:"), open_fds());
        eprintln!("{cycles} cycles: threads {threads} → {t}, fds {fds} → {f}");
        // Other tests run in this process at the same time: allow their share.
        assert!(t < threads + 64, "threads grew from {threads} to {t}");
        assert!(f < fds + 64, "file descriptors grew from {fds} to {f}");
    }
}

#[test]
fn four_pipelines_in_one_process_share_a_model_without_cross_talk() {
    init();
    let shared_model = data_model("brightness.onnx");
    // Solid colours of different brightness, formats and modes; live sources, so the four
    // run over the same 0.7 s and async inference has time for results.
    let runs = [
        ("0xff000000", "NV12", "sync", 0.0f32),
        ("0xffffffff", "I420", "async", 1.0),
        ("0xff808080", "RGB", "sync", 128.0 / 255.0),
        ("0xffff0000", "BGRx", "async", 1.0 / 3.0),
    ];
    let barrier = Arc::new(std::sync::Barrier::new(runs.len()));
    std::thread::scope(|scope| {
        let handles: Vec<_> = runs
            .iter()
            .map(|&(colour, format, mode, want)| {
                let barrier = barrier.clone();
                let shared_model = shared_model.clone();
                scope.spawn(move || {
                    let desc = format!(
                        "videotestsrc is-live=true num-buffers=40 pattern=solid-color foreground-color={colour} ! \
                         video/x-raw,format={format},width=160,height=120,framerate=60/1 ! segpreproc ! \
                         ffnetinfer mode={mode} model={shared_model} ! appsink name=sink"
                    );
                    barrier.wait();
                    let samples = collect_samples(&desc, 40);
                    assert_eq!(samples.len(), 40, "{colour}: every frame comes out");
                    let mut with_scores = 0;
                    for s in &samples {
                        if let Some((_, v)) = score_values(s.buffer().unwrap()) {
                            assert_scores_near(&v, want, 0.03, &format!("{colour} {format} {mode}"));
                            with_scores += 1;
                        }
                    }
                    if mode == "sync" {
                        assert_eq!(with_scores, 40, "{colour}: sync scores every frame");
                    } else {
                        assert!(with_scores > 0, "{colour}: async gave no result");
                    }
                })
            })
            .collect();
        for h in handles {
            if let Err(e) = h.join() {
                std::panic::resume_unwind(e);
            }
        }
    });
}
