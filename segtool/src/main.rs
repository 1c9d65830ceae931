//! segtool — inspect, profile and validate a model on the device itself, no cloud service:
//!
//! ```text
//! segtool inspect MODEL
//! segtool profile MODEL [--provider P] [--threads N] [--runs N] [--warmup N] [--json]
//! segtool validate MODEL --reference MODEL --media FILE [--frames N] [--provider P] [--json]
//! ```
//!
//! `profile` measures through the same session code ffnetinfer uses
//! (`ffnetseg::inference::InferenceSession`).

mod validate;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use ffnetseg::inference::onnx_proto::ModelSummary;
use ffnetseg::inference::{
    InferenceSession, ModelContract, NodeFacts, Provider, SessionConfig, parse_provider_options,
};
use ffnetseg::tensor::DType;

const USAGE: &str = "\
usage:
  segtool inspect MODEL
  segtool profile MODEL [--provider auto|cpu|qnn|cuda|tensorrt|xnnpack|openvino]
                        [--provider-options k=v,...] [--threads N] [--runs N] [--warmup N]
                        [--context-cache DIR] [--json]
  segtool validate MODEL --reference MODEL --media IMAGE_OR_VIDEO [--frames N]
                        [--provider P] [--reference-provider P] [--threshold 0.55] [--classes 11,12] [--json]
";

pub(crate) fn parse_provider(s: &str) -> Result<Provider, String> {
    Ok(match s {
        "auto" => Provider::Auto,
        "cpu" => Provider::Cpu,
        "qnn" => Provider::Qnn,
        "cuda" => Provider::Cuda,
        "tensorrt" => Provider::TensorRt,
        "xnnpack" => Provider::Xnnpack,
        "openvino" => Provider::OpenVino,
        other => return Err(format!("unknown provider '{other}'")),
    })
}

struct Options {
    model: PathBuf,
    provider: Provider,
    provider_options: String,
    threads: usize,
    runs: usize,
    warmup: usize,
    json: bool,
    context_cache: Option<PathBuf>,
}

fn parse_options(args: &[String]) -> Result<Options, String> {
    let mut it = args.iter();
    let model = it.next().ok_or("missing MODEL")?.into();
    let mut o = Options {
        model,
        provider: Provider::Cpu,
        provider_options: String::new(),
        threads: 0,
        runs: 20,
        warmup: 2,
        json: false,
        context_cache: None,
    };
    while let Some(a) = it.next() {
        let mut value = || it.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--provider" => o.provider = parse_provider(value()?)?,
            "--provider-options" => o.provider_options = value()?.clone(),
            "--threads" => o.threads = value()?.parse().map_err(|_| "--threads takes a number")?,
            "--runs" => o.runs = value()?.parse().map_err(|_| "--runs takes a number")?,
            "--warmup" => o.warmup = value()?.parse().map_err(|_| "--warmup takes a number")?,
            "--json" => o.json = true,
            "--context-cache" => o.context_cache = Some(value()?.into()),
            other => return Err(format!("unknown option {other}")),
        }
    }
    if o.runs == 0 {
        return Err("--runs must be at least 1".into());
    }
    Ok(o)
}

fn open(o: &Options) -> Result<(InferenceSession, f64), String> {
    let config = SessionConfig {
        model: o.model.clone(),
        provider: o.provider,
        provider_options: parse_provider_options(&o.provider_options).map_err(|e| e.to_string())?,
        threads: o.threads,
        disable_cpu_fallback: false,
        ort_library: None,
        spin: false,
        ep_library: None,
        context_cache: o.context_cache.clone(),
        batch_size: 1,
    };
    let t = Instant::now();
    let session = InferenceSession::open(&config).map_err(|e| e.to_string())?;
    Ok((session, t.elapsed().as_secs_f64() * 1e3))
}

/// A deterministic, image-like input (smooth gradients in the model's value range).
fn input_bytes(session: &InferenceSession) -> Vec<u8> {
    let spec = session.contract().input;
    let n = spec.element_count();
    match spec.dtype {
        DType::F32 => (0..n)
            .flat_map(|i| (((i * 7919) % 1000) as f32 / 1000.0).to_ne_bytes())
            .collect(),
        DType::U8 => (0..n).map(|i| ((i * 7919) % 256) as u8).collect(),
        DType::U16 => (0..n)
            .flat_map(|i| (((i * 7919) % 65536) as u16).to_ne_bytes())
            .collect(),
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn json_str(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn profile(o: &Options) -> Result<(), String> {
    let (mut session, create_ms) = open(o)?;
    let input = input_bytes(&session);
    let mut scores = vec![0f32; session.contract().output.element_count()];
    let t = Instant::now();
    session
        .run(&input, &mut scores)
        .map_err(|e| e.to_string())?;
    let first_ms = t.elapsed().as_secs_f64() * 1e3;
    for _ in 0..o.warmup {
        session
            .run(&input, &mut scores)
            .map_err(|e| e.to_string())?;
    }
    let mut times = Vec::with_capacity(o.runs);
    for _ in 0..o.runs {
        let t = Instant::now();
        session
            .run(&input, &mut scores)
            .map_err(|e| e.to_string())?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    let (p50, p90, p99) = (
        percentile(&times, 0.5),
        percentile(&times, 0.9),
        percentile(&times, 0.99),
    );
    let provider = session.active_provider().to_string();
    if o.json {
        println!(
            "{{\"model\": {}, \"provider\": {}, \"threads\": {}, \"create_ms\": {create_ms:.3}, \"first_ms\": {first_ms:.3}, \"p50_ms\": {p50:.3}, \"p90_ms\": {p90:.3}, \"p99_ms\": {p99:.3}, \"runs\": {}}}",
            json_str(&o.model.to_string_lossy()),
            json_str(&provider),
            o.threads,
            o.runs
        );
    } else {
        println!("model      {}", o.model.display());
        println!("provider   {provider} (requested {})", o.provider.name());
        for n in session.notes() {
            println!("note       {n}");
        }
        for w in session.warnings() {
            println!("warning    {w}");
        }
        println!(
            "threads    {}",
            if o.threads == 0 {
                "ONNX Runtime default".to_string()
            } else {
                o.threads.to_string()
            }
        );
        println!("session    {create_ms:.1} ms (load, optimize, compile)");
        println!("first run  {first_ms:.2} ms");
        println!(
            "latency    p50 {p50:.2} ms, p90 {p90:.2} ms, p99 {p99:.2} ms over {} runs",
            o.runs
        );
        print_placement(&session, &o.model);
    }
    Ok(())
}

/// "qnn" for "QNNExecutionProvider": the names `--provider` takes.
fn short_provider_name(ort_name: &str) -> String {
    ort_name
        .strip_suffix("ExecutionProvider")
        .unwrap_or(ort_name)
        .to_lowercase()
}

/// Where the nodes run, one line per provider, naming the nodes ONNX Runtime listed (with
/// what they touch in the model) and the compiled partitions.
fn print_placement(session: &InferenceSession, model: &std::path::Path) {
    let placements = session.placements();
    if let [only] = placements
        && only.listed.is_empty()
    {
        println!(
            "placement  every node on {} ({} after partitioning)",
            short_provider_name(&only.provider),
            only.describe(NodeFacts::default())
        );
        return;
    }
    let summary = std::fs::read(model)
        .ok()
        .and_then(|b| ffnetseg::inference::onnx_proto::summarize(&b));
    let facts = NodeFacts {
        model: summary.as_ref(),
        rejections: Some(session.rejections()),
    };
    for p in placements {
        println!(
            "placement  {}: {}",
            short_provider_name(&p.provider),
            p.describe(facts)
        );
    }
}

fn inspect(model: &str) -> Result<(), String> {
    let bytes = std::fs::read(model).map_err(|e| format!("cannot read {model}: {e}"))?;
    let summary = ffnetseg::inference::onnx_proto::summarize(&bytes)
        .ok_or(format!("{model} is not an ONNX model"))?;
    println!("model       {model} ({:.2} MB)", bytes.len() as f64 / 1e6);
    print_graph_summary(&summary);
    let o = Options {
        model: model.into(),
        provider: Provider::Cpu,
        provider_options: String::new(),
        threads: 1,
        runs: 1,
        warmup: 0,
        json: false,
        context_cache: None,
    };
    let contract = open(&o).map(|(s, _)| s.contract().clone());
    match &contract {
        Ok(c) => print_contract(c),
        Err(e) => println!("contract    not usable by ffnetinfer: {e}"),
    }
    print_qnn_readiness(&summary, contract.is_ok());
    Ok(())
}

/// Opsets, weights and operator counts.
fn print_graph_summary(summary: &ModelSummary) {
    let opsets: Vec<String> = summary
        .opsets
        .iter()
        .map(|(d, v)| format!("{}:{v}", if d.is_empty() { "ai.onnx" } else { d }))
        .collect();
    println!("opsets      {}", opsets.join(", "));
    println!(
        "parameters  {} ({:.2} M, {:.2} MB of initializers)",
        summary.parameters,
        summary.parameters as f64 / 1e6,
        summary.initializer_bytes as f64 / 1e6
    );
    let ops: Vec<String> = summary
        .ops
        .iter()
        .map(|(k, v)| format!("{k}×{v}"))
        .collect();
    println!("operators   {}", ops.join(" "));
}

fn print_contract(c: &ModelContract) {
    let i = c.input;
    println!(
        "input       '{}' {}×{}×{} {} {}",
        c.input_name,
        i.width,
        i.height,
        i.channels,
        i.layout.as_str(),
        i.dtype.as_str()
    );
    let out = c.output;
    println!(
        "output      '{}' {} class(es) at {}×{} {}",
        c.output_name,
        out.classes,
        out.width,
        out.height,
        out.layout.as_str()
    );
}

/// What decides whether QNN's HTP can take the whole model: static shapes, quantization,
/// and operators it does not run.
fn print_qnn_readiness(summary: &ModelSummary, static_shapes: bool) {
    let qdq =
        summary.ops.contains_key("QuantizeLinear") && summary.ops.contains_key("DequantizeLinear");
    // Operators QNN's HTP backend does not take (a short list of common offenders).
    let unsupported: Vec<&str> = [
        "NonMaxSuppression",
        "Loop",
        "If",
        "Scan",
        "NonZero",
        "Unique",
    ]
    .into_iter()
    .filter(|op| summary.ops.contains_key(*op))
    .collect();
    println!(
        "QNN-ready   static shapes: {}; quantized (QDQ): {}; ops QNN HTP rejects: {}",
        if static_shapes { "yes" } else { "no" },
        if qdq {
            "yes"
        } else {
            "no (float: HTP runs it in fp16 at best)"
        },
        if unsupported.is_empty() {
            "none found".to_string()
        } else {
            unsupported.join(", ")
        }
    );
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("inspect") if args.len() == 2 => inspect(&args[1]),
        Some("profile") => parse_options(&args[1..]).and_then(|o| profile(&o)),
        Some("validate") => validate::run(&args[1..]),
        _ => Err(USAGE.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("segtool: {e}");
            ExitCode::FAILURE
        }
    }
}
