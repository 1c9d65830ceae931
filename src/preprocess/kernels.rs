//! The row loops of segpreproc's hand-written route: widening, two-tap chroma sampling,
//! the per-channel affine colour map, and the tensor's element types.
//!
//! The chroma gathers are the one place LLVM does not vectorize, so their AVX2 versions
//! use intrinsics, tested against the portable loop (aarch64 builds run the portable loops).

use crate::kernels::dispatch;
#[cfg(target_arch = "x86_64")]
use crate::kernels::has_avx2;

dispatch! {
    /// Every `step`-th byte as f32 (one channel of interleaved pixels).
    fn widen_strided(src: &[u8], step: usize, dst: &mut [f32]) {
        if step == 1 {
            // The common case (a luma plane) as a plain zip, which vectorizes.
            for (d, s) in dst.iter_mut().zip(src) {
                *d = *s as f32;
            }
        } else {
            for (d, s) in dst.iter_mut().zip(src.iter().step_by(step)) {
                *d = *s as f32;
            }
        }
    }
}

/// Horizontal two-tap taps: per output, the index of the first and second sample (in the
/// row's elements) and the second's weight.
pub struct Taps {
    first: Vec<u32>,
    next: Vec<u32>,
    weight: Vec<f32>,
    /// The largest index, so a row can be checked once instead of per element.
    max_index: usize,
    /// `Some(s)` when every second tap is `s` elements after the first (or unused, weight
    /// 0): then one 4-byte read can fetch both taps of narrow interleaved channels.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pair_step: Option<usize>,
}

impl Taps {
    pub fn new(first: Vec<u32>, next: Vec<u32>, weight: Vec<f32>) -> Taps {
        assert!(first.len() == next.len() && first.len() == weight.len());
        let max_index = first.iter().chain(&next).max().map_or(0, |m| *m as usize);
        assert!(
            max_index < i32::MAX as usize / 2,
            "taps must fit gather indices"
        );
        let mut steps = first
            .iter()
            .zip(&next)
            .zip(&weight)
            .filter(|(_, w)| **w != 0.0)
            .map(|((f, n), _)| n.wrapping_sub(*f) as usize);
        let pair_step = match steps.next() {
            Some(s) if s > 0 && steps.all(|t| t == s) => Some(s),
            // No weighted second tap at all: any step reads the same values.
            None => Some(1),
            _ => None,
        };
        Taps {
            first,
            next,
            weight,
            max_index,
            pair_step,
        }
    }

    pub fn len(&self) -> usize {
        self.first.len()
    }

    /// Elements a row must have for channel `offset` to be sampled.
    pub fn row_len(&self, offset: usize) -> usize {
        self.max_index + offset + 1
    }
}

/// Bilinear samples of one or two interleaved byte channels between two rows: per output
/// `i`, columns `first[i]`/`next[i]` (+ the channel's offset) blended by `weight[i]` in
/// each row, then the rows blended by `row_weight`. `channels` are the byte offsets of
/// the channels (the second at most 3 bytes after the first) and their outputs.
pub fn sample_rows(
    top: &[u8],
    bottom: &[u8],
    taps: &Taps,
    row_weight: f32,
    channels: [Option<(usize, &mut [f32])>; 2],
) {
    let [first, second] = channels;
    let Some((offset, out)) = first else { return };
    let second = second.map(|(o, out)| {
        assert!(o >= offset && o - offset <= 3, "channels too far apart");
        (o - offset, out)
    });
    let reach = second.as_ref().map_or(0, |(d, _)| *d);
    assert!(out.len() <= taps.len() && second.as_ref().is_none_or(|(_, o)| o.len() == out.len()));
    assert!(taps.row_len(offset + reach) <= top.len().min(bottom.len()));
    let (top, bottom) = (&top[offset..], &bottom[offset..]);
    #[cfg(target_arch = "x86_64")]
    if has_avx2() && taps.row_len(3) <= top.len().min(bottom.len()) {
        // Both taps of both channels inside one 4-byte read (NV12's UV pairs, I420's planes).
        let pair_step = taps.pair_step.filter(|s| reach + s <= 3);
        // SAFETY: the CPU has AVX2, and every 4-byte read at a tap index stays in both rows.
        return unsafe { sample_rows_avx2(top, bottom, taps, pair_step, row_weight, out, second) };
    }
    let n = out.len();
    for (i, o) in out.iter_mut().enumerate() {
        *o = sample_at(top, bottom, taps, i, 0, row_weight);
    }
    if let Some((d, out)) = second {
        for (i, o) in out[..n].iter_mut().enumerate() {
            *o = sample_at(top, bottom, taps, i, d, row_weight);
        }
    }
}

/// One output of [`sample_rows`], channel at byte `d`: columns first, then rows.
#[inline(always)]
fn sample_at(top: &[u8], bottom: &[u8], taps: &Taps, i: usize, d: usize, row_weight: f32) -> f32 {
    let (f, n) = (taps.first[i] as usize + d, taps.next[i] as usize + d);
    let w = taps.weight[i];
    let t = top[f] as f32 + (top[n] as f32 - top[f] as f32) * w;
    let b = bottom[f] as f32 + (bottom[n] as f32 - bottom[f] as f32) * w;
    t + (b - t) * row_weight
}

/// [`sample_rows`] with AVX2 gathers, 8 outputs at a time (LLVM does not vectorize the
/// gathers). One 4-byte gather per tap and row serves both channels; with `pair_step`
/// (the second tap that many bytes after the first) one gather per row holds both taps.
///
/// # Safety
/// Every tap index + 3 must be < both rows' lengths; with `pair_step`, the second channel's
/// distance + step ≤ 3; outputs no longer than the taps.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn sample_rows_avx2(
    top: &[u8],
    bottom: &[u8],
    taps: &Taps,
    pair_step: Option<usize>,
    row_weight: f32,
    out: &mut [f32],
    second: Option<(usize, &mut [f32])>,
) {
    use std::arch::x86_64::*;
    let n = out.len();
    let (distance, mut second_out) = match second {
        Some((d, o)) => (d, Some(o)),
        None => (0, None),
    };
    let byte = _mm256_set1_epi32(0xff);
    let wy = _mm256_set1_ps(row_weight);
    // Multiplies then adds (no FMA): the same rounding as the portable loop.
    let lerp =
        |a: __m256, b: __m256, w: __m256| _mm256_add_ps(a, _mm256_mul_ps(_mm256_sub_ps(b, a), w));
    // Byte `index` of each 32-bit lane, as f32.
    let lane_byte = |v: __m256i, index: usize| {
        let shift = _mm_cvtsi32_si128((index * 8) as i32);
        _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srl_epi32(v, shift), byte))
    };
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: i + 8 ≤ n ≤ taps.len(); 4-byte reads at tap indices are in bounds (caller).
        unsafe {
            let f = _mm256_loadu_si256(taps.first.as_ptr().add(i).cast());
            let w = _mm256_loadu_ps(taps.weight.as_ptr().add(i));
            let ta = _mm256_i32gather_epi32::<1>(top.as_ptr().cast(), f);
            let ba = _mm256_i32gather_epi32::<1>(bottom.as_ptr().cast(), f);
            // The second taps: further bytes of the same reads, or reads of their own.
            let (tb, bb, further) = match pair_step {
                Some(step) => (ta, ba, step),
                None => {
                    let nx = _mm256_loadu_si256(taps.next.as_ptr().add(i).cast());
                    let tb = _mm256_i32gather_epi32::<1>(top.as_ptr().cast(), nx);
                    let bb = _mm256_i32gather_epi32::<1>(bottom.as_ptr().cast(), nx);
                    (tb, bb, 0)
                }
            };
            let value = |d: usize| {
                let upper = lerp(lane_byte(ta, d), lane_byte(tb, d + further), w);
                let lower = lerp(lane_byte(ba, d), lane_byte(bb, d + further), w);
                lerp(upper, lower, wy)
            };
            _mm256_storeu_ps(out.as_mut_ptr().add(i), value(0));
            if let Some(o) = second_out.as_deref_mut() {
                _mm256_storeu_ps(o.as_mut_ptr().add(i), value(distance));
            }
        }
        i += 8;
    }
    for j in i..n {
        out[j] = sample_at(top, bottom, taps, j, 0, row_weight);
        if let Some(o) = second_out.as_deref_mut() {
            o[j] = sample_at(top, bottom, taps, j, distance, row_weight);
        }
    }
}

dispatch! {
    /// `out_k = clamp(m_k · (c0, c1, c2, 1), lo_k, hi_k)` for the three output channels.
    fn affine3(
        inputs: [&[f32]; 3],
        m: &[[f32; 4]; 3],
        lo: [f32; 3],
        hi: [f32; 3],
        outputs: [&mut [f32]; 3],
    ) {
        let [c0, c1, c2] = inputs;
        for (k, out) in outputs.into_iter().enumerate() {
            let [a, b, c, d] = m[k];
            let (lo, hi) = (lo[k], hi[k]);
            for (((o, x), y), z) in out.iter_mut().zip(c0).zip(c1).zip(c2) {
                let v = a * x + b * y + c * z + d;
                // Written as compares (not f32::clamp) so it vectorizes.
                *o = if v < lo { lo } else if v > hi { hi } else { v };
            }
        }
    }
}

dispatch! {
    /// Interleaves three channel rows into one NHWC row.
    fn interleave3_f32(inputs: [&[f32]; 3], out: &mut [f32]) {
        let [a, b, c] = inputs;
        for (((px, x), y), z) in out.chunks_exact_mut(3).zip(a).zip(b).zip(c) {
            px[0] = *x;
            px[1] = *y;
            px[2] = *z;
        }
    }
}

dispatch! {
    /// Rounds (half to even, as OpenCV's `convertTo`) and saturates to u8.
    fn round_to_u8(src: &[f32], step: usize, out: &mut [u8]) {
        for (o, v) in out.iter_mut().step_by(step).zip(src) {
            *o = v.round_ties_even() as u8;
        }
    }
}

dispatch! {
    /// Rounds (half to even) and saturates to u16.
    fn round_to_u16(src: &[f32], step: usize, out: &mut [u16]) {
        for (o, v) in out.iter_mut().step_by(step).zip(src) {
            *o = v.round_ties_even() as u16;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two channels (byte offsets `offsets` in each pixel) of `n` outputs sampled from two rows.
    fn sample_pair(
        top: &[u8],
        bottom: &[u8],
        taps: &Taps,
        row_weight: f32,
        offsets: (usize, usize),
        n: usize,
    ) -> (Vec<f32>, Vec<f32>) {
        let (mut u, mut v) = (vec![0.0; n], vec![0.0; n]);
        sample_rows(
            top,
            bottom,
            taps,
            row_weight,
            [Some((offsets.0, &mut u[..])), Some((offsets.1, &mut v[..]))],
        );
        (u, v)
    }

    #[test]
    fn vector_and_scalar_sampling_agree_exactly() {
        let row = |seed: usize| -> Vec<u8> {
            (0..203)
                .map(|i| ((i * 37 + seed * 11) % 256) as u8)
                .collect()
        };
        let (top, bottom) = (row(1), row(2));
        // Interleaved pairs (like NV12's UV), 61 outputs (not a multiple of 8).
        let first: Vec<u32> = (0..61).map(|i| (i * 3 / 2 * 2) as u32).collect();
        let next: Vec<u32> = first.iter().map(|f| (f + 2).min(196)).collect();
        let weight: Vec<f32> = (0..61).map(|i| (i % 7) as f32 / 7.0).collect();
        let taps = Taps::new(first, next, weight);
        let run = |top: &[u8], bottom: &[u8]| sample_pair(top, bottom, &taps, 0.3, (0, 1), 61);
        // With 3 spare bytes the vector loop may run; without them only the portable one.
        let tight = taps.row_len(1);
        let (fast, slow) = (run(&top, &bottom), run(&top[..tight], &bottom[..tight]));
        assert_eq!(fast, slow);
        let f = |r: &[u8], i: usize| r[i] as f32;
        let want = {
            let (a, b) = (f(&top, 2), f(&top, 4));
            let (c, d) = (f(&bottom, 2), f(&bottom, 4));
            let w = 1.0 / 7.0;
            let t = a + (b - a) * w;
            t + (c + (d - c) * w - t) * 0.3
        };
        assert_eq!(fast.0[1], want, "output 1 reads columns 2 and 4");

        // Pixel pairs 4 bytes apart (like YUY2's U and V at bytes 1 and 3): the second taps
        // need gathers of their own.
        let first: Vec<u32> = (0..45).map(|i| (i * 17 / 16 * 4) as u32).collect();
        let next: Vec<u32> = first.iter().map(|f| (f + 4).min(192)).collect();
        let weight: Vec<f32> = (0..45).map(|i| (i % 5) as f32 / 5.0).collect();
        let taps = Taps::new(first, next, weight);
        assert_eq!(taps.pair_step, Some(4));
        let run = |top: &[u8], bottom: &[u8]| sample_pair(top, bottom, &taps, 0.6, (1, 3), 45);
        let tight = taps.row_len(3);
        assert_eq!(run(&top, &bottom), run(&top[..tight], &bottom[..tight]));
    }
}
