//! The one code path from a string to a prediction: tokenizer → truncation/padding → network →
//! output activation → labels. Training, evaluation, prediction and serving all use it.

use flywheel_nn::{
    BagScratch, Encoder, Loss, PadStates, Parameters, Rng, SeqNet, SeqPadStates, SeqWorkspace,
    Tensor, TextRnn, Workspace,
};
use flywheel_text::{KerasTokenizer, PadSpec, Side};
use rayon::prelude::*;
use serde_json::{json, Map, Value};

use crate::bag::BagNet;
use crate::embed::EncoderNet;
use crate::linear::LinearNet;
use crate::task::{LabelSet, Task};
use crate::{ModelError, ModelSpec};

/// The network of a pipeline: one of the model families.
#[derive(Debug, Clone, PartialEq)]
pub enum Network {
    /// `Embedding → LSTM → Dense` (the reference model).
    Rnn(TextRnn<f32>),
    /// The fastText-style bag of n-grams.
    Bag(BagNet),
    /// TF-IDF + logistic regression.
    Linear(LinearNet),
    /// `Embedding → encoder → Dense` for `gru`, `bilstm`, `cnn`, and `lstm` with masking.
    Seq(SeqNet<f32>),
    /// A pretrained sentence encoder and a logistic-regression head.
    Encoder(EncoderNet),
}

impl From<SeqNet<f32>> for Network {
    fn from(n: SeqNet<f32>) -> Self {
        Network::Seq(n)
    }
}

impl From<TextRnn<f32>> for Network {
    fn from(n: TextRnn<f32>) -> Self {
        Network::Rnn(n)
    }
}

impl Network {
    /// Its weights, named as in the model file.
    pub fn tensors(&self) -> Vec<(String, &Tensor<f32>)> {
        match self {
            Network::Rnn(n) => n.tensors(),
            Network::Bag(b) => b.model.tensors(),
            Network::Linear(l) => l.model.tensors(),
            Network::Seq(n) => n.tensors(),
            Network::Encoder(e) => e.head.tensors(),
        }
    }

    /// A freshly initialised sequence network for `spec` (Keras's initialisers): the reference
    /// [`TextRnn`] for `lstm` without masking, a [`SeqNet`] for the other sequence families.
    pub fn sequence(
        spec: &ModelSpec,
        vocab: usize,
        outputs: usize,
        loss: Loss,
        rng: &mut Rng,
    ) -> Result<Network, ModelError> {
        let h = spec.hidden;
        let make = |e: usize, rng: &mut Rng| -> Encoder<f32> {
            match spec.architecture.as_str() {
                "gru" => Encoder::Gru(flywheel_nn::Gru::new(e, h, rng)),
                "bilstm" => Encoder::BiLstm(flywheel_nn::Bidirectional {
                    forward: flywheel_nn::Lstm::new(e, h, rng),
                    backward: flywheel_nn::Lstm::new(e, h, rng),
                }),
                "cnn" => Encoder::Cnn(flywheel_nn::TextCnn::new(
                    e,
                    &spec.cnn.kernel_sizes,
                    spec.cnn.filters,
                    rng,
                )),
                _ => Encoder::Lstm(flywheel_nn::Lstm::new(e, h, rng)),
            }
        };
        match spec.architecture.as_str() {
            "lstm" if !spec.mask => Ok(Network::Rnn(TextRnn::new(
                vocab,
                spec.embed_dim,
                h,
                outputs,
                loss,
                rng,
            ))),
            "lstm" | "gru" | "bilstm" | "cnn" => Ok(Network::Seq(SeqNet::new(
                vocab,
                spec.embed_dim,
                outputs,
                loss,
                spec.mask,
                rng,
                make,
            ))),
            other => Err(ModelError::Invalid(format!(
                "'{other}' is not a sequence model"
            ))),
        }
    }

    /// The family name of the network.
    pub fn family(&self) -> &'static str {
        match self {
            Network::Rnn(_) => "lstm",
            Network::Bag(_) => "fasttext",
            Network::Linear(_) => "linear",
            Network::Encoder(_) => "encoder",
            Network::Seq(n) => match n.encoder {
                Encoder::Lstm(_) => "lstm",
                Encoder::Gru(_) => "gru",
                Encoder::BiLstm(_) => "bilstm",
                Encoder::Cnn(_) => "cnn",
            },
        }
    }

    /// The output loss of a sequence network.
    pub fn loss(&self) -> Option<Loss> {
        match self {
            Network::Rnn(n) => Some(n.loss),
            Network::Seq(n) => Some(n.loss),
            _ => None,
        }
    }

    /// Number of trainable numbers.
    pub fn num_parameters(&self) -> usize {
        self.tensors().iter().map(|(_, t)| t.len()).sum()
    }
}

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
    pad_states: Option<PadStates<f32>>,
    seq_pads: Option<SeqPadStates<f32>>,
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
        spec.validate()?;
        let net = net.into();
        let (rows, outputs) = match &net {
            Network::Rnn(n) => (n.embedding.vocab(), n.outputs()),
            Network::Seq(n) => (n.embedding.vocab(), n.outputs()),
            Network::Bag(b) => {
                let outputs = task_width(labels.task, b.model.outputs());
                if b.model.rows() != b.featurizer.rows() {
                    return Err(ModelError::Invalid(format!(
                        "the featurizer uses {} rows but the embedding has {}",
                        b.featurizer.rows(),
                        b.model.rows()
                    )));
                }
                (b.model.rows(), outputs)
            }
            Network::Linear(l) => {
                let outputs = task_width(labels.task, l.model.outputs());
                if l.model.features() != l.featurizer.rows() || l.idf.len() != l.featurizer.rows() {
                    return Err(ModelError::Invalid(format!(
                        "the featurizer uses {} rows but the model has {} weights and {} IDF values",
                        l.featurizer.rows(),
                        l.model.features(),
                        l.idf.len()
                    )));
                }
                (l.model.features(), outputs)
            }
            Network::Encoder(e) => {
                let outputs = task_width(labels.task, e.head.outputs());
                let width = e.ngram_rows() + e.encoder.dim();
                if e.head.features() != width
                    || e.ngrams
                        .as_ref()
                        .is_some_and(|g| g.idf.len() != g.featurizer.rows())
                {
                    return Err(ModelError::Invalid(format!(
                        "the head reads {} values but the encoder and n-grams give {width}",
                        e.head.features()
                    )));
                }
                let recorded = spec.encoder.as_ref();
                if recorded.map(|r| (r.sha256.as_str(), r.dim, r.ngrams))
                    != Some((e.encoder.fingerprint(), e.encoder.dim(), e.ngrams.is_some()))
                {
                    return Err(ModelError::Invalid(
                        "the spec does not record this encoder".to_string(),
                    ));
                }
                (e.ngram_rows().max(tokenizer.vocab_size()), outputs)
            }
        };
        let family = net.family();
        let masked = match &net {
            Network::Seq(n) => n.mask_zero,
            _ => false,
        };
        if masked != spec.mask {
            return Err(ModelError::Invalid(format!(
                "the network {} padding but the spec says mask = {}",
                if masked { "masks" } else { "does not mask" },
                spec.mask
            )));
        }
        if let Network::Seq(n) = &net {
            if n.min_steps() > spec.max_len {
                return Err(ModelError::Invalid(format!(
                    "the widest kernel ({}) is longer than max_len {}",
                    n.min_steps(),
                    spec.max_len
                )));
            }
        }
        if spec.architecture != family {
            return Err(ModelError::Invalid(format!(
                "the network is a {family} network but the spec says '{}'",
                spec.architecture
            )));
        }
        if tokenizer.vocab_size() > rows {
            return Err(ModelError::Invalid(format!(
                "the tokenizer emits ids up to {} but the embedding has {} rows",
                tokenizer.vocab_size(),
                rows
            )));
        }
        if outputs != labels.outputs() {
            return Err(ModelError::Invalid(format!(
                "the network has {outputs} outputs but the {} task with {} labels needs {}",
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
        if let Some(loss) = net.loss() {
            if loss != labels.task.loss() {
                return Err(ModelError::Invalid(format!(
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
            pad_states: None,
            seq_pads: None,
        };
        p.refresh()?;
        Ok(p)
    }

    /// Recomputes what is derived from the weights (call after changing them).
    pub fn refresh(&mut self) -> Result<(), ModelError> {
        self.pad_states = match (&self.net, self.pad.padding) {
            (Network::Rnn(n), Side::Pre) => Some(n.pad_states(self.pad.maxlen, self.pad.value)?),
            _ => None,
        };
        self.seq_pads = match (&self.net, self.pad.padding) {
            (Network::Seq(n), Side::Pre) if self.pad.value == 0 => n.pad_states(self.pad.maxlen),
            _ => None,
        };
        Ok(())
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &KerasTokenizer {
        &self.tokenizer
    }

    /// The network.
    pub fn network(&self) -> &Network {
        &self.net
    }

    /// Number of outputs per text (`labels.outputs()`).
    pub fn outputs(&self) -> usize {
        self.labels.outputs()
    }

    /// Number of trainable numbers.
    pub fn num_parameters(&self) -> usize {
        self.net.num_parameters()
    }

    /// The recurrent network (an error for other families).
    pub fn rnn(&self) -> Result<&TextRnn<f32>, ModelError> {
        match &self.net {
            Network::Rnn(n) => Ok(n),
            _ => Err(self.wrong_family("lstm")),
        }
    }

    /// The recurrent network, mutable; call [`Pipeline::refresh`] after changing weights.
    pub fn rnn_mut(&mut self) -> Result<&mut TextRnn<f32>, ModelError> {
        match &mut self.net {
            Network::Rnn(n) => Ok(n),
            _ => Err(ModelError::Invalid(
                "this operation needs an lstm model".to_string(),
            )),
        }
    }

    /// The fastText-style network (an error for other families).
    pub fn bag(&self) -> Result<&BagNet, ModelError> {
        match &self.net {
            Network::Bag(b) => Ok(b),
            _ => Err(self.wrong_family("fasttext")),
        }
    }

    /// The fastText-style network, mutable.
    pub fn bag_mut(&mut self) -> Result<&mut BagNet, ModelError> {
        match &mut self.net {
            Network::Bag(b) => Ok(b),
            _ => Err(ModelError::Invalid(
                "this operation needs a fasttext model".to_string(),
            )),
        }
    }

    fn wrong_family(&self, want: &str) -> ModelError {
        ModelError::Invalid(format!(
            "this operation needs a {want} model, not {}",
            self.spec.architecture
        ))
    }

    /// True when a text's model input is a truncated id sequence (sequence models), false when
    /// it is the feature rows of every token (n-gram families).
    pub fn truncates(&self) -> bool {
        matches!(self.net, Network::Rnn(_) | Network::Seq(_))
    }

    /// Swaps the encoder of an `encoder` model for another with the same fingerprint (a
    /// [`crate::embed::Memo`] for the one it wraps).
    pub fn replace_encoder(
        &mut self,
        encoder: std::sync::Arc<dyn crate::embed::TextEncoder>,
    ) -> Result<(), ModelError> {
        match &mut self.net {
            Network::Encoder(e)
                if e.encoder.fingerprint() == encoder.fingerprint()
                    && e.encoder.dim() == encoder.dim() =>
            {
                e.encoder = encoder;
                Ok(())
            }
            Network::Encoder(_) => Err(ModelError::Encoder(
                "the replacement is a different encoder".to_string(),
            )),
            _ => Err(self.wrong_family("encoder")),
        }
    }

    /// The encoder network (an error for other families).
    pub fn encoder_net(&self) -> Result<&EncoderNet, ModelError> {
        match &self.net {
            Network::Encoder(e) => Ok(e),
            _ => Err(self.wrong_family("encoder")),
        }
    }

    /// The sequence network of the `gru`, `bilstm`, `cnn` and masked `lstm` families (an error
    /// for other families).
    pub fn seq(&self) -> Result<&SeqNet<f32>, ModelError> {
        match &self.net {
            Network::Seq(n) => Ok(n),
            _ => Err(self.wrong_family("gru, bilstm, cnn or masked lstm")),
        }
    }

    /// The sequence network, mutable.
    pub fn seq_mut(&mut self) -> Result<&mut SeqNet<f32>, ModelError> {
        match &mut self.net {
            Network::Seq(n) => Ok(n),
            _ => Err(ModelError::Invalid(
                "this operation needs a gru, bilstm, cnn or masked lstm model".to_string(),
            )),
        }
    }

    /// The output loss of a sequence model (an error for the n-gram families).
    pub fn loss(&self) -> Result<Loss, ModelError> {
        self.net.loss().ok_or_else(|| self.wrong_family("sequence"))
    }

    /// The padding rule.
    pub fn pad(&self) -> PadSpec {
        self.pad
    }

    /// The model input of `text`, appended to `out`: token ids after truncation (at most
    /// `max_len`) for recurrent models, embedding rows for the fastText-style model.
    pub fn encode_into(&self, text: &str, out: &mut Vec<u32>) {
        match &self.net {
            Network::Bag(b) => return b.featurizer.encode_into(&self.tokenizer, text, out),
            Network::Linear(l) => return l.featurizer.encode_into(&self.tokenizer, text, out),
            Network::Encoder(e) => return e.encode_into(&self.tokenizer, text, out),
            Network::Rnn(_) | Network::Seq(_) => {}
        }
        let start = out.len();
        self.tokenizer.text_to_sequence_into(text, out);
        self.truncate_from(out, start);
    }

    /// Cuts the ids appended to `out` since `start` to `max_len`, at the configured end.
    fn truncate_from(&self, out: &mut Vec<u32>, start: usize) {
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

    /// The model input of already-cut tokens (see [`Pipeline::encode_into`]).
    pub fn encode_tokens_into(&self, tokens: &[&str], out: &mut Vec<u32>) {
        match &self.net {
            Network::Bag(b) => b.featurizer.encode_tokens(&self.tokenizer, tokens, out),
            Network::Linear(l) => l.featurizer.encode_tokens(&self.tokenizer, tokens, out),
            Network::Encoder(e) => e.encode_into(&self.tokenizer, &tokens.join(" "), out),
            Network::Rnn(_) | Network::Seq(_) => {
                let start = out.len();
                out.extend(tokens.iter().filter_map(|t| self.tokenizer.token_id(t)));
                self.truncate_from(out, start);
            }
        }
    }

    /// Logits (`[seqs.len(), outputs]`) of truncated id sequences (sequence models).
    fn logits_of(
        &self,
        seqs: &[&[u32]],
        s: &mut Scratch,
        out: &mut [f32],
    ) -> Result<(), ModelError> {
        match (&self.net, &self.pad_states) {
            (Network::Rnn(net), Some(pads)) => {
                net.predict_pre_padded(seqs, pads, &mut s.ws, out)?
            }
            (Network::Rnn(net), None) => {
                let (steps, b) = self.padded_ids(seqs, false, s);
                net.predict_padded(&s.padded, steps, b, &mut s.ws, out)?;
            }
            (Network::Seq(net), _) if self.seq_pads.is_some() => {
                if let Some(pads) = &self.seq_pads {
                    net.predict_pre_padded(seqs, pads, &mut s.seq, out)?;
                }
            }
            (Network::Seq(net), _) => {
                let (steps, b) = self.padded_ids(seqs, net.mask_zero, s);
                net.predict_padded(&s.padded, steps, b, &mut s.seq, out)?;
            }
            _ => return Err(self.wrong_family("sequence")),
        }
        Ok(())
    }

    /// Pads `seqs` into a time-major `[steps, batch]` matrix in `s.padded`. With masking the
    /// padding is never read, so every sequence is pre-padded to the longest of the block
    /// (same result, fewer steps); otherwise to `max_len` on the configured side.
    fn padded_ids(&self, seqs: &[&[u32]], masked: bool, s: &mut Scratch) -> (usize, usize) {
        let b = seqs.len();
        let steps = match masked {
            true => seqs.iter().map(|q| q.len()).max().unwrap_or(0).max(1),
            false => self.pad.maxlen,
        };
        let pad = PadSpec {
            maxlen: steps,
            padding: if masked { Side::Pre } else { self.pad.padding },
            ..self.pad
        };
        s.padded.clear();
        s.padded.resize(steps * b, 0);
        s.row.clear();
        s.row.resize(steps, 0);
        for (j, q) in seqs.iter().enumerate() {
            pad.pad_into(q, &mut s.row);
            for (t, &id) in s.row.iter().enumerate() {
                s.padded[t * b + j] = id;
            }
        }
        (steps, b)
    }

    /// Logits of id sequences, computed in parallel blocks on the current rayon pool:
    /// `[seqs.len(), outputs]` (sequence models).
    pub fn logits_par(&self, seqs: &[&[u32]]) -> Result<Vec<f32>, ModelError> {
        let k = self.outputs();
        let blocks: Result<Vec<Vec<f32>>, ModelError> = seqs
            .par_chunks(BLOCK)
            .map_init(Scratch::default, |s, block| {
                let mut out = vec![0.0f32; block.len() * k];
                self.logits_of(block, s, &mut out)?;
                Ok(out)
            })
            .collect();
        Ok(blocks?.concat())
    }

    /// Output probabilities (or values) of model inputs (from [`Pipeline::encode_into`]),
    /// computed in parallel blocks on the current rayon pool: `[seqs.len(), outputs]`.
    pub fn outputs_par(&self, seqs: &[&[u32]]) -> Result<Vec<f32>, ModelError> {
        let k = self.outputs();
        let blocks: Result<Vec<Vec<f32>>, ModelError> = seqs
            .par_chunks(BLOCK)
            .map_init(Scratch::default, |s, block| {
                let mut out = vec![0.0f32; block.len() * k];
                self.outputs_of(block, s, &mut out)?;
                Ok(out)
            })
            .collect();
        Ok(blocks?.concat())
    }

    /// Outputs of one block of model inputs.
    fn outputs_of(
        &self,
        seqs: &[&[u32]],
        s: &mut Scratch,
        out: &mut [f32],
    ) -> Result<(), ModelError> {
        let k = self.outputs();
        match &self.net {
            Network::Rnn(_) | Network::Seq(_) => {
                self.logits_of(seqs, s, out)?;
                self.loss()?.activate(out, k);
            }
            Network::Bag(b) => {
                for (seq, row) in seqs.iter().zip(out.chunks_exact_mut(k)) {
                    b.outputs_into(seq, self.labels.task, &mut s.bag, &mut s.probs, row)?;
                }
            }
            Network::Linear(l) => {
                for (seq, row) in seqs.iter().zip(out.chunks_exact_mut(k)) {
                    l.outputs_into(seq, self.labels.task, &mut s.sparse, row)?;
                }
            }
            Network::Encoder(e) => e.outputs_into(seqs, self.labels.task, out)?,
        }
        Ok(())
    }

    /// Output probabilities (or values) of texts: `[texts.len(), outputs]`.
    pub fn outputs_of_texts<S: AsRef<str> + Sync>(
        &self,
        texts: &[S],
    ) -> Result<Vec<f32>, ModelError> {
        let k = self.outputs();
        let blocks: Result<Vec<Vec<f32>>, ModelError> = texts
            .par_chunks(BLOCK)
            .map_init(Scratch::default, |s, block| {
                s.ids.clear();
                s.offsets.clear();
                s.offsets.push(0);
                for t in block {
                    self.encode_into(t.as_ref(), &mut s.ids);
                    s.offsets.push(s.ids.len());
                }
                let (ids, offsets) = (std::mem::take(&mut s.ids), std::mem::take(&mut s.offsets));
                let seqs: Vec<&[u32]> = offsets.windows(2).map(|w| &ids[w[0]..w[1]]).collect();
                let mut out = vec![0.0f32; block.len() * k];
                let r = self.outputs_of(&seqs, s, &mut out);
                drop(seqs);
                (s.ids, s.offsets) = (ids, offsets);
                r.map(|()| out)
            })
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

/// Outputs per text for `task` from a model with `model_outputs` outputs: a binary model with
/// a softmax (or tree) over both classes reports one probability, the second class's.
pub(crate) fn task_width(task: Task, model_outputs: usize) -> usize {
    if task == Task::Binary && model_outputs == 2 {
        1
    } else {
        model_outputs
    }
}

/// Writes the task's outputs (`[task_width]`) from a model's probabilities (see
/// [`task_width`]).
pub(crate) fn task_outputs(task: Task, probs: &[f32], out: &mut [f32]) {
    if task_width(task, probs.len()) == 1 && probs.len() == 2 {
        out[0] = probs[1];
    } else {
        out.copy_from_slice(probs);
    }
}

/// Per-thread buffers of inference.
#[derive(Default)]
struct Scratch {
    ws: Workspace<f32>,
    seq: SeqWorkspace<f32>,
    padded: Vec<u32>,
    row: Vec<u32>,
    bag: BagScratch,
    probs: Vec<f32>,
    sparse: (Vec<u32>, Vec<f32>, Vec<f32>),
    ids: Vec<u32>,
    offsets: Vec<usize>,
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
