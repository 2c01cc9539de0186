//! One model's page (`GET /models/{name}`): versions, curves, confusion matrix, per-class
//! scores and promotion history; and the admin's promote and roll-back forms.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use flywheel_model::artifact::ArtifactMeta;
use flywheel_model::{Artifact, Report};
use flywheel_store::{Alias, Store};
use maud::{html, Markup};
use serde::Deserialize;

use super::{field, headline, ok, read_form, store_of, visible_model, PageResult};
use crate::dashboard::view::{self, layout, Tab};
use crate::dashboard::{redirect, url_encode, PageError};
use crate::state::AppState;
use flywheel_report::svg::{self as charts, Series};

async fn version_meta(
    state: &AppState,
    store: &Store,
    name: &str,
    version: i64,
) -> Result<Arc<ArtifactMeta>, PageError> {
    if let Some(meta) = state.dashboard_meta.get(name, version) {
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
    state
        .dashboard_meta
        .insert(name, version, Arc::clone(&meta));
    Ok(meta)
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
    let drift = crate::service::drift(&state, &viewer.caller(), &name).ok();
    let has_base = match (&state.store, row.champion) {
        (Some(store), Some(v)) => store
            .base_dataset(&name, v)
            .await
            .map_err(|e| PageError::store(&e))?
            .is_some(),
        _ => false,
    };
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
        @if let Some(d) = &drift {
            (drift_section(d))
        }
        @if admin && has_base {
            section aria-labelledby="audit" {
                h2 #audit { "Label audit" }
                p.muted {
                    "Finds rows of the champion's base data whose label is probably wrong (out-of-fold "
                    "TF-IDF + logistic regression, confident learning) and texts with conflicting labels."
                }
                form.inline method="post" action=(format!("{here}/audit")) {
                    button type="submit" { "Audit the base data" }
                }
            }
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

/// The drift monitor's state: alarm, the last check's tests and the recent checks as charts.
fn drift_section(d: &crate::service::DriftAnswer) -> Markup {
    let series = |name: &'static str, test: &'static str| Series {
        name,
        dashed: false,
        points: d
            .status
            .history
            .iter()
            .filter_map(|p| {
                p.report
                    .tests
                    .iter()
                    .find(|t| t.name == test)
                    .map(|t| (p.observed as f64, t.value))
            })
            .collect(),
    };
    let psi = [
        series("label PSI", "label_psi"),
        series("length PSI", "length_psi"),
    ];
    let domain = [
        series("domain classifier AUC", "domain_auc"),
        series("out-of-vocabulary share", "oov_share"),
    ];
    html! {
        section aria-labelledby="drift" {
            h2 #drift { "Drift" }
            @if !d.monitored {
                p.muted { "Not monitored: the served version's file holds no drift profile (train it again to add one), or the server runs with " code { "--no-drift" } "." }
            } @else {
                p #drift-state {
                    @if d.status.alarm { span.badge.alarm { "drift alarm" } " " } @else { span.badge { "no drift" } " " }
                    (view::count(d.status.observed as i64)) " texts observed since v" (d.version) " loaded"
                    @if d.status.dropped > 0 { " (" (d.status.dropped) " batches skipped while the monitor was busy)" }
                    @if let Some(since) = d.status.alarm_since { "; alarm since " (view::time(since)) }
                    "."
                }
                @if let Some(last) = &d.status.last {
                    div.scroll {
                        table #drift-tests {
                            thead { tr { th scope="col" { "Test" } th scope="col" class="num" { "Value" } th scope="col" class="num" { "Alarm above" } th scope="col" { "State" } } }
                            tbody {
                                @for t in &last.report.tests {
                                    tr {
                                        th scope="row" { (t.name) }
                                        td.num { (format!("{:.3}", t.value)) }
                                        td.num { (format!("{:.3}", t.threshold)) }
                                        td { @if t.alarm { span.badge.alarm { "alarm" } } @else { "ok" } }
                                    }
                                }
                            }
                        }
                    }
                    div.charts {
                        (charts::lines("Distribution shift (PSI)", "texts observed", &psi))
                        (charts::lines("Domain classifier and vocabulary", "texts observed", &domain))
                    }
                } @else {
                    p.muted { "The first check runs after 200 texts." }
                }
            }
        }
    }
}

/// `POST /models/{name}/audit` (admin): audits the champion's base data and shows the
/// findings, with a form that sends the suspects to the review queue.
pub(crate) async fn audit(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> PageResult {
    let here = format!("/models/{}", url_encode(&name));
    let (viewer, audit) = audit_as_admin(&state, &headers, &here, &name).await?;
    let content = html! {
        p { a href=(here) { "← " (name) } }
        (flywheel_report::audit::audit_section(&audit, 50))
        @if !audit.suspects.is_empty() {
            form method="post" action=(format!("{here}/audit/review")) {
                button type="submit" { "Send the " (audit.suspects.len()) " suspects to the review queue" }
            }
        }
    };
    ok(layout(
        &format!("Label audit of {name}"),
        Tab::Models,
        Some(&viewer),
        content,
    ))
}

/// The poster, who must be the operator, and the audit of `name`'s base data.
async fn audit_as_admin(
    state: &AppState,
    headers: &HeaderMap,
    here: &str,
    name: &str,
) -> Result<(crate::dashboard::Viewer, flywheel_model::Audit), PageError> {
    let viewer = state.poster(headers, here).await?;
    if !viewer.is_admin() {
        return Err(PageError::forbidden("audit a model's base data"));
    }
    let audit = crate::audit::audit_base_data(store_of(state)?, name, state.retrain.threads)
        .await
        .map_err(|e| PageError::new(StatusCode::CONFLICT, e.to_string()))?;
    Ok((viewer, audit))
}

/// `POST /models/{name}/audit/review` (admin): audits the base data again (the same folds and
/// seed give the same suspects) and puts the suspects into the review queue.
pub(crate) async fn audit_review(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> PageResult {
    let here = format!("/models/{}", url_encode(&name));
    let (_, audit) = audit_as_admin(&state, &headers, &here, &name).await?;
    crate::audit::push_audit(
        store_of(&state)?,
        &name,
        "",
        &audit,
        state.redact,
        crate::access::now_unix(),
    )
    .await
    .map_err(|e| PageError::new(StatusCode::CONFLICT, e.to_string()))?;
    Ok(redirect(&format!("/review?model={}", url_encode(&name))))
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
