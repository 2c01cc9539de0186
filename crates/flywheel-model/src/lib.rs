//! What a model *is*: its spec, the [`Pipeline`] from text to prediction (the one code path
//! shared by train, eval, predict and serve), the model families, training, metrics and the
//! artifact file.
//!
//! Modules import downwards only: the leaves (`error`, `family`, `metrics`, `task`, `spec`,
//! `report`, `features`, `embed`) know no network; `network` defines what the pipeline needs of
//! one; `pipeline` and `outcome` build on it; each family in `families` implements it; and
//! `train`, `artifact`, `autotune`, `evaluate`, `explain` and `promotion` use the families
//! through their registry.

#![warn(missing_docs)]

pub mod artifact;
pub mod audit;
pub mod autotune;
pub mod curves;
pub mod drift;
pub mod embed;
mod error;
pub mod evaluate;
pub mod explain;
pub mod families;
pub mod family;
pub mod features;
pub mod metrics;
pub mod network;
pub mod outcome;
pub mod pipeline;
pub mod promotion;
pub mod report;
pub mod spec;
pub mod task;
pub mod train;

pub use artifact::{Artifact, ArtifactMeta, Lineage, TrainingInfo};
pub use audit::{audit, Audit, AuditEvent, AuditOptions};
pub use autotune::{
    autotune, AutotuneEvent, AutotuneOptions, AutotuneOutcome, Metric, TRIALS_UNTIL,
};
pub use drift::{DriftProfile, DriftReport};
pub use error::ModelError;
pub use evaluate::evaluate;
pub use explain::{explain, explain_label, Explanation, TokenAttribution};
pub use families::{ModelFamily, Setting};
pub use family::Family;
pub use network::Network;
pub use outcome::{EpochRecord, TrainEvent, TrainOutcome};
pub use pipeline::{Pipeline, Prediction};
pub use promotion::{judge, PromotionPolicy, Scores, Verdict};
pub use report::Report;
pub use spec::{
    BagLossChoice, BagSpec, CnnSpec, EncoderSpec, FineTuneSpec, LinearLossChoice, LinearSpec,
    ModelSpec, OptimizerChoice, TrainConfig, ZeroShotSpec,
};
pub use task::{LabelSet, Task};
pub use train::train;
