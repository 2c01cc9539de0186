//! The loop's writes: the prediction log (sampled or asked-for classifications) and
//! corrections, as typed calls under the API's feedback endpoints and the dashboard's review
//! page. Every text is redacted (when `--redact pii`, the default) before it is stored, and
//! every write is committed before the caller answers.

use axum::http::StatusCode;
use flywheel_model::Task;
use flywheel_store::{NewFeedback, NewPrediction, Store};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::access::{now_unix, store_unavailable, Caller};
use crate::error::ApiError;
use crate::models::{check_label, LoadedModel, Logged};
use crate::state::AppState;

/// The text as it may be stored.
pub(crate) fn storable(state: &AppState, text: &str) -> String {
    if state.redact {
        flywheel_text::redact::redact(text).0
    } else {
        text.to_string()
    }
}

/// Whether a request's predictions are sampled into the log (by a hash of its id, so a retry
/// is sampled the same way).
pub(crate) fn sampled(request_id: &str, rate: f64) -> bool {
    if rate <= 0.0 {
        return false;
    }
    let digest = Sha256::digest(request_id.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(first) as f64) < rate * 18_446_744_073_709_551_616.0
}

/// The tenant a caller's rows belong to (`""` for the admin token).
pub(crate) fn tenant_of(caller: &Caller) -> &str {
    match caller {
        Caller::Key(k) => &k.tenant,
        _ => "",
    }
}

/// The predictions of one classify request as the log keeps them (texts redacted).
pub(crate) fn predictions(
    state: &AppState,
    caller: &Caller,
    request_id: &str,
    model: &str,
    version: Option<i64>,
    texts: &[String],
    logged: &[Logged],
) -> Vec<NewPrediction> {
    let now = now_unix();
    texts
        .iter()
        .zip(logged)
        .enumerate()
        .map(|(i, (text, l))| NewPrediction {
            tenant: tenant_of(caller).to_string(),
            model: model.to_string(),
            version: version.unwrap_or(0),
            request_id: request_id.to_string(),
            index: i as i64,
            text: storable(state, text),
            label: l.label.clone(),
            score: f64::from(l.score),
            uncertainty: l.uncertainty.map(f64::from),
            created_at: now,
            given_label: None,
        })
        .collect()
}

/// Stores predictions not committed with a usage event (an unmetered caller); `false` (and an
/// error in the log) when the store failed — the response is already computed, so it is still
/// sent.
pub(crate) async fn log_predictions(state: &AppState, rows: &[NewPrediction]) -> bool {
    let Some(store) = &state.store else {
        return false;
    };
    match store.log_predictions(rows).await {
        Ok(_) => true,
        Err(e) => {
            let model = rows.first().map(|r| r.model.as_str()).unwrap_or("");
            tracing::error!(error = %e, model, "prediction log failed");
            false
        }
    }
}

/// The labels of a correction, checked against the model: a label name (or an array of them
/// for multi-label), or a number for regression.
fn feedback_labels(
    model_name: &str,
    model: &LoadedModel,
    value: Value,
) -> Result<Vec<String>, ApiError> {
    let task = model.artifact.pipeline.labels.task;
    let bad = |why: &str| ApiError::invalid(why.to_string()).param("label");
    let labels = match (task, value) {
        (Task::Regression, Value::Number(n)) => vec![n.to_string()],
        (Task::Regression, Value::String(s))
            if s.trim().parse::<f64>().is_ok_and(f64::is_finite) =>
        {
            vec![s.trim().to_string()]
        }
        (Task::Regression, _) => {
            return Err(bad("'label' must be a number for a regression model"))
        }
        (Task::Multilabel, Value::Array(items)) => {
            let mut labels = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    Value::String(s) => labels.push(s),
                    _ => return Err(bad("'label' must be an array of label names")),
                }
            }
            if labels.is_empty() {
                return Err(bad("'label' must name at least one label"));
            }
            labels
        }
        (_, Value::String(s)) => vec![s],
        (Task::Multilabel, _) => {
            return Err(bad("'label' must be a label name or an array of them"))
        }
        (_, _) => return Err(bad("'label' must be a label name")),
    };
    if task != Task::Regression {
        for label in &labels {
            check_label(model_name, model, label)?;
        }
    }
    Ok(labels)
}

/// A correction to store: the labels of a text, maybe of a logged prediction.
pub(crate) struct Correction<'a> {
    /// Who sends it.
    pub caller: &'a Caller,
    /// The request's id (the idempotency key of the correction).
    pub request_id: &'a str,
    /// The request body (its digest tells a retry from a reused id).
    pub body: &'a [u8],
    /// The model corrected.
    pub model: String,
    /// The logged prediction corrected, if any.
    pub prediction_id: Option<i64>,
    /// The text, as stored.
    pub text: String,
    /// The label as the client sent it: a name, an array of names or a number.
    pub label: Value,
}

/// A stored correction.
#[derive(Debug)]
pub(crate) struct Recorded {
    /// Its id.
    pub id: i64,
    /// The model corrected.
    pub model: String,
    /// The logged prediction corrected, if any.
    pub prediction_id: Option<i64>,
    /// The labels stored.
    pub labels: Vec<String>,
    /// True when it was stored before (a retry with the same request id and body).
    pub duplicate: bool,
}

/// Checks access and labels and stores the correction.
pub(crate) async fn record(
    state: &AppState,
    store: &Store,
    c: Correction<'_>,
) -> Result<Recorded, ApiError> {
    let slot = state.model_slot(&c.model)?;
    state.check_access(c.caller, &c.model)?;
    let labels = feedback_labels(&c.model, &slot.current.load(), c.label)?;
    let feedback = NewFeedback {
        tenant: tenant_of(c.caller).to_string(),
        model: c.model.clone(),
        prediction_id: c.prediction_id,
        text: c.text,
        labels: labels.clone(),
        request_id: c.request_id.to_string(),
        request_sha256: hex::encode(Sha256::digest(c.body)),
        created_at: now_unix(),
    };
    let (stored, duplicate) = store.add_feedback(&feedback).await.map_err(|e| match e {
        flywheel_store::Error::IdempotencyConflict(id) => ApiError::new(
            StatusCode::CONFLICT,
            "idempotency_conflict",
            format!("x-request-id '{id}' was already used for a different feedback request"),
        ),
        flywheel_store::Error::Invalid(why) => ApiError::invalid(why).param("label"),
        other => store_unavailable(&other),
    })?;
    state.metrics.feedback(&c.model);
    Ok(Recorded {
        id: stored.id,
        model: c.model,
        prediction_id: c.prediction_id,
        labels,
        duplicate,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_follows_the_rate_and_the_id() {
        let ids: Vec<String> = (0..20_000).map(|i| format!("req-{i}")).collect();
        let share = |rate| ids.iter().filter(|id| sampled(id, rate)).count() as f64 / 20_000.0;
        assert_eq!(share(0.0), 0.0);
        assert_eq!(share(1.0), 1.0);
        assert!((share(0.1) - 0.1).abs() < 0.01, "{}", share(0.1));
        // Every replica must sample a request id alike, so the choice is a fixed function of the
        // id: the first 8 bytes of SHA-256(id) as a fraction of 2^64 — for "abc" 0xba7816bf8f01cfea
        // / 2^64 = 0.72839…, for "req-1" 0x9456bdfa12ea7695 / 2^64 = 0.57944… (a per-process seed
        // would break these literals).
        assert!(sampled("abc", 0.73) && !sampled("abc", 0.72));
        assert!(sampled("req-1", 0.58) && !sampled("req-1", 0.57));
    }
}
