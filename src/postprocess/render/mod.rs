//! Renderers, one file per output family: GRAY8 outputs (`gray`), the mask overlay
//! (`overlay`), background blur and replacement (`background`), class colours
//! (`classes`). Each paints the frame in its own format, plane by plane, as the format
//! table's `painted` planes describe.

mod background;
mod classes;
mod gray;
mod overlay;

use opencv::boxed_ref::BoxedRefMut;
use opencv::core::{self, Mat, Scalar, Size};
use opencv::prelude::*;

use super::Postprocessor;
use crate::cvmat::{ensure_same_data, view_mut};
use crate::error::Result;
use crate::frame::{FrameViewMut, PaintedPlane, PixelFormat, Role};

pub use background::Background;
pub(super) use classes::ClassPaint;

/// The source index of each of `dst` outputs when `src` values are stretched over them by
/// OpenCV's `resize` with INTER_NEAREST (`floor(i · (1 / (dst/src)))`, computed the same way
/// so that the two routes pick the same labels).
pub(super) fn nearest_positions(src: usize, dst: usize) -> Vec<usize> {
    let step = 1.0 / (dst as f64 / src as f64);
    (0..dst)
        .map(|i| ((i as f64 * step).floor() as usize).min(src - 1))
        .collect()
}

pub(super) fn one_minus(src: &Mat, dst: &mut Mat) -> Result<()> {
    src.convert_to(dst, core::CV_32F, -1.0, 1.0)?;
    Ok(())
}

pub(super) fn fill_constant(m: &mut Mat, size: Size, typ: i32, value: Scalar) -> Result<()> {
    if m.cols() != size.width || m.rows() != size.height || m.typ() != typ {
        *m = Mat::new_size_with_default(size, typ, value)?;
    } else {
        m.set_to(&value, &core::no_array())?;
    }
    Ok(())
}

impl Postprocessor {
    /// Runs `paint` on each painted plane of `frame` (its index in the format's `painted`
    /// list, its layout, an OpenCV view of its pixels and the plane's size), in place:
    /// `what` names the renderer in the error if OpenCV wrote elsewhere.
    pub(super) fn paint_planes(
        &mut self,
        frame: &mut FrameViewMut<'_>,
        what: &str,
        mut paint: impl FnMut(
            &mut Self,
            usize,
            &PaintedPlane,
            &mut BoxedRefMut<'_, Mat>,
            Size,
        ) -> Result<()>,
    ) -> Result<()> {
        for (index, painted) in frame.format.info().painted.iter().enumerate() {
            let (data, l) = &mut frame.planes[painted.plane];
            let (cols, rows, cn) = (l.width / painted.columns, l.height, painted.roles.len());
            view_mut!(dst = data, rows, cols, cn, l.stride);
            let ptr = dst.data();
            paint(
                self,
                index,
                painted,
                &mut dst,
                Size::new(cols as i32, rows as i32),
            )?;
            ensure_same_data(&dst, ptr, what)?;
        }
        Ok(())
    }
}

/// An overlay colour with its YUV twin in the frame's colorimetry: what it takes to lay
/// it out as the bytes of any painted plane.
#[derive(Debug, Clone, Copy)]
pub(super) struct PaintColour {
    rgb: [u8; 3],
    yuv: [u8; 3],
    gray: bool,
}

impl PaintColour {
    pub(super) fn for_frame(frame: &FrameViewMut<'_>, rgb: [u8; 3]) -> Self {
        PaintColour {
            rgb,
            yuv: frame.colorimetry.rgb_to_yuv(rgb),
            gray: frame.format == PixelFormat::Gray8,
        }
    }

    /// The colour as the bytes of one painted element with these roles (up to 4).
    pub(super) fn pixel(&self, roles: &[Role]) -> [f64; 4] {
        pixel_of(roles, self.rgb, self.yuv, self.gray)
    }
}

/// Colour `rgb` as the bytes of one painted element with these roles (up to 4).
pub(super) fn pixel_of(roles: &[Role], rgb: [u8; 3], yuv: [u8; 3], gray: bool) -> [f64; 4] {
    let mut pixel = [0.0; 4];
    for (p, role) in pixel.iter_mut().zip(roles) {
        *p = role.value(rgb, yuv, gray);
    }
    pixel
}
