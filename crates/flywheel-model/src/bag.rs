//! The fastText-style family (`--model fasttext`): a text's features (its words, the hashed
//! word n-grams and character n-grams of its tokens, and an end-of-text marker) and the
//! training loop (SGD one example at a time, learning rate decaying linearly to zero).
//!
//! Rows of the embedding table: 0 is the end-of-text marker (fastText's `</s>`, present in
//! every text), `1..=words` the tokenizer's words, then one row per hash bucket that occurs in
//! the training data, in order of first occurrence. Buckets never seen in training have no row
//! and are skipped (fastText keeps a randomly initialised row for every bucket, which only adds
//! noise for unseen n-grams and costs `buckets × dim` floats of memory and file size).

use std::collections::HashMap;
use std::time::Instant;

use flywheel_data::Record;
use flywheel_nn::simd::{flush_denormals_on_this_thread, FlushDenormals};
use flywheel_nn::{
    apply_inputs_sharded, BagLoss, BagModel, BagScratch, BagTarget, BagUpdate, HuffmanTree, Rng,
};
use flywheel_text::{ngrams, KerasTokenizer};
use rayon::prelude::*;

use crate::evaluate::report_from_outputs;
use crate::pipeline::{task_outputs, Network, Pipeline};
use crate::spec::{BagLossChoice, BagSpec, ModelSpec, TrainConfig};
use crate::task::{LabelSet, Targets, Task};
use crate::train::{training_rows, EpochRecord, TrainEvent, TrainOutcome};
use crate::ModelError;

/// Examples per data-parallel round: their hidden vectors are computed against the same input
/// rows, then the output layer is stepped example by example, then the feature rows are
/// updated in example order, so results do not depend on the number of threads (fastText's
/// lock-free threads read input rows that are a few updates old in the same way).
pub const ROUND: usize = 16;

/// Feature-row updates (features × dim) a round needs before it is split among threads.
const PARALLEL_WORK: usize = 200_000;

/// fastText's end-of-line token, whose hash takes part in word n-grams.
const EOS: &str = "</s>";

/// Turns tokens into embedding rows.
#[derive(Debug, Clone, PartialEq)]
pub struct BagFeaturizer {
    spec: BagSpec,
    /// Rows before the bucket rows: the marker and the words.
    base: u32,
    /// Bucket of each bucket row (`row - base`).
    buckets: Vec<u32>,
    rows_of: HashMap<u32, u32>,
}

impl BagFeaturizer {
    /// A featurizer for a tokenizer with `words` words and no buckets yet.
    pub fn new(spec: BagSpec, words: usize) -> Self {
        BagFeaturizer {
            spec,
            base: words as u32 + 1,
            buckets: Vec::new(),
            rows_of: HashMap::new(),
        }
    }

    /// Rebuilds a featurizer from its saved bucket list.
    pub fn with_buckets(spec: BagSpec, words: usize, buckets: Vec<u32>) -> Self {
        let base = words as u32 + 1;
        let rows_of = buckets
            .iter()
            .enumerate()
            .map(|(i, &b)| (b, base + i as u32))
            .collect();
        BagFeaturizer {
            spec,
            base,
            buckets,
            rows_of,
        }
    }

    /// Number of embedding rows.
    pub fn rows(&self) -> usize {
        self.base as usize + self.buckets.len()
    }

    /// The hash bucket of each bucket row, in row order.
    pub fn bucket_list(&self) -> &[u32] {
        &self.buckets
    }

    /// Rows of a text's tokens, appended to `out`, adding rows for buckets not seen before
    /// (fitting).
    pub fn fit_tokens(&mut self, tokenizer: &KerasTokenizer, tokens: &[&str], out: &mut Vec<u32>) {
        let (base, rows_of, list) = (self.base, &mut self.rows_of, &mut self.buckets);
        featurize(&self.spec, tokenizer, tokens, out, |b| {
            Some(*rows_of.entry(b).or_insert_with(|| {
                list.push(b);
                base + list.len() as u32 - 1
            }))
        });
    }

    /// Drops the bucket rows that `keep` rejects and renumbers the others in order (word rows
    /// stay); returns each old row's new row, `None` where it was dropped.
    pub(crate) fn retain_buckets(&mut self, mut keep: impl FnMut(u32) -> bool) -> Vec<Option<u32>> {
        let base = self.base;
        let mut map: Vec<Option<u32>> = (0..base).map(Some).collect();
        let mut kept = Vec::new();
        for (i, &b) in self.buckets.iter().enumerate() {
            let row = base + i as u32;
            match keep(row) {
                true => {
                    map.push(Some(base + kept.len() as u32));
                    kept.push(b);
                }
                false => map.push(None),
            }
        }
        *self = BagFeaturizer::with_buckets(self.spec.clone(), base as usize - 1, kept);
        map
    }

    /// Rows of already-cut tokens (buckets not seen in training are skipped).
    pub fn encode_tokens(&self, tokenizer: &KerasTokenizer, tokens: &[&str], out: &mut Vec<u32>) {
        featurize(&self.spec, tokenizer, tokens, out, |b| {
            self.rows_of.get(&b).copied()
        });
    }

    /// Rows of a text.
    pub fn encode_into(&self, tokenizer: &KerasTokenizer, text: &str, out: &mut Vec<u32>) {
        let mut buf = String::new();
        let tokens = cut(tokenizer, text, &mut buf);
        self.encode_tokens(tokenizer, &tokens, out);
    }
}

/// The tokens of `text`, kept in one buffer (no allocation per token).
fn cut<'a>(tokenizer: &KerasTokenizer, text: &str, buf: &'a mut String) -> Vec<&'a str> {
    buf.clear();
    let mut ends = Vec::new();
    tokenizer.for_each_token(text, |t| {
        buf.push_str(t);
        ends.push(buf.len());
    });
    let buf: &'a String = buf;
    let mut start = 0;
    ends.into_iter()
        .map(|end| {
            let t = &buf[start..end];
            start = end;
            t
        })
        .collect()
}

/// Word rows, character n-gram buckets, the end marker and word n-gram buckets of `tokens`,
/// in fastText's order; `row_of` maps a bucket to its row (or skips it).
fn featurize(
    spec: &BagSpec,
    tokenizer: &KerasTokenizer,
    tokens: &[&str],
    out: &mut Vec<u32>,
    mut row_of: impl FnMut(u32) -> Option<u32>,
) {
    let start = out.len();
    let buckets = spec.buckets as u64;
    let mut push = |b: u64, out: &mut Vec<u32>| {
        if let Some(r) = row_of(b as u32) {
            out.push(r);
        }
    };
    let mut hashes = Vec::with_capacity(tokens.len() + 1);
    for t in tokens {
        if let Some(id) = tokenizer.word_index(t) {
            out.push(id);
        }
        if spec.maxn > 0 {
            ngrams::char_ngrams(t, spec.minn, spec.maxn, buckets, |b| push(b, out));
        }
        if spec.word_ngrams > 1 {
            hashes.push(ngrams::hash(t));
        }
    }
    out.push(0);
    if spec.word_ngrams > 1 {
        hashes.push(ngrams::hash(EOS));
        ngrams::word_ngrams(&hashes, spec.word_ngrams, buckets, |b| push(b, out));
    }
    // The model's mean is order-free; sorted rows make repeats runs (one read and one update
    // per distinct row) and the memory accesses monotone.
    out[start..].sort_unstable();
}

/// The fastText-style network: featurizer and model.
#[derive(Debug, Clone, PartialEq)]
pub struct BagNet {
    /// Tokens to rows.
    pub featurizer: BagFeaturizer,
    /// Embedding bag and output layer.
    pub model: BagModel,
}

impl BagNet {
    /// Outputs of one example for the task (`[labels.outputs()]`): binary models with a
    /// softmax or tree over both classes report the second class's probability.
    pub fn outputs_into(
        &self,
        features: &[u32],
        task: Task,
        scratch: &mut BagScratch,
        probs: &mut Vec<f32>,
        out: &mut [f32],
    ) -> Result<(), ModelError> {
        probs.clear();
        probs.resize(self.model.outputs(), 0.0);
        self.model.predict(features, scratch, probs)?;
        task_outputs(task, probs, out);
        Ok(())
    }
}

/// The engine loss for a task and the requested loss.
pub fn bag_loss(
    choice: BagLossChoice,
    task: Task,
    class_counts: &[u64],
) -> Result<BagLoss, ModelError> {
    Ok(match (task, choice) {
        (Task::Regression, BagLossChoice::Auto) => BagLoss::Mse,
        (Task::Regression, c) => {
            return Err(ModelError::Invalid(
                format!("--loss {c:?} does not apply to regression (it uses squared error)")
                    .to_lowercase(),
            ))
        }
        (Task::Multilabel, BagLossChoice::Auto | BagLossChoice::Ova) => BagLoss::OneVsAll,
        (Task::Multilabel, _) => {
            return Err(ModelError::Invalid(
                "a multi-label model needs --loss ova (one sigmoid per label)".into(),
            ))
        }
        (_, BagLossChoice::Auto | BagLossChoice::Softmax) => BagLoss::Softmax,
        (_, BagLossChoice::Ova) => BagLoss::OneVsAll,
        (_, BagLossChoice::Hs) => BagLoss::Hierarchical(HuffmanTree::new(class_counts)),
    })
}

/// Feature rows of many texts, stored flat, with each text's token count (the marker
/// included), which fastText's learning-rate schedule counts.
pub(crate) struct Rows {
    rows: Vec<u32>,
    offsets: Vec<usize>,
    tokens: Vec<u32>,
}

impl Rows {
    /// The rows of `texts`; the first `n_train` add their new buckets to `featurizer`, the
    /// others only look theirs up.
    pub(crate) fn featurize(
        tokenizer: &KerasTokenizer,
        featurizer: &mut BagFeaturizer,
        texts: &[&str],
        n_train: usize,
    ) -> Rows {
        let mut all = Rows {
            rows: Vec::new(),
            offsets: vec![0],
            tokens: Vec::with_capacity(texts.len()),
        };
        let mut buf = String::new();
        for (i, t) in texts.iter().enumerate() {
            let refs = cut(tokenizer, t, &mut buf);
            if i < n_train {
                featurizer.fit_tokens(tokenizer, &refs, &mut all.rows);
            } else {
                featurizer.encode_tokens(tokenizer, &refs, &mut all.rows);
            }
            all.offsets.push(all.rows.len());
            all.tokens.push(refs.len() as u32 + 1);
        }
        all
    }

    /// Renumbers every row by `map` (monotone, so each text stays sorted), dropping the rows
    /// it maps to `None`.
    pub(crate) fn remap(&mut self, map: &[Option<u32>]) {
        let mut rows = Vec::with_capacity(self.rows.len());
        let mut offsets = Vec::with_capacity(self.offsets.len());
        offsets.push(0);
        for i in 0..self.offsets.len() - 1 {
            rows.extend(
                self.get(i)
                    .iter()
                    .filter_map(|&r| map.get(r as usize).copied().flatten()),
            );
            offsets.push(rows.len());
        }
        self.rows = rows;
        self.offsets = offsets;
    }

    /// Text `i`'s rows (sorted).
    pub(crate) fn get(&self, i: usize) -> &[u32] {
        &self.rows[self.offsets[i]..self.offsets[i + 1]]
    }
}

/// Trains the fastText-style model (called by [`crate::train`] for `fasttext` specs).
pub(crate) fn train_bag(
    records: &[Record],
    source: &str,
    labels: LabelSet,
    targets: Targets,
    spec: &ModelSpec,
    cfg: &TrainConfig,
    on_event: &mut dyn FnMut(TrainEvent<'_>),
) -> Result<TrainOutcome, ModelError> {
    let texts: Vec<&str> = records.iter().map(|r| r.text.as_str()).collect();
    let mut tokenizer = KerasTokenizer::new(spec.tokenizer.clone())?;
    let n = records.len();
    let n_train = training_rows(n, cfg, source)?;
    let n_val = n - n_train;
    // The vocabulary and the buckets come from the training rows only.
    tokenizer.fit(&texts[..n_train]);
    let mut featurizer = BagFeaturizer::new(spec.bag.clone(), tokenizer.words().len());
    let all = Rows::featurize(&tokenizer, &mut featurizer, &texts, n_train);
    let k = labels.outputs();
    let class_counts: Vec<u64> = match &targets {
        Targets::Classes(c) => {
            let mut counts = vec![0u64; labels.labels.len()];
            for &y in &c[..n_train] {
                counts[y as usize] += 1;
            }
            counts
        }
        Targets::Values(v) if labels.task == Task::Binary => {
            let ones = v[..n_train].iter().filter(|&&y| y > 0.5).count() as u64;
            vec![n_train as u64 - ones, ones]
        }
        Targets::Values(_) => Vec::new(),
    };
    let loss = bag_loss(spec.bag.loss, labels.task, &class_counts)?;
    let model_outputs = match (&loss, labels.task) {
        (BagLoss::Softmax | BagLoss::Hierarchical(_), Task::Binary) => 2,
        _ => k,
    };
    let mut init_rng = Rng::with_stream(cfg.seed, 0);
    let model = BagModel::new(
        featurizer.rows(),
        spec.embed_dim,
        model_outputs,
        loss,
        &mut init_rng,
    );
    let net = BagNet { featurizer, model };
    let mut pipeline = Pipeline::new(spec.clone(), labels.clone(), tokenizer, Network::Bag(net))?;
    let lr0 = cfg.lr.unwrap_or(0.1) as f32;
    if !(lr0.is_finite() && lr0 > 0.0) {
        return Err(ModelError::Invalid("--lr must be a positive number".into()));
    }
    on_event(TrainEvent::Start {
        train_rows: n_train,
        val_rows: n_val,
        batches: n_train,
        epochs: cfg.epochs,
        parameters: pipeline.num_parameters(),
        task: labels.task,
        labels: &labels.labels,
        vocab: pipeline.tokenizer().vocab_size(),
    });
    // Per-example targets for the engine: a class, or `kk` values.
    let one_hot = matches!(
        (labels.task, &pipeline.bag()?.model.loss),
        (Task::Multiclass, BagLoss::OneVsAll)
    );
    let (classes, values, kk): (Vec<u32>, Vec<f32>, usize) = match &targets {
        Targets::Classes(c) if one_hot => {
            let mut v = vec![0.0f32; c.len() * k];
            for (i, &y) in c.iter().enumerate() {
                v[i * k + y as usize] = 1.0;
            }
            (Vec::new(), v, k)
        }
        Targets::Classes(c) => (c.clone(), Vec::new(), 0),
        Targets::Values(v) if model_outputs == 2 && labels.task == Task::Binary => (
            v.iter().map(|&y| u32::from(y > 0.5)).collect(),
            Vec::new(),
            0,
        ),
        Targets::Values(v) => (Vec::new(), v.clone(), k),
    };
    let target_of = |i: usize| -> BagTarget<'_> {
        if kk == 0 {
            BagTarget::Class(classes[i])
        } else {
            BagTarget::Values(&values[i * kk..(i + 1) * kk])
        }
    };
    let _flush = FlushDenormals::new();
    // One thread: no pool at all. Several: this thread is one of the pool's workers, so the
    // two parallel phases of each round start without handing work to another thread.
    let pool = match cfg.threads {
        0 | 1 => None,
        t => {
            let builder = || {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(t)
                    .start_handler(|_| flush_denormals_on_this_thread())
            };
            let pool = builder()
                .use_current_thread()
                .build()
                .or_else(|_| builder().build())
                .map_err(|e| ModelError::Invalid(format!("cannot start {t} threads: {e}")))?;
            Some(pool)
        }
    };
    let install = |f: &mut (dyn FnMut() -> Result<(), ModelError> + Send)| match &pool {
        Some(p) => p.install(f),
        None => f(),
    };
    let total_tokens: f64 = all.tokens[..n_train]
        .iter()
        .map(|&t| f64::from(t))
        .sum::<f64>()
        * cfg.epochs as f64;
    let mut processed = 0f64;
    let mut order: Vec<usize> = (0..n_train).collect();
    let mut shuffle_rng = Rng::with_stream(cfg.seed, 1);
    let parts = cfg.threads.max(1);
    let mut updates: Vec<BagUpdate> = vec![BagUpdate::default(); ROUND];
    let mut scratch = BagScratch::default();
    let mut lrs = vec![0.0f32; ROUND];
    let mut history = Vec::new();
    let report_every = (n_train / 100).max(ROUND);
    for epoch in 1..=cfg.epochs {
        let started = Instant::now();
        shuffle_rng.shuffle(&mut order);
        let (mut loss_sum, mut correct, mut scored) = (0.0f64, 0.0f64, 0usize);
        let mut done = 0usize;
        let mut next_report = report_every;
        let model = &mut pipeline.bag_mut()?.model;
        for round in order.chunks(ROUND) {
            let b = round.len();
            // Short rounds run on this thread alone: splitting them costs more than it saves,
            // and a round's result is the same however it is split.
            let work_size: usize = round.iter().map(|&i| all.get(i).len()).sum();
            let parts = if work_size * model.dim() >= PARALLEL_WORK {
                parts
            } else {
                1
            };
            for (lr, &i) in lrs.iter_mut().zip(round) {
                *lr = lr0 * (1.0 - (processed / total_tokens) as f32).max(0.0);
                processed += f64::from(all.tokens[i]);
            }
            // Phase 1: the hidden vectors of the round, against the same input rows.
            let per = b.div_ceil(parts);
            let hidden = |(c, ups): (usize, &mut [BagUpdate])| {
                for (j, upd) in ups.iter_mut().enumerate() {
                    model.hidden(all.get(round[c * per + j]), upd)?;
                }
                Ok::<(), ModelError>(())
            };
            if parts == 1 || b < 2 {
                hidden((0, &mut updates[..b]))?;
            } else {
                install(&mut || {
                    updates[..b]
                        .par_chunks_mut(per)
                        .enumerate()
                        .try_for_each(hidden)
                })?;
            }
            // Phase 2: the output layer, example by example (cheap).
            for ((upd, &i), &lr) in updates[..b].iter_mut().zip(round).zip(&lrs) {
                let n = all.get(i).len();
                model.output_step(n, target_of(i), lr, &mut scratch, upd)?;
                loss_sum += f64::from(upd.loss);
                if let Some(c) = upd.correct {
                    correct += f64::from(c);
                    scored += 1;
                }
            }
            // Phase 3: the feature rows, in example order, split among threads by row.
            let dim = model.dim();
            let work: Vec<(&[u32], &BagUpdate)> = round
                .iter()
                .zip(&updates[..b])
                .map(|(&i, u)| (all.get(i), u))
                .collect();
            let input = model.input.data_mut();
            if parts == 1 {
                apply_inputs_sharded(input, dim, &work, 1);
            } else {
                install(&mut || {
                    apply_inputs_sharded(input, dim, &work, parts);
                    Ok(())
                })?;
            }
            done += b;
            if done >= next_report || done == n_train {
                next_report += report_every;
                on_event(TrainEvent::Batch {
                    epoch,
                    done,
                    batches: n_train,
                    loss: loss_sum / done as f64,
                });
            }
        }
        let (val_loss, val_accuracy) = if n_val > 0 {
            let outputs = outputs_of_rows(&pipeline, &all, n_train..n)?;
            let vt = targets.slice(n_train..n, k);
            let r = report_from_outputs(&labels, &outputs, &vt)?;
            (Some(mean_nll(&labels, &outputs, &vt)), r.accuracy())
        } else {
            (None, None)
        };
        let record = EpochRecord {
            epoch,
            loss: loss_sum / n_train as f64,
            accuracy: (scored > 0).then(|| correct / scored as f64),
            val_loss,
            val_accuracy,
        };
        on_event(TrainEvent::Epoch {
            record: &record,
            seconds: started.elapsed().as_secs_f64(),
        });
        history.push(record);
    }
    let validation = if n_val > 0 {
        let outputs = outputs_of_rows(&pipeline, &all, n_train..n)?;
        Some(report_from_outputs(
            &labels,
            &outputs,
            &targets.slice(n_train..n, k),
        )?)
    } else {
        None
    };
    Ok(TrainOutcome {
        pipeline,
        history,
        best_epoch: None,
        stopped_early: false,
        train_rows: n_train,
        val_rows: n_val,
        validation,
        class_counts: match spec.bag.loss {
            BagLossChoice::Hs => class_counts,
            _ => Vec::new(),
        },
        solver_evaluations: None,
    })
}

fn outputs_of_rows(
    pipeline: &Pipeline,
    all: &Rows,
    range: std::ops::Range<usize>,
) -> Result<Vec<f32>, ModelError> {
    let seqs: Vec<&[u32]> = range.map(|i| all.get(i)).collect();
    pipeline.outputs_par(&seqs)
}

/// Mean negative log-likelihood (cross-entropy) of outputs, or mean squared error.
fn mean_nll(labels: &LabelSet, outputs: &[f32], targets: &Targets) -> f64 {
    let k = labels.outputs().max(1);
    let n = (outputs.len() / k).max(1);
    let ln = |p: f32| -f64::from(p.clamp(1e-7, 1.0)).ln();
    let total: f64 = match (labels.task, targets) {
        (Task::Multiclass, Targets::Classes(c)) => outputs
            .chunks_exact(k)
            .zip(c)
            .map(|(row, &y)| ln(row[y as usize]))
            .sum(),
        (Task::Regression, Targets::Values(v)) => outputs
            .iter()
            .zip(v)
            .map(|(&p, &y)| f64::from(p - y).powi(2))
            .sum(),
        (_, Targets::Values(v)) => {
            outputs
                .iter()
                .zip(v)
                .map(|(&p, &y)| if y > 0.5 { ln(p) } else { ln(1.0 - p) })
                .sum::<f64>()
                / k as f64
        }
        _ => 0.0,
    };
    total / n as f64
}
