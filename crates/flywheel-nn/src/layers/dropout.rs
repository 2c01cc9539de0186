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
