//! ffnetinfer: the model runs either in the streaming thread (`mode=sync`, exact and
//! deterministic) or on a worker thread (`mode=async`) that always takes the newest frame;
//! every frame then carries the newest finished result, so a 30 FPS display stays at 30
//! FPS when the model manages 10. Setting `model` while playing loads the new model in the
//! background and switches between two frames; a model that fails to load leaves the old
//! one running and posts a warning.

use std::path::PathBuf;
use std::sync::{Arc, Condvar, LazyLock, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::prelude::*;

use ffnetseg::inference::{InferenceSession, ModelContract, SessionConfig, parse_provider_options};
use ffnetseg::tensor::Region;
use ffnetseg::tensor::TensorSpec;

use super::{ModeChoice, ProviderChoice};
use crate::meta::{self, InputTensor, Scores};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "ffnetinfer",
        gst::DebugColorFlags::empty(),
        Some("ffnetseg inference"),
    )
});

/// How often (in frames) the stats element message is posted.
const STATS_EVERY: u64 = 30;

#[derive(Debug, Clone)]
struct Settings {
    model: Option<String>,
    provider: ProviderChoice,
    provider_options: String,
    threads: u32,
    disable_cpu_fallback: bool,
    ort_library: Option<String>,
    mode: ModeChoice,
    interval: u32,
    spin: bool,
    ep_library: Option<String>,
    context_cache: Option<String>,
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
            interval: 1,
            spin: false,
            ep_library: None,
            context_cache: None,
        }
    }
}

/// A loaded model with its output buffers; moves to the worker thread in async mode.
struct Engine {
    session: InferenceSession,
    pool: gst::BufferPool,
    contract: ModelContract,
    provider: String,
    generation: u64,
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.pool.set_active(false);
    }
}

/// One frame's tensor waiting for inference.
struct Job {
    tensor: gst::Buffer,
    spec: TensorSpec,
    region: Region,
    pts: Option<gst::ClockTime>,
    epoch: u64,
}

/// What the streaming thread and the worker share.
#[derive(Default)]
struct Shared {
    /// Newest finished result.
    latest: Option<Scores>,
    sequence: u64,
    /// Bumped on flush and model change: results of older jobs are thrown away.
    epoch: u64,
    /// Async: the next job (always the newest frame; older pending ones are replaced).
    pending: Option<Job>,
    /// Async: a newly loaded model for the worker to take between two inferences.
    next_engine: Option<Engine>,
    stop: bool,
    stats: Stats,
    /// Set when async inference failed: the stream stops instead of reusing old results.
    failed: Option<String>,
}

#[derive(Default, Clone)]
struct Stats {
    active_provider: String,
    inferences: u64,
    frames: u64,
    frames_reused: u64,
    frames_skipped_busy: u64,
    last_inference_ns: u64,
    total_inference_ns: u64,
    started: Option<Instant>,
}

type SharedState = Arc<(Mutex<Shared>, Condvar)>;

struct Worker {
    thread: Option<JoinHandle<()>>,
}

enum Runner {
    Sync(Box<Engine>),
    Async(Worker),
}

struct State {
    runner: Runner,
    /// Contract of the model that results come from now (the streaming thread's view).
    contract: ModelContract,
    asynchronous: bool,
    frame_count: u64,
}

#[derive(Default)]
pub struct FfnetInfer {
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
    shared: SharedState,
    /// A model being loaded in the background (hot swap); at most one at a time.
    loading: Mutex<Option<JoinHandle<()>>>,
}

/// Why a model could not be opened, in words for the user.
struct OpenError {
    domain: OpenErrorKind,
    text: String,
}

enum OpenErrorKind {
    Settings,
    Runtime,
    Model,
    Resources,
}

impl OpenError {
    fn to_message(&self) -> gst::ErrorMessage {
        let t = &self.text;
        match self.domain {
            OpenErrorKind::Settings => gst::error_msg!(gst::LibraryError::Settings, ("{t}")),
            OpenErrorKind::Runtime => gst::error_msg!(gst::LibraryError::Init, ("{t}")),
            OpenErrorKind::Model => gst::error_msg!(gst::ResourceError::OpenRead, ("{t}")),
            OpenErrorKind::Resources => gst::error_msg!(gst::ResourceError::NoSpaceLeft, ("{t}")),
        }
    }
}

fn open_engine(settings: &Settings) -> Result<(Engine, Vec<String>), OpenError> {
    let fail = |domain, text: String| OpenError { domain, text };
    let model = settings.model.clone().ok_or_else(|| {
        fail(
            OpenErrorKind::Model,
            "no model: set ffnetinfer's model property to an .onnx file (e.g. model=models/selfie_segmentation.onnx)".into(),
        )
    })?;
    let provider_options = parse_provider_options(&settings.provider_options)
        .map_err(|e| fail(OpenErrorKind::Settings, format!("provider-options: {e}")))?;
    let config = SessionConfig {
        model: PathBuf::from(&model),
        provider: settings.provider.into(),
        provider_options,
        threads: settings.threads as usize,
        disable_cpu_fallback: settings.disable_cpu_fallback,
        ort_library: settings.ort_library.as_ref().map(PathBuf::from),
        spin: settings.spin,
        ep_library: settings.ep_library.as_ref().map(PathBuf::from),
        context_cache: settings.context_cache.as_ref().map(PathBuf::from),
    };
    let session = InferenceSession::open(&config).map_err(|e| match e {
        ffnetseg::Error::Runtime(_) => fail(OpenErrorKind::Runtime, e.to_string()),
        ffnetseg::Error::Config(_) => fail(OpenErrorKind::Settings, e.to_string()),
        _ => fail(OpenErrorKind::Model, e.to_string()),
    })?;
    let contract = session.contract().clone();
    let pool = gst::BufferPool::new();
    let mut pc = pool.config();
    pc.set_params(None, (contract.output.element_count() * 4) as u32, 2, 0);
    pool.set_config(pc)
        .and_then(|_| pool.set_active(true))
        .map_err(|e| {
            fail(
                OpenErrorKind::Resources,
                format!("cannot allocate score buffers: {e}"),
            )
        })?;
    let mut warnings = session.warnings().to_vec();
    for n in session.notes() {
        warnings.push(format!("note: {n}"));
    }
    let provider = session.active_provider().to_string();
    Ok((
        Engine {
            session,
            pool,
            contract,
            provider,
            generation: next_generation(),
        },
        warnings,
    ))
}

/// A process-wide counter, so every loaded model has its own generation.
fn next_generation() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// Runs one inference; returns the scores meta to attach.
fn infer(engine: &mut Engine, job: &Job, sequence: u64) -> Result<(Scores, u64), String> {
    let started = Instant::now();
    let tmap = job
        .tensor
        .map_readable()
        .map_err(|_| "cannot read the tensor".to_string())?;
    let pool = &engine.pool;
    let (scores, actual) = engine
        .session
        .run_with(
            tmap.as_slice(),
            &job.spec,
            |actual, data| -> Result<_, String> {
                let bytes = data.len() * 4;
                // Static models fill pooled buffers; a dynamic-size model may need another size.
                let mut buffer = match pool.acquire_buffer(None) {
                    Ok(b) if b.size() == bytes => b,
                    _ => gst::Buffer::with_size(bytes).map_err(|e| e.to_string())?,
                };
                {
                    let sref = buffer.get_mut().ok_or("score buffer is shared")?;
                    let mut smap = sref
                        .map_writable()
                        .map_err(|_| "cannot write the scores".to_string())?;
                    for (dst, v) in smap.as_mut_slice().chunks_exact_mut(4).zip(data) {
                        dst.copy_from_slice(&v.to_ne_bytes());
                    }
                }
                Ok((buffer, actual))
            },
        )
        .map_err(|e| e.to_string())??;
    let elapsed = started.elapsed().as_nanos() as u64;
    Ok((
        Scores {
            scores,
            classes: actual.classes,
            width: actual.width,
            height: actual.height,
            layout: actual.layout,
            region: job.region,
            tensor_width: job.spec.width,
            tensor_height: job.spec.height,
            source_pts: job.pts,
            sequence,
            provider: engine.provider.clone(),
            inference_ns: elapsed,
            model_generation: engine.generation,
        },
        elapsed,
    ))
}

fn record_inference(stats: &mut Stats, elapsed: u64) {
    stats.inferences += 1;
    stats.last_inference_ns = elapsed;
    stats.total_inference_ns += elapsed;
}

/// The async worker: waits for the newest job, runs it, publishes the result.
fn worker_loop(mut engine: Engine, shared: SharedState, element: glib::WeakRef<super::FfnetInfer>) {
    let (lock, cvar) = &*shared;
    loop {
        let job = {
            let mut s = lock.lock().unwrap();
            loop {
                if s.stop {
                    return;
                }
                if let Some(e) = s.next_engine.take() {
                    engine = e;
                }
                if let Some(job) = s.pending.take() {
                    break job;
                }
                s = cvar.wait(s).unwrap();
            }
        };
        let sequence = lock.lock().unwrap().sequence + 1;
        match infer(&mut engine, &job, sequence) {
            Ok((scores, elapsed)) => {
                let mut s = lock.lock().unwrap();
                record_inference(&mut s.stats, elapsed);
                if job.epoch == s.epoch {
                    s.sequence = sequence;
                    s.latest = Some(scores);
                }
            }
            Err(e) => {
                lock.lock().unwrap().failed = Some(e.clone());
                if let Some(el) = element.upgrade() {
                    gst::element_error!(el, gst::StreamError::Failed, ("inference failed: {e}"));
                }
                return;
            }
        }
    }
}

impl FfnetInfer {
    fn announce(
        &self,
        engine: &Engine,
        warnings: &[String],
        model: &str,
        requested: ProviderChoice,
    ) {
        for w in warnings {
            if let Some(note) = w.strip_prefix("note: ") {
                gst::info!(CAT, imp = self, "{note}");
                continue;
            }
            gst::warning!(CAT, imp = self, "{w}");
            gst::element_imp_warning!(self, gst::LibraryError::Settings, ("{w}"));
        }
        let c = &engine.contract;
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
            engine.provider
        );
        let _ = self.obj().post_message(
            gst::message::Element::builder(
                gst::Structure::builder("ffnetinfer-provider")
                    .field(
                        "requested",
                        ffnetseg::inference::Provider::from(requested).name(),
                    )
                    .field("active", engine.provider.as_str())
                    .field("model", model)
                    .build(),
            )
            .src(&*self.obj())
            .build(),
        );
    }

    /// Whether upstream is live (a camera): decides mode=auto.
    fn upstream_is_live(&self) -> bool {
        let mut q = gst::query::Latency::new();
        self.obj().sink_pad().peer_query(&mut q) && q.result().0
    }

    fn start_runner(&self, engine: Engine, asynchronous: bool) -> State {
        let contract = engine.contract.clone();
        let runner = if asynchronous {
            let shared = self.shared.clone();
            let weak = self.obj().downgrade();
            let thread = std::thread::Builder::new()
                .name("ffnetinfer-worker".into())
                .spawn(move || worker_loop(engine, shared, weak))
                .expect("spawning a thread works");
            Runner::Async(Worker {
                thread: Some(thread),
            })
        } else {
            Runner::Sync(Box::new(engine))
        };
        State {
            runner,
            contract,
            asynchronous,
            frame_count: 0,
        }
    }

    fn stop_runner(&self, state: State) {
        if let Runner::Async(mut w) = state.runner {
            {
                let (lock, cvar) = &*self.shared;
                lock.lock().unwrap().stop = true;
                cvar.notify_all();
            }
            if let Some(t) = w.thread.take() {
                let _ = t.join();
            }
        }
    }

    /// Forgets results and pending work from before a flush or a model change.
    fn drop_results(&self) {
        let (lock, _) = &*self.shared;
        let mut s = lock.lock().unwrap();
        s.epoch += 1;
        s.latest = None;
        s.pending = None;
    }

    /// Hot swap: load `settings.model` in the background while the old model keeps running.
    fn load_in_background(&self, settings: Settings) {
        let mut loading = self.loading.lock().unwrap();
        if let Some(t) = loading.take() {
            let _ = t.join();
        }
        let weak = self.obj().downgrade();
        *loading = Some(
            std::thread::Builder::new()
                .name("ffnetinfer-loader".into())
                .spawn(move || {
                    let result = open_engine(&settings);
                    let Some(el) = weak.upgrade() else { return };
                    let imp = el.imp();
                    match result {
                        Ok((engine, warnings)) => {
                            imp.announce(&engine, &warnings, settings.model.as_deref().unwrap_or(""), settings.provider);
                            imp.swap_engine(engine);
                        }
                        Err(e) => {
                            let msg = format!(
                                "the new model could not be loaded, the previous one keeps running: {}",
                                e.text
                            );
                            gst::warning!(CAT, imp = imp, "{msg}");
                            gst::element_warning!(el, gst::ResourceError::OpenRead, ("{msg}"));
                        }
                    }
                })
                .expect("spawning a thread works"),
        );
    }

    fn swap_engine(&self, engine: Engine) {
        let mut guard = self.state.lock().unwrap();
        let Some(state) = guard.as_mut() else { return };
        let input_changed = state.contract.input != engine.contract.input;
        state.contract = engine.contract.clone();
        {
            let (lock, cvar) = &*self.shared;
            let mut s = lock.lock().unwrap();
            s.epoch += 1;
            s.stats.active_provider = engine.provider.clone();
            match &mut state.runner {
                Runner::Sync(e) => **e = engine,
                Runner::Async(_) => {
                    s.pending = None;
                    s.next_engine = Some(engine);
                    cvar.notify_all();
                }
            }
        }
        drop(guard);
        if input_changed {
            // segpreproc re-asks for the model's input on a reconfigure.
            self.obj()
                .sink_pad()
                .push_event(gst::event::Reconfigure::new());
        }
    }

    fn post_stats(&self, stats: &Stats) {
        let mean_ms = if stats.inferences > 0 {
            stats.total_inference_ns as f64 / stats.inferences as f64 / 1e6
        } else {
            0.0
        };
        let rate = stats
            .started
            .map(|t| stats.inferences as f64 / t.elapsed().as_secs_f64().max(1e-9))
            .unwrap_or(0.0);
        let _ = self.obj().post_message(
            gst::message::Element::builder(
                gst::Structure::builder("ffnetinfer-stats")
                    .field("frames", stats.frames)
                    .field("inferences", stats.inferences)
                    .field("frames-reused", stats.frames_reused)
                    .field("last-inference-ms", stats.last_inference_ns as f64 / 1e6)
                    .field("mean-inference-ms", mean_ms)
                    .field("results-per-second", rate)
                    .field("provider", stats.active_provider.as_str())
                    .build(),
            )
            .src(&*self.obj())
            .build(),
        );
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
                    .blurb("Path of the ONNX model (one image input; scores output 1×C×H×W or 1×H×W×C). Set while playing, the new model loads in the background and replaces the old one between two frames")
                    .mutable_playing()
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
                    .blurb("Fail to start instead of running on the CPU when the requested provider is unavailable")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("ort-library")
                    .nick("ONNX Runtime library")
                    .blurb("Path of libonnxruntime.so to load (default: ORT_DYLIB_PATH, then ~/.local/lib/ffnetseg, then the system's); one per process")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("mode", ModeChoice::Sync)
                    .nick("Mode")
                    .blurb("How inference is scheduled against the frames")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("interval")
                    .nick("Interval")
                    .blurb("Infer on every N-th frame (sync) or at most every N-th frame (async); frames in between carry the newest result")
                    .minimum(1)
                    .maximum(1000)
                    .default_value(1)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecString::builder("ep-library")
                    .nick("Plugin EP library")
                    .blurb("Execution provider plugin library, e.g. the onnxruntime-qnn wheel's libonnxruntime_providers_qnn.so (default: found next to the loaded ONNX Runtime wheel, FFNETSEG_QNN_EP_LIBRARY, or ~/.local/lib/ffnetseg/qnn)")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("context-cache")
                    .nick("Compiled-model cache")
                    .blurb("Folder for compiled models (QNN/OpenVINO EP-context model, TensorRT engine): the first start compiles and writes it, later starts load it in a fraction of the time; a cache from another model, ONNX Runtime or option set is rebuilt")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("spin")
                    .nick("Spin-wait")
                    .blurb("Let ONNX Runtime's CPU threads spin between inferences (slightly lower latency on an idle machine; takes CPU from the rest of the pipeline)")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("active-provider")
                    .nick("Active provider")
                    .blurb("The provider the model really runs on (read-only; empty before start)")
                    .read_only()
                    .build(),
                glib::ParamSpecUInt64::builder("inferences")
                    .nick("Inferences")
                    .blurb("Inferences run since start (read-only)")
                    .read_only()
                    .build(),
                glib::ParamSpecUInt64::builder("frames-reused")
                    .nick("Frames reused")
                    .blurb("Frames that carried an earlier frame's result (async or interval > 1; read-only)")
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

    fn constructed(&self) {
        self.parent_constructed();
        // Late frames are dropped before inference in sync mode (BaseTransform QoS).
        self.obj().set_qos(true);
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = self.settings.lock().unwrap();
        match pspec.name() {
            "model" => {
                let new: Option<String> = value.get().expect("type checked upstream");
                let changed = new != s.model;
                s.model = new;
                let running = self.state.lock().unwrap().is_some();
                if changed && running && s.model.is_some() {
                    let settings = s.clone();
                    drop(s);
                    self.load_in_background(settings);
                }
            }
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
            "interval" => s.interval = value.get().expect("type checked upstream"),
            "spin" => s.spin = value.get().expect("type checked upstream"),
            "ep-library" => s.ep_library = value.get().expect("type checked upstream"),
            "context-cache" => s.context_cache = value.get().expect("type checked upstream"),
            other => unreachable!("unknown property {other}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = self.settings.lock().unwrap();
        let stats = self.shared.0.lock().unwrap().stats.clone();
        match pspec.name() {
            "model" => s.model.to_value(),
            "provider" => s.provider.to_value(),
            "provider-options" => s.provider_options.to_value(),
            "threads" => s.threads.to_value(),
            "disable-cpu-fallback" => s.disable_cpu_fallback.to_value(),
            "ort-library" => s.ort_library.to_value(),
            "mode" => s.mode.to_value(),
            "interval" => s.interval.to_value(),
            "spin" => s.spin.to_value(),
            "ep-library" => s.ep_library.to_value(),
            "context-cache" => s.context_cache.to_value(),
            "active-provider" => stats.active_provider.to_value(),
            "inferences" => stats.inferences.to_value(),
            "frames-reused" => stats.frames_reused.to_value(),
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
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> =
            LazyLock::new(crate::video::pad_templates);
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
        let (engine, warnings) = open_engine(&settings).map_err(|e| e.to_message())?;
        self.announce(
            &engine,
            &warnings,
            settings.model.as_deref().unwrap_or(""),
            settings.provider,
        );
        {
            let mut s = self.shared.0.lock().unwrap();
            *s = Shared {
                stats: Stats {
                    active_provider: engine.provider.clone(),
                    ..Stats::default()
                },
                ..Shared::default()
            };
        }
        // Sync until the first frame tells whether the pipeline is live (mode=auto).
        let asynchronous = settings.mode == ModeChoice::Async;
        *self.state.lock().unwrap() = Some(self.start_runner(engine, asynchronous));
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        if let Some(t) = self.loading.lock().unwrap().take() {
            let _ = t.join();
        }
        if let Some(state) = self.state.lock().unwrap().take() {
            self.stop_runner(state);
        }
        Ok(())
    }

    fn sink_event(&self, event: gst::Event) -> bool {
        if let gst::EventView::FlushStop(_) = event.view() {
            // No result from before a seek or flush may be drawn after it.
            self.drop_results();
        }
        self.parent_sink_event(event)
    }

    fn query(&self, direction: gst::PadDirection, query: &mut gst::QueryRef) -> bool {
        if direction == gst::PadDirection::Sink && meta::is_contract_query(query) {
            let guard = self.state.lock().unwrap();
            return match guard.as_ref() {
                Some(state) => meta::answer_contract_query(query, &state.contract.input),
                None => false,
            };
        }
        if direction == gst::PadDirection::Src && meta::is_inference_query(query) {
            return true;
        }
        if direction == gst::PadDirection::Src
            && let gst::QueryViewMut::Latency(q) = query.view_mut()
        {
            // Sync inference delays every frame by one inference; async by nothing.
            let mut upstream = gst::query::Latency::new();
            if !self.obj().sink_pad().peer_query(&mut upstream) {
                return false;
            }
            let (live, min, max) = upstream.result();
            let asynchronous = self
                .state
                .lock()
                .unwrap()
                .as_ref()
                .is_some_and(|s| s.asynchronous);
            let ours = if asynchronous {
                gst::ClockTime::ZERO
            } else {
                let stats = &self.shared.0.lock().unwrap().stats;
                gst::ClockTime::from_nseconds(stats.last_inference_ns)
            };
            q.set(live, min + ours, max.map(|m| m + ours));
            return true;
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
        let (mode, interval) = {
            let s = self.settings.lock().unwrap();
            (s.mode, s.interval.max(1) as u64)
        };
        let mut guard = self.state.lock().unwrap();
        let state = guard.as_mut().ok_or(gst::FlowError::Flushing)?;

        if state.frame_count == 0 && mode == ModeChoice::Auto && self.upstream_is_live() {
            gst::info!(
                CAT,
                imp = self,
                "live source: running inference asynchronously (mode=auto)"
            );
            let Runner::Sync(engine) =
                std::mem::replace(&mut state.runner, Runner::Async(Worker { thread: None }))
            else {
                unreachable!("auto starts in sync")
            };
            let fresh = self.start_runner(*engine, true);
            *state = State {
                frame_count: 0,
                ..fresh
            };
        }

        let contract = state.contract.clone();
        let spec = input.spec;
        let size_differs = !contract.input.is_dynamic()
            && (spec.width != contract.input.width || spec.height != contract.input.height);
        if size_differs
            || spec.layout != contract.input.layout
            || spec.dtype != contract.input.dtype
        {
            let swapping = {
                let s = self.shared.0.lock().unwrap();
                s.stats.inferences > 0 && s.latest.is_none()
            };
            if !swapping && state.frame_count == 0 {
                gst::element_imp_error!(
                    self,
                    gst::StreamError::Format,
                    (
                        "segpreproc made a {}×{} {} {} tensor but the model wants {}×{} {} {}: remove \
                         segpreproc's width/height/layout overrides or make them match the model",
                        spec.width,
                        spec.height,
                        spec.layout.as_str(),
                        spec.dtype.as_str(),
                        contract.input.width,
                        contract.input.height,
                        contract.input.layout.as_str(),
                        contract.input.dtype.as_str()
                    )
                );
                return Err(gst::FlowError::Error);
            }
            // Tensors made for the previous model while segpreproc catches up after a
            // model swap: pass the frame on, without a result.
            gst::debug!(
                CAT,
                imp = self,
                "tensor for another model (swap in progress); frame passes without a new result"
            );
            state.frame_count += 1;
            return Ok(gst::FlowSuccess::Ok);
        }

        let due = state.frame_count % interval == 0;
        state.frame_count += 1;
        let job = Job {
            tensor: input.tensor.clone(),
            spec,
            region: input.region,
            pts: buf.pts(),
            epoch: 0,
        };
        let (lock, cvar) = &*self.shared;
        let result = match &mut state.runner {
            Runner::Sync(engine) => {
                if due {
                    let sequence = lock.lock().unwrap().sequence + 1;
                    let (scores, elapsed) = infer(engine, &job, sequence).map_err(|e| {
                        gst::element_imp_error!(
                            self,
                            gst::StreamError::Failed,
                            ("inference failed: {e}")
                        );
                        gst::FlowError::Error
                    })?;
                    let mut s = lock.lock().unwrap();
                    record_inference(&mut s.stats, elapsed);
                    s.sequence = sequence;
                    s.latest = Some(scores);
                }
                let s = lock.lock().unwrap();
                s.latest.clone()
            }
            Runner::Async(_) => {
                let mut s = lock.lock().unwrap();
                if s.failed.is_some() {
                    // The worker posted the error; stop here rather than reuse old results.
                    return Err(gst::FlowError::Error);
                }
                if due {
                    if s.pending.is_some() {
                        s.stats.frames_skipped_busy += 1;
                    }
                    let epoch = s.epoch;
                    s.pending = Some(Job { epoch, ..job });
                    cvar.notify_all();
                }
                s.latest.clone()
            }
        };
        let stats = {
            let mut s = lock.lock().unwrap();
            let st = &mut s.stats;
            st.started.get_or_insert_with(Instant::now);
            st.frames += 1;
            if let Some(r) = &result
                && r.source_pts != buf.pts()
            {
                st.frames_reused += 1;
            }
            (st.frames % STATS_EVERY == 0).then(|| st.clone())
        };
        drop(guard);
        if let Some(stats) = stats {
            self.post_stats(&stats);
        }
        if let Some(scores) = result {
            scores.attach(buf).map_err(|e| {
                gst::element_imp_error!(
                    self,
                    gst::CoreError::Failed,
                    ("cannot attach the scores: {e}")
                );
                gst::FlowError::Error
            })?;
        }
        Ok(gst::FlowSuccess::Ok)
    }
}
