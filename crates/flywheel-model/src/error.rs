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
