//! The mask overlay: `out = frame·(1 − o·alpha) + colour·o·alpha`, in place, in the
//! frame's format.

use opencv::core::{self, Scalar};
use opencv::imgproc;
use opencv::prelude::*;

use super::super::{Drawing, Postprocessor, kernels};
use super::{PaintColour, fill_constant, one_minus};
use crate::error::Result;
use crate::frame::FrameViewMut;
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
        if self.draw_on_gpu(Drawing::Overlay, frame, color, opacity)? {
            return Ok(());
        }
        let colour = PaintColour::for_frame(frame, color);
        match (self.route, self.config.blur <= 1) {
            (Route::HandWritten, true) => self.overlay_masked_pixels(frame, colour, opacity),
            (Route::OpenCv, true) => self.overlay_reference(frame, colour, opacity),
            (_, false) => self.overlay_soft(frame, colour, opacity),
        }
    }

    /// Soft edges: per-pixel weights, `blendLinear`.
    fn overlay_soft(
        &mut self,
        frame: &mut FrameViewMut<'_>,
        colour: PaintColour,
        opacity: f32,
    ) -> Result<()> {
        self.paint_planes(frame, "overlay", |this, _, painted, dst, size| {
            this.alpha_u8(size)?;
            let [a, b, c, d] = colour.pixel(painted.roles);
            fill_constant(&mut this.constant, size, dst.typ(), Scalar::new(a, b, c, d))?;
            this.alpha
                .convert_to(&mut this.weights, core::CV_32F, opacity as f64 / 255.0, 0.0)?;
            one_minus(&this.weights, &mut this.inverse)?;
            let src = dst.try_clone()?;
            imgproc::blend_linear(&src, &this.constant, &this.inverse, &this.weights, dst)?;
            Ok(())
        })
    }

    /// One pass over the masked pixels only (see `mask_runs`).
    fn overlay_masked_pixels(
        &mut self,
        frame: &mut FrameViewMut<'_>,
        colour: PaintColour,
        opacity: f32,
    ) -> Result<()> {
        self.prepare_runs()?;
        for painted in frame.format.info().painted {
            let (data, l) = &mut frame.planes[painted.plane];
            let (cols, rows, stride) = (l.width / painted.columns, l.height, l.stride);
            let cn = painted.roles.len();
            let pixel = colour.pixel(painted.roles).map(|v| v as u8);
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
