//! The training vocabulary every family shares: progress events, history rows, the outcome of
//! a training run, and how many rows are trained on.

use serde::{Deserialize, Serialize};

use crate::pipeline::Pipeline;
use crate::report::Report;
use crate::spec::TrainConfig;
use crate::task::Task;
use crate::ModelError;

/// One epoch of training history (Keras's `history.history` row).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Mean training loss over the epoch's batches (weighted by batch size, dropout on).
    pub loss: f64,
    /// Training accuracy (classification tasks).
    pub accuracy: Option<f64>,
    /// Validation loss.
    pub val_loss: Option<f64>,
    /// Validation accuracy.
    pub val_accuracy: Option<f64>,
}

/// Progress notifications for a front end.
#[derive(Debug, Clone)]
pub enum TrainEvent<'a> {
    /// Training starts.
    Start {
        /// Rows trained on.
        train_rows: usize,
        /// Rows held out for validation.
        val_rows: usize,
        /// Batches per epoch.
        batches: usize,
        /// Planned epochs.
        epochs: usize,
        /// Trainable parameters.
        parameters: usize,
        /// The task.
        task: Task,
        /// Label names.
        labels: &'a [String],
        /// Vocabulary size used (ids emitted by the tokenizer, padding included).
        vocab: usize,
    },
    /// A batch finished.
    Batch {
        /// 1-based epoch.
        epoch: usize,
        /// Batches done in this epoch.
        done: usize,
        /// Batches per epoch.
        batches: usize,
        /// Running mean training loss of this epoch.
        loss: f64,
    },
    /// An epoch finished.
    Epoch {
        /// Its history row.
        record: &'a EpochRecord,
        /// Wall seconds it took (validation included).
        seconds: f64,
    },
    /// Early stopping ended training.
    EarlyStop {
        /// The last epoch run.
        epoch: usize,
        /// The epoch whose weights are kept.
        best_epoch: usize,
    },
    /// A step of the encoder's contrastive fine-tuning finished (`setfit`, before its head).
    FineTune {
        /// Steps done.
        step: usize,
        /// Steps planned.
        steps: usize,
        /// Mean loss of the steps so far.
        loss: f64,
        /// Seconds since fine-tuning started.
        seconds: f64,
    },
}

/// A trained model with its history.
#[derive(Debug, Clone)]
pub struct TrainOutcome {
    /// The model.
    pub pipeline: Pipeline,
    /// One row per epoch run.
    pub history: Vec<EpochRecord>,
    /// Epoch whose weights were kept (early stopping with restore), if any.
    pub best_epoch: Option<usize>,
    /// Whether early stopping ended training.
    pub stopped_early: bool,
    /// Rows trained on.
    pub train_rows: usize,
    /// Rows used for validation.
    pub val_rows: usize,
    /// Metrics on the validation rows with the final weights.
    pub validation: Option<Report>,
    /// Training rows per class, when the model needs them to be rebuilt (hierarchical softmax).
    pub class_counts: Vec<u64>,
    /// Objective evaluations of a model fitted by L-BFGS (its work), if it was.
    pub solver_evaluations: Option<usize>,
    /// The sketch of the training data that drift is measured against ([`crate::train`] adds
    /// it).
    pub drift: Option<crate::drift::DriftProfile>,
}

/// Rows trained on out of `n`: Keras's `floor(n · (1 − validation_split))`, at least one.
pub fn training_rows(n: usize, cfg: &TrainConfig, source: &str) -> Result<usize, ModelError> {
    let n_train = ((n as f64) * (1.0 - cfg.validation_split)).floor() as usize;
    if n_train == 0 {
        return Err(ModelError::Unusable(format!(
            "{source}: {n} rows leave nothing to train on with --validation-split {}",
            cfg.validation_split
        )));
    }
    Ok(n_train)
}
