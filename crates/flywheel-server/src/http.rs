//! Routes, handlers and middleware.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tracing::Instrument;

use arc_swap::ArcSwap;
use flywheel_store::Store;

use crate::access::{store_unavailable, Caller, Usage};
use crate::error::ApiError;
use crate::metrics::{Metrics, ModelGauge};
use crate::models::{check_label, Answer, Batching, Job, ModelSlot, Work};

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
    /// The served models by name (replaced as a whole when the registry adds one).
    pub models: ArcSwap<BTreeMap<String, Arc<ModelSlot>>>,
    /// Starts the batching worker of a model added while serving.
    pub batching: Batching,
    /// The store, when serving from one: keys, limits, metering and the registry.
    pub store: Option<Store>,
    /// One registry sync at a time.
    pub sync_lock: tokio::sync::Mutex<()>,
    /// Registry versions that failed to load (not retried).
    pub registry_failed: std::sync::Mutex<std::collections::BTreeSet<(String, i64)>>,
    /// How often the registry is polled.
    pub registry_poll: Duration,
    pub limits: Limits,
    pub metrics: Arc<Metrics>,
    pub concurrency: Arc<Semaphore>,
    pub max_concurrency: usize,
    /// SHA-256 of the admin token; `None` disables the admin endpoints.
    pub admin_token_sha256: Option<[u8; 32]>,
    pub draining: AtomicBool,
    /// Fraction of classify requests whose predictions are logged.
    pub log_rate: f64,
    /// Redact personal data before storing texts.
    pub redact: bool,
    /// Background retraining settings.
    pub retrain: crate::AutoRetrain,
    /// Connections open at once.
    pub max_connections: usize,
    /// Idle connections are closed after this.
    pub idle_timeout: Duration,
    /// Model metadata the dashboard has read from the registry.
    pub dashboard_meta: crate::dashboard::MetaCache,
}

impl AppState {
    pub fn gauges(&self) -> Vec<ModelGauge> {
        self.models
            .load()
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
        .route("/v1/feedback", post(crate::feedback::post_feedback))
        .route("/v1/review-queue", get(crate::feedback::review_queue))
        .route("/v1/review/{id}", post(crate::feedback::review))
        .route("/v1/models", get(list_models))
        .route("/v1/usage", get(usage))
        .route("/v1/admin/models/{name}/reload", post(reload))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .merge(crate::dashboard::routes())
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
    // A request refused before its body was read (401, 403, …) leaves the body on the
    // connection: say so with `connection: close` rather than let the client's next request
    // on it fail.
    let has_body = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n > 0)
        || req.headers().contains_key(header::TRANSFER_ENCODING);
    let body_read = Arc::new(AtomicBool::new(false));
    let req = req.map(|body| {
        Body::new(TrackedBody {
            inner: body,
            done: Arc::clone(&body_read),
        })
    });
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
    if has_body && !body_read.load(Ordering::Relaxed) {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// A request body that records when it has been read to the end.
struct TrackedBody {
    inner: Body,
    done: Arc<AtomicBool>,
}

impl http_body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, std::task::Poll::Ready(None)) {
            self.done.store(true, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
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
    /// Keep these predictions for review and feedback by request id.
    log: bool,
}

/// A parsed, validated explanation request.
#[derive(Debug)]
struct ExplainRequest {
    model: String,
    input: String,
    label: Option<String>,
}

async fn classify(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let caller = state.caller(&headers).await?;
    let request_id = crate::access::request_id(&headers).to_string();
    let (bytes, model, texts, characters, mut answer, kept) =
        within_timeout(state.limits.timeout, async {
            let bytes = read_json_body(&state.limits, &headers, body).await?;
            let req = parse_classify(&state.limits, &bytes)?;
            let slot = model_slot(&state, &req.model)?;
            state.check_access(&caller, &req.model).await?;
            state.precheck(&caller, req.inputs.len()).await?;
            let texts = req.inputs.len();
            let characters = req.inputs.iter().map(|t| t.chars().count()).sum::<usize>();
            let log = state.store.is_some()
                && (req.log || crate::feedback::sampled(&request_id, state.log_rate));
            let kept = if log { req.inputs.clone() } else { Vec::new() };
            let work = Work::Classify {
                top_k: req.top_k,
                explain: req.explain,
                log,
            };
            let answer = submit(&slot, req.inputs, work).await?;
            Ok((bytes, req.model, texts, characters, answer, kept))
        })
        .await?;
    let logged = std::mem::take(&mut answer.logged);
    let version = answer.registry_version;
    let mut response = respond_metered(
        &state, &caller, &headers, &bytes, &model, texts, characters, answer,
    )
    .await?;
    if !kept.is_empty() && kept.len() == logged.len() {
        let ok = crate::feedback::log_predictions(
            &state,
            &caller,
            &request_id,
            &model,
            version,
            &kept,
            &logged,
        )
        .await;
        response.headers_mut().insert(
            "x-prediction-logged",
            HeaderValue::from_static(if ok { "true" } else { "false" }),
        );
    }
    Ok(response)
}

/// Meters a computed answer (outside the request's time limit: a commit is never cut short
/// into a 504) and sends it with the rate-limit headers.
#[allow(clippy::too_many_arguments)]
async fn respond_metered(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    body: &[u8],
    model: &str,
    texts: usize,
    characters: usize,
    answer: Answer,
) -> Result<Response, ApiError> {
    let usage = Usage {
        request_id: crate::access::request_id(headers),
        model,
        version: answer.registry_version,
        texts,
        characters,
        body,
    };
    let limit_headers = state.meter(caller, usage).await?;
    let mut response = bytes_response(StatusCode::OK, answer.body);
    for (name, value) in limit_headers {
        if let Ok(value) = HeaderValue::from_str(&value) {
            response.headers_mut().insert(name, value);
        }
    }
    Ok(response)
}

/// `POST /v1/explain`: the same explanation as `flywheel explain --json`, computed on the
/// inference pool.
async fn explain(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let caller = state.caller(&headers).await?;
    let (bytes, model, characters, answer) = within_timeout(state.limits.timeout, async {
        let bytes = read_json_body(&state.limits, &headers, body).await?;
        let req = parse_explain(&state.limits, &bytes)?;
        let slot = model_slot(&state, &req.model)?;
        state.check_access(&caller, &req.model).await?;
        // An unknown label is refused before queueing (and checked again on the version that
        // runs, in case a reload changed the labels).
        if let Some(label) = &req.label {
            check_label(&slot.name, &slot.current.load(), label)?;
        }
        state.precheck(&caller, 1).await?;
        let characters = req.input.chars().count();
        let work = Work::Explain { label: req.label };
        let answer = submit(&slot, vec![req.input], work).await?;
        Ok((bytes, req.model, characters, answer))
    })
    .await?;
    respond_metered(
        &state, &caller, &headers, &bytes, &model, 1, characters, answer,
    )
    .await
}

/// Runs `work` under the request time limit (body upload, queueing and inference).
pub(crate) async fn within_timeout<F, T>(timeout: Duration, work: F) -> Result<T, ApiError>
where
    F: std::future::Future<Output = Result<T, ApiError>>,
{
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

pub(crate) fn model_slot(state: &AppState, name: &str) -> Result<Arc<ModelSlot>, ApiError> {
    state.models.load().get(name).cloned().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "model_not_found",
            format!("no model named '{name}'; GET /v1/models lists the models served"),
        )
        .param("model")
    })
}

/// Queues the texts on the model's worker (503 at once when the queue is full) and waits for
/// the response body built on the inference thread.
pub(crate) async fn submit(
    slot: &ModelSlot,
    texts: Vec<String>,
    work: Work,
) -> Result<Answer, ApiError> {
    let (reply, answer) = oneshot::channel();
    let job = Job { texts, work, reply };
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
    answer
        .await
        .map_err(|_| ApiError::internal("the inference worker dropped the request"))?
}

/// Checks the content type and reads at most `max_body_bytes` of body.
pub(crate) async fn read_json_body(
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

/// The body as a JSON object whose keys are all in `fields`.
pub(crate) fn parse_object(
    bytes: &[u8],
    fields: &[&str],
    example: &str,
) -> Result<Map<String, Value>, ApiError> {
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
    let Value::Object(obj) = value else {
        return Err(ApiError::invalid(format!(
            "the body must be a JSON object such as {example}"
        )));
    };
    if let Some(key) = obj.keys().find(|k| !fields.contains(&k.as_str())) {
        return Err(ApiError::invalid(format!(
            "unknown field '{key}'; the fields are {}",
            fields.join(", ")
        ))
        .param(key.clone()));
    }
    Ok(obj)
}

/// The required string field `name`.
pub(crate) fn required_string(
    obj: &mut Map<String, Value>,
    name: &str,
) -> Result<String, ApiError> {
    match obj.remove(name) {
        Some(Value::String(s)) => Ok(s),
        None | Some(Value::Null) => {
            Err(ApiError::invalid(format!("'{name}' is required")).param(name))
        }
        Some(_) => Err(ApiError::invalid(format!("'{name}' must be a string")).param(name)),
    }
}

/// Checks one text against the character limit and for NUL characters; `param` names it.
pub(crate) fn check_text(limits: &Limits, s: &str, param: &str) -> Result<(), ApiError> {
    if s.len() > limits.max_chars {
        let chars = s.chars().count();
        if chars > limits.max_chars {
            return Err(ApiError::unprocessable(
                "input_too_long",
                format!(
                    "{param} has {chars} characters; the limit is {}",
                    limits.max_chars
                ),
            )
            .param(param));
        }
    }
    if s.contains('\0') {
        return Err(ApiError::unprocessable(
            "invalid_input",
            format!("{param} contains a NUL character"),
        )
        .param(param));
    }
    Ok(())
}

/// Parses and validates a classification request.
fn parse_classify(limits: &Limits, bytes: &[u8]) -> Result<ClassifyRequest, ApiError> {
    let mut obj = parse_object(
        bytes,
        &["model", "inputs", "top_k", "explain", "log"],
        "{\"model\": \"NAME\", \"inputs\": [\"text\"]}",
    )?;
    let model = required_string(&mut obj, "model")?;
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
        check_text(limits, &s, &format!("inputs[{i}]"))?;
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
    let log = match obj.remove("log") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => b,
        Some(_) => return Err(ApiError::invalid("'log' must be true or false").param("log")),
    };
    Ok(ClassifyRequest {
        model,
        inputs: texts,
        top_k,
        explain,
        log,
    })
}

/// Parses and validates an explanation request.
fn parse_explain(limits: &Limits, bytes: &[u8]) -> Result<ExplainRequest, ApiError> {
    let mut obj = parse_object(
        bytes,
        &["model", "input", "label"],
        "{\"model\": \"NAME\", \"input\": \"text\"}",
    )?;
    let model = required_string(&mut obj, "model")?;
    let input = required_string(&mut obj, "input")?;
    if input.trim().is_empty() {
        return Err(ApiError::invalid("'input' is empty: give the text to explain").param("input"));
    }
    check_text(limits, &input, "input")?;
    let label = match obj.remove("label") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(_) => return Err(ApiError::invalid("'label' must be a string").param("label")),
    };
    Ok(ExplainRequest {
        model,
        input,
        label,
    })
}

async fn list_models(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let caller = state.caller(&headers).await?;
    let usable: Option<Vec<String>> = match (&caller, &state.store) {
        (Caller::Key(key), Some(store)) => Some(
            store
                .usable_models(&key.tenant)
                .await
                .map_err(|e| store_unavailable(&e))?,
        ),
        _ => None,
    };
    let models: Vec<Value> = state
        .models
        .load()
        .values()
        .filter(|slot| usable.as_ref().is_none_or(|u| u.contains(&slot.name)))
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
                "architecture": meta.spec.family,
            })
        })
        .collect();
    Ok(json_response(StatusCode::OK, &json!({ "models": models })))
}

/// Query of `GET /v1/usage`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UsageQuery {
    tenant: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

/// `GET /v1/usage?from=YYYY-MM-DD&to=YYYY-MM-DD[&tenant=T]`: usage per tenant, key, model and
/// day. A key sees only its own tenant's; the admin token sees every tenant's.
async fn usage(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    query: Result<Query<UsageQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Some(store) = &state.store else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_store",
            "usage is metered only when the server runs on a store (--database-url)",
        ));
    };
    let caller = state.caller(&headers).await?;
    let Query(query) = query.map_err(|e| ApiError::invalid(e.body_text()))?;
    let tenant = match (&caller, query.tenant) {
        (Caller::Key(key), Some(t)) if t != key.tenant => {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "a key may read only its own tenant's usage",
            )
            .param("tenant"))
        }
        (Caller::Key(key), _) => Some(key.tenant.clone()),
        (_, t) => t,
    };
    let (from, to) = flywheel_store::day_range(query.from.as_deref(), query.to.as_deref())
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    let filter = flywheel_store::UsageFilter { tenant, from, to };
    let rows = store
        .usage_report(&filter)
        .await
        .map_err(|e| store_unavailable(&e))?;
    let rows: Vec<Value> = rows
        .into_iter()
        .map(|r| {
            json!({
                "tenant": r.tenant,
                "key_prefix": r.key_prefix,
                "model": r.model,
                "day": r.day,
                "requests": r.requests,
                "texts": r.texts,
                "characters": r.characters,
            })
        })
        .collect();
    Ok(json_response(StatusCode::OK, &json!({ "usage": rows })))
}

async fn reload(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if state.admin_token_sha256.is_none() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "admin_disabled",
            "admin endpoints are disabled; start the server with --admin-token or FLYWHEEL_ADMIN_TOKEN",
        ));
    };
    let given = crate::access::bearer(&headers);
    if !given.is_some_and(|t| state.is_admin_token(t)) {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid admin token is required: 'Authorization: Bearer <token>'",
        ));
    }
    let slot = state.models.load().get(&name).cloned().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "model_not_found",
            format!("no model named '{name}'"),
        )
        .param("name")
    })?;
    let done = match (&slot.source, &state.store) {
        (crate::models::SlotSource::Registry, Some(store)) => {
            let previous_version = slot.current.load().version.clone();
            crate::registry::sync(&state, store)
                .await
                .map_err(|e| store_unavailable(&e))?;
            let current = slot.current.load();
            crate::models::Reloaded {
                model: slot.name.clone(),
                version: current.version.clone(),
                previous_version,
                created_at: current.artifact.meta.created_at.clone(),
            }
        }
        _ => slot.reload(&state.metrics).await?,
    };
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
pub(crate) fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
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
    fn parses_and_rejects_explain_requests() {
        let r = parse_explain(
            &limits(),
            r#"{"model":"m","input":"ééé","label":"pos"}"#.as_bytes(),
        )
        .unwrap();
        assert_eq!(
            (r.model.as_str(), r.input.as_str(), r.label.as_deref()),
            ("m", "ééé", Some("pos"))
        );
        let r = parse_explain(&limits(), br#"{"model":"m","input":"a","label":null}"#).unwrap();
        assert_eq!(r.label, None);
        let cases: &[(&str, u16, &str, Option<&str>)] = &[
            ("{", 400, "invalid_json", None),
            (r#"{"model":"m"}"#, 400, "invalid_request", Some("input")),
            (
                r#"{"model":"m","input":""}"#,
                400,
                "invalid_request",
                Some("input"),
            ),
            (
                r#"{"model":"m","input":" \n"}"#,
                400,
                "invalid_request",
                Some("input"),
            ),
            (
                r#"{"model":"m","input":["a"]}"#,
                400,
                "invalid_request",
                Some("input"),
            ),
            (r#"{"input":"a"}"#, 400, "invalid_request", Some("model")),
            (
                r#"{"model":"m","input":"a","label":1}"#,
                400,
                "invalid_request",
                Some("label"),
            ),
            (
                r#"{"model":"m","inputs":["a"]}"#,
                400,
                "invalid_request",
                Some("inputs"),
            ),
            (
                r#"{"model":"m","input":"éééééé"}"#,
                422,
                "input_too_long",
                Some("input"),
            ),
            (
                r#"{"model":"m","input":"a\u0000"}"#,
                422,
                "invalid_input",
                Some("input"),
            ),
        ];
        for (body, status, kind, param) in cases {
            let e = parse_explain(&limits(), body.as_bytes()).unwrap_err();
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
