//! The engine's inference session on real models: the allocation-free run (fixed-shape
//! models) gives exactly what ort's own `run` gives, for float, multi-class and
//! quantized-I/O models, and dynamic models keep using ort's `run`.

use ffnetseg::inference::{InferenceSession, Provider, SessionConfig};
use ffnetseg::tensor::DType;

use ffnetseg_tests::*;

/// A deterministic input that is not flat: a ramp over the tensor's bytes or values.
fn input_for(s: &InferenceSession) -> Vec<u8> {
    let spec = s.contract().input;
    let n = spec.element_count();
    match spec.dtype {
        DType::F32 => (0..n)
            .flat_map(|i| (((i * 7919) % 256) as f32 / 255.0).to_ne_bytes())
            .collect(),
        DType::U8 => (0..n).map(|i| ((i * 31) % 256) as u8).collect(),
        DType::U16 => (0..n)
            .flat_map(|i| (((i * 131) % 65536) as u16).to_ne_bytes())
            .collect(),
    }
}

fn scores(s: &mut InferenceSession, input: &[u8]) -> Vec<f32> {
    let spec = s.contract().input;
    s.run_with(input, &spec, |_, data| data.to_vec()).unwrap()
}

fn open(path: &str) -> InferenceSession {
    init();
    let mut c = SessionConfig::new(path);
    c.provider = Provider::Cpu;
    c.threads = 1;
    InferenceSession::open(&c).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn allocation_free_run_equals_orts_run_on_float_multiclass_and_quantized_models() {
    for name in [
        "selfie_segmentation.onnx",
        "test_ffnet_tiny.onnx",
        "test_quantized_io.onnx",
    ] {
        let mut s = open(&model(name));
        assert!(s.runs_allocation_free(), "{name} has fixed shapes");
        let input = input_for(&s);
        let fast = scores(&mut s, &input);
        // Twice: the kept output buffer must not carry anything over between runs.
        let again = scores(&mut s, &input);
        s.set_allocation_free(false);
        assert!(!s.runs_allocation_free());
        let reference = scores(&mut s, &input);
        assert_eq!(fast.len(), reference.len(), "{name}");
        assert!(fast.iter().any(|v| *v != fast[0]), "{name}: flat scores");
        for (run, scores) in [("first", &fast), ("second", &again)] {
            let differs = scores.iter().zip(&reference).position(|(a, b)| a != b);
            assert!(
                differs.is_none(),
                "{name}: the {run} allocation-free run differs from ort's run at score {differs:?}"
            );
        }
    }
}

#[test]
fn a_model_with_dynamic_size_uses_orts_run() {
    let path = repo_root().join("tests/data/dynamic_hw.onnx");
    let s = open(path.to_str().unwrap());
    assert!(!s.runs_allocation_free());
}
