//! Tasks and label encoding.

use std::collections::BTreeSet;
use std::str::FromStr;

use flywheel_data::Record;
use flywheel_nn::Loss;
use serde::{Deserialize, Serialize};

use crate::ModelError;

/// What the model predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    /// Two classes; one sigmoid output for the second (sorted) label.
    Binary,
    /// One of several classes; softmax.
    Multiclass,
    /// Any subset of labels; one sigmoid per label.
    Multilabel,
    /// A real number; linear output, mean squared error.
    Regression,
}

impl FromStr for Task {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "binary" => Ok(Task::Binary),
            "multiclass" => Ok(Task::Multiclass),
            "multilabel" => Ok(Task::Multilabel),
            "regression" => Ok(Task::Regression),
            other => Err(ModelError::Setting(format!(
                "unknown task '{other}': use binary, multiclass, multilabel or regression"
            ))),
        }
    }
}

impl std::fmt::Display for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Task::Binary => "binary",
            Task::Multiclass => "multiclass",
            Task::Multilabel => "multilabel",
            Task::Regression => "regression",
        })
    }
}

impl Task {
    /// The loss (and output activation) the task trains with.
    pub fn loss(&self) -> Loss {
        match self {
            Task::Binary | Task::Multilabel => Loss::BinaryCrossEntropy,
            Task::Multiclass => Loss::SoftmaxCrossEntropy,
            Task::Regression => Loss::MeanSquaredError,
        }
    }

    /// Number of network outputs for `labels` label names.
    pub fn outputs(&self, labels: usize) -> usize {
        match self {
            Task::Binary | Task::Regression => 1,
            Task::Multiclass | Task::Multilabel => labels,
        }
    }
}

/// Encoded targets of a data set.
#[derive(Debug, Clone, PartialEq)]
pub enum Targets {
    /// `[n, outputs]` values (0/1 for binary and multi-label, real for regression).
    Values(Vec<f32>),
    /// `[n]` class indices (multi-class).
    Classes(Vec<u32>),
}

impl Targets {
    /// The targets of rows `range` (`k` values per row for value targets).
    pub fn slice(&self, range: std::ops::Range<usize>, k: usize) -> Targets {
        match self {
            Targets::Classes(c) => Targets::Classes(c[range].to_vec()),
            Targets::Values(v) => Targets::Values(v[range.start * k..range.end * k].to_vec()),
        }
    }
}

/// The task and its label names, fixed at training time.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelSet {
    /// The task.
    pub task: Task,
    /// Label names in output order (sorted); empty for regression.
    pub labels: Vec<String>,
    /// Separator of several labels in one field (multi-label).
    pub label_sep: String,
    /// Multi-label: a label is predicted when its probability exceeds this (0.5 unless tuned
    /// on validation rows at training time).
    pub threshold: f32,
}

impl LabelSet {
    /// Decides the task (unless given) and the labels from training records: several labels on
    /// a record → multi-label; otherwise 2 distinct labels → binary, more → multi-class.
    /// Regression is used only when asked for.
    pub fn infer(
        records: &[Record],
        task: Option<Task>,
        label_sep: &str,
        source: &str,
    ) -> Result<Self, ModelError> {
        let multi = records.iter().any(|r| r.labels.len() > 1);
        let task = match task {
            Some(t) => t,
            None if multi => Task::Multilabel,
            None => {
                let distinct: BTreeSet<&str> = records
                    .iter()
                    .filter_map(|r| r.labels.first().map(String::as_str))
                    .collect();
                match distinct.len() {
                    0 | 1 => {
                        return Err(ModelError::Unusable(format!(
                            "{source}: found {} distinct label(s); a classifier needs at least two \
                             (for numbers, pass --task regression)",
                            distinct.len()
                        )))
                    }
                    2 => Task::Binary,
                    _ => Task::Multiclass,
                }
            }
        };
        let mut set = LabelSet {
            task,
            labels: Vec::new(),
            label_sep: label_sep.to_string(),
            threshold: 0.5,
        };
        if task != Task::Regression {
            let mut names = BTreeSet::new();
            for r in records {
                for l in set.labels_of(r) {
                    names.insert(l.to_string());
                }
            }
            set.labels = names.into_iter().collect();
            let need = if task == Task::Multilabel { 1 } else { 2 };
            if set.labels.len() < need {
                return Err(ModelError::Unusable(format!(
                    "{source}: a {task} task needs at least {need} distinct labels, found {}",
                    set.labels.len()
                )));
            }
            if task == Task::Binary && set.labels.len() != 2 {
                return Err(ModelError::Unusable(format!(
                    "{source}: --task binary needs exactly 2 labels, found {}: {}",
                    set.labels.len(),
                    preview(&set.labels)
                )));
            }
        }
        Ok(set)
    }

    /// The label names of a record (multi-label fields are split on the separator).
    fn labels_of<'a>(&'a self, r: &'a Record) -> Vec<&'a str> {
        if self.task == Task::Multilabel && r.labels.len() == 1 && !self.label_sep.is_empty() {
            r.labels[0]
                .split(self.label_sep.as_str())
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect()
        } else {
            r.labels.iter().map(String::as_str).collect()
        }
    }

    /// Number of network outputs.
    pub fn outputs(&self) -> usize {
        self.task.outputs(self.labels.len())
    }

    fn index(&self, label: &str) -> Option<usize> {
        self.labels.binary_search_by(|l| l.as_str().cmp(label)).ok()
    }

    /// Encodes the targets of `records`, failing with the file and line of the first bad one.
    pub fn encode(&self, records: &[Record], source: &str) -> Result<Targets, ModelError> {
        let bad = |r: &Record, message: String| ModelError::Label {
            file: source.to_string(),
            line: r.line,
            message,
        };
        match self.task {
            Task::Multiclass => {
                let mut out = Vec::with_capacity(records.len());
                for r in records {
                    let l = single(r).map_err(|m| bad(r, m))?;
                    let i = self.index(l).ok_or_else(|| bad(r, self.unknown(l)))?;
                    out.push(i as u32);
                }
                Ok(Targets::Classes(out))
            }
            Task::Binary => {
                let mut out = Vec::with_capacity(records.len());
                for r in records {
                    let l = single(r).map_err(|m| bad(r, m))?;
                    let i = self.index(l).ok_or_else(|| bad(r, self.unknown(l)))?;
                    out.push(i as f32);
                }
                Ok(Targets::Values(out))
            }
            Task::Multilabel => {
                let k = self.labels.len();
                let mut out = vec![0.0f32; records.len() * k];
                for (n, r) in records.iter().enumerate() {
                    for l in self.labels_of(r) {
                        let i = self.index(l).ok_or_else(|| bad(r, self.unknown(l)))?;
                        out[n * k + i] = 1.0;
                    }
                }
                Ok(Targets::Values(out))
            }
            Task::Regression => {
                let mut out = Vec::with_capacity(records.len());
                for r in records {
                    let l = single(r).map_err(|m| bad(r, m))?;
                    let v: f64 = l
                        .trim()
                        .parse()
                        .map_err(|_| bad(r, format!("regression target '{l}' is not a number")))?;
                    if !v.is_finite() {
                        return Err(bad(r, format!("regression target '{l}' is not finite")));
                    }
                    out.push(v as f32);
                }
                Ok(Targets::Values(out))
            }
        }
    }

    fn unknown(&self, l: &str) -> String {
        format!(
            "label '{l}' was not seen in training; known labels: {}",
            preview(&self.labels)
        )
    }
}

fn single(r: &Record) -> Result<&str, String> {
    match r.labels.as_slice() {
        [one] => Ok(one.as_str()),
        [] => Err("missing label".to_string()),
        many => Err(format!(
            "{} labels on one record; use --task multilabel for several labels",
            many.len()
        )),
    }
}

fn preview(labels: &[String]) -> String {
    let mut s = labels
        .iter()
        .take(10)
        .map(|l| format!("'{l}'"))
        .collect::<Vec<_>>()
        .join(", ");
    if labels.len() > 10 {
        s.push_str(&format!(", ... ({} in all)", labels.len()));
    }
    s
}
