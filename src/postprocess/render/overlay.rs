//! The mask overlay: `out = frame·(1 − o·alpha) + colour·o·alpha`, in place, in the
//! frame's format.

use opencv::core::{self, Scalar, Size};
use opencv::imgproc;
use opencv::prelude::*;

use super::super::{Postprocessor, kernels};
use super::{fill_constant, one_minus, pixel_of};
use crate::cvmat::{ensure_same_data, view_mut};
use crate::error::Result;
use crate::frame::{FrameViewMut, PixelFormat};
use crate::kernels::Route;

impl Postprocessor {
    /// `out = frame·(1 − o·alpha) + colour·o·alpha`, in place, in the frame's format.
    ///
    /// Alpha is computed at each plane's own resolution (chroma planes are subsampled).
    /// With a hard mask (blur = 1) the hand-written route blends only the masked pixels
    /// (opacity in 1/256 steps); the OpenCV route uses `addWeighted` and a masked copy.
    /// Soft edges need per-pixel weights (`blendLinear`).
    pub fn render_overlay(
        &mut self,
        frame: &mut FrameViewMut<'_>,
        color: [u8; 3],
        opacity: f32,
    ) -> Result<()> {
        match (self.route, self.config.blur <= 1) {
            (Route::HandWritten, true) => self.overlay_masked_pixels(frame, color, opacity),
            (Route::OpenCv, true) => self.overlay_reference(frame, color, opacity),
            (_, false) => self.overlay_soft(frame, color, opacity),
        }
    }

    /// Soft edges: per-pixel weights, `blendLinear`.
    fn overlay_soft(
        &mut self,
        frame: &mut FrameViewMut<'_>,
        color: [u8; 3],
        opacity: f32,
    ) -> Result<()> {
        let yuv = frame.colorimetry.rgb_to_yuv(color);
        let gray = frame.format == PixelFormat::Gray8;
        for painted in frame.format.info().painted {
            let (data, l) = &mut frame.planes[painted.plane];
            let (cols, rows, cn) = (l.width / painted.columns, l.height, painted.roles.len());
            view_mut!(dst = data, rows, cols, cn, l.stride);
            let ptr = dst.data();
            let size = Size::new(cols as i32, rows as i32);
            self.alpha_u8(size)?;
            let [a, b, c, d] = pixel_of(painted.roles, color, yuv, gray);
            fill_constant(&mut self.constant, size, dst.typ(), Scalar::new(a, b, c, d))?;
            self.alpha
                .convert_to(&mut self.weights, core::CV_32F, opacity as f64 / 255.0, 0.0)?;
            one_minus(&self.weights, &mut self.inverse)?;
            let src = dst.try_clone()?;
            imgproc::blend_linear(&src, &self.constant, &self.inverse, &self.weights, &mut dst)?;
            ensure_same_data(&dst, ptr, "overlay")?;
        }
        Ok(())
    }

    /// One pass over the masked pixels only (see `mask_runs`).
    fn overlay_masked_pixels(
        &mut self,
        frame: &mut FrameViewMut<'_>,
        color: [u8; 3],
        opacity: f32,
    ) -> Result<()> {
        let yuv = frame.colorimetry.rgb_to_yuv(color);
        let gray = frame.format == PixelFormat::Gray8;
        self.prepare_runs()?;
        for painted in frame.format.info().painted {
            let (data, l) = &mut frame.planes[painted.plane];
            let (cols, rows, stride) = (l.width / painted.columns, l.height, l.stride);
            let cn = painted.roles.len();
            let pixel = pixel_of(painted.roles, color, yuv, gray).map(|v| v as u8);
            let (keep, terms) = kernels::blend_terms(pixel, opacity);
            self.colour_terms.clear();
            self.colour_terms
                .extend(terms[..cn].iter().cycle().take(cols * cn).copied());
            let terms = &self.colour_terms;
            self.runs.for_each_row(cols, rows, |y, spans| {
                let row = &mut data[y * stride..y * stride + cols * cn];
                for &(a, b) in spans {
                    kernels::blend_span(&mut row[a * cn..b * cn], &terms[a * cn..b * cn], keep);
                }
            });
        }
        Ok(())
    }
}
