//! Text to token ids: a Keras-compatible tokenizer and `pad_sequences`, Unicode-aware
//! segmenters (word, char, CJK, jieba), fastText's n-gram hashing and PII redaction.
//!
//! Knows nothing about networks; the model crate turns ids into tensors.

#![warn(missing_docs)]

pub mod keras;
pub mod ngrams;
pub mod pad;
pub mod redact;
pub mod segment;

pub use keras::{KerasTokenizer, TokenSpan, TokenizerConfig, TokenizerState, DEFAULT_FILTERS};
pub use pad::{pad_sequences, PadSpec, Side};
pub use segment::Segmentation;

/// Errors from text processing.
#[derive(Debug, thiserror::Error)]
pub enum TextError {
    /// A setting is invalid.
    #[error("invalid tokenizer setting: {0}")]
    Config(String),
}
