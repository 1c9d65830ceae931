//! segpostproc's GPU route (`compute=gpu`): the scores are uploaded once per result, one
//! kernel makes p_t and updates the smoothing state, which stays on the device between
//! frames (the class probabilities of multi-class models too), and one kernel per painted
//! plane thresholds the bilinear upsample and blends the overlay colour in place (or
//! writes the hard mask).
//!
//! Modes with kernels: `overlay` and `mask` (any blur), `alpha`, `classes` and `labels`.
//! Every other mode and setting reads a copy of the state downloaded to the host and runs
//! on the CPU ([`supports`]), so switching modes never loses the average.

use opencv::core::{self, Mat, Rect, UMat};
use opencv::prelude::*;

use super::mask_runs::Axis;
use super::render::{nearest_positions, pixel_of};
use super::{PostprocessConfig, ScoresView};
use crate::classes::palette_color;
use crate::cvmat::{view, view_mut};
use crate::error::Result;
use crate::frame::{FrameViewMut, PixelFormat};
use crate::opencl::{self, Active, Args};
use crate::tensor::{Layout, OutputSpec};

const SOURCE: &str = include_str!("post.cl");

/// What a frame is drawn with, for [`supports`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drawing {
    Overlay,
    Mask,
    /// The soft matte (mode=alpha).
    Alpha,
    Classes,
    Labels,
    Other(&'static str),
}

/// Why `drawing` has no GPU kernel (None: it has one).
pub(super) fn supports(drawing: Drawing) -> Option<String> {
    match drawing {
        Drawing::Overlay | Drawing::Mask | Drawing::Alpha | Drawing::Classes | Drawing::Labels => {
            None
        }
        Drawing::Other(name) => Some(format!("mode={name} has no GPU kernel")),
    }
}

/// A `rows`×`cols` byte image on the device (kept when it has that size).
fn device_image(m: &mut UMat, cols: usize, rows: usize) -> Result<()> {
    if m.rows() != rows as i32 || m.cols() != cols as i32 {
        *m = UMat::new_rows_cols_def(rows as i32, cols as i32, core::CV_8UC1)?;
    }
    Ok(())
}

/// What one frame is painted with.
#[derive(Clone, Copy)]
pub(super) struct PaintJob {
    /// The picture's part of the map (letterbox).
    crop: Rect,
    threshold: f32,
    drawing: Drawing,
    blur: usize,
    opacity: f32,
    colour: super::render::PaintColour,
}

/// The device state and buffers, kept between frames.
pub(super) struct GpuPost {
    update: core::Kernel,
    paint: core::Kernel,
    blur: core::Kernel,
    soft: core::Kernel,
    classes: core::Kernel,
    /// mode=classes / labels tables, one set per painted plane (at most four).
    class_tables: [ClassTables; 4],
    /// The hard mask of an overlay before its blur, and the blurred mask (blur > 1).
    mask: UMat,
    hard: UMat,
    scores: UMat,
    selected: UMat,
    selected_for: Vec<usize>,
    /// s_t (H×W f32) and the smoothed class probabilities ((C·H)×W f32).
    smoothed: UMat,
    class_state: UMat,
    spec: Option<OutputSpec>,
    /// Pixels of the plane being painted, and the sampling tables per plane size.
    pixels: UMat,
    tables: Vec<PlaneTables>,
}

/// The sampling tables (source index, weight bits per output) of one plane size.
struct PlaneTables {
    /// Crop width and height, plane columns and rows.
    key: (usize, usize, usize, usize),
    x: UMat,
    y: UMat,
}

/// What mode=classes / labels tables of one plane depend on.
#[derive(Clone, Copy, PartialEq)]
struct TablesKey {
    format: PixelFormat,
    plane: usize,
    crop: (i32, i32),
    size: (usize, usize),
    opacity: u32,
    colorimetry: crate::frame::Colorimetry,
}

/// Nearest-neighbour positions and palette blend terms of one painted plane, on the device;
/// rebuilt only when their key changes (not per frame).
struct ClassTables {
    key: Option<TablesKey>,
    x: UMat,
    y: UMat,
    palette: UMat,
    keep: i32,
}

impl Default for ClassTables {
    fn default() -> Self {
        ClassTables {
            key: None,
            x: UMat::new_def(),
            y: UMat::new_def(),
            palette: UMat::new_def(),
            keep: 256,
        }
    }
}

impl ClassTables {
    fn prepare(&mut self, key: TablesKey, roles: &[crate::frame::Role], gray: bool) -> Result<()> {
        if self.key == Some(key) {
            return Ok(());
        }
        let positions = |src: i32, dst: usize| -> Vec<i32> {
            nearest_positions(src as usize, dst)
                .into_iter()
                .map(|v| v as i32)
                .collect()
        };
        let (cols, rows) = key.size;
        opencl::upload(
            bytemuck::cast_slice(&positions(key.crop.0, cols)),
            &mut self.x,
        )?;
        opencl::upload(
            bytemuck::cast_slice(&positions(key.crop.1, rows)),
            &mut self.y,
        )?;
        let opacity = f32::from_bits(key.opacity);
        let mut terms = Vec::with_capacity(256 * roles.len());
        for label in 0..256 {
            let rgb = palette_color(label);
            let pixel = pixel_of(roles, rgb, key.colorimetry.rgb_to_yuv(rgb), gray);
            let (k, t) = super::kernels::blend_terms(pixel.map(|v| v as u8), opacity);
            self.keep = k as i32;
            terms.extend(t[..roles.len()].iter().map(|v| *v as i32));
        }
        opencl::upload(bytemuck::cast_slice(&terms), &mut self.palette)?;
        self.key = Some(key);
        Ok(())
    }
}

impl GpuPost {
    pub(super) fn new() -> Result<Self> {
        Ok(GpuPost {
            update: opencl::build_kernel("update_scores", SOURCE, "")?,
            paint: opencl::build_kernel("paint_plane", SOURCE, "")?,
            blur: opencl::build_kernel("box_blur", SOURCE, "")?,
            soft: opencl::build_kernel("blend_soft", SOURCE, "")?,
            classes: opencl::build_kernel("paint_classes", SOURCE, "")?,
            class_tables: Default::default(),
            mask: UMat::new_def(),
            hard: UMat::new_def(),
            scores: UMat::new_def(),
            selected: UMat::new_def(),
            selected_for: Vec::new(),
            smoothed: UMat::new_def(),
            class_state: UMat::new_def(),
            spec: None,
            pixels: UMat::new_def(),
            tables: Vec::new(),
        })
    }

    pub(super) fn has_state(&self) -> bool {
        self.spec.is_some()
    }

    pub(super) fn reset(&mut self) {
        self.spec = None;
    }

    /// Feeds one result: p_t and s_t on the device.
    pub(super) fn update(
        &mut self,
        scores: &ScoresView<'_>,
        config: &PostprocessConfig,
    ) -> Result<()> {
        let spec = scores.spec;
        let (plane, c) = (spec.width * spec.height, spec.classes);
        let restart = self.spec != Some(spec);
        opencl::upload(bytemuck::cast_slice(scores.data), &mut self.scores)?;
        if restart {
            self.smoothed =
                UMat::new_rows_cols_def(spec.height as i32, spec.width as i32, core::CV_32FC1)?;
            self.class_state = UMat::new_rows_cols_def(
                (c * spec.height) as i32,
                spec.width as i32,
                core::CV_32FC1,
            )?;
        }
        let selected: Vec<usize> = config.classes.iter().copied().filter(|k| *k < c).collect();
        if restart || selected != self.selected_for {
            // At least one entry so the buffer exists; n_selected says how many count.
            let ints: Vec<i32> = selected.iter().map(|k| *k as i32).chain([0]).collect();
            opencl::upload(bytemuck::cast_slice(&ints), &mut self.selected)?;
            self.selected_for = selected;
        }
        Args::new(&mut self.update)
            .buffer(&self.scores)?
            .i32(c as i32)?
            .i32((spec.layout == Layout::Nhwc) as i32)?
            .i32(plane as i32)?
            .buffer(&self.class_state)?
            .buffer(&self.smoothed)?
            .buffer(&self.selected)?
            .i32(self.selected_for.len() as i32)?
            .f32(config.smoothing)?
            .i32(restart as i32)?;
        opencl::run_2d(&mut self.update, plane, 1)?;
        self.spec = Some(spec);
        Ok(())
    }

    /// Copies the device state into the CPU route's Mats (for modes without a kernel).
    pub(super) fn download_state(
        &self,
        smoothed: &mut Option<Mat>,
        classes: &mut Option<Mat>,
    ) -> Result<()> {
        let spec = self.spec.expect("only called with a state");
        self.smoothed
            .copy_to(smoothed.get_or_insert_with(Mat::default))?;
        if spec.classes > 1 {
            self.class_state
                .copy_to(classes.get_or_insert_with(Mat::default))?;
        } else {
            *classes = None;
        }
        Ok(())
    }

    /// The overlay (with the blend's `keep` and colour `terms`), the hard mask or the soft
    /// matte of every painted plane of `frame`, in place. `crop` is the picture's part of
    /// the map (letterbox).
    pub(super) fn paint(&mut self, frame: &mut FrameViewMut<'_>, job: &PaintJob) -> Result<()> {
        let PaintJob {
            crop,
            threshold,
            drawing,
            blur,
            opacity,
            colour,
        } = *job;
        let blend = |roles: &[crate::frame::Role]| {
            super::kernels::blend_terms(colour.pixel(roles).map(|v| v as u8), opacity)
        };
        let map_stride = self.smoothed.cols();
        // post.cl's OVERLAY, MASK, SOFT; a GRAY8 output is written whole: no upload.
        let (output, mask) = match drawing {
            Drawing::Mask => (1, true),
            Drawing::Alpha => (2, true),
            _ => (0, false),
        };
        for painted in frame.format.info().painted {
            let (data, l) = &mut frame.planes[painted.plane];
            let (cols, rows, cn) = (l.width / painted.columns, l.height, painted.roles.len());
            let (keep, terms) = blend(painted.roles);
            {
                // Mask output overwrites every pixel: no upload needed.
                view!(src = &**data, rows, cols * cn, 1, l.stride);
                if !mask {
                    src.copy_to(&mut self.pixels)?;
                } else if self.pixels.rows() != rows as i32
                    || self.pixels.cols() != (cols * cn) as i32
                {
                    self.pixels =
                        UMat::new_rows_cols_def(rows as i32, (cols * cn) as i32, core::CV_8UC1)?;
                }
            }
            let t = self.tables_for(crop, cols, rows)?;
            // A blurred overlay: the hard mask into its own buffer first, blended below.
            let soft = drawing == Drawing::Overlay && blur > 1;
            if soft {
                device_image(&mut self.mask, cols, rows)?;
            }
            let (target, stride, step, output) = match soft {
                true => (&self.mask, cols, 1, 1),
                false => (&self.pixels, cols * cn, cn, output),
            };
            let args = Args::new(&mut self.paint)
                .buffer(target)?
                .i32(stride as i32)?
                .i32(step as i32)?
                .i32(cols as i32)?
                .i32(rows as i32)?
                .buffer(&self.smoothed)?
                .i32(map_stride)?
                .i32(crop.x)?
                .i32(crop.y)?
                .i32(crop.width)?
                .i32(crop.height)?
                .buffer(&self.tables[t].x)?
                .buffer(&self.tables[t].y)?
                .f32(threshold)?
                .i32(keep as i32)?;
            let args = terms.iter().try_fold(args, |a, t| a.i32(*t as i32))?;
            args.i32(output)?;
            opencl::run_2d(&mut self.paint, cols, rows)?;
            let result = if drawing == Drawing::Mask && blur > 1 {
                self.blur_mask(false, cols, rows, blur)?;
                &self.hard
            } else if soft {
                self.blur_mask(true, cols, rows, blur)?;
                self.blend_soft(cn, cols, rows, opacity, colour.pixel(painted.roles))?;
                &self.pixels
            } else {
                &self.pixels
            };
            view_mut!(dst = &mut **data, rows, cols * cn, 1, l.stride);
            let ptr = dst.data();
            result.copy_to(&mut dst)?;
            crate::cvmat::ensure_same_data(&dst, ptr, "GPU overlay")?;
        }
        Ok(())
    }

    /// mode=classes (`labels` false: the palette blended at `opacity`) or mode=labels (the
    /// label bytes) into every painted plane of `frame`, in place.
    pub(super) fn paint_classes(
        &mut self,
        frame: &mut FrameViewMut<'_>,
        crop: Rect,
        threshold: f32,
        labels: bool,
        opacity: f32,
    ) -> Result<()> {
        let spec = self.spec.expect("only called with a state");
        let (gray, colorimetry) = (frame.format == PixelFormat::Gray8, frame.colorimetry);
        for painted in frame.format.info().painted {
            let (data, l) = &mut frame.planes[painted.plane];
            let (cols, rows, cn) = (l.width / painted.columns, l.height, painted.roles.len());
            {
                view!(src = &**data, rows, cols * cn, 1, l.stride);
                src.copy_to(&mut self.pixels)?;
            }
            let key = TablesKey {
                format: frame.format,
                plane: painted.plane,
                crop: (crop.width, crop.height),
                size: (cols, rows),
                opacity: opacity.to_bits(),
                colorimetry,
            };
            let tables = &mut self.class_tables[painted.plane];
            tables.prepare(key, painted.roles, gray)?;
            let state = if spec.classes == 1 {
                &self.smoothed
            } else {
                &self.class_state
            };
            Args::new(&mut self.classes)
                .buffer(&self.pixels)?
                .i32(cn as i32)?
                .i32(cols as i32)?
                .i32(rows as i32)?
                .buffer(state)?
                .i32(spec.classes as i32)?
                .i32(spec.width as i32)?
                .i32(spec.height as i32)?
                .i32(crop.x)?
                .i32(crop.y)?
                .f32(threshold)?
                .buffer(&tables.x)?
                .buffer(&tables.y)?
                .buffer(&tables.palette)?
                .i32(tables.keep)?
                .i32(labels as i32)?;
            opencl::run_2d(&mut self.classes, cols, rows)?;
            view_mut!(dst = &mut **data, rows, cols * cn, 1, l.stride);
            let ptr = dst.data();
            self.pixels.copy_to(&mut dst)?;
            crate::cvmat::ensure_same_data(&dst, ptr, "GPU classes")?;
        }
        Ok(())
    }

    /// The box blur of the hard mask (in `pixels` for mode=mask, in `mask` for an overlay)
    /// into `hard`.
    fn blur_mask(&mut self, overlay: bool, cols: usize, rows: usize, k: usize) -> Result<()> {
        device_image(&mut self.hard, cols, rows)?;
        let source = if overlay { &self.mask } else { &self.pixels };
        Args::new(&mut self.blur)
            .buffer(source)?
            .i32(cols as i32)?
            .i32(rows as i32)?
            .i32(k as i32)?
            .buffer(&self.hard)?;
        opencl::run_2d(&mut self.blur, cols, rows)
    }

    /// The blurred overlay of `pixels` with the blurred mask in `hard` as the weights.
    fn blend_soft(
        &mut self,
        cn: usize,
        cols: usize,
        rows: usize,
        opacity: f32,
        colour: [f64; 4],
    ) -> Result<()> {
        let args = Args::new(&mut self.soft)
            .buffer(&self.pixels)?
            .i32(cn as i32)?
            .i32(cols as i32)?
            .i32(rows as i32)?
            .buffer(&self.hard)?
            .f32((opacity as f64 / 255.0) as f32)?;
        colour
            .iter()
            .try_fold(args, |a, c| a.i32(c.round().clamp(0.0, 255.0) as i32))?;
        opencl::run_2d(&mut self.soft, cols, rows)
    }

    /// The index of the sampling tables for a plane size (built once; mask_runs's Axis).
    fn tables_for(&mut self, crop: Rect, cols: usize, rows: usize) -> Result<usize> {
        let key = (crop.width as usize, crop.height as usize, cols, rows);
        if let Some(i) = self.tables.iter().position(|t| t.key == key) {
            return Ok(i);
        }
        if self.tables.len() >= 4 {
            self.tables.clear();
        }
        let table = |axis: Axis| -> Result<UMat> {
            let ints: Vec<i32> = axis
                .src
                .iter()
                .zip(&axis.frac)
                .flat_map(|(s, f)| [*s as i32, f.to_bits() as i32])
                .collect();
            let mut m = UMat::new_def();
            opencl::upload(bytemuck::cast_slice(&ints), &mut m)?;
            Ok(m)
        };
        let x = table(Axis::new(key.0, cols))?;
        let y = table(Axis::new(key.1, rows))?;
        self.tables.push(PlaneTables { key, x, y });
        Ok(self.tables.len() - 1)
    }
}

impl super::Postprocessor {
    /// Feeds a result to the GPU route when it is active: Ok(true) when it took it,
    /// Ok(false) when it failed and the CPU route takes over (fallback allowed).
    pub(super) fn update_on_gpu(&mut self, scores: &ScoresView<'_>) -> Result<bool> {
        let Some((g, _)) = self.gpu.as_mut() else {
            return Ok(false);
        };
        match g.update(scores, &self.config) {
            Ok(()) => {
                self.host_stale = true;
                Ok(true)
            }
            Err(e) => self.gpu_failed(e).map(|_| false),
        }
    }

    /// Draws `drawing` on the GPU when it is active and has a kernel for it: Ok(true) when
    /// done. Otherwise brings the state to the host for the CPU renderers: Ok(false).
    pub(super) fn draw_on_gpu(
        &mut self,
        drawing: Drawing,
        frame: &mut FrameViewMut<'_>,
        color: [u8; 3],
        opacity: f32,
    ) -> Result<bool> {
        if self.gpu.is_some() && self.has_state() {
            match supports(drawing) {
                Some(why) => self.set_active(Active::Cpu, Some(why)),
                None => match self.paint_on_gpu(drawing, frame, color, opacity) {
                    Ok(()) => {
                        let name = self
                            .gpu
                            .as_ref()
                            .map(|(_, n)| n.clone())
                            .unwrap_or_default();
                        self.set_active(Active::Gpu(name), None);
                        return Ok(true);
                    }
                    Err(e) => self.gpu_failed(e)?,
                },
            }
        }
        self.sync_host()?;
        Ok(false)
    }

    fn paint_on_gpu(
        &mut self,
        drawing: Drawing,
        frame: &mut FrameViewMut<'_>,
        color: [u8; 3],
        opacity: f32,
    ) -> Result<()> {
        let crop = self.crop_rect(0)?;
        let threshold = self.config.threshold;
        if matches!(drawing, Drawing::Classes | Drawing::Labels) {
            let labels = drawing == Drawing::Labels;
            let (g, _) = self.gpu.as_mut().expect("checked by the caller");
            return g.paint_classes(frame, crop, threshold, labels, opacity);
        }
        let job = PaintJob {
            crop,
            threshold,
            drawing,
            blur: self.config.blur,
            opacity,
            colour: super::render::PaintColour::for_frame(frame, color),
        };
        let (g, _) = self.gpu.as_mut().expect("checked by the caller");
        g.paint(frame, &job)
    }

    /// The device state into the CPU route's Mats, when the device has a newer one.
    pub(super) fn sync_host(&mut self) -> Result<()> {
        if !self.host_stale {
            return Ok(());
        }
        if let Some((g, _)) = self.gpu.as_ref() {
            g.download_state(&mut self.smoothed, &mut self.smoothed_classes)?;
        }
        self.host_stale = false;
        self.runs_ready = false;
        Ok(())
    }

    /// A GPU failure: the CPU from now on (the element warns once), or the error.
    fn gpu_failed(&mut self, e: crate::Error) -> Result<()> {
        if !self.gpu_fallback {
            return Err(e);
        }
        let state = self.gpu.take();
        if let (Some((g, _)), true) = (state.as_ref(), self.host_stale) {
            // Keep the average if the state can still be read.
            if g.download_state(&mut self.smoothed, &mut self.smoothed_classes)
                .is_err()
            {
                self.smoothed = None;
                self.smoothed_classes = None;
            }
        }
        self.host_stale = false;
        self.runs_ready = false;
        self.set_active(Active::Cpu, Some(format!("the GPU route failed ({e})")));
        Ok(())
    }

    fn set_active(&mut self, active: Active, reason: Option<String>) {
        if self.active != active || self.reason != reason {
            self.active = active;
            self.reason = reason;
            self.changed = true;
        }
    }
}
