//! The OpenCV-only route ([`Route::OpenCv`](crate::kernels::Route)) of the hard mask, the
//! hard-mask overlay and the class colours: the reference the hand-written route is tested
//! and benchmarked against (`resize`, `compare`, `addWeighted`, masked copies, `LUT`).

use opencv::core::{self, Mat, Scalar, Size, Vector};
use opencv::imgproc;
use opencv::prelude::*;

use super::Postprocessor;
use super::render::{PaintColour, fill_constant};
use crate::classes::palette_color;
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
        colour: PaintColour,
        opacity: f32,
    ) -> Result<()> {
        let o = opacity as f64;
        self.paint_planes(frame, "overlay", |this, _, painted, dst, size| {
            this.alpha_u8(size)?;
            let [a, b, c, d] = colour.pixel(painted.roles);
            let colour = Scalar::new(a, b, c, d);
            if o >= 1.0 {
                dst.set_to(&colour, &this.alpha)?;
            } else {
                fill_constant(&mut this.constant, size, dst.typ(), colour)?;
                core::add_weighted(
                    &*dst,
                    1.0 - o,
                    &this.constant,
                    o,
                    0.0,
                    &mut this.blended,
                    -1,
                )?;
                this.blended.copy_to_masked(dst, &this.alpha)?;
            }
            Ok(())
        })
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
        self.paint_planes(frame, "class overlay", |this, _, painted, dst, size| {
            imgproc::resize(
                &this.labels_small,
                &mut this.labels,
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
                core::lut(&this.labels, &lut, &mut m)?;
                channels.push(m);
            }
            core::merge(&channels, &mut this.palette_image)?;
            let src = dst.try_clone()?;
            let o = opacity as f64;
            core::add_weighted(&src, 1.0 - o, &this.palette_image, o, 0.0, dst, -1)?;
            Ok(())
        })
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
