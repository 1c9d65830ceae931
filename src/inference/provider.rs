//! Execution providers: which one a session asks for, registering it (built in or as a
//! plugin library), and the fallback to the CPU.

use std::fmt;

use ort::ep::{self, ArbitrarilyConfigurableExecutionProvider as _};
use ort::session::builder::SessionBuilder;

use super::config::SessionConfig;
use super::{plugin_ep, qnn_options, runtime};
use crate::error::{Error, Result};

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

    /// Providers that compile the model into an EP-context model (cached with context-cache).
    pub(super) fn compiles_context_model(self) -> bool {
        matches!(self, Provider::Qnn | Provider::OpenVino)
    }

    /// Providers that compile the graph for its shapes once, so a symbolic batch dimension
    /// must be fixed before they take it (QNN HTP runs static graphs only).
    pub fn needs_static_shapes(self) -> bool {
        matches!(self, Provider::Qnn)
    }

    /// The providers tried, in order, for this request (none: the CPU).
    fn candidates(self) -> &'static [Provider] {
        match self {
            Provider::Auto => &[
                Provider::Qnn,
                Provider::TensorRt,
                Provider::Cuda,
                Provider::OpenVino,
            ],
            Provider::Cpu => &[],
            Provider::Qnn => &[Provider::Qnn],
            Provider::Cuda => &[Provider::Cuda],
            Provider::TensorRt => &[Provider::TensorRt],
            Provider::Xnnpack => &[Provider::Xnnpack],
            Provider::OpenVino => &[Provider::OpenVino],
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Checks the options of a session that will use QNN; warnings join `warnings`.
pub(super) fn check_qnn_options(config: &SessionConfig, warnings: &mut Vec<String>) -> Result<()> {
    warnings.extend(qnn_options::check(&config.provider_options)?);
    Ok(())
}

/// What registering a provider tells the session: warnings and notes for the user.
pub(super) struct Report<'a> {
    pub warnings: &'a mut Vec<String>,
    pub notes: &'a mut Vec<String>,
}

/// Registers the requested execution provider; falls back to the CPU (with a warning)
/// unless `disable_cpu_fallback` is set. Returns the provider that will run.
///
/// QNN is tried both ways ONNX Runtime offers it: built in (an ORT build with QNN) and as
/// the plugin library of the onnxruntime-qnn 2.x wheel.
pub(super) fn register_provider(
    mut builder: SessionBuilder,
    config: &SessionConfig,
    rt: &runtime::Runtime,
    report: Report<'_>,
) -> Result<(SessionBuilder, Provider)> {
    if config.disable_cpu_fallback && config.provider != Provider::Cpu {
        // ONNX Runtime then refuses to create a session that would put nodes on the CPU.
        builder = builder
            .with_config_entry("session.disable_cpu_ep_fallback", "1")
            .map_err(|e| Error::Runtime(e.to_string()))?;
    }
    let mut reasons = Vec::new();
    for &p in config.provider.candidates() {
        let (b, added) = try_provider(builder, p, config, rt, report.notes, &mut reasons);
        builder = b;
        if added {
            if config.provider == Provider::Auto && p == Provider::Qnn {
                // provider=qnn was checked before anything started; auto checks once it picks QNN.
                check_qnn_options(config, report.warnings)?;
            }
            return Ok((builder, p));
        }
    }
    fall_back_to_cpu(builder, config, rt, &reasons, report.warnings)
}

/// Adds provider `p` (for QNN, the plugin library first, then the built-in one); says
/// whether it was added, else pushes why not to `reasons`.
fn try_provider(
    mut builder: SessionBuilder,
    p: Provider,
    config: &SessionConfig,
    rt: &runtime::Runtime,
    notes: &mut Vec<String>,
    reasons: &mut Vec<String>,
) -> (SessionBuilder, bool) {
    // The plugin library first: an ORT build without QNN built in answers the built-in
    // attempt with an error that leaves the session options changed.
    if p == Provider::Qnn {
        // provider=auto takes the plugin only for a real NPU, never the x86 HTP simulator.
        let kind = (config.provider == Provider::Auto).then_some(ort::memory::DeviceType::NPU);
        let (b, r) = plugin_ep::append_qnn(
            builder,
            &rt.environment,
            config.ep_library.as_deref(),
            &rt.library,
            &rt.version,
            kind,
            &config.provider_options,
        );
        builder = b;
        match r {
            Ok(device) => {
                notes.push(format!("QNN plugin execution provider on {device}"));
                return (builder, true);
            }
            Err(e) => reasons.push(format!("qnn (plugin): {e}")),
        }
    }
    match builder.with_execution_providers([built_in(p, config).error_on_failure()]) {
        Ok(b) => (b, true),
        Err(e) => {
            reasons.push(format!("{} (built in): {e}", p.name()));
            (e.recover(), false)
        }
    }
}

/// The built-in provider `p` with the user's options.
fn built_in(p: Provider, config: &SessionConfig) -> ep::ExecutionProviderDispatch {
    macro_rules! with_options {
        ($ep:expr) => {{
            let mut e = $ep;
            for (k, v) in &config.provider_options {
                e = e.with_arbitrary_config(k, v);
            }
            e.build()
        }};
    }
    match p {
        Provider::Qnn => with_options!(ep::QNN::default()),
        Provider::Cuda => with_options!(ep::CUDA::default()),
        Provider::TensorRt => with_options!(ep::TensorRT::default()),
        Provider::Xnnpack => with_options!(ep::XNNPACK::default()),
        Provider::OpenVino => with_options!(ep::OpenVINO::default()),
        // Never a candidate (see Provider::candidates); the CPU needs no registration.
        Provider::Auto | Provider::Cpu => ep::CPU::default().build(),
    }
}

/// No requested provider could be added: the CPU, with a warning, unless
/// disable-cpu-fallback forbids it.
fn fall_back_to_cpu(
    mut builder: SessionBuilder,
    config: &SessionConfig,
    rt: &runtime::Runtime,
    reasons: &[String],
    warnings: &mut Vec<String>,
) -> Result<(SessionBuilder, Provider)> {
    let reasons = reasons.join("; ");
    match config.provider {
        Provider::Cpu => {}
        Provider::Auto if config.disable_cpu_fallback => {
            return Err(Error::Runtime(format!(
                "provider=auto found no NPU or GPU provider ({reasons}) and disable-cpu-fallback is set"
            )));
        }
        Provider::Auto => {}
        p => {
            let msg = format!("execution provider {p} is not available: {reasons}");
            if config.disable_cpu_fallback {
                return Err(Error::Runtime(format!(
                    "{msg}; disable-cpu-fallback is set, so the model is not run on the CPU instead \
                     (check that this ONNX Runtime build or plugin has the provider, or pick another)"
                )));
            }
            warnings.push(format!("{msg}; running on the CPU instead"));
        }
    }
    if plugin_ep::any_registered() {
        builder = plugin_ep::append_cpu(builder, &rt.environment)?;
    }
    Ok((builder, Provider::Cpu))
}
