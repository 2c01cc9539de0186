//! Training a model of any family: the settings checked, labels inferred and encoded, CJK
//! text detected, then the family's own training ([`crate::families`]); a multi-label model's
//! threshold is tuned on the validation rows.

use flywheel_data::Record;
use flywheel_text::segment::detect;

use crate::drift::DriftProfile;
use crate::families::{self, TrainInput};
use crate::outcome::{TrainEvent, TrainOutcome};
use crate::report::{report_from_outputs, Report};
use crate::spec::{ModelSpec, TrainConfig};
use crate::task::{LabelSet, Task};
use crate::ModelError;

/// Trains a model on labelled records (`source` names the data in error messages) and sketches
/// the records for drift monitoring ([`DriftProfile`]). A multi-label model with validation rows
/// gets the decision threshold (one for all labels, from 0.05 to 0.95) that maximises macro-F1
/// on them.
pub fn train(
    records: &[Record],
    source: &str,
    task: Option<Task>,
    label_sep: &str,
    spec: &ModelSpec,
    cfg: &TrainConfig,
    on_event: &mut dyn FnMut(TrainEvent<'_>),
) -> Result<TrainOutcome, ModelError> {
    let mut out = fit(records, source, task, label_sep, spec, cfg, on_event)?;
    let single = matches!(out.pipeline.labels.task, Task::Binary | Task::Multiclass);
    out.drift = Some(DriftProfile::build(
        records,
        &out.pipeline.labels.labels,
        single,
        cfg.seed,
    ));
    Ok(out)
}

/// [`train`] without the drift sketch: the models that are only scored (autotune's trials,
/// the audit's folds).
pub(crate) fn fit(
    records: &[Record],
    source: &str,
    task: Option<Task>,
    label_sep: &str,
    spec: &ModelSpec,
    cfg: &TrainConfig,
    on_event: &mut dyn FnMut(TrainEvent<'_>),
) -> Result<TrainOutcome, ModelError> {
    let mut out = train_family(records, source, task, label_sep, spec, cfg, on_event)?;
    if out.pipeline.labels.task == Task::Multilabel && out.val_rows > 0 {
        let val = &records[out.train_rows..];
        let targets = out.pipeline.labels.encode(val, source)?;
        let texts: Vec<&str> = val.iter().map(|r| r.text.as_str()).collect();
        let outputs = out.pipeline.outputs_of_texts(&texts)?;
        let mut best: Option<(f64, f32, Report)> = None;
        for step in 1..20 {
            let mut labels = out.pipeline.labels.clone();
            labels.threshold = step as f32 * 0.05;
            let report = report_from_outputs(&labels, &outputs, &targets)?;
            let f1 = match &report {
                Report::Multilabel(m) => m.macro_f1,
                _ => 0.0,
            };
            // On ties, the threshold nearest 0.5.
            let better = best.as_ref().is_none_or(|b| {
                f1 > b.0 || (f1 == b.0 && (labels.threshold - 0.5).abs() < (b.1 - 0.5).abs())
            });
            if better {
                best = Some((f1, labels.threshold, report));
            }
        }
        if let Some((_, threshold, report)) = best {
            out.pipeline.labels.threshold = threshold;
            out.validation = Some(report);
        }
    }
    Ok(out)
}

fn train_family(
    records: &[Record],
    source: &str,
    task: Option<Task>,
    label_sep: &str,
    spec: &ModelSpec,
    cfg: &TrainConfig,
    on_event: &mut dyn FnMut(TrainEvent<'_>),
) -> Result<TrainOutcome, ModelError> {
    families::validate(spec)?;
    cfg.validate()?;
    if records.is_empty() {
        return Err(ModelError::Unusable(format!("{source}: no training rows")));
    }
    let labels = LabelSet::infer(records, task, label_sep, source)?;
    let targets = labels.encode(records, source)?;
    let texts: Vec<&str> = records.iter().map(|r| r.text.as_str()).collect();
    let resolved;
    let spec = if spec.detect_cjk {
        let mut s = spec.clone();
        // A character-level tokenizer already reads CJK text well.
        if !s.tokenizer.char_level {
            s.tokenizer.segmentation = detect(&texts, s.tokenizer.segmentation);
        }
        s.detect_cjk = false;
        resolved = s;
        &resolved
    } else {
        spec
    };
    families::of(spec.family).train(
        TrainInput {
            records,
            source,
            labels,
            targets,
            spec,
            cfg,
        },
        on_event,
    )
}
