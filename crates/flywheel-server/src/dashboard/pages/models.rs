//! The models page (`GET /`): every model the viewer may use.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use maud::html;

use super::{headline, headline_name, ok, visible_models, PageResult};
use crate::dashboard::url_encode;
use crate::dashboard::view::{self, layout, Tab};
use crate::state::AppState;

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
