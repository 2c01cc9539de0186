//! The keys page (`GET /keys`): tenants and their keys; creating and revoking keys and
//! creating tenants.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use flywheel_store::{KeySummary, NewKey};
use maud::html;
use serde::Deserialize;

use super::{field, ok, read_form, store_of, PageResult};
use crate::dashboard::view::{self, layout, Tab};
use crate::dashboard::{html as page, redirect, url_encode, PageError, Viewer};
use crate::state::AppState;

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
            state.access_changed().await;
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
            state.access_changed().await;
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
        Ok(t) => {
            state.access_changed().await;
            Ok(redirect(&format!(
                "/keys?done=tenant&tenant={}",
                url_encode(&t.name)
            )))
        }
        Err(e) => keys_error(&state, &viewer, e).await,
    }
}
