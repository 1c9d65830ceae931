//! ffnetinfer: the model contract, the scores it attaches, providers, and the models it
//! refuses.

use gst::prelude::*;

use ffnetseg::tensor::Layout;
use ffnetseg_tests::*;
use gstffnetseg::meta::{InputTensor, Scores};

#[test]
fn ffnetinfer_learns_the_model_contract_and_attaches_scores() {
    for (model, classes, (ow, oh), layout, (iw, ih)) in [
        (selfie_model(), 1, (256, 256), Layout::Nhwc, (256, 256)),
        (tiny_ffnet_model(), 19, (32, 16), Layout::Nchw, (256, 128)),
    ] {
        let (input, info) = two_colour_frame(gst_video::VideoFormat::I420, 322, 242);
        let launch =
            format!("segpreproc ! ffnetinfer name=infer model={model} provider=cpu threads=1");
        let mut harness = harness(&launch, &info.to_caps().unwrap());
        let out = harness.push_and_pull(input).unwrap();
        let t = InputTensor::from_buffer(&out).expect("tensor meta");
        assert_eq!(
            (t.spec.width, t.spec.height),
            (iw, ih),
            "segpreproc took the model's input size"
        );
        let s = Scores::from_buffer(&out).expect("scores meta");
        assert_eq!(s.classes, classes);
        assert_eq!((s.width, s.height), (ow, oh));
        assert_eq!(s.layout, layout);
        assert_eq!(s.source_pts, Some(gst::ClockTime::from_mseconds(40)));
        assert_eq!(s.sequence, 1);
        assert_eq!(s.provider, "cpu");
        let v = s.values().unwrap();
        assert_eq!(v.len(), classes * ow * oh);
        assert!(v.iter().all(|x| x.is_finite()));
        if classes == 1 {
            assert!(v.iter().all(|x| (0.0..=1.0).contains(x)), "sigmoid output");
        }
        let bin = harness.element().unwrap().downcast::<gst::Bin>().unwrap();
        let infer = bin.by_name("infer").unwrap();
        assert_eq!(infer.property::<String>("active-provider"), "cpu");
        assert_eq!(infer.property::<u64>("inferences"), 1);
    }
}

#[test]
fn ffnetinfer_without_segpreproc_is_a_clear_error() {
    let (input, info) = two_colour_frame(gst_video::VideoFormat::Rgb, 16, 16);
    let launch = format!("ffnetinfer model={}", selfie_model());
    let mut harness = harness(&launch, &info.to_caps().unwrap());
    assert_eq!(harness.push(input), Err(gst::FlowError::Error));
}

#[test]
fn ffnetinfer_missing_model_fails_to_start_with_the_path_in_the_message() {
    init();
    let text = first_error(
        "videotestsrc num-buffers=1 ! segpreproc ! ffnetinfer model=/nonexistent/model.onnx ! fakesink",
    );
    assert!(text.contains("/nonexistent/model.onnx"), "{text}");
}

#[test]
fn unavailable_provider_falls_back_to_cpu_with_a_warning_or_errors_when_told_to() {
    init();
    // This ONNX Runtime (the PyPI CPU wheel) has no CUDA provider.
    let launch = format!(
        "videotestsrc num-buffers=2 ! video/x-raw,width=64,height=48 ! segpreproc ! \
         ffnetinfer name=infer provider=cuda model={} ! fakesink",
        selfie_model()
    );
    let pipeline = gst::parse::launch(&launch)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let bus = pipeline.bus().unwrap();
    let mut warning = None;
    let mut provider_msg = None;
    loop {
        let msg = bus
            .timed_pop(gst::ClockTime::from_seconds(30))
            .expect("pipeline ends");
        match msg.view() {
            gst::MessageView::Warning(w) => warning = Some(w.error().to_string()),
            gst::MessageView::Element(e)
                if e.structure()
                    .is_some_and(|s| s.name() == "ffnetinfer-provider") =>
            {
                let s = e.structure().unwrap();
                provider_msg = Some((
                    s.get::<String>("requested").unwrap(),
                    s.get::<String>("active").unwrap(),
                ));
            }
            gst::MessageView::Eos(_) => break,
            gst::MessageView::Error(e) => panic!("{}", e.error()),
            _ => {}
        }
    }
    let infer = pipeline.by_name("infer").unwrap();
    assert_eq!(infer.property::<String>("active-provider"), "cpu");
    pipeline.set_state(gst::State::Null).unwrap();
    let warning = warning.expect("a warning says the provider is missing");
    assert!(
        warning.contains("cuda") && warning.contains("CPU"),
        "{warning}"
    );
    assert_eq!(provider_msg, Some(("cuda".to_string(), "cpu".to_string())));

    let text = first_error(&format!(
        "videotestsrc num-buffers=2 ! segpreproc ! ffnetinfer provider=cuda disable-cpu-fallback=true model={} ! fakesink",
        selfie_model()
    ));
    assert!(
        text.contains("cuda") && text.contains("disable-cpu-fallback"),
        "{text}"
    );
}

#[test]
fn broken_and_contract_breaking_models_are_refused_with_a_reason() {
    init();
    let dir = std::env::temp_dir();
    let empty = dir.join("ffnetseg-empty.onnx");
    std::fs::write(&empty, b"").unwrap();
    let garbage = dir.join("ffnetseg-garbage.onnx");
    std::fs::write(
        &garbage,
        (0..4096u32)
            .map(|i| (i.wrapping_mul(2654435761u32) >> 24) as u8)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    for (path, expect) in [(&empty, "empty"), (&garbage, "cannot load")] {
        let text = first_error(&format!(
            "videotestsrc num-buffers=1 ! segpreproc ! ffnetinfer model={} ! fakesink",
            path.display()
        ));
        assert!(text.contains(expect), "{}: {text}", path.display());
    }
    std::fs::remove_file(empty).ok();
    std::fs::remove_file(garbage).ok();
}

#[test]
fn quantized_model_io_is_quantized_by_segpreproc_and_dequantized_to_scores() {
    // uint8 input (scale 0.02, zero point 10) and uint8 output (scale 1/255), against a
    // float twin of the same convolution.
    let (input, info) = person_frame(gst_video::VideoFormat::Nv12);
    let scores_of = |model: String| {
        let mut h = harness(
            &format!("segpreproc ! ffnetinfer model={model}"),
            &info.to_caps().unwrap(),
        );
        let out = h.push_and_pull(input.clone()).unwrap();
        (
            InputTensor::from_buffer(&out).unwrap(),
            Scores::from_buffer(&out).unwrap(),
        )
    };
    let (qt, qs) = scores_of(model("test_quantized_io.onnx"));
    let (_, fs) = scores_of(model("test_quantized_io_float.onnx"));
    assert_eq!(qt.spec.dtype, ffnetseg::tensor::DType::U8);
    let q = qt.tensor.map_readable().unwrap();
    // x in [0,1] quantizes to x / 0.02 + 10, i.e. 10..=60.
    assert!(q.iter().all(|v| (10..=60).contains(v)), "quantized range");
    assert!(q.iter().any(|v| *v < 20) && q.iter().any(|v| *v > 50));
    let (qv, fv) = (qs.values().unwrap(), fs.values().unwrap());
    assert_eq!(qv.len(), fv.len());
    let max = qv
        .iter()
        .zip(&fv)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    let mean = qv.iter().zip(&fv).map(|(a, b)| (a - b).abs()).sum::<f32>() / qv.len() as f32;
    eprintln!("quantized vs float scores: max {max:.4}, mean {mean:.4}");
    // Input steps of 0.02 and output steps of 1/255 bound the difference.
    assert!(max < 0.05 && mean < 0.01, "max {max}, mean {mean}");
}

#[test]
fn settings_that_need_a_restart_are_refused_while_playing_with_a_warning() {
    let (input, info) = two_colour_frame(gst_video::VideoFormat::I420, 64, 48);
    let warnings = Warnings::capture("ffnetinfer", "infer_ready");
    let launch = format!(
        "segpreproc ! ffnetinfer name=infer_ready model={} threads=1",
        selfie_model()
    );
    let mut h = harness(&launch, &info.to_caps().unwrap());
    assert!(Scores::from_buffer(&h.push_and_pull(input.clone()).unwrap()).is_some());
    let bin = h.element().unwrap().downcast::<gst::Bin>().unwrap();
    let infer = bin.by_name("infer_ready").unwrap();
    infer.set_property("threads", 3u32);
    infer.set_property_from_str("mode", "async");
    infer.set_property_from_str("provider", "xnnpack");
    assert_eq!(infer.property::<u32>("threads"), 1);
    assert_eq!(
        infer.property::<super_mode::ModeChoice>("mode"),
        super_mode::ModeChoice::Sync
    );
    assert_eq!(
        infer.property::<super_mode::ProviderChoice>("provider"),
        super_mode::ProviderChoice::Auto
    );
    let lines = warnings.lines();
    for name in ["threads", "mode", "provider"] {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&format!("{name} can only be set in NULL or READY"))),
            "{name}: {lines:?}"
        );
    }
    // What may change while playing still does, and frames keep their scores.
    infer.set_property("interval", 2u32);
    assert_eq!(infer.property::<u32>("interval"), 2);
    assert!(Scores::from_buffer(&h.push_and_pull(input).unwrap()).is_some());
}

mod super_mode {
    pub use gstffnetseg::ffnetinfer::{ModeChoice, ProviderChoice};
}

#[test]
fn the_first_frame_after_a_flushing_seek_is_inferred() {
    let run = Running::start(&format!(
        "videotestsrc ! video/x-raw,width=64,height=48,framerate=25/1 ! segpreproc ! \
         ffnetinfer model={} mode=sync interval=1000 ! appsink name=sink",
        selfie_model()
    ));
    let first = run.pull().unwrap();
    assert!(Scores::from_buffer(first.buffer().unwrap()).is_some());
    for _ in 0..3 {
        run.pull().unwrap();
    }
    let target = gst::ClockTime::from_seconds(10);
    run.pipeline
        .seek_simple(gst::SeekFlags::FLUSH | gst::SeekFlags::ACCURATE, target)
        .expect("videotestsrc seeks");
    let after = (0..10)
        .map(|_| run.pull().expect("frames after the seek"))
        .find(|s| s.buffer().unwrap().pts().is_some_and(|p| p >= target))
        .expect("a frame from after the seek");
    let pts = after.buffer().unwrap().pts();
    let scores = Scores::from_buffer(after.buffer().unwrap())
        .expect("the first frame after the seek carries scores");
    assert_eq!(scores.source_pts, pts, "inferred on that frame itself");
    // The interval counts from there: the next frame reuses that result.
    let next = run.pull().unwrap();
    let reused = Scores::from_buffer(next.buffer().unwrap()).expect("scores");
    assert_eq!(reused.source_pts, pts);
}
