//! EP-context models (QNN, OpenVINO): compiled on the first start, loaded on later ones,
//! rebuilt when what they were compiled from changes.

use std::path::{Path, PathBuf};

use super::config::SessionConfig;
use crate::error::{Error, Result};

/// A compiled EP-context model and the key that says what it was compiled from.
pub(super) struct ContextCache {
    pub(super) model: PathBuf,
    key_file: PathBuf,
    key: String,
}

impl ContextCache {
    pub(super) fn new(
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
        // and its options, and the batch a symbolic batch dimension is fixed to. Anything
        // else changed means recompiling.
        let mut key = format!(
            "model-fnv1a64={:016x}\nmodel-bytes={}\nonnxruntime={ort_version}\nprovider={provider}\noptions={options:?}\n",
            fnv1a64(&bytes),
            bytes.len()
        );
        if config.batch_size > 1 {
            key.push_str(&format!("batch-size={}\n", config.batch_size));
        }
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

    pub(super) fn is_valid(&self) -> bool {
        self.model.is_file() && std::fs::read_to_string(&self.key_file).is_ok_and(|k| k == self.key)
    }

    /// ONNX Runtime refuses to overwrite a context model, so stale files go first.
    pub(super) fn clear(&self) {
        let _ = std::fs::remove_file(&self.model);
        let _ = std::fs::remove_file(&self.key_file);
    }

    /// Records the key once ONNX Runtime has written the compiled model.
    pub(super) fn seal(&self) -> Result<()> {
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
