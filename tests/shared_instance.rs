//! ffnetinfer's shared instances (`shared-instance`, `batch-size`, `batch-timeout`): one
//! model session for several streams, each in its own pipeline as cameras would be.
//!
//! Every stream shows a solid gray of its own level; tests/data/brightness*.onnx score a
//! frame's own brightness, so a result that went to the wrong stream (a swapped batch
//! slot, cross-talk) shows as the wrong value. Each stream's scores are compared with a
//! non-shared ffnetinfer's scores of the same frame.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gst::prelude::*;

use ffnetseg::inference::{InferenceSession, SessionConfig};
use ffnetseg_tests::*;
use gstffnetseg::ffnetinfer::shared_instance_members;
use gstffnetseg::meta::Scores;

/// Gray levels of the streams (R = G = B).
const LEVELS: [u8; 6] = [0x10, 0x50, 0x90, 0xd0, 0x30, 0xb0];

fn data_model(name: &str) -> String {
    repo_root()
        .join("tests/data")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

/// What one frame carried out of ffnetinfer.
#[derive(Debug, Clone)]
struct Rec {
    values: Vec<f32>,
    instance: Option<String>,
    slot: u32,
    batch: u32,
    generation: u64,
    at: Instant,
}

struct Stream {
    pipeline: gst::Pipeline,
    /// One entry per frame: None when it carried no scores.
    recs: Arc<Mutex<Vec<Option<Rec>>>>,
}

/// A camera-like pipeline of gray level `level` through `ffnetinfer {props}`.
fn stream(level: u8, live: bool, frames: u32, props: &str) -> Stream {
    init();
    let color = 0xff00_0000u32 | (u32::from(level) * 0x01_01_01);
    let desc = format!(
        "videotestsrc pattern=solid-color foreground-color={color} is-live={live} \
         num-buffers={frames} ! video/x-raw,format=RGB,width=64,height=48,framerate=30/1 ! \
         segpreproc ! ffnetinfer name=inf {props} ! appsink name=sink sync=false"
    );
    let pipeline = gst::parse::launch(&desc)
        .unwrap_or_else(|e| panic!("cannot build {desc}: {e}"))
        .downcast::<gst::Pipeline>()
        .unwrap();
    let recs: Arc<Mutex<Vec<Option<Rec>>>> = Arc::default();
    let sink = pipeline
        .by_name("sink")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    let out = recs.clone();
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let rec = Scores::from_buffer(sample.buffer().unwrap()).map(|s| Rec {
                    values: s.values().unwrap(),
                    instance: s.instance.as_deref().map(str::to_string),
                    slot: s.batch_slot,
                    batch: s.batch_size,
                    generation: s.model_generation,
                    at: Instant::now(),
                });
                out.lock().unwrap().push(rec);
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    Stream { pipeline, recs }
}

impl Stream {
    fn play(&self) {
        self.pipeline
            .set_state(gst::State::Playing)
            .expect("the stream starts");
    }

    /// Waits for EOS; panics on an error or after 60 s.
    fn wait_eos(&self) {
        let bus = self.pipeline.bus().unwrap();
        let msg = bus
            .timed_pop_filtered(
                gst::ClockTime::from_seconds(60),
                &[gst::MessageType::Eos, gst::MessageType::Error],
            )
            .expect("EOS within 60 s");
        if let gst::MessageView::Error(e) = msg.view() {
            panic!("stream error: {} ({:?})", e.error(), e.debug());
        }
    }

    fn stop(&self) {
        self.pipeline.set_state(gst::State::Null).unwrap();
    }

    fn recs(&self) -> Vec<Option<Rec>> {
        self.recs.lock().unwrap().clone()
    }

    fn inf(&self) -> gst::Element {
        self.pipeline.by_name("inf").unwrap()
    }
}

/// The scores a non-shared ffnetinfer with `model` gives the frame of gray `level`.
fn reference(level: u8, model: &str) -> Vec<f32> {
    let s = stream(level, false, 1, &format!("model={model} mode=sync"));
    s.play();
    s.wait_eos();
    s.stop();
    let rec = s.recs().remove(0).expect("the reference frame has scores");
    assert_eq!(rec.instance, None, "a non-shared element names no instance");
    rec.values
}

/// The reference scores of each gray level, from a non-shared ffnetinfer with `model`.
fn references(levels: &[u8], model: &str) -> Vec<Vec<f32>> {
    levels.iter().map(|l| reference(*l, model)).collect()
}

/// One non-live stream of `frames` frames per gray level, played together to EOS.
fn play_to_eos(levels: &[u8], frames: u32, props: &str) -> Vec<Stream> {
    let streams: Vec<_> = levels
        .iter()
        .map(|l| stream(*l, false, frames, props))
        .collect();
    streams.iter().for_each(Stream::play);
    streams.iter().for_each(Stream::wait_eos);
    streams
}

/// Asserts that every frame of stream `i` that carries scores carries its own level's.
fn assert_own_scores(i: usize, recs: &[Option<Rec>], want: &[f32], instance: &str) {
    for (n, rec) in recs
        .iter()
        .enumerate()
        .filter_map(|(n, r)| Some((n, r.as_ref()?)))
    {
        assert_eq!(
            rec.instance.as_deref(),
            Some(instance),
            "stream {i} frame {n}"
        );
        assert!(
            rec.slot < rec.batch.max(1),
            "stream {i} frame {n}: slot {} of {}",
            rec.slot,
            rec.batch
        );
        let worst = rec
            .values
            .iter()
            .zip(want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(
            rec.values.len() == want.len() && worst <= 1e-6,
            "stream {i} (gray {:#x}) frame {n} (slot {} of {}): scores differ from its own \
             frame's by {worst} (mean {} vs {})",
            LEVELS[i],
            rec.slot,
            rec.batch,
            mean(&rec.values),
            mean(want)
        );
    }
}

fn mean(v: &[f32]) -> f32 {
    v.iter().sum::<f32>() / v.len().max(1) as f32
}

fn scored(recs: &[Option<Rec>]) -> Vec<&Rec> {
    recs.iter().flatten().collect()
}

#[test]
fn four_sync_streams_in_one_batched_instance_each_get_their_own_scores() {
    let model = data_model("brightness_batch.onnx");
    let refs = references(&LEVELS[..4], &model);
    let props =
        format!("model={model} shared-instance=sync4 batch-size=4 batch-timeout=200 mode=sync");
    let streams = play_to_eos(&LEVELS[..4], 30, &props);
    let mut batched = 0;
    for (i, s) in streams.iter().enumerate() {
        let recs = s.recs();
        assert_eq!(recs.len(), 30, "stream {i}: every frame passes");
        assert!(
            recs.iter().all(Option::is_some),
            "stream {i}: sync frames all have scores"
        );
        assert_own_scores(i, &recs, &refs[i], "sync4");
        batched += scored(&recs).iter().filter(|r| r.batch > 1).count();
    }
    streams.iter().for_each(Stream::stop);
    // Four sync streams hand in their frames together: most run in batches of several.
    assert!(batched >= 60, "only {batched} of 120 frames ran in a batch");
    assert_eq!(shared_instance_members("sync4"), None);
}

/// Streams A and B play, C and D join, B leaves, all while playing; every frame that
/// carries scores carries its own.
fn members_join_and_leave_while_playing(mode: &str, name: &str) {
    let model = data_model("brightness_batch.onnx");
    let refs = references(&LEVELS[..4], &model);
    // A long timeout: were a member that left still waited for, it would show.
    let props =
        format!("model={model} shared-instance={name} batch-size=4 batch-timeout=1000 mode={mode}");
    let streams: Vec<_> = LEVELS[..4]
        .iter()
        .map(|l| stream(*l, true, 90, &props))
        .collect();
    let started = Instant::now();
    streams[0].play();
    streams[1].play();
    std::thread::sleep(Duration::from_millis(500));
    streams[2].play();
    streams[3].play();
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(shared_instance_members(name), Some(4));
    streams[1].stop();
    assert_eq!(shared_instance_members(name), Some(3));
    let left = Instant::now();
    for i in [0, 2, 3] {
        streams[i].wait_eos();
    }
    // 90 frames at 30 fps: 3 s, plus start-up.
    let took = started.elapsed();
    assert!(took < Duration::from_secs(8), "the streams took {took:?}");
    for (i, s) in streams.iter().enumerate() {
        let recs = s.recs();
        assert_own_scores(i, &recs, &refs[i], name);
        let results = scored(&recs);
        assert!(
            results.len() >= 5,
            "stream {i}: {} frames with scores",
            results.len()
        );
        if i != 1 {
            let after = results.iter().filter(|r| r.at > left).count();
            assert!(
                after >= 15,
                "stream {i}: {after} results after a member left"
            );
        }
    }
    streams.iter().for_each(Stream::stop);
    assert_eq!(shared_instance_members(name), None);
}

#[test]
fn async_members_join_and_leave_while_playing() {
    members_join_and_leave_while_playing("async", "async-join");
}

#[test]
fn sync_members_join_and_leave_while_playing() {
    members_join_and_leave_while_playing("sync", "sync-join");
}

#[test]
fn a_batch_one_model_runs_the_gathered_frames_one_after_another() {
    let model = data_model("brightness.onnx");
    let refs = references(&LEVELS[..3], &model);
    let props =
        format!("model={model} shared-instance=fixed3 batch-size=3 batch-timeout=100 mode=sync");
    let streams = play_to_eos(&LEVELS[..3], 10, &props);
    for (i, s) in streams.iter().enumerate() {
        let recs = s.recs();
        assert!(recs.iter().all(Option::is_some), "stream {i}");
        assert_own_scores(i, &recs, &refs[i], "fixed3");
        assert!(scored(&recs).iter().all(|r| r.batch == 1 && r.slot == 0));
    }
    streams.iter().for_each(Stream::stop);
}

#[test]
fn a_fixed_batch_4_model_runs_six_streams_in_groups_of_four_padded_and_each_gets_its_own_scores() {
    // As an NPU export: the model takes exactly 4 frames. batch-size=6 gathers up to six,
    // which run as a group of 4 and a group of 2 padded to 4.
    let single = data_model("brightness.onnx");
    let model = data_model("brightness_batch4.onnx");
    let refs = references(&LEVELS, &single);
    let props =
        format!("model={model} shared-instance=fixed4 batch-size=6 batch-timeout=200 mode=sync");
    let streams = play_to_eos(&LEVELS, 20, &props);
    let mut runs_of = BTreeMap::<u32, usize>::new();
    for (i, s) in streams.iter().enumerate() {
        let recs = s.recs();
        assert!(
            recs.len() == 20 && recs.iter().all(Option::is_some),
            "stream {i}"
        );
        assert_own_scores(i, &recs, &refs[i], "fixed4");
        for r in scored(&recs) {
            assert!(
                r.batch <= 4,
                "stream {i}: an inference of {} frames",
                r.batch
            );
            *runs_of.entry(r.batch).or_default() += 1;
        }
    }
    streams.iter().for_each(Stream::stop);
    // Rounds of six run as 4 + 2: both a full group and a padded one occurred.
    assert!(
        runs_of.get(&4).is_some_and(|n| *n > 0) && runs_of.keys().any(|b| *b < 4),
        "frames per inference: {runs_of:?}"
    );
}

#[test]
fn a_fixed_batch_model_without_a_shared_instance_runs_padded_and_warns_about_the_waste() {
    init();
    let model = data_model("brightness_batch4.onnx");
    let want = reference(LEVELS[2], &data_model("brightness.onnx"));
    assert_eq!(
        reference(LEVELS[2], &model),
        want,
        "the padded run gives the frame's own scores"
    );
    let color = 0xff00_0000u32 | (u32::from(LEVELS[2]) * 0x01_01_01);
    let running = Running::start(&format!(
        "videotestsrc pattern=solid-color foreground-color={color} num-buffers=2 ! \
         video/x-raw,format=RGB,width=64,height=48 ! segpreproc ! ffnetinfer model={model} ! \
         appsink name=sink"
    ));
    // Before pulling: pulling drops the bus messages that are not errors.
    let warnings = running.bus_warnings();
    while running.pull().is_some() {}
    running.pipeline.set_state(gst::State::Null).unwrap();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("fixed batch of 4") && w.contains("batch-size=4")),
        "warnings: {warnings:?}"
    );
}

/// The first error of a member that must not start.
fn start_error(s: &Stream) -> String {
    let _ = s.pipeline.set_state(gst::State::Playing);
    let msg = s
        .pipeline
        .bus()
        .unwrap()
        .timed_pop_filtered(gst::ClockTime::from_seconds(20), &[gst::MessageType::Error])
        .expect("the disagreeing member fails");
    s.stop();
    let gst::MessageView::Error(e) = msg.view() else {
        unreachable!()
    };
    e.error().to_string()
}

#[test]
fn a_member_whose_settings_disagree_fails_naming_the_instance_and_the_setting() {
    let model = data_model("brightness_batch.onnx");
    let base = format!("model={model} shared-instance=agree batch-size=2");
    let first = stream(LEVELS[0], true, 300, &base);
    first.play();
    first
        .pipeline
        .state(gst::ClockTime::from_seconds(10))
        .0
        .unwrap();
    for (props, setting) in [
        (
            format!(
                "model={} shared-instance=agree batch-size=2",
                data_model("brightness.onnx")
            ),
            "model=",
        ),
        (format!("{base} provider=cpu"), "provider=\"cpu\""),
        (format!("{base} threads=1"), "threads=\"1\""),
        (format!("{base} provider-options=a=b"), "provider-options="),
        (
            format!("model={model} shared-instance=agree batch-size=3"),
            "batch-size",
        ),
    ] {
        let e = start_error(&stream(LEVELS[1], true, 10, &props));
        assert!(
            e.contains("shared-instance \"agree\"") && e.contains(setting),
            "{props}: {e}"
        );
    }
    // The member that made it runs on, and an agreeing member still joins.
    assert_eq!(shared_instance_members("agree"), Some(1));
    let second = stream(LEVELS[1], true, 300, &base);
    second.play();
    second
        .pipeline
        .state(gst::ClockTime::from_seconds(10))
        .0
        .unwrap();
    assert_eq!(shared_instance_members("agree"), Some(2));
    second.stop();
    first.stop();
}

#[test]
fn the_last_member_out_frees_the_session() {
    let model = data_model("brightness_batch.onnx");
    let props = format!("model={model} shared-instance=free mode=async");
    assert_eq!(shared_instance_members("free"), None);
    let a = stream(LEVELS[0], true, 300, &props);
    let b = stream(LEVELS[1], true, 300, &props);
    a.play();
    b.play();
    a.pipeline
        .state(gst::ClockTime::from_seconds(10))
        .0
        .unwrap();
    b.pipeline
        .state(gst::ClockTime::from_seconds(10))
        .0
        .unwrap();
    assert_eq!(shared_instance_members("free"), Some(2));
    a.stop();
    assert_eq!(shared_instance_members("free"), Some(1));
    b.stop();
    // Gone from the registry only once its worker has ended and dropped the session.
    assert_eq!(shared_instance_members("free"), None);
    // A new first member loads it again.
    let c = stream(LEVELS[2], false, 3, &props.replace("async", "sync"));
    c.play();
    c.wait_eos();
    assert_eq!(shared_instance_members("free"), Some(1));
    assert!(c.recs().iter().all(Option::is_some));
    c.stop();
    assert_eq!(shared_instance_members("free"), None);
}

/// appsrc-fed member: frames are pushed one at a time.
struct Fed {
    pipeline: gst::Pipeline,
    src: gst_app::AppSrc,
    sink: gst_app::AppSink,
    frame: gst::Buffer,
    pts: u64,
}

fn fed(level: u8, props: &str) -> Fed {
    init();
    let desc = format!(
        "appsrc name=src format=time caps=video/x-raw,format=RGB,width=64,height=48,framerate=30/1 ! \
         segpreproc ! ffnetinfer {props} ! appsink name=sink sync=false"
    );
    let pipeline = gst::parse::launch(&desc)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let src = pipeline.by_name("src").unwrap().downcast().unwrap();
    let sink = pipeline.by_name("sink").unwrap().downcast().unwrap();
    let frame = gst::Buffer::from_mut_slice(vec![level; 64 * 48 * 3]);
    pipeline.set_state(gst::State::Playing).unwrap();
    Fed {
        pipeline,
        src,
        sink,
        frame,
        pts: 0,
    }
}

impl Fed {
    /// Pushes a frame and returns how long until it came out, and whether it had scores.
    fn one(&mut self) -> (Duration, bool) {
        let mut b = self.frame.copy();
        b.get_mut()
            .unwrap()
            .set_pts(gst::ClockTime::from_mseconds(self.pts));
        self.pts += 33;
        let t = Instant::now();
        self.src.push_buffer(b).unwrap();
        let sample = self
            .sink
            .try_pull_sample(gst::ClockTime::from_seconds(20))
            .expect("the frame comes out");
        (
            t.elapsed(),
            Scores::from_buffer(sample.buffer().unwrap()).is_some(),
        )
    }
}

#[test]
fn a_stalled_member_holds_the_others_at_most_batch_timeout() {
    let model = data_model("brightness_batch.onnx");
    let timeout = Duration::from_millis(300);
    let props = format!(
        "model={model} shared-instance=stall batch-size=2 batch-timeout={} mode=sync",
        timeout.as_millis()
    );
    let mut stalled = fed(LEVELS[0], &props);
    let mut live = fed(LEVELS[1], &props);
    // Both hand in a frame (they batch together), then `stalled` sends nothing more.
    let first = std::thread::scope(|s| {
        let h = s.spawn(|| stalled.one());
        let r = live.one();
        h.join().unwrap();
        r
    });
    assert!(first.1);
    let waits: Vec<Duration> = (0..4)
        .map(|_| live.one())
        .map(|(d, has)| {
            assert!(has, "each frame gets its scores");
            d
        })
        .collect();
    for d in &waits {
        // It waits for its partner (the stalled member), but no longer than the timeout.
        assert!(
            *d >= timeout.mul_f32(0.9) && *d < timeout + Duration::from_secs(2),
            "waits {waits:?} with batch-timeout {timeout:?}"
        );
    }
    // At EOS the stalled member is no longer waited for.
    stalled.src.end_of_stream().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let mut after: Vec<Duration> = (0..5).map(|_| live.one().0).collect();
    after.sort();
    assert!(
        after[2] < timeout / 2,
        "after the stalled member's EOS frames still wait: {after:?}"
    );
    stalled.pipeline.set_state(gst::State::Null).unwrap();
    live.pipeline.set_state(gst::State::Null).unwrap();
}

#[test]
fn a_hot_swap_on_one_member_swaps_the_instance_for_all_and_restarts_smoothing() {
    let model = data_model("brightness_batch.onnx");
    let inverse = data_model("inverse_brightness.onnx");
    let props = format!("model={model} shared-instance=swap batch-size=2 mode=async");
    let white = 0xff;
    let a = stream(white, true, 300, &props);
    let b = stream(white, true, 300, &props);
    a.play();
    b.play();
    let wait_for = |s: &Stream, want: f32| {
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(20) {
            let last = s.recs().into_iter().flatten().last();
            if let Some(r) = last.filter(|r| (mean(&r.values) - want).abs() < 1e-3) {
                return r;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("no scores of {want} within 20 s");
    };
    let before = (wait_for(&a, 1.0), wait_for(&b, 1.0));
    assert_eq!(
        before.0.generation, before.1.generation,
        "one model for both"
    );
    // Only A is told; B follows.
    a.inf().set_property("model", &inverse);
    let after = (wait_for(&a, 0.0), wait_for(&b, 0.0));
    assert_eq!(after.0.generation, after.1.generation);
    assert_ne!(
        after.1.generation, before.1.generation,
        "B's generation changed"
    );
    assert_eq!(
        b.inf().property::<Option<String>>("model").as_deref(),
        Some(inverse.as_str())
    );
    // A new member must now agree with the new model.
    let e = start_error(&stream(white, true, 10, &props));
    assert!(
        e.contains("shared-instance \"swap\"") && e.contains("model="),
        "{e}"
    );
    assert_eq!(shared_instance_members("swap"), Some(2));
    a.stop();
    b.stop();
}

#[test]
fn a_batched_run_of_the_dynamic_batch_selfie_model_equals_batch_one_runs_per_slot() {
    init();
    let open = |m: &str| {
        let mut c = SessionConfig::new(model(m));
        c.provider = ffnetseg::inference::Provider::Cpu;
        InferenceSession::open(&c).unwrap_or_else(|e| panic!("{m}: {e}"))
    };
    let mut one = open("selfie_segmentation.onnx");
    let mut many = open("selfie_segmentation_batch.onnx");
    assert!(!one.supports_batches() && many.supports_batches());
    let spec = one.contract().input;
    assert_eq!(spec, many.contract().input);
    // Four different frames: a person (messi5.jpg as segpreproc makes it for the model),
    // darker, brighter and mirrored.
    let person = person_tensor();
    assert_eq!(person.len(), spec.element_count());
    let frames: Vec<Vec<f32>> = vec![
        person.clone(),
        person.iter().map(|v| v * 0.5).collect(),
        person.iter().map(|v| (v * 1.5).min(1.0)).collect(),
        person.iter().rev().copied().collect(),
    ];
    let bytes: Vec<&[u8]> = frames.iter().map(|f| bytemuck_bytes(f)).collect();
    let mut slots: BTreeMap<usize, Vec<f32>> = BTreeMap::new();
    many.run_batch(&bytes, &spec, |at, _, data| {
        slots.insert(at.frame, data.to_vec());
    })
    .unwrap();
    assert_eq!(slots.len(), 4);
    let n = one.contract().output.element_count();
    for (slot, input) in bytes.iter().enumerate() {
        let mut alone = vec![0f32; n];
        one.run(input, &mut alone).unwrap();
        let worst = alone
            .iter()
            .zip(&slots[&slot])
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(
            worst < 1e-5,
            "slot {slot}: differs from its own frame by {worst}"
        );
    }
    // The slots really differ (otherwise a mix-up would not show).
    assert!((mean(&slots[&0]) - mean(&slots[&3])).abs() > 1e-3);
}

/// The selfie model's input tensor for messi5.jpg, as segpreproc makes it.
fn person_tensor() -> Vec<f32> {
    let desc = format!(
        "filesrc location={} ! jpegdec ! videoconvert ! segpreproc ! ffnetinfer model={} ! appsink name=sink",
        media("messi5.jpg"),
        selfie_model()
    );
    let sample = collect_samples(&desc, 1).remove(0);
    let t = gstffnetseg::meta::InputTensor::from_buffer(sample.buffer().unwrap()).unwrap();
    tensor_values(&t)
}

fn bytemuck_bytes(v: &[f32]) -> &[u8] {
    // SAFETY: f32 has no padding and any byte pattern is a valid u8.
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast(), std::mem::size_of_val(v)) }
}

#[test]
fn a_member_whose_inference_fails_stops_alone() {
    // fail_on_bright.onnx runs on black frames and fails on bright ones.
    let props = format!(
        "model={} shared-instance=fail batch-size=2 batch-timeout=50 mode=sync",
        data_model("fail_on_bright.onnx")
    );
    let black = stream(0x00, false, 40, &props);
    let white = stream(0xff, false, 40, &props);
    black.play();
    white.play();
    let e = start_error(&white);
    assert!(e.contains("inference failed"), "{e}");
    black.wait_eos();
    let recs = black.recs();
    assert_eq!(recs.len(), 40);
    for r in &recs {
        let r = r.as_ref().expect("every black frame has scores");
        assert!((mean(&r.values) - 0.25).abs() < 1e-6, "{}", mean(&r.values));
    }
    black.stop();
}
