//! The recurrent text network: `Embedding → LSTM → Dense`, the reference Keras model, with a
//! training pass over one (sub-)batch and a fast inference pass.

use crate::layers::{Dense, Embedding, EmbeddingGrad, Lstm, LstmCache, LstmState};
use crate::{multiversion, Loss, NnError, Optimizer, Parameters, Real, Rng, Targets, Tensor};

/// `Embedding(vocab, embed) → LSTM(hidden) → Dense(outputs)` with an output loss.
#[derive(Debug, Clone, PartialEq)]
pub struct TextRnn<T> {
    /// Token embeddings.
    pub embedding: Embedding<T>,
    /// The recurrent encoder.
    pub lstm: Lstm<T>,
    /// The output layer (logits).
    pub dense: Dense<T>,
    /// The loss, which also fixes the output activation.
    pub loss: Loss,
}

/// Gradients of the dense parameters of a [`TextRnn`]; the embedding's gradient stays sparse
/// (see [`Workspace::embedding_grad`]).
#[derive(Debug, Clone, PartialEq)]
pub struct RnnGrads<T> {
    /// LSTM parameter gradients.
    pub lstm: Lstm<T>,
    /// Output layer gradients.
    pub dense: Dense<T>,
}

impl<T: Real> RnnGrads<T> {
    /// Sets all gradients to zero.
    pub fn clear(&mut self) {
        for t in self.lstm.tensors_mut() {
            t.fill_zero();
        }
        for t in self.dense.tensors_mut() {
            t.fill_zero();
        }
    }

    /// Adds another gradient set.
    pub fn add(&mut self, other: &RnnGrads<T>) {
        for (a, b) in self
            .lstm
            .tensors_mut()
            .into_iter()
            .zip(other.lstm.tensors())
        {
            a.add_assign(b.1);
        }
        for (a, b) in self
            .dense
            .tensors_mut()
            .into_iter()
            .zip(other.dense.tensors())
        {
            a.add_assign(b.1);
        }
    }
}

/// One training (sub-)batch in time-major layout.
#[derive(Debug, Clone, Copy)]
pub struct TrainBatch<'a, T> {
    /// `[steps, batch]` token ids (`ids[t * batch + b]`).
    pub ids: &'a [u32],
    /// Sequence length.
    pub steps: usize,
    /// Number of sequences.
    pub batch: usize,
    /// `[batch, 4, embed]` input dropout masks, one per LSTM gate (i, f, c, o).
    pub input_mask: Option<&'a [T]>,
    /// `[batch, 4, hidden]` recurrent dropout masks, one per gate.
    pub recurrent_mask: Option<&'a [T]>,
    /// The targets.
    pub targets: Targets<'a>,
    /// Loss scale: `1 / size of the whole batch` (sub-batches of one batch share it).
    pub scale: T,
}

/// Buffers reused across batches.
#[derive(Debug, Clone, Default)]
pub struct Workspace<T> {
    ids: Vec<u32>,
    x: Vec<T>,
    dx: Vec<T>,
    lstm: LstmCache<T>,
    logits: Vec<T>,
    dlogits: Vec<T>,
    dh: Vec<T>,
    // inference
    order: Vec<usize>,
    active: Vec<usize>,
    state: LstmState<T>,
    gates: Vec<T>,
    h_sorted: Vec<T>,
}

impl<T: Real> Workspace<T> {
    /// The embedding gradient of the latest training pass, as rows: `(ids, d loss / d rows)`,
    /// `rows` being `[ids.len(), embed]`. Add it with [`EmbeddingGrad::accumulate`].
    pub fn embedding_grad(&self) -> (&[u32], &[T]) {
        (&self.ids, &self.dx)
    }

    /// The logits of the latest training pass, `[batch, outputs]`.
    pub fn logits(&self) -> &[T] {
        &self.logits
    }
}

/// The states of an all-padding prefix, so inference can start each pre-padded sequence at its
/// first real token (the padding prefix is the same for every sequence).
#[derive(Debug, Clone, PartialEq)]
pub struct PadStates<T> {
    steps: usize,
    h: Vec<T>,
    c: Vec<T>,
}

fn resize<X: Clone>(v: &mut Vec<X>, n: usize, fill: X) {
    if v.len() != n {
        v.resize(n, fill);
    }
}

impl<T: Real> TextRnn<T> {
    /// A freshly initialised network (Keras's initialisers).
    pub fn new(
        vocab: usize,
        embed: usize,
        hidden: usize,
        outputs: usize,
        loss: Loss,
        rng: &mut Rng,
    ) -> Self {
        let embedding = Embedding::new(vocab, embed, rng);
        let lstm = Lstm::new(embed, hidden, rng);
        let dense = Dense::new(hidden, outputs, rng);
        TextRnn {
            embedding,
            lstm,
            dense,
            loss,
        }
    }

    /// A zeroed gradient container.
    pub fn zero_grads(&self) -> RnnGrads<T> {
        RnnGrads {
            lstm: self.lstm.zeros_like(),
            dense: self.dense.zeros_like(),
        }
    }

    /// Number of outputs.
    pub fn outputs(&self) -> usize {
        self.dense.outputs()
    }

    /// An empty sparse gradient for the embedding table.
    pub fn embedding_grad(&self) -> EmbeddingGrad<T> {
        EmbeddingGrad::new(self.embedding.vocab(), self.embedding.dim())
    }

    /// One optimiser update from accumulated gradients (the embedding's in `emb`, whose
    /// per-occurrence squares feed Adam's second moment as in Keras).
    pub fn apply_update(
        &mut self,
        opt: &mut Optimizer<T>,
        grads: &RnnGrads<T>,
        emb: &EmbeddingGrad<T>,
    ) -> Result<(), NnError> {
        let mut g: Vec<&Tensor<T>> = vec![&emb.sum];
        g.extend(grads.lstm.tensors().into_iter().map(|t| t.1));
        g.extend(grads.dense.tensors().into_iter().map(|t| t.1));
        let mut squares: Vec<Option<&Tensor<T>>> = vec![None; g.len()];
        squares[0] = Some(&emb.squares);
        let mut params = self.tensors_mut();
        opt.step_with_squares(&mut params, &g, &squares)
    }

    /// Forward and backward pass over one (sub-)batch. Adds the LSTM and dense gradients to
    /// `grads`, leaves the embedding's rows in `ws` (see [`Workspace::embedding_grad`]) and
    /// returns the summed loss (unscaled) of the batch; logits are in `ws.logits()`.
    pub fn train_batch(
        &self,
        batch: &TrainBatch<'_, T>,
        ws: &mut Workspace<T>,
        grads: &mut RnnGrads<T>,
    ) -> Result<f64, NnError> {
        let (steps, n) = (batch.steps, batch.batch);
        if batch.ids.len() != steps * n {
            return Err(NnError::Shape(format!(
                "{} ids for {steps} steps x {n} sequences",
                batch.ids.len()
            )));
        }
        self.embedding.check_ids(batch.ids)?;
        let (e, h) = (self.embedding.dim(), self.lstm.hidden());
        for (what, mask, width) in [
            ("input", batch.input_mask, e),
            ("recurrent", batch.recurrent_mask, h),
        ] {
            if let Some(m) = mask {
                if m.len() != n * 4 * width {
                    return Err(NnError::Shape(format!(
                        "{what} dropout mask has {} values, need {n} x 4 x {width}",
                        m.len()
                    )));
                }
            }
        }
        multiversion!(self.train_batch_inner(batch, ws, grads) as train_batch_avx2)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn train_batch_avx2(
        &self,
        batch: &TrainBatch<'_, T>,
        ws: &mut Workspace<T>,
        grads: &mut RnnGrads<T>,
    ) -> Result<f64, NnError> {
        self.train_batch_inner(batch, ws, grads)
    }

    #[inline(always)]
    fn train_batch_inner(
        &self,
        batch: &TrainBatch<'_, T>,
        ws: &mut Workspace<T>,
        grads: &mut RnnGrads<T>,
    ) -> Result<f64, NnError> {
        let (steps, n) = (batch.steps, batch.batch);
        let e = self.embedding.dim();
        let h = self.lstm.hidden();
        let k = self.dense.outputs();
        resize(&mut ws.x, steps * n * e, T::ZERO);
        resize(&mut ws.dx, steps * n * e, T::ZERO);
        resize(&mut ws.logits, n * k, T::ZERO);
        resize(&mut ws.dlogits, n * k, T::ZERO);
        resize(&mut ws.dh, n * h, T::ZERO);
        ws.ids.clear();
        ws.ids.extend_from_slice(batch.ids);
        self.embedding.forward(batch.ids, &mut ws.x);
        self.lstm.forward_train(
            &ws.x,
            steps,
            n,
            batch.input_mask,
            batch.recurrent_mask,
            &mut ws.lstm,
        );
        self.dense.forward(ws.lstm.last_hidden(), n, &mut ws.logits);
        let loss = self.loss.forward_backward(
            &ws.logits,
            k,
            batch.targets,
            batch.scale,
            &mut ws.dlogits,
        )?;
        self.dense.backward(
            ws.lstm.last_hidden(),
            &ws.dlogits,
            n,
            &mut grads.dense,
            Some(&mut ws.dh),
        );
        self.lstm.backward(
            &ws.x,
            batch.input_mask,
            batch.recurrent_mask,
            &ws.dh,
            &mut ws.lstm,
            &mut grads.lstm,
            Some(&mut ws.dx),
        );
        Ok(loss.to_f64())
    }

    /// The recurrent states after `0..=steps` padding tokens (`pad_id`), for
    /// [`TextRnn::predict_pre_padded`]. Recompute whenever the weights change.
    pub fn pad_states(&self, steps: usize, pad_id: u32) -> Result<PadStates<T>, NnError> {
        self.embedding.check_ids(&[pad_id])?;
        let e = self.embedding.dim();
        let mut x = vec![T::ZERO; e];
        self.embedding.forward(&[pad_id], &mut x);
        let (h, c) = self.lstm.constant_input_states(&x, steps);
        Ok(PadStates { steps, h, c })
    }

    /// Logits (`[seqs.len(), outputs]`, written to `out`) for sequences that are pre-padded to
    /// `pads.steps` tokens: each sequence (at most `steps` ids, already truncated) starts from the
    /// stored padding state, so no time is spent on padding. Equal to running the padded input
    /// through the network.
    pub fn predict_pre_padded(
        &self,
        seqs: &[&[u32]],
        pads: &PadStates<T>,
        ws: &mut Workspace<T>,
        out: &mut [T],
    ) -> Result<(), NnError> {
        let k = self.dense.outputs();
        if out.len() != seqs.len() * k {
            return Err(NnError::Shape(format!(
                "output buffer holds {} values, need {}",
                out.len(),
                seqs.len() * k
            )));
        }
        for s in seqs {
            if s.len() > pads.steps {
                return Err(NnError::Shape(format!(
                    "a sequence of {} ids is longer than the {} steps of the model",
                    s.len(),
                    pads.steps
                )));
            }
            self.embedding.check_ids(s)?;
        }
        multiversion!(self.predict_inner(seqs, pads, ws, out) as predict_avx2);
        Ok(())
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn predict_avx2(
        &self,
        seqs: &[&[u32]],
        pads: &PadStates<T>,
        ws: &mut Workspace<T>,
        out: &mut [T],
    ) {
        self.predict_inner(seqs, pads, ws, out)
    }

    #[inline(always)]
    fn predict_inner(
        &self,
        seqs: &[&[u32]],
        pads: &PadStates<T>,
        ws: &mut Workspace<T>,
        out: &mut [T],
    ) {
        let n = seqs.len();
        let (e, h, k) = (
            self.embedding.dim(),
            self.lstm.hidden(),
            self.dense.outputs(),
        );
        ws.order.clear();
        ws.order.extend(0..n);
        ws.order.sort_by_key(|&i| std::cmp::Reverse(seqs[i].len()));
        let longest = ws.order.first().map_or(0, |&i| seqs[i].len());
        // active[t] for the last `longest` steps: rows whose first real token is at or before t.
        ws.active.clear();
        let mut count = 0;
        for t in 0..longest {
            let remaining = longest - t;
            while count < n && seqs[ws.order[count]].len() >= remaining {
                count += 1;
            }
            ws.active.push(count);
        }
        let rows: usize = ws.active.iter().sum();
        resize(&mut ws.x, rows * e, T::ZERO);
        let mut off = 0;
        for (t, &m) in ws.active.iter().enumerate() {
            let remaining = longest - t;
            for r in 0..m {
                let s = seqs[ws.order[r]];
                let id = s[s.len() - remaining];
                self.embedding
                    .forward(&[id], &mut ws.x[(off + r) * e..(off + r + 1) * e]);
            }
            off += m;
        }
        resize(&mut ws.state.h, n * h, T::ZERO);
        resize(&mut ws.state.c, n * h, T::ZERO);
        for (r, &i) in ws.order.iter().enumerate() {
            let p = pads.steps - seqs[i].len();
            ws.state.h[r * h..(r + 1) * h].copy_from_slice(&pads.h[p * h..(p + 1) * h]);
            ws.state.c[r * h..(r + 1) * h].copy_from_slice(&pads.c[p * h..(p + 1) * h]);
        }
        self.lstm
            .forward_packed(&ws.x, &ws.active, &mut ws.state, &mut ws.gates);
        resize(&mut ws.h_sorted, n * k, T::ZERO);
        self.dense.forward(&ws.state.h, n, &mut ws.h_sorted);
        for (r, &i) in ws.order.iter().enumerate() {
            out[i * k..(i + 1) * k].copy_from_slice(&ws.h_sorted[r * k..(r + 1) * k]);
        }
    }

    /// Logits for an already padded, time-major `[steps, batch]` id matrix (any padding side):
    /// the plain inference pass, every step computed.
    pub fn predict_padded(
        &self,
        ids: &[u32],
        steps: usize,
        batch: usize,
        ws: &mut Workspace<T>,
        out: &mut [T],
    ) -> Result<(), NnError> {
        let k = self.dense.outputs();
        if ids.len() != steps * batch || out.len() != batch * k {
            return Err(NnError::Shape(format!(
                "{} ids / {} outputs for {steps} steps x {batch} sequences",
                ids.len(),
                out.len()
            )));
        }
        self.embedding.check_ids(ids)?;
        multiversion!(self.predict_padded_inner(ids, steps, batch, ws, out) as predict_padded_avx2);
        Ok(())
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn predict_padded_avx2(
        &self,
        ids: &[u32],
        steps: usize,
        batch: usize,
        ws: &mut Workspace<T>,
        out: &mut [T],
    ) {
        self.predict_padded_inner(ids, steps, batch, ws, out)
    }

    #[inline(always)]
    fn predict_padded_inner(
        &self,
        ids: &[u32],
        steps: usize,
        batch: usize,
        ws: &mut Workspace<T>,
        out: &mut [T],
    ) {
        let (e, h) = (self.embedding.dim(), self.lstm.hidden());
        resize(&mut ws.x, steps * batch * e, T::ZERO);
        self.embedding.forward(ids, &mut ws.x);
        ws.active.clear();
        ws.active.resize(steps, batch);
        ws.state.h.clear();
        ws.state.h.resize(batch * h, T::ZERO);
        ws.state.c.clear();
        ws.state.c.resize(batch * h, T::ZERO);
        self.lstm
            .forward_packed(&ws.x, &ws.active, &mut ws.state, &mut ws.gates);
        self.dense.forward(&ws.state.h, batch, out);
    }

    /// The same network in another precision.
    pub fn cast<U: Real>(&self) -> TextRnn<U> {
        TextRnn {
            embedding: Embedding {
                weight: self.embedding.weight.cast(),
            },
            lstm: Lstm {
                kernel: self.lstm.kernel.cast(),
                recurrent: self.lstm.recurrent.cast(),
                bias: self.lstm.bias.cast(),
            },
            dense: Dense {
                kernel: self.dense.kernel.cast(),
                bias: self.dense.bias.cast(),
            },
            loss: self.loss,
        }
    }
}

impl<T: Real> Parameters<T> for TextRnn<T> {
    fn tensors(&self) -> Vec<(String, &Tensor<T>)> {
        let mut v = self.embedding.tensors();
        v.extend(self.lstm.tensors());
        v.extend(self.dense.tensors());
        v
    }
    fn tensors_mut(&mut self) -> Vec<&mut Tensor<T>> {
        let mut v = self.embedding.tensors_mut();
        v.extend(self.lstm.tensors_mut());
        v.extend(self.dense.tensors_mut());
        v
    }
}
