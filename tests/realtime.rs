//! Scheduling of inference against frames: async never holds frames back, interval skips
//! frames deterministically, auto follows liveness, and a model can be swapped while
//! playing. These tests assert on counts and metadata, never on wall-clock time.

use gst::prelude::*;

use ffnetseg_tests::*;
use gstffnetseg::meta::Scores;

fn slow_model() -> String {
    model("test_slow_segmenter.onnx")
}

/// Runs `launch` (ending in `appsink name=sink`) to EOS; returns every buffer's scores
/// (None for frames without) with the frame pts, and the ffnetinfer named `infer`.
/// Each frame's pts and the scores it carried.
type Frames = Vec<(Option<gst::ClockTime>, Option<Scores>)>;

fn run(launch: &str) -> (Frames, gst::Element) {
    init();
    let pipeline = gst::parse::launch(launch)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let infer = pipeline
        .by_name("infer")
        .expect("an ffnetinfer named infer");
    let samples = {
        let sink = pipeline
            .by_name("sink")
            .unwrap()
            .downcast::<gst_app::AppSink>()
            .unwrap();
        pipeline.set_state(gst::State::Playing).unwrap();
        let bus = pipeline.bus().unwrap();
        let mut out = Vec::new();
        loop {
            if let Some(msg) = bus.pop_filtered(&[gst::MessageType::Error]) {
                pipeline.set_state(gst::State::Null).unwrap();
                panic!("pipeline error: {msg:?}");
            }
            match sink.try_pull_sample(gst::ClockTime::from_seconds(30)) {
                Some(s) => {
                    let b = s.buffer().unwrap();
                    out.push((b.pts(), Scores::from_buffer(b)));
                }
                None => {
                    assert!(sink.is_eos(), "no frame for 30 s and no EOS");
                    break;
                }
            }
        }
        out
    };
    pipeline.set_state(gst::State::Null).unwrap();
    (samples, infer)
}

#[test]
fn async_mode_never_holds_frames_back_for_a_slow_model() {
    // A live 30 FPS camera and a model that needs ~100 ms: every frame still comes out,
    // most carry an earlier frame's result, and results are never from the future.
    // Three seconds of camera, so that a loaded machine (the first inference is the
    // slowest) still finishes several inferences before the last frame.
    const FRAMES: usize = 90;
    let launch = format!(
        "videotestsrc is-live=true num-buffers={FRAMES} pattern=ball ! video/x-raw,format=NV12,width=320,height=240,framerate=30/1 ! \
         segpreproc ! ffnetinfer name=infer mode=async model={} ! appsink name=sink sync=false",
        slow_model()
    );
    let (frames, infer) = run(&launch);
    assert_eq!(frames.len(), FRAMES, "every frame reaches the sink");
    let inferences = infer.property::<u64>("inferences");
    let reused = infer.property::<u64>("frames-reused");
    eprintln!("async: {FRAMES} frames, {inferences} inferences, {reused} frames reused");
    assert!(
        (1..FRAMES as u64).contains(&inferences),
        "the worker ran {inferences} times for {FRAMES} frames"
    );
    assert!(reused > 0);
    let mut last_seq = 0;
    for (pts, scores) in &frames {
        if let Some(s) = scores {
            assert!(
                s.source_pts <= *pts,
                "a result from the future: {:?} on {:?}",
                s.source_pts,
                pts
            );
            assert!(s.sequence >= last_seq, "results go backwards");
            last_seq = s.sequence;
        }
    }
    assert!(
        frames.last().unwrap().1.is_some(),
        "the last frames carry a result"
    );
}

#[test]
fn sync_mode_infers_every_frame_and_interval_every_nth() {
    for (interval, expected) in [(1u64, 20u64), (3, 7)] {
        let launch = format!(
            "videotestsrc num-buffers=20 ! video/x-raw,format=I420,width=160,height=120 ! segpreproc ! \
             ffnetinfer name=infer mode=sync interval={interval} model={} ! appsink name=sink",
            selfie_model()
        );
        let (frames, infer) = run(&launch);
        assert_eq!(frames.len(), 20);
        assert_eq!(
            infer.property::<u64>("inferences"),
            expected,
            "interval {interval}"
        );
        for (i, (pts, scores)) in frames.iter().enumerate() {
            let s = scores.as_ref().expect("every frame has a result");
            let source_index = (i as u64 / interval) * interval;
            let want = frames[source_index as usize].0;
            assert_eq!(
                s.source_pts, want,
                "frame {i} carries frame {source_index}'s result"
            );
            assert!(s.source_pts <= *pts);
        }
    }
}

#[test]
fn auto_mode_is_sync_for_files_and_async_for_live_sources() {
    let file = format!(
        "videotestsrc num-buffers=10 ! video/x-raw,width=160,height=120 ! segpreproc ! \
         ffnetinfer name=infer mode=auto model={} ! appsink name=sink",
        slow_model()
    );
    let (frames, infer) = run(&file);
    assert_eq!(frames.len(), 10);
    assert_eq!(
        infer.property::<u64>("inferences"),
        10,
        "not live: every frame inferred"
    );

    let live = format!(
        "videotestsrc is-live=true num-buffers=30 ! video/x-raw,width=160,height=120,framerate=30/1 ! segpreproc ! \
         ffnetinfer name=infer mode=auto model={} ! appsink name=sink sync=false",
        slow_model()
    );
    let (frames, infer) = run(&live);
    assert_eq!(frames.len(), 30);
    assert!(
        infer.property::<u64>("inferences") < 30,
        "live: inference skipped frames instead of holding them"
    );
}

#[test]
fn model_swap_while_playing_switches_between_frames_and_a_broken_model_keeps_the_old() {
    init();
    let (input, info) = {
        let p = format!(
            "filesrc location={} ! jpegdec ! videoconvert ! video/x-raw,format=RGB ! appsink name=sink",
            media("messi5.jpg")
        );
        let s = collect_samples(&p, 1).remove(0);
        (
            s.buffer_owned().unwrap(),
            gst_video::VideoInfo::from_caps(s.caps().unwrap()).unwrap(),
        )
    };
    let mut h = gst_check::Harness::new_parse(&format!(
        "segpreproc ! ffnetinfer name=infer model={}",
        selfie_model()
    ));
    h.set_src_caps(info.to_caps().unwrap());
    let bin = h.element().unwrap().downcast::<gst::Bin>().unwrap();
    let infer = bin.by_name("infer").unwrap();
    let push = |h: &mut gst_check::Harness, i: u64| {
        let mut b = input.copy();
        b.get_mut()
            .unwrap()
            .set_pts(gst::ClockTime::from_mseconds(40 * i));
        let out = h.push_and_pull(b).expect("every frame comes out");
        Scores::from_buffer(&out)
    };
    for i in 0..3 {
        assert_eq!(push(&mut h, i).unwrap().classes, 1);
    }
    // A broken model: the old one keeps running and a warning says why.
    let broken = std::env::temp_dir().join("ffnetseg-broken-model.onnx");
    std::fs::write(&broken, b"this is not an onnx model").unwrap();
    infer.set_property("model", broken.to_str().unwrap());
    let mut frame = 3;
    for _ in 0..5 {
        assert_eq!(
            push(&mut h, frame).unwrap().classes,
            1,
            "the old model keeps running"
        );
        frame += 1;
    }
    // A valid model with another contract: frames keep flowing, and the new model's
    // results arrive once it is loaded and segpreproc has re-asked for the input size.
    infer.set_property("model", tiny_ffnet_model());
    let mut switched_at = None;
    for _ in 0..400 {
        let s = push(&mut h, frame);
        frame += 1;
        if let Some(s) = s
            && s.classes == 19
        {
            switched_at = Some(frame);
            break;
        }
        std::thread::yield_now();
    }
    let switched_at = switched_at.expect("the new model's results arrive within 400 frames");
    eprintln!("model swapped after {} frames", switched_at - 8);
    for _ in 0..3 {
        let s = push(&mut h, frame).expect("results continue after the swap");
        assert_eq!((s.classes, s.width, s.height), (19, 32, 16));
        frame += 1;
    }
    std::fs::remove_file(broken).ok();
}

#[test]
fn stats_arrive_on_the_bus_and_latency_reflects_the_mode() {
    init();
    for (mode, adds_latency) in [("sync", true), ("async", false)] {
        let launch = format!(
            "videotestsrc is-live=true num-buffers=70 ! video/x-raw,width=160,height=120,framerate=30/1 ! segpreproc ! \
             ffnetinfer name=infer mode={mode} model={} ! fakesink name=sink sync=false",
            slow_model()
        );
        let pipeline = gst::parse::launch(&launch)
            .unwrap()
            .downcast::<gst::Pipeline>()
            .unwrap();
        pipeline.set_state(gst::State::Playing).unwrap();
        let bus = pipeline.bus().unwrap();
        let mut stats = Vec::new();
        let mut queried = None;
        loop {
            let msg = bus
                .timed_pop(gst::ClockTime::from_seconds(60))
                .expect("the pipeline ends within 60 s");
            match msg.view() {
                gst::MessageView::Element(e) => {
                    let s = e.structure().unwrap();
                    if s.name() == "ffnetinfer-stats" {
                        stats.push((
                            s.get::<u64>("frames").unwrap(),
                            s.get::<u64>("inferences").unwrap(),
                        ));
                        if queried.is_none() {
                            // Ask the sink side's view of latency once results are flowing.
                            let infer = pipeline.by_name("infer").unwrap();
                            let mut q = gst::query::Latency::new();
                            assert!(infer.static_pad("src").unwrap().query(&mut q));
                            let mut up = gst::query::Latency::new();
                            assert!(infer.static_pad("sink").unwrap().peer_query(&mut up));
                            queried = Some((q.result(), up.result()));
                        }
                    }
                }
                gst::MessageView::Eos(_) => break,
                gst::MessageView::Error(e) => panic!("{}", e.error()),
                _ => {}
            }
        }
        pipeline.set_state(gst::State::Null).unwrap();
        assert_eq!(
            stats.iter().map(|s| s.0).collect::<Vec<_>>(),
            vec![30, 60],
            "{mode}: a stats message every 30 frames"
        );
        let ((live, ours, _), (_, upstream, _)) = queried.expect("latency was queried");
        assert!(live);
        if adds_latency {
            assert!(
                ours > upstream,
                "sync inference adds its time to the latency: {ours} vs {upstream}"
            );
        } else {
            assert_eq!(ours, upstream, "async inference adds no latency");
        }
    }
}
