//! Hyper-parameter search: which model family and settings suit *this* data (the fastText-style
//! family and TF-IDF + logistic regression or a linear SVM; the recurrent reference is far
//! slower per point of accuracy on the shared datasets and is not searched).
//!
//! * A stratified validation split (each class keeps its share) is cut from the training rows;
//!   below 10,000 rows, trials are scored by stratified 5-fold cross-validation instead.
//! * Configurations are drawn from a seeded search space and run as successive halving: every
//!   candidate trains on a third of the remaining rows, the best third of them again on all of
//!   them; each trial is scored on the validation split with the chosen metric.
//! * The time budget becomes a number of trials through a cost model of this engine's speed
//!   (work = tokens × epochs × features per token × width), fixed before anything runs, which
//!   charges each `linear` trial L-BFGS's full iteration cap. After rung 0, the evaluations its
//!   `linear` trials took (a count, not a time) rescale their charge and the budget freed is
//!   filled with more candidates. So the same data, seed and budget always make the same trials
//!   and the same choice, however fast the machine is. Trials run concurrently, one per thread,
//!   each on one thread.
//! * The best configuration is retrained on all rows (training and validation).
//! * With a pretrained encoder allowed ([`AutotuneOptions::encoder`]), every text is embedded
//!   once up front (through the on-disk cache) and the `encoder` family joins the draw; its
//!   trials read the vectors from memory. The plan charges that encoding by a cost model too.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flywheel_data::Record;
use flywheel_nn::Rng;
use flywheel_text::segment::cjk_share;
use flywheel_text::Segmentation;
use rayon::prelude::*;
use serde::Serialize;

use crate::embed::{embed_cached, load_encoder, register_encoder, Memo, TextEncoder};
use crate::evaluate::evaluate;
use crate::families::encoder::{replace_encoder, EncoderNet};
use crate::families::{self, cost, Workload};
use crate::outcome::TrainOutcome;
use crate::report::Report;
use crate::spec::{LinearLossChoice, ModelSpec, TrainConfig};
use crate::task::{LabelSet, Task};
use crate::train::{fit, train};
use crate::ModelError;

mod split;
pub use split::{stratified_folds, stratified_split};

/// What a trial is scored by (higher is better).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Metric {
    /// Unweighted mean of per-class F1.
    MacroF1,
    /// Share of rows predicted right (subset accuracy for multi-label).
    Accuracy,
    /// F1 of one label.
    F1(String),
}

impl std::str::FromStr for Metric {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "macro-f1" => Ok(Metric::MacroF1),
            "accuracy" => Ok(Metric::Accuracy),
            other => match other.strip_prefix("f1:") {
                Some(l) if !l.is_empty() => Ok(Metric::F1(l.to_string())),
                _ => Err(ModelError::Setting(format!(
                    "unknown metric '{other}': use macro-f1, accuracy or f1:LABEL"
                ))),
            },
        }
    }
}

impl std::fmt::Display for Metric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Metric::MacroF1 => f.write_str("macro-f1"),
            Metric::Accuracy => f.write_str("accuracy"),
            Metric::F1(l) => write!(f, "f1:{l}"),
        }
    }
}

impl Metric {
    /// The metric's value in a report.
    pub fn of(&self, report: &Report) -> Result<f64, ModelError> {
        match (self, report) {
            (Metric::MacroF1, Report::Classification(r)) => Ok(r.macro_f1),
            (Metric::MacroF1, Report::Multilabel(r)) => Ok(r.macro_f1),
            (Metric::Accuracy, Report::Classification(r)) => Ok(r.accuracy),
            (Metric::Accuracy, Report::Multilabel(r)) => Ok(r.subset_accuracy),
            (Metric::F1(l), Report::Classification(r)) => r
                .per_class
                .get(l)
                .map(|c| c.f1)
                .ok_or_else(|| unknown_label(l, &r.labels)),
            (Metric::F1(l), Report::Multilabel(r)) => r
                .per_class
                .get(l)
                .map(|c| c.f1)
                .ok_or_else(|| unknown_label(l, &r.labels)),
            (_, Report::Regression(r)) => Ok(r.r2),
        }
    }
}

fn unknown_label(l: &str, labels: &[String]) -> ModelError {
    ModelError::Setting(format!(
        "--metric f1:{l}: no such label; the labels are {}",
        labels.join(", ")
    ))
}

/// Settings of a search.
#[derive(Debug, Clone)]
pub struct AutotuneOptions {
    /// Planned wall time of the search and the final training, seconds.
    pub budget_secs: f64,
    /// What to maximise.
    pub metric: Metric,
    /// Seed of the split, the search and every trial.
    pub seed: u64,
    /// Trials run at once (and threads of the final training).
    pub threads: usize,
    /// Share of the rows held out for validation.
    pub validation_fraction: f64,
    /// A pretrained encoder's directory: the `encoder` family joins the search.
    pub encoder: Option<String>,
    /// Start no trial (beyond each rung's first one per thread) that the cost model says would
    /// end after [`TRIALS_UNTIL`] of the budget: the cost model can misjudge unusual data or a
    /// busy machine, and the
    /// budget is the user's. Off, every planned trial runs, so the choice depends on nothing
    /// but the data, seed and budget; on, it does too unless the deadline cuts the plan
    /// short, which is reported ([`AutotuneEvent::Deadline`]).
    pub stop_at_budget: bool,
}

/// Share of the budget after which [`AutotuneOptions::stop_at_budget`] starts no more trials
/// (the rest is the final training's).
pub const TRIALS_UNTIL: f64 = 0.85;

/// One configuration of the search space.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Candidate {
    /// The model settings.
    pub spec: ModelSpec,
    /// The training settings.
    pub config: TrainConfig,
}

impl Candidate {
    /// A one-line description.
    pub fn describe(&self) -> String {
        families::of(self.spec.family).describe(&self.spec, &self.config)
    }
}

/// The result of one trial.
#[derive(Debug, Clone, Serialize)]
pub struct Trial {
    /// 1-based number in the order trials were planned.
    pub number: usize,
    /// Successive-halving rung (0 = a third of the rows).
    pub rung: usize,
    /// Rows trained on.
    pub rows: usize,
    /// The configuration.
    pub candidate: Candidate,
    /// Metric on the validation split.
    pub score: f64,
    /// Wall seconds.
    pub seconds: f64,
    /// Seconds the cost model planned for it (over all folds).
    pub planned: f64,
}

/// Progress of a search.
#[derive(Debug)]
pub enum AutotuneEvent<'a> {
    /// The plan is fixed.
    Plan {
        /// Trials per rung.
        rungs: &'a [usize],
        /// Training rows of the split.
        train_rows: usize,
        /// Validation rows (of each fold).
        val_rows: usize,
        /// Folds each trial is scored on (1 = a single held-out split).
        folds: usize,
        /// Planned seconds.
        planned_secs: f64,
    },
    /// Rung 0's `linear` trials took less than the work planned for them: the plan grew.
    Extended {
        /// Their L-BFGS evaluations as a share of the planned iteration caps.
        work_share: f64,
        /// Trials per rung now.
        rungs: &'a [usize],
    },
    /// Every text was embedded by the pretrained encoder (before the plan).
    Embedded {
        /// Texts.
        texts: usize,
        /// Wall seconds (little when the vectors were cached).
        seconds: f64,
    },
    /// A trial finished.
    Trial(&'a Trial),
    /// The deadline ([`AutotuneOptions::stop_at_budget`]) cut a rung short.
    Deadline {
        /// The rung (0 = a third of the rows).
        rung: usize,
        /// Its planned trials that did not run.
        skipped: usize,
    },
    /// The final training starts.
    Final(&'a Candidate),
}

/// The outcome: every trial, the choice and the model trained with it on all rows.
#[derive(Debug)]
pub struct AutotuneOutcome {
    /// All trials, in plan order.
    pub trials: Vec<Trial>,
    /// The chosen configuration.
    pub best: Candidate,
    /// Its validation score in the last rung.
    pub best_score: f64,
    /// The final model.
    pub outcome: TrainOutcome,
}

/// Longest character n-gram the search draws.
const MAX_CHAR_NGRAM: usize = 6;
/// Characters of training text the cost model reads to count features (texts are sampled
/// evenly beyond it and the counts scaled).
const FEATURE_SAMPLE: usize = 1_000_000;
/// Exponent of Heaps' law (distinct features ∝ text^β) scaling a sample's vocabulary.
const HEAPS_EXPONENT: f64 = 0.7;
/// A trial that ran, with the L-BFGS evaluations of a model fitted by them.
type RungResult = (Trial, Option<usize>);

/// Most candidates one search draws.
const MAX_CANDIDATES: usize = 300;
/// Data sets with fewer rows are scored by cross-validation: a held-out fifth of them has
/// under 2,000 rows (often under 200 of a rare class), where a few texts move macro-F1 by
/// more than the finalists differ.
const CV_BELOW: usize = 10_000;
/// Folds of that cross-validation.
const CV_FOLDS: usize = 5;
/// Word pieces a 384-wide, 6-layer encoder (all-MiniLM-L6-v2) reads per second on one core
/// (docs/benchmarks.md: ~114 tweets/s of ~30 pieces); wider encoders cost `(dim / 384)³` more.
const PIECES_PER_SEC: f64 = 3_400.0;

/// The search's encoder: the memo that answers the trials, registered under the encoder's
/// directory while this lives; dropping it registers the plain encoder again.
struct Registered {
    dir: PathBuf,
    base: Arc<dyn TextEncoder>,
    memo: Arc<dyn TextEncoder>,
    /// The cost model's seconds for embedding every text.
    secs: f64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        register_encoder(&self.dir, &self.base);
    }
}

/// Searches and trains; `on_event` sees the plan and every trial.
pub fn autotune(
    records: &[Record],
    source: &str,
    task: Option<Task>,
    label_sep: &str,
    opts: &AutotuneOptions,
    on_event: &mut dyn FnMut(AutotuneEvent<'_>),
) -> Result<AutotuneOutcome, ModelError> {
    if !(opts.validation_fraction > 0.0 && opts.validation_fraction < 0.5) {
        return Err(ModelError::Setting(format!(
            "the validation fraction must be in (0, 0.5), got {}",
            opts.validation_fraction
        )));
    }
    if !(opts.budget_secs.is_finite() && opts.budget_secs > 0.0) {
        return Err(ModelError::Setting("--budget must be positive".into()));
    }
    let deadline = Instant::now() + Duration::from_secs_f64(opts.budget_secs * TRIALS_UNTIL);
    let labels = LabelSet::infer(records, task, label_sep, source)?;
    let task = labels.task;
    let targets = labels.encode(records, source)?;
    let (train_idx, val_idx) = stratified_split(
        &targets,
        task,
        records.len(),
        opts.validation_fraction,
        opts.seed,
    );
    if train_idx.len() < 10 || val_idx.is_empty() {
        return Err(ModelError::Unusable(format!(
            "{source}: {} rows are too few to search (need at least 10 to train and 1 to validate)",
            records.len()
        )));
    }
    let pick = |idx: &[usize]| -> Vec<Record> { idx.iter().map(|&i| records[i].clone()).collect() };
    // Small data: a single held-out fifth is too noisy to choose by, so trials are scored by
    // stratified k-fold cross-validation instead.
    let folds: Vec<(Vec<Record>, Vec<Record>)> = if records.len() < CV_BELOW {
        stratified_folds(&targets, task, records.len(), CV_FOLDS, opts.seed)
            .into_iter()
            .map(|(t, v)| (pick(&t), pick(&v)))
            .collect()
    } else {
        vec![(pick(&train_idx), pick(&val_idx))]
    };
    let (train_rows, val_rows) = (&folds[0].0, &folds[0].1);
    let threads = opts.threads.max(1);

    // The pretrained encoder: every text embedded once, kept in memory for the trials.
    let mut encoder: Option<Registered> = None;
    if let Some(dir) = &opts.encoder {
        let started = Instant::now();
        let base = load_encoder(Path::new(dir))?;
        let texts: Vec<&str> = records.iter().map(|r| r.text.as_str()).collect();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .map_err(|source| ModelError::Threads { threads, source })?;
        let (inputs, vectors) = pool.install(|| -> Result<_, ModelError> {
            let inputs: Vec<Vec<u32>> = texts
                .par_iter()
                .map(|t| {
                    let mut ids = Vec::new();
                    base.token_ids(t, &mut ids);
                    ids
                })
                .collect();
            Ok((inputs, embed_cached(base.as_ref(), &texts)?))
        })?;
        let pieces: usize = inputs.iter().map(Vec::len).sum();
        let width = base.dim() as f64 / 384.0;
        let memo: Arc<dyn TextEncoder> = Arc::new(Memo::new(base.clone(), inputs, &vectors));
        register_encoder(Path::new(dir), &memo);
        on_event(AutotuneEvent::Embedded {
            texts: texts.len(),
            seconds: started.elapsed().as_secs_f64(),
        });
        encoder = Some(Registered {
            dir: PathBuf::from(dir),
            base,
            memo,
            secs: pieces as f64 * width.powi(3) / PIECES_PER_SEC / threads as f64,
        });
    }
    let encode_secs = encoder.as_ref().map_or(0.0, |e| e.secs);
    let dim = encoder.as_ref().map_or(0, |e| e.memo.dim()) as f64;

    // The cost model's inputs: tokens of the training rows.
    let texts: Vec<&str> = train_rows.iter().map(|r| r.text.as_str()).collect();
    let cjk = cjk_share(&texts) >= 0.2;
    // Distinct tokens per text: repeats within a text cost one row access (features are
    // merged into runs), so long documents cost less per token than short ones. Word n-grams
    // rarely repeat within a text, so they are counted per token occurrence (a Chinese text
    // repeats its characters far more often than their bigrams and trigrams).
    let (distinct, running) = texts
        .iter()
        .map(|t| {
            let mut seen = cost_tokens(t, cjk);
            let all = seen.len() + 1;
            seen.sort_unstable();
            seen.dedup();
            (seen.len() + 1, all)
        })
        .fold((0.0f64, 0.0f64), |(d, r), (a, b)| {
            (d + a as f64, r + b as f64)
        });
    let stats = FeatureStats::of(&texts, cjk);
    let val_share = val_rows.len() as f64 / train_rows.len().max(1) as f64;
    let classes = labels.outputs().max(2) as f64;
    let cost = |c: &Candidate, rows_share: f64| -> f64 {
        let s = &c.spec;
        let chars: f64 = match s.bag.maxn {
            0 => 0.0,
            maxn => stats.per_text_chars[s.bag.minn.max(1)..=maxn.min(MAX_CHAR_NGRAM)]
                .iter()
                .sum(),
        };
        let ngrams = s.bag.word_ngrams.saturating_sub(1) as f64;
        let t = distinct * rows_share;
        // Feature rows of the training texts.
        let features = (distinct + chars + running * ngrams) * rows_share;
        let work = Workload {
            // Reading and featurizing the training rows and the validation rows.
            overhead: (t + distinct * val_share) / 1e6 * cost::SECS_PER_MTOKEN,
            tokenize: t / 1e6 * cost::SECS_PER_MTOKEN,
            features,
            rows: train_rows.len() as f64 * rows_share,
            vector_dim: dim,
            classes,
            weights: stats.weights(s) * rows_share.powf(HEAPS_EXPONENT),
        };
        families::of(s.family).planned_seconds(s, &c.config, &work)
    };

    // Draw candidates until the plan fills the search's share of the budget.
    let mut rng = Rng::with_stream(opts.seed, 7);
    let search_budget = (opts.budget_secs * 0.8 - encode_secs).max(0.0) * threads as f64;
    // Rung 0 on a third of the rows, a third of candidates again on all of them.
    let need = |c: &Candidate| (cost(c, 1.0 / 3.0) + cost(c, 1.0) / 3.0) * folds.len() as f64;
    let mut pool: Vec<Candidate> = Vec::new();
    let mut planned = 0.0;
    fill(&mut pool, &mut planned, search_budget, 3, &mut || {
        let c = draw(&mut rng, cjk, task, opts.seed, opts.encoder.as_deref());
        let n = need(&c);
        (c, n)
    });
    on_event(AutotuneEvent::Plan {
        rungs: &[pool.len(), pool.len().div_ceil(3)],
        train_rows: train_rows.len(),
        val_rows: val_rows.len(),
        folds: folds.len(),
        planned_secs: encode_secs + planned / threads as f64 + cost(&pool[0], 1.25),
    });

    // Runs one rung of `cands` (numbered from `first + 1`): `threads` workers take its trials
    // in plan order, each the next one as soon as it is free, so a short trial never waits for
    // a long one beside it. (Plain threads: a rayon worker waiting on a trial's own pool would
    // start other trials on its stack.) Trials are reported as they finish and keep their
    // plan-order numbers. Each result carries the L-BFGS evaluations of a `linear` trial.
    let stop_at_budget = opts.stop_at_budget;
    let run_rung = |cands: &[Candidate],
                    rung: usize,
                    first: usize,
                    on_event: &mut dyn FnMut(AutotuneEvent<'_>)|
     -> Result<Vec<Option<RungResult>>, ModelError> {
        let share = |rows: &[Record]| -> usize {
            match rung {
                0 => (rows.len() / 3).max(10).min(rows.len()),
                _ => rows.len(),
            }
        };
        let rows_used = share(train_rows);
        let mut results: Vec<Option<RungResult>> = vec![None; cands.len()];
        let mut failure: Option<ModelError> = None;
        let (next, failed) = (AtomicUsize::new(0), AtomicBool::new(false));
        std::thread::scope(|scope| {
            let (tx, rx) = std::sync::mpsc::channel();
            for _ in 0..threads.min(cands.len()) {
                let tx = tx.clone();
                let (next, failed) = (&next, &failed);
                let (folds, metric, cost, share) = (&folds, &opts.metric, &cost, &share);
                scope.spawn(move || loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(c) = cands.get(i).filter(|_| !failed.load(Ordering::Relaxed)) else {
                        break;
                    };
                    let planned = cost(c, share(&folds[0].0) as f64 / folds[0].0.len() as f64)
                        * folds.len() as f64;
                    // A trial the plan says would end past the deadline does not start; a
                    // shorter one after it still may.
                    let ends = Instant::now() + Duration::from_secs_f64(planned.clamp(0.0, 1e6));
                    if stop_at_budget && i >= threads && ends >= deadline {
                        continue;
                    }
                    let mut total = (0.0, 0.0, Some(0));
                    for (tr, va) in folds.iter() {
                        match run_trial(c, &tr[..share(tr)], va, source, task, label_sep, metric) {
                            Ok((score, secs, evals)) => {
                                total = (
                                    total.0 + score,
                                    total.1 + secs,
                                    total.2.zip(evals).map(|(a, b)| a + b),
                                )
                            }
                            Err(e) => {
                                failed.store(true, Ordering::Relaxed);
                                let _ = tx.send((i, Err(e)));
                                return;
                            }
                        }
                    }
                    let score = total.0 / folds.len() as f64;
                    let _ = tx.send((i, Ok((score, total.1, planned, total.2))));
                });
            }
            drop(tx);
            for (i, r) in rx {
                match r {
                    Ok((score, seconds, planned, evals)) => {
                        let t = Trial {
                            number: first + i + 1,
                            rung,
                            rows: rows_used,
                            candidate: cands[i].clone(),
                            score,
                            seconds,
                            planned,
                        };
                        on_event(AutotuneEvent::Trial(&t));
                        results[i] = Some((t, evals));
                    }
                    Err(e) => {
                        failure.get_or_insert(e);
                    }
                }
            }
        });
        if let Some(e) = failure {
            return Err(e);
        }
        let skipped = results.iter().filter(|t| t.is_none()).count();
        if skipped > 0 {
            on_event(AutotuneEvent::Deadline { rung, skipped });
        }
        Ok(results)
    };

    let mut first_rung = run_rung(&pool, 0, 0, on_event)?;
    // The plan charges every `linear` trial L-BFGS's full iteration cap; most converge well
    // before it. Their evaluations (the same on every run) say how much of the planned work
    // rung 0 took, and the budget that frees is filled with more candidates, charged at the
    // measured share, before the finalists are chosen.
    let linear_share = |evals: usize, c: &Candidate| {
        (evals as f64 / (c.spec.linear.max_iter.max(1) * folds.len()) as f64).min(1.0)
    };
    let (mut full, mut used, mut charged) = (0.0, 0.0, 0.0);
    for (c, r) in pool.iter().zip(&first_rung) {
        let n = need(c);
        match r {
            Some((_, Some(evals))) if families::of(c.spec.family).solver_scaled() => {
                let took = n * linear_share(*evals, c);
                full += n;
                used += took;
                charged += took;
            }
            _ => charged += n,
        }
    }
    let work_share = if full > 0.0 { used / full } else { 1.0 };
    let planned_pool = pool.len();
    if work_share < 1.0 && pool.len() < MAX_CANDIDATES {
        let mut more = pool.clone();
        fill(&mut more, &mut charged, search_budget, 0, &mut || {
            let c = draw(&mut rng, cjk, task, opts.seed, opts.encoder.as_deref());
            let share = if families::of(c.spec.family).solver_scaled() {
                work_share
            } else {
                1.0
            };
            let n = need(&c) * share;
            (c, n)
        });
        let added = more.split_off(planned_pool);
        if !added.is_empty() {
            on_event(AutotuneEvent::Extended {
                work_share,
                rungs: &[
                    planned_pool + added.len(),
                    (planned_pool + added.len()).div_ceil(3),
                ],
            });
            first_rung.extend(run_rung(&added, 0, planned_pool, on_event)?);
            pool.extend(added);
        }
    }

    let mut trials: Vec<Trial> = Vec::new();
    let finalists = best_first(first_rung, &mut trials, pool.len().div_ceil(3));
    let last_rung = run_rung(&finalists, 1, pool.len(), on_event)?;
    let best = best_first(last_rung, &mut trials, 1)
        .pop()
        .ok_or_else(|| ModelError::Unusable("the search produced no candidate".into()))?;
    let best_score = trials
        .iter()
        .rev()
        .find(|t| t.candidate == best)
        .map_or(f64::NAN, |t| t.score);
    on_event(AutotuneEvent::Final(&best));
    let mut cfg = best.config.clone();
    cfg.threads = threads;
    let mut outcome = train(
        records,
        source,
        Some(task),
        label_sep,
        &best.spec,
        &cfg,
        &mut |_| {},
    )?;
    if let Some(registered) = &encoder {
        if outcome.pipeline.net::<EncoderNet>().is_ok() {
            replace_encoder(&mut outcome.pipeline, registered.base.clone())?;
        }
    }
    drop(encoder);
    Ok(AutotuneOutcome {
        trials,
        best: Candidate {
            spec: best.spec,
            config: cfg,
        },
        best_score,
        outcome,
    })
}

/// The tokens the cost model counts in a text: every non-space character of CJK text, else
/// whitespace-separated words (close enough to every tokenizer for a cost estimate).
fn cost_tokens(t: &str, cjk: bool) -> Vec<&str> {
    if cjk {
        t.char_indices()
            .filter(|(_, c)| !c.is_whitespace())
            .map(|(i, c)| &t[i..i + c.len_utf8()])
            .collect()
    } else {
        t.split_whitespace().collect()
    }
}

/// What the cost model knows of the training texts' features, counted on an even sample of at
/// most [`FEATURE_SAMPLE`] characters of text and scaled to all of them.
struct FeatureStats {
    /// Distinct character n-grams of each length (index = length, 1 to [`MAX_CHAR_NGRAM`])
    /// summed over texts, as the featurizer makes them: within each distinct token (every
    /// character of CJK text, else whitespace-separated words) wrapped in `<` `>`, repeats in a
    /// text counted once.
    per_text_chars: [f64; MAX_CHAR_NGRAM + 1],
    /// Distinct features of the whole corpus, `[found in ≥ 1 text, in ≥ 2 texts]`, for words
    /// (index 0), word n-grams of length 2 and 3 (1, 2) and character n-grams of length n
    /// (index `2 + n`): the weights L-BFGS keeps for each class.
    corpus: [[f64; 2]; 3 + MAX_CHAR_NGRAM],
}

impl FeatureStats {
    fn of(texts: &[&str], cjk: bool) -> Self {
        let total: usize = texts.iter().map(|t| t.len()).sum();
        let step = total.div_ceil(FEATURE_SAMPLE).max(1);
        let mut per_text_chars = [0.0f64; MAX_CHAR_NGRAM + 1];
        let mut df: std::collections::HashMap<u64, u32> = std::collections::HashMap::new();
        let mut seen: std::collections::HashSet<u64> = std::collections::HashSet::new();
        let mut sampled = 0usize;
        let key = |kind: usize, h: u64| (h & ((1 << 56) - 1)) | ((kind as u64) << 56);
        for t in texts.iter().step_by(step) {
            sampled += 1;
            let tokens = cost_tokens(t, cjk);
            let hashes: Vec<u32> = tokens
                .iter()
                .map(|w| flywheel_text::ngrams::hash(w))
                .collect();
            let mut text_keys: std::collections::HashSet<u64> = std::collections::HashSet::new();
            text_keys.extend(hashes.iter().map(|&h| key(0, u64::from(h))));
            for n in 2..=3usize {
                for w in hashes.windows(n) {
                    let h = w.iter().fold(0u64, |h, &x| {
                        h.wrapping_mul(116_049_371).wrapping_add(u64::from(x))
                    });
                    text_keys.insert(key(n - 1, h));
                }
            }
            let mut distinct = tokens;
            distinct.sort_unstable();
            distinct.dedup();
            for (n, count) in per_text_chars.iter_mut().enumerate().skip(1) {
                seen.clear();
                for tok in &distinct {
                    flywheel_text::ngrams::char_ngrams(tok, n, n, 1 << 32, |h| {
                        seen.insert(key(2 + n, h));
                    });
                }
                *count += seen.len() as f64;
                text_keys.extend(seen.iter().copied());
            }
            for k in text_keys {
                *df.entry(k).or_insert(0) += 1;
            }
        }
        let scale = texts.len() as f64 / sampled.max(1) as f64;
        per_text_chars.iter_mut().for_each(|c| *c *= scale);
        let mut corpus = [[0.0f64; 2]; 3 + MAX_CHAR_NGRAM];
        for (k, n) in df {
            let kind = (k >> 56) as usize;
            corpus[kind][0] += 1.0;
            if n >= 2 {
                corpus[kind][1] += 1.0;
            }
        }
        // A vocabulary grows sublinearly with the text read (Heaps' law).
        let heaps = scale.powf(HEAPS_EXPONENT);
        corpus.iter_mut().flatten().for_each(|c| *c *= heaps);
        FeatureStats {
            per_text_chars,
            corpus,
        }
    }

    /// Distinct features of the corpus the spec keeps (weights per class).
    fn weights(&self, s: &ModelSpec) -> f64 {
        let at = usize::from(s.linear.min_df >= 2);
        let words: f64 = (0..s.bag.word_ngrams.clamp(1, 3))
            .map(|i| self.corpus[i][at])
            .sum();
        let chars: f64 = match s.bag.maxn {
            0 => 0.0,
            maxn => (s.bag.minn.max(1)..=maxn.min(MAX_CHAR_NGRAM))
                .map(|n| self.corpus[2 + n][at])
                .sum(),
        };
        words + chars
    }
}

/// Trains one candidate on `rows` (one thread) and scores it on `val`.
fn run_trial(
    c: &Candidate,
    rows: &[Record],
    val: &[Record],
    source: &str,
    task: Task,
    label_sep: &str,
    metric: &Metric,
) -> Result<(f64, f64, Option<usize>), ModelError> {
    let started = Instant::now();
    let out = fit(
        rows,
        source,
        Some(task),
        label_sep,
        &c.spec,
        &c.config,
        &mut |_| {},
    )?;
    let report = evaluate(&out.pipeline, val, source)?;
    Ok((
        metric.of(&report)?,
        started.elapsed().as_secs_f64(),
        out.solver_evaluations,
    ))
}

/// Moves a rung's trials that ran into `trials` and returns its `keep` best candidates, best
/// first; ties keep plan order, so the choice is deterministic.
fn best_first(
    results: Vec<Option<RungResult>>,
    trials: &mut Vec<Trial>,
    keep: usize,
) -> Vec<Candidate> {
    let mut scored: Vec<(f64, usize, Candidate)> = Vec::new();
    for (i, (t, _)) in results
        .into_iter()
        .enumerate()
        .filter_map(|(i, t)| Some((i, t?)))
    {
        scored.push((t.score, i, t.candidate.clone()));
        trials.push(t);
    }
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    scored.into_iter().take(keep).map(|s| s.2).collect()
}

/// Adds the candidates `next` draws (each with its charge) to `pool` while the charges fit
/// `budget` (or the pool holds fewer than `min`), skipping repeats; stops at the first that
/// does not fit, when the space looks exhausted, or at [`MAX_CANDIDATES`].
fn fill(
    pool: &mut Vec<Candidate>,
    charged: &mut f64,
    budget: f64,
    min: usize,
    next: &mut dyn FnMut() -> (Candidate, f64),
) {
    let mut draws = 0;
    while pool.len() < MAX_CANDIDATES {
        let (c, need) = next();
        draws += 1;
        if pool.contains(&c) {
            // A configuration already planned; stop when the space is exhausted.
            if draws > 20 * (pool.len() + 10) {
                break;
            }
            continue;
        }
        if *charged + need > budget && pool.len() >= min {
            break;
        }
        *charged += need;
        pool.push(c);
    }
}

/// One random configuration: with an encoder, a third of them the `encoder` family; of the
/// rest, half TF-IDF + a linear model (logistic regression or an L2-loss SVM) and half the
/// fastText-style family.
fn draw(rng: &mut Rng, cjk: bool, task: Task, seed: u64, encoder: Option<&str>) -> Candidate {
    let pick = |rng: &mut Rng, xs: &[usize]| xs[rng.below(xs.len())];
    let one_pass = TrainConfig {
        epochs: 1,
        validation_split: 0.0,
        seed,
        threads: 1,
        ..TrainConfig::default()
    };
    if let Some(dir) = encoder.filter(|_| rng.below(3) == 0) {
        let mut spec = ModelSpec::encoder(dir);
        spec.detect_cjk = false;
        let ngrams = rng.below(3) != 0;
        if let Some(e) = spec.encoder.as_mut() {
            e.ngrams = ngrams;
        }
        if ngrams {
            spec.tokenizer.segmentation = if cjk {
                [Segmentation::Cjk, Segmentation::Jieba][rng.below(2)]
            } else {
                Segmentation::Word
            };
            spec.bag.word_ngrams = pick(rng, &[1, 2, 2]);
        }
        spec.linear.c = [0.3, 1.0, 3.0, 10.0][rng.below(4)];
        spec.linear.max_iter = 300;
        return Candidate {
            spec,
            config: one_pass,
        };
    }
    if rng.below(2) == 0 {
        let mut spec = ModelSpec::linear();
        spec.detect_cjk = false;
        spec.tokenizer.segmentation = if cjk {
            [Segmentation::Cjk, Segmentation::Jieba][rng.below(2)]
        } else {
            Segmentation::Word
        };
        spec.bag.word_ngrams = pick(rng, &[1, 2, 2, 3]);
        let chars: [(usize, usize); 3] = if cjk {
            [(0, 0), (0, 0), (1, 2)]
        } else {
            [(0, 0), (2, 4), (2, 5)]
        };
        (spec.bag.minn, spec.bag.maxn) = chars[rng.below(chars.len())];
        let classify = matches!(task, Task::Binary | Task::Multiclass);
        // Logistic regression or (classification only) the L2-loss SVM, which wins where a
        // few n-grams separate the classes; each has its own useful range of `C`.
        spec.linear.c = if classify && rng.below(2) == 0 {
            spec.linear.loss = LinearLossChoice::SquaredHinge;
            [0.3, 1.0, 3.0, 10.0, 30.0][rng.below(5)]
        } else {
            [1.0, 3.0, 10.0, 30.0, 100.0, 1000.0][rng.below(6)]
        };
        // Dropping n-grams of a single text helps long documents with many rare n-grams and
        // can hurt small data sets, where a rare word is still evidence.
        spec.linear.min_df = pick(rng, &[1, 2]);
        // Class weights help macro-F1 where classes are unbalanced (classification only).
        spec.linear.balanced = classify && rng.below(2) == 0;
        // scikit-learn's default iteration cap: bounds a trial's cost.
        spec.linear.max_iter = 100;
        return Candidate {
            spec,
            config: one_pass,
        };
    }
    let mut spec = ModelSpec::fasttext();
    spec.detect_cjk = false;
    spec.tokenizer.segmentation = if cjk {
        [Segmentation::Cjk, Segmentation::Jieba][rng.below(2)]
    } else {
        Segmentation::Word
    };
    spec.embed_dim = pick(rng, &[16, 32, 64, 100]);
    spec.bag.word_ngrams = pick(rng, &[1, 2, 2, 3]);
    let chars: [(usize, usize); 4] = if cjk {
        [(0, 0), (0, 0), (1, 2), (1, 3)]
    } else {
        [(0, 0), (0, 0), (2, 4), (3, 6)]
    };
    let (minn, maxn) = chars[rng.below(chars.len())];
    spec.bag.minn = minn;
    spec.bag.maxn = maxn;
    let epochs = pick(rng, &[5, 10, 15, 25, 40, 60]);
    // Log-uniform learning rate in [0.05, 1.0] (regression needs smaller steps).
    let hi = if task == Task::Regression {
        0.1f64
    } else {
        1.0
    };
    let lr = rng.uniform(0.05f64.ln(), hi.ln()).exp();
    let config = TrainConfig {
        epochs,
        lr: Some((lr * 1000.0).round() / 1000.0),
        validation_split: 0.0,
        seed,
        threads: 1,
        ..TrainConfig::default()
    };
    Candidate { spec, config }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feature_stats_count_what_the_featurizer_makes() {
        let stats = FeatureStats::of(&["ab ab cd", "ab ef"], false);
        // Distinct tokens per text: {ab, cd} and {ab, ef}; each wraps to `<xy>`, giving 2
        // single characters, 3 bigrams, 2 trigrams and 1 four-gram.
        assert_eq!(stats.per_text_chars[1], 8.0);
        assert_eq!(stats.per_text_chars[2], 12.0);
        assert_eq!(stats.per_text_chars[3], 8.0);
        assert_eq!(stats.per_text_chars[4], 4.0);
        assert_eq!(stats.per_text_chars[5], 0.0);
        // Words: ab (in both texts), cd, ef; bigrams: "ab ab", "ab cd", "ab ef" (one text each).
        assert_eq!(stats.corpus[0], [3.0, 1.0]);
        assert_eq!(stats.corpus[1], [3.0, 0.0]);
        assert_eq!(stats.corpus[2], [1.0, 0.0]);
        // Character bigrams: <a ab b> (both texts), <c cd d> <e ef f> (one).
        assert_eq!(stats.corpus[2 + 2], [9.0, 3.0]);
        let mut spec = ModelSpec::linear();
        spec.bag.word_ngrams = 2;
        (spec.bag.minn, spec.bag.maxn) = (2, 2);
        spec.linear.min_df = 1;
        assert_eq!(stats.weights(&spec), 3.0 + 3.0 + 9.0);
        spec.linear.min_df = 2;
        assert_eq!(stats.weights(&spec), 1.0 + 0.0 + 3.0);
        // CJK text: every character is a token.
        let zh = FeatureStats::of(&["好好学习"], true);
        assert_eq!(zh.corpus[0], [3.0, 0.0]);
        assert_eq!(zh.per_text_chars[1], 3.0);
    }

    #[test]
    fn metrics_parse() {
        assert_eq!("macro-f1".parse::<Metric>().unwrap(), Metric::MacroF1);
        assert_eq!(
            "f1:spam".parse::<Metric>().unwrap(),
            Metric::F1("spam".into())
        );
        assert!("f1:".parse::<Metric>().is_err());
        assert!("auc".parse::<Metric>().is_err());
    }
}
