//! Large tensors (FFNet's 1024×2048) are split into bands of rows, one thread each; every
//! row is independent, so the result does not depend on the split.

use super::rows::{RowBuffers, RowJob, TensorBand};
use crate::tensor::{Region, TensorSpec};

/// Tensors with at least this many pixels are written by several threads.
const PARALLEL_MIN_PIXELS: usize = 512 * 1024;
/// The most threads one tensor is split over (memory bandwidth, not cores, limits beyond).
const MAX_THREADS: usize = 4;

/// Threads for a `region` given the setting (0 = automatic).
fn thread_count(setting: usize, region: Region) -> usize {
    let (w, h) = (region.width, region.height);
    match setting {
        0 if w * h >= PARALLEL_MIN_PIXELS => {
            std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_THREADS))
        }
        0 => 1,
        n => n,
    }
    .clamp(1, h.max(1))
}

/// Fills the region's rows of `out` with `job`, on one thread or several (`setting`:
/// 0 = automatic). `buffers` holds one row-buffer set per thread, kept between frames.
pub(super) fn fill_rows(
    job: &RowJob<'_>,
    out: &mut [u8],
    target: TensorSpec,
    region: Region,
    setting: usize,
    buffers: &mut Vec<RowBuffers>,
) {
    let h = region.height;
    let threads = thread_count(setting, region);
    if buffers.len() < threads {
        buffers.resize_with(threads, RowBuffers::default);
    }
    let mut rest = TensorBand::new(out, target, region.y, 0..h);
    if threads == 1 {
        job.fill(0..h, &mut rest, &mut buffers[0]);
        return;
    }
    let band = h.div_ceil(threads);
    std::thread::scope(|scope| {
        for (i, bufs) in buffers.iter_mut().take(threads).enumerate() {
            let rows = (i * band).min(h)..((i + 1) * band).min(h);
            let mut part = rest.split_off_front(rows.len(), target);
            scope.spawn(move || job.fill(rows, &mut part, bufs));
        }
    });
}
