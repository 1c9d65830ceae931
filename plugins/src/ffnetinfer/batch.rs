//! The worker of a shared instance ([`super::instance`]): it gathers up to `batch-size`
//! frames, at most one per member (each member's newest), oldest-waiting first so that no
//! member is passed over; it waits for the others at most `batch-timeout` after the oldest
//! frame came in, and never for members at EOS, flushed or gone. A model with a dynamic
//! batch runs the gathered frames in one inference; a batch-1 model runs them one after
//! another. Each member gets its own frame's result, in its own state.

use std::sync::Arc;
use std::time::Instant;

use gst::glib;

use ffnetseg::tensor::TensorSpec;

use super::engine::{Engine, Job};
use super::imp::CAT;
use super::instance::{Core, Pool};
use super::worker::SharedState;
use crate::meta::Scores;

/// One member's frame taken for an inference.
struct Taken {
    member: u64,
    job: Job,
    ticket: Option<u64>,
    shared: SharedState,
    element: glib::WeakRef<super::FfnetInfer>,
}

pub(super) fn worker_loop(core: Arc<Core>, mut engine: Engine) {
    describe_batching(&core, &engine);
    while let Some(frames) = gather(&core, &mut engine) {
        run(&core, &mut engine, frames);
    }
}

/// The one line that says how the gathered frames run with this model.
fn describe_batching(core: &Core, engine: &Engine) {
    let size = core.batching.size;
    let name = &core.name;
    match (engine.supports_batches(), engine.fixed_batch()) {
        _ if size < 2 => {}
        (true, None) => gst::info!(
            CAT,
            "shared-instance \"{name}\": up to {size} frames (one per member) run in one inference"
        ),
        (true, Some(fixed)) => gst::info!(
            CAT,
            "shared-instance \"{name}\": the model takes a fixed batch of {fixed}: the up to \
             {size} frames gathered per round run {fixed} per inference, a short round padded"
        ),
        (false, _) => gst::info!(
            CAT,
            "shared-instance \"{name}\": the model has a fixed batch of 1, so the up to {size} \
             frames gathered per round run one after another on the shared session (a model \
             with a dynamic batch dimension runs them in one inference: models/make_dynamic_batch.py)"
        ),
    }
}

/// Waits until enough frames are waiting (or the oldest has waited batch-timeout) and
/// takes them; takes a newly loaded model on the way. None when told to stop.
fn gather(core: &Core, engine: &mut Engine) -> Option<Vec<Taken>> {
    let mut pool = core.pool.lock().unwrap();
    loop {
        if pool.stop {
            return None;
        }
        if let Some(e) = pool.next_engine.take() {
            *engine = e;
            describe_batching(core, engine);
        }
        let oldest = pool
            .members
            .iter()
            .filter(|m| m.pending.is_some())
            .filter_map(|m| m.waiting_since)
            .min();
        let Some(oldest) = oldest else {
            pool = core.wake.wait(pool).unwrap();
            continue;
        };
        let waiting = pool.members.iter().filter(|m| m.pending.is_some()).count();
        let active = pool.members.iter().filter(|m| !m.idle).count();
        let want = core.batching.size.min(active).max(1);
        let deadline = oldest + core.batching.timeout;
        let now = Instant::now();
        if waiting >= want || now >= deadline {
            return Some(take_oldest(&mut pool, core.batching.size));
        }
        pool = core.wake.wait_timeout(pool, deadline - now).unwrap().0;
    }
}

/// The `n` frames that have waited longest, one per member.
fn take_oldest(pool: &mut Pool, n: usize) -> Vec<Taken> {
    let mut order: Vec<usize> = (0..pool.members.len())
        .filter(|&i| pool.members[i].pending.is_some())
        .collect();
    order.sort_by_key(|&i| pool.members[i].waiting_since);
    order.truncate(n);
    order
        .into_iter()
        .filter_map(|i| {
            let m = &mut pool.members[i];
            m.waiting_since = None;
            let p = m.pending.take()?;
            Some(Taken {
                member: m.id,
                job: p.job,
                ticket: p.ticket,
                shared: m.shared.clone(),
                element: m.element.clone(),
            })
        })
        .collect()
}

/// Whether a tensor fits the model (it may have been made for the previous one, just
/// before a swap).
fn fits(spec: &TensorSpec, want: &TensorSpec) -> bool {
    let size_ok = want.is_dynamic() || (spec.width == want.width && spec.height == want.height);
    size_ok && spec.layout == want.layout && spec.dtype == want.dtype
}

fn run(core: &Core, engine: &mut Engine, frames: Vec<Taken>) {
    let want = engine.contract.input;
    let (frames, stale): (Vec<_>, Vec<_>) =
        frames.into_iter().partition(|t| fits(&t.job.spec, &want));
    for t in stale {
        // Made for the previous model: the frame passes without a new result.
        deliver(core, t, None);
    }
    let n = frames.len();
    let same_spec = frames.windows(2).all(|w| w[0].job.spec == w[1].job.spec);
    // A model with a fixed batch runs even one frame as a (padded) batch.
    let batched = n > 1 || engine.fixed_batch().is_some();
    if batched && same_spec && engine.supports_batches() {
        let jobs: Vec<&Job> = frames.iter().map(|t| &t.job).collect();
        match engine.infer_batch(&jobs) {
            Ok((scores, _)) => {
                for (t, s) in frames.into_iter().zip(scores) {
                    deliver(core, t, Some(Ok(s)));
                }
                return;
            }
            // One by one, so that only the frame that fails fails its stream.
            Err(e) => gst::debug!(
                CAT,
                "shared-instance \"{}\": batched inference failed ({e}); running its frames one by one",
                core.name
            ),
        }
    }
    for t in frames {
        let result = engine.infer(&t.job, 0).map(|(scores, _)| scores);
        deliver(core, t, Some(result));
    }
}

/// Hands a frame's result to its member: as its newest result, and as the answer a sync
/// member waits for. None: no result for this frame. A failure stops that member only.
fn deliver(core: &Core, t: Taken, result: Option<Result<Scores, String>>) {
    let (lock, cvar) = &*t.shared;
    let mut s = lock.lock().unwrap();
    let mut failure = None;
    let answer = match result {
        Some(Ok(mut scores)) => {
            s.stats.record_inference(scores.inference_ns);
            s.sequence += 1;
            scores.sequence = s.sequence;
            scores.instance = Some(core.name.clone());
            if t.job.epoch == s.epoch {
                s.latest = Some(scores.clone());
            }
            Some(scores)
        }
        Some(Err(e)) => {
            s.failed = Some(e.clone());
            failure = Some(e);
            None
        }
        None => None,
    };
    if let Some(ticket) = t.ticket {
        s.answered = s.answered.max(ticket);
        s.answer = answer;
    }
    cvar.notify_all();
    drop(s);
    if let Some(e) = failure {
        // Its stream stops; the others are not kept waiting for it.
        if let Some(m) = core
            .pool
            .lock()
            .unwrap()
            .members
            .iter_mut()
            .find(|m| m.id == t.member)
        {
            m.idle = true;
        }
        if let Some(el) = t.element.upgrade() {
            gst::element_error!(el, gst::StreamError::Failed, ("inference failed: {e}"));
        }
    }
}
