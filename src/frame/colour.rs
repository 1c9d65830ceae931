//! The one place for RGB↔YUV coefficients (BT.601 and BT.709, limited and full range)
//! and for what a colour means in each byte role of a pixel.

use super::format::Role;

/// YUV→RGB matrix of the stream (from the caps' colorimetry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum YuvMatrix {
    #[default]
    Bt601,
    Bt709,
}

/// Luma/chroma range of the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum YuvRange {
    /// Y in 16..235, U/V in 16..240 (cameras and codecs).
    #[default]
    Limited,
    /// 0..255 (JPEG).
    Full,
}

/// Matrix and range of a stream; BT.601 limited range unless the caps say otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Colorimetry {
    pub matrix: YuvMatrix,
    pub range: YuvRange,
}

/// BT.601 luma weights of R, G and B: how a gray frame shows a colour.
pub const GRAY_WEIGHTS: [f64; 3] = [0.299, 0.587, 0.114];

impl YuvMatrix {
    /// The luma weights (kr, kb) of R and B; G's is 1 − kr − kb.
    fn kr_kb(self) -> (f64, f64) {
        match self {
            YuvMatrix::Bt601 => (GRAY_WEIGHTS[0], GRAY_WEIGHTS[2]),
            YuvMatrix::Bt709 => (0.2126, 0.0722),
        }
    }
}

impl Colorimetry {
    /// 3×4 affine matrix mapping (Y, U, V, 1) in 0..255 to (R, G, B) in 0..255.
    pub fn yuv_to_rgb(&self) -> [[f64; 4]; 3] {
        let (kr, kb) = self.matrix.kr_kb();
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
        let (kr, kb) = self.matrix.kr_kb();
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

impl Role {
    /// The byte this role holds for colour `rgb` (`yuv`: the same colour in the stream's
    /// colorimetry; `gray`: a GRAY8 frame, whose Y is the BT.601 full-range luma).
    pub fn value(self, rgb: [u8; 3], yuv: [u8; 3], gray: bool) -> f64 {
        let [r, g, b] = rgb.map(|v| v as f64);
        match self {
            Role::Y if gray => {
                (GRAY_WEIGHTS[0] * r + GRAY_WEIGHTS[1] * g + GRAY_WEIGHTS[2] * b).round()
            }
            Role::Y => yuv[0] as f64,
            Role::U => yuv[1] as f64,
            Role::V => yuv[2] as f64,
            Role::R => r,
            Role::G => g,
            Role::B => b,
            Role::Keep => 255.0,
        }
    }

    /// This role as a linear map of (R, G, B, 1); `yuv_rows` from
    /// [`Colorimetry::rgb_to_yuv_rows`].
    pub fn rgb_row(self, yuv_rows: &[[f64; 4]; 3], gray: bool) -> [f64; 4] {
        match self {
            Role::Y if gray => [GRAY_WEIGHTS[0], GRAY_WEIGHTS[1], GRAY_WEIGHTS[2], 0.0],
            Role::Y => yuv_rows[0],
            Role::U => yuv_rows[1],
            Role::V => yuv_rows[2],
            Role::R => [1.0, 0.0, 0.0, 0.0],
            Role::G => [0.0, 1.0, 0.0, 0.0],
            Role::B => [0.0, 0.0, 1.0, 0.0],
            Role::Keep => [0.0, 0.0, 0.0, 255.0],
        }
    }
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
}
