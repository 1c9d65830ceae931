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

pub fn run(args: &[String]) -> Result<(), String> {
    let a = parse(args)?;
    let frames = frames(&a.media, a.frames)?;
    let mut model = open(&a.model, a.provider)?;
    let mut reference = open(&a.reference, a.reference_provider)?;
    let (mut sq_err, mut count, mut peak_lo, mut peak_hi) =
        (0f64, 0usize, f32::INFINITY, f32::NEG_INFINITY);
    let (mut agree, mut pixels, mut inter, mut union, mut top_same) =
        (0usize, 0usize, 0usize, 0usize, 0usize);
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
        let n = ms.width * ms.height;
        for k in 0..ms.classes {
            for i in 0..n {
                let (x, r) = (at(&ms, &md, k, i), at(&rs, &rd, k, i));
                sq_err += ((x - r) as f64).powi(2);
                peak_lo = peak_lo.min(r);
                peak_hi = peak_hi.max(r);
                count += 1;
            }
        }
        let (pm, pr) = (
            foreground(&ms, &md, &a.classes),
            foreground(&rs, &rd, &a.classes),
        );
        for i in 0..n {
            let (fm, fr) = (pm[i] > a.threshold, pr[i] > a.threshold);
            agree += (fm == fr) as usize;
            inter += (fm && fr) as usize;
            union += (fm || fr) as usize;
            if ms.classes > 1 {
                top_same += (argmax(&ms, &md, i) == argmax(&rs, &rd, i)) as usize;
            }
        }
        pixels += n;
    }
    let mse = sq_err / count as f64;
    let range = (peak_hi - peak_lo).max(f32::EPSILON) as f64;
    let psnr = if mse == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (range * range / mse).log10()
    };
    let agreement = agree as f64 / pixels as f64;
    let iou = if union == 0 {
        1.0
    } else {
        inter as f64 / union as f64
    };
    let top = (
        top_same as f64 / pixels as f64,
        model.session.contract().output.classes > 1,
    );
    let n = frames.len() as f64;
    if a.json {
        println!(
            "{{\"model\": \"{}\", \"reference\": \"{}\", \"frames\": {}, \"psnr_db\": {}, \"mask_agreement\": {agreement:.6}, \"mask_iou\": {iou:.6}, \"top_class_agreement\": {}, \"model_ms\": {:.3}, \"reference_ms\": {:.3}}}",
            a.model,
            a.reference,
            frames.len(),
            if psnr.is_finite() {
                format!("{psnr:.3}")
            } else {
                "null".into()
            },
            if top.1 {
                format!("{:.6}", top.0)
            } else {
                "null".into()
            },
            t_model * 1e3 / n,
            t_ref * 1e3 / n
        );
    } else {
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
        println!("frames       {} from {}", frames.len(), a.media);
        println!("scores PSNR  {psnr:.2} dB (peak = reference's score range {range:.3})");
        println!(
            "mask         agreement {:.4}%, IoU {iou:.4} at threshold {}",
            agreement * 100.0,
            a.threshold
        );
        if top.1 {
            println!("top class    agreement {:.4}%", top.0 * 100.0);
        }
        println!(
            "time/frame   {:.1} ms vs reference {:.1} ms (pre-processing + inference)",
            t_model * 1e3 / n,
            t_ref * 1e3 / n
        );
    }
    Ok(())
}
