//! The hand-written route: OpenCV resizes the luma (or packed RGB) plane to the region;
//! chroma is sampled straight from the frame's chroma plane at the same positions as the
//! reference route; colour conversion, normalization, clipping and the tensor write are
//! then one pass per tensor row, with no intermediate image.

use opencv::core::{Mat, Size};
use opencv::imgproc;
use opencv::prelude::*;

use super::colour::Fused;
use super::kernels;
use crate::cvmat::view;
use crate::error::Result;
use crate::frame::{ChromaSite, ColourKind, FrameView};
use crate::tensor::{DType, Layout, Region, TensorSpec};

/// Where a YUV frame keeps its two chroma channels ([`ChromaSite`]), with the number of
/// samples per row and of rows for this frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct ChromaLayout {
    site: ChromaSite,
    samples: usize,
    rows: usize,
}

impl ChromaLayout {
    /// None for RGB and gray frames.
    fn of(frame: &FrameView<'_>) -> Option<ChromaLayout> {
        let ColourKind::Yuv(site) = frame.format.info().colour else {
            return None;
        };
        let l = frame.planes[site.first.0].1;
        Some(ChromaLayout {
            site,
            // Samples are `step` bytes apart (YUY2: pixel pairs; an odd width still stores
            // a whole last pair).
            samples: l.row_bytes() / site.step,
            rows: l.height,
        })
    }
}

/// Chroma sampling tables of the hand-written route for one frame geometry.
pub(super) struct RowPlan {
    key: (usize, usize, usize, usize, ChromaLayout),
    /// Per tensor column: byte index (in a chroma row) of the two taps, and the second's weight.
    columns: kernels::Taps,
    /// Per tensor row: the two chroma rows and the second's weight.
    rows: Vec<(usize, usize, f32)>,
    /// Chroma bytes of a row that the taps read.
    row_bytes: usize,
}

/// One tensor row's scratch: three input channels, three outputs.
#[derive(Default)]
pub(super) struct RowBuffers {
    inputs: [Vec<f32>; 3],
    outputs: [Vec<f32>; 3],
}

/// What the hand-written route keeps between frames.
#[derive(Default)]
pub(super) struct RowScratch {
    luma: Mat,
    plan: Option<RowPlan>,
}

/// The two chroma samples (in a grid subsampled by `sub`) that OpenCV's bilinear sample of
/// output pixel `i` reads when resizing `full` nearest-upsampled pixels to `out`, and the
/// second one's weight (0 when both taps fall on the same chroma sample).
pub(super) fn chroma_taps(i: usize, full: usize, out: usize, sub: usize) -> (usize, usize, f32) {
    let scale = full as f64 / out as f64;
    let xf = (i as f64 + 0.5) * scale - 0.5;
    let mut x0 = xf.floor();
    let mut f = xf - x0;
    if x0 < 0.0 {
        x0 = 0.0;
        f = 0.0;
    }
    let x0 = (x0 as usize).min(full - 1);
    if x0 >= full - 1 {
        f = 0.0;
    }
    let x1 = (x0 + 1).min(full - 1);
    let (k0, k1) = (x0 / sub, x1 / sub);
    (k0, k0 + 1, ((k1 - k0) as f64 * f) as f32)
}

/// What every row of the hand-written route reads: shared, read-only, by all threads.
pub(super) struct RowJob<'a> {
    frame: &'a FrameView<'a>,
    chroma: Option<ChromaLayout>,
    plan: Option<&'a RowPlan>,
    /// The luma (or packed pixels) resized to the region, `channels` bytes a pixel.
    luma: &'a [u8],
    channels: usize,
    luma_offsets: [usize; 3],
    matrix: [[f32; 4]; 3],
    lo: [f32; 3],
    hi: [f32; 3],
    target: TensorSpec,
    region: Region,
}

impl RowScratch {
    /// Resizes the luma (or packed pixels) to the region and brings the chroma tables up to
    /// date: what every tensor row then reads.
    pub(super) fn job<'a>(
        &'a mut self,
        frame: &'a FrameView<'a>,
        fused: &Fused,
        target: TensorSpec,
        region: Region,
    ) -> Result<RowJob<'a>> {
        let (w, h) = (region.width, region.height);
        // 1. Luma (or packed pixels) at region size. YUY2/UYVY are read as 2-channel
        //    pixels of the real width; only their luma channel is used from the result.
        let (data, l) = &frame.planes[0];
        let ch = l.channels;
        view!(src = data, l.height, frame.width, ch, l.stride);
        imgproc::resize(
            &src,
            &mut self.luma,
            Size::new(w as i32, h as i32),
            0.0,
            0.0,
            imgproc::INTER_LINEAR,
        )?;
        let luma_offsets = match frame.format.info().colour {
            ColourKind::Yuv(site) => [site.luma_offset; 3],
            ColourKind::Rgb { .. } => [0, 1, 2],
            ColourKind::Gray => [0; 3],
        };

        // 2. Chroma sampling tables, rebuilt only when the geometry changes.
        let chroma = ChromaLayout::of(frame);
        if let Some(c) = chroma {
            let key = (frame.width, frame.height, w, h, c);
            if self.plan.as_ref().is_none_or(|p| p.key != key) {
                self.plan = Some(RowPlan::new(key));
            }
        }
        Ok(RowJob {
            frame,
            chroma,
            plan: self.plan.as_ref(),
            luma: self.luma.data_bytes()?,
            channels: ch,
            luma_offsets,
            matrix: fused.rows,
            lo: fused.lo.map(|v| v as f32),
            hi: fused.hi.map(|v| v as f32),
            target,
            region,
        })
    }
}

/// The tensor bytes of a band of tensor rows: one slice for NHWC, one per plane for NCHW.
pub(super) struct TensorBand<'a> {
    planes: [&'a mut [u8]; 3],
    /// The tensor row the slices start at.
    first_row: usize,
}

impl<'a> TensorBand<'a> {
    /// Region rows `rows` of the tensor `out` (the region's first row is `top`).
    pub(super) fn new(
        out: &'a mut [u8],
        t: TensorSpec,
        top: usize,
        rows: std::ops::Range<usize>,
    ) -> Self {
        let element = t.dtype.size();
        let first_row = top + rows.start;
        let mut planes: [&mut [u8]; 3] = Default::default();
        let row_bytes = match t.layout {
            Layout::Nhwc => {
                planes[0] = out;
                t.width * 3 * element
            }
            Layout::Nchw => {
                for (p, plane) in planes
                    .iter_mut()
                    .zip(out.chunks_mut(t.width * t.height * element))
                {
                    *p = plane;
                }
                t.width * element
            }
        };
        for p in &mut planes {
            let plane = std::mem::take(p);
            let start = (first_row * row_bytes).min(plane.len());
            let end = ((top + rows.end) * row_bytes).min(plane.len());
            *p = &mut plane[start..end];
        }
        TensorBand { planes, first_row }
    }

    /// Splits off the band's first `rows` rows (NHWC: 3 elements a pixel; NCHW: 1).
    pub(super) fn split_off_front(&mut self, rows: usize, t: TensorSpec) -> TensorBand<'a> {
        let element = t.dtype.size();
        let row_bytes = match t.layout {
            Layout::Nhwc => t.width * 3 * element,
            Layout::Nchw => t.width * element,
        };
        let mut front: [&mut [u8]; 3] = Default::default();
        for (f, p) in front.iter_mut().zip(&mut self.planes) {
            let plane = std::mem::take(p);
            let (a, b) = plane.split_at_mut((rows * row_bytes).min(plane.len()));
            *f = a;
            *p = b;
        }
        let first_row = self.first_row;
        self.first_row += rows;
        TensorBand {
            planes: front,
            first_row,
        }
    }
}

impl RowJob<'_> {
    /// Region rows `rows` into `band`: luma widened, chroma sampled, colour matrix and
    /// normalization, then the tensor's layout and element type.
    pub(super) fn fill(
        &self,
        rows: std::ops::Range<usize>,
        band: &mut TensorBand<'_>,
        bufs: &mut RowBuffers,
    ) {
        let (w, ch) = (self.region.width, self.channels);
        for v in bufs.inputs.iter_mut().chain(bufs.outputs.iter_mut()) {
            v.resize(w, 0.0);
        }
        for r in rows {
            let row = &self.luma[r * w * ch..(r + 1) * w * ch];
            let [i0, i1, i2] = &mut bufs.inputs;
            match (self.chroma, self.plan) {
                (Some(c), Some(plan)) => {
                    kernels::widen_strided(&row[self.luma_offsets[0]..], ch, i0);
                    plan.sample_chroma(self.frame, c.site, r, [i1, i2]);
                }
                _ => {
                    for (k, dst) in [i0, i1, i2].into_iter().enumerate() {
                        kernels::widen_strided(&row[self.luma_offsets[k]..], ch, dst);
                    }
                }
            }
            let [c0, c1, c2] = &bufs.inputs;
            let [o0, o1, o2] = &mut bufs.outputs;
            kernels::affine3([c0, c1, c2], &self.matrix, self.lo, self.hi, [o0, o1, o2]);
            let pixel = (self.region.y + r - band.first_row) * self.target.width + self.region.x;
            let outputs: [&[f32]; 3] = [&bufs.outputs[0], &bufs.outputs[1], &bufs.outputs[2]];
            self.store(outputs, band, pixel);
        }
    }

    /// One row's three channels into the band at `pixel`, in the tensor's layout and
    /// element type. The tensor's alignment was checked before this route was chosen.
    fn store(&self, outputs: [&[f32]; 3], band: &mut TensorBand<'_>, pixel: usize) {
        let (w, t) = (self.region.width, self.target);
        match (t.dtype, t.layout) {
            (DType::F32, Layout::Nhwc) => {
                let out: &mut [f32] = bytemuck::cast_slice_mut(&mut *band.planes[0]);
                kernels::interleave3_f32(outputs, &mut out[pixel * 3..(pixel + w) * 3]);
            }
            (DType::F32, Layout::Nchw) => {
                for (plane, o) in band.planes.iter_mut().zip(outputs) {
                    let out: &mut [f32] = bytemuck::cast_slice_mut(plane);
                    out[pixel..pixel + w].copy_from_slice(o);
                }
            }
            (DType::U8, Layout::Nhwc) => {
                for (k, o) in outputs.into_iter().enumerate() {
                    let out = &mut band.planes[0][pixel * 3 + k..(pixel + w) * 3];
                    kernels::round_to_u8(o, 3, out);
                }
            }
            (DType::U8, Layout::Nchw) => {
                for (plane, o) in band.planes.iter_mut().zip(outputs) {
                    kernels::round_to_u8(o, 1, &mut plane[pixel..pixel + w]);
                }
            }
            (DType::U16, Layout::Nhwc) => {
                let out: &mut [u16] = bytemuck::cast_slice_mut(&mut *band.planes[0]);
                for (k, o) in outputs.into_iter().enumerate() {
                    kernels::round_to_u16(o, 3, &mut out[pixel * 3 + k..(pixel + w) * 3]);
                }
            }
            (DType::U16, Layout::Nchw) => {
                for (plane, o) in band.planes.iter_mut().zip(outputs) {
                    let out: &mut [u16] = bytemuck::cast_slice_mut(plane);
                    kernels::round_to_u16(o, 1, &mut out[pixel..pixel + w]);
                }
            }
        }
    }
}

impl RowPlan {
    fn new(key: (usize, usize, usize, usize, ChromaLayout)) -> RowPlan {
        let (full_w, full_h, w, h, c) = key;
        let (sub, step) = (c.site.sub, c.site.step);
        let last = c.samples.max(1) - 1;
        let (mut first, mut next, mut weight) = (vec![], vec![], vec![]);
        for i in 0..w {
            let (k0, k1, f) = chroma_taps(i, full_w, w, sub.0);
            // Odd widths leave a last pixel without its own chroma pair: replicate.
            first.push((k0.min(last) * step) as u32);
            next.push((k1.min(last) * step) as u32);
            weight.push(f);
        }
        let last_row = c.rows.max(1) - 1;
        let rows = (0..h)
            .map(|i| {
                let (k0, k1, f) = chroma_taps(i, full_h, h, sub.1);
                (k0.min(last_row), k1.min(last_row), f)
            })
            .collect();
        let row_bytes = next.iter().max().map_or(0, |n| *n as usize + step);
        RowPlan {
            key,
            columns: kernels::Taps::new(first, next, weight),
            rows,
            row_bytes,
        }
    }

    /// Both chroma channels of tensor row `r`, two taps per axis straight from the frame.
    fn sample_chroma(
        &self,
        frame: &FrameView<'_>,
        c: ChromaSite,
        r: usize,
        outputs: [&mut Vec<f32>; 2],
    ) {
        let (k0, k1, row_weight) = self.rows[r];
        // Up to 3 bytes beyond the last tap where the buffer has them: the vector loop
        // reads 4 bytes per tap.
        let rows = |plane: usize| {
            let (data, l) = &frame.planes[plane];
            let row =
                |k: usize| &data[k * l.stride..(k * l.stride + self.row_bytes + 3).min(data.len())];
            (row(k0), row(k1))
        };
        let [u, v] = outputs;
        if c.first.0 == c.second.0 {
            let (top, bottom) = rows(c.first.0);
            kernels::sample_rows(
                top,
                bottom,
                &self.columns,
                row_weight,
                [Some((c.first.1, u)), Some((c.second.1, v))],
            );
        } else {
            for ((plane, offset), out) in [c.first, c.second].into_iter().zip([u, v]) {
                let (top, bottom) = rows(plane);
                kernels::sample_rows(
                    top,
                    bottom,
                    &self.columns,
                    row_weight,
                    [Some((offset, out)), None],
                );
            }
        }
    }
}
