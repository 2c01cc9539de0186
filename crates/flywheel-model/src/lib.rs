//! What a model *is*: its spec, the [`Pipeline`] from text to prediction (the one code path
//! shared by train, eval, predict and serve), the training loop, metrics and the artifact file.

pub mod artifact;
pub mod autotune;
pub mod bag;
pub mod curves;
pub mod embed;
pub mod evaluate;
pub mod explain;
pub mod linear;
pub mod metrics;
pub mod pipeline;
pub mod promotion;
pub mod spec;
pub mod task;
pub mod train;

pub use artifact::{Artifact, ArtifactMeta, Lineage, TrainingInfo};
pub use autotune::{
    autotune, AutotuneEvent, AutotuneOptions, AutotuneOutcome, Metric, TRIALS_UNTIL,
};
pub use evaluate::{evaluate, Report};
pub use explain::{explain, explain_label, Explanation, TokenAttribution};
pub use pipeline::{Network, Pipeline, Prediction};
pub use promotion::{judge, PromotionPolicy, Scores, Verdict};
pub use spec::{
    BagLossChoice, BagSpec, CnnSpec, EncoderSpec, LinearLossChoice, LinearSpec, ModelSpec,
    OptimizerChoice, TrainConfig, FAMILIES,
};
pub use task::{LabelSet, Task};
pub use train::{train, EpochRecord, TrainEvent, TrainOutcome};

/// Errors from building, training, evaluating or loading models.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// Reading data failed.
    #[error(transparent)]
    Data(#[from] flywheel_data::DataError),
    /// A tokenizer setting is invalid.
    #[error(transparent)]
    Text(#[from] flywheel_text::TextError),
    /// The engine rejected shapes (a bug or a corrupt model).
    #[error(transparent)]
    Engine(#[from] flywheel_nn::NnError),
    /// Metrics could not be computed.
    #[error(transparent)]
    Metrics(#[from] metrics::MetricsError),
    /// A record's label is unusable.
    #[error("{file}:{line}: {message}")]
    Label {
        /// The data file.
        file: String,
        /// 1-based line.
        line: u64,
        /// What is wrong and what to do.
        message: String,
    },
    /// The request does not make sense (bad settings, too little data, ...).
    #[error("{0}")]
    Invalid(String),
    /// A model file is unreadable, corrupt or not a flywheel model.
    #[error("model file {path}: {message}")]
    Artifact {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The pretrained encoder is missing, different from the recorded one, or failed.
    #[error("encoder: {0}")]
    Encoder(String),
    /// Reading or writing a file failed.
    #[error("cannot access {path}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
}
