//! Renderers, one file per output family: GRAY8 outputs (`gray`), the mask overlay
//! (`overlay`), background blur and replacement (`background`), class colours
//! (`classes`). Each paints the frame in its own format, plane by plane, as the format
//! table's `painted` planes describe.

mod background;
mod classes;
mod gray;
mod overlay;

use opencv::core::{self, Mat, Scalar, Size};
use opencv::prelude::*;

use crate::error::Result;
use crate::frame::Role;

pub use background::Background;
pub(super) use classes::ClassPaint;

/// The source index of each of `dst` outputs when `src` values are stretched over them by
/// OpenCV's `resize` with INTER_NEAREST (`floor(i · (1 / (dst/src)))`, computed the same way
/// so that the two routes pick the same labels).
fn nearest_positions(src: usize, dst: usize) -> Vec<usize> {
    let step = 1.0 / (dst as f64 / src as f64);
    (0..dst)
        .map(|i| ((i as f64 * step).floor() as usize).min(src - 1))
        .collect()
}

pub(super) fn one_minus(src: &Mat, dst: &mut Mat) -> Result<()> {
    src.convert_to(dst, core::CV_32F, -1.0, 1.0)?;
    Ok(())
}

pub(super) fn fill_constant(m: &mut Mat, size: Size, typ: i32, value: Scalar) -> Result<()> {
    if m.cols() != size.width || m.rows() != size.height || m.typ() != typ {
        *m = Mat::new_size_with_default(size, typ, value)?;
    } else {
        m.set_to(&value, &core::no_array())?;
    }
    Ok(())
}

/// Colour `rgb` as the bytes of one painted element with these roles (up to 4).
pub(super) fn pixel_of(roles: &[Role], rgb: [u8; 3], yuv: [u8; 3], gray: bool) -> [f64; 4] {
    let mut pixel = [0.0; 4];
    for (p, role) in pixel.iter_mut().zip(roles) {
        *p = role.value(rgb, yuv, gray);
    }
    pixel
}
