//! Token embedding: a `[vocab, dim]` table looked up by id.

use crate::{init, NnError, Parameters, Real, Rng, Tensor};

/// An embedding table.
#[derive(Debug, Clone, PartialEq)]
pub struct Embedding<T> {
    /// `[vocab, dim]`.
    pub weight: Tensor<T>,
}

impl<T: Real> Embedding<T> {
    /// Keras's default initialisation: uniform in ±0.05.
    pub fn new(vocab: usize, dim: usize, rng: &mut Rng) -> Self {
        Embedding {
            weight: init::uniform(&[vocab, dim], 0.05, rng),
        }
    }

    /// A zero table of the same shape (a gradient buffer).
    pub fn zeros_like(&self) -> Self {
        Embedding {
            weight: Tensor::zeros(self.weight.shape()),
        }
    }

    /// Number of rows.
    pub fn vocab(&self) -> usize {
        self.weight.shape()[0]
    }

    /// Width of a row.
    pub fn dim(&self) -> usize {
        self.weight.shape()[1]
    }

    /// Fails if any id is outside the table.
    pub fn check_ids(&self, ids: &[u32]) -> Result<(), NnError> {
        let vocab = self.vocab();
        match ids.iter().find(|&&i| i as usize >= vocab) {
            Some(&bad) => Err(NnError::Shape(format!(
                "token id {bad} is outside the embedding table of {vocab} rows"
            ))),
            None => Ok(()),
        }
    }

    /// `out[r] = weight[ids[r]]`; `out` is `[ids.len(), dim]`. Ids must be in range
    /// (see [`Embedding::check_ids`]).
    #[inline]
    pub fn forward(&self, ids: &[u32], out: &mut [T]) {
        let dim = self.dim();
        let w = self.weight.data();
        for (row, &id) in out.chunks_exact_mut(dim).zip(ids) {
            let id = id as usize;
            row.copy_from_slice(&w[id * dim..(id + 1) * dim]);
        }
    }

    /// Adds each row of `grad_out` (`[ids.len(), dim]`) to row `ids[r]` of `grad`.
    #[inline]
    pub fn backward(&self, ids: &[u32], grad_out: &[T], grad: &mut Tensor<T>) {
        let dim = self.dim();
        let g = grad.data_mut();
        for (row, &id) in grad_out.chunks_exact(dim).zip(ids) {
            let id = id as usize;
            for (a, &b) in g[id * dim..(id + 1) * dim].iter_mut().zip(row) {
                *a += b;
            }
        }
    }

    /// Zeroes the rows of `grad` named by `ids` (cheaper than clearing the whole table).
    pub fn clear_rows(&self, ids: &[u32], grad: &mut Tensor<T>) {
        let dim = self.dim();
        let g = grad.data_mut();
        for &id in ids {
            let id = id as usize;
            g[id * dim..(id + 1) * dim].fill(T::ZERO);
        }
    }
}

impl<T: Real> Parameters<T> for Embedding<T> {
    fn tensors(&self) -> Vec<(String, &Tensor<T>)> {
        vec![("embedding".to_string(), &self.weight)]
    }
    fn tensors_mut(&mut self) -> Vec<&mut Tensor<T>> {
        vec![&mut self.weight]
    }
}
