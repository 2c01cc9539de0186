//! A linear model on sparse features (TF-IDF vectors) trained to convergence by L-BFGS, as
//! scikit-learn's `LogisticRegression(solver="lbfgs")` (or, with the squared hinge loss, its
//! `LinearSVC`): the objective is the mean loss plus `l2 / 2 · ||W||²` (scikit-learn's `C` is
//! `1 / (l2 · n)`); the bias is not penalised.
//!
//! Everything numeric is in `f64`; the objective's gradient is summed over fixed chunks of rows
//! in parallel and combined in chunk order, so the result does not depend on the thread count.

use rayon::prelude::*;

use crate::{NnError, Parameters, Tensor};

/// Rows of sparse features in compressed form.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SparseRows {
    /// `indptr[i]..indptr[i + 1]` are row `i`'s entries.
    pub indptr: Vec<usize>,
    /// Feature index of each entry.
    pub indices: Vec<u32>,
    /// Value of each entry.
    pub values: Vec<f32>,
}

impl SparseRows {
    /// No rows.
    pub fn new() -> Self {
        SparseRows {
            indptr: vec![0],
            ..Default::default()
        }
    }

    /// Appends a row.
    pub fn push(&mut self, indices: &[u32], values: &[f32]) {
        self.indices.extend_from_slice(indices);
        self.values.extend_from_slice(values);
        self.indptr.push(self.indices.len());
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.indptr.len().saturating_sub(1)
    }

    /// True without rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Row `i`.
    pub fn row(&self, i: usize) -> (&[u32], &[f32]) {
        let r = self.indptr[i]..self.indptr[i + 1];
        (&self.indices[r.clone()], &self.values[r])
    }
}

/// The output and loss of a linear model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinearLoss {
    /// Softmax over classes, cross-entropy.
    Softmax,
    /// A sigmoid per output, binary cross-entropy summed over outputs.
    Sigmoid,
    /// One linear output, half squared error.
    Mse,
    /// One-vs-rest squared hinge (the L2-loss linear SVM, scikit-learn's `LinearSVC`): output
    /// `j` of a row of class `c` loses `max(0, 1 - t·z_j)²` with `t = 1` for `j = c`, else
    /// `-1`. Predictions are the softmax of the margins (they rank; they are not calibrated).
    SquaredHinge,
}

impl LinearLoss {
    /// True for the losses trained on one class per row.
    pub fn takes_classes(self) -> bool {
        matches!(self, LinearLoss::Softmax | LinearLoss::SquaredHinge)
    }
}

/// Targets of the rows.
#[derive(Debug, Clone, Copy)]
pub enum LinearTargets<'a> {
    /// One class per row.
    Classes(&'a [u32]),
    /// `[rows, outputs]` values (0/1 for sigmoid, reals for squared error).
    Values(&'a [f32]),
}

/// `logits = x · W + b`.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearModel {
    /// `[features, outputs]`.
    pub weight: Tensor<f32>,
    /// `[outputs]`.
    pub bias: Tensor<f32>,
    /// The loss.
    pub loss: LinearLoss,
}

/// What a fit reached and what it cost.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinearFit {
    /// The final objective.
    pub objective: f64,
    /// Evaluations of the objective and its gradient (each one pass over the rows): L-BFGS's
    /// work, the same on every run and thread count.
    pub evaluations: usize,
}

/// Rows per chunk of the parallel objective (fixed, so sums do not depend on threads).
const CHUNK: usize = 256;

impl LinearModel {
    /// All-zero weights.
    pub fn new(features: usize, outputs: usize, loss: LinearLoss) -> Self {
        LinearModel {
            weight: Tensor::zeros(&[features, outputs]),
            bias: Tensor::zeros(&[outputs]),
            loss,
        }
    }

    /// Number of outputs.
    pub fn outputs(&self) -> usize {
        self.bias.len()
    }

    /// Number of features.
    pub fn features(&self) -> usize {
        self.weight.shape()[0]
    }

    /// Probabilities (or values) of one sparse row.
    pub fn predict(&self, indices: &[u32], values: &[f32], out: &mut [f32]) -> Result<(), NnError> {
        let k = self.outputs();
        if out.len() != k {
            return Err(NnError::Shape(format!(
                "{k} outputs, buffer of {}",
                out.len()
            )));
        }
        if let Some(&f) = indices.iter().find(|&&f| f as usize >= self.features()) {
            return Err(NnError::Shape(format!(
                "feature {f} is outside the {} weight rows",
                self.features()
            )));
        }
        out.copy_from_slice(self.bias.data());
        let w = self.weight.data();
        for (&f, &v) in indices.iter().zip(values) {
            let row = &w[f as usize * k..(f as usize + 1) * k];
            for (o, &wv) in out.iter_mut().zip(row) {
                *o += v * wv;
            }
        }
        match self.loss {
            LinearLoss::Softmax | LinearLoss::SquaredHinge => {
                let max = out.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let mut sum = 0.0;
                for o in out.iter_mut() {
                    *o = (*o - max).exp();
                    sum += *o;
                }
                out.iter_mut().for_each(|o| *o /= sum);
            }
            LinearLoss::Sigmoid => out.iter_mut().for_each(|o| *o = 1.0 / (1.0 + (-*o).exp())),
            LinearLoss::Mse => {}
        }
        Ok(())
    }

    /// Fits the weights by L-BFGS from their current values.
    pub fn fit(
        &mut self,
        x: &SparseRows,
        y: LinearTargets<'_>,
        l2: f64,
        max_iter: usize,
        tol: f64,
    ) -> Result<LinearFit, NnError> {
        self.fit_weighted(x, y, &[], l2, max_iter, tol)
    }

    /// [`LinearModel::fit`] with a weight per row in the mean loss (`row_weights` empty: every
    /// row weighs 1), as scikit-learn's `sample_weight` (and `class_weight`, row by row).
    pub fn fit_weighted(
        &mut self,
        x: &SparseRows,
        y: LinearTargets<'_>,
        row_weights: &[f64],
        l2: f64,
        max_iter: usize,
        tol: f64,
    ) -> Result<LinearFit, NnError> {
        let (k, f) = (self.outputs(), self.features());
        check_targets(x, y, k, self.loss)?;
        if !row_weights.is_empty() && row_weights.len() != x.len() {
            return Err(NnError::Shape(format!(
                "{} row weights for {} rows",
                row_weights.len(),
                x.len()
            )));
        }
        if let Some(bad) = row_weights.iter().find(|w| !(w.is_finite() && **w >= 0.0)) {
            return Err(NnError::Shape(format!(
                "row weight {bad} is not a finite non-negative number"
            )));
        }
        if let Some(&bad) = x.indices.iter().find(|&&i| i as usize >= f) {
            return Err(NnError::Shape(format!("feature {bad} of {f}")));
        }
        let mut params: Vec<f64> = self
            .weight
            .data()
            .iter()
            .chain(self.bias.data())
            .map(|&v| f64::from(v))
            .collect();
        let loss = self.loss;
        let cols = SparseColumns::of(x, f);
        let mut evaluations = 0;
        let value = lbfgs(
            &mut params,
            |p, g| {
                evaluations += 1;
                objective(p, g, x, &cols, y, row_weights, k, f, l2, loss)
            },
            max_iter,
            tol,
        );
        for (w, &p) in self.weight.data_mut().iter_mut().zip(&params[..f * k]) {
            *w = p as f32;
        }
        for (b, &p) in self.bias.data_mut().iter_mut().zip(&params[f * k..]) {
            *b = p as f32;
        }
        Ok(LinearFit {
            objective: value,
            evaluations,
        })
    }
}

impl Parameters<f32> for LinearModel {
    fn tensors(&self) -> Vec<(String, &Tensor<f32>)> {
        vec![
            ("linear.weight".to_string(), &self.weight),
            ("linear.bias".to_string(), &self.bias),
        ]
    }

    fn tensors_mut(&mut self) -> Vec<&mut Tensor<f32>> {
        vec![&mut self.weight, &mut self.bias]
    }
}

fn check_targets(
    x: &SparseRows,
    y: LinearTargets<'_>,
    k: usize,
    loss: LinearLoss,
) -> Result<(), NnError> {
    let n = x.len();
    match (loss, y) {
        (LinearLoss::Softmax | LinearLoss::SquaredHinge, LinearTargets::Classes(c))
            if c.len() == n =>
        {
            match c.iter().find(|&&c| c as usize >= k) {
                Some(c) => Err(NnError::Shape(format!("class {c} of {k}"))),
                None => Ok(()),
            }
        }
        (LinearLoss::Sigmoid | LinearLoss::Mse, LinearTargets::Values(v)) if v.len() == n * k => {
            Ok(())
        }
        _ => Err(NnError::Shape(format!(
            "targets do not fit {n} rows, {k} outputs and the {loss:?} loss"
        ))),
    }
}

/// The columns of [`SparseRows`] (rows of each feature), for the gradient `Xᵀ · dz`.
#[derive(Debug, Clone, Default)]
pub struct SparseColumns {
    indptr: Vec<usize>,
    rows: Vec<u32>,
    values: Vec<f32>,
}

impl SparseColumns {
    /// Transposes `x` with `features` columns.
    pub fn of(x: &SparseRows, features: usize) -> Self {
        let mut counts = vec![0usize; features + 1];
        for &f in &x.indices {
            counts[f as usize + 1] += 1;
        }
        for i in 0..features {
            counts[i + 1] += counts[i];
        }
        let mut next = counts.clone();
        let mut rows = vec![0u32; x.indices.len()];
        let mut values = vec![0f32; x.indices.len()];
        for i in 0..x.len() {
            let (idx, val) = x.row(i);
            for (&f, &v) in idx.iter().zip(val) {
                let at = next[f as usize];
                rows[at] = i as u32;
                values[at] = v;
                next[f as usize] += 1;
            }
        }
        SparseColumns {
            indptr: counts,
            rows,
            values,
        }
    }
}

/// Mean loss over rows (each times its weight in `row_weights`; empty: weight 1) plus
/// `l2 / 2 · ||W||²`, and its gradient (`params` = W then b); `cols` is [`SparseColumns::of`] `x`.
#[allow(clippy::too_many_arguments)]
pub fn objective(
    params: &[f64],
    grad: &mut [f64],
    x: &SparseRows,
    cols: &SparseColumns,
    y: LinearTargets<'_>,
    row_weights: &[f64],
    k: usize,
    features: usize,
    l2: f64,
    loss: LinearLoss,
) -> f64 {
    let n = x.len();
    let (w, b) = params.split_at(features * k);
    // d loss_i / d z_i for every row, in parallel chunks; losses summed in chunk order.
    let mut dz = vec![0.0f64; n * k];
    let losses: Vec<f64> = dz
        .par_chunks_mut(CHUNK * k)
        .enumerate()
        .map(|(c, dzc)| {
            let mut total = 0.0;
            for (j, z) in dzc.chunks_exact_mut(k).enumerate() {
                let i = c * CHUNK + j;
                let (idx, val) = x.row(i);
                let weight = row_weights.get(i).copied().unwrap_or(1.0);
                let before = total;
                z.copy_from_slice(b);
                for (&f, &v) in idx.iter().zip(val) {
                    let row = &w[f as usize * k..(f as usize + 1) * k];
                    for (zj, &wj) in z.iter_mut().zip(row) {
                        *zj += f64::from(v) * wj;
                    }
                }
                match (loss, y) {
                    (LinearLoss::Softmax, LinearTargets::Classes(cls)) => {
                        let max = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                        let sum: f64 = z.iter().map(|&v| (v - max).exp()).sum();
                        let cls = cls[i] as usize;
                        total += sum.ln() + max - z[cls];
                        for zj in z.iter_mut() {
                            *zj = (*zj - max).exp() / sum;
                        }
                        z[cls] -= 1.0;
                    }
                    (LinearLoss::SquaredHinge, LinearTargets::Classes(cls)) => {
                        let cls = cls[i] as usize;
                        for (j, zj) in z.iter_mut().enumerate() {
                            let t = if j == cls { 1.0 } else { -1.0 };
                            let m = 1.0 - t * *zj;
                            if m > 0.0 {
                                total += m * m;
                                *zj = -2.0 * t * m;
                            } else {
                                *zj = 0.0;
                            }
                        }
                    }
                    (LinearLoss::Sigmoid, LinearTargets::Values(t)) => {
                        for (j, zj) in z.iter_mut().enumerate() {
                            let t = f64::from(t[i * k + j]);
                            let v = *zj;
                            total += v.max(0.0) - v * t + (1.0 + (-v.abs()).exp()).ln();
                            *zj = 1.0 / (1.0 + (-v).exp()) - t;
                        }
                    }
                    (LinearLoss::Mse, LinearTargets::Values(t)) => {
                        for (j, zj) in z.iter_mut().enumerate() {
                            let e = *zj - f64::from(t[i * k + j]);
                            total += 0.5 * e * e;
                            *zj = e;
                        }
                    }
                    _ => {}
                }
                if weight != 1.0 {
                    total = before + weight * (total - before);
                    z.iter_mut().for_each(|v| *v *= weight);
                }
            }
            total
        })
        .collect();
    let inv = 1.0 / n.max(1) as f64;
    // Gradient rows `Xᵀ dz / n + l2 W`, each feature on its own (the same sums whatever the
    // threads).
    let (gw, gb) = grad.split_at_mut(features * k);
    gw.par_chunks_mut(k)
        .zip(w.par_chunks(k))
        .enumerate()
        .for_each(|(f, (g, wf))| {
            g.iter_mut().for_each(|v| *v = 0.0);
            for at in cols.indptr[f]..cols.indptr[f + 1] {
                let (i, v) = (cols.rows[at] as usize, f64::from(cols.values[at]));
                for (gj, &d) in g.iter_mut().zip(&dz[i * k..(i + 1) * k]) {
                    *gj += v * d;
                }
            }
            for (gj, &wj) in g.iter_mut().zip(wf) {
                *gj = *gj * inv + l2 * wj;
            }
        });
    gb.iter_mut().for_each(|v| *v = 0.0);
    for z in dz.chunks_exact(k) {
        for (gj, &d) in gb.iter_mut().zip(z) {
            *gj += d;
        }
    }
    gb.iter_mut().for_each(|v| *v *= inv);
    let penalty: f64 = w.iter().map(|v| v * v).sum();
    losses.iter().sum::<f64>() * inv + 0.5 * l2 * penalty
}

/// Minimises `f` (which writes its gradient into the second argument) from `x` by L-BFGS
/// (10 corrections, backtracking Armijo line search); stops after `max_iter` iterations or
/// when the largest gradient component falls below `tol`. Returns the final value.
pub fn lbfgs(
    x: &mut [f64],
    mut f: impl FnMut(&[f64], &mut [f64]) -> f64,
    max_iter: usize,
    tol: f64,
) -> f64 {
    const M: usize = 10;
    let n = x.len();
    let mut g = vec![0.0; n];
    let mut fx = f(x, &mut g);
    let mut s_hist: Vec<Vec<f64>> = Vec::new();
    let mut y_hist: Vec<Vec<f64>> = Vec::new();
    let mut rho: Vec<f64> = Vec::new();
    let mut d = vec![0.0; n];
    let mut x_new = vec![0.0; n];
    let mut g_new = vec![0.0; n];
    for _ in 0..max_iter {
        if g.iter().fold(0.0f64, |m, v| m.max(v.abs())) < tol {
            break;
        }
        // Two-loop recursion: d = -H g.
        d.copy_from_slice(&g);
        let mut alpha = vec![0.0; s_hist.len()];
        for i in (0..s_hist.len()).rev() {
            alpha[i] = rho[i] * dot(&s_hist[i], &d);
            axpy(-alpha[i], &y_hist[i], &mut d);
        }
        if let (Some(s), Some(y)) = (s_hist.last(), y_hist.last()) {
            let gamma = dot(s, y) / dot(y, y);
            d.iter_mut().for_each(|v| *v *= gamma);
        }
        for i in 0..s_hist.len() {
            let beta = rho[i] * dot(&y_hist[i], &d);
            axpy(alpha[i] - beta, &s_hist[i], &mut d);
        }
        d.iter_mut().for_each(|v| *v = -*v);
        let mut slope = dot(&g, &d);
        if slope >= 0.0 {
            // Not a descent direction: restart from steepest descent.
            s_hist.clear();
            y_hist.clear();
            rho.clear();
            d.iter_mut().zip(&g).for_each(|(di, gi)| *di = -gi);
            slope = dot(&g, &d);
        }
        let mut step = if s_hist.is_empty() {
            1.0 / g.iter().map(|v| v * v).sum::<f64>().sqrt().max(1.0)
        } else {
            1.0
        };
        let mut accepted = false;
        for _ in 0..30 {
            for ((xn, &xi), &di) in x_new.iter_mut().zip(x.iter()).zip(&d) {
                *xn = xi + step * di;
            }
            let f_new = f(&x_new, &mut g_new);
            if f_new <= fx + 1e-4 * step * slope {
                let s: Vec<f64> = x_new.iter().zip(x.iter()).map(|(a, b)| a - b).collect();
                let y: Vec<f64> = g_new.iter().zip(&g).map(|(a, b)| a - b).collect();
                let sy = dot(&s, &y);
                if sy > 1e-12 {
                    if s_hist.len() == M {
                        s_hist.remove(0);
                        y_hist.remove(0);
                        rho.remove(0);
                    }
                    rho.push(1.0 / sy);
                    s_hist.push(s);
                    y_hist.push(y);
                }
                x.copy_from_slice(&x_new);
                g.copy_from_slice(&g_new);
                let improvement = fx - f_new;
                fx = f_new;
                accepted = true;
                if improvement.abs() <= 1e-12 * fx.abs().max(1.0) {
                    return fx;
                }
                break;
            }
            step *= 0.5;
        }
        if !accepted {
            break;
        }
    }
    fx
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn axpy(alpha: f64, x: &[f64], y: &mut [f64]) {
    for (yi, &xi) in y.iter_mut().zip(x) {
        *yi += alpha * xi;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::check;

    fn data() -> SparseRows {
        let mut x = SparseRows::new();
        x.push(&[0, 2], &[0.5, 1.0]);
        x.push(&[1], &[2.0]);
        x.push(&[0, 1, 3], &[1.0, -0.5, 0.25]);
        x
    }

    fn grad_ok(loss: LinearLoss, k: usize, y: LinearTargets<'_>, weights: &[f64]) {
        let x = data();
        let f = 4;
        let params: Vec<f64> = (0..f * k + k)
            .map(|i| ((i * 7 % 5) as f64 - 2.0) * 0.3)
            .collect();
        let cols = SparseColumns::of(&x, f);
        let mut g = vec![0.0; params.len()];
        objective(&params, &mut g, &x, &cols, y, weights, k, f, 0.3, loss);
        let r = check(
            |p| {
                objective(
                    p,
                    &mut vec![0.0; p.len()],
                    &x,
                    &cols,
                    y,
                    weights,
                    k,
                    f,
                    0.3,
                    loss,
                )
            },
            &params,
            &g,
            1e-6,
        );
        assert!(r.max_rel_error < 1e-6, "{loss:?}: {r:?}");
    }

    #[test]
    fn gradients() {
        for w in [&[][..], &[0.5, 2.0, 1.25][..]] {
            grad_ok(
                LinearLoss::Softmax,
                3,
                LinearTargets::Classes(&[0, 2, 1]),
                w,
            );
            grad_ok(
                LinearLoss::Sigmoid,
                2,
                LinearTargets::Values(&[1.0, 0.0, 0.0, 1.0, 1.0, 1.0]),
                w,
            );
            grad_ok(
                LinearLoss::Mse,
                1,
                LinearTargets::Values(&[0.5, -1.0, 2.0]),
                w,
            );
            grad_ok(
                LinearLoss::SquaredHinge,
                3,
                LinearTargets::Classes(&[0, 2, 1]),
                w,
            );
        }
    }

    #[test]
    fn lbfgs_finds_the_minimum_of_a_quadratic() {
        let mut x = vec![5.0, -3.0, 1.0];
        let v = lbfgs(
            &mut x,
            |p, g| {
                let c = [1.0, 10.0, 100.0];
                let mut f = 0.0;
                for i in 0..3 {
                    let d = p[i] - (i as f64);
                    f += c[i] * d * d;
                    g[i] = 2.0 * c[i] * d;
                }
                f
            },
            200,
            1e-10,
        );
        assert!(v < 1e-12, "{v}");
        for (i, xi) in x.iter().enumerate() {
            assert!((xi - i as f64).abs() < 1e-6, "{x:?}");
        }
    }

    #[test]
    fn fits_separable_classes() {
        let mut x = SparseRows::new();
        let mut y = Vec::new();
        for i in 0..40u32 {
            x.push(&[i % 2, 2 + i % 5], &[1.0, 0.5]);
            y.push(i % 2);
        }
        let mut m = LinearModel::new(7, 2, LinearLoss::Softmax);
        let fit = m
            .fit(&x, LinearTargets::Classes(&y), 1e-3, 200, 1e-8)
            .unwrap();
        // At least one evaluation per iteration, and convergence before the cap.
        assert!(fit.evaluations > 2 && fit.evaluations < 200, "{fit:?}");
        let mut capped = LinearModel::new(7, 2, LinearLoss::Softmax);
        let short = capped
            .fit(&x, LinearTargets::Classes(&y), 1e-3, 3, 1e-8)
            .unwrap();
        assert!(
            short.evaluations >= 4 && short.objective > fit.objective,
            "{short:?}"
        );
        let mut out = [0.0f32; 2];
        m.predict(&[1], &[1.0], &mut out).unwrap();
        assert!(out[1] > 0.9, "{out:?}");
        assert!(m.predict(&[9], &[1.0], &mut out).is_err());
    }

    #[test]
    fn row_weights_scale_the_loss() {
        // Every row weighing 2 is the unweighted objective with half the penalty.
        let (x, y) = (data(), [0u32, 2, 1]);
        let mut a = LinearModel::new(4, 3, LinearLoss::Softmax);
        a.fit_weighted(&x, LinearTargets::Classes(&y), &[2.0; 3], 0.2, 200, 1e-10)
            .unwrap();
        let mut b = LinearModel::new(4, 3, LinearLoss::Softmax);
        b.fit(&x, LinearTargets::Classes(&y), 0.1, 200, 1e-10)
            .unwrap();
        for (p, q) in a.weight.data().iter().zip(b.weight.data()) {
            assert!((p - q).abs() < 1e-4, "{p} {q}");
        }
        let mut c = LinearModel::new(4, 3, LinearLoss::Softmax);
        assert!(c
            .fit_weighted(&x, LinearTargets::Classes(&y), &[1.0], 0.1, 10, 1e-6)
            .is_err());
        assert!(c
            .fit_weighted(
                &x,
                LinearTargets::Classes(&y),
                &[1.0, -1.0, 1.0],
                0.1,
                10,
                1e-6
            )
            .is_err());
    }
}
