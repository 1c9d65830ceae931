use std::sync::{LazyLock, Mutex};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::prelude::*;

use ffnetseg::preprocess::modelinfo::{self, InputInfo};
use ffnetseg::preprocess::{
    Interpolation, Normalization, PreprocessConfig, Preprocessor, ResizeMode,
};
use ffnetseg::tensor::{DType, Layout, TensorSpec};

use super::{InterpolationChoice, LayoutChoice, ResizeChoice};
use crate::compute::{self, Announced, ComputeChoice};
use crate::error::{engine_error, flow_error};
use crate::meta::{self, InputTensor};
use crate::video;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "segpreproc",
        gst::DebugColorFlags::empty(),
        Some("ffnetseg pre-processing"),
    )
});

/// 0 = ask the downstream ffnetinfer.
const DEFAULT_WIDTH: u32 = 0;
const DEFAULT_HEIGHT: u32 = 0;
const MAX_SIZE: u32 = 16384;
const DEFAULT_LAYOUT: LayoutChoice = LayoutChoice::Auto;
const DEFAULT_SCALE: f64 = 1.0 / 255.0;
const DEFAULT_RESIZE: ResizeChoice = ResizeChoice::Stretch;
const DEFAULT_INTERPOLATION: InterpolationChoice = InterpolationChoice::Linear;

/// Said in the blurbs: every property applies from the next frame.
const PLAYING_NOTE: &str = "Can change while PLAYING: the next frame's tensor is made with it";

/// Copied out of the mutex once per frame (all fields are plain values).
#[derive(Debug, Clone, Copy)]
struct Settings {
    width: u32,
    height: u32,
    layout: LayoutChoice,
    scale: f64,
    mean: Option<[f32; 3]>,
    std: Option<[f32; 3]>,
    resize: ResizeChoice,
    interpolation: InterpolationChoice,
    /// Whether scale, mean or std was set (then a `.modelinfo` file's ranges are not used).
    normalization_set: bool,
    compute: ComputeChoice,
    disable_cpu_fallback: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            width: DEFAULT_WIDTH,
            height: DEFAULT_HEIGHT,
            layout: DEFAULT_LAYOUT,
            scale: DEFAULT_SCALE,
            mean: None,
            std: None,
            resize: DEFAULT_RESIZE,
            interpolation: DEFAULT_INTERPOLATION,
            normalization_set: false,
            compute: compute::DEFAULT_COMPUTE,
            disable_cpu_fallback: compute::DEFAULT_DISABLE_CPU_FALLBACK,
        }
    }
}

impl Settings {
    /// Whether the properties (not the model's answer) shape the tensor.
    fn overrides(&self) -> bool {
        self.width > 0 || self.height > 0 || self.layout != LayoutChoice::Auto
    }

    fn normalization(&self) -> Normalization {
        Normalization {
            scale: self.scale as f32,
            mean: self.mean.unwrap_or([0.0; 3]),
            std: self.std.unwrap_or([1.0; 3]),
        }
    }
}

struct Converter {
    preprocessor: Preprocessor,
    pool: gst::BufferPool,
    overridden: bool,
    requested: ffnetseg::opencl::Compute,
}

impl Drop for Converter {
    fn drop(&mut self) {
        let _ = self.pool.set_active(false);
    }
}

struct State {
    info: gst_video::VideoInfo,
    /// Built at the first frame and after anything it depends on changed.
    converter: Option<Converter>,
}

#[derive(Default)]
pub struct SegPreproc {
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
    /// Where the tensor is made (`active-compute`), as last announced.
    compute: Announced,
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

fn resize_mode(c: ResizeChoice) -> ResizeMode {
    match c {
        ResizeChoice::Stretch => ResizeMode::Stretch,
        ResizeChoice::Letterbox => ResizeMode::Letterbox,
    }
}

fn interpolation(c: InterpolationChoice) -> Interpolation {
    match c {
        InterpolationChoice::Nearest => Interpolation::Nearest,
        InterpolationChoice::Linear => Interpolation::Linear,
        InterpolationChoice::Area => Interpolation::Area,
        InterpolationChoice::Cubic => Interpolation::Cubic,
    }
}

impl SegPreproc {
    /// The input section of the `.modelinfo` file next to the model downstream named.
    fn model_info(&self, query: &gst::QueryRef) -> Option<InputInfo> {
        let source = meta::read_contract_source(query)?;
        let path = modelinfo::find_for(&source.model)?;
        match modelinfo::load_input(&path, Some(&source.input_name)) {
            Ok(Some(info)) => {
                gst::info!(CAT, imp = self, "{}: {info:?}", path.display());
                Some(info)
            }
            Ok(None) => {
                gst::info!(
                    CAT,
                    imp = self,
                    "{}: no input tensor section",
                    path.display()
                );
                None
            }
            Err(e) => {
                let text = format!("ignoring the model's .modelinfo file: {e}");
                gst::warning!(CAT, imp = self, "{text}");
                gst::element_imp_warning!(self, gst::ResourceError::Read, ("{text}"));
                None
            }
        }
    }

    /// Asks downstream (ffnetinfer) for the model's input; a `.modelinfo` file next to the
    /// model overrides its answer, properties override both. Returns the tensor, its
    /// normalization, and whether properties or the file (not the model) shaped it.
    fn resolve_target(
        &self,
        settings: &Settings,
    ) -> Result<(TensorSpec, Normalization, bool), gst::ErrorMessage> {
        let mut query = meta::contract_query();
        let answered = self.obj().src_pad().peer_query(&mut query);
        let from_model = answered
            .then(|| meta::read_contract_answer(&query))
            .flatten();
        let info = if answered {
            self.model_info(&query)
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
            None if settings.width == 0 || settings.height == 0 => {
                return Err(gst::error_msg!(
                    gst::CoreError::Negotiation,
                    ("segpreproc does not know the model's input size: link it directly to \
                      ffnetinfer (which reports it) or set the width and height properties")
                ));
            }
            None => TensorSpec {
                width: 0,
                height: 0,
                channels: 3,
                layout: Layout::Nchw,
                dtype: DType::F32,
                quantization: None,
            },
        };
        let mut shaped = settings.overrides();
        if let Some((h, w)) = info.as_ref().and_then(|i| i.size) {
            shaped |= (spec.width, spec.height) != (w, h);
            (spec.width, spec.height) = (w, h);
        }
        if let Some(layout) = info.as_ref().and_then(|i| i.layout) {
            shaped |= spec.layout != layout;
            spec.layout = layout;
        }
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
        let normalization = match info.and_then(|i| i.normalization) {
            Some(n) if !settings.normalization_set => n,
            _ => settings.normalization(),
        };
        Ok((spec, normalization, shaped))
    }

    /// The preprocessor and its tensor pool for the current settings and model.
    fn make_converter(&self, settings: &Settings) -> Result<Converter, gst::FlowError> {
        let (target, normalization, overridden) = self.resolve_target(settings).map_err(|e| {
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
        let config = PreprocessConfig {
            target,
            normalization,
            resize: resize_mode(settings.resize),
            interpolation: interpolation(settings.interpolation),
        };
        let mut preprocessor = Preprocessor::new(config)
            .map_err(|e| flow_error(self, engine_error("segpreproc", &e)))?;
        let requested = settings.compute.into();
        let choice = preprocessor
            .set_compute(requested, !settings.disable_cpu_fallback)
            .map_err(|e| flow_error(self, engine_error("segpreproc", &e)))?;
        self.compute.announce(
            self,
            *CAT,
            requested,
            &choice.active,
            choice.reason.as_deref(),
        );
        let pool = gst::BufferPool::new();
        let mut pc = pool.config();
        pc.set_params(None, target.byte_size() as u32, 2, 0);
        pool.set_config(pc)
            .and_then(|_| pool.set_active(true))
            .map_err(|e| {
                flow_error(
                    self,
                    gst::error_msg!(
                        gst::ResourceError::NoSpaceLeft,
                        ("cannot allocate tensor buffers: {e}")
                    ),
                )
            })?;
        Ok(Converter {
            preprocessor,
            pool,
            overridden,
            requested,
        })
    }

    /// Makes this frame's tensor.
    fn make_tensor(
        &self,
        info: &gst_video::VideoInfo,
        converter: &mut Converter,
        buf: &gst::BufferRef,
    ) -> Result<InputTensor, gst::FlowError> {
        let spec = converter.preprocessor.config().target;
        let mut tensor = converter.pool.acquire_buffer(None).map_err(|e| match e {
            gst::FlowError::Flushing => e,
            _ => flow_error(
                self,
                gst::error_msg!(gst::ResourceError::Failed, ("no tensor buffer: {e:?}")),
            ),
        })?;
        let frame =
            gst_video::VideoFrameRef::from_buffer_ref_readable(buf, info).map_err(|_| {
                flow_error(
                    self,
                    gst::error_msg!(
                        gst::StreamError::Format,
                        ("cannot map the frame for reading")
                    ),
                )
            })?;
        let view = video::frame_view(&frame).map_err(|e| flow_error(self, engine_error("", &e)))?;
        let region = {
            let tensor_ref = tensor.get_mut().ok_or_else(|| {
                flow_error(
                    self,
                    gst::error_msg!(gst::CoreError::Failed, ("a pooled tensor buffer is shared")),
                )
            })?;
            let mut map = tensor_ref.map_writable().map_err(|_| {
                flow_error(
                    self,
                    gst::error_msg!(
                        gst::ResourceError::Write,
                        ("cannot map the tensor for writing")
                    ),
                )
            })?;
            converter
                .preprocessor
                .run(&view, map.as_mut_slice())
                .map_err(|e| flow_error(self, engine_error("pre-processing failed", &e)))?
        };
        if let Some(why) = converter.preprocessor.take_notice() {
            let active = converter.preprocessor.active().clone();
            self.compute
                .announce(self, *CAT, converter.requested, &active, Some(&why));
        }
        Ok(InputTensor {
            tensor,
            spec,
            region,
            overridden: converter.overridden,
        })
    }

    /// The next frame rebuilds the preprocessor (settings or model changed).
    fn rebuild(&self) {
        if let Some(state) = self.state.lock().unwrap().as_mut() {
            state.converter = None;
        }
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
            let blurb = |text: &str| format!("{text}. {PLAYING_NOTE}");
            vec![
                glib::ParamSpecUInt::builder("width")
                    .nick("Tensor width")
                    .blurb(&blurb("Model input width in pixels; 0 = ask the downstream ffnetinfer"))
                    .maximum(MAX_SIZE)
                    .default_value(DEFAULT_WIDTH)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("height")
                    .nick("Tensor height")
                    .blurb(&blurb("Model input height in pixels; 0 = ask the downstream ffnetinfer"))
                    .maximum(MAX_SIZE)
                    .default_value(DEFAULT_HEIGHT)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("layout", DEFAULT_LAYOUT)
                    .nick("Tensor layout")
                    .blurb(&blurb("Memory order of the tensor; auto = what the model's input has"))
                    .mutable_playing()
                    .build(),
                glib::ParamSpecDouble::builder("scale")
                    .nick("Scale")
                    .blurb(&blurb("Pixel values (0..255) are multiplied by this before mean/std (1/255 gives [0,1])"))
                    .minimum(-1e6)
                    .maximum(1e6)
                    .default_value(DEFAULT_SCALE)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecString::builder("mean")
                    .nick("Mean")
                    .blurb(&blurb("Per-channel R,G,B mean subtracted after scaling, e.g. 0.485,0.456,0.406; empty = none (FFNet normalizes inside the model)"))
                    .mutable_playing()
                    .build(),
                glib::ParamSpecString::builder("std")
                    .nick("Standard deviation")
                    .blurb(&blurb("Per-channel R,G,B divisor applied after the mean, e.g. 0.229,0.224,0.225; empty = none"))
                    .mutable_playing()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("resize", DEFAULT_RESIZE)
                    .nick("Resize mode")
                    .blurb(&blurb("How the frame is fitted into the model's input"))
                    .mutable_playing()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("interpolation", DEFAULT_INTERPOLATION)
                    .nick("Interpolation")
                    .blurb(&blurb("Resampling used to reach the model's input size"))
                    .mutable_playing()
                    .build(),
            ]
            .into_iter()
            .chain(compute::properties("the pre-processing"))
            .collect()
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let name = pspec.name();
        {
            let mut s = self.settings.lock().unwrap();
            match name {
                "width" => s.width = value.get().expect("type checked upstream"),
                "height" => s.height = value.get().expect("type checked upstream"),
                "layout" => s.layout = value.get().expect("type checked upstream"),
                "scale" => {
                    s.scale = value.get().expect("type checked upstream");
                    s.normalization_set = true;
                }
                "resize" => s.resize = value.get().expect("type checked upstream"),
                "interpolation" => s.interpolation = value.get().expect("type checked upstream"),
                "compute" => s.compute = value.get().expect("type checked upstream"),
                "disable-cpu-fallback" => {
                    s.disable_cpu_fallback = value.get().expect("type checked upstream")
                }
                "mean" | "std" => {
                    let text: Option<String> = value.get().expect("type checked upstream");
                    let old = format_triplet(if name == "mean" { s.mean } else { s.std });
                    match parse_triplet(text.as_deref().unwrap_or("")) {
                        Ok(v) if name == "std" && v.is_some_and(|v| v.contains(&0.0)) => {
                            gst::warning!(
                                CAT,
                                imp = self,
                                "std must not contain 0 (it divides); keeping the previous value '{old}'"
                            );
                            return;
                        }
                        Ok(v) if name == "mean" => {
                            s.mean = v;
                            s.normalization_set = true;
                        }
                        Ok(v) => {
                            s.std = v;
                            s.normalization_set = true;
                        }
                        Err(e) => {
                            gst::warning!(
                                CAT,
                                imp = self,
                                "{name}: {e}; keeping the previous value '{old}'"
                            );
                            return;
                        }
                    }
                }
                other => {
                    gst::error!(CAT, imp = self, "unknown property {other}");
                    return;
                }
            }
        }
        gst::info!(CAT, imp = self, "{name} set to {value:?}");
        self.rebuild();
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
            "compute" => s.compute.to_value(),
            "disable-cpu-fallback" => s.disable_cpu_fallback.to_value(),
            "active-compute" => self.compute.active().to_value(),
            other => {
                gst::error!(CAT, imp = self, "unknown property {other}");
                pspec.default_value().clone()
            }
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
            converter: None,
        });
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        *self.state.lock().unwrap() = None;
        self.compute.reset();
        Ok(())
    }

    fn src_event(&self, event: gst::Event) -> bool {
        if let gst::EventView::Reconfigure(_) = event.view() {
            // A new downstream, or ffnetinfer with a new model, may want another tensor.
            self.rebuild();
        }
        self.parent_src_event(event)
    }

    fn transform_ip(&self, buf: &mut gst::BufferRef) -> Result<gst::FlowSuccess, gst::FlowError> {
        let settings = *self.settings.lock().unwrap();
        let mut guard = self.state.lock().unwrap();
        let Some(state) = guard.as_mut() else {
            self.post_error_message(gst::error_msg!(
                gst::CoreError::Negotiation,
                ("no caps before the first frame")
            ));
            return Err(gst::FlowError::NotNegotiated);
        };
        let converter = match &mut state.converter {
            Some(c) => c,
            slot => slot.insert(self.make_converter(&settings)?),
        };
        let tensor = self.make_tensor(&state.info, converter, buf)?;
        drop(guard);
        tensor.attach(buf).map_err(|e| {
            flow_error(
                self,
                gst::error_msg!(gst::CoreError::Failed, ("cannot attach the tensor: {e}")),
            )
        })?;
        Ok(gst::FlowSuccess::Ok)
    }
}
