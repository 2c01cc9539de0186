//! The dashboard's pages, one per file, and what they share: reading forms, the models a
//! viewer may see, the model picker.

pub(super) mod build;
pub(super) mod keys;
pub(super) mod model;
pub(super) mod models;
pub(super) mod review;
pub(super) mod sign_in;
pub(super) mod try_it;
pub(super) mod usage;

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use flywheel_model::artifact::ArtifactMeta;
use flywheel_model::{Report, Task};
use flywheel_store::Store;
use http_body_util::{BodyExt, Limited};
use maud::{html, Markup};
use serde::Deserialize;

use super::{html as page, PageError, Viewer};
use crate::error::ApiError;
use crate::models::LoadedModel;
use crate::state::AppState;

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
    let usable: Option<BTreeSet<String>> = viewer
        .tenant()
        .and_then(|t| state.usable_models(t))
        .map(|names| names.into_iter().collect());
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
