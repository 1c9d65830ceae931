//! Finding and loading ONNX Runtime (`libonnxruntime.so`) once per process.
//!
//! The library is loaded at run time so one plugin binary works with whatever ORT build
//! a machine has (the PyPI wheel on a PC, a QNN-enabled build on a Snapdragon board).
//! Search order: an explicit path (element property), `ORT_DYLIB_PATH`, the path baked
//! in at build time (`FFNETSEG_ORT_LIBRARY`), the per-user install made by `make install`
//! (`~/.local/lib/ffnetseg/libonnxruntime.so`), then the system loader's search path.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use crate::error::{Error, Result};

/// ONNX Runtime's process-wide state: the loaded library and its one environment.
pub struct Runtime {
    pub environment: ort::environment::Environment,
    pub library: PathBuf,
    pub version: String,
}

static RUNTIME: OnceLock<Runtime> = OnceLock::new();
// Serialises first loads so two elements starting together do not race.
static LOADING: Mutex<()> = Mutex::new(());

/// Oldest ONNX Runtime minor version (1.x) that works.
const MIN_MINOR: u32 = 23;

/// Library file names tried in each directory.
const LIB_NAMES: [&str; 1] = ["libonnxruntime.so"];

/// Candidate library paths, most specific first.
pub fn candidates(explicit: Option<&Path>) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(p) = explicit {
        out.push(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        out.push(PathBuf::from(p));
    }
    if let Some(p) = option_env!("FFNETSEG_ORT_LIBRARY").filter(|p| !p.is_empty()) {
        out.push(PathBuf::from(p));
    }
    if let Some(home) = std::env::var_os("HOME") {
        let dir = PathBuf::from(home).join(".local/lib/ffnetseg");
        for n in LIB_NAMES {
            out.push(dir.join(n));
        }
    }
    for dir in ["/usr/local/lib/ffnetseg", "/usr/lib/ffnetseg"] {
        for n in LIB_NAMES {
            out.push(Path::new(dir).join(n));
        }
    }
    out
}

/// Loads ONNX Runtime if no element has yet, and returns it. A later call with another
/// explicit path gets the already-loaded library (one per process); the caller can
/// compare `library` and warn.
pub fn runtime(explicit: Option<&Path>) -> Result<&'static Runtime> {
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt);
    }
    let _guard = LOADING.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt);
    }
    let mut tried = Vec::new();
    let mut chosen = None;
    for path in candidates(explicit) {
        // Paths we can see are missing are skipped; explicit ones are reported.
        if path.is_absolute() && !path.exists() {
            if explicit == Some(path.as_path()) {
                return Err(Error::Runtime(format!(
                    "the ONNX Runtime library {} does not exist; point the ort-library property \
                     (or ORT_DYLIB_PATH) at libonnxruntime.so",
                    path.display()
                )));
            }
            tried.push(format!("{} (missing)", path.display()));
            continue;
        }
        chosen = Some(path);
        break;
    }
    // Last resort: the system loader's search path (LD_LIBRARY_PATH, ld.so.cache).
    let path = chosen.unwrap_or_else(|| PathBuf::from("libonnxruntime.so"));
    // 1.22 loads (ort's own floor) but aborts the process when a session is created;
    // refuse it with a message instead, before ort takes the library.
    if let Some(version) = library_version(&path) {
        let minor = version
            .split('.')
            .nth(1)
            .and_then(|m| m.parse::<u32>().ok());
        if minor.is_some_and(|m| m < MIN_MINOR) {
            return Err(Error::Runtime(format!(
                "ONNX Runtime {version} at {} is too old: ffnetseg needs 1.{MIN_MINOR} or newer \
                 (pip install -U onnxruntime, then make install; or point ORT_DYLIB_PATH at a newer library)",
                path.display()
            )));
        }
    }
    let builder = ort::init_from(&path).map_err(|e| {
        tried.push(format!("{} ({e})", path.display()));
        Error::Runtime(format!(
            "could not load libonnxruntime.so; tried: {}. Install it (`make install` puts the \
             PyPI onnxruntime wheel's library in ~/.local/lib/ffnetseg/), or set ORT_DYLIB_PATH \
             or ffnetinfer's ort-library property to the file (ONNX Runtime ≥ 1.23 is needed)",
            tried.join("; ")
        ))
    })?;
    let environment = builder
        .with_name("ffnetseg")
        .with_telemetry(false)
        .build()
        .map_err(|e| {
            Error::Runtime(format!(
                "could not create the ONNX Runtime environment: {e}"
            ))
        })?;
    let version = library_version(&path).unwrap_or_else(ort_version);
    let _ = RUNTIME.set(Runtime {
        environment,
        library: path,
        version,
    });
    Ok(RUNTIME.get().expect("set just above"))
}

/// The version a libonnxruntime reports (`OrtGetApiBase()->GetVersionString()`), read
/// without initialising anything; None when it cannot be loaded or asked.
fn library_version(path: &Path) -> Option<String> {
    #[repr(C)]
    struct ApiBase {
        get_api: *const std::ffi::c_void,
        get_version_string: unsafe extern "C" fn() -> *const std::ffi::c_char,
    }
    // SAFETY: loading runs the library's initialisers (as ort would next); the symbol has
    // the OrtApiBase signature of onnxruntime_c_api.h, and the returned string is static.
    unsafe {
        let lib = libloading::Library::new(path).ok()?;
        let base: libloading::Symbol<unsafe extern "C" fn() -> *const ApiBase> =
            lib.get(b"OrtGetApiBase").ok()?;
        let base = base();
        if base.is_null() {
            return None;
        }
        let v = ((*base).get_version_string)();
        (!v.is_null()).then(|| std::ffi::CStr::from_ptr(v).to_string_lossy().into_owned())
    }
}

fn ort_version() -> String {
    // Build info reads e.g. "ORT Build Info: git-branch=rel-1.31.1, ...".
    let info = ort::info();
    info.split(|c: char| c == ',' || c.is_whitespace())
        .find_map(|part| part.strip_prefix("git-branch=rel-"))
        .map(str::to_string)
        .unwrap_or_else(|| info.to_string())
}
