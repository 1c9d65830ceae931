//! Buffer metadata that carries tensors along the unchanged camera frame.
//!
//! Both metas are `GstCustomMeta`s holding a `GstStructure`, so applications in any
//! language can read them (C: `gst_buffer_get_custom_meta`, Python:
//! `buf.get_custom_meta("FfnetsegScoresMeta")`). Rust applications use the typed views
//! here:
//!
//! ```no_run
//! # fn on_sample(sample: &gst::Sample) {
//! use gstffnetseg::meta::Scores;
//! let buffer = sample.buffer().expect("a sample has a buffer");
//! if let Some(scores) = Scores::from_buffer(buffer) {
//!     // A mapped view of the scores (no copy); `values()` copies them into a Vec.
//!     let map = scores.mapped().expect("scores are readable");
//!     let values = map.as_f32();
//!     println!(
//!         "{}×{} scores, {} classes, from frame {:?}, on {}",
//!         scores.width, scores.height, scores.classes, scores.source_pts, scores.provider
//!     );
//!     let _foreground = values.iter().filter(|p| **p > 0.5).count();
//! }
//! # }
//! ```
//!
//! Structure fields (the contract for C and Python readers):
//! - `FfnetsegInputTensorMeta` (from segpreproc): `tensor` (GstBuffer), `width`, `height`,
//!   `channels` (u32), `layout` ("nchw"/"nhwc"), `dtype` ("f32"/"u8"/"u16"), `region-x`,
//!   `region-y`, `region-width`, `region-height` (u32, the picture inside the tensor).
//! - `FfnetsegScoresMeta` (from ffnetinfer): `scores` (GstBuffer of native-endian f32),
//!   `classes`, `width`, `height` (u32), `layout`, `region-*` and `tensor-width`/`tensor-height`
//!   as above, `source-pts` (u64 ns, absent when the frame had none), `sequence` (u64,
//!   increases by one per inference), `provider` (string), `inference-ns` (u64),
//!   `model-generation` (u64, changes when ffnetinfer loads another model); from a shared
//!   instance (ffnetinfer `shared-instance`) also `instance` (string, its name), `batch-slot`
//!   (u32, the frame's place in the batched inference, 0 when run alone) and `batch-size`
//!   (u32, frames in that inference).
//!
//! Both metas describe the picture's geometry, so they carry the tags GStreamer's video
//! metas use (`video`, `size`, `orientation`): a buffer copy keeps them, an element that
//! crops or scales the frame drops them (the scores would no longer match the
//! picture; segpostproc then warns that frames arrive without scores).

use std::borrow::Cow;
use std::ffi::CStr;
use std::sync::{Arc, Once};

use gst::glib;
use gst::meta::CustomMeta;

use ffnetseg::tensor::OutputSpec;
use ffnetseg::tensor::Region;
use ffnetseg::tensor::{DType, Layout, Quantization, TensorSpec};

pub const INPUT_TENSOR_META: &str = "FfnetsegInputTensorMeta";
pub const SCORES_META: &str = "FfnetsegScoresMeta";

/// `GST_META_TAG_VIDEO_STR`, `GST_META_TAG_VIDEO_SIZE_STR`, `GST_META_TAG_VIDEO_ORIENTATION_STR`.
const GEOMETRY_TAGS: &[&str] = &["video", "size", "orientation"];

/// Whether `meta` is one of this plugin's metas (segpostproc keeps them on the frames it
/// makes: same picture, same size).
pub fn is_ours(meta: &gst::MetaRef<'_, gst::Meta>) -> bool {
    // A custom meta's API type is named after it, with "-api" appended.
    let api = meta.api();
    let name = api.name();
    name.strip_suffix("-api")
        .is_some_and(|n| n == INPUT_TENSOR_META || n == SCORES_META)
}

/// The provider's name without an allocation for the providers this plugin knows.
pub(crate) fn provider_name(name: &str) -> Cow<'static, str> {
    use ffnetseg::inference::Provider;
    [
        Provider::Cpu,
        Provider::Qnn,
        Provider::Cuda,
        Provider::TensorRt,
        Provider::Xnnpack,
        Provider::OpenVino,
    ]
    .into_iter()
    .map(Provider::name)
    .find(|known| *known == name)
    .map_or_else(|| Cow::Owned(name.to_owned()), Cow::Borrowed)
}

/// Registers the meta types; called from plugin_init (and by applications that use the
/// elements statically before creating them).
pub fn register() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The tags of GStreamer's geometry-bound video metas (as the region-of-interest
        // meta): a copy keeps them (the custom meta's default transform), a crop, scale or
        // flip drops them instead of pairing scores with a picture they do not describe.
        for name in [INPUT_TENSOR_META, SCORES_META] {
            CustomMeta::register(name, GEOMETRY_TAGS);
        }
    });
}

fn region_fields(s: &mut gst::StructureRef, r: Region) {
    s.set("region-x", r.x as u32);
    s.set("region-y", r.y as u32);
    s.set("region-width", r.width as u32);
    s.set("region-height", r.height as u32);
}

fn read_region(s: &gst::StructureRef) -> Option<Region> {
    Some(Region {
        x: s.get::<u32>("region-x").ok()? as usize,
        y: s.get::<u32>("region-y").ok()? as usize,
        width: s.get::<u32>("region-width").ok()? as usize,
        height: s.get::<u32>("region-height").ok()? as usize,
    })
}

/// The metas' names as C strings. gstreamer-rs' `CustomMeta::add` and `from_buffer` copy a
/// `&str` name into a new C string on every call; these run for every frame, so the
/// lookups below hand GStreamer the static names instead.
fn c_name(name: &str) -> &'static CStr {
    if name == INPUT_TENSOR_META {
        c"FfnetsegInputTensorMeta"
    } else {
        c"FfnetsegScoresMeta"
    }
}

/// The structure of the custom meta `name` on `buffer`, if it has one.
fn meta_structure<'a>(buffer: &'a gst::BufferRef, name: &str) -> Option<&'a gst::StructureRef> {
    // SAFETY: a lookup on a valid buffer with a NUL-terminated name; GStreamer does not
    // modify the buffer. The structure belongs to the meta, which lives as long as the
    // borrowed buffer.
    unsafe {
        let meta =
            gst::ffi::gst_buffer_get_custom_meta(buffer.as_ptr().cast_mut(), c_name(name).as_ptr());
        if meta.is_null() {
            return None;
        }
        Some(gst::StructureRef::from_glib_borrow(
            gst::ffi::gst_custom_meta_get_structure(meta),
        ))
    }
}

/// A fresh custom meta `name` on `buffer` (an old one is removed), as its structure.
fn add_or_replace<'a>(
    buffer: &'a mut gst::BufferRef,
    name: &str,
) -> Result<&'a mut gst::StructureRef, glib::BoolError> {
    let c = c_name(name);
    // SAFETY: calls on a writable buffer we hold exclusively, with a NUL-terminated name;
    // the returned structure belongs to the new meta, which lives as long as the buffer.
    unsafe {
        let buf = buffer.as_mut_ptr();
        let old = gst::ffi::gst_buffer_get_custom_meta(buf, c.as_ptr());
        if !old.is_null() && gst::ffi::gst_buffer_remove_meta(buf, old.cast()) == glib::ffi::GFALSE
        {
            return Err(glib::bool_error!("cannot replace the old {name}"));
        }
        let meta = gst::ffi::gst_buffer_add_custom_meta(buf, c.as_ptr());
        if meta.is_null() {
            return Err(glib::bool_error!(
                "cannot add {name} (is the plugin registered?)"
            ));
        }
        Ok(gst::StructureRef::from_glib_borrow_mut(
            gst::ffi::gst_custom_meta_get_structure(meta),
        ))
    }
}

/// The model input tensor segpreproc made for this frame.
#[derive(Debug, Clone)]
pub struct InputTensor {
    pub tensor: gst::Buffer,
    pub spec: TensorSpec,
    pub region: Region,
    /// Whether segpreproc's width/height/layout properties shaped the tensor instead of
    /// the model's own answer (structure field `overridden`, absent = false).
    pub overridden: bool,
}

impl InputTensor {
    pub fn attach(&self, buffer: &mut gst::BufferRef) -> Result<(), glib::BoolError> {
        let s = add_or_replace(buffer, INPUT_TENSOR_META)?;
        s.set("tensor", self.tensor.clone());
        s.set("width", self.spec.width as u32);
        s.set("height", self.spec.height as u32);
        s.set("channels", self.spec.channels as u32);
        s.set("layout", self.spec.layout.as_str());
        s.set("dtype", self.spec.dtype.as_str());
        region_fields(s, self.region);
        s.set("overridden", self.overridden);
        Ok(())
    }

    pub fn from_buffer(buffer: &gst::BufferRef) -> Option<Self> {
        let s = meta_structure(buffer, INPUT_TENSOR_META)?;
        Some(InputTensor {
            tensor: s.get::<gst::Buffer>("tensor").ok()?,
            spec: TensorSpec {
                width: s.get::<u32>("width").ok()? as usize,
                height: s.get::<u32>("height").ok()? as usize,
                channels: s.get::<u32>("channels").ok()? as usize,
                layout: Layout::parse(s.get::<&str>("layout").ok()?).ok()?,
                dtype: DType::parse(s.get::<&str>("dtype").ok()?).ok()?,
                quantization: None,
            },
            region: read_region(s)?,
            overridden: s.get::<bool>("overridden").unwrap_or(false),
        })
    }
}

/// Model scores ffnetinfer attached to a frame.
#[derive(Debug, Clone)]
pub struct Scores {
    /// Native-endian f32 scores in `layout` (1×C×H×W or 1×H×W×C).
    pub scores: gst::Buffer,
    pub classes: usize,
    pub width: usize,
    pub height: usize,
    pub layout: Layout,
    /// The picture's region in the model's input tensor, and that tensor's size.
    pub region: Region,
    pub tensor_width: usize,
    pub tensor_height: usize,
    /// Timestamp of the frame the scores were computed from.
    pub source_pts: Option<gst::ClockTime>,
    /// Increases by one per inference; equal values mean the same result.
    pub sequence: u64,
    /// Execution provider that produced the scores (e.g. "cpu", "qnn").
    pub provider: Cow<'static, str>,
    pub inference_ns: u64,
    /// Which model made the scores: changes when ffnetinfer starts or swaps its model.
    pub model_generation: u64,
    /// The shared instance (ffnetinfer `shared-instance`) that made the scores; None for
    /// an element's own model (then the batch fields are 0 and 1).
    pub instance: Option<Arc<str>>,
    /// The frame's place in its batched inference (0 when run alone).
    pub batch_slot: u32,
    /// Frames in that inference (1 when run alone).
    pub batch_size: u32,
}

impl Scores {
    pub fn output_spec(&self) -> OutputSpec {
        OutputSpec {
            classes: self.classes,
            width: self.width,
            height: self.height,
            layout: self.layout,
        }
    }

    /// Maps the scores for reading, without copying them.
    pub fn mapped(&self) -> Result<ScoresMap<'_>, glib::BoolError> {
        let map = self.scores.map_readable()?;
        if bytemuck::try_cast_slice::<u8, f32>(map.as_slice()).is_err() {
            return Err(glib::bool_error!(
                "the scores buffer is not a whole number of aligned f32 values"
            ));
        }
        Ok(ScoresMap(map))
    }

    /// Copies the scores out as f32 (applications; the elements use [`Scores::mapped`]).
    pub fn values(&self) -> Result<Vec<f32>, glib::BoolError> {
        Ok(self.mapped()?.as_f32().to_vec())
    }

    pub fn attach(&self, buffer: &mut gst::BufferRef) -> Result<(), glib::BoolError> {
        let s = add_or_replace(buffer, SCORES_META)?;
        s.set("scores", self.scores.clone());
        s.set("classes", self.classes as u32);
        s.set("width", self.width as u32);
        s.set("height", self.height as u32);
        s.set("layout", self.layout.as_str());
        region_fields(s, self.region);
        s.set("tensor-width", self.tensor_width as u32);
        s.set("tensor-height", self.tensor_height as u32);
        if let Some(pts) = self.source_pts {
            s.set("source-pts", pts.nseconds());
        }
        s.set("sequence", self.sequence);
        s.set("provider", self.provider.as_ref());
        s.set("inference-ns", self.inference_ns);
        s.set("model-generation", self.model_generation);
        // Only shared instances: an element's own model keeps the meta as it was.
        if let Some(name) = &self.instance {
            s.set("instance", name.as_ref());
            s.set("batch-slot", self.batch_slot);
            s.set("batch-size", self.batch_size);
        }
        Ok(())
    }

    pub fn from_buffer(buffer: &gst::BufferRef) -> Option<Self> {
        let s = meta_structure(buffer, SCORES_META)?;
        // Checked first: a missing field's lookup error is built on the heap, and only
        // shared instances write these (the hot path of the others stays allocation-free).
        let shared = s.has_field("instance");
        Some(Scores {
            scores: s.get::<gst::Buffer>("scores").ok()?,
            classes: s.get::<u32>("classes").ok()? as usize,
            width: s.get::<u32>("width").ok()? as usize,
            height: s.get::<u32>("height").ok()? as usize,
            layout: Layout::parse(s.get::<&str>("layout").ok()?).ok()?,
            region: read_region(s)?,
            tensor_width: s.get::<u32>("tensor-width").ok()? as usize,
            tensor_height: s.get::<u32>("tensor-height").ok()? as usize,
            source_pts: s
                .get::<u64>("source-pts")
                .ok()
                .map(gst::ClockTime::from_nseconds),
            sequence: s.get::<u64>("sequence").ok()?,
            provider: provider_name(s.get::<&str>("provider").ok()?),
            inference_ns: s.get::<u64>("inference-ns").unwrap_or(0),
            model_generation: s.get::<u64>("model-generation").unwrap_or(0),
            instance: shared
                .then(|| s.get::<&str>("instance").ok().map(Arc::from))
                .flatten(),
            batch_slot: shared
                .then(|| s.get::<u32>("batch-slot").ok())
                .flatten()
                .unwrap_or(0),
            batch_size: shared
                .then(|| s.get::<u32>("batch-size").ok())
                .flatten()
                .unwrap_or(1),
        })
    }
}

/// Readable scores, mapped in place.
pub struct ScoresMap<'a>(gst::BufferMap<'a, gst::buffer::Readable>);

impl ScoresMap<'_> {
    pub fn as_f32(&self) -> &[f32] {
        // Checked when mapped (Scores::mapped).
        bytemuck::cast_slice(self.0.as_slice())
    }
}

/// Name of the custom query segpreproc sends downstream to learn the model input; the
/// answering ffnetinfer fills `width`, `height`, `channels`, `layout`, `dtype`, for
/// quantized inputs `scale` (f64) and `zero-point` (i32), and `model` (the model file's
/// path, where segpreproc looks for a `.modelinfo` file) and `input-name`.
pub const CONTRACT_QUERY: &str = "ffnetseg-model-contract";

pub fn contract_query() -> gst::query::Custom<gst::Query> {
    gst::query::Custom::new(gst::Structure::new_empty(CONTRACT_QUERY))
}

/// The model file and its input tensor's name, as the contract query carries them.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSource {
    pub model: std::path::PathBuf,
    pub input_name: String,
}

pub fn answer_contract_query(
    query: &mut gst::QueryRef,
    spec: &TensorSpec,
    source: Option<&ModelSource>,
) -> bool {
    if let gst::QueryViewMut::Custom(q) = query.view_mut() {
        let s = q.structure_mut();
        if s.name() == CONTRACT_QUERY {
            s.set("width", spec.width as u32);
            s.set("height", spec.height as u32);
            s.set("channels", spec.channels as u32);
            s.set("layout", spec.layout.as_str());
            s.set("dtype", spec.dtype.as_str());
            if let Some(q) = spec.quantization {
                s.set("scale", q.scale as f64);
                s.set("zero-point", q.zero_point);
            }
            if let Some(src) = source {
                s.set("model", src.model.to_string_lossy().as_ref());
                s.set("input-name", src.input_name.as_str());
            }
            return true;
        }
    }
    false
}

pub fn is_contract_query(query: &gst::QueryRef) -> bool {
    matches!(query.view(), gst::QueryView::Custom(q) if q.structure().is_some_and(|s| s.name() == CONTRACT_QUERY))
}

pub fn read_contract_answer(query: &gst::QueryRef) -> Option<TensorSpec> {
    let gst::QueryView::Custom(q) = query.view() else {
        return None;
    };
    let s = q.structure()?;
    Some(TensorSpec {
        width: s.get::<u32>("width").ok()? as usize,
        height: s.get::<u32>("height").ok()? as usize,
        channels: s.get::<u32>("channels").ok()? as usize,
        layout: Layout::parse(s.get::<&str>("layout").ok()?).ok()?,
        dtype: DType::parse(s.get::<&str>("dtype").ok()?).ok()?,
        quantization: s.get::<f64>("scale").ok().map(|scale| Quantization {
            scale: scale as f32,
            zero_point: s.get::<i32>("zero-point").unwrap_or(0),
        }),
    })
}

/// The model file and input name of an answered contract query (absent from answers that
/// did not name them).
pub fn read_contract_source(query: &gst::QueryRef) -> Option<ModelSource> {
    let gst::QueryView::Custom(q) = query.view() else {
        return None;
    };
    let s = q.structure()?;
    Some(ModelSource {
        model: s.get::<&str>("model").ok()?.into(),
        input_name: s.get::<&str>("input-name").ok()?.to_string(),
    })
}

/// Name of the custom query segpostproc sends upstream to learn whether an ffnetinfer is
/// there (frames may carry no scores yet while async inference warms up).
pub const INFERENCE_QUERY: &str = "ffnetseg-has-inference";

pub fn inference_query() -> gst::query::Custom<gst::Query> {
    gst::query::Custom::new(gst::Structure::new_empty(INFERENCE_QUERY))
}

pub fn is_inference_query(query: &gst::QueryRef) -> bool {
    matches!(query.view(), gst::QueryView::Custom(q) if q.structure().is_some_and(|s| s.name() == INFERENCE_QUERY))
}

/// ffnetinfer's answer: it is there, and whether it runs asynchronously (field
/// `asynchronous`; only then may frames lack scores while the first inference runs).
pub fn answer_inference_query(query: &mut gst::QueryRef, asynchronous: bool) -> bool {
    if let gst::QueryViewMut::Custom(q) = query.view_mut() {
        let s = q.structure_mut();
        if s.name() == INFERENCE_QUERY {
            s.set("asynchronous", asynchronous);
            return true;
        }
    }
    false
}

/// Whether the answered inference query says the inference is asynchronous.
pub fn inference_is_asynchronous(query: &gst::QueryRef) -> bool {
    match query.view() {
        gst::QueryView::Custom(q) => q
            .structure()
            .is_some_and(|s| s.get::<bool>("asynchronous").unwrap_or(false)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_c_names_are_the_registered_names() {
        for name in [INPUT_TENSOR_META, SCORES_META] {
            assert_eq!(c_name(name).to_str(), Ok(name));
        }
    }
}
