//! The "New model" page (`GET /new`) for a tenant: upload a dataset and see its preview,
//! choose a family or autotune and a budget, follow the training job's live progress bar,
//! read the report and deploy; and the tenant's jobs and batches with their states. Every
//! action goes through the same typed calls as the API (`datasets`, `jobs`).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use flywheel_data::{Format, ReadOptions};
use flywheel_store::{JobInfo, JobKind, JobState, UploadInfo};
use maud::{html, Markup};
use serde_json::Value;

use super::{field, ok, read_form, store_of, PageResult};
use crate::dashboard::view::{layout, Tab};
use crate::dashboard::{redirect, url_encode, PageError, Viewer};
use crate::datasets::{owned, Owner, UploadRequest};
use crate::error::ApiError;
use crate::jobs::{create_training, deploy, job_json, owned_job, TrainingRequest};
use crate::state::AppState;
use crate::wire::{html_response, json_response};

/// Jobs listed on the page.
const LISTED: i64 = 50;

/// The tenant behind a dashboard viewer (the admin and an open server have none).
fn tenant_of(viewer: &Viewer) -> Result<Owner, PageError> {
    Owner::of(&viewer.caller()).map_err(|_| {
        PageError::new(
            StatusCode::FORBIDDEN,
            "new models belong to a tenant: sign in with the tenant's API key",
        )
    })
}

/// The signed-in tenant of a page (`post`: a form post, which must come from the dashboard),
/// with the store.
async fn tenant_view<'s>(
    state: &'s AppState,
    headers: &HeaderMap,
    here: &str,
    post: bool,
) -> Result<(Viewer, &'s flywheel_store::Store, Owner), PageError> {
    let viewer = if post {
        state.poster(headers, here).await?
    } else {
        state.viewer(headers, here).await?
    };
    let store = store_of(state)?;
    let owner = tenant_of(&viewer)?;
    Ok((viewer, store, owner))
}

fn summary(info: &UploadInfo) -> Value {
    serde_json::from_str(&info.summary).unwrap_or(Value::Null)
}

fn state_badge(state: JobState) -> Markup {
    html! { span class=(format!("state {}", state.as_str())) { (state.as_str()) } }
}

fn fraction(job: &JobInfo) -> f64 {
    let progress: Value = serde_json::from_str(&job.progress).unwrap_or(Value::Null);
    match job.state {
        JobState::Succeeded => 1.0,
        _ => progress["fraction"].as_f64().unwrap_or(0.0),
    }
}

/// `GET /new`: datasets, the upload and training forms, jobs and batches.
pub(crate) async fn new_model(
    State(state): State<Arc<AppState>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> PageResult {
    let (viewer, store, owner) = tenant_view(&state, &headers, "/new", false).await?;
    let datasets = store
        .list_uploads(Some(owner.tenant_id))
        .await
        .map_err(|e| PageError::store(&e))?;
    let jobs = store
        .list_jobs(Some(owner.tenant_id), None, LISTED)
        .await
        .map_err(|e| PageError::store(&e))?;
    let error = form_urlencoded::parse(query.as_deref().unwrap_or("").as_bytes())
        .find(|(k, _)| k == "error")
        .map(|(_, v)| v.into_owned());
    let labelled: Vec<&UploadInfo> = datasets
        .iter()
        .filter(|d| summary(d)["labelled"].as_bool().unwrap_or(false))
        .collect();
    let families = ["linear", "fasttext", "lstm", "gru", "bilstm", "cnn"];
    let content = html! {
        @if let Some(e) = &error { p.error role="alert" { (e) } }
        section aria-labelledby="upload-h" {
            h2 #upload-h { "1. Upload a dataset" }
            p.muted { "CSV or TSV with a header (columns " code { "text" } " and " code { "label" } "), or JSONL with those keys. Texts are redacted of personal data before they are stored." }
            form #upload action="/new/datasets" method="post" {
                label for="file" { "File" }
                input #file type="file" name="file" accept=".csv,.tsv,.jsonl,.txt" required;
                label for="dataset-name" { "Name" }
                input #dataset-name type="text" name="name" pattern="[A-Za-z0-9_.\\-]{1,128}" placeholder="from the file name";
                label { input type="checkbox" name="labelled" value="false"; " texts to classify (no labels)" }
                button type="submit" { "Upload" }
                p #upload-status role="status" {}
            }
            @if datasets.is_empty() {
                p.muted { "No datasets yet." }
            } @else {
                div.scroll {
                    table #datasets {
                        thead { tr {
                            th scope="col" { "Dataset" } th scope="col" class="num" { "Rows" }
                            th scope="col" { "Task" } th scope="col" { "Language" } th scope="col" { "Labels" }
                            th scope="col" { "First rows" }
                        } }
                        tbody {
                            @for d in &datasets {
                                @let s = summary(d);
                                tr {
                                    th scope="row" { (d.name) " v" (d.version) br; span.muted { "id " (d.id) } }
                                    td.num { (d.row_count) }
                                    td { (s["task"].as_str().unwrap_or("")) }
                                    td { (s["language"].as_str().unwrap_or("")) }
                                    td {
                                        @if let Some(counts) = s["label_counts"].as_object() {
                                            @for (label, n) in counts.iter().take(12) {
                                                span.tag { (label) " " (n) } " "
                                            }
                                        }
                                    }
                                    td.sample {
                                        @if let Some(rows) = s["sample"].as_array() {
                                            @for r in rows.iter().take(3) {
                                                div { (r["text"].as_str().unwrap_or("").chars().take(80).collect::<String>()) }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        section aria-labelledby="train-h" {
            h2 #train-h { "2. Train" }
            @if labelled.is_empty() {
                p.muted { "Upload a labelled dataset first." }
            } @else {
                form #train action="/new/train" method="post" {
                    label for="dataset" { "Dataset" }
                    select #dataset name="dataset" {
                        @for d in &labelled { option value=(d.id) { (d.name) " v" (d.version) " (" (d.row_count) " rows)" } }
                    }
                    label for="family" { "Model" }
                    select #family name="model" {
                        option value="autotune" selected { "autotune (search within the budget)" }
                        @for f in families { option value=(f) { (f) } }
                    }
                    label for="budget" { "Budget (seconds)" }
                    input #budget type="number" name="budget" min="5" max="86400" value="120";
                    label for="model-name" { "Model name" }
                    input #model-name type="text" name="name" pattern="[A-Za-z0-9_.\\-]{1,64}" placeholder=(format!("{}.DATASET", owner.tenant));
                    button type="submit" { "Train" }
                }
            }
        }
        section aria-labelledby="jobs-h" {
            h2 #jobs-h { "Jobs and batches" }
            @if jobs.is_empty() {
                p.muted { "No jobs yet." }
            } @else {
                div.scroll {
                    table #jobs {
                        thead { tr {
                            th scope="col" { "Job" } th scope="col" { "Kind" } th scope="col" { "Model" }
                            th scope="col" { "Dataset" } th scope="col" { "State" } th scope="col" { "Progress" }
                        } }
                        tbody {
                            @for j in &jobs {
                                tr {
                                    th scope="row" {
                                        @if j.kind == JobKind::Training { a href=(format!("/jobs/{}", url_encode(&j.id))) { (j.id) } }
                                        @else { (j.id) }
                                    }
                                    td { (j.kind.as_str()) }
                                    td { (j.model) }
                                    td { (j.upload_id) }
                                    td { (state_badge(j.state)) }
                                    td { progress max="1" value=(format!("{:.3}", fraction(j))) {} }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    ok(layout("New model", Tab::New, Some(&viewer), content))
}

/// `POST /new/datasets?name=NAME&filename=FILE[&labelled=false]` with the file as the body (the
/// page's script sends it): the dataset as JSON, or the API's JSON error.
pub(crate) async fn upload(
    State(state): State<Arc<AppState>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = async {
        let viewer = state.poster(&headers, "/new").await.map_err(|_| {
            ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "sign in again")
        })?;
        let store = state
            .store
            .as_ref()
            .ok_or_else(|| ApiError::invalid("no store"))?;
        let owner = Owner::of(&viewer.caller())?;
        let q: Vec<(String, String)> =
            form_urlencoded::parse(query.as_deref().unwrap_or("").as_bytes())
                .into_owned()
                .collect();
        let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let filename = get("filename").unwrap_or_default();
        let format = Format::from_path(std::path::Path::new(&filename)).ok_or_else(|| {
            ApiError::invalid(format!(
                "cannot tell the format of {filename:?}: name the file .csv, .tsv, .jsonl or .txt"
            ))
        })?;
        let name = get("name").filter(|n| !n.is_empty()).unwrap_or_else(|| {
            std::path::Path::new(&filename)
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default()
        });
        let req = UploadRequest {
            name,
            format,
            options: ReadOptions {
                format: Some(format),
                ..ReadOptions::default()
            },
            labelled: get("labelled").as_deref() != Some("false"),
            declared_len: headers
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok()),
        };
        crate::datasets::upload(&state, store, &owner, req, body).await
    }
    .await;
    match result {
        Ok(info) => json_response(StatusCode::CREATED, &crate::datasets::dataset_json(&info)),
        Err(e) => e.into_response(),
    }
}

/// `POST /new/train` (form): queues a training job and shows it.
pub(crate) async fn train(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> PageResult {
    let (_, store, owner) = tenant_view(&state, &headers, "/new", true).await?;
    let (_, fields) = read_form(&state, &headers, body).await?;
    let back = |message: String| Ok(redirect(&format!("/new?error={}", url_encode(&message))));
    let Some(dataset) = field(&fields, "dataset").and_then(|d| d.parse::<i64>().ok()) else {
        return back("choose a dataset".into());
    };
    let budget = field(&fields, "budget")
        .and_then(|b| b.parse::<f64>().ok())
        .unwrap_or(120.0);
    let req = TrainingRequest {
        dataset,
        name: field(&fields, "name")
            .filter(|n| !n.trim().is_empty())
            .map(|n| n.trim().to_string()),
        family: field(&fields, "model").unwrap_or("autotune").to_string(),
        budget_seconds: budget,
        seed: 42,
        eval_fraction: 0.2,
        epochs: None,
    };
    match create_training(&state, store, &owner, req).await {
        Ok(job) => Ok(redirect(&format!("/jobs/{}", url_encode(&job.id)))),
        Err(e) => back(e.message),
    }
}

/// `GET /jobs/{id}`: a training job with its live progress bar; once done, its scores, the
/// report and the Deploy button.
pub(crate) async fn job_page(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> PageResult {
    let here = format!("/jobs/{}", url_encode(&id));
    let (viewer, store, owner) = tenant_view(&state, &headers, &here, false).await?;
    let job = owned_job(store, &owner, &id, JobKind::Training).await?;
    let dataset = owned(store, &owner, job.upload_id).await.ok();
    let result: Value = job
        .result
        .as_deref()
        .and_then(|r| serde_json::from_str(r).ok())
        .unwrap_or(Value::Null);
    let settings: Value = serde_json::from_str(&job.settings).unwrap_or(Value::Null);
    let version = result["version"].as_i64();
    let content = html! {
        dl.facts {
            dt { "Model" } dd { (job.model) }
            dt { "Dataset" } dd { @if let Some(d) = &dataset { (d.name) " v" (d.version) } @else { (job.upload_id) } }
            dt { "Family" } dd { (settings["family"].as_str().unwrap_or("")) }
            dt { "Budget" } dd { (settings["budget_seconds"].as_f64().unwrap_or(0.0)) " s" }
            dt { "State" } dd #job-state { (state_badge(job.state)) }
        }
        div #job data-status=(format!("/jobs/{}/status", url_encode(&id))) data-final=[job.state.is_final().then_some("1")] {
            progress #job-progress max="1" value=(format!("{:.3}", fraction(&job))) aria-label="Training progress" {}
            p #job-detail role="status" {}
        }
        @if let Some(e) = &job.error { p.error role="alert" { (e) } }
        @if job.state == JobState::Succeeded {
            @let metrics = &result["metrics"];
            p #job-result {
                "Held-out macro-F1 " strong { (format!("{:.4}", metrics["macro_f1"].as_f64().unwrap_or(f64::NAN))) }
                ", accuracy " strong { (format!("{:.4}", metrics["accuracy"].as_f64().unwrap_or(f64::NAN))) }
                " on " (result["eval_rows"]) " rows; " (result["configuration"].as_str().unwrap_or("")) "."
            }
            p { a #report-link href=(format!("/jobs/{}/report", url_encode(&id))) { "Read the evaluation report" } }
            @if let Some(v) = version {
                form action=(format!("/jobs/{}/deploy", url_encode(&id))) method="post" {
                    button #deploy type="submit" { "Deploy version " (v) }
                }
            }
        }
        @if !job.state.is_final() {
            form action=(format!("/jobs/{}/cancel", url_encode(&id))) method="post" {
                button.link type="submit" { "Cancel" }
            }
        }
        p { a href="/new" { "Back to New model" } }
    };
    ok(layout(
        &format!("Training job {id}"),
        Tab::New,
        Some(&viewer),
        content,
    ))
}

/// `GET /jobs/{id}/status`: the job as JSON, for the progress bar.
pub(crate) async fn job_status(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> PageResult {
    let (_, store, owner) = tenant_view(&state, &headers, "/new", false).await?;
    let job = owned_job(store, &owner, &id, JobKind::Training).await?;
    Ok(json_response(StatusCode::OK, &job_json(&job)))
}

/// `GET /jobs/{id}/report`: the job's evaluation report.
pub(crate) async fn job_report(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> PageResult {
    let (_, store, owner) = tenant_view(&state, &headers, "/new", false).await?;
    Ok(html_response(
        crate::jobs::report(store, &owner, &id).await?,
    ))
}

/// `POST /jobs/{id}/deploy` (form): makes the job's version the champion.
pub(crate) async fn job_deploy(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> PageResult {
    let (viewer, store, owner) = tenant_view(&state, &headers, "/new", true).await?;
    let job = owned_job(store, &owner, &id, JobKind::Training).await?;
    let version = job
        .result
        .as_deref()
        .and_then(|r| serde_json::from_str::<Value>(r).ok())
        .and_then(|r| r["version"].as_i64())
        .ok_or_else(|| PageError::new(StatusCode::CONFLICT, "the job has no model version yet"))?;
    deploy(&state, store, &viewer.caller(), &job.model, version).await?;
    Ok(redirect(&format!(
        "/models/{}?done=promote&v={version}",
        url_encode(&job.model)
    )))
}

/// `POST /jobs/{id}/cancel` (form).
pub(crate) async fn job_cancel(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> PageResult {
    let (_, store, owner) = tenant_view(&state, &headers, "/new", true).await?;
    owned_job(store, &owner, &id, JobKind::Training).await?;
    store
        .cancel_job(&id, crate::access::now_unix())
        .await
        .map_err(|e| PageError::store(&e))?;
    Ok(redirect(&format!("/jobs/{}", url_encode(&id))))
}
