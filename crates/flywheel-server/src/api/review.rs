//! The loop's endpoints: corrections (`POST /v1/feedback`) and the review queue
//! (`GET /v1/review-queue`, `POST /v1/review/{id}`), over the typed calls of `feedback`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use flywheel_store::{ReviewStrategy, Store};
use serde_json::{json, Value};

use crate::access::{request_id, store_unavailable, Caller};
use crate::error::ApiError;
use crate::feedback::{record, storable, tenant_of, Correction, Recorded};
use crate::state::AppState;
use crate::wire::{check_text, json_response, parse_object, read_json_body, required_string};

/// Most items one review-queue request returns.
const MAX_QUEUE: i64 = 500;

fn need_store(state: &AppState) -> Result<&Store, ApiError> {
    state.store.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no_store",
            "feedback and review need a store: start the server with --database-url",
        )
    })
}

/// A stored correction as answered: 201, or 200 for a retry.
fn recorded_response(r: &Recorded) -> Response {
    let status = if r.duplicate {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    json_response(
        status,
        &json!({
            "id": r.id,
            "model": r.model,
            "prediction_id": r.prediction_id,
            "label": if r.labels.len() == 1 { json!(r.labels[0]) } else { json!(r.labels) },
            "duplicate": r.duplicate,
        }),
    )
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
        check_text(&state.limits, &text, "text")?;
        (model, None, storable(&state, &text))
    };
    let correction = Correction {
        caller: &caller,
        request_id: request_id(&headers),
        body: &bytes,
        model,
        prediction_id,
        text,
        label,
    };
    Ok(recorded_response(&record(&state, store, correction).await?))
}

/// Query of `GET /v1/review-queue`.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct QueueQuery {
    model: Option<String>,
    limit: Option<i64>,
    strategy: Option<String>,
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
    state.check_access(&caller, &model)?;
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
            "items": items,
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
    let correction = Correction {
        caller: &caller,
        request_id: request_id(&headers),
        body: &bytes,
        model: logged.prediction.model,
        prediction_id: Some(logged.id),
        text: logged.prediction.text,
        label,
    };
    Ok(recorded_response(&record(&state, store, correction).await?))
}
