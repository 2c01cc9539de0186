//! The `encoder` family: a frozen pretrained sentence encoder ([`crate::embed`]) and a
//! logistic-regression head fitted by L-BFGS on its embeddings (the `linear` family's
//! [`fit_head`]) — optionally next to the `linear` family's TF-IDF n-gram features in the same
//! regression (`--with-ngrams`): the encoder brings what words mean, the n-grams what this
//! data's words signal.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use flywheel_nn::{LinearModel, Parameters, SparseRows, Tensor};
use flywheel_text::{KerasTokenizer, PadSpec};

use super::api::{cost, ModelFamily, ReadContext, Setting, TensorFile, TrainInput, Workload};
use super::linear::{fit_head, head_shape, one_pass_config, one_pass_outcome, thread_pool};
use crate::embed::{embed_cached, key_of, load_encoder, resolve_encoder, TextEncoder, BATCH};
use crate::family::Family;
use crate::features::{fit_tfidf, tfidf, BagFeaturizer, Tfidf};
use crate::network::{task_outputs, task_width, Net, NetShape, Network, RawTensor, Scratch};
use crate::outcome::{training_rows, TrainEvent, TrainOutcome};
use crate::pipeline::Pipeline;
use crate::spec::{EncoderSpec, ModelSpec, TrainConfig};
use crate::task::{LabelSet, Task};
use crate::ModelError;

/// The `encoder` family.
pub struct Encoder;

impl ModelSpec {
    /// A pretrained sentence encoder (in `dir`) and logistic regression on its vectors, `C = 1`;
    /// with n-grams, the `linear` family's TF-IDF features (word bigrams) beside them.
    pub fn encoder(dir: impl Into<String>) -> Self {
        let mut s = ModelSpec::linear();
        s.family = Family::Encoder;
        s.encoder = Some(EncoderSpec::new(dir));
        s
    }
}

impl ModelFamily for Encoder {
    fn family(&self) -> Family {
        Family::Encoder
    }

    fn default_spec(&self) -> ModelSpec {
        ModelSpec::encoder(String::new())
    }

    /// One pass (the solver runs to convergence), no validation rows.
    fn default_config(&self) -> TrainConfig {
        one_pass_config()
    }

    fn accepts(&self, setting: Setting) -> bool {
        matches!(
            setting,
            Setting::Encoder | Setting::Ngrams | Setting::Regression
        )
    }

    fn uses_ngrams(&self, spec: &ModelSpec) -> bool {
        spec.encoder.as_ref().is_some_and(|e| e.ngrams)
    }

    fn validate(&self, spec: &ModelSpec) -> Result<(), ModelError> {
        validate_head(spec, self.uses_ngrams(spec))
    }

    fn train(
        &self,
        input: TrainInput<'_>,
        on_event: &mut dyn FnMut(TrainEvent<'_>),
    ) -> Result<TrainOutcome, ModelError> {
        train_encoder(input, on_event)
    }

    fn read(&self, file: &dyn TensorFile, ctx: &ReadContext<'_>) -> Result<Network, ModelError> {
        let recorded = ctx.spec.encoder.as_ref().ok_or_else(|| {
            ModelError::Incompatible("an encoder model without its encoder".to_string())
        })?;
        let encoder = resolve_encoder(recorded)?;
        let ngrams = match recorded.ngrams {
            true => {
                let featurizer = BagFeaturizer::with_buckets(
                    ctx.spec.bag.clone(),
                    ctx.tokenizer.words().len(),
                    file.u32("bag.buckets")?,
                );
                let rows = featurizer.rows();
                Some(Ngrams {
                    featurizer,
                    idf: file.f32("linear.idf", &[rows])?.data().to_vec(),
                })
            }
            false => None,
        };
        let width = ngrams.as_ref().map_or(0, |g| g.featurizer.rows()) + recorded.dim;
        let (outputs, loss) = head_shape(ctx.task, ctx.outputs, ctx.spec.linear.loss)?;
        Ok(Network::new(EncoderNet {
            encoder,
            ngrams,
            scale: recorded.scale,
            head: LinearModel {
                weight: file.f32("linear.weight", &[width, outputs])?,
                bias: file.f32("linear.bias", &[outputs])?,
                loss,
            },
        }))
    }

    fn summary(&self, pipeline: &Pipeline) -> String {
        let sp = &pipeline.spec;
        let e = sp.encoder.clone().unwrap_or_else(|| EncoderSpec::new(""));
        format!(
            "encoder {} (sha256 {}, {} values) head {} C {}{}{} parameters {}",
            e.dir,
            e.sha256,
            e.dim,
            sp.linear.loss.name(),
            sp.linear.c,
            if sp.linear.balanced { " balanced" } else { "" },
            if e.ngrams {
                format!(
                    " with word-ngrams {} char-ngrams {} words {}",
                    sp.bag.word_ngrams,
                    sp.bag.char_ngrams(),
                    pipeline.tokenizer().words().len()
                )
            } else {
                String::new()
            },
            pipeline.num_parameters()
        )
    }

    fn describe(&self, spec: &ModelSpec, _cfg: &TrainConfig) -> String {
        match self.uses_ngrams(spec) {
            true => format!(
                "encoder C={} + tokenizer={} word-ngrams={}",
                spec.linear.c, spec.tokenizer.segmentation, spec.bag.word_ngrams
            ),
            false => format!("encoder C={} (vector only)", spec.linear.c),
        }
    }

    /// The head's L-BFGS over the vectors (and the n-grams' non-zeros); the embedding itself is
    /// charged once per search, up front.
    fn planned_seconds(&self, spec: &ModelSpec, _cfg: &TrainConfig, work: &Workload) -> f64 {
        let passes = work.classes * cost::ENCODER_ITERS * cost::LINEAR_PASS;
        let ngrams = match self.uses_ngrams(spec) {
            true => work.tokenize + work.features * passes / cost::UPDATES_PER_SEC,
            false => 0.0,
        };
        ngrams + work.rows * work.vector_dim * passes / cost::UPDATES_PER_SEC
    }
}

/// Checks the settings of a head on an encoder (`encoder`, `setfit`): a directory, a positive
/// scale, the regression's settings and, with n-grams, theirs.
pub(super) fn validate_head(spec: &ModelSpec, ngrams: bool) -> Result<(), ModelError> {
    match &spec.encoder {
        Some(e) if e.dir.is_empty() => {}
        None => {}
        Some(e) if !(e.scale.is_finite() && e.scale > 0.0) => {
            return Err(ModelError::Setting(format!(
                "the encoder's scale must be a positive number, got {}",
                e.scale
            )))
        }
        Some(_) => {
            spec.linear.validate()?;
            return match ngrams {
                true => spec.bag.validate(),
                false => Ok(()),
            };
        }
    }
    Err(ModelError::Setting(format!(
        "--model {} needs --encoder DIR (a model directory)",
        spec.family
    )))
}

/// Swaps the encoder of an `encoder` model for another with the same fingerprint (a
/// [`crate::embed::Memo`] for the one it wraps, or back).
pub fn replace_encoder(
    pipeline: &mut Pipeline,
    encoder: Arc<dyn TextEncoder>,
) -> Result<(), ModelError> {
    let net = pipeline.net_mut::<EncoderNet>()?;
    if net.encoder.fingerprint() != encoder.fingerprint() || net.encoder.dim() != encoder.dim() {
        return Err(ModelError::Encoder(
            "the replacement is a different encoder".to_string(),
        ));
    }
    net.encoder = encoder;
    Ok(())
}

/// TF-IDF n-gram features beside the encoder's vector (as the `linear` family's).
#[derive(Debug, Clone, PartialEq)]
pub struct Ngrams {
    /// Tokens to feature rows.
    pub featurizer: BagFeaturizer,
    /// IDF weight of every feature row.
    pub idf: Vec<f32>,
}

/// The `encoder` network: the frozen encoder and the head on its vectors (and n-grams).
///
/// A text's model input ([`EncoderNet::encode_into`]) is the number of word pieces, the word
/// pieces, then the n-gram feature rows.
#[derive(Debug, Clone)]
pub struct EncoderNet {
    /// The sentence encoder (shared, not stored in the model file).
    pub encoder: Arc<dyn TextEncoder>,
    /// The n-gram features, with `--with-ngrams`.
    pub ngrams: Option<Ngrams>,
    /// Factor on the encoder's values in the head's input.
    pub scale: f32,
    /// Logistic regression (softmax, a sigmoid per label, or least squares) on the n-gram
    /// features (the first rows) and the scaled vector (the last `dim` rows).
    pub head: LinearModel,
}

impl PartialEq for EncoderNet {
    fn eq(&self, other: &Self) -> bool {
        self.encoder.fingerprint() == other.encoder.fingerprint()
            && self.ngrams == other.ngrams
            && self.scale == other.scale
            && self.head == other.head
    }
}

impl EncoderNet {
    /// Rows of n-gram features before the vector's.
    pub fn ngram_rows(&self) -> usize {
        self.ngrams.as_ref().map_or(0, |g| g.featurizer.rows())
    }

    /// Appends the model input of `text` (see [`EncoderNet`]).
    pub fn encode_into(&self, tokenizer: &KerasTokenizer, text: &str, out: &mut Vec<u32>) {
        let at = out.len();
        out.push(0);
        self.encoder.token_ids(text, out);
        out[at] = (out.len() - at - 1) as u32;
        if let Some(g) = &self.ngrams {
            g.featurizer.encode_into(tokenizer, text, out);
        }
    }

    /// The head's input for one text: TF-IDF of the feature `rows`, then the scaled vector.
    fn features(&self, rows: &[u32], vector: &[f32], idx: &mut Vec<u32>, val: &mut Vec<f32>) {
        idx.clear();
        val.clear();
        if let Some(g) = &self.ngrams {
            tfidf(&g.idf, rows, idx, val);
        }
        append_vector(self.ngram_rows(), vector, self.scale, idx, val);
    }

    /// Outputs for the task (`[inputs.len() · task width]`) of model inputs, embedded in
    /// length-sorted batches on this thread.
    pub fn outputs_into(
        &self,
        inputs: &[&[u32]],
        task: Task,
        out: &mut [f32],
    ) -> Result<(), ModelError> {
        let dim = self.encoder.dim();
        let width = out.len() / inputs.len().max(1);
        let split = |input: &[u32]| -> (std::ops::Range<usize>, std::ops::Range<usize>) {
            let n = input
                .first()
                .map_or(0, |&n| n as usize)
                .min(input.len().saturating_sub(1));
            (1..1 + n, (1 + n).min(input.len())..input.len())
        };
        let pieces: Vec<&[u32]> = inputs.iter().map(|q| &q[split(q).0]).collect();
        let mut order: Vec<usize> = (0..inputs.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(pieces[i].len()));
        let mut probs = vec![0.0f32; self.head.outputs()];
        let (mut idx, mut val) = (Vec::new(), Vec::new());
        for batch in order.chunks(BATCH) {
            let block: Vec<&[u32]> = batch.iter().map(|&i| pieces[i]).collect();
            let vectors = self.encoder.embed_ids(&block)?;
            for (&i, v) in batch.iter().zip(vectors.chunks_exact(dim)) {
                let rows = &inputs[i][split(inputs[i]).1];
                self.features(rows, v, &mut idx, &mut val);
                self.head.predict(&idx, &val, &mut probs)?;
                task_outputs(task, &probs, &mut out[i * width..(i + 1) * width]);
            }
        }
        Ok(())
    }
}

impl Net for EncoderNet {
    fn family(&self) -> Family {
        Family::Encoder
    }

    fn tensors(&self) -> Vec<(String, &Tensor<f32>)> {
        self.head.tensors()
    }

    fn raw_tensors(&self) -> Vec<RawTensor> {
        let mut out: Vec<RawTensor> = self
            .tensors()
            .into_iter()
            .map(|(n, t)| RawTensor::f32(&n, t.shape(), t.data()))
            .collect();
        if let Some(g) = &self.ngrams {
            out.push(RawTensor::f32("linear.idf", &[g.idf.len()], &g.idf));
            out.push(RawTensor::u32("bag.buckets", g.featurizer.bucket_list()));
        }
        out
    }

    fn shape(
        &self,
        spec: &ModelSpec,
        labels: &LabelSet,
        tokenizer: &KerasTokenizer,
    ) -> Result<NetShape, ModelError> {
        let width = self.ngram_rows() + self.encoder.dim();
        if self.head.features() != width
            || self
                .ngrams
                .as_ref()
                .is_some_and(|g| g.idf.len() != g.featurizer.rows())
        {
            return Err(ModelError::Incompatible(format!(
                "the head reads {} values but the encoder and n-grams give {width}",
                self.head.features()
            )));
        }
        let recorded = spec.encoder.as_ref();
        if recorded.map(|r| (r.sha256.as_str(), r.dim, r.ngrams))
            != Some((
                self.encoder.fingerprint(),
                self.encoder.dim(),
                self.ngrams.is_some(),
            ))
        {
            return Err(ModelError::Incompatible(
                "the spec does not record this encoder".to_string(),
            ));
        }
        Ok(NetShape {
            rows: self.ngram_rows().max(tokenizer.vocab_size()),
            outputs: task_width(labels.task, self.head.outputs()),
        })
    }

    fn reads_raw_text(&self) -> bool {
        true
    }

    fn encode_into(
        &self,
        tokenizer: &KerasTokenizer,
        _pad: &PadSpec,
        text: &str,
        out: &mut Vec<u32>,
    ) {
        EncoderNet::encode_into(self, tokenizer, text, out)
    }

    fn encode_tokens_into(
        &self,
        tokenizer: &KerasTokenizer,
        _pad: &PadSpec,
        tokens: &[&str],
        out: &mut Vec<u32>,
    ) {
        EncoderNet::encode_into(self, tokenizer, &tokens.join(" "), out)
    }

    fn scratch(&self) -> Scratch {
        Box::new(())
    }

    fn outputs(
        &self,
        inputs: &[&[u32]],
        labels: &LabelSet,
        _pad: &PadSpec,
        _scratch: &mut Scratch,
        out: &mut [f32],
    ) -> Result<(), ModelError> {
        self.outputs_into(inputs, labels.task, out)
    }
}

/// Appends the encoder's `vector`, times `scale`, as the head's features from row `base` on.
fn append_vector(base: usize, vector: &[f32], scale: f32, idx: &mut Vec<u32>, val: &mut Vec<f32>) {
    idx.extend((0..vector.len()).map(|j| (base + j) as u32));
    val.extend(vector.iter().map(|v| v * scale));
}

/// Trains the head on the encoder's vectors.
fn train_encoder(
    input: TrainInput<'_>,
    on_event: &mut dyn FnMut(TrainEvent<'_>),
) -> Result<TrainOutcome, ModelError> {
    let started = Instant::now();
    let (encoder, spec) = base_encoder(input.spec)?;
    let input = TrainInput {
        spec: &spec,
        ..input
    };
    train_head(input, encoder, started, |net| net, on_event)
}

/// The encoder `spec` names, loaded and checked against a fingerprint it records, and the spec
/// with the encoder's canonical directory, fingerprint and width filled in.
pub(super) fn base_encoder(
    spec: &ModelSpec,
) -> Result<(Arc<dyn TextEncoder>, ModelSpec), ModelError> {
    let wanted = spec.encoder.as_ref().ok_or_else(|| {
        ModelError::Setting(format!(
            "--model {} needs --encoder DIR (a model directory)",
            spec.family
        ))
    })?;
    let encoder = load_encoder(Path::new(&wanted.dir))?;
    if !wanted.sha256.is_empty() && wanted.sha256 != encoder.fingerprint() {
        return Err(ModelError::Encoder(format!(
            "the encoder in {} (sha256 {}) is not the one asked for (sha256 {})",
            wanted.dir,
            encoder.fingerprint(),
            wanted.sha256
        )));
    }
    let mut spec = spec.clone();
    spec.encoder = Some(EncoderSpec {
        dir: key_of(encoder.dir()).display().to_string(),
        sha256: encoder.fingerprint().to_string(),
        dim: encoder.dim(),
        ..wanted.clone()
    });
    Ok((encoder, spec))
}

/// Fits the head on `encoder`'s vectors of the training rows (and the n-grams) and wraps the
/// network with `wrap` (the `setfit` family keeps its fine-tuned weights beside it).
pub(super) fn train_head<N: Net + Clone + PartialEq>(
    input: TrainInput<'_>,
    encoder: Arc<dyn TextEncoder>,
    started: Instant,
    wrap: impl FnOnce(EncoderNet) -> N,
    on_event: &mut dyn FnMut(TrainEvent<'_>),
) -> Result<TrainOutcome, ModelError> {
    let TrainInput {
        records,
        source,
        labels,
        targets,
        spec,
        cfg,
    } = input;
    head_shape(labels.task, labels.outputs(), spec.linear.loss)?;
    let wanted = spec.encoder.clone().ok_or_else(|| {
        ModelError::Setting("--model encoder needs --encoder DIR (a model directory)".into())
    })?;
    let spec = spec.clone();
    let texts: Vec<&str> = records.iter().map(|r| r.text.as_str()).collect();
    let n = records.len();
    let n_train = training_rows(n, cfg, source)?;
    let n_val = n - n_train;
    let pool = thread_pool(cfg)?;
    let dim = encoder.dim();
    let vectors = pool.install(|| embed_cached(encoder.as_ref(), &texts))?;
    let (tokenizer, ngrams, tf) = if wanted.ngrams {
        let Tfidf {
            tokenizer,
            featurizer,
            idf,
            x,
            ..
        } = fit_tfidf(&spec, &texts, n_train)?;
        (tokenizer, Some(Ngrams { featurizer, idf }), Some(x))
    } else {
        (KerasTokenizer::new(spec.tokenizer.clone())?, None, None)
    };
    let base = ngrams.as_ref().map_or(0, |g| g.featurizer.rows());
    let width = base + dim;
    let mut x = SparseRows::new();
    let (mut idx, mut val) = (Vec::new(), Vec::new());
    for (i, v) in vectors.chunks_exact(dim).enumerate() {
        idx.clear();
        val.clear();
        if let Some(tf) = &tf {
            let (a, b) = tf.row(i);
            idx.extend_from_slice(a);
            val.extend_from_slice(b);
        }
        append_vector(base, v, wanted.scale, &mut idx, &mut val);
        x.push(&idx, &val);
    }
    drop(tf);
    let (head, fit) = fit_head(
        &x,
        width,
        n_train,
        n_val,
        &labels,
        &targets,
        &spec,
        tokenizer.vocab_size(),
        &pool,
        on_event,
    )?;
    // Outputs from the vectors already computed (not through the encoder again).
    let k = labels.outputs();
    let head_outputs = |range: std::ops::Range<usize>| -> Result<Vec<f32>, ModelError> {
        let mut out = vec![0.0f32; range.len() * k];
        let mut probs = vec![0.0f32; head.outputs()];
        for (j, i) in range.enumerate() {
            let (a, b) = x.row(i);
            head.predict(a, b, &mut probs)?;
            task_outputs(labels.task, &probs, &mut out[j * k..(j + 1) * k]);
        }
        Ok(out)
    };
    let train_out = head_outputs(0..n_train)?;
    let val_out = match n_val {
        0 => None,
        _ => Some(head_outputs(n_train..n)?),
    };
    let net = wrap(EncoderNet {
        encoder,
        ngrams,
        scale: wanted.scale,
        head,
    });
    let pipeline = Pipeline::new(spec, labels, tokenizer, net)?;
    one_pass_outcome(
        pipeline,
        &train_out,
        val_out.as_deref(),
        &targets,
        fit,
        started,
        on_event,
    )
}
