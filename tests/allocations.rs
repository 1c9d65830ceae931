//! Steady-state heap allocations per frame of the three elements, in every mode.
//!
//! A counting global allocator wraps the system allocator and counts every Rust allocation
//! (alloc, alloc_zeroed, realloc) of every thread of this test binary. Real pipelines run
//! in-process; a buffer probe on the sink's pad reads the counter as each frame arrives,
//! so the difference between frame WARM_UP and frame WARM_UP + WINDOW is what the elements
//! (and their worker threads) allocated for WINDOW frames after warm-up. It must be zero.
//!
//! Only Rust allocations are seen: GLib's, ONNX Runtime's and OpenCV's C/C++ allocations go
//! straight to malloc. Those belong to the libraries; what the project's own code allocates
//! is what this test holds to zero.
//!
//! When a case allocates, it is run again with capture on: every allocation in a few
//! frames records a backtrace, and the failure lists the project functions that allocated
//! (symbol names; inlined callees show as their caller).
//!
//! `FFNETSEG_ALLOC_CASES=selfie/sync` (a substring of the case names) runs a subset.

use std::alloc::{GlobalAlloc, Layout, System};
use std::backtrace::Backtrace;
use std::cell::Cell;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use ffnetseg_tests::{init, media, model, selfie_model, tiny_ffnet_model};
use gst::prelude::*;

// ---------------------------------------------------------------------------------------
// The counting allocator

struct CountingAllocator;

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Allocation calls (alloc, alloc_zeroed, realloc) since the start, all threads.
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
/// While set, every counted allocation also records a backtrace in TRACES.
static CAPTURING: AtomicBool = AtomicBool::new(false);
static TRACES: Mutex<Vec<Backtrace>> = Mutex::new(Vec::new());
/// Traces kept per capture, so that a very allocating case stays quick to symbolize.
const MAX_TRACES: usize = 4000;

thread_local! {
    /// Set while this thread records a backtrace: what that allocates is the test's own.
    static IN_HOOK: Cell<bool> = const { Cell::new(false) };
}

impl CountingAllocator {
    fn note(&self) {
        // try_with: a thread being torn down has no thread-locals left; count it anyway.
        let hooked = IN_HOOK.try_with(|h| h.get()).unwrap_or(false);
        if hooked {
            return;
        }
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        if CAPTURING.load(Ordering::Relaxed) {
            record_backtrace();
        }
    }
}

fn record_backtrace() {
    if IN_HOOK.try_with(|h| h.replace(true)).unwrap_or(true) {
        return;
    }
    let trace = Backtrace::force_capture();
    if let Ok(mut traces) = TRACES.lock()
        && traces.len() < MAX_TRACES
    {
        traces.push(trace);
    }
    let _ = IN_HOOK.try_with(|h| h.set(false));
}

// SAFETY: every call is forwarded unchanged to the system allocator; the bookkeeping
// around it only touches atomics, a const thread-local and (guarded against re-entry) a
// mutex-protected Vec.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.note();
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        self.note();
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        self.note();
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(ptr, layout) }
    }
}

fn allocations() -> u64 {
    ALLOCATIONS.load(Ordering::Relaxed)
}

// ---------------------------------------------------------------------------------------
// Measuring a window of frames

/// Frames that pass before counting starts (model load, negotiation, first results, pools).
const WARM_UP: u64 = 20;
/// Frames counted.
const WINDOW: usize = 40;
/// Frames whose allocations are captured with backtraces when a case allocates.
const CAPTURE_FRAMES: u64 = 3;

/// What the sink-pad probe records; written only with atomics, so the probe allocates nothing.
struct Window {
    frames: AtomicU64,
    /// ALLOCATIONS when frame WARM_UP + i reached the sink.
    marks: [AtomicU64; WINDOW + 1],
    /// The scores' sequence number on the first and last frame of the window.
    first_sequence: AtomicU64,
    last_sequence: AtomicU64,
    /// Capture backtraces over the first CAPTURE_FRAMES frames of the window.
    capture: bool,
    /// Allocates once per frame on purpose (the counter's own check).
    plant: bool,
}

impl Window {
    fn new(capture: bool, plant: bool) -> Self {
        Window {
            frames: AtomicU64::new(0),
            marks: std::array::from_fn(|_| AtomicU64::new(0)),
            first_sequence: AtomicU64::new(u64::MAX),
            last_sequence: AtomicU64::new(u64::MAX),
            capture,
            plant,
        }
    }

    /// Runs in the streaming thread for each frame reaching the sink.
    fn on_frame(&self, buffer: Option<&gst::BufferRef>) {
        if self.plant {
            plant_one_allocation();
        }
        let n = self.frames.fetch_add(1, Ordering::Relaxed);
        let Some(i) = n.checked_sub(WARM_UP).filter(|i| *i <= WINDOW as u64) else {
            return;
        };
        // Reading the meta allocates (a String field): only outside the counted frames,
        // i.e. before the first mark and after the last one.
        if i == 0 {
            self.first_sequence
                .store(sequence_of(buffer), Ordering::Relaxed);
        }
        if i == CAPTURE_FRAMES && self.capture {
            CAPTURING.store(false, Ordering::SeqCst);
        }
        self.marks[i as usize].store(allocations(), Ordering::SeqCst);
        if i == 0 && self.capture {
            CAPTURING.store(true, Ordering::SeqCst);
        }
        if i == WINDOW as u64 {
            self.last_sequence
                .store(sequence_of(buffer), Ordering::Relaxed);
        }
    }

    fn per_frame(&self) -> Vec<u64> {
        let marks: Vec<u64> = self
            .marks
            .iter()
            .map(|m| m.load(Ordering::SeqCst))
            .collect();
        marks.windows(2).map(|w| w[1] - w[0]).collect()
    }
}

#[inline(never)]
fn plant_one_allocation() {
    std::hint::black_box(Vec::<u8>::with_capacity(1));
}

fn sequence_of(buffer: Option<&gst::BufferRef>) -> u64 {
    buffer
        .and_then(gstffnetseg::meta::Scores::from_buffer)
        .map_or(u64::MAX, |s| s.sequence)
}

/// Runs `launch` (ending in `fakesink name=sink`) to EOS with a counting probe on the sink.
fn run_window(launch: &str, capture: bool, plant: bool) -> Arc<Window> {
    let pipeline = gst::parse::launch(launch)
        .unwrap_or_else(|e| panic!("cannot build {launch}: {e}"))
        .downcast::<gst::Pipeline>()
        .expect("a pipeline");
    let window = Arc::new(Window::new(capture, plant));
    let sink_pad = pipeline
        .by_name("sink")
        .expect("a sink named sink")
        .static_pad("sink")
        .expect("a sink pad");
    let w = window.clone();
    sink_pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        w.on_frame(info.buffer().map(|b| b.as_ref()));
        gst::PadProbeReturn::Ok
    });
    pipeline.set_state(gst::State::Playing).expect("starts");
    let bus = pipeline.bus().expect("pipelines have a bus");
    let msg = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(120),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .unwrap_or_else(|| panic!("{launch}: neither EOS nor an error within 120 s"));
    CAPTURING.store(false, Ordering::SeqCst);
    pipeline.set_state(gst::State::Null).expect("stops");
    if let gst::MessageView::Error(e) = msg.view() {
        panic!("{launch}: {} ({:?})", e.error(), e.debug());
    }
    let frames = window.frames.load(Ordering::SeqCst);
    assert!(
        frames > WARM_UP + WINDOW as u64,
        "{launch}: only {frames} frames reached the sink"
    );
    window
}

// ---------------------------------------------------------------------------------------
// Where the allocations come from

/// Crates whose frames are the allocation's machinery rather than its cause.
const MACHINERY: &[&str] = &[
    "allocations::record_backtrace",
    "allocations::CountingAllocator",
    "<allocations::CountingAllocator",
    "std::",
    "<std::",
    "core::",
    "<core::",
    "alloc::",
    "<alloc::",
    "__rust",
    "__rdl",
    "__rg_",
    "_rust",
    "hashbrown::",
    "<hashbrown::",
];

/// The symbol names of a trace, innermost first.
fn frames_of(trace: &Backtrace) -> Vec<String> {
    trace
        .to_string()
        .lines()
        .filter_map(|l| {
            let (index, name) = l.trim_start().split_once(": ")?;
            index.parse::<usize>().ok()?;
            Some(name.trim().to_string())
        })
        .collect()
}

fn is_project(name: &str) -> bool {
    // `allocations::` is this test (its planted allocation).
    [
        "ffnetseg::",
        "gstffnetseg::",
        "<ffnetseg::",
        "<gstffnetseg::",
        "allocations::",
    ]
    .iter()
    .any(|p| name.starts_with(p))
}

/// "innermost project function [via the library function it called] <- its project
/// callers (up to three)", or the first non-std function when no project code is on the
/// stack (e.g. a gstreamer-rs or ort helper called from C).
fn site_of(frames: &[String]) -> String {
    let outside: Vec<&String> = frames
        .iter()
        .filter(|f| !MACHINERY.iter().any(|m| f.starts_with(m)))
        .collect();
    let Some(first) = outside.first() else {
        return "(std only)".to_string();
    };
    let Some(p) = outside.iter().position(|f| is_project(f)) else {
        return format!("{first} (no project frame)");
    };
    let chain: Vec<&str> = outside[p..]
        .iter()
        .take_while(|f| is_project(f))
        .take(3)
        .map(|f| f.as_str())
        .collect();
    // A library function between the project and the allocator says what allocated.
    let via = match p {
        0 => String::new(),
        _ => format!(" [via {}]", outside[p - 1]),
    };
    format!("{}{via}{}", chain.join(" <- "), allocating_call(frames))
}

/// The innermost std function that is not the allocator itself (`String::clone`,
/// `Vec::from_iter`, `format!`, …): what kind of allocation it was.
fn allocating_call(frames: &[String]) -> String {
    const ALLOCATOR: &[&str] = &[
        "allocations::",
        "<allocations::",
        "__rust",
        "__rdl",
        "alloc::alloc::",
        "<alloc::alloc::",
        "std::alloc::",
        "alloc::raw_vec::",
        "<alloc::raw_vec::",
    ];
    frames
        .iter()
        .find(|f| !ALLOCATOR.iter().any(|a| f.starts_with(a)))
        .filter(|f| !is_project(f) && MACHINERY.iter().any(|m| f.starts_with(m)))
        .map(|f| format!(" {{{f}}}"))
        .unwrap_or_default()
}

/// Allocation sites of the captured traces, with allocations per frame, most first.
fn captured_sites() -> Vec<(String, f64)> {
    let traces = std::mem::take(&mut *TRACES.lock().unwrap());
    let mut sites: BTreeMap<String, usize> = BTreeMap::new();
    for trace in &traces {
        if std::env::var_os("FFNETSEG_ALLOC_TRACES").is_some() {
            eprintln!("{trace}");
        }
        *sites.entry(site_of(&frames_of(trace))).or_default() += 1;
    }
    let mut sites: Vec<(String, f64)> = sites
        .into_iter()
        .map(|(s, n)| (s, n as f64 / CAPTURE_FRAMES as f64))
        .collect();
    sites.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    sites
}

// ---------------------------------------------------------------------------------------
// The cases

const POST_MODES: &[&str] = &[
    "overlay",
    "mask",
    "alpha",
    "background-blur",
    "background-replace",
    "classes",
    "labels",
];

struct Case {
    name: String,
    launch: String,
    sync: bool,
}

fn cases() -> Vec<Case> {
    let models = [
        ("selfie-f32", selfie_model()),
        ("ffnet-tiny-19-classes", tiny_ffnet_model()),
        ("quantized-io-u8", model("test_quantized_io.onnx")),
    ];
    let background = media("baboon.jpg");
    let mut cases = Vec::new();
    for (model_name, path) in &models {
        for infer_mode in ["sync", "async"] {
            for post in POST_MODES {
                let extra = if *post == "background-replace" {
                    format!(" background={background}")
                } else {
                    String::new()
                };
                // Async runs against a live 60 fps source, as with a camera: a file-speed
                // source would outrun the first result and leave the window without scores.
                let (live, rate) = match infer_mode {
                    "async" => (true, 60),
                    _ => (false, 30),
                };
                let launch = format!(
                    "videotestsrc num-buffers={frames} pattern=ball is-live={live} ! \
                     video/x-raw,format=NV12,width=320,height=240,framerate={rate}/1 ! segpreproc ! \
                     ffnetinfer model={path} provider=cpu threads=2 mode={infer_mode} ! \
                     segpostproc mode={post}{extra} ! fakesink name=sink sync=false",
                    frames = WARM_UP + WINDOW as u64 + 5,
                );
                cases.push(Case {
                    name: format!("{model_name}/{infer_mode}/{post}"),
                    launch,
                    sync: infer_mode == "sync",
                });
            }
        }
    }
    let only = std::env::var("FFNETSEG_ALLOC_CASES").unwrap_or_default();
    cases.retain(|c| c.name.contains(&only));
    cases
}

struct Outcome {
    name: String,
    per_frame: Vec<u64>,
    inferences: u64,
    sites: Vec<(String, f64)>,
}

impl Outcome {
    fn total(&self) -> u64 {
        self.per_frame.iter().sum()
    }

    fn describe(&self) -> String {
        let min = self.per_frame.iter().min().copied().unwrap_or(0);
        let max = self.per_frame.iter().max().copied().unwrap_or(0);
        let mut s = format!(
            "{}: {:.2} allocations/frame (min {min}, max {max}, {} in {WINDOW} frames, {} inferences)",
            self.name,
            self.total() as f64 / WINDOW as f64,
            self.total(),
            self.inferences,
        );
        let captured: f64 = self.sites.iter().map(|(_, n)| n).sum();
        if !self.sites.is_empty() {
            let _ = write!(s, "\n      sites ({captured:.2}/frame captured):");
        }
        for (site, n) in self.sites.iter().take(30) {
            let _ = write!(s, "\n      {n:6.2}/frame  {site}");
        }
        s
    }
}

fn measure(case: &Case) -> Outcome {
    let window = run_window(&case.launch, false, false);
    let (first, last) = (
        window.first_sequence.load(Ordering::SeqCst),
        window.last_sequence.load(Ordering::SeqCst),
    );
    assert!(
        first != u64::MAX && last != u64::MAX,
        "{}: frames in the window carry no scores (sequence {first}…{last})",
        case.name
    );
    let inferences = last - first;
    // The window must really contain inference: every frame in sync, some in async.
    let wanted = if case.sync { WINDOW as u64 } else { 3 };
    assert!(
        inferences >= wanted,
        "{}: only {inferences} inferences in the window, want at least {wanted}",
        case.name
    );
    let mut outcome = Outcome {
        name: case.name.clone(),
        per_frame: window.per_frame(),
        inferences,
        sites: Vec::new(),
    };
    if outcome.total() > 0 {
        run_window(&case.launch, true, false);
        outcome.sites = captured_sites();
    }
    outcome
}

/// The counter counts what it should: nothing while idle, and a planted allocation once
/// per frame, found by capture at the planting function.
fn check_the_counter() {
    let before = allocations();
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(allocations() - before, 0, "allocations while idle");

    let c_only = format!(
        "videotestsrc num-buffers={} pattern=ball ! video/x-raw,format=NV12,width=640,height=480 ! \
         fakesink name=sink sync=false",
        WARM_UP + WINDOW as u64 + 5
    );
    let clean = run_window(&c_only, false, false).per_frame();
    assert!(
        clean.iter().all(|n| *n == 0),
        "GStreamer's C elements and the probe allocate on the Rust heap: {clean:?}"
    );
    let planted = run_window(&c_only, false, true).per_frame();
    assert!(
        planted.iter().all(|n| *n == 1),
        "one planted allocation per frame is not counted once per frame: {planted:?}"
    );
    run_window(&c_only, true, true);
    let sites = captured_sites();
    assert!(
        sites.len() == 1 && sites[0].0.contains("plant_one_allocation") && sites[0].1 == 1.0,
        "capture does not find the planted allocation: {sites:?}"
    );
}

#[test]
fn no_heap_allocation_per_frame_after_warm_up_in_any_element_or_mode() {
    init();
    check_the_counter();
    let mut report = String::new();
    let mut failing = 0;
    for case in cases() {
        let outcome = measure(&case);
        let line = outcome.describe();
        eprintln!("{line}");
        if outcome.total() > 0 {
            failing += 1;
            let _ = writeln!(report, "  {line}");
        }
    }
    assert!(
        failing == 0,
        "{failing} cases allocate on the heap after warm-up (sites captured over \
         {CAPTURE_FRAMES} frames: innermost project function <- its project callers \
         [via the library function it called] {{the std call that allocated}}):\n{report}"
    );
}
