//! Which QNN execution provider a library is, and whether this plugin can use it with the
//! ONNX Runtime that is loaded.
//!
//! The plugin library itself reports no useful version (its EP metadata says `0.1.0`), so the
//! version comes from the files the `onnxruntime-qnn` wheel ships beside it:
//! `build_and_package_info.py` (`__version__`, `qnn_version`) and the wheel's `METADATA`
//! (`Requires-Dist: onnxruntime>=X`). `make install` and the `ffnetseg-qnn` package copy both
//! next to the library, so a board updated over the air is checked the same way as a wheel.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// onnxruntime-qnn majors this plugin drives (the 2.x series is the plugin-EP one).
pub const SUPPORTED_MAJORS: std::ops::RangeInclusive<u32> = 2..=2;

/// What the files beside a QNN plugin library say about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QnnEpVersion {
    /// onnxruntime-qnn's own version, e.g. `2.7.0`.
    pub package: String,
    /// The QNN SDK it was built with, e.g. `2.51.0`.
    pub qnn_sdk: Option<String>,
    /// The oldest ONNX Runtime it declares it needs, e.g. `1.24.2`.
    pub needs_onnxruntime: Option<String>,
    /// Where the version was read.
    pub source: PathBuf,
}

impl fmt::Display for QnnEpVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "onnxruntime-qnn {}", self.package)?;
        if let Some(sdk) = &self.qnn_sdk {
            write!(f, " (QNN SDK {sdk})")?;
        }
        Ok(())
    }
}

/// Reads the version of the QNN plugin at `library`; `None` when nothing beside it says.
pub fn read(library: &Path) -> Option<QnnEpVersion> {
    let dir = library.parent()?;
    let info = dir.join("build_and_package_info.py");
    let text = std::fs::read_to_string(&info).ok()?;
    let package = python_string(&text, "__version__")?;
    Some(QnnEpVersion {
        package,
        qnn_sdk: python_string(&text, "qnn_version"),
        needs_onnxruntime: metadata_file(dir).and_then(|m| onnxruntime_requirement(&m)),
        source: info,
    })
}

/// The wheel's METADATA: beside the library (packages, make install) or in the wheel's
/// `onnxruntime_qnn-<version>.dist-info` next to the library's folder.
fn metadata_file(dir: &Path) -> Option<String> {
    if let Ok(text) = std::fs::read_to_string(dir.join("METADATA")) {
        return Some(text);
    }
    let site = dir.parent()?;
    std::fs::read_dir(site)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("onnxruntime_qnn-") && n.ends_with(".dist-info"))
        })
        .find_map(|p| std::fs::read_to_string(p.join("METADATA")).ok())
}

/// `name = '2.7.0'` (or double quotes) in a Python file.
fn python_string(text: &str, name: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let (key, value) = line.split_once('=')?;
        (key.trim() == name).then(|| value.trim().trim_matches(['\'', '"']).to_string())
    })
}

/// `Requires-Dist: onnxruntime>=1.24.2` → `1.24.2`.
fn onnxruntime_requirement(metadata: &str) -> Option<String> {
    metadata.lines().find_map(|line| {
        let spec = line.strip_prefix("Requires-Dist:")?.trim();
        let rest = spec.strip_prefix("onnxruntime")?.trim_start();
        Some(rest.strip_prefix(">=")?.trim().to_string())
    })
}

/// Numeric parts of a version (`1.24.2` → `[1, 24, 2]`; stops at the first non-number).
fn parts(version: &str) -> Vec<u32> {
    version
        .split('.')
        .map_while(|p| p.trim().parse().ok())
        .collect()
}

/// Refuses a QNN EP this plugin cannot drive or one that needs a newer ONNX Runtime than the
/// loaded `onnxruntime_version`; the error names the versions found and needed.
pub fn check(found: &QnnEpVersion, library: &Path, onnxruntime_version: &str) -> Result<()> {
    let major = parts(&found.package).first().copied();
    if !major.is_some_and(|m| SUPPORTED_MAJORS.contains(&m)) {
        return Err(Error::Runtime(format!(
            "the QNN execution provider at {} is {found}; ffnetseg needs onnxruntime-qnn {}.x \
             (install the ffnetseg-qnn package or the onnxruntime-qnn wheel of that series, or \
             point ffnetinfer's ep-library at one)",
            library.display(),
            SUPPORTED_MAJORS.start()
        )));
    }
    if let Some(needed) = &found.needs_onnxruntime
        && parts(onnxruntime_version) < parts(needed)
    {
        return Err(Error::Runtime(format!(
            "the QNN execution provider at {} is {found}, which needs ONNX Runtime ≥ {needed}; \
             the loaded ONNX Runtime is {onnxruntime_version} (update ffnetseg-onnxruntime / the \
             onnxruntime wheel, or set ffnetinfer's ort-library to a newer one)",
            library.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh folder of this call's own under the system temp folder (tests run in
    /// parallel threads of one process, so the process id alone is not enough).
    fn scratch(name: &str) -> PathBuf {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("ffnetseg-qnn-ep-{}-{n}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn fake_wheel(version: &str, needs: &str) -> PathBuf {
        let site = scratch(&format!("wheel-{version}-{needs}"));
        let pkg = site.join("onnxruntime_qnn");
        let info = site.join(format!("onnxruntime_qnn-{version}.dist-info"));
        std::fs::create_dir_all(&pkg).unwrap();
        std::fs::create_dir_all(&info).unwrap();
        std::fs::write(
            pkg.join("build_and_package_info.py"),
            format!("package_name = 'onnxruntime-qnn'\n__version__ = '{version}'\nqnn_version = '2.51.0'\n"),
        )
        .unwrap();
        std::fs::write(
            info.join("METADATA"),
            format!("Name: onnxruntime-qnn\nRequires-Dist: numpy>=1.21.6\nRequires-Dist: onnxruntime>={needs}\n"),
        )
        .unwrap();
        pkg.join("libonnxruntime_providers_qnn.so")
    }

    #[test]
    fn the_wheel_layout_gives_package_sdk_and_onnxruntime_floor() {
        let lib = fake_wheel("2.7.0", "1.24.2");
        let v = read(&lib).expect("version read");
        assert_eq!(v.package, "2.7.0");
        assert_eq!(v.qnn_sdk.as_deref(), Some("2.51.0"));
        assert_eq!(v.needs_onnxruntime.as_deref(), Some("1.24.2"));
        assert_eq!(v.to_string(), "onnxruntime-qnn 2.7.0 (QNN SDK 2.51.0)");
    }

    #[test]
    fn a_supported_ep_with_a_new_enough_onnxruntime_passes() {
        let lib = fake_wheel("2.7.0", "1.24.2");
        check(&read(&lib).unwrap(), &lib, "1.32.0").unwrap();
        check(&read(&lib).unwrap(), &lib, "1.24.2").unwrap();
    }

    /// The refusal of EP `ep` (needing ONNX Runtime `needs`) next to ONNX Runtime `ort`.
    fn refusal(ep: &str, needs: &str, ort: &str) -> String {
        let lib = fake_wheel(ep, needs);
        check(&read(&lib).unwrap(), &lib, ort)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn another_major_is_refused_naming_found_and_needed() {
        let e = refusal("3.0.1", "1.24.2", "1.32.0");
        assert!(e.contains("onnxruntime-qnn 3.0.1"), "{e}");
        assert!(e.contains("needs onnxruntime-qnn 2.x"), "{e}");
    }

    #[test]
    fn an_onnxruntime_older_than_the_ep_needs_is_refused() {
        let e = refusal("2.7.0", "1.24.2", "1.23.2");
        assert!(e.contains("needs ONNX Runtime ≥ 1.24.2"), "{e}");
        assert!(e.contains("1.23.2"), "{e}");
    }

    #[test]
    fn metadata_beside_the_library_is_read_as_installed_by_packages() {
        let dir = scratch("package");
        std::fs::write(
            dir.join("build_and_package_info.py"),
            "__version__ = \"2.9.1\"\n",
        )
        .unwrap();
        std::fs::write(dir.join("METADATA"), "Requires-Dist: onnxruntime>=1.26.0\n").unwrap();
        let lib = dir.join("libonnxruntime_providers_qnn.so");
        let v = read(&lib).unwrap();
        assert_eq!((v.package.as_str(), v.qnn_sdk.as_deref()), ("2.9.1", None));
        assert!(check(&v, &lib, "1.25.1").is_err());
    }

    #[test]
    fn no_version_files_means_unknown() {
        let dir = scratch("empty");
        assert_eq!(read(&dir.join("libonnxruntime_providers_qnn.so")), None);
    }
}
