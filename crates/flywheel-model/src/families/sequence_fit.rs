//! The epoch loop of the sequence families: Keras's `fit` (validation split = the last rows
//! before shuffling, per-epoch shuffling, mini-batches, Adam/SGD/GD, per-epoch validation,
//! early stopping), run data-parallel over each batch on a fixed number of threads, generic
//! over [`SeqModel`] (the reference [`TextRnn`] and the [`SeqNet`] of the other families). The
//! same seed and thread count give bit-identical weights.

use std::time::Instant;

use flywheel_nn::layers::dropout::fill_mask;
use flywheel_nn::simd::{flush_denormals_on_this_thread, FlushDenormals};
use flywheel_nn::{
    EmbeddingGrad, NnError, Optimizer, Rng, RnnGrads, SeqBatch, SeqGrads, SeqNet, SeqWorkspace,
    Targets as NnTargets, TextRnn, TrainBatch, Workspace,
};
use flywheel_text::Side;
use rayon::prelude::*;

use super::sequence_net::{logits_par, RnnNet, SeqModelNet};
use crate::metrics::argmax;
use crate::outcome::{training_rows, EpochRecord, TrainEvent, TrainOutcome};
use crate::pipeline::{Encoded, Pipeline};
use crate::report::report_from_outputs;
use crate::spec::{ModelSpec, OptimizerChoice, TrainConfig};
use crate::task::{LabelSet, Targets, Task};
use crate::ModelError;

/// Per-thread state of a data-parallel batch.
struct Chunk<N: SeqModel> {
    ids: Vec<u32>,
    values: Vec<f32>,
    classes: Vec<u32>,
    ws: N::Ws,
    grads: Option<N::Grads>,
    loss: f64,
    correct: f64,
}

impl<N: SeqModel> Default for Chunk<N> {
    fn default() -> Self {
        Chunk {
            ids: Vec::new(),
            values: Vec::new(),
            classes: Vec::new(),
            ws: N::Ws::default(),
            grads: None,
            loss: 0.0,
            correct: 0.0,
        }
    }
}

/// How a sequence network's dropout masks are laid out per sequence.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MaskLayout {
    /// Input mask values per sequence: `groups × gates × width`.
    input: usize,
    /// Width of one gate's input mask.
    width: usize,
    /// Gates per group (a group shares one mask when recurrent dropout is off).
    gates: usize,
    /// Recurrent mask values per sequence.
    recurrent: usize,
}

/// What the training loop needs of a sequence network: the reference [`TextRnn`] and the
/// [`SeqNet`] of the other families train through the same loop.
pub(crate) trait SeqModel: Clone + Send + Sync + Sized {
    type Grads: Send + Sync;
    type Ws: Default + Send;
    fn of(p: &Pipeline) -> Result<&Self, ModelError>;
    fn of_mut(p: &mut Pipeline) -> Result<&mut Self, ModelError>;
    fn zero_grads(&self) -> Self::Grads;
    fn clear(g: &mut Self::Grads);
    fn add(total: &mut Self::Grads, g: &Self::Grads);
    fn embedding_grad(&self) -> EmbeddingGrad<f32>;
    fn masks(&self) -> MaskLayout;
    #[allow(clippy::too_many_arguments)]
    fn train(
        &self,
        ids: &[u32],
        steps: usize,
        batch: usize,
        in_mask: Option<&[f32]>,
        rec_mask: Option<&[f32]>,
        targets: NnTargets<'_>,
        scale: f32,
        ws: &mut Self::Ws,
        grads: &mut Self::Grads,
    ) -> Result<f64, NnError>;
    fn embedding_rows(ws: &Self::Ws) -> (&[u32], &[f32]);
    fn logits(ws: &Self::Ws) -> &[f32];
    fn update(
        &mut self,
        opt: &mut Optimizer<f32>,
        grads: &Self::Grads,
        emb: &EmbeddingGrad<f32>,
    ) -> Result<(), NnError>;
}

impl SeqModel for TextRnn<f32> {
    type Grads = RnnGrads<f32>;
    type Ws = Workspace<f32>;
    fn of(p: &Pipeline) -> Result<&Self, ModelError> {
        Ok(&p.net::<RnnNet>()?.net)
    }
    fn of_mut(p: &mut Pipeline) -> Result<&mut Self, ModelError> {
        Ok(&mut p.net_mut::<RnnNet>()?.net)
    }
    fn zero_grads(&self) -> Self::Grads {
        TextRnn::zero_grads(self)
    }
    fn clear(g: &mut Self::Grads) {
        g.clear()
    }
    fn add(total: &mut Self::Grads, g: &Self::Grads) {
        total.add(g)
    }
    fn embedding_grad(&self) -> EmbeddingGrad<f32> {
        TextRnn::embedding_grad(self)
    }
    fn masks(&self) -> MaskLayout {
        let (e, h) = (self.embedding.dim(), self.lstm.hidden());
        MaskLayout {
            input: 4 * e,
            width: e,
            gates: 4,
            recurrent: 4 * h,
        }
    }
    fn train(
        &self,
        ids: &[u32],
        steps: usize,
        batch: usize,
        in_mask: Option<&[f32]>,
        rec_mask: Option<&[f32]>,
        targets: NnTargets<'_>,
        scale: f32,
        ws: &mut Self::Ws,
        grads: &mut Self::Grads,
    ) -> Result<f64, NnError> {
        let b = TrainBatch {
            ids,
            steps,
            batch,
            input_mask: in_mask,
            recurrent_mask: rec_mask,
            targets,
            scale,
        };
        self.train_batch(&b, ws, grads)
    }
    fn embedding_rows(ws: &Self::Ws) -> (&[u32], &[f32]) {
        ws.embedding_grad()
    }
    fn logits(ws: &Self::Ws) -> &[f32] {
        ws.logits()
    }
    fn update(
        &mut self,
        opt: &mut Optimizer<f32>,
        grads: &Self::Grads,
        emb: &EmbeddingGrad<f32>,
    ) -> Result<(), NnError> {
        self.apply_update(opt, grads, emb)
    }
}

impl SeqModel for SeqNet<f32> {
    type Grads = SeqGrads<f32>;
    type Ws = SeqWorkspace<f32>;
    fn of(p: &Pipeline) -> Result<&Self, ModelError> {
        Ok(&p.net::<SeqModelNet>()?.net)
    }
    fn of_mut(p: &mut Pipeline) -> Result<&mut Self, ModelError> {
        Ok(&mut p.net_mut::<SeqModelNet>()?.net)
    }
    fn zero_grads(&self) -> Self::Grads {
        SeqNet::zero_grads(self)
    }
    fn clear(g: &mut Self::Grads) {
        g.clear()
    }
    fn add(total: &mut Self::Grads, g: &Self::Grads) {
        total.add(g)
    }
    fn embedding_grad(&self) -> EmbeddingGrad<f32> {
        SeqNet::embedding_grad(self)
    }
    fn masks(&self) -> MaskLayout {
        let input = self.encoder.input_mask_len();
        let gates = self.encoder.gates();
        let width = match &self.encoder {
            flywheel_nn::Encoder::Cnn(c) => c.outputs(),
            _ => self.embedding.dim(),
        };
        MaskLayout {
            input,
            width,
            gates,
            recurrent: self.encoder.recurrent_mask_len(),
        }
    }
    fn train(
        &self,
        ids: &[u32],
        steps: usize,
        batch: usize,
        in_mask: Option<&[f32]>,
        rec_mask: Option<&[f32]>,
        targets: NnTargets<'_>,
        scale: f32,
        ws: &mut Self::Ws,
        grads: &mut Self::Grads,
    ) -> Result<f64, NnError> {
        let b = SeqBatch {
            ids,
            steps,
            batch,
            input_mask: in_mask,
            recurrent_mask: rec_mask,
            targets,
            scale,
        };
        self.train_batch(&b, ws, grads)
    }
    fn embedding_rows(ws: &Self::Ws) -> (&[u32], &[f32]) {
        ws.embedding_grad()
    }
    fn logits(ws: &Self::Ws) -> &[f32] {
        ws.logits()
    }
    fn update(
        &mut self,
        opt: &mut Optimizer<f32>,
        grads: &Self::Grads,
        emb: &EmbeddingGrad<f32>,
    ) -> Result<(), NnError> {
        self.apply_update(opt, grads, emb)
    }
}

/// The epoch loop of the sequence families, generic over the network type.
#[allow(clippy::too_many_arguments)]
pub(crate) fn fit<N: SeqModel>(
    mut pipeline: Pipeline,
    encoded: &Encoded,
    targets: &Targets,
    labels: &LabelSet,
    spec: &ModelSpec,
    cfg: &TrainConfig,
    source: &str,
    on_event: &mut dyn FnMut(TrainEvent<'_>),
) -> Result<TrainOutcome, ModelError> {
    let n = encoded.len();
    let n_train = training_rows(n, cfg, source)?;
    let n_val = n - n_train;
    let batch_size = match cfg.optimizer {
        OptimizerChoice::Gd => n_train,
        _ => cfg.batch_size.min(n_train),
    };
    let batches = n_train.div_ceil(batch_size);
    let _flush = FlushDenormals::new();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(cfg.threads)
        .start_handler(|_| flush_denormals_on_this_thread())
        .build()
        .map_err(|source| ModelError::Threads {
            threads: cfg.threads,
            source,
        })?;
    on_event(TrainEvent::Start {
        train_rows: n_train,
        val_rows: n_val,
        batches,
        epochs: cfg.epochs,
        parameters: pipeline.num_parameters(),
        task: labels.task,
        labels: &labels.labels,
        vocab: pipeline.tokenizer().vocab_size(),
    });

    let k = labels.outputs();
    let layout = N::of(&pipeline)?.masks();
    let (mi, mr) = (layout.input, layout.recurrent);
    let steps = spec.max_len;
    let mut opt = Optimizer::new(cfg.optimizer_kind());
    let mut shuffle_rng = Rng::with_stream(cfg.seed, 1);
    let mut dropout_rng = Rng::with_stream(cfg.seed, 2);
    let mut order: Vec<usize> = (0..n_train).collect();
    let mut chunks: Vec<Chunk<N>> = (0..cfg.threads).map(|_| Chunk::default()).collect();
    let mut total = N::of(&pipeline)?.zero_grads();
    let mut emb_grad = N::of(&pipeline)?.embedding_grad();
    let mut in_mask = vec![0.0f32; batch_size * mi];
    let mut rec_mask = vec![0.0f32; batch_size * mr];
    let val_seqs = encoded.slices(n_train..n);
    let val_targets = targets.slice(n_train..n, k);

    let mut history = Vec::new();
    let mut best: Option<(f64, usize, Option<N>)> = None;
    let mut since_best = 0usize;
    let mut stopped_early = false;
    for epoch in 1..=cfg.epochs {
        let started = Instant::now();
        shuffle_rng.shuffle(&mut order);
        let (mut loss_sum, mut correct, mut seen) = (0.0f64, 0.0f64, 0usize);
        for (bi, idx) in order.chunks(batch_size).enumerate() {
            let bs = idx.len();
            if spec.dropout > 0.0 {
                fill_input_masks(
                    &mut in_mask[..bs * mi],
                    layout.width,
                    layout.gates,
                    spec.dropout,
                    spec.recurrent_dropout > 0.0,
                    &mut dropout_rng,
                );
            }
            if spec.recurrent_dropout > 0.0 && mr > 0 {
                fill_mask(
                    &mut rec_mask[..bs * mr],
                    spec.recurrent_dropout,
                    &mut dropout_rng,
                );
            }
            let in_m = (spec.dropout > 0.0).then_some(&in_mask[..bs * mi]);
            let rec_m = (spec.recurrent_dropout > 0.0 && mr > 0).then_some(&rec_mask[..bs * mr]);
            let parts = cfg.threads.min(bs);
            let net = N::of(&pipeline)?;
            let job = |(c, ch): (usize, &mut Chunk<N>)| -> Result<(), ModelError> {
                let (lo, hi) = (c * bs / parts, (c + 1) * bs / parts);
                run_chunk(
                    net,
                    ch,
                    encoded,
                    &idx[lo..hi],
                    targets,
                    k,
                    steps,
                    spec.padding,
                    in_m.map(|m| &m[lo * mi..hi * mi]),
                    rec_m.map(|m| &m[lo * mr..hi * mr]),
                    1.0 / bs as f32,
                    labels.task,
                )
            };
            if parts == 1 {
                job((0, &mut chunks[0]))?;
            } else {
                pool.install(|| chunks[..parts].par_iter_mut().enumerate().try_for_each(job))?;
            }
            N::clear(&mut total);
            for ch in &chunks[..parts] {
                if let Some(g) = &ch.grads {
                    N::add(&mut total, g);
                }
                let (ids, rows) = N::embedding_rows(&ch.ws);
                emb_grad.accumulate(ids, rows);
                loss_sum += ch.loss;
                correct += ch.correct;
            }
            let net = N::of_mut(&mut pipeline)?;
            pool.install(|| net.update(&mut opt, &total, &emb_grad))?;
            emb_grad.clear();
            seen += bs;
            on_event(TrainEvent::Batch {
                epoch,
                done: bi + 1,
                batches,
                loss: loss_sum / seen as f64,
            });
        }
        pipeline.refresh()?;
        let accuracy = (labels.task != Task::Regression).then(|| correct / seen as f64);
        let (val_loss, val_accuracy) = if n_val > 0 {
            let logits = pool.install(|| logits_par(&pipeline, &val_seqs))?;
            let (l, a) = loss_and_accuracy(&pipeline, &logits, &val_targets, k)?;
            (Some(l), a)
        } else {
            (None, None)
        };
        let record = EpochRecord {
            epoch,
            loss: loss_sum / seen as f64,
            accuracy,
            val_loss,
            val_accuracy,
        };
        on_event(TrainEvent::Epoch {
            record: &record,
            seconds: started.elapsed().as_secs_f64(),
        });
        let monitored = record.val_loss.unwrap_or(record.loss);
        history.push(record);
        if let Some(patience) = cfg.patience {
            let improved = best.as_ref().is_none_or(|b| monitored < b.0);
            if improved {
                let snapshot = match cfg.restore_best {
                    true => Some(N::of(&pipeline)?.clone()),
                    false => None,
                };
                best = Some((monitored, epoch, snapshot));
                since_best = 0;
            } else {
                since_best += 1;
                if since_best >= patience {
                    stopped_early = epoch < cfg.epochs;
                    if stopped_early {
                        on_event(TrainEvent::EarlyStop {
                            epoch,
                            best_epoch: best.as_ref().map_or(epoch, |b| b.1),
                        });
                    }
                    break;
                }
            }
        }
    }
    let mut best_epoch = None;
    if cfg.restore_best {
        if let Some((_, epoch, Some(net))) = best {
            if epoch != history.len() {
                *N::of_mut(&mut pipeline)? = net;
                pipeline.refresh()?;
            }
            best_epoch = Some(epoch);
        }
    }
    let validation = if n_val > 0 {
        let mut outputs = pool.install(|| logits_par(&pipeline, &val_seqs))?;
        pipeline.loss()?.activate(&mut outputs, k);
        Some(report_from_outputs(labels, &outputs, &val_targets)?)
    } else {
        None
    };
    Ok(TrainOutcome {
        pipeline,
        history,
        best_epoch,
        stopped_early,
        train_rows: n_train,
        val_rows: n_val,
        validation,
        class_counts: Vec::new(),
        solver_evaluations: None,
        drift: None,
    })
}

/// Input dropout masks `[groups, gates, width]` as Keras 3's recurrent layers draw them: one
/// per gate when recurrent dropout is on (their "implementation 1"), else one mask per group
/// (sequence and direction) shared by its gates.
fn fill_input_masks(
    mask: &mut [f32],
    width: usize,
    gates: usize,
    rate: f32,
    per_gate: bool,
    rng: &mut Rng,
) {
    if per_gate {
        fill_mask(mask, rate, rng);
        return;
    }
    for row in mask.chunks_exact_mut(gates * width) {
        let (first, rest) = row.split_at_mut(width);
        fill_mask(first, rate, rng);
        for gate in rest.chunks_exact_mut(width) {
            gate.copy_from_slice(first);
        }
    }
}

/// Forward/backward of one thread's share of a batch.
#[allow(clippy::too_many_arguments)]
fn run_chunk<N: SeqModel>(
    net: &N,
    ch: &mut Chunk<N>,
    encoded: &Encoded,
    rows: &[usize],
    targets: &Targets,
    k: usize,
    steps: usize,
    padding: Side,
    in_mask: Option<&[f32]>,
    rec_mask: Option<&[f32]>,
    scale: f32,
    task: Task,
) -> Result<(), ModelError> {
    let cb = rows.len();
    ch.ids.clear();
    ch.ids.resize(steps * cb, 0);
    for (j, &r) in rows.iter().enumerate() {
        let s = encoded.get(r);
        let start = match padding {
            Side::Pre => steps - s.len(),
            Side::Post => 0,
        };
        for (i, &id) in s.iter().enumerate() {
            ch.ids[(start + i) * cb + j] = id;
        }
    }
    let nn_targets = match targets {
        Targets::Classes(all) => {
            ch.classes.clear();
            ch.classes.extend(rows.iter().map(|&r| all[r]));
            NnTargets::Classes(&ch.classes)
        }
        Targets::Values(all) => {
            ch.values.clear();
            for &r in rows {
                ch.values.extend_from_slice(&all[r * k..(r + 1) * k]);
            }
            NnTargets::Values(&ch.values)
        }
    };
    let grads = ch.grads.get_or_insert_with(|| net.zero_grads());
    N::clear(grads);
    ch.loss = net.train(
        &ch.ids, steps, cb, in_mask, rec_mask, nn_targets, scale, &mut ch.ws, grads,
    )?;
    ch.correct = count_correct(N::logits(&ch.ws), nn_targets, k, task);
    Ok(())
}

/// Correct predictions in a batch of logits (fractional for multi-label: per-label accuracy).
fn count_correct(logits: &[f32], targets: NnTargets<'_>, k: usize, task: Task) -> f64 {
    match (task, targets) {
        (Task::Regression, _) => 0.0,
        (Task::Multiclass, NnTargets::Classes(y)) => logits
            .chunks_exact(k)
            .zip(y)
            .filter(|(row, &c)| argmax(row) == c as usize)
            .count() as f64,
        (_, NnTargets::Values(y)) => {
            let hits = logits
                .iter()
                .zip(y)
                .filter(|(&z, &t)| (z > 0.0) == (t > 0.5))
                .count();
            hits as f64 / k as f64
        }
        _ => 0.0,
    }
}

/// Mean loss and accuracy of logits against targets.
fn loss_and_accuracy(
    pipeline: &Pipeline,
    logits: &[f32],
    targets: &Targets,
    k: usize,
) -> Result<(f64, Option<f64>), ModelError> {
    let n = logits.len() / k.max(1);
    if n == 0 {
        return Ok((0.0, None));
    }
    let nn_targets = match targets {
        Targets::Classes(c) => NnTargets::Classes(c),
        Targets::Values(v) => NnTargets::Values(v),
    };
    let mut scratch = vec![0.0f32; logits.len()];
    let loss = pipeline
        .loss()?
        .forward_backward(logits, k, nn_targets, 0.0, &mut scratch)?;
    let task = pipeline.labels.task;
    let acc =
        (task != Task::Regression).then(|| count_correct(logits, nn_targets, k, task) / n as f64);
    Ok((loss as f64 / n as f64, acc))
}
