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
    /// `[batch, Σ_k (steps − k + 1)·filters]`: convolution outputs (before ReLU) of the computed
    /// windows.
    conv: Vec<T>,
    /// `[batch, Σ_k (steps − k + 1)]`: which windows hold padding only.
    pad_window: Vec<bool>,
    /// One per sequence and width, in order.
    groups: Vec<WindowGroup>,
    /// `[k·inputs]` scratch of the backward pass.
    fold: Vec<T>,
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
    ///
    /// `pad` (`[batch, steps]`, true at padding positions) tells which windows hold padding
    /// only. Those windows are identical (every padding position has the same embedding), so
    /// their convolution is computed once per sequence and width, and the backward pass folds
    /// their share of the gradient instead of visiting each; the result is the same as without
    /// `pad`, provided the padding rows of `x` are indeed identical.
    #[inline(always)]
    pub fn forward(
        &self,
        x: &[T],
        steps: usize,
        batch: usize,
        pad: Option<&[bool]>,
        cache: &mut CnnCache<T>,
    ) {
        let e = self.inputs();
        let w = self.outputs();
        cache.steps = steps;
        cache.batch = batch;
        let per_seq = self.conv_len(steps);
        let windows: usize = self.convs.iter().map(|c| steps + 1 - c.width()).sum();
        cache.out.resize(batch * w, T::ZERO);
        cache.conv.resize(batch * per_seq, T::ZERO);
        cache.pad_window.clear();
        cache.pad_window.resize(batch * windows, false);
        cache.groups.clear();
        for b in 0..batch {
            let xb = &x[b * steps * e..(b + 1) * steps * e];
            let (mut col, mut off, mut woff) = (0, b * per_seq, b * windows);
            for conv in &self.convs {
                let (k, f) = (conv.width(), conv.filters());
                let n = steps + 1 - k;
                let flags = &mut cache.pad_window[woff..woff + n];
                if let Some(pad) = pad {
                    let pb = &pad[b * steps..(b + 1) * steps];
                    for (p, fl) in flags.iter_mut().enumerate() {
                        *fl = pb[p..p + k].iter().all(|&v| v);
                    }
                }
                let first = flags.iter().position(|&v| !v);
                let last = flags.iter().rposition(|&v| !v);
                let p0 = flags.iter().position(|&v| v);
                let c = &mut cache.conv[off..off + n * f];
                // The rows computed: the span of windows with real tokens, and one padding-only
                // window outside it (all others equal it and are never read).
                let span = match (first, last) {
                    (Some(a), Some(z)) => a..z + 1,
                    _ => 0..0,
                };
                let extra = p0.filter(|p| !span.contains(p));
                for range in [span.clone(), extra.map_or(0..0, |p| p..p + 1)] {
                    if range.is_empty() {
                        continue;
                    }
                    let rows = &mut c[range.start * f..range.end * f];
                    for row in rows.chunks_exact_mut(f) {
                        row.copy_from_slice(conv.bias.data());
                    }
                    T::gemm_strided(
                        range.len(),
                        k * e,
                        f,
                        T::ONE,
                        (&xb[range.start * e..], e, 1),
                        (conv.kernel.data(), f, 1),
                        T::ONE,
                        (rows, f, 1),
                    );
                }
                let out = &mut cache.out[b * w + col..b * w + col + f];
                let start = span.start.min(extra.unwrap_or(usize::MAX));
                out.copy_from_slice(&c[start * f..start * f + f]);
                for p in span.clone().chain(extra) {
                    for (o, &v) in out.iter_mut().zip(&c[p * f..p * f + f]) {
                        *o = o.max(v);
                    }
                }
                for o in out.iter_mut() {
                    *o = o.max(T::ZERO);
                }
                cache.groups.push(WindowGroup {
                    span,
                    pad_row: p0.map(|p| extra.unwrap_or(p)),
                    pad_windows: flags.iter().filter(|&&v| v).count(),
                });
                col += f;
                off += n * f;
                woff += n;
            }
        }
    }

    /// Backward pass for the latest forward pass: `d_out` is `[batch, outputs]`. Parameter
    /// gradients are added to `grads`; `dx` (if given) receives `d loss / d x`
    /// (`[batch, steps, inputs]`). Windows tied for a filter's maximum share its gradient
    /// equally (TensorFlow's rule).
    #[inline(always)]
    pub fn backward(
        &self,
        x: &[T],
        d_out: &[T],
        cache: &mut CnnCache<T>,
        grads: &mut TextCnn<T>,
        mut dx: Option<&mut [T]>,
    ) {
        let (steps, batch, e, w) = (cache.steps, cache.batch, self.inputs(), self.outputs());
        if let Some(dx) = dx.as_deref_mut() {
            dx[..batch * steps * e].fill(T::ZERO);
        }
        let per_seq = self.conv_len(steps);
        let windows: usize = self.convs.iter().map(|c| steps + 1 - c.width()).sum();
        let mut gi = 0;
        for b in 0..batch {
            let (mut col, mut off, mut woff) = (0, b * per_seq, b * windows);
            for (conv, gconv) in self.convs.iter().zip(grads.convs.iter_mut()) {
                let (k, f) = (conv.width(), conv.filters());
                let n = steps + 1 - k;
                let group = cache.groups[gi].clone();
                gi += 1;
                let c = &cache.conv[off..off + n * f];
                let flags = &cache.pad_window[woff..woff + n];
                let kw = conv.kernel.data();
                // Σ over filters tied at the padding windows of (share · kernel column):
                // what each padding-only window passes back to its k positions.
                cache.fold.clear();
                cache.fold.resize(k * e, T::ZERO);
                let mut folded = false;
                for j in 0..f {
                    let i = b * w + col + j;
                    let (best, g) = (cache.out[i], d_out[i]);
                    if best <= T::ZERO || g == T::ZERO {
                        continue;
                    }
                    let real_ties = group
                        .span
                        .clone()
                        .filter(|&p| !flags[p] && c[p * f + j] == best)
                        .count();
                    let pad_ties = match group.pad_row {
                        Some(p) if c[p * f + j] == best => group.pad_windows,
                        _ => 0,
                    };
                    let ties = (real_ties + pad_ties).max(1);
                    gconv.bias.data_mut()[j] += g;
                    let share = g / T::from_f64(ties as f64);
                    let gk = gconv.kernel.data_mut();
                    for p in group.span.clone() {
                        if flags[p] || c[p * f + j] != best {
                            continue;
                        }
                        let start = (b * steps + p) * e;
                        for (l, &xv) in x[start..start + k * e].iter().enumerate() {
                            gk[l * f + j] += xv * share;
                        }
                        if let Some(dx) = dx.as_deref_mut() {
                            for (l, d) in dx[start..start + k * e].iter_mut().enumerate() {
                                *d += kw[l * f + j] * share;
                            }
                        }
                    }
                    if let (Some(p), true) = (group.pad_row, pad_ties > 0) {
                        let start = (b * steps + p) * e;
                        let s = share * T::from_f64(pad_ties as f64);
                        for (l, &xv) in x[start..start + k * e].iter().enumerate() {
                            gk[l * f + j] += xv * s;
                        }
                        for (l, v) in cache.fold.iter_mut().enumerate() {
                            *v += kw[l * f + j] * share;
                        }
                        folded = true;
                    }
                }
                if let (Some(dx), true) = (dx.as_deref_mut(), folded) {
                    for p in (0..n).filter(|&p| flags[p]) {
                        let start = (b * steps + p) * e;
                        for (d, &v) in dx[start..start + k * e].iter_mut().zip(&cache.fold) {
                            *d += v;
                        }
                    }
                }
                col += f;
                off += n * f;
                woff += n;
            }
        }
    }
}

/// The windows of one sequence and kernel width that the forward pass computed.
#[derive(Debug, Clone, Default)]
struct WindowGroup {
    /// From the first to the last window holding a real token.
    span: std::ops::Range<usize>,
    /// The computed padding-only window, if there are any.
    pad_row: Option<usize>,
    /// How many windows hold padding only.
    pad_windows: usize,
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
