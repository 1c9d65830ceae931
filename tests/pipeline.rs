//! Whole pipelines: the three elements together on real media.

use ffnetseg_tests::*;
use gstffnetseg::meta::Scores;

#[test]
fn every_model_built_by_make_models_runs_in_ffnetinfer() {
    // `make models` (models/ffnet/build_all.sh) writes the FFNet family and the quantized
    // models into out/models; this runs each through the elements, FFNet with the
    // multi-class overlay. Without those artifacts there is nothing to run.
    init();
    let dir = repo_root().join("out/models");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        eprintln!(
            "skipped: {} does not exist (run make models)",
            dir.display()
        );
        return;
    };
    let mut models: Vec<_> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "onnx"))
        .collect();
    models.sort();
    for m in &models {
        let ffnet = m
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("ffnet");
        let mode = if ffnet { "classes" } else { "overlay" };
        let launch = format!(
            "filesrc location={} ! jpegdec ! videoconvert ! video/x-raw,format=NV12 ! segpreproc ! \
             ffnetinfer model={} threads=2 ! segpostproc mode={mode} ! appsink name=sink",
            media("messi5.jpg"),
            m.display()
        );
        let sample = collect_samples(&launch, 1).remove(0);
        let caps = sample.caps().unwrap();
        assert_eq!(
            gst_video::VideoInfo::from_caps(caps).unwrap().format(),
            gst_video::VideoFormat::Nv12
        );
        let s = Scores::from_buffer(sample.buffer().unwrap()).expect("scores");
        let v = s.values().unwrap();
        assert!(v.iter().all(|x| x.is_finite()), "{}", m.display());
        assert_eq!(s.classes, if ffnet { 19 } else { 1 }, "{}", m.display());
        eprintln!(
            "{}: {} classes at {}×{}, {:.0} ms",
            m.display(),
            s.classes,
            s.width,
            s.height,
            s.inference_ns as f64 / 1e6
        );
    }
    eprintln!("{} models ran", models.len());
}
