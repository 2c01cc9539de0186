//! The numeric engine: row-major `f32`/`f64` buffers, one GEMM wrapper, layers with explicit
//! forward and backward passes, losses, optimisers and finite-difference gradient checks.
//!
//! No I/O, no text, no file formats. Every layer and loss is generic over [`Real`], so the
//! gradient checks run the very code that trains, in `f64`.

#![warn(missing_docs)]

pub mod bag;
pub mod bert;
pub mod gradcheck;
pub mod init;
pub mod layers;
pub mod linear;
pub mod loss;
pub mod math;
pub mod net;
pub mod optim;
pub mod real;
pub mod rng;
pub mod seqnet;
pub mod simd;
pub mod tensor;

pub use bag::{
    apply_input, apply_inputs_sharded, BagLoss, BagModel, BagReal, BagScratch, BagTarget,
    BagUpdate, HuffmanTree,
};
pub use bert::{AdamW, Bert, BertCache, BertConfig, BertParam, Dropout};
pub use layers::{
    Bidirectional, Conv1d, Dense, Embedding, EmbeddingGrad, Gru, Lstm, Recurrent, SeqMasks, TextCnn,
};
pub use linear::{LinearFit, LinearLoss, LinearModel, LinearTargets, SparseColumns, SparseRows};
pub use loss::{Loss, Targets};
pub use net::{PadStates, RnnGrads, TextRnn, TrainBatch, Workspace};
pub use optim::{Optimizer, OptimizerKind};
pub use real::Real;
pub use rng::Rng;
pub use seqnet::{Encoder, SeqBatch, SeqGrads, SeqNet, SeqPadStates, SeqWorkspace};
pub use tensor::{Parameters, Tensor};

/// Errors from the engine.
#[derive(Debug, thiserror::Error)]
pub enum NnError {
    /// Shapes or sizes do not fit together.
    #[error("shape mismatch: {0}")]
    Shape(String),
}
