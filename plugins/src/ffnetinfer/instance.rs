//! Shared instances (`shared-instance=NAME`): one model session and one inference worker
//! for every ffnetinfer of the process that names the same instance, e.g. one per camera.
//!
//! A process-wide registry maps each name to its instance. The first member to start
//! loads the model; later members join only when every setting that shapes the session
//! agrees (the model, provider, its options, …), else they fail to start naming the
//! setting. Each member hands its frames to the instance's worker ([`super::batch`]),
//! which runs them (batched when the model allows) and answers each member in its own
//! [`Shared`](super::worker::Shared) state. The last member to leave stops the worker and
//! frees the session. A hot model swap on any member swaps the instance for all of them.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gst::glib;
use gst::subclass::prelude::*;

use ffnetseg::tensor::TensorSpec;

use super::batch;
use super::engine::{Engine, Job};
use super::imp::CAT;
use super::worker::SharedState;

/// The settings that shape a session, as (property name, value): members must agree.
pub type SessionKey = Vec<(&'static str, String)>;

/// Instances by name. Entries are weak: the members hold the instances.
static REGISTRY: Mutex<BTreeMap<String, Weak<Instance>>> = Mutex::new(BTreeMap::new());

/// How many members the instance `name` has now; None when there is no such instance
/// (never made, or its last member left and its session was freed).
pub fn members(name: &str) -> Option<usize> {
    let registry = REGISTRY.lock().unwrap();
    let instance = registry.get(name)?.upgrade();
    // Released first: dropping the last strong reference here would free the instance,
    // which takes the registry's lock.
    drop(registry);
    Some(instance.map_or(0, |i| i.core.pool.lock().unwrap().members.len()))
}

/// How the instance gathers frames into one inference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batching {
    pub size: usize,
    pub timeout: Duration,
}

pub struct Instance {
    core: Arc<Core>,
    worker: Mutex<Option<JoinHandle<()>>>,
}

/// What the members and the worker share.
pub(super) struct Core {
    pub name: Arc<str>,
    pub batching: Batching,
    pub pool: Mutex<Pool>,
    /// Wakes the worker: a new frame, a member left, a new model, stop.
    pub wake: Condvar,
}

pub(super) struct Pool {
    pub key: SessionKey,
    /// The model it runs now (kept in step with swaps), for joining members.
    facts: ModelFacts,
    pub members: Vec<Member>,
    /// A newly loaded model for the worker to take between two inferences.
    pub next_engine: Option<Engine>,
    pub stop: bool,
    next_id: u64,
}

pub(super) struct Member {
    pub id: u64,
    pub shared: SharedState,
    pub element: glib::WeakRef<super::FfnetInfer>,
    /// The member's newest frame not yet inferred.
    pub pending: Option<Pending>,
    /// Since when the member has had a frame waiting (kept when a newer frame replaces
    /// it, so that oldest-first gathering is also fair between members).
    pub waiting_since: Option<Instant>,
    /// At EOS or after a flush: not waited for until it hands in a frame again.
    pub idle: bool,
}

pub(super) struct Pending {
    pub job: Job,
    /// Sync members wait for this ticket's answer; None for async members.
    pub ticket: Option<u64>,
}

/// A member's place in an instance; leaving (dropping it) never disturbs the others.
pub struct Membership {
    instance: Arc<Instance>,
    id: u64,
}

/// What a joining member learns.
pub struct Joined {
    pub membership: Membership,
    /// Whether this member loaded the model (the first member).
    pub loaded_here: bool,
    pub members: usize,
}

/// The model an instance runs now, as its members need to know it.
#[derive(Clone)]
pub struct ModelFacts {
    pub input: TensorSpec,
    /// The input's name in the model (segpreproc's `.modelinfo` section).
    pub input_name: String,
    /// The GstTensor id of the model output (analytics builds).
    #[cfg(feature = "analytics")]
    pub output_id: gst::glib::Quark,
    pub provider: Cow<'static, str>,
    /// The model's path as the member that loaded it was given it.
    pub model: Option<std::path::PathBuf>,
}

impl ModelFacts {
    /// What members need to know of `engine`, loaded from `model`.
    fn of(engine: &Engine, model: Option<std::path::PathBuf>) -> ModelFacts {
        ModelFacts {
            input: engine.contract.input,
            input_name: engine.contract.input_name.clone(),
            #[cfg(feature = "analytics")]
            output_id: engine.output_id.0,
            provider: engine.provider.clone(),
            model,
        }
    }
}

/// Joins the instance `name`, making it (and loading the model with `load`) when it does
/// not exist. `key` must equal the instance's.
pub fn join(
    name: &str,
    key: SessionKey,
    batching: Batching,
    load: impl FnOnce() -> Result<(Engine, Option<std::path::PathBuf>), gst::ErrorMessage>,
    shared: SharedState,
    element: glib::WeakRef<super::FfnetInfer>,
) -> Result<(Joined, ModelFacts), gst::ErrorMessage> {
    // Held while the first member loads: a second member waits and then joins. Sessions
    // are created one at a time in any case (InferenceSession::open).
    let mut registry = REGISTRY.lock().unwrap();
    if let Some(instance) = registry.get(name).and_then(Weak::upgrade) {
        let admitted = instance.admit(&key, batching, shared, element);
        // Released before our reference goes: were it the last, freeing the instance
        // takes the registry's lock.
        drop(registry);
        drop(instance);
        return admitted;
    }
    let (engine, model) = load()?;
    let instance = Instance::start(name, key, batching, engine, model)?;
    registry.insert(name.to_string(), Arc::downgrade(&instance));
    let (mut joined, facts) = instance.admit(&[], batching, shared, element)?;
    joined.loaded_here = true;
    Ok((joined, facts))
}

impl Instance {
    fn start(
        name: &str,
        key: SessionKey,
        batching: Batching,
        engine: Engine,
        model: Option<std::path::PathBuf>,
    ) -> Result<Arc<Instance>, gst::ErrorMessage> {
        let facts = ModelFacts::of(&engine, model);
        let core = Arc::new(Core {
            name: Arc::from(name),
            batching,
            pool: Mutex::new(Pool {
                key,
                facts,
                members: Vec::new(),
                next_engine: None,
                stop: false,
                next_id: 1,
            }),
            wake: Condvar::new(),
        });
        let worker_core = core.clone();
        let thread = std::thread::Builder::new()
            .name(format!("ffnetinfer-{name}"))
            .spawn(move || batch::worker_loop(worker_core, engine))
            .map_err(|e| {
                gst::error_msg!(
                    gst::ResourceError::Failed,
                    ("cannot start the inference thread of shared-instance \"{name}\": {e}")
                )
            })?;
        Ok(Arc::new(Instance {
            core,
            worker: Mutex::new(Some(thread)),
        }))
    }

    /// Adds a member whose settings agree (`key` empty: the member that made it).
    fn admit(
        self: &Arc<Self>,
        key: &[(&'static str, String)],
        batching: Batching,
        shared: SharedState,
        element: glib::WeakRef<super::FfnetInfer>,
    ) -> Result<(Joined, ModelFacts), gst::ErrorMessage> {
        let mut pool = self.core.pool.lock().unwrap();
        if !key.is_empty() {
            self.check_agrees(&pool.key, key, batching)?;
        }
        let id = pool.next_id;
        pool.next_id += 1;
        pool.members.push(Member {
            id,
            shared,
            element,
            pending: None,
            waiting_since: None,
            idle: true,
        });
        let joined = Joined {
            membership: Membership {
                instance: self.clone(),
                id,
            },
            loaded_here: false,
            members: pool.members.len(),
        };
        Ok((joined, pool.facts.clone()))
    }

    fn check_agrees(
        &self,
        theirs: &SessionKey,
        ours: &[(&'static str, String)],
        batching: Batching,
    ) -> Result<(), gst::ErrorMessage> {
        let name = &self.core.name;
        let mut differs = ours
            .iter()
            .zip(theirs)
            .filter(|((_, a), (_, b))| a != b)
            .map(|((k, a), (_, b))| format!("{k}={a:?} (the instance has {b:?})"));
        let batching_differs = batching != self.core.batching;
        let Some(first) = differs.next() else {
            if batching_differs {
                let b = self.core.batching;
                return Err(disagreement(
                    name,
                    &format!(
                        "batch-size/batch-timeout (the instance has batch-size={} batch-timeout={})",
                        b.size,
                        b.timeout.as_millis()
                    ),
                ));
            }
            return Ok(());
        };
        Err(disagreement(name, &first))
    }

    /// A new model for every member: the worker takes it between two inferences; each
    /// member drops its older results (its smoothing restarts with the new generation).
    pub fn swap(&self, engine: Engine, model: Option<std::path::PathBuf>, model_key: String) {
        let facts = ModelFacts::of(&engine, model);
        let members: Vec<_> = {
            let mut pool = self.core.pool.lock().unwrap();
            if let Some(entry) = pool.key.iter_mut().find(|(k, _)| *k == "model") {
                entry.1 = model_key;
            }
            pool.facts = facts.clone();
            pool.next_engine = Some(engine);
            self.core.wake.notify_all();
            pool.members.iter().map(|m| m.element.clone()).collect()
        };
        // Outside the instance's lock: each member takes its own locks.
        for el in members.iter().filter_map(|w| w.upgrade()) {
            el.imp().adopt_model(&facts);
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.core.pool.lock().unwrap().stop = true;
        self.core.wake.notify_all();
        if let Some(t) = self.worker.lock().unwrap().take() {
            let _ = t.join();
        }
        // The session is gone with the worker; a model loaded for a swap goes now.
        drop(self.core.pool.lock().unwrap().next_engine.take());
        let mut registry = REGISTRY.lock().unwrap();
        // Only our own entry: a member may have made a new instance of that name meanwhile.
        if registry
            .get(&*self.core.name)
            .is_some_and(|w| std::ptr::eq(w.as_ptr(), self))
        {
            registry.remove(&*self.core.name);
        }
        gst::info!(
            CAT,
            "shared-instance \"{}\": last member left, session freed",
            self.core.name
        );
    }
}

fn disagreement(name: &str, what: &str) -> gst::ErrorMessage {
    gst::error_msg!(
        gst::ResourceError::Settings,
        ("shared-instance \"{name}\": this element's {what}; every member of a shared \
             instance must have the same model, provider, provider-options, threads, \
             disable-cpu-fallback, ort-library, ep-library, context-cache, spin, verify-digest, \
             batch-size and batch-timeout (or use another shared-instance name)")
    )
}

impl Membership {
    pub fn instance(&self) -> &Arc<Instance> {
        &self.instance
    }

    /// Hands the member's newest frame to the worker (replacing one still waiting).
    pub fn submit(&self, job: Job, ticket: Option<u64>) {
        let core = &self.instance.core;
        let mut pool = core.pool.lock().unwrap();
        if let Some(m) = pool.members.iter_mut().find(|m| m.id == self.id) {
            m.waiting_since.get_or_insert_with(Instant::now);
            m.pending = Some(Pending { job, ticket });
            m.idle = false;
        }
        core.wake.notify_all();
    }

    /// At EOS or a flush: the worker stops waiting for this member's frames (and drops a
    /// frame still waiting) until it hands in a new one.
    pub fn set_idle(&self) {
        let core = &self.instance.core;
        let mut pool = core.pool.lock().unwrap();
        if let Some(m) = pool.members.iter_mut().find(|m| m.id == self.id) {
            m.idle = true;
            m.pending = None;
            m.waiting_since = None;
        }
        core.wake.notify_all();
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        let core = &self.instance.core;
        core.pool
            .lock()
            .unwrap()
            .members
            .retain(|m| m.id != self.id);
        // The worker may be waiting for this member's frame to fill a batch.
        core.wake.notify_all();
    }
}
