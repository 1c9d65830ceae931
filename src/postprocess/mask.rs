//! The smoothed map at a requested size: cropped to the picture (letterbox), upsampled,
//! thresholded, blurred, or its top class per pixel.

use opencv::core::{self, Mat, Rect, Scalar, Size};
use opencv::imgproc;
use opencv::prelude::*;

use super::Postprocessor;
use crate::error::{Error, Result};
use crate::kernels::Route;

impl Postprocessor {
    /// The picture's part (letterbox) of class `class`'s rows at model resolution.
    pub(super) fn crop_rect(&self, class: usize) -> Result<Rect> {
        let spec = self.spec.ok_or_else(no_result)?;
        let (h, w) = (spec.height as f64, spec.width as f64);
        let full = Rect::new(
            0,
            (class * spec.height) as i32,
            spec.width as i32,
            spec.height as i32,
        );
        let rect = match self.region {
            Some((r, tw, th)) if r.width != tw || r.height != th => {
                let sx = w / tw as f64;
                let sy = h / th as f64;
                let x = (r.x as f64 * sx).floor() as i32;
                let y = (r.y as f64 * sy).floor() as i32;
                let rw = ((r.width as f64 * sx).ceil() as i32).clamp(1, spec.width as i32 - x);
                let rh = ((r.height as f64 * sy).ceil() as i32).clamp(1, spec.height as i32 - y);
                Rect::new(x, full.y + y, rw, rh)
            }
            _ => full,
        };
        Ok(rect)
    }

    /// Smoothed foreground probability upsampled to `width`×`height` (f32, 0..1): the
    /// soft matte before thresholding.
    pub fn probability_at(&mut self, width: usize, height: usize) -> Result<&Mat> {
        self.sync_host()?;
        let rect = self.crop_rect(0)?;
        let crop = self.smoothed.as_ref().ok_or_else(no_result)?.roi(rect)?;
        imgproc::resize(
            &crop,
            &mut self.upsampled,
            Size::new(width as i32, height as i32),
            0.0,
            0.0,
            imgproc::INTER_LINEAR,
        )?;
        Ok(&self.upsampled)
    }

    /// The smoothed probability bilinearly upsampled to `size` in 16-bit fixed point
    /// (0..65535). Half the memory traffic of f32 at frame resolution, and 1/65535 steps
    /// are far finer than any threshold needs.
    pub(super) fn upsampled_u16(&mut self, size: Size) -> Result<()> {
        // The crop is a header over the smoothed map: no copy.
        let rect = self.crop_rect(0)?;
        let crop = self.smoothed.as_ref().ok_or_else(no_result)?.roi(rect)?;
        crop.convert_to(&mut self.small_u16, core::CV_16U, 65535.0, 0.0)?;
        imgproc::resize(
            &self.small_u16,
            &mut self.up_u16,
            size,
            0.0,
            0.0,
            imgproc::INTER_LINEAR,
        )?;
        Ok(())
    }

    /// The hard mask `s_up > threshold` at `size` (u8, 0 or 255).
    pub(super) fn mask_u8(&mut self, size: Size) -> Result<()> {
        if self.route == Route::OpenCv {
            return self.mask_u8_reference(size);
        }
        if self.hard.size()? != size || self.hard.typ() != core::CV_8UC1 {
            self.hard = Mat::new_size_with_default(size, core::CV_8UC1, Scalar::all(0.0))?;
        }
        let (cols, rows) = (size.width as usize, size.height as usize);
        let mut hard = std::mem::take(&mut self.hard);
        let written = self.write_mask(hard.data_bytes_mut()?, cols, cols, rows);
        self.hard = hard;
        written
    }

    /// The hard mask (0/255) from the runs into rows of `cols` bytes, `stride` apart.
    pub(super) fn write_mask(
        &mut self,
        out: &mut [u8],
        stride: usize,
        cols: usize,
        rows: usize,
    ) -> Result<()> {
        self.prepare_runs()?;
        self.runs.for_each_row(cols, rows, |y, spans| {
            let row = &mut out[y * stride..y * stride + cols];
            row.fill(0);
            for &(a, b) in spans {
                row[a..b].fill(255);
            }
        });
        Ok(())
    }

    /// Classifies the smoothed map (cropped to the picture) against the threshold, once
    /// per result or setting change.
    pub(super) fn prepare_runs(&mut self) -> Result<()> {
        if self.runs_ready {
            return Ok(());
        }
        let rect = self.crop_rect(0)?;
        let s = self.smoothed.as_ref().ok_or_else(no_result)?;
        let stride = s.cols() as usize;
        self.runs.prepare(
            s.data_typed::<f32>()?,
            stride,
            (rect.x as usize, rect.y as usize),
            (rect.width as usize, rect.height as usize),
            self.config.threshold,
        )?;
        self.runs_ready = true;
        Ok(())
    }

    /// alpha = blur(s_up > threshold) at `size` as u8 (0..255); without blur, the hard
    /// mask itself.
    pub(super) fn alpha_u8(&mut self, size: Size) -> Result<()> {
        self.mask_u8(size)?;
        let k = self.config.blur as i32;
        if k > 1 {
            imgproc::blur(
                &self.hard,
                &mut self.alpha,
                Size::new(k, k),
                core::Point::new(-1, -1),
                core::BORDER_DEFAULT,
            )?;
        } else {
            std::mem::swap(&mut self.alpha, &mut self.hard);
        }
        Ok(())
    }

    /// alpha = blur(s_up > threshold) at `width`×`height` (f32 in [0, 1]).
    pub fn alpha_at(&mut self, width: usize, height: usize) -> Result<Mat> {
        self.sync_host()?;
        self.alpha_u8(Size::new(width as i32, height as i32))?;
        let mut a = Mat::default();
        self.alpha
            .convert_to(&mut a, core::CV_32F, 1.0 / 255.0, 0.0)?;
        Ok(a)
    }

    /// Top class per pixel at model resolution (u8): argmax of the smoothed class
    /// probabilities, or 0/1 for a one-channel model.
    pub(super) fn labels_small(&mut self) -> Result<()> {
        let spec = self.spec.ok_or_else(no_result)?;
        if spec.classes == 1 {
            let rect = self.crop_rect(0)?;
            let crop = self.smoothed.as_ref().ok_or_else(no_result)?.roi(rect)?;
            let threshold = self.config.threshold as f64;
            let best = &mut self.labels_best;
            imgproc::threshold(&crop, best, threshold, 1.0, imgproc::THRESH_BINARY)?;
            best.convert_to(&mut self.labels_small, core::CV_8U, 1.0, 0.0)?;
            return Ok(());
        }
        let probs = self.smoothed_classes.as_ref().expect("multi-class state");
        let first = probs.roi(self.crop_rect(0)?)?;
        first.copy_to(&mut self.labels_best)?;
        let size = first.size()?;
        if self.labels_small.size()? != size || self.labels_small.typ() != core::CV_8UC1 {
            self.labels_small = Mat::new_size_with_default(size, core::CV_8UC1, Scalar::all(0.0))?;
        } else {
            self.labels_small
                .set_to(&Scalar::all(0.0), &core::no_array())?;
        }
        for k in 1..spec.classes {
            let p = probs.roi(self.crop_rect(k)?)?;
            // Where this class beats the best so far, it becomes the label.
            let beaten = &mut self.labels_beaten;
            core::compare(&p, &self.labels_best, beaten, core::CMP_GT)?;
            self.labels_small.set_to(&Scalar::all(k as f64), beaten)?;
            p.copy_to_masked(&mut self.labels_best, beaten)?;
        }
        Ok(())
    }

    /// Top class per pixel at `width`×`height` (u8, nearest-neighbour upsampling).
    pub fn labels_at(&mut self, width: usize, height: usize) -> Result<&Mat> {
        self.sync_host()?;
        self.labels_small()?;
        imgproc::resize(
            &self.labels_small,
            &mut self.labels,
            Size::new(width as i32, height as i32),
            0.0,
            0.0,
            imgproc::INTER_NEAREST,
        )?;
        Ok(&self.labels)
    }
}

/// The error of a call that needs a model result before any came.
pub(super) fn no_result() -> Error {
    Error::Input("no model result received yet".into())
}
