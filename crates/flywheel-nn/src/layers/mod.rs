//! Layers, each with an explicit forward and backward pass.

pub mod conv;
pub mod dense;
pub mod dropout;
pub mod embedding;
pub mod gru;
pub mod lstm;
pub mod recurrent;

pub use conv::{CnnCache, Conv1d, TextCnn};
pub use dense::Dense;
pub use embedding::{Embedding, EmbeddingGrad};
pub use gru::{Gru, GruCache};
pub use lstm::{Lstm, LstmCache, LstmState};
pub use recurrent::{BiCache, Bidirectional, Recurrent, SeqMasks};
