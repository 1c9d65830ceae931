//! What ONNX Runtime logs while it creates a session, captured and read: where the nodes
//! were placed, and why a provider failed.

use std::sync::{Arc, Mutex};

use ort::logging::LogLevel;
use ort::session::builder::SessionBuilder;

use crate::error::{Error, Result};

/// ONNX Runtime's messages during session creation, errors apart: a provider that fails in
/// GetCapability (e.g. the QNN backend library cannot be loaded) leaves the session on the
/// CPU, and only its error says why.
#[derive(Default, Clone)]
pub(super) struct OrtLog {
    messages: Arc<Mutex<Vec<String>>>,
    errors: Arc<Mutex<Vec<String>>>,
}

fn lock(m: &Mutex<Vec<String>>) -> std::sync::MutexGuard<'_, Vec<String>> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl OrtLog {
    /// Routes the builder's log (verbose: placements are logged at that level) here.
    pub(super) fn attach(&self, builder: SessionBuilder) -> Result<SessionBuilder> {
        let sink = self.clone();
        let logger = move |level: LogLevel, _: &str, _: &str, _: &str, message: &str| {
            let to = match level {
                LogLevel::Verbose | LogLevel::Info | LogLevel::Warning => &sink.messages,
                LogLevel::Error | LogLevel::Fatal => &sink.errors,
            };
            lock(to).push(message.to_string());
        };
        builder
            .with_logger(Arc::new(logger))
            .map_err(|e| Error::Runtime(e.to_string()))?
            .with_log_level(LogLevel::Verbose)
            .map_err(|e| Error::Runtime(e.to_string()))
    }

    pub(super) fn placements(&self) -> Vec<Placement> {
        parse_placements(&lock(&self.messages))
    }

    pub(super) fn provider_failure(&self) -> Option<String> {
        provider_failure(&lock(&self.errors))
    }

    /// The first error that says more than `why` (e.g. "Unsupported nodes in QNN EP: …"),
    /// shortened to 300 characters, in parentheses.
    pub(super) fn detail_beyond(&self, why: &str) -> Option<String> {
        let errors = lock(&self.errors);
        let m = errors
            .iter()
            .find(|m| !why.contains(m.as_str()) && !m.contains(why))?;
        let short: String = m.chars().take(300).collect();
        Some(if short.len() < m.len() {
            format!(" ({short}…)")
        } else {
            format!(" ({short})")
        })
    }

    /// Prints everything when `FFNETSEG_DEBUG_ORTLOG` is set.
    pub(super) fn dump_if_asked(&self) {
        if std::env::var_os("FFNETSEG_DEBUG_ORTLOG").is_some() {
            for m in lock(&self.messages).iter() {
                eprintln!("ORTLOG {m}");
            }
            for m in lock(&self.errors).iter() {
                eprintln!("ORTLOG ERROR {m}");
            }
        }
    }
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
pub(super) fn provider_start_failure(error: &str, ep_failure: bool) -> Option<String> {
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
pub(super) fn summarize_ops(ops: &[&str]) -> String {
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
