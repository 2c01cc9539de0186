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
}

/// The gradient of an embedding table, kept sparse: the sum of the rows' gradients and the sum
/// of their squares per occurrence (for Adam's second moment, as Keras computes it), plus the
/// rows touched since the last [`EmbeddingGrad::clear`].
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingGrad<T> {
    /// `[vocab, dim]` summed gradient (zero outside touched rows).
    pub sum: Tensor<T>,
    /// `[vocab, dim]` sum of squared per-occurrence gradients.
    pub squares: Tensor<T>,
    touched: Vec<u32>,
}

impl<T: Real> EmbeddingGrad<T> {
    /// An empty gradient for a table of `vocab` rows of width `dim`.
    pub fn new(vocab: usize, dim: usize) -> Self {
        EmbeddingGrad {
            sum: Tensor::zeros(&[vocab, dim]),
            squares: Tensor::zeros(&[vocab, dim]),
            touched: Vec::new(),
        }
    }

    /// Adds per-occurrence gradients `rows` (`[ids.len(), dim]`) of the rows `ids`.
    pub fn accumulate(&mut self, ids: &[u32], rows: &[T]) {
        let dim = self.sum.shape()[1];
        let (s, q) = (self.sum.data_mut(), self.squares.data_mut());
        for (row, &id) in rows.chunks_exact(dim).zip(ids) {
            let r = id as usize * dim..(id as usize + 1) * dim;
            for ((a, b), &g) in s[r.clone()].iter_mut().zip(q[r].iter_mut()).zip(row) {
                *a += g;
                *b += g * g;
            }
        }
        self.touched.extend_from_slice(ids);
    }

    /// Zeroes the touched rows.
    pub fn clear(&mut self) {
        let dim = self.sum.shape()[1];
        let (s, q) = (self.sum.data_mut(), self.squares.data_mut());
        for &id in &self.touched {
            let r = id as usize * dim..(id as usize + 1) * dim;
            s[r.clone()].fill(T::ZERO);
            q[r].fill(T::ZERO);
        }
        self.touched.clear();
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
