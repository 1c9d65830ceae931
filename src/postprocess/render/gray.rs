//! The GRAY8 outputs: mask, soft matte, labels.

use opencv::core::{self, Size};
use opencv::prelude::*;

use super::super::{Drawing, GrayKind, Postprocessor};
use crate::cvmat::{ensure_same_data, view_mut};
use crate::error::{Error, Result};
use crate::frame::{FrameViewMut, PixelFormat};
use crate::kernels::Route;

impl Postprocessor {
    /// Writes a GRAY8 image: `mask` = alpha·255 (0/255 when blur is off),
    /// `soft` = probability·255, `labels` = class index.
    pub fn render_gray(&mut self, kind: GrayKind, out: &mut FrameViewMut<'_>) -> Result<()> {
        if out.format != PixelFormat::Gray8 {
            return Err(Error::Input("mask output must be GRAY8".into()));
        }
        let drawing = match kind {
            GrayKind::Mask => Drawing::Mask,
            GrayKind::Soft => Drawing::Alpha,
            GrayKind::Labels => Drawing::Labels,
        };
        if self.draw_on_gpu(drawing, out, [0; 3], 0.0)? {
            return Ok(());
        }
        let (w, h) = (out.width, out.height);
        let (data, l) = &mut out.planes[0];
        let stride = l.stride;
        if kind == GrayKind::Mask && self.route == Route::HandWritten && self.config.blur <= 1 {
            // Straight into the output buffer: no frame-sized copy.
            return self.write_mask(data, stride, w, h);
        }
        let size = Size::new(w as i32, h as i32);
        match kind {
            GrayKind::Mask => self.alpha_u8(size)?,
            GrayKind::Soft => self.upsampled_u16(size)?,
            GrayKind::Labels => {
                self.labels_at(w, h)?;
            }
        }
        view_mut!(dst = data, h, w, 1, stride);
        let ptr = dst.data();
        match kind {
            GrayKind::Mask => self.alpha.copy_to(&mut dst)?,
            GrayKind::Soft => {
                self.up_u16
                    .convert_to(&mut dst, core::CV_8U, 255.0 / 65535.0, 0.0)?
            }
            GrayKind::Labels => self.labels.copy_to(&mut dst)?,
        }
        ensure_same_data(&dst, ptr, "mask output")
    }
}
