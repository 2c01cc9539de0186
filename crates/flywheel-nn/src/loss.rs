//! Losses computed from logits (numerically stable), each returning the loss and its gradient.
//!
//! Reductions follow Keras: per example, the mean over the outputs; over a batch, the mean of
//! the examples (the caller passes `scale = 1 / batch`).

use crate::{NnError, Real};

/// A loss together with its output activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loss {
    /// Sigmoid outputs, binary cross-entropy averaged over outputs (binary and multi-label).
    BinaryCrossEntropy,
    /// Softmax outputs, categorical cross-entropy against a class index.
    SoftmaxCrossEntropy,
    /// Linear outputs, mean squared error (regression).
    MeanSquaredError,
}

/// Targets of a batch.
#[derive(Debug, Clone, Copy)]
pub enum Targets<'a> {
    /// `[batch, outputs]` values: 0/1 for cross-entropy, real numbers for MSE.
    Values(&'a [f32]),
    /// `[batch]` class indices for softmax cross-entropy.
    Classes(&'a [u32]),
}

impl Loss {
    /// Loss of each example summed over the batch; writes `scale * d(sum)/d logits` into `grad`.
    /// `logits` and `grad` are `[batch, k]`.
    pub fn forward_backward<T: Real>(
        &self,
        logits: &[T],
        k: usize,
        targets: Targets<'_>,
        scale: T,
        grad: &mut [T],
    ) -> Result<T, NnError> {
        let batch = logits.len().checked_div(k).unwrap_or(0);
        let kt = T::from_f64(k as f64);
        let mut total = T::ZERO;
        match (self, targets) {
            (Loss::BinaryCrossEntropy, Targets::Values(y)) => {
                check_len(y.len(), batch * k)?;
                for ((&z, &y), g) in logits.iter().zip(y).zip(grad.iter_mut()) {
                    let y = T::from_f64(y as f64);
                    // max(z, 0) - z y + log(1 + e^-|z|)
                    total += (z.max(T::ZERO) - z * y + (T::ONE + (-z.abs()).exp()).ln()) / kt;
                    *g = scale * (z.sigmoid() - y) / kt;
                }
            }
            (Loss::MeanSquaredError, Targets::Values(y)) => {
                check_len(y.len(), batch * k)?;
                for ((&z, &y), g) in logits.iter().zip(y).zip(grad.iter_mut()) {
                    let d = z - T::from_f64(y as f64);
                    total += d * d / kt;
                    *g = scale * (d + d) / kt;
                }
            }
            (Loss::SoftmaxCrossEntropy, Targets::Classes(y)) => {
                check_len(y.len(), batch)?;
                for ((row, g), &cls) in logits.chunks_exact(k).zip(grad.chunks_exact_mut(k)).zip(y) {
                    let cls = cls as usize;
                    if cls >= k {
                        return Err(NnError::Shape(format!(
                            "class index {cls} is outside the {k} outputs"
                        )));
                    }
                    let max = row.iter().copied().fold(row[0], T::max);
                    let mut sum = T::ZERO;
                    for (gi, &z) in g.iter_mut().zip(row) {
                        let e = (z - max).exp();
                        *gi = e;
                        sum += e;
                    }
                    total += sum.ln() + max - row[cls];
                    for gi in g.iter_mut() {
                        *gi = scale * *gi / sum;
                    }
                    g[cls] -= scale;
                }
            }
            _ => {
                return Err(NnError::Shape(
                    "targets do not fit the loss (class indices go with softmax cross-entropy, values with the others)"
                        .to_string(),
                ))
            }
        }
        Ok(total)
    }

    /// Turns logits into outputs in place: probabilities for cross-entropy, values for MSE.
    pub fn activate<T: Real>(&self, logits: &mut [T], k: usize) {
        match self {
            Loss::BinaryCrossEntropy => logits.iter_mut().for_each(|z| *z = z.sigmoid()),
            Loss::MeanSquaredError => {}
            Loss::SoftmaxCrossEntropy => {
                for row in logits.chunks_exact_mut(k.max(1)) {
                    let max = row.iter().copied().fold(row[0], T::max);
                    let mut sum = T::ZERO;
                    for z in row.iter_mut() {
                        *z = (*z - max).exp();
                        sum += *z;
                    }
                    for z in row.iter_mut() {
                        *z = *z / sum;
                    }
                }
            }
        }
    }
}

fn check_len(got: usize, want: usize) -> Result<(), NnError> {
    if got == want {
        Ok(())
    } else {
        Err(NnError::Shape(format!(
            "expected {want} target values, got {got}"
        )))
    }
}
