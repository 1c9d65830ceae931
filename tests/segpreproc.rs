//! segpreproc: caps for every format, odd sizes with padded strides, passthrough of the
//! frame, the tensor it attaches and its properties.

use gst::prelude::*;

use ffnetseg::frame::PixelFormat;
use ffnetseg::tensor::Layout;
use ffnetseg_tests::*;
use gstffnetseg::meta::InputTensor;

#[test]
fn segpreproc_accepts_every_format_with_padded_strides_and_odd_sizes() {
    // VideoFormat::from_string needs GStreamer (no other test of this binary may have
    // initialised it yet).
    init();
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

#[test]
fn properties_set_while_playing_apply_from_the_next_frame() {
    let (input, info) = two_colour_frame(gst_video::VideoFormat::Rgb, 64, 32);
    let warnings = Warnings::capture("segpreproc", "pre_playing");
    let mut h = harness(
        "segpreproc name=pre_playing width=8 height=4 layout=nchw",
        &info.to_caps().unwrap(),
    );
    let before = InputTensor::from_buffer(&h.push_and_pull(input.clone()).unwrap()).unwrap();
    assert_eq!((before.spec.width, before.spec.height), (8, 4));
    let bin = h.element().unwrap().downcast::<gst::Bin>().unwrap();
    let pre = bin.by_name("pre_playing").unwrap();
    assert_eq!(pre.current_state(), gst::State::Playing);
    pre.set_property("width", 16u32);
    pre.set_property("mean", "0.5,0.5,0.5");
    assert_eq!(pre.property::<u32>("width"), 16);
    assert_eq!(pre.property::<String>("mean"), "0.5,0.5,0.5");
    let after = InputTensor::from_buffer(&h.push_and_pull(input.clone()).unwrap()).unwrap();
    assert_eq!(
        (after.spec.width, after.spec.height),
        (16, 4),
        "width applies"
    );
    let want_r = LEFT[0] as f32 / 255.0 - 0.5;
    let v = tensor_values(&after);
    assert!(
        (v[0] - want_r).abs() < 1e-3,
        "mean applies: {} vs {want_r}",
        v[0]
    );
    // A bad value is refused with a warning, and the old one stays.
    pre.set_property("mean", "0.5,0.5");
    assert_eq!(pre.property::<String>("mean"), "0.5,0.5,0.5");
    let lines = warnings.lines();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("mean") && l.contains("keeping the previous value '0.5,0.5,0.5'")),
        "{lines:?}"
    );
}

/// A copy of the selfie model in a fresh folder, with `modelinfo` written next to it as
/// `<name>.modelinfo` when given.
fn model_with_modelinfo(tag: &str, modelinfo: Option<&str>) -> String {
    let dir = std::env::temp_dir().join(format!("ffnetseg-modelinfo-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let model = dir.join("selfie.onnx");
    std::fs::copy(selfie_model(), &model).unwrap();
    if let Some(text) = modelinfo {
        std::fs::write(dir.join("selfie.modelinfo"), text).unwrap();
    }
    model.display().to_string()
}

/// The R, G, B values of the tensor's top-left pixel (NHWC).
fn first_pixel(launch: &str) -> [f32; 3] {
    let (input, info) = two_colour_frame(gst_video::VideoFormat::Rgb, 64, 32);
    let mut harness = harness(launch, &info.to_caps().unwrap());
    let out = harness.push_and_pull(input).unwrap();
    let t = InputTensor::from_buffer(&out).unwrap();
    assert_eq!(t.spec.layout, Layout::Nhwc);
    let v = tensor_values(&t);
    [v[0], v[1], v[2]]
}

#[test]
fn a_modelinfo_file_next_to_the_model_sets_the_input_ranges_and_properties_win() {
    let ranges = "[modelinfo]\nversion=1.0\n\n[image]\ndir=input\ntype=float32\n\
                  dims=1,256,256,3\nranges=-1.0,1.0;0.0,1.0;0.0,2.0\n";
    let with = model_with_modelinfo("ranges", Some(ranges));
    let without = model_with_modelinfo("none", None);
    let [l_r, l_g, l_b] = LEFT.map(|c| c as f32 / 255.0);
    let close = |a: [f32; 3], b: [f32; 3]| a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-3);

    let got = first_pixel(&format!("segpreproc ! ffnetinfer model={with}"));
    let want = [l_r * 2.0 - 1.0, l_g, l_b * 2.0];
    assert!(
        close(got, want),
        ".modelinfo ranges: {got:?}, want {want:?}"
    );

    let got = first_pixel(&format!("segpreproc ! ffnetinfer model={without}"));
    assert!(close(got, [l_r, l_g, l_b]), "no .modelinfo: {got:?}");

    // A property set on segpreproc wins over the file.
    let got = first_pixel(&format!(
        "segpreproc scale=0.00392156862 ! ffnetinfer model={with}"
    ));
    assert!(close(got, [l_r, l_g, l_b]), "scale property: {got:?}");
}

#[test]
fn a_broken_modelinfo_file_is_ignored_with_a_warning_naming_it() {
    let model = model_with_modelinfo("broken", Some("[image]\ndir=input\nranges=0,1\n"));
    let launch = format!(
        "videotestsrc num-buffers=2 ! video/x-raw,width=64,height=32 ! segpreproc ! \
         ffnetinfer model={model} ! fakesink"
    );
    init();
    let pipeline = gst::parse::launch(&launch).unwrap();
    let bus = pipeline.bus().unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let mut warnings = Vec::new();
    for msg in bus.iter_timed(gst::ClockTime::from_seconds(20)) {
        match msg.view() {
            gst::MessageView::Warning(w) => warnings.push(w.error().to_string()),
            gst::MessageView::Eos(_) => break,
            gst::MessageView::Error(e) => panic!("{}", e.error()),
            _ => {}
        }
    }
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("selfie.modelinfo") && w.contains("[modelinfo]")),
        "{warnings:?}"
    );
}
