//! Metrics of a model's outputs: the [`Report`] every front end shows.

use serde::{Deserialize, Serialize};

use crate::metrics::argmax;
use crate::metrics::{
    classification_report, multilabel_report, regression_report, ClassificationReport,
    MultilabelReport, RegressionReport,
};
use crate::task::{LabelSet, Targets, Task};
use crate::ModelError;

/// Metrics for the model's task. Serialises to the inner report's fields (`accuracy`,
/// `macro_f1`, `per_class`, `confusion_matrix`, `roc_auc` / `mse`, `mae`, `r2`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Report {
    /// Binary or multi-class.
    Classification(ClassificationReport),
    /// Multi-label.
    Multilabel(MultilabelReport),
    /// Regression.
    Regression(RegressionReport),
}

impl Report {
    /// A readable table.
    pub fn render_text(&self) -> String {
        match self {
            Report::Classification(r) => r.render_text(),
            Report::Multilabel(r) => r.render_text(),
            Report::Regression(r) => r.render_text(),
        }
    }
}

impl Report {
    /// Share of right predictions (per label for multi-label); none for regression.
    pub fn accuracy(&self) -> Option<f64> {
        match self {
            Report::Classification(c) => Some(c.accuracy),
            Report::Multilabel(m) => Some(1.0 - m.hamming_loss),
            Report::Regression(_) => None,
        }
    }
}

/// Metrics from model outputs (probabilities or values, `[n, outputs]`) and encoded targets.
pub fn report_from_outputs(
    labels: &LabelSet,
    outputs: &[f32],
    targets: &Targets,
) -> Result<Report, ModelError> {
    let k = labels.outputs().max(1);
    let rows = outputs.chunks_exact(k);
    Ok(match (labels.task, targets) {
        (Task::Binary, Targets::Values(y)) => {
            let y_true: Vec<usize> = y.iter().map(|&v| usize::from(v > 0.5)).collect();
            let y_pred: Vec<usize> = outputs.iter().map(|&p| usize::from(p > 0.5)).collect();
            let probs: Vec<Vec<f32>> = outputs.iter().map(|&p| vec![1.0 - p, p]).collect();
            Report::Classification(classification_report(
                &labels.labels,
                &y_true,
                &y_pred,
                Some(&probs),
            )?)
        }
        (Task::Multiclass, Targets::Classes(y)) => {
            let y_true: Vec<usize> = y.iter().map(|&c| c as usize).collect();
            let y_pred: Vec<usize> = rows.clone().map(argmax).collect();
            let probs: Vec<Vec<f32>> = rows.map(<[f32]>::to_vec).collect();
            Report::Classification(classification_report(
                &labels.labels,
                &y_true,
                &y_pred,
                Some(&probs),
            )?)
        }
        (Task::Multilabel, Targets::Values(y)) => {
            let y_true: Vec<Vec<bool>> = y
                .chunks_exact(k)
                .map(|r| r.iter().map(|&v| v > 0.5).collect())
                .collect();
            let t = labels.threshold;
            let y_pred: Vec<Vec<bool>> = rows.map(|r| r.iter().map(|&p| p > t).collect()).collect();
            Report::Multilabel(multilabel_report(&labels.labels, &y_true, &y_pred)?)
        }
        (Task::Regression, Targets::Values(y)) => {
            let y_true: Vec<f64> = y.iter().map(|&v| v as f64).collect();
            let y_pred: Vec<f64> = outputs.iter().map(|&v| v as f64).collect();
            Report::Regression(regression_report(&y_true, &y_pred)?)
        }
        _ => {
            return Err(ModelError::Incompatible(
                "targets do not match the task".to_string(),
            ))
        }
    })
}
