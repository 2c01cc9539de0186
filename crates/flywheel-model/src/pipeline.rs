//! The one code path from a string to a prediction: tokenizer → truncation/padding → network →
//! output activation → labels. Training, evaluation, prediction and serving all use it. The
//! pipeline knows no family: it forwards to the [`Network`]'s [`crate::network::Net`].

use flywheel_text::{KerasTokenizer, PadSpec};
use rayon::prelude::*;
use serde_json::{json, Map, Value};

use crate::metrics::argmax;
use crate::network::{Net, Network, Scratch};
use crate::spec::ModelSpec;
use crate::task::{LabelSet, Task};
use crate::ModelError;

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
    net: Network,
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
        net: impl Into<Network>,
    ) -> Result<Self, ModelError> {
        spec.validate_common()?;
        let net = net.into();
        let family = net.family();
        if spec.family != family {
            return Err(ModelError::Incompatible(format!(
                "the network is a {family} network but the spec says '{}'",
                spec.family
            )));
        }
        let shape = net.get().shape(&spec, &labels, &tokenizer)?;
        let masked = net.get().masked();
        if masked != spec.mask {
            return Err(ModelError::Incompatible(format!(
                "the network {} padding but the spec says mask = {}",
                if masked { "masks" } else { "does not mask" },
                spec.mask
            )));
        }
        if tokenizer.vocab_size() > shape.rows {
            return Err(ModelError::Incompatible(format!(
                "the tokenizer emits ids up to {} but the embedding has {} rows",
                tokenizer.vocab_size(),
                shape.rows
            )));
        }
        if shape.outputs != labels.outputs() {
            return Err(ModelError::Incompatible(format!(
                "the network has {} outputs but the {} task with {} labels needs {}",
                shape.outputs,
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
            return Err(ModelError::Incompatible(format!(
                "a {} task cannot have {names} label names",
                labels.task
            )));
        }
        if let Some(loss) = net.loss() {
            if loss != labels.task.loss() {
                return Err(ModelError::Incompatible(format!(
                    "the network's loss does not fit the {} task",
                    labels.task
                )));
            }
        }
        let pad = spec.pad();
        let mut p = Pipeline {
            spec,
            labels,
            tokenizer,
            pad,
            net,
        };
        p.refresh()?;
        Ok(p)
    }

    /// Recomputes what is derived from the weights (call after changing them).
    pub fn refresh(&mut self) -> Result<(), ModelError> {
        self.net.get_mut().refresh(&self.pad)
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &KerasTokenizer {
        &self.tokenizer
    }

    /// The network.
    pub fn network(&self) -> &Network {
        &self.net
    }

    /// The family's network as its concrete type (an error for another family's model).
    pub fn net<T: Net>(&self) -> Result<&T, ModelError> {
        let family = self.spec.family;
        self.net
            .downcast_ref::<T>()
            .ok_or_else(|| wrong_family(family))
    }

    /// The family's network as its concrete type, mutable; call [`Pipeline::refresh`] after
    /// changing weights.
    pub fn net_mut<T: Net>(&mut self) -> Result<&mut T, ModelError> {
        let family = self.spec.family;
        self.net
            .downcast_mut::<T>()
            .ok_or_else(|| wrong_family(family))
    }

    /// Number of outputs per text (`labels.outputs()`).
    pub fn outputs(&self) -> usize {
        self.labels.outputs()
    }

    /// Number of trainable numbers.
    pub fn num_parameters(&self) -> usize {
        self.net.num_parameters()
    }

    /// True when a text's model input is a truncated id sequence (sequence models), false when
    /// it is the feature rows of every token (n-gram families).
    pub fn truncates(&self) -> bool {
        self.net.get().truncates()
    }

    /// True when explanations delete characters from the text as written rather than tokens.
    pub fn reads_raw_text(&self) -> bool {
        self.net.get().reads_raw_text()
    }

    /// The output loss of a model trained on logits (an error for the others).
    pub fn loss(&self) -> Result<flywheel_nn::Loss, ModelError> {
        let family = self.spec.family;
        self.net.loss().ok_or_else(|| wrong_family(family))
    }

    /// The padding rule.
    pub fn pad(&self) -> PadSpec {
        self.pad
    }

    /// The model input of `text`, appended to `out`: token ids after truncation (at most
    /// `max_len`) for sequence models, feature rows for the n-gram families.
    pub fn encode_into(&self, text: &str, out: &mut Vec<u32>) {
        self.net
            .get()
            .encode_into(&self.tokenizer, &self.pad, text, out)
    }

    /// The model input of already-cut tokens (see [`Pipeline::encode_into`]).
    pub fn encode_tokens_into(&self, tokens: &[&str], out: &mut Vec<u32>) {
        self.net
            .get()
            .encode_tokens_into(&self.tokenizer, &self.pad, tokens, out)
    }

    /// Outputs of one block of model inputs.
    fn outputs_of(
        &self,
        seqs: &[&[u32]],
        s: &mut Scratch,
        out: &mut [f32],
    ) -> Result<(), ModelError> {
        self.net
            .get()
            .outputs(seqs, &self.labels, &self.pad, s, out)
    }

    /// Output probabilities (or values) of model inputs (from [`Pipeline::encode_into`]),
    /// computed in parallel blocks on the current rayon pool: `[seqs.len(), outputs]`.
    pub fn outputs_par(&self, seqs: &[&[u32]]) -> Result<Vec<f32>, ModelError> {
        let k = self.outputs();
        let blocks: Result<Vec<Vec<f32>>, ModelError> = seqs
            .par_chunks(BLOCK)
            .map_init(
                || self.net.get().scratch(),
                |s, block| {
                    let mut out = vec![0.0f32; block.len() * k];
                    self.outputs_of(block, s, &mut out)?;
                    Ok(out)
                },
            )
            .collect();
        Ok(blocks?.concat())
    }

    /// Output probabilities (or values) of texts: `[texts.len(), outputs]`.
    pub fn outputs_of_texts<S: AsRef<str> + Sync>(
        &self,
        texts: &[S],
    ) -> Result<Vec<f32>, ModelError> {
        let k = self.outputs();
        let blocks: Result<Vec<Vec<f32>>, ModelError> = texts
            .par_chunks(BLOCK)
            .map_init(
                || (self.net.get().scratch(), Vec::new(), Vec::new()),
                |(s, ids, offsets), block| {
                    ids.clear();
                    offsets.clear();
                    offsets.push(0);
                    for t in block {
                        self.encode_into(t.as_ref(), ids);
                        offsets.push(ids.len());
                    }
                    let seqs: Vec<&[u32]> = offsets.windows(2).map(|w| &ids[w[0]..w[1]]).collect();
                    let mut out = vec![0.0f32; block.len() * k];
                    self.outputs_of(&seqs, s, &mut out)?;
                    Ok(out)
                },
            )
            .collect();
        Ok(blocks?.concat())
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
                    .filter(|(_, &p)| p > self.labels.threshold)
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
        let k = self.outputs();
        let out = self.outputs_of_texts(texts)?;
        Ok(out.chunks_exact(k).map(|row| self.decide(row)).collect())
    }
}

/// The error of an operation that needs another family's model.
fn wrong_family(family: crate::family::Family) -> ModelError {
    ModelError::NotApplicable(format!("this operation does not apply to a {family} model"))
}

/// Model inputs of many texts (from [`Pipeline::encode_into`]), stored flat.
#[derive(Debug, Clone, Default)]
pub struct Encoded {
    ids: Vec<u32>,
    offsets: Vec<usize>,
}

impl Encoded {
    /// Encodes every text with the pipeline's preprocessing.
    pub fn new<'a>(pipeline: &Pipeline, texts: impl Iterator<Item = &'a str>) -> Self {
        let mut e = Encoded {
            ids: Vec::new(),
            offsets: vec![0],
        };
        for t in texts {
            pipeline.encode_into(t, &mut e.ids);
            e.offsets.push(e.ids.len());
        }
        e
    }

    /// Number of sequences.
    pub fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    /// True when there are no sequences.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sequence `i`.
    pub fn get(&self, i: usize) -> &[u32] {
        &self.ids[self.offsets[i]..self.offsets[i + 1]]
    }

    /// Sequences `range` as slices.
    pub fn slices(&self, range: std::ops::Range<usize>) -> Vec<&[u32]> {
        range.map(|i| self.get(i)).collect()
    }
}
