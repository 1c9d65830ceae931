//! Frames, harnesses and runners the element tests share.

use std::sync::{Arc, Mutex};

use gst::prelude::*;

use gstffnetseg::meta::InputTensor;

use crate::*;

pub const LEFT: [u8; 3] = [200, 60, 40];
pub const RIGHT: [u8; 3] = [30, 90, 220];

/// A frame of `format` with padded strides (VideoMeta says where the rows are), whose
/// left half is LEFT and right half RIGHT; padding bytes are 0xEE so reading them shows.
pub fn two_colour_frame(
    format: gst_video::VideoFormat,
    width: u32,
    height: u32,
) -> (gst::Buffer, gst_video::VideoInfo) {
    let half = width as usize / 2;
    let (rgb, rgb_info) = painted_rgb(width, height, |x, _| if x < half { LEFT } else { RIGHT });
    padded_frame(&rgb, &rgb_info, format)
}

/// messi5.jpg (a person the selfie model finds) at 322×242 in `format` with padded strides.
pub fn person_frame(format: gst_video::VideoFormat) -> (gst::Buffer, gst_video::VideoInfo) {
    init();
    let p = format!(
        "filesrc location={} ! jpegdec ! videoconvert ! videoscale ! video/x-raw,format=RGB,width=322,height=242 ! appsink name=sink",
        media("messi5.jpg")
    );
    let sample = collect_samples(&p, 1).remove(0);
    let info = gst_video::VideoInfo::from_caps(sample.caps().unwrap()).unwrap();
    padded_frame(&sample.buffer_owned().unwrap(), &info, format)
}

/// Converts an RGB frame into `format` with 16 bytes of 0xEE padding after every row.
pub fn padded_frame(
    rgb: &gst::Buffer,
    rgb_info: &gst_video::VideoInfo,
    format: gst_video::VideoFormat,
) -> (gst::Buffer, gst_video::VideoInfo) {
    let (mut out, info) = convert_frame_padded(rgb, rgb_info, format);
    out.get_mut()
        .unwrap()
        .set_pts(gst::ClockTime::from_mseconds(40));
    (out, info)
}

pub fn harness(launch: &str, caps: &gst::Caps) -> gst_check::Harness {
    init();
    let mut h = gst_check::Harness::new_parse(launch);
    h.set_src_caps(caps.clone());
    h
}

pub fn tensor_values(t: &InputTensor) -> Vec<f32> {
    let map = t.tensor.map_readable().unwrap();
    map.as_slice()
        .chunks_exact(4)
        .map(|b| f32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// Runs a pipeline and returns its first error message.
pub fn first_error(launch: &str) -> String {
    let pipeline = gst::parse::launch(launch).unwrap();
    let bus = pipeline.bus().unwrap();
    let _ = pipeline.set_state(gst::State::Playing);
    let msg = bus
        .timed_pop_filtered(gst::ClockTime::from_seconds(10), &[gst::MessageType::Error])
        .expect("an error message");
    pipeline.set_state(gst::State::Null).unwrap();
    let gst::MessageView::Error(err) = msg.view() else {
        unreachable!()
    };
    err.error().to_string()
}

pub fn run_postproc(
    mode: &str,
    input: &gst::Buffer,
    info: &gst_video::VideoInfo,
) -> (gst::Caps, gst::Buffer) {
    let launch = format!(
        "segpreproc ! ffnetinfer model={} ! segpostproc mode={mode} smoothing=1 opacity=1 color=#ff0000",
        selfie_model()
    );
    let mut harness = harness(&launch, &info.to_caps().unwrap());
    let out = harness.push_and_pull(input.clone()).unwrap();
    let caps = harness.sinkpad().unwrap().current_caps().unwrap();
    (caps, out)
}

pub fn to_rgb(buffer: &gst::Buffer, info: &gst_video::VideoInfo) -> (Vec<u8>, usize) {
    let (rgb, rgb_info) = convert_frame(buffer, info, gst_video::VideoFormat::Rgb);
    let stride = rgb_info.stride()[0] as usize;
    (rgb.map_readable().unwrap().to_vec(), stride)
}

pub fn gray_rows(buffer: &gst::Buffer, caps: &gst::Caps) -> Gray {
    let sample = gst::Sample::builder().buffer(buffer).caps(caps).build();
    gray_from_sample(&sample)
}

/// Collects what one element logs at WARNING level while this lives.
pub struct Warnings {
    lines: Arc<Mutex<Vec<String>>>,
    function: Option<gst::log::DebugLogFunction>,
}

impl Warnings {
    /// Warnings of the element named `element` in debug category `category`.
    pub fn capture(category: &str, element: &str) -> Warnings {
        init();
        gst::log::set_threshold_for_name(category, gst::DebugLevel::Warning);
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (sink, category, element) = (lines.clone(), category.to_string(), element.to_string());
        let function = gst::log::add_log_function(move |cat, level, _, _, _, obj, msg| {
            let ours = cat.name() == category
                && level == gst::DebugLevel::Warning
                && obj.is_some_and(|o| o.to_string().contains(&element));
            if ours && let Some(m) = msg.get() {
                sink.lock().unwrap().push(m.to_string());
            }
        });
        Warnings {
            lines,
            function: Some(function),
        }
    }

    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }
}

impl Drop for Warnings {
    fn drop(&mut self) {
        if let Some(f) = self.function.take() {
            gst::log::remove_log_function(f);
        }
    }
}

/// A running pipeline ending in `appsink name=sink` (max-buffers=1, so the source waits
/// for the test), its warnings and errors collected from the bus.
pub struct Running {
    pub pipeline: gst::Pipeline,
    pub sink: gst_app::AppSink,
}

impl Running {
    pub fn start(launch: &str) -> Running {
        init();
        let (pipeline, sink) = launch_with_sink(launch);
        sink.set_property("max-buffers", 1u32);
        pipeline
            .set_state(gst::State::Playing)
            .expect("pipeline starts");
        Running { pipeline, sink }
    }

    /// The next sample; panics on an error message or after 60 s. None at EOS.
    pub fn pull(&self) -> Option<gst::Sample> {
        if let Some(e) = self.error() {
            panic!("pipeline error: {e}");
        }
        let sample = self.sink.try_pull_sample(gst::ClockTime::from_seconds(60));
        if sample.is_none() {
            if let Some(e) = self.error() {
                panic!("pipeline error: {e}");
            }
            assert!(self.sink.is_eos(), "no sample within 60 s and no EOS");
        }
        sample
    }

    fn error(&self) -> Option<String> {
        let msg = self
            .pipeline
            .bus()
            .expect("a bus")
            .pop_filtered(&[gst::MessageType::Error])?;
        match msg.view() {
            gst::MessageView::Error(e) => Some(format!("{} ({:?})", e.error(), e.debug())),
            _ => None,
        }
    }

    /// The texts of the warning messages on the bus so far.
    pub fn bus_warnings(&self) -> Vec<String> {
        let bus = self.pipeline.bus().expect("a bus");
        std::iter::from_fn(|| bus.pop_filtered(&[gst::MessageType::Warning]))
            .filter_map(|m| match m.view() {
                gst::MessageView::Warning(w) => Some(w.error().to_string()),
                _ => None,
            })
            .collect()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}
