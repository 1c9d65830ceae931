use std::path::Path;
use std::sync::{Arc, LazyLock, Mutex};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::prelude::*;
use gst_video::prelude::*;
use gst_video::subclass::prelude::*;

use ffnetseg::classes::{DEFAULT_CLASSES, parse_classes, parse_color};
use ffnetseg::postprocess::{Background, GrayKind, PostprocessConfig, Postprocessor, ScoresView};

use super::Mode;
use crate::compute::{self, Announced, ComputeChoice};
use crate::error::{engine_error, flow_error};
use crate::meta::{self, Scores};
use crate::video;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "segpostproc",
        gst::DebugColorFlags::empty(),
        Some("ffnetseg post-processing"),
    )
});

const DEFAULT_MODE: Mode = Mode::Overlay;
const DEFAULT_SMOOTHING: f64 = 0.5;
const DEFAULT_THRESHOLD: f64 = 0.55;
const DEFAULT_BLUR: u32 = 1;
const DEFAULT_COLOR: &str = "#00ff00";
const DEFAULT_OPACITY: f64 = 0.5;
const DEFAULT_BACKGROUND_BLUR: u32 = 41;

/// GRAY8 labels hold class indices 0..=255.
const MAX_GRAY8_LABEL: usize = 255;

#[derive(Debug, Clone)]
struct Settings {
    mode: Mode,
    smoothing: f64,
    threshold: f64,
    blur: u32,
    /// As given (read back) and parsed.
    classes_text: String,
    classes: Vec<usize>,
    color_text: String,
    color: [u8; 3],
    opacity: f64,
    background_blur: u32,
    background: Option<Arc<str>>,
    /// The upstream GstTensor to read scores from (None: the first one).
    #[cfg(feature = "analytics")]
    tensor_id: Option<glib::Quark>,
    compute: ComputeChoice,
    disable_cpu_fallback: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            mode: DEFAULT_MODE,
            smoothing: DEFAULT_SMOOTHING,
            threshold: DEFAULT_THRESHOLD,
            blur: DEFAULT_BLUR,
            classes_text: DEFAULT_CLASSES.to_string(),
            classes: parse_classes(DEFAULT_CLASSES).expect("the default classes parse"),
            color_text: DEFAULT_COLOR.to_string(),
            color: parse_color(DEFAULT_COLOR).expect("the default colour parses"),
            opacity: DEFAULT_OPACITY,
            background_blur: DEFAULT_BACKGROUND_BLUR,
            background: None,
            #[cfg(feature = "analytics")]
            tensor_id: None,
            compute: compute::DEFAULT_COMPUTE,
            disable_cpu_fallback: compute::DEFAULT_DISABLE_CPU_FALLBACK,
        }
    }
}

impl Settings {
    fn engine_config(&self) -> PostprocessConfig {
        PostprocessConfig {
            smoothing: self.smoothing as f32,
            threshold: self.threshold as f32,
            blur: self.blur as usize,
            classes: self.classes.clone(),
        }
    }

    /// What drawing a frame needs, copied out once per frame without allocating.
    fn draw(&self) -> Draw {
        Draw {
            mode: self.mode,
            color: self.color,
            opacity: self.opacity as f32,
            background_blur: self.background_blur as usize,
            background: self.background.clone(),
            compute: (self.compute, self.disable_cpu_fallback),
        }
    }

    /// Parses and stores one property; Err says why the value is refused.
    fn apply(&mut self, name: &str, value: &glib::Value) -> Result<(), String> {
        let text = || -> String {
            value
                .get::<Option<String>>()
                .expect("type checked upstream")
                .unwrap_or_default()
        };
        match name {
            "mode" => self.mode = value.get().expect("type checked upstream"),
            "smoothing" => self.smoothing = value.get().expect("type checked upstream"),
            "threshold" => self.threshold = value.get().expect("type checked upstream"),
            "opacity" => self.opacity = value.get().expect("type checked upstream"),
            "compute" => self.compute = value.get().expect("type checked upstream"),
            "disable-cpu-fallback" => {
                self.disable_cpu_fallback = value.get().expect("type checked upstream")
            }
            "blur" | "background-blur" => {
                let b: u32 = value.get().expect("type checked upstream");
                if b.is_multiple_of(2) {
                    return Err(format!("{name} {b} must be odd (1 = off, 3, 5, …)"));
                }
                if name == "blur" {
                    self.blur = b;
                } else {
                    self.background_blur = b;
                }
            }
            "classes" => {
                let t = text();
                self.classes = parse_classes(&t).map_err(|e| e.to_string())?;
                self.classes_text = t;
            }
            "color" => {
                let t = text();
                self.color = parse_color(&t).map_err(|e| e.to_string())?;
                self.color_text = t;
            }
            "background" => {
                let t = text();
                if t.is_empty() {
                    self.background = None;
                } else {
                    Background::load(Path::new(&t)).map_err(|e| e.to_string())?;
                    self.background = Some(Arc::from(t));
                }
            }
            #[cfg(feature = "analytics")]
            "tensor-id" => {
                let t = text();
                self.tensor_id = (!t.is_empty()).then(|| glib::Quark::from_str(&t));
            }
            other => return Err(format!("unknown property {other}")),
        }
        Ok(())
    }
}

/// Per-frame drawing settings.
struct Draw {
    mode: Mode,
    color: [u8; 3],
    opacity: f32,
    background_blur: usize,
    background: Option<Arc<str>>,
    /// `compute` and `disable-cpu-fallback`.
    compute: (ComputeChoice, bool),
}

/// Whether an ffnetinfer answered upstream, and whether it runs asynchronously.
#[derive(Clone, Copy)]
struct Upstream {
    inference: bool,
    asynchronous: bool,
}

struct State {
    post: Postprocessor,
    /// The model generation the temporal state belongs to.
    model_generation: Option<u64>,
    /// Asked once, at the first frame without scores.
    upstream: Option<Upstream>,
    /// The background picture, loaded when first needed.
    background: Option<(Arc<str>, Background)>,
    last_sequence: Option<u64>,
    /// Whether a frame of this stream (since the last flush/segment) carried scores.
    seen_scores: bool,
    warned_no_scores: bool,
    warned_labels_clamped: bool,
    /// Classes of the newest scores (names of the segmentation mtd's regions).
    #[cfg(feature = "analytics")]
    classes: usize,
    #[cfg(feature = "analytics")]
    warned_tensor: bool,
    /// The `compute` settings the postprocessor was set up with.
    compute: Option<(ComputeChoice, bool)>,
}

#[derive(Default)]
pub struct SegPostproc {
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
    /// The output frames' layout (set_info), for the segmentation mtd's mask.
    #[cfg(feature = "analytics")]
    out_info: Mutex<Option<gst_video::VideoInfo>>,
    /// Where drawing runs (`active-compute`), as last announced.
    compute: Announced,
}

impl SegPostproc {
    /// Feeds this frame's scores (if new) into the temporal state. Returns whether any
    /// result is available to draw.
    fn update(
        &self,
        state: &mut State,
        buf: &gst::BufferRef,
        mode: Mode,
    ) -> Result<bool, gst::FlowError> {
        let Some(scores) = Scores::from_buffer(buf) else {
            #[cfg(feature = "analytics")]
            if self.update_from_tensor_meta(state, buf)? {
                return Ok(true);
            }
            self.warn_without_scores(state);
            return Ok(state.post.has_state());
        };
        state.seen_scores = true;
        #[cfg(feature = "analytics")]
        {
            state.classes = scores.classes;
        }
        // Another model (hot swap): its scores do not average with the old model's.
        if state.model_generation != Some(scores.model_generation) {
            state.post.reset();
            state.last_sequence = None;
            state.model_generation = Some(scores.model_generation);
        }
        if mode == Mode::Labels && scores.classes > MAX_GRAY8_LABEL + 1 {
            self.warn_labels_clamped(state, scores.classes);
        }
        // The same result riding on several frames (async/interval) is averaged in once.
        if state.last_sequence == Some(scores.sequence) && state.post.has_state() {
            return Ok(true);
        }
        let map = scores.mapped().map_err(|e| {
            flow_error(
                self,
                gst::error_msg!(gst::StreamError::Decode, ("cannot read the scores: {e}")),
            )
        })?;
        let view = ScoresView {
            data: map.as_f32(),
            spec: scores.output_spec(),
            region: Some((scores.region, scores.tensor_width, scores.tensor_height)),
        };
        state
            .post
            .update(&view)
            .map_err(|e| flow_error(self, engine_error("bad scores", &e)))?;
        state.last_sequence = Some(scores.sequence);
        Ok(true)
    }

    /// Frames without scores are normal only while an async ffnetinfer warms up (or
    /// catches up after a flush); otherwise say once what is wrong.
    fn warn_without_scores(&self, state: &mut State) {
        let upstream = *state.upstream.get_or_insert_with(|| {
            let mut q = meta::inference_query();
            let inference = self.obj().sink_pad().peer_query(&mut q);
            Upstream {
                inference,
                asynchronous: inference && meta::inference_is_asynchronous(&q),
            }
        });
        let expected = upstream.inference && (upstream.asynchronous || state.seen_scores);
        if state.warned_no_scores || expected {
            return;
        }
        state.warned_no_scores = true;
        let text = "frames arrive without segmentation scores, so they pass unchanged (mask modes \
                    output black): put ffnetinfer before segpostproc (… ! segpreproc ! ffnetinfer \
                    model=… ! segpostproc), with no element between them that crops or scales \
                    the frame (such elements drop the scores, which would not match the \
                    picture any more)";
        gst::warning!(CAT, imp = self, "{text}");
        gst::element_imp_warning!(self, gst::StreamError::Format, ("{text}"));
    }

    fn warn_labels_clamped(&self, state: &mut State, classes: usize) {
        if state.warned_labels_clamped {
            return;
        }
        state.warned_labels_clamped = true;
        let text = format!(
            "the model has {classes} classes but mode=labels writes GRAY8 (0..{MAX_GRAY8_LABEL}): \
             classes above {MAX_GRAY8_LABEL} are written as {MAX_GRAY8_LABEL}"
        );
        gst::warning!(CAT, imp = self, "{text}");
        gst::element_imp_warning!(self, gst::StreamError::Format, ("{text}"));
    }

    fn ensure_state<'a>(
        &self,
        guard: &'a mut Option<State>,
    ) -> Result<&'a mut State, gst::FlowError> {
        if guard.is_none() {
            let config = self.settings.lock().unwrap().engine_config();
            let post =
                Postprocessor::new(config).map_err(|e| flow_error(self, engine_error("", &e)))?;
            *guard = Some(State {
                post,
                model_generation: None,
                upstream: None,
                background: None,
                last_sequence: None,
                seen_scores: false,
                warned_no_scores: false,
                warned_labels_clamped: false,
                #[cfg(feature = "analytics")]
                classes: 0,
                #[cfg(feature = "analytics")]
                warned_tensor: false,
                compute: None,
            });
        }
        Ok(guard.as_mut().expect("created above"))
    }

    /// Sets up where the postprocessor runs when `compute` changed (the first frame, or a
    /// property change), and announces where drawing really ran when that changed.
    fn apply_compute(
        &self,
        state: &mut State,
        wanted: (ComputeChoice, bool),
    ) -> Result<(), gst::FlowError> {
        if state.compute == Some(wanted) {
            return Ok(());
        }
        state
            .post
            .set_compute(wanted.0.into(), !wanted.1)
            .map_err(|e| flow_error(self, engine_error("segpostproc", &e)))?;
        state.compute = Some(wanted);
        state.last_sequence = None;
        self.announce(state, wanted.0);
        Ok(())
    }

    fn announce(&self, state: &mut State, requested: ComputeChoice) {
        state.post.take_change();
        let (active, reason) = state.post.active();
        self.compute
            .announce(self, *CAT, requested.into(), active, reason);
    }

    fn reset(&self, new_stream: bool) {
        if let Some(state) = self.state.lock().unwrap().as_mut() {
            state.post.reset();
            state.last_sequence = None;
            state.seen_scores = false;
            if new_stream {
                state.warned_labels_clamped = false;
            }
        }
    }

    fn draw_on_frame(
        &self,
        state: &mut State,
        draw: &Draw,
        view: &mut ffnetseg::frame::FrameViewMut<'_>,
    ) -> Result<(), gst::FlowError> {
        let result = match draw.mode {
            Mode::Overlay => state.post.render_overlay(view, draw.color, draw.opacity),
            Mode::BackgroundBlur => state
                .post
                .render_background_blur(view, draw.background_blur),
            Mode::Classes => state.post.render_classes(view, draw.opacity),
            Mode::BackgroundReplace => {
                let picture = self.background(&mut state.background, draw)?;
                state.post.render_background_replace(view, picture)
            }
            Mode::Mask | Mode::Alpha | Mode::Labels => {
                state.post.render_gray(gray_kind(draw.mode), view)
            }
        };
        result.map_err(|e| flow_error(self, engine_error("rendering failed", &e)))
    }

    /// The background picture of mode=background-replace, loaded when it changed.
    fn background<'a>(
        &self,
        loaded: &'a mut Option<(Arc<str>, Background)>,
        draw: &Draw,
    ) -> Result<&'a mut Background, gst::FlowError> {
        let Some(path) = &draw.background else {
            return Err(flow_error(
                self,
                gst::error_msg!(
                    gst::LibraryError::Settings,
                    ("mode=background-replace needs a picture: set background=/path/to/picture.jpg")
                ),
            ));
        };
        if loaded.as_ref().is_some_and(|(p, _)| !Arc::ptr_eq(p, path)) {
            // Another picture was set since.
            *loaded = None;
        }
        match loaded {
            Some((_, picture)) => Ok(picture),
            None => {
                let picture = Background::load(Path::new(&**path))
                    .map_err(|e| flow_error(self, engine_error("", &e)))?;
                Ok(&mut loaded.insert((path.clone(), picture)).1)
            }
        }
    }
}

fn gray_kind(mode: Mode) -> GrayKind {
    match mode {
        Mode::Alpha => GrayKind::Soft,
        Mode::Labels => GrayKind::Labels,
        _ => GrayKind::Mask,
    }
}

#[glib::object_subclass]
impl ObjectSubclass for SegPostproc {
    const NAME: &'static str = "GstSegPostproc";
    type Type = super::SegPostproc;
    type ParentType = gst_video::VideoFilter;
}

impl ObjectImpl for SegPostproc {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecEnum::builder_with_default("mode", DEFAULT_MODE)
                    .nick("Mode")
                    .blurb("What to output. Can change while PLAYING: a change between a mode that keeps the frame format and a GRAY8 mode renegotiates the output caps")
                    .mutable_playing()
                    .build(),
                glib::ParamSpecDouble::builder("smoothing")
                    .nick("Temporal smoothing")
                    .blurb("Weight a of the newest result in s = a·p + (1−a)·s_prev, per pixel at model resolution; 1 = off. Can change while PLAYING")
                    .minimum(0.001)
                    .maximum(1.0)
                    .default_value(DEFAULT_SMOOTHING)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecDouble::builder("threshold")
                    .nick("Threshold")
                    .blurb("Foreground where the smoothed, upsampled probability is above this. Can change while PLAYING")
                    .minimum(0.0)
                    .maximum(1.0)
                    .default_value(DEFAULT_THRESHOLD)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("blur")
                    .nick("Edge blur")
                    .blurb("Odd box-blur kernel applied to the thresholded mask for soft edges; 1 = off. Can change while PLAYING")
                    .minimum(1)
                    .maximum(255)
                    .default_value(DEFAULT_BLUR)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecString::builder("classes")
                    .nick("Foreground classes")
                    .blurb("Classes of a multi-class model that count as foreground: Cityscapes names or indices (e.g. person,rider or 11,12). Can change while PLAYING")
                    .default_value(Some(DEFAULT_CLASSES))
                    .mutable_playing()
                    .build(),
                glib::ParamSpecString::builder("color")
                    .nick("Overlay colour")
                    .blurb("Overlay colour as #RRGGBB, r,g,b or a name (green, red, …). Can change while PLAYING")
                    .default_value(Some(DEFAULT_COLOR))
                    .mutable_playing()
                    .build(),
                glib::ParamSpecDouble::builder("opacity")
                    .nick("Opacity")
                    .blurb("Opacity o of the overlay and class colours. Can change while PLAYING")
                    .minimum(0.0)
                    .maximum(1.0)
                    .default_value(DEFAULT_OPACITY)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecString::builder("background")
                    .nick("Background picture")
                    .blurb("Picture file (PNG, JPEG, …) put behind the foreground in mode=background-replace, stretched to the frame. Can change while PLAYING")
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("background-blur")
                    .nick("Background blur size")
                    .blurb("Odd box-blur kernel (in frame pixels) for mode=background-blur. Can change while PLAYING")
                    .minimum(3)
                    .maximum(1023)
                    .default_value(DEFAULT_BACKGROUND_BLUR)
                    .mutable_playing()
                    .build(),
                #[cfg(feature = "analytics")]
                glib::ParamSpecString::builder("tensor-id")
                    .nick("Upstream tensor id")
                    .blurb("Frames without ffnetinfer's scores: read the scores from the GstTensorMeta tensor with this id (e.g. an ONNX output name); empty = the first tensor (docs/analytics.md)")
                    .mutable_playing()
                    .build(),
            ]
            .into_iter()
            .chain(compute::properties("the post-processing"))
            .collect()
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let name = pspec.name();
        let mut s = self.settings.lock().unwrap();
        let old_mode = s.mode;
        if let Err(e) = s.apply(name, value) {
            drop(s);
            let old = self.property(0, pspec);
            gst::warning!(
                CAT,
                imp = self,
                "{e}; keeping the previous value ({name}={old:?})"
            );
            return;
        }
        let (config, mode) = (s.engine_config(), s.mode);
        drop(s);
        gst::info!(CAT, imp = self, "{name} set to {value:?}");
        if let Some(state) = self.state.lock().unwrap().as_mut()
            && let Err(e) = state.post.set_config(config)
        {
            gst::warning!(CAT, imp = self, "{name}: {e}");
        }
        if mode != old_mode {
            // The output format may change (GRAY8 ↔ the input's): negotiate again before
            // the next frame.
            self.obj().reconfigure_src();
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = self.settings.lock().unwrap();
        match pspec.name() {
            "mode" => s.mode.to_value(),
            "smoothing" => s.smoothing.to_value(),
            "threshold" => s.threshold.to_value(),
            "blur" => s.blur.to_value(),
            "classes" => s.classes_text.to_value(),
            "color" => s.color_text.to_value(),
            "opacity" => s.opacity.to_value(),
            "background-blur" => s.background_blur.to_value(),
            "background" => s.background.as_deref().to_value(),
            #[cfg(feature = "analytics")]
            "tensor-id" => s.tensor_id.map(|q| q.as_str().to_string()).to_value(),
            "compute" => s.compute.to_value(),
            "disable-cpu-fallback" => s.disable_cpu_fallback.to_value(),
            "active-compute" => self.compute.active().to_value(),
            other => {
                gst::error!(CAT, imp = self, "unknown property {other}");
                pspec.default_value().clone()
            }
        }
    }
}

impl GstObjectImpl for SegPostproc {}

impl ElementImpl for SegPostproc {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static META: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Segmentation post-processing",
                "Filter/Effect/Video",
                "Smooths the segmentation scores over time, upsamples, thresholds and blurs them, \
                 and draws an overlay, mask, alpha matte, blurred background or class map",
                "ffnetseg developers",
            )
        });
        Some(&*META)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> =
            LazyLock::new(crate::video::pad_templates);
        TEMPLATES.as_ref()
    }
}

/// GRAY8 caps of the same size (sink → src), or any supported format (src → sink).
fn gray_caps(direction: gst::PadDirection, caps: &gst::Caps) -> gst::Caps {
    let mut out = gst::Caps::new_empty();
    {
        let out = out.get_mut().expect("new caps are writable");
        for s in caps.iter() {
            let mut s = s.to_owned();
            if direction == gst::PadDirection::Sink {
                s.set("format", "GRAY8");
            } else {
                s.set(
                    "format",
                    gst::List::new(video::supported_formats().iter().map(|f| f.to_str())),
                );
            }
            s.remove_fields(["colorimetry", "chroma-site"]);
            out.append_structure(s);
        }
    }
    out
}

impl BaseTransformImpl for SegPostproc {
    const MODE: gst_base::subclass::BaseTransformMode = gst_base::subclass::BaseTransformMode::Both;
    const PASSTHROUGH_ON_SAME_CAPS: bool = false;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = false;

    fn transform_caps(
        &self,
        direction: gst::PadDirection,
        caps: &gst::Caps,
        filter: Option<&gst::Caps>,
    ) -> Option<gst::Caps> {
        let mode = self.settings.lock().unwrap().mode;
        let out = if mode.outputs_gray() {
            gray_caps(direction, caps)
        } else {
            caps.clone()
        };
        gst::debug!(
            CAT,
            imp = self,
            "transformed {caps} ({direction:?}) into {out}"
        );
        match filter {
            Some(f) => Some(f.intersect_with_mode(&out, gst::CapsIntersectMode::First)),
            None => Some(out),
        }
    }

    fn transform_meta<'a>(
        &self,
        outbuf: &mut gst::BufferRef,
        meta: gst::MetaRef<'a, gst::Meta>,
        inbuf: &'a gst::BufferRef,
    ) -> bool {
        // A GRAY8 frame shows the same picture at the same size: the scores still fit it.
        meta::is_ours(&meta) || self.parent_transform_meta(outbuf, meta, inbuf)
    }

    fn sink_event(&self, event: gst::Event) -> bool {
        // A new segment of time, a flush or the end: an average over frames from before
        // means nothing after.
        match event.view() {
            gst::EventView::StreamStart(_) => self.reset(true),
            gst::EventView::FlushStop(_)
            | gst::EventView::Eos(_)
            | gst::EventView::Segment(_)
            | gst::EventView::Caps(_) => self.reset(false),
            _ => {}
        }
        self.parent_sink_event(event)
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        *self.state.lock().unwrap() = None;
        self.compute.reset();
        Ok(())
    }

    #[cfg(feature = "analytics")]
    fn generate_output(
        &self,
    ) -> Result<gst_base::subclass::base_transform::GenerateOutputSuccess, gst::FlowError> {
        use gst_base::subclass::base_transform::GenerateOutputSuccess;
        match self.parent_generate_output()? {
            GenerateOutputSuccess::Buffer(mut outbuf) => {
                self.attach_segmentation(outbuf.make_mut())?;
                Ok(GenerateOutputSuccess::Buffer(outbuf))
            }
            other => Ok(other),
        }
    }
}

impl VideoFilterImpl for SegPostproc {
    fn set_info(
        &self,
        incaps: &gst::Caps,
        in_info: &gst_video::VideoInfo,
        outcaps: &gst::Caps,
        out_info: &gst_video::VideoInfo,
    ) -> Result<(), gst::LoggableError> {
        // The negotiated caps decide, not the property alone: the same format is drawn in
        // place (a GRAY8 input in a GRAY8 mode too), GRAY8 from another format is a new frame.
        self.obj()
            .set_in_place(in_info.format() == out_info.format());
        #[cfg(feature = "analytics")]
        {
            *self.out_info.lock().unwrap() = Some(out_info.clone());
        }
        self.parent_set_info(incaps, in_info, outcaps, out_info)
    }

    fn transform_frame_ip(
        &self,
        frame: &mut gst_video::VideoFrameRef<&mut gst::BufferRef>,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let draw = self.settings.lock().unwrap().draw();
        let mut guard = self.state.lock().unwrap();
        let state = self.ensure_state(&mut guard)?;
        self.apply_compute(state, draw.compute)?;
        let have = self.update(state, frame.buffer(), draw.mode)?;
        if draw.mode.outputs_gray() && frame.format() != gst_video::VideoFormat::Gray8 {
            // The mode just changed to a GRAY8 one; the caps follow from the next frame.
            gst::debug!(
                CAT,
                imp = self,
                "mode changed, renegotiating: frame passes unchanged"
            );
            return Ok(gst::FlowSuccess::Ok);
        }
        let mut view =
            video::frame_view_mut(frame).map_err(|e| flow_error(self, engine_error("", &e)))?;
        if have {
            self.draw_on_frame(state, &draw, &mut view)?;
            if state.post.take_change() {
                self.announce(state, draw.compute.0);
            }
        } else if draw.mode.outputs_gray() {
            // A GRAY8 mode on a GRAY8 input: "nothing found" rather than the input picture.
            for (data, _) in view.planes.iter_mut() {
                data.fill(0);
            }
        }
        Ok(gst::FlowSuccess::Ok)
    }

    fn transform_frame(
        &self,
        inframe: &gst_video::VideoFrameRef<&gst::BufferRef>,
        outframe: &mut gst_video::VideoFrameRef<&mut gst::BufferRef>,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let (mode, wanted) = {
            let s = self.settings.lock().unwrap();
            (s.mode, (s.compute, s.disable_cpu_fallback))
        };
        let mut guard = self.state.lock().unwrap();
        let state = self.ensure_state(&mut guard)?;
        self.apply_compute(state, wanted)?;
        let have = self.update(state, inframe.buffer(), mode)?;
        let mut view =
            video::frame_view_mut(outframe).map_err(|e| flow_error(self, engine_error("", &e)))?;
        if !have {
            // No result yet: an honest "nothing found" rather than stale memory.
            for (data, _) in view.planes.iter_mut() {
                data.fill(0);
            }
            return Ok(gst::FlowSuccess::Ok);
        }
        // A drawing mode here means the mode just changed and the caps follow from the next
        // frame; until then this GRAY8 output shows the mask.
        state
            .post
            .render_gray(gray_kind(mode), &mut view)
            .map_err(|e| flow_error(self, engine_error("rendering failed", &e)))?;
        if state.post.take_change() {
            self.announce(state, wanted.0);
        }
        Ok(gst::FlowSuccess::Ok)
    }
}

/// GStreamer's standard analytics metadata (docs/analytics.md): scores from an upstream
/// GstTensorMeta, and the label mask as a GstAnalyticsSegmentationMtd on every frame.
#[cfg(feature = "analytics")]
impl SegPostproc {
    /// Frames without ffnetinfer's scores: the upstream tensor, if there is a usable one.
    fn update_from_tensor_meta(
        &self,
        state: &mut State,
        buf: &gst::BufferRef,
    ) -> Result<bool, gst::FlowError> {
        use crate::analytics::{TensorProblem, upstream_scores};
        let id = self.settings.lock().unwrap().tensor_id;
        let upstream = match upstream_scores(buf, id) {
            Ok(u) => u,
            Err(TensorProblem::Missing) => return Ok(false),
            Err(TensorProblem::Unusable(text)) => {
                if !state.warned_tensor {
                    state.warned_tensor = true;
                    gst::warning!(CAT, imp = self, "{text}");
                    gst::element_imp_warning!(self, gst::StreamError::Format, ("{text}"));
                }
                return Ok(false);
            }
        };
        let map = upstream.data.map_readable().map_err(|_| {
            flow_error(
                self,
                gst::error_msg!(
                    gst::StreamError::Decode,
                    ("cannot read the upstream tensor")
                ),
            )
        })?;
        let data: &[f32] = bytemuck::try_cast_slice(map.as_slice()).map_err(|e| {
            flow_error(
                self,
                gst::error_msg!(
                    gst::StreamError::Decode,
                    ("the upstream tensor is not aligned f32 data: {e}")
                ),
            )
        })?;
        // A producer's tensor covers the whole frame (it scaled the frame to the model's
        // input without letterboxing), so there is no region to crop.
        let view = ScoresView {
            data,
            spec: upstream.spec,
            region: None,
        };
        state
            .post
            .update(&view)
            .map_err(|e| flow_error(self, engine_error("bad upstream tensor", &e)))?;
        state.seen_scores = true;
        state.classes = upstream.spec.classes;
        state.last_sequence = None;
        Ok(true)
    }

    /// The frame's label mask (w×h, no padding) and the model's class count; None before
    /// the first result. In mode=labels the output frame is that mask already: it is copied
    /// rather than drawn a second time.
    fn label_mask(
        &self,
        outbuf: &gst::BufferRef,
        info: &gst_video::VideoInfo,
    ) -> Result<Option<(Vec<u8>, usize)>, gst::FlowError> {
        use ffnetseg::frame::{FrameViewMut, PixelFormat};
        let (w, h) = (info.width() as usize, info.height() as usize);
        let is_labels_frame = self.settings.lock().unwrap().mode == Mode::Labels
            && info.format() == gst_video::VideoFormat::Gray8;
        let mut guard = self.state.lock().unwrap();
        let Some(state) = guard.as_mut().filter(|s| s.post.has_state()) else {
            return Ok(None);
        };
        let mut labels = vec![0u8; w * h];
        if is_labels_frame {
            let unreadable = || {
                flow_error(
                    self,
                    gst::error_msg!(gst::CoreError::Failed, ("cannot read the label frame")),
                )
            };
            let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(outbuf, info)
                .map_err(|_| unreadable())?;
            let data = frame.plane_data(0).map_err(|_| unreadable())?;
            let stride = frame.plane_stride()[0] as usize;
            for (row, out) in labels.chunks_exact_mut(w).enumerate() {
                let start = row * stride;
                out.copy_from_slice(data.get(start..start + w).ok_or_else(unreadable)?);
            }
        } else {
            let mut view = FrameViewMut::packed(PixelFormat::Gray8, w, h, &mut labels)
                .map_err(|e| flow_error(self, engine_error("", &e)))?;
            state
                .post
                .render_gray(GrayKind::Labels, &mut view)
                .map_err(|e| flow_error(self, engine_error("label mask", &e)))?;
        }
        Ok(Some((labels, state.classes)))
    }

    /// The label mask of the current result (what mode=labels outputs) as a semantic
    /// GstAnalyticsSegmentationMtd on `outbuf`, with the class names related to it.
    fn attach_segmentation(&self, outbuf: &mut gst::BufferRef) -> Result<(), gst::FlowError> {
        let Some(info) = self.out_info.lock().unwrap().clone() else {
            return Ok(());
        };
        let (w, h) = (info.width() as usize, info.height() as usize);
        let Some((labels, classes)) = self.label_mask(outbuf, &info)? else {
            return Ok(());
        };
        let mut counts = [0usize; MAX_GRAY8_LABEL + 1];
        for &l in &labels {
            counts[l as usize] += 1;
        }
        let region_ids: Vec<u32> = (0..counts.len())
            .filter(|&i| counts[i] > 0)
            .map(|i| i as u32)
            .collect();
        let names: Vec<glib::Quark> = region_ids
            .iter()
            .map(|&i| glib::Quark::from_str(&*class_name(classes, i as usize)))
            .collect();
        let levels: Vec<f32> = region_ids
            .iter()
            .map(|&i| counts[i as usize] as f32 / (w * h) as f32)
            .collect();
        let seg = crate::analytics::SemanticSegmentation {
            mask: gst::Buffer::from_mut_slice(labels),
            width: w as u32,
            height: h as u32,
            region_ids: &region_ids,
            names: &names,
            levels: &levels,
        };
        crate::analytics::add_semantic_segmentation(outbuf, seg).map_err(|e| {
            flow_error(
                self,
                gst::error_msg!(
                    gst::CoreError::Failed,
                    ("cannot attach the segmentation mtd: {e}")
                ),
            )
        })?;
        Ok(())
    }
}

/// The name of label `i` of a model with `classes` output channels: one-channel models (the
/// selfie model) label background 0 and person 1; 19 classes are Cityscapes'.
#[cfg(feature = "analytics")]
fn class_name(classes: usize, i: usize) -> std::borrow::Cow<'static, str> {
    use ffnetseg::classes::CITYSCAPES;
    match (classes, i) {
        (1, 0) => "background".into(),
        (1, 1) => "person".into(),
        (n, i) if n == CITYSCAPES.len() && i < n => CITYSCAPES[i].into(),
        (_, i) => format!("class-{i}").into(),
    }
}
