//! ffnetinfer's engine: an ONNX Runtime session with the model contract read from the
//! model itself (input size, layout, dtype; output classes and resolution).
//!
//! - [`config`](SessionConfig): what is asked for; model path checks.
//! - `provider`: provider choice, registration and CPU fallback.
//! - `contract`: the model contract ([`ModelContract`]).
//! - `context_cache`: compiled EP-context models.
//! - `ort_log`: ONNX Runtime's creation log (placements, rejected nodes, provider failures).
//! - [`placement`]: where the nodes run, and the warning naming those left on the CPU.
//! - `fixed_run`: runs without a heap allocation per frame for fixed-shape models.
//! - `batch_run`: one run on the frames of several streams, for models with a dynamic batch.
//! - [`runtime`]: loading libonnxruntime once per process.
//! - [`plugin_ep`]: execution providers shipped as plugin libraries (QNN).
//! - [`qnn_ep_version`]: which onnxruntime-qnn a plugin library is, and whether it fits.
//! - [`qnn_options`]: checks of the QNN provider's options.
//! - [`onnx_proto`]: a minimal ONNX protobuf reader (nodes, Q/DQ parameters, operator counts).

mod batch_run;
mod config;
mod context_cache;
mod contract;
mod fixed_run;
pub mod onnx_proto;
mod ort_log;
pub mod placement;
pub mod plugin_ep;
mod provider;
pub mod qnn_ep_version;
pub mod qnn_options;
pub mod runtime;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ort::logging::LogLevel;
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};
use ort::session::{RunOptions, Session, SessionOutputs};
use ort::value::{DynValue, DynValueRef, TensorRef};

pub use batch_run::BatchSlot;
pub use config::{SessionConfig, parse_provider_options};
pub use contract::{ModelBatch, ModelContract};
pub use placement::{NodeFacts, PlacedNode, Placement, parse_placements};
pub use provider::Provider;

use context_cache::ContextCache;
use fixed_run::FixedRun;
use ort_log::OrtLog;

use crate::error::{Error, Result};
use crate::tensor::{DType, Layout, OutputSpec, TensorSpec};

/// How much a message from opening a session matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// Something the user should act on (a fallback, an ignored option): a warning.
    Warning,
    /// A fact worth an INFO log line (the device chosen, a compiled model loaded).
    Note,
}

pub struct InferenceSession {
    session: Session,
    contract: ModelContract,
    active_provider: Provider,
    warnings: Vec<String>,
    notes: Vec<String>,
    placements: Vec<Placement>,
    /// Why the provider refused nodes (node name → its reason), where it said so.
    rejections: BTreeMap<String, String>,
    run_options: RunOptions,
    /// Dequantized scores of a quantized model, kept from run to run.
    dequantized: Vec<f32>,
    /// The allocation-free run, for models whose shapes are fixed.
    fixed: Option<FixedRun>,
    /// Off: every run goes through ort's own `run` (the reference for tests).
    allocation_free: bool,
    /// Batched runs (several streams' frames at once), for models with a dynamic batch.
    batch: Option<batch_run::BatchRun>,
}

/// Where the session loads the model from, and the EP-context model it is to write.
struct ModelSource {
    load_from: PathBuf,
    cache_to_write: Option<ContextCache>,
}

impl InferenceSession {
    pub fn open(config: &SessionConfig) -> Result<Self> {
        let path = config::model_file(&config.model)?;
        let rt = runtime::runtime(config.ort_library.as_deref())?;
        // One session is created at a time: registering a plugin EP library changes how
        // ONNX Runtime picks devices for every session created after it.
        static CREATING: Mutex<()> = Mutex::new(());
        let _creating = CREATING.lock().unwrap_or_else(|e| e.into_inner());
        let (mut warnings, mut notes) = (Vec::new(), Vec::new());
        if config.provider == Provider::Qnn {
            // Before anything is compiled or cached; provider=auto checks once it picks QNN.
            provider::check_qnn_options(config, &mut warnings)?;
        }
        let log = OrtLog::default();
        let builder = log.attach(session_builder(config)?)?;
        let config = &config.with_tensorrt_cache();
        let (builder, mut source) = use_context_cache(builder, config, &path, rt, &mut notes)?;
        let report = provider::Report {
            warnings: &mut warnings,
            notes: &mut notes,
        };
        let (mut builder, active) = provider::register_provider(builder, config, rt, report)?;
        let file = onnx_proto::ModelFile::new(&path);
        if source.load_from == path {
            builder = fix_symbolic_batch(builder, config, active, &file, &mut notes)?;
        }
        if active == Provider::Cpu {
            if source.cache_to_write.take().is_some() {
                // Fell back to the CPU: nothing to compile, and no cache to trust later.
                builder = builder
                    .with_config_entry("ep.context_enable", "0")
                    .map_err(|e| Error::Runtime(e.to_string()))?;
            }
            if source.load_from != path {
                return Err(Error::Runtime(format!(
                    "the compiled model {} needs provider {}, which is not available now",
                    source.load_from.display(),
                    config.provider
                )));
            }
        }
        let session = builder
            .commit_from_file(&source.load_from)
            .map_err(|e| explain_start_failure(&e, active, &path, config, &log))?;
        log.dump_if_asked();
        if let Some(cache) = source.cache_to_write
            && let Err(e) = cache.seal()
        {
            // The session itself is fine; only later starts will not be faster.
            warnings.push(format!("context-cache: {e}"));
        }
        let (contract, odd_output) = contract::read_contract(&session, &path, &file)?;
        warnings.extend(odd_output);
        warnings.extend(padding_warning(&contract, config));
        let (placements, rejections) = (log.placements(), log.rejections());
        if let Some(msg) = nodes_left_on_cpu(&placements, &rejections, active, &file, &path, &log) {
            if config.disable_cpu_fallback {
                return Err(Error::Runtime(format!(
                    "{msg}; disable-cpu-fallback is set (quantize the model, or replace those operators)"
                )));
            }
            warnings.push(msg);
        }
        let fixed = FixedRun::prepare(&session, &contract)?;
        let batch = batch_run::BatchRun::prepare(&session, &contract);
        Ok(InferenceSession {
            session,
            contract,
            active_provider: active,
            warnings,
            notes,
            placements,
            rejections,
            run_options: quiet_run_options()?,
            dequantized: Vec::new(),
            fixed,
            allocation_free: true,
            batch,
        })
    }

    /// Whether fixed-shape models run without per-frame allocations (the default) or
    /// through ort's own `run`, which the tests compare it with.
    pub fn set_allocation_free(&mut self, on: bool) {
        self.allocation_free = on;
    }

    /// Whether the allocation-free run applies to this model (fixed shapes).
    pub fn runs_allocation_free(&self) -> bool {
        self.allocation_free && self.fixed.is_some()
    }

    pub fn contract(&self) -> &ModelContract {
        &self.contract
    }

    /// The provider the session really runs on (`Provider::Cpu` after a fallback).
    pub fn active_provider(&self) -> Provider {
        self.active_provider
    }

    /// Facts worth an INFO log line (the plugin device chosen, …).
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// Where the nodes run (provider, node count, operator types).
    pub fn placements(&self) -> &[Placement] {
        &self.placements
    }

    /// Why the provider refused nodes (node name → its reason), as it logged them.
    pub fn rejections(&self) -> &BTreeMap<String, String> {
        &self.rejections
    }

    /// Things the user should know (fallbacks, ignored options), for warnings.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Warnings and notes together, each with its severity (warnings first).
    pub fn diagnostics(&self) -> impl Iterator<Item = (Severity, &str)> {
        let warnings = self
            .warnings
            .iter()
            .map(|w| (Severity::Warning, w.as_str()));
        warnings.chain(self.notes.iter().map(|n| (Severity::Note, n.as_str())))
    }

    /// Runs the model on `input` (the tensor bytes in the contract's input spec) and
    /// writes the scores (f32, the output spec's layout) into `scores`.
    pub fn run(&mut self, input: &[u8], scores: &mut [f32]) -> Result<()> {
        let spec = self.contract.input;
        self.run_with(input, &spec, |_, data| {
            if data.len() != scores.len() {
                return Err(Error::Input(format!(
                    "score buffer has {} elements, the model gave {}",
                    scores.len(),
                    data.len()
                )));
            }
            scores.copy_from_slice(data);
            Ok(())
        })?
    }

    /// Runs the model on `input`, laid out as `spec` (which must agree with the model's
    /// input; a model with dynamic height/width takes the size given here), and hands the
    /// scores with their actual size to `consume` without copying them first.
    pub fn run_with<R>(
        &mut self,
        input: &[u8],
        spec: &TensorSpec,
        consume: impl FnOnce(OutputSpec, &[f32]) -> R,
    ) -> Result<R> {
        check_input(&self.contract.input, spec, input)?;
        if self.fixed_batch().is_some() {
            // One frame in a model made for N: the other slots are padding.
            let mut consume = Some(consume);
            let mut result = None;
            self.run_batch(&[input], spec, |_, actual, data| {
                result = consume.take().map(|c| c(actual, data));
            })?;
            return result.ok_or_else(|| Error::Inference("the model returned no scores".into()));
        }
        if let Some(fixed) = self.fixed.as_mut().filter(|_| self.allocation_free) {
            let dims = fixed.output_dims();
            let data = fixed.run(
                &mut self.session,
                &self.run_options,
                spec,
                input,
                &self.contract,
            )?;
            let actual = actual_output(&dims, data, &self.contract)?;
            return Ok(consume(actual, data));
        }
        let value = input_value(spec, spec.shape(), input)?;
        // The model has exactly one input (the contract says so): passed by position.
        let outputs = self
            .session
            .run_with_options(ort::inputs![value], &self.run_options)
            .map_err(|e| Error::Inference(e.to_string()))?;
        let (dims, data) = scores_of(&outputs, &self.contract, &mut self.dequantized)?;
        let actual = actual_output(&dims, data, &self.contract)?;
        Ok(consume(actual, data))
    }
}

/// A session builder with the engine's defaults: all graph optimizations, no spinning
/// threads unless asked, the requested intra-op thread count.
fn session_builder(config: &SessionConfig) -> Result<SessionBuilder> {
    let rt = runtime::runtime(config.ort_library.as_deref())?;
    let mut builder = Session::builder(&rt.environment)
        .map_err(|e| Error::Runtime(format!("cannot create a session builder: {e}")))?
        .with_optimization_level(GraphOptimizationLevel::All)
        .map_err(|e| Error::Runtime(e.to_string()))?;
    // Spinning intra-op threads take CPU from the rest of a pipeline (decoder,
    // pre/post-processing, encoder) between inferences.
    builder = builder
        .with_config_entry(
            "session.intra_op.allow_spinning",
            if config.spin { "1" } else { "0" },
        )
        .map_err(|e| Error::Runtime(e.to_string()))?;
    if config.threads > 0 {
        builder = builder
            .with_intra_threads(config.threads)
            .map_err(|e| Error::Runtime(e.to_string()))?;
    }
    Ok(builder)
}

/// A model made for N frames per run that is to get fewer: the rest of each run is padding.
fn padding_warning(contract: &ModelContract, config: &SessionConfig) -> Option<String> {
    match contract.batch {
        ModelBatch::Fixed(n) if n > config.batch_size.max(1) => Some(format!(
            "the model takes a fixed batch of {n} frames but runs here carry at most {}: \
             every inference also computes {} padding slots; share it among {n} streams \
             (shared-instance=NAME batch-size={n}), or use a model with batch 1 or a dynamic \
             batch dimension",
            config.batch_size.max(1),
            n - config.batch_size.max(1)
        )),
        _ => None,
    }
}

/// A provider that compiles static shapes (QNN) cannot take a symbolic batch dimension:
/// it is fixed to the frames per run asked for (ONNX Runtime's free-dimension override).
fn fix_symbolic_batch(
    builder: SessionBuilder,
    config: &SessionConfig,
    active: Provider,
    file: &onnx_proto::ModelFile,
    notes: &mut Vec<String>,
) -> Result<SessionBuilder> {
    if !active.needs_static_shapes() {
        return Ok(builder);
    }
    let symbol = file
        .summary()
        .and_then(|s| s.input_batch_symbols.values().next().cloned());
    let Some(symbol) = symbol else {
        return Ok(builder);
    };
    let batch = config.batch_size.max(1);
    notes.push(format!(
        "the model's batch dimension \"{symbol}\" is fixed to {batch} for provider {active}, \
         which compiles static shapes{}",
        if batch > 1 {
            "; runs with fewer frames are padded"
        } else {
            ""
        }
    ));
    builder
        .with_dimension_override(&symbol, batch as i64)
        .map_err(|e| Error::Runtime(e.to_string()))
}

/// An EP-context model (QNN, OpenVINO): compiled once, loaded on later starts. The
/// session entries must be set before the provider is added.
fn use_context_cache(
    mut builder: SessionBuilder,
    config: &SessionConfig,
    path: &Path,
    rt: &runtime::Runtime,
    notes: &mut Vec<String>,
) -> Result<(SessionBuilder, ModelSource)> {
    let mut source = ModelSource {
        load_from: path.to_path_buf(),
        cache_to_write: None,
    };
    let Some(dir) = config.context_cache.as_ref() else {
        return Ok((builder, source));
    };
    if !config.provider.compiles_context_model() {
        if config.provider != Provider::TensorRt {
            notes.push(format!(
                "context-cache is not used with provider={}: nothing is compiled ahead of time there",
                config.provider
            ));
        }
        return Ok((builder, source));
    }
    let cache = ContextCache::new(dir, path, config.provider.name(), config, &rt.version)?;
    if cache.is_valid() {
        notes.push(format!(
            "loading the compiled model {}",
            cache.model.display()
        ));
        source.load_from = cache.model.clone();
        return Ok((builder, source));
    }
    cache.clear();
    let path_entry = cache.model.display().to_string();
    for (k, v) in [
        ("ep.context_enable", "1"),
        ("ep.context_file_path", path_entry.as_str()),
        ("ep.context_embed_mode", "1"),
    ] {
        builder = builder
            .with_config_entry(k, v)
            .map_err(|e| Error::Runtime(e.to_string()))?;
    }
    notes.push(format!(
        "compiling {} into {}",
        path.display(),
        cache.model.display()
    ));
    source.cache_to_write = Some(cache);
    Ok((builder, source))
}

/// The error of a session that did not start: a provider that failed (disable-cpu-fallback
/// then refuses the CPU) is not a broken model.
fn explain_start_failure(
    e: &ort::Error,
    active: Provider,
    path: &Path,
    config: &SessionConfig,
    log: &OrtLog,
) -> Error {
    let failed_start = (active != Provider::Cpu)
        .then(|| {
            let ep_failure = e.code() == ort::error::ErrorCode::ExecutionProviderFailure;
            ort_log::provider_start_failure(&e.to_string(), ep_failure)
        })
        .flatten()
        // What the provider itself logged, e.g. "Unsupported nodes in QNN EP: …".
        .map(|why| {
            let detail = log.detail_beyond(&why).unwrap_or_default();
            why + &detail
        });
    match (log.provider_failure(), failed_start) {
        (Some(why), _) => Error::Runtime(format!(
            "cannot run {} on {active}: {e} ({why})",
            path.display()
        )),
        // E.g. the QNN EP refusing an option combination (enable_htp_fp16_precision=1
        // without soc_model), or failing to compile the graph.
        (None, Some(why)) => {
            let options = config.options_text();
            Error::Runtime(format!(
                "the {active} execution provider failed on {}{}: {why}",
                path.display(),
                if options.is_empty() {
                    String::new()
                } else {
                    format!(" with provider-options \"{options}\"")
                }
            ))
        }
        (None, None) => Error::Model(format!(
            "ONNX Runtime cannot load {}: {e}; is it a valid .onnx model?",
            path.display()
        )),
    }
}

/// The warning for nodes that a non-CPU provider left to the CPU, if any, naming them with
/// what they touch in the model file (read only then) and why the provider refused them.
fn nodes_left_on_cpu(
    placements: &[Placement],
    rejections: &BTreeMap<String, String>,
    active: Provider,
    file: &onnx_proto::ModelFile,
    path: &Path,
    log: &OrtLog,
) -> Option<String> {
    let cpu = Provider::Cpu.ort_name();
    if active == Provider::Cpu || !placements.iter().any(|p| p.provider == cpu && p.nodes > 0) {
        return None;
    }
    let nodes = placement::CpuNodes {
        placements,
        facts: placement::NodeFacts {
            model: file.summary(),
            rejections: Some(rejections),
        },
    };
    let mut msg = nodes.warning(active, &path.display().to_string())?;
    if let Some(e) = log.provider_failure() {
        msg.push_str(&format!(" ({e})"));
    }
    Some(msg)
}

/// Placement needed verbose logs at creation; runs log warnings only.
fn quiet_run_options() -> Result<RunOptions> {
    let mut run_options = RunOptions::new().map_err(|e| Error::Runtime(e.to_string()))?;
    run_options
        .set_log_level(LogLevel::Warning)
        .map_err(|e| Error::Runtime(e.to_string()))?;
    Ok(run_options)
}

/// Checks that `input`, laid out as `spec`, is what the model (`want`) takes.
fn check_input(want: &TensorSpec, spec: &TensorSpec, input: &[u8]) -> Result<()> {
    let size_ok = want.is_dynamic() || (spec.width == want.width && spec.height == want.height);
    if !size_ok
        || spec.layout != want.layout
        || spec.dtype != want.dtype
        || spec.channels != want.channels
    {
        return Err(Error::Input(format!(
            "tensor is {}×{}×{} {} {}, the model wants {}×{}×{} {} {}",
            spec.width,
            spec.height,
            spec.channels,
            spec.layout.as_str(),
            spec.dtype.as_str(),
            want.width,
            want.height,
            want.channels,
            want.layout.as_str(),
            want.dtype.as_str()
        )));
    }
    if spec.is_dynamic() {
        return Err(Error::Input(
            "the model's input size is dynamic: set segpreproc's width and height".into(),
        ));
    }
    if input.len() != spec.byte_size() {
        return Err(Error::Input(format!(
            "input tensor has {} bytes but {}×{}×3 {} needs {}",
            input.len(),
            spec.width,
            spec.height,
            spec.dtype.as_str(),
            spec.byte_size()
        )));
    }
    Ok(())
}

/// The input bytes as an ONNX Runtime tensor of the spec's element type and `shape`
/// (the spec's own, or with a batch of several frames), without a copy.
fn input_value<'a>(spec: &TensorSpec, shape: [i64; 4], input: &'a [u8]) -> Result<DynValueRef<'a>> {
    let misaligned = |size: usize| {
        move |_| Error::Input(format!("input tensor memory is not {size}-byte aligned"))
    };
    let value = match spec.dtype {
        DType::F32 => {
            let data: &[f32] = bytemuck::try_cast_slice(input).map_err(misaligned(4))?;
            TensorRef::from_array_view((shape, data)).map(|t| t.into_dyn())
        }
        DType::U8 => TensorRef::from_array_view((shape, input)).map(|t| t.into_dyn()),
        DType::U16 => {
            let data: &[u16] = bytemuck::try_cast_slice(input).map_err(misaligned(2))?;
            TensorRef::from_array_view((shape, data)).map(|t| t.into_dyn())
        }
    };
    value.map_err(|e| Error::Inference(e.to_string()))
}

/// The scores output as f32 with its shape (1×… added to a 3-D one); quantized outputs
/// are dequantized into `dequantized`, which keeps its memory between runs.
fn scores_of<'a>(
    outputs: &'a SessionOutputs<'_>,
    contract: &ModelContract,
    dequantized: &'a mut Vec<f32>,
) -> Result<([i64; 4], &'a [f32])> {
    let out: &DynValue = outputs
        .get(&contract.output_name)
        .ok_or_else(|| Error::Inference("the model returned no scores".into()))?;
    let failed = |e: ort::Error| Error::Inference(e.to_string());
    let (shape, data): (&[i64], &[f32]) = match contract.output_quantization {
        None => {
            let (shape, data) = out.try_extract_tensor::<f32>().map_err(failed)?;
            (shape, data)
        }
        Some(q) => {
            let zp = q.zero_point as f32;
            dequantized.clear();
            let shape = match out.try_extract_tensor::<u8>() {
                Ok((shape, d)) => {
                    dequantized.extend(d.iter().map(|v| (*v as f32 - zp) * q.scale));
                    shape
                }
                Err(_) => {
                    let (shape, d) = out.try_extract_tensor::<u16>().map_err(failed)?;
                    dequantized.extend(d.iter().map(|v| (*v as f32 - zp) * q.scale));
                    shape
                }
            };
            (shape, dequantized.as_slice())
        }
    };
    let dims = match *shape {
        [n, a, b, c] => [n, a, b, c],
        [a, b, c] => [1, a, b, c],
        _ => {
            return Err(Error::Inference(format!(
                "the model returned scores of shape {shape:?}"
            )));
        }
    };
    Ok((dims, data))
}

/// The output spec of one result (dynamic sizes are known only now), checked against the
/// number of scores and the declared classes.
fn actual_output(dims: &[i64; 4], data: &[f32], contract: &ModelContract) -> Result<OutputSpec> {
    let layout = contract.output.layout;
    let (c, h, w) = match layout {
        Layout::Nchw => (dims[1], dims[2], dims[3]),
        Layout::Nhwc => (dims[3], dims[1], dims[2]),
    };
    let actual = OutputSpec {
        classes: c as usize,
        width: w as usize,
        height: h as usize,
        layout,
    };
    if actual.element_count() != data.len() || actual.classes != contract.output.classes {
        return Err(Error::Inference(format!(
            "the model returned {} scores of shape {dims:?}, not the {} classes it declares",
            data.len(),
            contract.output.classes
        )));
    }
    Ok(actual)
}
