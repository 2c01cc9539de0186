//! Per-token explanations by occlusion (leave one token out), faithful to what the model reads.
//!
//! For each token the model actually reads, the attribution is
//! `p(c | text) − p(c | text without that token)`, where `c` is the explained class (by default
//! the predicted one) and "without that token" is exactly the id sequence the model would see had
//! the word been deleted from the text: the token's id is removed *before* truncation, so a word
//! that truncation had cut off can move back in, as it would. Positive values support `c`.
//! All variants of one text go through the network as one batch ([`Pipeline::outputs_par`]).
//!
//! Tokens the model never sees get attribution 0 and a flag: words outside the vocabulary that
//! the tokenizer drops (`in_vocabulary: false`) and words cut by truncation (`truncated: true`).
//! With an OOV token set, unknown words *are* seen (as the OOV id): they are flagged
//! `in_vocabulary: false` but still get their occlusion attribution.
//!
//! For the `encoder` family "without that token" is the text as written with the word's
//! characters deleted (the encoder reads case and punctuation), embedded again.
//!
//! Offsets (`start`, `end`) are Unicode scalar value (char) offsets into the original text.

use flywheel_text::Side;
use serde::{Deserialize, Serialize};

use crate::metrics::argmax;
use crate::pipeline::Pipeline;
use crate::task::Task;
use crate::ModelError;

/// The method name reported with every explanation.
pub const METHOD: &str = "occlusion";

/// One token of an explained text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenAttribution {
    /// The token as written in the original text (`text[start..end]` in chars).
    pub text: String,
    /// First char (Unicode scalar value, not byte) of the token in the original text.
    pub start: usize,
    /// One past its last char.
    pub end: usize,
    /// Drop of the explained class's probability (regression: of the value) when the token is
    /// removed; 0 for tokens the model does not see.
    pub attribution: f32,
    /// False when the word is not in the vocabulary (dropped, or mapped to the OOV token).
    pub in_vocabulary: bool,
    /// True when truncation (`max_len`) cuts the token off, so the model never sees it.
    pub truncated: bool,
}

/// Why a text got its label, token by token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Explanation {
    /// The explained label (the predicted one unless asked otherwise; `"value"` for regression).
    pub label: String,
    /// Its probability for the whole text (regression: the predicted value).
    pub score: f32,
    /// How attributions were computed ([`METHOD`]).
    pub method: String,
    /// Every token in text order.
    pub tokens: Vec<TokenAttribution>,
}

/// Explains the predicted label of `text` (multi-label: the most probable label).
pub fn explain(pipeline: &Pipeline, text: &str) -> Result<Explanation, ModelError> {
    explain_label(pipeline, text, None)
}

/// Explains `text` with respect to `label` (`None`: the predicted label).
///
/// Fails when `label` is not one of the model's labels.
pub fn explain_label(
    pipeline: &Pipeline,
    text: &str,
    label: Option<&str>,
) -> Result<Explanation, ModelError> {
    let prepared = Prepared::new(pipeline, text);
    let mut seqs: Vec<Vec<u32>> = Vec::with_capacity(prepared.kept.len() + 1);
    seqs.push(prepared.sequence_without(pipeline, &[]));
    for &j in &prepared.kept {
        seqs.push(prepared.sequence_without(pipeline, &[j]));
    }
    let scores = class_scores(pipeline, &seqs)?;
    let k = pipeline.outputs();
    let base_row = &scores[..k];
    let (class, name) = target_class(pipeline, base_row, label)?;
    let value = |row: &[f32]| score_of(pipeline.labels.task, row, class);
    let base = value(base_row);
    let mut attributions = vec![0.0f32; prepared.spans.len()];
    for (v, &j) in prepared.kept.iter().enumerate() {
        let row = &scores[(v + 1) * k..(v + 2) * k];
        attributions[prepared.positions[j]] = base - value(row);
    }
    let chars: Vec<char> = text.chars().collect();
    let kept_set = prepared.kept_mask();
    let tokens = prepared
        .spans
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let seen = prepared.seq_index[i];
            TokenAttribution {
                text: chars[s.start..s.end].iter().collect(),
                start: s.start,
                end: s.end,
                attribution: attributions[i],
                in_vocabulary: prepared.in_vocab[i],
                truncated: seen.is_some_and(|q| !kept_set[q]),
            }
        })
        .collect();
    Ok(Explanation {
        label: name,
        score: base,
        method: METHOD.to_string(),
        tokens,
    })
}

/// Result of the deletion check ([`deletion_check`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeletionCheck {
    /// Texts measured (those with more than `k` tokens the model sees).
    pub texts: usize,
    /// Tokens deleted per text.
    pub k: usize,
    /// Mean drop of the predicted label's score after deleting the `k` top-attributed tokens.
    pub mean_drop_top: f64,
    /// Mean drop after deleting `k` tokens chosen at random (same texts).
    pub mean_drop_random: f64,
    /// Mean absolute change after deleting the top-attributed tokens.
    pub mean_abs_change_top: f64,
    /// Mean absolute change after deleting random tokens.
    pub mean_abs_change_random: f64,
    /// Fraction of texts where deleting the top tokens dropped the score more than random ones
    /// (on average over the draws).
    pub top_wins: f64,
}

/// Random deletions averaged per text in [`deletion_check`].
pub const RANDOM_DRAWS: usize = 5;

/// Faithfulness check: for each text (with more than `k` tokens the model sees), deletes the `k`
/// tokens with the highest attribution to the predicted label, and, separately, `k` tokens chosen
/// at random ([`RANDOM_DRAWS`] draws, averaged; deterministic for a `seed`), and measures the
/// drop of the predicted label's score. A faithful explanation makes the first drop larger on
/// average.
pub fn deletion_check<S: AsRef<str>>(
    pipeline: &Pipeline,
    texts: &[S],
    k: usize,
    seed: u64,
) -> Result<DeletionCheck, ModelError> {
    let mut rng = flywheel_nn::Rng::with_stream(seed, 7);
    let (mut n, mut top, mut rand, mut abs_top, mut abs_rand, mut wins) =
        (0usize, 0.0, 0.0, 0.0, 0.0, 0usize);
    for text in texts {
        let text = text.as_ref();
        let e = explain(pipeline, text)?;
        let prepared = Prepared::new(pipeline, text);
        if prepared.kept.len() <= k {
            continue;
        }
        // Kept sequence positions ranked by their token's attribution.
        let mut ranked: Vec<usize> = prepared.kept.clone();
        ranked.sort_by(|&a, &b| {
            let (ta, tb) = (
                e.tokens[prepared.positions[a]].attribution,
                e.tokens[prepared.positions[b]].attribution,
            );
            tb.total_cmp(&ta)
        });
        let mut seqs = vec![
            prepared.sequence_without(pipeline, &[]),
            prepared.sequence_without(pipeline, &ranked[..k]),
        ];
        let mut pool = prepared.kept.clone();
        for _ in 0..RANDOM_DRAWS {
            rng.shuffle(&mut pool);
            seqs.push(prepared.sequence_without(pipeline, &pool[..k]));
        }
        let scores = class_scores(pipeline, &seqs)?;
        let w = pipeline.outputs();
        let (class, _) = target_class(pipeline, &scores[..w], None)?;
        let task = pipeline.labels.task;
        let score = |i: usize| f64::from(score_of(task, &scores[i * w..(i + 1) * w], class));
        let base = score(0);
        let d_top = base - score(1);
        let (mut d_rand, mut a_rand) = (0.0, 0.0);
        for r in 0..RANDOM_DRAWS {
            let d = base - score(2 + r);
            d_rand += d / RANDOM_DRAWS as f64;
            a_rand += d.abs() / RANDOM_DRAWS as f64;
        }
        n += 1;
        top += d_top;
        rand += d_rand;
        abs_top += d_top.abs();
        abs_rand += a_rand;
        wins += usize::from(d_top > d_rand);
    }
    if n == 0 {
        return Err(ModelError::NotApplicable(format!(
            "no text has more than {k} tokens the model sees"
        )));
    }
    let nf = n as f64;
    Ok(DeletionCheck {
        texts: n,
        k,
        mean_drop_top: top / nf,
        mean_drop_random: rand / nf,
        mean_abs_change_top: abs_top / nf,
        mean_abs_change_random: abs_rand / nf,
        top_wins: wins as f64 / nf,
    })
}

/// A tokenised text: spans, ids, and which ids survive truncation.
struct Prepared {
    text: String,
    spans: Vec<flywheel_text::TokenSpan>,
    in_vocab: Vec<bool>,
    /// For each span, its index in `full` (None: dropped).
    seq_index: Vec<Option<usize>>,
    /// The untruncated id sequence (token positions for models that see every token).
    full: Vec<u32>,
    /// Span index of each entry of `full`.
    positions: Vec<usize>,
    /// Indices into `full` that survive truncation.
    kept: Vec<usize>,
}

impl Prepared {
    fn new(pipeline: &Pipeline, text: &str) -> Self {
        let tok = pipeline.tokenizer();
        let spans = tok.token_spans(text);
        let mut full = Vec::new();
        let mut positions = Vec::new();
        let mut seq_index = Vec::with_capacity(spans.len());
        let mut in_vocab = Vec::with_capacity(spans.len());
        // A pretrained encoder reads every word (as word pieces).
        let reads_all = pipeline.reads_raw_text();
        for (i, s) in spans.iter().enumerate() {
            in_vocab.push(reads_all || tok.word_index(&s.token).is_some());
            // The fastText-style model sees every token (n-grams of unknown words included).
            let id = match pipeline.truncates() {
                true => tok.token_id(&s.token),
                false => Some(i as u32),
            };
            match id {
                Some(id) => {
                    seq_index.push(Some(full.len()));
                    full.push(id);
                    positions.push(i);
                }
                None => seq_index.push(None),
            }
        }
        let kept = kept_range(pipeline, full.len()).collect();
        Prepared {
            text: text.to_string(),
            spans,
            in_vocab,
            seq_index,
            full,
            positions,
            kept,
        }
    }

    fn kept_mask(&self) -> Vec<bool> {
        let mut m = vec![false; self.full.len()];
        for &q in &self.kept {
            m[q] = true;
        }
        m
    }

    /// The truncated sequence the model sees with the entries `drop` (indices into `full`)
    /// removed from the text.
    fn sequence_without(&self, pipeline: &Pipeline, drop: &[usize]) -> Vec<u32> {
        if pipeline.reads_raw_text() {
            // The encoder reads the text as written (case, punctuation): delete the words'
            // characters from it.
            let mut cut = vec![false; self.text.chars().count()];
            for &q in drop {
                let span = &self.spans[self.full[q] as usize];
                cut[span.start..span.end].iter_mut().for_each(|c| *c = true);
            }
            let text: String = self
                .text
                .chars()
                .zip(&cut)
                .filter(|(_, &c)| !c)
                .map(|(ch, _)| ch)
                .collect();
            let mut out = Vec::new();
            pipeline.encode_into(&text, &mut out);
            return out;
        }
        if !pipeline.truncates() {
            let tokens: Vec<&str> = self
                .full
                .iter()
                .enumerate()
                .filter(|(q, _)| !drop.contains(q))
                .map(|(_, &pos)| self.spans[pos as usize].token.as_str())
                .collect();
            let mut out = Vec::new();
            pipeline.encode_tokens_into(&tokens, &mut out);
            return out;
        }
        let rest: Vec<u32> = self
            .full
            .iter()
            .enumerate()
            .filter(|(q, _)| !drop.contains(q))
            .map(|(_, &id)| id)
            .collect();
        let range = kept_range(pipeline, rest.len());
        rest[range].to_vec()
    }
}

/// The positions of a sequence of length `n` that truncation keeps.
fn kept_range(pipeline: &Pipeline, n: usize) -> std::ops::Range<usize> {
    let pad = pipeline.pad();
    if n <= pad.maxlen || !pipeline.truncates() {
        return 0..n;
    }
    match pad.truncating {
        Side::Pre => n - pad.maxlen..n,
        Side::Post => 0..pad.maxlen,
    }
}

/// Activated outputs (`[seqs.len(), outputs]`) of truncated id sequences.
fn class_scores(pipeline: &Pipeline, seqs: &[Vec<u32>]) -> Result<Vec<f32>, ModelError> {
    let refs: Vec<&[u32]> = seqs.iter().map(Vec::as_slice).collect();
    pipeline.outputs_par(&refs)
}

/// The class to explain and its name.
fn target_class(
    pipeline: &Pipeline,
    row: &[f32],
    label: Option<&str>,
) -> Result<(usize, String), ModelError> {
    let names = &pipeline.labels.labels;
    let task = pipeline.labels.task;
    if task == Task::Regression {
        return match label {
            None | Some("value") => Ok((0, "value".to_string())),
            Some(l) => Err(ModelError::NotApplicable(format!(
                "a regression model has no label '{l}'; explain its value instead"
            ))),
        };
    }
    let class = match label {
        Some(l) => names.iter().position(|n| n == l).ok_or_else(|| {
            ModelError::NotApplicable(format!(
                "unknown label '{l}': the model's labels are {}",
                names.join(", ")
            ))
        })?,
        None => match task {
            Task::Binary => usize::from(row.first().copied().unwrap_or(0.0) > 0.5),
            _ => argmax(row),
        },
    };
    let name = names
        .get(class)
        .cloned()
        .ok_or_else(|| ModelError::NotApplicable("the model has no label names".to_string()))?;
    Ok((class, name))
}

/// The explained quantity in one row of outputs: the probability of `class` (binary: the
/// sigmoid output or its complement), or the regression value.
fn score_of(task: Task, row: &[f32], class: usize) -> f32 {
    let p = row.get(if task == Task::Binary { 0 } else { class });
    let p = p.copied().unwrap_or(0.0);
    match (task, class) {
        (Task::Binary, 0) => 1.0 - p,
        _ => p,
    }
}
