//! What the recurrent layers share: the [`Recurrent`] interface over one time-major batch, the
//! masks of a pass ([`SeqMasks`]), and the [`Bidirectional`] wrapper (Keras's
//! `Bidirectional(layer, merge_mode="concat")` without `return_sequences`: the forward layer's
//! last state followed by the last state of a copy that reads the sequence backwards).

use crate::{Parameters, Real, Tensor};

/// The masks of one pass over a time-major batch.
#[derive(Debug, Clone, Copy)]
pub struct SeqMasks<'a, T> {
    /// Input dropout: `[batch, gates, inputs]` (one mask per gate, drawn once per sequence).
    pub input: Option<&'a [T]>,
    /// Recurrent dropout: `[batch, gates, units]`.
    pub recurrent: Option<&'a [T]>,
    /// `[steps, batch]`: false where a step is padding, whose input is not read and over which
    /// the state is carried unchanged (Keras `mask_zero=True`).
    pub steps: Option<&'a [bool]>,
}

impl<T> Default for SeqMasks<'_, T> {
    fn default() -> Self {
        SeqMasks {
            input: None,
            recurrent: None,
            steps: None,
        }
    }
}

/// A recurrent layer reading a time-major `[steps, batch, inputs]` sequence and returning one
/// vector per sequence (its last state).
pub trait Recurrent<T: Real>: Parameters<T> + Clone + Send + Sync {
    /// Buffers of a forward/backward pass, reused across batches.
    type Cache: Default + Clone + Send;
    /// Gates, i.e. dropout masks per sequence and direction.
    fn gates(&self) -> usize;
    /// Input width.
    fn inputs(&self) -> usize;
    /// Width of the recurrent state.
    fn units(&self) -> usize;
    /// Width of the output vector.
    fn outputs(&self) -> usize;
    /// Values of the input dropout mask per sequence.
    fn input_mask_len(&self) -> usize {
        self.gates() * self.inputs()
    }
    /// Values of the recurrent dropout mask per sequence.
    fn recurrent_mask_len(&self) -> usize {
        self.gates() * self.units()
    }
    /// Zero parameters of the same shapes (a gradient buffer).
    fn zeros(&self) -> Self;
    /// Forward pass; the output is then in [`Recurrent::output`].
    fn forward(
        &self,
        x: &[T],
        steps: usize,
        batch: usize,
        masks: &SeqMasks<'_, T>,
        cache: &mut Self::Cache,
    );
    /// The `[batch, outputs]` output of the latest forward pass.
    fn output<'c>(&self, cache: &'c Self::Cache) -> &'c [T];
    /// Backward pass for the latest forward pass (same masks): adds parameter gradients to
    /// `grads` and writes `d loss / d x` into `dx` when given.
    fn backward(
        &self,
        x: &[T],
        masks: &SeqMasks<'_, T>,
        d_out: &[T],
        cache: &mut Self::Cache,
        grads: &mut Self,
        dx: Option<&mut [T]>,
    );
}

/// A forward and a backward copy of a recurrent layer; the output is their last states,
/// concatenated (`[forward | backward]`). Dropout masks are laid out per sequence as
/// `[forward masks | backward masks]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Bidirectional<R> {
    /// Reads the sequence from the first step to the last.
    pub forward: R,
    /// Reads it from the last step to the first.
    pub backward: R,
}

/// Buffers of a [`Bidirectional`] pass.
#[derive(Debug, Clone, Default)]
pub struct BiCache<T, C> {
    fwd: C,
    bwd: C,
    x_rev: Vec<T>,
    steps_rev: Vec<bool>,
    in_f: Vec<T>,
    in_b: Vec<T>,
    rec_f: Vec<T>,
    rec_b: Vec<T>,
    out: Vec<T>,
    d_f: Vec<T>,
    d_b: Vec<T>,
    dx_rev: Vec<T>,
    steps: usize,
    batch: usize,
}

/// Splits `[batch, 2, half]` masks into the two directions' `[batch, half]` masks.
fn split_masks<T: Real>(m: Option<&[T]>, batch: usize, f: &mut Vec<T>, b: &mut Vec<T>) -> bool {
    let Some(m) = m else { return false };
    let half = m.len() / (2 * batch.max(1));
    f.clear();
    b.clear();
    for row in m.chunks_exact(2 * half).take(batch) {
        f.extend_from_slice(&row[..half]);
        b.extend_from_slice(&row[half..]);
    }
    true
}

/// Reverses the time axis of a time-major `[steps, batch · width]` buffer into `out`.
fn reverse_steps<X: Copy>(x: &[X], steps: usize, block: usize, out: &mut Vec<X>) {
    out.clear();
    for t in (0..steps).rev() {
        out.extend_from_slice(&x[t * block..(t + 1) * block]);
    }
}

/// Masks of one direction, from the split copies in the cache.
fn direction_masks<'a, T>(
    input: bool,
    recurrent: bool,
    steps: Option<&'a [bool]>,
    in_m: &'a [T],
    rec_m: &'a [T],
) -> SeqMasks<'a, T> {
    SeqMasks {
        input: input.then_some(in_m),
        recurrent: recurrent.then_some(rec_m),
        steps,
    }
}

impl<T: Real, R: Recurrent<T>> Parameters<T> for Bidirectional<R> {
    fn tensors(&self) -> Vec<(String, &Tensor<T>)> {
        let mut v: Vec<(String, &Tensor<T>)> = self
            .forward
            .tensors()
            .into_iter()
            .map(|(n, t)| (format!("forward_{n}"), t))
            .collect();
        v.extend(
            self.backward
                .tensors()
                .into_iter()
                .map(|(n, t)| (format!("backward_{n}"), t)),
        );
        v
    }
    fn tensors_mut(&mut self) -> Vec<&mut Tensor<T>> {
        let mut v = self.forward.tensors_mut();
        v.extend(self.backward.tensors_mut());
        v
    }
}

impl<T: Real, R: Recurrent<T>> Recurrent<T> for Bidirectional<R> {
    type Cache = BiCache<T, R::Cache>;
    fn gates(&self) -> usize {
        self.forward.gates()
    }
    fn inputs(&self) -> usize {
        self.forward.inputs()
    }
    fn units(&self) -> usize {
        self.forward.units()
    }
    fn outputs(&self) -> usize {
        self.forward.outputs() + self.backward.outputs()
    }
    fn input_mask_len(&self) -> usize {
        self.forward.input_mask_len() + self.backward.input_mask_len()
    }
    fn recurrent_mask_len(&self) -> usize {
        self.forward.recurrent_mask_len() + self.backward.recurrent_mask_len()
    }
    fn zeros(&self) -> Self {
        Bidirectional {
            forward: self.forward.zeros(),
            backward: self.backward.zeros(),
        }
    }

    #[inline(always)]
    fn forward(
        &self,
        x: &[T],
        steps: usize,
        batch: usize,
        masks: &SeqMasks<'_, T>,
        c: &mut Self::Cache,
    ) {
        let e = self.inputs();
        c.steps = steps;
        c.batch = batch;
        reverse_steps(&x[..steps * batch * e], steps, batch * e, &mut c.x_rev);
        if let Some(s) = masks.steps {
            reverse_steps(s, steps, batch, &mut c.steps_rev);
        }
        let has_in = split_masks(masks.input, batch, &mut c.in_f, &mut c.in_b);
        let has_rec = split_masks(masks.recurrent, batch, &mut c.rec_f, &mut c.rec_b);
        let mf = direction_masks(has_in, has_rec, masks.steps, &c.in_f, &c.rec_f);
        self.forward.forward(x, steps, batch, &mf, &mut c.fwd);
        let steps_rev = masks.steps.map(|_| c.steps_rev.as_slice());
        let mb = direction_masks(has_in, has_rec, steps_rev, &c.in_b, &c.rec_b);
        self.backward
            .forward(&c.x_rev, steps, batch, &mb, &mut c.bwd);
        let (hf, hb) = (self.forward.outputs(), self.backward.outputs());
        c.out.clear();
        let (of, ob) = (self.forward.output(&c.fwd), self.backward.output(&c.bwd));
        for b in 0..batch {
            c.out.extend_from_slice(&of[b * hf..(b + 1) * hf]);
            c.out.extend_from_slice(&ob[b * hb..(b + 1) * hb]);
        }
    }

    #[inline(always)]
    fn output<'c>(&self, cache: &'c Self::Cache) -> &'c [T] {
        &cache.out
    }

    #[inline(always)]
    fn backward(
        &self,
        x: &[T],
        masks: &SeqMasks<'_, T>,
        d_out: &[T],
        c: &mut Self::Cache,
        grads: &mut Self,
        mut dx: Option<&mut [T]>,
    ) {
        let (steps, batch, e) = (c.steps, c.batch, self.inputs());
        let (hf, hb) = (self.forward.outputs(), self.backward.outputs());
        c.d_f.clear();
        c.d_b.clear();
        for row in d_out.chunks_exact(hf + hb).take(batch) {
            c.d_f.extend_from_slice(&row[..hf]);
            c.d_b.extend_from_slice(&row[hf..]);
        }
        let (has_in, has_rec) = (masks.input.is_some(), masks.recurrent.is_some());
        let mf = direction_masks(has_in, has_rec, masks.steps, &c.in_f, &c.rec_f);
        self.forward.backward(
            x,
            &mf,
            &c.d_f,
            &mut c.fwd,
            &mut grads.forward,
            dx.as_deref_mut(),
        );
        let steps_rev = masks.steps.map(|_| c.steps_rev.as_slice());
        let mb = direction_masks(has_in, has_rec, steps_rev, &c.in_b, &c.rec_b);
        let want_dx = dx.is_some();
        if want_dx {
            c.dx_rev.clear();
            c.dx_rev.resize(steps * batch * e, T::ZERO);
        }
        let dx_rev = want_dx.then_some(c.dx_rev.as_mut_slice());
        self.backward.backward(
            &c.x_rev,
            &mb,
            &c.d_b,
            &mut c.bwd,
            &mut grads.backward,
            dx_rev,
        );
        if let Some(dx) = dx {
            let block = batch * e;
            for t in 0..steps {
                let src = &c.dx_rev[(steps - 1 - t) * block..(steps - t) * block];
                for (d, &v) in dx[t * block..(t + 1) * block].iter_mut().zip(src) {
                    *d += v;
                }
            }
        }
    }
}
