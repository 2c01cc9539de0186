//! The sequence networks beyond the reference model: `Embedding → encoder → Dense`, where the
//! encoder is an LSTM, a GRU, a bidirectional LSTM or a TextCNN, with optional masking of the
//! padding id 0 (Keras `Embedding(mask_zero=True)`) for the recurrent encoders.
//!
//! With masking, the steps where every sequence of the batch is padding are skipped: they leave
//! every state unchanged, so cutting them changes nothing but the time spent.

use crate::layers::{
    BiCache, Bidirectional, CnnCache, Dense, Embedding, EmbeddingGrad, Gru, GruCache, Lstm,
    LstmCache, Recurrent, SeqMasks, TextCnn,
};
use crate::{Loss, NnError, Optimizer, Parameters, Real, Targets, Tensor};

/// The layer between the embeddings and the output layer.
#[derive(Debug, Clone, PartialEq)]
pub enum Encoder<T> {
    /// A unidirectional LSTM (last state).
    Lstm(Lstm<T>),
    /// A GRU (last state).
    Gru(Gru<T>),
    /// A bidirectional LSTM (both last states, concatenated).
    BiLstm(Bidirectional<Lstm<T>>),
    /// Convolutions of several widths, ReLU, max over time, concatenated.
    Cnn(TextCnn<T>),
}

impl<T: Real> Encoder<T> {
    /// Width of the encoding of one sequence.
    pub fn outputs(&self) -> usize {
        match self {
            Encoder::Lstm(l) => l.hidden(),
            Encoder::Gru(g) => g.hidden(),
            Encoder::BiLstm(b) => b.outputs(),
            Encoder::Cnn(c) => c.outputs(),
        }
    }

    /// Values per sequence of the `input_mask` of a [`SeqBatch`]: per-gate input dropout masks
    /// for the recurrent encoders, a dropout mask over the pooled features for the CNN.
    pub fn input_mask_len(&self) -> usize {
        match self {
            Encoder::Lstm(l) => l.input_mask_len(),
            Encoder::Gru(g) => g.input_mask_len(),
            Encoder::BiLstm(b) => b.input_mask_len(),
            Encoder::Cnn(c) => c.outputs(),
        }
    }

    /// Values per sequence of the `recurrent_mask` of a [`SeqBatch`] (0 for the CNN).
    pub fn recurrent_mask_len(&self) -> usize {
        match self {
            Encoder::Lstm(l) => l.recurrent_mask_len(),
            Encoder::Gru(g) => g.recurrent_mask_len(),
            Encoder::BiLstm(b) => b.recurrent_mask_len(),
            Encoder::Cnn(_) => 0,
        }
    }

    /// Gates of one recurrent direction (masks per sequence and direction); 1 for the CNN.
    pub fn gates(&self) -> usize {
        match self {
            Encoder::Lstm(l) => l.gates(),
            Encoder::Gru(g) => g.gates(),
            Encoder::BiLstm(b) => b.gates(),
            Encoder::Cnn(_) => 1,
        }
    }

    /// Zero parameters of the same shapes.
    pub fn zeros_like(&self) -> Self {
        match self {
            Encoder::Lstm(l) => Encoder::Lstm(l.zeros_like()),
            Encoder::Gru(g) => Encoder::Gru(g.zeros_like()),
            Encoder::BiLstm(b) => Encoder::BiLstm(b.zeros()),
            Encoder::Cnn(c) => Encoder::Cnn(c.zeros_like()),
        }
    }
}

impl<T: Real> Parameters<T> for Encoder<T> {
    fn tensors(&self) -> Vec<(String, &Tensor<T>)> {
        match self {
            Encoder::Lstm(l) => l.tensors(),
            Encoder::Gru(g) => g.tensors(),
            Encoder::BiLstm(b) => b.tensors(),
            Encoder::Cnn(c) => c.tensors(),
        }
    }
    fn tensors_mut(&mut self) -> Vec<&mut Tensor<T>> {
        match self {
            Encoder::Lstm(l) => l.tensors_mut(),
            Encoder::Gru(g) => g.tensors_mut(),
            Encoder::BiLstm(b) => b.tensors_mut(),
            Encoder::Cnn(c) => c.tensors_mut(),
        }
    }
}

/// `Embedding → Encoder → Dense` with an output loss.
#[derive(Debug, Clone, PartialEq)]
pub struct SeqNet<T> {
    /// Token embeddings.
    pub embedding: Embedding<T>,
    /// The sequence encoder.
    pub encoder: Encoder<T>,
    /// The output layer (logits).
    pub dense: Dense<T>,
    /// The loss, which also fixes the output activation.
    pub loss: Loss,
    /// Padding (id 0) is masked: recurrent encoders carry their state unchanged over it.
    pub mask_zero: bool,
}

/// Gradients of the dense parameters of a [`SeqNet`] (the embedding's stay sparse, see
/// [`SeqWorkspace::embedding_grad`]).
#[derive(Debug, Clone, PartialEq)]
pub struct SeqGrads<T> {
    /// Encoder gradients.
    pub encoder: Encoder<T>,
    /// Output layer gradients.
    pub dense: Dense<T>,
}

impl<T: Real> SeqGrads<T> {
    /// Sets all gradients to zero.
    pub fn clear(&mut self) {
        for t in self.encoder.tensors_mut() {
            t.fill_zero();
        }
        for t in self.dense.tensors_mut() {
            t.fill_zero();
        }
    }

    /// Adds another gradient set.
    pub fn add(&mut self, other: &SeqGrads<T>) {
        let theirs = other
            .encoder
            .tensors()
            .into_iter()
            .chain(other.dense.tensors());
        let ours = self
            .encoder
            .tensors_mut()
            .into_iter()
            .chain(self.dense.tensors_mut());
        for (a, b) in ours.zip(theirs) {
            a.add_assign(b.1);
        }
    }

    /// The gradient tensors in parameter order (encoder, then dense).
    pub fn tensors(&self) -> Vec<&Tensor<T>> {
        let mut v: Vec<&Tensor<T>> = self.encoder.tensors().into_iter().map(|t| t.1).collect();
        v.extend(self.dense.tensors().into_iter().map(|t| t.1));
        v
    }
}

/// One training (sub-)batch in time-major layout.
#[derive(Debug, Clone, Copy)]
pub struct SeqBatch<'a, T> {
    /// `[steps, batch]` token ids (`ids[t * batch + b]`).
    pub ids: &'a [u32],
    /// Sequence length.
    pub steps: usize,
    /// Number of sequences.
    pub batch: usize,
    /// `[batch, Encoder::input_mask_len]` dropout mask: per-gate input masks for recurrent
    /// encoders, a mask over the pooled features for the CNN.
    pub input_mask: Option<&'a [T]>,
    /// `[batch, Encoder::recurrent_mask_len]` recurrent dropout masks.
    pub recurrent_mask: Option<&'a [T]>,
    /// The targets.
    pub targets: Targets<'a>,
    /// Loss scale: `1 / size of the whole batch`.
    pub scale: T,
}

/// Buffers reused across batches.
#[derive(Debug, Clone, Default)]
pub struct SeqWorkspace<T> {
    ids: Vec<u32>,
    x: Vec<T>,
    dx: Vec<T>,
    step_mask: Vec<bool>,
    pad: Vec<bool>,
    lstm: LstmCache<T>,
    gru: GruCache<T>,
    bilstm: BiCache<T, LstmCache<T>>,
    cnn: CnnCache<T>,
    feat: Vec<T>,
    dfeat: Vec<T>,
    logits: Vec<T>,
    dlogits: Vec<T>,
    steps: usize,
    // packed inference
    order: Vec<usize>,
    active: Vec<usize>,
    state: Vec<T>,
    rec: Vec<T>,
    sorted: Vec<T>,
}

/// The GRU states of an all-padding prefix, so inference can start each pre-padded sequence of
/// an unmasked GRU network at its first real token (see [`SeqNet::pad_states`]).
#[derive(Debug, Clone, PartialEq)]
pub struct SeqPadStates<T> {
    steps: usize,
    h: Vec<T>,
}

impl<T: Real> SeqWorkspace<T> {
    /// The embedding gradient of the latest training pass as rows: `(ids, d loss / d rows)`.
    pub fn embedding_grad(&self) -> (&[u32], &[T]) {
        (&self.ids, &self.dx)
    }

    /// The logits of the latest pass, `[batch, outputs]`.
    pub fn logits(&self) -> &[T] {
        &self.logits
    }
}

fn resize<X: Clone>(v: &mut Vec<X>, n: usize, fill: X) {
    if v.len() != n {
        v.resize(n, fill);
    }
}

impl<T: Real> SeqNet<T> {
    /// A network from its parts; `rng` draws the embedding, then the encoder given by `make`,
    /// then the output layer (Keras's initialisers).
    pub fn new(
        vocab: usize,
        embed: usize,
        outputs: usize,
        loss: Loss,
        mask_zero: bool,
        rng: &mut crate::Rng,
        make: impl FnOnce(usize, &mut crate::Rng) -> Encoder<T>,
    ) -> Self {
        let embedding = Embedding::new(vocab, embed, rng);
        let encoder = make(embed, rng);
        let dense = Dense::new(encoder.outputs(), outputs, rng);
        SeqNet {
            embedding,
            encoder,
            dense,
            loss,
            mask_zero,
        }
    }

    /// Number of outputs.
    pub fn outputs(&self) -> usize {
        self.dense.outputs()
    }

    /// A zeroed gradient container.
    pub fn zero_grads(&self) -> SeqGrads<T> {
        SeqGrads {
            encoder: self.encoder.zeros_like(),
            dense: self.dense.zeros_like(),
        }
    }

    /// An empty sparse gradient for the embedding table.
    pub fn embedding_grad(&self) -> EmbeddingGrad<T> {
        EmbeddingGrad::new(self.embedding.vocab(), self.embedding.dim())
    }

    /// Shortest sequence length the network accepts (the widest convolution).
    pub fn min_steps(&self) -> usize {
        match &self.encoder {
            Encoder::Cnn(c) => c.max_width(),
            _ => 0,
        }
    }

    /// One optimiser update from accumulated gradients (see [`crate::TextRnn::apply_update`]).
    pub fn apply_update(
        &mut self,
        opt: &mut Optimizer<T>,
        grads: &SeqGrads<T>,
        emb: &EmbeddingGrad<T>,
    ) -> Result<(), NnError> {
        let mut g: Vec<&Tensor<T>> = vec![&emb.sum];
        g.extend(grads.tensors());
        let mut squares: Vec<Option<&Tensor<T>>> = vec![None; g.len()];
        squares[0] = Some(&emb.squares);
        let mut params = self.tensors_mut();
        opt.step_with_squares(&mut params, &g, &squares)
    }

    fn check(&self, ids: &[u32], steps: usize, batch: usize) -> Result<(), NnError> {
        if ids.len() != steps * batch {
            return Err(NnError::Shape(format!(
                "{} ids for {steps} steps x {batch} sequences",
                ids.len()
            )));
        }
        if steps < self.min_steps() {
            return Err(NnError::Shape(format!(
                "sequences of {steps} steps are shorter than the widest kernel ({})",
                self.min_steps()
            )));
        }
        self.embedding.check_ids(ids)
    }

    /// Forward and backward pass over one (sub-)batch: adds the encoder and dense gradients to
    /// `grads`, leaves the embedding's rows in `ws` and returns the summed (unscaled) loss.
    pub fn train_batch(
        &self,
        batch: &SeqBatch<'_, T>,
        ws: &mut SeqWorkspace<T>,
        grads: &mut SeqGrads<T>,
    ) -> Result<f64, NnError> {
        let n = batch.batch;
        self.check(batch.ids, batch.steps, n)?;
        for (what, mask, width) in [
            ("input", batch.input_mask, self.encoder.input_mask_len()),
            (
                "recurrent",
                batch.recurrent_mask,
                self.encoder.recurrent_mask_len(),
            ),
        ] {
            if mask.is_some_and(|m| m.len() != n * width) {
                return Err(NnError::Shape(format!(
                    "{what} dropout mask has the wrong size: need {n} x {width}"
                )));
            }
        }
        crate::multiversion!(self.train_inner(batch, ws, grads) as train_avx2)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn train_avx2(
        &self,
        batch: &SeqBatch<'_, T>,
        ws: &mut SeqWorkspace<T>,
        grads: &mut SeqGrads<T>,
    ) -> Result<f64, NnError> {
        self.train_inner(batch, ws, grads)
    }

    #[inline(always)]
    fn train_inner(
        &self,
        batch: &SeqBatch<'_, T>,
        ws: &mut SeqWorkspace<T>,
        grads: &mut SeqGrads<T>,
    ) -> Result<f64, NnError> {
        let n = batch.batch;
        let k = self.outputs();
        self.forward(
            batch.ids,
            batch.steps,
            n,
            batch.input_mask,
            batch.recurrent_mask,
            ws,
        );
        resize(&mut ws.dlogits, n * k, T::ZERO);
        let loss = self.loss.forward_backward(
            &ws.logits,
            k,
            batch.targets,
            batch.scale,
            &mut ws.dlogits,
        )?;
        let w = self.encoder.outputs();
        resize(&mut ws.dfeat, n * w, T::ZERO);
        self.dense.backward(
            &ws.feat,
            &ws.dlogits,
            n,
            &mut grads.dense,
            Some(&mut ws.dfeat),
        );
        let e = self.embedding.dim();
        let steps = ws.steps;
        resize(&mut ws.dx, steps * n * e, T::ZERO);
        let masks = SeqMasks {
            input: batch.input_mask,
            recurrent: batch.recurrent_mask,
            steps: self.mask_zero.then_some(ws.step_mask.as_slice()),
        };
        match (&self.encoder, &mut grads.encoder) {
            (Encoder::Lstm(l), Encoder::Lstm(g)) => {
                l.backward_masked(
                    &ws.x,
                    masks.input,
                    masks.recurrent,
                    masks.steps,
                    &ws.dfeat,
                    &mut ws.lstm,
                    g,
                    Some(&mut ws.dx),
                );
            }
            (Encoder::Gru(l), Encoder::Gru(g)) => {
                l.backward(&ws.x, &masks, &ws.dfeat, &mut ws.gru, g, Some(&mut ws.dx));
            }
            (Encoder::BiLstm(l), Encoder::BiLstm(g)) => {
                Recurrent::backward(
                    l,
                    &ws.x,
                    &masks,
                    &ws.dfeat,
                    &mut ws.bilstm,
                    g,
                    Some(&mut ws.dx),
                );
            }
            (Encoder::Cnn(c), Encoder::Cnn(g)) => {
                if let Some(m) = batch.input_mask {
                    for (d, &mv) in ws.dfeat.iter_mut().zip(m) {
                        *d *= mv;
                    }
                }
                c.backward(&ws.x, &ws.dfeat, &mut ws.cnn, g, Some(&mut ws.dx));
            }
            _ => {
                return Err(NnError::Shape(
                    "the gradient container belongs to another encoder".to_string(),
                ))
            }
        }
        Ok(loss.to_f64())
    }

    /// Embeds, encodes and applies the output layer: logits in `ws.logits`, the output layer's
    /// input in `ws.feat`, the ids and step count actually run in `ws.ids` / `ws.steps`.
    #[inline(always)]
    fn forward(
        &self,
        ids: &[u32],
        steps: usize,
        n: usize,
        input_mask: Option<&[T]>,
        recurrent_mask: Option<&[T]>,
        ws: &mut SeqWorkspace<T>,
    ) {
        let e = self.embedding.dim();
        let k = self.outputs();
        let cnn = matches!(self.encoder, Encoder::Cnn(_));
        // With masking, all-padding steps at either end change no state: skip them.
        let (t0, t1) = if self.mask_zero && !cnn {
            let real = |t: &usize| ids[t * n..(t + 1) * n].iter().any(|&i| i != 0);
            let first = (0..steps).find(real).unwrap_or(steps);
            let last = (first..steps).rev().find(real).map_or(first, |t| t + 1);
            (first, last)
        } else {
            (0, steps)
        };
        let run = t1 - t0;
        ws.steps = run;
        ws.ids.clear();
        if cnn {
            // Batch-major: each window is contiguous.
            for b in 0..n {
                ws.ids.extend((0..steps).map(|t| ids[t * n + b]));
            }
        } else {
            ws.ids.extend_from_slice(&ids[t0 * n..t1 * n]);
        }
        resize(&mut ws.x, run * n * e, T::ZERO);
        self.embedding.forward(&ws.ids, &mut ws.x);
        ws.step_mask.clear();
        if self.mask_zero {
            ws.step_mask.extend(ws.ids.iter().map(|&i| i != 0));
        }
        let masks = SeqMasks {
            input: input_mask,
            recurrent: recurrent_mask,
            steps: self.mask_zero.then_some(ws.step_mask.as_slice()),
        };
        let w = self.encoder.outputs();
        ws.feat.clear();
        match &self.encoder {
            Encoder::Lstm(l) => {
                Recurrent::forward(l, &ws.x, run, n, &masks, &mut ws.lstm);
                ws.feat.extend_from_slice(ws.lstm.last_hidden());
            }
            Encoder::Gru(g) => {
                g.forward_train(&ws.x, run, n, &masks, &mut ws.gru);
                ws.feat.extend_from_slice(ws.gru.last_hidden());
            }
            Encoder::BiLstm(b) => {
                Recurrent::forward(b, &ws.x, run, n, &masks, &mut ws.bilstm);
                ws.feat.extend_from_slice(b.output(&ws.bilstm));
            }
            Encoder::Cnn(c) => {
                ws.pad.clear();
                ws.pad.extend(ws.ids.iter().map(|&i| i == 0));
                c.forward(&ws.x, run, n, Some(&ws.pad), &mut ws.cnn);
                ws.feat.extend_from_slice(ws.cnn.output());
                if let Some(m) = input_mask {
                    for (f, &mv) in ws.feat.iter_mut().zip(m) {
                        *f *= mv;
                    }
                }
            }
        }
        debug_assert_eq!(ws.feat.len(), n * w);
        resize(&mut ws.logits, n * k, T::ZERO);
        self.dense.forward(&ws.feat, n, &mut ws.logits);
    }

    /// For an unmasked GRU network: the states after `0..=steps` padding tokens (id 0), for
    /// [`SeqNet::predict_pre_padded`]; `None` for other encoders (masked networks skip padding
    /// anyway). Recompute whenever the weights change.
    pub fn pad_states(&self, steps: usize) -> Option<SeqPadStates<T>> {
        let Encoder::Gru(g) = &self.encoder else {
            return None;
        };
        if self.mask_zero || self.embedding.vocab() == 0 {
            return None;
        }
        let mut x = vec![T::ZERO; self.embedding.dim()];
        self.embedding.forward(&[0], &mut x);
        Some(SeqPadStates {
            steps,
            h: g.constant_input_states(&x, steps),
        })
    }

    /// Logits (`[seqs.len(), outputs]`, into `out`) of sequences pre-padded to `pads.steps`
    /// tokens (each at most that long, already truncated): every sequence starts from the
    /// stored padding state, so no time is spent on padding. Equal to
    /// [`SeqNet::predict_padded`] on the padded input.
    pub fn predict_pre_padded(
        &self,
        seqs: &[&[u32]],
        pads: &SeqPadStates<T>,
        ws: &mut SeqWorkspace<T>,
        out: &mut [T],
    ) -> Result<(), NnError> {
        let k = self.outputs();
        let Encoder::Gru(_) = &self.encoder else {
            return Err(NnError::Shape(
                "padding states exist for GRU networks only".to_string(),
            ));
        };
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
        crate::multiversion!(self.pre_padded_inner(seqs, pads, ws, out) as pre_padded_avx2);
        Ok(())
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn pre_padded_avx2(
        &self,
        seqs: &[&[u32]],
        pads: &SeqPadStates<T>,
        ws: &mut SeqWorkspace<T>,
        out: &mut [T],
    ) {
        self.pre_padded_inner(seqs, pads, ws, out)
    }

    #[inline(always)]
    fn pre_padded_inner(
        &self,
        seqs: &[&[u32]],
        pads: &SeqPadStates<T>,
        ws: &mut SeqWorkspace<T>,
        out: &mut [T],
    ) {
        let Encoder::Gru(gru) = &self.encoder else {
            return;
        };
        let n = seqs.len();
        let (e, h, k) = (self.embedding.dim(), gru.hidden(), self.outputs());
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
        resize(&mut ws.state, n * h, T::ZERO);
        for (r, &i) in ws.order.iter().enumerate() {
            let p = pads.steps - seqs[i].len();
            ws.state[r * h..(r + 1) * h].copy_from_slice(&pads.h[p * h..(p + 1) * h]);
        }
        gru.forward_packed(&ws.x, &ws.active, &mut ws.state, &mut ws.feat, &mut ws.rec);
        resize(&mut ws.sorted, n * k, T::ZERO);
        self.dense.forward(&ws.state, n, &mut ws.sorted);
        for (r, &i) in ws.order.iter().enumerate() {
            out[i * k..(i + 1) * k].copy_from_slice(&ws.sorted[r * k..(r + 1) * k]);
        }
    }

    /// Logits (`[batch, outputs]`, into `out`) of a padded, time-major `[steps, batch]` id
    /// matrix, without dropout.
    pub fn predict_padded(
        &self,
        ids: &[u32],
        steps: usize,
        batch: usize,
        ws: &mut SeqWorkspace<T>,
        out: &mut [T],
    ) -> Result<(), NnError> {
        let k = self.outputs();
        if out.len() != batch * k {
            return Err(NnError::Shape(format!(
                "output buffer holds {} values, need {}",
                out.len(),
                batch * k
            )));
        }
        self.check(ids, steps, batch)?;
        crate::multiversion!(self.predict_inner(ids, steps, batch, ws) as predict_avx2);
        out.copy_from_slice(&ws.logits);
        Ok(())
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn predict_avx2(
        &self,
        ids: &[u32],
        steps: usize,
        batch: usize,
        ws: &mut SeqWorkspace<T>,
    ) {
        self.predict_inner(ids, steps, batch, ws)
    }

    #[inline(always)]
    fn predict_inner(&self, ids: &[u32], steps: usize, batch: usize, ws: &mut SeqWorkspace<T>) {
        self.forward(ids, steps, batch, None, None, ws)
    }
}

impl<T: Real> Parameters<T> for SeqNet<T> {
    fn tensors(&self) -> Vec<(String, &Tensor<T>)> {
        let mut v = self.embedding.tensors();
        v.extend(self.encoder.tensors());
        v.extend(self.dense.tensors());
        v
    }
    fn tensors_mut(&mut self) -> Vec<&mut Tensor<T>> {
        let mut v = self.embedding.tensors_mut();
        v.extend(self.encoder.tensors_mut());
        v.extend(self.dense.tensors_mut());
        v
    }
}
