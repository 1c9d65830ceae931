//! The OpenCV-only route ([`Route::OpenCv`](crate::kernels::Route)): the reference the
//! hand-written route is tested and benchmarked against, and the route of the
//! interpolations other than bilinear. The planes are resized (`resize`, `remap` for the
//! chroma), merged, mapped with `transform`, clipped and written with `convertTo`.

use opencv::core::{self, Mat, Scalar, Size, Vector};
use opencv::imgproc;
use opencv::prelude::*;

use super::colour::Fused;
use super::rows::chroma_taps;
use crate::cvmat::{ensure_same_data, view, view_mut};
use crate::error::Result;
use crate::frame::{ColourKind, FrameView};
use crate::tensor::{DType, Layout, Region, TensorSpec};

/// The reference route's images, kept between frames so steady state allocates nothing.
pub(super) struct Reference {
    /// Resized planes, kept as a Vector so `merge` reads them without copies.
    planes: Vector<Mat>,
    /// Resized luma and interleaved chroma of two-plane formats (NV12, YUY2, …).
    pair: Vector<Mat>,
    chroma_split: Mat,
    luma: Mat,
    merged: Mat,
    merged_f32: Mat,
    normalized: Mat,
    clipped: Mat,
    channel_scratch: Vector<Mat>,
    chroma_maps: Option<ChromaMaps>,
}

/// remap() coordinates that sample a subsampled chroma plane exactly where a bilinear
/// resize of the full-resolution, nearest-upsampled picture would (what `cvtColor`
/// followed by `resize` does), but at model resolution.
struct ChromaMaps {
    key: (usize, usize, usize, usize, i32, i32),
    map_x: Mat,
    map_y: Mat,
}

/// Position in the chroma grid of output pixel `i` (see [`chroma_taps`]).
fn chroma_coordinate(i: usize, full: usize, out: usize, sub: usize) -> f32 {
    let (k0, _, w) = chroma_taps(i, full, out, sub);
    k0 as f32 + w
}

impl Reference {
    pub(super) fn new() -> Self {
        Reference {
            planes: Vector::from_iter([Mat::default(), Mat::default(), Mat::default()]),
            pair: Vector::from_iter([Mat::default(), Mat::default()]),
            chroma_split: Mat::default(),
            luma: Mat::default(),
            merged: Mat::default(),
            merged_f32: Mat::default(),
            normalized: Mat::default(),
            clipped: Mat::default(),
            channel_scratch: Vector::new(),
            chroma_maps: None,
        }
    }

    /// The region of the tensor `out` for `frame` (padding is the caller's).
    pub(super) fn run(
        &mut self,
        frame: &FrameView<'_>,
        fused: &Fused,
        interp: i32,
        out: &mut [u8],
        target: TensorSpec,
        region: Region,
    ) -> Result<()> {
        // 1. Resize the planes to the region, then gather them into one 3-channel (or
        //    1/4-channel for gray/RGBx) u8 image whose channel order `fused` describes.
        let size = Size::new(region.width as i32, region.height as i32);
        self.resize_planes(frame, size, interp)?;
        // 2. One affine map: colour conversion ∘ scale ∘ mean/std ∘ quantization.
        let (lo, hi) = (fused.lo, fused.hi);
        self.merged
            .convert_to(&mut self.merged_f32, core::CV_32F, 1.0, 0.0)?;
        core::transform(&self.merged_f32, &mut self.normalized, &fused.matrix)?;
        // Clip to what real RGB in 0..255 maps to (YUV can leave the RGB gamut).
        core::max(
            &self.normalized,
            &Scalar::new(lo[0], lo[1], lo[2], 0.0),
            &mut self.clipped,
        )?;
        core::min(
            &self.clipped,
            &Scalar::new(hi[0], hi[1], hi[2], 0.0),
            &mut self.normalized,
        )?;
        // 3. Into the tensor in its layout and element type.
        self.write_tensor(out, target, region)
    }

    /// The frame's planes resized to `size` and merged into `merged`.
    fn resize_planes(&mut self, frame: &FrameView<'_>, size: Size, interp: i32) -> Result<()> {
        let full = (frame.width, frame.height);
        let ColourKind::Yuv(site) = frame.format.info().colour else {
            // Packed RGB or gray: one plane.
            let (data, l) = &frame.planes[0];
            view!(src = data, l.height, l.width, l.channels, l.stride);
            imgproc::resize(&src, &mut self.merged, size, 0.0, 0.0, interp)?;
            return Ok(());
        };
        match frame.planes.len() {
            2 => {
                let [(y, ly), (uv, luv)] = [frame.planes[0], frame.planes[1]];
                view!(y = y, ly.height, ly.width, 1, ly.stride);
                view!(uv = uv, luv.height, luv.width, 2, luv.stride);
                resize_into(&mut self.pair, 0, &y, size, interp)?;
                let maps = &mut self.chroma_maps;
                resize_chroma(maps, &mut self.pair, 1, &uv, full, site.sub, size, interp)?;
                core::merge(&self.pair, &mut self.merged)?;
            }
            3 => {
                let (y, ly) = frame.planes[0];
                view!(y = y, ly.height, ly.width, 1, ly.stride);
                resize_into(&mut self.planes, 0, &y, size, interp)?;
                for i in 1..3 {
                    let (p, l) = frame.planes[i];
                    view!(p = p, l.height, l.width, 1, l.stride);
                    let maps = &mut self.chroma_maps;
                    resize_chroma(maps, &mut self.planes, i, &p, full, site.sub, size, interp)?;
                }
                core::merge(&self.planes, &mut self.merged)?;
            }
            _ => self.resize_pixel_pairs(frame, site, size, interp)?,
        }
        Ok(())
    }

    /// YUY2/UYVY: seen as 2-channel pixels the luma is one channel; seen as 4-channel
    /// pixel pairs (Y0 U Y1 V or U Y0 V Y1) the chroma is two channels.
    fn resize_pixel_pairs(
        &mut self,
        frame: &FrameView<'_>,
        site: crate::frame::ChromaSite,
        size: Size,
        interp: i32,
    ) -> Result<()> {
        let (data, l) = frame.planes[0];
        view!(as_pairs = data, l.height, l.width / 2, 4, l.stride);
        // Luma of the real width (an odd width leaves half a pair unused).
        view!(as_pixels = data, l.height, frame.width, 2, l.stride);
        core::extract_channel(&as_pixels, &mut self.luma, site.luma_offset as i32)?;
        // U and V into one 2-channel image at (w/2)×h.
        if self.chroma_split.rows() != as_pairs.rows()
            || self.chroma_split.cols() != as_pairs.cols()
        {
            self.chroma_split = Mat::new_rows_cols_with_default(
                as_pairs.rows(),
                as_pairs.cols(),
                core::CV_8UC2,
                Scalar::all(0.0),
            )?;
        }
        let (u_ch, v_ch) = (site.first.1 as i32, site.second.1 as i32);
        core::mix_channels(&as_pairs, &mut self.chroma_split, &[u_ch, 0, v_ch, 1])?;
        resize_into(&mut self.pair, 0, &self.luma, size, interp)?;
        resize_chroma(
            &mut self.chroma_maps,
            &mut self.pair,
            1,
            &self.chroma_split,
            (frame.width, frame.height),
            site.sub,
            size,
            interp,
        )?;
        core::merge(&self.pair, &mut self.merged)?;
        Ok(())
    }

    fn write_tensor(&mut self, out: &mut [u8], t: TensorSpec, region: Region) -> Result<()> {
        match t.dtype {
            DType::F32 => self.write_tensor_as::<f32>(out, t, region, core::CV_32F),
            DType::U8 => self.write_tensor_as::<u8>(out, t, region, core::CV_8U),
            DType::U16 => self.write_tensor_as::<u16>(out, t, region, core::CV_16U),
        }
    }

    /// `convertTo` rounds and saturates for integer tensors; a plain copy for f32.
    fn write_tensor_as<T: core::DataType>(
        &mut self,
        out: &mut [u8],
        t: TensorSpec,
        region: Region,
        depth: i32,
    ) -> Result<()> {
        let esize = t.dtype.size();
        let rows = region.y..region.y + region.height;
        match t.layout {
            Layout::Nhwc => {
                let row = t.width * 3 * esize;
                let band = &mut out[rows.start * row..rows.end * row];
                view_mut!(dst = band, region.height, region.width, 3, row, T, region.x);
                let ptr = dst.data();
                self.normalized
                    .convert_to(&mut dst, core::CV_MAKETYPE(depth, 3), 1.0, 0.0)?;
                ensure_same_data(&dst, ptr, "tensor write")?;
            }
            Layout::Nchw => {
                core::split(&self.normalized, &mut self.channel_scratch)?;
                let row = t.width * esize;
                for (c, plane) in out.chunks_mut(t.height * row).enumerate() {
                    let band = &mut plane[rows.start * row..rows.end * row];
                    view_mut!(dst = band, region.height, region.width, 1, row, T, region.x);
                    let ptr = dst.data();
                    self.channel_scratch
                        .get(c)?
                        .convert_to(&mut dst, depth, 1.0, 0.0)?;
                    ensure_same_data(&dst, ptr, "tensor write")?;
                }
            }
        }
        Ok(())
    }
}

/// Resizes `src` into element `i` of `planes`, reusing its memory when the size matches.
fn resize_into(
    planes: &mut Vector<Mat>,
    i: usize,
    src: &(impl MatTraitConst + core::ToInputArray),
    size: Size,
    interp: i32,
) -> Result<()> {
    // `get` hands out a header sharing the element's data, so a same-size resize writes
    // straight into it; only a reallocation needs storing back.
    let mut dst = planes.get(i)?;
    let before = dst.data();
    imgproc::resize(src, &mut dst, size, 0.0, 0.0, interp)?;
    if dst.data() != before {
        planes.set(i, dst)?;
    }
    Ok(())
}

/// The remap() tables of [`ChromaMaps`] for this geometry.
fn chroma_maps(
    (full_w, full_h): (usize, usize),
    sub: (usize, usize),
    size: Size,
) -> Result<(Mat, Mat)> {
    let (w, h) = (size.width as usize, size.height as usize);
    let xs: Vec<f32> = (0..w)
        .map(|i| chroma_coordinate(i, full_w, w, sub.0))
        .collect();
    let ys: Vec<f32> = (0..h)
        .map(|i| chroma_coordinate(i, full_h, h, sub.1))
        .collect();
    let mut map_x =
        Mat::new_rows_cols_with_default(h as i32, w as i32, core::CV_32FC1, Scalar::all(0.0))?;
    let mut map_y =
        Mat::new_rows_cols_with_default(h as i32, w as i32, core::CV_32FC1, Scalar::all(0.0))?;
    {
        let mx = map_x.data_typed_mut::<f32>()?;
        let my = map_y.data_typed_mut::<f32>()?;
        for r in 0..h {
            mx[r * w..(r + 1) * w].copy_from_slice(&xs);
            my[r * w..(r + 1) * w].fill(ys[r]);
        }
    }
    Ok((map_x, map_y))
}

/// Brings a subsampled chroma plane to the region size (element `index` of `planes`).
/// With bilinear interpolation it samples where `cvtColor` (nearest chroma upsampling)
/// followed by `resize` would, so results match the full-resolution route without its cost.
#[allow(clippy::too_many_arguments)]
fn resize_chroma(
    maps: &mut Option<ChromaMaps>,
    planes: &mut Vector<Mat>,
    index: usize,
    src: &(impl MatTraitConst + core::ToInputArray),
    full: (usize, usize),
    sub: (usize, usize),
    size: Size,
    interp: i32,
) -> Result<()> {
    if interp != imgproc::INTER_LINEAR {
        return resize_into(planes, index, src, size, interp);
    }
    let key = (full.0, full.1, sub.0, sub.1, size.width, size.height);
    if maps.as_ref().is_none_or(|m| m.key != key) {
        let (map_x, map_y) = chroma_maps(full, sub, size)?;
        *maps = Some(ChromaMaps { key, map_x, map_y });
    }
    let maps = maps.as_ref().expect("built above");
    let mut dst = planes.get(index)?;
    let before = dst.data();
    imgproc::remap(
        src,
        &mut dst,
        &maps.map_x,
        &maps.map_y,
        imgproc::INTER_LINEAR,
        core::BORDER_REPLICATE,
        Scalar::all(0.0),
    )?;
    if dst.data() != before {
        planes.set(index, dst)?;
    }
    Ok(())
}
