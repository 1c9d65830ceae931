//! ffnetseg engine: everything the GStreamer elements do, without GStreamer types, so it
//! can be unit-tested and embedded on its own.
//!
//! - [`preprocess`]: any camera frame → the model's input tensor (segpreproc).
//! - [`inference`]: ONNX Runtime session and model contract (ffnetinfer).
//! - [`postprocess`]: smoothing, upsampling, threshold, blur and rendering (segpostproc).
//! - [`kernels`]: the hand-written row loops of the pre- and post-processing hot paths.
//! - [`qnn_options`]: checks of the QNN execution provider's options.

pub mod classes;
mod cvmat;
pub mod error;
pub mod frame;
pub mod inference;
pub mod kernels;
mod mask_runs;
pub mod onnx_proto;
pub mod plugin_ep;
pub mod postprocess;
pub mod preprocess;
pub mod qnn_options;
pub mod runtime;
pub mod tensor;

pub use error::{Error, Result};
