use std::sync::{LazyLock, Mutex};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::subclass::prelude::*;
use gst_video::prelude::*;
use gst_video::subclass::prelude::*;

use ffnetseg::classes::{DEFAULT_CLASSES, parse_classes, parse_color};
use ffnetseg::postprocess::{Background, GrayKind, PostprocessConfig, Postprocessor, ScoresView};

use super::Mode;
use crate::meta::Scores;
use crate::video;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "segpostproc",
        gst::DebugColorFlags::empty(),
        Some("ffnetseg post-processing"),
    )
});

#[derive(Debug, Clone)]
struct Settings {
    mode: Mode,
    smoothing: f64,
    threshold: f64,
    blur: u32,
    classes: String,
    color: String,
    opacity: f64,
    background_blur: u32,
    background: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            mode: Mode::Overlay,
            smoothing: 0.5,
            threshold: 0.55,
            blur: 1,
            classes: DEFAULT_CLASSES.to_string(),
            color: "#00ff00".to_string(),
            opacity: 0.5,
            background_blur: 41,
            background: None,
        }
    }
}

impl Settings {
    fn engine_config(&self) -> PostprocessConfig {
        PostprocessConfig {
            smoothing: self.smoothing as f32,
            threshold: self.threshold as f32,
            blur: self.blur as usize,
            classes: parse_classes(&self.classes).expect("validated in set_property"),
        }
    }
}

struct State {
    post: Postprocessor,
    /// The model generation the temporal state belongs to.
    model_generation: Option<u64>,
    /// Whether an ffnetinfer answered upstream (asked once, at the first frame without scores).
    inference_upstream: Option<bool>,
    /// The background picture, loaded when first needed.
    background: Option<(String, Background)>,
    last_sequence: Option<u64>,
    warned_no_scores: bool,
}

#[derive(Default)]
pub struct SegPostproc {
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
}

impl SegPostproc {
    /// Feeds this frame's scores (if new) into the temporal state. Returns whether any
    /// result is available to draw.
    fn update(&self, state: &mut State, buf: &gst::BufferRef) -> Result<bool, gst::FlowError> {
        match Scores::from_buffer(buf) {
            Some(scores) => {
                // Another model (hot swap): its scores do not average with the old model's.
                if state.model_generation != Some(scores.model_generation) {
                    state.post.reset();
                    state.last_sequence = None;
                    state.model_generation = Some(scores.model_generation);
                }
                // The same result riding on several frames (async/interval) is averaged in once.
                if state.last_sequence == Some(scores.sequence) && state.post.has_state() {
                    return Ok(true);
                }
                let values = scores.values().map_err(|_| gst::FlowError::Error)?;
                let view = ScoresView {
                    data: &values,
                    spec: scores.output_spec(),
                    region: Some((scores.region, scores.tensor_width, scores.tensor_height)),
                };
                state.post.update(&view).map_err(|e| {
                    gst::element_imp_error!(self, gst::StreamError::Decode, ("bad scores: {e}"));
                    gst::FlowError::Error
                })?;
                state.last_sequence = Some(scores.sequence);
                Ok(true)
            }
            None => {
                // Async inference leaves the first frames without a result: that is not a
                // missing ffnetinfer.
                let upstream = *state.inference_upstream.get_or_insert_with(|| {
                    let mut q = crate::meta::inference_query();
                    self.obj().sink_pad().peer_query(&mut q)
                });
                if !state.warned_no_scores && !upstream {
                    state.warned_no_scores = true;
                    gst::element_imp_warning!(
                        self,
                        gst::StreamError::Format,
                        ("frames arrive without segmentation scores, so they pass unchanged (mask \
                             modes output black): put ffnetinfer before segpostproc (… ! segpreproc ! \
                             ffnetinfer model=… ! segpostproc)")
                    );
                }
                Ok(state.post.has_state())
            }
        }
    }

    fn ensure_state<'a>(
        &self,
        guard: &'a mut Option<State>,
    ) -> Result<&'a mut State, gst::FlowError> {
        if guard.is_none() {
            let config = self.settings.lock().unwrap().engine_config();
            let post = Postprocessor::new(config).map_err(|e| {
                gst::element_imp_error!(self, gst::LibraryError::Settings, ("{e}"));
                gst::FlowError::Error
            })?;
            *guard = Some(State {
                post,
                model_generation: None,
                inference_upstream: None,
                background: None,
                last_sequence: None,
                warned_no_scores: false,
            });
        }
        Ok(guard.as_mut().expect("created above"))
    }

    fn reset(&self) {
        if let Some(state) = self.state.lock().unwrap().as_mut() {
            state.post.reset();
            state.last_sequence = None;
        }
    }
}

#[glib::object_subclass]
impl ObjectSubclass for SegPostproc {
    const NAME: &'static str = "GstSegPostproc";
    type Type = super::SegPostproc;
    type ParentType = gst_video::VideoFilter;
}

fn validate(name: &str, value: &glib::Value) -> Result<(), String> {
    match name {
        "blur" => {
            let b: u32 = value.get().expect("type checked upstream");
            if b.is_multiple_of(2) {
                return Err(format!("blur {b} must be odd (1 = off, 3, 5, …)"));
            }
        }
        "background-blur" => {
            let b: u32 = value.get().expect("type checked upstream");
            if b.is_multiple_of(2) {
                return Err(format!("background-blur {b} must be odd"));
            }
        }
        "classes" => {
            let v: Option<String> = value.get().expect("type checked upstream");
            parse_classes(v.as_deref().unwrap_or("")).map_err(|e| e.to_string())?;
        }
        "color" => {
            let v: Option<String> = value.get().expect("type checked upstream");
            parse_color(v.as_deref().unwrap_or("")).map_err(|e| e.to_string())?;
        }
        "background" => {
            let v: Option<String> = value.get().expect("type checked upstream");
            if let Some(path) = v.filter(|p| !p.is_empty()) {
                Background::load(std::path::Path::new(&path)).map_err(|e| e.to_string())?;
            }
        }
        _ => {}
    }
    Ok(())
}

impl ObjectImpl for SegPostproc {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecEnum::builder_with_default("mode", Mode::Overlay)
                    .nick("Mode")
                    .blurb("What to output")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecDouble::builder("smoothing")
                    .nick("Temporal smoothing")
                    .blurb("Weight a of the newest result in s = a·p + (1−a)·s_prev, per pixel at model resolution; 1 = off")
                    .minimum(0.001)
                    .maximum(1.0)
                    .default_value(0.5)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecDouble::builder("threshold")
                    .nick("Threshold")
                    .blurb("Foreground where the smoothed, upsampled probability is above this")
                    .minimum(0.0)
                    .maximum(1.0)
                    .default_value(0.55)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("blur")
                    .nick("Edge blur")
                    .blurb("Odd box-blur kernel applied to the thresholded mask for soft edges; 1 = off")
                    .minimum(1)
                    .maximum(255)
                    .default_value(1)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecString::builder("classes")
                    .nick("Foreground classes")
                    .blurb("Classes of a multi-class model that count as foreground: Cityscapes names or indices (e.g. person,rider or 11,12)")
                    .default_value(Some(DEFAULT_CLASSES))
                    .mutable_playing()
                    .build(),
                glib::ParamSpecString::builder("color")
                    .nick("Overlay colour")
                    .blurb("Overlay colour as #RRGGBB, r,g,b or a name (green, red, …)")
                    .default_value(Some("#00ff00"))
                    .mutable_playing()
                    .build(),
                glib::ParamSpecDouble::builder("opacity")
                    .nick("Opacity")
                    .blurb("Opacity o of the overlay and class colours")
                    .minimum(0.0)
                    .maximum(1.0)
                    .default_value(0.5)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecString::builder("background")
                    .nick("Background picture")
                    .blurb("Picture file (PNG, JPEG, …) put behind the foreground in mode=background-replace, stretched to the frame")
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("background-blur")
                    .nick("Background blur size")
                    .blurb("Odd box-blur kernel (in frame pixels) for mode=background-blur")
                    .minimum(3)
                    .maximum(1023)
                    .default_value(41)
                    .mutable_playing()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        if let Err(e) = validate(pspec.name(), value) {
            glib::g_warning!("segpostproc", "{e}; keeping the previous value");
            return;
        }
        let mut s = self.settings.lock().unwrap();
        match pspec.name() {
            "mode" => s.mode = value.get().expect("type checked upstream"),
            "smoothing" => s.smoothing = value.get().expect("type checked upstream"),
            "threshold" => s.threshold = value.get().expect("type checked upstream"),
            "blur" => s.blur = value.get().expect("type checked upstream"),
            "classes" => {
                s.classes = value
                    .get::<Option<String>>()
                    .expect("type checked upstream")
                    .unwrap_or_default()
            }
            "color" => {
                s.color = value
                    .get::<Option<String>>()
                    .expect("type checked upstream")
                    .unwrap_or_default()
            }
            "opacity" => s.opacity = value.get().expect("type checked upstream"),
            "background-blur" => s.background_blur = value.get().expect("type checked upstream"),
            "background" => {
                s.background = value
                    .get::<Option<String>>()
                    .expect("type checked upstream")
                    .filter(|p| !p.is_empty())
            }
            other => unreachable!("unknown property {other}"),
        }
        let config = s.engine_config();
        drop(s);
        if let Some(state) = self.state.lock().unwrap().as_mut() {
            // Valid by construction (validated above and by the param spec ranges).
            let _ = state.post.set_config(config);
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = self.settings.lock().unwrap();
        match pspec.name() {
            "mode" => s.mode.to_value(),
            "smoothing" => s.smoothing.to_value(),
            "threshold" => s.threshold.to_value(),
            "blur" => s.blur.to_value(),
            "classes" => s.classes.to_value(),
            "color" => s.color.to_value(),
            "opacity" => s.opacity.to_value(),
            "background-blur" => s.background_blur.to_value(),
            "background" => s.background.to_value(),
            other => unreachable!("unknown property {other}"),
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

    fn sink_event(&self, event: gst::Event) -> bool {
        // A new segment of time, a flush or the end: an average over frames from before
        // means nothing after.
        match event.view() {
            gst::EventView::FlushStop(_)
            | gst::EventView::Eos(_)
            | gst::EventView::StreamStart(_)
            | gst::EventView::Segment(_)
            | gst::EventView::Caps(_) => self.reset(),
            _ => {}
        }
        self.parent_sink_event(event)
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        *self.state.lock().unwrap() = None;
        Ok(())
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
        // Drawing modes write into the frame itself; mask modes make a new GRAY8 frame.
        let mode = self.settings.lock().unwrap().mode;
        self.obj().set_in_place(!mode.outputs_gray());
        self.parent_set_info(incaps, in_info, outcaps, out_info)
    }

    fn transform_frame_ip(
        &self,
        frame: &mut gst_video::VideoFrameRef<&mut gst::BufferRef>,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let settings = self.settings.lock().unwrap().clone();
        let mut guard = self.state.lock().unwrap();
        let state = self.ensure_state(&mut guard)?;
        if !self.update(state, frame.buffer())? {
            return Ok(gst::FlowSuccess::Ok);
        }
        let mut view = video::frame_view_mut(frame).map_err(|e| {
            gst::element_imp_error!(self, gst::StreamError::Format, ("{e}"));
            gst::FlowError::Error
        })?;
        let result = match settings.mode {
            Mode::Overlay => {
                let color = parse_color(&settings.color).expect("validated in set_property");
                state
                    .post
                    .render_overlay(&mut view, color, settings.opacity as f32)
            }
            Mode::BackgroundBlur => state
                .post
                .render_background_blur(&mut view, settings.background_blur as usize),
            Mode::Classes => state
                .post
                .render_classes(&mut view, settings.opacity as f32),
            Mode::BackgroundReplace => {
                let Some(path) = settings.background.clone() else {
                    gst::element_imp_error!(
                        self,
                        gst::LibraryError::Settings,
                        ("mode=background-replace needs a picture: set background=/path/to/picture.jpg")
                    );
                    return Err(gst::FlowError::Error);
                };
                if state.background.as_ref().is_none_or(|(p, _)| *p != path) {
                    let picture = Background::load(std::path::Path::new(&path)).map_err(|e| {
                        gst::element_imp_error!(self, gst::ResourceError::OpenRead, ("{e}"));
                        gst::FlowError::Error
                    })?;
                    state.background = Some((path, picture));
                }
                let (_, picture) = state.background.as_mut().expect("loaded above");
                state.post.render_background_replace(&mut view, picture)
            }
            Mode::Mask | Mode::Alpha | Mode::Labels => {
                unreachable!("gray modes negotiate GRAY8 output and use transform_frame")
            }
        };
        result.map_err(|e| {
            gst::element_imp_error!(self, gst::StreamError::Failed, ("rendering failed: {e}"));
            gst::FlowError::Error
        })?;
        Ok(gst::FlowSuccess::Ok)
    }

    fn transform_frame(
        &self,
        inframe: &gst_video::VideoFrameRef<&gst::BufferRef>,
        outframe: &mut gst_video::VideoFrameRef<&mut gst::BufferRef>,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let mode = self.settings.lock().unwrap().mode;
        let mut guard = self.state.lock().unwrap();
        let state = self.ensure_state(&mut guard)?;
        let have = self.update(state, inframe.buffer())?;
        let mut view = video::frame_view_mut(outframe).map_err(|e| {
            gst::element_imp_error!(self, gst::StreamError::Format, ("{e}"));
            gst::FlowError::Error
        })?;
        if !have {
            // No result yet: an honest "nothing found" rather than stale memory.
            for (data, _) in view.planes.iter_mut() {
                data.fill(0);
            }
            return Ok(gst::FlowSuccess::Ok);
        }
        let kind = match mode {
            Mode::Mask => GrayKind::Mask,
            Mode::Alpha => GrayKind::Soft,
            Mode::Labels => GrayKind::Labels,
            other => {
                gst::element_imp_error!(
                    self,
                    gst::CoreError::Negotiation,
                    ("mode {other:?} cannot produce a new frame")
                );
                return Err(gst::FlowError::NotNegotiated);
            }
        };
        state.post.render_gray(kind, &mut view).map_err(|e| {
            gst::element_imp_error!(self, gst::StreamError::Failed, ("rendering failed: {e}"));
            gst::FlowError::Error
        })?;
        Ok(gst::FlowSuccess::Ok)
    }
}
