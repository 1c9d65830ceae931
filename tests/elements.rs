//! Element tests with gst_check::Harness: caps for every format, odd sizes with padded
//! strides, passthrough of the frame, and the metadata each element attaches.

use gst::prelude::*;

use ffnetseg::frame::PixelFormat;
use ffnetseg::tensor::Layout;
use ffnetseg_tests::*;
use gstffnetseg::meta::{InputTensor, Scores};

const LEFT: [u8; 3] = [200, 60, 40];
const RIGHT: [u8; 3] = [30, 90, 220];

/// A frame of `format` with padded strides (VideoMeta says where the rows are), whose
/// left half is LEFT and right half RIGHT; padding bytes are 0xEE so reading them shows.
fn two_colour_frame(
    format: gst_video::VideoFormat,
    width: u32,
    height: u32,
) -> (gst::Buffer, gst_video::VideoInfo) {
    let half = width as usize / 2;
    let (rgb, rgb_info) = painted_rgb(width, height, |x, _| if x < half { LEFT } else { RIGHT });
    padded_frame(&rgb, &rgb_info, format)
}

/// messi5.jpg (a person the selfie model finds) at 322×242 in `format` with padded strides.
fn person_frame(format: gst_video::VideoFormat) -> (gst::Buffer, gst_video::VideoInfo) {
    init();
    let p = format!(
        "filesrc location={} ! jpegdec ! videoconvert ! videoscale ! video/x-raw,format=RGB,width=322,height=242 ! appsink name=sink",
        media("messi5.jpg")
    );
    let sample = collect_samples(&p, 1).remove(0);
    let info = gst_video::VideoInfo::from_caps(sample.caps().unwrap()).unwrap();
    padded_frame(&sample.buffer_owned().unwrap(), &info, format)
}

/// Converts an RGB frame into `format` with 16 bytes of 0xEE padding after every row.
fn padded_frame(
    rgb: &gst::Buffer,
    rgb_info: &gst_video::VideoInfo,
    format: gst_video::VideoFormat,
) -> (gst::Buffer, gst_video::VideoInfo) {
    let (mut out, info) = convert_frame_padded(rgb, rgb_info, format);
    out.get_mut()
        .unwrap()
        .set_pts(gst::ClockTime::from_mseconds(40));
    (out, info)
}

fn harness(launch: &str, caps: &gst::Caps) -> gst_check::Harness {
    init();
    let mut h = gst_check::Harness::new_parse(launch);
    h.set_src_caps(caps.clone());
    h
}

fn tensor_values(t: &InputTensor) -> Vec<f32> {
    let map = t.tensor.map_readable().unwrap();
    map.as_slice()
        .chunks_exact(4)
        .map(|b| f32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

#[test]
fn segpreproc_accepts_every_format_with_padded_strides_and_odd_sizes() {
    for format in PixelFormat::ALL {
        for (w, h) in [(322, 242), (321, 241), (64, 48)] {
            let vformat = gst_video::VideoFormat::from_string(format.gst_name());
            let (input, info) = two_colour_frame(vformat, w, h);
            let caps = info.to_caps().unwrap();
            let mut harness = harness("segpreproc width=32 height=16 layout=nhwc", &caps);
            let before = input.map_readable().unwrap().to_vec();
            let out = harness.push_and_pull(input).expect("a frame comes out");
            // The frame passes untouched.
            assert_eq!(
                out.map_readable().unwrap().as_slice(),
                &before[..],
                "{format:?} {w}×{h}: frame changed"
            );
            let t = InputTensor::from_buffer(&out)
                .unwrap_or_else(|| panic!("{format:?}: no tensor meta"));
            assert_eq!((t.spec.width, t.spec.height, t.spec.channels), (32, 16, 3));
            assert_eq!(t.spec.layout, Layout::Nhwc);
            let v = tensor_values(&t);
            assert_eq!(v.len(), 32 * 16 * 3);
            // Away from the colour edge (chroma is subsampled), each half has its colour.
            let expect = |c: [u8; 3]| -> [f32; 3] {
                if format == PixelFormat::Gray8 {
                    let y =
                        (0.299 * c[0] as f32 + 0.587 * c[1] as f32 + 0.114 * c[2] as f32) / 255.0;
                    [y; 3]
                } else {
                    c.map(|x| x as f32 / 255.0)
                }
            };
            let tol = if format == PixelFormat::Gray8 {
                0.03
            } else {
                0.025
            };
            for y in 0..16 {
                for (x, want) in [(2, expect(LEFT)), (29, expect(RIGHT))] {
                    for c in 0..3 {
                        let got = v[(y * 32 + x) * 3 + c];
                        assert!(
                            (got - want[c]).abs() <= tol,
                            "{format:?} {w}×{h} at ({x},{y}) ch {c}: {got} vs {}",
                            want[c]
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn segpreproc_nchw_and_normalization_properties() {
    let (input, info) = two_colour_frame(gst_video::VideoFormat::Rgb, 64, 32);
    let mut harness = harness(
        "segpreproc width=8 height=4 layout=nchw mean=0.5,0.5,0.5 std=0.25,0.25,0.25",
        &info.to_caps().unwrap(),
    );
    let out = harness.push_and_pull(input).unwrap();
    let t = InputTensor::from_buffer(&out).unwrap();
    assert_eq!(t.spec.layout, Layout::Nchw);
    let v = tensor_values(&t);
    // Channel-major: R plane first. (x/255 - 0.5) / 0.25 at the left edge.
    let want_r = (LEFT[0] as f32 / 255.0 - 0.5) / 0.25;
    let want_b_right = (RIGHT[2] as f32 / 255.0 - 0.5) / 0.25;
    assert!((v[0] - want_r).abs() < 1e-3, "{} vs {want_r}", v[0]);
    assert!(
        (v[2 * 32 + 7] - want_b_right).abs() < 1e-3,
        "{} vs {want_b_right}",
        v[2 * 32 + 7]
    );
}

#[test]
fn segpreproc_letterbox_records_the_region() {
    let (input, info) = two_colour_frame(gst_video::VideoFormat::Nv12, 320, 160);
    let mut harness = harness(
        "segpreproc width=64 height=64 resize=letterbox",
        &info.to_caps().unwrap(),
    );
    let out = harness.push_and_pull(input).unwrap();
    let t = InputTensor::from_buffer(&out).unwrap();
    assert_eq!(
        (t.region.x, t.region.y, t.region.width, t.region.height),
        (0, 16, 64, 32)
    );
    let v = tensor_values(&t);
    // NCHW by default when no model says otherwise: padding rows are black (0).
    assert_eq!(v[0], 0.0);
    assert!(
        v[20 * 64 + 2] > 0.7,
        "picture starts at row 16: {}",
        v[20 * 64 + 2]
    );
}

#[test]
fn segpreproc_without_size_or_model_is_a_clear_error() {
    init();
    let text = first_error("videotestsrc num-buffers=1 ! segpreproc ! fakesink");
    assert!(text.contains("width and height"), "{text}");
}

/// Runs a pipeline and returns its first error message.
fn first_error(launch: &str) -> String {
    let pipeline = gst::parse::launch(launch).unwrap();
    let bus = pipeline.bus().unwrap();
    let _ = pipeline.set_state(gst::State::Playing);
    let msg = bus
        .timed_pop_filtered(gst::ClockTime::from_seconds(10), &[gst::MessageType::Error])
        .expect("an error message");
    pipeline.set_state(gst::State::Null).unwrap();
    let gst::MessageView::Error(err) = msg.view() else {
        unreachable!()
    };
    err.error().to_string()
}

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

fn run_postproc(
    mode: &str,
    input: &gst::Buffer,
    info: &gst_video::VideoInfo,
) -> (gst::Caps, gst::Buffer) {
    let launch = format!(
        "segpreproc ! ffnetinfer model={} ! segpostproc mode={mode} smoothing=1 opacity=1 color=#ff0000",
        selfie_model()
    );
    let mut harness = harness(&launch, &info.to_caps().unwrap());
    let out = harness.push_and_pull(input.clone()).unwrap();
    let caps = harness.sinkpad().unwrap().current_caps().unwrap();
    (caps, out)
}

fn to_rgb(buffer: &gst::Buffer, info: &gst_video::VideoInfo) -> (Vec<u8>, usize) {
    let (rgb, rgb_info) = convert_frame(buffer, info, gst_video::VideoFormat::Rgb);
    let stride = rgb_info.stride()[0] as usize;
    (rgb.map_readable().unwrap().to_vec(), stride)
}

fn gray_rows(buffer: &gst::Buffer, caps: &gst::Caps) -> Gray {
    let sample = gst::Sample::builder().buffer(buffer).caps(caps).build();
    gray_from_sample(&sample)
}

#[test]
fn segpostproc_overlay_keeps_the_format_and_paints_exactly_the_mask() {
    for format in [
        gst_video::VideoFormat::Nv12,
        gst_video::VideoFormat::I420,
        gst_video::VideoFormat::Rgbx,
        gst_video::VideoFormat::Bgr,
        gst_video::VideoFormat::Yuy2,
        gst_video::VideoFormat::Gray8,
    ] {
        let (input, info) = person_frame(format);
        let (mask_caps, mask_buf) = run_postproc("mask", &input, &info);
        let mask = gray_rows(&mask_buf, &mask_caps);
        let (caps, out) = run_postproc("overlay", &input, &info);
        let out_info = gst_video::VideoInfo::from_caps(&caps).unwrap();
        assert_eq!(out_info.format(), format, "overlay keeps {format:?}");
        let (before, stride) = to_rgb(&input, &info);
        let (after, _) = to_rgb(&out, &out_info);
        let (w, h) = (mask.width, mask.height);
        let fg = mask.data.iter().filter(|v| **v == 255).count();
        assert!(
            fg > w * h / 20,
            "{format:?}: the person should be found ({fg} pixels)"
        );
        let (mut painted, mut kept) = (0, 0);
        for y in (3..h - 3).step_by(3) {
            for x in (3..w - 3).step_by(3) {
                // Only where the mask is the same in a 7×7 neighbourhood (chroma is subsampled).
                let m = mask.data[y * w + x];
                let uniform =
                    (y - 3..=y + 3).all(|yy| (x - 3..=x + 3).all(|xx| mask.data[yy * w + xx] == m));
                if !uniform {
                    continue;
                }
                let a = &after[y * stride + x * 3..][..3];
                let b = &before[y * stride + x * 3..][..3];
                if m == 255 {
                    if format == gst_video::VideoFormat::Gray8 {
                        // Gray keeps only the colour's luma (red → 76).
                        assert!((a[0] as i32 - 76).abs() <= 3, "{format:?} ({x},{y}): {a:?}");
                    } else {
                        assert!(
                            a[0] > 225 && a[1] < 30 && a[2] < 30,
                            "{format:?} ({x},{y}): {a:?} is not red"
                        );
                    }
                    painted += 1;
                } else {
                    assert_eq!(a, b, "{format:?} ({x},{y}): background changed");
                    kept += 1;
                }
            }
        }
        assert!(
            painted > 100 && kept > 100,
            "{format:?}: painted {painted}, kept {kept}"
        );
    }
}

#[test]
fn segpostproc_mask_modes_output_gray8_of_the_frame_size() {
    let (input, info) = person_frame(gst_video::VideoFormat::Nv12);
    let (mcaps, mbuf) = run_postproc("mask", &input, &info);
    let (acaps, abuf) = run_postproc("alpha", &input, &info);
    let (lcaps, lbuf) = run_postproc("labels", &input, &info);
    for caps in [&mcaps, &acaps, &lcaps] {
        let i = gst_video::VideoInfo::from_caps(caps).unwrap();
        assert_eq!(i.format(), gst_video::VideoFormat::Gray8);
        assert_eq!((i.width(), i.height()), (322, 242));
    }
    let mask = gray_rows(&mbuf, &mcaps);
    let alpha = gray_rows(&abuf, &acaps);
    let labels = gray_rows(&lbuf, &lcaps);
    assert!(
        mask.data.iter().all(|v| *v == 0 || *v == 255),
        "blur=1: a hard mask"
    );
    for i in 0..mask.data.len() {
        // mask = alpha > threshold (0.55 → 140.25 in 0..255), labels = mask as 0/1.
        let a = alpha.data[i] as f32;
        if a >= 142.0 {
            assert_eq!(mask.data[i], 255, "pixel {i}: alpha {a}");
        } else if a <= 139.0 {
            assert_eq!(mask.data[i], 0, "pixel {i}: alpha {a}");
        }
    }
    // Labels are thresholded at model resolution, then upsampled by nearest neighbour:
    // the same foreground, with blockier edges.
    assert!(labels.data.iter().all(|v| *v <= 1));
    let same = labels
        .data
        .iter()
        .zip(&mask.data)
        .filter(|(l, m)| **l as u32 * 255 == **m as u32)
        .count();
    assert!(
        same as f64 / mask.data.len() as f64 > 0.97,
        "labels agree with the mask on {same} pixels"
    );
    assert!(
        alpha.data.iter().any(|v| *v > 0 && *v < 255),
        "alpha is soft"
    );
}

#[test]
fn segpostproc_rejects_bad_property_values_and_keeps_the_old_ones() {
    init();
    let e = gst::ElementFactory::make("segpostproc").build().unwrap();
    e.set_property("blur", 4u32);
    assert_eq!(e.property::<u32>("blur"), 1, "even blur is refused");
    e.set_property("classes", "persn");
    assert_eq!(e.property::<String>("classes"), "person,rider");
    e.set_property("color", "not-a-colour");
    assert_eq!(e.property::<String>("color"), "#00ff00");
    e.set_property("classes", "car,11");
    assert_eq!(e.property::<String>("classes"), "car,11");
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
fn segpostproc_background_replace_puts_the_picture_behind_the_person() {
    init();
    // A flat blue picture, so the expected background colour is known in any format.
    let picture = std::env::temp_dir().join("ffnetseg-blue.png");
    let p = format!(
        "videotestsrc num-buffers=1 pattern=solid-color foreground-color=0xff0000ff ! video/x-raw,width=64,height=64 ! \
         videoconvert ! pngenc ! filesink location={}",
        picture.display()
    );
    let pipeline = gst::parse::launch(&p).unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    pipeline
        .bus()
        .unwrap()
        .timed_pop_filtered(gst::ClockTime::from_seconds(10), &[gst::MessageType::Eos])
        .unwrap();
    pipeline.set_state(gst::State::Null).unwrap();

    for format in [gst_video::VideoFormat::Nv12, gst_video::VideoFormat::Rgbx] {
        let (input, info) = person_frame(format);
        let (mask_caps, mask_buf) = run_postproc("mask", &input, &info);
        let mask = gray_rows(&mask_buf, &mask_caps);
        let launch = format!(
            "segpreproc ! ffnetinfer model={} ! segpostproc mode=background-replace background={} smoothing=1",
            selfie_model(),
            picture.display()
        );
        let mut h = harness(&launch, &info.to_caps().unwrap());
        let out = h.push_and_pull(input.clone()).unwrap();
        let (before, stride) = to_rgb(&input, &info);
        let (after, _) = to_rgb(&out, &info);
        let (w, hgt) = (mask.width, mask.height);
        let (mut bg, mut fg) = (0, 0);
        for y in (3..hgt - 3).step_by(3) {
            for x in (3..w - 3).step_by(3) {
                let m = mask.data[y * w + x];
                if !(y - 3..=y + 3).all(|yy| (x - 3..=x + 3).all(|xx| mask.data[yy * w + xx] == m))
                {
                    continue;
                }
                let a = &after[y * stride + x * 3..][..3];
                if m == 0 {
                    assert!(
                        a[0] < 12 && a[1] < 12 && a[2] > 240,
                        "{format:?} ({x},{y}): background {a:?} is not blue"
                    );
                    bg += 1;
                } else {
                    assert_eq!(
                        a,
                        &before[y * stride + x * 3..][..3],
                        "{format:?} ({x},{y}): the person changed"
                    );
                    fg += 1;
                }
            }
        }
        assert!(
            bg > 100 && fg > 100,
            "{format:?}: {bg} background and {fg} foreground samples"
        );
    }

    // A picture that cannot be read is refused when set; without one the mode says what to do.
    let e = gst::ElementFactory::make("segpostproc").build().unwrap();
    e.set_property("background", "/nonexistent/picture.jpg");
    assert_eq!(e.property::<Option<String>>("background"), None);
    let text = first_error(&format!(
        "videotestsrc num-buffers=1 ! segpreproc ! ffnetinfer model={} ! segpostproc mode=background-replace ! fakesink",
        selfie_model()
    ));
    assert!(text.contains("background="), "{text}");
    std::fs::remove_file(picture).ok();
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
