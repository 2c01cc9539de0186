//! The `setfit` family: SetFit (Tunstall et al. 2022) — a pretrained sentence encoder
//! fine-tuned contrastively on pairs of training texts (same class: cosine similarity 1,
//! different: 0), then the `encoder` family's logistic-regression head on the fine-tuned
//! vectors. Few labelled rows go a long way: the pairs grow with the square of the rows.
//!
//! Fine-tuning runs on our engine ([`flywheel_nn::bert`]): every layer of the transformer,
//! explicit backward passes, AdamW with SetFit's schedule, data-parallel over the texts of a
//! step. The fine-tuned weights are stored in the model file (`body.*` tensors) and served
//! through the same candle encoder as the base, so training and serving read the same
//! numbers; the spec records the base encoder's fingerprint and the fine-tuned one's.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use flywheel_nn::bert::{clip_grad_norm, cosine_pair_loss, AdamW};
use flywheel_nn::{Bert, BertCache, Dropout, Rng, Tensor};
use flywheel_text::{KerasTokenizer, PadSpec};
use rayon::prelude::*;

use super::api::{cost, ModelFamily, ReadContext, Setting, TensorFile, TrainInput, Workload};
use super::encoder::{base_encoder, train_head, validate_head, EncoderNet};
use super::linear::{one_pass_config, thread_pool};
use crate::embed::resolve_encoder;
use crate::family::Family;
use crate::network::{Net, NetShape, Network, RawTensor, Scratch};
use crate::outcome::{training_rows, TrainEvent, TrainOutcome};
use crate::pipeline::Pipeline;
use crate::spec::{FineTuneSpec, ModelSpec, TrainConfig};
use crate::task::{LabelSet, Targets, Task};
use crate::ModelError;

/// The `setfit` family.
pub struct SetFit;

impl ModelSpec {
    /// SetFit on the encoder in `dir`: contrastive fine-tuning with SetFit's defaults, then
    /// logistic regression (`C = 1`) on the fine-tuned vectors.
    pub fn setfit(dir: impl Into<String>) -> Self {
        let mut s = ModelSpec::encoder(dir);
        s.family = Family::SetFit;
        s.fine_tune = Some(FineTuneSpec::default());
        s
    }
}

/// Above this many pairs of distinct texts, pairs are drawn at random rather than enumerated.
const ENUMERATE_PAIRS: usize = 2_000_000;

/// Pair iterations when there are too many texts to enumerate their pairs (SetFit's
/// documented `num_iterations` of 20).
const DRAWN_ITERATIONS: usize = 20;

impl ModelFamily for SetFit {
    fn family(&self) -> Family {
        Family::SetFit
    }

    fn default_spec(&self) -> ModelSpec {
        ModelSpec::setfit(String::new())
    }

    /// One pass (fine-tuning has its own epochs), no validation rows.
    fn default_config(&self) -> TrainConfig {
        one_pass_config()
    }

    fn accepts(&self, setting: Setting) -> bool {
        matches!(
            setting,
            Setting::Encoder | Setting::Ngrams | Setting::Regression | Setting::FineTune
        )
    }

    fn uses_ngrams(&self, spec: &ModelSpec) -> bool {
        spec.encoder.as_ref().is_some_and(|e| e.ngrams)
    }

    fn validate(&self, spec: &ModelSpec) -> Result<(), ModelError> {
        spec.fine_tune.clone().unwrap_or_default().validate()?;
        validate_head(spec, self.uses_ngrams(spec))
    }

    fn train(
        &self,
        input: TrainInput<'_>,
        on_event: &mut dyn FnMut(TrainEvent<'_>),
    ) -> Result<TrainOutcome, ModelError> {
        train_setfit(input, on_event)
    }

    fn read(&self, file: &dyn TensorFile, ctx: &ReadContext<'_>) -> Result<Network, ModelError> {
        let recorded = ctx.spec.encoder.as_ref().ok_or_else(|| {
            ModelError::Incompatible("a setfit model without its encoder".to_string())
        })?;
        let tuned_sha = ctx
            .spec
            .fine_tune
            .as_ref()
            .map(|f| f.tuned_sha256.clone())
            .unwrap_or_default();
        let base = resolve_encoder(recorded)?;
        let mut body = base.trainable()?;
        for p in body.params().to_vec() {
            let t = file.f32(&format!("body.{}", p.name), &p.shape)?;
            body.weights[p.range()].copy_from_slice(t.data());
        }
        let tuned = base.tuned(&body)?;
        if tuned.fingerprint() != tuned_sha {
            return Err(ModelError::Incompatible(format!(
                "the fine-tuned weights (sha256 {}) are not the ones the model recorded \
                 (sha256 {tuned_sha})",
                tuned.fingerprint()
            )));
        }
        let inner = super::encoder::Encoder.read(file, ctx)?;
        let mut inner = inner
            .get()
            .as_any()
            .downcast_ref::<EncoderNet>()
            .cloned()
            .ok_or_else(|| ModelError::Incompatible("not an encoder network".into()))?;
        inner.encoder = tuned;
        Ok(Network::new(SetFitNet {
            inner,
            body: Arc::new(body),
        }))
    }

    fn summary(&self, pipeline: &Pipeline) -> String {
        let f = pipeline.spec.fine_tune.clone().unwrap_or_default();
        format!(
            "fine-tuned (sha256 {}, {} epoch(s), lr {}, {}{}) {}",
            f.tuned_sha256,
            f.epochs,
            f.lr,
            match f.pair_iterations {
                Some(n) => format!("{n} pair iterations"),
                None => "every pair, oversampled".to_string(),
            },
            f.max_pieces
                .map(|m| format!(", at most {m} word pieces"))
                .unwrap_or_default(),
            super::encoder::Encoder.summary(pipeline)
        )
    }

    fn describe(&self, spec: &ModelSpec, cfg: &TrainConfig) -> String {
        let f = spec.fine_tune.clone().unwrap_or_default();
        format!(
            "setfit epochs={} lr={} + {}",
            f.epochs,
            f.lr,
            super::encoder::Encoder.describe(spec, cfg)
        )
    }

    /// The head's cost and, per pair, two texts through a forward and backward pass of the
    /// encoder (about 6 multiply-adds per weight and word piece, at a rough 30 word pieces).
    fn planned_seconds(&self, spec: &ModelSpec, cfg: &TrainConfig, work: &Workload) -> f64 {
        let f = spec.fine_tune.clone().unwrap_or_default();
        let rows = work.rows.max(1.0);
        let pairs = match f.pair_iterations {
            Some(n) => 2.0 * n as f64 * rows,
            None => rows * (rows + 1.0) / 2.0,
        };
        let flops = pairs * 2.0 * 30.0 * 6.0 * 2.0e7 * f.epochs as f64;
        super::encoder::Encoder.planned_seconds(spec, cfg, work)
            + flops / (cost::UPDATES_PER_SEC * 20.0)
    }
}

/// The `setfit` network: the `encoder` network on the fine-tuned encoder, and the fine-tuned
/// weights (which the model file stores).
#[derive(Debug, Clone)]
pub struct SetFitNet {
    /// The head on the fine-tuned encoder.
    pub inner: EncoderNet,
    /// The fine-tuned weights of the encoder.
    pub body: Arc<Bert<f32>>,
}

impl SetFitNet {
    /// The fine-tuned weights of a `setfit` model.
    pub fn body_of(pipeline: &Pipeline) -> Result<Arc<Bert<f32>>, ModelError> {
        Ok(pipeline.net::<SetFitNet>()?.body.clone())
    }
}

impl PartialEq for SetFitNet {
    fn eq(&self, other: &Self) -> bool {
        self.inner == other.inner
    }
}

impl Net for SetFitNet {
    fn family(&self) -> Family {
        Family::SetFit
    }

    fn tensors(&self) -> Vec<(String, &Tensor<f32>)> {
        self.inner.tensors()
    }

    fn raw_tensors(&self) -> Vec<RawTensor> {
        let mut out = self.inner.raw_tensors();
        for p in self.body.params() {
            out.push(RawTensor::f32(
                &format!("body.{}", p.name),
                &p.shape,
                &self.body.weights[p.range()],
            ));
        }
        out
    }

    fn shape(
        &self,
        spec: &ModelSpec,
        labels: &LabelSet,
        tokenizer: &KerasTokenizer,
    ) -> Result<NetShape, ModelError> {
        let tuned = spec.fine_tune.as_ref().map(|f| f.tuned_sha256.as_str());
        if tuned != Some(self.inner.encoder.fingerprint()) {
            return Err(ModelError::Incompatible(
                "the spec does not record these fine-tuned weights".to_string(),
            ));
        }
        let mut spec = spec.clone();
        if let Some(e) = spec.encoder.as_mut() {
            e.sha256 = self.inner.encoder.fingerprint().to_string();
        }
        self.inner.shape(&spec, labels, tokenizer)
    }

    fn reads_raw_text(&self) -> bool {
        true
    }

    fn encode_into(
        &self,
        tokenizer: &KerasTokenizer,
        _pad: &PadSpec,
        text: &str,
        out: &mut Vec<u32>,
    ) {
        self.inner.encode_into(tokenizer, text, out)
    }

    fn encode_tokens_into(
        &self,
        tokenizer: &KerasTokenizer,
        _pad: &PadSpec,
        tokens: &[&str],
        out: &mut Vec<u32>,
    ) {
        self.inner.encode_into(tokenizer, &tokens.join(" "), out)
    }

    fn scratch(&self) -> Scratch {
        Box::new(())
    }

    fn outputs(
        &self,
        inputs: &[&[u32]],
        labels: &LabelSet,
        _pad: &PadSpec,
        _scratch: &mut Scratch,
        out: &mut [f32],
    ) -> Result<(), ModelError> {
        self.inner.outputs_into(inputs, labels.task, out)
    }
}

/// Fine-tunes the encoder on pairs of the training rows, then fits the head on it.
fn train_setfit(
    input: TrainInput<'_>,
    on_event: &mut dyn FnMut(TrainEvent<'_>),
) -> Result<TrainOutcome, ModelError> {
    let started = Instant::now();
    let (base, mut spec) = base_encoder(input.spec)?;
    let ft = spec.fine_tune.clone().unwrap_or_default();
    ft.validate()?;
    let cfg = input.cfg;
    let n_train = training_rows(input.records.len(), cfg, input.source)?;
    let keys = pair_keys(&input.labels, &input.targets, n_train)?;
    let mut body = base.trainable()?;
    let cap = ft
        .max_pieces
        .unwrap_or(usize::MAX)
        .min(body.config().max_positions);
    let pieces: Vec<Vec<u32>> = input.records[..n_train]
        .iter()
        .map(|r| {
            let mut ids = Vec::new();
            base.token_ids(&r.text, &mut ids);
            cap_pieces(ids, cap)
        })
        .collect();
    let usable: Vec<usize> = (0..n_train).filter(|&i| !pieces[i].is_empty()).collect();
    let pairs = setfit_pairs(&keys, &usable, ft.pair_iterations, cfg.seed)?;
    let pool = thread_pool(cfg)?;
    fine_tune(&mut body, &pieces, &pairs, &ft, cfg, &pool, on_event)?;
    let tuned = base.tuned(&body)?;
    spec.fine_tune = Some(FineTuneSpec {
        tuned_sha256: tuned.fingerprint().to_string(),
        ..ft
    });
    let body = Arc::new(body);
    let input = TrainInput {
        spec: &spec,
        ..input
    };
    train_head(
        input,
        tuned,
        started,
        |inner| SetFitNet { inner, body },
        on_event,
    )
}

/// Cuts `ids` to at most `cap` word pieces, keeping the last (`[SEP]`).
fn cap_pieces(mut ids: Vec<u32>, cap: usize) -> Vec<u32> {
    if ids.len() > cap {
        let last = ids[ids.len() - 1];
        ids.truncate(cap - 1);
        ids.push(last);
    }
    ids
}

/// The labels of each training row, as sorted sets: two rows make a positive pair when they
/// share one (SetFit's rule; a set of one for single-label tasks).
fn pair_keys(
    labels: &LabelSet,
    targets: &Targets,
    rows: usize,
) -> Result<Vec<Vec<u32>>, ModelError> {
    let k = labels.outputs().max(1);
    match (labels.task, targets) {
        (Task::Regression, _) => Err(ModelError::Setting(
            "--model setfit learns from pairs of classes; it does not fit regression".into(),
        )),
        (_, Targets::Classes(c)) => Ok(c[..rows].iter().map(|&c| vec![c]).collect()),
        (Task::Binary, Targets::Values(v)) => Ok(v[..rows]
            .iter()
            .map(|&x| vec![u32::from(x >= 0.5)])
            .collect()),
        (_, Targets::Values(v)) => Ok(v[..rows * k]
            .chunks_exact(k)
            .map(|row| (0..k as u32).filter(|&j| row[j as usize] >= 0.5).collect())
            .collect()),
    }
}

fn positive(a: &[u32], b: &[u32]) -> bool {
    a.iter().any(|x| b.contains(x))
}

/// SetFit's pairs of rows `usable`: every pair (a row with itself included) in a seeded order,
/// split into positive and negative; with `iterations` N, `N·rows` of each kind, else as many
/// of each as the more common kind has (the other cycled, SetFit's `oversampling`);
/// interleaved positive, negative. Too many rows to enumerate their pairs: `20·rows` pairs of
/// each kind drawn at random.
fn setfit_pairs(
    keys: &[Vec<u32>],
    usable: &[usize],
    iterations: Option<usize>,
    seed: u64,
) -> Result<Vec<(usize, usize, f32)>, ModelError> {
    let n = usable.len();
    let mut rng = Rng::with_stream(seed, 0x5e7f17);
    let (pos, neg) = if n * (n + 1) / 2 <= ENUMERATE_PAIRS {
        let mut all: Vec<(usize, usize)> = Vec::with_capacity(n * (n + 1) / 2);
        for i in 0..n {
            for j in i..n {
                all.push((usable[i], usable[j]));
            }
        }
        rng.shuffle(&mut all);
        all.into_iter()
            .partition::<Vec<_>, _>(|&(a, b)| positive(&keys[a], &keys[b]))
    } else {
        let want = iterations.unwrap_or(DRAWN_ITERATIONS) * n;
        let (mut pos, mut neg) = (Vec::new(), Vec::new());
        let mut tries = 0usize;
        while (pos.len() < want || neg.len() < want) && tries < want * 100 {
            tries += 1;
            let (a, b) = (usable[rng.below(n)], usable[rng.below(n)]);
            match positive(&keys[a], &keys[b]) {
                true if pos.len() < want => pos.push((a, b)),
                false if neg.len() < want => neg.push((a, b)),
                _ => {}
            }
        }
        (pos, neg)
    };
    if pos.is_empty() || neg.is_empty() {
        return Err(ModelError::Setting(format!(
            "--model setfit needs pairs of the same class and of different classes; the {n} \
             training rows give {} and {}",
            pos.len(),
            neg.len()
        )));
    }
    let len = match iterations {
        Some(it) => it * n,
        None => pos.len().max(neg.len()),
    };
    let mut out = Vec::with_capacity(2 * len);
    for i in 0..len {
        let (a, b) = pos[i % pos.len()];
        out.push((a, b, 1.0));
        let (a, b) = neg[i % neg.len()];
        out.push((a, b, 0.0));
    }
    Ok(out)
}

/// Hugging Face's linear schedule with warm-up: the learning rate of step `step` (0-based).
fn scheduled_lr(lr: f64, step: usize, total: usize, warmup: usize) -> f64 {
    if step < warmup {
        lr * step as f64 / warmup.max(1) as f64
    } else {
        lr * ((total - step.min(total)) as f64 / (total - warmup).max(1) as f64).max(0.0)
    }
}

/// One thread's share of a step: its texts, their forward record and its gradients.
struct Share {
    rows: Vec<usize>,
    cache: BertCache<f32>,
    grads: Vec<f32>,
    pooled: Vec<f32>,
}

/// Contrastive fine-tuning of `body` on `pairs` of rows (`pieces`: each row's word pieces).
fn fine_tune(
    body: &mut Bert<f32>,
    pieces: &[Vec<u32>],
    pairs: &[(usize, usize, f32)],
    ft: &FineTuneSpec,
    cfg: &TrainConfig,
    pool: &rayon::ThreadPool,
    on_event: &mut dyn FnMut(TrainEvent<'_>),
) -> Result<(), ModelError> {
    let started = Instant::now();
    let threads = cfg.threads.max(1);
    let per_epoch = pairs.len().div_ceil(ft.batch);
    let total = per_epoch * ft.epochs;
    let warmup = (ft.warmup * total as f64).ceil() as usize;
    let mut opt = AdamW::new(0.9, 0.999, 1e-8, ft.weight_decay);
    let params = body.params().to_vec();
    let dim = body.config().hidden;
    let mut shares: Vec<Share> = (0..threads)
        .map(|_| Share {
            rows: Vec::new(),
            cache: BertCache::new(),
            grads: Vec::new(),
            pooled: Vec::new(),
        })
        .collect();
    let mut order_rng = Rng::with_stream(cfg.seed, 0x0de5);
    let (mut step, mut loss_sum) = (0usize, 0.0f64);
    for _ in 0..ft.epochs {
        let mut order: Vec<usize> = (0..pairs.len()).collect();
        order_rng.shuffle(&mut order);
        for batch in order.chunks(ft.batch) {
            // The distinct texts of the step, each run once; longest first to balance the
            // threads (each takes the next text onto its lightest share).
            let mut slot: HashMap<usize, usize> = HashMap::new();
            let mut rows = Vec::new();
            for &p in batch {
                for r in [pairs[p].0, pairs[p].1] {
                    slot.entry(r).or_insert_with(|| {
                        rows.push(r);
                        rows.len() - 1
                    });
                }
            }
            let mut by_len: Vec<usize> = (0..rows.len()).collect();
            by_len.sort_by_key(|&i| (std::cmp::Reverse(pieces[rows[i]].len()), i));
            let mut load = vec![0usize; threads];
            for s in shares.iter_mut() {
                s.rows.clear();
            }
            for i in by_len {
                let t = (0..threads).min_by_key(|&t| (load[t], t)).unwrap_or(0);
                let len = pieces[rows[i]].len();
                load[t] += len * len + 64 * len;
                shares[t].rows.push(i);
            }
            let body_ref = &*body;
            let seed = cfg.seed;
            pool.install(|| {
                shares
                    .par_iter_mut()
                    .enumerate()
                    .try_for_each(|(t, s)| -> Result<(), ModelError> {
                        let seqs: Vec<&[u32]> =
                            s.rows.iter().map(|&i| pieces[rows[i]].as_slice()).collect();
                        let mut rng = Rng::with_stream(seed ^ (step as u64) << 20, t as u64);
                        s.pooled = match seqs.is_empty() {
                            true => Vec::new(),
                            false => body_ref
                                .forward(&seqs, Some(Dropout { rng: &mut rng }), &mut s.cache)
                                .map_err(|e| ModelError::Encoder(e.to_string()))?,
                        };
                        Ok(())
                    })
            })?;
            let mut pooled = vec![0.0f32; rows.len() * dim];
            for s in &shares {
                for (k, &i) in s.rows.iter().enumerate() {
                    pooled[i * dim..(i + 1) * dim]
                        .copy_from_slice(&s.pooled[k * dim..(k + 1) * dim]);
                }
            }
            let local: Vec<(usize, usize, f32)> = batch
                .iter()
                .map(|&p| (slot[&pairs[p].0], slot[&pairs[p].1], pairs[p].2))
                .collect();
            let (loss, d_pooled) = cosine_pair_loss(&pooled, dim, &local);
            let weights = body.weights.len();
            pool.install(|| {
                shares
                    .par_iter_mut()
                    .try_for_each(|s| -> Result<(), ModelError> {
                        s.grads.clear();
                        s.grads.resize(weights, 0.0);
                        if s.rows.is_empty() {
                            return Ok(());
                        }
                        let mut d = Vec::with_capacity(s.rows.len() * dim);
                        for &i in &s.rows {
                            d.extend_from_slice(&d_pooled[i * dim..(i + 1) * dim]);
                        }
                        body_ref
                            .backward(&s.cache, &d, &mut s.grads)
                            .map_err(|e| ModelError::Encoder(e.to_string()))
                    })
            })?;
            let (first, rest) = shares.split_at_mut(1);
            let grads = &mut first[0].grads;
            pool.install(|| {
                grads
                    .par_chunks_mut(1 << 16)
                    .enumerate()
                    .for_each(|(c, g)| {
                        for s in rest.iter() {
                            let o = &s.grads[c << 16..(c << 16) + g.len()];
                            for (a, b) in g.iter_mut().zip(o) {
                                *a += *b;
                            }
                        }
                    });
                clip_grad_norm(grads, ft.max_grad_norm);
                let lr = scheduled_lr(ft.lr, step, total, warmup);
                opt.step(&params, &mut body.weights, grads, lr)
            })
            .map_err(|e| ModelError::Encoder(e.to_string()))?;
            step += 1;
            loss_sum += loss;
            on_event(TrainEvent::FineTune {
                step,
                steps: total,
                loss: loss_sum / step as f64,
                seconds: started.elapsed().as_secs_f64(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_follow_setfit_oversampling() {
        // 3 classes of 2: 21 pairs with replacement, 9 positive (3·3), 12 negative.
        let keys: Vec<Vec<u32>> = [0, 0, 1, 1, 2, 2].iter().map(|&c| vec![c]).collect();
        let usable: Vec<usize> = (0..6).collect();
        let pairs = setfit_pairs(&keys, &usable, None, 1).unwrap();
        assert_eq!(pairs.len(), 24);
        for (i, &(a, b, label)) in pairs.iter().enumerate() {
            assert_eq!(label, if i % 2 == 0 { 1.0 } else { 0.0 });
            assert_eq!(keys[a] == keys[b], label == 1.0, "pair {i}");
        }
        let negatives: std::collections::HashSet<(usize, usize)> = pairs
            .iter()
            .filter(|p| p.2 == 0.0)
            .map(|p| (p.0, p.1))
            .collect();
        assert_eq!(negatives.len(), 12, "every negative pair once");
        let with = setfit_pairs(&keys, &usable, Some(2), 1).unwrap();
        assert_eq!(with.len(), 2 * 2 * 6);
        assert_eq!(
            setfit_pairs(&keys, &usable, None, 1).unwrap(),
            pairs,
            "seeded"
        );
        let one_class = vec![vec![0u32]; 4];
        assert!(setfit_pairs(&one_class, &[0, 1, 2, 3], None, 1).is_err());
    }

    #[test]
    fn multi_label_rows_pair_when_they_share_a_label() {
        let keys = vec![vec![0, 1], vec![1], vec![2], vec![]];
        let pairs = setfit_pairs(&keys, &[0, 1, 2, 3], None, 3).unwrap();
        for &(a, b, label) in &pairs {
            assert_eq!(positive(&keys[a], &keys[b]), label == 1.0);
        }
    }

    #[test]
    fn the_schedule_warms_up_then_decays_to_zero() {
        let lrs: Vec<f64> = (0..10).map(|s| scheduled_lr(1.0, s, 10, 2)).collect();
        assert_eq!(lrs[0], 0.0);
        assert_eq!(lrs[1], 0.5);
        assert_eq!(lrs[2], 1.0);
        assert!((lrs[9] - 0.125).abs() < 1e-12);
        assert!(lrs.windows(2).skip(2).all(|w| w[1] < w[0]));
    }

    #[test]
    fn capping_keeps_the_last_piece() {
        assert_eq!(cap_pieces(vec![101, 5, 6, 7, 102], 3), vec![101, 5, 102]);
        assert_eq!(cap_pieces(vec![101, 5, 102], 8), vec![101, 5, 102]);
    }
}
