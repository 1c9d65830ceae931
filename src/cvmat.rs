//! Thin, checked wrappers that let OpenCV read and write memory we own (GStreamer
//! buffers, tensors) without copying it.

use opencv::core::{CV_8UC, Mat, MatTraitConst};

use crate::error::{Error, Result};

/// A Mat header over borrowed bytes. The caller keeps `data` alive and unaliased for the
/// lifetime of the Mat; that is why this stays private to the crate.
///
/// # Safety
/// `data` must be valid for `stride * (rows - 1) + cols * elem_size` bytes.
pub(crate) unsafe fn mat_over(
    data: *const u8,
    rows: usize,
    cols: usize,
    typ: i32,
    stride: usize,
) -> Result<Mat> {
    // SAFETY: forwarded from the caller; OpenCV only records the pointer.
    let m = unsafe {
        Mat::new_rows_cols_with_data_unsafe(rows as i32, cols as i32, typ, data as *mut _, stride)
    }?;
    Ok(m)
}

/// Mat type of `channels` interleaved u8 values.
pub(crate) fn u8_type(channels: usize) -> i32 {
    CV_8UC(channels as i32)
}

/// OpenCV functions reallocate their output when its size or type is not what they
/// produce; for a Mat over our memory that would mean writing elsewhere. This turns such
/// a silent miss into an error.
pub(crate) fn ensure_same_data(m: &Mat, expected: *const u8, what: &str) -> Result<()> {
    if m.data() != expected {
        return Err(Error::OpenCv(format!(
            "{what}: OpenCV reallocated an output that should have been written in place"
        )));
    }
    Ok(())
}
