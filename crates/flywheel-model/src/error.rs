//! The model crate's error type.

use crate::metrics::MetricsError;

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
    Metrics(#[from] MetricsError),
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
    /// A setting's value is not valid, or not for this family or task (an unknown name, a number
    /// out of range, a flag of another family); the message names the flag to change.
    #[error("{0}")]
    Setting(String),
    /// The data cannot train or evaluate a model as asked (no rows, a single label, too few
    /// rows for the validation split or the search); the message names the file.
    #[error("{0}")]
    Unusable(String),
    /// A model's parts do not fit together (network, spec, tokenizer, featurizer, encoder): the
    /// model file was edited, is corrupt, or comes from an incompatible build.
    #[error("{0}")]
    Incompatible(String),
    /// The request does not apply to this model (a label it does not have, an operation its
    /// family lacks, a model without the training settings to retrain with).
    #[error("{0}")]
    NotApplicable(String),
    /// The model could not be encoded for writing.
    #[error("{0}")]
    Encode(String),
    /// The worker threads could not be started.
    #[error("cannot start {threads} threads")]
    Threads {
        /// How many were asked for.
        threads: usize,
        /// The cause.
        source: rayon::ThreadPoolBuildError,
    },
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
