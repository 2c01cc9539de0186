//! Branch-free, vectorisable `exp`, `sigmoid` and `tanh` for `f32`.
//!
//! libm's `expf`/`tanhf` are scalar calls that stop the compiler from vectorising the gate loops;
//! these use only arithmetic, min/max and bit operations, so a loop over a slice becomes SIMD
//! code. Accuracy: a few ulp for `exp` (Cephes polynomial), < 6e-7 absolute for `tanh`
//! (Eigen's rational approximation, the one TensorFlow uses on CPU; < 3e-8 in exact
//! arithmetic, the rest is `f32` rounding near ±1).

const LOG2E: f32 = std::f32::consts::LOG2_E;
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// 1.5 * 2^23: adding it rounds a float to an integer held in the low mantissa bits.
const ROUND_MAGIC: f32 = 12_582_912.0;

/// `e^x`, clamped to the finite, normal `f32` range.
#[inline(always)]
#[allow(clippy::excessive_precision)]
pub fn exp_f32(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    let shifted = x * LOG2E + ROUND_MAGIC;
    let k = shifted - ROUND_MAGIC;
    let ki = shifted.to_bits().wrapping_sub(ROUND_MAGIC.to_bits()) as i32;
    let r = x - k * LN2_HI - k * LN2_LO;
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 5.000_000_1e-1;
    let y = p * r * r + r + 1.0;
    let scale = f32::from_bits(((ki + 127) as u32) << 23);
    y * scale
}

/// `1 / (1 + e^-x)`.
#[inline(always)]
pub fn sigmoid_f32(x: f32) -> f32 {
    1.0 / (1.0 + exp_f32(-x))
}

/// Hyperbolic tangent (odd rational approximation on `[-7.9, 7.9]`, ±1 outside).
#[inline(always)]
#[allow(clippy::excessive_precision)]
pub fn tanh_f32(x: f32) -> f32 {
    const CLAMP: f32 = 7.905_311;
    let x = x.clamp(-CLAMP, CLAMP);
    let x2 = x * x;
    let mut p = -2.760_768_5e-16_f32;
    p = p * x2 + 2.000_187_9e-13;
    p = p * x2 - 8.604_671_5e-11;
    p = p * x2 + 5.122_297e-8;
    p = p * x2 + 1.485_722_4e-5;
    p = p * x2 + 6.372_619_3e-4;
    p = p * x2 + 4.893_524_6e-3;
    p *= x;
    let mut q = 1.198_258_4e-6_f32;
    q = q * x2 + 1.185_347_1e-4;
    q = q * x2 + 2.268_434_6e-3;
    q = q * x2 + 4.893_525e-3;
    p / q
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid() -> impl Iterator<Item = f32> {
        (-40_000..=40_000).map(|i| i as f32 * 0.0025)
    }

    #[test]
    fn exp_is_accurate() {
        for x in grid()
            .filter(|x| x.abs() < 87.0)
            .chain([-86.0, -50.0, 50.0, 87.5])
        {
            let want = (x as f64).exp();
            let got = exp_f32(x) as f64;
            assert!(
                ((got - want) / want).abs() < 4e-7,
                "exp({x}) = {got}, want {want}"
            );
        }
    }

    #[test]
    fn sigmoid_is_accurate() {
        for x in grid() {
            let want = 1.0 / (1.0 + (-(x as f64)).exp());
            let got = sigmoid_f32(x) as f64;
            assert!(
                (got - want).abs() < 2e-7,
                "sigmoid({x}) = {got}, want {want}"
            );
        }
        assert_eq!(sigmoid_f32(200.0), 1.0);
        assert!(sigmoid_f32(-200.0) >= 0.0 && sigmoid_f32(-200.0) < 1e-30);
    }

    #[test]
    fn tanh_is_accurate() {
        for x in grid().chain([1e-6, -1e-5, 20.0, -20.0]) {
            let want = (x as f64).tanh();
            let got = tanh_f32(x) as f64;
            assert!((got - want).abs() < 6e-7, "tanh({x}) = {got}, want {want}");
        }
        assert_eq!(tanh_f32(0.0), 0.0);
    }
}
