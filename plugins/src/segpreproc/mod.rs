//! `segpreproc`: converts each camera frame into the model's input tensor and attaches it
//! as metadata; the frame itself passes through untouched.

use gst::glib;
use gst::prelude::*;

/**
 * SECTION:element-segpreproc
 * @see_also: ffnetinfer, segpostproc
 *
 * Converts each frame (RGB, BGR, RGBx, NV12, I420, YUY2, GRAY8, …, any stride) into the
 * input tensor of the segmentation model of the ffnetinfer that follows it: resize
 * (stretch or letterbox), colour conversion and normalization, in the layout and data type
 * the model wants (it asks ffnetinfer). The tensor rides on the frame as metadata; the
 * frame itself passes through unchanged. Each ffnetinfer needs its own segpreproc.
 *
 * A `.modelinfo` file next to the model (GStreamer 1.28's format: `model.onnx.modelinfo` or
 * `model.modelinfo`) is used like properties: its input tensor's `ranges` set the
 * normalization unless scale, mean or std is set, and its `dims` the size and layout unless
 * width, height or layout is set (docs/analytics.md).
 *
 * ## Example launch line
 * |[
 * gst-launch-1.0 videotestsrc ! segpreproc ! ffnetinfer model=models/selfie_segmentation.onnx ! segpostproc mode=mask ! videoconvert ! autovideosink
 * ]|
 */
mod imp;

glib::wrapper! {
    pub struct SegPreproc(ObjectSubclass<imp::SegPreproc>) @extends gst_base::BaseTransform, gst::Element, gst::Object;
}

#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstSegPreprocLayout")]
pub enum LayoutChoice {
    #[enum_value(name = "Auto: the layout the model's input has", nick = "auto")]
    Auto = 0,
    #[enum_value(name = "NCHW: planar, 1×3×H×W", nick = "nchw")]
    Nchw = 1,
    #[enum_value(name = "NHWC: interleaved, 1×H×W×3", nick = "nhwc")]
    Nhwc = 2,
}

#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstSegPreprocResize")]
pub enum ResizeChoice {
    #[enum_value(
        name = "Stretch: fill the tensor, aspect ratio not kept",
        nick = "stretch"
    )]
    Stretch = 0,
    #[enum_value(
        name = "Letterbox: keep the aspect ratio, pad with black",
        nick = "letterbox"
    )]
    Letterbox = 1,
}

#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstSegPreprocInterpolation")]
pub enum InterpolationChoice {
    #[enum_value(name = "Nearest neighbour", nick = "nearest")]
    Nearest = 0,
    #[enum_value(name = "Bilinear (OpenCV INTER_LINEAR)", nick = "linear")]
    Linear = 1,
    #[enum_value(
        name = "Pixel-area averaging (best for large reductions)",
        nick = "area"
    )]
    Area = 2,
    #[enum_value(name = "Bicubic", nick = "cubic")]
    Cubic = 3,
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    LayoutChoice::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    ResizeChoice::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    InterpolationChoice::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    gst::Element::register(
        Some(plugin),
        "segpreproc",
        gst::Rank::NONE,
        SegPreproc::static_type(),
    )
}
