//! Dropout masks with Keras's semantics for recurrent networks: drawn once per sequence and
//! reused at every time step; kept units are scaled by `1 / (1 - rate)`.

use crate::{Real, Rng};

/// Fills `mask` with `0` (dropped, probability `rate`) or `1 / (1 - rate)` (kept).
pub fn fill_mask<T: Real>(mask: &mut [T], rate: f32, rng: &mut Rng) {
    let keep = T::from_f64(1.0 / (1.0 - rate as f64));
    for m in mask.iter_mut() {
        *m = if rng.unit_f32() < rate { T::ZERO } else { keep };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Over `n` independent draws, the share dropped is within `t = √(ln(2/δ) / 2n)` of `rate`
    /// except with probability `δ` (Hoeffding). δ = 1e-9 per rate: a correct mask fails this
    /// test for fewer than one seed in 5e8 (two rates checked); the seed is fixed (2024), so
    /// the test itself is deterministic.
    #[test]
    fn mask_drops_at_the_rate_and_scales_kept_units() {
        let n = 1_000_000;
        let t = ((2.0f64 / 1e-9).ln() / (2.0 * n as f64)).sqrt(); // 3.27e-3
        let mut rng = Rng::new(2024);
        for (rate, keep) in [(0.2f32, 1.25f32), (0.5, 2.0)] {
            let mut mask = vec![-1.0f32; n];
            fill_mask(&mut mask, rate, &mut rng);
            let dropped = mask.iter().filter(|&&m| m == 0.0).count();
            // Every other unit is kept and scaled by exactly 1 / (1 - rate).
            assert!(
                mask.iter().all(|&m| m == 0.0 || m == keep),
                "rate {rate}: a value other than 0 and {keep}"
            );
            let share = dropped as f64 / n as f64;
            assert!(
                (share - f64::from(rate)).abs() <= t,
                "rate {rate}: dropped {share:.5}, bound ±{t:.2e}"
            );
            // So the mask keeps the expected activation: mean 1 (to the same bound, scaled).
            let mean = mask.iter().map(|&m| f64::from(m)).sum::<f64>() / n as f64;
            assert!(
                (mean - 1.0).abs() <= t * f64::from(keep),
                "rate {rate}: mean {mean}"
            );
        }
        // Rate 0 keeps everything at scale 1, in f64 too.
        let mut mask = vec![-1.0f64; 1000];
        fill_mask(&mut mask, 0.0, &mut rng);
        assert!(mask.iter().all(|&m| m == 1.0));
    }
}
