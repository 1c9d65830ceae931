//! segtool on the shipped models: what it reports is checked against facts about them.

use std::process::Command;

fn segtool(args: &[&str]) -> (bool, String) {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_segtool"));
    cmd.current_dir(root).args(args);
    // Tests run from a checkout: use its ONNX Runtime when no other is configured.
    if std::env::var_os("ORT_DYLIB_PATH").is_none()
        && let Ok(entries) = std::fs::read_dir(format!("{root}/.venv/lib"))
    {
        for py in entries.flatten() {
            let capi = py.path().join("site-packages/onnxruntime/capi");
            for f in std::fs::read_dir(capi).into_iter().flatten().flatten() {
                if f.file_name()
                    .to_string_lossy()
                    .starts_with("libonnxruntime.so.")
                {
                    cmd.env("ORT_DYLIB_PATH", f.path());
                }
            }
        }
    }
    let out = cmd.output().expect("segtool runs");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn inspect_reports_the_selfie_models_contract_and_size() {
    let (ok, out) = segtool(&["inspect", "models/selfie_segmentation.onnx"]);
    assert!(ok, "{out}");
    assert!(out.contains("'image' 256×256×3 nhwc f32"), "{out}");
    assert!(out.contains("'mask' 1 class(es) at 256×256"), "{out}");
    assert!(out.contains("ai.onnx:17"), "{out}");
    // MediaPipe's selfie model has about 0.1 M weights.
    let params: u64 = out
        .lines()
        .find_map(|l| l.strip_prefix("parameters  "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("a parameter count");
    assert!((90_000..130_000).contains(&params), "{params}");
    assert!(out.contains("quantized (QDQ): no"), "{out}");
}

#[test]
fn profile_gives_ordered_percentiles_as_json() {
    let (ok, out) = segtool(&[
        "profile",
        "models/test_ffnet_tiny.onnx",
        "--runs",
        "5",
        "--threads",
        "1",
        "--json",
    ]);
    assert!(ok, "{out}");
    let line = out
        .lines()
        .find(|l| l.starts_with('{'))
        .expect("a JSON line");
    let num = |key: &str| -> f64 {
        let i = line
            .find(&format!("\"{key}\": "))
            .unwrap_or_else(|| panic!("{key} in {line}"))
            + key.len()
            + 4;
        line[i..]
            .split([',', '}'])
            .next()
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    assert!(
        num("p50_ms") > 0.0 && num("p50_ms") <= num("p90_ms") && num("p90_ms") <= num("p99_ms"),
        "{line}"
    );
    assert_eq!(num("runs"), 5.0);
    assert!(line.contains("\"provider\": \"cpu\""), "{line}");
}

#[test]
fn validate_a_model_against_itself_is_exact_and_against_another_is_refused() {
    let (ok, out) = segtool(&[
        "validate",
        "models/test_ffnet_tiny.onnx",
        "--reference",
        "models/test_ffnet_tiny.onnx",
        "--media",
        "/usr/share/doc/opencv-doc/examples/data/messi5.jpg",
        "--json",
    ]);
    assert!(ok, "{out}");
    assert!(
        out.contains("\"psnr_db\": null") && out.contains("\"top_class_agreement\": 1.000000"),
        "{out}"
    );
    let (ok, out) = segtool(&[
        "validate",
        "models/test_ffnet_tiny.onnx",
        "--reference",
        "models/selfie_segmentation.onnx",
        "--media",
        "/usr/share/doc/opencv-doc/examples/data/messi5.jpg",
    ]);
    assert!(!ok);
    assert!(out.contains("outputs differ in shape"), "{out}");
}

#[test]
fn profile_places_a_quantized_io_model_wholly_on_qnn() {
    // `make venv` installs the onnxruntime-qnn wheel; on x86-64 its HTP backend is Qualcomm's
    // simulator. The model's integer input and output need no Q/DQ on the CPU.
    let wheel = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../.venv/lib/python3.11/site-packages/onnxruntime_qnn"
    );
    assert!(
        std::path::Path::new(wheel).exists(),
        "the onnxruntime-qnn wheel is part of the test set-up (make venv)"
    );
    let (ok, out) = segtool(&[
        "profile",
        "models/test_quantized_io.onnx",
        "--provider",
        "qnn",
        "--runs",
        "1",
        "--warmup",
        "0",
    ]);
    assert!(ok, "{out}");
    assert!(out.contains("provider   qnn (requested qnn)"), "{out}");
    assert!(out.contains("placement  every node on qnn"), "{out}");
    assert!(!out.contains("warning "), "{out}");
}
