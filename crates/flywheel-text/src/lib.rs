//! Text to token ids: a Keras-compatible tokenizer and `pad_sequences`.
//!
//! Knows nothing about networks; the model crate turns ids into tensors.

pub mod keras;
pub mod pad;

pub use keras::{KerasTokenizer, TokenSpan, TokenizerConfig, TokenizerState, DEFAULT_FILTERS};
pub use pad::{pad_sequences, PadSpec, Side};

/// Errors from text processing.
#[derive(Debug, thiserror::Error)]
pub enum TextError {
    /// A setting is invalid.
    #[error("invalid tokenizer setting: {0}")]
    Config(String),
}
