//! The one code path from a string to a prediction: tokenizer → truncation/padding → network →
//! output activation → labels. Training, evaluation, prediction and serving all use it.

use flywheel_nn::{PadStates, TextRnn, Workspace};
use flywheel_text::{KerasTokenizer, PadSpec, Side};
use rayon::prelude::*;
use serde_json::{json, Map, Value};

use crate::task::{LabelSet, Task};
use crate::{ModelError, ModelSpec};

/// Texts per inference block (one workspace, one pass of the network).
const BLOCK: usize = 256;

/// A trained (or freshly initialised) text model.
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// The settings it was built with.
    pub spec: ModelSpec,
    /// Task and label names.
    pub labels: LabelSet,
    tokenizer: KerasTokenizer,
    pad: PadSpec,
    net: TextRnn<f32>,
    pad_states: Option<PadStates<f32>>,
}

/// One prediction.
#[derive(Debug, Clone, PartialEq)]
pub enum Prediction {
    /// Binary or multi-class: the chosen label, its probability and every label's probability.
    Class {
        /// Predicted label.
        label: String,
        /// Its probability.
        score: f32,
        /// `(label, probability)` for all labels.
        scores: Vec<(String, f32)>,
    },
    /// Multi-label: labels over the 0.5 threshold and every label's probability.
    Labels {
        /// Predicted labels.
        labels: Vec<String>,
        /// The highest probability.
        score: f32,
        /// `(label, probability)` for all labels.
        scores: Vec<(String, f32)>,
    },
    /// Regression: the predicted value.
    Value(f32),
}

impl Prediction {
    /// `{"label": ..., "score": ..., "scores": {...}}` (`label` is a list for multi-label;
    /// regression gives `{"value": ...}`).
    pub fn to_json(&self) -> Value {
        let map = |scores: &[(String, f32)]| {
            Value::Object(
                scores
                    .iter()
                    .map(|(l, p)| (l.clone(), json!(p)))
                    .collect::<Map<String, Value>>(),
            )
        };
        match self {
            Prediction::Class {
                label,
                score,
                scores,
            } => json!({"label": label, "score": score, "scores": map(scores)}),
            Prediction::Labels {
                labels,
                score,
                scores,
            } => json!({"label": labels, "score": score, "scores": map(scores)}),
            Prediction::Value(v) => json!({ "value": v }),
        }
    }
}

impl Pipeline {
    /// Assembles a pipeline; checks that the parts fit together.
    pub fn new(
        spec: ModelSpec,
        labels: LabelSet,
        tokenizer: KerasTokenizer,
        net: TextRnn<f32>,
    ) -> Result<Self, ModelError> {
        spec.validate()?;
        if tokenizer.vocab_size() > net.embedding.vocab() {
            return Err(ModelError::Invalid(format!(
                "the tokenizer emits ids up to {} but the embedding has {} rows",
                tokenizer.vocab_size(),
                net.embedding.vocab()
            )));
        }
        if net.outputs() != labels.outputs() {
            return Err(ModelError::Invalid(format!(
                "the network has {} outputs but the {} task with {} labels needs {}",
                net.outputs(),
                labels.task,
                labels.labels.len(),
                labels.outputs()
            )));
        }
        let names = labels.labels.len();
        let names_ok = match labels.task {
            Task::Binary => names == 2,
            Task::Multiclass => names >= 2,
            Task::Multilabel => names >= 1,
            Task::Regression => names == 0,
        };
        if !names_ok {
            return Err(ModelError::Invalid(format!(
                "a {} task cannot have {names} label names",
                labels.task
            )));
        }
        if net.loss != labels.task.loss() {
            return Err(ModelError::Invalid(format!(
                "the network's loss does not fit the {} task",
                labels.task
            )));
        }
        let pad = spec.pad();
        let mut p = Pipeline {
            spec,
            labels,
            tokenizer,
            pad,
            net,
            pad_states: None,
        };
        p.refresh()?;
        Ok(p)
    }

    /// Recomputes what is derived from the weights (call after changing them).
    pub fn refresh(&mut self) -> Result<(), ModelError> {
        self.pad_states = match self.pad.padding {
            Side::Pre => Some(self.net.pad_states(self.pad.maxlen, self.pad.value)?),
            Side::Post => None,
        };
        Ok(())
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &KerasTokenizer {
        &self.tokenizer
    }

    /// The network.
    pub fn net(&self) -> &TextRnn<f32> {
        &self.net
    }

    /// The network, mutable; call [`Pipeline::refresh`] after changing weights.
    pub fn net_mut(&mut self) -> &mut TextRnn<f32> {
        &mut self.net
    }

    /// The padding rule.
    pub fn pad(&self) -> PadSpec {
        self.pad
    }

    /// Token ids of `text` after truncation (at most `max_len`), appended to `out`.
    pub fn encode_into(&self, text: &str, out: &mut Vec<u32>) {
        let start = out.len();
        self.tokenizer.text_to_sequence_into(text, out);
        let n = out.len() - start;
        if n > self.pad.maxlen {
            match self.pad.truncating {
                Side::Pre => {
                    out.drain(start..start + n - self.pad.maxlen);
                }
                Side::Post => out.truncate(start + self.pad.maxlen),
            }
        }
    }

    /// Logits (`[seqs.len(), outputs]`) of truncated id sequences.
    pub fn logits_of(
        &self,
        seqs: &[&[u32]],
        ws: &mut Workspace<f32>,
        out: &mut [f32],
    ) -> Result<(), ModelError> {
        match &self.pad_states {
            Some(pads) => self.net.predict_pre_padded(seqs, pads, ws, out)?,
            None => {
                let (steps, b) = (self.pad.maxlen, seqs.len());
                let mut ids = vec![0u32; steps * b];
                let mut row = vec![0u32; steps];
                for (j, s) in seqs.iter().enumerate() {
                    self.pad.pad_into(s, &mut row);
                    for (t, &id) in row.iter().enumerate() {
                        ids[t * b + j] = id;
                    }
                }
                self.net.predict_padded(&ids, steps, b, ws, out)?;
            }
        }
        Ok(())
    }

    /// Logits of id sequences, computed in parallel blocks on the current rayon pool:
    /// `[seqs.len(), outputs]`.
    pub fn logits_par(&self, seqs: &[&[u32]]) -> Result<Vec<f32>, ModelError> {
        let k = self.net.outputs();
        let blocks: Result<Vec<Vec<f32>>, ModelError> = seqs
            .par_chunks(BLOCK)
            .map_init(Workspace::default, |ws, block| {
                let mut out = vec![0.0f32; block.len() * k];
                self.logits_of(block, ws, &mut out)?;
                Ok(out)
            })
            .collect();
        Ok(blocks?.concat())
    }

    /// Output probabilities (or values) of texts: `[texts.len(), outputs]`.
    pub fn outputs_of_texts<S: AsRef<str> + Sync>(
        &self,
        texts: &[S],
    ) -> Result<Vec<f32>, ModelError> {
        let k = self.net.outputs();
        let blocks: Result<Vec<Vec<f32>>, ModelError> = texts
            .par_chunks(BLOCK)
            .map_init(
                || (Workspace::default(), Vec::new(), Vec::new()),
                |(ws, ids, offsets): &mut (Workspace<f32>, Vec<u32>, Vec<usize>), block| {
                    ids.clear();
                    offsets.clear();
                    offsets.push(0);
                    for t in block {
                        self.encode_into(t.as_ref(), ids);
                        offsets.push(ids.len());
                    }
                    let seqs: Vec<&[u32]> = offsets.windows(2).map(|w| &ids[w[0]..w[1]]).collect();
                    let mut out = vec![0.0f32; block.len() * k];
                    self.logits_of(&seqs, ws, &mut out)?;
                    Ok(out)
                },
            )
            .collect();
        let mut all: Vec<f32> = blocks?.concat();
        self.net.loss.activate(&mut all, k);
        Ok(all)
    }

    /// Turns one row of outputs into a prediction.
    pub fn decide(&self, row: &[f32]) -> Prediction {
        let names = &self.labels.labels;
        match self.labels.task {
            Task::Binary => {
                let p = row.first().copied().unwrap_or(0.0);
                let scores = vec![(names[0].clone(), 1.0 - p), (names[1].clone(), p)];
                let (label, score) = if p > 0.5 {
                    (names[1].clone(), p)
                } else {
                    (names[0].clone(), 1.0 - p)
                };
                Prediction::Class {
                    label,
                    score,
                    scores,
                }
            }
            Task::Multiclass => {
                let best = argmax(row);
                Prediction::Class {
                    label: names[best].clone(),
                    score: row[best],
                    scores: names.iter().cloned().zip(row.iter().copied()).collect(),
                }
            }
            Task::Multilabel => Prediction::Labels {
                labels: names
                    .iter()
                    .zip(row)
                    .filter(|(_, &p)| p > 0.5)
                    .map(|(l, _)| l.clone())
                    .collect(),
                score: row.iter().copied().fold(0.0, f32::max),
                scores: names.iter().cloned().zip(row.iter().copied()).collect(),
            },
            Task::Regression => Prediction::Value(row.first().copied().unwrap_or(0.0)),
        }
    }

    /// Predictions for texts (parallel on the current rayon pool).
    pub fn predict<S: AsRef<str> + Sync>(
        &self,
        texts: &[S],
    ) -> Result<Vec<Prediction>, ModelError> {
        let k = self.net.outputs();
        let out = self.outputs_of_texts(texts)?;
        Ok(out.chunks_exact(k).map(|row| self.decide(row)).collect())
    }
}

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
