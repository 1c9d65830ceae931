//! Borrowed views of video frames in the formats the elements accept, with explicit
//! per-plane strides (GStreamer buffers are often padded; rows are never assumed packed).
//!
//! - [`format`]: the per-format table (planes, subsampling, byte roles, chroma sites).
//! - [`colour`]: colorimetry and the RGB↔YUV coefficients.

pub mod colour;
pub mod format;

pub use colour::{Colorimetry, YuvMatrix, YuvRange};
pub use format::{ChromaSite, ColourKind, FormatInfo, PaintedPlane, PlaneGrid, Role};

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
        self.info().name
    }

    pub fn from_gst_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.gst_name() == name)
    }

    /// Bytes per pixel of a packed (single-plane) format; for YUY2/UYVY, bytes per pixel pair / 2.
    pub fn packed_bytes_per_pixel(self) -> usize {
        self.info().planes[0].channels
    }

    /// For packed RGB-family formats: the byte offsets of R, G and B within a pixel.
    pub fn rgb_offsets(self) -> Option<[usize; 3]> {
        match self.info().colour {
            ColourKind::Rgb { offsets, .. } => Some(offsets),
            _ => None,
        }
    }
}

/// One plane of a frame: `height` rows of `row_bytes` useful bytes, `stride` bytes apart.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
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

/// The plane grid (width, height, channels) of a frame of this format and size (chroma
/// rounded up for odd sizes).
pub fn plane_layouts(
    format: PixelFormat,
    width: usize,
    height: usize,
) -> impl ExactSizeIterator<Item = (usize, usize, usize)> {
    format.info().planes.iter().map(move |p| {
        let (w, h) = p.size(width, height);
        (w, h, p.channels)
    })
}

/// The most planes a format has.
pub const MAX_PLANES: usize = 3;

/// A frame's planes, held inline (no allocation per frame); derefs to a slice.
#[derive(Debug, Clone)]
pub struct Planes<P> {
    items: [P; MAX_PLANES],
    len: usize,
}

impl<P: Default> Planes<P> {
    fn collect(format: PixelFormat, planes: impl IntoIterator<Item = P>) -> Result<Self> {
        let mut items: [P; MAX_PLANES] = Default::default();
        let mut len = 0;
        for p in planes {
            if len == MAX_PLANES {
                return Err(Error::Input(format!(
                    "a {} frame has {} planes, more were given",
                    format.gst_name(),
                    format.info().planes.len()
                )));
            }
            items[len] = p;
            len += 1;
        }
        Ok(Planes { items, len })
    }
}

impl<P> std::ops::Deref for Planes<P> {
    type Target = [P];
    fn deref(&self) -> &[P] {
        &self.items[..self.len]
    }
}

impl<P> std::ops::DerefMut for Planes<P> {
    fn deref_mut(&mut self) -> &mut [P] {
        &mut self.items[..self.len]
    }
}

/// A frame: format, size, colorimetry and planes, each plane's bytes a `D` (a read-only
/// or a writable slice: see [`FrameView`] and [`FrameViewMut`]).
#[derive(Debug, Clone)]
pub struct FrameViewOf<D> {
    pub format: PixelFormat,
    pub width: usize,
    pub height: usize,
    pub colorimetry: Colorimetry,
    pub planes: Planes<(D, PlaneLayout)>,
}

/// A read-only frame: planes as slices with their strides.
pub type FrameView<'a> = FrameViewOf<&'a [u8]>;

/// A writable frame (in-place rendering).
pub type FrameViewMut<'a> = FrameViewOf<&'a mut [u8]>;

fn check_planes(
    format: PixelFormat,
    width: usize,
    height: usize,
    planes: impl ExactSizeIterator<Item = (usize, PlaneLayout)>,
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
    for (i, ((len, layout), (w, h, c))) in planes.zip(expected).enumerate() {
        if layout.width != w || layout.height != h || layout.channels != c {
            return Err(Error::Input(format!(
                "plane {i} of a {width}×{height} {} frame should be {w}×{h}×{c}, got {}×{}×{}",
                format.gst_name(),
                layout.width,
                layout.height,
                layout.channels
            )));
        }
        // Whole rows, the last one's padding included (as GStreamer maps planes): OpenCV
        // views of a plane cover `height` rows of `stride` bytes.
        if layout.stride < layout.row_bytes() || len < layout.stride * layout.height {
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

impl<D: AsRef<[u8]> + Default> FrameViewOf<D> {
    /// A view of these planes, checked against the format and size.
    pub fn new(
        format: PixelFormat,
        width: usize,
        height: usize,
        colorimetry: Colorimetry,
        planes: impl IntoIterator<Item = (D, PlaneLayout)>,
    ) -> Result<Self> {
        let planes = Planes::collect(format, planes)?;
        check_planes(
            format,
            width,
            height,
            planes.iter().map(|(d, l)| (d.as_ref().len(), *l)),
        )?;
        Ok(FrameViewOf {
            format,
            width,
            height,
            colorimetry,
            planes,
        })
    }
}

impl<'a> FrameView<'a> {
    /// A view of tightly packed data (tests, examples).
    pub fn packed(
        format: PixelFormat,
        width: usize,
        height: usize,
        data: &'a [u8],
    ) -> Result<Self> {
        if data.len() < packed_frame_size(format, width, height) {
            return Err(Error::Input(format!(
                "{} bytes are too few for a packed {width}×{height} {}",
                data.len(),
                format.gst_name()
            )));
        }
        let mut rest = data;
        let planes = plane_layouts(format, width, height).map(|(w, h, c)| {
            let (p, r) = rest.split_at(w * h * c);
            rest = r;
            (p, packed_layout(w, h, c))
        });
        Self::new(format, width, height, Colorimetry::default(), planes)
    }
}

fn packed_layout(width: usize, height: usize, channels: usize) -> PlaneLayout {
    PlaneLayout {
        width,
        height,
        channels,
        stride: width * channels,
    }
}

impl<'a> FrameViewMut<'a> {
    /// A writable view of tightly packed data.
    pub fn packed(
        format: PixelFormat,
        width: usize,
        height: usize,
        data: &'a mut [u8],
    ) -> Result<Self> {
        if data.len() < packed_frame_size(format, width, height) {
            return Err(Error::Input(format!(
                "too few bytes for a packed {width}×{height} {}",
                format.gst_name()
            )));
        }
        let mut rest = data;
        let planes = plane_layouts(format, width, height).map(|(w, h, c)| {
            let (p, r) = std::mem::take(&mut rest).split_at_mut(w * h * c);
            rest = r;
            (p, packed_layout(w, h, c))
        });
        Self::new(format, width, height, Colorimetry::default(), planes)
    }
}

/// Bytes of a tightly packed frame of this format and size.
pub fn packed_frame_size(format: PixelFormat, width: usize, height: usize) -> usize {
    plane_layouts(format, width, height)
        .map(|(w, h, c)| w * h * c)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_sizes_round_chroma_up_and_short_planes_are_refused() {
        assert_eq!(
            plane_layouts(PixelFormat::I420, 321, 241).collect::<Vec<_>>(),
            vec![(321, 241, 1), (161, 121, 1), (161, 121, 1)]
        );
        assert_eq!(
            plane_layouts(PixelFormat::Yuy2, 321, 3).collect::<Vec<_>>(),
            vec![(322, 3, 2)]
        );
        let data = vec![0u8; 10];
        assert!(FrameView::packed(PixelFormat::Rgb, 4, 4, &data).is_err());
        let data = vec![0u8; packed_frame_size(PixelFormat::Nv12, 6, 4)];
        assert!(FrameView::packed(PixelFormat::Nv12, 6, 4, &data).is_ok());
    }

    #[test]
    fn the_format_table_describes_every_format_consistently() {
        for f in PixelFormat::ALL {
            let info = f.info();
            assert_eq!(PixelFormat::from_gst_name(info.name), Some(f));
            for p in info.painted {
                let grid = info.planes[p.plane];
                assert_eq!(p.roles.len(), grid.channels * p.columns, "{f:?}");
            }
            if let ColourKind::Yuv(c) = info.colour {
                let role = |(plane, offset): (usize, usize)| {
                    let p = info.painted.iter().find(|p| p.plane == plane).unwrap();
                    p.roles[offset]
                };
                let (u, v) = if c.v_first {
                    (c.second, c.first)
                } else {
                    (c.first, c.second)
                };
                assert_eq!((role(u), role(v)), (Role::U, Role::V), "{f:?}");
            }
        }
    }
}
