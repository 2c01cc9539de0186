//! The dashboard's pages and form handlers.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use flywheel_model::artifact::ArtifactMeta;
use flywheel_model::{Artifact, Report, Task};
use flywheel_store::{Alias, KeySummary, NewKey, Store, UsageFilter, UsageRow};
use http_body_util::{BodyExt, Limited};
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::Value;

use super::charts::{self, Series};
use super::view::{self, layout, Tab};
use super::{html as page, redirect, safe_next, session_cookie, url_encode, PageError, Viewer};
use crate::access::{now_unix, request_id, Usage};
use crate::error::ApiError;
use crate::http::AppState;
use crate::models::{LoadedModel, Work};

/// Items shown on the review page at once.
const REVIEW_PAGE: i64 = 20;
/// Versions whose metadata is kept in memory for the model pages.
const META_CACHE: usize = 256;

/// Metadata of registry versions already read (versions never change once pushed).
#[derive(Default)]
pub(crate) struct MetaCache(Mutex<HashMap<(String, i64), Arc<ArtifactMeta>>>);

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> Self {
        PageError::Page(e.status, e.message)
    }
}

type PageResult = Result<Response, PageError>;

fn ok(markup: Markup) -> PageResult {
    Ok(page(StatusCode::OK, markup))
}

/// Reads an `application/x-www-form-urlencoded` body (at most the server's body limit).
async fn read_form(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<(Bytes, Vec<(String, String)>), PageError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type.starts_with("application/x-www-form-urlencoded") {
        return Err(PageError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "this form must be sent as application/x-www-form-urlencoded",
        ));
    }
    let bytes = Limited::new(body, state.limits.max_body_bytes)
        .collect()
        .await
        .map_err(|_| {
            PageError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "the form is larger than {} bytes",
                    state.limits.max_body_bytes
                ),
            )
        })?
        .to_bytes();
    let fields = form_urlencoded::parse(&bytes).into_owned().collect();
    Ok((bytes, fields))
}

/// The first value of a form field.
fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn store_of(state: &AppState) -> Result<&Store, PageError> {
    state.store.as_ref().ok_or_else(|| {
        PageError::new(
            StatusCode::NOT_FOUND,
            "this page needs accounts: start the server with --database-url",
        )
    })
}

/// One model as the models page lists it.
struct ModelRow {
    name: String,
    /// The version being served, if any (shared with the server, not copied).
    current: Option<Arc<LoadedModel>>,
    champion: Option<i64>,
    challenger: Option<i64>,
    latest: Option<i64>,
    public: Option<bool>,
}

impl ModelRow {
    /// The served version's name, if one is served.
    fn served(&self) -> Option<&str> {
        self.current.as_ref().map(|c| c.version.as_str())
    }

    /// The served version's metadata, if one is served.
    fn meta(&self) -> Option<&ArtifactMeta> {
        self.current.as_ref().map(|c| &c.artifact.meta)
    }
}

/// The models this viewer may see, by name.
async fn visible_models(state: &AppState, viewer: &Viewer) -> Result<Vec<ModelRow>, PageError> {
    let served = state.models.load();
    let current = |name: &str| served.get(name).map(|slot| slot.current.load_full());
    let Some(store) = &state.store else {
        return Ok(served
            .keys()
            .map(|name| ModelRow {
                name: name.clone(),
                current: current(name),
                champion: None,
                challenger: None,
                latest: None,
                public: None,
            })
            .collect());
    };
    let usable: Option<BTreeSet<String>> = match viewer.tenant() {
        Some(t) => Some(
            store
                .usable_models(t)
                .await
                .map_err(|e| PageError::store(&e))?
                .into_iter()
                .collect(),
        ),
        None => None,
    };
    let summaries = store
        .list_models()
        .await
        .map_err(|e| PageError::store(&e))?;
    Ok(summaries
        .into_iter()
        .filter(|m| usable.as_ref().is_none_or(|u| u.contains(&m.name)))
        .map(|m| ModelRow {
            current: current(&m.name),
            champion: m.champion,
            challenger: m.challenger,
            latest: (m.latest_version > 0).then_some(m.latest_version),
            public: Some(m.public),
            name: m.name,
        })
        .collect())
}

/// 404 unless the viewer may see `name`.
async fn visible_model(
    state: &AppState,
    viewer: &Viewer,
    name: &str,
) -> Result<ModelRow, PageError> {
    visible_models(state, viewer)
        .await?
        .into_iter()
        .find(|m| m.name == name)
        .ok_or_else(|| PageError::new(StatusCode::NOT_FOUND, format!("no model named '{name}'")))
}

/// The metadata of a registry version (read once, then cached).
async fn version_meta(
    state: &AppState,
    store: &Store,
    name: &str,
    version: i64,
) -> Result<Arc<ArtifactMeta>, PageError> {
    let key = (name.to_string(), version);
    if let Some(meta) = state
        .dashboard_meta
        .0
        .lock()
        .ok()
        .and_then(|c| c.get(&key).cloned())
    {
        return Ok(meta);
    }
    let stored = store
        .get_version(name, version)
        .await
        .map_err(|e| match e {
            flywheel_store::Error::NotFound(what) => {
                PageError::new(StatusCode::NOT_FOUND, format!("{what} not found"))
            }
            other => PageError::store(&other),
        })?;
    let label = format!("{name} v{version}");
    let meta = tokio::task::spawn_blocking(move || {
        Artifact::from_bytes(&stored.bytes, &label).map(|a| Arc::new(a.meta))
    })
    .await
    .map_err(|e| PageError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    .map_err(|e| {
        PageError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{name} v{version} cannot be read: {e}"),
        )
    })?;
    if let Ok(mut cache) = state.dashboard_meta.0.lock() {
        if cache.len() >= META_CACHE {
            cache.clear();
        }
        cache.insert(key, Arc::clone(&meta));
    }
    Ok(meta)
}

/// Validation macro-F1 and accuracy (R² for regression) of a model's metadata.
fn headline(meta: &ArtifactMeta) -> (Option<f64>, Option<f64>) {
    match &meta.validation_metrics {
        Some(Report::Classification(r)) => (Some(r.macro_f1), Some(r.accuracy)),
        Some(Report::Multilabel(r)) => (Some(r.macro_f1), None),
        Some(Report::Regression(r)) => (Some(r.r2), None),
        None => (None, None),
    }
}

fn headline_name(meta: &ArtifactMeta) -> &'static str {
    if meta.task == Task::Regression {
        "R²"
    } else {
        "macro-F1"
    }
}

// ---------------------------------------------------------------- sign-in

/// Query of the sign-in page.
#[derive(Debug, Deserialize)]
pub(crate) struct NextQuery {
    next: Option<String>,
}

fn login_form(next: &str, error: Option<&str>) -> Markup {
    html! {
        (view::alert(error))
        form.card.login method="post" action="/login" {
            input type="hidden" name="next" value=(next);
            label for="token" { "Admin token or API key" }
            input #token type="password" name="token" required autocomplete="off" autofocus
                spellcheck="false" aria-describedby="token-help";
            p #token-help .muted {
                "The admin token sees every tenant; a tenant's API key (fw_…) sees only its tenant."
            }
            button type="submit" { "Sign in" }
        }
    }
}

/// `GET /login`.
pub(crate) async fn login_page(
    State(state): State<Arc<AppState>>,
    Query(q): Query<NextQuery>,
) -> PageResult {
    if state.store.is_none() {
        return Ok(redirect("/"));
    }
    let next = safe_next(q.next.as_deref());
    ok(layout("Sign in", Tab::None, None, login_form(next, None)))
}

/// `POST /login`: checks the credential and sets the session cookie.
pub(crate) async fn login(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> PageResult {
    if !super::same_origin(&headers) {
        return Err(PageError::new(
            StatusCode::FORBIDDEN,
            "this form was posted from another site",
        ));
    }
    let (_, fields) = read_form(&state, &headers, body).await?;
    let next = safe_next(field(&fields, "next")).to_string();
    let Some(store) = &state.store else {
        return Ok(redirect(&next));
    };
    let token = field(&fields, "token").unwrap_or("").trim().to_string();
    let valid = !token.is_empty()
        && (state.is_admin_token(&token)
            || store
                .authenticate(&token)
                .await
                .map_err(|e| PageError::store(&e))?
                .is_some());
    if !valid {
        let form = login_form(&next, Some("That token is not valid (unknown or revoked)."));
        return Ok(page(
            StatusCode::UNAUTHORIZED,
            layout("Sign in", Tab::None, None, form),
        ));
    }
    let mut response = redirect(&next);
    if let Ok(v) = HeaderValue::from_str(&session_cookie(Some(&token), &headers)) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(response)
}

/// `POST /logout`: clears the session cookie.
pub(crate) async fn logout(headers: HeaderMap) -> PageResult {
    let mut response = redirect("/login");
    if let Ok(v) = HeaderValue::from_str(&session_cookie(None, &headers)) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(response)
}

// ---------------------------------------------------------------- models

/// `GET /`: every model the viewer may use, with its versions and validation scores.
pub(crate) async fn models(State(state): State<Arc<AppState>>, headers: HeaderMap) -> PageResult {
    let viewer = state.viewer(&headers, "/").await?;
    let rows = visible_models(&state, &viewer).await?;
    let content = html! {
        @if rows.is_empty() {
            p { "No models yet. Push one with " code { "flywheel models push FILE --name NAME" } "." }
        } @else {
            div.scroll {
                table {
                    thead {
                        tr {
                            th scope="col" { "Model" }
                            th scope="col" { "Serving" }
                            @if state.store.is_some() {
                                th scope="col" { "Champion" }
                                th scope="col" { "Challenger" }
                                th scope="col" { "Versions" }
                            }
                            th scope="col" { "Task" }
                            th scope="col" { "Family" }
                            th scope="col" { "Labels" }
                            th scope="col" class="num" { "Validation score" }
                            th scope="col" { "Trained" }
                        }
                    }
                    tbody {
                        @for m in &rows {
                            tr {
                                th scope="row" { a href=(format!("/models/{}", url_encode(&m.name))) { (m.name) } }
                                td { (m.served().unwrap_or("not served")) }
                                @if state.store.is_some() {
                                    td { (m.champion.map(|v| format!("v{v}")).unwrap_or_else(|| "–".into())) }
                                    td { (m.challenger.map(|v| format!("v{v}")).unwrap_or_else(|| "–".into())) }
                                    td { (m.latest.unwrap_or(0)) @if m.public == Some(true) { " · public" } }
                                }
                                @if let Some(meta) = m.meta() {
                                    td { (meta.task.to_string()) }
                                    td { (meta.spec.family.to_string()) }
                                    td { (meta.labels.len()) }
                                    @let (main, _) = headline(meta);
                                    td.num { (view::score(main)) " " span.muted { (headline_name(meta)) } }
                                    td { (view::rfc_time(&meta.created_at)) }
                                } @else {
                                    td colspan="5" .muted { "no version served" }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    ok(layout("Models", Tab::Models, Some(&viewer), content))
}

/// Query of the model page.
#[derive(Debug, Deserialize)]
pub(crate) struct ModelQuery {
    version: Option<i64>,
    done: Option<String>,
    v: Option<i64>,
    error: Option<String>,
}

/// `GET /models/{name}`: versions, aliases, the chosen version's curves, confusion matrix and
/// per-class scores, and the promotion history.
pub(crate) async fn model(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Query(q): Query<ModelQuery>,
    headers: HeaderMap,
) -> PageResult {
    let here = format!("/models/{}", url_encode(&name));
    let viewer = state.viewer(&headers, &here).await?;
    let row = visible_model(&state, &viewer, &name).await?;
    let notice = match (q.done.as_deref(), q.v) {
        (Some("promote"), Some(v)) => {
            Some(format!("Version {v} is now the champion and is served."))
        }
        (Some("rollback"), Some(v)) => {
            Some(format!("Rolled back: version {v} is the champion again."))
        }
        _ => None,
    };
    let error = match q.error.as_deref() {
        Some("rollback") => Some("There is no earlier champion to roll back to."),
        _ => None,
    };
    let (versions, history, decisions, chosen, meta) = match &state.store {
        Some(store) => {
            let versions = store
                .list_versions(&name)
                .await
                .map_err(|e| PageError::store(&e))?;
            let history = store
                .alias_history(&name)
                .await
                .map_err(|e| PageError::store(&e))?;
            let decisions = store
                .decisions(&name)
                .await
                .map_err(|e| PageError::store(&e))?;
            let chosen = q.version.or(row.champion).or(row.latest);
            let mut metas = BTreeMap::new();
            for v in &versions {
                metas.insert(
                    v.version,
                    version_meta(&state, store, &name, v.version).await?,
                );
            }
            let meta = chosen.and_then(|c| metas.get(&c).cloned());
            (
                versions,
                history,
                decisions,
                chosen,
                meta.map(|m| (m, metas)),
            )
        }
        None => {
            let meta = row.meta().map(|m| (Arc::new(m.clone()), BTreeMap::new()));
            (Vec::new(), Vec::new(), Vec::new(), None, meta)
        }
    };
    let admin = viewer.is_admin();
    let content = html! {
        (view::notice(notice.as_deref()))
        (view::alert(error))
        @if let Some((meta, _)) = &meta {
            p.lede {
                (meta.task.to_string()) " · " (meta.spec.family.to_string()) " · "
                (meta.labels.len()) " labels: " (meta.labels.join(", "))
                " · serving " (row.served().unwrap_or("nothing"))
            }
        }
        @if !versions.is_empty() {
            section aria-labelledby="versions" {
                h2 #versions { "Versions" }
                @if admin {
                    form.inline method="post" action=(format!("{here}/rollback")) {
                        button type="submit" { "Roll back the champion" }
                    }
                }
                div.scroll {
                    table {
                        thead {
                            tr {
                                th scope="col" { "Version" }
                                th scope="col" { "Alias" }
                                th scope="col" class="num" { "Validation score" }
                                th scope="col" class="num" { "Accuracy" }
                                th scope="col" class="num" { "Train rows" }
                                th scope="col" { "Pushed" }
                                th scope="col" { "SHA-256" }
                                th scope="col" { span.sr-only { "Actions" } }
                            }
                        }
                        tbody {
                            @for v in versions.iter().rev() {
                                @let vm = meta.as_ref().and_then(|(_, all)| all.get(&v.version));
                                @let (main, acc) = vm.map(|m| headline(m)).unwrap_or((None, None));
                                tr aria-current=[(Some(v.version) == chosen).then_some("true")] {
                                    th scope="row" {
                                        a href=(format!("{here}?version={}", v.version)) { "v" (v.version) }
                                    }
                                    td {
                                        @if row.champion == Some(v.version) { span.badge.champion { "champion" } }
                                        @if row.challenger == Some(v.version) { span.badge { "challenger" } }
                                    }
                                    td.num { (view::score(main)) }
                                    td.num { (view::score(acc)) }
                                    td.num { (vm.and_then(|m| m.training.as_ref()).map(|t| view::count(t.train_rows as i64)).unwrap_or_else(|| "–".into())) }
                                    td { (view::time(v.created_at)) }
                                    td { code { (v.sha256.get(..12).unwrap_or(&v.sha256)) } }
                                    td {
                                        @if admin && row.champion != Some(v.version) {
                                            form.inline method="post" action=(format!("{here}/promote")) {
                                                input type="hidden" name="version" value=(v.version);
                                                button type="submit" aria-label=(format!("Promote version {}", v.version)) { "Promote" }
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
        @if let Some((meta, _)) = &meta {
            (version_details(meta, chosen))
        }
        @if !decisions.is_empty() || !history.is_empty() {
            section aria-labelledby="history" {
                h2 #history { "Promotion history" }
                div.scroll {
                    table {
                        thead {
                            tr {
                                th scope="col" { "When" }
                                th scope="col" { "What" }
                                th scope="col" { "Why" }
                            }
                        }
                        tbody {
                            @for (at, what, why) in history_rows(&history, &decisions) {
                                tr {
                                    td { (view::time(at)) }
                                    td { (what) }
                                    td { (why) }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    ok(layout(
        &format!("Model {name}"),
        Tab::Models,
        Some(&viewer),
        content,
    ))
}

/// Promotion history: alias changes and retrain decisions, newest first.
fn history_rows(
    aliases: &[flywheel_store::AliasEvent],
    decisions: &[flywheel_store::RetrainDecision],
) -> Vec<(i64, String, String)> {
    let mut rows: Vec<(i64, i64, String, String)> = Vec::new();
    for a in aliases {
        let what = match a.action.as_str() {
            "rollback" => format!("rollback: {} back to v{}", a.alias, a.version),
            _ => format!("{} set to v{}", a.alias, a.version),
        };
        let why = if a.reverted {
            "undone by a later rollback"
        } else {
            ""
        };
        rows.push((a.at, a.id, what, why.to_string()));
    }
    for d in decisions {
        let what = match (d.challenger_version, d.promoted) {
            (Some(c), true) => format!(
                "retrain ({}): v{c} promoted over v{}",
                d.cause, d.champion_version
            ),
            (Some(c), false) => format!(
                "retrain ({}): v{c} rejected, v{} stays",
                d.cause, d.champion_version
            ),
            (None, _) => format!("retrain ({}) failed", d.cause),
        };
        let why = format!("{} ({} feedback rows)", d.reason, d.feedback_rows);
        rows.push((d.at, i64::MAX - d.id, what, why));
    }
    rows.sort_by_key(|r| std::cmp::Reverse((r.0, r.1)));
    rows.into_iter()
        .map(|(at, _, what, why)| (at, what, why))
        .collect()
}

/// Curves, confusion matrix and per-class scores of one version.
fn version_details(meta: &ArtifactMeta, version: Option<i64>) -> Markup {
    let title = match version {
        Some(v) => format!("Version {v}"),
        None => "Served version".to_string(),
    };
    let history = meta
        .training
        .as_ref()
        .map(|t| t.history.as_slice())
        .unwrap_or(&[]);
    let series = |name: &'static str,
                  dashed: bool,
                  f: fn(&flywheel_model::EpochRecord) -> Option<f64>| Series {
        name,
        dashed,
        points: history
            .iter()
            .filter_map(|r| f(r).map(|y| (r.epoch as f64, y)))
            .collect(),
    };
    let loss = [
        series("training loss", false, |r| Some(r.loss)),
        series("validation loss", true, |r| r.val_loss),
    ];
    let accuracy: Vec<Series> = [
        series("training accuracy", false, |r| r.accuracy),
        series("validation accuracy", true, |r| r.val_accuracy),
    ]
    .into_iter()
    .filter(|s| !s.points.is_empty())
    .collect();
    html! {
        section aria-labelledby="details" {
            h2 #details { (title) }
            @if let Some(t) = &meta.training {
                p.muted {
                    "Trained " (view::rfc_time(&meta.created_at)) " on " (view::count(t.train_rows as i64))
                    " rows (" (view::count(t.validation_rows as i64)) " for validation) from "
                    code { (t.data_file) } ", " (t.history.len()) " epochs"
                    @if let Some(b) = t.best_epoch { ", best epoch " (b) " kept" }
                    "."
                }
            }
            div.charts {
                (charts::lines("Loss", "epoch", &loss))
                @if !accuracy.is_empty() { (charts::lines("Accuracy", "epoch", &accuracy)) }
            }
            @match &meta.validation_metrics {
                Some(Report::Classification(r)) => {
                    p { "Validation: accuracy " strong { (format!("{:.4}", r.accuracy)) }
                        ", macro-F1 " strong { (format!("{:.4}", r.macro_f1)) }
                        @if let Some(auc) = r.roc_auc { ", ROC-AUC " strong { (format!("{auc:.4}")) } }
                        " on " (view::count(r.n as i64)) " rows." }
                    div.charts {
                        (charts::confusion(&r.labels, &r.confusion_matrix))
                        (per_class(&r.labels, &r.per_class))
                    }
                }
                Some(Report::Multilabel(r)) => {
                    p { "Validation: macro-F1 " strong { (format!("{:.4}", r.macro_f1)) } "." }
                    (per_class(&r.labels, &r.per_class))
                }
                Some(Report::Regression(r)) => {
                    p { "Validation: R² " strong { (format!("{:.4}", r.r2)) }
                        ", MAE " (format!("{:.4}", r.mae)) ", MSE " (format!("{:.4}", r.mse)) "." }
                }
                None => { p.muted { "No validation metrics were recorded for this version." } }
            }
        }
    }
}

fn per_class(
    labels: &[String],
    scores: &BTreeMap<String, flywheel_model::metrics::ClassMetrics>,
) -> Markup {
    html! {
        div.scroll {
            table {
                caption { "Per-class scores on the validation rows" }
                thead {
                    tr {
                        th scope="col" { "Label" }
                        th scope="col" class="num" { "Precision" }
                        th scope="col" class="num" { "Recall" }
                        th scope="col" class="num" { "F1" }
                        th scope="col" class="num" { "Support" }
                    }
                }
                tbody {
                    @for l in labels {
                        @if let Some(m) = scores.get(l) {
                            tr {
                                th scope="row" { (l) }
                                td.num { (format!("{:.4}", m.precision)) }
                                td.num { (format!("{:.4}", m.recall)) }
                                td.num { (format!("{:.4}", m.f1)) }
                                td.num { (m.support) }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// After a registry change, serve the new champion now rather than at the next poll.
async fn sync_now(state: &AppState, store: &Store) {
    if let Err(e) = crate::registry::sync(state, store).await {
        tracing::warn!(error = %e, "registry sync after a dashboard change failed");
    }
}

/// `POST /models/{name}/promote` (admin): makes `version` the champion.
pub(crate) async fn promote(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> PageResult {
    let here = format!("/models/{}", url_encode(&name));
    let viewer = state.poster(&headers, &here).await?;
    if !viewer.is_admin() {
        return Err(PageError::forbidden("promote a version"));
    }
    let store = store_of(&state)?;
    let (_, fields) = read_form(&state, &headers, body).await?;
    let version: i64 = field(&fields, "version")
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| {
            PageError::new(
                StatusCode::BAD_REQUEST,
                "'version' must be a version number",
            )
        })?;
    store
        .set_alias(&name, Alias::Champion, version)
        .await
        .map_err(|e| match e {
            flywheel_store::Error::NotFound(what) => {
                PageError::new(StatusCode::NOT_FOUND, format!("{what} not found"))
            }
            other => PageError::store(&other),
        })?;
    tracing::info!(model = %name, version, "promoted from the dashboard");
    sync_now(&state, store).await;
    Ok(redirect(&format!("{here}?done=promote&v={version}")))
}

/// `POST /models/{name}/rollback` (admin): the champion goes back to its previous version.
pub(crate) async fn rollback(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> PageResult {
    let here = format!("/models/{}", url_encode(&name));
    let viewer = state.poster(&headers, &here).await?;
    if !viewer.is_admin() {
        return Err(PageError::forbidden("roll back a model"));
    }
    let store = store_of(&state)?;
    match store.rollback(&name).await {
        Ok(version) => {
            tracing::info!(model = %name, version, "rolled back from the dashboard");
            sync_now(&state, store).await;
            Ok(redirect(&format!("{here}?done=rollback&v={version}")))
        }
        Err(flywheel_store::Error::NothingToRollBack(_) | flywheel_store::Error::NotFound(_)) => {
            Ok(redirect(&format!("{here}?error=rollback")))
        }
        Err(e) => Err(PageError::store(&e)),
    }
}

// ---------------------------------------------------------------- try it

/// Query of the try-it page.
#[derive(Debug, Deserialize)]
pub(crate) struct ModelPick {
    model: Option<String>,
}

fn model_picker(rows: &[ModelRow], chosen: &str, autosubmit: bool) -> Markup {
    html! {
        label for="model" { "Model" }
        select #model name="model" data-autosubmit=[autosubmit.then_some("1")] {
            @for m in rows.iter().filter(|m| m.current.is_some()) {
                option value=(m.name) selected[m.name == chosen] { (m.name) }
            }
        }
    }
}

fn try_form(rows: &[ModelRow], model: &str, text: &str) -> Markup {
    html! {
        form.card method="post" action="/try" {
            (model_picker(rows, model, false))
            label for="text" { "Text (English, Chinese, …)" }
            textarea #text name="text" rows="4" required { (text) }
            button type="submit" { "Classify and explain" }
        }
    }
}

/// `GET /try`: a text box for a model.
pub(crate) async fn try_page(
    State(state): State<Arc<AppState>>,
    Query(q): Query<ModelPick>,
    headers: HeaderMap,
) -> PageResult {
    let viewer = state.viewer(&headers, "/try").await?;
    let rows = visible_models(&state, &viewer).await?;
    let model = q
        .model
        .or_else(|| {
            rows.iter()
                .find(|m| m.current.is_some())
                .map(|m| m.name.clone())
        })
        .unwrap_or_default();
    ok(layout(
        "Try it",
        Tab::Try,
        Some(&viewer),
        try_form(&rows, &model, ""),
    ))
}

/// `POST /try`: classifies the text with attributions (metered like an API call) and shows
/// the label, every score and the tokens shaded by how much they pushed towards the label.
pub(crate) async fn try_post(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> PageResult {
    let viewer = state.poster(&headers, "/try").await?;
    let (bytes, fields) = read_form(&state, &headers, body).await?;
    let rows = visible_models(&state, &viewer).await?;
    let model = field(&fields, "model").unwrap_or("").to_string();
    let text = field(&fields, "text").unwrap_or("").to_string();
    let result = classify_explained(&state, &viewer, &headers, &bytes, &model, &text).await;
    let (status, outcome) = match result {
        Ok(prediction) => (StatusCode::OK, explained(&text, &prediction)),
        Err(e) => (e.status, view::alert(Some(&e.message))),
    };
    let content = html! {
        (try_form(&rows, &model, &text))
        section aria-live="polite" { (outcome) }
    };
    Ok(page(
        status,
        layout("Try it", Tab::Try, Some(&viewer), content),
    ))
}

/// Runs one explained classification as `POST /v1/classify` with `"explain": true` would,
/// metered to the viewer's key; returns the prediction's JSON.
async fn classify_explained(
    state: &AppState,
    viewer: &Viewer,
    headers: &HeaderMap,
    body: &[u8],
    model: &str,
    text: &str,
) -> Result<Value, ApiError> {
    if text.trim().is_empty() {
        return Err(ApiError::invalid("type a text to classify").param("text"));
    }
    let caller = viewer.caller();
    crate::http::check_text(&state.limits, text, "text")?;
    let slot = crate::http::model_slot(state, model)?;
    state.check_access(&caller, model).await?;
    state.precheck(&caller, 1).await?;
    let work = Work::Classify {
        top_k: None,
        explain: true,
        log: false,
    };
    let answer = crate::http::within_timeout(
        state.limits.timeout,
        crate::http::submit(&slot, vec![text.to_string()], work),
    )
    .await?;
    let usage = Usage {
        request_id: request_id(headers),
        model,
        version: answer.registry_version,
        texts: 1,
        characters: text.chars().count(),
        body,
    };
    state.meter(&caller, usage).await?;
    let mut parsed: Value = serde_json::from_slice(&answer.body)
        .map_err(|e| ApiError::internal(format!("cannot read the answer: {e}")))?;
    let version = parsed["version"].clone();
    let mut prediction = parsed["predictions"][0].take();
    prediction["version"] = version;
    Ok(prediction)
}

/// The result of an explained classification: label, scores and highlighted tokens.
fn explained(text: &str, prediction: &Value) -> Markup {
    let label = match &prediction["label"] {
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(", "),
        _ => prediction["value"]
            .as_f64()
            .map(|v| format!("{v:.4}"))
            .unwrap_or_default(),
    };
    let score = prediction["score"].as_f64();
    let mut scores: Vec<(String, f64)> = prediction["scores"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_f64().unwrap_or(0.0)))
                .collect()
        })
        .unwrap_or_default();
    scores.sort_by(|a, b| b.1.total_cmp(&a.1));
    let tokens: Vec<(usize, usize, f64, bool)> = prediction["tokens"]
        .as_array()
        .map(|ts| {
            ts.iter()
                .filter_map(|t| {
                    Some((
                        t["start"].as_u64()? as usize,
                        t["end"].as_u64()? as usize,
                        t["attribution"].as_f64().unwrap_or(0.0),
                        t["in_vocabulary"].as_bool().unwrap_or(true)
                            && !t["truncated"].as_bool().unwrap_or(false),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    let strongest = tokens
        .iter()
        .map(|t| t.2.abs())
        .fold(0.0f64, f64::max)
        .max(1e-6);
    let chars: Vec<char> = text.chars().collect();
    let slice = |a: usize, b: usize| -> String {
        chars
            .get(a.min(chars.len())..b.min(chars.len()))
            .map(|c| c.iter().collect())
            .unwrap_or_default()
    };
    let mut pieces: Vec<Markup> = Vec::new();
    let mut at = 0usize;
    for &(start, end, attribution, seen) in &tokens {
        if start < at || end < start {
            continue;
        }
        if start > at {
            pieces.push(html! { (slice(at, start)) });
        }
        let strength = attribution.abs() / strongest;
        let class = if !seen {
            "unseen"
        } else if attribution >= 0.0 {
            "for"
        } else {
            "against"
        };
        let tip = if seen {
            format!("{attribution:+.4}")
        } else {
            "not seen by the model".to_string()
        };
        pieces.push(html! {
            mark class=(class) style=(format!("--w:{strength:.2}")) title=(tip) data-attribution=(format!("{attribution:.6}")) {
                (slice(start, end))
            }
        });
        at = end;
    }
    if at < chars.len() {
        pieces.push(html! { (slice(at, chars.len())) });
    }
    let mut ranked: Vec<&(usize, usize, f64, bool)> =
        tokens.iter().filter(|t| t.3 && t.2 != 0.0).collect();
    ranked.sort_by(|a, b| b.2.abs().total_cmp(&a.2.abs()));
    ranked.truncate(8);
    html! {
        div.card.result {
            p.verdict {
                "Label " strong #label { (label) }
                @if let Some(s) = score { " · score " (format!("{s:.4}")) }
                @if let Some(v) = prediction["version"].as_str() { span.muted { " · version " (v) } }
            }
            @if !scores.is_empty() {
                table.scores {
                    caption.sr-only { "Score of every label" }
                    tbody {
                        @for (l, s) in &scores {
                            tr {
                                th scope="row" { (l) }
                                td { meter min="0" max="1" value=(format!("{s:.4}")) { (format!("{s:.4}")) } }
                                td.num { (format!("{s:.4}")) }
                            }
                        }
                    }
                }
            }
            h2 { "Why: each token's pull towards " (label) }
            p.tokens lang="und" { @for p in pieces { (p) } }
            p.legend-line.muted {
                mark.for style="--w:0.8" { "pushes towards the label" } " "
                mark.against style="--w:0.8" { "pushes away" } " "
                mark.unseen { "not seen by the model" }
                " — the drop of the label's probability when the token is left out (occlusion)."
            }
            @if !ranked.is_empty() {
                table {
                    caption { "Strongest tokens" }
                    thead { tr { th scope="col" { "Token" } th scope="col" class="num" { "Attribution" } } }
                    tbody {
                        @for t in &ranked {
                            tr { td { (slice(t.0, t.1)) } td.num { (format!("{:+.4}", t.2)) } }
                        }
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------- review

/// `GET /review?model=NAME`: the uncertainty-ranked queue with one-key labelling.
pub(crate) async fn review(
    State(state): State<Arc<AppState>>,
    Query(q): Query<ModelPick>,
    headers: HeaderMap,
) -> PageResult {
    let viewer = state.viewer(&headers, "/review").await?;
    let rows = visible_models(&state, &viewer).await?;
    let Some(store) = &state.store else {
        let content = html! { p { "The review queue needs a store: start the server with " code { "--database-url" } "." } };
        return ok(layout("Review", Tab::Review, Some(&viewer), content));
    };
    let model = q
        .model
        .filter(|m| rows.iter().any(|r| &r.name == m))
        .or_else(|| {
            rows.iter()
                .find(|m| m.current.is_some())
                .map(|m| m.name.clone())
        });
    let Some(model) = model else {
        let content = html! { p { "No model to review yet." } };
        return ok(layout("Review", Tab::Review, Some(&viewer), content));
    };
    let slot = crate::http::model_slot(&state, &model).ok();
    let (labels, task) = match &slot {
        Some(s) => {
            let current = s.current.load();
            (
                current.artifact.meta.labels.clone(),
                current.artifact.meta.task,
            )
        }
        None => (Vec::new(), Task::Binary),
    };
    let tenant = viewer.tenant();
    let items = store
        .review_queue(
            &model,
            tenant,
            flywheel_store::ReviewStrategy::Uncertainty,
            REVIEW_PAGE,
        )
        .await
        .map_err(|e| PageError::store(&e))?;
    let waiting = store
        .count_review_queue(&model, tenant)
        .await
        .map_err(|e| PageError::store(&e))?;
    let decisions = store
        .decisions(&model)
        .await
        .map_err(|e| PageError::store(&e))?;
    let last = decisions.last();
    let (since, _) = store
        .count_feedback_since(&model, last.map(|d| d.feedback_upto).unwrap_or(0))
        .await
        .map_err(|e| PageError::store(&e))?;
    let retrain = &state.retrain;
    let content = html! {
        form.inline method="get" action="/review" {
            (model_picker(&rows, &model, true))
            noscript { button type="submit" { "Show" } }
        }
        div.stats {
            p { strong #waiting { (view::count(waiting)) } " waiting for a label" }
            p { strong #done { "0" } " labelled on this page" }
            p {
                strong { (view::count(since)) } " new labels since the last retrain"
                @if let Some(n) = retrain.after { " (retrains after " (n) ")" }
                @else if retrain.every.is_none() { " (retraining: " code { "flywheel retrain " (model) } ")" }
            }
            p {
                "Last retrain: "
                @match last {
                    Some(d) => {
                        @if d.promoted { span.badge.champion { "promoted" } } @else { span.badge { "not promoted" } }
                        " " (view::time(d.at)) " — " (d.reason)
                    }
                    None => { "none yet" }
                }
            }
        }
        @if task == Task::Multilabel || task == Task::Regression {
            p.muted { "This model's labels are entered in a field: several labels separated by commas, or a number for regression." }
        } @else {
            p.hint #keys-help {
                "Keyboard: " kbd { "1" } "–" kbd { (labels.len().min(9)) } " label the selected text, "
                kbd { "↑" } " " kbd { "↓" } " (or " kbd { "←" } " " kbd { "→" } ") move between texts."
            }
        }
        p #review-status .sr-only role="status" aria-live="polite" {}
        @if items.is_empty() {
            p.notice { "Nothing to review: every logged prediction of " (model) " has a label." }
        }
        ol #queue .queue aria-describedby="keys-help" data-model=(model) {
            @for item in &items {
                @let p = &item.prediction;
                li.item tabindex="-1" data-id=(item.id) aria-selected="false" {
                    p.text { (p.text) }
                    p.meta.muted {
                        "predicted " strong { (p.label) } " (" (format!("{:.3}", p.score)) ")"
                        @if let Some(u) = p.uncertainty { " · uncertainty " (format!("{u:.3}")) }
                        " · v" (p.version) " · " (view::time(p.created_at))
                    }
                    form.labels method="post" action=(format!("/review/{}", item.id)) {
                        input type="hidden" name="model" value=(model);
                        @if task == Task::Multilabel || task == Task::Regression {
                            label for=(format!("l{}", item.id)) { "Label" }
                            input id=(format!("l{}", item.id)) name="label" required;
                            button type="submit" { "Save" }
                        } @else {
                            @for (i, l) in labels.iter().enumerate() {
                                button type="submit" name="label" value=(l) {
                                    @if i < 9 { kbd { (i + 1) } " " }
                                    (l)
                                }
                            }
                        }
                    }
                }
            }
        }
        @if waiting > items.len() as i64 && !items.is_empty() {
            p.muted { "Showing the " (items.len()) " most uncertain; the next ones load when you reload." }
        }
    };
    ok(layout("Review", Tab::Review, Some(&viewer), content))
}

/// `POST /review/{id}`: labels one logged prediction (as `POST /v1/review/{id}`). A script's
/// request (`x-requested-with: fetch`) gets JSON with the queue's new length; a plain form
/// post goes back to the queue.
pub(crate) async fn review_post(
    State(state): State<Arc<AppState>>,
    Path(id): Path<i64>,
    headers: HeaderMap,
    body: Body,
) -> PageResult {
    let viewer = state.poster(&headers, "/review").await?;
    let store = store_of(&state)?;
    let (bytes, fields) = read_form(&state, &headers, body).await?;
    let caller = viewer.caller();
    let logged = store
        .get_prediction(id)
        .await
        .map_err(|e| PageError::store(&e))?
        .filter(|p| viewer.tenant().is_none_or(|t| p.prediction.tenant == t))
        .ok_or_else(|| {
            PageError::new(
                StatusCode::NOT_FOUND,
                format!("no logged prediction with id {id}"),
            )
        })?;
    let model = logged.prediction.model.clone();
    let task = crate::http::model_slot(&state, &model)
        .map(|s| s.current.load().artifact.meta.task)
        .map_err(PageError::from)?;
    let given: Vec<&str> = fields
        .iter()
        .filter(|(k, _)| k == "label")
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
        .collect();
    let label = match (task, given.as_slice()) {
        (_, []) => {
            return Err(PageError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "choose a label",
            ))
        }
        (Task::Multilabel, _) => Value::Array(
            given
                .iter()
                .flat_map(|g| g.split(','))
                .map(|s| Value::String(s.trim().to_string()))
                .filter(|v| v.as_str().is_some_and(|s| !s.is_empty()))
                .collect(),
        ),
        (_, [one, ..]) => Value::String(one.to_string()),
    };
    crate::feedback::record(
        &state,
        store,
        &caller,
        &headers,
        &bytes,
        model.clone(),
        Some(logged.id),
        logged.prediction.text,
        label,
    )
    .await?;
    let fetch = headers
        .get("x-requested-with")
        .is_some_and(|v| v.as_bytes() == b"fetch");
    if fetch {
        let waiting = store
            .count_review_queue(&model, viewer.tenant())
            .await
            .map_err(|e| PageError::store(&e))?;
        let body = serde_json::json!({ "id": id, "waiting": waiting }).to_string();
        let mut response = (StatusCode::OK, body).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        return Ok(response);
    }
    Ok(redirect(&format!("/review?model={}", url_encode(&model))))
}

// ---------------------------------------------------------------- usage

/// Query of the usage page and its CSV export.
#[derive(Debug, Deserialize)]
pub(crate) struct UsageQuery {
    from: Option<String>,
    to: Option<String>,
    tenant: Option<String>,
    metric: Option<String>,
    by: Option<String>,
}

/// `YYYY-MM-DD` of a Unix time.
fn day_of(unix: i64) -> String {
    flywheel_model::artifact::rfc3339(unix)
        .get(..10)
        .unwrap_or("")
        .to_string()
}

/// The filter a usage query asks for (default: the last 30 days), checked against the viewer.
fn usage_filter(
    viewer: &Viewer,
    q: &UsageQuery,
) -> Result<(UsageFilter, String, String), PageError> {
    let today = now_unix();
    let from = q
        .from
        .clone()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| day_of(today - 29 * 86_400));
    let to =
        q.to.clone()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| day_of(today));
    let (start, end) = flywheel_store::day_range(Some(&from), Some(&to))
        .map_err(|e| PageError::new(StatusCode::BAD_REQUEST, e.to_string()))?;
    let tenant = match (
        viewer.tenant(),
        q.tenant.as_deref().filter(|t| !t.is_empty()),
    ) {
        (Some(own), Some(asked)) if asked != own => {
            return Err(PageError::new(
                StatusCode::FORBIDDEN,
                "a tenant's key may read only its own tenant's usage",
            ))
        }
        (Some(own), _) => Some(own.to_string()),
        (None, asked) => asked.map(str::to_string),
    };
    Ok((
        UsageFilter {
            tenant,
            from: start,
            to: end,
        },
        from,
        to,
    ))
}

/// `GET /usage`: requests or texts per day as a stacked chart, plans and limits, the rows.
pub(crate) async fn usage(
    State(state): State<Arc<AppState>>,
    Query(q): Query<UsageQuery>,
    headers: HeaderMap,
) -> PageResult {
    let viewer = state.viewer(&headers, "/usage").await?;
    let Some(store) = &state.store else {
        let content = html! { p { "Usage is metered only on a store: start the server with " code { "--database-url" } "." } };
        return ok(layout("Usage", Tab::Usage, Some(&viewer), content));
    };
    let (filter, from, to) = usage_filter(&viewer, &q)?;
    let rows = store
        .usage_report(&filter)
        .await
        .map_err(|e| PageError::store(&e))?;
    let requests = q.metric.as_deref() == Some("requests");
    let tenants = if viewer.is_admin() {
        store
            .list_tenants()
            .await
            .map_err(|e| PageError::store(&e))?
    } else {
        Vec::new()
    };
    // Days of the period, and one series per tenant (admin) or model (tenant).
    let (start, end) = (filter.from.unwrap_or(0), filter.to.unwrap_or(0));
    let days: Vec<String> = (0..((end - start) / 86_400).clamp(0, 400))
        .map(|i| day_of(start + i * 86_400))
        .collect();
    // Bars split by tenant, key or model (default: tenant for all tenants, else model).
    let by = match q.by.as_deref() {
        Some(b @ ("tenant" | "key" | "model")) => b,
        _ if filter.tenant.is_none() => "tenant",
        _ => "model",
    };
    let group_of = |r: &UsageRow| match by {
        "tenant" => r.tenant.clone(),
        "key" => format!("{} {}", r.tenant, r.key_prefix),
        _ => r.model.clone(),
    };
    let groups: Vec<String> = rows
        .iter()
        .map(group_of)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut values = vec![vec![0i64; days.len()]; groups.len()];
    let day_index: HashMap<&str, usize> = days
        .iter()
        .enumerate()
        .map(|(i, d)| (d.as_str(), i))
        .collect();
    for r in &rows {
        if let (Ok(g), Some(&d)) = (
            groups.binary_search(&group_of(r)),
            day_index.get(r.day.as_str()),
        ) {
            values[g][d] += if requests { r.requests } else { r.texts };
        }
    }
    let plans = store.list_plans().await.map_err(|e| PageError::store(&e))?;
    let month_start = format!("{}-01", day_of(now_unix()).get(..7).unwrap_or("1970-01"));
    let (month_from, _) = flywheel_store::day_range(Some(&month_start), None)
        .map_err(|e| PageError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let month = store
        .usage_report(&UsageFilter {
            tenant: filter.tenant.clone(),
            from: month_from,
            to: None,
        })
        .await
        .map_err(|e| PageError::store(&e))?;
    let mut month_texts: BTreeMap<(String, String), i64> = BTreeMap::new();
    for r in &month {
        *month_texts
            .entry((r.tenant.clone(), r.key_prefix.clone()))
            .or_default() += r.texts;
    }
    let shown_plans: Vec<&flywheel_store::Plan> = match &viewer {
        Viewer::Tenant(k) => plans.iter().filter(|p| p.name == k.plan).collect(),
        _ => plans.iter().collect(),
    };
    let total = |f: fn(&UsageRow) -> i64| rows.iter().map(f).sum::<i64>();
    let csv = format!(
        "/usage.csv?from={}&to={}{}",
        url_encode(&from),
        url_encode(&to),
        filter
            .tenant
            .as_deref()
            .map(|t| format!("&tenant={}", url_encode(t)))
            .unwrap_or_default()
    );
    let metric_name = if requests { "Requests" } else { "Texts" };
    let content = html! {
        form.filters method="get" action="/usage" {
            div { label for="from" { "From" } input #from type="date" name="from" value=(from); }
            div { label for="to" { "To" } input #to type="date" name="to" value=(to); }
            @if viewer.is_admin() {
                div {
                    label for="tenant" { "Tenant" }
                    select #tenant name="tenant" {
                        option value="" { "all tenants" }
                        @for t in &tenants {
                            option value=(t.name) selected[filter.tenant.as_deref() == Some(t.name.as_str())] { (t.name) }
                        }
                    }
                }
            }
            div {
                label for="metric" { "Chart" }
                select #metric name="metric" {
                    option value="texts" selected[!requests] { "texts per day" }
                    option value="requests" selected[requests] { "requests per day" }
                }
            }
            div {
                label for="by" { "By" }
                select #by name="by" {
                    @for b in ["tenant", "key", "model"] {
                        option value=(b) selected[b == by] { (b) }
                    }
                }
            }
            button type="submit" { "Show" }
            a.button #export href=(csv) download=(format!("usage-{from}-{to}.csv")) { "Export CSV" }
        }
        p.stats-line {
            strong { (view::count(total(|r| r.requests))) } " requests · "
            strong { (view::count(total(|r| r.texts))) } " texts · "
            strong { (view::count(total(|r| r.characters))) } " characters from " (from) " to " (to)
        }
        (charts::stacked_bars(
            &format!("{metric_name} per day by {by}"),
            &days, &groups, &values))
        section aria-labelledby="plans" {
            h2 #plans { "Plans and this month's use" }
            div.scroll {
                table {
                    thead {
                        tr {
                            th scope="col" { "Plan" }
                            th scope="col" class="num" { "Requests / minute" }
                            th scope="col" class="num" { "Texts / month" }
                        }
                    }
                    tbody {
                        @for p in &shown_plans {
                            tr {
                                th scope="row" { (p.name) }
                                td.num { (view::count(p.requests_per_minute)) }
                                td.num { (view::count(p.texts_per_month)) }
                            }
                        }
                    }
                }
                @if !month_texts.is_empty() {
                    table {
                        caption { "Texts since " (month_start) " per key (the monthly quota is per key)" }
                        thead { tr { th scope="col" { "Tenant" } th scope="col" { "Key" } th scope="col" class="num" { "Texts" } } }
                        tbody {
                            @for ((t, k), n) in &month_texts {
                                tr { td { (t) } td { code { (k) } } td.num { (view::count(*n)) } }
                            }
                        }
                    }
                }
            }
        }
        section aria-labelledby="rows" {
            h2 #rows { "By tenant, key, model and day" }
            @if rows.is_empty() {
                p.muted { "No usage in this period." }
            } @else {
                div.scroll {
                    table #usage-rows {
                        thead {
                            tr {
                                th scope="col" { "Day" }
                                th scope="col" { "Tenant" }
                                th scope="col" { "Key" }
                                th scope="col" { "Model" }
                                th scope="col" class="num" { "Requests" }
                                th scope="col" class="num" { "Texts" }
                                th scope="col" class="num" { "Characters" }
                            }
                        }
                        tbody {
                            @for r in &rows {
                                tr {
                                    td { (r.day) }
                                    td { (r.tenant) }
                                    td { code { (r.key_prefix) } }
                                    td { (r.model) }
                                    td.num { (view::count(r.requests)) }
                                    td.num { (view::count(r.texts)) }
                                    td.num { (view::count(r.characters)) }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    ok(layout("Usage", Tab::Usage, Some(&viewer), content))
}

fn csv_field(s: &str) -> String {
    // A leading =, +, - or @ would be a formula in a spreadsheet.
    let s = if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// `GET /usage.csv`: the same rows as `flywheel usage report --format csv`.
pub(crate) async fn usage_csv(
    State(state): State<Arc<AppState>>,
    Query(q): Query<UsageQuery>,
    headers: HeaderMap,
) -> PageResult {
    let viewer = state.viewer(&headers, "/usage").await?;
    let store = store_of(&state)?;
    let (filter, from, to) = usage_filter(&viewer, &q)?;
    let rows = store
        .usage_report(&filter)
        .await
        .map_err(|e| PageError::store(&e))?;
    let mut csv = String::from("tenant,key_prefix,model,day,requests,texts,characters\n");
    for r in &rows {
        csv.push_str(&format!(
            "{},{},{},{},{},{},{}\n",
            csv_field(&r.tenant),
            csv_field(&r.key_prefix),
            csv_field(&r.model),
            r.day,
            r.requests,
            r.texts,
            r.characters
        ));
    }
    let mut response = (StatusCode::OK, csv).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"usage-{from}-{to}.csv\""))
    {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

// ---------------------------------------------------------------- keys and tenants

/// Query of the keys page.
#[derive(Debug, Deserialize)]
pub(crate) struct KeysQuery {
    done: Option<String>,
    prefix: Option<String>,
    tenant: Option<String>,
}

/// What the keys page shows after an action.
#[derive(Default)]
struct KeysOutcome {
    created: Option<NewKey>,
    notice: Option<String>,
    error: Option<String>,
}

async fn keys_page(
    state: &AppState,
    viewer: &Viewer,
    outcome: KeysOutcome,
    status: StatusCode,
) -> PageResult {
    let store = match &state.store {
        Some(s) => s,
        None => {
            let content = html! { p { "Keys live in a store: start the server with " code { "--database-url" } "." } };
            return ok(layout("Keys", Tab::Keys, Some(viewer), content));
        }
    };
    let tenants: Vec<String> = match viewer.tenant() {
        Some(t) => vec![t.to_string()],
        None => store
            .list_tenants()
            .await
            .map_err(|e| PageError::store(&e))?
            .into_iter()
            .map(|t| t.name)
            .collect(),
    };
    let mut keys: Vec<(String, Vec<KeySummary>)> = Vec::with_capacity(tenants.len());
    for t in &tenants {
        keys.push((
            t.clone(),
            store.list_keys(t).await.map_err(|e| PageError::store(&e))?,
        ));
    }
    let plans = store.list_plans().await.map_err(|e| PageError::store(&e))?;
    let own = match viewer {
        Viewer::Tenant(k) => Some(k),
        _ => None,
    };
    let content = html! {
        (view::notice(outcome.notice.as_deref()))
        (view::alert(outcome.error.as_deref()))
        @if let Some(k) = &outcome.created {
            div.card.created role="status" {
                p { "New key for tenant " strong { (k.tenant) } " on plan " strong { (k.plan) } ". "
                    strong { "Copy it now: it is shown only once." } }
                p { code #new-key { (k.key) } " " button type="button" data-copy="new-key" { "Copy" } }
            }
        }
        div.forms {
            form.card method="post" action="/keys" {
                h2 { "Create a key" }
                @if let Some(k) = own {
                    input type="hidden" name="tenant" value=(k.tenant);
                    p.muted { "For tenant " (k.tenant) ", on your key's plan (" (k.plan) ")." }
                } @else {
                    label for="key-tenant" { "Tenant" }
                    select #key-tenant name="tenant" required {
                        @for t in &tenants { option value=(t) { (t) } }
                    }
                    label for="key-plan" { "Plan" }
                    select #key-plan name="plan" required {
                        @for p in &plans {
                            option value=(p.name) { (p.name) " (" (view::count(p.requests_per_minute)) "/min, " (view::count(p.texts_per_month)) " texts/month)" }
                        }
                    }
                }
                button type="submit" disabled[tenants.is_empty() || (own.is_none() && plans.is_empty())] { "Create key" }
                @if own.is_none() && plans.is_empty() {
                    p.muted { "Create a plan first: " code { "flywheel plans create NAME --requests-per-minute N --texts-per-month N" } }
                }
            }
            @if viewer.is_admin() {
                form.card method="post" action="/tenants" {
                    h2 { "Create a tenant" }
                    label for="tenant-name" { "Name" }
                    input #tenant-name name="name" required pattern="[A-Za-z0-9_.\\-]{1,64}"
                        aria-describedby="tenant-help";
                    p #tenant-help .muted { "1–64 characters: letters, digits, _ . -" }
                    button type="submit" { "Create tenant" }
                }
            }
        }
        @for (tenant, list) in &keys {
            section aria-label=(format!("Keys of tenant {tenant}")) {
                h2 { "Tenant " (tenant) }
                @if list.is_empty() {
                    p.muted { "No keys." }
                } @else {
                    div.scroll {
                        table.keys {
                            thead {
                                tr {
                                    th scope="col" { "Key prefix" }
                                    th scope="col" { "Plan" }
                                    th scope="col" { "Created" }
                                    th scope="col" { "Status" }
                                    th scope="col" { span.sr-only { "Actions" } }
                                }
                            }
                            tbody {
                                @for k in list {
                                    tr data-prefix=(k.prefix) {
                                        th scope="row" { code { (k.prefix) } }
                                        td { (k.plan) }
                                        td { (view::time(k.created_at)) }
                                        td.status {
                                            @match k.revoked_at {
                                                Some(at) => { "revoked " (view::time(at)) }
                                                None => { "active" @if own.is_some_and(|o| o.prefix == k.prefix) { " (this session)" } }
                                            }
                                        }
                                        td {
                                            @if k.revoked_at.is_none() {
                                                form.inline method="post" action="/keys/revoke" {
                                                    input type="hidden" name="tenant" value=(tenant);
                                                    input type="hidden" name="prefix" value=(k.prefix);
                                                    button.danger type="submit" aria-label=(format!("Revoke key {}", k.prefix)) { "Revoke" }
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
        }
    };
    Ok(page(
        status,
        layout("Keys", Tab::Keys, Some(viewer), content),
    ))
}

/// `GET /keys`: tenants and their keys (by prefix; secrets are never stored).
pub(crate) async fn keys(
    State(state): State<Arc<AppState>>,
    Query(q): Query<KeysQuery>,
    headers: HeaderMap,
) -> PageResult {
    let viewer = state.viewer(&headers, "/keys").await?;
    let notice = match (q.done.as_deref(), q.prefix, q.tenant) {
        (Some("revoked"), Some(p), _) => {
            Some(format!("Key {p} is revoked; requests with it now get 401."))
        }
        (Some("tenant"), _, Some(t)) => Some(format!("Tenant {t} created.")),
        _ => None,
    };
    let outcome = KeysOutcome {
        notice,
        ..KeysOutcome::default()
    };
    keys_page(&state, &viewer, outcome, StatusCode::OK).await
}

/// A store error about the submitted form, with its status; other errors are a page error.
fn form_error(e: flywheel_store::Error) -> Result<(StatusCode, String), PageError> {
    match e {
        flywheel_store::Error::NotFound(what) => {
            Ok((StatusCode::NOT_FOUND, format!("{what} not found")))
        }
        flywheel_store::Error::AlreadyExists(what) => {
            Ok((StatusCode::CONFLICT, format!("{what} already exists")))
        }
        flywheel_store::Error::Invalid(why) => {
            Ok((StatusCode::UNPROCESSABLE_ENTITY, format!("invalid {why}")))
        }
        other => Err(PageError::store(&other)),
    }
}

/// The keys page with the error of a refused form.
async fn keys_error(state: &AppState, viewer: &Viewer, e: flywheel_store::Error) -> PageResult {
    let (status, message) = form_error(e)?;
    let outcome = KeysOutcome {
        error: Some(message),
        ..KeysOutcome::default()
    };
    keys_page(state, viewer, outcome, status).await
}

/// `POST /keys`: creates a key and shows it once.
pub(crate) async fn create_key(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> PageResult {
    let viewer = state.poster(&headers, "/keys").await?;
    let store = store_of(&state)?;
    let (_, fields) = read_form(&state, &headers, body).await?;
    let (tenant, plan) = match &viewer {
        Viewer::Tenant(k) => (k.tenant.clone(), k.plan.clone()),
        _ => (
            field(&fields, "tenant").unwrap_or("").to_string(),
            field(&fields, "plan").unwrap_or("").to_string(),
        ),
    };
    match store.create_key(&tenant, &plan).await {
        Ok(key) => {
            tracing::info!(tenant = %key.tenant, prefix = %key.prefix, "key created from the dashboard");
            let outcome = KeysOutcome {
                created: Some(key),
                ..KeysOutcome::default()
            };
            keys_page(&state, &viewer, outcome, StatusCode::CREATED).await
        }
        Err(e) => keys_error(&state, &viewer, e).await,
    }
}

/// `POST /keys/revoke`: revokes a key by its prefix (a tenant: only its own).
pub(crate) async fn revoke_key(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> PageResult {
    let viewer = state.poster(&headers, "/keys").await?;
    let store = store_of(&state)?;
    let (_, fields) = read_form(&state, &headers, body).await?;
    let prefix = field(&fields, "prefix").unwrap_or("").to_string();
    let tenant = match viewer.tenant() {
        Some(t) => t.to_string(),
        None => field(&fields, "tenant").unwrap_or("").to_string(),
    };
    match store.revoke_key(&tenant, &prefix).await {
        Ok(_) => {
            tracing::info!(%tenant, %prefix, "key revoked from the dashboard");
            Ok(redirect(&format!(
                "/keys?done=revoked&prefix={}",
                url_encode(&prefix)
            )))
        }
        Err(e) => keys_error(&state, &viewer, e).await,
    }
}

/// `POST /tenants` (admin): creates a tenant.
pub(crate) async fn create_tenant(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> PageResult {
    let viewer = state.poster(&headers, "/keys").await?;
    if !viewer.is_admin() {
        return Err(PageError::forbidden("create tenants"));
    }
    let store = store_of(&state)?;
    let (_, fields) = read_form(&state, &headers, body).await?;
    let name = field(&fields, "name").unwrap_or("").trim().to_string();
    match store.create_tenant(&name).await {
        Ok(t) => Ok(redirect(&format!(
            "/keys?done=tenant&tenant={}",
            url_encode(&t.name)
        ))),
        Err(e) => keys_error(&state, &viewer, e).await,
    }
}
