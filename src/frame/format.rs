//! The one table of what each pixel format is: its planes, their subsampling, the role of
//! every byte of a pixel, and where a YUV format keeps its chroma. The stages read this
//! table instead of matching on formats themselves.

use super::PixelFormat;

/// What one byte of an interleaved pixel holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Y,
    U,
    V,
    R,
    G,
    B,
    /// Alpha or padding: left as the frame had it where possible, opaque otherwise.
    Keep,
}

/// One plane in memory: its grid relative to the frame, and its interleaved bytes per element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlaneGrid {
    /// Subsampling of (width, height): 2 for 4:2:0 chroma, rounded up for odd sizes.
    pub sub: (usize, usize),
    /// Bytes per element (NV12's UV plane: 2; RGBA: 4; YUY2 seen as 2-byte pixels).
    pub channels: usize,
    /// The plane's width is rounded up to a multiple of this (YUY2 stores whole pixel pairs).
    pub width_multiple: usize,
}

/// How a plane is painted: `columns` frame pixels form one element of `roles` bytes
/// (YUY2/UYVY are painted as 4-byte pixel pairs so chroma stays unmixed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PaintedPlane {
    pub plane: usize,
    pub columns: usize,
    pub roles: &'static [Role],
}

/// Where a YUV format keeps its chroma: (plane, byte offset) of the two chroma channels in
/// memory order, the bytes between samples, and the subsampling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChromaSite {
    pub first: (usize, usize),
    pub second: (usize, usize),
    pub step: usize,
    pub sub: (usize, usize),
    /// Whether V comes before U in memory (NV21, YV12).
    pub v_first: bool,
    /// Byte of plane 0's pixels that holds the luma (UYVY: 1).
    pub luma_offset: usize,
}

/// What a format's colour channels are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColourKind {
    /// Packed RGB: byte offsets of R, G and B within a pixel of `bytes` bytes.
    Rgb {
        offsets: [usize; 3],
        bytes: usize,
    },
    Gray,
    Yuv(ChromaSite),
}

/// Everything the engine needs to know about one pixel format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FormatInfo {
    /// The GStreamer caps name.
    pub name: &'static str,
    pub planes: &'static [PlaneGrid],
    pub painted: &'static [PaintedPlane],
    pub colour: ColourKind,
}

const fn grid(sub: usize, channels: usize) -> PlaneGrid {
    PlaneGrid {
        sub: (sub, sub),
        channels,
        width_multiple: 1,
    }
}

const fn paint(plane: usize, columns: usize, roles: &'static [Role]) -> PaintedPlane {
    PaintedPlane {
        plane,
        columns,
        roles,
    }
}

use Role::*;

const SEMI_PLANAR: &[PlaneGrid] = &[grid(1, 1), grid(2, 2)];
const PLANAR: &[PlaneGrid] = &[grid(1, 1), grid(2, 1), grid(2, 1)];
const PIXEL_PAIRS: &[PlaneGrid] = &[PlaneGrid {
    sub: (1, 1),
    channels: 2,
    width_multiple: 2,
}];

const fn chroma(
    first: (usize, usize),
    second: (usize, usize),
    step: usize,
    sub: (usize, usize),
    v_first: bool,
    luma_offset: usize,
) -> ColourKind {
    ColourKind::Yuv(ChromaSite {
        first,
        second,
        step,
        sub,
        v_first,
        luma_offset,
    })
}

const PACKED3: &[PlaneGrid] = &[grid(1, 3)];
const PACKED4: &[PlaneGrid] = &[grid(1, 4)];

const fn rgb(name: &'static str, painted: &'static [PaintedPlane]) -> FormatInfo {
    let roles = painted[0].roles;
    let bytes = roles.len();
    // R, G, B are either in that order or reversed (BGR family).
    let offsets = match roles[0] {
        R => [0, 1, 2],
        _ => [2, 1, 0],
    };
    FormatInfo {
        name,
        planes: if bytes == 3 { PACKED3 } else { PACKED4 },
        painted,
        colour: ColourKind::Rgb { offsets, bytes },
    }
}

const PAINT_RGB: &[PaintedPlane] = &[paint(0, 1, &[R, G, B])];
const PAINT_BGR: &[PaintedPlane] = &[paint(0, 1, &[B, G, R])];
const PAINT_RGBX: &[PaintedPlane] = &[paint(0, 1, &[R, G, B, Keep])];
const PAINT_BGRX: &[PaintedPlane] = &[paint(0, 1, &[B, G, R, Keep])];
const RGB: FormatInfo = rgb("RGB", PAINT_RGB);
const BGR: FormatInfo = rgb("BGR", PAINT_BGR);
const RGBA: FormatInfo = rgb("RGBA", PAINT_RGBX);
const BGRA: FormatInfo = rgb("BGRA", PAINT_BGRX);
const RGBX: FormatInfo = rgb("RGBx", PAINT_RGBX);
const BGRX: FormatInfo = rgb("BGRx", PAINT_BGRX);

const NV12: FormatInfo = FormatInfo {
    name: "NV12",
    planes: SEMI_PLANAR,
    painted: &[paint(0, 1, &[Y]), paint(1, 1, &[U, V])],
    colour: chroma((1, 0), (1, 1), 2, (2, 2), false, 0),
};
const NV21: FormatInfo = FormatInfo {
    name: "NV21",
    planes: SEMI_PLANAR,
    painted: &[paint(0, 1, &[Y]), paint(1, 1, &[V, U])],
    colour: chroma((1, 0), (1, 1), 2, (2, 2), true, 0),
};
const I420: FormatInfo = FormatInfo {
    name: "I420",
    planes: PLANAR,
    painted: &[paint(0, 1, &[Y]), paint(1, 1, &[U]), paint(2, 1, &[V])],
    colour: chroma((1, 0), (2, 0), 1, (2, 2), false, 0),
};
const YV12: FormatInfo = FormatInfo {
    name: "YV12",
    planes: PLANAR,
    painted: &[paint(0, 1, &[Y]), paint(1, 1, &[V]), paint(2, 1, &[U])],
    colour: chroma((1, 0), (2, 0), 1, (2, 2), true, 0),
};
const YUY2: FormatInfo = FormatInfo {
    name: "YUY2",
    planes: PIXEL_PAIRS,
    painted: &[paint(0, 2, &[Y, U, Y, V])],
    colour: chroma((0, 1), (0, 3), 4, (2, 1), false, 0),
};
const UYVY: FormatInfo = FormatInfo {
    name: "UYVY",
    planes: PIXEL_PAIRS,
    painted: &[paint(0, 2, &[U, Y, V, Y])],
    colour: chroma((0, 0), (0, 2), 4, (2, 1), false, 1),
};
const GRAY8: FormatInfo = FormatInfo {
    name: "GRAY8",
    planes: &[grid(1, 1)],
    painted: &[paint(0, 1, &[Y])],
    colour: ColourKind::Gray,
};

impl PixelFormat {
    /// This format's entry in the format table.
    pub const fn info(self) -> &'static FormatInfo {
        match self {
            PixelFormat::Nv12 => &NV12,
            PixelFormat::Nv21 => &NV21,
            PixelFormat::I420 => &I420,
            PixelFormat::Yv12 => &YV12,
            PixelFormat::Yuy2 => &YUY2,
            PixelFormat::Uyvy => &UYVY,
            PixelFormat::Rgb => &RGB,
            PixelFormat::Bgr => &BGR,
            PixelFormat::Rgba => &RGBA,
            PixelFormat::Bgra => &BGRA,
            PixelFormat::Rgbx => &RGBX,
            PixelFormat::Bgrx => &BGRX,
            PixelFormat::Gray8 => &GRAY8,
        }
    }
}

impl PlaneGrid {
    /// (width, height) of this plane for a `width`×`height` frame.
    pub fn size(&self, width: usize, height: usize) -> (usize, usize) {
        (
            width
                .div_ceil(self.sub.0)
                .next_multiple_of(self.width_multiple),
            height.div_ceil(self.sub.1),
        )
    }
}
