use std::path::PathBuf;
use std::sync::{LazyLock, Mutex};
use std::time::Instant;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::subclass::prelude::*;

use ffnetseg::inference::{InferenceSession, SessionConfig, parse_provider_options};

use super::{ModeChoice, ProviderChoice};
use crate::meta::{self, InputTensor, Scores};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "ffnetinfer",
        gst::DebugColorFlags::empty(),
        Some("ffnetseg inference"),
    )
});

#[derive(Debug, Clone)]
struct Settings {
    model: Option<String>,
    provider: ProviderChoice,
    provider_options: String,
    threads: u32,
    disable_cpu_fallback: bool,
    ort_library: Option<String>,
    mode: ModeChoice,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            model: None,
            provider: ProviderChoice::Auto,
            provider_options: String::new(),
            threads: 0,
            disable_cpu_fallback: false,
            ort_library: None,
            mode: ModeChoice::Sync,
        }
    }
}

struct State {
    session: InferenceSession,
    pool: gst::BufferPool,
    sequence: u64,
}

#[derive(Default)]
struct Stats {
    active_provider: String,
    inferences: u64,
    last_inference_ns: u64,
    total_inference_ns: u64,
}

#[derive(Default)]
pub struct FfnetInfer {
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
    stats: Mutex<Stats>,
}

impl FfnetInfer {
    fn open_session(&self, settings: &Settings) -> Result<State, gst::ErrorMessage> {
        let model = settings.model.clone().ok_or_else(|| {
            gst::error_msg!(
                gst::ResourceError::NotFound,
                ("no model: set ffnetinfer's model property to an .onnx file (e.g. model=models/selfie_segmentation.onnx)")
            )
        })?;
        let provider_options = parse_provider_options(&settings.provider_options)
            .map_err(|e| gst::error_msg!(gst::LibraryError::Settings, ("provider-options: {e}")))?;
        let config = SessionConfig {
            model: PathBuf::from(&model),
            provider: settings.provider.into(),
            provider_options,
            threads: settings.threads as usize,
            disable_cpu_fallback: settings.disable_cpu_fallback,
            ort_library: settings.ort_library.as_ref().map(PathBuf::from),
        };
        let session = InferenceSession::open(&config).map_err(|e| match e {
            ffnetseg::Error::Runtime(_) => gst::error_msg!(gst::LibraryError::Init, ("{e}")),
            _ => gst::error_msg!(gst::ResourceError::OpenRead, ("{e}")),
        })?;
        for w in session.warnings() {
            gst::warning!(CAT, imp = self, "{w}");
            gst::element_imp_warning!(self, gst::LibraryError::Settings, ("{w}"));
        }
        let c = session.contract();
        gst::info!(
            CAT,
            imp = self,
            "model {model}: input '{}' {}×{}×{} {} {}, output '{}' {} classes at {}×{}; running on {}",
            c.input_name,
            c.input.width,
            c.input.height,
            c.input.channels,
            c.input.layout.as_str(),
            c.input.dtype.as_str(),
            c.output_name,
            c.output.classes,
            c.output.width,
            c.output.height,
            session.active_provider()
        );
        let pool = gst::BufferPool::new();
        let mut pc = pool.config();
        pc.set_params(None, (c.output.element_count() * 4) as u32, 2, 0);
        pool.set_config(pc)
            .and_then(|_| pool.set_active(true))
            .map_err(|e| {
                gst::error_msg!(
                    gst::ResourceError::NoSpaceLeft,
                    ("cannot allocate score buffers: {e}")
                )
            })?;
        self.stats.lock().unwrap().active_provider = session.active_provider().to_string();
        let _ = self.obj().post_message(
            gst::message::Element::builder(
                gst::Structure::builder("ffnetinfer-provider")
                    .field("requested", settings.provider.into_glib_name())
                    .field("active", session.active_provider())
                    .field("model", model.as_str())
                    .build(),
            )
            .src(&*self.obj())
            .build(),
        );
        Ok(State {
            session,
            pool,
            sequence: 0,
        })
    }
}

trait NickName {
    fn into_glib_name(self) -> &'static str;
}

impl NickName for ProviderChoice {
    fn into_glib_name(self) -> &'static str {
        ffnetseg::inference::Provider::from(self).name()
    }
}

#[glib::object_subclass]
impl ObjectSubclass for FfnetInfer {
    const NAME: &'static str = "GstFfnetInfer";
    type Type = super::FfnetInfer;
    type ParentType = gst_base::BaseTransform;
}

impl ObjectImpl for FfnetInfer {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecString::builder("model")
                    .nick("Model")
                    .blurb("Path of the ONNX model (one image input; scores output 1×C×H×W or 1×H×W×C)")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("provider", ProviderChoice::Auto)
                    .nick("Execution provider")
                    .blurb("Where the model runs; a provider this ONNX Runtime lacks falls back to the CPU with a warning")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("provider-options")
                    .nick("Provider options")
                    .blurb("key=value,... passed to the execution provider (e.g. backend_type=htp,htp_performance_mode=burst)")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("threads")
                    .nick("Threads")
                    .blurb("CPU threads for ONNX Runtime's intra-op pool; 0 = ONNX Runtime's default (one per core)")
                    .maximum(256)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("disable-cpu-fallback")
                    .nick("Disable CPU fallback")
                    .blurb("Fail to start instead of silently running on the CPU when the requested provider is unavailable")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("ort-library")
                    .nick("ONNX Runtime library")
                    .blurb("Path of libonnxruntime.so to load (default: ORT_DYLIB_PATH, then the installed copy, then the system's); one per process")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("mode", ModeChoice::Sync)
                    .nick("Mode")
                    .blurb("How inference is scheduled against the frames")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("active-provider")
                    .nick("Active provider")
                    .blurb("The provider the model really runs on (read-only; empty before start)")
                    .read_only()
                    .build(),
                glib::ParamSpecUInt64::builder("inferences")
                    .nick("Inferences")
                    .blurb("Number of inferences run since start (read-only)")
                    .read_only()
                    .build(),
                glib::ParamSpecDouble::builder("last-inference-ms")
                    .nick("Last inference time")
                    .blurb("Wall-clock milliseconds of the last inference (read-only)")
                    .minimum(0.0)
                    .read_only()
                    .build(),
                glib::ParamSpecDouble::builder("mean-inference-ms")
                    .nick("Mean inference time")
                    .blurb("Mean wall-clock milliseconds per inference since start (read-only)")
                    .minimum(0.0)
                    .read_only()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = self.settings.lock().unwrap();
        match pspec.name() {
            "model" => s.model = value.get().expect("type checked upstream"),
            "provider" => s.provider = value.get().expect("type checked upstream"),
            "provider-options" => {
                let v: Option<String> = value.get().expect("type checked upstream");
                let v = v.unwrap_or_default();
                match parse_provider_options(&v) {
                    Ok(_) => s.provider_options = v,
                    Err(e) => glib::g_warning!(
                        "ffnetinfer",
                        "provider-options: {e}; keeping the previous value"
                    ),
                }
            }
            "threads" => s.threads = value.get().expect("type checked upstream"),
            "disable-cpu-fallback" => {
                s.disable_cpu_fallback = value.get().expect("type checked upstream")
            }
            "ort-library" => s.ort_library = value.get().expect("type checked upstream"),
            "mode" => s.mode = value.get().expect("type checked upstream"),
            other => unreachable!("unknown property {other}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = self.settings.lock().unwrap();
        let stats = self.stats.lock().unwrap();
        match pspec.name() {
            "model" => s.model.to_value(),
            "provider" => s.provider.to_value(),
            "provider-options" => s.provider_options.to_value(),
            "threads" => s.threads.to_value(),
            "disable-cpu-fallback" => s.disable_cpu_fallback.to_value(),
            "ort-library" => s.ort_library.to_value(),
            "mode" => s.mode.to_value(),
            "active-provider" => stats.active_provider.to_value(),
            "inferences" => stats.inferences.to_value(),
            "last-inference-ms" => (stats.last_inference_ns as f64 / 1e6).to_value(),
            "mean-inference-ms" => {
                let mean = if stats.inferences > 0 {
                    stats.total_inference_ns as f64 / stats.inferences as f64 / 1e6
                } else {
                    0.0
                };
                mean.to_value()
            }
            other => unreachable!("unknown property {other}"),
        }
    }
}

impl GstObjectImpl for FfnetInfer {}

impl ElementImpl for FfnetInfer {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static META: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Segmentation inference",
                "Filter/Analyzer/Video",
                "Runs a segmentation model with ONNX Runtime (CPU, QNN NPU, GPU providers) on the \
                 tensor from segpreproc and attaches the scores to the unchanged frame",
                "ffnetseg developers",
            )
        });
        Some(&*META)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let caps = crate::video::video_caps();
            vec![
                gst::PadTemplate::new(
                    "src",
                    gst::PadDirection::Src,
                    gst::PadPresence::Always,
                    &caps,
                )
                .unwrap(),
                gst::PadTemplate::new(
                    "sink",
                    gst::PadDirection::Sink,
                    gst::PadPresence::Always,
                    &caps,
                )
                .unwrap(),
            ]
        });
        TEMPLATES.as_ref()
    }
}

impl BaseTransformImpl for FfnetInfer {
    const MODE: gst_base::subclass::BaseTransformMode =
        gst_base::subclass::BaseTransformMode::AlwaysInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = false;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = false;

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let settings = self.settings.lock().unwrap().clone();
        *self.stats.lock().unwrap() = Stats::default();
        let state = self.open_session(&settings)?;
        *self.state.lock().unwrap() = Some(state);
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        if let Some(state) = self.state.lock().unwrap().take() {
            let _ = state.pool.set_active(false);
        }
        Ok(())
    }

    fn query(&self, direction: gst::PadDirection, query: &mut gst::QueryRef) -> bool {
        if direction == gst::PadDirection::Sink && meta::is_contract_query(query) {
            let guard = self.state.lock().unwrap();
            return match guard.as_ref() {
                Some(state) => meta::answer_contract_query(query, &state.session.contract().input),
                None => false,
            };
        }
        BaseTransformImplExt::parent_query(self, direction, query)
    }

    fn transform_ip(&self, buf: &mut gst::BufferRef) -> Result<gst::FlowSuccess, gst::FlowError> {
        let input = InputTensor::from_buffer(buf).ok_or_else(|| {
            gst::element_imp_error!(
                self,
                gst::StreamError::Format,
                ("the frame carries no input tensor: put segpreproc directly before ffnetinfer (… ! segpreproc ! ffnetinfer model=… ! …)")
            );
            gst::FlowError::Error
        })?;
        let mut guard = self.state.lock().unwrap();
        let state = guard.as_mut().ok_or(gst::FlowError::Flushing)?;
        let contract = state.session.contract().clone();
        if input.spec.width != contract.input.width
            || input.spec.height != contract.input.height
            || input.spec.layout != contract.input.layout
            || input.spec.dtype != contract.input.dtype
        {
            gst::element_imp_error!(
                self,
                gst::StreamError::Format,
                (
                    "segpreproc made a {}×{} {} {} tensor but the model wants {}×{} {} {}: remove \
                     segpreproc's width/height/layout overrides or make them match the model",
                    input.spec.width,
                    input.spec.height,
                    input.spec.layout.as_str(),
                    input.spec.dtype.as_str(),
                    contract.input.width,
                    contract.input.height,
                    contract.input.layout.as_str(),
                    contract.input.dtype.as_str()
                )
            );
            return Err(gst::FlowError::Error);
        }
        let mut scores = state.pool.acquire_buffer(None)?;
        let started = Instant::now();
        {
            let tmap = input
                .tensor
                .map_readable()
                .map_err(|_| gst::FlowError::Error)?;
            let sref = scores.get_mut().expect("a fresh pool buffer is writable");
            let mut smap = sref.map_writable().map_err(|_| gst::FlowError::Error)?;
            // SAFETY: f32 has no invalid bit patterns; align_to checks alignment.
            let (head, out, tail) = unsafe { smap.as_mut_slice().align_to_mut::<f32>() };
            if !head.is_empty() || !tail.is_empty() {
                gst::element_imp_error!(
                    self,
                    gst::CoreError::Failed,
                    ("score buffer is not 4-byte aligned")
                );
                return Err(gst::FlowError::Error);
            }
            state.session.run(tmap.as_slice(), out).map_err(|e| {
                gst::element_imp_error!(self, gst::StreamError::Failed, ("{e}"));
                gst::FlowError::Error
            })?;
        }
        let elapsed = started.elapsed().as_nanos() as u64;
        state.sequence += 1;
        {
            let mut stats = self.stats.lock().unwrap();
            stats.inferences += 1;
            stats.last_inference_ns = elapsed;
            stats.total_inference_ns += elapsed;
        }
        let provider = state.session.active_provider().to_string();
        Scores {
            scores,
            classes: contract.output.classes,
            width: contract.output.width,
            height: contract.output.height,
            layout: contract.output.layout,
            region: input.region,
            tensor_width: contract.input.width,
            tensor_height: contract.input.height,
            source_pts: buf.pts(),
            sequence: state.sequence,
            provider,
            inference_ns: elapsed,
        }
        .attach(buf)
        .map_err(|e| {
            gst::element_imp_error!(
                self,
                gst::CoreError::Failed,
                ("cannot attach the scores: {e}")
            );
            gst::FlowError::Error
        })?;
        Ok(gst::FlowSuccess::Ok)
    }
}
