//! Retraining a registered model from what the store holds: the champion's base data plus the
//! accepted feedback, with the champion's spec and a recorded seed; the challenger is judged
//! against the champion on the frozen holdout (and, for the record, on a held-back slice of the
//! feedback) and promoted only when [`flywheel_model::judge`] says so. Every outcome, including
//! a failed training, is stored as a decision.

use std::collections::BTreeMap;

use flywheel_data::Record;
use flywheel_model::{
    evaluate, judge, train, Artifact, Family, Lineage, ModelError, ModelSpec, PromotionPolicy,
    Scores, Task,
};
use flywheel_store::{dataset_sha256, Alias, DataRow, Feedback, RetrainDecision, Store};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde_json::json;

use crate::access::now_unix;

/// How to retrain.
#[derive(Debug, Clone)]
pub struct RetrainOptions {
    /// When the challenger may replace the champion.
    pub policy: PromotionPolicy,
    /// Training seed; `None`: the champion's seed plus the highest feedback id (recorded).
    pub seed: Option<u64>,
    /// Training threads.
    pub threads: usize,
    /// Why the retrain runs: `manual`, `feedback` or `schedule`.
    pub cause: String,
}

impl Default for RetrainOptions {
    fn default() -> Self {
        RetrainOptions {
            policy: PromotionPolicy::default(),
            seed: None,
            threads: 1,
            cause: "manual".to_string(),
        }
    }
}

/// Why a retrain could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum RetrainError {
    /// The store failed (see [`flywheel_store::Error`]).
    #[error(transparent)]
    Store(#[from] flywheel_store::Error),
    /// Reading the champion or training the challenger failed.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// Something the retrain needs is not in the store.
    #[error("{0}")]
    Missing(String),
    /// The training task panicked or was cancelled.
    #[error("the training task failed: {0}")]
    Task(String),
}

/// One in five feedback items (by a hash of the id) is held back from training and used only
/// to compare champion and challenger.
pub fn held_back(feedback_id: i64) -> bool {
    let mut z = (feedback_id as u64).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)).is_multiple_of(5)
}

/// The latest correction per logged prediction (or per text, for feedback sent with its text),
/// in id order.
pub fn latest_feedback(all: Vec<Feedback>) -> Vec<Feedback> {
    let mut latest: BTreeMap<(Option<i64>, String), Feedback> = BTreeMap::new();
    for f in all {
        let key = match f.feedback.prediction_id {
            Some(p) => (Some(p), String::new()),
            None => (None, f.feedback.text.clone()),
        };
        let newer = latest.get(&key).is_none_or(|old| old.id < f.id);
        if newer {
            latest.insert(key, f);
        }
    }
    let mut out: Vec<Feedback> = latest.into_values().collect();
    out.sort_by_key(|f| f.id);
    out
}

/// Stored rows as records, numbered from line 1.
pub(crate) fn records(rows: &[DataRow]) -> Vec<Record> {
    rows.iter()
        .enumerate()
        .map(|(i, r)| Record {
            text: r.text.clone(),
            labels: r.labels.clone(),
            line: i as u64 + 1,
        })
        .collect()
}

fn to_row(f: &Feedback) -> DataRow {
    DataRow {
        text: f.feedback.text.clone(),
        labels: f.feedback.labels.clone(),
    }
}

/// Retrains `name`'s champion and records the decision (see the module docs). Returns the
/// stored decision; a training failure is a decision too (not promoted, with its reason).
pub async fn retrain(
    store: &Store,
    name: &str,
    opts: &RetrainOptions,
) -> Result<RetrainDecision, RetrainError> {
    let champion_version = store
        .resolve_alias(name, Alias::Champion)
        .await?
        .ok_or_else(|| {
            RetrainError::Missing(format!(
                "model {name:?} has no champion: promote a version first (flywheel models promote)"
            ))
        })?;
    let base = store
        .base_dataset(name, champion_version)
        .await?
        .ok_or_else(|| {
            RetrainError::Missing(format!(
                "version {champion_version} of {name:?} has no base data: push it with \
             `flywheel models push MODEL --name {name} --data TRAIN --holdout HOLDOUT`"
            ))
        })?;
    let stored = store.get_version(name, champion_version).await?;
    let base_rows = store.dataset_rows(base.id).await?;
    let (_, upto) = store.count_feedback_since(name, 0).await?;
    let feedback: Vec<Feedback> = store
        .feedback_since(name, 0)
        .await?
        .into_iter()
        .filter(|f| f.id <= upto)
        .collect();
    let feedback = latest_feedback(feedback);
    let (heldback, used): (Vec<&Feedback>, Vec<&Feedback>) =
        feedback.iter().partition(|f| held_back(f.id));
    // A model created without labelled data (zero-shot) freezes its first held-back
    // corrections as its holdout.
    if store.holdout_dataset(name).await?.is_none() && !heldback.is_empty() && base_rows.is_empty()
    {
        let rows: Vec<DataRow> = heldback.iter().map(|f| to_row(f)).collect();
        store.freeze_holdout(name, &rows, now_unix()).await?;
    }
    let holdout = store.holdout_dataset(name).await?.ok_or_else(|| {
        RetrainError::Missing(format!(
            "model {name:?} has no frozen holdout: give one at push with --holdout FILE{}",
            if base_rows.is_empty() {
                " (or label more: a model without base data freezes its first held-back \
                 corrections, one in five)"
            } else {
                ""
            }
        ))
    })?;
    let holdout_rows = store.dataset_rows(holdout.id).await?;

    let now = now_unix();
    let mut decision = RetrainDecision {
        id: 0,
        name: name.to_string(),
        champion_version,
        challenger_version: None,
        promoted: false,
        reason: String::new(),
        report: "{}".to_string(),
        feedback_rows: used.len() as i64,
        feedback_upto: upto,
        seed: 0,
        cause: opts.cause.clone(),
        at: now,
    };
    if used.is_empty() {
        decision.reason = "skipped: no feedback to train on yet".to_string();
        return Ok(store.record_decision(&decision).await?);
    }

    // A correction of a base-data text (an audit item, or a served text that was also in the
    // data) replaces that row: the old label is not trained on.
    let corrected: std::collections::HashSet<&str> = used
        .iter()
        .chain(heldback.iter())
        .map(|f| f.feedback.text.as_str())
        .collect();
    let mut train_rows: Vec<DataRow> = base_rows
        .into_iter()
        .filter(|r| !corrected.contains(r.text.as_str()))
        .collect();
    train_rows.extend(used.iter().map(|f| to_row(f)));
    let heldback_rows: Vec<DataRow> = heldback.iter().map(|f| to_row(f)).collect();
    let name_owned = name.to_string();
    let opts_owned = opts.clone();
    let base_sha = base.sha256.clone();
    let feedback_rows = used.len() as u64;
    let job = tokio::task::spawn_blocking(move || {
        // Its own threads: evaluation's parallel passes must not take the serving cores.
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(opts_owned.threads.max(1))
            .thread_name(|i| format!("flywheel-retrain-{i}"))
            .build()
            .map_err(|source| ModelError::Threads {
                threads: opts_owned.threads.max(1),
                source,
            })?;
        pool.install(|| {
            train_challenger(Challenge {
                name: &name_owned,
                champion_version,
                champion_bytes: &stored.bytes,
                train_rows,
                holdout_rows: &holdout_rows,
                heldback_rows: &heldback_rows,
                base_sha256: &base_sha,
                feedback_rows,
                feedback_upto: upto,
                opts: &opts_owned,
            })
        })
    })
    .await
    .map_err(|e| RetrainError::Task(e.to_string()))?;
    match job {
        Ok(done) => {
            decision.seed = done.seed as i64;
            decision.promoted = done.promote;
            decision.reason = done.reason;
            decision.report = done.report;
            Ok(store
                .finish_retrain(&done.bytes, Some(base.id), &decision)
                .await?)
        }
        Err(e) => {
            decision.reason = format!("training failed: {e}");
            Ok(store.record_decision(&decision).await?)
        }
    }
}

struct Challenge<'a> {
    name: &'a str,
    champion_version: i64,
    champion_bytes: &'a [u8],
    train_rows: Vec<DataRow>,
    holdout_rows: &'a [DataRow],
    heldback_rows: &'a [DataRow],
    base_sha256: &'a str,
    feedback_rows: u64,
    feedback_upto: i64,
    opts: &'a RetrainOptions,
}

struct Challenged {
    bytes: Vec<u8>,
    seed: u64,
    promote: bool,
    reason: String,
    report: String,
}

/// The settings a challenger trains with: the champion's, except that a zero-shot champion's
/// challenger learns from the labels it now has — SetFit on the same encoder, fine-tuned
/// again from the base weights.
fn challenger_spec(champion: &ModelSpec) -> ModelSpec {
    match (champion.family, &champion.encoder) {
        (Family::ZeroShot, Some(e)) => {
            let mut spec = ModelSpec::setfit(e.dir.clone());
            if let Some(s) = spec.encoder.as_mut() {
                s.sha256 = e.sha256.clone();
            }
            spec
        }
        _ => champion.clone(),
    }
}

/// Trains and judges a challenger (blocking; CPU-bound on `opts.threads` threads).
fn train_challenger(c: Challenge<'_>) -> Result<Challenged, ModelError> {
    let source = format!("registry:{}", c.name);
    let champion = Artifact::from_bytes(
        c.champion_bytes,
        &format!("{} v{}", c.name, c.champion_version),
    )?;
    let training = champion.meta.training.as_ref().ok_or_else(|| {
        ModelError::NotApplicable(format!(
            "{} v{} records no training settings to retrain with",
            c.name, c.champion_version
        ))
    })?;
    let mut cfg = training.config.clone();
    cfg.seed = c
        .opts
        .seed
        .unwrap_or_else(|| cfg.seed.wrapping_add(c.feedback_upto as u64));
    cfg.threads = c.opts.threads.max(1);
    // Base rows and feedback interleaved by the seed, so the validation tail holds both.
    let mut rows = c.train_rows;
    rows.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(cfg.seed));
    let data_sha = dataset_sha256(&rows);
    let train_records = records(&rows);
    let task = champion.pipeline.labels.task;
    let outcome = train(
        &train_records,
        &source,
        Some(task),
        &champion.meta.label_sep,
        &challenger_spec(&champion.pipeline.spec),
        &cfg,
        &mut |_| {},
    )?;
    let mut challenger = Artifact::from_training(outcome, cfg.clone(), &source, &data_sha);
    challenger.meta.parent = Some(format!("{} v{}", c.name, c.champion_version));
    challenger.meta.lineage = Some(Lineage {
        model: c.name.to_string(),
        parent_version: c.champion_version,
        base_sha256: c.base_sha256.to_string(),
        feedback_rows: c.feedback_rows,
        feedback_upto: c.feedback_upto,
    });

    let holdout = records(c.holdout_rows);
    let champ_holdout = Scores::of(&evaluate(
        &champion.pipeline,
        &holdout,
        "the frozen holdout",
    )?);
    let chall_holdout = Scores::of(&evaluate(
        &challenger.pipeline,
        &holdout,
        "the frozen holdout",
    )?);
    let metric = if task == Task::Regression {
        "R²"
    } else {
        "macro-F1"
    };
    let verdict = judge(&champ_holdout, &chall_holdout, &c.opts.policy, metric);
    let heldback = if c.heldback_rows.is_empty() {
        serde_json::Value::Null
    } else {
        let rows = records(c.heldback_rows);
        let a = evaluate(&champion.pipeline, &rows, "held-back feedback").map(|r| Scores::of(&r));
        let b = evaluate(&challenger.pipeline, &rows, "held-back feedback").map(|r| Scores::of(&r));
        match (a, b) {
            (Ok(a), Ok(b)) => json!({"rows": rows.len(), "champion": a, "challenger": b}),
            (Err(e), _) | (_, Err(e)) => json!({"rows": rows.len(), "error": e.to_string()}),
        }
    };
    let report = json!({
        "metric": metric,
        "holdout": {"rows": holdout.len(), "champion": champ_holdout, "challenger": chall_holdout},
        "heldback_feedback": heldback,
        "train_rows": train_records.len(),
        "feedback_rows": c.feedback_rows,
        "seed": cfg.seed,
        "min_gain_pt": c.opts.policy.min_gain,
        "max_class_drop_pt": c.opts.policy.max_class_drop,
    });
    Ok(Challenged {
        bytes: challenger.to_bytes()?,
        seed: cfg.seed,
        promote: verdict.promote,
        reason: verdict.reason,
        report: report.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use flywheel_store::NewFeedback;

    fn fb(id: i64, prediction: Option<i64>, text: &str, label: &str) -> Feedback {
        Feedback {
            id,
            feedback: NewFeedback {
                tenant: "t".into(),
                model: "m".into(),
                prediction_id: prediction,
                text: text.into(),
                labels: vec![label.into()],
                request_id: id.to_string(),
                request_sha256: String::new(),
                created_at: 0,
            },
        }
    }

    #[test]
    fn the_latest_correction_wins() {
        let all = vec![
            fb(1, Some(7), "a", "x"),
            fb(2, None, "b", "x"),
            fb(3, Some(7), "a", "y"),
            fb(4, None, "b", "z"),
            fb(5, None, "c", "x"),
        ];
        let kept: Vec<(i64, String)> = latest_feedback(all)
            .into_iter()
            .map(|f| (f.id, f.feedback.labels[0].clone()))
            .collect();
        assert_eq!(kept, [(3, "y".into()), (4, "z".into()), (5, "x".into())]);
    }

    #[test]
    fn about_one_in_five_is_held_back() {
        let n = (1..=10_000).filter(|&id| held_back(id)).count();
        assert!((1800..2200).contains(&n), "{n}");
        assert_eq!(held_back(42), held_back(42));
    }
}
