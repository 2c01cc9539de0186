//! Model and training settings. The defaults are the reference Keras model
//! (`--preset keras-lstm`).

use flywheel_nn::OptimizerKind;
use flywheel_text::{PadSpec, Side, TokenizerConfig};
use serde::{Deserialize, Serialize};

use crate::family::Family;
use crate::ModelError;

/// The network and its preprocessing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    /// The model family (recorded as `architecture` in model files).
    #[serde(rename = "architecture")]
    pub family: Family,
    /// Tokenizer settings (`num_words` also sizes the embedding table).
    pub tokenizer: TokenizerConfig,
    /// Sequence length after padding/truncation.
    pub max_len: usize,
    /// Where padding goes.
    pub padding: Side,
    /// Which end of long texts is cut.
    pub truncating: Side,
    /// Embedding width.
    pub embed_dim: usize,
    /// Units of the recurrent layer (`lstm`, `gru`, each direction of `bilstm`).
    pub hidden: usize,
    /// Input dropout of the recurrent layer; for `cnn`, dropout on the pooled features.
    pub dropout: f32,
    /// Recurrent dropout of the recurrent layer (0 for `cnn`).
    pub recurrent_dropout: f32,
    /// Mask the padding (Keras `mask_zero=True`): the recurrent families carry their state
    /// unchanged over padding, so predictions do not depend on the padding length or side.
    #[serde(default)]
    pub mask: bool,
    /// Settings of the `cnn` family.
    #[serde(default)]
    pub cnn: CnnSpec,
    /// Features of the `fasttext` and `linear` families (ignored by `lstm`).
    #[serde(default)]
    pub bag: BagSpec,
    /// Settings of the `linear` family.
    #[serde(default)]
    pub linear: LinearSpec,
    /// Detect CJK text when training and cut it with the `cjk` segmenter instead of the
    /// configured word splitter (not with `char_level`); the artifact records the segmentation
    /// chosen (and `false` here).
    #[serde(default)]
    pub detect_cjk: bool,
    /// The pretrained encoder of the `encoder` family.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoder: Option<EncoderSpec>,
    /// Contrastive fine-tuning of the encoder before its head (the `setfit` family).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fine_tune: Option<FineTuneSpec>,
    /// Label prototypes of the `zeroshot` family.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zero_shot: Option<ZeroShotSpec>,
}

/// How a zero-shot model turns labels into prototype vectors, and its softmax's scale.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ZeroShotSpec {
    /// Sentences with `{}` where the label name goes; a label's prototype is the mean of their
    /// vectors (and its description's).
    pub templates: Vec<String>,
    /// One-line descriptions by label name.
    #[serde(default)]
    pub descriptions: std::collections::BTreeMap<String, String>,
    /// Factor on the cosine similarities before the softmax (fitted on labelled rows when
    /// trained on some).
    pub scale: f32,
}

impl Default for ZeroShotSpec {
    fn default() -> Self {
        ZeroShotSpec {
            templates: vec!["This sentence is {}".to_string()],
            descriptions: Default::default(),
            scale: 20.0,
        }
    }
}

impl ZeroShotSpec {
    /// Checks the settings.
    pub fn validate(&self) -> Result<(), ModelError> {
        if self.templates.is_empty() || self.templates.iter().any(|t| !t.contains("{}")) {
            return Err(ModelError::Setting(
                "every zero-shot template needs {} where the label goes".into(),
            ));
        }
        if !(self.scale.is_finite() && self.scale > 0.0) {
            return Err(ModelError::Setting(format!(
                "the zero-shot scale must be positive, got {}",
                self.scale
            )));
        }
        Ok(())
    }
}

/// SetFit's contrastive fine-tuning of a sentence encoder: pairs of training texts labelled 1
/// (same class) or 0, cosine-similarity loss, AdamW with a linear warm-up and decay. The
/// defaults are SetFit's (`TrainingArguments`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FineTuneSpec {
    /// Pairs per text and kind (SetFit's `num_iterations`: `2·n·N` pairs for `n` texts);
    /// `None`: every pair of texts once, the rarer kind repeated to match the other
    /// (SetFit's default `oversampling`).
    #[serde(default)]
    pub pair_iterations: Option<usize>,
    /// Passes over the pairs (1).
    pub epochs: usize,
    /// Peak learning rate of the encoder (2e-5).
    pub lr: f64,
    /// Pairs per step (16).
    pub batch: usize,
    /// Most word pieces of a text while fine-tuning (the rest is cut; the head and predictions
    /// read the encoder's own maximum); `None`: the encoder's maximum.
    #[serde(default)]
    pub max_pieces: Option<usize>,
    /// Share of the steps with a linearly rising learning rate (0.1).
    pub warmup: f64,
    /// AdamW's decoupled weight decay, not on biases and LayerNorm (0.01).
    pub weight_decay: f64,
    /// Gradients are scaled to at most this global L2 norm (1.0).
    pub max_grad_norm: f64,
    /// SHA-256 of the base encoder and the fine-tuned weights (empty before training).
    #[serde(default)]
    pub tuned_sha256: String,
}

impl Default for FineTuneSpec {
    fn default() -> Self {
        FineTuneSpec {
            pair_iterations: None,
            epochs: 1,
            lr: 2e-5,
            batch: 16,
            max_pieces: None,
            warmup: 0.1,
            weight_decay: 0.01,
            max_grad_norm: 1.0,
            tuned_sha256: String::new(),
        }
    }
}

impl FineTuneSpec {
    /// Checks the settings.
    pub fn validate(&self) -> Result<(), ModelError> {
        if self.epochs == 0 || self.batch == 0 || self.pair_iterations == Some(0) {
            return Err(ModelError::Setting(
                "fine-tuning needs at least 1 epoch, 1 pair per step and 1 pair iteration".into(),
            ));
        }
        if self.max_pieces.is_some_and(|m| m < 2) {
            return Err(ModelError::Setting(
                "--max-pieces must be at least 2 ([CLS] and [SEP])".into(),
            ));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(ModelError::Setting(format!(
                "the fine-tuning learning rate must be positive, got {}",
                self.lr
            )));
        }
        let ok = (0.0..1.0).contains(&self.warmup)
            && (0.0..1.0).contains(&self.weight_decay)
            && self.max_grad_norm.is_finite()
            && self.max_grad_norm > 0.0;
        if !ok {
            return Err(ModelError::Setting(format!(
                "warm-up must be in [0, 1), weight decay in [0, 1), the gradient norm cap \
                 positive; got {}, {}, {}",
                self.warmup, self.weight_decay, self.max_grad_norm
            )));
        }
        Ok(())
    }
}

/// The pretrained encoder of an `encoder` model and what the head reads besides its vectors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EncoderSpec {
    /// The Hugging Face model directory (absolute once trained).
    pub dir: String,
    /// Fingerprint of its files (`flywheel_encoder::fingerprint`); empty before training.
    #[serde(default)]
    pub sha256: String,
    /// Values per vector (0 before training).
    #[serde(default)]
    pub dim: usize,
    /// Put the `linear` family's TF-IDF n-gram features (`bag` settings) beside the vector.
    #[serde(default)]
    pub ngrams: bool,
    /// Factor on the vector's values in the head's input (their weight against the n-grams).
    #[serde(default = "one")]
    pub scale: f32,
}

fn one() -> f32 {
    1.0
}

impl EncoderSpec {
    /// The encoder in `dir`, its vector alone.
    pub fn new(dir: impl Into<String>) -> Self {
        EncoderSpec {
            dir: dir.into(),
            sha256: String::new(),
            dim: 0,
            ngrams: false,
            scale: 1.0,
        }
    }
}

/// Settings of the `cnn` family (TextCNN, Kim 2014).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CnnSpec {
    /// Filters per kernel width.
    pub filters: usize,
    /// Kernel widths (tokens per window), one convolution each.
    pub kernel_sizes: Vec<usize>,
}

impl Default for CnnSpec {
    /// Kim's widths 3, 4, 5 with 100 filters each.
    fn default() -> Self {
        CnnSpec {
            filters: 100,
            kernel_sizes: vec![3, 4, 5],
        }
    }
}

/// Hash buckets of the `linear` family's n-grams: only buckets seen in training get a row, so
/// a wide hash space costs nothing and keeps distinct n-grams apart.
pub const LINEAR_BUCKETS: usize = 1 << 30;

/// Settings of the `linear` family (TF-IDF + logistic regression).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinearSpec {
    /// Inverse regularisation strength, as scikit-learn's `C`.
    pub c: f64,
    /// L-BFGS iterations at most.
    pub max_iter: usize,
    /// Weigh each class's rows by `rows / (classes · rows of the class)` in the loss, as
    /// scikit-learn's `class_weight="balanced"` (binary and multi-class tasks; ignored for
    /// multi-label and regression).
    #[serde(default)]
    pub balanced: bool,
    /// Features (words, n-grams) in fewer training texts than this are dropped, as
    /// scikit-learn's `min_df`; features seen once mostly let the model memorise its rows.
    #[serde(default = "one_text")]
    pub min_df: usize,
    /// The loss: logistic regression or the L2-loss linear SVM (binary and multi-class tasks).
    #[serde(default)]
    pub loss: LinearLossChoice,
}

/// The loss of the `linear` and `encoder` families' regression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum LinearLossChoice {
    /// Logistic regression: softmax cross-entropy for classes, a sigmoid per label for
    /// multi-label, least squares for regression.
    #[default]
    Logistic,
    /// One-vs-rest squared hinge (scikit-learn's `LinearSVC`), for binary and multi-class
    /// tasks; its probabilities are the softmax of the margins.
    SquaredHinge,
}

impl LinearLossChoice {
    /// The choice named `name`: `logistic` or `squared-hinge`.
    pub fn parse(name: &str) -> Result<Self, ModelError> {
        match name {
            "logistic" => Ok(LinearLossChoice::Logistic),
            "squared-hinge" => Ok(LinearLossChoice::SquaredHinge),
            other => Err(ModelError::Setting(format!(
                "unknown linear loss '{other}': use logistic or squared-hinge"
            ))),
        }
    }

    /// The name [`LinearLossChoice::parse`] reads.
    pub fn name(self) -> &'static str {
        match self {
            LinearLossChoice::Logistic => "logistic",
            LinearLossChoice::SquaredHinge => "squared-hinge",
        }
    }
}

/// `min_df` of artifacts written before the setting existed.
fn one_text() -> usize {
    1
}

impl Default for LinearSpec {
    fn default() -> Self {
        LinearSpec {
            c: 1.0,
            max_iter: 500,
            balanced: false,
            min_df: 1,
            loss: LinearLossChoice::Logistic,
        }
    }
}

/// The output loss of the `fasttext` family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum BagLossChoice {
    /// Softmax for classes, one-vs-all for multi-label, squared error for regression.
    #[default]
    Auto,
    /// Softmax over classes.
    Softmax,
    /// An independent sigmoid per label ("one-vs-all").
    Ova,
    /// Hierarchical softmax over a Huffman tree of the classes.
    Hs,
}

impl std::str::FromStr for BagLossChoice {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(BagLossChoice::Auto),
            "softmax" => Ok(BagLossChoice::Softmax),
            "ova" | "one-vs-all" => Ok(BagLossChoice::Ova),
            "hs" => Ok(BagLossChoice::Hs),
            other => Err(ModelError::Setting(format!(
                "unknown loss '{other}': use softmax, ova or hs"
            ))),
        }
    }
}

/// Settings of the fastText-style model (`--model fasttext`), fastText's defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BagSpec {
    /// Longest word n-gram (1 = words only).
    pub word_ngrams: usize,
    /// Hash buckets shared by word and character n-grams.
    pub buckets: usize,
    /// Shortest character n-gram (with `maxn > 0`).
    pub minn: usize,
    /// Longest character n-gram; 0 = none.
    pub maxn: usize,
    /// The output loss.
    pub loss: BagLossChoice,
}

impl BagSpec {
    /// The character n-gram lengths, `minn-maxn`, or `none`.
    pub fn char_ngrams(&self) -> String {
        match self.maxn {
            0 => "none".to_string(),
            maxn => format!("{}-{maxn}", self.minn),
        }
    }

    /// Checks the n-gram settings.
    pub fn validate(&self) -> Result<(), ModelError> {
        if self.word_ngrams == 0 {
            return Err(ModelError::Setting(
                "--word-ngrams must be at least 1".into(),
            ));
        }
        if (self.word_ngrams > 1 || self.maxn > 0) && self.buckets == 0 {
            return Err(ModelError::Setting(
                "--buckets must be at least 1 with word or character n-grams".into(),
            ));
        }
        if self.buckets > u32::MAX as usize {
            return Err(ModelError::Setting(format!(
                "--buckets must be at most {}",
                u32::MAX
            )));
        }
        if self.maxn > 0 && (self.minn == 0 || self.minn > self.maxn) {
            return Err(ModelError::Setting(format!(
                "character n-grams need 1 <= --minn <= --maxn, got {}..{}",
                self.minn, self.maxn
            )));
        }
        Ok(())
    }
}

impl LinearSpec {
    /// Checks the regression's settings.
    pub fn validate(&self) -> Result<(), ModelError> {
        if !(self.c.is_finite() && self.c > 0.0 && self.max_iter > 0) {
            return Err(ModelError::Setting(format!(
                "--c must be a positive number (got {}) and the iterations at least 1",
                self.c
            )));
        }
        Ok(())
    }
}

impl Default for BagSpec {
    fn default() -> Self {
        BagSpec {
            word_ngrams: 1,
            buckets: 2_000_000,
            minn: 0,
            maxn: 0,
            loss: BagLossChoice::Auto,
        }
    }
}

impl Default for ModelSpec {
    /// `Tokenizer(num_words=10000)`, `pad_sequences(maxlen=100)`, `Embedding(10000, 16)`,
    /// `LSTM(16, dropout=0.2, recurrent_dropout=0.2)`.
    fn default() -> Self {
        ModelSpec {
            family: Family::Lstm,
            tokenizer: TokenizerConfig {
                num_words: Some(10_000),
                ..TokenizerConfig::default()
            },
            max_len: 100,
            padding: Side::Pre,
            truncating: Side::Pre,
            embed_dim: 16,
            hidden: 16,
            dropout: 0.2,
            recurrent_dropout: 0.2,
            mask: false,
            cnn: CnnSpec::default(),
            bag: BagSpec::default(),
            linear: LinearSpec::default(),
            detect_cjk: true,
            encoder: None,
            fine_tune: None,
            zero_shot: None,
        }
    }
}

impl ModelSpec {
    /// The padding rule.
    pub fn pad(&self) -> PadSpec {
        PadSpec {
            maxlen: self.max_len,
            padding: self.padding,
            truncating: self.truncating,
            value: 0,
        }
    }

    /// Checks the settings every family shares (the family's own checks are
    /// [`crate::families::validate`]'s).
    pub fn validate_common(&self) -> Result<(), ModelError> {
        let positive = [
            ("--max-len", self.max_len),
            ("embedding width", self.embed_dim),
            ("hidden units", self.hidden),
        ];
        for (what, v) in positive {
            if v == 0 {
                return Err(ModelError::Setting(format!("{what} must be at least 1")));
            }
        }
        if self.tokenizer.num_words.is_some_and(|n| n < 2) {
            return Err(ModelError::Setting(
                "--num-words must be at least 2 (index 0 is padding)".to_string(),
            ));
        }
        for (what, r) in [
            ("dropout", self.dropout),
            ("recurrent dropout", self.recurrent_dropout),
        ] {
            if !(0.0..1.0).contains(&r) {
                return Err(ModelError::Setting(format!(
                    "{what} must be in [0, 1), got {r}"
                )));
            }
        }
        Ok(())
    }
}

/// The optimiser named on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerChoice {
    /// Adam (Keras defaults: lr 1e-3, β 0.9/0.999, ε 1e-7).
    Adam,
    /// Mini-batch SGD (lr 0.01 by default), with optional momentum.
    Sgd,
    /// Full-batch gradient descent: SGD on the whole training set at once.
    Gd,
}

impl std::str::FromStr for OptimizerChoice {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "adam" => Ok(OptimizerChoice::Adam),
            "sgd" => Ok(OptimizerChoice::Sgd),
            "gd" => Ok(OptimizerChoice::Gd),
            other => Err(ModelError::Setting(format!(
                "unknown optimizer '{other}': use adam, sgd or gd"
            ))),
        }
    }
}

/// How to train.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Passes over the training data.
    pub epochs: usize,
    /// Sequences per update (ignored by `gd`).
    pub batch_size: usize,
    /// The optimiser.
    pub optimizer: OptimizerChoice,
    /// Learning rate; `None` = the optimiser's Keras default (1e-3 Adam, 1e-2 SGD).
    pub lr: Option<f64>,
    /// SGD momentum.
    pub momentum: f64,
    /// Fraction of the data held out for validation: the *last* rows, before shuffling (Keras).
    pub validation_split: f64,
    /// Seed of initialisation, shuffling and dropout.
    pub seed: u64,
    /// Worker threads (data-parallel over the batch).
    pub threads: usize,
    /// Stop after this many epochs without a better validation loss.
    pub patience: Option<usize>,
    /// With early stopping, keep the weights of the best epoch.
    pub restore_best: bool,
}

impl Default for TrainConfig {
    /// `model.fit(epochs=10, batch_size=32, validation_split=0.2)` with Adam.
    fn default() -> Self {
        TrainConfig {
            epochs: 10,
            batch_size: 32,
            optimizer: OptimizerChoice::Adam,
            lr: None,
            momentum: 0.0,
            validation_split: 0.2,
            seed: 42,
            threads: 1,
            patience: None,
            restore_best: true,
        }
    }
}

impl TrainConfig {
    /// The engine's optimiser.
    pub fn optimizer_kind(&self) -> OptimizerKind {
        match self.optimizer {
            OptimizerChoice::Adam => OptimizerKind::Adam {
                lr: self.lr.unwrap_or(1e-3),
                beta1: 0.9,
                beta2: 0.999,
                epsilon: 1e-7,
            },
            OptimizerChoice::Sgd | OptimizerChoice::Gd => OptimizerKind::Sgd {
                lr: self.lr.unwrap_or(1e-2),
                momentum: self.momentum,
            },
        }
    }

    /// Checks that the settings are usable.
    pub fn validate(&self) -> Result<(), ModelError> {
        if self.epochs == 0 {
            return Err(ModelError::Setting("--epochs must be at least 1".into()));
        }
        if self.batch_size == 0 {
            return Err(ModelError::Setting(
                "--batch-size must be at least 1".into(),
            ));
        }
        if self.threads == 0 {
            return Err(ModelError::Setting("--threads must be at least 1".into()));
        }
        if !(0.0..1.0).contains(&self.validation_split) {
            return Err(ModelError::Setting(format!(
                "--validation-split must be in [0, 1), got {}",
                self.validation_split
            )));
        }
        if let Some(lr) = self.lr {
            if !(lr.is_finite() && lr > 0.0) {
                return Err(ModelError::Setting(format!(
                    "--lr must be a positive number, got {lr}"
                )));
            }
        }
        if !(0.0..1.0).contains(&self.momentum) {
            return Err(ModelError::Setting(format!(
                "--momentum must be in [0, 1), got {}",
                self.momentum
            )));
        }
        Ok(())
    }
}
