//! Background blur and replacement: `out = frame·alpha + background·(1 − alpha)`.

use opencv::boxed_ref::BoxedRefMut;
use opencv::core::{self, Mat, Size, Vector};
use opencv::imgproc;
use opencv::prelude::*;

use super::super::{Drawing, Postprocessor};
use super::one_minus;
use crate::error::{Error, Result};
use crate::frame::{Colorimetry, FrameViewMut, PixelFormat, Role};

impl Postprocessor {
    /// Keeps the foreground sharp and box-blurs the background:
    /// `out = frame·alpha + blur(frame)·(1 − alpha)`.
    pub fn render_background_blur(
        &mut self,
        frame: &mut FrameViewMut<'_>,
        strength: usize,
    ) -> Result<()> {
        self.draw_on_gpu(Drawing::Other("background-blur"), frame, [0; 3], 0.0)?;
        let (w, h) = (frame.width, frame.height);
        self.composite(frame, |_, dst, out| {
            // Kernel scaled to the plane so chroma and luma blur by the same picture distance.
            let (cols, rows) = (dst.cols() as usize, dst.rows() as usize);
            let kx = ((strength * cols).div_ceil(w.max(1)) | 1).max(1) as i32;
            let ky = ((strength * rows).div_ceil(h.max(1)) | 1).max(1) as i32;
            imgproc::blur(
                dst,
                out,
                Size::new(kx, ky),
                core::Point::new(-1, -1),
                core::BORDER_REPLICATE,
            )?;
            Ok(())
        })
    }

    /// Replaces the background with a picture: `out = frame·alpha + picture·(1 − alpha)`.
    pub fn render_background_replace(
        &mut self,
        frame: &mut FrameViewMut<'_>,
        picture: &mut Background,
    ) -> Result<()> {
        self.draw_on_gpu(Drawing::Other("background-replace"), frame, [0; 3], 0.0)?;
        let planes = picture.planes_for(frame)?;
        self.composite(frame, |plane, _, out| {
            planes[plane].copy_to(out)?;
            Ok(())
        })
    }

    /// `out = frame·alpha + background·(1 − alpha)` plane by plane, where `background`
    /// fills a plane-sized image (given the painted plane's index and its pixels).
    fn composite(
        &mut self,
        frame: &mut FrameViewMut<'_>,
        mut background: impl FnMut(usize, &BoxedRefMut<'_, Mat>, &mut Mat) -> Result<()>,
    ) -> Result<()> {
        self.paint_planes(frame, "background", |this, index, _, dst, size| {
            this.alpha_u8(size)?;
            background(index, dst, &mut this.blurred)?;
            if this.config.blur <= 1 {
                // Background = where the mask is 0.
                core::bitwise_not(&this.alpha, &mut this.hard, &core::no_array())?;
                this.blurred.copy_to_masked(dst, &this.hard)?;
            } else {
                this.alpha
                    .convert_to(&mut this.weights, core::CV_32F, 1.0 / 255.0, 0.0)?;
                one_minus(&this.weights, &mut this.inverse)?;
                let src = dst.try_clone()?;
                imgproc::blend_linear(&src, &this.blurred, &this.weights, &this.inverse, dst)?;
            }
            Ok(())
        })
    }
}

/// A background picture for `render_background_replace`, converted once per frame
/// size and format into plane-sized images in the frame's own format.
pub struct Background {
    rgb: Mat,
    /// Plane images for the frame shape they were made for.
    cache: Option<(FrameShape, Vec<Mat>)>,
}

/// Format, size and colorimetry: what a converted background depends on.
type FrameShape = (PixelFormat, usize, usize, Colorimetry);

impl Background {
    /// Loads a picture file (PNG, JPEG, …). The file is read here, so a missing or
    /// unreadable one is an error that names it (and OpenCV prints nothing of its own).
    pub fn load(path: &std::path::Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| {
            Error::Config(format!(
                "cannot read background picture {}: {e}",
                path.display()
            ))
        })?;
        let encoded = Vector::<u8>::from_slice(&bytes);
        let bgr = opencv::imgcodecs::imdecode(&encoded, opencv::imgcodecs::IMREAD_COLOR)?;
        if bgr.empty() {
            return Err(Error::Config(format!(
                "background picture {} is not an image OpenCV can decode (PNG, JPEG, BMP …)",
                path.display()
            )));
        }
        let mut rgb = Mat::default();
        imgproc::cvt_color(&bgr, &mut rgb, imgproc::COLOR_BGR2RGB, 0)?;
        Ok(Background { rgb, cache: None })
    }

    /// The picture stretched to the frame, one image per painted plane.
    fn planes_for(&mut self, frame: &FrameViewMut<'_>) -> Result<&[Mat]> {
        let key = (frame.format, frame.width, frame.height, frame.colorimetry);
        if self.cache.as_ref().is_none_or(|(k, _)| *k != key) {
            let yuv = frame.colorimetry.rgb_to_yuv_rows();
            let gray = frame.format == PixelFormat::Gray8;
            let mut planes = Vec::new();
            for painted in frame.format.info().painted {
                let l = frame.planes[painted.plane].1;
                let size = Size::new((l.width / painted.columns) as i32, l.height as i32);
                let mut small = Mat::default();
                imgproc::resize(&self.rgb, &mut small, size, 0.0, 0.0, imgproc::INTER_AREA)?;
                // One row per channel of the plane: a linear map of (R, G, B, 1).
                let rows: Vec<[f64; 4]> = painted
                    .roles
                    .iter()
                    .map(|role: &Role| role.rgb_row(&yuv, gray))
                    .collect();
                let m = Mat::from_slice_2d(&rows)?;
                let mut out = Mat::default();
                core::transform(&small, &mut out, &m)?;
                planes.push(out);
            }
            self.cache = Some((key, planes));
        }
        Ok(&self.cache.as_ref().expect("filled above").1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Set in the child process of `a_missing_background_is_named_and_opencv_stays_quiet`.
    const CHILD: &str = "FFNETSEG_BACKGROUND_CHILD";

    #[test]
    fn a_missing_background_is_named_and_opencv_stays_quiet() {
        let missing = std::path::Path::new("/nonexistent/ffnetseg-background.png");
        let e = Background::load(missing)
            .err()
            .expect("a missing file is an error");
        let e = e.to_string();
        assert!(
            e.contains("/nonexistent/ffnetseg-background.png") && e.contains("No such file"),
            "{e}"
        );
        if std::env::var_os(CHILD).is_some() {
            return;
        }
        // OpenCV writes its warnings straight to stderr: run this test again in a child
        // process and read what it printed.
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "postprocess::render::background::tests::a_missing_background_is_named_and_opencv_stays_quiet",
                "--nocapture",
            ])
            .env(CHILD, "1")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        assert!(!stderr.contains("WARN"), "OpenCV printed: {stderr}");
    }
}
