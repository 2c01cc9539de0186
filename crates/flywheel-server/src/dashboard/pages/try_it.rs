//! The try-it page (`GET /try`, `POST /try`): one text classified and explained through the
//! same service as `POST /v1/classify`, metered to the viewer's key.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use maud::{html, Markup};

use super::{field, model_picker, ok, read_form, visible_models, ModelPick, ModelRow, PageResult};
use crate::access::request_id;
use crate::dashboard::view::{self, layout, Tab};
use crate::dashboard::{html as page, Viewer};
use crate::error::ApiError;
use crate::models::PredictionOut;
use crate::service::{self, Call, ClassifyRequest, Deadline};
use crate::state::AppState;
use crate::wire::check_text;

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
        Ok(tried) => (StatusCode::OK, explained(&text, &tried)),
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

/// One explained prediction and the version that made it.
struct Tried {
    prediction: PredictionOut,
    version: String,
}

/// Runs one explained classification through the service, as `POST /v1/classify` with
/// `"explain": true` would, metered to the viewer's key.
async fn classify_explained(
    state: &AppState,
    viewer: &Viewer,
    headers: &HeaderMap,
    body: &[u8],
    model: &str,
    text: &str,
) -> Result<Tried, ApiError> {
    if text.trim().is_empty() {
        return Err(ApiError::invalid("type a text to classify").param("text"));
    }
    check_text(&state.limits, text, "text")?;
    let caller = viewer.caller();
    let call = Call {
        caller: &caller,
        request_id: request_id(headers),
        body,
        deadline: Deadline::after(state.limits.timeout),
    };
    let req = ClassifyRequest {
        model: model.to_string(),
        inputs: vec![text.to_string()],
        top_k: None,
        explain: true,
        log: false,
    };
    let served = service::classify(state, &call, req).await?;
    let version = served.response.version;
    let prediction = served
        .response
        .predictions
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::internal("the model answered no prediction"))?;
    Ok(Tried {
        prediction,
        version,
    })
}

/// A number as the API's JSON carries it (the shortest decimal that reads back as the same
/// `f32`; `None` for what JSON writes as `null`), so the page shows the digits a client sees.
fn as_sent(v: f32) -> Option<f64> {
    if v.is_finite() {
        v.to_string().parse().ok()
    } else {
        None
    }
}

/// The result of an explained classification: label, scores and highlighted tokens.
fn explained(text: &str, tried: &Tried) -> Markup {
    let (label, score, scores, attributions) = match &tried.prediction {
        PredictionOut::Class {
            label,
            score,
            scores,
            tokens,
        } => (label.clone(), as_sent(*score), scores.as_slice(), tokens),
        PredictionOut::Labels {
            label,
            score,
            scores,
            tokens,
        } => (label.join(", "), as_sent(*score), scores.as_slice(), tokens),
        PredictionOut::Value { value, tokens } => (
            as_sent(*value)
                .map(|v| format!("{v:.4}"))
                .unwrap_or_default(),
            None,
            &[][..],
            tokens,
        ),
    };
    // Best first; equal scores by label name.
    let mut scores: Vec<(String, f64)> = scores
        .iter()
        .map(|(l, p)| (l.clone(), as_sent(*p).unwrap_or(0.0)))
        .collect();
    scores.sort_by(|a, b| a.0.cmp(&b.0));
    scores.sort_by(|a, b| b.1.total_cmp(&a.1));
    let tokens: Vec<(usize, usize, f64, bool)> = attributions
        .iter()
        .flatten()
        .map(|t| {
            (
                t.start,
                t.end,
                as_sent(t.attribution).unwrap_or(0.0),
                t.in_vocabulary && !t.truncated,
            )
        })
        .collect();
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
                span.muted { " · version " (tried.version) }
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
