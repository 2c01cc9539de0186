//! The one typed request path behind `POST /v1/classify`, `POST /v1/explain` and the
//! dashboard's try-it: find the model, check the caller's access and limits, queue the texts
//! for inference, meter what was served (and keep asked-for predictions for review). The
//! caller is authenticated before (the API's bearer token, the dashboard's session, both
//! through [`AppState::identify`]); the answers are Rust values that the API encodes as JSON
//! and the dashboard renders.

use std::time::Duration;

use axum::http::StatusCode;
use flywheel_model::Explanation;
use serde::Serialize;

use crate::access::{Caller, LimitHeaders, Usage};
use crate::error::ApiError;
use crate::models::{check_label, Output, PredictionOut, Work};
use crate::state::AppState;

/// When a request must be done by: its body upload, queueing and inference all count.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadline {
    at: tokio::time::Instant,
    limit: Duration,
}

impl Deadline {
    /// `limit` from now.
    pub fn after(limit: Duration) -> Self {
        Deadline {
            at: tokio::time::Instant::now() + limit,
            limit,
        }
    }

    /// Runs `work` until the deadline; 504 `timeout` when it is not done by then.
    pub async fn run<F, T>(self, work: F) -> Result<T, ApiError>
    where
        F: std::future::Future<Output = Result<T, ApiError>>,
    {
        match tokio::time::timeout_at(self.at, work).await {
            Ok(result) => result,
            Err(_) => Err(ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "timeout",
                format!(
                    "the request did not finish within {} ms; send fewer or shorter texts, or retry",
                    self.limit.as_millis()
                ),
            )),
        }
    }
}

/// Who asks and what the usage event records of the request.
pub(crate) struct Call<'a> {
    /// The authenticated caller.
    pub caller: &'a Caller,
    /// The request's id (the usage event's idempotency key; the prediction log's key).
    pub request_id: &'a str,
    /// The request body as received (its digest tells a retry from a reused id).
    pub body: &'a [u8],
    /// When the work must be done by (metering runs after it: a commit is never cut short).
    pub deadline: Deadline,
}

/// A validated classification request.
#[derive(Debug)]
pub(crate) struct ClassifyRequest {
    /// The model's name.
    pub model: String,
    /// The texts.
    pub inputs: Vec<String>,
    /// Keep only the k best scores of each prediction.
    pub top_k: Option<usize>,
    /// Add each token's attribution to every prediction.
    pub explain: bool,
    /// Keep these predictions for review and feedback by request id (with a store).
    pub log: bool,
}

/// A validated explanation request.
#[derive(Debug)]
pub(crate) struct ExplainRequest {
    /// The model's name.
    pub model: String,
    /// The text.
    pub input: String,
    /// The label to explain (`None`: the predicted one).
    pub label: Option<String>,
}

/// The body of `POST /v1/classify`.
#[derive(Debug, Serialize)]
pub(crate) struct ClassifyResponse {
    /// The model's name.
    pub model: String,
    /// The version that answered.
    pub version: String,
    /// One prediction per text, in order.
    pub predictions: Vec<PredictionOut>,
}

/// The body of `POST /v1/explain`: `flywheel explain --json` with the model's name and
/// version.
#[derive(Debug, Serialize)]
pub(crate) struct ExplainResponse {
    /// The model's name.
    pub model: String,
    /// The version that answered.
    pub version: String,
    /// The explanation.
    #[serde(flatten)]
    pub explanation: Explanation,
}

/// A served classification.
#[derive(Debug)]
pub(crate) struct Classified {
    /// What the client is answered.
    pub response: ClassifyResponse,
    /// The key's rate-limit state after this request.
    pub limit_headers: LimitHeaders,
    /// Whether the predictions were kept for review (`None`: not asked for or not sampled).
    pub logged: Option<bool>,
}

/// A served explanation.
#[derive(Debug)]
pub(crate) struct Explained {
    /// What the client is answered.
    pub response: ExplainResponse,
    /// The key's rate-limit state after this request.
    pub limit_headers: LimitHeaders,
}

/// Classifies the texts: model → access → limits → inference (under the deadline) → metering,
/// with the predictions kept for review committed alongside (or on their own for an unmetered
/// caller).
pub(crate) async fn classify(
    state: &AppState,
    call: &Call<'_>,
    req: ClassifyRequest,
) -> Result<Classified, ApiError> {
    let ClassifyRequest {
        model,
        inputs,
        top_k,
        explain,
        log,
    } = req;
    let texts = inputs.len();
    let characters = inputs.iter().map(|t| t.chars().count()).sum::<usize>();
    // A zero-shot model has no labels yet: every prediction goes to the review queue.
    let cold = state.model_slot(&model).is_ok_and(|slot| {
        slot.current.load().artifact.pipeline.spec.family == flywheel_model::Family::ZeroShot
    });
    let log = (log || cold) && state.store.is_some();
    let kept = if log { inputs.clone() } else { Vec::new() };
    let answer = call
        .deadline
        .run(async {
            let slot = state.model_slot(&model)?;
            state.check_access(call.caller, &model)?;
            state.precheck(call.caller, texts)?;
            let work = Work::Classify {
                top_k,
                explain,
                log,
            };
            slot.submit(inputs, work).await
        })
        .await?;
    let Output::Predictions(predictions) = answer.output else {
        return Err(ApiError::internal("the model answered with an explanation"));
    };
    let keep = if !kept.is_empty() && kept.len() == answer.logged.len() {
        crate::feedback::predictions(
            state,
            call.caller,
            call.request_id,
            &model,
            answer.registry_version,
            &kept,
            &answer.logged,
        )
    } else {
        Vec::new()
    };
    let asked = !keep.is_empty();
    let usage = Usage {
        request_id: call.request_id,
        model: &model,
        version: answer.registry_version,
        texts,
        characters,
        body: call.body,
        predictions: keep,
    };
    let (limit_headers, unmetered) = state.meter(call.caller, usage).await?;
    let logged = match (asked, unmetered.is_empty()) {
        (false, _) => None,
        // Committed with the usage event.
        (true, true) => Some(true),
        (true, false) => Some(crate::feedback::log_predictions(state, &unmetered).await),
    };
    Ok(Classified {
        response: ClassifyResponse {
            model,
            version: answer.version,
            predictions,
        },
        limit_headers,
        logged,
    })
}

/// Explains one text: model → access → label → limits → inference (under the deadline) →
/// metering.
pub(crate) async fn explain(
    state: &AppState,
    call: &Call<'_>,
    req: ExplainRequest,
) -> Result<Explained, ApiError> {
    let ExplainRequest {
        model,
        input,
        label,
    } = req;
    let characters = input.chars().count();
    let answer = call
        .deadline
        .run(async {
            let slot = state.model_slot(&model)?;
            state.check_access(call.caller, &model)?;
            // An unknown label is refused before queueing (and checked again on the version
            // that runs, in case a reload changed the labels).
            if let Some(label) = &label {
                check_label(&slot.name, &slot.current.load(), label)?;
            }
            state.precheck(call.caller, 1)?;
            slot.submit(vec![input], Work::Explain { label }).await
        })
        .await?;
    let Output::Explanation(explanation) = answer.output else {
        return Err(ApiError::internal("the model answered with predictions"));
    };
    let usage = Usage {
        request_id: call.request_id,
        model: &model,
        version: answer.registry_version,
        texts: 1,
        characters,
        body: call.body,
        predictions: Vec::new(),
    };
    let (limit_headers, _) = state.meter(call.caller, usage).await?;
    Ok(Explained {
        response: ExplainResponse {
            model,
            version: answer.version,
            explanation,
        },
        limit_headers,
    })
}

/// A served model's drift: what `GET /v1/models/{name}/drift` and the dashboard's model page
/// show.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct DriftAnswer {
    /// The model.
    pub model: String,
    /// The version being monitored.
    pub version: String,
    /// Whether it is monitored (monitoring on and a drift profile in its file).
    pub monitored: bool,
    /// Share of each label in the training data, in the model's label order.
    pub labels: Vec<String>,
    /// The training data's label shares.
    pub reference_label_shares: Vec<f64>,
    /// The training data's out-of-vocabulary share on unseen text.
    pub reference_oov_share: Option<f64>,
    /// The monitor's state (observed texts, alarm, last check, recent checks).
    #[serde(flatten)]
    pub status: crate::drift::DriftStatus,
}

/// The drift state of `model` for a caller who may use it.
pub(crate) fn drift(
    state: &AppState,
    caller: &Caller,
    model: &str,
) -> Result<DriftAnswer, ApiError> {
    let slot = state.model_slot(model)?;
    state.check_access(caller, model)?;
    let current = slot.current.load();
    let profile = current.artifact.meta.drift.as_ref();
    Ok(DriftAnswer {
        model: model.to_string(),
        version: current.version.clone(),
        monitored: current.drift.is_some(),
        labels: current.artifact.meta.labels.clone(),
        reference_label_shares: profile.map(|p| p.label_shares.clone()).unwrap_or_default(),
        reference_oov_share: profile.map(|p| p.oov_mean),
        status: current
            .drift
            .as_ref()
            .map(|m| m.status())
            .unwrap_or_default(),
    })
}
