//! ffnetinfer's engine: an ONNX Runtime session with the model contract read from the
//! model itself (input size, layout, dtype; output classes and resolution).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ort::logging::LogLevel;

use ort::ep;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::{RunOptions, Session};
use ort::value::{TensorElementType, TensorRef, ValueType};

use crate::error::{Error, Result};
use crate::tensor::{DType, Layout, Quantization, TensorSpec, guess_layout};
use crate::{plugin_ep, runtime};

/// Where the model should run. `Auto` picks the best provider this ONNX Runtime build
/// actually has (NPU, then GPU, then CPU).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Provider {
    #[default]
    Auto,
    Cpu,
    Qnn,
    Cuda,
    TensorRt,
    Xnnpack,
    OpenVino,
}

impl Provider {
    pub fn name(self) -> &'static str {
        match self {
            Provider::Auto => "auto",
            Provider::Cpu => "cpu",
            Provider::Qnn => "qnn",
            Provider::Cuda => "cuda",
            Provider::TensorRt => "tensorrt",
            Provider::Xnnpack => "xnnpack",
            Provider::OpenVino => "openvino",
        }
    }

    /// ONNX Runtime's own name for the provider.
    pub fn ort_name(self) -> &'static str {
        match self {
            Provider::Auto | Provider::Cpu => "CPUExecutionProvider",
            Provider::Qnn => "QNNExecutionProvider",
            Provider::Cuda => "CUDAExecutionProvider",
            Provider::TensorRt => "TensorrtExecutionProvider",
            Provider::Xnnpack => "XnnpackExecutionProvider",
            Provider::OpenVino => "OpenVINOExecutionProvider",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SessionConfig {
    pub model: PathBuf,
    pub provider: Provider,
    /// `key=value` options handed to the execution provider.
    pub provider_options: Vec<(String, String)>,
    /// Intra-op threads; 0 lets ONNX Runtime decide.
    pub threads: usize,
    /// Fail instead of running on the CPU when the requested provider is unavailable.
    pub disable_cpu_fallback: bool,
    /// Explicit libonnxruntime.so to load (first element to load wins for the process).
    pub ort_library: Option<PathBuf>,
    /// Let ONNX Runtime's intra-op threads spin-wait between inferences.
    pub spin: bool,
    /// Plugin execution provider library (e.g. the QNN plugin of the onnxruntime-qnn wheel),
    /// when it is not found automatically.
    pub ep_library: Option<PathBuf>,
    /// Folder for compiled models: a QNN/OpenVINO EP-context model, a TensorRT engine.
    /// The first start writes it; later starts load it; a stale one is rebuilt.
    pub context_cache: Option<PathBuf>,
}

impl SessionConfig {
    pub fn new(model: impl Into<PathBuf>) -> Self {
        SessionConfig {
            model: model.into(),
            provider: Provider::Auto,
            provider_options: Vec::new(),
            threads: 0,
            disable_cpu_fallback: false,
            ort_library: None,
            spin: false,
            ep_library: None,
            context_cache: None,
        }
    }
}

/// Parses `key=value,key=value` (whitespace around items is ignored).
pub fn parse_provider_options(s: &str) -> Result<Vec<(String, String)>> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.trim().to_string())),
            _ => Err(Error::Config(format!(
                "provider option '{p}' is not key=value (example: backend_type=htp,htp_performance_mode=burst)"
            ))),
        })
        .collect()
}

/// Checks the options of a session that will use QNN; warnings join `warnings`.
fn check_qnn_session_options(config: &SessionConfig, warnings: &mut Vec<String>) -> Result<()> {
    warnings.extend(crate::qnn_options::check(&config.provider_options)?);
    Ok(())
}

/// The model's output: one image-shaped score tensor at model resolution.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OutputSpec {
    /// Classes (1 for a probability mask, 19 for Cityscapes logits).
    pub classes: usize,
    pub width: usize,
    pub height: usize,
    pub layout: Layout,
}

impl OutputSpec {
    pub fn element_count(&self) -> usize {
        self.classes * self.width * self.height
    }
}

/// What the model takes and gives, read from the model file.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelContract {
    pub input_name: String,
    pub input: TensorSpec,
    pub output_name: String,
    pub output: OutputSpec,
    /// Set for uint8/uint16 outputs, which ffnetinfer dequantizes to f32 scores.
    pub output_quantization: Option<Quantization>,
}

pub struct InferenceSession {
    session: Session,
    contract: ModelContract,
    active_provider: String,
    warnings: Vec<String>,
    notes: Vec<String>,
    placements: Vec<Placement>,
    run_options: RunOptions,
}

/// Where ONNX Runtime put the model's nodes (from its "Node placements" log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// ONNX Runtime's provider name, e.g. "QNNExecutionProvider".
    pub provider: String,
    pub nodes: usize,
    /// Operator types of the nodes (empty when all nodes share one provider).
    pub ops: Vec<String>,
}

/// Reads ORT's verbose placement report:
/// " All nodes placed on [P]. Number of nodes: N" or, per provider,
/// " Node(s) placed on [P]. Number of nodes: N\n  OpType (name)\n…".
pub fn parse_placements(log: &[String]) -> Vec<Placement> {
    let mut out = Vec::new();
    for m in log {
        let Some(rest) = m.split_once("placed on [").map(|(_, r)| r) else {
            continue;
        };
        let Some((provider, rest)) = rest.split_once(']') else {
            continue;
        };
        let nodes = rest
            .split_once("Number of nodes:")
            .and_then(|(_, n)| n.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let ops = m
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().next())
            .map(str::to_string)
            .collect();
        out.push(Placement {
            provider: provider.to_string(),
            nodes,
            ops,
        });
    }
    out
}

/// Why a provider took no nodes, from the first GetCapability failure ONNX Runtime logged:
/// "OrtEp::GetCapability() for P failed with error: [ONNXRuntimeError] : 11 : EP_FAIL : WHY".
fn provider_failure(errors: &[String]) -> Option<String> {
    let m = errors.iter().find(|m| m.contains("GetCapability"))?;
    let why = m
        .split_once("failed with error: ")
        .map_or(m.as_str(), |(_, w)| w);
    let why = match why.strip_prefix("[ONNXRuntimeError] : ") {
        // "11 : EP_FAIL : WHY"
        Some(rest) => rest.splitn(3, " : ").last().unwrap_or(rest),
        None => why,
    };
    Some(why.trim().to_string())
}

/// Why an execution provider failed when the session was created, from ONNX Runtime's
/// error: the provider refused its options ("...CreateProvider(...) [ONNXRuntimeError] : 1 :
/// FAIL : WHY") or could not compile the graph ("[ONNXRuntimeError] : 11 : EP_FAIL : WHY").
fn provider_start_failure(error: &str, ep_failure: bool) -> Option<String> {
    let cpu_refused = error.contains("fallback to CPU EP has been explicitly disabled");
    if !ep_failure
        && !error.contains("CreateProvider")
        && !error.contains(": EP_FAIL :")
        && !cpu_refused
    {
        return None;
    }
    let Some((_, last)) = error.rsplit_once("[ONNXRuntimeError] : ") else {
        return Some(error.trim().to_string());
    };
    // "1 : FAIL : WHY"
    Some(
        last.splitn(3, " : ")
            .last()
            .unwrap_or(last)
            .trim()
            .to_string(),
    )
}

/// "Conv×3, Resize×1" from a list of operator types.
fn summarize_ops(ops: &[&str]) -> String {
    let mut counts: std::collections::BTreeMap<&str, usize> = Default::default();
    for op in ops {
        *counts.entry(op).or_default() += 1;
    }
    if counts.is_empty() {
        return "operators not listed by ONNX Runtime".into();
    }
    counts
        .iter()
        .map(|(k, v)| format!("{k}×{v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn dtype_of(t: TensorElementType) -> Option<DType> {
    match t {
        TensorElementType::Float32 => Some(DType::F32),
        TensorElementType::Uint8 => Some(DType::U8),
        TensorElementType::Uint16 => Some(DType::U16),
        _ => None,
    }
}

/// Reads the model contract from the session's declared inputs and outputs.
fn read_contract(session: &Session, path: &Path) -> Result<ModelContract> {
    let inputs = session.inputs();
    let outputs = session.outputs();
    if inputs.len() != 1 {
        return Err(Error::Model(format!(
            "{} has {} inputs; ffnetinfer runs models with exactly one image input",
            path.display(),
            inputs.len()
        )));
    }
    if outputs.is_empty() {
        return Err(Error::Model(format!("{} has no outputs", path.display())));
    }
    let input = &inputs[0];
    let (ity, ishape) = match input.dtype() {
        ValueType::Tensor { ty, shape, .. } => (*ty, shape.to_vec()),
        other => {
            return Err(Error::Model(format!(
                "input '{}' is not a tensor ({other:?})",
                input.name()
            )));
        }
    };
    let idtype = dtype_of(ity).ok_or_else(|| {
        Error::Model(format!(
            "input '{}' has element type {ity:?}; ffnetinfer feeds float32, uint8 or uint16 images",
            input.name()
        ))
    })?;
    let mut input_spec = TensorSpec::from_shape(&ishape, idtype, None).map_err(|e| match e {
        Error::Model(m) => Error::Model(format!("input '{}': {m}", input.name())),
        other => other,
    })?;
    if input_spec.dtype != DType::F32 {
        // The scale and zero point of a quantized input come from the DequantizeLinear
        // reading it; segpreproc quantizes with them.
        input_spec.quantization = std::fs::read(path)
            .ok()
            .and_then(|b| crate::onnx_proto::summarize(&b))
            .and_then(|s| s.input_quantization.get(input.name()).copied())
            .map(|(scale, zero_point)| Quantization { scale, zero_point });
    }
    if input_spec.channels != 3 {
        return Err(Error::Model(format!(
            "input '{}' has {} channels (shape {ishape:?}); an RGB image input needs 3",
            input.name(),
            input_spec.channels
        )));
    }

    // Prefer an output called `mask` (the AI Hub contract), else the first.
    let output = outputs
        .iter()
        .find(|o| o.name() == "mask")
        .unwrap_or(&outputs[0]);
    let (oty, oshape) = match output.dtype() {
        ValueType::Tensor { ty, shape, .. } => (*ty, shape.to_vec()),
        other => {
            return Err(Error::Model(format!(
                "output '{}' is not a tensor ({other:?})",
                output.name()
            )));
        }
    };
    // Quantized outputs are dequantized with the QuantizeLinear that produces them.
    let summary = std::fs::read(path)
        .ok()
        .and_then(|b| crate::onnx_proto::summarize(&b));
    let output_quantization = match oty {
        TensorElementType::Float32 => None,
        TensorElementType::Uint8 | TensorElementType::Uint16 => {
            let q = summary
                .as_ref()
                .and_then(|s| s.output_quantization.get(output.name()))
                .map(|(scale, zero_point)| Quantization {
                    scale: *scale,
                    zero_point: *zero_point,
                });
            Some(q.ok_or_else(|| {
                Error::Model(format!(
                    "output '{}' is {oty:?} but no QuantizeLinear gives its scale and zero point; \
                     ffnetinfer reads float32 scores or QDQ-quantized ones",
                    output.name()
                ))
            })?)
        }
        _ => {
            return Err(Error::Model(format!(
                "output '{}' has element type {oty:?}; ffnetinfer reads float32 (or QDQ uint8/uint16) scores",
                output.name()
            )));
        }
    };
    let oshape: Vec<i64> = match oshape.len() {
        4 => oshape,
        3 => {
            let mut s = vec![1];
            s.extend(oshape);
            s
        }
        _ => {
            return Err(Error::Model(format!(
                "output '{}' has shape {oshape:?}; expected 1×C×H×W or 1×H×W×C scores",
                output.name()
            )));
        }
    };
    if oshape.iter().any(|d| *d == 0 || *d < -1) {
        return Err(Error::Model(format!(
            "output '{}' has empty dimensions {oshape:?}",
            output.name()
        )));
    }
    // An NHWC input usually means an NHWC output (TFLite/QNN exports).
    // Channels are the small axis; 1×1×H×1-like ambiguities read as NCHW.
    let olayout = if oshape[3] <= 4 && oshape[1] > 4 {
        Layout::Nhwc
    } else if oshape[1] <= 4 {
        Layout::Nchw
    } else {
        guess_layout(&oshape)
    };
    let (c, h, w) = match olayout {
        Layout::Nchw => (oshape[1], oshape[2], oshape[3]),
        Layout::Nhwc => (oshape[3], oshape[1], oshape[2]),
    };
    if c <= 0 {
        return Err(Error::Model(format!(
            "output '{}' has no fixed class count (shape {oshape:?})",
            output.name()
        )));
    }
    Ok(ModelContract {
        input_name: input.name().to_string(),
        input: input_spec,
        output_name: output.name().to_string(),
        // Dynamic sizes (-1) become 0 and are read from each result.
        output: OutputSpec {
            classes: c as usize,
            width: w.max(0) as usize,
            height: h.max(0) as usize,
            layout: olayout,
        },
        output_quantization,
    })
}

impl InferenceSession {
    pub fn open(config: &SessionConfig) -> Result<Self> {
        let path = &config.model;
        let meta = std::fs::metadata(path).map_err(|e| {
            Error::Model(format!(
                "cannot read model file {}: {e}; set ffnetinfer's model property to an .onnx file",
                path.display()
            ))
        })?;
        if meta.len() == 0 {
            return Err(Error::Model(format!(
                "model file {} is empty",
                path.display()
            )));
        }
        let rt = runtime::runtime(config.ort_library.as_deref())?;
        // One session is created at a time: registering a plugin EP library changes how
        // ONNX Runtime picks devices for every session created after it.
        static CREATING: Mutex<()> = Mutex::new(());
        let _creating = CREATING.lock().unwrap_or_else(|e| e.into_inner());
        let mut warnings = Vec::new();
        if config.provider == Provider::Qnn {
            // Before anything is compiled or cached; provider=auto checks once it picks QNN.
            check_qnn_session_options(config, &mut warnings)?;
        }

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

        let log: Arc<Mutex<Vec<String>>> = Arc::default();
        let sink = log.clone();
        // Errors apart: a provider that fails in GetCapability (e.g. the QNN backend library
        // cannot be loaded) leaves the session on the CPU, and only this says why.
        let errors: Arc<Mutex<Vec<String>>> = Arc::default();
        let error_sink = errors.clone();
        builder = builder
            .with_logger(Arc::new(
                move |level: LogLevel,
                      _category: &str,
                      _id: &str,
                      _location: &str,
                      message: &str| {
                    let to = match level {
                        LogLevel::Verbose | LogLevel::Info | LogLevel::Warning => &sink,
                        LogLevel::Error | LogLevel::Fatal => &error_sink,
                    };
                    to.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(message.to_string());
                },
            ))
            .map_err(|e| Error::Runtime(e.to_string()))?
            .with_log_level(LogLevel::Verbose)
            .map_err(|e| Error::Runtime(e.to_string()))?;
        let mut notes = Vec::new();
        let mut config = config.clone();
        if let (Some(dir), Provider::TensorRt) = (&config.context_cache, config.provider) {
            // TensorRT keeps (and validates) its own engine cache.
            config
                .provider_options
                .push(("trt_engine_cache_enable".into(), "1".into()));
            config
                .provider_options
                .push(("trt_engine_cache_path".into(), dir.display().to_string()));
        }
        let config = &config;
        // An EP-context model (QNN, OpenVINO): compiled once, loaded on later starts. The
        // session entries must be set before the provider is added.
        let mut load_from = path.to_path_buf();
        let mut cache_to_write = None;
        let compiles = matches!(config.provider, Provider::Qnn | Provider::OpenVino);
        if let Some(dir) = config.context_cache.as_ref().filter(|_| compiles) {
            let cache = ContextCache::new(dir, path, config.provider.name(), config, &rt.version)?;
            if cache.is_valid() {
                notes.push(format!(
                    "loading the compiled model {}",
                    cache.model.display()
                ));
                load_from = cache.model.clone();
            } else {
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
                cache_to_write = Some(cache);
            }
        } else if config.context_cache.is_some() && config.provider != Provider::TensorRt {
            notes.push(format!(
                "context-cache is not used with provider={}: nothing is compiled ahead of time there",
                config.provider.name()
            ));
        }
        let (builder, active) = register_provider(builder, config, rt, &mut warnings, &mut notes)?;
        let mut builder = builder;
        if cache_to_write.is_some() && active == Provider::Cpu.name() {
            // Fell back to the CPU: nothing to compile, and no cache to trust later.
            builder = builder
                .with_config_entry("ep.context_enable", "0")
                .map_err(|e| Error::Runtime(e.to_string()))?;
            cache_to_write = None;
        }
        if load_from.as_path() != path.as_path() && active == Provider::Cpu.name() {
            return Err(Error::Runtime(format!(
                "the compiled model {} needs provider {}, which is not available now",
                load_from.display(),
                config.provider.name()
            )));
        }
        let session = builder.commit_from_file(&load_from).map_err(|e| {
            // A provider that failed (disable-cpu-fallback then refuses the CPU) is not a
            // broken model.
            let failed_start = (active != Provider::Cpu.name())
                .then(|| {
                    let ep_failure = e.code() == ort::error::ErrorCode::ExecutionProviderFailure;
                    provider_start_failure(&e.to_string(), ep_failure)
                })
                .flatten();
            let errors = errors.lock().unwrap_or_else(|e| e.into_inner());
            let failure = provider_failure(&errors);
            // What the provider itself logged, e.g. "Unsupported nodes in QNN EP: …".
            let detail = failed_start.as_ref().and_then(|why| {
                let m = errors
                    .iter()
                    .find(|m| !why.contains(m.as_str()) && !m.contains(why.as_str()))?;
                let short: String = m.chars().take(300).collect();
                Some(if short.len() < m.len() {
                    format!(" ({short}…)")
                } else {
                    format!(" ({short})")
                })
            });
            let failed_start = failed_start.map(|why| why + &detail.unwrap_or_default());
            match (failure, failed_start) {
                (Some(why), _) => Error::Runtime(format!(
                    "cannot run {} on {active}: {e} ({why})",
                    path.display()
                )),
                // E.g. the QNN EP refusing an option combination (enable_htp_fp16_precision=1
                // without soc_model), or failing to compile the graph.
                (None, Some(why)) => {
                    let options = config
                        .provider_options
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(",");
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
        })?;
        if std::env::var_os("FFNETSEG_DEBUG_ORTLOG").is_some() {
            for m in log.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                eprintln!("ORTLOG {m}");
            }
            for m in errors.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                eprintln!("ORTLOG ERROR {m}");
            }
        }
        if let Some(cache) = cache_to_write
            && let Err(e) = cache.seal()
        {
            // The session itself is fine; only later starts will not be faster.
            warnings.push(format!("context-cache: {e}"));
        }
        let contract = read_contract(&session, path)?;
        let placements = parse_placements(&log.lock().unwrap_or_else(|e| e.into_inner()));
        let on_cpu: usize = placements
            .iter()
            .filter(|p| p.provider == "CPUExecutionProvider")
            .map(|p| p.nodes)
            .sum();
        let total: usize = placements.iter().map(|p| p.nodes).sum();
        if active != Provider::Cpu.name() && on_cpu > 0 {
            let ops: Vec<&str> = placements
                .iter()
                .filter(|p| p.provider == "CPUExecutionProvider")
                .flat_map(|p| p.ops.iter().map(String::as_str))
                .collect();
            let mut msg = format!(
                "{on_cpu} of {total} nodes of {} run on the CPU, not on {active}: {}",
                path.display(),
                summarize_ops(&ops)
            );
            if let Some(e) = provider_failure(&errors.lock().unwrap_or_else(|e| e.into_inner())) {
                msg.push_str(&format!(" ({e})"));
            }
            if config.disable_cpu_fallback {
                return Err(Error::Runtime(format!(
                    "{msg}; disable-cpu-fallback is set (quantize the model, or replace those operators)"
                )));
            }
            warnings.push(msg);
        }
        let mut run_options = RunOptions::new().map_err(|e| Error::Runtime(e.to_string()))?;
        // Placement needed verbose logs at creation; runs log warnings only.
        run_options
            .set_log_level(LogLevel::Warning)
            .map_err(|e| Error::Runtime(e.to_string()))?;
        Ok(InferenceSession {
            session,
            contract,
            active_provider: active,
            warnings,
            notes,
            placements,
            run_options,
        })
    }

    pub fn contract(&self) -> &ModelContract {
        &self.contract
    }

    /// The provider the session really runs on (`cpu` after a fallback).
    pub fn active_provider(&self) -> &str {
        &self.active_provider
    }

    /// Facts worth an INFO log line (the plugin device chosen, …).
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// Where the nodes run (provider, node count, operator types).
    pub fn placements(&self) -> &[Placement] {
        &self.placements
    }

    /// Things the user should know (fallbacks, ignored options), for warnings.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
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
        let want = self.contract.input;
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
        let shape = spec.shape();
        let value = match spec.dtype {
            DType::F32 => TensorRef::from_array_view((shape, bytemuck_f32(input)?))
                .map_err(|e| Error::Inference(e.to_string()))?
                .into_dyn(),
            DType::U8 => TensorRef::from_array_view((shape, input))
                .map_err(|e| Error::Inference(e.to_string()))?
                .into_dyn(),
            DType::U16 => TensorRef::from_array_view((shape, bytemuck_u16(input)?))
                .map_err(|e| Error::Inference(e.to_string()))?
                .into_dyn(),
        };
        let outputs = self
            .session
            .run_with_options(
                ort::inputs![self.contract.input_name.as_str() => value],
                &self.run_options,
            )
            .map_err(|e| Error::Inference(e.to_string()))?;
        let out = outputs
            .get(&self.contract.output_name)
            .ok_or_else(|| Error::Inference("the model returned no scores".into()))?;
        let dequantized: Vec<f32>;
        let (shape, data): (Vec<i64>, &[f32]) = match self.contract.output_quantization {
            None => {
                let (shape, data) = out
                    .try_extract_tensor::<f32>()
                    .map_err(|e| Error::Inference(e.to_string()))?;
                (shape.to_vec(), data)
            }
            Some(q) => {
                let (shape, values): (Vec<i64>, Vec<f32>) = match out.try_extract_tensor::<u8>() {
                    Ok((shape, d)) => (shape.to_vec(), d.iter().map(|v| *v as f32).collect()),
                    Err(_) => {
                        let (shape, d) = out
                            .try_extract_tensor::<u16>()
                            .map_err(|e| Error::Inference(e.to_string()))?;
                        (shape.to_vec(), d.iter().map(|v| *v as f32).collect())
                    }
                };
                let zp = q.zero_point as f32;
                dequantized = values.into_iter().map(|v| (v - zp) * q.scale).collect();
                (shape, &dequantized)
            }
        };
        let dims: Vec<i64> = shape;
        let dims: Vec<i64> = if dims.len() == 3 {
            [vec![1], dims].concat()
        } else {
            dims
        };
        let layout = self.contract.output.layout;
        if dims.len() != 4 {
            return Err(Error::Inference(format!(
                "the model returned scores of shape {dims:?}"
            )));
        }
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
        if actual.element_count() != data.len() || actual.classes != self.contract.output.classes {
            return Err(Error::Inference(format!(
                "the model returned {} scores of shape {dims:?}, not the {} classes it declares",
                data.len(),
                self.contract.output.classes
            )));
        }
        Ok(consume(actual, data))
    }
}

/// A compiled EP-context model and the key that says what it was compiled from.
struct ContextCache {
    model: PathBuf,
    key_file: PathBuf,
    key: String,
}

impl ContextCache {
    fn new(
        dir: &Path,
        source: &Path,
        provider: &str,
        config: &SessionConfig,
        ort_version: &str,
    ) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| {
            Error::Config(format!(
                "cannot create the context-cache folder {}: {e}",
                dir.display()
            ))
        })?;
        let bytes = std::fs::read(source)
            .map_err(|e| Error::Model(format!("cannot read {}: {e}", source.display())))?;
        let mut options = config.provider_options.clone();
        options.sort();
        // What the compiled model depends on: the model's bytes, the runtime, the provider
        // and its options. Anything else changed means recompiling.
        let key = format!(
            "model-fnv1a64={:016x}\nmodel-bytes={}\nonnxruntime={ort_version}\nprovider={provider}\noptions={options:?}\n",
            fnv1a64(&bytes),
            bytes.len()
        );
        let stem = source
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("model");
        let model = dir.join(format!("{stem}.{provider}_ctx.onnx"));
        Ok(ContextCache {
            key_file: model.with_extension("key"),
            model,
            key,
        })
    }

    fn is_valid(&self) -> bool {
        self.model.is_file() && std::fs::read_to_string(&self.key_file).is_ok_and(|k| k == self.key)
    }

    /// ONNX Runtime refuses to overwrite a context model, so stale files go first.
    fn clear(&self) {
        let _ = std::fs::remove_file(&self.model);
        let _ = std::fs::remove_file(&self.key_file);
    }

    /// Records the key once ONNX Runtime has written the compiled model.
    fn seal(&self) -> Result<()> {
        if !self.model.is_file() {
            return Err(Error::Runtime(format!(
                "the provider did not write a compiled model to {} (does it support EP context models?)",
                self.model.display()
            )));
        }
        std::fs::write(&self.key_file, &self.key)
            .map_err(|e| Error::Config(format!("cannot write {}: {e}", self.key_file.display())))
    }
}

/// FNV-1a: a fast, dependency-free content fingerprint (not a security hash).
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ *b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Views aligned bytes as f32 (tensor buffers from GStreamer are allocated aligned).
fn bytemuck_f32(bytes: &[u8]) -> Result<&[f32]> {
    // SAFETY: every bit pattern is a valid f32; alignment is checked by align_to.
    let (head, body, tail) = unsafe { bytes.align_to::<f32>() };
    if !head.is_empty() || !tail.is_empty() {
        return Err(Error::Input(
            "input tensor memory is not 4-byte aligned".into(),
        ));
    }
    Ok(body)
}

fn bytemuck_u16(bytes: &[u8]) -> Result<&[u16]> {
    // SAFETY: every bit pattern is a valid u16; alignment is checked by align_to.
    let (head, body, tail) = unsafe { bytes.align_to::<u16>() };
    if !head.is_empty() || !tail.is_empty() {
        return Err(Error::Input(
            "input tensor memory is not 2-byte aligned".into(),
        ));
    }
    Ok(body)
}

/// Registers the requested execution provider; falls back to the CPU (with a warning)
/// unless `disable_cpu_fallback` is set. Returns the provider that will run.
///
/// QNN is tried both ways ONNX Runtime offers it: built in (an ORT build with QNN) and as
/// the plugin library of the onnxruntime-qnn 2.x wheel.
fn register_provider(
    builder: ort::session::builder::SessionBuilder,
    config: &SessionConfig,
    rt: &runtime::Runtime,
    warnings: &mut Vec<String>,
    notes: &mut Vec<String>,
) -> Result<(ort::session::builder::SessionBuilder, String)> {
    use ort::ep::ArbitrarilyConfigurableExecutionProvider as _;
    let auto = config.provider == Provider::Auto;
    let wanted: Vec<Provider> = match config.provider {
        Provider::Auto => vec![
            Provider::Qnn,
            Provider::TensorRt,
            Provider::Cuda,
            Provider::OpenVino,
        ],
        Provider::Cpu => vec![],
        p => vec![p],
    };
    let mut builder = builder;
    if config.disable_cpu_fallback && config.provider != Provider::Cpu {
        // ONNX Runtime then refuses to create a session that would put nodes on the CPU.
        builder = builder
            .with_config_entry("session.disable_cpu_ep_fallback", "1")
            .map_err(|e| Error::Runtime(e.to_string()))?;
    }
    let mut reasons = Vec::new();
    for p in wanted {
        macro_rules! built_in {
            ($ep:expr) => {{
                let mut e = $ep;
                for (k, v) in &config.provider_options {
                    e = e.with_arbitrary_config(k, v);
                }
                e.build()
            }};
        }
        let dispatch = match p {
            Provider::Qnn => built_in!(ep::QNN::default()),
            Provider::Cuda => built_in!(ep::CUDA::default()),
            Provider::TensorRt => built_in!(ep::TensorRT::default()),
            Provider::Xnnpack => built_in!(ep::XNNPACK::default()),
            Provider::OpenVino => built_in!(ep::OpenVINO::default()),
            Provider::Auto | Provider::Cpu => unreachable!("not in the wanted list"),
        };
        // The plugin library first: an ORT build without QNN built in answers the built-in
        // attempt with an error that leaves the session options changed.
        if p == Provider::Qnn {
            // provider=auto takes the plugin only for a real NPU, never the x86 HTP simulator.
            let kind = auto.then_some(ort::memory::DeviceType::NPU);
            let (b, r) = plugin_ep::append_qnn(
                builder,
                &rt.environment,
                config.ep_library.as_deref(),
                &rt.library,
                kind,
                &config.provider_options,
            );
            builder = b;
            match r {
                Ok(device) => {
                    if auto {
                        check_qnn_session_options(config, warnings)?;
                    }
                    notes.push(format!("QNN plugin execution provider on {device}"));
                    return Ok((builder, p.name().to_string()));
                }
                Err(e) => reasons.push(format!("qnn (plugin): {e}")),
            }
        }
        match builder.with_execution_providers([dispatch.error_on_failure()]) {
            Ok(b) => {
                if auto && p == Provider::Qnn {
                    check_qnn_session_options(config, warnings)?;
                }
                return Ok((b, p.name().to_string()));
            }
            Err(e) => {
                reasons.push(format!("{} (built in): {e}", p.name()));
                builder = e.recover();
            }
        }
    }
    if !auto && config.provider != Provider::Cpu {
        let msg = format!(
            "execution provider {} is not available: {}",
            config.provider.name(),
            reasons.join("; ")
        );
        if config.disable_cpu_fallback {
            return Err(Error::Runtime(format!(
                "{msg}; disable-cpu-fallback is set, so the model is not run on the CPU instead \
                 (check that this ONNX Runtime build or plugin has the provider, or pick another)"
            )));
        }
        warnings.push(format!("{msg}; running on the CPU instead"));
    }
    if auto && config.disable_cpu_fallback {
        return Err(Error::Runtime(format!(
            "provider=auto found no NPU or GPU provider ({}) and disable-cpu-fallback is set",
            reasons.join("; ")
        )));
    }
    if plugin_ep::any_registered() {
        builder = plugin_ep::append_cpu(builder, &rt.environment)?;
    }
    Ok((builder, Provider::Cpu.name().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placements_are_read_from_onnx_runtime_logs() {
        let log = vec![
            "Node placements".to_string(),
            " All nodes placed on [CPUExecutionProvider]. Number of nodes: 139".to_string(),
        ];
        assert_eq!(
            parse_placements(&log),
            vec![Placement {
                provider: "CPUExecutionProvider".into(),
                nodes: 139,
                ops: vec![]
            }]
        );
        let log = vec![
            " Node(s) placed on [QNNExecutionProvider]. Number of nodes: 1\n  QNN_123 (QNNExecutionProvider_QNN_123_0)\n".to_string(),
            " Node(s) placed on [CPUExecutionProvider]. Number of nodes: 2\n  Resize (up1)\n  Resize (up2)\n".to_string(),
        ];
        let p = parse_placements(&log);
        assert_eq!(p[1].provider, "CPUExecutionProvider");
        assert_eq!(p[1].nodes, 2);
        assert_eq!(p[1].ops, vec!["Resize", "Resize"]);
        assert_eq!(
            summarize_ops(&["Resize", "Conv", "Resize"]),
            "Conv×1, Resize×2"
        );
    }

    #[test]
    fn a_provider_failure_is_read_from_onnx_runtime_errors() {
        // As logged when libQnnHtp.so cannot find the wheel's libc++ (x86-64 wheel).
        let errors = vec![
            "QNN SetupBackend failed Unable to load backend, error:  libc++-71bc274c.so.1.0: cannot open shared object file".to_string(),
            "OrtEp::GetCapability() for QNNExecutionProvider failed with error: [ONNXRuntimeError] : 11 : EP_FAIL : QNN SetupBackend failed Unable to load backend, error:  libc++-71bc274c.so.1.0: cannot open shared object file".to_string(),
        ];
        assert_eq!(
            provider_failure(&errors).unwrap(),
            "QNN SetupBackend failed Unable to load backend, error:  libc++-71bc274c.so.1.0: cannot open shared object file"
        );
        // Other errors (a broken model, …) are not a provider failure.
        assert_eq!(provider_failure(&errors[..1]), None);
    }

    #[test]
    fn provider_options_parse_and_reject_malformed_items() {
        assert_eq!(
            parse_provider_options(" backend_type=htp, htp_performance_mode=burst ").unwrap(),
            vec![
                ("backend_type".into(), "htp".into()),
                ("htp_performance_mode".into(), "burst".into())
            ]
        );
        assert!(parse_provider_options("backend_type").is_err());
        assert!(parse_provider_options("=htp").is_err());
        assert!(parse_provider_options("").unwrap().is_empty());
    }

    #[test]
    fn a_provider_that_fails_to_start_is_read_from_the_session_error() {
        let refused = "/onnxruntime_src/onnxruntime/core/session/plugin_ep/ep_plugin_provider_interfaces.cc:393 \
            virtual std::unique_ptr<onnxruntime::IExecutionProvider> onnxruntime::PluginExecutionProviderFactory::CreateProvider(const OrtSessionOptions&, const OrtLogger&) \
            [ONNXRuntimeError] : 1 : FAIL : FP16 precision mode is enabled but soc_model is not specified. Both parameters must be set together for FP16 precision support.";
        assert_eq!(
            provider_start_failure(refused, false).unwrap(),
            "FP16 precision mode is enabled but soc_model is not specified. Both parameters must be set together for FP16 precision support."
        );
        assert_eq!(
            provider_start_failure(
                "[ONNXRuntimeError] : 11 : EP_FAIL : Failed to compose Qnn graph.",
                false
            )
            .unwrap(),
            "Failed to compose Qnn graph."
        );
        assert_eq!(
            provider_start_failure("[ONNXRuntimeError] : 1 : FAIL : This session contains graph nodes that are assigned to the default CPU EP, but fallback to CPU EP has been explicitly disabled by the user.", false)
                .unwrap(),
            "This session contains graph nodes that are assigned to the default CPU EP, but fallback to CPU EP has been explicitly disabled by the user."
        );
        assert_eq!(
            provider_start_failure("Failed to compose Qnn graph.", true).unwrap(),
            "Failed to compose Qnn graph."
        );
        assert_eq!(
            provider_start_failure(
                "fallback to CPU EP has been explicitly disabled by the user.",
                false
            )
            .unwrap(),
            "fallback to CPU EP has been explicitly disabled by the user."
        );
        assert_eq!(
            provider_start_failure(
                "[ONNXRuntimeError] : 7 : INVALID_PROTOBUF : Load model failed",
                false
            ),
            None
        );
    }
}
