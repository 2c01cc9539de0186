//! The review page (`GET /review`): the uncertainty-ranked queue with one-key labelling, and
//! its label form (`POST /review/{id}`).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use flywheel_model::Task;
use maud::html;
use serde_json::Value;

use super::{model_picker, ok, read_form, store_of, visible_models, ModelPick, PageResult};
use crate::access::request_id;
use crate::dashboard::view::{self, layout, Tab};
use crate::dashboard::{redirect, url_encode, PageError};
use crate::feedback::{record, Correction};
use crate::state::AppState;

/// Items shown on the review page at once.
const REVIEW_PAGE: i64 = 20;

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
    let slot = state.model_slot(&model).ok();
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
                        @if let Some(given) = &p.given_label {
                            span.badge { "Is this label right?" } " given " strong.given { (given) }
                            " · the audit suggests " strong.suggested { (p.label) }
                        } @else {
                            "predicted " strong { (p.label) }
                        }
                        " (" (format!("{:.3}", p.score)) ")"
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
    let task = state
        .model_slot(&model)
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
    let correction = Correction {
        caller: &caller,
        request_id: request_id(&headers),
        body: &bytes,
        model: model.clone(),
        prediction_id: Some(logged.id),
        text: logged.prediction.text,
        label,
    };
    record(&state, store, correction).await?;
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
