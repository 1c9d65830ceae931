//! ffnetinfer, the element: settings, properties, and the BaseTransform that hands each
//! frame's tensor to the model ([`super::engine`]) in the streaming thread (`mode=sync`) or
//! to the worker ([`super::worker`], `mode=async`), and attaches the newest result.
//! Setting `model` while playing loads the new model in the background and switches
//! between two frames; a model that fails to load leaves the old one running with a warning.
//! With `reload-on-change`, a watcher ([`super::ota`]) does the same when the model file is
//! replaced; with `verify-digest`, a model whose SHA-256 does not match is never loaded.

use std::path::PathBuf;
use std::sync::{LazyLock, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::prelude::*;

use ffnetseg::inference::{ModelContract, SessionConfig, parse_provider_options};
use ffnetseg::tensor::TensorSpec;

use super::engine::{Engine, Job, OpenError, Remarks};
use super::instance::{self, ModelFacts};
use super::ota::{self, Watched, Watcher};
use super::worker::{Runner, Shared, SharedState, Stats};
use super::{ModeChoice, ProviderChoice};
use crate::error::flow_error;
use crate::meta::{self, InputTensor, Scores};

pub(super) static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "ffnetinfer",
        gst::DebugColorFlags::empty(),
        Some("ffnetseg inference"),
    )
});

const DEFAULT_PROVIDER: ProviderChoice = ProviderChoice::Auto;
const DEFAULT_THREADS: u32 = 0;
const MAX_THREADS: u32 = 256;
const DEFAULT_DISABLE_CPU_FALLBACK: bool = false;
const DEFAULT_MODE: ModeChoice = ModeChoice::Sync;
const DEFAULT_INTERVAL: u32 = 1;
const MAX_INTERVAL: u32 = 1000;
const DEFAULT_SPIN: bool = false;
const DEFAULT_RELOAD_ON_CHANGE: bool = false;
const DEFAULT_VERIFY_DIGEST: bool = false;
const DEFAULT_BATCH_SIZE: u32 = 1;
const MAX_BATCH_SIZE: u32 = 64;
const DEFAULT_BATCH_TIMEOUT_MS: u32 = 10;
const MAX_BATCH_TIMEOUT_MS: u32 = 1000;

/// How often (in frames) the stats element message is posted.
const STATS_EVERY: u64 = 30;

/// Said in the blurbs of the properties that are refused once the element has started.
const READY_ONLY: &str =
    "Set in NULL or READY: refused with a warning (old value kept) once started";

#[derive(Debug, Clone)]
struct Settings {
    model: Option<PathBuf>,
    provider: ProviderChoice,
    /// As given, for reading back, and parsed.
    provider_options_text: String,
    provider_options: Vec<(String, String)>,
    threads: u32,
    disable_cpu_fallback: bool,
    ort_library: Option<PathBuf>,
    mode: ModeChoice,
    interval: u32,
    spin: bool,
    ep_library: Option<PathBuf>,
    context_cache: Option<PathBuf>,
    reload_on_change: bool,
    verify_digest: bool,
    /// Name of the shared instance this element is a member of; None: its own model.
    shared_instance: Option<String>,
    batch_size: u32,
    batch_timeout_ms: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            model: None,
            provider: DEFAULT_PROVIDER,
            provider_options_text: String::new(),
            provider_options: Vec::new(),
            threads: DEFAULT_THREADS,
            disable_cpu_fallback: DEFAULT_DISABLE_CPU_FALLBACK,
            ort_library: None,
            mode: DEFAULT_MODE,
            interval: DEFAULT_INTERVAL,
            spin: DEFAULT_SPIN,
            ep_library: None,
            context_cache: None,
            reload_on_change: DEFAULT_RELOAD_ON_CHANGE,
            verify_digest: DEFAULT_VERIFY_DIGEST,
            shared_instance: None,
            batch_size: DEFAULT_BATCH_SIZE,
            batch_timeout_ms: DEFAULT_BATCH_TIMEOUT_MS,
        }
    }
}

impl Settings {
    /// The engine's session settings; None without a model.
    fn session_config(&self) -> Option<SessionConfig> {
        Some(SessionConfig {
            model: self.model.clone()?,
            provider: self.provider.into(),
            provider_options: self.provider_options.clone(),
            threads: self.threads as usize,
            disable_cpu_fallback: self.disable_cpu_fallback,
            ort_library: self.ort_library.clone(),
            spin: self.spin,
            ep_library: self.ep_library.clone(),
            context_cache: self.context_cache.clone(),
            // Only a shared instance gathers several frames per run.
            batch_size: match self.shared_instance {
                Some(_) => self.batch_size.max(1) as usize,
                None => 1,
            },
        })
    }

    /// Opens the model, first checking its SHA-256 when verify-digest is set. The file's
    /// identity is compared before and after, so a file replaced between the check and the
    /// load is not taken unverified.
    fn open_model(&self) -> Result<(Engine, Remarks), LoadError> {
        let Some(path) = self.model.as_ref().filter(|_| self.verify_digest) else {
            return Engine::open(self.session_config()).map_err(LoadError::Open);
        };
        let before = ota::identity(path);
        ota::verify_digest(path).map_err(LoadError::Digest)?;
        let opened = Engine::open(self.session_config()).map_err(LoadError::Open)?;
        if ota::identity(path) != before {
            return Err(LoadError::Digest(format!(
                "{} changed while it was verified and loaded; it is checked again at its next change",
                path.display()
            )));
        }
        Ok(opened)
    }

    /// The settings that shape the session, which a shared instance's members must share
    /// (the model as its canonical path, so that two spellings of one file agree).
    fn instance_key(&self) -> instance::SessionKey {
        let path = |p: &Option<PathBuf>| {
            p.as_ref()
                .map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone()))
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        };
        vec![
            ("model", path(&self.model)),
            (
                "provider",
                ffnetseg::inference::Provider::from(self.provider)
                    .name()
                    .into(),
            ),
            ("provider-options", join_options(&self.provider_options)),
            ("threads", self.threads.to_string()),
            (
                "disable-cpu-fallback",
                self.disable_cpu_fallback.to_string(),
            ),
            ("ort-library", path(&self.ort_library)),
            ("ep-library", path(&self.ep_library)),
            ("context-cache", path(&self.context_cache)),
            ("spin", self.spin.to_string()),
            ("verify-digest", self.verify_digest.to_string()),
        ]
    }

    fn batching(&self) -> instance::Batching {
        instance::Batching {
            size: self.batch_size.max(1) as usize,
            timeout: std::time::Duration::from_millis(self.batch_timeout_ms.into()),
        }
    }

    fn model_name(&self) -> String {
        self.model
            .as_ref()
            .map(|m| m.display().to_string())
            .unwrap_or_default()
    }
}

/// Why a model was not taken.
enum LoadError {
    Open(OpenError),
    Digest(String),
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadError::Open(e) => e.fmt(f),
            LoadError::Digest(e) => f.write_str(e),
        }
    }
}

impl LoadError {
    fn to_message(&self) -> gst::ErrorMessage {
        match self {
            LoadError::Open(e) => e.to_message(),
            LoadError::Digest(e) => gst::error_msg!(gst::ResourceError::NotAuthorized, ("{e}")),
        }
    }
}

fn optional_path(value: &glib::Value) -> Option<PathBuf> {
    value
        .get::<Option<String>>()
        .expect("type checked upstream")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
}

fn path_value(path: &Option<PathBuf>) -> glib::Value {
    path.as_ref().map(|p| p.display().to_string()).to_value()
}

struct State {
    runner: Runner,
    /// Input of the model that results come from now (the streaming thread's view).
    input: TensorSpec,
    /// That input's name in the model (segpreproc's `.modelinfo` section).
    input_name: String,
    asynchronous: bool,
    frame_count: u64,
    /// The GstTensor id of the model output (its ONNX name) for the standard tensor meta.
    #[cfg(feature = "analytics")]
    output_id: glib::Quark,
}

#[derive(Default)]
pub struct FfnetInfer {
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
    shared: SharedState,
    /// A model being loaded in the background (hot swap); at most one at a time.
    loading: Mutex<Option<JoinHandle<()>>>,
    /// Polls the model file while started with reload-on-change.
    watcher: Mutex<Option<Watcher>>,
}

impl FfnetInfer {
    fn announce(&self, engine: &Engine, remarks: &Remarks, model: &str, requested: ProviderChoice) {
        for note in &remarks.notes {
            gst::info!(CAT, imp = self, "{note}");
        }
        for w in &remarks.warnings {
            gst::warning!(CAT, imp = self, "{w}");
            gst::element_imp_warning!(self, gst::LibraryError::Settings, ("{w}"));
        }
        log_contract(self, &engine.contract, model, &engine.provider);
        #[cfg(feature = "analytics")]
        gst::info!(
            CAT,
            imp = self,
            "GstTensorMeta: output tensor id '{}' (from {})",
            engine.output_id.0.as_str(),
            engine.output_id.1
        );
        self.post_provider(requested, &engine.provider, model);
    }

    /// The `ffnetinfer-provider` element message: the provider asked for and the one used.
    fn post_provider(&self, requested: ProviderChoice, active: &str, model: &str) {
        let _ = self.obj().post_message(
            gst::message::Element::builder(
                gst::Structure::builder("ffnetinfer-provider")
                    .field(
                        "requested",
                        ffnetseg::inference::Provider::from(requested).name(),
                    )
                    .field("active", active)
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

    fn start_runner(&self, engine: Engine, asynchronous: bool) -> Result<State, gst::ErrorMessage> {
        let input = engine.contract.input;
        let input_name = engine.contract.input_name.clone();
        #[cfg(feature = "analytics")]
        let output_id = engine.output_id.0;
        let runner = Runner::start(engine, asynchronous, &self.shared, self.obj().downgrade())
            .map_err(|e| {
                gst::error_msg!(
                    gst::ResourceError::Failed,
                    ("cannot start the inference thread: {e}")
                )
            })?;
        Ok(State {
            runner,
            input,
            input_name,
            asynchronous,
            frame_count: 0,
            #[cfg(feature = "analytics")]
            output_id,
        })
    }

    /// mode=auto on a live source: moves the model (still in the streaming thread) to a
    /// worker thread.
    fn go_async(&self, state: &mut State) -> Result<(), gst::FlowError> {
        gst::info!(
            CAT,
            imp = self,
            "live source: running inference asynchronously (mode=auto)"
        );
        if let Runner::Shared(_) = state.runner {
            // The instance's worker runs it; this element just stops waiting.
            state.asynchronous = true;
            return Ok(());
        }
        let Runner::Sync(engine) = std::mem::replace(&mut state.runner, Runner::Async(None)) else {
            return Ok(());
        };
        *state = self
            .start_runner(*engine, true)
            .map_err(|e| flow_error(self, e))?;
        Ok(())
    }

    /// Hot swap: load `settings.model` in the background while the old model keeps running.
    fn load_in_background(&self, settings: Settings) {
        let mut loading = self.loading.lock().unwrap();
        if let Some(t) = loading.take() {
            let _ = t.join();
        }
        let weak = self.obj().downgrade();
        let spawned = std::thread::Builder::new()
            .name("ffnetinfer-loader".into())
            .spawn(move || {
                let result = settings.open_model();
                let Some(el) = weak.upgrade() else { return };
                let imp = el.imp();
                match result {
                    Ok((engine, remarks)) => {
                        imp.announce(&engine, &remarks, &settings.model_name(), settings.provider);
                        imp.swap_engine(engine);
                    }
                    Err(e) => {
                        let msg = format!(
                            "the new model could not be loaded, the previous one keeps running: {e}"
                        );
                        gst::warning!(CAT, imp = imp, "{msg}");
                        gst::element_warning!(el, gst::ResourceError::OpenRead, ("{msg}"));
                    }
                }
            });
        match spawned {
            Ok(thread) => *loading = Some(thread),
            Err(e) => {
                gst::warning!(CAT, imp = self, "cannot start loading the new model: {e}");
                gst::element_imp_warning!(
                    self,
                    gst::ResourceError::Failed,
                    ("cannot start loading the new model, the previous one keeps running: {e}")
                );
            }
        }
    }

    /// Starts polling the model file (reload-on-change), from what it is now.
    fn start_watcher(&self) {
        let mut watcher = self.watcher.lock().unwrap();
        if watcher.is_some() {
            return;
        }
        let baseline = {
            let s = self.settings.lock().unwrap();
            s.model.as_ref().map(|p| Watched::now(p, s.verify_digest))
        };
        let last = Mutex::new(baseline);
        let started = Watcher::start(self.obj().downgrade(), move |el: &super::FfnetInfer| {
            el.imp().poll_model_file(&mut last.lock().unwrap());
        });
        match started {
            Ok(w) => *watcher = Some(w),
            Err(e) => gst::element_imp_warning!(
                self,
                gst::ResourceError::Failed,
                ("cannot start watching the model file, a replaced model is not picked up: {e}")
            ),
        }
    }

    fn stop_watcher(&self) {
        // Joined outside the lock: a poll in progress may need the element's other locks.
        let watcher = self.watcher.lock().unwrap().take();
        drop(watcher);
    }

    /// One poll of the watcher: loads the model again when its file (or, with
    /// verify-digest, its .sha256) was replaced since the last poll.
    fn poll_model_file(&self, last: &mut Option<Watched>) {
        let settings = self.settings.lock().unwrap().clone();
        let Some(path) = settings.model.as_ref() else {
            *last = None;
            return;
        };
        let now = Watched::now(path, settings.verify_digest);
        let path_changed = last.as_ref().is_none_or(|l| l.path != now.path);
        let replaced = !path_changed && last.as_ref() != Some(&now);
        // A missing file (mid-update) keeps the old model; its reappearance is a change.
        let present = now.model.is_some();
        *last = Some(now);
        if replaced && present {
            gst::info!(
                CAT,
                imp = self,
                "{} was replaced: loading it",
                path.display()
            );
            self.load_in_background(settings);
        }
    }

    fn swap_engine(&self, engine: Engine) {
        let mut guard = self.state.lock().unwrap();
        let Some(state) = guard.as_mut() else { return };
        if let Runner::Shared(membership) = &state.runner {
            // The whole instance swaps; every member (this one too) adopts it.
            let instance = membership.instance().clone();
            drop(guard);
            let settings = self.settings.lock().unwrap().clone();
            let key = settings.instance_key();
            let model = key
                .into_iter()
                .find(|(k, _)| *k == "model")
                .unwrap_or_default();
            instance.swap(engine, settings.model, model.1);
            return;
        }
        let input_changed = state.input != engine.contract.input;
        state.input = engine.contract.input;
        state.input_name.clone_from(&engine.contract.input_name);
        #[cfg(feature = "analytics")]
        {
            state.output_id = engine.output_id.0;
        }
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
                // Handed to the instance above (and returned).
                Runner::Shared(_) => {}
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

    /// A shared instance swapped its model (any member asked): this member drops its older
    /// results (the new model generation restarts segpostproc's smoothing) and re-asks
    /// segpreproc for the model's input when it changed.
    pub(super) fn adopt_model(&self, facts: &ModelFacts) {
        if let Some(model) = &facts.model {
            // What the property reads back (no load of its own: the instance has it).
            self.settings.lock().unwrap().model = Some(model.clone());
        }
        let mut guard = self.state.lock().unwrap();
        let Some(state) = guard.as_mut() else { return };
        let input_changed = state.input != facts.input;
        state.input = facts.input;
        state.input_name.clone_from(&facts.input_name);
        #[cfg(feature = "analytics")]
        {
            state.output_id = facts.output_id;
        }
        {
            let mut s = self.shared.0.lock().unwrap();
            s.epoch += 1;
            s.latest = None;
            s.stats.active_provider = facts.provider.clone();
        }
        drop(guard);
        if input_changed {
            self.obj()
                .sink_pad()
                .push_event(gst::event::Reconfigure::new());
        }
    }

    /// Starts as a member of a shared instance: joins it, or makes it and loads the model.
    fn start_shared(&self, settings: &Settings, name: &str) -> Result<(), gst::ErrorMessage> {
        *self.shared.0.lock().unwrap() = Shared::default();
        let model = settings.model_name();
        let load = || {
            let (engine, remarks) = settings.open_model().map_err(|e| e.to_message())?;
            self.announce(&engine, &remarks, &model, settings.provider);
            Ok((engine, settings.model.clone()))
        };
        let (joined, facts) = instance::join(
            name,
            settings.instance_key(),
            settings.batching(),
            load,
            self.shared.clone(),
            self.obj().downgrade(),
        )?;
        if !joined.loaded_here {
            self.post_provider(settings.provider, &facts.provider, &model);
        }
        gst::info!(
            CAT,
            imp = self,
            "member of shared-instance \"{name}\" ({} member(s); {})",
            joined.members,
            if joined.loaded_here {
                "loaded the model"
            } else {
                "joined"
            }
        );
        self.shared.0.lock().unwrap().stats.active_provider = facts.provider;
        *self.state.lock().unwrap() = Some(State {
            runner: Runner::Shared(joined.membership),
            input: facts.input,
            input_name: facts.input_name,
            #[cfg(feature = "analytics")]
            output_id: facts.output_id,
            asynchronous: settings.mode == ModeChoice::Async,
            frame_count: 0,
        });
        Ok(())
    }

    /// Shared instance: hands the frame to the instance when due; sync waits for its own
    /// result, async returns the newest finished one.
    fn infer_shared(
        &self,
        state: &State,
        job: Job,
        due: bool,
    ) -> Result<Option<Scores>, gst::FlowError> {
        let Runner::Shared(membership) = &state.runner else {
            return Ok(None);
        };
        let (lock, cvar) = &*self.shared;
        let mut s = lock.lock().unwrap();
        if let Some(e) = s.failed.clone() {
            drop(s);
            return Err(self.stopped_after_failure(&e));
        }
        if !due {
            return Ok(s.latest.clone());
        }
        let job = Job {
            epoch: s.epoch,
            ..job
        };
        if state.asynchronous {
            drop(s);
            membership.submit(job, None);
            return Ok(lock.lock().unwrap().latest.clone());
        }
        s.ticket += 1;
        let ticket = s.ticket;
        drop(s);
        membership.submit(job, Some(ticket));
        let mut s = lock.lock().unwrap();
        while s.answered < ticket && s.failed.is_none() && !s.interrupted {
            s = cvar.wait(s).unwrap();
        }
        // A failure first: this frame's inference failed (its answer is empty).
        if let Some(e) = s.failed.clone() {
            drop(s);
            return Err(flow_error(
                self,
                gst::error_msg!(gst::StreamError::Failed, ("inference failed: {e}")),
            ));
        }
        if s.answered >= ticket {
            return Ok(s.answer.take());
        }
        Err(gst::FlowError::Flushing)
    }

    /// Wakes a sync frame waiting for the shared instance (flush, stop).
    fn interrupt_wait(&self) {
        let (lock, cvar) = &*self.shared;
        lock.lock().unwrap().interrupted = true;
        cvar.notify_all();
    }

    /// Shared instance: the worker no longer waits for this member's frames (EOS, flush).
    fn idle_in_instance(&self) {
        if let Some(State {
            runner: Runner::Shared(m),
            ..
        }) = self.state.lock().unwrap().as_ref()
        {
            m.set_idle();
        }
    }

    fn post_stats(&self, stats: &Stats) {
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
                    .field("mean-inference-ms", stats.mean_inference_ms())
                    .field("results-per-second", rate)
                    .field("provider", stats.active_provider.as_ref())
                    .build(),
            )
            .src(&*self.obj())
            .build(),
        );
    }

    /// Whether the tensor fits the model. Ok(false): a tensor made for the previous model
    /// while segpreproc catches up after a model swap (the frame passes without a result).
    fn tensor_fits(&self, state: &State, tensor: &InputTensor) -> Result<bool, gst::FlowError> {
        let (spec, want) = (tensor.spec, state.input);
        let size_differs =
            !want.is_dynamic() && (spec.width != want.width || spec.height != want.height);
        if !size_differs && spec.layout == want.layout && spec.dtype == want.dtype {
            return Ok(true);
        }
        let swapping = {
            let s = self.shared.0.lock().unwrap();
            s.stats.inferences > 0 && s.latest.is_none()
        };
        if swapping || state.frame_count > 0 {
            gst::debug!(
                CAT,
                imp = self,
                "tensor for another model (swap in progress); frame passes without a new result"
            );
            return Ok(false);
        }
        let made = describe(&spec);
        let wanted = describe(&want);
        let fix = if tensor.overridden {
            "remove segpreproc's width/height/layout overrides or make them match the model"
        } else {
            "segpreproc made it for another model: each ffnetinfer needs its own segpreproc \
             (put segpreproc after a tee: … ! tee name=t t. ! queue ! segpreproc ! ffnetinfer …)"
        };
        Err(flow_error(
            self,
            gst::error_msg!(
                gst::StreamError::Format,
                ("segpreproc made a {made} tensor but the model wants {wanted}: {fix}")
            ),
        ))
    }

    /// Sync: infers now when due; returns the newest result.
    fn infer_now(
        &self,
        engine: &mut Engine,
        job: &Job,
        due: bool,
    ) -> Result<Option<Scores>, gst::FlowError> {
        let lock = &self.shared.0;
        if due {
            let sequence = lock.lock().unwrap().sequence + 1;
            let (scores, elapsed) = engine.infer(job, sequence).map_err(|e| {
                flow_error(
                    self,
                    gst::error_msg!(gst::StreamError::Failed, ("inference failed: {e}")),
                )
            })?;
            let mut s = lock.lock().unwrap();
            s.stats.record_inference(elapsed);
            s.sequence = sequence;
            s.latest = Some(scores);
        }
        Ok(lock.lock().unwrap().latest.clone())
    }

    /// The worker already posted an inference failure: this frame stops the stream rather
    /// than carry an old result.
    fn stopped_after_failure(&self, failure: &str) -> gst::FlowError {
        flow_error(
            self,
            gst::error_msg!(
                gst::StreamError::Failed,
                ("inference stopped after an earlier failure: {failure}")
            ),
        )
    }

    /// Async: hands the job to the worker when due; returns the newest finished result.
    fn queue_job(&self, job: Job, due: bool) -> Result<Option<Scores>, gst::FlowError> {
        let (lock, cvar) = &*self.shared;
        let mut s = lock.lock().unwrap();
        if let Some(e) = s.failed.clone() {
            drop(s);
            return Err(self.stopped_after_failure(&e));
        }
        if due {
            let epoch = s.epoch;
            s.pending = Some(Job { epoch, ..job });
            cvar.notify_all();
        }
        Ok(s.latest.clone())
    }

    /// Counts the frame; returns the stats when it is time to post them.
    fn count_frame(&self, result: Option<&Scores>, pts: Option<gst::ClockTime>) -> Option<Stats> {
        let mut s = self.shared.0.lock().unwrap();
        let st = &mut s.stats;
        st.started.get_or_insert_with(Instant::now);
        st.frames += 1;
        if result.is_some_and(|r| r.source_pts != pts) {
            st.frames_reused += 1;
        }
        st.frames.is_multiple_of(STATS_EVERY).then(|| st.clone())
    }

    fn answer_latency(&self, q: &mut gst::query::Latency) -> bool {
        // Sync inference delays every frame by one inference; async by nothing.
        let mut upstream = gst::query::Latency::new();
        if !self.obj().sink_pad().peer_query(&mut upstream) {
            return false;
        }
        let (live, min, max) = upstream.result();
        let ours = if self.is_asynchronous() {
            gst::ClockTime::ZERO
        } else {
            // A sync frame of a batched shared instance may also wait for its batch.
            let batch_wait = {
                let s = self.settings.lock().unwrap();
                match s.shared_instance {
                    Some(_) if s.batch_size > 1 => u64::from(s.batch_timeout_ms) * 1_000_000,
                    _ => 0,
                }
            };
            let stats = &self.shared.0.lock().unwrap().stats;
            gst::ClockTime::from_nseconds(stats.last_inference_ns + batch_wait)
        };
        q.set(live, min + ours, max.map(|m| m + ours));
        true
    }

    fn is_asynchronous(&self) -> bool {
        self.state
            .lock()
            .unwrap()
            .as_ref()
            .is_some_and(|s| s.asynchronous)
    }

    /// Stores a property that only takes effect at start; refused once started.
    fn set_ready_only(&self, settings: &mut Settings, name: &str, value: &glib::Value) {
        if self.state.lock().unwrap().is_some() {
            gst::warning!(
                CAT,
                imp = self,
                "{name} can only be set in NULL or READY (it takes effect when the model is \
                 loaded): keeping the current value; stop the pipeline to change it"
            );
            return;
        }
        let v = value;
        match name {
            "provider" => settings.provider = v.get().expect("type checked upstream"),
            "provider-options" => {
                let text = v
                    .get::<Option<String>>()
                    .expect("type checked upstream")
                    .unwrap_or_default();
                match parse_provider_options(&text) {
                    Ok(parsed) => {
                        settings.provider_options = parsed;
                        settings.provider_options_text = text;
                    }
                    Err(e) => {
                        gst::warning!(
                            CAT,
                            imp = self,
                            "provider-options: {e}; keeping the previous value '{}'",
                            settings.provider_options_text
                        );
                        return;
                    }
                }
            }
            "threads" => settings.threads = v.get().expect("type checked upstream"),
            "disable-cpu-fallback" => {
                settings.disable_cpu_fallback = v.get().expect("type checked upstream")
            }
            "ort-library" => settings.ort_library = optional_path(v),
            "mode" => settings.mode = v.get().expect("type checked upstream"),
            "spin" => settings.spin = v.get().expect("type checked upstream"),
            "ep-library" => settings.ep_library = optional_path(v),
            "context-cache" => settings.context_cache = optional_path(v),
            "shared-instance" => {
                settings.shared_instance = v
                    .get::<Option<String>>()
                    .expect("type checked upstream")
                    .filter(|n| !n.is_empty())
            }
            "batch-size" => settings.batch_size = v.get().expect("type checked upstream"),
            "batch-timeout" => settings.batch_timeout_ms = v.get().expect("type checked upstream"),
            other => {
                gst::error!(CAT, imp = self, "unknown property {other}");
                return;
            }
        }
        gst::info!(CAT, imp = self, "{name} set to {:?}", v);
    }
}

fn join_options(options: &[(String, String)]) -> String {
    let pairs: Vec<String> = options.iter().map(|(k, v)| format!("{k}={v}")).collect();
    pairs.join(",")
}

fn describe(spec: &TensorSpec) -> String {
    format!(
        "{}×{} {} {}",
        spec.width,
        spec.height,
        spec.layout.as_str(),
        spec.dtype.as_str()
    )
}

fn log_contract(imp: &FfnetInfer, c: &ModelContract, model: &str, provider: &str) {
    gst::info!(
        CAT,
        imp = imp,
        "model {model}: input '{}' {}×{}×{} {} {}, output '{}' {} classes at {}×{}; running on {provider}",
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
    );
}

#[glib::object_subclass]
impl ObjectSubclass for FfnetInfer {
    const NAME: &'static str = "GstFfnetInfer";
    type Type = super::FfnetInfer;
    type ParentType = gst_base::BaseTransform;
}

fn model_properties() -> Vec<glib::ParamSpec> {
    vec![
        glib::ParamSpecString::builder("model")
            .nick("Model")
            .blurb("Path of the ONNX model (one image input; scores output 1×C×H×W or 1×H×W×C). Can change while PLAYING: the new model loads in the background and replaces the old one between two frames")
            .mutable_playing()
            .build(),
        glib::ParamSpecEnum::builder_with_default("mode", DEFAULT_MODE)
            .nick("Mode")
            .blurb(&format!("How inference is scheduled against the frames. {READY_ONLY}"))
            .mutable_ready()
            .build(),
        glib::ParamSpecUInt::builder("interval")
            .nick("Interval")
            .blurb("Infer on every N-th frame (sync) or at most every N-th frame (async); frames in between carry the newest result. Can change while PLAYING")
            .minimum(1)
            .maximum(MAX_INTERVAL)
            .default_value(DEFAULT_INTERVAL)
            .mutable_playing()
            .build(),
        glib::ParamSpecBoolean::builder("reload-on-change")
            .nick("Reload on change")
            .blurb("Watch the model file (every 500 ms) and load it again when it is replaced, e.g. renamed over by an update system; it takes over between two frames like a new model property, and a new file that does not load or does not fit keeps the old model running with a warning. Can change while PLAYING")
            .default_value(DEFAULT_RELOAD_ON_CHANGE)
            .mutable_playing()
            .build(),
        glib::ParamSpecBoolean::builder("verify-digest")
            .nick("Verify digest")
            .blurb("Load a model only when its SHA-256 matches the MODEL.sha256 file next to it (sha256sum format): at start a mismatch or a missing file is an error, on a reload or model change a warning and the old model keeps running. Can change while PLAYING (checked at the next load)")
            .default_value(DEFAULT_VERIFY_DIGEST)
            .mutable_playing()
            .build(),
    ]
}

fn provider_properties() -> Vec<glib::ParamSpec> {
    vec![
        glib::ParamSpecEnum::builder_with_default("provider", DEFAULT_PROVIDER)
            .nick("Execution provider")
            .blurb(&format!("Where the model runs; a provider this ONNX Runtime lacks falls back to the CPU with a warning. {READY_ONLY}"))
            .mutable_ready()
            .build(),
        glib::ParamSpecString::builder("provider-options")
            .nick("Provider options")
            .blurb(&format!("key=value,... passed to the execution provider (e.g. backend_type=htp,htp_performance_mode=burst). {READY_ONLY}"))
            .mutable_ready()
            .build(),
        glib::ParamSpecUInt::builder("threads")
            .nick("Threads")
            .blurb(&format!("CPU threads for ONNX Runtime's intra-op pool; 0 = ONNX Runtime's default (one per core). {READY_ONLY}"))
            .maximum(MAX_THREADS)
            .default_value(DEFAULT_THREADS)
            .mutable_ready()
            .build(),
        glib::ParamSpecBoolean::builder("disable-cpu-fallback")
            .nick("Disable CPU fallback")
            .blurb(&format!("Fail to start instead of running on the CPU when the requested provider is unavailable. {READY_ONLY}"))
            .default_value(DEFAULT_DISABLE_CPU_FALLBACK)
            .mutable_ready()
            .build(),
        glib::ParamSpecString::builder("ort-library")
            .nick("ONNX Runtime library")
            .blurb(&format!("Path of libonnxruntime.so to load (default: ORT_DYLIB_PATH, then ~/.local/lib/ffnetseg, then the system's); one per process. {READY_ONLY}"))
            .mutable_ready()
            .build(),
        glib::ParamSpecString::builder("ep-library")
            .nick("Plugin EP library")
            .blurb(&format!("Execution provider plugin library, e.g. the onnxruntime-qnn wheel's libonnxruntime_providers_qnn.so (default: found next to the loaded ONNX Runtime wheel, FFNETSEG_QNN_EP_LIBRARY, or ~/.local/lib/ffnetseg/qnn). {READY_ONLY}"))
            .mutable_ready()
            .build(),
        glib::ParamSpecString::builder("context-cache")
            .nick("Compiled-model cache")
            .blurb(&format!("Folder for compiled models (QNN/OpenVINO EP-context model, TensorRT engine): the first start compiles and writes it, later starts load it in a fraction of the time; a cache from another model, ONNX Runtime or option set is rebuilt. {READY_ONLY}"))
            .mutable_ready()
            .build(),
        glib::ParamSpecBoolean::builder("spin")
            .nick("Spin-wait")
            .blurb(&format!("Let ONNX Runtime's CPU threads spin between inferences (slightly lower latency on an idle machine; takes CPU from the rest of the pipeline). {READY_ONLY}"))
            .default_value(DEFAULT_SPIN)
            .mutable_ready()
            .build(),
    ]
}

fn sharing_properties() -> Vec<glib::ParamSpec> {
    vec![
        glib::ParamSpecString::builder("shared-instance")
            .nick("Shared instance")
            .blurb(&format!("Name of a model session shared by every ffnetinfer of the process that names it (e.g. one per camera): the first to start loads the model, the others must have the same model, provider, provider-options, threads, disable-cpu-fallback, ort-library, ep-library, context-cache, spin, verify-digest, batch-size and batch-timeout; one worker runs all members' frames; a model change on one member swaps it for all; the last to stop frees it. Empty: this element's own model. {READY_ONLY}"))
            .mutable_ready()
            .build(),
        glib::ParamSpecUInt::builder("batch-size")
            .nick("Batch size")
            .blurb(&format!("Shared instance: frames (at most one per member, the longest-waiting first) run per inference; a model with a dynamic batch dimension runs them in one inference (with provider qnn, which compiles static shapes, the batch dimension is fixed to batch-size and short batches are padded), a model with a fixed batch of N in groups of N (padded), a batch-1 model one after another. Sync frames wait for their batch, async frames never wait. {READY_ONLY}"))
            .minimum(1)
            .maximum(MAX_BATCH_SIZE)
            .default_value(DEFAULT_BATCH_SIZE)
            .mutable_ready()
            .build(),
        glib::ParamSpecUInt::builder("batch-timeout")
            .nick("Batch timeout")
            .blurb(&format!("Shared instance: milliseconds the first frame of a batch waits for the other members' frames before the batch runs short (a stopped camera never holds the others longer). {READY_ONLY}"))
            .maximum(MAX_BATCH_TIMEOUT_MS)
            .default_value(DEFAULT_BATCH_TIMEOUT_MS)
            .mutable_ready()
            .build(),
    ]
}

fn stats_properties() -> Vec<glib::ParamSpec> {
    vec![
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
            .blurb(
                "Frames that carried an earlier frame's result (async or interval > 1; read-only)",
            )
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
}

impl ObjectImpl for FfnetInfer {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            [
                model_properties(),
                sharing_properties(),
                provider_properties(),
                stats_properties(),
            ]
            .concat()
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
                let new = optional_path(value);
                let changed = new != s.model;
                s.model = new;
                gst::info!(CAT, imp = self, "model set to {}", s.model_name());
                let running = self.state.lock().unwrap().is_some();
                if changed && running && s.model.is_some() {
                    let settings = s.clone();
                    drop(s);
                    self.load_in_background(settings);
                }
            }
            "interval" => {
                s.interval = value.get().expect("type checked upstream");
                gst::info!(CAT, imp = self, "interval set to {}", s.interval);
            }
            "reload-on-change" => {
                s.reload_on_change = value.get().expect("type checked upstream");
                gst::info!(
                    CAT,
                    imp = self,
                    "reload-on-change set to {}",
                    s.reload_on_change
                );
                let watch = s.reload_on_change;
                drop(s);
                let running = self.state.lock().unwrap().is_some();
                match (watch, running) {
                    (true, true) => self.start_watcher(),
                    (false, _) => self.stop_watcher(),
                    (true, false) => {} // started with the element
                }
            }
            "verify-digest" => {
                s.verify_digest = value.get().expect("type checked upstream");
                gst::info!(CAT, imp = self, "verify-digest set to {}", s.verify_digest);
            }
            name => self.set_ready_only(&mut s, name, value),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = self.settings.lock().unwrap();
        let stats = self.shared.0.lock().unwrap().stats.clone();
        match pspec.name() {
            "model" => path_value(&s.model),
            "provider" => s.provider.to_value(),
            "provider-options" => s.provider_options_text.to_value(),
            "threads" => s.threads.to_value(),
            "disable-cpu-fallback" => s.disable_cpu_fallback.to_value(),
            "ort-library" => path_value(&s.ort_library),
            "mode" => s.mode.to_value(),
            "interval" => s.interval.to_value(),
            "spin" => s.spin.to_value(),
            "ep-library" => path_value(&s.ep_library),
            "context-cache" => path_value(&s.context_cache),
            "reload-on-change" => s.reload_on_change.to_value(),
            "verify-digest" => s.verify_digest.to_value(),
            "shared-instance" => s.shared_instance.to_value(),
            "batch-size" => s.batch_size.to_value(),
            "batch-timeout" => s.batch_timeout_ms.to_value(),
            "active-provider" => stats.active_provider.as_ref().to_value(),
            "inferences" => stats.inferences.to_value(),
            "frames-reused" => stats.frames_reused.to_value(),
            "last-inference-ms" => (stats.last_inference_ns as f64 / 1e6).to_value(),
            "mean-inference-ms" => stats.mean_inference_ms().to_value(),
            other => {
                gst::error!(CAT, imp = self, "unknown property {other}");
                pspec.default_value().clone()
            }
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

    fn change_state(
        &self,
        transition: gst::StateChange,
    ) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        match transition {
            // Before the pads deactivate (which waits for the streaming thread): a sync
            // frame waiting for a shared instance gives up.
            gst::StateChange::PausedToReady => self.interrupt_wait(),
            // A paused camera sends nothing: the instance does not wait for it meanwhile.
            gst::StateChange::PlayingToPaused => self.idle_in_instance(),
            _ => {}
        }
        self.parent_change_state(transition)
    }
}

impl BaseTransformImpl for FfnetInfer {
    const MODE: gst_base::subclass::BaseTransformMode =
        gst_base::subclass::BaseTransformMode::AlwaysInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = false;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = false;

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let settings = self.settings.lock().unwrap().clone();
        if let Some(name) = settings.shared_instance.as_deref() {
            self.start_shared(&settings, name)?;
            if settings.reload_on_change {
                self.start_watcher();
            }
            return Ok(());
        }
        if settings.batch_size > 1 {
            gst::warning!(
                CAT,
                imp = self,
                "batch-size={} has no effect without shared-instance: an element's own model \
                 runs its frames one at a time",
                settings.batch_size
            );
        }
        let (engine, remarks) = settings.open_model().map_err(|e| e.to_message())?;
        self.announce(&engine, &remarks, &settings.model_name(), settings.provider);
        *self.shared.0.lock().unwrap() = Shared {
            stats: Stats {
                active_provider: engine.provider.clone(),
                ..Stats::default()
            },
            ..Shared::default()
        };
        // Sync until the first frame tells whether the pipeline is live (mode=auto).
        let asynchronous = settings.mode == ModeChoice::Async;
        *self.state.lock().unwrap() = Some(self.start_runner(engine, asynchronous)?);
        if settings.reload_on_change {
            self.start_watcher();
        }
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        self.stop_watcher();
        if let Some(t) = self.loading.lock().unwrap().take() {
            let _ = t.join();
        }
        // Taken out first: leaving a shared instance may wait for its worker.
        let state = self.state.lock().unwrap().take();
        if let Some(state) = state {
            state.runner.stop(&self.shared);
        }
        Ok(())
    }

    fn sink_event(&self, event: gst::Event) -> bool {
        match event.view() {
            gst::EventView::FlushStart(_) => {
                // A sync frame waiting for a shared instance gives up, then the instance
                // stops waiting for this member.
                self.interrupt_wait();
                self.idle_in_instance();
            }
            gst::EventView::Eos(_) => self.idle_in_instance(),
            _ => {}
        }
        if let gst::EventView::FlushStop(_) = event.view() {
            self.shared.0.lock().unwrap().interrupted = false;
            // No result from before a seek or flush may be drawn after it, and the first
            // frame after it is inferred (interval counts from there).
            self.shared.0.lock().unwrap().drop_results();
            if let Some(state) = self.state.lock().unwrap().as_mut() {
                state.frame_count = 0;
            }
        }
        self.parent_sink_event(event)
    }

    fn query(&self, direction: gst::PadDirection, query: &mut gst::QueryRef) -> bool {
        if direction == gst::PadDirection::Sink && meta::is_contract_query(query) {
            let guard = self.state.lock().unwrap();
            return match guard.as_ref() {
                Some(state) => {
                    let source = self.settings.lock().unwrap().model.clone().map(|model| {
                        meta::ModelSource {
                            model,
                            input_name: state.input_name.clone(),
                        }
                    });
                    meta::answer_contract_query(query, &state.input, source.as_ref())
                }
                None => false,
            };
        }
        if direction == gst::PadDirection::Src && meta::is_inference_query(query) {
            let asynchronous = self.is_asynchronous();
            return meta::answer_inference_query(query, asynchronous);
        }
        if direction == gst::PadDirection::Src
            && let gst::QueryViewMut::Latency(q) = query.view_mut()
        {
            return self.answer_latency(q);
        }
        BaseTransformImplExt::parent_query(self, direction, query)
    }

    fn transform_ip(&self, buf: &mut gst::BufferRef) -> Result<gst::FlowSuccess, gst::FlowError> {
        let input = InputTensor::from_buffer(buf).ok_or_else(|| {
            flow_error(
                self,
                gst::error_msg!(
                    gst::StreamError::Format,
                    ("the frame carries no input tensor: put segpreproc directly before ffnetinfer (… ! segpreproc ! ffnetinfer model=… ! …)")
                ),
            )
        })?;
        let (mode, interval) = {
            let s = self.settings.lock().unwrap();
            (s.mode, u64::from(s.interval.max(1)))
        };
        let mut guard = self.state.lock().unwrap();
        // Stopped under our feet (state change to READY): not an error.
        let state = guard.as_mut().ok_or(gst::FlowError::Flushing)?;
        let still_sync = !state.asynchronous;
        if mode == ModeChoice::Auto
            && still_sync
            && state.frame_count == 0
            && self.upstream_is_live()
        {
            self.go_async(state)?;
        }
        if !self.tensor_fits(state, &input)? {
            state.frame_count += 1;
            return Ok(gst::FlowSuccess::Ok);
        }
        let due = state.frame_count.is_multiple_of(interval);
        state.frame_count += 1;
        let job = Job {
            tensor: input.tensor,
            spec: input.spec,
            region: input.region,
            pts: buf.pts(),
            epoch: 0,
        };
        let result = match &mut state.runner {
            Runner::Sync(engine) => self.infer_now(engine, &job, due)?,
            Runner::Async(_) => self.queue_job(job, due)?,
            Runner::Shared(_) => self.infer_shared(state, job, due)?,
        };
        #[cfg(feature = "analytics")]
        let output_id = state.output_id;
        drop(guard);
        if let Some(stats) = self.count_frame(result.as_ref(), buf.pts()) {
            self.post_stats(&stats);
        }
        if let Some(scores) = result {
            scores.attach(buf).map_err(|e| {
                flow_error(
                    self,
                    gst::error_msg!(gst::CoreError::Failed, ("cannot attach the scores: {e}")),
                )
            })?;
            // The same scores buffer again, as GStreamer's standard tensor meta.
            #[cfg(feature = "analytics")]
            crate::analytics::attach_output_tensor(
                buf,
                &scores.scores,
                &scores.output_spec(),
                output_id,
            );
        }
        Ok(gst::FlowSuccess::Ok)
    }
}
