//! `segpostproc`: turns the scores ffnetinfer attached into what the user sees: an
//! overlay, a mask, an alpha matte, a blurred background, or a class map.

use gst::glib;
use gst::prelude::*;

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
    gst::Element::register(
        Some(plugin),
        "segpostproc",
        gst::Rank::NONE,
        SegPostproc::static_type(),
    )
}
