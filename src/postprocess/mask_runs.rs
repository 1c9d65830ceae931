//! The hard mask `bilinear_upsample(s) > threshold`, row by row as runs of masked pixels,
//! without upsampling the probability map to the frame.
//!
//! Why: upsample, threshold and blend at frame resolution are three full-frame passes
//! (OpenCV's `resize`, `compare`, `addWeighted` + masked copy). A bilinear value inside one
//! cell of the small map (between its 2×2 corner samples) never leaves the range of those
//! corners, so a cell whose corners are all above (or all below) the threshold is masked
//! (unmasked) as a whole; only the cells the mask's edge crosses are evaluated per pixel.
//! The renderers then touch only masked pixels.
//!
//! Value at output pixel (x, y): OpenCV's pixel-centre mapping `f = (i + 0.5)·scale − 0.5`
//! per axis, clamped to the map, the two rows interpolated first, then the two columns, in
//! f32. The runs equal that formula's `> threshold` at every pixel: cells are classified
//! with a margin far wider than the formula's rounding, and the rest are evaluated.

use crate::error::{Error, Result};

/// Per-sample and per-cell classification codes; a cell's code is the AND of its corners'.
const ABOVE: u8 = 1;
const BELOW: u8 = 2;

/// Sampling positions along one axis (OpenCV's `INTER_LINEAR` convention).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Axis {
    src_len: usize,
    /// Per output index: the first of the two source samples, and the second's weight.
    pub(super) src: Vec<u32>,
    pub(super) frac: Vec<f32>,
    /// First output index of each cell `j` (cells are `src == j`), plus the end.
    cell_start: Vec<u32>,
}

impl Axis {
    pub(super) fn new(src_len: usize, out_len: usize) -> Axis {
        let scale = src_len as f64 / out_len as f64;
        let mut src = Vec::with_capacity(out_len);
        let mut frac = Vec::with_capacity(out_len);
        for i in 0..out_len {
            let f = ((i as f64 + 0.5) * scale - 0.5) as f32;
            let (mut s, mut w) = (f.floor(), f - f.floor());
            if s < 0.0 {
                (s, w) = (0.0, 0.0);
            }
            let mut s = s as usize;
            if s >= src_len - 1 {
                (s, w) = (src_len - 1, 0.0);
            }
            src.push(s as u32);
            frac.push(w);
        }
        let mut cell_start = Vec::with_capacity(src_len + 1);
        let mut i = 0;
        for j in 0..=src_len {
            while i < out_len && (src[i] as usize) < j {
                i += 1;
            }
            cell_start.push(i as u32);
        }
        Axis {
            src_len,
            src,
            frac,
            cell_start,
        }
    }
}

/// One run of equal cells in a band (a pair of map rows): cells `start..end`.
#[derive(Debug, Clone, Copy)]
struct CellRun {
    start: u16,
    end: u16,
    code: u8,
}

/// The small probability map (a crop of it), classified against one threshold.
#[derive(Default)]
pub struct MaskRuns {
    width: usize,
    height: usize,
    /// The map's crop, row-major, `width` values per row.
    values: Vec<f32>,
    threshold: f32,
    codes: Vec<u8>,
    /// One band's cell codes (scratch).
    band: Vec<u8>,
    /// Runs of equal cell codes, band after band; `band_runs[i]..band_runs[i + 1]`.
    runs: Vec<CellRun>,
    band_runs: Vec<usize>,
    /// Sampling positions per output size (a frame's planes differ: luma, chroma).
    axes: Vec<(Axis, Axis)>,
    spans: Vec<(usize, usize)>,
}

impl MaskRuns {
    /// Takes the map (rows of `stride` values, cropped to `width`×`height` at `x`, `y`)
    /// and classifies its cells against `threshold`.
    pub fn prepare(
        &mut self,
        map: &[f32],
        stride: usize,
        (x, y): (usize, usize),
        (width, height): (usize, usize),
        threshold: f32,
    ) -> Result<()> {
        if width == 0 || height == 0 || width >= u16::MAX as usize {
            return Err(Error::Input(format!(
                "a {width}×{height} score map cannot be rendered (1 to 65534 columns)"
            )));
        }
        if x + width > stride || map.len() < (y + height - 1) * stride + x + width {
            return Err(Error::Input(format!(
                "the {width}×{height} crop at ({x}, {y}) lies outside the score map"
            )));
        }
        self.width = width;
        self.height = height;
        self.threshold = threshold;
        self.values.clear();
        for r in 0..height {
            let start = (y + r) * stride + x;
            self.values.extend_from_slice(&map[start..start + width]);
        }
        // The margin covers the formula's rounding (a few ulps of values near 1).
        let margin = 1e-5 * threshold.abs().max(1.0);
        let (hi, lo) = (threshold + margin, threshold - margin);
        self.codes.resize(self.values.len(), 0);
        for (c, v) in self.codes.iter_mut().zip(&self.values) {
            *c = ((*v > hi) as u8 * ABOVE) | ((*v < lo) as u8 * BELOW);
        }
        // Cell (i, j) has corners (i|i+1, j|j+1), clamped at the last row and column.
        self.runs.clear();
        self.band_runs.clear();
        self.band.resize(width, 0);
        let band = &mut self.band;
        for i in 0..height {
            let top = &self.codes[i * width..(i + 1) * width];
            let i1 = (i + 1).min(height - 1);
            let bottom = &self.codes[i1 * width..(i1 + 1) * width];
            // Shifted zips (not j+1 indexing) so the loop vectorizes.
            for (((b, t), t1), (u, u1)) in band
                .iter_mut()
                .zip(top)
                .zip(&top[1..])
                .zip(bottom.iter().zip(&bottom[1..]))
            {
                *b = t & t1 & u & u1;
            }
            band[width - 1] = top[width - 1] & bottom[width - 1];
            self.band_runs.push(self.runs.len());
            let mut j = 0;
            while j < width {
                let code = band[j];
                let mut k = j + 1;
                // Eight cells at a time through long runs.
                let repeated = u64::from_ne_bytes([code; 8]);
                while k + 8 <= width
                    && bytemuck::pod_read_unaligned::<u64>(&band[k..k + 8]) == repeated
                {
                    k += 8;
                }
                while k < width && band[k] == code {
                    k += 1;
                }
                self.runs.push(CellRun {
                    start: j as u16,
                    end: k as u16,
                    code,
                });
                j = k;
            }
        }
        self.band_runs.push(self.runs.len());
        Ok(())
    }

    /// Calls `row(y, spans)` for every output row of a `cols`×`rows` raster, with the
    /// masked pixels of that row as sorted, disjoint `start..end` spans.
    pub fn for_each_row(
        &mut self,
        cols: usize,
        rows: usize,
        mut row: impl FnMut(usize, &[(usize, usize)]),
    ) {
        if cols == 0 || rows == 0 || self.width == 0 {
            return;
        }
        let (w, h) = (self.width, self.height);
        let fits = |(ax, ay): &(Axis, Axis)| {
            ax.src.len() == cols && ay.src.len() == rows && ax.src_len == w && ay.src_len == h
        };
        let index = match self.axes.iter().position(fits) {
            Some(i) => i,
            None => {
                // A few sizes at most (one per plane size); drop old ones if sizes change.
                if self.axes.len() >= 4 {
                    self.axes.clear();
                }
                self.axes.push((Axis::new(w, cols), Axis::new(h, rows)));
                self.axes.len() - 1
            }
        };
        let (ax, ay) = &self.axes[index];
        let (w, h, t) = (self.width, self.height, self.threshold);
        for y in 0..rows {
            let band = ay.src[y] as usize;
            let fy = ay.frac[y];
            let top = &self.values[band * w..(band + 1) * w];
            let b1 = (band + 1).min(h - 1);
            let bottom = &self.values[b1 * w..(b1 + 1) * w];
            let spans = &mut self.spans;
            spans.clear();
            let mut push = |a: usize, b: usize| match spans.last_mut() {
                Some(last) if last.1 == a => last.1 = b,
                _ => spans.push((a, b)),
            };
            for run in &self.runs[self.band_runs[band]..self.band_runs[band + 1]] {
                let (j0, j1) = (run.start as usize, run.end as usize);
                match run.code {
                    ABOVE => {
                        let (a, b) = (ax.cell_start[j0] as usize, ax.cell_start[j1] as usize);
                        if a < b {
                            push(a, b);
                        }
                    }
                    BELOW => {}
                    _ => {
                        for x in ax.cell_start[j0] as usize..ax.cell_start[j1] as usize {
                            if bilinear(top, bottom, ax.src[x] as usize, ax.frac[x], fy) > t {
                                push(x, x + 1);
                            }
                        }
                    }
                }
            }
            row(y, spans);
        }
    }
}

/// The upsampled value between two map rows: rows first (weight `fy` on `bottom`), then
/// columns (weight `fx` on column `s + 1`, clamped).
#[inline]
fn bilinear(top: &[f32], bottom: &[f32], s: usize, fx: f32, fy: f32) -> f32 {
    let s1 = (s + 1).min(top.len() - 1);
    let left = top[s] * (1.0 - fy) + bottom[s] * fy;
    let right = top[s1] * (1.0 - fy) + bottom[s1] * fy;
    left * (1.0 - fx) + right * fx
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition, pixel by pixel.
    fn brute_force(
        map: &[f32],
        (w, h): (usize, usize),
        (cols, rows): (usize, usize),
        t: f32,
    ) -> Vec<bool> {
        let (ax, ay) = (Axis::new(w, cols), Axis::new(h, rows));
        let mut out = Vec::with_capacity(cols * rows);
        for y in 0..rows {
            let b = ay.src[y] as usize;
            let top = &map[b * w..(b + 1) * w];
            let b1 = (b + 1).min(h - 1);
            let bottom = &map[b1 * w..(b1 + 1) * w];
            for x in 0..cols {
                out.push(bilinear(top, bottom, ax.src[x] as usize, ax.frac[x], ay.frac[y]) > t);
            }
        }
        out
    }

    fn from_runs(runs: &mut MaskRuns, cols: usize, rows: usize) -> Vec<bool> {
        let mut out = vec![false; cols * rows];
        let mut last_row = None;
        runs.for_each_row(cols, rows, |y, spans| {
            assert_eq!(last_row.map_or(0, |r| r + 1), y, "rows in order");
            last_row = Some(y);
            let mut end = 0;
            for &(a, b) in spans {
                assert!(
                    a >= end && a < b && b <= cols,
                    "spans sorted, disjoint: {spans:?}"
                );
                end = b;
                out[y * cols + a..y * cols + b].fill(true);
            }
        });
        assert_eq!(last_row, Some(rows - 1));
        out
    }

    /// A deterministic pseudo-random map with smooth blobs, plateaus, exact threshold
    /// values and a NaN.
    fn test_map(w: usize, h: usize, t: f32, seed: u64) -> Vec<f32> {
        let mut state = seed;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 40) as f32 / (1u64 << 24) as f32
        };
        (0..w * h)
            .map(|i| {
                let (x, y) = ((i % w) as f32, (i / w) as f32);
                let r = next();
                if r < 0.05 {
                    t
                } else if r < 0.06 {
                    f32::NAN
                } else {
                    (0.5 + 0.5 * ((x * 0.3).sin() * (y * 0.2).cos())).clamp(0.0, 1.0) * 0.9
                        + 0.1 * next()
                }
            })
            .collect()
    }

    #[test]
    fn runs_equal_the_per_pixel_formula_when_upsampling_downsampling_and_cropping() {
        for (w, h) in [(1, 1), (2, 3), (16, 9), (33, 17)] {
            for (cols, rows) in [(1, 1), (5, 4), (64, 36), (101, 59), (8, 30)] {
                for (seed, t) in [(1, 0.55), (2, 0.0), (3, 1.0), (4, 0.3)] {
                    let map = test_map(w, h, t, seed);
                    let mut runs = MaskRuns::default();
                    runs.prepare(&map, w, (0, 0), (w, h), t).unwrap();
                    let want = brute_force(&map, (w, h), (cols, rows), t);
                    assert_eq!(
                        from_runs(&mut runs, cols, rows),
                        want,
                        "{w}×{h} → {cols}×{rows}, t {t}"
                    );
                }
            }
        }
        // A crop (letterbox) of a wider map.
        let map = test_map(20, 12, 0.55, 9);
        let crop: Vec<f32> = (2..10)
            .flat_map(|r| map[r * 20 + 3..r * 20 + 17].to_vec())
            .collect();
        let mut runs = MaskRuns::default();
        runs.prepare(&map, 20, (3, 2), (14, 8), 0.55).unwrap();
        assert_eq!(
            from_runs(&mut runs, 70, 33),
            brute_force(&crop, (14, 8), (70, 33), 0.55)
        );
    }

    #[test]
    fn runs_agree_with_opencv_resize_and_compare() {
        use opencv::core::{Mat, Size};
        use opencv::prelude::*;
        let (w, h, cols, rows, t) = (64usize, 48usize, 640usize, 360usize, 0.55f32);
        let map: Vec<f32> = test_map(w, h, t, 5)
            .into_iter()
            .map(|v| if v.is_nan() { 0.0 } else { v })
            .collect();
        let small = Mat::from_slice(&map)
            .unwrap()
            .reshape(1, h as i32)
            .unwrap()
            .try_clone()
            .unwrap();
        let mut up = Mat::default();
        opencv::imgproc::resize(
            &small,
            &mut up,
            Size::new(cols as i32, rows as i32),
            0.0,
            0.0,
            opencv::imgproc::INTER_LINEAR,
        )
        .unwrap();
        let up = up.data_typed::<f32>().unwrap();
        let mut runs = MaskRuns::default();
        runs.prepare(&map, w, (0, 0), (w, h), t).unwrap();
        let ours = from_runs(&mut runs, cols, rows);
        let mut differ = 0;
        for (i, v) in up.iter().enumerate() {
            if (*v > t) != ours[i] {
                // Only rounding-level differences right at the threshold.
                assert!(
                    (v - t).abs() < 1e-4,
                    "pixel {i}: OpenCV {v}, ours {}",
                    ours[i]
                );
                differ += 1;
            }
        }
        assert!(differ * 1000 < ours.len(), "{differ} pixels differ");
        assert!(ours.iter().any(|m| *m) && ours.iter().any(|m| !m));
    }
}
