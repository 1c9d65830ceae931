//! `segpostproc`: turns the scores ffnetinfer attached into what the user sees: an
//! overlay, a mask, an alpha matte, a blurred background, or a class map.

use gst::glib;
use gst::prelude::*;

/**
 * SECTION:element-segpostproc
 * @see_also: segpreproc, ffnetinfer
 *
 * Turns the scores ffnetinfer attached to each frame into what the user sees. The scores
 * are smoothed over time at model resolution, upsampled to the frame, thresholded and
 * optionally blurred; `mode` then tints the foreground (overlay), blurs or replaces the
 * background, colours every pixel by its class (these keep the input format), or outputs
 * a GRAY8 mask, alpha matte or label map. Changing `mode` while playing renegotiates.
 *
 * ## Example launch line
 * |[
 * gst-launch-1.0 v4l2src ! videoconvert ! segpreproc ! ffnetinfer model=models/selfie_segmentation.onnx mode=async ! segpostproc mode=background-blur ! videoconvert ! autovideosink
 * ]|
 */
mod imp;

glib::wrapper! {
    pub struct SegPostproc(ObjectSubclass<imp::SegPostproc>) @extends gst_video::VideoFilter, gst_base::BaseTransform, gst::Element, gst::Object;
}

#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstSegPostprocMode")]
pub enum Mode {
    #[enum_value(
        name = "Overlay: tint the foreground with color at opacity (keeps the input format)",
        nick = "overlay"
    )]
    Overlay = 0,
    #[enum_value(
        name = "Mask: GRAY8, 255 = foreground (soft edges when blur > 1)",
        nick = "mask"
    )]
    Mask = 1,
    #[enum_value(
        name = "Alpha: GRAY8 soft matte, the smoothed probability ×255 before thresholding",
        nick = "alpha"
    )]
    Alpha = 2,
    #[enum_value(
        name = "Background blur: keep the foreground sharp, blur the rest (keeps the input format)",
        nick = "background-blur"
    )]
    BackgroundBlur = 3,
    #[enum_value(
        name = "Classes: colour every pixel by its top class, Cityscapes palette (keeps the input format)",
        nick = "classes"
    )]
    Classes = 4,
    #[enum_value(
        name = "Labels: GRAY8 top-class index per pixel (0/1 for one-channel models)",
        nick = "labels"
    )]
    Labels = 5,
    #[enum_value(
        name = "Background replace: keep the foreground, put the background picture behind it (keeps the input format)",
        nick = "background-replace"
    )]
    BackgroundReplace = 6,
}

impl Mode {
    /// Modes whose output is a GRAY8 picture instead of the input frame.
    pub fn outputs_gray(self) -> bool {
        matches!(self, Mode::Mask | Mode::Alpha | Mode::Labels)
    }
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    Mode::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    gst::Element::register(
        Some(plugin),
        "segpostproc",
        gst::Rank::NONE,
        SegPostproc::static_type(),
    )
}
