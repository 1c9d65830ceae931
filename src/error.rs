//! One error type for the engine. Messages are written for the person running the
//! pipeline: they name the problem and, where there is one, the fix.

use std::fmt;

#[derive(Debug)]
pub enum Error {
    /// ONNX Runtime could not be loaded or initialised.
    Runtime(String),
    /// The model file is missing, unreadable, or breaks the model contract.
    Model(String),
    /// A frame or tensor did not have the size, format or layout expected.
    Input(String),
    /// A user-supplied setting is out of range or malformed.
    Config(String),
    /// An OpenCV call failed (should not happen with valid sizes; carries OpenCV's message).
    OpenCv(String),
    /// Inference failed while running.
    Inference(String),
    /// The OpenCL (GPU) route failed: no device, a kernel that did not build or run.
    Gpu(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Runtime(m) => write!(f, "ONNX Runtime: {m}"),
            Error::Model(m) => write!(f, "model: {m}"),
            Error::Input(m) => write!(f, "input: {m}"),
            Error::Config(m) => write!(f, "setting: {m}"),
            Error::OpenCv(m) => write!(f, "OpenCV: {m}"),
            Error::Inference(m) => write!(f, "inference: {m}"),
            Error::Gpu(m) => write!(f, "OpenCL: {m}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<opencv::Error> for Error {
    fn from(e: opencv::Error) -> Self {
        Error::OpenCv(e.to_string())
    }
}
