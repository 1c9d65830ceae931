//! segpostproc: every output mode, its caps, and its properties.

use gst::prelude::*;

use ffnetseg_tests::*;

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
fn changing_mode_while_playing_renegotiates_both_ways_and_keeps_playing() {
    let run = Running::start(&format!(
        "videotestsrc num-buffers=60 ! video/x-raw,format=NV12,width=64,height=48 ! segpreproc ! \
         ffnetinfer model={} ! segpostproc name=post mode=overlay ! appsink name=sink",
        selfie_model()
    ));
    let post = run.pipeline.by_name("post").unwrap();
    let format = |s: &gst::Sample| {
        gst_video::VideoInfo::from_caps(s.caps().unwrap())
            .unwrap()
            .format()
    };
    assert_eq!(format(&run.pull().unwrap()), gst_video::VideoFormat::Nv12);
    for (mode, want) in [
        ("mask", gst_video::VideoFormat::Gray8),
        ("overlay", gst_video::VideoFormat::Nv12),
        ("alpha", gst_video::VideoFormat::Gray8),
        ("background-blur", gst_video::VideoFormat::Nv12),
        ("labels", gst_video::VideoFormat::Gray8),
        ("classes", gst_video::VideoFormat::Nv12),
    ] {
        post.set_property_from_str("mode", mode);
        // Frames already on their way come in the old format, then the new one.
        let changed = (0..6)
            .map(|_| run.pull().expect("frames keep flowing after the change"))
            .find(|s| format(s) == want)
            .unwrap_or_else(|| panic!("mode={mode}: the output never became {want:?}"));
        let info = gst_video::VideoInfo::from_caps(changed.caps().unwrap()).unwrap();
        assert_eq!((info.width(), info.height()), (64, 48), "mode={mode}");
        // And the next frame still comes, in the new format.
        assert_eq!(format(&run.pull().unwrap()), want, "mode={mode}");
    }
    // The stream ends normally (pull panics on an error message).
    while run.pull().is_some() {}
}

#[test]
fn a_mode_change_downstream_cannot_take_is_an_error_not_a_panic() {
    init();
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc num-buffers=100 ! video/x-raw,format=NV12,width=64,height=48 ! segpreproc ! \
         ffnetinfer model={} ! segpostproc name=post mode=overlay ! video/x-raw,format=NV12 ! \
         fakesink name=sink sync=false",
        selfie_model()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let bus = pipeline.bus().unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    bus.timed_pop_filtered(
        gst::ClockTime::from_seconds(30),
        &[gst::MessageType::AsyncDone],
    )
    .expect("prerolls");
    pipeline
        .by_name("post")
        .unwrap()
        .set_property_from_str("mode", "mask");
    let msg = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(30),
            &[gst::MessageType::Error, gst::MessageType::Eos],
        )
        .expect("an error or EOS");
    pipeline.set_state(gst::State::Null).unwrap();
    let gst::MessageView::Error(e) = msg.view() else {
        panic!("a GRAY8 mode reached EOS through a capsfilter that only takes NV12")
    };
    let text = format!("{} {:?}", e.error(), e.debug());
    assert!(
        text.contains("not-negotiated") && !text.contains("panicked"),
        "{text}"
    );
}

#[test]
fn labels_of_a_model_with_more_than_256_classes_warn_once_that_they_are_clamped() {
    use ffnetseg::tensor::Layout;
    use ffnetseg::tensor::Region;
    use gstffnetseg::meta::Scores;
    let (rgb, info) = painted_rgb(16, 16, |_, _| [10, 20, 30]);
    let warnings = Warnings::capture("segpostproc", "labels300");
    let mut h = harness(
        "segpostproc name=labels300 mode=labels smoothing=1",
        &info.to_caps().unwrap(),
    );
    // 300 classes at 4×4 (NCHW): class 299 wins everywhere.
    let classes = 300;
    let mut values = vec![0f32; classes * 16];
    values[299 * 16..].fill(1.0);
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_ne_bytes()).collect();
    let mut scores = gst::Buffer::with_size(bytes.len()).unwrap();
    scores
        .get_mut()
        .unwrap()
        .copy_from_slice(0, &bytes)
        .unwrap();
    let region = Region {
        x: 0,
        y: 0,
        width: 4,
        height: 4,
    };
    for i in 0..3u64 {
        let mut frame = rgb.copy();
        let pts = gst::ClockTime::from_mseconds(40 * i);
        let f = frame.get_mut().unwrap();
        f.set_pts(pts);
        Scores {
            scores: scores.clone(),
            classes,
            width: 4,
            height: 4,
            layout: Layout::Nchw,
            region,
            tensor_width: 4,
            tensor_height: 4,
            source_pts: Some(pts),
            sequence: i + 1,
            provider: "cpu".into(),
            inference_ns: 0,
            model_generation: 1,
            instance: None,
            batch_slot: 0,
            batch_size: 1,
        }
        .attach(f)
        .unwrap();
        let out = h.push_and_pull(frame).unwrap();
        let caps = h.sinkpad().unwrap().current_caps().unwrap();
        let labels = gray_rows(&out, &caps);
        assert!(labels.data.iter().all(|v| *v == 255), "class 299 → 255");
    }
    let lines = warnings.lines();
    let clamped = lines.iter().filter(|l| l.contains("above 255")).count();
    assert_eq!(clamped, 1, "one warning per stream: {lines:?}");
    assert!(lines.iter().any(|l| l.contains("300 classes")), "{lines:?}");
}
