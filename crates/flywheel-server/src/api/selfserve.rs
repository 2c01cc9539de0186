//! Tenants' own data and models: datasets (`/v1/datasets`), training jobs
//! (`/v1/training-jobs`, with progress as Server-Sent Events and the evaluation report),
//! deploying a version they own (`/v1/models/{name}/deploy`) and batch jobs (`/v1/batches`,
//! results as JSONL or CSV), over the typed calls of `datasets` and `jobs`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use flywheel_data::{Format, ReadOptions};
use flywheel_store::{JobKind, Store};
use serde_json::{json, Map, Value};

use crate::access::{now_unix, store_unavailable, Caller};
use crate::datasets::{dataset_json, owned, Owner, UploadRequest};
use crate::error::ApiError;
use crate::jobs::{create_batch, create_training, job_json, owned_job, TrainingRequest};
use crate::state::AppState;
use crate::wire::{html_response, json_response, parse_object, read_json_body};

/// Jobs one listing returns.
const MAX_LISTED: i64 = 200;
/// How often an event stream looks for new events.
const EVENT_POLL: Duration = Duration::from_millis(500);
/// Longest silence on an event stream: a comment line is sent after it.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Results read per page of a download.
const RESULTS_PAGE: i64 = 1_000;

fn need_store(state: &AppState) -> Result<&Store, ApiError> {
    state.store.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no_store",
            "datasets and jobs need a store: start the server with --database-url",
        )
    })
}

async fn tenant(state: &AppState, headers: &HeaderMap) -> Result<(Caller, Owner), ApiError> {
    need_store(state)?;
    let caller = state.caller(headers).await?;
    let owner = Owner::of(&caller)?;
    Ok((caller, owner))
}

fn query_map(query: Option<&str>) -> BTreeMap<String, String> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

fn parse_id(id: &str) -> Result<i64, ApiError> {
    id.parse::<i64>().map_err(|_| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "dataset_not_found",
            format!("no dataset {id:?}; dataset ids are numbers (GET /v1/datasets lists yours)"),
        )
    })
}

/// The upload's format: the `format` parameter, else the file name's extension, else the
/// content type.
fn upload_format(q: &BTreeMap<String, String>, headers: &HeaderMap) -> Result<Format, ApiError> {
    if let Some(f) = q.get("format") {
        return f
            .parse::<Format>()
            .map_err(|e| ApiError::invalid(e.to_string()).param("format"));
    }
    if let Some(f) = q
        .get("filename")
        .and_then(|n| Format::from_path(std::path::Path::new(n)))
    {
        return Ok(f);
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = content_type.split(';').next().unwrap_or("").trim();
    match mime.to_ascii_lowercase().as_str() {
        "text/csv" => Ok(Format::Csv),
        "text/tab-separated-values" => Ok(Format::Tsv),
        "application/x-ndjson" | "application/jsonl" | "application/jsonlines" => Ok(Format::Jsonl),
        _ => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unknown_format",
            format!(
                "cannot tell the file's format from 'Content-Type: {content_type}': send \
                 text/csv, text/tab-separated-values or application/x-ndjson, or add \
                 ?format=csv|tsv|jsonl|fasttext"
            ),
        )),
    }
}

/// `POST /v1/datasets?name=NAME[&format=csv|tsv|jsonl|fasttext][&text_column=text]
/// [&label_column=label][&labelled=false]` with the file as the body: 201 with the dataset
/// and its preview.
pub(crate) async fn upload(
    State(state): State<Arc<AppState>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (_, owner) = tenant(&state, &headers).await?;
    let store = need_store(&state)?;
    let q = query_map(query.as_deref());
    let known = [
        "name",
        "format",
        "filename",
        "text_column",
        "label_column",
        "labelled",
    ];
    if let Some(k) = q.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(ApiError::invalid(format!(
            "unknown parameter {k:?}; the parameters are {}",
            known.join(", ")
        ))
        .param(k.clone()));
    }
    let format = upload_format(&q, &headers)?;
    let name = match (q.get("name"), q.get("filename")) {
        (Some(n), _) => n.clone(),
        (None, Some(f)) => std::path::Path::new(f)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
        (None, None) => {
            return Err(ApiError::invalid("give the dataset a name: ?name=NAME").param("name"))
        }
    };
    let labelled = match q.get("labelled").map(String::as_str) {
        None | Some("true") => true,
        Some("false") => false,
        Some(other) => {
            return Err(
                ApiError::invalid(format!("labelled must be true or false, not {other:?}"))
                    .param("labelled"),
            )
        }
    };
    let defaults = ReadOptions::default();
    let req = UploadRequest {
        name,
        format,
        options: ReadOptions {
            format: Some(format),
            text_column: q
                .get("text_column")
                .cloned()
                .unwrap_or(defaults.text_column),
            label_column: q
                .get("label_column")
                .cloned()
                .unwrap_or(defaults.label_column),
        },
        labelled,
        declared_len: headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok()),
    };
    let info = crate::datasets::upload(&state, store, &owner, req, body).await?;
    Ok(json_response(StatusCode::CREATED, &dataset_json(&info)))
}

/// `GET /v1/datasets`: the caller's datasets, newest first.
pub(crate) async fn list_datasets(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (_, owner) = tenant(&state, &headers).await?;
    let store = need_store(&state)?;
    let list = store
        .list_uploads(Some(owner.tenant_id))
        .await
        .map_err(|e| store_unavailable(&e))?;
    let data: Vec<Value> = list.iter().map(dataset_json).collect();
    Ok(json_response(StatusCode::OK, &json!({ "datasets": data })))
}

/// `GET /v1/datasets/{id}`: one of the caller's datasets with its preview.
pub(crate) async fn get_dataset(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (_, owner) = tenant(&state, &headers).await?;
    let store = need_store(&state)?;
    let info = owned(store, &owner, parse_id(&id)?).await?;
    Ok(json_response(StatusCode::OK, &dataset_json(&info)))
}

/// `DELETE /v1/datasets/{id}`: deletes one of the caller's datasets (its rows are removed).
pub(crate) async fn delete_dataset(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (_, owner) = tenant(&state, &headers).await?;
    let store = need_store(&state)?;
    let info = owned(store, &owner, parse_id(&id)?).await?;
    store
        .delete_upload(info.id, now_unix())
        .await
        .map_err(|e| store_unavailable(&e))?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"id": info.id, "object": "dataset", "deleted": true}),
    ))
}

fn budget_seconds(v: &Value) -> Result<f64, ApiError> {
    let bad = || {
        ApiError::invalid("budget is seconds (120) or a duration (\"90s\", \"2m\", \"1h\")")
            .param("budget")
    };
    match v {
        Value::Number(n) => n.as_f64().ok_or_else(bad),
        Value::String(s) => {
            let s = s.trim();
            let (num, mult) = if let Some(n) = s.strip_suffix('h') {
                (n, 3600.0)
            } else if let Some(n) = s.strip_suffix('m') {
                (n, 60.0)
            } else if let Some(n) = s.strip_suffix('s') {
                (n, 1.0)
            } else {
                (s, 1.0)
            };
            num.trim()
                .parse::<f64>()
                .map(|x| x * mult)
                .map_err(|_| bad())
        }
        _ => Err(bad()),
    }
}

fn int_field(obj: &Map<String, Value>, key: &str, param: &str) -> Result<Option<u64>, ApiError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| {
            ApiError::invalid(format!("{param} must be a non-negative integer")).param(param)
        }),
    }
}

fn dataset_field(obj: &Map<String, Value>) -> Result<i64, ApiError> {
    match obj.get("dataset") {
        Some(Value::Number(n)) => n
            .as_i64()
            .ok_or_else(|| ApiError::invalid("dataset must be a dataset id").param("dataset")),
        Some(Value::String(s)) => s
            .parse()
            .map_err(|_| ApiError::invalid("dataset must be a dataset id").param("dataset")),
        _ => Err(ApiError::invalid("dataset (a dataset id) is required").param("dataset")),
    }
}

/// `POST /v1/training-jobs` with `{"dataset": ID, "model": "autotune"|FAMILY, "budget": 120,
/// "name": "MODEL", "settings": {"seed": 42, "eval_fraction": 0.2, "epochs": N}}`: 202 with the
/// queued job.
pub(crate) async fn create_training_job(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (_, owner) = tenant(&state, &headers).await?;
    let store = need_store(&state)?;
    let bytes = read_json_body(&state.limits, &headers, body).await?;
    let obj = parse_object(
        &bytes,
        &["dataset", "model", "budget", "name", "settings"],
        "{\"dataset\": 1, \"model\": \"autotune\", \"budget\": 120}",
    )?;
    let dataset = dataset_field(&obj)?;
    let family = match obj.get("model") {
        None | Some(Value::Null) => "autotune".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => {
            return Err(
                ApiError::invalid("model must be \"autotune\" or a family name").param("model"),
            )
        }
    };
    let budget_seconds = match obj.get("budget") {
        None | Some(Value::Null) => 120.0,
        Some(v) => budget_seconds(v)?,
    };
    let name = match obj.get("name") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(ApiError::invalid("name must be a string").param("name")),
    };
    let empty = Map::new();
    let settings = match obj.get("settings") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(m)) => m,
        Some(_) => return Err(ApiError::invalid("settings must be an object").param("settings")),
    };
    if let Some(k) = settings
        .keys()
        .find(|k| !["seed", "eval_fraction", "epochs"].contains(&k.as_str()))
    {
        return Err(ApiError::invalid(format!(
            "unknown setting {k:?}; the settings are seed, eval_fraction and epochs"
        ))
        .param(format!("settings.{k}")));
    }
    let eval_fraction = match settings.get("eval_fraction") {
        None | Some(Value::Null) => 0.2,
        Some(v) => v.as_f64().ok_or_else(|| {
            ApiError::invalid("settings.eval_fraction must be a number")
                .param("settings.eval_fraction")
        })?,
    };
    let req = TrainingRequest {
        dataset,
        name,
        family,
        budget_seconds,
        seed: int_field(settings, "seed", "settings.seed")?.unwrap_or(42),
        eval_fraction,
        epochs: int_field(settings, "epochs", "settings.epochs")?.map(|e| e as usize),
    };
    let job = create_training(&state, store, &owner, req).await?;
    Ok(json_response(StatusCode::ACCEPTED, &job_json(&job)))
}

async fn list_jobs(
    state: &AppState,
    headers: &HeaderMap,
    kind: JobKind,
) -> Result<Response, ApiError> {
    let (_, owner) = tenant(state, headers).await?;
    let store = need_store(state)?;
    let jobs = store
        .list_jobs(Some(owner.tenant_id), Some(kind), MAX_LISTED)
        .await
        .map_err(|e| store_unavailable(&e))?;
    let data: Vec<Value> = jobs.iter().map(job_json).collect();
    let key = match kind {
        JobKind::Training => "training_jobs",
        JobKind::Batch => "batches",
    };
    Ok(json_response(StatusCode::OK, &json!({ key: data })))
}

async fn get_job(
    state: &AppState,
    headers: &HeaderMap,
    id: &str,
    kind: JobKind,
) -> Result<Response, ApiError> {
    let (_, owner) = tenant(state, headers).await?;
    let store = need_store(state)?;
    let job = owned_job(store, &owner, id, kind).await?;
    Ok(json_response(StatusCode::OK, &job_json(&job)))
}

async fn cancel_job(
    state: &AppState,
    headers: &HeaderMap,
    id: &str,
    kind: JobKind,
) -> Result<Response, ApiError> {
    let (_, owner) = tenant(state, headers).await?;
    let store = need_store(state)?;
    let job = owned_job(store, &owner, id, kind).await?;
    if job.state.is_final() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "job_finished",
            format!("job {id:?} is {} already", job.state.as_str()),
        ));
    }
    let job = store
        .cancel_job(id, now_unix())
        .await
        .map_err(|e| store_unavailable(&e))?
        .unwrap_or(job);
    Ok(json_response(StatusCode::OK, &job_json(&job)))
}

/// `GET /v1/training-jobs`: the caller's training jobs, newest first.
pub(crate) async fn list_training_jobs(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    list_jobs(&state, &headers, JobKind::Training).await
}

/// `GET /v1/training-jobs/{id}`: state, progress and (once done) result of a training job.
pub(crate) async fn get_training_job(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    get_job(&state, &headers, &id, JobKind::Training).await
}

/// `POST /v1/training-jobs/{id}/cancel`.
pub(crate) async fn cancel_training_job(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    cancel_job(&state, &headers, &id, JobKind::Training).await
}

/// `GET /v1/training-jobs/{id}/events`: the job's events as Server-Sent Events (`Last-Event-ID`
/// resumes), until the job ends.
pub(crate) async fn training_job_events(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    job_events(state, headers, id, JobKind::Training).await
}

/// `GET /v1/batches/{id}/events`: as the training jobs' events.
pub(crate) async fn batch_events(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    job_events(state, headers, id, JobKind::Batch).await
}

async fn job_events(
    state: Arc<AppState>,
    headers: HeaderMap,
    id: String,
    kind: JobKind,
) -> Result<Response, ApiError> {
    let (_, owner) = tenant(&state, &headers).await?;
    let store = need_store(&state)?.clone();
    owned_job(&store, &owner, &id, kind).await?;
    let after = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok())
        .unwrap_or(0);
    // (store, job id, last sequence sent, whether the job has ended)
    let stream = futures_util::stream::unfold(
        (store, id, after, false),
        |(store, id, mut after, ended)| async move {
            if ended {
                return None;
            }
            let quiet_since = tokio::time::Instant::now();
            loop {
                let events = match store.job_events(&id, after).await {
                    Ok(e) => e,
                    Err(_) => return None,
                };
                if !events.is_empty() {
                    let mut text = String::new();
                    for e in &events {
                        text.push_str(&format!(
                            "id: {}\nevent: progress\ndata: {}\n\n",
                            e.seq, e.data
                        ));
                        after = e.seq;
                    }
                    return Some((
                        Ok::<Bytes, std::io::Error>(Bytes::from(text)),
                        (store, id, after, false),
                    ));
                }
                let finished = match store.get_job(&id).await {
                    Ok(Some(job)) => job.state.is_final(),
                    _ => true,
                };
                if finished {
                    // One last look: the final event is written with the final state.
                    match store.job_events(&id, after).await {
                        Ok(events) if !events.is_empty() => continue,
                        _ => {
                            return Some((
                                Ok(Bytes::from_static(b"event: end\ndata: {}\n\n")),
                                (store, id, after, true),
                            ))
                        }
                    }
                }
                // A comment now and then: a long epoch must not look like an idle connection
                // (to `--idle-timeout-s` or a proxy).
                if quiet_since.elapsed() >= KEEP_ALIVE {
                    return Some((
                        Ok(Bytes::from_static(b": keep-alive\n\n")),
                        (store, id, after, false),
                    ));
                }
                tokio::time::sleep(EVENT_POLL).await;
            }
        },
    );
    let mut response = Body::from_stream(stream).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(response)
}

/// `GET /v1/training-jobs/{id}/report`: the evaluation report (HTML) of a succeeded job.
pub(crate) async fn training_job_report(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (_, owner) = tenant(&state, &headers).await?;
    let store = need_store(&state)?;
    let html = crate::jobs::report(store, &owner, &id).await?;
    Ok(html_response(html))
}

/// `POST /v1/models/{name}/deploy` with `{"version": N}`: makes version N of a model the caller
/// owns its champion (served within the registry's poll interval).
pub(crate) async fn deploy(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let store = need_store(&state)?;
    let caller = state.caller(&headers).await?;
    let bytes = read_json_body(&state.limits, &headers, body).await?;
    let obj = parse_object(&bytes, &["version"], "{\"version\": 1}")?;
    let version = obj
        .get("version")
        .and_then(Value::as_i64)
        .ok_or_else(|| ApiError::invalid("version (a number) is required").param("version"))?;
    crate::jobs::deploy(&state, store, &caller, &name, version).await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"model": name, "champion": version, "deployed": true}),
    ))
}

/// `POST /v1/batches` with `{"model": NAME, "dataset": ID}`: 202 with the queued batch.
pub(crate) async fn create_batch_job(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (caller, owner) = tenant(&state, &headers).await?;
    let store = need_store(&state)?;
    let bytes = read_json_body(&state.limits, &headers, body).await?;
    let obj = parse_object(
        &bytes,
        &["model", "dataset"],
        "{\"model\": \"NAME\", \"dataset\": 1}",
    )?;
    let model = obj
        .get("model")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::invalid("model (a name) is required").param("model"))?
        .to_string();
    let dataset = dataset_field(&obj)?;
    let job = create_batch(&state, store, &owner, &caller, &model, dataset).await?;
    Ok(json_response(StatusCode::ACCEPTED, &job_json(&job)))
}

/// `GET /v1/batches`: the caller's batches, newest first.
pub(crate) async fn list_batches(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    list_jobs(&state, &headers, JobKind::Batch).await
}

/// `GET /v1/batches/{id}`.
pub(crate) async fn get_batch(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    get_job(&state, &headers, &id, JobKind::Batch).await
}

/// `POST /v1/batches/{id}/cancel`.
pub(crate) async fn cancel_batch(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    cancel_job(&state, &headers, &id, JobKind::Batch).await
}

/// `GET /v1/batches/{id}/results[?format=jsonl|csv]`: the results stored so far, in row order
/// (all of them once the batch succeeded), streamed.
pub(crate) async fn batch_results(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (_, owner) = tenant(&state, &headers).await?;
    let store = need_store(&state)?.clone();
    owned_job(&store, &owner, &id, JobKind::Batch).await?;
    let q = query_map(query.as_deref());
    let csv = match q.get("format").map(String::as_str) {
        None | Some("jsonl") => false,
        Some("csv") => true,
        Some(other) => {
            return Err(
                ApiError::invalid(format!("format must be jsonl or csv, not {other:?}"))
                    .param("format"),
            )
        }
    };
    let header_line = csv.then(|| Bytes::from_static(b"index,label,score,version\n"));
    let pages = futures_util::stream::unfold(
        (store, id, 0i64, false),
        move |(store, id, offset, done)| async move {
            if done {
                return None;
            }
            match store.batch_results(&id, offset, RESULTS_PAGE).await {
                Ok(rows) if rows.is_empty() => None,
                Ok(rows) => {
                    let next = rows.last().map_or(offset, |r| r.0 + 1);
                    let mut out = Vec::new();
                    for (_, json) in &rows {
                        if csv {
                            out.extend_from_slice(csv_line(json).as_bytes());
                        } else {
                            out.extend_from_slice(json.as_bytes());
                            out.push(b'\n');
                        }
                    }
                    Some((
                        Ok::<Bytes, std::io::Error>(Bytes::from(out)),
                        (store, id, next, false),
                    ))
                }
                Err(e) => Some((
                    Err(std::io::Error::other(e.to_string())),
                    (store, id, offset, true),
                )),
            }
        },
    );
    let first = futures_util::stream::iter(header_line.map(Ok));
    let body = Body::from_stream(futures_util::StreamExt::chain(first, pages));
    let mut response = body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(if csv {
            "text/csv; charset=utf-8"
        } else {
            "application/x-ndjson"
        }),
    );
    Ok(response)
}

/// One result as a CSV line: index, label (several joined by `|`), score, version.
fn csv_line(json: &str) -> String {
    let v: Value = serde_json::from_str(json).unwrap_or(Value::Null);
    let label = match v.get("label") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join("|"),
        _ => v.get("value").map(Value::to_string).unwrap_or_default(),
    };
    let cells = [
        v.get("index").map(Value::to_string).unwrap_or_default(),
        label,
        v.get("score").map(Value::to_string).unwrap_or_default(),
        v.get("version")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
    ];
    let quote = |c: &str| -> String {
        let c = flywheel_store::csv_cell(c);
        if c.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", c.replace('"', "\"\""))
        } else {
            c.into_owned()
        }
    };
    let mut line = cells.iter().map(|c| quote(c)).collect::<Vec<_>>().join(",");
    line.push('\n');
    line
}
