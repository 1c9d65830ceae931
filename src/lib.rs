//! ffnetseg engine: everything the GStreamer elements do, without GStreamer types, so it
//! can be unit-tested and embedded on its own. The modules follow the data flow
//! camera → preprocess → inference → postprocess:
//!
//! - [`frame`]: borrowed views of video frames; the per-format table; colorimetry.
//! - [`tensor`]: what the stages share: tensor and output specs, the letterbox region.
//! - [`preprocess`]: any camera frame → the model's input tensor (segpreproc).
//! - [`inference`]: ONNX Runtime session and model contract (ffnetinfer).
//! - [`postprocess`]: smoothing, upsampling, threshold, blur and rendering (segpostproc).
//! - [`kernels`]: the route choice and run-time CPU dispatch of the hand-written loops.
//! - [`opencl`]: `compute=cpu|gpu|auto`, the OpenCL device and kernels of the GPU routes.
//! - [`classes`]: class names, palette and colour settings.

pub mod classes;
mod cvmat;
pub mod error;
pub mod frame;
pub mod inference;
pub mod kernels;
pub mod opencl;
pub mod postprocess;
pub mod preprocess;
pub mod tensor;

pub use error::{Error, Result};
