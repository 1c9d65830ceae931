//! Bridges GStreamer video frames to the engine's frame views (stride-aware, no copies).

use gst_video::prelude::*;

use ffnetseg::frame::{
    Colorimetry, FrameView, FrameViewMut, MAX_PLANES, PixelFormat, PlaneLayout, YuvMatrix,
    YuvRange, plane_layouts,
};

/// Caps formats all three elements accept.
pub fn supported_formats() -> Vec<gst_video::VideoFormat> {
    PixelFormat::ALL
        .iter()
        .map(|f| gst_video::VideoFormat::from_string(f.gst_name()))
        .collect()
}

pub fn pixel_format(info: &gst_video::VideoInfo) -> Option<PixelFormat> {
    PixelFormat::from_gst_name(info.format().to_str())
}

pub fn colorimetry(info: &gst_video::VideoInfo) -> Colorimetry {
    let c = info.colorimetry();
    Colorimetry {
        matrix: if c.matrix() == gst_video::VideoColorMatrix::Bt709 {
            YuvMatrix::Bt709
        } else {
            YuvMatrix::Bt601
        },
        range: if c.range() == gst_video::VideoColorRange::Range0_255 {
            YuvRange::Full
        } else {
            YuvRange::Limited
        },
    }
}

/// The engine's layout of each plane, with GStreamer's strides.
fn layouts<'a>(
    format: PixelFormat,
    info: &gst_video::VideoInfo,
    strides: &'a [i32],
) -> impl Iterator<Item = PlaneLayout> + 'a {
    plane_layouts(format, info.width() as usize, info.height() as usize)
        .zip(strides)
        .map(|((width, height, channels), stride)| PlaneLayout {
            width,
            height,
            channels,
            stride: *stride as usize,
        })
}

fn unsupported(info: &gst_video::VideoInfo) -> ffnetseg::Error {
    ffnetseg::Error::Input(format!("unsupported format {}", info.format()))
}

/// A read-only engine view of a mapped frame (the planes are gathered on the stack: this
/// runs for every frame).
pub fn frame_view<'a>(
    frame: &'a gst_video::VideoFrameRef<&gst::BufferRef>,
) -> Result<FrameView<'a>, ffnetseg::Error> {
    let info = frame.info();
    let format = pixel_format(info).ok_or_else(|| unsupported(info))?;
    let mut planes: [Option<(&[u8], PlaneLayout)>; MAX_PLANES] = [None; MAX_PLANES];
    for (i, l) in layouts(format, info, frame.plane_stride())
        .enumerate()
        .take(MAX_PLANES)
    {
        let data = frame
            .plane_data(i as u32)
            .map_err(|e| ffnetseg::Error::Input(format!("plane {i} is not readable: {e}")))?;
        planes[i] = Some((data, l));
    }
    FrameView::new(
        format,
        info.width() as usize,
        info.height() as usize,
        colorimetry(info),
        planes.into_iter().flatten(),
    )
}

/// A writable engine view of a mapped frame.
pub fn frame_view_mut<'a>(
    frame: &'a mut gst_video::VideoFrameRef<&mut gst::BufferRef>,
) -> Result<FrameViewMut<'a>, ffnetseg::Error> {
    let info = frame.info().clone();
    let format = pixel_format(&info).ok_or_else(|| unsupported(&info))?;
    let mut strides = [0i32; gst_video::ffi::GST_VIDEO_MAX_PLANES as usize];
    let given = frame.plane_stride();
    strides[..given.len()].copy_from_slice(given);
    // Split the mutable borrow per plane: each plane's data is a disjoint region.
    let mut planes: [Option<(*mut u8, usize, PlaneLayout)>; MAX_PLANES] = [None; MAX_PLANES];
    for (i, l) in layouts(format, &info, &strides[..given.len()])
        .enumerate()
        .take(MAX_PLANES)
    {
        let data = frame
            .plane_data_mut(i as u32)
            .map_err(|e| ffnetseg::Error::Input(format!("plane {i} is not writable: {e}")))?;
        planes[i] = Some((data.as_mut_ptr(), data.len(), l));
    }
    let planes = planes.into_iter().flatten().map(|(p, len, l)| {
        // SAFETY: the planes of a mapped video frame do not overlap, and they live as
        // long as the frame mapping borrowed for 'a.
        (unsafe { std::slice::from_raw_parts_mut(p, len) }, l)
    });
    FrameViewMut::new(
        format,
        info.width() as usize,
        info.height() as usize,
        colorimetry(&info),
        planes,
    )
}

pub fn video_caps() -> gst::Caps {
    gst_video::VideoCapsBuilder::new()
        .format_list(supported_formats())
        .build()
}

/// The always src and sink pads of the three elements (all take the same formats).
pub fn pad_templates() -> Vec<gst::PadTemplate> {
    let caps = video_caps();
    [
        ("src", gst::PadDirection::Src),
        ("sink", gst::PadDirection::Sink),
    ]
    .into_iter()
    .map(|(name, dir)| {
        gst::PadTemplate::new(name, dir, gst::PadPresence::Always, &caps).expect("valid template")
    })
    .collect()
}
