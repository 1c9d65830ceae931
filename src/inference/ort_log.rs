//! What ONNX Runtime logs while it creates a session, captured and read: where the nodes
//! were placed, and why a provider failed.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use ort::logging::LogLevel;
use ort::session::builder::SessionBuilder;

use super::placement::{Placement, parse_placements};
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

    /// Why the provider refused nodes (node name → reason), where it said so.
    pub(super) fn rejections(&self) -> BTreeMap<String, String> {
        parse_rejections(&lock(&self.messages))
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

/// Why the provider refused nodes, by node name, from its validation messages (the QNN EP's
/// "Validation FAILED for 1 nodes in OrtNodeUnit (QuantizeLinear) :\n\tOperator type:
/// QuantizeLinear Node name: image_q Node index: 584\n\tREASON : …").
pub(super) fn parse_rejections(log: &[String]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for m in log.iter().filter(|m| m.starts_with("Validation FAILED")) {
        let Some(reason) = m
            .lines()
            .find_map(|l| l.trim().strip_prefix("REASON :"))
            .map(str::trim)
        else {
            continue;
        };
        for line in m.lines() {
            let Some((_, named)) = line.split_once(" Node name: ") else {
                continue;
            };
            let name = named.rsplit_once(" Node index:").map_or(named, |(n, _)| n);
            if !name.trim().is_empty() {
                out.insert(name.trim().to_string(), reason.to_string());
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejections_are_read_from_the_providers_validation_messages() {
        let log = vec![
            "QNN node builder is trying to add node. Onnx node name: [image_q] onnx node type: [QuantizeLinear].".to_string(),
            "Validation FAILED for 1 nodes in OrtNodeUnit (QuantizeLinear) :\n\tOperator type: QuantizeLinear Node name: image_q Node index: 584\n\tREASON : QNN EP is configured to not take Q nodes that consume a graph input.\n".to_string(),
            "Validation PASSED for 3 nodes in OrtNodeUnit (Transpose) :\n\tOperator type: DequantizeLinear Node name: image_dq Node index: 585\n".to_string(),
            "Validation FAILED for 2 nodes in OrtNodeUnit (Resize) :\n\tOperator type: Resize Node name: up1 Node index: 3\n\tOperator type: Resize Node name: up2 Node index: 4\n\tREASON : cubic mode is not supported\n".to_string(),
        ];
        let r = parse_rejections(&log);
        assert_eq!(
            r.get("image_q").map(String::as_str),
            Some("QNN EP is configured to not take Q nodes that consume a graph input.")
        );
        assert_eq!(
            r.get("up2").map(String::as_str),
            Some("cubic mode is not supported")
        );
        assert_eq!(r.len(), 3, "{r:?}");
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
