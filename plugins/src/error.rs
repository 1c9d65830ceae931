//! The one mapping from the engine's errors to GStreamer error domains, and the one way an
//! element stops the stream: post an error message that names the problem, return
//! `FlowError::Error`.

use gst::subclass::prelude::*;

/// The GStreamer error message for an engine error; `context` says what was being done.
pub fn engine_error(context: &str, e: &ffnetseg::Error) -> gst::ErrorMessage {
    use ffnetseg::Error;
    let text = if context.is_empty() {
        e.to_string()
    } else {
        format!("{context}: {e}")
    };
    match e {
        Error::Runtime(_) => gst::error_msg!(gst::LibraryError::Init, ("{text}")),
        Error::Config(_) => gst::error_msg!(gst::LibraryError::Settings, ("{text}")),
        Error::Model(_) => gst::error_msg!(gst::ResourceError::OpenRead, ("{text}")),
        Error::Input(_) => gst::error_msg!(gst::StreamError::Format, ("{text}")),
        Error::Gpu(_) => gst::error_msg!(gst::LibraryError::Init, ("{text}")),
        _ => gst::error_msg!(gst::StreamError::Failed, ("{text}")),
    }
}

/// Posts `message` on the bus and returns the flow error that stops the stream.
pub fn flow_error(imp: &impl ElementImpl, message: gst::ErrorMessage) -> gst::FlowError {
    imp.post_error_message(message);
    gst::FlowError::Error
}
