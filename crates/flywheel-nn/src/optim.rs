//! Optimisers in Keras's exact update form.

use rayon::prelude::*;

use crate::{NnError, Real, Tensor};

/// Which update rule, with its hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OptimizerKind {
    /// Stochastic gradient descent, optionally with (heavy-ball) momentum:
    /// `v = momentum·v - lr·g; w += v` (plain `w -= lr·g` when momentum is 0).
    Sgd {
        /// Learning rate.
        lr: f64,
        /// Momentum coefficient (0 = none).
        momentum: f64,
    },
    /// Adam as Keras writes it: `m += (g - m)(1 - β1)`, `v += (g² - v)(1 - β2)`,
    /// `w -= m·α_t / (√v + ε)` with `α_t = lr·√(1 - β2^t) / (1 - β1^t)`.
    Adam {
        /// Learning rate (Keras: 1e-3).
        lr: f64,
        /// β1 (0.9).
        beta1: f64,
        /// β2 (0.999).
        beta2: f64,
        /// ε (1e-7).
        epsilon: f64,
    },
}

impl OptimizerKind {
    /// Keras's `adam` defaults.
    pub fn adam() -> Self {
        OptimizerKind::Adam {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-7,
        }
    }

    /// The learning rate.
    pub fn learning_rate(&self) -> f64 {
        match *self {
            OptimizerKind::Sgd { lr, .. } | OptimizerKind::Adam { lr, .. } => lr,
        }
    }
}

/// An optimiser with its per-parameter state.
#[derive(Debug, Clone)]
pub struct Optimizer<T> {
    kind: OptimizerKind,
    /// First-moment (Adam) or velocity (SGD momentum) buffers, one per parameter tensor.
    m: Vec<Vec<T>>,
    /// Second-moment buffers (Adam).
    v: Vec<Vec<T>>,
    steps: u64,
}

impl<T: Real> Optimizer<T> {
    /// A fresh optimiser.
    pub fn new(kind: OptimizerKind) -> Self {
        Optimizer {
            kind,
            m: Vec::new(),
            v: Vec::new(),
            steps: 0,
        }
    }

    /// The update rule.
    pub fn kind(&self) -> OptimizerKind {
        self.kind
    }

    /// Number of updates applied.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Applies one update. `params[i]` and `grads[i]` must have the same shapes on every call.
    pub fn step(
        &mut self,
        params: &mut [&mut Tensor<T>],
        grads: &[&Tensor<T>],
    ) -> Result<(), NnError> {
        let squares = vec![None; grads.len()];
        self.step_with_squares(params, grads, &squares)
    }

    /// Like [`Optimizer::step`], but a parameter may come with the sum of its *squared
    /// per-occurrence* gradients (`squares[i]`), used by Adam's second moment instead of the
    /// square of the summed gradient. That is what Keras does for embeddings, whose gradient is
    /// a list of rows (one per token occurrence) squared before duplicates are added up.
    pub fn step_with_squares(
        &mut self,
        params: &mut [&mut Tensor<T>],
        grads: &[&Tensor<T>],
        squares: &[Option<&Tensor<T>>],
    ) -> Result<(), NnError> {
        if params.len() != grads.len() || squares.len() != grads.len() {
            return Err(NnError::Shape(format!(
                "{} parameter tensors but {} gradients",
                params.len(),
                grads.len()
            )));
        }
        if self.m.is_empty() {
            self.m = params.iter().map(|p| vec![T::ZERO; p.len()]).collect();
            if matches!(self.kind, OptimizerKind::Adam { .. }) {
                self.v = params.iter().map(|p| vec![T::ZERO; p.len()]).collect();
            }
        }
        for (i, (p, g)) in params.iter().zip(grads).enumerate() {
            let sq_ok = squares[i].is_none_or(|s| s.len() == g.len());
            if p.len() != g.len() || p.len() != self.m[i].len() || !sq_ok {
                return Err(NnError::Shape(format!(
                    "parameter {i}: {} values, gradient {}, state {}",
                    p.len(),
                    g.len(),
                    self.m[i].len()
                )));
            }
        }
        self.steps += 1;
        match self.kind {
            OptimizerKind::Sgd { lr, momentum } => {
                let lr = T::from_f64(lr);
                let mom = T::from_f64(momentum);
                for ((p, g), m) in params.iter_mut().zip(grads).zip(self.m.iter_mut()) {
                    sgd_update(p.data_mut(), g.data(), m, lr, mom, momentum != 0.0);
                }
            }
            OptimizerKind::Adam {
                lr,
                beta1,
                beta2,
                epsilon,
            } => {
                // Keras computes the bias corrections in float32.
                let t = T::from_f64(self.steps as f64);
                let b1 = T::from_f64(beta1);
                let b2 = T::from_f64(beta2);
                let b1p = T::from_f64(b1.to_f64().powf(t.to_f64()));
                let b2p = T::from_f64(b2.to_f64().powf(t.to_f64()));
                let alpha = T::from_f64(lr) * (T::ONE - b2p).sqrt() / (T::ONE - b1p);
                let c = AdamConsts {
                    one_minus_b1: T::ONE - b1,
                    one_minus_b2: T::ONE - b2,
                    alpha,
                    eps: T::from_f64(epsilon),
                };
                for ((((p, g), sq), m), v) in params
                    .iter_mut()
                    .zip(grads)
                    .zip(squares)
                    .zip(self.m.iter_mut())
                    .zip(self.v.iter_mut())
                {
                    adam_tensor(p.data_mut(), g.data(), sq.map(|s| s.data()), m, v, &c);
                }
            }
        }
        Ok(())
    }
}

#[inline(always)]
fn sgd_update<T: Real>(p: &mut [T], g: &[T], m: &mut [T], lr: T, mom: T, use_momentum: bool) {
    if use_momentum {
        for ((w, &g), m) in p.iter_mut().zip(g).zip(m.iter_mut()) {
            *m = *m * mom - g * lr;
            *w += *m;
        }
    } else {
        for (w, &g) in p.iter_mut().zip(g) {
            *w -= lr * g;
        }
    }
}

/// Tensors at least this large are updated in parallel on the current rayon pool.
const PARALLEL_MIN: usize = 1 << 16;
const PARALLEL_CHUNK: usize = 1 << 14;

/// Adam on one tensor, split across the current rayon pool when it is large (element-wise, so
/// the result does not depend on the split).
fn adam_tensor<T: Real>(
    p: &mut [T],
    g: &[T],
    sq: Option<&[T]>,
    m: &mut [T],
    v: &mut [T],
    c: &AdamConsts<T>,
) {
    if p.len() < PARALLEL_MIN || rayon::current_num_threads() < 2 {
        match sq {
            Some(sq) => adam_update_sq(p, g, sq, m, v, c),
            None => adam_update(p, g, m, v, c),
        }
        return;
    }
    let parts = p
        .par_chunks_mut(PARALLEL_CHUNK)
        .zip(g.par_chunks(PARALLEL_CHUNK))
        .zip(m.par_chunks_mut(PARALLEL_CHUNK))
        .zip(v.par_chunks_mut(PARALLEL_CHUNK))
        .enumerate();
    parts.for_each(|(i, (((p, g), m), v))| match sq {
        Some(sq) => {
            let lo = i * PARALLEL_CHUNK;
            adam_update_sq(p, g, &sq[lo..lo + p.len()], m, v, c)
        }
        None => adam_update(p, g, m, v, c),
    });
}

/// Runs an element-wise update body through its AVX2 copy where the CPU has it.
macro_rules! dispatch_update {
    ($body:ident, $avx:ident, ($($arg:ident: $ty:ty),*)) => {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2")]
        unsafe fn $avx<T: Real>($($arg: $ty),*) {
            $body($($arg),*)
        }

        #[cfg(target_arch = "x86_64")]
        if crate::simd::has_avx2() {
            // SAFETY: the CPU supports AVX2, checked just above.
            unsafe { $avx($($arg),*) };
            return;
        }
        $body($($arg),*)
    };
}

fn adam_update_sq<T: Real>(
    p: &mut [T],
    g: &[T],
    sq: &[T],
    m: &mut [T],
    v: &mut [T],
    c: &AdamConsts<T>,
) {
    dispatch_update!(adam_update_sq_body, adam_update_sq_avx2, (p: &mut [T], g: &[T], sq: &[T], m: &mut [T], v: &mut [T], c: &AdamConsts<T>));
}

fn adam_update<T: Real>(p: &mut [T], g: &[T], m: &mut [T], v: &mut [T], c: &AdamConsts<T>) {
    dispatch_update!(adam_update_body, adam_update_avx2, (p: &mut [T], g: &[T], m: &mut [T], v: &mut [T], c: &AdamConsts<T>));
}

#[inline(always)]
fn adam_update_sq_body<T: Real>(
    p: &mut [T],
    g: &[T],
    sq: &[T],
    m: &mut [T],
    v: &mut [T],
    c: &AdamConsts<T>,
) {
    for ((((w, &g), &sq), m), v) in p
        .iter_mut()
        .zip(g)
        .zip(sq)
        .zip(m.iter_mut())
        .zip(v.iter_mut())
    {
        *m += (g - *m) * c.one_minus_b1;
        *v += (sq - *v) * c.one_minus_b2;
        *w -= *m * c.alpha / (v.sqrt() + c.eps);
    }
}

struct AdamConsts<T> {
    one_minus_b1: T,
    one_minus_b2: T,
    alpha: T,
    eps: T,
}

#[inline(always)]
fn adam_update_body<T: Real>(p: &mut [T], g: &[T], m: &mut [T], v: &mut [T], c: &AdamConsts<T>) {
    for (((w, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
        *m += (g - *m) * c.one_minus_b1;
        *v += (g * g - *v) * c.one_minus_b2;
        *w -= *m * c.alpha / (v.sqrt() + c.eps);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `steps` of `kind` from `w0` with the gradients `gs` (one per step) in `f64`.
    fn run(kind: OptimizerKind, w0: &[f64], gs: &[&[f64]]) -> Vec<Vec<f64>> {
        let mut w = Tensor::from_vec(&[w0.len()], w0.to_vec()).unwrap();
        let mut opt: Optimizer<f64> = Optimizer::new(kind);
        gs.iter()
            .map(|g| {
                let g = Tensor::from_vec(&[g.len()], g.to_vec()).unwrap();
                opt.step(&mut [&mut w], &[&g]).unwrap();
                w.data().to_vec()
            })
            .collect()
    }

    fn assert_all_close(what: &str, got: &[f64], want: &[f64]) {
        assert_eq!(got.len(), want.len(), "{what}");
        for (i, (a, b)) in got.iter().zip(want).enumerate() {
            assert!(
                (a - b).abs() <= 1e-12 * b.abs().max(1.0),
                "{what} [{i}]: {a} vs {b}"
            );
        }
    }

    #[test]
    fn plain_sgd_matches_a_hand_computed_step() {
        let kind = OptimizerKind::Sgd {
            lr: 0.1,
            momentum: 0.0,
        };
        let w = run(kind, &[1.0, -0.5], &[&[0.2, -0.4], &[0.1, 0.3]]);
        // w -= 0.1 g: [1 - 0.02, -0.5 + 0.04], then [0.98 - 0.01, -0.46 - 0.03].
        assert_all_close("step 1", &w[0], &[0.98, -0.46]);
        assert_all_close("step 2", &w[1], &[0.97, -0.49]);
    }

    #[test]
    fn sgd_with_momentum_matches_a_hand_computed_step() {
        let kind = OptimizerKind::Sgd {
            lr: 0.1,
            momentum: 0.9,
        };
        let w = run(kind, &[1.0, -0.5], &[&[0.2, -0.4], &[0.1, 0.3]]);
        // v1 = -0.1 g1 = [-0.02, 0.04], w1 = w0 + v1.
        assert_all_close("step 1", &w[0], &[0.98, -0.46]);
        // v2 = 0.9 v1 - 0.1 g2 = [-0.018 - 0.01, 0.036 - 0.03] = [-0.028, 0.006], w2 = w1 + v2.
        assert_all_close("step 2", &w[1], &[0.952, -0.454]);
    }

    /// Keras's Adam (see [`OptimizerKind::Adam`]), lr 0.1, β 0.9/0.999, ε 1e-7, on gradients
    /// of very different sizes: at 1e-6 the uncorrected `√v` (3e-8) is below ε, so the step
    /// depends on ε and on where it is added (a textbook Adam, `m̂ / (√v̂ + ε)`, moves that
    /// weight by 0.091 instead of 0.024). A zero gradient leaves its weight alone. Expected
    /// values from the formula in double precision:
    ///
    /// ```text
    /// m = v = 0
    /// for t, g in enumerate(gs, 1):
    ///     alpha = lr * sqrt(1 - b2**t) / (1 - b1**t)
    ///     m += (g - m) * (1 - b1); v += (g*g - v) * (1 - b2)
    ///     w -= m * alpha / (sqrt(v) + eps)
    /// ```
    #[test]
    fn adam_matches_a_hand_computed_step() {
        let kind = OptimizerKind::Adam {
            lr: 0.1,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-7,
        };
        let w0 = [1.0, -0.5, 0.25, 2.0];
        let w = run(
            kind,
            &w0,
            &[&[0.5, -2.0, 1e-6, 0.0], &[-0.25, -1.0, 3e-6, 0.0]],
        );
        assert_all_close(
            "step 1",
            &w[0],
            &[
                0.9000006324515321,
                -0.400000158113633,
                0.22597469266479578,
                2.0,
            ],
        );
        assert_all_close(
            "step 2",
            &w[1],
            &[
                0.8733670792079219,
                -0.30678232611517864,
                0.18008678399954448,
                2.0,
            ],
        );
    }

    /// Adam over a tensor above `PARALLEL_MIN` gives bit-identical results on one thread
    /// (serial path) and on four (the chunks split across the pool), with and without the
    /// per-occurrence squares, in `f32` as in training.
    #[test]
    fn adam_parallel_path_equals_serial() {
        let n = PARALLEL_MIN + PARALLEL_CHUNK / 2 + 3; // a partial last chunk
        let mut rng = crate::Rng::new(5);
        let mut values = |scale: f64| -> Vec<f32> {
            (0..n)
                .map(|_| (rng.uniform(-1.0, 1.0) * scale) as f32)
                .collect()
        };
        let w0 = values(1.0);
        let grads: Vec<Vec<f32>> = (0..3).map(|s| values(10f64.powi(-2 - s))).collect();
        let squares: Vec<Vec<f32>> = grads
            .iter()
            .map(|g| g.iter().map(|v| v * v * 1.5).collect())
            .collect();
        let train = |threads: usize, with_squares: bool| -> Vec<f32> {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                // The conditions under which `adam_tensor` splits the tensor.
                assert_eq!(rayon::current_num_threads() >= 2, threads > 1);
                assert!(n >= PARALLEL_MIN);
                let mut w = Tensor::from_vec(&[n], w0.clone()).unwrap();
                let mut opt: Optimizer<f32> = Optimizer::new(OptimizerKind::adam());
                for (g, sq) in grads.iter().zip(&squares) {
                    let g = Tensor::from_vec(&[n], g.clone()).unwrap();
                    let sq = Tensor::from_vec(&[n], sq.clone()).unwrap();
                    let sq = if with_squares { Some(&sq) } else { None };
                    opt.step_with_squares(&mut [&mut w], &[&g], &[sq]).unwrap();
                }
                w.data().to_vec()
            })
        };
        for with_squares in [false, true] {
            let serial = train(1, with_squares);
            let parallel = train(4, with_squares);
            let moved = serial.iter().zip(&w0).filter(|(a, b)| a != b).count();
            assert!(moved > n / 2, "only {moved} of {n} weights moved");
            let differ = serial
                .iter()
                .zip(&parallel)
                .filter(|(a, b)| a.to_bits() != b.to_bits())
                .count();
            assert_eq!(differ, 0, "squares {with_squares}: {differ} weights differ");
        }
    }
}
