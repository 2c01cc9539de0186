//! Layers, each with an explicit forward and backward pass.

pub mod dense;
pub mod dropout;
pub mod embedding;
pub mod lstm;

pub use dense::Dense;
pub use embedding::{Embedding, EmbeddingGrad};
pub use lstm::{Lstm, LstmCache, LstmState};
