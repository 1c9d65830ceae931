//! The vocabulary the three stages share: what the model wants as input ([`TensorSpec`]),
//! what it gives back ([`OutputSpec`]), and where the picture lies in the input tensor
//! ([`Region`]). Stages depend on this module, never on each other.

use crate::error::{Error, Result};

/// Memory order of an image tensor with batch 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Layout {
    /// 1×C×H×W (PyTorch/ONNX exports, e.g. FFNet from AI Hub).
    Nchw,
    /// 1×H×W×C (TFLite/QNN exports, e.g. MediaPipe selfie segmentation).
    Nhwc,
}

impl Layout {
    pub fn as_str(self) -> &'static str {
        match self {
            Layout::Nchw => "nchw",
            Layout::Nhwc => "nhwc",
        }
    }

    /// Case-insensitive, without allocating (metas are read with it on every frame).
    pub fn parse(s: &str) -> Result<Self> {
        [Layout::Nchw, Layout::Nhwc]
            .into_iter()
            .find(|l| l.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| Error::Config(format!("unknown tensor layout '{s}': use nchw or nhwc")))
    }
}

/// Element type of a tensor the engine can produce or consume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    U8,
    U16,
}

impl DType {
    pub fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::U8 => 1,
            DType::U16 => 2,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::U8 => "u8",
            DType::U16 => "u16",
        }
    }

    /// Case-insensitive, without allocating (metas are read with it on every frame).
    pub fn parse(s: &str) -> Result<Self> {
        const NAMES: [(&str, DType); 7] = [
            ("f32", DType::F32),
            ("float32", DType::F32),
            ("float", DType::F32),
            ("u8", DType::U8),
            ("uint8", DType::U8),
            ("u16", DType::U16),
            ("uint16", DType::U16),
        ];
        NAMES
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(s))
            .map(|(_, t)| *t)
            .ok_or_else(|| {
                Error::Config(format!(
                    "unknown tensor element type '{s}': use f32, u8 or u16"
                ))
            })
    }
}

/// Affine quantization: real = (q - zero_point) * scale.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quantization {
    pub scale: f32,
    pub zero_point: i32,
}

/// Shape, layout and element type of a batch-1 image tensor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TensorSpec {
    pub width: usize,
    pub height: usize,
    pub channels: usize,
    pub layout: Layout,
    pub dtype: DType,
    /// Present for quantized (u8/u16) tensors.
    pub quantization: Option<Quantization>,
}

impl TensorSpec {
    pub fn element_count(&self) -> usize {
        self.width * self.height * self.channels
    }

    /// Whether height and width are left to the caller (a model exported with dynamic axes).
    pub fn is_dynamic(&self) -> bool {
        self.width == 0 || self.height == 0
    }

    pub fn byte_size(&self) -> usize {
        self.element_count() * self.dtype.size()
    }

    /// Shape as ONNX Runtime wants it.
    pub fn shape(&self) -> [i64; 4] {
        let (w, h, c) = (self.width as i64, self.height as i64, self.channels as i64);
        match self.layout {
            Layout::Nchw => [1, c, h, w],
            Layout::Nhwc => [1, h, w, c],
        }
    }

    /// Reads a 4-D image shape. The layout is the one whose channel axis is small
    /// (≤ 4 for inputs, or the given hint when ambiguous).
    pub fn from_shape(shape: &[i64], dtype: DType, hint: Option<Layout>) -> Result<Self> {
        if shape.len() != 4 {
            return Err(Error::Model(format!(
                "expected a 4-D image tensor (1×C×H×W or 1×H×W×C), got shape {shape:?}"
            )));
        }
        if shape[0] != 1 && shape[0] != -1 {
            return Err(Error::Model(format!(
                "batch size must be 1, got shape {shape:?}"
            )));
        }
        let layout = match hint {
            Some(l) => l,
            None => guess_layout(shape),
        };
        let (c, h, w) = match layout {
            Layout::Nchw => (shape[1], shape[2], shape[3]),
            Layout::Nhwc => (shape[3], shape[1], shape[2]),
        };
        if c <= 0 {
            return Err(Error::Model(format!(
                "tensor shape {shape:?} has no fixed channel count; export the model with 3 channels"
            )));
        }
        // A dynamic height or width (-1) becomes 0: "whatever segpreproc is told".
        if h == 0 || w == 0 || h < -1 || w < -1 {
            return Err(Error::Model(format!(
                "tensor shape {shape:?} has empty dimensions"
            )));
        }
        Ok(TensorSpec {
            width: w.max(0) as usize,
            height: h.max(0) as usize,
            channels: c as usize,
            layout,
            dtype,
            quantization: None,
        })
    }
}

/// The model's output: one image-shaped score tensor at model resolution.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OutputSpec {
    /// Classes (1 for a probability mask, 19 for Cityscapes logits).
    pub classes: usize,
    pub width: usize,
    pub height: usize,
    pub layout: Layout,
}

impl OutputSpec {
    pub fn element_count(&self) -> usize {
        self.classes * self.width * self.height
    }
}

/// The part of the input tensor that holds the picture (all of it unless letterboxed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    pub x: usize,
    pub y: usize,
    pub width: usize,
    pub height: usize,
}

/// NHWC when the last axis looks like channels (1..=4) and the second does not; NCHW otherwise.
pub fn guess_layout(shape: &[i64]) -> Layout {
    let last_small = (1..=4).contains(&shape[3]);
    let second_small = (1..=4).contains(&shape[1]);
    if last_small && !second_small {
        Layout::Nhwc
    } else {
        Layout::Nchw
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_are_guessed_from_channel_axis() {
        assert_eq!(guess_layout(&[1, 256, 256, 3]), Layout::Nhwc);
        assert_eq!(guess_layout(&[1, 3, 224, 224]), Layout::Nchw);
        assert_eq!(guess_layout(&[1, 19, 64, 128]), Layout::Nchw);
        assert_eq!(guess_layout(&[1, 256, 256, 1]), Layout::Nhwc);
    }

    #[test]
    fn spec_reads_both_layouts() {
        let s = TensorSpec::from_shape(&[1, 256, 256, 3], DType::F32, None).unwrap();
        assert_eq!(
            (s.width, s.height, s.channels, s.layout),
            (256, 256, 3, Layout::Nhwc)
        );
        assert_eq!(s.shape(), [1, 256, 256, 3]);
        let s = TensorSpec::from_shape(&[1, 3, 128, 256], DType::F32, None).unwrap();
        assert_eq!(
            (s.width, s.height, s.channels, s.layout),
            (256, 128, 3, Layout::Nchw)
        );
        assert_eq!(s.byte_size(), 3 * 128 * 256 * 4);
    }

    #[test]
    fn dynamic_sizes_are_kept_open_and_bad_shapes_are_refused() {
        let s = TensorSpec::from_shape(&[1, 3, -1, -1], DType::F32, None).unwrap();
        assert!(s.is_dynamic());
        assert_eq!((s.channels, s.layout), (3, Layout::Nchw));
        let s = TensorSpec::from_shape(&[-1, -1, -1, 3], DType::F32, None).unwrap();
        assert_eq!((s.channels, s.layout), (3, Layout::Nhwc));
        assert!(TensorSpec::from_shape(&[1, -1, 224, 224], DType::F32, None).is_err());
        assert!(TensorSpec::from_shape(&[1, 3, 0, 224], DType::F32, None).is_err());
        assert!(TensorSpec::from_shape(&[3, 224, 224], DType::F32, None).is_err());
        assert!(TensorSpec::from_shape(&[2, 3, 224, 224], DType::F32, None).is_err());
    }
}
