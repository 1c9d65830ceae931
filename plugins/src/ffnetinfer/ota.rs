//! Over-the-air model updates: the identity of the model file (to notice that an update
//! system renamed a new file over it), the watcher thread that polls it, and the SHA-256
//! check against the `.sha256` file next to the model.

use std::fmt::Write as _;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use gst::glib;
use sha2::{Digest, Sha256};

/// How often the watcher looks at the model file: a replaced model runs within about this
/// long (plus its load time), and a stat twice a second costs nothing measurable.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// What changes when a file is replaced: a rename-over gives a new inode, a rewrite in place
/// a new size or modification time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileIdentity {
    dev: u64,
    ino: u64,
    size: u64,
    modified: Option<SystemTime>,
}

/// The identity of the file at `path`; None when it is missing or unreadable.
pub fn identity(path: &Path) -> Option<FileIdentity> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some(FileIdentity {
        dev: m.dev(),
        ino: m.ino(),
        size: m.size(),
        modified: m.modified().ok(),
    })
}

/// `MODEL.sha256`: the digest file that goes with `model`.
pub fn digest_path(model: &Path) -> PathBuf {
    let mut name = model.as_os_str().to_owned();
    name.push(".sha256");
    PathBuf::from(name)
}

/// Checks the model against its `.sha256` file (sha256sum format); the error names the
/// problem, both digests when they differ, and the fix.
pub fn verify_digest(model: &Path) -> Result<(), String> {
    let file = digest_path(model);
    let text = std::fs::read_to_string(&file).map_err(|e| {
        format!(
            "verify-digest is set but {} cannot be read ({e}): deliver the model's SHA-256 \
             next to it (sha256sum {} > {}) or set verify-digest=false",
            file.display(),
            model.display(),
            file.display()
        )
    })?;
    let expected = parse_sha256sum(&text).ok_or_else(|| {
        format!(
            "{} is not in sha256sum format (64 hex digits, optionally followed by the file \
             name): write it with sha256sum {} > {}",
            file.display(),
            model.display(),
            file.display()
        )
    })?;
    let actual = sha256_hex(model)
        .map_err(|e| format!("cannot read {} to check its SHA-256: {e}", model.display()))?;
    if actual != expected {
        return Err(format!(
            "the SHA-256 of {} is {actual} but {} says {expected}: the model is damaged or \
             not the one that was delivered; deliver the matching pair (write the .sha256 \
             first, then rename the model over the old one)",
            model.display(),
            file.display()
        ));
    }
    Ok(())
}

/// The digest of the first line of a sha256sum file, lower case; the file name after it is
/// not compared (an update system writes the file under a temporary name first).
fn parse_sha256sum(text: &str) -> Option<String> {
    let line = text.lines().find(|l| !l.trim().is_empty())?;
    let digest = line.split_whitespace().next()?;
    let valid = digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit());
    valid.then(|| digest.to_ascii_lowercase())
}

fn sha256_hex(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut chunk = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        hasher.update(&chunk[..n]);
    }
    let mut hex = String::with_capacity(64);
    for byte in hasher.finalize().iter() {
        let _ = write!(hex, "{byte:02x}");
    }
    Ok(hex)
}

/// What the watcher compares between two polls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watched {
    pub path: PathBuf,
    pub model: Option<FileIdentity>,
    /// Only with verify-digest: a new `.sha256` may arrive after the model.
    pub digest: Option<FileIdentity>,
}

impl Watched {
    pub fn now(path: &Path, verify_digest: bool) -> Watched {
        Watched {
            path: path.to_path_buf(),
            model: identity(path),
            digest: verify_digest
                .then(|| identity(&digest_path(path)))
                .flatten(),
        }
    }
}

/// The thread that polls the model file; stops (and is joined) when dropped.
pub struct Watcher {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Watcher {
    /// Calls `poll` on the element every POLL_INTERVAL until dropped or the element is gone.
    /// The thread holds only a weak reference between polls.
    pub fn start<T, F>(element: glib::WeakRef<T>, poll: F) -> std::io::Result<Watcher>
    where
        T: glib::prelude::ObjectType + Send + Sync,
        F: Fn(&T) + Send + 'static,
    {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("ffnetinfer-watch".into())
            .spawn(move || {
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(POLL_INTERVAL) {
                    let Some(el) = element.upgrade() else { return };
                    poll(&el);
                }
            })?;
        Ok(Watcher {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take()
            // The element may die on the watcher's own thread (it held the last reference
            // during a poll): that thread ends by itself once the channel is closed.
            && thread.thread().id() != std::thread::current().id()
        {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256sum_lines_are_parsed_and_bad_ones_refused() {
        let d = "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855";
        assert_eq!(
            parse_sha256sum(&format!("{d}  model.onnx\n")),
            Some(d.to_ascii_lowercase())
        );
        assert_eq!(
            parse_sha256sum(&format!("\n{d}\n")),
            Some(d.to_ascii_lowercase())
        );
        assert_eq!(
            parse_sha256sum(&format!("{d} *model.onnx")),
            Some(d.to_ascii_lowercase())
        );
        assert_eq!(parse_sha256sum(""), None);
        assert_eq!(parse_sha256sum(&d[1..]), None);
        assert_eq!(parse_sha256sum(&format!("{}g", &d[1..])), None);
    }

    #[test]
    fn the_digest_of_an_empty_file_is_the_known_one() {
        let dir = std::env::temp_dir().join(format!("ffnetseg-ota-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("empty.onnx");
        std::fs::write(&f, b"").unwrap();
        assert_eq!(
            sha256_hex(&f).unwrap(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        std::fs::remove_dir_all(dir).ok();
    }
}
