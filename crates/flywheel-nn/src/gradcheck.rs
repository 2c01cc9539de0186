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
pub fn check(mut f: impl FnMut(&[f64]) -> f64, x: &[f64], analytic: &[f64], eps: f64) -> GradCheck {
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
        let a = analytic.get(i).copied().unwrap_or(f64::NAN);
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
