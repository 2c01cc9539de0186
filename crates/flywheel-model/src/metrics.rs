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
mod tests {
    use super::*;
    use serde_json::Value;

    /// Golden values from scikit-learn 1.9.1, generated by
    /// `tests/fixtures/metrics_golden.py` (run it to regenerate this file).
    const GOLDEN: &str = include_str!("../tests/fixtures/metrics_golden.json");

    fn names(xs: &[&str]) -> Vec<String> {
        xs.iter().map(|s| s.to_string()).collect()
    }

    fn close(a: f64, b: f64, tol: f64, what: &str) {
        assert!(
            (a - b).abs() <= tol * b.abs().max(1.0),
            "{what}: got {a}, expected {b}"
        );
    }

    fn golden() -> Value {
        serde_json::from_str(GOLDEN).expect("fixture parses")
    }

    fn field<T: serde::de::DeserializeOwned>(v: &Value, key: &str) -> T {
        serde_json::from_value(v[key].clone()).unwrap_or_else(|e| panic!("{key}: {e}"))
    }

    #[test]
    fn hand_computed_binary() {
        // truth: a a a b b ; pred: a b a b a
        // a: tp 2, fp 1, fn 1 -> p 2/3, r 2/3, f1 2/3, support 3
        // b: tp 1, fp 1, fn 1 -> p 1/2, r 1/2, f1 1/2, support 2
        let labels = names(&["a", "b"]);
        let r = classification_report(&labels, &[0, 0, 0, 1, 1], &[0, 1, 0, 1, 0], None)
            .expect("valid input");
        assert_eq!(r.n, 5);
        close(r.accuracy, 0.6, 1e-15, "accuracy");
        let a = &r.per_class["a"];
        close(a.precision, 2.0 / 3.0, 1e-15, "p(a)");
        close(a.recall, 2.0 / 3.0, 1e-15, "r(a)");
        close(a.f1, 2.0 / 3.0, 1e-15, "f1(a)");
        assert_eq!(a.support, 3);
        close(r.per_class["b"].f1, 0.5, 1e-15, "f1(b)");
        close(r.macro_f1, (2.0 / 3.0 + 0.5) / 2.0, 1e-15, "macro");
        close(r.weighted_f1, (2.0 + 1.0) / 5.0, 1e-15, "weighted");
        assert_eq!(r.confusion_matrix, vec![vec![2, 1], vec![1, 1]]);
        assert_eq!(r.roc_auc, None);
        assert_eq!(r.log_loss, None);
    }

    #[test]
    fn absent_class_counts_in_macro_average() {
        // "c" never occurs: its scores are all 0 and still count in the
        // macro mean (2/3), but not in the support-weighted one.
        let labels = names(&["a", "b", "c"]);
        let r = classification_report(&labels, &[0, 1, 0, 1], &[0, 1, 0, 1], None)
            .expect("valid input");
        let c = &r.per_class["c"];
        assert_eq!((c.precision, c.recall, c.f1, c.support), (0.0, 0.0, 0.0, 0));
        close(r.macro_f1, 2.0 / 3.0, 1e-15, "macro");
        close(r.weighted_f1, 1.0, 1e-15, "weighted");
        assert_eq!(r.confusion_matrix[2], vec![0, 0, 0]);
    }

    #[test]
    fn hand_computed_log_loss_and_auc() {
        let labels = names(&["neg", "pos"]);
        let probs = vec![vec![0.75, 0.25], vec![0.5, 0.5], vec![0.0, 1.0]];
        let r = classification_report(&labels, &[0, 1, 1], &[0, 1, 1], Some(&probs))
            .expect("valid input");
        // -(ln 0.75 + ln 0.5 + ln(1 - f32::EPSILON)) / 3
        let expected = -(0.75f64.ln() + 0.5f64.ln() + f64::from(1.0 - f32::EPSILON).ln()) / 3.0;
        close(r.log_loss.expect("log loss"), expected, 1e-15, "log_loss");
        close(r.roc_auc.expect("auc"), 1.0, 1e-15, "auc");

        // Zero probability on the true class is clipped, not infinite.
        let probs = vec![vec![1.0, 0.0], vec![0.0, 1.0]];
        let r =
            classification_report(&labels, &[1, 1], &[0, 1], Some(&probs)).expect("valid input");
        let ll = r.log_loss.expect("log loss");
        let expected = (-f64::from(f32::EPSILON).ln() - f64::from(1.0 - f32::EPSILON).ln()) / 2.0;
        close(ll, expected, 1e-15, "clipped");
        // Only one class in the truth: no AUC.
        assert_eq!(r.roc_auc, None);
    }

    #[test]
    fn roc_auc_ties() {
        // All tied: 0.5.
        assert_eq!(roc_auc(&[true, false, true], &[0.3, 0.3, 0.3]), Some(0.5));
        // pos {0.2, 0.8}, neg {0.2, 0.5}: pairs (0.2,0.2)=½ (0.2,0.5)=0 (0.8,·)=1+1 → 2.5/4
        let auc = roc_auc(&[true, false, false, true], &[0.2, 0.2, 0.5, 0.8]);
        assert_eq!(auc, Some(0.625));
        // -0.0 and 0.0 are the same score.
        assert_eq!(roc_auc(&[true, false], &[-0.0, 0.0]), Some(0.5));
        // Perfectly wrong ranking.
        assert_eq!(roc_auc(&[true, false], &[0.1, 0.9]), Some(0.0));
        // Infinite scores rank normally.
        assert_eq!(roc_auc(&[true, false], &[f32::INFINITY, 0.0]), Some(1.0));
    }

    #[test]
    fn roc_auc_undefined() {
        assert_eq!(roc_auc(&[], &[]), None);
        assert_eq!(roc_auc(&[true, true], &[0.1, 0.2]), None);
        assert_eq!(roc_auc(&[false], &[0.1]), None);
        assert_eq!(roc_auc(&[true, false], &[0.1]), None);
        assert_eq!(roc_auc(&[true, false], &[0.1, f32::NAN]), None);
    }

    #[test]
    fn input_errors() {
        let labels = names(&["a", "b"]);
        assert_eq!(
            classification_report(&labels, &[], &[], None),
            Err(MetricsError::Empty)
        );
        assert_eq!(
            classification_report(&[], &[0], &[0], None),
            Err(MetricsError::NoLabels)
        );
        assert_eq!(
            classification_report(&names(&["a", "a"]), &[0], &[0], None),
            Err(MetricsError::DuplicateLabel("a".into()))
        );
        assert!(matches!(
            classification_report(&labels, &[0, 1], &[0], None),
            Err(MetricsError::LengthMismatch {
                what: "y_pred",
                expected: 2,
                actual: 1
            })
        ));
        assert!(matches!(
            classification_report(&labels, &[0, 1], &[0, 2], None),
            Err(MetricsError::LabelOutOfRange {
                what: "y_pred",
                index: 1,
                value: 2,
                n_labels: 2
            })
        ));
        let short = vec![vec![0.5, 0.5]];
        assert!(matches!(
            classification_report(&labels, &[0, 1], &[0, 1], Some(&short)),
            Err(MetricsError::LengthMismatch { what: "probs", .. })
        ));
        let narrow = vec![vec![0.5, 0.5], vec![1.0]];
        assert!(matches!(
            classification_report(&labels, &[0, 1], &[0, 1], Some(&narrow)),
            Err(MetricsError::RowWidthMismatch {
                what: "probs",
                row: 1,
                ..
            })
        ));
        for bad in [f32::NAN, -0.1, 1.5] {
            let probs = vec![vec![0.5, 0.5], vec![bad, 0.5]];
            assert!(matches!(
                classification_report(&labels, &[0, 1], &[0, 1], Some(&probs)),
                Err(MetricsError::InvalidProbability { row: 1, col: 0, .. })
            ));
        }

        assert_eq!(
            multilabel_report(&labels, &[], &[]),
            Err(MetricsError::Empty)
        );
        assert!(matches!(
            multilabel_report(&labels, &[vec![true, false]], &[]),
            Err(MetricsError::LengthMismatch { .. })
        ));
        assert!(matches!(
            multilabel_report(&labels, &[vec![true, false]], &[vec![true]]),
            Err(MetricsError::RowWidthMismatch { what: "y_pred", .. })
        ));
        assert_eq!(
            multilabel_report(&[], &[vec![]], &[vec![]]),
            Err(MetricsError::NoLabels)
        );

        assert_eq!(regression_report(&[], &[]), Err(MetricsError::Empty));
        assert!(matches!(
            regression_report(&[1.0, 2.0], &[1.0]),
            Err(MetricsError::LengthMismatch { .. })
        ));
        assert_eq!(
            regression_report(&[1.0, 2.0], &[1.0, f64::INFINITY]),
            Err(MetricsError::NonFinite {
                what: "y_pred",
                index: 1
            })
        );
    }

    #[test]
    fn hand_computed_multilabel() {
        let labels = names(&["x", "y"]);
        let t = vec![vec![true, false], vec![true, true], vec![false, false]];
        let p = vec![vec![true, false], vec![false, true], vec![false, true]];
        let r = multilabel_report(&labels, &t, &p).expect("valid input");
        close(r.subset_accuracy, 1.0 / 3.0, 1e-15, "subset");
        close(r.hamming_loss, 2.0 / 6.0, 1e-15, "hamming");
        // x: tp1 fp0 fn1 -> f1 2/3 ; y: tp1 fp1 fn0 -> f1 2/3 ; micro: tp2 fp1 fn1 -> 4/6
        close(r.macro_f1, 2.0 / 3.0, 1e-15, "macro");
        close(r.micro_f1, 2.0 / 3.0, 1e-15, "micro");
        assert_eq!(r.per_class["x"].support, 2);
        assert_eq!(r.per_class["y"].support, 1);
    }

    #[test]
    fn hand_computed_regression() {
        let r = regression_report(&[1.0, 2.0, 3.0], &[1.0, 2.0, 5.0]).expect("valid input");
        close(r.mse, 4.0 / 3.0, 1e-15, "mse");
        close(r.mae, 2.0 / 3.0, 1e-15, "mae");
        close(r.r2, 1.0 - 4.0 / 2.0, 1e-15, "r2");
        // A single example: SS_tot = 0.
        assert_eq!(regression_report(&[2.0], &[2.0]).map(|r| r.r2), Ok(1.0));
        assert_eq!(regression_report(&[2.0], &[3.0]).map(|r| r.r2), Ok(0.0));
    }

    #[test]
    fn golden_classification() {
        let g = golden();
        let cases = g["classification"].as_array().expect("cases");
        assert!(!cases.is_empty());
        for case in cases {
            let name = case["name"].as_str().unwrap_or("?");
            let labels: Vec<String> = field(case, "labels");
            let y_true: Vec<usize> = field(case, "y_true");
            let y_pred: Vec<usize> = field(case, "y_pred");
            let probs: Option<Vec<Vec<f32>>> = field(case, "probs");
            let r = classification_report(&labels, &y_true, &y_pred, probs.as_deref())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let e = &case["expected"];
            assert_eq!(r.n, field::<u64>(e, "n"), "{name}");
            close(r.accuracy, field(e, "accuracy"), 1e-12, name);
            close(r.macro_f1, field(e, "macro_f1"), 1e-12, name);
            close(r.weighted_f1, field(e, "weighted_f1"), 1e-12, name);
            assert_eq!(r.labels, labels);
            assert_eq!(
                r.confusion_matrix,
                field::<Vec<Vec<u64>>>(e, "confusion_matrix")
            );
            let per: BTreeMap<String, ClassMetrics> = field(e, "per_class");
            assert_eq!(r.per_class.len(), per.len(), "{name}");
            for (label, m) in &per {
                let got = &r.per_class[label];
                close(got.precision, m.precision, 1e-12, name);
                close(got.recall, m.recall, 1e-12, name);
                close(got.f1, m.f1, 1e-12, name);
                assert_eq!(got.support, m.support, "{name}/{label}");
            }
            let auc: Option<f64> = field(e, "roc_auc");
            match (r.roc_auc, auc) {
                (Some(a), Some(b)) => close(a, b, 1e-12, name),
                (a, b) => assert_eq!(a, b, "{name}: roc_auc"),
            }
            // scikit-learn computes float32 inputs in float32: compare loosely.
            let ll: Option<f64> = field(e, "log_loss");
            match (r.log_loss, ll) {
                (Some(a), Some(b)) => close(a, b, 1e-6, name),
                (a, b) => assert_eq!(a, b, "{name}: log_loss"),
            }
            // The table is byte-identical to scikit-learn's (digits=4).
            let text: String = field(e, "text");
            let rendered = r.render_text();
            assert!(
                rendered.starts_with(&text),
                "{name}:\n{rendered}\nexpected prefix:\n{text}"
            );
        }
    }

    #[test]
    fn golden_multilabel() {
        let g = golden();
        for case in g["multilabel"].as_array().expect("cases") {
            let name = case["name"].as_str().unwrap_or("?");
            let labels: Vec<String> = field(case, "labels");
            let y_true: Vec<Vec<bool>> = field(case, "y_true");
            let y_pred: Vec<Vec<bool>> = field(case, "y_pred");
            let r = multilabel_report(&labels, &y_true, &y_pred)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let e = &case["expected"];
            assert_eq!(r.n, field::<u64>(e, "n"));
            close(r.subset_accuracy, field(e, "subset_accuracy"), 1e-12, name);
            close(r.hamming_loss, field(e, "hamming_loss"), 1e-12, name);
            close(r.micro_f1, field(e, "micro_f1"), 1e-12, name);
            close(r.macro_f1, field(e, "macro_f1"), 1e-12, name);
            let per: BTreeMap<String, ClassMetrics> = field(e, "per_class");
            for (label, m) in &per {
                let got = &r.per_class[label];
                close(got.precision, m.precision, 1e-12, name);
                close(got.recall, m.recall, 1e-12, name);
                close(got.f1, m.f1, 1e-12, name);
                assert_eq!(got.support, m.support, "{name}/{label}");
            }
        }
    }

    #[test]
    fn golden_regression_and_auc() {
        let g = golden();
        for case in g["regression"].as_array().expect("cases") {
            let name = case["name"].as_str().unwrap_or("?");
            let y_true: Vec<f64> = field(case, "y_true");
            let y_pred: Vec<f64> = field(case, "y_pred");
            let r = regression_report(&y_true, &y_pred).unwrap_or_else(|e| panic!("{name}: {e}"));
            let e = &case["expected"];
            assert_eq!(r.n, field::<u64>(e, "n"));
            close(r.mse, field(e, "mse"), 1e-12, name);
            close(r.mae, field(e, "mae"), 1e-12, name);
            close(r.r2, field(e, "r2"), 1e-12, name);
        }
        for case in g["roc_auc"].as_array().expect("cases") {
            let name = case["name"].as_str().unwrap_or("?");
            let y: Vec<bool> = field(case, "y_true");
            let s: Vec<f32> = field(case, "scores");
            let auc = roc_auc(&y, &s).unwrap_or_else(|| panic!("{name}: undefined"));
            close(auc, field(case, "expected"), 1e-12, name);
        }
    }

    #[test]
    fn json_round_trip_omits_missing_options() {
        let labels = names(&["a", "b"]);
        let r = classification_report(&labels, &[0, 1], &[0, 0], None).expect("valid input");
        let json = serde_json::to_string(&r).expect("serialises");
        assert!(!json.contains("roc_auc") && !json.contains("log_loss"));
        let back: ClassificationReport = serde_json::from_str(&json).expect("parses");
        assert_eq!(back, r);

        let probs = vec![vec![0.9, 0.1], vec![0.2, 0.8]];
        let r = classification_report(&labels, &[0, 1], &[0, 1], Some(&probs)).expect("ok");
        let back: ClassificationReport =
            serde_json::from_str(&serde_json::to_string(&r).expect("serialises")).expect("parses");
        assert_eq!(back, r);

        let m = multilabel_report(&labels, &[vec![true, false]], &[vec![true, true]]).expect("ok");
        let back: MultilabelReport =
            serde_json::from_str(&serde_json::to_string(&m).expect("serialises")).expect("parses");
        assert_eq!(back, m);
        let g = regression_report(&[1.0, 2.0], &[1.5, 2.0]).expect("ok");
        let back: RegressionReport =
            serde_json::from_str(&serde_json::to_string(&g).expect("serialises")).expect("parses");
        assert_eq!(back, g);
    }

    #[test]
    fn render_text_contents() {
        let labels = names(&["negative", "pos"]);
        let probs = vec![vec![0.9, 0.1], vec![0.2, 0.8], vec![0.6, 0.4]];
        let r = classification_report(&labels, &[0, 1, 1], &[0, 1, 0], Some(&probs)).expect("ok");
        let text = r.render_text();
        let expected_matrix = "\
confusion matrix (rows: true, columns: predicted)
          negative       pos
negative         1         0
     pos         1         1
";
        assert!(text.contains(expected_matrix), "{text}");
        assert!(text.contains("ROC-AUC      1.0000\n"), "{text}");
        assert!(text.contains("log-loss     "), "{text}");
        assert!(text.contains("macro-F1     0.6667\n"), "{text}");

        let t = vec![vec![true, false], vec![false, false]];
        let m = multilabel_report(&labels, &t, &t).expect("ok");
        let text = m.render_text();
        assert!(text.contains("subset accuracy  1.0000\n"), "{text}");
        assert!(text.contains("     pos     0.0000"), "{text}");

        let g = regression_report(&[1.0, 2.0], &[1.0, 2.0]).expect("ok");
        assert_eq!(
            g.render_text(),
            "n    2\nMSE  0.0000\nMAE  0.0000\nR²   1.0000\n"
        );
    }
}
