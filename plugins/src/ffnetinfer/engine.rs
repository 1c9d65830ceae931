//! A loaded model with its pool of score buffers, and one inference on one frame's tensor.

use std::borrow::Cow;
use std::fmt;
use std::time::Instant;

use gst::glib;
use gst::prelude::*;

use ffnetseg::inference::{InferenceSession, ModelContract, SessionConfig};
use ffnetseg::tensor::Region;
use ffnetseg::tensor::{OutputSpec, TensorSpec};

use crate::error::engine_error;
use crate::meta::Scores;

/// A loaded model with its output buffers; moves to the worker thread in async mode.
pub struct Engine {
    session: InferenceSession,
    pool: gst::BufferPool,
    pub contract: ModelContract,
    pub provider: Cow<'static, str>,
    pub generation: u64,
    /// The GstTensor id of the output, and where it came from (analytics::tensor_id).
    #[cfg(feature = "analytics")]
    pub output_id: (glib::Quark, String),
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.pool.set_active(false);
    }
}

/// One frame's tensor waiting for inference.
pub struct Job {
    pub tensor: gst::Buffer,
    pub spec: TensorSpec,
    pub region: Region,
    pub pts: Option<gst::ClockTime>,
    /// Results of a job from an older epoch (before a flush or model change) are dropped.
    pub epoch: u64,
}

/// Why a model could not be opened.
pub enum OpenError {
    NoModel,
    Engine(ffnetseg::Error),
    Pool(glib::BoolError),
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::NoModel => write!(
                f,
                "no model: set ffnetinfer's model property to an .onnx file (e.g. \
                 model=models/selfie_segmentation.onnx)"
            ),
            OpenError::Engine(e) => write!(f, "{e}"),
            OpenError::Pool(e) => write!(f, "cannot allocate score buffers: {e}"),
        }
    }
}

impl OpenError {
    pub fn to_message(&self) -> gst::ErrorMessage {
        match self {
            OpenError::Engine(e) => engine_error("", e),
            OpenError::NoModel => gst::error_msg!(gst::ResourceError::OpenRead, ("{self}")),
            OpenError::Pool(_) => gst::error_msg!(gst::ResourceError::NoSpaceLeft, ("{self}")),
        }
    }
}

/// What opening a model says besides the engine: warnings for the user, and notes for the log.
pub struct Remarks {
    pub warnings: Vec<String>,
    pub notes: Vec<String>,
}

impl Engine {
    pub fn open(config: Option<SessionConfig>) -> Result<(Engine, Remarks), OpenError> {
        let config = config.ok_or(OpenError::NoModel)?;
        let session = InferenceSession::open(&config).map_err(OpenError::Engine)?;
        let contract = session.contract().clone();
        let pool = gst::BufferPool::new();
        let mut pc = pool.config();
        pc.set_params(None, (contract.output.element_count() * 4) as u32, 2, 0);
        pool.set_config(pc)
            .and_then(|_| pool.set_active(true))
            .map_err(OpenError::Pool)?;
        let remarks = Remarks {
            warnings: session.warnings().to_vec(),
            notes: session.notes().to_vec(),
        };
        let provider = Cow::Borrowed(session.active_provider().name());
        #[cfg(feature = "analytics")]
        let output_id = crate::analytics::tensor_id(&config.model, &contract.output_name);
        let engine = Engine {
            session,
            pool,
            contract,
            provider,
            generation: next_generation(),
            #[cfg(feature = "analytics")]
            output_id,
        };
        Ok((engine, remarks))
    }

    /// Runs one inference; returns the scores meta to attach and the time it took (ns).
    pub fn infer(&mut self, job: &Job, sequence: u64) -> Result<(Scores, u64), String> {
        let started = Instant::now();
        let tmap = job
            .tensor
            .map_readable()
            .map_err(|_| "cannot read the tensor".to_string())?;
        let pool = &self.pool;
        let (scores, actual) = self
            .session
            .run_with(tmap.as_slice(), &job.spec, |actual, data| {
                Ok::<_, String>((score_buffer(pool, data)?, actual))
            })
            .map_err(|e| e.to_string())??;
        let elapsed = started.elapsed().as_nanos() as u64;
        let scores = self.scores_of(job, scores, actual, sequence, elapsed);
        Ok((scores, elapsed))
    }

    /// Whether several frames can run in one inference (the model's batch is dynamic).
    pub fn supports_batches(&self) -> bool {
        self.session.supports_batches()
    }

    /// The model's fixed batch when it is above 1 (short batches are padded).
    pub fn fixed_batch(&self) -> Option<usize> {
        self.session.fixed_batch()
    }

    /// Runs the jobs (all of the same tensor spec) batched; returns each job's scores in
    /// the jobs' order, each saying its slot in, and the frames of, the inference that ran
    /// it, and the time it all took (ns).
    pub fn infer_batch(&mut self, jobs: &[&Job]) -> Result<(Vec<Scores>, u64), String> {
        let started = Instant::now();
        let spec = jobs.first().ok_or("an empty batch")?.spec;
        let maps = jobs
            .iter()
            .map(|j| j.tensor.map_readable())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| "cannot read a tensor".to_string())?;
        let inputs: Vec<&[u8]> = maps.iter().map(|m| m.as_slice()).collect();
        let pool = &self.pool;
        let mut made: Vec<Option<Result<_, String>>> = (0..jobs.len()).map(|_| None).collect();
        self.session
            .run_batch(&inputs, &spec, |at, actual, data| {
                if let Some(m) = made.get_mut(at.frame) {
                    *m = Some(score_buffer(pool, data).map(|b| (b, actual, at)));
                }
            })
            .map_err(|e| e.to_string())?;
        let elapsed = started.elapsed().as_nanos() as u64;
        let mut scores = Vec::with_capacity(jobs.len());
        for (job, result) in jobs.iter().zip(made) {
            let (buffer, actual, at) = result.ok_or("the model gave no scores for a slot")??;
            let mut s = self.scores_of(job, buffer, actual, 0, elapsed);
            (s.batch_slot, s.batch_size) = (at.slot as u32, at.frames as u32);
            scores.push(s);
        }
        Ok((scores, elapsed))
    }

    /// The scores meta of one job's result.
    fn scores_of(
        &self,
        job: &Job,
        scores: gst::Buffer,
        actual: OutputSpec,
        sequence: u64,
        elapsed: u64,
    ) -> Scores {
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
            provider: self.provider.clone(),
            inference_ns: elapsed,
            model_generation: self.generation,
            instance: None,
            batch_slot: 0,
            batch_size: 1,
        }
    }
}

/// The scores in a pooled buffer (static models), or a fresh one when a dynamic-size
/// model made another size.
fn score_buffer(pool: &gst::BufferPool, data: &[f32]) -> Result<gst::Buffer, String> {
    let bytes: &[u8] = bytemuck::cast_slice(data);
    let mut buffer = match pool.acquire_buffer(None) {
        Ok(b) if b.size() == bytes.len() => b,
        _ => gst::Buffer::with_size(bytes.len()).map_err(|e| e.to_string())?,
    };
    let sref = buffer.get_mut().ok_or("score buffer is shared")?;
    let mut smap = sref
        .map_writable()
        .map_err(|_| "cannot write the scores".to_string())?;
    smap.as_mut_slice().copy_from_slice(bytes);
    drop(smap);
    Ok(buffer)
}

/// A process-wide counter, so every loaded model has its own generation.
fn next_generation() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}
