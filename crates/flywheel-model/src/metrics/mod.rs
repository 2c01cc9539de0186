//! Evaluation metrics with scikit-learn semantics.
//!
//! Single-label classification, multi-label classification and regression
//! reports, plus a standalone binary ROC-AUC. Undefined ratios are 0
//! (scikit-learn's `zero_division=0`); averages run over every label passed,
//! including labels absent from both truth and predictions. Every input is
//! validated up front, so no report ever holds NaN or infinity.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// Index of the largest value (the first on ties).
pub fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best
}

/// Decimal places in the rendered tables (scikit-learn's `digits`).
const DIGITS: usize = 4;
/// Width of one numeric column in the rendered tables, as in scikit-learn.
const COL: usize = 9;

/// Why a report could not be computed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MetricsError {
    /// There are no examples.
    #[error("no examples to evaluate")]
    Empty,
    /// The label list is empty.
    #[error("the label list is empty")]
    NoLabels,
    /// A label name occurs twice.
    #[error("duplicate label name {0:?}")]
    DuplicateLabel(String),
    /// Two inputs that must be parallel differ in length.
    #[error("{what} has {actual} entries, expected {expected}")]
    LengthMismatch {
        /// The offending input.
        what: &'static str,
        /// The length it should have.
        expected: usize,
        /// Its length.
        actual: usize,
    },
    /// A class index is not below the number of labels.
    #[error("{what}[{index}] = {value} is not a label index (there are {n_labels} labels)")]
    LabelOutOfRange {
        /// The offending input.
        what: &'static str,
        /// Position of the example.
        index: usize,
        /// The index found there.
        value: usize,
        /// Number of labels.
        n_labels: usize,
    },
    /// A row of a per-example matrix has the wrong number of columns.
    #[error("{what} row {row} has {actual} columns, expected {expected}")]
    RowWidthMismatch {
        /// The offending input.
        what: &'static str,
        /// Position of the row.
        row: usize,
        /// The number of labels.
        expected: usize,
        /// The row's width.
        actual: usize,
    },
    /// A probability is NaN or outside `[0, 1]`.
    #[error("probs[{row}][{col}] = {value} is not a probability in [0, 1]")]
    InvalidProbability {
        /// Example index.
        row: usize,
        /// Class index.
        col: usize,
        /// The value found.
        value: f32,
    },
    /// A regression value is NaN or infinite.
    #[error("{what}[{index}] is not finite")]
    NonFinite {
        /// The offending input.
        what: &'static str,
        /// Position of the value.
        index: usize,
    },
}

/// Per-class scores.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClassMetrics {
    /// `tp / (tp + fp)`, 0 when nothing was predicted as this class.
    pub precision: f64,
    /// `tp / (tp + fn)`, 0 when the class never occurs in the truth.
    pub recall: f64,
    /// `2tp / (2tp + fp + fn)`, 0 when that is `0 / 0`.
    pub f1: f64,
    /// Number of examples whose true label is this class.
    pub support: u64,
}

impl ClassMetrics {
    fn from_counts(tp: u64, fp: u64, fn_: u64) -> Self {
        ClassMetrics {
            precision: ratio(tp, tp + fp),
            recall: ratio(tp, tp + fn_),
            f1: ratio(2 * tp, 2 * tp + fp + fn_),
            support: tp + fn_,
        }
    }
}

/// Evaluation of a single-label classifier.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClassificationReport {
    /// Number of examples.
    pub n: u64,
    /// Fraction of examples predicted correctly.
    pub accuracy: f64,
    /// Unweighted mean of per-class F1 over all labels.
    pub macro_f1: f64,
    /// Mean of per-class F1 weighted by support.
    pub weighted_f1: f64,
    /// Label names; index `i` is class `i`.
    pub labels: Vec<String>,
    /// Scores keyed by label name.
    pub per_class: BTreeMap<String, ClassMetrics>,
    /// Counts: rows are the true class, columns the predicted class, in `labels` order.
    pub confusion_matrix: Vec<Vec<u64>>,
    /// ROC-AUC of the `labels[1]` probability; binary tasks with both classes present only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roc_auc: Option<f64>,
    /// Mean cross-entropy of the probabilities; present when probabilities were given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_loss: Option<f64>,
}

/// Scores single-label predictions.
///
/// `y_true` and `y_pred` hold class indices into `labels`. `probs`, when
/// given, holds one row of class probabilities per example (columns in
/// `labels` order); it adds `log_loss` (needs at least two labels) and, for
/// exactly two labels, `roc_auc` with `labels[1]` as the positive class.
/// As in scikit-learn, probabilities are clipped to `[eps, 1 - eps]` with
/// `eps = f32::EPSILON` (machine epsilon of their dtype) and are not
/// renormalised; rows need not sum to 1.
///
/// # Errors
/// Empty `labels` or `y_true`, duplicate label names, length mismatches,
/// class indices out of range, and probabilities that are NaN, outside
/// `[0, 1]` or in rows of the wrong width.
pub fn classification_report(
    labels: &[String],
    y_true: &[usize],
    y_pred: &[usize],
    probs: Option<&[Vec<f32>]>,
) -> Result<ClassificationReport, MetricsError> {
    check_labels(labels)?;
    let k = labels.len();
    if y_true.is_empty() {
        return Err(MetricsError::Empty);
    }
    check_len("y_pred", y_true.len(), y_pred.len())?;
    check_indices("y_true", y_true, k)?;
    check_indices("y_pred", y_pred, k)?;
    if let Some(p) = probs {
        check_probs(p, y_true.len(), k)?;
    }

    let mut confusion = vec![vec![0u64; k]; k];
    for (&t, &p) in y_true.iter().zip(y_pred) {
        confusion[t][p] += 1;
    }
    let n = y_true.len() as u64;
    let mut correct = 0u64;
    let mut per_class = BTreeMap::new();
    let mut f1s = Vec::with_capacity(k);
    for (c, label) in labels.iter().enumerate() {
        let tp = confusion[c][c];
        let true_total: u64 = confusion[c].iter().sum();
        let pred_total: u64 = confusion.iter().map(|row| row[c]).sum();
        correct += tp;
        let m = ClassMetrics::from_counts(tp, pred_total - tp, true_total - tp);
        f1s.push((m.f1, m.support));
        per_class.insert(label.clone(), m);
    }
    let macro_f1 = f1s.iter().map(|&(f, _)| f).sum::<f64>() / k as f64;
    let weighted_f1 = weighted_mean(&f1s);

    let (roc, log_loss) = match probs {
        Some(p) => {
            let roc = if k == 2 {
                let truth: Vec<bool> = y_true.iter().map(|&t| t == 1).collect();
                let scores: Vec<f32> = p.iter().map(|row| row[1]).collect();
                roc_auc(&truth, &scores)
            } else {
                None
            };
            let ll = (k >= 2).then(|| mean_log_loss(y_true, p));
            (roc, ll)
        }
        None => (None, None),
    };

    Ok(ClassificationReport {
        n,
        accuracy: correct as f64 / n as f64,
        macro_f1,
        weighted_f1,
        labels: labels.to_vec(),
        per_class,
        confusion_matrix: confusion,
        roc_auc: roc,
        log_loss,
    })
}

/// Evaluation of a multi-label classifier.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MultilabelReport {
    /// Number of examples.
    pub n: u64,
    /// Fraction of examples whose whole label set is predicted exactly.
    pub subset_accuracy: f64,
    /// Fraction of (example, label) decisions that are wrong.
    pub hamming_loss: f64,
    /// F1 of the true/false positives and false negatives pooled over all labels.
    pub micro_f1: f64,
    /// Unweighted mean of per-class F1 over all labels.
    pub macro_f1: f64,
    /// Label names; column `i` is label `i`.
    pub labels: Vec<String>,
    /// Scores keyed by label name.
    pub per_class: BTreeMap<String, ClassMetrics>,
}

/// Scores multi-label predictions: one row of `labels.len()` flags per example.
///
/// # Errors
/// Empty `labels` or `y_true`, duplicate label names, length mismatches and
/// rows of the wrong width.
pub fn multilabel_report(
    labels: &[String],
    y_true: &[Vec<bool>],
    y_pred: &[Vec<bool>],
) -> Result<MultilabelReport, MetricsError> {
    check_labels(labels)?;
    let k = labels.len();
    if y_true.is_empty() {
        return Err(MetricsError::Empty);
    }
    check_len("y_pred", y_true.len(), y_pred.len())?;
    check_widths("y_true", y_true, k)?;
    check_widths("y_pred", y_pred, k)?;

    // (tp, fp, fn) per label.
    let mut counts = vec![(0u64, 0u64, 0u64); k];
    let mut exact = 0u64;
    let mut wrong = 0u64;
    for (t_row, p_row) in y_true.iter().zip(y_pred) {
        let mut row_exact = true;
        for ((&t, &p), c) in t_row.iter().zip(p_row).zip(counts.iter_mut()) {
            match (t, p) {
                (true, true) => c.0 += 1,
                (false, true) => c.1 += 1,
                (true, false) => c.2 += 1,
                (false, false) => {}
            }
            if t != p {
                row_exact = false;
                wrong += 1;
            }
        }
        exact += u64::from(row_exact);
    }

    let n = y_true.len() as u64;
    let (mut tp, mut fp, mut fn_) = (0u64, 0u64, 0u64);
    let mut per_class = BTreeMap::new();
    let mut f1_sum = 0.0;
    for (label, &(t, f, m)) in labels.iter().zip(&counts) {
        tp += t;
        fp += f;
        fn_ += m;
        let cm = ClassMetrics::from_counts(t, f, m);
        f1_sum += cm.f1;
        per_class.insert(label.clone(), cm);
    }

    Ok(MultilabelReport {
        n,
        subset_accuracy: exact as f64 / n as f64,
        hamming_loss: wrong as f64 / (n as f64 * k as f64),
        micro_f1: ratio(2 * tp, 2 * tp + fp + fn_),
        macro_f1: f1_sum / k as f64,
        labels: labels.to_vec(),
        per_class,
    })
}

/// Evaluation of a regressor.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RegressionReport {
    /// Number of examples.
    pub n: u64,
    /// Mean squared error.
    pub mse: f64,
    /// Mean absolute error.
    pub mae: f64,
    /// Coefficient of determination, `1 - SS_res / SS_tot`.
    pub r2: f64,
}

/// Scores regression predictions.
///
/// When `SS_tot = 0` (constant truth, including a single example) `r2` is
/// 1.0 for a perfect prediction and 0.0 otherwise, as scikit-learn's
/// `force_finite=True`; scikit-learn itself returns NaN for a single example.
///
/// # Errors
/// Empty input, a length mismatch, or a NaN or infinite value.
pub fn regression_report(y_true: &[f64], y_pred: &[f64]) -> Result<RegressionReport, MetricsError> {
    if y_true.is_empty() {
        return Err(MetricsError::Empty);
    }
    check_len("y_pred", y_true.len(), y_pred.len())?;
    check_finite("y_true", y_true)?;
    check_finite("y_pred", y_pred)?;

    let nf = y_true.len() as f64;
    let mean = y_true.iter().sum::<f64>() / nf;
    let (mut ss_res, mut abs, mut ss_tot) = (0.0, 0.0, 0.0);
    for (&t, &p) in y_true.iter().zip(y_pred) {
        let e = t - p;
        ss_res += e * e;
        abs += e.abs();
        ss_tot += (t - mean) * (t - mean);
    }
    let r2 = if ss_tot != 0.0 {
        1.0 - ss_res / ss_tot
    } else if ss_res == 0.0 {
        1.0
    } else {
        0.0
    };
    Ok(RegressionReport {
        n: y_true.len() as u64,
        mse: ss_res / nf,
        mae: abs / nf,
        r2,
    })
}

/// Binary ROC-AUC: the Mann–Whitney statistic with average ranks for tied scores.
///
/// Equals scikit-learn's `roc_auc_score`. `None` when only one class is
/// present (or the input is empty), when the lengths differ, or when a score
/// is NaN.
#[must_use]
pub fn roc_auc(y_true: &[bool], scores: &[f32]) -> Option<f64> {
    if y_true.len() != scores.len() || scores.iter().any(|s| s.is_nan()) {
        return None;
    }
    let pos = y_true.iter().filter(|&&t| t).count();
    let neg = y_true.len() - pos;
    if pos == 0 || neg == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].partial_cmp(&scores[b]).unwrap_or(Ordering::Equal));
    // Sum of the 1-based ranks of the positives; a tie group spanning
    // positions start..end shares the rank (start + 1 + end) / 2.
    let mut rank_sum = 0.0;
    let mut start = 0;
    while start < order.len() {
        let value = scores[order[start]];
        let mut end = start + 1;
        while end < order.len() && scores[order[end]] == value {
            end += 1;
        }
        let positives = order[start..end].iter().filter(|&&i| y_true[i]).count();
        rank_sum += positives as f64 * (start + 1 + end) as f64 / 2.0;
        start = end;
    }
    let (p, q) = (pos as f64, neg as f64);
    Some((rank_sum - p * (p + 1.0) / 2.0) / (p * q))
}

impl ClassificationReport {
    /// A scikit-learn style table (4 decimals), the confusion matrix with
    /// label names, and accuracy / F1 / ROC-AUC / log-loss lines.
    #[must_use]
    pub fn render_text(&self) -> String {
        let rows = self.class_rows();
        let width = name_width(&self.labels);
        let mut out = table_head(width);
        for (name, m) in &rows {
            push_row(&mut out, width, name, m);
        }
        out.push('\n');
        let _ = writeln!(
            out,
            "{:>width$}  {:>COL$} {:>COL$} {:>COL$.DIGITS$} {:>COL$}",
            "accuracy", "", "", self.accuracy, self.n
        );
        push_averages(&mut out, width, &rows);

        out.push('\n');
        out.push_str("confusion matrix (rows: true, columns: predicted)\n");
        let cell = self
            .labels
            .iter()
            .map(|l| l.chars().count())
            .chain(
                self.confusion_matrix
                    .iter()
                    .flatten()
                    .map(|c| c.to_string().len()),
            )
            .max()
            .unwrap_or(1);
        let head = self
            .labels
            .iter()
            .map(|l| l.chars().count())
            .max()
            .unwrap_or(0);
        let _ = write!(out, "{:>head$}", "");
        for l in &self.labels {
            let _ = write!(out, "  {l:>cell$}");
        }
        out.push('\n');
        for (l, row) in self.labels.iter().zip(&self.confusion_matrix) {
            let _ = write!(out, "{l:>head$}");
            for c in row {
                let _ = write!(out, "  {c:>cell$}");
            }
            out.push('\n');
        }

        out.push('\n');
        let mut lines = vec![
            ("accuracy", self.accuracy),
            ("macro-F1", self.macro_f1),
            ("weighted-F1", self.weighted_f1),
        ];
        if let Some(v) = self.roc_auc {
            lines.push(("ROC-AUC", v));
        }
        if let Some(v) = self.log_loss {
            lines.push(("log-loss", v));
        }
        push_summary(&mut out, self.n, &lines);
        out
    }

    fn class_rows(&self) -> Vec<(&str, &ClassMetrics)> {
        self.labels
            .iter()
            .filter_map(|l| self.per_class.get(l).map(|m| (l.as_str(), m)))
            .collect()
    }
}

impl MultilabelReport {
    /// A per-label table with macro and weighted averages (4 decimals), then
    /// subset accuracy, Hamming loss and micro / macro F1 lines.
    #[must_use]
    pub fn render_text(&self) -> String {
        let rows: Vec<(&str, &ClassMetrics)> = self
            .labels
            .iter()
            .filter_map(|l| self.per_class.get(l).map(|m| (l.as_str(), m)))
            .collect();
        let width = name_width(&self.labels);
        let mut out = table_head(width);
        for (name, m) in &rows {
            push_row(&mut out, width, name, m);
        }
        out.push('\n');
        push_averages(&mut out, width, &rows);
        out.push('\n');
        push_summary(
            &mut out,
            self.n,
            &[
                ("subset accuracy", self.subset_accuracy),
                ("Hamming loss", self.hamming_loss),
                ("micro-F1", self.micro_f1),
                ("macro-F1", self.macro_f1),
            ],
        );
        out
    }
}

impl RegressionReport {
    /// One line each for n, MSE, MAE and R².
    #[must_use]
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        push_summary(
            &mut out,
            self.n,
            &[("MSE", self.mse), ("MAE", self.mae), ("R²", self.r2)],
        );
        out
    }
}

fn ratio(num: u64, den: u64) -> f64 {
    if den == 0 {
        0.0
    } else {
        num as f64 / den as f64
    }
}

/// Mean of `values` weighted by support; 0 when the total support is 0.
fn weighted_mean(values: &[(f64, u64)]) -> f64 {
    let total: u64 = values.iter().map(|&(_, s)| s).sum();
    if total == 0 {
        return 0.0;
    }
    values.iter().map(|&(v, s)| v * s as f64).sum::<f64>() / total as f64
}

/// Mean of `-ln p[true class]` with `p` clipped to `[eps, 1 - eps]` in `f32`.
fn mean_log_loss(y_true: &[usize], probs: &[Vec<f32>]) -> f64 {
    let eps = f32::EPSILON;
    let total: f64 = y_true
        .iter()
        .zip(probs)
        .map(|(&t, row)| {
            let p = row.get(t).copied().unwrap_or(0.0).clamp(eps, 1.0 - eps);
            -f64::from(p).ln()
        })
        .sum();
    total / y_true.len() as f64
}

fn check_labels(labels: &[String]) -> Result<(), MetricsError> {
    if labels.is_empty() {
        return Err(MetricsError::NoLabels);
    }
    let mut seen = BTreeSet::new();
    for l in labels {
        if !seen.insert(l.as_str()) {
            return Err(MetricsError::DuplicateLabel(l.clone()));
        }
    }
    Ok(())
}

fn check_len(what: &'static str, expected: usize, actual: usize) -> Result<(), MetricsError> {
    if expected == actual {
        Ok(())
    } else {
        Err(MetricsError::LengthMismatch {
            what,
            expected,
            actual,
        })
    }
}

fn check_indices(what: &'static str, ys: &[usize], n_labels: usize) -> Result<(), MetricsError> {
    match ys.iter().position(|&y| y >= n_labels) {
        Some(index) => Err(MetricsError::LabelOutOfRange {
            what,
            index,
            value: ys[index],
            n_labels,
        }),
        None => Ok(()),
    }
}

fn check_widths<T>(what: &'static str, rows: &[Vec<T>], k: usize) -> Result<(), MetricsError> {
    match rows.iter().position(|r| r.len() != k) {
        Some(row) => Err(MetricsError::RowWidthMismatch {
            what,
            row,
            expected: k,
            actual: rows[row].len(),
        }),
        None => Ok(()),
    }
}

fn check_probs(probs: &[Vec<f32>], n: usize, k: usize) -> Result<(), MetricsError> {
    check_len("probs", n, probs.len())?;
    check_widths("probs", probs, k)?;
    for (row, r) in probs.iter().enumerate() {
        for (col, &value) in r.iter().enumerate() {
            // Also rejects NaN, which fails every comparison.
            if !(0.0..=1.0).contains(&value) {
                return Err(MetricsError::InvalidProbability { row, col, value });
            }
        }
    }
    Ok(())
}

fn check_finite(what: &'static str, xs: &[f64]) -> Result<(), MetricsError> {
    match xs.iter().position(|x| !x.is_finite()) {
        Some(index) => Err(MetricsError::NonFinite { what, index }),
        None => Ok(()),
    }
}

/// Width of the row-name column, as scikit-learn computes it.
fn name_width(labels: &[String]) -> usize {
    labels
        .iter()
        .map(|l| l.chars().count())
        .max()
        .unwrap_or(0)
        .max("weighted avg".len())
        .max(DIGITS)
}

fn table_head(width: usize) -> String {
    format!(
        "{:>width$}  {:>COL$} {:>COL$} {:>COL$} {:>COL$}\n\n",
        "", "precision", "recall", "f1-score", "support"
    )
}

fn push_row(out: &mut String, width: usize, name: &str, m: &ClassMetrics) {
    let _ = writeln!(
        out,
        "{name:>width$}  {:>COL$.DIGITS$} {:>COL$.DIGITS$} {:>COL$.DIGITS$} {:>COL$}",
        m.precision, m.recall, m.f1, m.support
    );
}

/// Appends the "macro avg" and "weighted avg" rows over `rows`.
fn push_averages(out: &mut String, width: usize, rows: &[(&str, &ClassMetrics)]) {
    let k = rows.len().max(1) as f64;
    let support: u64 = rows.iter().map(|(_, m)| m.support).sum();
    let macro_avg = ClassMetrics {
        precision: rows.iter().map(|(_, m)| m.precision).sum::<f64>() / k,
        recall: rows.iter().map(|(_, m)| m.recall).sum::<f64>() / k,
        f1: rows.iter().map(|(_, m)| m.f1).sum::<f64>() / k,
        support,
    };
    let weighted = |f: fn(&ClassMetrics) -> f64| {
        let pairs: Vec<(f64, u64)> = rows.iter().map(|(_, m)| (f(m), m.support)).collect();
        weighted_mean(&pairs)
    };
    let weighted_avg = ClassMetrics {
        precision: weighted(|m| m.precision),
        recall: weighted(|m| m.recall),
        f1: weighted(|m| m.f1),
        support,
    };
    push_row(out, width, "macro avg", &macro_avg);
    push_row(out, width, "weighted avg", &weighted_avg);
}

/// Appends aligned `name  value` lines, preceded by the example count.
fn push_summary(out: &mut String, n: u64, lines: &[(&str, f64)]) {
    let width = lines
        .iter()
        .map(|(name, _)| name.chars().count())
        .max()
        .unwrap_or(0)
        .max(1);
    let _ = writeln!(out, "{:<width$}  {n}", "n");
    for (name, value) in lines {
        let _ = writeln!(out, "{name:<width$}  {value:.DIGITS$}");
    }
}

#[cfg(test)]
mod tests;
