//! The account endpoints: `GET /v1/models` (the models a caller may use), `GET /v1/usage`
//! (metered usage) and the admin's `POST /v1/admin/models/{name}/reload`.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};

use crate::access::{store_unavailable, Caller};
use crate::error::ApiError;
use crate::state::AppState;
use crate::wire::{json_response, typed_response};

/// `GET /v1/models`: the served models the caller may use, with their metadata.
pub(crate) async fn list_models(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let caller = state.caller(&headers).await?;
    let usable: Option<Vec<String>> = match &caller {
        Caller::Key(key) => state.usable_models(&key.tenant),
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
pub(crate) async fn usage(
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
    Ok(json_response(StatusCode::OK, &json!({ "usage": rows })))
}

/// `POST /v1/admin/models/{name}/reload` (admin token): a file model is read again; a registry
/// model follows the registry's champion now.
pub(crate) async fn reload(
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

/// `GET /v1/models/{name}/drift`: the model's drift monitor — observed texts, alarm, the last
/// check's tests and the recent checks (a key sees only models its tenant may use).
pub(crate) async fn drift(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let caller = state.caller(&headers).await?;
    let answer = crate::service::drift(&state, &caller, &name)?;
    Ok(typed_response(StatusCode::OK, &answer))
}
