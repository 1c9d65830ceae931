//! The QNN execution provider on the onnxruntime-qnn wheel's HTP simulator: the plugin EP,
//! the context cache, and every provider option.

use gst::prelude::*;

use ffnetseg_tests::*;
use gstffnetseg::meta::Scores;

/// One simulator session at a time in this test binary: with two tests creating and running
/// HTP-simulator sessions in parallel threads the process died with SIGSEGV inside the
/// simulator (onnxruntime-qnn 2.7.0, x86-64; each test passes on its own).
fn simulator() -> std::sync::MutexGuard<'static, ()> {
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

fn assert_qnn_wheel() {
    let venv_qnn = repo_root().join(".venv/lib/python3.11/site-packages/onnxruntime_qnn");
    let installed = std::env::var_os("HOME")
        .map(|h| std::path::PathBuf::from(h).join(".local/lib/ffnetseg/qnn"));
    assert!(
        venv_qnn.exists() || installed.as_ref().is_some_and(|p| p.exists()),
        "the onnxruntime-qnn wheel is part of the test set-up (make venv)"
    );
}

#[test]
fn qnn_plugin_execution_provider_runs_the_whole_model_when_the_wheel_is_installed() {
    let _simulator = simulator();
    // `make venv` installs the onnxruntime-qnn wheel; on x86-64 its HTP backend is Qualcomm's
    // simulator, so this exercises the same plugin registration, device choice and placement
    // code as a Snapdragon board (only slower).
    init();
    assert_qnn_wheel();
    let (input, info) = person_frame(gst_video::VideoFormat::Nv12);
    let run = |provider: &str| {
        let launch = format!(
            "segpreproc ! ffnetinfer name=infer provider={provider} disable-cpu-fallback={} model={}",
            provider != "cpu",
            selfie_model()
        );
        let mut h = harness(&launch, &info.to_caps().unwrap());
        let out = h.push_and_pull(input.clone()).unwrap();
        let bin = h.element().unwrap().downcast::<gst::Bin>().unwrap();
        let active = bin
            .by_name("infer")
            .unwrap()
            .property::<String>("active-provider");
        (active, Scores::from_buffer(&out).unwrap().values().unwrap())
    };
    let (qnn_provider, qnn) = run("qnn");
    let (cpu_provider, cpu) = run("cpu");
    assert_eq!(
        (qnn_provider.as_str(), cpu_provider.as_str()),
        ("qnn", "cpu")
    );
    let max = qnn
        .iter()
        .zip(&cpu)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    eprintln!("QNN (HTP simulator) vs CPU: max |diff| {max:e}");
    assert!(max < 1e-3, "QNN and CPU disagree by {max}");
}

#[test]
fn qnn_context_cache_is_written_then_loaded_and_rebuilt_when_the_model_or_options_change() {
    let _simulator = simulator();
    use ffnetseg::inference::{InferenceSession, Provider, SessionConfig, parse_provider_options};
    init();
    assert_qnn_wheel();
    let dir = std::env::temp_dir().join(format!("ffnetseg-context-cache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // A copy, so the "changed model" below can keep the path.
    let model_path = dir.join("model.onnx");
    std::fs::copy(selfie_model(), &model_path).unwrap();
    let cache = dir.join("cache");
    let compiled = cache.join("model.qnn_ctx.onnx");
    let key = cache.join("model.qnn_ctx.key");

    let open = |cached: bool, options: &str| {
        let mut c = SessionConfig::new(&model_path);
        c.provider = Provider::Qnn;
        // Fails the session if any node is left on the CPU.
        c.disable_cpu_fallback = true;
        c.provider_options = parse_provider_options(options).unwrap();
        c.context_cache = cached.then(|| cache.clone());
        let t = std::time::Instant::now();
        let s = InferenceSession::open(&c).unwrap_or_else(|e| panic!("{e}"));
        let ms = t.elapsed().as_secs_f64() * 1e3;
        assert_eq!(s.active_provider(), Provider::Qnn);
        assert!(
            !s.placements().is_empty()
                && s.placements()
                    .iter()
                    .all(|p| p.provider == "QNNExecutionProvider"),
            "{:?}",
            s.placements()
        );
        assert!(s.warnings().is_empty(), "{:?}", s.warnings());
        (s, ms)
    };
    let compiles = |s: &InferenceSession| s.notes().iter().any(|n| n.starts_with("compiling"));
    let loads = |s: &InferenceSession| {
        s.notes()
            .iter()
            .any(|n| n.starts_with("loading the compiled model"))
    };
    let scores = |s: &mut InferenceSession| {
        let spec = s.contract().input;
        assert_eq!(spec.dtype, ffnetseg::tensor::DType::F32);
        let input: Vec<u8> = (0..spec.element_count())
            .flat_map(|i| (((i * 7919) % 1000) as f32 / 1000.0).to_ne_bytes())
            .collect();
        let mut out = vec![0f32; s.contract().output.element_count()];
        s.run(&input, &mut out).unwrap();
        out
    };
    let max_diff = |a: &[f32], b: &[f32]| {
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max)
    };

    let (mut plain, plain_ms) = open(false, "");
    let want = scores(&mut plain);
    drop(plain);
    assert!(!cache.exists(), "no cache without context-cache");

    // First start: compiles and writes the EP-context model and its key.
    let (mut first, compile_ms) = open(true, "");
    assert!(compiles(&first), "{:?}", first.notes());
    assert!(compiled.is_file() && key.is_file());
    let first_scores = scores(&mut first);
    drop(first);
    // Second start: loads it.
    let (mut second, load_ms) = open(true, "");
    assert!(loads(&second), "{:?}", second.notes());
    let second_scores = scores(&mut second);
    drop(second);
    eprintln!(
        "QNN session creation: {plain_ms:.0} ms without a cache, {compile_ms:.0} ms compiling \
         into it, {load_ms:.0} ms loading it"
    );
    // Same compiled graph on the HTP simulator: same scores as the uncached session.
    for (what, got) in [("compiling", &first_scores), ("cached", &second_scores)] {
        let d = max_diff(&want, got);
        assert!(
            d < 1e-3,
            "{what} session differs from the uncached one by {d}"
        );
    }

    // The element loads the same cache.
    let (input, info) = person_frame(gst_video::VideoFormat::Nv12);
    let launch = format!(
        "segpreproc ! ffnetinfer name=infer provider=qnn disable-cpu-fallback=true \
         context-cache={} model={}",
        cache.display(),
        model_path.display()
    );
    let stamp = std::fs::metadata(&compiled).unwrap().modified().unwrap();
    let mut h = harness(&launch, &info.to_caps().unwrap());
    assert!(Scores::from_buffer(&h.push_and_pull(input).unwrap()).is_some());
    let bin = h.element().unwrap().downcast::<gst::Bin>().unwrap();
    let infer = bin.by_name("infer").unwrap();
    assert_eq!(infer.property::<String>("active-provider"), "qnn");
    drop(h);
    assert_eq!(
        std::fs::metadata(&compiled).unwrap().modified().unwrap(),
        stamp,
        "the element recompiled a valid cache"
    );

    // Other provider options: rebuilt, then loaded.
    let old_key = std::fs::read_to_string(&key).unwrap();
    let (s, _) = open(true, "htp_performance_mode=burst");
    assert!(compiles(&s), "{:?}", s.notes());
    drop(s);
    assert_ne!(std::fs::read_to_string(&key).unwrap(), old_key);
    let (s, _) = open(true, "htp_performance_mode=burst");
    assert!(loads(&s), "{:?}", s.notes());
    drop(s);

    // Another model at the same path: rebuilt, and the session is the new model's.
    std::fs::copy(model("test_quantized_io_float.onnx"), &model_path).unwrap();
    let (mut s, _) = open(true, "htp_performance_mode=burst");
    assert!(compiles(&s), "{:?}", s.notes());
    assert_eq!(
        (s.contract().input.width, s.contract().input.height),
        (64, 64)
    );
    assert_eq!(scores(&mut s).len(), 64 * 64);
    drop(s);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn qnn_provider_options_are_accepted_by_the_htp_simulator_or_refused_with_a_clear_error() {
    let _simulator = simulator();
    // Every documented QNN EP option, one session each, on the onnxruntime-qnn wheel's x86-64
    // HTP simulator (`make venv` installs it), with disable-cpu-fallback so that a session
    // exists only when QNN took every node. The table and the results are in
    // docs/qnn/boards.md §7.1. Not here: backend_type=saver|ir|genie and qnn_saver_path (debug
    // backends that write into the working directory), backend_type=cpu|gpu (the wheel has
    // no libQnnCpu.so, and the GPU backend needs an Adreno GPU), profiling_level=optrace
    // (accepted, but it writes a *_schematic.bin into the working directory).
    use ffnetseg::inference::{InferenceSession, Provider, SessionConfig, parse_provider_options};
    init();
    assert_qnn_wheel();
    let dir = std::env::temp_dir().join(format!("ffnetseg-qnn-options-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let d = |name: &str| dir.join(name).display().to_string();
    let open = |options: &str| {
        let mut c = SessionConfig::new(selfie_model());
        c.provider = Provider::Qnn;
        c.disable_cpu_fallback = true;
        c.provider_options = parse_provider_options(options).unwrap();
        InferenceSession::open(&c)
    };
    let on_qnn = |options: &str| {
        let s = open(options).unwrap_or_else(|e| panic!("{options}: {e}"));
        assert_eq!(s.active_provider(), Provider::Qnn, "{options}");
        assert!(
            !s.placements().is_empty()
                && s.placements()
                    .iter()
                    .all(|p| p.provider == "QNNExecutionProvider"),
            "{options}: {:?}",
            s.placements()
        );
        assert!(s.warnings().is_empty(), "{options}: {:?}", s.warnings());
        s
    };

    let mut accepted: Vec<String> = Vec::new();
    let mut values = |key: &str, vals: &[&str]| {
        accepted.extend(vals.iter().map(|v| format!("{key}={v}")));
    };
    values("backend_type", &["htp"]);
    values(
        "htp_performance_mode",
        &[
            "burst",
            "balanced",
            "default",
            "high_performance",
            "high_power_saver",
            "low_balanced",
            "extreme_power_saver",
            "low_power_saver",
            "power_saver",
            "sustained_high_performance",
        ],
    );
    values(
        "htp_graph_finalization_optimization_mode",
        &["0", "1", "2", "3"],
    );
    values(
        "qnn_context_priority",
        &["low", "normal", "normal_high", "high"],
    );
    values("profiling_level", &["off"]);
    values("enable_htp_fp16_precision", &["0"]);
    values("vtcm_mb", &["0", "4"]);
    values("offload_graph_io_quantization", &["0", "1"]);
    values("rpc_control_latency", &["100"]);
    values("soc_model", &["60", "SM8550"]);
    values("htp_arch", &["0", "68", "73", "75", "79", "81"]);
    values("device_id", &["0"]);
    values("enable_htp_spill_fill_buffer", &["0", "1"]);
    values("enable_block_quant_weight_optimization", &["0", "1"]);
    values("skip_qnn_version_check", &["1"]);
    values("num_graph_prepare_threads", &["2"]);
    values("disable_file_mapped_weights", &["1"]);
    values("genie_log_level", &["warn"]);
    // 0 (the default) of the options the simulator refuses as 1 (below).
    for key in [
        "enable_vtcm_backup_buffer_sharing",
        "htp_share_resource_optimization",
        "enable_htp_shared_memory_allocator",
        "extended_udma",
        "htp_bf16_enable",
        "enable_htp_prepare_only",
        "dump_json_qnn_graph",
        "dump_qnn_ir_dlc",
        "enable_framework_op_trace",
    ] {
        values(key, &["0"]);
    }
    let mut paired = vec![
        format!("backend_path={}", qnn_htp_library().display()),
        // fp16 needs soc_model in onnxruntime-qnn 2.7 (refused alone, below).
        "enable_htp_fp16_precision=1,soc_model=SM8550".to_string(),
        // extended UDMA is a v81 feature: refused without htp_arch=81 (below).
        "extended_udma=1,htp_arch=81".to_string(),
    ];
    let outputs = [
        (
            "profiling_level=basic,profiling_file_path",
            d("basic.csv"),
            "basic.csv",
        ),
        (
            "profiling_level=detailed,profiling_file_path",
            d("detailed.csv"),
            "detailed.csv",
        ),
        ("dump_qnn_ir_dlc=1,dump_qnn_ir_dlc_dir", d("dlc"), "dlc"),
        (
            "dump_json_qnn_graph=1,json_qnn_graph_dir",
            d("json"),
            "json",
        ),
        (
            "enable_framework_op_trace=1,framework_op_trace_dir",
            d("trace"),
            "trace",
        ),
    ];
    paired.extend(outputs.iter().map(|(k, path, _)| format!("{k}={path}")));
    let started = std::time::Instant::now();
    for options in accepted.iter().chain(&paired) {
        drop(on_qnn(options));
    }
    eprintln!(
        "{} QNN option sets accepted by the HTP simulator in {:.1} s",
        accepted.len() + paired.len(),
        started.elapsed().as_secs_f64()
    );
    // The debugging options wrote what they promise.
    for (key, _, name) in outputs {
        let p = dir.join(name);
        let written = if p.is_dir() {
            std::fs::read_dir(&p).unwrap().next().is_some()
        } else {
            std::fs::metadata(&p).is_ok_and(|m| m.len() > 0)
        };
        assert!(written, "{key}: nothing written to {}", p.display());
    }

    // The options a board would use, all at once, on a real frame: same scores as the CPU
    // (fp16 on the simulator moves them a little).
    let combined = "backend_type=htp,htp_performance_mode=burst,htp_graph_finalization_optimization_mode=3,\
                    enable_htp_fp16_precision=1,soc_model=SM8550,htp_arch=73,device_id=0,vtcm_mb=4,\
                    qnn_context_priority=high,offload_graph_io_quantization=0,rpc_control_latency=100,\
                    enable_htp_spill_fill_buffer=1,profiling_level=off";
    let mut s = on_qnn(combined);
    let mut cpu_config = SessionConfig::new(selfie_model());
    cpu_config.provider = Provider::Cpu;
    let mut cpu = InferenceSession::open(&cpu_config).unwrap();
    let spec = s.contract().input;
    let input: Vec<u8> = (0..spec.element_count())
        .flat_map(|i| (((i * 7919) % 1000) as f32 / 1000.0).to_ne_bytes())
        .collect();
    let mut got = vec![0f32; s.contract().output.element_count()];
    let mut want = got.clone();
    s.run(&input, &mut got).unwrap();
    cpu.run(&input, &mut want).unwrap();
    let max = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    eprintln!("combined QNN options (fp16) vs CPU: max |diff| {max:e}");
    assert!(max < 0.05, "QNN with {combined} and CPU disagree by {max}");
    drop((s, cpu));

    // Refused by onnxruntime-qnn 2.7 on the simulator: the session fails, and says why.
    for (options, why) in [
        (
            "enable_htp_fp16_precision=1",
            "FP16 precision mode is enabled but soc_model is not specified",
        ),
        // SM8750 is SoC 69; BF16 needs 88 or newer.
        (
            "htp_bf16_enable=1,soc_model=SM8750",
            "BF16 mode is enabled but SoC model is 69",
        ),
        // The selfie model's HardSwish/HardSigmoid have no BF16 kernel.
        ("htp_bf16_enable=1,soc_model=88", "HardSwish"),
        ("extended_udma=1", "Failed to compose Qnn graph"),
        // Needs libcdsprpc.so (a board's FastRPC).
        (
            "enable_htp_shared_memory_allocator=1",
            "Unknown exception occurred while creating QNN EP",
        ),
        (
            "enable_vtcm_backup_buffer_sharing=1",
            "QNN_COMMON_ERROR_NOT_SUPPORTED",
        ),
        (
            "htp_share_resource_optimization=1",
            "QNN_COMMON_ERROR_NOT_SUPPORTED",
        ),
    ] {
        let e = match open(options) {
            Ok(_) => panic!("{options}: the simulator now accepts it (update docs/qnn/boards.md)"),
            Err(e) => e.to_string(),
        };
        eprintln!("{options}: {e}");
        assert!(
            e.contains(why) && e.starts_with("ONNX Runtime:") && !e.contains("valid .onnx model"),
            "{options}: {e}"
        );
    }

    // Checked before the provider is asked: a bad value fails, a typo warns and suggests.
    let e = open("htp_performance_mode=turbo")
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("htp_performance_mode=turbo") && e.contains("burst, balanced"),
        "{e}"
    );
    let s = open("htp_perfomance_mode=burst").unwrap();
    assert_eq!(s.active_provider(), Provider::Qnn);
    assert_eq!(
        s.warnings(),
        [
            "provider-options: htp_perfomance_mode is not a QNN option ONNX Runtime documents \
          (did you mean htp_performance_mode?); passed as is"
        ]
    );
    drop(s);
    // provider=auto never picks the x86 simulator, so QNN options are not its business here.
    let mut c = SessionConfig::new(selfie_model());
    c.provider_options = parse_provider_options("htp_performance_mode=turbo").unwrap();
    let s = InferenceSession::open(&c).unwrap();
    assert_eq!(s.active_provider(), Provider::Cpu);
    drop(s);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn mistyped_qnn_provider_options_reach_the_bus() {
    let _simulator = simulator();
    init();
    assert_qnn_wheel();
    // A bad value: an error message that names the key and the valid values.
    let text = first_error(&format!(
        "videotestsrc num-buffers=2 ! segpreproc ! ffnetinfer provider=qnn \
         provider-options=\"backend_type=htp,qnn_context_priority=urgent\" model={} ! fakesink",
        selfie_model()
    ));
    assert!(
        text.contains("qnn_context_priority=urgent")
            && text.contains("low, normal, normal_high, high"),
        "{text}"
    );
    // A typo: a warning that suggests the documented key; the pipeline runs on QNN.
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc num-buffers=1 ! video/x-raw,width=64,height=48 ! segpreproc ! \
         ffnetinfer name=infer provider=qnn provider-options=\"htp_perfomance_mode=burst\" \
         model={} ! fakesink",
        selfie_model()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let bus = pipeline.bus().unwrap();
    let mut warnings = Vec::new();
    loop {
        let msg = bus
            .timed_pop(gst::ClockTime::from_seconds(60))
            .expect("pipeline ends");
        match msg.view() {
            gst::MessageView::Warning(w) => warnings.push(w.error().to_string()),
            gst::MessageView::Eos(_) => break,
            gst::MessageView::Error(e) => panic!("{}", e.error()),
            _ => {}
        }
    }
    let active = pipeline
        .by_name("infer")
        .unwrap()
        .property::<String>("active-provider");
    pipeline.set_state(gst::State::Null).unwrap();
    assert_eq!(active, "qnn");
    assert!(
        warnings.iter().any(|w| w.contains("htp_perfomance_mode")
            && w.contains("did you mean htp_performance_mode?")),
        "{warnings:?}"
    );
}

/// libQnnHtp.so of the onnxruntime-qnn wheel.
fn qnn_htp_library() -> std::path::PathBuf {
    let venv = repo_root().join(".venv/lib/python3.11/site-packages/onnxruntime_qnn/libQnnHtp.so");
    if venv.is_file() {
        return venv;
    }
    std::path::PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
        .join(".local/lib/ffnetseg/qnn/libQnnHtp.so")
}

#[test]
fn quantized_io_selfie_model_runs_wholly_on_the_htp_simulator_and_its_masks_match_the_cpu() {
    let _simulator = simulator();
    // The shipped NPU variant (W8A16, integer input and output) through the three elements
    // with CPU fallback forbidden: ffnetinfer must report qnn, and the masks must agree with
    // the same model on the CPU provider. Three small real frames (the simulator is slow).
    init();
    assert_qnn_wheel();
    let model = model("selfie_segmentation_w8a16_qio.onnx");
    let masks = |provider: &str| {
        let launch = format!(
            "filesrc location={} ! avidemux ! avdec_msmpeg4 direct-rendering=false ! \
             videoscale ! video/x-raw,width=320,height=240 ! segpreproc ! \
             ffnetinfer name=infer provider={provider} disable-cpu-fallback={} model={model} ! \
             segpostproc mode=mask smoothing=1 ! appsink name=sink",
            media("vtest.avi"),
            provider != "cpu",
        );
        let samples = collect_samples(&launch, 3);
        assert_eq!(samples.len(), 3, "{provider}: three masks");
        for s in &samples {
            // The scores meta rides on segpostproc's mask and names where they were made.
            let scores = Scores::from_buffer(s.buffer().unwrap()).expect("scores on the mask");
            assert_eq!(
                scores.provider, provider,
                "the model ran on {}",
                scores.provider
            );
        }
        samples.iter().map(gray_from_sample).collect::<Vec<_>>()
    };
    let on_qnn = masks("qnn");
    let on_cpu = masks("cpu");
    for (i, (q, c)) in on_qnn.iter().zip(&on_cpu).enumerate() {
        let (agree, iou) = agreement_and_iou(q, c);
        eprintln!("frame {i}: QNN (HTP simulator) vs CPU mask agreement {agree:.5}, IoU {iou:.4}");
        assert!(agree >= 0.999, "frame {i}: masks agree on only {agree}");
    }
}

#[test]
fn a_qnn_execution_provider_of_another_series_is_refused_naming_both_versions() {
    init();
    assert_qnn_wheel();
    // The real plugin library beside version files that say onnxruntime-qnn 3.0.0: the
    // element must refuse it before loading, naming what it found and what it needs.
    let real = qnn_htp_library().with_file_name("libonnxruntime_providers_qnn.so");
    let dir = std::env::temp_dir().join(format!("ffnetseg-qnn-3-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::os::unix::fs::symlink(&real, dir.join("libonnxruntime_providers_qnn.so")).unwrap();
    std::fs::write(
        dir.join("build_and_package_info.py"),
        "__version__ = '3.0.0'\nqnn_version = '3.1.0'\n",
    )
    .unwrap();
    let text = first_error(&format!(
        "videotestsrc num-buffers=2 ! segpreproc ! ffnetinfer provider=qnn \
         disable-cpu-fallback=true ep-library={} model={} ! fakesink",
        dir.display(),
        selfie_model()
    ));
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        text.contains("onnxruntime-qnn 3.0.0 (QNN SDK 3.1.0)")
            && text.contains("ffnetseg needs onnxruntime-qnn 2.x"),
        "{text}"
    );
}

#[test]
fn ffnetinfer_fixes_a_dynamic_batch_for_qnn_and_three_streams_share_one_padded_batch_of_four() {
    let _simulator = simulator();
    // QNN compiles static shapes: the dynamic-batch selfie model gets its batch fixed to the
    // shared instance's batch-size (4); three cameras fill three slots, the fourth is padding.
    // CPU fallback is forbidden, so every node runs on the HTP simulator (with the batch
    // left symbolic, onnxruntime-qnn 2.7.0 leaves nodes to the CPU and such a session is
    // refused), and each stream's scores must equal the batch-1 model's on the CPU for its
    // own frame.
    use ffnetseg::inference::{InferenceSession, Provider, SessionConfig};
    init();
    assert_qnn_wheel();
    let session = InferenceSession::open(&SessionConfig {
        provider: Provider::Qnn,
        disable_cpu_fallback: true,
        batch_size: 4,
        ..SessionConfig::new(model("selfie_segmentation_batch.onnx"))
    })
    .expect("the batch-4 session starts wholly on QNN");
    assert_eq!(session.fixed_batch(), Some(4));
    assert!(
        session.notes().iter().any(|n| n.contains("fixed to 4")),
        "{:?}",
        session.notes()
    );
    drop(session);
    let launch = |pattern: &str, props: &str| {
        format!(
            "videotestsrc pattern={pattern} num-buffers=2 ! \
             video/x-raw,format=NV12,width=160,height=120 ! segpreproc ! ffnetinfer {props} ! \
             appsink name=sink"
        )
    };
    let values = |s: &gst::Sample| Scores::from_buffer(s.buffer().unwrap()).expect("scores");
    let patterns = ["smpte", "checkers-8", "circular"];
    let single = format!("provider=cpu model={}", selfie_model());
    let refs: Vec<Vec<Vec<f32>>> = patterns
        .iter()
        .map(|p| {
            collect_samples(&launch(p, &single), 2)
                .iter()
                .map(|s| values(s).values().unwrap())
                .collect()
        })
        .collect();
    let shared = format!(
        "provider=qnn disable-cpu-fallback=true shared-instance=qnn-cams batch-size=4 \
         batch-timeout=1000 mode=sync model={}",
        model("selfie_segmentation_batch.onnx")
    );
    let cams: Vec<_> = patterns
        .iter()
        .map(|p| launch_with_sink(&launch(p, &shared)))
        .collect();
    for (pipeline, _) in &cams {
        pipeline
            .set_state(gst::State::Playing)
            .expect("a camera starts");
    }
    for (i, (pipeline, sink)) in cams.iter().enumerate() {
        for (frame, want) in refs[i].iter().enumerate() {
            let sample = sink.try_pull_sample(gst::ClockTime::from_seconds(300));
            let bus_error = pipeline
                .bus()
                .unwrap()
                .pop_filtered(&[gst::MessageType::Error]);
            let sample =
                sample.unwrap_or_else(|| panic!("camera {i} frame {frame}: {bus_error:?}"));
            let scores = values(&sample);
            assert_eq!(scores.provider, "qnn", "camera {i} frame {frame}");
            assert_eq!(scores.instance.as_deref(), Some("qnn-cams"));
            assert!(scores.batch_size <= 3 && scores.batch_slot < scores.batch_size);
            let worst = scores
                .values()
                .unwrap()
                .iter()
                .zip(want)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            eprintln!(
                "camera {i} frame {frame}: slot {} of {}, QNN batch vs CPU batch 1: max |diff| {worst:e}",
                scores.batch_slot, scores.batch_size
            );
            assert!(worst < 1e-3, "camera {i} frame {frame}: differs by {worst}");
        }
    }
    for (pipeline, _) in &cams {
        pipeline.set_state(gst::State::Null).unwrap();
    }
}
