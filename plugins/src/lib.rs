//! GStreamer plugin `ffnetseg`: on-device video segmentation in three elements.
//!
//! ```text
//! … ! segpreproc ! ffnetinfer model=selfie_segmentation.onnx ! segpostproc mode=overlay ! …
//! ```
//!
//! The camera frame travels through all three untouched; the model's input tensor and
//! output scores ride along as metadata ([`meta`]), which applications can read.

use gst::glib;

#[cfg(feature = "analytics")]
pub mod analytics;
mod compute;
mod error;
pub mod ffnetinfer;
pub mod meta;
pub mod segpostproc;
pub mod segpreproc;
mod video;

fn plugin_init(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    meta::register();
    compute::register();
    segpreproc::register(plugin)?;
    ffnetinfer::register(plugin)?;
    segpostproc::register(plugin)?;
    Ok(())
}

gst::plugin_define!(
    ffnetseg,
    env!("CARGO_PKG_DESCRIPTION"),
    plugin_init,
    concat!(env!("CARGO_PKG_VERSION"), "-", env!("COMMIT_ID")),
    "MIT/X11",
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_REPOSITORY"),
    env!("BUILD_REL_DATE")
);
