//! The loop's endpoints: corrections (`POST /v1/feedback`), the review queue
//! (`GET /v1/review-queue`, `POST /v1/review/{id}`), and the prediction log that feeds them.
//! Every text is redacted (when `--redact pii`, the default) before it is stored, and every
//! write is committed before the response.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use flywheel_model::Task;
use flywheel_store::{LoggedPrediction, NewFeedback, NewPrediction, ReviewStrategy, Store};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::access::now_unix;
use crate::access::{store_unavailable, Caller};
use crate::error::ApiError;
use crate::http::{json_response, parse_object, read_json_body, required_string, AppState};
use crate::models::{check_label, LoadedModel, Logged};

/// Most items one review-queue request returns.
const MAX_QUEUE: i64 = 500;

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
fn tenant_of(caller: &Caller) -> &str {
    match caller {
        Caller::Key(k) => &k.tenant,
        _ => "",
    }
}

fn need_store(state: &AppState) -> Result<&Store, ApiError> {
    state.store.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no_store",
            "feedback and review need a store: start the server with --database-url",
        )
    })
}

/// Stores the logged predictions of one classify request; `false` (and an error in the log)
/// when the store failed — the response is already computed and metered, so it is still sent.
pub(crate) async fn log_predictions(
    state: &AppState,
    caller: &Caller,
    request_id: &str,
    model: &str,
    version: Option<i64>,
    texts: &[String],
    logged: &[Logged],
) -> bool {
    let Some(store) = &state.store else {
        return false;
    };
    let now = now_unix();
    let rows: Vec<NewPrediction> = texts
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
        })
        .collect();
    match store.log_predictions(&rows).await {
        Ok(_) => true,
        Err(e) => {
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

/// `POST /v1/feedback`: `{"request_id", "index", "label"}` corrects a logged prediction;
/// `{"model", "text", "label"}` gives a labelled text. 201 when stored, 200 for a retry with the
/// same `x-request-id` and body.
pub(crate) async fn post_feedback(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let store = need_store(&state)?;
    let caller = state.caller(&headers).await?;
    let bytes = read_json_body(&state.limits, &headers, body).await?;
    let mut obj = parse_object(
        &bytes,
        &["request_id", "index", "model", "text", "label"],
        "{\"request_id\": \"ID\", \"index\": 0, \"label\": \"LABEL\"} or {\"model\": \"NAME\", \"text\": \"...\", \"label\": \"LABEL\"}",
    )?;
    let label = obj
        .remove("label")
        .filter(|v| !v.is_null())
        .ok_or_else(|| ApiError::invalid("'label' is required").param("label"))?;
    let tenant = tenant_of(&caller).to_string();
    let (model, prediction_id, text) = if obj.contains_key("request_id") {
        if obj.contains_key("text") {
            return Err(ApiError::invalid(
                "give either 'request_id' and 'index' or 'model' and 'text', not both",
            )
            .param("text"));
        }
        let rid = required_string(&mut obj, "request_id")?;
        let index = match obj.remove("index") {
            None | Some(Value::Null) => 0,
            Some(v) => v.as_i64().filter(|i| *i >= 0).ok_or_else(|| {
                ApiError::invalid("'index' must be a non-negative integer").param("index")
            })?,
        };
        let logged = store
            .find_prediction(&tenant, &rid, index)
            .await
            .map_err(|e| store_unavailable(&e))?
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::NOT_FOUND,
                    "prediction_not_found",
                    format!(
                        "no logged prediction {index} of request '{rid}': only sampled requests \
                         are logged; classify with \"log\": true, or send 'model' and 'text'"
                    ),
                )
                .param("request_id")
            })?;
        if let Some(m) = obj.get("model").and_then(Value::as_str) {
            if m != logged.prediction.model {
                return Err(ApiError::invalid(format!(
                    "request '{rid}' was served by model '{}', not '{m}'",
                    logged.prediction.model
                ))
                .param("model"));
            }
        }
        (
            logged.prediction.model,
            Some(logged.id),
            logged.prediction.text,
        )
    } else {
        let model = required_string(&mut obj, "model")?;
        let text = required_string(&mut obj, "text")?;
        if text.trim().is_empty() {
            return Err(ApiError::invalid("'text' is empty").param("text"));
        }
        crate::http::check_text(&state.limits, &text, "text")?;
        (model, None, storable(&state, &text))
    };
    let stored = record(
        &state,
        store,
        &caller,
        &headers,
        &bytes,
        model,
        prediction_id,
        text,
        label,
    )
    .await?;
    Ok(stored)
}

/// Checks access and labels, stores the correction and answers 201 (200 for a retry).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn record(
    state: &AppState,
    store: &Store,
    caller: &Caller,
    headers: &HeaderMap,
    body: &[u8],
    model: String,
    prediction_id: Option<i64>,
    text: String,
    label: Value,
) -> Result<Response, ApiError> {
    let slot = crate::http::model_slot(state, &model)?;
    state.check_access(caller, &model).await?;
    let labels = feedback_labels(&model, &slot.current.load(), label)?;
    let feedback = NewFeedback {
        tenant: tenant_of(caller).to_string(),
        model: model.clone(),
        prediction_id,
        text,
        labels: labels.clone(),
        request_id: crate::access::request_id(headers).to_string(),
        request_sha256: flywheel_model::artifact::hex(&Sha256::digest(body)),
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
    state.metrics.feedback(&model);
    let status = if duplicate {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok(json_response(
        status,
        &json!({
            "id": stored.id,
            "model": model,
            "prediction_id": prediction_id,
            "label": if labels.len() == 1 { json!(labels[0]) } else { json!(labels) },
            "duplicate": duplicate,
        }),
    ))
}

/// Query of `GET /v1/review-queue`.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct QueueQuery {
    model: Option<String>,
    limit: Option<i64>,
    strategy: Option<String>,
}

fn item(p: &LoggedPrediction) -> Value {
    json!({
        "id": p.id,
        "model": p.prediction.model,
        "version": p.prediction.version,
        "text": p.prediction.text,
        "label": p.prediction.label,
        "score": p.prediction.score,
        "uncertainty": p.prediction.uncertainty,
        "request_id": p.prediction.request_id,
        "index": p.prediction.index,
        "created_at": p.prediction.created_at,
        "labelled": p.labelled,
    })
}

/// `GET /v1/review-queue?model=NAME&limit=N&strategy=uncertainty|random`: logged predictions
/// no one has labelled, most uncertain first (a key sees only its tenant's).
pub(crate) async fn review_queue(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    query: Result<Query<QueueQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let store = need_store(&state)?;
    let caller = state.caller(&headers).await?;
    let Query(q) = query.map_err(|e| ApiError::invalid(e.body_text()))?;
    let model = q
        .model
        .ok_or_else(|| ApiError::invalid("'model' is required: ?model=NAME").param("model"))?;
    state.check_access(&caller, &model).await?;
    let limit = q.limit.unwrap_or(20);
    if !(1..=MAX_QUEUE).contains(&limit) {
        return Err(
            ApiError::invalid(format!("'limit' must be between 1 and {MAX_QUEUE}")).param("limit"),
        );
    }
    let strategy: ReviewStrategy = q
        .strategy
        .as_deref()
        .unwrap_or("uncertainty")
        .parse()
        .map_err(|e: flywheel_store::Error| ApiError::invalid(e.to_string()).param("strategy"))?;
    let tenant = match &caller {
        Caller::Key(k) => Some(k.tenant.as_str()),
        _ => None,
    };
    let items = store
        .review_queue(&model, tenant, strategy, limit)
        .await
        .map_err(|e| store_unavailable(&e))?;
    let strategy_name = match strategy {
        ReviewStrategy::Uncertainty => "uncertainty",
        ReviewStrategy::Random => "random",
    };
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "model": model,
            "strategy": strategy_name,
            "items": items.iter().map(item).collect::<Vec<_>>(),
        }),
    ))
}

/// `POST /v1/review/{id}` `{"label": ...}`: labels one logged prediction.
pub(crate) async fn review(
    State(state): State<Arc<AppState>>,
    Path(id): Path<i64>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let store = need_store(&state)?;
    let caller = state.caller(&headers).await?;
    let bytes = read_json_body(&state.limits, &headers, body).await?;
    let mut obj = parse_object(&bytes, &["label"], "{\"label\": \"LABEL\"}")?;
    let label = obj
        .remove("label")
        .filter(|v| !v.is_null())
        .ok_or_else(|| ApiError::invalid("'label' is required").param("label"))?;
    let logged = store
        .get_prediction(id)
        .await
        .map_err(|e| store_unavailable(&e))?
        .filter(|p| match &caller {
            Caller::Key(k) => p.prediction.tenant == k.tenant,
            _ => true,
        })
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "prediction_not_found",
                format!("no logged prediction with id {id}"),
            )
        })?;
    record(
        &state,
        store,
        &caller,
        &headers,
        &bytes,
        logged.prediction.model,
        Some(logged.id),
        logged.prediction.text,
        label,
    )
    .await
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
        assert_eq!(sampled("abc", 0.3), sampled("abc", 0.3));
    }
}
