//! Borrowed views of video frames in the formats the elements accept, with explicit
//! per-plane strides (GStreamer buffers are often padded; rows are never assumed packed).

use crate::error::{Error, Result};

/// Raw video formats the elements accept (GStreamer names in `gst_name`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PixelFormat {
    Nv12,
    Nv21,
    I420,
    Yv12,
    Yuy2,
    Uyvy,
    Rgb,
    Bgr,
    Rgba,
    Bgra,
    Rgbx,
    Bgrx,
    Gray8,
}

impl PixelFormat {
    pub const ALL: [PixelFormat; 13] = [
        PixelFormat::Nv12,
        PixelFormat::Nv21,
        PixelFormat::I420,
        PixelFormat::Yv12,
        PixelFormat::Yuy2,
        PixelFormat::Uyvy,
        PixelFormat::Rgb,
        PixelFormat::Bgr,
        PixelFormat::Rgba,
        PixelFormat::Bgra,
        PixelFormat::Rgbx,
        PixelFormat::Bgrx,
        PixelFormat::Gray8,
    ];

    pub fn gst_name(self) -> &'static str {
        match self {
            PixelFormat::Nv12 => "NV12",
            PixelFormat::Nv21 => "NV21",
            PixelFormat::I420 => "I420",
            PixelFormat::Yv12 => "YV12",
            PixelFormat::Yuy2 => "YUY2",
            PixelFormat::Uyvy => "UYVY",
            PixelFormat::Rgb => "RGB",
            PixelFormat::Bgr => "BGR",
            PixelFormat::Rgba => "RGBA",
            PixelFormat::Bgra => "BGRA",
            PixelFormat::Rgbx => "RGBx",
            PixelFormat::Bgrx => "BGRx",
            PixelFormat::Gray8 => "GRAY8",
        }
    }

    pub fn from_gst_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.gst_name() == name)
    }

    pub fn is_yuv(self) -> bool {
        matches!(
            self,
            PixelFormat::Nv12
                | PixelFormat::Nv21
                | PixelFormat::I420
                | PixelFormat::Yv12
                | PixelFormat::Yuy2
                | PixelFormat::Uyvy
        )
    }

    /// Number of planes in memory.
    pub fn plane_count(self) -> usize {
        match self {
            PixelFormat::Nv12 | PixelFormat::Nv21 => 2,
            PixelFormat::I420 | PixelFormat::Yv12 => 3,
            _ => 1,
        }
    }

    /// Bytes per pixel of a packed (single-plane) format; for YUY2/UYVY, bytes per pixel pair / 2.
    pub fn packed_bytes_per_pixel(self) -> usize {
        match self {
            PixelFormat::Rgb | PixelFormat::Bgr => 3,
            PixelFormat::Rgba | PixelFormat::Bgra | PixelFormat::Rgbx | PixelFormat::Bgrx => 4,
            PixelFormat::Yuy2 | PixelFormat::Uyvy => 2,
            _ => 1,
        }
    }

    /// For packed RGB-family formats: the byte offsets of R, G and B within a pixel.
    pub fn rgb_offsets(self) -> Option<[usize; 3]> {
        match self {
            PixelFormat::Rgb | PixelFormat::Rgba | PixelFormat::Rgbx => Some([0, 1, 2]),
            PixelFormat::Bgr | PixelFormat::Bgra | PixelFormat::Bgrx => Some([2, 1, 0]),
            _ => None,
        }
    }
}

/// YUV→RGB matrix of the stream (from the caps' colorimetry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum YuvMatrix {
    Bt601,
    Bt709,
}

/// Luma/chroma range of the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum YuvRange {
    /// Y in 16..235, U/V in 16..240 (cameras and codecs).
    Limited,
    /// 0..255 (JPEG).
    Full,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Colorimetry {
    pub matrix: YuvMatrix,
    pub range: YuvRange,
}

impl Default for Colorimetry {
    fn default() -> Self {
        Colorimetry {
            matrix: YuvMatrix::Bt601,
            range: YuvRange::Limited,
        }
    }
}

impl Colorimetry {
    /// 3×4 affine matrix mapping (Y, U, V, 1) in 0..255 to (R, G, B) in 0..255.
    pub fn yuv_to_rgb(&self) -> [[f64; 4]; 3] {
        let (kr, kb) = match self.matrix {
            YuvMatrix::Bt601 => (0.299, 0.114),
            YuvMatrix::Bt709 => (0.2126, 0.0722),
        };
        let kg = 1.0 - kr - kb;
        let (ys, yo, cs) = match self.range {
            YuvRange::Limited => (255.0 / 219.0, 16.0, 255.0 / 224.0),
            YuvRange::Full => (1.0, 0.0, 1.0),
        };
        // R = Y' + 2(1-kr) V'; B = Y' + 2(1-kb) U'; G = Y' - (2 kb (1-kb)/kg) U' - (2 kr (1-kr)/kg) V'
        let rv = 2.0 * (1.0 - kr) * cs;
        let bu = 2.0 * (1.0 - kb) * cs;
        let gu = -2.0 * kb * (1.0 - kb) / kg * cs;
        let gv = -2.0 * kr * (1.0 - kr) / kg * cs;
        let off = |cu: f64, cv: f64| -yo * ys - 128.0 * (cu + cv);
        [
            [ys, 0.0, rv, off(0.0, rv)],
            [ys, gu, gv, off(gu, gv)],
            [ys, bu, 0.0, off(bu, 0.0)],
        ]
    }

    /// 3×4 affine matrix mapping (R, G, B, 1) in 0..255 to (Y, U, V) in the stream's
    /// matrix and range.
    pub fn rgb_to_yuv_rows(&self) -> [[f64; 4]; 3] {
        let (kr, kb) = match self.matrix {
            YuvMatrix::Bt601 => (0.299, 0.114),
            YuvMatrix::Bt709 => (0.2126, 0.0722),
        };
        let kg = 1.0 - kr - kb;
        let (ys, yo, cs) = match self.range {
            YuvRange::Limited => (219.0 / 255.0, 16.0, 224.0 / 255.0),
            YuvRange::Full => (1.0, 0.0, 1.0),
        };
        // U = (B - Y) / (2 (1 - kb)), V = (R - Y) / (2 (1 - kr)), Y = kr R + kg G + kb B.
        let u = cs / (2.0 * (1.0 - kb));
        let v = cs / (2.0 * (1.0 - kr));
        [
            [kr * ys, kg * ys, kb * ys, yo],
            [-kr * u, -kg * u, (1.0 - kb) * u, 128.0],
            [(1.0 - kr) * v, -kg * v, -kb * v, 128.0],
        ]
    }

    /// (Y, U, V) of an RGB colour, in the stream's matrix and range.
    pub fn rgb_to_yuv(&self, rgb: [u8; 3]) -> [u8; 3] {
        let [r, g, b] = rgb.map(|v| v as f64);
        self.rgb_to_yuv_rows().map(|row| {
            (row[0] * r + row[1] * g + row[2] * b + row[3])
                .round()
                .clamp(0.0, 255.0) as u8
        })
    }
}

/// One plane of a frame: `height` rows of `row_bytes` useful bytes, `stride` bytes apart.
#[derive(Debug, Clone, Copy)]
pub struct PlaneLayout {
    /// Width in elements of the plane's own grid (chroma planes are subsampled).
    pub width: usize,
    pub height: usize,
    /// Interleaved channels per element (NV12 UV plane: 2; RGBA: 4; YUY2 seen as 2).
    pub channels: usize,
    pub stride: usize,
}

impl PlaneLayout {
    pub fn row_bytes(&self) -> usize {
        self.width * self.channels
    }

    /// Bytes from the first to one past the last useful byte.
    pub fn span(&self) -> usize {
        if self.height == 0 {
            0
        } else {
            self.stride * (self.height - 1) + self.row_bytes()
        }
    }
}

/// The plane grid of a frame of this format and size (chroma rounded up for odd sizes).
pub fn plane_layouts(
    format: PixelFormat,
    width: usize,
    height: usize,
) -> Vec<(usize, usize, usize)> {
    let cw = width.div_ceil(2);
    let ch = height.div_ceil(2);
    match format {
        PixelFormat::Nv12 | PixelFormat::Nv21 => vec![(width, height, 1), (cw, ch, 2)],
        PixelFormat::I420 | PixelFormat::Yv12 => {
            vec![(width, height, 1), (cw, ch, 1), (cw, ch, 1)]
        }
        // Pixel pairs: an odd width still stores a whole last pair.
        PixelFormat::Yuy2 | PixelFormat::Uyvy => vec![(width.div_ceil(2) * 2, height, 2)],
        f => vec![(width, height, f.packed_bytes_per_pixel())],
    }
}

/// A read-only frame: planes as slices with their strides.
#[derive(Debug, Clone)]
pub struct FrameView<'a> {
    pub format: PixelFormat,
    pub width: usize,
    pub height: usize,
    pub colorimetry: Colorimetry,
    pub planes: Vec<(&'a [u8], PlaneLayout)>,
}

/// A writable frame (in-place rendering).
#[derive(Debug)]
pub struct FrameViewMut<'a> {
    pub format: PixelFormat,
    pub width: usize,
    pub height: usize,
    pub colorimetry: Colorimetry,
    pub planes: Vec<(&'a mut [u8], PlaneLayout)>,
}

fn check_planes(
    format: PixelFormat,
    width: usize,
    height: usize,
    planes: &[(usize, PlaneLayout)],
) -> Result<()> {
    if width == 0 || height == 0 {
        return Err(Error::Input(format!("empty frame {width}×{height}")));
    }
    let expected = plane_layouts(format, width, height);
    if planes.len() != expected.len() {
        return Err(Error::Input(format!(
            "{} frame needs {} planes, got {}",
            format.gst_name(),
            expected.len(),
            planes.len()
        )));
    }
    for (i, ((len, layout), (w, h, c))) in planes.iter().zip(expected).enumerate() {
        if layout.width != w || layout.height != h || layout.channels != c {
            return Err(Error::Input(format!(
                "plane {i} of a {width}×{height} {} frame should be {w}×{h}×{c}, got {}×{}×{}",
                format.gst_name(),
                layout.width,
                layout.height,
                layout.channels
            )));
        }
        if layout.stride < layout.row_bytes() || *len < layout.span() {
            return Err(Error::Input(format!(
                "plane {i} is too small: stride {} and {} bytes for {} rows of {} bytes",
                layout.stride,
                len,
                layout.height,
                layout.row_bytes()
            )));
        }
    }
    Ok(())
}

impl<'a> FrameView<'a> {
    pub fn new(
        format: PixelFormat,
        width: usize,
        height: usize,
        colorimetry: Colorimetry,
        planes: Vec<(&'a [u8], PlaneLayout)>,
    ) -> Result<Self> {
        let sizes: Vec<_> = planes.iter().map(|(d, l)| (d.len(), *l)).collect();
        check_planes(format, width, height, &sizes)?;
        Ok(FrameView {
            format,
            width,
            height,
            colorimetry,
            planes,
        })
    }

    /// A view of tightly packed data (tests, examples).
    pub fn packed(
        format: PixelFormat,
        width: usize,
        height: usize,
        data: &'a [u8],
    ) -> Result<Self> {
        let mut planes = Vec::new();
        let mut rest = data;
        for (w, h, c) in plane_layouts(format, width, height) {
            let n = w * h * c;
            if rest.len() < n {
                return Err(Error::Input(format!(
                    "{} bytes are too few for a packed {width}×{height} {}",
                    data.len(),
                    format.gst_name()
                )));
            }
            let (p, r) = rest.split_at(n);
            planes.push((
                p,
                PlaneLayout {
                    width: w,
                    height: h,
                    channels: c,
                    stride: w * c,
                },
            ));
            rest = r;
        }
        Self::new(format, width, height, Colorimetry::default(), planes)
    }
}

impl<'a> FrameViewMut<'a> {
    pub fn new(
        format: PixelFormat,
        width: usize,
        height: usize,
        colorimetry: Colorimetry,
        planes: Vec<(&'a mut [u8], PlaneLayout)>,
    ) -> Result<Self> {
        let sizes: Vec<_> = planes.iter().map(|(d, l)| (d.len(), *l)).collect();
        check_planes(format, width, height, &sizes)?;
        Ok(FrameViewMut {
            format,
            width,
            height,
            colorimetry,
            planes,
        })
    }

    /// A writable view of tightly packed data.
    pub fn packed(
        format: PixelFormat,
        width: usize,
        height: usize,
        data: &'a mut [u8],
    ) -> Result<Self> {
        let mut planes = Vec::new();
        let mut rest = data;
        for (w, h, c) in plane_layouts(format, width, height) {
            let n = w * h * c;
            if rest.len() < n {
                return Err(Error::Input(format!(
                    "too few bytes for a packed {width}×{height} {}",
                    format.gst_name()
                )));
            }
            let (p, r) = rest.split_at_mut(n);
            planes.push((
                p,
                PlaneLayout {
                    width: w,
                    height: h,
                    channels: c,
                    stride: w * c,
                },
            ));
            rest = r;
        }
        Self::new(format, width, height, Colorimetry::default(), planes)
    }
}

/// Bytes of a tightly packed frame of this format and size.
pub fn packed_frame_size(format: PixelFormat, width: usize, height: usize) -> usize {
    plane_layouts(format, width, height)
        .iter()
        .map(|(w, h, c)| w * h * c)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yuv_matrix_round_trips_primaries() {
        for matrix in [YuvMatrix::Bt601, YuvMatrix::Bt709] {
            for range in [YuvRange::Limited, YuvRange::Full] {
                let c = Colorimetry { matrix, range };
                let m = c.yuv_to_rgb();
                for rgb in [
                    [255u8, 0, 0],
                    [0, 255, 0],
                    [0, 0, 255],
                    [128, 128, 128],
                    [0, 0, 0],
                ] {
                    let [y, u, v] = c.rgb_to_yuv(rgb).map(|x| x as f64);
                    for (ch, row) in m.iter().enumerate() {
                        let got = row[0] * y + row[1] * u + row[2] * v + row[3];
                        assert!(
                            (got - rgb[ch] as f64).abs() < 3.0,
                            "{c:?} {rgb:?} ch{ch}: {got}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn bt601_limited_matches_the_textbook_coefficients() {
        let m = Colorimetry::default().yuv_to_rgb();
        assert!((m[0][0] - 1.164).abs() < 1e-3);
        assert!((m[0][2] - 1.596).abs() < 1e-3);
        assert!((m[1][1] + 0.392).abs() < 1e-3);
        assert!((m[1][2] + 0.813).abs() < 1e-3);
        assert!((m[2][1] - 2.017).abs() < 1e-3);
    }

    #[test]
    fn odd_sizes_round_chroma_up_and_short_planes_are_refused() {
        assert_eq!(
            plane_layouts(PixelFormat::I420, 321, 241),
            vec![(321, 241, 1), (161, 121, 1), (161, 121, 1)]
        );
        let data = vec![0u8; 10];
        assert!(FrameView::packed(PixelFormat::Rgb, 4, 4, &data).is_err());
        let data = vec![0u8; packed_frame_size(PixelFormat::Nv12, 6, 4)];
        assert!(FrameView::packed(PixelFormat::Nv12, 6, 4, &data).is_ok());
    }
}
