//! One inference on the frames of several streams at once (ffnetinfer's shared instances,
//! `batch-size`), for models whose batch dimension is dynamic or fixed above 1.
//!
//! The frames' tensors are copied side by side into one N×… input that the session keeps
//! from run to run, the model runs once, and its N×… scores are handed out slot by slot
//! (slot i = the i-th input). A model with a fixed batch of N (an NPU export, or a symbolic
//! batch fixed for QNN) runs at most N frames per inference: fewer are padded with zeros,
//! whose scores are dropped, and more run in groups of N. A model with a fixed batch of 1
//! has no batched run: the caller runs the frames one after another instead.

use ort::session::Session;
use ort::value::ValueType;

use super::contract::{ModelBatch, ModelContract};
use super::{InferenceSession, actual_output, check_input, input_value, scores_of};
use crate::error::{Error, Result};
use crate::tensor::{OutputSpec, TensorSpec};

/// Where one frame of a [`InferenceSession::run_batch`] ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSlot {
    /// Its index in the inputs given.
    pub frame: usize,
    /// Its slot in the inference that ran it.
    pub slot: usize,
    /// The frames (padding not counted) that inference ran.
    pub frames: usize,
}

/// What a batched run keeps between runs.
pub(super) struct BatchRun {
    /// The N frames side by side; u64 words so that any element type is aligned.
    input: Vec<u64>,
    /// The model's fixed batch; None: any number of frames per run.
    fixed: Option<usize>,
}

impl BatchRun {
    /// Some when the model takes a fixed batch above 1, or when its input and scores output
    /// both have a dynamic first (batch) dimension and the output is 4-D (a 3-D output's
    /// first axis is read as classes).
    pub(super) fn prepare(session: &Session, contract: &ModelContract) -> Option<BatchRun> {
        if let ModelBatch::Fixed(n @ 2..) = contract.batch {
            return Some(BatchRun {
                input: Vec::new(),
                fixed: Some(n),
            });
        }
        let first_dim = |shape: &[i64], rank: usize| (shape.len() == rank).then(|| shape[0]);
        let input = session.inputs().first()?;
        let output = session
            .outputs()
            .iter()
            .find(|o| o.name() == contract.output_name)?;
        let (ValueType::Tensor { shape: ishape, .. }, ValueType::Tensor { shape: oshape, .. }) =
            (input.dtype(), output.dtype())
        else {
            return None;
        };
        let dynamic = first_dim(ishape, 4) == Some(-1) && first_dim(oshape, 4) == Some(-1);
        dynamic.then(|| BatchRun {
            input: Vec::new(),
            fixed: None,
        })
    }
}

impl InferenceSession {
    /// Whether the model takes several frames in one run (its batch is dynamic or fixed
    /// above 1).
    pub fn supports_batches(&self) -> bool {
        self.batch.is_some()
    }

    /// The model's fixed batch when it is above 1 (every run carries that many frames,
    /// padded), else None.
    pub fn fixed_batch(&self) -> Option<usize> {
        self.batch.as_ref().and_then(|b| b.fixed)
    }

    /// Runs the model on all `inputs` (each one frame's tensor laid out as `spec`): once,
    /// or in groups of a fixed batch, and hands each frame's scores to `consume` with where
    /// it ran.
    pub fn run_batch(
        &mut self,
        inputs: &[&[u8]],
        spec: &TensorSpec,
        mut consume: impl FnMut(BatchSlot, OutputSpec, &[f32]),
    ) -> Result<()> {
        let Some(fixed) = self.batch.as_ref().map(|b| b.fixed) else {
            return Err(Error::Input(
                "the model has a fixed batch of 1: run the frames one by one".into(),
            ));
        };
        for input in inputs {
            check_input(&self.contract.input, spec, input)?;
        }
        let group = fixed.unwrap_or(inputs.len().max(1));
        for (g, frames) in inputs.chunks(group).enumerate() {
            let padded_to = fixed.unwrap_or(frames.len());
            self.run_group(frames, padded_to, spec, |slot, actual, scores| {
                let at = BatchSlot {
                    frame: g * group + slot,
                    slot,
                    frames: frames.len(),
                };
                consume(at, actual, scores)
            })?;
        }
        Ok(())
    }

    /// One inference on `frames` side by side, zero-padded to `padded_to` slots.
    fn run_group(
        &mut self,
        frames: &[&[u8]],
        padded_to: usize,
        spec: &TensorSpec,
        mut consume: impl FnMut(usize, OutputSpec, &[f32]),
    ) -> Result<()> {
        let batch = self.batch.as_mut().expect("checked by run_batch");
        let frame = spec.byte_size();
        batch.input.clear();
        batch.input.resize((padded_to * frame).div_ceil(8), 0);
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(batch.input.as_mut_slice());
        for (slot, input) in frames.iter().enumerate() {
            bytes[slot * frame..(slot + 1) * frame].copy_from_slice(input);
        }
        let mut shape = spec.shape();
        shape[0] = padded_to as i64;
        let bytes: &[u8] = bytemuck::cast_slice(batch.input.as_slice());
        let value = input_value(spec, shape, &bytes[..padded_to * frame])?;
        let outputs = self
            .session
            .run_with_options(ort::inputs![value], &self.run_options)
            .map_err(|e| Error::Inference(e.to_string()))?;
        let (dims, data) = scores_of(&outputs, &self.contract, &mut self.dequantized)?;
        if dims[0] != padded_to as i64 || data.len() % padded_to != 0 {
            return Err(Error::Inference(format!(
                "the model returned scores of shape {dims:?} for a batch of {padded_to}"
            )));
        }
        let per_frame = data.len() / padded_to;
        let one = [1, dims[1], dims[2], dims[3]];
        for (slot, scores) in data.chunks_exact(per_frame).take(frames.len()).enumerate() {
            consume(slot, actual_output(&one, scores, &self.contract)?, scores);
        }
        Ok(())
    }
}
