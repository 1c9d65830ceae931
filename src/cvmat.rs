//! Borrow-checked OpenCV views of memory we own (GStreamer buffers, tensors), without
//! copying it. OpenCV 0.101's `new_rows_cols_with_bytes(_mut)` ties a Mat header to the
//! slice it reads; `roi` and `reshape` narrow it to the useful columns and give it its
//! channels, each view borrowing the one before it.

use opencv::boxed_ref::{BoxedRef, BoxedRefMut};
use opencv::core::{DataType, Mat, MatTraitConst};

use crate::error::{Error, Result};

/// `rows` whole rows of `stride` bytes at the start of `data` as a one-channel Mat of `T`
/// (`stride` must be a multiple of `T`'s size).
pub(crate) fn whole_rows<T: DataType>(
    data: &[u8],
    rows: usize,
    stride: usize,
) -> Result<BoxedRef<'_, Mat>> {
    let bytes = data
        .get(..rows * stride)
        .ok_or_else(|| too_short(data.len(), rows, stride))?;
    let cols = stride / std::mem::size_of::<T>();
    Ok(Mat::new_rows_cols_with_bytes::<T>(
        rows as i32,
        cols as i32,
        bytes,
    )?)
}

/// The writable twin of [`whole_rows`].
pub(crate) fn whole_rows_mut<T: DataType>(
    data: &mut [u8],
    rows: usize,
    stride: usize,
) -> Result<BoxedRefMut<'_, Mat>> {
    let len = data.len();
    let bytes = data
        .get_mut(..rows * stride)
        .ok_or_else(|| too_short(len, rows, stride))?;
    let cols = stride / std::mem::size_of::<T>();
    Ok(Mat::new_rows_cols_with_bytes_mut::<T>(
        rows as i32,
        cols as i32,
        bytes,
    )?)
}

fn too_short(len: usize, rows: usize, stride: usize) -> Error {
    Error::Input(format!(
        "{len} bytes are too few for {rows} rows of {stride} bytes"
    ))
}

/// Binds `$name` to a read-only Mat over `$data`: `$rows` rows of `$cols` pixels of `$cn`
/// elements of type `$t` (default u8), rows `$stride` bytes apart. A macro because each
/// view borrows the header before it, so all of them must live in the caller's scope.
macro_rules! view {
    ($name:ident = $data:expr, $rows:expr, $cols:expr, $cn:expr, $stride:expr) => {
        $crate::cvmat::view!($name = $data, $rows, $cols, $cn, $stride, u8)
    };
    ($name:ident = $data:expr, $rows:expr, $cols:expr, $cn:expr, $stride:expr, $t:ty) => {
        let whole = $crate::cvmat::whole_rows::<$t>($data, $rows, $stride)?;
        let columns = opencv::core::Rect::new(0, 0, ($cols * $cn) as i32, $rows as i32);
        let cropped = opencv::core::MatTraitConst::roi(&whole, columns)?;
        let $name = opencv::core::MatTraitConst::reshape(&cropped, $cn as i32, 0)?;
    };
}

/// The writable twin of [`view!`]; the typed form also takes the first pixel column `$x`.
macro_rules! view_mut {
    ($name:ident = $data:expr, $rows:expr, $cols:expr, $cn:expr, $stride:expr) => {
        $crate::cvmat::view_mut!($name = $data, $rows, $cols, $cn, $stride, u8, 0)
    };
    ($name:ident = $data:expr, $rows:expr, $cols:expr, $cn:expr, $stride:expr, $t:ty, $x:expr) => {
        let mut whole = $crate::cvmat::whole_rows_mut::<$t>($data, $rows, $stride)?;
        let columns =
            opencv::core::Rect::new(($x * $cn) as i32, 0, ($cols * $cn) as i32, $rows as i32);
        let mut cropped = opencv::core::MatTrait::roi_mut(&mut whole, columns)?;
        #[allow(unused_mut)]
        let mut $name = opencv::core::MatTrait::reshape_mut(&mut cropped, $cn as i32, 0)?;
    };
}

pub(crate) use {view, view_mut};

/// OpenCV functions reallocate their output when its size or type is not what they
/// produce; for a Mat over our memory that would mean writing elsewhere. This turns such
/// a silent miss into an error.
pub(crate) fn ensure_same_data(
    m: &impl MatTraitConst,
    expected: *const u8,
    what: &str,
) -> Result<()> {
    if m.data() != expected {
        return Err(Error::OpenCv(format!(
            "{what}: OpenCV reallocated an output that should have been written in place"
        )));
    }
    Ok(())
}
