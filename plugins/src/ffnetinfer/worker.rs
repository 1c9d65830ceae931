//! What the streaming thread and the async inference worker share, and the worker itself:
//! it always takes the newest frame's job, runs it, and publishes the result.

use std::borrow::Cow;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use gst::glib;

use super::engine::{Engine, Job};
use crate::meta::Scores;

/// What the streaming thread and the worker share.
#[derive(Default)]
pub struct Shared {
    /// Newest finished result.
    pub latest: Option<Scores>,
    pub sequence: u64,
    /// Bumped on flush and model change: results of older jobs are thrown away.
    pub epoch: u64,
    /// Async: the next job (always the newest frame; older pending ones are replaced).
    pub pending: Option<Job>,
    /// Async: a newly loaded model for the worker to take between two inferences.
    pub next_engine: Option<Engine>,
    pub stop: bool,
    pub stats: Stats,
    /// Set when async inference failed: the stream stops instead of reusing old results.
    pub failed: Option<String>,
    /// Shared instance, sync: the last frame handed to the instance (a ticket number), the
    /// last one answered, and that answer (None: the frame passes without a new result).
    pub ticket: u64,
    pub answered: u64,
    pub answer: Option<Scores>,
    /// Shared instance, sync: a flush or stop tells the waiting frame to give up.
    pub interrupted: bool,
}

impl Shared {
    /// Forgets results and pending work from before a flush or a model change.
    pub fn drop_results(&mut self) {
        self.epoch += 1;
        self.latest = None;
        self.pending = None;
    }
}

#[derive(Default, Clone)]
pub struct Stats {
    pub active_provider: Cow<'static, str>,
    pub inferences: u64,
    pub frames: u64,
    pub frames_reused: u64,
    pub last_inference_ns: u64,
    pub total_inference_ns: u64,
    pub started: Option<Instant>,
}

impl Stats {
    pub fn record_inference(&mut self, elapsed: u64) {
        self.inferences += 1;
        self.last_inference_ns = elapsed;
        self.total_inference_ns += elapsed;
    }

    pub fn mean_inference_ms(&self) -> f64 {
        if self.inferences == 0 {
            return 0.0;
        }
        self.total_inference_ns as f64 / self.inferences as f64 / 1e6
    }
}

pub type SharedState = Arc<(Mutex<Shared>, Condvar)>;

/// Where inference runs: in the streaming thread, on the worker thread, or on a shared
/// instance's worker (sync or async as the element's State says).
pub enum Runner {
    Sync(Box<Engine>),
    Async(Option<JoinHandle<()>>),
    Shared(super::instance::Membership),
}

impl Runner {
    pub fn start(
        engine: Engine,
        asynchronous: bool,
        shared: &SharedState,
        element: glib::WeakRef<super::FfnetInfer>,
    ) -> std::io::Result<Runner> {
        if !asynchronous {
            return Ok(Runner::Sync(Box::new(engine)));
        }
        let shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("ffnetinfer-worker".into())
            .spawn(move || worker_loop(engine, shared, element))?;
        Ok(Runner::Async(Some(thread)))
    }

    /// Stops and joins the worker (async); leaves a shared instance (the last member to
    /// leave stops its worker and frees its session).
    pub fn stop(self, shared: &SharedState) {
        if let Runner::Async(Some(thread)) = self {
            let (lock, cvar) = &**shared;
            lock.lock().unwrap().stop = true;
            cvar.notify_all();
            let _ = thread.join();
        }
    }
}

/// Waits for the next job (taking a newly loaded model on the way); None when told to stop.
fn next_job(engine: &mut Engine, shared: &SharedState) -> Option<Job> {
    let (lock, cvar) = &**shared;
    let mut s = lock.lock().unwrap();
    loop {
        if s.stop {
            return None;
        }
        if let Some(e) = s.next_engine.take() {
            *engine = e;
        }
        if let Some(job) = s.pending.take() {
            return Some(job);
        }
        s = cvar.wait(s).unwrap();
    }
}

/// The async worker: waits for the newest job, runs it, publishes the result.
fn worker_loop(mut engine: Engine, shared: SharedState, element: glib::WeakRef<super::FfnetInfer>) {
    let (lock, _) = &*shared;
    while let Some(job) = next_job(&mut engine, &shared) {
        let sequence = lock.lock().unwrap().sequence + 1;
        match engine.infer(&job, sequence) {
            Ok((scores, elapsed)) => {
                let mut s = lock.lock().unwrap();
                s.stats.record_inference(elapsed);
                if job.epoch == s.epoch {
                    s.sequence = sequence;
                    s.latest = Some(scores);
                }
            }
            Err(e) => {
                lock.lock().unwrap().failed = Some(e.clone());
                // Said at once, not at the next frame (there may be none).
                if let Some(el) = element.upgrade() {
                    gst::element_error!(el, gst::StreamError::Failed, ("inference failed: {e}"));
                }
                return;
            }
        }
    }
}
