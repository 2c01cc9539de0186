//! Evaluation of a model on labelled data.

use flywheel_data::Record;

use crate::pipeline::Pipeline;
use crate::report::{report_from_outputs, Report};
use crate::ModelError;

/// Evaluates a model on labelled records (labels must be ones the model knows).
pub fn evaluate(
    pipeline: &Pipeline,
    records: &[Record],
    source: &str,
) -> Result<Report, ModelError> {
    if records.is_empty() {
        return Err(ModelError::Unusable(format!(
            "{source}: no rows to evaluate"
        )));
    }
    let targets = pipeline.labels.encode(records, source)?;
    let texts: Vec<&str> = records.iter().map(|r| r.text.as_str()).collect();
    let outputs = pipeline.outputs_of_texts(&texts)?;
    report_from_outputs(&pipeline.labels, &outputs, &targets)
}
