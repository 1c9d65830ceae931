//! Class colours: every pixel painted with its top class's palette colour, blended with
//! an opacity.

use opencv::prelude::*;

use super::super::{Drawing, Postprocessor, kernels};
use super::{nearest_positions, pixel_of};
use crate::classes::palette_color;
use crate::error::Result;
use crate::frame::{Colorimetry, FrameViewMut, PixelFormat};
use crate::kernels::Route;

impl Postprocessor {
    /// Colours every pixel by its top class (palette), blended with opacity `o`.
    pub fn render_classes(&mut self, frame: &mut FrameViewMut<'_>, opacity: f32) -> Result<()> {
        if self.draw_on_gpu(Drawing::Classes, frame, [0; 3], opacity)? {
            return Ok(());
        }
        self.labels_small()?;
        if self.route == Route::HandWritten {
            self.render_classes_rows(frame, opacity)
        } else {
            self.classes_reference(frame, opacity)
        }
    }

    /// The hand-written class overlay: one pass per frame row. Each row's label row is the
    /// nearest model-resolution row (`resize`'s INTER_NEAREST positions), expanded into the
    /// palette's blend terms once per label row and blended with the fixed-point kernel the
    /// mask overlay uses (within one level of `addWeighted`).
    fn render_classes_rows(&mut self, frame: &mut FrameViewMut<'_>, opacity: f32) -> Result<()> {
        let (lw, lh) = (
            self.labels_small.cols() as usize,
            self.labels_small.rows() as usize,
        );
        let key = ClassPaintKey {
            format: frame.format,
            colorimetry: frame.colorimetry,
            opacity_bits: opacity.to_bits(),
            frame: (frame.width, frame.height),
            labels: (lw, lh),
        };
        if self.class_paint.as_ref().is_none_or(|p| p.key != key) {
            self.class_paint = Some(ClassPaint::new(key, frame));
        }
        let paint = self.class_paint.as_ref().expect("built above");
        let labels = self.labels_small.data_bytes()?;
        for plane in &paint.planes {
            let (data, l) = &mut frame.planes[plane.index];
            let (cn, stride) = (plane.channels, l.stride);
            let cols = plane.source_x.len();
            self.colour_terms.resize(cols * cn, 0);
            let mut expanded_row = usize::MAX;
            for (y, &sy) in plane.source_y.iter().enumerate() {
                if sy != expanded_row {
                    let label_row = &labels[sy * lw..(sy + 1) * lw];
                    for (terms, &sx) in self.colour_terms.chunks_exact_mut(cn).zip(&plane.source_x)
                    {
                        let label = label_row[sx] as usize;
                        terms.copy_from_slice(&plane.palette[label * cn..(label + 1) * cn]);
                    }
                    expanded_row = sy;
                }
                let row = &mut data[y * stride..y * stride + cols * cn];
                kernels::blend_span(row, &self.colour_terms, plane.keep);
            }
        }
        Ok(())
    }
}

/// What the class overlay's blend depends on besides the labels themselves.
#[derive(Debug, Clone, Copy, PartialEq)]
struct ClassPaintKey {
    format: PixelFormat,
    colorimetry: Colorimetry,
    opacity_bits: u32,
    frame: (usize, usize),
    labels: (usize, usize),
}

/// Per plane of the frame: the palette's blend terms and the nearest-neighbour positions,
/// built when the stream, the opacity or the model changes, not every frame.
pub(in crate::postprocess) struct ClassPaint {
    key: ClassPaintKey,
    planes: Vec<ClassPaintPlane>,
}

struct ClassPaintPlane {
    /// Index of the plane in the frame.
    index: usize,
    channels: usize,
    keep: u16,
    /// 256 labels × `channels` colour terms of `kernels::blend_span`.
    palette: Vec<u16>,
    /// Label column of each plane column, label row of each plane row.
    source_x: Vec<usize>,
    source_y: Vec<usize>,
}

impl ClassPaint {
    fn new(key: ClassPaintKey, frame: &FrameViewMut<'_>) -> ClassPaint {
        let gray = key.format == PixelFormat::Gray8;
        let opacity = f32::from_bits(key.opacity_bits);
        let planes = key
            .format
            .info()
            .painted
            .iter()
            .map(|painted| {
                let l = &frame.planes[painted.plane].1;
                let cn = painted.roles.len();
                let mut keep = 256;
                let mut palette = vec![0u16; 256 * cn];
                for (label, terms) in palette.chunks_exact_mut(cn).enumerate() {
                    let rgb = palette_color(label);
                    let yuv = key.colorimetry.rgb_to_yuv(rgb);
                    let pixel = pixel_of(painted.roles, rgb, yuv, gray).map(|v| v as u8);
                    let (k, t) = kernels::blend_terms(pixel, opacity);
                    keep = k;
                    terms.copy_from_slice(&t[..cn]);
                }
                ClassPaintPlane {
                    index: painted.plane,
                    channels: cn,
                    keep,
                    palette,
                    source_x: nearest_positions(key.labels.0, l.width / painted.columns),
                    source_y: nearest_positions(key.labels.1, l.height),
                }
            })
            .collect();
        ClassPaint { key, planes }
    }
}
