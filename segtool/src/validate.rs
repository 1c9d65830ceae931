//! `segtool validate`: numerics of one model (or provider) against a reference on real
//! frames on the target (e.g. a quantized model on the NPU). Both models get each frame
//! through the engine's own pre-processing; their scores are compared at model resolution.

use std::time::Instant;

use opencv::prelude::*;
use opencv::{imgcodecs, videoio};

use ffnetseg::classes::parse_classes;
use ffnetseg::frame::{FrameView, PixelFormat};
use ffnetseg::inference::{InferenceSession, Provider, SessionConfig};
use ffnetseg::preprocess::{
    Interpolation, Normalization, PreprocessConfig, Preprocessor, ResizeMode,
};
use ffnetseg::tensor::Layout;
use ffnetseg::tensor::OutputSpec;

struct Args {
    model: String,
    reference: String,
    media: String,
    frames: usize,
    provider: Provider,
    reference_provider: Provider,
    threshold: f32,
    classes: Vec<usize>,
    json: bool,
}

fn parse(args: &[String]) -> Result<Args, String> {
    let mut it = args.iter();
    let model = it.next().ok_or("missing MODEL")?.clone();
    let mut a = Args {
        model,
        reference: String::new(),
        media: String::new(),
        frames: 10,
        provider: Provider::Cpu,
        reference_provider: Provider::Cpu,
        threshold: 0.55,
        classes: vec![11, 12],
        json: false,
    };
    while let Some(k) = it.next() {
        let mut value = || it.next().cloned().ok_or(format!("{k} needs a value"));
        match k.as_str() {
            "--reference" => a.reference = value()?,
            "--media" => a.media = value()?,
            "--frames" => a.frames = value()?.parse().map_err(|_| "--frames takes a number")?,
            "--provider" => a.provider = crate::parse_provider(&value()?)?,
            "--reference-provider" => a.reference_provider = crate::parse_provider(&value()?)?,
            "--threshold" => {
                a.threshold = value()?.parse().map_err(|_| "--threshold takes a number")?
            }
            "--classes" => a.classes = parse_classes(&value()?).map_err(|e| e.to_string())?,
            "--json" => a.json = true,
            other => return Err(format!("unknown option {other}")),
        }
    }
    if a.reference.is_empty() || a.media.is_empty() {
        return Err("validate needs --reference MODEL and --media FILE".into());
    }
    Ok(a)
}

/// BGR frames from an image or a video (first `n`).
fn frames(media: &str, n: usize) -> Result<Vec<Mat>, String> {
    let image = imgcodecs::imread(media, imgcodecs::IMREAD_COLOR).map_err(|e| e.to_string())?;
    if !image.empty() {
        return Ok(vec![image]);
    }
    let mut cap =
        videoio::VideoCapture::from_file(media, videoio::CAP_ANY).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    while out.len() < n {
        let mut f = Mat::default();
        if !cap.read(&mut f).map_err(|e| e.to_string())? || f.empty() {
            break;
        }
        out.push(f);
    }
    if out.is_empty() {
        return Err(format!("{media}: no picture or video frames could be read"));
    }
    Ok(out)
}

struct Model {
    session: InferenceSession,
    pre: Preprocessor,
    tensor: Vec<u8>,
}

fn open(path: &str, provider: Provider) -> Result<Model, String> {
    let session = InferenceSession::open(&SessionConfig {
        provider,
        ..SessionConfig::new(path)
    })
    .map_err(|e| e.to_string())?;
    let target = session.contract().input;
    if target.is_dynamic() {
        return Err(format!(
            "{path} has a dynamic input size; validate needs a static one"
        ));
    }
    let pre = Preprocessor::new(PreprocessConfig {
        target,
        normalization: Normalization::default(),
        resize: ResizeMode::Stretch,
        interpolation: Interpolation::Linear,
    })
    .map_err(|e| e.to_string())?;
    Ok(Model {
        session,
        pre,
        tensor: vec![0; target.byte_size()],
    })
}

fn infer(m: &mut Model, frame: &Mat) -> Result<(OutputSpec, Vec<f32>), String> {
    let (w, h) = (frame.cols() as usize, frame.rows() as usize);
    let data = frame.data_bytes().map_err(|e| e.to_string())?;
    let view = FrameView::packed(PixelFormat::Bgr, w, h, data).map_err(|e| e.to_string())?;
    m.pre.run(&view, &mut m.tensor).map_err(|e| e.to_string())?;
    let spec = m.session.contract().input;
    m.session
        .run_with(&m.tensor, &spec, |o, d| (o, d.to_vec()))
        .map_err(|e| e.to_string())
}

/// Value of class `k` at pixel `i` (row-major over H×W).
fn at(spec: &OutputSpec, data: &[f32], k: usize, i: usize) -> f32 {
    match spec.layout {
        Layout::Nchw => data[k * spec.width * spec.height + i],
        Layout::Nhwc => data[i * spec.classes + k],
    }
}

/// Foreground probability per pixel (sigmoid output or softmax over selected classes).
fn foreground(spec: &OutputSpec, data: &[f32], classes: &[usize]) -> Vec<f32> {
    let n = spec.width * spec.height;
    if spec.classes == 1 {
        return (0..n).map(|i| at(spec, data, 0, i)).collect();
    }
    (0..n)
        .map(|i| {
            let max = (0..spec.classes)
                .map(|k| at(spec, data, k, i))
                .fold(f32::NEG_INFINITY, f32::max);
            let sum: f32 = (0..spec.classes)
                .map(|k| (at(spec, data, k, i) - max).exp())
                .sum();
            classes
                .iter()
                .filter(|k| **k < spec.classes)
                .map(|k| (at(spec, data, *k, i) - max).exp())
                .sum::<f32>()
                / sum
        })
        .collect()
}

fn argmax(spec: &OutputSpec, data: &[f32], i: usize) -> usize {
    (0..spec.classes)
        .max_by(|a, b| at(spec, data, *a, i).total_cmp(&at(spec, data, *b, i)))
        .unwrap_or(0)
}

/// Running sums of the comparison over all frames.
#[derive(Default)]
struct Tally {
    sq_err: f64,
    scores: usize,
    /// The reference's score range (the PSNR peak).
    peak_lo: f32,
    peak_hi: f32,
    /// Pixels whose masks agree, are foreground in both, in either; and whose top class
    /// agrees (multi-class models).
    agree: usize,
    inter: usize,
    union: usize,
    top_same: usize,
    pixels: usize,
}

/// One model's scores for a frame.
struct Scores<'a> {
    spec: &'a OutputSpec,
    data: &'a [f32],
}

impl Tally {
    fn new() -> Self {
        Tally {
            peak_lo: f32::INFINITY,
            peak_hi: f32::NEG_INFINITY,
            ..Default::default()
        }
    }

    fn add_scores(&mut self, m: &Scores<'_>, r: &Scores<'_>) {
        let n = m.spec.width * m.spec.height;
        for k in 0..m.spec.classes {
            for i in 0..n {
                let (x, y) = (at(m.spec, m.data, k, i), at(r.spec, r.data, k, i));
                self.sq_err += ((x - y) as f64).powi(2);
                self.peak_lo = self.peak_lo.min(y);
                self.peak_hi = self.peak_hi.max(y);
                self.scores += 1;
            }
        }
    }

    fn add_masks(&mut self, m: &Scores<'_>, r: &Scores<'_>, a: &Args) {
        let n = m.spec.width * m.spec.height;
        let (pm, pr) = (
            foreground(m.spec, m.data, &a.classes),
            foreground(r.spec, r.data, &a.classes),
        );
        for i in 0..n {
            let (fm, fr) = (pm[i] > a.threshold, pr[i] > a.threshold);
            self.agree += (fm == fr) as usize;
            self.inter += (fm && fr) as usize;
            self.union += (fm || fr) as usize;
            if m.spec.classes > 1 {
                self.top_same += (argmax(m.spec, m.data, i) == argmax(r.spec, r.data, i)) as usize;
            }
        }
        self.pixels += n;
    }

    fn summary(&self, multi_class: bool) -> Summary {
        let mse = self.sq_err / self.scores as f64;
        let range = (self.peak_hi - self.peak_lo).max(f32::EPSILON) as f64;
        Summary {
            psnr: if mse == 0.0 {
                f64::INFINITY
            } else {
                10.0 * (range * range / mse).log10()
            },
            range,
            agreement: self.agree as f64 / self.pixels as f64,
            iou: if self.union == 0 {
                1.0
            } else {
                self.inter as f64 / self.union as f64
            },
            top_class: multi_class.then(|| self.top_same as f64 / self.pixels as f64),
        }
    }
}

struct Summary {
    psnr: f64,
    range: f64,
    agreement: f64,
    iou: f64,
    /// Top-class agreement, for multi-class models.
    top_class: Option<f64>,
}

/// Mean time per frame of the model and the reference, in ms.
struct Timing {
    model_ms: f64,
    reference_ms: f64,
}

pub fn run(args: &[String]) -> Result<(), String> {
    let a = parse(args)?;
    let frames = frames(&a.media, a.frames)?;
    let mut model = open(&a.model, a.provider)?;
    let mut reference = open(&a.reference, a.reference_provider)?;
    let mut tally = Tally::new();
    let (mut t_model, mut t_ref) = (0f64, 0f64);
    for f in &frames {
        let t = Instant::now();
        let (ms, md) = infer(&mut model, f)?;
        t_model += t.elapsed().as_secs_f64();
        let t = Instant::now();
        let (rs, rd) = infer(&mut reference, f)?;
        t_ref += t.elapsed().as_secs_f64();
        if (ms.classes, ms.width, ms.height) != (rs.classes, rs.width, rs.height) {
            return Err(format!(
                "outputs differ in shape: {}×{}×{} vs reference {}×{}×{}",
                ms.classes, ms.width, ms.height, rs.classes, rs.width, rs.height
            ));
        }
        let m = Scores {
            spec: &ms,
            data: &md,
        };
        let r = Scores {
            spec: &rs,
            data: &rd,
        };
        tally.add_scores(&m, &r);
        tally.add_masks(&m, &r, &a);
    }
    let summary = tally.summary(model.session.contract().output.classes > 1);
    let n = frames.len() as f64;
    let timing = Timing {
        model_ms: t_model * 1e3 / n,
        reference_ms: t_ref * 1e3 / n,
    };
    if a.json {
        print_json(&a, frames.len(), &summary, &timing);
    } else {
        print_text(&a, (&model, &reference), frames.len(), &summary, &timing);
    }
    Ok(())
}

fn print_json(a: &Args, frames: usize, s: &Summary, t: &Timing) {
    let or_null = |v: Option<String>| v.unwrap_or_else(|| "null".into());
    println!(
        "{{\"model\": \"{}\", \"reference\": \"{}\", \"frames\": {frames}, \"psnr_db\": {}, \"mask_agreement\": {:.6}, \"mask_iou\": {:.6}, \"top_class_agreement\": {}, \"model_ms\": {:.3}, \"reference_ms\": {:.3}}}",
        a.model,
        a.reference,
        or_null(s.psnr.is_finite().then(|| format!("{:.3}", s.psnr))),
        s.agreement,
        s.iou,
        or_null(s.top_class.map(|v| format!("{v:.6}"))),
        t.model_ms,
        t.reference_ms
    );
}

fn print_text(
    a: &Args,
    (model, reference): (&Model, &Model),
    frames: usize,
    s: &Summary,
    t: &Timing,
) {
    println!(
        "model        {} ({})",
        a.model,
        model.session.active_provider()
    );
    println!(
        "reference    {} ({})",
        a.reference,
        reference.session.active_provider()
    );
    println!("frames       {frames} from {}", a.media);
    println!(
        "scores PSNR  {:.2} dB (peak = reference's score range {:.3})",
        s.psnr, s.range
    );
    println!(
        "mask         agreement {:.4}%, IoU {:.4} at threshold {}",
        s.agreement * 100.0,
        s.iou,
        a.threshold
    );
    if let Some(top) = s.top_class {
        println!("top class    agreement {:.4}%", top * 100.0);
    }
    println!(
        "time/frame   {:.1} ms vs reference {:.1} ms (pre-processing + inference)",
        t.model_ms, t.reference_ms
    );
}
