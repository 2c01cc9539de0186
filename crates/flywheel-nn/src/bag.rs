//! The fastText-style classifier: the mean of the embedding rows of a text's features (words,
//! hashed word n-grams, hashed character n-grams) followed by a linear output layer, trained by
//! plain SGD one example at a time, exactly as fastText's supervised mode:
//!
//! * hidden `h = mean(input[f] for f in features)`;
//! * softmax: `loss = -log softmax(W h)[y]`; one-vs-all: `loss = Σ_k BCE(σ((W h)_k), y_k)`
//!   (a sum over labels, not a mean); mean squared error: `(w·h + b - y)²`;
//!   hierarchical softmax: binary logistic losses along the label's path in a Huffman tree;
//! * an SGD step updates the output rows with `lr · (y - p) h` while accumulating
//!   `g = Σ_k lr · (y_k - p_k) W_k` (with the rows *before* their update), then adds `g / n` to
//!   every feature's input row.
//!
//! [`BagModel::step`] is the only training code path; [`BagModel::gradients`] runs that same
//! step on a copy to read the gradient back for the finite-difference checks. The model trains
//! in `f32`; the same code runs in `f64` ([`BagModel::to_real`]) for those checks.

use crate::rng::Rng;
use crate::{NnError, Parameters, Real, Tensor};

/// A scalar the bag computes in: `f32` to train and serve, `f64` for the gradient checks.
///
/// The bag's sigmoid and softmax use the standard library's `exp` (as fastText does), not the
/// engine's faster `f32` approximation behind [`Real::exp`].
pub trait BagReal: Real {
    /// `e^x` of the standard library.
    fn exp_std(self) -> Self;
    /// Converts a target value (exact for both types).
    fn from_f32(x: f32) -> Self;
}

impl BagReal for f32 {
    #[inline(always)]
    fn exp_std(self) -> Self {
        f32::exp(self)
    }
    #[inline(always)]
    fn from_f32(x: f32) -> Self {
        x
    }
}

impl BagReal for f64 {
    #[inline(always)]
    fn exp_std(self) -> Self {
        f64::exp(self)
    }
    #[inline(always)]
    fn from_f32(x: f32) -> Self {
        f64::from(x)
    }
}

/// The output layer's loss.
#[derive(Debug, Clone, PartialEq)]
pub enum BagLoss {
    /// Softmax over the outputs, cross-entropy against one class.
    Softmax,
    /// An independent sigmoid per output, binary cross-entropy summed over outputs (binary,
    /// multi-label, or multi-class "one-vs-all").
    OneVsAll,
    /// One linear output, squared error (regression).
    Mse,
    /// Hierarchical softmax over a Huffman tree of the classes.
    Hierarchical(HuffmanTree),
}

/// A Huffman tree over classes (fastText's `buildTree`): frequent classes get short paths.
#[derive(Debug, Clone, PartialEq)]
pub struct HuffmanTree {
    /// For each class: `(internal node, code)` pairs from the root down.
    pub paths: Vec<Vec<(u32, bool)>>,
}

impl HuffmanTree {
    /// Builds the tree from class counts (ties broken by index, so it is deterministic).
    pub fn new(counts: &[u64]) -> Self {
        let k = counts.len();
        if k < 2 {
            return HuffmanTree {
                paths: vec![Vec::new(); k],
            };
        }
        // Nodes 0..k are leaves, k..2k-1 internal; internal node j is output row j - k.
        let mut count: Vec<u64> = counts.to_vec();
        count.resize(2 * k - 1, 0);
        let mut parent = vec![usize::MAX; 2 * k - 1];
        let mut code = vec![false; 2 * k - 1];
        let mut order: Vec<usize> = (0..k).collect();
        order.sort_by(|&a, &b| counts[a].cmp(&counts[b]).then(a.cmp(&b)));
        // Two queues: leaves by increasing count, then internal nodes as created (increasing).
        let (mut leaf, mut node) = (0usize, k);
        let mut pick = |count: &Vec<u64>, next: usize| -> usize {
            if leaf < k && (node >= next || count[order[leaf]] <= count[node]) {
                leaf += 1;
                order[leaf - 1]
            } else {
                node += 1;
                node - 1
            }
        };
        for next in k..2 * k - 1 {
            let a = pick(&count, next);
            let b = pick(&count, next);
            count[next] = count[a] + count[b];
            parent[a] = next;
            parent[b] = next;
            code[b] = true;
        }
        let root = 2 * k - 2;
        let paths = (0..k)
            .map(|c| {
                let mut path = Vec::new();
                let mut n = c;
                while n != root {
                    path.push(((parent[n] - k) as u32, code[n]));
                    n = parent[n];
                }
                path.reverse();
                path
            })
            .collect();
        HuffmanTree { paths }
    }

    /// Number of internal nodes (output rows).
    pub fn nodes(&self) -> usize {
        self.paths.len().saturating_sub(1)
    }
}

/// What one example should produce.
#[derive(Debug, Clone, Copy)]
pub enum BagTarget<'a> {
    /// A class index (softmax, hierarchical softmax).
    Class(u32),
    /// One 0/1 value per output (one-vs-all), or the regression value.
    Values(&'a [f32]),
}

/// Reusable buffers of one thread.
#[derive(Debug, Clone, Default)]
pub struct BagScratch<T = f32> {
    hidden: Vec<T>,
    scores: Vec<T>,
    update: BagUpdate<T>,
}

/// The SGD step of one example in progress (see [`BagModel::hidden`] and
/// [`BagModel::output_step`]).
#[derive(Debug, Clone, Default)]
pub struct BagUpdate<T = f32> {
    /// The example's hidden vector.
    pub hidden: Vec<T>,
    /// `lr ·` the step of the hidden vector; each feature row gets `grad / n`.
    pub grad: Vec<T>,
    /// The example's loss before the update.
    pub loss: T,
    /// Share of the example's outputs predicted right before the update (not known for
    /// regression and hierarchical softmax).
    pub correct: Option<f32>,
}

/// Applies the input part of a round of updates in order, the rows split among `parts` rayon
/// tasks by `row % parts` (run inside the caller's pool). Every row receives its updates in
/// the examples' order whatever `parts` is, so the result does not depend on the thread count.
pub fn apply_inputs_sharded<T: BagReal>(
    input: &mut [T],
    dim: usize,
    round: &[(&[u32], &BagUpdate<T>)],
    parts: usize,
) {
    use rayon::prelude::*;
    if parts <= 1 {
        for (features, upd) in round {
            apply_input(input, dim, features, upd);
        }
        return;
    }
    let rows = input.len() / dim.max(1);
    let base = SharedRows(input.as_mut_ptr());
    (0..parts).into_par_iter().for_each(|part| {
        let base = &base;
        for (features, upd) in round {
            if features.is_empty() {
                continue;
            }
            let inv = T::ONE / count(features.len());
            for (f, c) in runs::<T>(features) {
                let f = f as usize;
                if f % parts != part || f >= rows {
                    continue;
                }
                // SAFETY: row `f` lies inside `input` (checked above) and only the task with
                // `part == f % parts` touches it, so no two tasks alias a row; `input` is
                // borrowed mutably for the whole call, so nothing else reads it meanwhile.
                let row = unsafe { std::slice::from_raw_parts_mut(base.0.add(f * dim), dim) };
                axpy(c * inv, &upd.grad, row);
            }
        }
    });
}

/// The input matrix shared by the tasks of [`apply_inputs_sharded`], each writing only its own
/// rows.
struct SharedRows<T>(*mut T);
// SAFETY: see `apply_inputs_sharded`: tasks write disjoint rows.
unsafe impl<T: Send> Sync for SharedRows<T> {}

/// Applies an update's input part: adds `grad / n` to the row of every feature of the example
/// (see [`apply_inputs_sharded`] for a round split among threads).
pub fn apply_input<T: BagReal>(input: &mut [T], dim: usize, features: &[u32], upd: &BagUpdate<T>) {
    if features.is_empty() {
        return;
    }
    let inv = T::ONE / count(features.len());
    for (f, c) in runs::<T>(features) {
        let f = f as usize;
        axpy(c * inv, &upd.grad, &mut input[f * dim..(f + 1) * dim]);
    }
}

/// `(feature, repeats)` for each run of equal consecutive features: a feature listed `c` times
/// in a row is read and updated once with weight `c` (features sorted by row make every
/// repeat a run, and the row accesses monotone).
fn runs<T: Real>(features: &[u32]) -> impl Iterator<Item = (u32, T)> + '_ {
    let mut i = 0;
    std::iter::from_fn(move || {
        let f = *features.get(i)?;
        let start = i;
        while features.get(i) == Some(&f) {
            i += 1;
        }
        Some((f, count(i - start)))
    })
}

/// A count as a scalar (exact below 2^24 in `f32`, as `n as f32`).
#[inline(always)]
fn count<T: Real>(n: usize) -> T {
    T::from_f64(n as f64)
}

/// Embedding bag + linear output.
#[derive(Debug, Clone, PartialEq)]
pub struct BagModel<T = f32> {
    /// `[rows, dim]` feature embeddings.
    pub input: Tensor<T>,
    /// `[outputs, dim]` output rows (internal nodes for hierarchical softmax).
    pub output: Tensor<T>,
    /// `[outputs]` output bias (used by regression only; zero and untouched otherwise, as in
    /// fastText).
    pub bias: Tensor<T>,
    /// The loss.
    pub loss: BagLoss,
}

impl BagModel<f32> {
    /// fastText's initialisation: input rows uniform in `±1/dim`, output rows zero.
    /// `outputs` is the number of predicted values (classes, labels, or 1).
    pub fn new(rows: usize, dim: usize, outputs: usize, loss: BagLoss, rng: &mut Rng) -> Self {
        let bound = 1.0 / dim as f32;
        let input: Vec<f32> = (0..rows * dim)
            .map(|_| rng.uniform(-f64::from(bound), f64::from(bound)) as f32)
            .collect();
        let out_rows = match &loss {
            BagLoss::Hierarchical(t) => t.nodes(),
            _ => outputs,
        };
        BagModel {
            input: Tensor::from_vec(&[rows, dim], input)
                .unwrap_or_else(|_| Tensor::zeros(&[0, dim])),
            output: Tensor::zeros(&[out_rows, dim]),
            bias: Tensor::zeros(&[outputs]),
            loss,
        }
    }
}

impl<T: BagReal> BagModel<T> {
    /// The same model in another scalar type (`f64` for the gradient checks).
    pub fn to_real<U: BagReal>(&self) -> BagModel<U> {
        let cast = |t: &Tensor<T>| {
            let data = t.data().iter().map(|v| U::from_f64(v.to_f64())).collect();
            Tensor::from_vec(t.shape(), data).expect("same shape")
        };
        BagModel {
            input: cast(&self.input),
            output: cast(&self.output),
            bias: cast(&self.bias),
            loss: self.loss.clone(),
        }
    }

    /// Embedding width.
    pub fn dim(&self) -> usize {
        self.input.shape()[1]
    }

    /// Number of feature rows.
    pub fn rows(&self) -> usize {
        self.input.shape()[0]
    }

    /// Number of predicted values.
    pub fn outputs(&self) -> usize {
        match &self.loss {
            BagLoss::Hierarchical(t) => t.paths.len(),
            _ => self.output.shape()[0],
        }
    }

    fn check(&self, features: &[u32]) -> Result<(), NnError> {
        let rows = self.rows() as u32;
        match features.iter().find(|&&f| f >= rows) {
            Some(f) => Err(NnError::Shape(format!(
                "feature {f} is outside the {rows} embedding rows"
            ))),
            None => Ok(()),
        }
    }

    #[inline(always)]
    fn hidden_into(&self, features: &[u32], h: &mut Vec<T>) {
        let d = self.dim();
        h.clear();
        h.resize(d, T::ZERO);
        if features.is_empty() {
            return;
        }
        let w = self.input.data();
        for (f, c) in runs::<T>(features) {
            let f = f as usize;
            axpy(c, &w[f * d..(f + 1) * d], h);
        }
        let inv = T::ONE / count(features.len());
        h.iter_mut().for_each(|x| *x *= inv);
    }

    /// Output probabilities (softmax, one-vs-all, hierarchical) or the value (regression) of
    /// one example, written to `out` (`[outputs]`).
    pub fn predict(
        &self,
        features: &[u32],
        scratch: &mut BagScratch<T>,
        out: &mut [T],
    ) -> Result<(), NnError> {
        self.check(features)?;
        if out.len() != self.outputs() {
            return Err(NnError::Shape(format!(
                "{} outputs, buffer of {}",
                self.outputs(),
                out.len()
            )));
        }
        self.hidden_into(features, &mut scratch.hidden);
        let d = self.dim();
        let w = self.output.data();
        let h = &scratch.hidden;
        match &self.loss {
            BagLoss::Softmax => {
                for (k, o) in out.iter_mut().enumerate() {
                    *o = dot(&w[k * d..(k + 1) * d], h);
                }
                softmax(out);
            }
            BagLoss::OneVsAll => {
                for (k, o) in out.iter_mut().enumerate() {
                    *o = sigmoid(dot(&w[k * d..(k + 1) * d], h));
                }
            }
            BagLoss::Mse => {
                out[0] = dot(&w[..d], h) + self.bias.data()[0];
            }
            BagLoss::Hierarchical(tree) => {
                for (c, path) in tree.paths.iter().enumerate() {
                    let mut p = T::ONE;
                    for &(node, code) in path {
                        let n = node as usize;
                        let s = sigmoid(dot(&w[n * d..(n + 1) * d], h));
                        p *= if code { s } else { T::ONE - s };
                    }
                    out[c] = p;
                }
            }
        }
        Ok(())
    }

    /// One SGD step on one example with learning rate `lr`; returns the example's loss (before
    /// the step). Equals [`BagModel::hidden`], then [`BagModel::output_step`], then
    /// [`apply_input`].
    pub fn step(
        &mut self,
        features: &[u32],
        target: BagTarget<'_>,
        lr: T,
        scratch: &mut BagScratch<T>,
    ) -> Result<T, NnError> {
        let mut upd = std::mem::take(&mut scratch.update);
        let r = self
            .hidden(features, &mut upd)
            .and_then(|()| self.output_step(features.len(), target, lr, scratch, &mut upd));
        if r.is_ok() {
            let dim = self.dim();
            apply_input(self.input.data_mut(), dim, features, &upd);
        }
        let loss = upd.loss;
        scratch.update = upd;
        r.map(|()| loss)
    }

    /// The example's hidden vector (the mean of its feature rows) into `upd.hidden`. The
    /// expensive, read-only part of a step: a round of examples can compute theirs in parallel
    /// against the same input rows.
    pub fn hidden(&self, features: &[u32], upd: &mut BagUpdate<T>) -> Result<(), NnError> {
        self.check(features)?;
        let h = &mut upd.hidden;
        crate::multiversion!(self.hidden_into(features, h) as hidden_avx2);
        Ok(())
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn hidden_avx2(&self, features: &[u32], h: &mut Vec<T>) {
        self.hidden_into(features, h);
    }

    /// The output layer's part of a step for an example of `n` features whose hidden vector is
    /// in `upd.hidden`: updates the output rows (and bias) at once, and leaves in `upd.grad`
    /// `lr ·` the step of the hidden vector, which [`apply_input`] spreads over the feature
    /// rows. Cheap; run in example order.
    pub fn output_step(
        &mut self,
        n: usize,
        target: BagTarget<'_>,
        lr: T,
        scratch: &mut BagScratch<T>,
        upd: &mut BagUpdate<T>,
    ) -> Result<(), NnError> {
        crate::multiversion!(self.output_inner(n, target, lr, scratch, upd) as output_avx2)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn output_avx2(
        &mut self,
        n: usize,
        target: BagTarget<'_>,
        lr: T,
        scratch: &mut BagScratch<T>,
        upd: &mut BagUpdate<T>,
    ) -> Result<(), NnError> {
        self.output_inner(n, target, lr, scratch, upd)
    }

    #[inline(always)]
    fn output_inner(
        &mut self,
        n: usize,
        target: BagTarget<'_>,
        lr: T,
        scratch: &mut BagScratch<T>,
        upd: &mut BagUpdate<T>,
    ) -> Result<(), NnError> {
        let d = self.dim();
        let k = self.output.shape()[0];
        upd.loss = T::ZERO;
        upd.correct = None;
        upd.grad.clear();
        upd.grad.resize(d, T::ZERO);
        if n == 0 {
            return Ok(());
        }
        let BagUpdate {
            hidden: h, grad: g, ..
        } = upd;
        let scores = &mut scratch.scores;
        let w = self.output.data_mut();
        // Adds `alpha * W_row` to g, then `alpha * h` to W_row (the row read before its update).
        let mut touch = |row: usize, alpha: T, w: &mut [T]| {
            let r = &mut w[row * d..(row + 1) * d];
            axpy(alpha, r, g);
            axpy(alpha, h, r);
        };
        let (loss, correct) = match (&self.loss, target) {
            (BagLoss::Softmax, BagTarget::Class(y)) => {
                let y = y as usize;
                if y >= k {
                    return Err(NnError::Shape(format!("class {y} of {k}")));
                }
                scores.clear();
                scores.extend((0..k).map(|r| dot(&w[r * d..(r + 1) * d], h)));
                softmax(scores);
                let loss = -scores[y].max(T::from_f64(1e-30)).ln();
                let best = (0..k).fold(0, |b, r| if scores[r] > scores[b] { r } else { b });
                for (r, &p) in scores.iter().enumerate() {
                    let label = if r == y { T::ONE } else { T::ZERO };
                    touch(r, lr * (label - p), w);
                }
                (loss, Some(f32::from(u8::from(best == y))))
            }
            (BagLoss::OneVsAll, BagTarget::Values(y)) => {
                if y.len() != k {
                    return Err(NnError::Shape(format!(
                        "{} targets for {k} outputs",
                        y.len()
                    )));
                }
                let (mut loss, mut right) = (T::ZERO, 0.0f32);
                for (r, &t) in y.iter().enumerate() {
                    let t = T::from_f32(t);
                    let z = dot(&w[r * d..(r + 1) * d], h);
                    loss += bce(z, t);
                    right += f32::from(u8::from((z > T::ZERO) == (t > T::from_f64(0.5))));
                    touch(r, lr * (t - sigmoid(z)), w);
                }
                (loss, Some(right / k as f32))
            }
            (BagLoss::Mse, BagTarget::Values(y)) => {
                let [t] = y else {
                    return Err(NnError::Shape(format!("{} targets for 1 output", y.len())));
                };
                let (t, two) = (T::from_f32(*t), T::from_f64(2.0));
                let b = self.bias.data_mut();
                let e = dot(&w[..d], h) + b[0] - t;
                b[0] -= lr * two * e;
                touch(0, -lr * two * e, w);
                (e * e, None)
            }
            (BagLoss::Hierarchical(tree), BagTarget::Class(y)) => {
                let path = tree
                    .paths
                    .get(y as usize)
                    .ok_or_else(|| NnError::Shape(format!("class {y} of {}", tree.paths.len())))?;
                let mut loss = T::ZERO;
                for &(node, code) in path {
                    let n = node as usize;
                    let z = dot(&w[n * d..(n + 1) * d], h);
                    let t = if code { T::ONE } else { T::ZERO };
                    loss += bce(z, t);
                    touch(n, lr * (t - sigmoid(z)), w);
                }
                (loss, None)
            }
            _ => {
                return Err(NnError::Shape(
                    "targets do not fit the loss (a class for softmax, values otherwise)".into(),
                ))
            }
        };
        upd.loss = loss;
        upd.correct = correct;
        Ok(())
    }

    /// The example's loss without changing the model.
    pub fn loss_of(
        &self,
        features: &[u32],
        target: BagTarget<'_>,
        scratch: &mut BagScratch<T>,
    ) -> Result<T, NnError> {
        let mut copy = self.clone();
        copy.step(features, target, T::ZERO, scratch)
    }

    /// The gradient of the example's loss with respect to every parameter (input, output,
    /// bias, flattened in that order), read back from one [`BagModel::step`] on a copy:
    /// `Δθ = -lr ∇θ` for plain SGD.
    pub fn gradients(&self, features: &[u32], target: BagTarget<'_>) -> Result<Vec<f64>, NnError> {
        let lr = T::from_f64(1e-3);
        let mut copy = self.clone();
        copy.step(features, target, lr, &mut BagScratch::default())?;
        let before = self.flat();
        let after = copy.flat();
        Ok(before
            .iter()
            .zip(&after)
            .map(|(b, a)| (b - a) / lr.to_f64())
            .collect())
    }

    /// All parameters flattened (input, output, bias).
    pub fn flat(&self) -> Vec<f64> {
        self.input
            .data()
            .iter()
            .chain(self.output.data())
            .chain(self.bias.data())
            .map(|&v| v.to_f64())
            .collect()
    }
}

impl<T: Real> Parameters<T> for BagModel<T> {
    fn tensors(&self) -> Vec<(String, &Tensor<T>)> {
        vec![
            ("bag.input".to_string(), &self.input),
            ("bag.output".to_string(), &self.output),
            ("bag.bias".to_string(), &self.bias),
        ]
    }

    fn tensors_mut(&mut self) -> Vec<&mut Tensor<T>> {
        vec![&mut self.input, &mut self.output, &mut self.bias]
    }
}

/// `Σ a_i b_i` with eight partial sums, so it vectorises.
#[inline(always)]
fn dot<T: Real>(a: &[T], b: &[T]) -> T {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [T::ZERO; 8];
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ar, br) = (ac.remainder(), bc.remainder());
    for (x, y) in ac.zip(bc) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut s = T::ZERO;
    for (&x, &y) in ar.iter().zip(br) {
        s += x * y;
    }
    acc.iter().copied().sum::<T>() + s
}

/// `y += alpha x`.
#[inline(always)]
fn axpy<T: Real>(alpha: T, x: &[T], y: &mut [T]) {
    for (y, &x) in y.iter_mut().zip(x) {
        *y += alpha * x;
    }
}

#[inline(always)]
fn sigmoid<T: BagReal>(z: T) -> T {
    T::ONE / (T::ONE + (-z).exp_std())
}

/// Binary cross-entropy of logit `z` against `t`, stable for large `|z|`.
#[inline(always)]
fn bce<T: BagReal>(z: T, t: T) -> T {
    z.max(T::ZERO) - z * t + (T::ONE + (-z.abs()).exp_std()).ln()
}

fn softmax<T: BagReal>(v: &mut [T]) {
    let max = v
        .iter()
        .copied()
        .fold(T::from_f64(f64::NEG_INFINITY), T::max);
    let mut sum = T::ZERO;
    for x in v.iter_mut() {
        *x = (*x - max).exp_std();
        sum += *x;
    }
    v.iter_mut().for_each(|x| *x = *x / sum);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::check;

    fn model(loss: BagLoss, outputs: usize, seed: u64) -> BagModel {
        let mut rng = Rng::with_stream(seed, 0);
        let mut m = BagModel::new(7, 5, outputs, loss, &mut rng);
        // Non-zero output rows, so every gradient term is exercised.
        for v in m.output.data_mut() {
            *v = rng.uniform(-0.4, 0.4) as f32;
        }
        m.bias.data_mut().iter_mut().for_each(|b| *b = 0.1);
        m
    }

    /// Gradient check in f64 (central differences, step 1e-6, max relative error ≤ 1e-4, as
    /// for the other layers in `tests/gradcheck.rs`) of the gradient that one SGD step of the
    /// same generic code applies, on the flattened parameters. The f32 model's step is then
    /// checked against the f64 gradient, so the check covers the code that trains.
    fn grad_ok(m32: &BagModel, features: &[u32], target: BagTarget<'_>) {
        let m: BagModel<f64> = m32.to_real();
        let analytic = m.gradients(features, target).unwrap();
        let x = m.flat();
        assert_eq!(analytic.len(), x.len());
        let loss = |p: &[f64]| -> f64 {
            let mut c = m.clone();
            let (ni, no) = (c.input.len(), c.output.len());
            c.input.data_mut().copy_from_slice(&p[..ni]);
            c.output.data_mut().copy_from_slice(&p[ni..ni + no]);
            c.bias.data_mut().copy_from_slice(&p[ni + no..]);
            c.loss_of(features, target, &mut BagScratch::default())
                .unwrap()
        };
        let r = check(loss, &x, &analytic, 1e-6);
        assert!(r.max_rel_error <= 1e-4, "{:?}: worst {r:?}", m.loss);
        // Not vacuous: every feature row of the example and the output layer get a gradient.
        let (d, ni) = (m.dim(), m.input.len());
        for &f in features {
            let row = &analytic[f as usize * d..(f as usize + 1) * d];
            assert!(row.iter().any(|&g| g != 0.0), "feature {f}: zero gradient");
        }
        let no = m.output.len();
        assert!(
            analytic[ni..ni + no].iter().any(|&g| g != 0.0),
            "output: zero gradient"
        );
        // The f32 step (the training path) applies the same gradient, to f32 precision.
        let g32 = m32.gradients(features, target).unwrap();
        let scale = analytic.iter().fold(0.0f64, |a, g| a.max(g.abs()));
        for (i, (a, b)) in g32.iter().zip(&analytic).enumerate() {
            assert!(
                (a - b).abs() <= 1e-3 * scale,
                "f32 gradient {i}: {a} vs f64 {b}"
            );
        }
    }

    #[test]
    fn softmax_gradients() {
        // Feature 3 twice: its row gets both shares.
        grad_ok(
            &model(BagLoss::Softmax, 4, 1),
            &[0, 3, 3, 6],
            BagTarget::Class(2),
        );
    }

    #[test]
    fn one_vs_all_gradients() {
        grad_ok(
            &model(BagLoss::OneVsAll, 3, 2),
            &[1, 2, 5],
            BagTarget::Values(&[1.0, 0.0, 1.0]),
        );
    }

    #[test]
    fn mse_gradients() {
        grad_ok(
            &model(BagLoss::Mse, 1, 3),
            &[4, 0],
            BagTarget::Values(&[0.7]),
        );
    }

    #[test]
    fn hierarchical_gradients_and_probabilities() {
        let tree = HuffmanTree::new(&[50, 3, 20, 7, 1]);
        let m = model(BagLoss::Hierarchical(tree), 5, 4);
        grad_ok(&m, &[2, 6, 1], BagTarget::Class(3));
        let mut out = vec![0.0; 5];
        m.predict(&[2, 6, 1], &mut BagScratch::default(), &mut out)
            .unwrap();
        let sum: f32 = out.iter().sum();
        assert!((sum - 1.0).abs() < 1e-5, "class probabilities sum to {sum}");
    }

    #[test]
    fn huffman_paths_are_prefix_free_and_frequent_classes_short() {
        let t = HuffmanTree::new(&[100, 1, 1, 1, 50]);
        assert_eq!(t.nodes(), 4);
        assert!(t.paths[0].len() <= t.paths[1].len());
        for (i, a) in t.paths.iter().enumerate() {
            for (j, b) in t.paths.iter().enumerate() {
                if i != j {
                    assert!(!b.starts_with(a), "path {i} is a prefix of path {j}");
                }
            }
        }
    }

    #[test]
    fn training_separates_two_classes() {
        let mut rng = Rng::with_stream(9, 0);
        let mut m = BagModel::new(4, 8, 2, BagLoss::Softmax, &mut rng);
        let mut s = BagScratch::default();
        for _ in 0..200 {
            m.step(&[0, 2], BagTarget::Class(0), 0.2, &mut s).unwrap();
            m.step(&[1, 2], BagTarget::Class(1), 0.2, &mut s).unwrap();
        }
        let mut out = [0.0; 2];
        m.predict(&[0, 2], &mut s, &mut out).unwrap();
        assert!(out[0] > 0.9, "{out:?}");
        m.predict(&[1, 2], &mut s, &mut out).unwrap();
        assert!(out[1] > 0.9, "{out:?}");
        assert!(m.predict(&[9], &mut s, &mut out).is_err());
    }
}
