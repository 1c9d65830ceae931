//! The model contract: one image input, one score-map output, read from the model itself
//! (ONNX Runtime's declared inputs and outputs, and the Q/DQ nodes of quantized models).

use std::path::Path;

use ort::session::Session;
use ort::value::{Outlet, TensorElementType, ValueType};

use super::onnx_proto::ModelFile;
use crate::error::{Error, Result};
use crate::tensor::{DType, Layout, OutputSpec, Quantization, TensorSpec, guess_layout};

/// What the model takes and gives, read from the model file.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelContract {
    pub input_name: String,
    pub input: TensorSpec,
    pub output_name: String,
    pub output: OutputSpec,
    /// Set for uint8/uint16 outputs, which ffnetinfer dequantizes to f32 scores.
    pub output_quantization: Option<Quantization>,
    /// Frames per run; `input` and `output` describe one frame of it.
    pub batch: ModelBatch,
}

/// The model's batch dimension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelBatch {
    /// Symbolic: any number of frames per run.
    Dynamic,
    /// Exactly this many frames per run (an NPU export made static, e.g. batch 4).
    Fixed(usize),
}

impl ModelBatch {
    fn of(shape: &[i64]) -> ModelBatch {
        match shape.first() {
            Some(&n) if n > 1 && shape.len() == 4 => ModelBatch::Fixed(n as usize),
            Some(&n) if n < 0 => ModelBatch::Dynamic,
            _ => ModelBatch::Fixed(1),
        }
    }

    /// The shape of one frame of it (batch 1), which the contract describes.
    fn one_frame(shape: &[i64]) -> Vec<i64> {
        let mut one = shape.to_vec();
        if let ModelBatch::Fixed(2..) = ModelBatch::of(shape) {
            one[0] = 1;
        }
        one
    }
}

/// A score map whose shorter side is this many times (or more) shorter, relative to the
/// input's proportions, cannot come from a segmentation model, which keeps the picture's
/// proportions (e.g. FFNet: 1024×2048 in, 128×256 out).
const MAX_ASPECT_DISTORTION: f64 = 4.0;

/// Reads the model contract from the session's declared inputs and outputs. Returns it with
/// a warning when the output is legal but implausible as a score map.
pub(super) fn read_contract(
    session: &Session,
    path: &Path,
    file: &ModelFile,
) -> Result<(ModelContract, Option<String>)> {
    // The Q/DQ scales of quantized models are only in the file itself.
    let summary = || {
        file.summary()
            .map(|s| (s.input_quantization.clone(), s.output_quantization.clone()))
    };
    let (input_name, mut input, batch) = image_input(session, path)?;
    if input.dtype != DType::F32 {
        // The scale and zero point of a quantized input come from the DequantizeLinear
        // reading it; segpreproc quantizes with them.
        input.quantization = summary()
            .and_then(|(inputs, _)| inputs.get(&input_name).copied())
            .map(|(scale, zero_point)| Quantization { scale, zero_point });
    }
    let outputs = session.outputs();
    if outputs.is_empty() {
        return Err(Error::Model(format!("{} has no outputs", path.display())));
    }
    // Prefer an output called `mask` (the AI Hub contract), else the first.
    let output = outputs
        .iter()
        .find(|o| o.name() == "mask")
        .unwrap_or(&outputs[0]);
    let (oty, oshape) = tensor_type(output, "output")?;
    check_output_batch(output.name(), &oshape, batch)?;
    let oshape = ModelBatch::one_frame(&oshape);
    let output_quantization = output_quantization(output.name(), oty, || {
        summary().and_then(|(_, outputs)| outputs.get(output.name()).copied())
    })?;
    let spec = output_spec(output.name(), &oshape)?;
    let warning = check_score_map(output.name(), &oshape, &spec, &input)?;
    let contract = ModelContract {
        input_name,
        input,
        output_name: output.name().to_string(),
        output: spec,
        output_quantization,
        batch,
    };
    Ok((contract, warning))
}

/// A model with a fixed batch of N must give N score maps.
fn check_output_batch(name: &str, shape: &[i64], batch: ModelBatch) -> Result<()> {
    match batch {
        ModelBatch::Fixed(n) if n > 1 && (shape.len() != 4 || shape[0] != n as i64) => {
            Err(Error::Model(format!(
                "the input takes a batch of {n} frames but output '{name}' has shape                  {shape:?}; a batched model gives one score map per frame ({n}×…)"
            )))
        }
        _ => Ok(()),
    }
}

/// Element type and shape of a tensor input or output.
fn tensor_type(o: &Outlet, what: &str) -> Result<(TensorElementType, Vec<i64>)> {
    match o.dtype() {
        ValueType::Tensor { ty, shape, .. } => Ok((*ty, shape.to_vec())),
        other => Err(Error::Model(format!(
            "{what} '{}' is not a tensor ({other:?})",
            o.name()
        ))),
    }
}

fn dtype_of(t: TensorElementType) -> Option<DType> {
    match t {
        TensorElementType::Float32 => Some(DType::F32),
        TensorElementType::Uint8 => Some(DType::U8),
        TensorElementType::Uint16 => Some(DType::U16),
        _ => None,
    }
}

/// The one RGB image input: its name, the spec of one frame, and the batch.
fn image_input(session: &Session, path: &Path) -> Result<(String, TensorSpec, ModelBatch)> {
    let inputs = session.inputs();
    if inputs.len() != 1 {
        return Err(Error::Model(format!(
            "{} has {} inputs; ffnetinfer runs models with exactly one image input",
            path.display(),
            inputs.len()
        )));
    }
    let input = &inputs[0];
    let (ity, ishape) = tensor_type(input, "input")?;
    let idtype = dtype_of(ity).ok_or_else(|| {
        Error::Model(format!(
            "input '{}' has element type {ity:?}; ffnetinfer feeds float32, uint8 or uint16 images",
            input.name()
        ))
    })?;
    let batch = ModelBatch::of(&ishape);
    let ishape = ModelBatch::one_frame(&ishape);
    let spec = TensorSpec::from_shape(&ishape, idtype, None).map_err(|e| match e {
        Error::Model(m) => Error::Model(format!("input '{}': {m}", input.name())),
        other => other,
    })?;
    if spec.channels != 3 {
        return Err(Error::Model(format!(
            "input '{}' has {} channels (shape {ishape:?}); an RGB image input needs 3",
            input.name(),
            spec.channels
        )));
    }
    Ok((input.name().to_string(), spec, batch))
}

/// Quantized outputs are dequantized with the QuantizeLinear that produces them.
fn output_quantization(
    name: &str,
    ty: TensorElementType,
    from_model: impl FnOnce() -> Option<(f32, i32)>,
) -> Result<Option<Quantization>> {
    match ty {
        TensorElementType::Float32 => Ok(None),
        TensorElementType::Uint8 | TensorElementType::Uint16 => from_model()
            .map(|(scale, zero_point)| Some(Quantization { scale, zero_point }))
            .ok_or_else(|| {
                Error::Model(format!(
                    "output '{name}' is {ty:?} but no QuantizeLinear gives its scale and zero point; \
                     ffnetinfer reads float32 scores or QDQ-quantized ones"
                ))
            }),
        _ => Err(Error::Model(format!(
            "output '{name}' has element type {ty:?}; ffnetinfer reads float32 (or QDQ uint8/uint16) scores"
        ))),
    }
}

/// Classes, size and layout of a 1×C×H×W, 1×H×W×C or 1×H×W score output.
fn output_spec(name: &str, shape: &[i64]) -> Result<OutputSpec> {
    let shape: [i64; 4] = match *shape {
        [n, a, b, c] => [n, a, b, c],
        [n, h, w] => [1, n, h, w],
        _ => {
            return Err(Error::Model(format!(
                "output '{name}' has shape {shape:?}, which is not a score map: ffnetinfer needs \
                 a segmentation model whose output is per-pixel scores, 1×C×H×W, 1×H×W×C or 1×H×W \
                 (a classifier's 1×N or a detector's boxes cannot be drawn as a mask)"
            )));
        }
    };
    if shape.iter().any(|d| *d == 0 || *d < -1) {
        return Err(Error::Model(format!(
            "output '{name}' has empty dimensions {shape:?}"
        )));
    }
    // An NHWC input usually means an NHWC output (TFLite/QNN exports).
    // Channels are the small axis; 1×1×H×1-like ambiguities read as NCHW.
    let layout = if shape[2] == 1 && shape[3] == 1 {
        // 1×N×1×1: N values for the whole picture (a classifier).
        Layout::Nchw
    } else if shape[3] <= 4 && shape[1] > 4 {
        Layout::Nhwc
    } else if shape[1] <= 4 {
        Layout::Nchw
    } else {
        guess_layout(&shape)
    };
    let (c, h, w) = match layout {
        Layout::Nchw => (shape[1], shape[2], shape[3]),
        Layout::Nhwc => (shape[3], shape[1], shape[2]),
    };
    if c <= 0 {
        return Err(Error::Model(format!(
            "output '{name}' has no fixed class count (shape {shape:?})"
        )));
    }
    // Dynamic sizes (-1) become 0 and are read from each result.
    Ok(OutputSpec {
        classes: c as usize,
        width: w.max(0) as usize,
        height: h.max(0) as usize,
        layout,
    })
}

/// Refuses an output that cannot be a score map (a 1×1 map: a classifier; proportions far
/// from the input's: a detector's boxes); warns about a legal but implausible one (a map
/// one pixel high or wide).
fn check_score_map(
    name: &str,
    shape: &[i64],
    out: &OutputSpec,
    input: &TensorSpec,
) -> Result<Option<String>> {
    let (w, h) = (out.width, out.height);
    if w == 0 || h == 0 {
        return Ok(None);
    }
    let expected = "ffnetinfer needs a segmentation model, whose output is a score map with \
                    the picture's proportions (1×C×H×W, 1×H×W×C or 1×H×W)";
    if w == 1 && h == 1 {
        return Err(Error::Model(format!(
            "output '{name}' has shape {shape:?}: a 1×1 map of {} values is a classifier's \
             output, not a segmentation map; {expected}",
            out.classes
        )));
    }
    if w == 1 || h == 1 {
        return Ok(Some(format!(
            "output '{name}' has shape {shape:?}: a {w}×{h} score map is one pixel {}, which \
             a segmentation model rarely outputs; check that this is the model you meant",
            if h == 1 { "high" } else { "wide" }
        )));
    }
    if !input.is_dynamic() {
        let map = w as f64 / h as f64;
        let picture = input.width as f64 / input.height as f64;
        let distortion = (map / picture).max(picture / map);
        if distortion > MAX_ASPECT_DISTORTION {
            return Err(Error::Model(format!(
                "output '{name}' has shape {shape:?}: read as a {w}×{h} map of {} classes for \
                 a {}×{} input, its proportions are {distortion:.0}× off the picture's; this \
                 looks like a detector's or classifier's output; {expected}",
                out.classes, input.width, input.height
            )));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(w: usize, h: usize) -> TensorSpec {
        TensorSpec {
            width: w,
            height: h,
            channels: 3,
            layout: Layout::Nchw,
            dtype: DType::F32,
            quantization: None,
        }
    }

    fn check(shape: &[i64], w: usize, h: usize) -> Result<Option<String>> {
        let spec = output_spec("out", shape)?;
        check_score_map("out", shape, &spec, &input(w, h))
    }

    #[test]
    fn outputs_that_cannot_be_score_maps_are_refused_with_their_shape() {
        for (shape, says) in [
            (&[1, 100, 6][..], "detector"),
            (&[1, 84, 8400][..], "detector"),
            (&[1, 1000, 1, 1][..], "classifier"),
            (&[1, 1000][..], "classifier"),
        ] {
            let e = check(shape, 256, 256).unwrap_err().to_string();
            assert!(
                e.contains(&format!("{shape:?}")) && e.contains(says) && e.contains("1×C×H×W"),
                "{shape:?}: {e}"
            );
        }
    }

    #[test]
    fn real_score_maps_pass_and_one_pixel_maps_warn() {
        assert_eq!(check(&[1, 19, 128, 256], 2048, 1024).unwrap(), None);
        assert_eq!(check(&[1, 256, 256, 1], 256, 256).unwrap(), None);
        assert_eq!(check(&[1, 256, 256], 256, 256).unwrap(), None);
        assert_eq!(check(&[1, 1, -1, -1], 0, 0).unwrap(), None);
        let w = check(&[1, 1, 1, 256], 256, 256).unwrap().unwrap();
        assert!(
            w.contains("[1, 1, 1, 256]") && w.contains("one pixel high"),
            "{w}"
        );
        let w = check(&[1, 2, 64, 1], 64, 64).unwrap().unwrap();
        assert!(w.contains("one pixel wide"), "{w}");
    }
}
