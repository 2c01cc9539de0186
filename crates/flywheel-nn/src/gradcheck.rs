//! Finite-difference gradient checking (central differences in `f64`).

/// The outcome of a gradient check.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GradCheck {
    /// Largest `|analytic - numeric| / max(|analytic|, |numeric|, 1e-5)` over all coordinates.
    pub max_rel_error: f64,
    /// The coordinate where it occurred.
    pub worst_index: usize,
    /// Analytic and numeric values there.
    pub analytic: f64,
    /// See `analytic`.
    pub numeric: f64,
}

/// Compares `analytic` with central differences of `f` around `x` (step `eps`).
///
/// # Panics
///
/// When `analytic` does not have one value per coordinate of `x`: a gradient of the wrong
/// length is a bug of the caller, and comparing its common prefix would hide it.
pub fn check(mut f: impl FnMut(&[f64]) -> f64, x: &[f64], analytic: &[f64], eps: f64) -> GradCheck {
    assert_eq!(
        analytic.len(),
        x.len(),
        "gradient check: the analytic gradient has {} values for {} inputs",
        analytic.len(),
        x.len()
    );
    let mut xs = x.to_vec();
    let mut worst = GradCheck {
        max_rel_error: 0.0,
        worst_index: 0,
        analytic: 0.0,
        numeric: 0.0,
    };
    for i in 0..xs.len() {
        let orig = xs[i];
        xs[i] = orig + eps;
        let up = f(&xs);
        xs[i] = orig - eps;
        let down = f(&xs);
        xs[i] = orig;
        let numeric = (up - down) / (2.0 * eps);
        let a = analytic[i];
        let rel = (a - numeric).abs() / a.abs().max(numeric.abs()).max(1e-5);
        if rel > worst.max_rel_error || rel.is_nan() {
            worst = GradCheck {
                max_rel_error: if rel.is_nan() { f64::INFINITY } else { rel },
                worst_index: i,
                analytic: a,
                numeric,
            };
        }
    }
    worst
}

#[cfg(test)]
mod tests {
    use super::check;

    fn square_sum(x: &[f64]) -> f64 {
        x.iter().map(|v| v * v).sum()
    }

    #[test]
    fn accepts_the_right_gradient_and_rejects_a_wrong_one() {
        let x = [0.5, -1.5, 2.0];
        let right = [1.0, -3.0, 4.0];
        assert!(check(square_sum, &x, &right, 1e-6).max_rel_error < 1e-8);
        let wrong = [1.0, -3.0, 0.0];
        let r = check(square_sum, &x, &wrong, 1e-6);
        assert_eq!(r.worst_index, 2);
        assert!(r.max_rel_error > 0.99, "{r:?}");
    }

    #[test]
    #[should_panic(expected = "the analytic gradient has 2 values for 3 inputs")]
    fn a_short_gradient_is_an_error() {
        check(square_sum, &[0.5, -1.5, 2.0], &[1.0, -3.0], 1e-6);
    }

    #[test]
    #[should_panic(expected = "the analytic gradient has 4 values for 3 inputs")]
    fn a_long_gradient_is_an_error() {
        check(square_sum, &[0.5, -1.5, 2.0], &[1.0, -3.0, 4.0, 9.0], 1e-6);
    }
}
