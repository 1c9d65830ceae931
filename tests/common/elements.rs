//! Frames, harnesses and runners the element tests share.

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
