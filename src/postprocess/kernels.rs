//! The fixed-point blend of segpostproc's hand-written overlays.

use crate::kernels::dispatch;

dispatch! {
    /// `p = (p·keep + k) >> 8` over a span of pixel bytes, `k` holding each byte's
    /// `colour·(256 − keep) + 128` (a fixed-point blend with opacity in 1/256 steps;
    /// 255·256 + 128 fits in 16 bits, so no lane overflows).
    fn blend_span(pixels: &mut [u8], colour_terms: &[u16], keep: u16) {
        for (p, k) in pixels.iter_mut().zip(colour_terms) {
            *p = ((*p as u16 * keep + *k) >> 8) as u8;
        }
    }
}

/// The blend weights for opacity `o` (0..1): `keep` for the frame and, per channel of a
/// pixel (up to 4), the colour term of [`blend_span`].
pub fn blend_terms(colour: [u8; 4], opacity: f32) -> (u16, [u16; 4]) {
    let a = (opacity.clamp(0.0, 1.0) * 256.0).round() as u16;
    (256 - a, colour.map(|c| c as u16 * a + 128))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blend_is_within_one_level_of_the_float_formula_and_exact_at_the_ends() {
        let pixels: Vec<u8> = (0..=255).collect();
        for colour in [0u8, 1, 77, 200, 255] {
            for o in [0.0f32, 0.1, 0.25, 0.5, 0.7, 0.999, 1.0] {
                let (keep, terms) = blend_terms([colour; 4], o);
                let terms = vec![terms[0]; 256];
                let mut out = pixels.clone();
                blend_span(&mut out, &terms, keep);
                for (p, q) in pixels.iter().zip(&out) {
                    let want = *p as f32 * (1.0 - o) + colour as f32 * o;
                    assert!((*q as f32 - want).abs() <= 1.0, "{p} {colour} {o}: {q}");
                    if o == 0.0 {
                        assert_eq!(q, p);
                    }
                    if o == 1.0 {
                        assert_eq!(*q, colour);
                    }
                }
            }
        }
    }
}
