//! The fastText-style family (`--model fasttext`): the embedding bag of a text's features
//! ([`crate::features`]) and fastText's training (SGD one example at a time, learning rate
//! decaying linearly to zero), run in data-parallel rounds.

use std::time::Instant;

use flywheel_nn::simd::{flush_denormals_on_this_thread, FlushDenormals};
use flywheel_nn::{
    apply_inputs_sharded, BagLoss, BagModel, BagScratch, BagTarget, BagUpdate, HuffmanTree,
    Parameters, Rng, Tensor,
};
use flywheel_text::{KerasTokenizer, PadSpec, Segmentation, TokenizerConfig};
use rayon::prelude::*;

use super::api::{ModelFamily, ReadContext, Setting, TensorFile, TrainInput};
use crate::family::Family;
use crate::features::{BagFeaturizer, Rows};
use crate::network::{
    scratch_of, task_outputs, task_width, Net, NetShape, Network, RawTensor, Scratch,
};
use crate::outcome::{training_rows, EpochRecord, TrainEvent, TrainOutcome};
use crate::pipeline::Pipeline;
use crate::report::report_from_outputs;
use crate::spec::{BagLossChoice, ModelSpec, OptimizerChoice, TrainConfig};
use crate::task::{LabelSet, Targets, Task};
use crate::ModelError;

/// The `fasttext` family.
pub struct FastText;

impl ModelSpec {
    /// fastText's supervised defaults: dim 100, words only, all words kept, Unicode word
    /// segmentation (CJK detected).
    pub fn fasttext() -> Self {
        ModelSpec {
            family: Family::FastText,
            tokenizer: TokenizerConfig {
                num_words: None,
                segmentation: Segmentation::Word,
                ..TokenizerConfig::default()
            },
            embed_dim: 100,
            dropout: 0.0,
            recurrent_dropout: 0.0,
            ..ModelSpec::default()
        }
    }
}

impl ModelFamily for FastText {
    fn family(&self) -> Family {
        Family::FastText
    }

    fn default_spec(&self) -> ModelSpec {
        ModelSpec::fasttext()
    }

    /// fastText's: 5 epochs of SGD at learning rate 0.1, no validation rows.
    fn default_config(&self) -> TrainConfig {
        TrainConfig {
            epochs: 5,
            lr: Some(0.1),
            optimizer: OptimizerChoice::Sgd,
            validation_split: 0.0,
            ..TrainConfig::default()
        }
    }

    fn accepts(&self, setting: Setting) -> bool {
        matches!(
            setting,
            Setting::Epochs | Setting::Ngrams | Setting::BagDim | Setting::BagLoss
        )
    }

    fn uses_ngrams(&self, _spec: &ModelSpec) -> bool {
        true
    }

    fn validate(&self, spec: &ModelSpec) -> Result<(), ModelError> {
        spec.bag.validate()
    }

    fn train(
        &self,
        input: TrainInput<'_>,
        on_event: &mut dyn FnMut(TrainEvent<'_>),
    ) -> Result<TrainOutcome, ModelError> {
        train_bag(input, on_event)
    }

    fn read(&self, file: &dyn TensorFile, ctx: &ReadContext<'_>) -> Result<Network, ModelError> {
        let spec = ctx.spec;
        let featurizer = BagFeaturizer::with_buckets(
            spec.bag.clone(),
            ctx.tokenizer.words().len(),
            file.u32("bag.buckets")?,
        );
        let rows = featurizer.rows();
        let loss = bag_loss(spec.bag.loss, ctx.task, ctx.class_counts)?;
        let (out_rows, outputs) = match &loss {
            BagLoss::Hierarchical(t) => (t.nodes(), t.paths.len()),
            BagLoss::Softmax if ctx.task == Task::Binary => (2, 2),
            _ => (ctx.outputs, ctx.outputs),
        };
        let e = spec.embed_dim;
        Ok(Network::new(BagNet {
            featurizer,
            model: BagModel {
                input: file.f32("bag.input", &[rows, e])?,
                output: file.f32("bag.output", &[out_rows, e])?,
                bias: file.f32("bag.bias", &[outputs])?,
                loss,
            },
        }))
    }

    fn summary(&self, pipeline: &Pipeline) -> String {
        let sp = &pipeline.spec;
        format!(
            "{} dim {} word-ngrams {} char-ngrams {} buckets {} words {} tokenizer {} parameters {}",
            sp.family,
            sp.embed_dim,
            sp.bag.word_ngrams,
            sp.bag.char_ngrams(),
            sp.bag.buckets,
            pipeline.tokenizer().words().len(),
            sp.tokenizer.describe(),
            pipeline.num_parameters()
        )
    }

    fn describe(&self, spec: &ModelSpec, cfg: &TrainConfig) -> String {
        format!(
            "fasttext tokenizer={} dim={} epochs={} lr={:.3} word-ngrams={} char-ngrams={}",
            spec.tokenizer.describe(),
            spec.embed_dim,
            cfg.epochs,
            cfg.lr.unwrap_or(0.1),
            spec.bag.word_ngrams,
            spec.bag.char_ngrams()
        )
    }
}

/// Examples per data-parallel round: their hidden vectors are computed against the same input
/// rows, then the output layer is stepped example by example, then the feature rows are
/// updated in example order, so results do not depend on the number of threads (fastText's
/// lock-free threads read input rows that are a few updates old in the same way).
pub const ROUND: usize = 16;

/// Feature-row updates (features × dim) a round needs before it is split among threads.
const PARALLEL_WORK: usize = 200_000;

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
            return Err(ModelError::Setting(
                format!("--loss {c:?} does not apply to regression (it uses squared error)")
                    .to_lowercase(),
            ))
        }
        (Task::Multilabel, BagLossChoice::Auto | BagLossChoice::Ova) => BagLoss::OneVsAll,
        (Task::Multilabel, _) => {
            return Err(ModelError::Setting(
                "a multi-label model needs --loss ova (one sigmoid per label)".into(),
            ))
        }
        (_, BagLossChoice::Auto | BagLossChoice::Softmax) => BagLoss::Softmax,
        (_, BagLossChoice::Ova) => BagLoss::OneVsAll,
        (_, BagLossChoice::Hs) => BagLoss::Hierarchical(HuffmanTree::new(class_counts)),
    })
}

impl Net for BagNet {
    fn family(&self) -> Family {
        Family::FastText
    }

    fn tensors(&self) -> Vec<(String, &Tensor<f32>)> {
        self.model.tensors()
    }

    fn raw_tensors(&self) -> Vec<RawTensor> {
        let mut out: Vec<RawTensor> = self
            .tensors()
            .into_iter()
            .map(|(n, t)| RawTensor::f32(&n, t.shape(), t.data()))
            .collect();
        out.push(RawTensor::u32("bag.buckets", self.featurizer.bucket_list()));
        out
    }

    fn shape(
        &self,
        _spec: &ModelSpec,
        labels: &LabelSet,
        _tokenizer: &KerasTokenizer,
    ) -> Result<NetShape, ModelError> {
        if self.model.rows() != self.featurizer.rows() {
            return Err(ModelError::Incompatible(format!(
                "the featurizer uses {} rows but the embedding has {}",
                self.featurizer.rows(),
                self.model.rows()
            )));
        }
        Ok(NetShape {
            rows: self.model.rows(),
            outputs: task_width(labels.task, self.model.outputs()),
        })
    }

    fn encode_into(
        &self,
        tokenizer: &KerasTokenizer,
        _pad: &PadSpec,
        text: &str,
        out: &mut Vec<u32>,
    ) {
        self.featurizer.encode_into(tokenizer, text, out)
    }

    fn encode_tokens_into(
        &self,
        tokenizer: &KerasTokenizer,
        _pad: &PadSpec,
        tokens: &[&str],
        out: &mut Vec<u32>,
    ) {
        self.featurizer.encode_tokens(tokenizer, tokens, out)
    }

    fn scratch(&self) -> Scratch {
        Box::new(BagBuffers::default())
    }

    fn outputs(
        &self,
        inputs: &[&[u32]],
        labels: &LabelSet,
        _pad: &PadSpec,
        scratch: &mut Scratch,
        out: &mut [f32],
    ) -> Result<(), ModelError> {
        let k = labels.outputs();
        let s = scratch_of::<BagBuffers>(scratch);
        for (seq, row) in inputs.iter().zip(out.chunks_exact_mut(k)) {
            self.outputs_into(seq, labels.task, &mut s.bag, &mut s.probs, row)?;
        }
        Ok(())
    }
}

/// Per-thread buffers of [`BagNet`]'s inference.
#[derive(Default)]
struct BagBuffers {
    bag: BagScratch,
    probs: Vec<f32>,
}

/// Trains the fastText-style model.
fn train_bag(
    input: TrainInput<'_>,
    on_event: &mut dyn FnMut(TrainEvent<'_>),
) -> Result<TrainOutcome, ModelError> {
    let TrainInput {
        records,
        source,
        labels,
        targets,
        spec,
        cfg,
    } = input;
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
    let mut pipeline = Pipeline::new(spec.clone(), labels.clone(), tokenizer, net)?;
    let lr0 = cfg.lr.unwrap_or(0.1) as f32;
    if !(lr0.is_finite() && lr0 > 0.0) {
        return Err(ModelError::Setting("--lr must be a positive number".into()));
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
        (labels.task, &pipeline.net::<BagNet>()?.model.loss),
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
                .map_err(|source| ModelError::Threads { threads: t, source })?;
            Some(pool)
        }
    };
    let install = |f: &mut (dyn FnMut() -> Result<(), ModelError> + Send)| match &pool {
        Some(p) => p.install(f),
        None => f(),
    };
    let total_tokens: f64 = all.tokens()[..n_train]
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
        let model = &mut pipeline.net_mut::<BagNet>()?.model;
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
                processed += f64::from(all.tokens()[i]);
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
        drift: None,
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
