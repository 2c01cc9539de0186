//! Threshold curves and calibration for evaluation reports: ROC, precision-recall and the
//! reliability diagram (with expected calibration error).

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

/// Points of a curve, in threshold order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Curve {
    /// `(x, y)` points.
    pub points: Vec<(f64, f64)>,
    /// Area summary: ROC-AUC for ROC, average precision for precision-recall.
    pub area: f64,
}

/// Indices sorted by descending score.
fn descending(scores: &[f32]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].partial_cmp(&scores[a]).unwrap_or(Ordering::Equal));
    order
}

/// Cumulative (true positives, false positives) after each distinct threshold, from the highest.
fn cumulative(y_true: &[bool], scores: &[f32]) -> Vec<(f64, f64)> {
    let order = descending(scores);
    let mut out = Vec::new();
    let (mut tp, mut fp) = (0.0, 0.0);
    for (k, &i) in order.iter().enumerate() {
        if y_true[i] {
            tp += 1.0;
        } else {
            fp += 1.0;
        }
        let last_of_group = order.get(k + 1).is_none_or(|&j| scores[j] != scores[i]);
        if last_of_group {
            out.push((tp, fp));
        }
    }
    out
}

/// ROC curve (false positive rate, true positive rate) from `(0, 0)` to `(1, 1)`, with the
/// trapezoidal AUC (equal to the Mann–Whitney AUC). `None` when a class is absent, the lengths
/// differ or a score is NaN.
pub fn roc_curve(y_true: &[bool], scores: &[f32]) -> Option<Curve> {
    if y_true.len() != scores.len() || scores.iter().any(|s| s.is_nan()) {
        return None;
    }
    let pos = y_true.iter().filter(|&&t| t).count() as f64;
    let neg = y_true.len() as f64 - pos;
    if pos == 0.0 || neg == 0.0 {
        return None;
    }
    let mut points = vec![(0.0, 0.0)];
    points.extend(
        cumulative(y_true, scores)
            .into_iter()
            .map(|(tp, fp)| (fp / neg, tp / pos)),
    );
    let area = points
        .windows(2)
        .map(|w| (w[1].0 - w[0].0) * (w[1].1 + w[0].1) / 2.0)
        .sum();
    Some(Curve { points, area })
}

/// Precision-recall curve (recall, precision), starting at recall 0 with precision 1, with
/// scikit-learn's average precision `Σ (Rₙ − Rₙ₋₁) Pₙ`. `None` when there are no positives,
/// the lengths differ or a score is NaN.
pub fn pr_curve(y_true: &[bool], scores: &[f32]) -> Option<Curve> {
    if y_true.len() != scores.len() || scores.iter().any(|s| s.is_nan()) {
        return None;
    }
    let pos = y_true.iter().filter(|&&t| t).count() as f64;
    if pos == 0.0 {
        return None;
    }
    let mut points = vec![(0.0, 1.0)];
    let mut area = 0.0;
    let mut last_recall = 0.0;
    for (tp, fp) in cumulative(y_true, scores) {
        let (recall, precision) = (tp / pos, tp / (tp + fp));
        area += (recall - last_recall) * precision;
        last_recall = recall;
        points.push((recall, precision));
    }
    Some(Curve { points, area })
}

/// One bin of a reliability diagram.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationBin {
    /// Lower edge of the confidence bin.
    pub lo: f64,
    /// Upper edge.
    pub hi: f64,
    /// Predictions in the bin.
    pub count: usize,
    /// Their mean confidence.
    pub confidence: f64,
    /// The fraction of them that were right.
    pub accuracy: f64,
}

/// Reliability diagram of top-label confidences: `bins` equal-width bins over `[0, 1]` (empty
/// bins omitted) and the expected calibration error `Σ (nᵦ/n)·|accᵦ − confᵦ|`.
pub fn reliability(
    confidence: &[f32],
    correct: &[bool],
    bins: usize,
) -> (Vec<CalibrationBin>, f64) {
    let bins = bins.max(1);
    let mut acc = vec![(0usize, 0.0f64, 0usize); bins];
    for (&c, &ok) in confidence.iter().zip(correct) {
        if !c.is_finite() {
            continue;
        }
        let c = f64::from(c).clamp(0.0, 1.0);
        let b = ((c * bins as f64) as usize).min(bins - 1);
        acc[b].0 += 1;
        acc[b].1 += c;
        acc[b].2 += usize::from(ok);
    }
    let n: usize = acc.iter().map(|a| a.0).sum();
    let mut out = Vec::new();
    let mut ece = 0.0;
    for (b, &(count, conf_sum, right)) in acc.iter().enumerate() {
        if count == 0 {
            continue;
        }
        let (confidence, accuracy) = (conf_sum / count as f64, right as f64 / count as f64);
        ece += count as f64 / n as f64 * (accuracy - confidence).abs();
        out.push(CalibrationBin {
            lo: b as f64 / bins as f64,
            hi: (b + 1) as f64 / bins as f64,
            count,
            confidence,
            accuracy,
        });
    }
    (out, ece)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::roc_auc;

    #[test]
    fn roc_area_matches_mann_whitney() {
        let y = [true, false, true, true, false, false, true, false];
        let s = [0.9, 0.8, 0.8, 0.6, 0.5, 0.5, 0.3, 0.1];
        let c = roc_curve(&y, &s).unwrap();
        assert!((c.area - roc_auc(&y, &s).unwrap()).abs() < 1e-12);
        assert_eq!(c.points.first(), Some(&(0.0, 0.0)));
        assert_eq!(c.points.last(), Some(&(1.0, 1.0)));
        assert!(roc_curve(&[true, true], &[0.1, 0.2]).is_none());
    }

    #[test]
    fn average_precision_like_sklearn() {
        // sklearn.metrics.average_precision_score([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) = 0.8333...
        let c = pr_curve(&[false, false, true, true], &[0.1, 0.4, 0.35, 0.8]).unwrap();
        assert!((c.area - 0.8333333333333333).abs() < 1e-12, "{}", c.area);
    }

    #[test]
    fn reliability_bins_and_ece() {
        let conf = [0.95, 0.95, 0.55, 0.55];
        let ok = [true, true, true, false];
        let (bins, ece) = reliability(&conf, &ok, 10);
        assert_eq!(bins.len(), 2);
        assert_eq!(bins[1].count, 2);
        assert!((bins[0].accuracy - 0.5).abs() < 1e-12);
        // (2/4)·|1 − 0.95| + (2/4)·|0.5 − 0.55|
        assert!((ece - 0.05).abs() < 1e-6, "{ece}");
    }
}
