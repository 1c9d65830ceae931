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

#[test]
fn two_ffnetinfer_after_one_segpreproc_are_told_each_needs_its_own() {
    init();
    let text = first_error(&format!(
        "videotestsrc num-buffers=2 ! video/x-raw,width=64,height=48 ! segpreproc ! tee name=t \
         t. ! queue ! ffnetinfer model={} ! fakesink t. ! queue ! ffnetinfer model={} ! fakesink",
        selfie_model(),
        tiny_ffnet_model()
    ));
    assert!(
        text.contains("each ffnetinfer needs its own segpreproc")
            && text.contains("tee")
            && !text.contains("overrides"),
        "{text}"
    );
    // With overrides set, the message points at them.
    let text = first_error(&format!(
        "videotestsrc num-buffers=2 ! video/x-raw,width=64,height=48 ! segpreproc width=100 \
         height=100 ! ffnetinfer model={} ! fakesink",
        selfie_model()
    ));
    assert!(
        text.contains("remove segpreproc's width/height/layout overrides"),
        "{text}"
    );
}

#[test]
fn a_crop_or_scale_between_ffnetinfer_and_segpostproc_drops_the_scores_with_a_warning() {
    for (what, geometry) in [
        ("videocrop", "videocrop left=274"),
        (
            "videoscale",
            "videoscale ! video/x-raw,width=161,height=121",
        ),
    ] {
        let run = Running::start(&format!(
            "filesrc location={} ! jpegdec ! videoconvert ! video/x-raw,format=NV12 ! segpreproc ! \
             ffnetinfer model={} ! {geometry} ! segpostproc mode=mask ! appsink name=sink",
            media("messi5.jpg"),
            selfie_model()
        ));
        let sample = run.pull().expect("a frame");
        assert!(
            Scores::from_buffer(sample.buffer().unwrap()).is_none(),
            "{what}: the scores of the whole frame rode along to a changed picture"
        );
        let mask = gray_from_sample(&sample);
        assert!(
            mask.data.iter().all(|v| *v == 0),
            "{what}: no scores, no mask"
        );
        let warnings = run.bus_warnings();
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("without segmentation scores") && w.contains("crops or scales")),
            "{what}: {warnings:?}"
        );
    }
    // Without such an element, the scores ride along to the mask frame.
    let run = Running::start(&format!(
        "filesrc location={} ! jpegdec ! videoconvert ! video/x-raw,format=NV12 ! segpreproc ! \
         ffnetinfer model={} ! videoconvert ! segpostproc mode=mask ! appsink name=sink",
        media("messi5.jpg"),
        selfie_model()
    ));
    let sample = run.pull().expect("a frame");
    assert!(Scores::from_buffer(sample.buffer().unwrap()).is_some());
    assert!(gray_from_sample(&sample).data.contains(&255));
}
