//! Colour conversion, scaling, mean/std and quantization fused into one affine map per
//! tensor channel, with the clip bounds of real RGB and the tensor value of black.

use opencv::core::Mat;

use super::Normalization;
use crate::error::Result;
use crate::frame::{ColourKind, FrameView};
use crate::tensor::{DType, Quantization, TensorSpec};

/// What the channels of the (resized) source image mean, with the stream's YUV matrix.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum ColourSource {
    Rgb {
        offsets: [usize; 3],
        channels: usize,
    },
    Gray,
    Yuv {
        /// V before U in the channels (NV21, YV12).
        swap_uv: bool,
        matrix: [[f64; 4]; 3],
    },
}

impl ColourSource {
    /// The source colour of a frame, from the format table and the frame's colorimetry.
    pub(super) fn of(frame: &FrameView<'_>) -> Self {
        match frame.format.info().colour {
            ColourKind::Rgb { offsets, bytes } => ColourSource::Rgb {
                offsets,
                channels: bytes,
            },
            ColourKind::Gray => ColourSource::Gray,
            ColourKind::Yuv(site) => ColourSource::Yuv {
                swap_uv: site.v_first,
                matrix: frame.colorimetry.yuv_to_rgb(),
            },
        }
    }

    /// 3 rows of (input channels + 1) coefficients giving R, G, B in 0..255.
    fn to_rgb_rows(self) -> Vec<Vec<f64>> {
        match self {
            ColourSource::Rgb { offsets, channels } => (0..3)
                .map(|c| {
                    let mut r = vec![0.0; channels + 1];
                    r[offsets[c]] = 1.0;
                    r
                })
                .collect(),
            ColourSource::Gray => (0..3).map(|_| vec![1.0, 0.0]).collect(),
            ColourSource::Yuv { swap_uv, matrix } => matrix
                .iter()
                .map(|r| {
                    if swap_uv {
                        vec![r[0], r[2], r[1], r[3]]
                    } else {
                        r.to_vec()
                    }
                })
                .collect(),
        }
    }
}

/// The fused colour + normalization map for one colour source, with its clip bounds
/// and the tensor value of black.
pub(super) struct Fused {
    pub source: ColourSource,
    /// The map as OpenCV's `transform` takes it (the reference route).
    pub matrix: Mat,
    /// The same map over the first three input channels plus the offset (hand-written route).
    pub rows: [[f32; 4]; 3],
    pub lo: [f64; 3],
    pub hi: [f64; 3],
    pub black: [f64; 3],
}

impl Fused {
    pub(super) fn new(
        source: ColourSource,
        target: &TensorSpec,
        normalization: &Normalization,
    ) -> Result<Self> {
        let (rows, lo, hi, black) = fused_rows(source, target, normalization);
        let inputs = rows[0].len() - 1;
        let mut rows_f32 = [[0.0f32; 4]; 3];
        for (dst, src) in rows_f32.iter_mut().zip(&rows) {
            // Inputs beyond the third are padding (RGBx) with coefficient 0.
            for k in 0..inputs.min(3) {
                dst[k] = src[k] as f32;
            }
            dst[3] = src[inputs] as f32;
        }
        Ok(Fused {
            source,
            matrix: Mat::from_slice_2d(&rows)?,
            rows: rows_f32,
            lo,
            hi,
            black,
        })
    }
}

/// Rows of the per-channel affine map and the clip bounds, in the tensor's units.
/// Also returns the tensor value of black (the letterbox padding).
#[allow(clippy::type_complexity)]
fn fused_rows(
    colour: ColourSource,
    target: &TensorSpec,
    n: &Normalization,
) -> (Vec<Vec<f64>>, [f64; 3], [f64; 3], [f64; 3]) {
    let base: Vec<Vec<f64>> = colour.to_rgb_rows();
    // Integer tensors without quantization parameters take raw pixel values
    // (0..255 for u8, 0..65535 for u16) under the default scale of 1/255.
    let q = target.quantization.or(match target.dtype {
        DType::F32 => None,
        DType::U8 => Some(Quantization {
            scale: 1.0 / 255.0,
            zero_point: 0,
        }),
        DType::U16 => Some(Quantization {
            scale: 1.0 / 65535.0,
            zero_point: 0,
        }),
    });
    let mut rows = Vec::with_capacity(3);
    let mut lo = [0.0; 3];
    let mut hi = [0.0; 3];
    let mut black = [0.0; 3];
    for c in 0..3 {
        let mut a = n.scale as f64 / n.std[c] as f64;
        let mut b = -(n.mean[c] as f64) / n.std[c] as f64;
        if let Some(q) = q {
            a /= q.scale as f64;
            b = b / q.scale as f64 + q.zero_point as f64;
        }
        let mut row: Vec<f64> = base[c].iter().map(|v| v * a).collect();
        *row.last_mut().expect("rows have an offset column") += b;
        rows.push(row);
        let (x, y) = (b, a * 255.0 + b);
        lo[c] = x.min(y);
        hi[c] = x.max(y);
        black[c] = b;
    }
    (rows, lo, hi, black)
}
