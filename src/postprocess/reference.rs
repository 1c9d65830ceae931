//! The OpenCV-only route ([`Route::OpenCv`](crate::kernels::Route)) of the hard mask, the
//! hard-mask overlay and the class colours: the reference the hand-written route is tested
//! and benchmarked against (`resize`, `compare`, `addWeighted`, masked copies, `LUT`).

use opencv::core::{self, Mat, Scalar, Size, Vector};
use opencv::imgproc;
use opencv::prelude::*;

use super::Postprocessor;
use super::render::fill_constant;
use crate::classes::palette_color;
use crate::cvmat::{ensure_same_data, view_mut};
use crate::error::Result;
use crate::frame::{FrameViewMut, PixelFormat, Role};

impl Postprocessor {
    /// The hard mask `s_up > threshold` at `size` (u8, 0 or 255): upsample, then compare.
    pub(super) fn mask_u8_reference(&mut self, size: Size) -> Result<()> {
        self.upsampled_u16(size)?;
        let t = (self.config.threshold as f64 * 65535.0).floor();
        core::compare(&self.up_u16, &Scalar::all(t), &mut self.hard, core::CMP_GT)?;
        Ok(())
    }

    /// The hard-mask overlay with `addWeighted` and a masked copy (or a masked fill at
    /// full opacity).
    pub(super) fn overlay_reference(
        &mut self,
        frame: &mut FrameViewMut<'_>,
        color: [u8; 3],
        opacity: f32,
    ) -> Result<()> {
        let yuv = frame.colorimetry.rgb_to_yuv(color);
        let gray = frame.format == PixelFormat::Gray8;
        let o = opacity as f64;
        for painted in frame.format.info().painted {
            let (data, l) = &mut frame.planes[painted.plane];
            let (cols, rows, cn) = (l.width / painted.columns, l.height, painted.roles.len());
            view_mut!(dst = data, rows, cols, cn, l.stride);
            let ptr = dst.data();
            let size = Size::new(cols as i32, rows as i32);
            self.alpha_u8(size)?;
            let [a, b, c, d] = super::render::pixel_of(painted.roles, color, yuv, gray);
            let colour = Scalar::new(a, b, c, d);
            if o >= 1.0 {
                dst.set_to(&colour, &self.alpha)?;
            } else {
                fill_constant(&mut self.constant, size, dst.typ(), colour)?;
                core::add_weighted(&dst, 1.0 - o, &self.constant, o, 0.0, &mut self.blended, -1)?;
                self.blended.copy_to_masked(&mut dst, &self.alpha)?;
            }
            ensure_same_data(&dst, ptr, "overlay")?;
        }
        Ok(())
    }

    /// Class colours by nearest-neighbour label upsampling, one palette `LUT` per channel
    /// and `addWeighted`.
    pub(super) fn classes_reference(
        &mut self,
        frame: &mut FrameViewMut<'_>,
        opacity: f32,
    ) -> Result<()> {
        let colorimetry = frame.colorimetry;
        let gray = frame.format == PixelFormat::Gray8;
        for painted in frame.format.info().painted {
            let (data, l) = &mut frame.planes[painted.plane];
            let (cols, rows, cn) = (l.width / painted.columns, l.height, painted.roles.len());
            view_mut!(dst = data, rows, cols, cn, l.stride);
            let ptr = dst.data();
            let size = Size::new(cols as i32, rows as i32);
            imgproc::resize(
                &self.labels_small,
                &mut self.labels,
                size,
                0.0,
                0.0,
                imgproc::INTER_NEAREST,
            )?;
            let mut channels = Vector::<Mat>::new();
            for role in painted.roles {
                let lut = palette_lut(*role, colorimetry, gray);
                let lut = Mat::from_slice(&lut)?;
                let mut m = Mat::default();
                core::lut(&self.labels, &lut, &mut m)?;
                channels.push(m);
            }
            core::merge(&channels, &mut self.palette_image)?;
            let src = dst.try_clone()?;
            let o = opacity as f64;
            core::add_weighted(&src, 1.0 - o, &self.palette_image, o, 0.0, &mut dst, -1)?;
            ensure_same_data(&dst, ptr, "class overlay")?;
        }
        Ok(())
    }
}

/// Byte `role` of every label's palette colour.
fn palette_lut(role: Role, colorimetry: crate::frame::Colorimetry, gray: bool) -> [u8; 256] {
    let mut lut = [0u8; 256];
    for (i, v) in lut.iter_mut().enumerate() {
        let rgb = palette_color(i);
        *v = role.value(rgb, colorimetry.rgb_to_yuv(rgb), gray) as u8;
    }
    lut
}
