//! One-dimensional convolutions over token embeddings with ReLU and max-over-time pooling, several
//! kernel widths side by side: the encoder of TextCNN (Kim 2014), i.e. Keras's
//! `[Conv1D(filters, k, activation="relu") → GlobalMaxPooling1D()]` for each width `k`,
//! concatenated.
//!
//! Data is batch-major (`[batch, steps, inputs]`), so the window of `k` steps starting at `p` is
//! one contiguous run of `k·inputs` values: each sequence's convolution is one GEMM whose rows
//! overlap (row stride `inputs`), with no copy of the windows. The backward pass only visits the
//! windows that won the max for each filter; tied windows (e.g. runs of padding) share the
//! gradient equally, as TensorFlow's max does.

use crate::{init, Parameters, Real, Rng, Tensor};

/// A 1-D convolution (valid padding, stride 1) followed by ReLU and a max over positions.
#[derive(Debug, Clone, PartialEq)]
pub struct Conv1d<T> {
    /// `[width, inputs, filters]` (Keras's layout).
    pub kernel: Tensor<T>,
    /// `[filters]`.
    pub bias: Tensor<T>,
}

impl<T: Real> Conv1d<T> {
    /// Keras's initialisation: Glorot-uniform over the receptive field
    /// (`fan_in = width·inputs`, `fan_out = width·filters`), zero bias.
    pub fn new(width: usize, inputs: usize, filters: usize, rng: &mut Rng) -> Self {
        let limit = (6.0 / ((width * inputs + width * filters).max(1) as f64)).sqrt();
        Conv1d {
            kernel: init::uniform(&[width, inputs, filters], limit, rng),
            bias: Tensor::zeros(&[filters]),
        }
    }

    /// Kernel width (steps per window).
    pub fn width(&self) -> usize {
        self.kernel.shape()[0]
    }

    /// Input width.
    pub fn inputs(&self) -> usize {
        self.kernel.shape()[1]
    }

    /// Number of filters.
    pub fn filters(&self) -> usize {
        self.kernel.shape()[2]
    }
}

/// Parallel [`Conv1d`] layers whose pooled outputs are concatenated.
#[derive(Debug, Clone, PartialEq)]
pub struct TextCnn<T> {
    /// One convolution per kernel width.
    pub convs: Vec<Conv1d<T>>,
}

/// Buffers of a [`TextCnn`] pass.
#[derive(Debug, Clone, Default)]
pub struct CnnCache<T> {
    steps: usize,
    batch: usize,
    /// `[batch, Σ_k (steps − k + 1)·filters]`: every convolution output (before ReLU).
    conv: Vec<T>,
    /// `[batch, outputs]`: pooled outputs.
    out: Vec<T>,
}

impl<T> CnnCache<T> {
    /// The `[batch, outputs]` pooled features of the latest forward pass.
    pub fn output(&self) -> &[T] {
        &self.out
    }
}

impl<T: Real> TextCnn<T> {
    /// `filters` filters for each width in `widths`, over inputs of width `inputs`.
    pub fn new(inputs: usize, widths: &[usize], filters: usize, rng: &mut Rng) -> Self {
        TextCnn {
            convs: widths
                .iter()
                .map(|&k| Conv1d::new(k, inputs, filters, rng))
                .collect(),
        }
    }

    /// Zero parameters of the same shapes (a gradient buffer).
    pub fn zeros_like(&self) -> Self {
        TextCnn {
            convs: self
                .convs
                .iter()
                .map(|c| Conv1d {
                    kernel: Tensor::zeros(c.kernel.shape()),
                    bias: Tensor::zeros(c.bias.shape()),
                })
                .collect(),
        }
    }

    /// Input width.
    pub fn inputs(&self) -> usize {
        self.convs.first().map_or(0, Conv1d::inputs)
    }

    /// Width of the pooled output (`Σ filters`).
    pub fn outputs(&self) -> usize {
        self.convs.iter().map(Conv1d::filters).sum()
    }

    /// Convolution outputs per sequence of `steps` steps (all widths).
    fn conv_len(&self, steps: usize) -> usize {
        self.convs
            .iter()
            .map(|c| (steps + 1 - c.width()) * c.filters())
            .sum()
    }

    /// The widest kernel: sequences need at least this many steps.
    pub fn max_width(&self) -> usize {
        self.convs.iter().map(Conv1d::width).max().unwrap_or(0)
    }

    /// Forward pass over a batch-major `[batch, steps, inputs]` input (`steps` at least
    /// [`TextCnn::max_width`]); the pooled features are in `cache.output()`.
    #[inline(always)]
    pub fn forward(&self, x: &[T], steps: usize, batch: usize, cache: &mut CnnCache<T>) {
        let e = self.inputs();
        let w = self.outputs();
        cache.steps = steps;
        cache.batch = batch;
        let per_seq = self.conv_len(steps);
        cache.out.resize(batch * w, T::ZERO);
        cache.conv.resize(batch * per_seq, T::ZERO);
        for b in 0..batch {
            let xb = &x[b * steps * e..(b + 1) * steps * e];
            let (mut col, mut off) = (0, b * per_seq);
            for conv in &self.convs {
                let (k, f) = (conv.width(), conv.filters());
                let n = steps + 1 - k;
                let c = &mut cache.conv[off..off + n * f];
                for row in c.chunks_exact_mut(f) {
                    row.copy_from_slice(conv.bias.data());
                }
                T::gemm_strided(
                    n,
                    k * e,
                    f,
                    T::ONE,
                    (xb, e, 1),
                    (conv.kernel.data(), f, 1),
                    T::ONE,
                    (c, f, 1),
                );
                let out = &mut cache.out[b * w + col..b * w + col + f];
                out.copy_from_slice(&c[..f]);
                for row in c.chunks_exact(f).skip(1) {
                    for (o, &v) in out.iter_mut().zip(row) {
                        *o = o.max(v);
                    }
                }
                for o in out.iter_mut() {
                    *o = o.max(T::ZERO);
                }
                col += f;
                off += n * f;
            }
        }
    }

    /// Backward pass for the latest forward pass: `d_out` is `[batch, outputs]`. Parameter
    /// gradients are added to `grads`; `dx` (if given) receives `d loss / d x`
    /// (`[batch, steps, inputs]`).
    #[inline(always)]
    pub fn backward(
        &self,
        x: &[T],
        d_out: &[T],
        cache: &CnnCache<T>,
        grads: &mut TextCnn<T>,
        mut dx: Option<&mut [T]>,
    ) {
        let (steps, batch, e, w) = (cache.steps, cache.batch, self.inputs(), self.outputs());
        if let Some(dx) = dx.as_deref_mut() {
            dx[..batch * steps * e].fill(T::ZERO);
        }
        let per_seq = self.conv_len(steps);
        for b in 0..batch {
            let (mut col, mut off) = (0, b * per_seq);
            for (conv, gconv) in self.convs.iter().zip(grads.convs.iter_mut()) {
                let (k, f) = (conv.width(), conv.filters());
                let n = steps + 1 - k;
                let c = &cache.conv[off..off + n * f];
                let kw = conv.kernel.data();
                for j in 0..f {
                    let i = b * w + col + j;
                    let (best, g) = (cache.out[i], d_out[i]);
                    if best <= T::ZERO || g == T::ZERO {
                        continue;
                    }
                    let ties = (0..n).filter(|&p| c[p * f + j] == best).count().max(1);
                    gconv.bias.data_mut()[j] += g;
                    let g = g / T::from_f64(ties as f64);
                    for p in (0..n).filter(|&p| c[p * f + j] == best) {
                        let start = (b * steps + p) * e;
                        let gk = gconv.kernel.data_mut();
                        for (l, &xv) in x[start..start + k * e].iter().enumerate() {
                            gk[l * f + j] += xv * g;
                        }
                        if let Some(dx) = dx.as_deref_mut() {
                            for (l, d) in dx[start..start + k * e].iter_mut().enumerate() {
                                *d += kw[l * f + j] * g;
                            }
                        }
                    }
                }
                col += f;
                off += n * f;
            }
        }
    }
}

impl<T: Real> Parameters<T> for TextCnn<T> {
    fn tensors(&self) -> Vec<(String, &Tensor<T>)> {
        let mut v = Vec::with_capacity(2 * self.convs.len());
        for (i, c) in self.convs.iter().enumerate() {
            v.push((format!("conv{i}.kernel"), &c.kernel));
            v.push((format!("conv{i}.bias"), &c.bias));
        }
        v
    }
    fn tensors_mut(&mut self) -> Vec<&mut Tensor<T>> {
        let mut v = Vec::with_capacity(2 * self.convs.len());
        for c in self.convs.iter_mut() {
            v.push(&mut c.kernel);
            v.push(&mut c.bias);
        }
        v
    }
}
