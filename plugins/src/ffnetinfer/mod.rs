//! `ffnetinfer`: runs the segmentation model (ONNX Runtime) on the tensor segpreproc
//! attached, and attaches the model's scores to the same, unchanged frame.

use gst::glib;
use gst::prelude::*;

mod batch;
mod engine;
/**
 * SECTION:element-ffnetinfer
 * @see_also: segpreproc, segpostproc
 *
 * Runs a segmentation model with ONNX Runtime on the tensor segpreproc attached to each
 * frame, and attaches the model's scores to the same, unchanged frame. The model runs in
 * the streaming thread (`mode=sync`, every frame waits for its own result) or on its own
 * thread (`mode=async`, frames never wait and carry the newest finished result). The
 * execution provider (CPU, Qualcomm QNN NPU, CUDA, TensorRT, XNNPACK, OpenVINO) is chosen
 * with `provider`. Setting `model` while playing loads the new model in the background;
 * with `reload-on-change`, so does a new file renamed over the model (an over-the-air
 * update), and with `verify-digest` only a model matching its `MODEL.sha256` is loaded.
 *
 * ## Example launch line
 * |[
 * gst-launch-1.0 v4l2src ! videoconvert ! segpreproc ! ffnetinfer model=models/selfie_segmentation.onnx mode=async ! segpostproc mode=overlay ! videoconvert ! autovideosink
 * ]|
 */
mod imp;
mod instance;
mod ota;
mod worker;

/// How many members the shared instance `name` (ffnetinfer's `shared-instance`) has now;
/// None when no such instance exists: never made, or its last member left and its model
/// session was freed.
pub fn shared_instance_members(name: &str) -> Option<usize> {
    instance::members(name)
}

glib::wrapper! {
    pub struct FfnetInfer(ObjectSubclass<imp::FfnetInfer>) @extends gst_base::BaseTransform, gst::Element, gst::Object;
}

#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstFfnetInferProvider")]
pub enum ProviderChoice {
    #[enum_value(
        name = "Auto: NPU, then GPU, then CPU, among what this ONNX Runtime has",
        nick = "auto"
    )]
    Auto = 0,
    #[enum_value(name = "CPU (ONNX Runtime's default provider)", nick = "cpu")]
    Cpu = 1,
    #[enum_value(name = "Qualcomm QNN (HTP NPU on Snapdragon)", nick = "qnn")]
    Qnn = 2,
    #[enum_value(name = "NVIDIA CUDA", nick = "cuda")]
    Cuda = 3,
    #[enum_value(name = "NVIDIA TensorRT", nick = "tensorrt")]
    TensorRt = 4,
    #[enum_value(
        name = "XNNPACK (optimized CPU kernels for Arm and x86)",
        nick = "xnnpack"
    )]
    Xnnpack = 5,
    #[enum_value(name = "Intel OpenVINO", nick = "openvino")]
    OpenVino = 6,
}

impl From<ProviderChoice> for ffnetseg::inference::Provider {
    fn from(p: ProviderChoice) -> Self {
        use ffnetseg::inference::Provider;
        match p {
            ProviderChoice::Auto => Provider::Auto,
            ProviderChoice::Cpu => Provider::Cpu,
            ProviderChoice::Qnn => Provider::Qnn,
            ProviderChoice::Cuda => Provider::Cuda,
            ProviderChoice::TensorRt => Provider::TensorRt,
            ProviderChoice::Xnnpack => Provider::Xnnpack,
            ProviderChoice::OpenVino => Provider::OpenVino,
        }
    }
}

#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstFfnetInferMode")]
pub enum ModeChoice {
    #[enum_value(
        name = "Sync: every frame waits for its own inference (exact, for files and tests)",
        nick = "sync"
    )]
    Sync = 0,
    #[enum_value(
        name = "Async: inference on its own thread; frames never wait and carry the newest finished result",
        nick = "async"
    )]
    Async = 1,
    #[enum_value(
        name = "Auto: async when the pipeline is live (a camera), sync otherwise",
        nick = "auto"
    )]
    Auto = 2,
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    ProviderChoice::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    ModeChoice::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    gst::Element::register(
        Some(plugin),
        "ffnetinfer",
        gst::Rank::NONE,
        FfnetInfer::static_type(),
    )
}
