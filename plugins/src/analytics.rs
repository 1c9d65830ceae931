//! GStreamer's standard analytics metadata (GStreamer ≥ 1.26, cargo feature `analytics`):
//! what the elements attach besides their own custom metas, and what segpostproc reads
//! from upstream inference elements. docs/analytics.md is the user's side of this.
//!
//! - ffnetinfer attaches a `GstTensorMeta` holding the model output as a `GstTensor`
//!   (float32, row-major, dims 1×C×H×W or 1×H×W×C, id = the quark of the ONNX output name).
//!   The tensor shares the scores buffer of `FfnetsegScoresMeta`: no copy.
//! - segpostproc attaches a `GstAnalyticsRelationMeta` holding a semantic
//!   `GstAnalyticsSegmentationMtd` (the GRAY8 label mask of the whole frame, with its
//!   `GstVideoMeta`; region ids = the class indices present) and, related to it
//!   (`RELATE_TO`), a `GstAnalyticsClsMtd` naming those classes in region order, each with
//!   the fraction of the frame it covers as its confidence level.
//!
//! gstreamer-analytics 0.25 wraps the relation meta, the classification mtd and the tensor
//! meta, not the segmentation mtd: [`SegmentationMtd`] and [`add_semantic_segmentation`] are
//! this plugin's own small safe wrapper over gstreamer-analytics-sys.

use std::mem::MaybeUninit;

use gst::glib;
use gst::glib::translate::{IntoGlibPtr, UnsafeFrom};
use gst_analytics::ffi;
use gst_analytics::{
    AnalyticsMetaRefExt, AnalyticsMtd, AnalyticsMtdRef, AnalyticsRelationMeta,
    AnalyticsRelationMetaClassificationExt, RelTypes, Tensor, TensorDataType, TensorDimOrder,
    TensorMeta,
};

use ffnetseg::tensor::{Layout, OutputSpec};

/// Attaches `scores` (native-endian f32, as ffnetinfer made them) as a `GstTensorMeta` with one
/// tensor named `id`. The tensor holds another reference to the same buffer.
pub fn attach_output_tensor(
    buffer: &mut gst::BufferRef,
    scores: &gst::Buffer,
    spec: &OutputSpec,
    id: glib::Quark,
) {
    let dims = match spec.layout {
        Layout::Nchw => [1, spec.classes, spec.height, spec.width],
        Layout::Nhwc => [1, spec.height, spec.width, spec.classes],
    };
    let tensor = Tensor::new_simple(
        id,
        TensorDataType::Float32,
        scores.clone(),
        TensorDimOrder::RowMajor,
        &dims,
    );
    let mut meta = TensorMeta::add(buffer);
    meta.set(glib::Slice::from(vec![tensor]));
}

/// A float32 tensor an upstream element attached, read as segmentation scores.
pub struct UpstreamScores {
    pub data: gst::Buffer,
    pub spec: OutputSpec,
}

/// Why an upstream `GstTensorMeta` cannot be used as scores (said once to the user).
#[derive(Debug, PartialEq)]
pub enum TensorProblem {
    /// No tensor meta, or none with the requested id.
    Missing,
    Unusable(String),
}

/// The tensor `id` (or, with `None`, the only/first tensor) of the buffer's `GstTensorMeta`s,
/// checked to be float32 scores of 3 (C×H×W) or 4 (1×C×H×W, 1×H×W×C) row-major dims.
pub fn upstream_scores(
    buffer: &gst::BufferRef,
    id: Option<glib::Quark>,
) -> Result<UpstreamScores, TensorProblem> {
    let tensors: Vec<Tensor> = buffer
        .iter_meta::<TensorMeta>()
        .flat_map(|m| m.as_slice().to_vec())
        .collect();
    let Some(tensor) = tensors.iter().find(|t| id.is_none_or(|id| t.id() == id)) else {
        return match (id, tensors.is_empty()) {
            (Some(id), false) => Err(TensorProblem::Unusable(format!(
                "no upstream tensor has the id '{}' (segpostproc tensor-id): the frames carry {}",
                id.as_str(),
                tensors
                    .iter()
                    .map(|t| format!("'{}'", t.id().as_str()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
            _ => Err(TensorProblem::Missing),
        };
    };
    let name = tensor.id().as_str().to_string();
    if tensor.data_type() != TensorDataType::Float32 {
        return Err(TensorProblem::Unusable(format!(
            "tensor '{name}' is {:?}, segpostproc needs float32 scores",
            tensor.data_type()
        )));
    }
    if tensor.dims_order() != TensorDimOrder::RowMajor {
        return Err(TensorProblem::Unusable(format!(
            "tensor '{name}' is column-major, segpostproc needs row-major"
        )));
    }
    let spec = spec_from_dims(tensor.dims()).ok_or_else(|| {
        TensorProblem::Unusable(format!(
            "tensor '{name}' has dims {:?}: segpostproc needs C×H×W, 1×C×H×W or 1×H×W×C",
            tensor.dims()
        ))
    })?;
    let data = tensor.data().to_owned();
    if data.size() != spec.element_count() * 4 {
        return Err(TensorProblem::Unusable(format!(
            "tensor '{name}' holds {} bytes, its dims {:?} need {}",
            data.size(),
            tensor.dims(),
            spec.element_count() * 4
        )));
    }
    Ok(UpstreamScores { data, spec })
}

/// The scores' shape from a tensor's dims: a batch of one, classes first (NCHW) unless the
/// last dim is the small one (NHWC).
fn spec_from_dims(dims: &[usize]) -> Option<OutputSpec> {
    let d = match dims {
        [c, h, w] => [1, *c, *h, *w],
        [1, a, b, c] => [1, *a, *b, *c],
        _ => return None,
    };
    if d.contains(&0) {
        return None;
    }
    let layout = ffnetseg::tensor::guess_layout(&d.map(|x| x as i64));
    let (classes, height, width) = match layout {
        Layout::Nchw => (d[1], d[2], d[3]),
        Layout::Nhwc => (d[3], d[1], d[2]),
    };
    Some(OutputSpec {
        classes,
        width,
        height,
        layout,
    })
}

/// A semantic segmentation of the whole frame, as segpostproc attaches it.
pub struct SemanticSegmentation<'a> {
    /// GRAY8, `width`×`height`, tightly packed: one class index per pixel.
    pub mask: gst::Buffer,
    pub width: u32,
    pub height: u32,
    /// The class indices present in the mask, ascending.
    pub region_ids: &'a [u32],
    /// Per region: the class name and the fraction of the mask it covers.
    pub names: &'a [glib::Quark],
    pub levels: &'a [f32],
}

/// Attaches `seg` to `buffer` (in its relation meta, added when missing); returns the ids of
/// the segmentation and the classification mtds.
pub fn add_semantic_segmentation(
    buffer: &mut gst::BufferRef,
    seg: SemanticSegmentation<'_>,
) -> Result<(u32, u32), glib::BoolError> {
    if seg.names.len() != seg.region_ids.len() || seg.levels.len() != seg.region_ids.len() {
        return Err(glib::bool_error!("one name and one level per region"));
    }
    let mut mask = seg.mask;
    let stride = seg.width as i32;
    gst_video::VideoMeta::add_full(
        mask.make_mut(),
        gst_video::VideoFrameFlags::empty(),
        gst_video::VideoFormat::Gray8,
        seg.width,
        seg.height,
        &[0],
        &[stride],
    )?;
    let mut rmeta = match buffer.meta_mut::<AnalyticsRelationMeta>() {
        Some(m) => m,
        None => AnalyticsRelationMeta::add(buffer),
    };
    let mut mtd = MaybeUninit::<ffi::GstAnalyticsSegmentationMtd>::uninit();
    // SAFETY: `rmeta` is a relation meta on a buffer we hold writable. The mask is handed
    // over with its reference (GstAnalytics-1.0.gir: buffer transfer-ownership="full"); the
    // region ids are copied into the meta (`region_ids` is an in array of region_count
    // elements that outlives the call). The mtd is written when the call returns TRUE and
    // only read then.
    let seg_id = unsafe {
        let added = ffi::gst_analytics_relation_meta_add_segmentation_mtd(
            rmeta.as_mut_ptr(),
            mask.into_glib_ptr(),
            ffi::GST_SEGMENTATION_TYPE_SEMANTIC,
            seg.region_ids.len(),
            seg.region_ids.as_ptr().cast_mut(),
            0,
            0,
            seg.width,
            seg.height,
            mtd.as_mut_ptr(),
        );
        if added == glib::ffi::GFALSE {
            return Err(glib::bool_error!("cannot add the segmentation mtd"));
        }
        mtd.assume_init().id
    };
    let cls_id = rmeta.add_cls_mtd(seg.levels, seg.names)?.id();
    rmeta.set_relation(RelTypes::RELATE_TO, seg_id, cls_id)?;
    Ok((seg_id, cls_id))
}

/// The segmentation mtd type, for `AnalyticsMetaRefExt::iter::<SegmentationMtd>()`.
#[derive(Debug)]
pub enum SegmentationMtd {}

// SAFETY: the type id is the one GStreamer registered for GstAnalyticsSegmentationMtd; the
// iterators only hand out mtds of that type, whose handle layout (id, meta) is the one
// every `gst_analytics_segmentation_mtd_*` function takes.
unsafe impl AnalyticsMtd for SegmentationMtd {
    fn mtd_type() -> ffi::GstAnalyticsMtdType {
        // SAFETY: a getter without arguments.
        unsafe { ffi::gst_analytics_segmentation_mtd_get_mtd_type() }
    }
}

/// What a segmentation mtd holds, read out.
#[derive(Debug)]
pub struct Segmentation {
    pub mask: gst::Buffer,
    /// The mask's place in the frame: x, y, width, height.
    pub location: (i32, i32, u32, u32),
    pub region_ids: Vec<u32>,
}

/// Reads a segmentation mtd (mask, location, region ids).
pub fn read_segmentation(mtd: &AnalyticsMtdRef<'_, SegmentationMtd>) -> Option<Segmentation> {
    // SAFETY: the handle names an mtd of this type in a relation meta that lives as long as
    // `mtd` borrows it. get_mask returns a new reference (transfer full), or NULL.
    unsafe {
        let handle = ffi::GstAnalyticsMtd::unsafe_from(mtd);
        let handle: *const ffi::GstAnalyticsSegmentationMtd = (&raw const handle).cast();
        let (mut x, mut y, mut w, mut h) = (0, 0, 0, 0);
        let mask =
            ffi::gst_analytics_segmentation_mtd_get_mask(handle, &mut x, &mut y, &mut w, &mut h);
        if mask.is_null() {
            return None;
        }
        let mask = gst::Buffer::from_glib_full(mask);
        let count = ffi::gst_analytics_segmentation_mtd_get_region_count(handle);
        let region_ids = (0..count)
            .map(|i| ffi::gst_analytics_segmentation_mtd_get_region_id(handle, i))
            .collect();
        Some(Segmentation {
            mask,
            location: (x, y, w, h),
            region_ids,
        })
    }
}

/// The first semantic segmentation on `buffer` with the class names related to it.
pub fn read_semantic_segmentation(
    buffer: &gst::BufferRef,
) -> Option<(Segmentation, Vec<(String, f32)>)> {
    let rmeta = buffer.meta::<AnalyticsRelationMeta>()?;
    let mtd = rmeta.iter::<SegmentationMtd>().next()?;
    let seg = read_segmentation(&mtd)?;
    let names = rmeta
        .iter_direct_related::<gst_analytics::AnalyticsClassificationMtd>(
            mtd.id(),
            RelTypes::RELATE_TO,
        )
        .next()
        .map(|cls| {
            (0..cls.len())
                .map(|i| (cls.quark(i).as_str().to_string(), cls.level(i)))
                .collect()
        })
        .unwrap_or_default();
    Some((seg, names))
}

/// The GstTensor id of the model output `output`: the `id` of its section in a `.modelinfo`
/// file next to the model (GStreamer 1.28's inference elements), else the model's metadata
/// entry named like the output (what 1.26's onnxinference reads), else the output's name.
/// The second value says where it came from, for the log.
pub fn tensor_id(model: &std::path::Path, output: &str) -> (glib::Quark, String) {
    use ffnetseg::preprocess::modelinfo;
    if let Some(path) = modelinfo::find_for(model)
        && let Ok(Some(id)) = modelinfo::output_id(&path, output)
    {
        return (glib::Quark::from_str(&id), path.display().to_string());
    }
    let from_metadata = std::fs::read(model)
        .ok()
        .and_then(|b| ffnetseg::inference::onnx_proto::summarize(&b))
        .and_then(|s| s.metadata.get(output).cloned());
    match from_metadata {
        Some(id) => (glib::Quark::from_str(&id), "the model's metadata".into()),
        None => (glib::Quark::from_str(output), "the output's name".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_semantic_segmentation_reads_back_through_the_wrapper() {
        gst::init().unwrap();
        let (w, h) = (4u32, 2u32);
        let mask = gst::Buffer::from_mut_slice(vec![0u8, 0, 11, 11, 0, 13, 13, 13]);
        let names = ["road", "person", "car"].map(glib::Quark::from_str);
        let mut frame = gst::Buffer::with_size(16).unwrap();
        // An upstream element's relation meta with its own classification: ours joins it,
        // and the names read back are the ones related to the segmentation, not the
        // upstream entry. (GStreamer 1.26's gst_buffer_add_analytics_relation_meta gave
        // back the existing meta here too, so the count below checks GStreamer as much
        // as our lookup.)
        AnalyticsRelationMeta::add(frame.get_mut().unwrap())
            .add_one_cls_mtd(0.9, glib::Quark::from_str("upstream"))
            .unwrap();
        let (seg_id, cls_id) = add_semantic_segmentation(
            frame.get_mut().unwrap(),
            SemanticSegmentation {
                mask,
                width: w,
                height: h,
                region_ids: &[0, 11, 13],
                names: &names,
                levels: &[0.375, 0.25, 0.375],
            },
        )
        .unwrap();
        assert_ne!(seg_id, cls_id);
        assert_eq!(frame.iter_meta::<AnalyticsRelationMeta>().count(), 1);
        assert_eq!(frame.meta::<AnalyticsRelationMeta>().unwrap().len(), 3);
        let (seg, classes) = read_semantic_segmentation(&frame).unwrap();
        assert_eq!(seg.location, (0, 0, w, h));
        assert_eq!(seg.region_ids, [0, 11, 13]);
        let vmeta = seg.mask.meta::<gst_video::VideoMeta>().unwrap();
        assert_eq!(
            (vmeta.width(), vmeta.height(), vmeta.stride()[0]),
            (4, 2, 4)
        );
        assert_eq!(vmeta.format(), gst_video::VideoFormat::Gray8);
        assert_eq!(
            seg.mask.map_readable().unwrap().as_slice(),
            [0, 0, 11, 11, 0, 13, 13, 13]
        );
        let names: Vec<&str> = classes.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["road", "person", "car"]);
        assert_eq!(classes[1].1, 0.25);
    }

    #[test]
    fn dims_become_the_scores_shape() {
        let s = spec_from_dims(&[1, 19, 64, 128]).unwrap();
        assert_eq!(
            (s.classes, s.height, s.width, s.layout),
            (19, 64, 128, Layout::Nchw)
        );
        let s = spec_from_dims(&[1, 256, 256, 1]).unwrap();
        assert_eq!(
            (s.classes, s.height, s.width, s.layout),
            (1, 256, 256, Layout::Nhwc)
        );
        let s = spec_from_dims(&[1, 64, 128, 2]).unwrap();
        assert_eq!(
            (s.classes, s.height, s.width, s.layout),
            (2, 64, 128, Layout::Nhwc)
        );
        let s = spec_from_dims(&[2, 64, 64]).unwrap();
        assert_eq!((s.classes, s.height, s.width), (2, 64, 64));
        assert!(spec_from_dims(&[2, 3, 64, 64]).is_none(), "a batch of two");
        assert!(spec_from_dims(&[64, 64]).is_none());
    }
}
