//! The router: the JSON API's routes and handlers, the dashboard's routes merged in, and the
//! middleware around every request (request id, log line, metrics, the concurrency cap).

mod accounts;
mod inference;
mod observe;
mod review;
mod selfserve;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::state::AppState;
use crate::wire::{bytes_response, json_response};

/// The OpenAPI 3 document served at `/openapi.json`.
pub const OPENAPI: &str = include_str!("../openapi.json");

/// The application's router.
pub(crate) fn router(state: Arc<AppState>) -> Router {
    let limited = Router::new()
        .route("/v1/classify", post(inference::classify))
        .route("/v1/explain", post(inference::explain))
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            concurrency_cap,
        ));
    Router::new()
        .merge(limited)
        .route("/v1/feedback", post(review::post_feedback))
        .route("/v1/review-queue", get(review::review_queue))
        .route("/v1/review/{id}", post(review::review))
        .route("/v1/models", get(accounts::list_models))
        .route("/v1/models/{name}/drift", get(accounts::drift))
        .route("/v1/usage", get(accounts::usage))
        .route(
            "/v1/datasets",
            post(selfserve::upload).get(selfserve::list_datasets),
        )
        .route(
            "/v1/datasets/{id}",
            get(selfserve::get_dataset).delete(selfserve::delete_dataset),
        )
        .route(
            "/v1/training-jobs",
            post(selfserve::create_training_job).get(selfserve::list_training_jobs),
        )
        .route("/v1/training-jobs/{id}", get(selfserve::get_training_job))
        .route(
            "/v1/training-jobs/{id}/cancel",
            post(selfserve::cancel_training_job),
        )
        .route(
            "/v1/training-jobs/{id}/events",
            get(selfserve::training_job_events),
        )
        .route(
            "/v1/training-jobs/{id}/report",
            get(selfserve::training_job_report),
        )
        .route("/v1/models/{name}/deploy", post(selfserve::deploy))
        .route(
            "/v1/batches",
            post(selfserve::create_batch_job).get(selfserve::list_batches),
        )
        .route("/v1/batches/{id}", get(selfserve::get_batch))
        .route("/v1/batches/{id}/cancel", post(selfserve::cancel_batch))
        .route("/v1/batches/{id}/events", get(selfserve::batch_events))
        .route("/v1/batches/{id}/results", get(selfserve::batch_results))
        .route("/v1/admin/models/{name}/reload", post(accounts::reload))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .merge(crate::dashboard::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            observe::observe,
        ))
        .with_state(state)
}

/// Rejects at once (503) when `max_concurrency` requests are already being served.
async fn concurrency_cap(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    match Arc::clone(&state.concurrency).try_acquire_owned() {
        Ok(permit) => {
            let response = next.run(req).await;
            drop(permit);
            response
        }
        Err(_) => ApiError::overloaded(format!(
            "the server is at its concurrency limit ({} requests); retry shortly",
            state.max_concurrency
        ))
        .into_response(),
    }
}

async fn healthz() -> Response {
    json_response(StatusCode::OK, &json!({"status": "ok"}))
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    if state.draining.load(Ordering::Relaxed) {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "draining",
            "the server is shutting down",
        )
        .into_response();
    }
    let models: Vec<Value> = state
        .gauges()
        .into_iter()
        .map(|g| json!({"name": g.name, "version": g.version}))
        .collect();
    json_response(
        StatusCode::OK,
        &json!({"status": "ready", "models": models}),
    )
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let in_flight = state.max_concurrency - state.concurrency.available_permits();
    let meter = state.accounts.as_ref().map(|a| a.meter.stats());
    let text = state.metrics.render(&state.gauges(), in_flight, meter);
    let mut response = (StatusCode::OK, text).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

async fn openapi() -> Response {
    bytes_response(StatusCode::OK, Bytes::from_static(OPENAPI.as_bytes()))
}

async fn not_found(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!(
            "no route {} {}; GET /openapi.json describes the API",
            req.method(),
            req.uri().path()
        ),
    )
}

async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} is not allowed on {}", req.method(), req.uri().path()),
    )
}
