//! The label-error audit: out-of-fold probabilities from `k` models of one family, confident
//! learning over them (per-class thresholds, the calibrated confident joint, pruning by noise
//! rate, as Northcutt et al. 2021 and cleanlab's `find_label_issues` define them), and texts
//! that appear more than once with conflicting labels.

use std::collections::BTreeMap;
use std::time::Instant;

use flywheel_data::Record;
use flywheel_text::segment::{segment, Segmentation};
use serde::Serialize;

use crate::autotune::stratified_folds;
use crate::spec::{ModelSpec, TrainConfig};
use crate::task::{LabelSet, Targets, Task};
use crate::train::fit;
use crate::ModelError;
use rayon::prelude::*;

/// How an audit gets its out-of-fold probabilities.
#[derive(Debug, Clone)]
pub struct AuditOptions {
    /// The model each fold trains (its validation split is set to 0: a fold's held-out rows are
    /// its validation).
    pub spec: ModelSpec,
    /// Training settings of each fold's model.
    pub cfg: TrainConfig,
    /// Number of folds (at least 2) when `fold_of` is not given.
    pub folds: usize,
    /// The fold of every row (`0..k`), to audit on someone else's folds; `None`: stratified
    /// folds drawn with `cfg.seed`.
    pub fold_of: Option<Vec<usize>>,
}

/// Progress of an audit.
#[derive(Debug, Clone, Copy)]
pub enum AuditEvent {
    /// Fold `fold`'s (1-based) held-out rows are scored (the folds train at once; their
    /// events come in order when all are done).
    Fold {
        /// This fold, from 1.
        fold: usize,
        /// All folds.
        folds: usize,
        /// Seconds since the audit started.
        seconds: f64,
    },
}

/// One row whose given label is probably wrong.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Suspect {
    /// 0-based index of the row among the data rows.
    pub row: usize,
    /// The 1-based line where it starts in the file.
    pub line: u64,
    /// The text.
    pub text: String,
    /// The label it was given.
    pub given: String,
    /// The label the out-of-fold model prefers.
    pub suggested: String,
    /// Out-of-fold probability of the given label (the label quality: lower is more suspect).
    pub given_probability: f32,
    /// Out-of-fold probability of the suggested label.
    pub suggested_probability: f32,
}

/// What the audit estimates of one class's labels.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassNoise {
    /// The label.
    pub label: String,
    /// Rows given this label.
    pub rows: usize,
    /// Confident-learning threshold: the mean out-of-fold probability of this label over the
    /// rows given it.
    pub threshold: f32,
    /// Rows given this label whose true label is estimated to be another (the calibrated
    /// confident joint's off-diagonal row sum).
    pub estimated_errors: u64,
    /// `estimated_errors / rows`.
    pub noise_rate: f64,
}

/// One row of a group of duplicates.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DuplicateRow {
    /// 0-based data row.
    pub row: usize,
    /// 1-based line in the file.
    pub line: u64,
    /// Its label(s), joined with `|`.
    pub label: String,
}

/// Texts equal after normalisation (NFKC, lower case, words only) that carry different labels.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Conflict {
    /// The normalised text.
    pub normalized: String,
    /// The first row's text as written.
    pub text: String,
    /// Every row of the group.
    pub rows: Vec<DuplicateRow>,
}

/// An audit's findings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Audit {
    /// The data's name.
    pub source: String,
    /// Data rows.
    pub rows: usize,
    /// Label names, in output order.
    pub labels: Vec<String>,
    /// The family whose out-of-fold probabilities were used.
    pub family: String,
    /// Number of folds.
    pub folds: usize,
    /// Accuracy of the out-of-fold predictions against the given labels.
    pub out_of_fold_accuracy: f64,
    /// Per-class thresholds, sizes and estimated noise.
    pub classes: Vec<ClassNoise>,
    /// The calibrated confident joint: `joint[given][true]` row counts.
    pub joint: Vec<Vec<u64>>,
    /// Suspect rows, most suspect (lowest given-label probability) first.
    pub suspects: Vec<Suspect>,
    /// Duplicate texts with conflicting labels, largest group first.
    pub conflicts: Vec<Conflict>,
    /// Wall time of the whole audit.
    pub seconds: f64,
}

/// Confident learning over out-of-fold probabilities.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfidentLearning {
    /// Per-class thresholds (mean probability of the class over the rows given it).
    pub thresholds: Vec<f64>,
    /// The calibrated confident joint `[given][true]`: rows sum to the class counts, all to `n`.
    pub joint: Vec<Vec<u64>>,
    /// Rows flagged as label issues, in row order.
    pub issues: Vec<usize>,
}

/// Tolerance of probability comparisons (cleanlab's `FLOATING_POINT_COMPARISON`).
const EPS: f64 = 1e-6;

/// Confident learning on `n` rows' given classes and out-of-fold probabilities (`[n, k]`,
/// row-major): thresholds, the calibrated confident joint and the rows pruned by noise rate
/// (for every given class `i` and other class `j`, the `joint[i][j]` rows given `i` with the
/// largest margin `p_j − p_i`), less those whose most probable class is the given one.
pub fn confident_learning(given: &[usize], probs: &[f64], k: usize) -> ConfidentLearning {
    let n = given.len();
    let p = |r: usize, c: usize| probs[r * k + c];
    let mut counts = vec![0u64; k];
    let mut sums = vec![0f64; k];
    for (r, &g) in given.iter().enumerate() {
        counts[g] += 1;
        sums[g] += p(r, g);
    }
    let thresholds: Vec<f64> = (0..k)
        .map(|c| {
            if counts[c] > 0 {
                sums[c] / counts[c] as f64
            } else {
                // A class nobody was given: never confident.
                f64::INFINITY
            }
        })
        .collect();
    // The confident joint: each row whose probability reaches some class's threshold is
    // counted under (given, guessed true class).
    let mut cj = vec![vec![0f64; k]; k];
    for (r, &g) in given.iter().enumerate() {
        let confident: Vec<usize> = (0..k).filter(|&c| p(r, c) >= thresholds[c] - EPS).collect();
        let guess = match confident.len() {
            0 => continue,
            1 => confident[0],
            _ => argmax_row(&probs[r * k..(r + 1) * k]),
        };
        cj[g][guess] += 1.0;
    }
    for (c, row) in cj.iter_mut().enumerate() {
        row[c] = row[c].max(1.0);
    }
    // Calibration: each given class's row sums to its count, the whole to n.
    for (c, row) in cj.iter_mut().enumerate() {
        let total: f64 = row.iter().sum();
        let scale = counts[c] as f64 / total.max(f64::MIN_POSITIVE);
        row.iter_mut().for_each(|v| *v *= scale);
    }
    let all: f64 = cj.iter().flatten().sum();
    let scale = n as f64 / all.max(f64::MIN_POSITIVE);
    let joint: Vec<Vec<u64>> = cj
        .iter()
        .map(|row| round_preserving_sum(&row.iter().map(|v| v * scale).collect::<Vec<_>>()))
        .collect();
    // Pruning by noise rate.
    let mut flagged = vec![false; n];
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); k];
    for (r, &g) in given.iter().enumerate() {
        by_class[g].push(r);
    }
    for (i, rows) in by_class.iter().enumerate() {
        if rows.len() <= 1 {
            continue;
        }
        for j in (0..k).filter(|&j| j != i) {
            let take = joint[i][j] as usize;
            if take == 0 {
                continue;
            }
            let mut order = rows.clone();
            // Largest margin first; ties keep row order.
            order.sort_by(|&a, &b| (p(b, j) - p(b, i)).total_cmp(&(p(a, j) - p(a, i))));
            for &r in order.iter().take(take) {
                flagged[r] = true;
            }
        }
    }
    let issues = (0..n)
        .filter(|&r| {
            if !flagged[r] {
                return false;
            }
            // A row the model itself predicts as given is not an issue (the given class wins
            // ties).
            let g = given[r];
            let pg = p(r, g) + EPS;
            !(0..k).all(|c| c == g || p(r, c) <= pg)
        })
        .collect();
    ConfidentLearning {
        thresholds,
        joint,
        issues,
    }
}

/// Index of the largest value (the first on ties).
fn argmax_row(row: &[f64]) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best
}

/// Rounds to integers whose sum is the rounded sum of the input, as cleanlab's
/// `round_preserving_sum` does: each value to the nearest integer (ties to even), then the
/// difference goes one by one to the values that rounding moved furthest the other way (among
/// equals, the last first when adding, the first when taking away).
fn round_preserving_sum(values: &[f64]) -> Vec<u64> {
    let target = values.iter().sum::<f64>().round_ties_even() as i64;
    let mut ints: Vec<i64> = values.iter().map(|v| v.round_ties_even() as i64).collect();
    let diff = target - ints.iter().sum::<i64>();
    let mut order: Vec<usize> = (0..values.len()).collect();
    // Stable, smallest remainder `value − rounded` first.
    order.sort_by(|&a, &b| (values[a] - ints[a] as f64).total_cmp(&(values[b] - ints[b] as f64)));
    if diff > 0 {
        order.reverse();
    }
    for &i in order.iter().cycle().take(diff.unsigned_abs() as usize) {
        ints[i] += diff.signum();
    }
    ints.into_iter().map(|v| v.max(0) as u64).collect()
}

/// The key under which two texts count as duplicates: the words of the text after NFKC and
/// lower-casing, one space apart (punctuation, case and spacing do not matter).
pub fn duplicate_key(text: &str) -> String {
    let mut key = String::with_capacity(text.len());
    segment(Segmentation::Word, false, text, |token, _, _| {
        if token.chars().any(char::is_alphanumeric) {
            if !key.is_empty() {
                key.push(' ');
            }
            key.push_str(token);
        }
    });
    key
}

/// Groups of rows whose texts are duplicates (see [`duplicate_key`]) but whose labels differ,
/// largest group first.
pub fn conflicting_duplicates(records: &[Record]) -> Vec<Conflict> {
    let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (r, rec) in records.iter().enumerate() {
        let key = duplicate_key(&rec.text);
        if !key.is_empty() {
            groups.entry(key).or_default().push(r);
        }
    }
    let mut out: Vec<Conflict> = groups
        .into_iter()
        .filter(|(_, rows)| {
            rows.len() > 1
                && rows
                    .iter()
                    .any(|&r| records[r].labels != records[rows[0]].labels)
        })
        .map(|(normalized, rows)| Conflict {
            text: records[rows[0]].text.clone(),
            normalized,
            rows: rows
                .iter()
                .map(|&r| DuplicateRow {
                    row: r,
                    line: records[r].line,
                    label: records[r].labels.join("|"),
                })
                .collect(),
        })
        .collect();
    out.sort_by_key(|c| std::cmp::Reverse(c.rows.len()));
    out
}

/// Audits the labels of `records` (binary or multi-class; `source` names them in messages):
/// trains `opts.spec` on all folds but one, `k` times, scores each held-out fold, and runs
/// [`confident_learning`] over the out-of-fold probabilities; also finds conflicting
/// duplicates. `on_event` sees each fold finish.
pub fn audit(
    records: &[Record],
    source: &str,
    task: Option<Task>,
    label_sep: &str,
    opts: &AuditOptions,
    on_event: &mut dyn FnMut(AuditEvent),
) -> Result<Audit, ModelError> {
    let started = Instant::now();
    let labels = LabelSet::infer(records, task, label_sep, source)?;
    if !matches!(labels.task, Task::Binary | Task::Multiclass) {
        return Err(ModelError::NotApplicable(format!(
            "{source}: the audit reads single-label classification data, not a {} task",
            labels.task
        )));
    }
    let targets = labels.encode(records, source)?;
    let k = labels.labels.len();
    let n = records.len();
    let given: Vec<usize> = match &targets {
        Targets::Classes(c) => c.iter().map(|&c| c as usize).collect(),
        Targets::Values(v) => v.iter().map(|&v| usize::from(v > 0.5)).collect(),
    };
    let folds: Vec<Vec<usize>> = match &opts.fold_of {
        Some(fold_of) => {
            if fold_of.len() != n {
                return Err(ModelError::Setting(format!(
                    "the folds give {} rows but {source} has {n}",
                    fold_of.len()
                )));
            }
            let count = fold_of.iter().max().map_or(0, |m| m + 1);
            let mut held: Vec<Vec<usize>> = vec![Vec::new(); count];
            for (r, &f) in fold_of.iter().enumerate() {
                held[f].push(r);
            }
            if count < 2 || held.iter().any(Vec::is_empty) {
                return Err(ModelError::Setting(format!(
                    "the folds must number at least 2 and each hold a row (got {count} folds)"
                )));
            }
            held
        }
        None => {
            if opts.folds < 2 {
                return Err(ModelError::Setting(format!(
                    "--folds must be at least 2, got {}",
                    opts.folds
                )));
            }
            stratified_folds(&targets, labels.task, n, opts.folds, opts.cfg.seed)
                .into_iter()
                .map(|(_, held)| held)
                .collect()
        }
    };
    let mut cfg = opts.cfg.clone();
    cfg.validation_split = 0.0;
    let mut probs = vec![0f64; n * k];
    let mut in_fold = vec![usize::MAX; n];
    for (f, held) in folds.iter().enumerate() {
        for &r in held {
            in_fold[r] = f;
        }
    }
    // The folds train at once on the current rayon pool (each also parallel inside).
    let fold_probs: Vec<Result<Vec<f64>, ModelError>> = folds
        .par_iter()
        .enumerate()
        .map(|(f, held)| {
            let train_rows: Vec<Record> = (0..n)
                .filter(|&r| in_fold[r] != f)
                .map(|r| records[r].clone())
                .collect();
            let fold_source = format!("{source} (fold {} of {})", f + 1, folds.len());
            let outcome = fit(
                &train_rows,
                &fold_source,
                Some(labels.task),
                label_sep,
                &opts.spec,
                &cfg,
                &mut |_| {},
            )?;
            let pipeline = outcome.pipeline;
            // A fold's model may lack a class that only held-out rows carry: its columns map
            // by name, a missing class gets probability 0.
            let columns: Vec<Option<usize>> = labels
                .labels
                .iter()
                .map(|l| pipeline.labels.labels.iter().position(|m| m == l))
                .collect();
            let texts: Vec<&str> = held.iter().map(|&r| records[r].text.as_str()).collect();
            let mut out = vec![0f64; held.len() * k];
            for (i, prediction) in pipeline.predict(&texts)?.iter().enumerate() {
                if let crate::Prediction::Class { scores, .. } = prediction {
                    for (c, col) in columns.iter().enumerate() {
                        out[i * k + c] = col.map_or(0.0, |m| f64::from(scores[m].1));
                    }
                }
            }
            Ok(out)
        })
        .collect();
    for (f, (held, fold)) in folds.iter().zip(fold_probs).enumerate() {
        let fold = fold?;
        for (i, &r) in held.iter().enumerate() {
            probs[r * k..(r + 1) * k].copy_from_slice(&fold[i * k..(i + 1) * k]);
        }
        on_event(AuditEvent::Fold {
            fold: f + 1,
            folds: folds.len(),
            seconds: started.elapsed().as_secs_f64(),
        });
    }
    let correct = (0..n)
        .filter(|&r| argmax_row(&probs[r * k..(r + 1) * k]) == given[r])
        .count();
    let cl = confident_learning(&given, &probs, k);
    let mut suspects: Vec<Suspect> = cl
        .issues
        .iter()
        .map(|&r| {
            let row = &probs[r * k..(r + 1) * k];
            let best = (0..k)
                .filter(|&c| c != given[r])
                .max_by(|&a, &b| row[a].total_cmp(&row[b]))
                .unwrap_or(0);
            Suspect {
                row: r,
                line: records[r].line,
                text: records[r].text.clone(),
                given: labels.labels[given[r]].clone(),
                suggested: labels.labels[best].clone(),
                given_probability: row[given[r]] as f32,
                suggested_probability: row[best] as f32,
            }
        })
        .collect();
    suspects.sort_by(|a, b| {
        a.given_probability
            .total_cmp(&b.given_probability)
            .then(a.row.cmp(&b.row))
    });
    let classes = (0..k)
        .map(|c| {
            let rows = given.iter().filter(|&&g| g == c).count();
            let errors: u64 = (0..k).filter(|&j| j != c).map(|j| cl.joint[c][j]).sum();
            ClassNoise {
                label: labels.labels[c].clone(),
                rows,
                threshold: cl.thresholds[c] as f32,
                estimated_errors: errors,
                noise_rate: if rows > 0 {
                    errors as f64 / rows as f64
                } else {
                    0.0
                },
            }
        })
        .collect();
    Ok(Audit {
        source: source.to_string(),
        rows: n,
        labels: labels.labels.clone(),
        family: opts.spec.family.to_string(),
        folds: folds.len(),
        out_of_fold_accuracy: correct as f64 / n.max(1) as f64,
        classes,
        joint: cl.joint,
        suspects,
        conflicts: conflicting_duplicates(records),
        seconds: started.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_keeps_the_sum() {
        assert_eq!(round_preserving_sum(&[0.4, 0.4, 0.2]), vec![0, 1, 0]);
        // Ties to even (2, 2, 1 = 5 > 4), then the first of the equal remainders gives one back.
        assert_eq!(round_preserving_sum(&[1.5, 1.5, 1.0]), vec![1, 2, 1]);
        assert_eq!(
            round_preserving_sum(&[6.0, 4.5, 9.0, 4.5, 81.0]),
            vec![6, 4, 9, 5, 81]
        );
        let v = round_preserving_sum(&[2.6, 2.6, 2.8]);
        assert_eq!(v.iter().sum::<u64>(), 8);
    }

    /// Four rows per class, one of class 0's rows is confidently class 1: it alone is flagged,
    /// and the joint moves one row of class 0 to class 1.
    #[test]
    fn one_flipped_row_is_found() {
        let given = vec![0, 0, 0, 0, 1, 1, 1, 1];
        let probs = vec![
            0.9, 0.1, 0.8, 0.2, 0.85, 0.15, 0.1, 0.9, // row 3 given 0, looks like 1
            0.1, 0.9, 0.2, 0.8, 0.15, 0.85, 0.3, 0.7,
        ];
        let cl = confident_learning(&given, &probs, 2);
        assert_eq!(cl.issues, vec![3]);
        assert_eq!(cl.joint, vec![vec![3, 1], vec![0, 4]]);
        assert!((cl.thresholds[0] - (0.9 + 0.8 + 0.85 + 0.1) / 4.0).abs() < 1e-12);
    }

    /// A row predicted as its given label is never flagged, even if the joint asks for one.
    #[test]
    fn rows_predicted_as_given_are_kept() {
        let given = vec![0, 0, 0, 1, 1, 1];
        let probs = vec![0.9, 0.1, 0.6, 0.4, 0.55, 0.45, 0.1, 0.9, 0.2, 0.8, 0.3, 0.7];
        let cl = confident_learning(&given, &probs, 2);
        assert!(cl.issues.is_empty(), "{cl:?}");
    }

    #[test]
    fn duplicates_ignore_case_punctuation_and_spacing() {
        assert_eq!(
            duplicate_key("Hello,  WORLD!"),
            duplicate_key("hello world")
        );
        assert_ne!(duplicate_key("hello world"), duplicate_key("hello there"));
        let rec = |t: &str, l: &str, line| Record {
            text: t.into(),
            labels: vec![l.into()],
            line,
        };
        let records = vec![
            rec("Free prize!!", "spam", 2),
            rec("free prize", "ham", 3),
            rec("see you", "ham", 4),
            rec("See you.", "ham", 5),
        ];
        let c = conflicting_duplicates(&records);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].rows.len(), 2);
        assert_eq!(c[0].rows[1].line, 3);
    }
}
