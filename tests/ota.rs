//! Over-the-air model updates: ffnetinfer with reload-on-change picks up a model file that
//! was renamed over the old one while playing, keeps the old model when the new file does
//! not load or does not fit, and with verify-digest takes only a model whose SHA-256
//! matches its .sha256 file. brightness.onnx scores a frame's brightness and
//! inverse_brightness.onnx 1 − brightness, so on white frames the scores say which ran.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gst::prelude::*;

use ffnetseg_tests::*;
use gstffnetseg::meta::Scores;

/// How long a replaced model may take to run: two polls (500 ms each) plus the load.
const RELOAD_WITHIN: Duration = Duration::from_secs(5);
/// How long a refused model is watched not to run.
const STAYS_FOR: Duration = Duration::from_millis(1500);

fn data(name: &str) -> PathBuf {
    repo_root().join("tests/data").join(name)
}

/// A fresh folder for one test's model.
fn model_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ffnetseg-ota-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// What an update system does: write the new file under a temporary name, then rename it
/// over the old one (atomic: the model path always names a whole file).
fn replace_atomically(target: &Path, contents: &[u8]) {
    let tmp = target.with_extension("partial");
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(&tmp, target).unwrap();
}

/// Writes `model`.sha256 as sha256sum does (the digest computed by coreutils, not by us).
fn write_sha256sum(model: &Path) {
    let out = std::process::Command::new("sha256sum")
        .arg(model.file_name().unwrap())
        .current_dir(model.parent().unwrap())
        .output()
        .expect("sha256sum runs");
    assert!(out.status.success());
    replace_atomically(&sha256_file(model), &out.stdout);
}

fn sha256_file(model: &Path) -> PathBuf {
    PathBuf::from(format!("{}.sha256", model.display()))
}

/// A live pipeline of white frames through ffnetinfer with `extra` properties, and the
/// warnings its bus receives.
struct Played {
    run: Running,
    warnings: Arc<Mutex<Vec<String>>>,
}

impl Played {
    /// The warnings since the last call.
    fn bus_warnings(&self) -> Vec<String> {
        std::mem::take(&mut *self.warnings.lock().unwrap())
    }
}

impl std::ops::Deref for Played {
    type Target = Running;
    fn deref(&self) -> &Running {
        &self.run
    }
}

fn play(model: &Path, extra: &str) -> Played {
    let run = Running::start(&format!(
        "videotestsrc is-live=true pattern=white ! video/x-raw,width=64,height=48,framerate=30/1 ! \
         segpreproc ! ffnetinfer name=infer model={} {extra} ! appsink name=sink",
        model.display()
    ));
    // Collected as they are posted: Running::pull's error check discards other messages.
    let warnings = Arc::new(Mutex::new(Vec::new()));
    let sink = warnings.clone();
    run.pipeline.bus().unwrap().set_sync_handler(move |_, msg| {
        if let gst::MessageView::Warning(w) = msg.view() {
            sink.lock().unwrap().push(w.error().to_string());
        }
        gst::BusSyncReply::Pass
    });
    Played { run, warnings }
}

/// The mean score of the next frame (every frame must carry scores).
fn next_score(run: &Played) -> f32 {
    let sample = run.pull().expect("frames keep flowing");
    let scores = Scores::from_buffer(sample.buffer().unwrap()).expect("every frame has scores");
    let v = scores.values().unwrap();
    v.iter().sum::<f32>() / v.len() as f32
}

/// Which model ran on a white frame: brightness gives 1, inverse_brightness 0.
fn model_of(score: f32) -> &'static str {
    if score > 0.9 {
        "brightness"
    } else if score < 0.1 {
        "inverse"
    } else {
        "neither"
    }
}

/// Pulls frames until `want` runs; returns how long it took. Panics after RELOAD_WITHIN.
fn wait_for_model(run: &Played, want: &str, since: Instant) -> Duration {
    loop {
        let got = model_of(next_score(run));
        if got == want {
            return since.elapsed();
        }
        assert_ne!(got, "neither", "scores of neither model");
        assert!(
            since.elapsed() < RELOAD_WITHIN,
            "{want} not running {RELOAD_WITHIN:?} after the file was replaced; warnings: {:?}",
            run.bus_warnings()
        );
    }
}

/// Pulls frames for STAYS_FOR: all of them from `want`. Returns the warnings meanwhile.
fn stays_with_model(run: &Played, want: &str, what: &str) -> Vec<String> {
    let since = Instant::now();
    let mut frames = 0;
    while since.elapsed() < STAYS_FOR {
        assert_eq!(
            model_of(next_score(run)),
            want,
            "{what}: the old model must keep running"
        );
        frames += 1;
    }
    assert!(frames > 10, "{what}: only {frames} frames in {STAYS_FOR:?}");
    run.bus_warnings()
}

fn bytes(name: &str) -> Vec<u8> {
    std::fs::read(data(name)).unwrap()
}

#[test]
fn a_model_renamed_over_the_old_one_runs_within_a_second_or_two_back_and_forth() {
    let dir = model_dir("swap");
    let model = dir.join("model.onnx");
    std::fs::copy(data("brightness.onnx"), &model).unwrap();
    let run = play(&model, "reload-on-change=true");
    wait_for_model(&run, "brightness", Instant::now());
    let mut latencies = Vec::new();
    for (file, want) in [
        ("inverse_brightness.onnx", "inverse"),
        ("brightness.onnx", "brightness"),
        ("inverse_brightness.onnx", "inverse"),
        ("brightness.onnx", "brightness"),
    ] {
        let since = Instant::now();
        replace_atomically(&model, &bytes(file));
        latencies.push(wait_for_model(&run, want, since));
    }
    eprintln!("reload latencies (rename to first frame of the new model): {latencies:?}");
    assert!(run.bus_warnings().is_empty(), "{:?}", run.bus_warnings());
    drop(run);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn a_truncated_or_contract_breaking_replacement_keeps_the_old_model_with_a_warning() {
    let dir = model_dir("bad");
    let model = dir.join("model.onnx");
    std::fs::copy(data("brightness.onnx"), &model).unwrap();
    let run = play(&model, "reload-on-change=true");
    wait_for_model(&run, "brightness", Instant::now());
    let inverse = bytes("inverse_brightness.onnx");
    for (what, contents) in [
        ("truncated", inverse[..inverse.len() / 2].to_vec()),
        ("1-D output", bytes("output_1d.onnx")),
    ] {
        replace_atomically(&model, &contents);
        let since = Instant::now();
        let mut warnings = Vec::new();
        while warnings.is_empty() && since.elapsed() < RELOAD_WITHIN {
            warnings = stays_with_model(&run, "brightness", what);
        }
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("previous one keeps running")),
            "{what}: {warnings:?}"
        );
    }
    // The watcher still works after refusing: a good file is taken.
    replace_atomically(&model, &inverse);
    wait_for_model(&run, "inverse", Instant::now());
    drop(run);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn without_reload_on_change_a_replaced_file_is_not_picked_up_until_it_is_set() {
    let dir = model_dir("off");
    let model = dir.join("model.onnx");
    std::fs::copy(data("brightness.onnx"), &model).unwrap();
    let run = play(&model, "");
    wait_for_model(&run, "brightness", Instant::now());
    replace_atomically(&model, &bytes("inverse_brightness.onnx"));
    stays_with_model(&run, "brightness", "reload-on-change=false");
    // Turned on while playing: the next replacement is picked up.
    let infer = run.pipeline.by_name("infer").unwrap();
    infer.set_property("reload-on-change", true);
    std::thread::sleep(Duration::from_millis(100));
    let since = Instant::now();
    replace_atomically(&model, &bytes("inverse_brightness.onnx"));
    wait_for_model(&run, "inverse", since);
    // And off again: no more reloads.
    infer.set_property("reload-on-change", false);
    replace_atomically(&model, &bytes("brightness.onnx"));
    stays_with_model(&run, "inverse", "reload-on-change set back to false");
    drop(run);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn with_verify_digest_only_a_model_matching_its_sha256_file_is_taken() {
    let dir = model_dir("digest");
    let model = dir.join("model.onnx");
    std::fs::copy(data("brightness.onnx"), &model).unwrap();
    write_sha256sum(&model);
    let run = play(&model, "reload-on-change=true verify-digest=true");
    wait_for_model(&run, "brightness", Instant::now());

    // The matching pair: the .sha256 first, then the model.
    let staging = dir.join("staging");
    std::fs::create_dir_all(&staging).unwrap();
    let staged = staging.join("model.onnx");
    std::fs::write(&staged, bytes("inverse_brightness.onnx")).unwrap();
    write_sha256sum(&staged);
    replace_atomically(
        &sha256_file(&model),
        &std::fs::read(sha256_file(&staged)).unwrap(),
    );
    let since = Instant::now();
    replace_atomically(&model, &bytes("inverse_brightness.onnx"));
    wait_for_model(&run, "inverse", since);

    // A model that does not match the (still inverse) digest: refused, never run.
    replace_atomically(&model, &bytes("brightness.onnx"));
    let warnings = expect_refusal(&run, "mismatching digest");
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("SHA-256") && w.contains(" says ")),
        "{warnings:?}"
    );

    // No .sha256 at all: refused.
    std::fs::remove_file(sha256_file(&model)).unwrap();
    replace_atomically(&model, &bytes("brightness.onnx"));
    let warnings = expect_refusal(&run, "missing .sha256");
    assert!(
        warnings.iter().any(|w| w.contains("model.onnx.sha256")),
        "{warnings:?}"
    );

    // Its .sha256 arriving after the model: the pair is now complete and is taken.
    write_sha256sum(&model);
    wait_for_model(&run, "brightness", Instant::now());
    drop(run);
    std::fs::remove_dir_all(dir).ok();
}

/// The inverse model keeps running and a warning says the new one was refused.
fn expect_refusal(run: &Played, what: &str) -> Vec<String> {
    let since = Instant::now();
    let mut warnings = Vec::new();
    while warnings.is_empty() && since.elapsed() < RELOAD_WITHIN {
        warnings = stays_with_model(run, "inverse", what);
    }
    assert!(!warnings.is_empty(), "{what}: no warning");
    warnings
}

#[test]
fn with_verify_digest_a_wrong_or_missing_digest_at_start_is_an_error_naming_it() {
    init();
    let dir = model_dir("start");
    let model = dir.join("model.onnx");
    std::fs::copy(data("brightness.onnx"), &model).unwrap();
    let launch = format!(
        "videotestsrc num-buffers=1 ! segpreproc ! ffnetinfer model={} verify-digest=true ! fakesink",
        model.display()
    );
    let text = first_error(&launch);
    assert!(
        text.contains("model.onnx.sha256") && text.contains("sha256sum"),
        "{text}"
    );

    let wrong = "0".repeat(64);
    std::fs::write(sha256_file(&model), format!("{wrong}  model.onnx\n")).unwrap();
    let text = first_error(&launch);
    write_sha256sum(&model);
    let right = std::fs::read_to_string(sha256_file(&model)).unwrap();
    let right = right.split_whitespace().next().unwrap();
    assert!(text.contains(&wrong) && text.contains(right), "{text}");

    std::fs::write(sha256_file(&model), "not a digest\n").unwrap();
    let text = first_error(&launch);
    assert!(text.contains("sha256sum format"), "{text}");

    // The matching file: it starts.
    write_sha256sum(&model);
    let samples = collect_samples(
        &format!(
            "videotestsrc num-buffers=2 pattern=white ! segpreproc ! ffnetinfer model={} \
             verify-digest=true ! appsink name=sink",
            model.display()
        ),
        2,
    );
    assert_eq!(samples.len(), 2);
    std::fs::remove_dir_all(dir).ok();
}

/// Runs a command; panics with its output when it fails.
fn command(program: &str, args: &[&str]) -> std::process::Output {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} cannot run: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A throwaway signing certificate `NAME.cert.pem` with its key `NAME.key.pem` in `dir`.
fn signing_certificate(dir: &Path, name: &str) -> (String, String) {
    let key = dir.join(format!("{name}.key.pem")).display().to_string();
    let cert = dir.join(format!("{name}.cert.pem")).display().to_string();
    let subject = format!("/CN=ffnetseg {name}");
    command(
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            &subject,
            "-addext",
            "extendedKeyUsage=emailProtection",
            "-keyout",
            &key,
            "-out",
            &cert,
        ],
    );
    (key, cert)
}

/// A signed bundle from plugins/packaging/swupdate/make-model-swu.sh.
fn swupdate_bundle(model: &str, target: &Path, (key, cert): &(String, String)) -> String {
    let bundle = format!("{}.{model}.swu", target.display());
    let script = repo_root().join("plugins/packaging/swupdate/make-model-swu.sh");
    let new_model = data(model).display().to_string();
    let target = target.display().to_string();
    command(
        script.to_str().unwrap(),
        &["--key", key, "--cert", cert, &new_model, &target, &bundle],
    );
    bundle
}

/// What the board runs: `swupdate -k CERT -H board:revision -i BUNDLE`; whether it says it
/// installed the bundle, and what it printed. Judged by its report, not its exit status:
/// Debian 12's swupdate 2022.12 exits 1 in about one run of five after "SWUPDATE
/// successful" and a complete install (seen here, also from a plain shell).
fn swupdate(bundle: &str, cert: &str) -> (bool, String) {
    let out = std::process::Command::new("swupdate")
        .args(["-k", cert, "-H", "ffnetseg-test:1.0", "-i", bundle])
        .output()
        .expect("swupdate runs (make swupdate-check installs it)");
    let report = format!(
        "{}: {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let installed = report.contains("SWUPDATE successful") && !report.contains("[ERROR]");
    (installed, report)
}

#[test]
#[ignore = "needs Debian's swupdate, a daemon once installed: `make swupdate-check` runs it"]
fn a_signed_swupdate_bundle_delivers_a_model_that_the_playing_pipeline_swaps_to() {
    init();
    let dir = model_dir("swupdate");
    let model = dir.join("selfie_segmentation.onnx");
    std::fs::write(&model, bytes("brightness.onnx")).unwrap();
    write_sha256sum(&model);
    let board_key = signing_certificate(&dir, "board");
    let run = play(&model, "reload-on-change=true verify-digest=true");
    wait_for_model(&run, "brightness", Instant::now());

    let bundle = swupdate_bundle("inverse_brightness.onnx", &model, &board_key);
    let since = Instant::now();
    let (installed, report) = swupdate(&bundle, &board_key.1);
    assert!(installed, "{report}");
    let took = wait_for_model(&run, "inverse", since);
    eprintln!("swupdate install + swap to the new model: {took:?}");
    assert!(
        run.bus_warnings().is_empty(),
        "a clean update warns nothing"
    );

    // A bundle signed with another key: swupdate refuses it, the pipeline keeps its model.
    let stranger = signing_certificate(&dir, "stranger");
    let forged = swupdate_bundle("brightness.onnx", &model, &stranger);
    let (installed, report) = swupdate(&forged, &board_key.1);
    assert!(
        !installed,
        "swupdate installed a bundle of a foreign key: {report}"
    );
    assert!(
        report.contains("Authentication of all signatures failed"),
        "{report}"
    );
    stays_with_model(&run, "inverse", "after a refused bundle");
    drop(run);
    std::fs::remove_dir_all(&dir).unwrap();
}
