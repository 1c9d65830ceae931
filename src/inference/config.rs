//! What a session is asked for: the model, the provider and their options.

use std::path::{Path, PathBuf};

use super::provider::Provider;
use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq)]
pub struct SessionConfig {
    /// The .onnx file: a path (relative to the working directory) or a `file://` URI.
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
    /// Frames per run (a shared instance's batch-size). A provider that compiles static
    /// shapes (QNN) gets a symbolic batch dimension fixed to it; runs with fewer frames
    /// are padded.
    pub batch_size: usize,
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
            batch_size: 1,
        }
    }

    /// TensorRT keeps (and validates) its own engine cache in the context-cache folder.
    pub(super) fn with_tensorrt_cache(&self) -> SessionConfig {
        let mut config = self.clone();
        if let (Some(dir), Provider::TensorRt) = (&config.context_cache, config.provider) {
            config
                .provider_options
                .push(("trt_engine_cache_enable".into(), "1".into()));
            config
                .provider_options
                .push(("trt_engine_cache_path".into(), dir.display().to_string()));
        }
        config
    }

    /// The provider options as `k=v,k=v`, for messages.
    pub(super) fn options_text(&self) -> String {
        self.provider_options
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
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

/// The model file `model` names, checked: a `file://` URI (as GStreamer users write them)
/// becomes its path; a directory, a missing file or an empty one is refused with a message
/// that says which it is.
pub(super) fn model_file(model: &Path) -> Result<PathBuf> {
    let path = match model.to_str().and_then(|s| s.strip_prefix("file://")) {
        Some(uri) => file_uri_path(uri).ok_or_else(|| {
            Error::Model(format!(
                "the model URI {} is not a local file:// URI (file:///path/to/model.onnx)",
                model.display()
            ))
        })?,
        None => model.to_path_buf(),
    };
    let meta = std::fs::metadata(&path).map_err(|e| {
        let relative = if path.is_relative() {
            let cwd = std::env::current_dir()
                .map_or_else(|_| "an unknown folder".into(), |d| d.display().to_string());
            format!(" (a relative path, looked up from the working directory {cwd})")
        } else {
            String::new()
        };
        Error::Model(format!(
            "cannot read model file {}{relative}: {e}; set ffnetinfer's model property to an .onnx file",
            path.display()
        ))
    })?;
    if meta.is_dir() {
        return Err(Error::Model(format!(
            "model {} is a directory, not an .onnx file; name the model file inside it",
            path.display()
        )));
    }
    if meta.len() == 0 {
        return Err(Error::Model(format!(
            "model file {} is empty",
            path.display()
        )));
    }
    Ok(path)
}

/// The path of a `file://` URI's remainder: an empty or `localhost` host, then an absolute,
/// percent-encoded path.
fn file_uri_path(rest: &str) -> Option<PathBuf> {
    let path = rest.strip_prefix("localhost").unwrap_or(rest);
    if !path.starts_with('/') {
        return None;
    }
    let bytes: Vec<u8> = percent_encoding::percent_decode_str(path).collect();
    Some(PathBuf::from(
        <std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(bytes),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn model_paths_are_checked_and_file_uris_accepted() {
        let dir = std::env::temp_dir().join(format!("ffnetseg-model-path-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let e = model_file(&dir).unwrap_err().to_string();
        assert!(e.contains("is a directory, not an .onnx file"), "{e}");

        let e = model_file(Path::new("no/such/model.onnx"))
            .unwrap_err()
            .to_string();
        let cwd = std::env::current_dir().unwrap();
        assert!(
            e.contains("relative path") && e.contains(&cwd.display().to_string()),
            "{e}"
        );

        let file = dir.join("a model.onnx");
        std::fs::write(&file, b"x").unwrap();
        let uri = format!("file://{}", dir.join("a%20model.onnx").display());
        assert_eq!(model_file(Path::new(&uri)).unwrap(), file);
        let e = model_file(Path::new("file://host/m.onnx"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a local file:// URI"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
