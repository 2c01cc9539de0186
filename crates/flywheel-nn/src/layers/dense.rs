//! Fully connected layer `y = x W + b`.

use crate::{init, Parameters, Real, Rng, Tensor};

/// A dense layer with a `[inputs, outputs]` kernel.
#[derive(Debug, Clone, PartialEq)]
pub struct Dense<T> {
    /// `[inputs, outputs]`.
    pub kernel: Tensor<T>,
    /// `[outputs]`.
    pub bias: Tensor<T>,
}

impl<T: Real> Dense<T> {
    /// Glorot-uniform kernel, zero bias (Keras's defaults).
    pub fn new(inputs: usize, outputs: usize, rng: &mut Rng) -> Self {
        Dense {
            kernel: init::glorot_uniform(inputs, outputs, rng),
            bias: Tensor::zeros(&[outputs]),
        }
    }

    /// Zero parameters of the same shapes (a gradient buffer).
    pub fn zeros_like(&self) -> Self {
        Dense {
            kernel: Tensor::zeros(self.kernel.shape()),
            bias: Tensor::zeros(self.bias.shape()),
        }
    }

    /// Input width.
    pub fn inputs(&self) -> usize {
        self.kernel.shape()[0]
    }

    /// Output width.
    pub fn outputs(&self) -> usize {
        self.kernel.shape()[1]
    }

    /// `out = x W + b` for `batch` rows: `x` is `[batch, inputs]`, `out` is `[batch, outputs]`.
    pub fn forward(&self, x: &[T], batch: usize, out: &mut [T]) {
        let (i, o) = (self.inputs(), self.outputs());
        for row in out[..batch * o].chunks_exact_mut(o) {
            row.copy_from_slice(self.bias.data());
        }
        T::gemm(
            batch,
            i,
            o,
            T::ONE,
            x,
            false,
            self.kernel.data(),
            false,
            T::ONE,
            out,
        );
    }

    /// Accumulates parameter gradients into `grads` and, if given, writes `d loss / d x` into
    /// `grad_in` (`[batch, inputs]`).
    pub fn backward(
        &self,
        x: &[T],
        grad_out: &[T],
        batch: usize,
        grads: &mut Dense<T>,
        grad_in: Option<&mut [T]>,
    ) {
        let (i, o) = (self.inputs(), self.outputs());
        T::gemm(
            i,
            batch,
            o,
            T::ONE,
            x,
            true,
            grad_out,
            false,
            T::ONE,
            grads.kernel.data_mut(),
        );
        let gb = grads.bias.data_mut();
        for row in grad_out[..batch * o].chunks_exact(o) {
            for (a, &b) in gb.iter_mut().zip(row) {
                *a += b;
            }
        }
        if let Some(gi) = grad_in {
            T::gemm(
                batch,
                o,
                i,
                T::ONE,
                grad_out,
                false,
                self.kernel.data(),
                true,
                T::ZERO,
                gi,
            );
        }
    }
}

impl<T: Real> Parameters<T> for Dense<T> {
    fn tensors(&self) -> Vec<(String, &Tensor<T>)> {
        vec![
            ("dense.kernel".to_string(), &self.kernel),
            ("dense.bias".to_string(), &self.bias),
        ]
    }
    fn tensors_mut(&mut self) -> Vec<&mut Tensor<T>> {
        vec![&mut self.kernel, &mut self.bias]
    }
}
