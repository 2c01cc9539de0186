//! What a model family is: the [`ModelFamily`] trait every family implements, and the values
//! that cross it.

use flywheel_data::Record;
use flywheel_nn::Tensor;
use flywheel_text::KerasTokenizer;

use crate::family::Family;
use crate::network::Network;
use crate::outcome::{TrainEvent, TrainOutcome};
use crate::pipeline::Pipeline;
use crate::spec::{ModelSpec, TrainConfig};
use crate::task::{LabelSet, Targets, Task};
use crate::ModelError;

/// A setting that only some families read (a front end refuses it for the others).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setting {
    /// Sequence length (`--max-len`), padding and truncation sides.
    SequenceLength,
    /// Recurrent units (`--hidden`).
    Hidden,
    /// Dropout (`--dropout`).
    Dropout,
    /// Recurrent dropout (`--recurrent-dropout`).
    RecurrentDropout,
    /// Padding masks (`--mask`).
    Mask,
    /// TextCNN's filters and kernel widths.
    Convolution,
    /// Mini-batches, optimiser and early stopping (`--batch-size`, `--optimizer`,
    /// `--patience`).
    MiniBatches,
    /// Epochs and learning rate (`--epochs`, `--lr`).
    Epochs,
    /// Hashed word and character n-grams (`--word-ngrams`, `--buckets`, `--minn`, `--maxn`).
    Ngrams,
    /// The embedding-bag width (`--dim`).
    BagDim,
    /// fastText's output loss (`--loss softmax|ova|hs`).
    BagLoss,
    /// The linear model's regression (`--c`, `--max-iter`, `--balanced`, `--min-df`,
    /// `--loss logistic|squared-hinge`).
    Regression,
    /// A pretrained encoder (`--encoder`, `--with-ngrams`).
    Encoder,
    /// Contrastive fine-tuning of the encoder (`--pair-iterations`, `--body-epochs`,
    /// `--body-lr`, `--body-batch`, `--max-pieces`).
    FineTune,
    /// Zero-shot label prototypes (`--descriptions`, `--template`).
    Prototypes,
}

/// What a family trains on: the records, their labels and encoded targets, and the settings
/// (with CJK detection already resolved).
pub struct TrainInput<'a> {
    /// The labelled rows (validation rows last).
    pub records: &'a [Record],
    /// Name of the data in error messages.
    pub source: &'a str,
    /// Task and label names.
    pub labels: LabelSet,
    /// The rows' encoded targets.
    pub targets: Targets,
    /// Model settings.
    pub spec: &'a ModelSpec,
    /// Training settings.
    pub cfg: &'a TrainConfig,
}

impl TrainInput<'_> {
    /// The rows' texts.
    pub fn texts(&self) -> Vec<&str> {
        self.records.iter().map(|r| r.text.as_str()).collect()
    }
}

/// The tensors of a model file being read.
pub trait TensorFile {
    /// The `f32` tensor `name`, which must have `shape`.
    fn f32(&self, name: &str, shape: &[usize]) -> Result<Tensor<f32>, ModelError>;
    /// The one-dimensional `u32` tensor `name`.
    fn u32(&self, name: &str) -> Result<Vec<u32>, ModelError>;
    /// The first dimension of tensor `name` (rows of a table whose size the data decided).
    fn rows(&self, name: &str) -> Result<usize, ModelError>;
}

/// What a family reads its network with, besides the tensors.
pub struct ReadContext<'a> {
    /// The model's settings.
    pub spec: &'a ModelSpec,
    /// The task.
    pub task: Task,
    /// Outputs per text for the task.
    pub outputs: usize,
    /// Training rows per class (hierarchical softmax rebuilds its tree from them).
    pub class_counts: &'a [u64],
    /// The fitted tokenizer.
    pub tokenizer: &'a KerasTokenizer,
}

/// What the cost model knows of a search's data before any trial runs (see
/// [`ModelFamily::planned_seconds`]).
#[derive(Debug, Clone, Copy)]
pub struct Workload {
    /// Seconds to read and featurize the training and validation rows.
    pub overhead: f64,
    /// Seconds to cut the training rows into tokens.
    pub tokenize: f64,
    /// Feature rows of the training texts (words, word and character n-grams).
    pub features: f64,
    /// Training rows.
    pub rows: f64,
    /// Values per pretrained encoder vector.
    pub vector_dim: f64,
    /// Classes (at least 2).
    pub classes: f64,
    /// Weights of a linear model on these features.
    pub weights: f64,
}

/// The cost model's constants (calibrated on autotune trials; docs/benchmarks.md).
pub mod cost {
    /// Per-trial fixed cost in seconds (reading, tokenizing, writing nothing) per million
    /// tokens.
    pub const SECS_PER_MTOKEN: f64 = 0.6;
    /// Feature-row updates per second of the fastText-style engine on one core (measured on
    /// the 2-core machine of docs/benchmarks.md: tweets, 25 epochs, bigrams, width 100).
    pub const UPDATES_PER_SEC: f64 = 1.2e9;
    /// Work of one L-BFGS iteration per weight (two-loop recursion over 10 corrections, line
    /// search steps, gradient), in units of a feature-row update.
    pub const WEIGHT_PASS: f64 = 80.0;
    /// Work of one L-BFGS iteration per non-zero and class (objective, line search, updates),
    /// in units of a feature-row update; L-BFGS usually stops well before `max_iter`.
    pub const LINEAR_PASS: f64 = 5.0;
    /// L-BFGS iterations the cost model expects of an `encoder` head.
    pub const ENCODER_ITERS: f64 = 200.0;
}

/// A model family: its settings, training, model-file tensors, description and cost. One
/// implementation per family; [`crate::families::of`] finds it by [`Family`].
pub trait ModelFamily: Sync {
    /// Which family this is.
    fn family(&self) -> Family;

    /// Its default model settings.
    fn default_spec(&self) -> ModelSpec;

    /// Its default training settings.
    fn default_config(&self) -> TrainConfig {
        TrainConfig::default()
    }

    /// Whether it reads `setting`.
    fn accepts(&self, setting: Setting) -> bool;

    /// Whether a model of it with `spec` reads hashed n-gram features.
    fn uses_ngrams(&self, _spec: &ModelSpec) -> bool {
        false
    }

    /// Checks the settings only this family reads (the shared ones are
    /// [`ModelSpec::validate_common`]'s).
    fn validate(&self, spec: &ModelSpec) -> Result<(), ModelError>;

    /// Trains a model.
    fn train(
        &self,
        input: TrainInput<'_>,
        on_event: &mut dyn FnMut(TrainEvent<'_>),
    ) -> Result<TrainOutcome, ModelError>;

    /// Reads its network from a model file.
    fn read(&self, file: &dyn TensorFile, ctx: &ReadContext<'_>) -> Result<Network, ModelError>;

    /// One line naming the settings that matter for this family (autotune's trial lines).
    fn describe(&self, spec: &ModelSpec, cfg: &TrainConfig) -> String;

    /// The network of a trained model of this family, in one line (`flywheel info`).
    fn summary(&self, pipeline: &Pipeline) -> String;

    /// Planned seconds of one training run with these settings (autotune's cost model).
    fn planned_seconds(&self, spec: &ModelSpec, cfg: &TrainConfig, work: &Workload) -> f64 {
        let passes = cfg.epochs as f64 * spec.embed_dim as f64 * 2.0;
        work.overhead + work.features * passes / cost::UPDATES_PER_SEC
    }

    /// Whether its planned work scales with the solver's measured evaluations (autotune
    /// rescales later candidates' charge by what rung 0's runs took).
    fn solver_scaled(&self) -> bool {
        false
    }
}
