use std::sync::{LazyLock, Mutex};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::prelude::*;

use ffnetseg::preprocess::{
    Interpolation, Normalization, PreprocessConfig, Preprocessor, ResizeMode,
};
use ffnetseg::tensor::{DType, Layout, TensorSpec};

use super::{InterpolationChoice, LayoutChoice, ResizeChoice};
use crate::meta::{self, InputTensor};
use crate::video;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "segpreproc",
        gst::DebugColorFlags::empty(),
        Some("ffnetseg pre-processing"),
    )
});

#[derive(Debug, Clone)]
struct Settings {
    width: u32,
    height: u32,
    layout: LayoutChoice,
    scale: f64,
    mean: Option<[f32; 3]>,
    std: Option<[f32; 3]>,
    resize: ResizeChoice,
    interpolation: InterpolationChoice,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            width: 0,
            height: 0,
            layout: LayoutChoice::Auto,
            scale: 1.0 / 255.0,
            mean: None,
            std: None,
            resize: ResizeChoice::Stretch,
            interpolation: InterpolationChoice::Linear,
        }
    }
}

struct State {
    info: gst_video::VideoInfo,
    preprocessor: Option<Preprocessor>,
    pool: Option<gst::BufferPool>,
}

#[derive(Default)]
pub struct SegPreproc {
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
}

fn parse_triplet(s: &str) -> Result<Option<[f32; 3]>, String> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    let v: Result<Vec<f32>, _> = s.split(',').map(|x| x.trim().parse::<f32>()).collect();
    match v {
        Ok(v) if v.len() == 3 => Ok(Some([v[0], v[1], v[2]])),
        _ => Err(format!(
            "'{s}' is not three comma-separated numbers (example: 0.485,0.456,0.406)"
        )),
    }
}

fn format_triplet(v: Option<[f32; 3]>) -> String {
    v.map(|v| format!("{},{},{}", v[0], v[1], v[2]))
        .unwrap_or_default()
}

impl SegPreproc {
    /// Asks downstream (ffnetinfer) for the model's input; properties override.
    fn resolve_target(&self, settings: &Settings) -> Result<TensorSpec, gst::ErrorMessage> {
        let mut query = meta::contract_query();
        let answered = self.obj().src_pad().peer_query(&mut query);
        let from_model = if answered {
            meta::read_contract_answer(&query)
        } else {
            None
        };
        gst::debug!(
            CAT,
            imp = self,
            "model contract from downstream: {from_model:?}"
        );
        let mut spec = match from_model {
            Some(s) => s,
            None => {
                if settings.width == 0 || settings.height == 0 {
                    return Err(gst::error_msg!(
                        gst::CoreError::Negotiation,
                        ("segpreproc does not know the model's input size: link it directly to \
                             ffnetinfer (which reports it) or set the width and height properties")
                    ));
                }
                TensorSpec {
                    width: 0,
                    height: 0,
                    channels: 3,
                    layout: Layout::Nchw,
                    dtype: DType::F32,
                    quantization: None,
                }
            }
        };
        if settings.width > 0 {
            spec.width = settings.width as usize;
        }
        if settings.height > 0 {
            spec.height = settings.height as usize;
        }
        if spec.is_dynamic() {
            return Err(gst::error_msg!(
                gst::CoreError::Negotiation,
                ("the model's input height and width are dynamic: set segpreproc's width and \
                     height properties to the size the model should run at (e.g. width=512 height=512)")
            ));
        }
        match settings.layout {
            LayoutChoice::Auto => {}
            LayoutChoice::Nchw => spec.layout = Layout::Nchw,
            LayoutChoice::Nhwc => spec.layout = Layout::Nhwc,
        }
        Ok(spec)
    }

    fn make_preprocessor(
        &self,
        settings: &Settings,
        target: TensorSpec,
    ) -> Result<Preprocessor, gst::ErrorMessage> {
        let config = PreprocessConfig {
            target,
            normalization: Normalization {
                scale: settings.scale as f32,
                mean: settings.mean.unwrap_or([0.0; 3]),
                std: settings.std.unwrap_or([1.0; 3]),
            },
            resize: match settings.resize {
                ResizeChoice::Stretch => ResizeMode::Stretch,
                ResizeChoice::Letterbox => ResizeMode::Letterbox,
            },
            interpolation: match settings.interpolation {
                InterpolationChoice::Nearest => Interpolation::Nearest,
                InterpolationChoice::Linear => Interpolation::Linear,
                InterpolationChoice::Area => Interpolation::Area,
                InterpolationChoice::Cubic => Interpolation::Cubic,
            },
        };
        Preprocessor::new(config)
            .map_err(|e| gst::error_msg!(gst::LibraryError::Settings, ("segpreproc: {e}")))
    }

    fn tensor_pool(size: usize) -> Result<gst::BufferPool, gst::ErrorMessage> {
        let pool = gst::BufferPool::new();
        let mut config = pool.config();
        config.set_params(None, size as u32, 2, 0);
        pool.set_config(config)
            .and_then(|_| pool.set_active(true))
            .map_err(|e| {
                gst::error_msg!(
                    gst::ResourceError::NoSpaceLeft,
                    ("cannot allocate tensor buffers: {e}")
                )
            })?;
        Ok(pool)
    }
}

#[glib::object_subclass]
impl ObjectSubclass for SegPreproc {
    const NAME: &'static str = "GstSegPreproc";
    type Type = super::SegPreproc;
    type ParentType = gst_base::BaseTransform;
}

impl ObjectImpl for SegPreproc {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecUInt::builder("width")
                    .nick("Tensor width")
                    .blurb("Model input width in pixels; 0 = ask the downstream ffnetinfer")
                    .maximum(16384)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("height")
                    .nick("Tensor height")
                    .blurb("Model input height in pixels; 0 = ask the downstream ffnetinfer")
                    .maximum(16384)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("layout", LayoutChoice::Auto)
                    .nick("Tensor layout")
                    .blurb("Memory order of the tensor; auto = what the model's input has")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecDouble::builder("scale")
                    .nick("Scale")
                    .blurb("Pixel values (0..255) are multiplied by this before mean/std (1/255 gives [0,1])")
                    .minimum(-1e6)
                    .maximum(1e6)
                    .default_value(1.0 / 255.0)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("mean")
                    .nick("Mean")
                    .blurb("Per-channel R,G,B mean subtracted after scaling, e.g. 0.485,0.456,0.406; empty = none (FFNet normalizes inside the model)")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("std")
                    .nick("Standard deviation")
                    .blurb("Per-channel R,G,B divisor applied after the mean, e.g. 0.229,0.224,0.225; empty = none")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("resize", ResizeChoice::Stretch)
                    .nick("Resize mode")
                    .blurb("How the frame is fitted into the model's input")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("interpolation", InterpolationChoice::Linear)
                    .nick("Interpolation")
                    .blurb("Resampling used to reach the model's input size")
                    .mutable_ready()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = self.settings.lock().unwrap();
        match pspec.name() {
            "width" => s.width = value.get().expect("type checked upstream"),
            "height" => s.height = value.get().expect("type checked upstream"),
            "layout" => s.layout = value.get().expect("type checked upstream"),
            "scale" => s.scale = value.get().expect("type checked upstream"),
            "resize" => s.resize = value.get().expect("type checked upstream"),
            "interpolation" => s.interpolation = value.get().expect("type checked upstream"),
            name @ ("mean" | "std") => {
                let text: Option<String> = value.get().expect("type checked upstream");
                match parse_triplet(text.as_deref().unwrap_or("")) {
                    Ok(v) if name == "std" && v.is_some_and(|v| v.contains(&0.0)) => {
                        glib::g_warning!(
                            "segpreproc",
                            "std must not contain 0; keeping the previous value"
                        );
                    }
                    Ok(v) if name == "mean" => s.mean = v,
                    Ok(v) => s.std = v,
                    Err(e) => {
                        glib::g_warning!("segpreproc", "{name}: {e}; keeping the previous value")
                    }
                }
            }
            other => unreachable!("unknown property {other}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = self.settings.lock().unwrap();
        match pspec.name() {
            "width" => s.width.to_value(),
            "height" => s.height.to_value(),
            "layout" => s.layout.to_value(),
            "scale" => s.scale.to_value(),
            "mean" => format_triplet(s.mean).to_value(),
            "std" => format_triplet(s.std).to_value(),
            "resize" => s.resize.to_value(),
            "interpolation" => s.interpolation.to_value(),
            other => unreachable!("unknown property {other}"),
        }
    }
}

impl GstObjectImpl for SegPreproc {}

impl ElementImpl for SegPreproc {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static META: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Segmentation pre-processing",
                "Filter/Converter/Video",
                "Converts frames (YUV or RGB, any stride) into a segmentation model's input tensor \
                 (resize, colour conversion, normalization) and attaches it as metadata; the \
                 frame passes through unchanged",
                "ffnetseg developers",
            )
        });
        Some(&*META)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> =
            LazyLock::new(crate::video::pad_templates);
        TEMPLATES.as_ref()
    }
}

impl BaseTransformImpl for SegPreproc {
    const MODE: gst_base::subclass::BaseTransformMode =
        gst_base::subclass::BaseTransformMode::AlwaysInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = false;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = false;

    fn set_caps(&self, incaps: &gst::Caps, _outcaps: &gst::Caps) -> Result<(), gst::LoggableError> {
        let info = gst_video::VideoInfo::from_caps(incaps)
            .map_err(|_| gst::loggable_error!(CAT, "cannot read video caps {incaps}"))?;
        // The tensor is (re)built on the next frame: the model may also have changed.
        *self.state.lock().unwrap() = Some(State {
            info,
            preprocessor: None,
            pool: None,
        });
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        if let Some(State {
            pool: Some(pool), ..
        }) = self.state.lock().unwrap().take()
        {
            let _ = pool.set_active(false);
        }
        Ok(())
    }

    fn src_event(&self, event: gst::Event) -> bool {
        if let gst::EventView::Reconfigure(_) = event.view() {
            // A new downstream, or ffnetinfer with a new model, may want another tensor.
            if let Some(state) = self.state.lock().unwrap().as_mut() {
                state.preprocessor = None;
            }
        }
        self.parent_src_event(event)
    }

    fn transform_ip(&self, buf: &mut gst::BufferRef) -> Result<gst::FlowSuccess, gst::FlowError> {
        let settings = self.settings.lock().unwrap().clone();
        let mut guard = self.state.lock().unwrap();
        let state = guard.as_mut().ok_or_else(|| {
            gst::element_imp_error!(
                self,
                gst::CoreError::Negotiation,
                ("no caps before the first frame")
            );
            gst::FlowError::NotNegotiated
        })?;
        if state.preprocessor.is_none() {
            let target = self.resolve_target(&settings).map_err(|e| {
                self.post_error_message(e);
                gst::FlowError::NotNegotiated
            })?;
            gst::info!(
                CAT,
                imp = self,
                "producing {}×{} {} {} tensors",
                target.width,
                target.height,
                target.layout.as_str(),
                target.dtype.as_str()
            );
            let pre = self.make_preprocessor(&settings, target).map_err(|e| {
                self.post_error_message(e);
                gst::FlowError::Error
            })?;
            if let Some(old) = state.pool.take() {
                let _ = old.set_active(false);
            }
            state.pool = Some(Self::tensor_pool(target.byte_size()).map_err(|e| {
                self.post_error_message(e);
                gst::FlowError::Error
            })?);
            state.preprocessor = Some(pre);
        }
        let pre = state.preprocessor.as_mut().expect("created above");
        let target = pre.config().target;
        let mut tensor = state
            .pool
            .as_ref()
            .expect("created with the preprocessor")
            .acquire_buffer(None)?;
        let region = {
            let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(&*buf, &state.info)
                .map_err(|_| {
                    gst::element_imp_error!(
                        self,
                        gst::StreamError::Format,
                        ("cannot map the frame for reading")
                    );
                    gst::FlowError::Error
                })?;
            let view = video::frame_view(&frame).map_err(|e| {
                gst::element_imp_error!(self, gst::StreamError::Format, ("{e}"));
                gst::FlowError::Error
            })?;
            let tensor_ref = tensor.get_mut().expect("a fresh pool buffer is writable");
            let mut map = tensor_ref
                .map_writable()
                .map_err(|_| gst::FlowError::Error)?;
            pre.run(&view, map.as_mut_slice()).map_err(|e| {
                gst::element_imp_error!(
                    self,
                    gst::StreamError::Failed,
                    ("pre-processing failed: {e}")
                );
                gst::FlowError::Error
            })?
        };
        InputTensor {
            tensor,
            spec: target,
            region,
        }
        .attach(buf)
        .map_err(|e| {
            gst::element_imp_error!(
                self,
                gst::CoreError::Failed,
                ("cannot attach the tensor: {e}")
            );
            gst::FlowError::Error
        })?;
        Ok(gst::FlowSuccess::Ok)
    }
}

impl SegPreproc {
    fn post_error_message(&self, e: gst::ErrorMessage) {
        self.obj().post_error_message(e);
    }
}
