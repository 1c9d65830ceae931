//! Execution providers shipped as ONNX Runtime *plugin* libraries (the EP ABI of ONNX
//! Runtime ≥ 1.22): the `onnxruntime-qnn` 2.x wheel's `libonnxruntime_providers_qnn.so`,
//! `onnxruntime-ep-openvino`, …
//!
//! Flow: register the library once per process on the environment, pick one of the
//! devices it offers, and append it to the session builder with its options.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ort::device::Device;
use ort::environment::Environment;
use ort::memory::DeviceType;
use ort::session::builder::SessionBuilder;

use super::qnn_ep_version;
use crate::error::{Error, Result};

/// Registration name → library path for this process (ONNX Runtime refuses a second
/// registration under the same name).
static REGISTERED: Mutex<Option<HashMap<String, PathBuf>>> = Mutex::new(None);

/// Whether any plugin library is registered in this process.
pub fn any_registered() -> bool {
    REGISTERED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .is_some_and(|m| !m.is_empty())
}

/// Registers `path` under `registration_name` (use the EP's own name, e.g.
/// `QNNExecutionProvider`: the QNN plugin names its EP after it), once per process.
pub fn register_library(env: &Environment, registration_name: &str, path: &Path) -> Result<()> {
    let mut guard = REGISTERED.lock().unwrap_or_else(|e| e.into_inner());
    let map = guard.get_or_insert_with(HashMap::new);
    if let Some(prev) = map.get(registration_name) {
        if prev != path {
            return Err(Error::Runtime(format!(
                "execution provider library {} cannot be registered as '{registration_name}': {} already \
                 is, and one process can load only one (restart the process to switch)",
                path.display(),
                prev.display()
            )));
        }
        return Ok(());
    }
    env.register_ep_library(registration_name, path)
        .map_err(|e| {
            Error::Runtime(format!(
                "ONNX Runtime could not load the execution provider library {}: {e} (it needs ONNX \
             Runtime ≥ 1.23 and its own libraries next to it: `ldd` shows which are missing)",
                path.display()
            ))
        })?;
    map.insert(registration_name.to_string(), path.to_path_buf());
    Ok(())
}

/// One line per device, for logs: `QNNExecutionProvider (Qualcomm) on NPU …`.
pub fn describe(dev: &Device<'_>) -> String {
    let hw = dev.hardware_device();
    format!(
        "{} ({}) on {:?} {} id {:#x}",
        dev.ep().unwrap_or("?"),
        dev.ep_vendor().unwrap_or("?"),
        hw.ty(),
        hw.vendor().unwrap_or("?"),
        hw.id()
    )
}

/// Devices offered for `ep_name`, NPU first, then GPU, then CPU; `wanted` keeps one kind.
fn devices_for<'e>(
    env: &'e Environment,
    ep_name: &str,
    wanted: Option<DeviceType>,
) -> Vec<Device<'e>> {
    let rank = |t: DeviceType| match t {
        DeviceType::NPU => 0,
        DeviceType::GPU => 1,
        DeviceType::CPU => 2,
        _ => 3,
    };
    let mut devs: Vec<Device<'e>> = env
        .devices()
        .filter(|d| d.ep().is_ok_and(|n| n == ep_name))
        .filter(|d| wanted.is_none_or(|w| d.hardware_device().ty() == w))
        .collect();
    devs.sort_by_key(|d| rank(d.hardware_device().ty()));
    devs
}

/// Appends `ep_name` on its best device (or the first of kind `wanted`) with `options`
/// (`backend_type=htp`, …). The builder always comes back, so the caller can fall back;
/// the result names the chosen device or says why there was none.
pub fn append(
    builder: SessionBuilder,
    env: &Environment,
    ep_name: &str,
    wanted: Option<DeviceType>,
    options: &[(String, String)],
) -> (SessionBuilder, Result<String>) {
    let Some(dev) = devices_for(env, ep_name, wanted).into_iter().next() else {
        let offered = env
            .devices()
            .map(|d| describe(&d))
            .collect::<Vec<_>>()
            .join("; ");
        let err = Error::Runtime(format!(
            "execution provider {ep_name} offers no {}device on this machine (devices: {offered})",
            wanted.map(|w| format!("{w:?} ")).unwrap_or_default()
        ));
        return (builder, Err(err));
    };
    let chosen = describe(&dev);
    // ort passes on only options prefixed "<EP name>." (and strips the prefix).
    let prefixed: Vec<(String, String)> = options
        .iter()
        .map(|(k, v)| (format!("{ep_name}.{k}"), v.clone()))
        .collect();
    match builder.with_devices([dev], Some(&prefixed)) {
        Ok(b) => (b, Ok(chosen)),
        Err(e) => {
            let msg = format!("could not add {ep_name} on {chosen}: {e}");
            (e.recover(), Err(Error::Runtime(msg)))
        }
    }
}

const QNN_LIBRARY: &str = "libonnxruntime_providers_qnn.so";

/// Where the QNN plugin (with its `libQnn*.so` beside it) is looked for, most specific first:
/// an explicit file or folder, `FFNETSEG_QNN_EP_LIBRARY`, an `onnxruntime_qnn` wheel next to
/// the ONNX Runtime wheel that was loaded, then `~/.local/lib/ffnetseg/qnn/` (make install)
/// and the system folders.
pub fn qnn_library_candidates(explicit: Option<&Path>, ort_library: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(p) = explicit {
        out.push(if p.is_dir() {
            p.join(QNN_LIBRARY)
        } else {
            p.to_path_buf()
        });
    }
    if let Some(p) = std::env::var_os("FFNETSEG_QNN_EP_LIBRARY").filter(|p| !p.is_empty()) {
        out.push(PathBuf::from(p));
    }
    if let Some(dir) = ort_library.parent().filter(|d| !d.as_os_str().is_empty()) {
        out.push(dir.join(QNN_LIBRARY));
        out.push(dir.join("qnn").join(QNN_LIBRARY));
        // site-packages/onnxruntime/capi/libonnxruntime.so → site-packages/onnxruntime_qnn/
        if let Some(site) = dir.parent().and_then(Path::parent) {
            out.push(site.join("onnxruntime_qnn").join(QNN_LIBRARY));
        }
    }
    if let Some(home) = std::env::var_os("HOME") {
        out.push(
            PathBuf::from(home)
                .join(".local/lib/ffnetseg/qnn")
                .join(QNN_LIBRARY),
        );
    }
    for dir in ["/usr/local/lib/ffnetseg/qnn", "/usr/lib/ffnetseg/qnn"] {
        out.push(Path::new(dir).join(QNN_LIBRARY));
    }
    out
}

/// The QNN plugin path: find and register the library (once), pick its device (`wanted`:
/// `Some(NPU)` for provider=auto, so the x86 HTP simulator is never picked by accident),
/// and append it with the user's options (`backend_type=htp` unless a backend is given).
/// A library whose version files say it is not a series this plugin drives, or that needs a
/// newer ONNX Runtime than `onnxruntime_version`, is refused before it is loaded.
pub fn append_qnn(
    builder: SessionBuilder,
    env: &Environment,
    explicit_library: Option<&Path>,
    ort_library: &Path,
    onnxruntime_version: &str,
    wanted: Option<DeviceType>,
    options: &[(String, String)],
) -> (SessionBuilder, Result<String>) {
    const EP: &str = "QNNExecutionProvider";
    let candidates = qnn_library_candidates(explicit_library, ort_library);
    let Some(lib) = candidates.iter().find(|p| p.is_file()) else {
        let tried = candidates
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let err = Error::Runtime(format!(
            "the QNN execution provider library was not found (tried {tried}); install the \
             onnxruntime-qnn 2.x wheel, or set ffnetinfer's ep-library to its {QNN_LIBRARY}"
        ));
        return (builder, Err(err));
    };
    // Checked before loading: a library of another series may not even load cleanly.
    let version = qnn_ep_version::read(lib);
    if let Some(v) = &version
        && let Err(e) = qnn_ep_version::check(v, lib, onnxruntime_version)
    {
        return (builder, Err(e));
    }
    if let Err(e) = register_library(env, EP, lib) {
        return (builder, Err(e));
    }
    let mut opts = options.to_vec();
    if !opts
        .iter()
        .any(|(k, _)| k == "backend_type" || k == "backend_path")
    {
        opts.push(("backend_type".into(), "htp".into()));
    }
    let (builder, device) = append(builder, env, EP, wanted, &opts);
    let version = version.map_or_else(
        || {
            format!(
                "version unknown: no build_and_package_info.py beside {}",
                lib.display()
            )
        },
        |v| v.to_string(),
    );
    (builder, device.map(|d| format!("{d}, {version}")))
}

/// Appends ONNX Runtime's own CPU device explicitly. Once any plugin library is
/// registered, ort's automatic device selection would otherwise hand a session without an
/// explicit provider to the plugin's device.
pub fn append_cpu(builder: SessionBuilder, env: &Environment) -> Result<SessionBuilder> {
    let (b, r) = append(
        builder,
        env,
        "CPUExecutionProvider",
        Some(DeviceType::CPU),
        &[],
    );
    r.map(|_| b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qnn_library_is_looked_for_next_to_the_loaded_onnx_runtime_wheel() {
        let c = qnn_library_candidates(
            Some(Path::new("/opt/qnn/libonnxruntime_providers_qnn.so")),
            Path::new(
                "/venv/lib/python3.11/site-packages/onnxruntime/capi/libonnxruntime.so.1.32.0",
            ),
        );
        assert_eq!(c[0], Path::new("/opt/qnn/libonnxruntime_providers_qnn.so"));
        assert!(c.contains(&PathBuf::from(
            "/venv/lib/python3.11/site-packages/onnxruntime_qnn/libonnxruntime_providers_qnn.so"
        )));
        assert!(
            c.iter()
                .any(|p| p.ends_with(".local/lib/ffnetseg/qnn/libonnxruntime_providers_qnn.so"))
        );
    }
}
