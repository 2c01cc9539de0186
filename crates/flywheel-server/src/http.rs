//! Routes, handlers and middleware.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tracing::Instrument;

use crate::error::ApiError;
use crate::metrics::{Metrics, ModelGauge};
use crate::models::{Job, ModelSlot};

/// The OpenAPI 3 document served at `/openapi.json`.
pub const OPENAPI: &str = include_str!("openapi.json");

/// Per-request limits.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    pub max_inputs: usize,
    pub max_chars: usize,
    pub max_body_bytes: usize,
    pub timeout: Duration,
}

/// Everything the handlers share.
pub(crate) struct AppState {
    pub models: BTreeMap<String, ModelSlot>,
    pub limits: Limits,
    pub metrics: Arc<Metrics>,
    pub concurrency: Arc<Semaphore>,
    pub max_concurrency: usize,
    /// SHA-256 of the admin token; `None` disables the admin endpoints.
    pub admin_token_sha256: Option<[u8; 32]>,
    pub draining: AtomicBool,
}

impl AppState {
    pub fn gauges(&self) -> Vec<ModelGauge> {
        self.models
            .values()
            .map(|slot| {
                let current = slot.current.load();
                ModelGauge {
                    name: slot.name.clone(),
                    version: current.version.clone(),
                    created_at: current.artifact.meta.created_at.clone(),
                    queue_depth: slot.queue_depth(),
                }
            })
            .collect()
    }
}

/// A JSON response with the given status.
pub(crate) fn json_response(status: StatusCode, value: &Value) -> Response {
    bytes_response(status, value.to_string().into_bytes().into())
}

fn bytes_response(status: StatusCode, body: Bytes) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// The application's router.
pub(crate) fn router(state: Arc<AppState>) -> Router {
    let limited = Router::new()
        .route("/v1/classify", post(classify))
        .route("/v1/explain", post(explain))
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            concurrency_cap,
        ));
    Router::new()
        .merge(limited)
        .route("/v1/models", get(list_models))
        .route("/v1/admin/models/{name}/reload", post(reload))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(Arc::clone(&state), observe))
        .with_state(state)
}

/// Request id, structured log line and metrics for every request.
async fn observe(State(state): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| valid_request_id(v))
        .map(str::to_owned)
        .unwrap_or_else(new_request_id);
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_string());
    let method = req.method().as_str().to_owned();
    if let Ok(v) = HeaderValue::from_str(&id) {
        req.headers_mut().insert("x-request-id", v);
    }
    let span = tracing::info_span!("request", request_id = %id, %method, %route);
    let mut response = next.run(req).instrument(span.clone()).await;
    let seconds = started.elapsed().as_secs_f64();
    let status = response.status().as_u16();
    state.metrics.request(&method, &route, status, seconds);
    span.in_scope(|| {
        tracing::info!(
            status,
            latency_us = (seconds * 1e6) as u64,
            "request finished"
        )
    });
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", v);
    }
    response
}

/// A client's request id is kept when it is 1–128 visible ASCII characters.
fn valid_request_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic())
}

fn new_request_id() -> String {
    format!("{:032x}", rand::random::<u128>())
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

/// A parsed, validated classification request.
#[derive(Debug)]
struct ClassifyRequest {
    model: String,
    inputs: Vec<String>,
    top_k: Option<usize>,
    explain: bool,
}

async fn classify(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let timeout = state.limits.timeout;
    let work = async {
        let bytes = read_json_body(&state.limits, &headers, body).await?;
        let req = parse_classify(&state.limits, &bytes)?;
        let slot = state.models.get(&req.model).ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "model_not_found",
                format!(
                    "no model named '{}'; GET /v1/models lists the models served",
                    req.model
                ),
            )
            .param("model")
        })?;
        if req.explain {
            return Err(explain_not_implemented().param("explain"));
        }
        let (reply, answer) = oneshot::channel();
        let job = Job {
            texts: req.inputs,
            top_k: req.top_k,
            reply,
        };
        slot.queue.try_send(job).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => ApiError::overloaded(format!(
                "the queue of model '{}' is full; retry shortly",
                slot.name
            )),
            mpsc::error::TrySendError::Closed(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the server is shutting down",
            ),
        })?;
        let body = answer
            .await
            .map_err(|_| ApiError::internal("the inference worker dropped the request"))??;
        Ok(bytes_response(StatusCode::OK, body))
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(result) => result,
        Err(_) => Err(ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout",
            format!(
                "the request did not finish within {} ms; send fewer or shorter texts, or retry",
                timeout.as_millis()
            ),
        )),
    }
}

/// Checks the content type and reads at most `max_body_bytes` of body.
async fn read_json_body(
    limits: &Limits,
    headers: &HeaderMap,
    body: Body,
) -> Result<Bytes, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = content_type.split(';').next().unwrap_or("").trim();
    if !mime.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!(
                "the body must be JSON with 'Content-Type: application/json' (got '{content_type}')"
            ),
        ));
    }
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!(
                "the body is larger than {} bytes; send fewer texts per request",
                limits.max_body_bytes
            ),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max_body_bytes as u64) {
        return Err(too_large());
    }
    match Limited::new(body, limits.max_body_bytes).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Err(e) => Err(ApiError::invalid(format!("cannot read the body: {e}"))),
    }
}

/// Parses and validates a classification request.
fn parse_classify(limits: &Limits, bytes: &[u8]) -> Result<ClassifyRequest, ApiError> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_utf8",
            format!(
                "the body is not valid UTF-8 (bad byte at offset {})",
                e.valid_up_to()
            ),
        )
    })?;
    let value: Value = serde_json::from_str(text).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("the body is not valid JSON: {e}"),
        )
    })?;
    let Value::Object(mut obj) = value else {
        return Err(ApiError::invalid(
            "the body must be a JSON object such as {\"model\": \"NAME\", \"inputs\": [\"text\"]}",
        ));
    };
    if let Some(key) = obj
        .keys()
        .find(|k| !matches!(k.as_str(), "model" | "inputs" | "top_k" | "explain"))
    {
        return Err(ApiError::invalid(format!(
            "unknown field '{key}'; the fields are model, inputs, top_k and explain"
        ))
        .param(key.clone()));
    }
    let model = match obj.remove("model") {
        Some(Value::String(s)) => s,
        None | Some(Value::Null) => {
            return Err(ApiError::invalid("'model' is required").param("model"))
        }
        Some(_) => return Err(ApiError::invalid("'model' must be a string").param("model")),
    };
    let inputs = match obj.remove("inputs") {
        Some(Value::Array(a)) => a,
        None | Some(Value::Null) => {
            return Err(ApiError::invalid("'inputs' is required").param("inputs"))
        }
        Some(_) => {
            return Err(ApiError::invalid("'inputs' must be an array of strings").param("inputs"))
        }
    };
    if inputs.is_empty() {
        return Err(ApiError::invalid("'inputs' must hold at least one text").param("inputs"));
    }
    if inputs.len() > limits.max_inputs {
        return Err(ApiError::unprocessable(
            "too_many_inputs",
            format!(
                "{} inputs in one request; the limit is {}: split the request",
                inputs.len(),
                limits.max_inputs
            ),
        )
        .param("inputs"));
    }
    let mut texts = Vec::with_capacity(inputs.len());
    for (i, v) in inputs.into_iter().enumerate() {
        let Value::String(s) = v else {
            return Err(ApiError::invalid(format!("inputs[{i}] must be a string"))
                .param(format!("inputs[{i}]")));
        };
        if s.len() > limits.max_chars {
            let chars = s.chars().count();
            if chars > limits.max_chars {
                return Err(ApiError::unprocessable(
                    "input_too_long",
                    format!(
                        "inputs[{i}] has {chars} characters; the limit is {}",
                        limits.max_chars
                    ),
                )
                .param(format!("inputs[{i}]")));
            }
        }
        if s.contains('\0') {
            return Err(ApiError::unprocessable(
                "invalid_input",
                format!("inputs[{i}] contains a NUL character"),
            )
            .param(format!("inputs[{i}]")));
        }
        texts.push(s);
    }
    let top_k = match obj.remove("top_k") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64() {
            Some(k) if k >= 1 => Some(usize::try_from(k).unwrap_or(usize::MAX)),
            _ => return Err(ApiError::invalid("'top_k' must be a positive integer").param("top_k")),
        },
    };
    let explain = match obj.remove("explain") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => b,
        Some(_) => {
            return Err(ApiError::invalid("'explain' must be true or false").param("explain"))
        }
    };
    Ok(ClassifyRequest {
        model,
        inputs: texts,
        top_k,
        explain,
    })
}

fn explain_not_implemented() -> ApiError {
    ApiError::new(
        StatusCode::NOT_IMPLEMENTED,
        "not_implemented",
        "explanations are not available yet in this version of flywheel",
    )
}

async fn explain() -> ApiError {
    explain_not_implemented()
}

async fn list_models(State(state): State<Arc<AppState>>) -> Response {
    let models: Vec<Value> = state
        .models
        .values()
        .map(|slot| {
            let current = slot.current.load();
            let meta = &current.artifact.meta;
            json!({
                "name": slot.name,
                "version": current.version,
                "sha256": meta.sha256,
                "created_at": meta.created_at,
                "task": meta.task.to_string(),
                "labels": meta.labels,
                "max_len": meta.spec.max_len,
                "architecture": meta.spec.architecture,
            })
        })
        .collect();
    json_response(StatusCode::OK, &json!({ "models": models }))
}

async fn reload(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Some(expected) = state.admin_token_sha256 else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "admin_disabled",
            "admin endpoints are disabled; start the server with --admin-token or FLYWHEEL_ADMIN_TOKEN",
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let authorised = given.is_some_and(|t| constant_time_eq(&sha256(t), &expected));
    if !authorised {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid admin token is required: 'Authorization: Bearer <token>'",
        ));
    }
    let slot = state.models.get(&name).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "model_not_found",
            format!("no model named '{name}'"),
        )
        .param("name")
    })?;
    let done = slot.reload(&state.metrics).await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "model": done.model,
            "version": done.version,
            "previous_version": done.previous_version,
            "created_at": done.created_at,
        }),
    ))
}

/// SHA-256 of a string.
pub(crate) fn sha256(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

/// Compares two digests in time independent of where they differ.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
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
    let text = state.metrics.render(&state.gauges(), in_flight);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_inputs: 3,
            max_chars: 5,
            max_body_bytes: 1000,
            timeout: Duration::from_secs(1),
        }
    }

    fn err(body: &str) -> ApiError {
        match parse_classify(&limits(), body.as_bytes()) {
            Ok(r) => panic!("accepted {body}: {r:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn parses_a_valid_request() {
        let r = parse_classify(
            &limits(),
            br#"{"model":"m","inputs":["a","bb"],"top_k":2,"explain":false}"#,
        )
        .unwrap();
        assert_eq!(r.model, "m");
        assert_eq!(r.inputs, vec!["a", "bb"]);
        assert_eq!(r.top_k, Some(2));
        assert!(!r.explain);
    }

    #[test]
    fn rejects_bad_requests_with_the_right_kind_and_param() {
        let cases: &[(&str, u16, &str, Option<&str>)] = &[
            ("{", 400, "invalid_json", None),
            ("[]", 400, "invalid_request", None),
            (r#"{"inputs":["a"]}"#, 400, "invalid_request", Some("model")),
            (
                r#"{"model":1,"inputs":["a"]}"#,
                400,
                "invalid_request",
                Some("model"),
            ),
            (
                r#"{"model":"m","inputs":"a"}"#,
                400,
                "invalid_request",
                Some("inputs"),
            ),
            (
                r#"{"model":"m","inputs":[]}"#,
                400,
                "invalid_request",
                Some("inputs"),
            ),
            (
                r#"{"model":"m","inputs":["a",2]}"#,
                400,
                "invalid_request",
                Some("inputs[1]"),
            ),
            (
                r#"{"model":"m","inputs":["a","b","c","d"]}"#,
                422,
                "too_many_inputs",
                Some("inputs"),
            ),
            (
                r#"{"model":"m","inputs":["a","éééééé"]}"#,
                422,
                "input_too_long",
                Some("inputs[1]"),
            ),
            (
                r#"{"model":"m","inputs":["a\u0000"]}"#,
                422,
                "invalid_input",
                Some("inputs[0]"),
            ),
            (
                r#"{"model":"m","inputs":["a"],"top_k":0}"#,
                400,
                "invalid_request",
                Some("top_k"),
            ),
            (
                r#"{"model":"m","inputs":["a"],"top_k":"1"}"#,
                400,
                "invalid_request",
                Some("top_k"),
            ),
            (
                r#"{"model":"m","inputs":["a"],"extra":1}"#,
                400,
                "invalid_request",
                Some("extra"),
            ),
        ];
        for (body, status, kind, param) in cases {
            let e = err(body);
            assert_eq!(e.status.as_u16(), *status, "{body}: {e}");
            assert_eq!(e.kind, *kind, "{body}: {e}");
            assert_eq!(e.param.as_deref(), *param, "{body}: {e}");
        }
    }

    #[test]
    fn five_multibyte_chars_fit_a_five_char_limit() {
        assert!(
            parse_classify(&limits(), r#"{"model":"m","inputs":["ééééé"]}"#.as_bytes()).is_ok()
        );
    }

    #[test]
    fn invalid_utf8_is_a_400() {
        let e = parse_classify(&limits(), b"{\"model\":\"m\",\"inputs\":[\"\xff\"]}").unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(e.kind, "invalid_utf8");
    }

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(&sha256("secret"), &sha256("secret")));
        assert!(!constant_time_eq(&sha256("secret"), &sha256("secreT")));
    }

    #[test]
    fn request_ids() {
        assert!(valid_request_id("abc-123"));
        assert!(!valid_request_id(""));
        assert!(!valid_request_id("a b"));
        assert!(!valid_request_id(&"x".repeat(129)));
        assert_eq!(new_request_id().len(), 32);
    }
}
