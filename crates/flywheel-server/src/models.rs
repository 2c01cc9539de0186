//! The served models: each has a hot-swappable current version and a micro-batching worker
//! that feeds a dedicated rayon pool.

use crate::drift::{DriftConfig, DriftMonitor};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use axum::http::StatusCode;
use flywheel_model::{explain_label, Artifact, Explanation, Prediction, Task, TokenAttribution};
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use sha2::Digest;
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::error::ApiError;
use crate::metrics::Metrics;

/// One loaded version of a model.
#[derive(Debug)]
pub struct LoadedModel {
    /// The model and its metadata.
    pub artifact: Artifact,
    /// The version clients see: the registry's version number for a model served from the
    /// store, else the first 12 hex digits of the artifact's SHA-256.
    pub version: String,
    /// The registry's version number (models served from the store).
    pub registry_version: Option<i64>,
    /// Its drift monitor (when monitoring is on and the file holds a drift profile).
    pub(crate) drift: Option<Arc<DriftMonitor>>,
}

impl LoadedModel {
    /// Reads and validates a model file (blocking).
    pub fn load(path: &Path) -> Result<Self, flywheel_model::ModelError> {
        let artifact = Artifact::load(path)?;
        let sha = &artifact.meta.sha256;
        let version = sha.get(..12).unwrap_or(sha).to_string();
        Ok(LoadedModel {
            artifact,
            version,
            registry_version: None,
            drift: None,
        })
    }

    /// Validates a version fetched from the registry (blocking): its bytes must hash to the
    /// SHA-256 recorded at push and hold a valid model.
    pub fn from_registry(stored: &flywheel_store::ModelArtifact) -> Result<Self, String> {
        let actual = flywheel_model::artifact::hex(&sha2::Sha256::digest(&stored.bytes));
        if !actual.eq_ignore_ascii_case(&stored.info.sha256) {
            return Err(format!(
                "the stored bytes hash to {actual}, not to the SHA-256 recorded at push ({})",
                stored.info.sha256
            ));
        }
        let name = format!("{} v{}", stored.info.name, stored.info.version);
        let artifact = Artifact::from_bytes(&stored.bytes, &name).map_err(|e| e.to_string())?;
        Ok(LoadedModel {
            artifact,
            version: stored.info.version.to_string(),
            registry_version: Some(stored.info.version),
            drift: None,
        })
    }

    /// Starts the drift monitor of this version of `name` (needs a tokio runtime for the
    /// webhook); a model without a drift profile, or with monitoring off, has none.
    pub(crate) fn monitored(mut self, name: &str, cfg: &DriftConfig) -> Self {
        self.drift = match (&self.artifact.meta.drift, cfg.enabled) {
            (Some(profile), true) => Some(Arc::new(DriftMonitor::start(
                name,
                &self.version,
                profile,
                cfg,
            ))),
            _ => None,
        };
        self
    }
}

/// What the inference pool computed for one request, and the version of the model that did.
#[derive(Debug)]
pub(crate) struct Answer {
    /// The predictions or the explanation.
    pub output: Output,
    /// The version that computed it (as clients see it).
    pub version: String,
    /// That version's number in the registry (models served from the store).
    pub registry_version: Option<i64>,
    /// One summary per text, when the request asked for its predictions to be logged.
    pub logged: Vec<Logged>,
}

/// The result of a job: what its [`Work`] asked for.
#[derive(Debug)]
pub(crate) enum Output {
    /// One prediction per text (`Work::Classify`).
    Predictions(Vec<PredictionOut>),
    /// The explanation of the one text (`Work::Explain`).
    Explanation(Explanation),
}

/// What the prediction log keeps of one prediction.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Logged {
    /// The predicted label (several joined by `", "`; the value for regression).
    pub label: String,
    /// Its probability (the value for regression).
    pub score: f32,
    /// In `[0, 1]`, higher = less sure: one minus the margin between the two most probable
    /// labels (multi-label: the label nearest the threshold); `None` for regression.
    pub uncertainty: Option<f32>,
}

impl Logged {
    /// The summary of a prediction.
    pub fn of(p: &Prediction, threshold: f32) -> Logged {
        match p {
            Prediction::Class {
                label,
                score,
                scores,
            } => {
                let mut probs: Vec<f32> = scores.iter().map(|(_, p)| *p).collect();
                probs.sort_by(|a, b| b.total_cmp(a));
                let margin = match probs.as_slice() {
                    [a, b, ..] => a - b,
                    _ => 1.0,
                };
                Logged {
                    label: label.clone(),
                    score: *score,
                    uncertainty: Some((1.0 - margin).clamp(0.0, 1.0)),
                }
            }
            Prediction::Labels {
                labels,
                score,
                scores,
            } => {
                let nearest = scores
                    .iter()
                    .map(|(_, p)| (p - threshold).abs())
                    .fold(f32::INFINITY, f32::min);
                let room = threshold.max(1.0 - threshold).max(f32::EPSILON);
                Logged {
                    label: labels.join(", "),
                    score: *score,
                    uncertainty: Some((1.0 - nearest / room).clamp(0.0, 1.0)),
                }
            }
            Prediction::Value(v) => Logged {
                label: v.to_string(),
                score: *v,
                uncertainty: None,
            },
        }
    }
}

/// What a queued request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Work {
    /// Classify the texts, keeping the k best scores (`top_k`); `explain` adds each
    /// prediction's token attributions; `log` asks for a [`Logged`] summary per text.
    Classify {
        top_k: Option<usize>,
        explain: bool,
        log: bool,
    },
    /// Explain the one text with respect to `label` (`None`: the predicted label).
    Explain { label: Option<String> },
}

/// A request waiting in a model's queue.
pub(crate) struct Job {
    /// The texts.
    pub texts: Vec<String>,
    /// What to compute.
    pub work: Work,
    /// Where the answer (or error) goes.
    pub reply: oneshot::Sender<Result<Answer, ApiError>>,
}

impl Job {
    /// Plain classifications are batched together; explanations (one forward pass per token)
    /// run on their own.
    fn batchable(&self) -> bool {
        matches!(self.work, Work::Classify { explain: false, .. })
    }
}

/// Checks that `label` is one the model can explain (regression: only `value`); 422
/// `unknown_label` otherwise.
pub(crate) fn check_label(name: &str, model: &LoadedModel, label: &str) -> Result<(), ApiError> {
    let labels = &model.artifact.pipeline.labels;
    let known = match labels.task {
        Task::Regression => label == "value",
        _ => labels.labels.iter().any(|l| l == label),
    };
    if known {
        return Ok(());
    }
    let choices = match labels.task {
        Task::Regression => "a regression model explains only 'value'".to_string(),
        _ => format!("its labels are {}", labels.labels.join(", ")),
    };
    Err(ApiError::unprocessable(
        "unknown_label",
        format!("model '{name}' has no label '{label}': {choices}"),
    )
    .param("label"))
}

/// Where a served model comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SlotSource {
    /// A file, re-read on reload.
    File(PathBuf),
    /// The store's registry: the model's champion, followed by the registry poller.
    Registry,
}

/// One served model: its name, source, current version and request queue.
pub(crate) struct ModelSlot {
    pub name: String,
    pub source: SlotSource,
    pub current: Arc<ArcSwap<LoadedModel>>,
    pub queue: mpsc::Sender<Job>,
    reload_lock: tokio::sync::Mutex<()>,
    drift: DriftConfig,
}

/// The result of a successful reload.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Reloaded {
    pub model: String,
    pub version: String,
    pub previous_version: String,
    pub created_at: String,
}

impl ModelSlot {
    /// Re-reads the model file off the async threads and swaps it in atomically; requests
    /// already batched finish on the old version. A file that fails to load leaves the old
    /// version serving.
    pub async fn reload(&self, metrics: &Metrics) -> Result<Reloaded, ApiError> {
        let _guard = self.reload_lock.lock().await;
        let SlotSource::File(path) = &self.source else {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "registry_model",
                format!(
                    "model '{}' is served from the registry and follows its champion; \
                     promote a version with 'flywheel models promote' instead",
                    self.name
                ),
            )
            .param("name"));
        };
        let path = path.clone();
        let loaded = tokio::task::spawn_blocking(move || LoadedModel::load(&path))
            .await
            .map_err(|e| ApiError::internal(format!("the reload task failed: {e}")))?;
        match loaded {
            Ok(new) => {
                let new = Arc::new(new.monitored(&self.name, &self.drift));
                let old = self.current.swap(Arc::clone(&new));
                metrics.reload(&self.name, "ok");
                tracing::info!(model = %self.name, version = %new.version,
                    previous = %old.version, "model reloaded");
                Ok(Reloaded {
                    model: self.name.clone(),
                    version: new.version.clone(),
                    previous_version: old.version.clone(),
                    created_at: new.artifact.meta.created_at.clone(),
                })
            }
            Err(e) => {
                metrics.reload(&self.name, "error");
                let serving = self.current.load().version.clone();
                tracing::error!(model = %self.name, error = %e, "reload failed; old version kept");
                Err(ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "reload_failed",
                    format!(
                        "cannot reload model '{}': {e}; version {serving} is still serving",
                        self.name
                    ),
                )
                .param("name"))
            }
        }
    }

    /// Swaps in a version fetched from the registry; requests already batched finish on the
    /// old version.
    pub fn install(&self, new: LoadedModel, metrics: &Metrics) {
        let new = Arc::new(new.monitored(&self.name, &self.drift));
        let old = self.current.swap(Arc::clone(&new));
        metrics.reload(&self.name, "ok");
        tracing::info!(model = %self.name, version = %new.version,
            previous = %old.version, "registry champion installed");
    }

    /// Requests waiting in the queue.
    pub fn queue_depth(&self) -> usize {
        self.queue.max_capacity() - self.queue.capacity()
    }

    /// Queues the texts on the model's worker (503 at once when the queue is full) and waits
    /// for the answer computed on the inference pool.
    pub async fn submit(&self, texts: Vec<String>, work: Work) -> Result<Answer, ApiError> {
        let (reply, answer) = oneshot::channel();
        let job = Job { texts, work, reply };
        self.queue.try_send(job).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => ApiError::overloaded(format!(
                "the queue of model '{}' is full; retry shortly",
                self.name
            )),
            mpsc::error::TrySendError::Closed(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the server is shutting down",
            ),
        })?;
        answer
            .await
            .map_err(|_| ApiError::internal("the inference worker dropped the request"))?
    }
}

/// Batching settings shared by all workers.
#[derive(Clone)]
pub(crate) struct Batching {
    pub pool: Arc<rayon::ThreadPool>,
    /// One permit per inference thread: a worker starts a batch only when a thread is free,
    /// so requests that arrive meanwhile join the next batch.
    pub permits: Arc<Semaphore>,
    pub max_batch: usize,
    pub max_wait: Duration,
    pub queue_capacity: usize,
    pub metrics: Arc<Metrics>,
    pub drift: DriftConfig,
}

impl Batching {
    /// Starts the batching worker of a loaded model (needs a tokio runtime).
    pub fn start_loaded(&self, name: &str, source: SlotSource, loaded: LoadedModel) -> ModelSlot {
        let current = Arc::new(ArcSwap::from_pointee(loaded.monitored(name, &self.drift)));
        let (tx, rx) = mpsc::channel(self.queue_capacity);
        tokio::spawn(worker(
            name.to_string(),
            Arc::clone(&current),
            rx,
            self.clone(),
        ));
        ModelSlot {
            name: name.to_string(),
            source,
            current,
            queue: tx,
            reload_lock: tokio::sync::Mutex::new(()),
            drift: self.drift.clone(),
        }
    }
}

/// Below this much time left, a waiting batcher yields to the runtime instead of sleeping on
/// tokio's timer, whose resolution (1 ms) would overshoot a sub-millisecond `max_wait`.
const TIMER_SLACK: Duration = Duration::from_millis(2);

/// The next queued job if one arrives before `deadline`; `None` once the deadline has passed
/// (at once for a deadline already past) or the queue is closed.
///
/// Long waits sleep on tokio's timer until `TIMER_SLACK` before the deadline; the rest is
/// spent yielding to the runtime (which keeps reading sockets meanwhile), so the wait ends
/// within microseconds of the deadline rather than on the next millisecond tick.
async fn recv_until(rx: &mut mpsc::Receiver<Job>, deadline: Instant) -> Option<Job> {
    loop {
        match rx.try_recv() {
            Ok(job) => return Some(job),
            Err(mpsc::error::TryRecvError::Disconnected) => return None,
            Err(mpsc::error::TryRecvError::Empty) => {}
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        if left > TIMER_SLACK {
            let wake = tokio::time::Instant::from_std(deadline - TIMER_SLACK);
            if let Ok(job) = tokio::time::timeout_at(wake, rx.recv()).await {
                return job;
            }
        } else {
            tokio::task::yield_now().await;
        }
    }
}

/// Groups queued jobs into batches of up to `max_batch` texts (or what arrived within
/// `max_wait` of the first) and runs each batch on the rayon pool; explanations run there one
/// request at a time. Ends when every sender is gone.
///
/// A batch starts only when an inference thread is free, so while all are busy requests pile
/// up in the queue and the next batch takes them all at once, without any waiting; with
/// `max_wait` zero (the default) a free thread starts on what is queued at once.
async fn worker(
    name: String,
    current: Arc<ArcSwap<LoadedModel>>,
    mut rx: mpsc::Receiver<Job>,
    b: Batching,
) {
    let name: Arc<str> = name.into();
    // A job that did not fit in the previous batch starts the next one.
    let mut carry: Option<Job> = None;
    loop {
        let first = match carry.take() {
            Some(job) => job,
            None => match rx.recv().await {
                Some(job) => job,
                None => break,
            },
        };
        let deadline = Instant::now() + b.max_wait;
        let Ok(permit) = Arc::clone(&b.permits).acquire_owned().await else {
            break;
        };
        if !first.batchable() {
            if first.reply.is_closed() {
                continue;
            }
            let model = current.load_full();
            let name = Arc::clone(&name);
            let metrics = Arc::clone(&b.metrics);
            b.pool.spawn(move || {
                let _permit = permit;
                run_alone(&name, &model, first, &metrics);
            });
            continue;
        }
        let mut texts = first.texts.len();
        let mut jobs = vec![first];
        while texts < b.max_batch {
            let Some(next) = recv_until(&mut rx, deadline).await else {
                break;
            };
            if !next.batchable() || texts + next.texts.len() > b.max_batch {
                carry = Some(next);
                break;
            }
            texts += next.texts.len();
            jobs.push(next);
        }
        // Requests that gave up (timed out, client gone) are not computed.
        jobs.retain(|j| !j.reply.is_closed());
        if jobs.is_empty() {
            continue;
        }
        let model = current.load_full();
        let name = Arc::clone(&name);
        let metrics = Arc::clone(&b.metrics);
        b.pool.spawn(move || {
            let _permit = permit;
            run_batch(&name, &model, jobs, &metrics);
        });
    }
}

/// Runs one batch through the model and answers every job in it.
fn run_batch(name: &str, model: &LoadedModel, jobs: Vec<Job>, metrics: &Metrics) {
    let started = Instant::now();
    let texts: Vec<&str> = jobs
        .iter()
        .flat_map(|j| j.texts.iter().map(String::as_str))
        .collect();
    let pipeline = &model.artifact.pipeline;
    let outputs = pipeline.outputs_of_texts(&texts);
    metrics.batch(name, texts.len(), started.elapsed().as_secs_f64());
    let k = pipeline.outputs();
    let task = pipeline.labels.task;
    match outputs {
        Ok(outputs) if k > 0 && outputs.len() == texts.len() * k => {
            // The drift monitor takes the batch's first texts, as many as its budget allows.
            let budget = model.drift.as_ref().map_or(0, |m| m.take(texts.len()));
            drop(texts);
            let mut rows = outputs.chunks_exact(k);
            let (mut seen, mut seen_labels): (Vec<String>, Vec<Option<usize>>) =
                (Vec::new(), Vec::new());
            for job in jobs {
                let wanted = budget
                    .saturating_sub(seen_labels.len())
                    .min(job.texts.len());
                let at = seen_labels.len();
                seen_labels.extend(
                    outputs[at * k..(at + wanted) * k]
                        .chunks_exact(k)
                        .map(|row| label_index(task, row)),
                );
                let (top_k, log) = match job.work {
                    Work::Classify { top_k, log, .. } => (top_k, log),
                    Work::Explain { .. } => (None, false),
                };
                let mut logged = Vec::new();
                let predictions: Vec<PredictionOut> = rows
                    .by_ref()
                    .take(job.texts.len())
                    .map(|row| {
                        let p = pipeline.decide(row);
                        if log {
                            logged.push(Logged::of(&p, pipeline.labels.threshold));
                        }
                        PredictionOut::new(p, top_k)
                    })
                    .collect();
                // The requester may have given up meanwhile; nothing to do then.
                let _ = job.reply.send(Ok(Answer {
                    output: Output::Predictions(predictions),
                    version: model.version.clone(),
                    registry_version: model.registry_version,
                    logged,
                }));
                seen.extend(job.texts.into_iter().take(wanted));
            }
            if let (Some(monitor), true) = (&model.drift, budget > 0) {
                monitor.offer(seen, seen_labels);
            }
        }
        other => {
            let message = failure_message(other.map(|o| o.len()));
            tracing::error!(model = %name, %message, "batch failed");
            for job in jobs {
                let _ = job.reply.send(Err(ApiError::internal(message.clone())));
            }
        }
    }
}

/// The predicted label's index of one output row (binary and multi-class; `None` otherwise).
fn label_index(task: flywheel_model::Task, row: &[f32]) -> Option<usize> {
    match task {
        flywheel_model::Task::Binary => row.first().map(|&p| usize::from(p > 0.5)),
        flywheel_model::Task::Multiclass => Some(flywheel_model::metrics::argmax(row)),
        _ => None,
    }
}

/// Runs a request that is not batched (one asking for explanations) and answers it.
fn run_alone(name: &str, model: &LoadedModel, job: Job, metrics: &Metrics) {
    let mut logged = Vec::new();
    let result = match &job.work {
        Work::Explain { label } => explain_one(name, model, &job, label.as_deref(), metrics),
        Work::Classify { top_k, log, .. } => classify_explained(name, model, &job, *top_k, metrics)
            .map(|(predictions, summaries)| {
                if *log {
                    logged = summaries;
                }
                Output::Predictions(predictions)
            }),
    };
    if let Err(e) = &result {
        if e.status.is_server_error() {
            tracing::error!(model = %name, error = %e, "explanation failed");
        }
    }
    let _ = job.reply.send(result.map(|output| Answer {
        output,
        version: model.version.clone(),
        registry_version: model.registry_version,
        logged,
    }));
}

/// `POST /v1/explain`: the explanation of `job.texts[0]`.
fn explain_one(
    name: &str,
    model: &LoadedModel,
    job: &Job,
    label: Option<&str>,
    metrics: &Metrics,
) -> Result<Output, ApiError> {
    let text = job.texts.first().map(String::as_str).unwrap_or("");
    // Checked again against the version that runs: a reload may have changed the labels.
    if let Some(label) = label {
        check_label(name, model, label)?;
    }
    let started = Instant::now();
    let explanation = explain_label(&model.artifact.pipeline, text, label)
        .map_err(|e| ApiError::internal(format!("explanation failed: {e}")))?;
    metrics.explained(name, 1, started.elapsed().as_secs_f64());
    Ok(Output::Explanation(explanation))
}

/// `POST /v1/classify` with `"explain": true`: predictions, each with the attributions of
/// its tokens to its label (multi-label: to the most probable label; regression: to the value),
/// and the log summary of each prediction.
fn classify_explained(
    name: &str,
    model: &LoadedModel,
    job: &Job,
    top_k: Option<usize>,
    metrics: &Metrics,
) -> Result<(Vec<PredictionOut>, Vec<Logged>), ApiError> {
    let pipeline = &model.artifact.pipeline;
    let started = Instant::now();
    let outputs = pipeline.outputs_of_texts(&job.texts);
    metrics.batch(name, job.texts.len(), started.elapsed().as_secs_f64());
    let k = pipeline.outputs();
    let outputs = match outputs {
        Ok(o) if k > 0 && o.len() == job.texts.len() * k => o,
        other => return Err(ApiError::internal(failure_message(other.map(|o| o.len())))),
    };
    let started = Instant::now();
    let mut predictions = Vec::with_capacity(job.texts.len());
    let mut logged = Vec::with_capacity(job.texts.len());
    for (text, row) in job.texts.iter().zip(outputs.chunks_exact(k)) {
        if job.reply.is_closed() {
            // Timed out or gone: the rest would be computed for no one.
            return Err(ApiError::internal("the request was abandoned"));
        }
        let prediction = pipeline.decide(row);
        logged.push(Logged::of(&prediction, pipeline.labels.threshold));
        // The explained label is the predicted one, named so that a near tie cannot make the
        // explanation's own forward pass pick another.
        let label = match &prediction {
            Prediction::Class { label, .. } => Some(label.clone()),
            _ => None,
        };
        let explanation = explain_label(pipeline, text, label.as_deref())
            .map_err(|e| ApiError::internal(format!("explanation failed: {e}")))?;
        predictions.push(PredictionOut::new(prediction, top_k).with_tokens(explanation.tokens));
    }
    metrics.explained(name, job.texts.len(), started.elapsed().as_secs_f64());
    Ok((predictions, logged))
}

fn failure_message(outputs: Result<usize, flywheel_model::ModelError>) -> String {
    match outputs {
        Err(e) => format!("inference failed: {e}"),
        Ok(_) => "inference returned the wrong number of outputs".to_string(),
    }
}

/// A prediction as the API answers it; scores keep their order (label order, or best first
/// with `top_k`). `tokens` only with `"explain": true`.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub(crate) enum PredictionOut {
    /// Binary or multi-class: the label, its probability and the scores.
    Class {
        /// The predicted label.
        label: String,
        /// Its probability.
        score: f32,
        /// `(label, probability)`, in the order answered.
        #[serde(serialize_with = "ordered_map")]
        scores: Vec<(String, f32)>,
        /// Each token's attribution to the label.
        #[serde(skip_serializing_if = "Option::is_none")]
        tokens: Option<Vec<TokenAttribution>>,
    },
    /// Multi-label: the labels over the threshold, the best probability and the scores.
    Labels {
        /// The predicted labels.
        label: Vec<String>,
        /// The highest probability.
        score: f32,
        /// `(label, probability)`, in the order answered.
        #[serde(serialize_with = "ordered_map")]
        scores: Vec<(String, f32)>,
        /// Each token's attribution to the most probable label.
        #[serde(skip_serializing_if = "Option::is_none")]
        tokens: Option<Vec<TokenAttribution>>,
    },
    /// Regression: the predicted value.
    Value {
        /// The value.
        value: f32,
        /// Each token's attribution to the value.
        #[serde(skip_serializing_if = "Option::is_none")]
        tokens: Option<Vec<TokenAttribution>>,
    },
}

impl PredictionOut {
    fn new(p: Prediction, top_k: Option<usize>) -> Self {
        let keep = |mut scores: Vec<(String, f32)>| {
            if let Some(k) = top_k {
                scores.sort_by(|a, b| b.1.total_cmp(&a.1));
                scores.truncate(k);
            }
            scores
        };
        match p {
            Prediction::Class {
                label,
                score,
                scores,
            } => PredictionOut::Class {
                label,
                score,
                scores: keep(scores),
                tokens: None,
            },
            Prediction::Labels {
                labels,
                score,
                scores,
            } => PredictionOut::Labels {
                label: labels,
                score,
                scores: keep(scores),
                tokens: None,
            },
            Prediction::Value(value) => PredictionOut::Value {
                value,
                tokens: None,
            },
        }
    }

    /// The same prediction with the attributions of its tokens.
    fn with_tokens(mut self, attributions: Vec<TokenAttribution>) -> Self {
        match &mut self {
            PredictionOut::Class { tokens, .. }
            | PredictionOut::Labels { tokens, .. }
            | PredictionOut::Value { tokens, .. } => *tokens = Some(attributions),
        }
        self
    }
}

fn ordered_map<S: Serializer>(pairs: &[(String, f32)], s: S) -> Result<S::Ok, S::Error> {
    let mut map = s.serialize_map(Some(pairs.len()))?;
    for (label, p) in pairs {
        map.serialize_entry(label, p)?;
    }
    map.end()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_keeps_the_best_in_order() {
        let p = Prediction::Class {
            label: "b".into(),
            score: 0.6,
            scores: vec![("a".into(), 0.1), ("b".into(), 0.6), ("c".into(), 0.3)],
        };
        let json = serde_json::to_string(&PredictionOut::new(p.clone(), Some(2))).unwrap();
        assert_eq!(
            json,
            r#"{"label":"b","score":0.6,"scores":{"b":0.6,"c":0.3}}"#
        );
        let json = serde_json::to_string(&PredictionOut::new(p, None)).unwrap();
        assert_eq!(
            json,
            r#"{"label":"b","score":0.6,"scores":{"a":0.1,"b":0.6,"c":0.3}}"#
        );
    }

    #[test]
    fn tokens_follow_the_scores_only_when_asked() {
        let p = Prediction::Class {
            label: "b".into(),
            score: 0.6,
            scores: vec![("a".into(), 0.4), ("b".into(), 0.6)],
        };
        let t = TokenAttribution {
            text: "é".into(),
            start: 1,
            end: 2,
            attribution: 0.25,
            in_vocabulary: true,
            truncated: false,
        };
        let json =
            serde_json::to_string(&PredictionOut::new(p, Some(1)).with_tokens(vec![t])).unwrap();
        assert_eq!(
            json,
            r#"{"label":"b","score":0.6,"scores":{"b":0.6},"tokens":[{"text":"é","start":1,"end":2,"attribution":0.25,"in_vocabulary":true,"truncated":false}]}"#
        );
    }

    fn job() -> Job {
        Job {
            texts: vec!["x".into()],
            work: Work::Classify {
                top_k: None,
                explain: false,
                log: false,
            },
            reply: oneshot::channel().0,
        }
    }

    #[tokio::test]
    async fn waits_below_a_millisecond_end_on_time() {
        let (tx, mut rx) = mpsc::channel(4);
        // A queued job comes at once; a past deadline does not wait.
        tx.try_send(job()).unwrap();
        assert!(recv_until(&mut rx, Instant::now()).await.is_some());
        let t = Instant::now();
        assert!(recv_until(&mut rx, t).await.is_none());
        // 200 µs waits take 200 µs and not tokio's 1 ms tick (median of 21, robust to a
        // descheduled thread).
        let wait = Duration::from_micros(200);
        let mut took: Vec<Duration> = Vec::new();
        for _ in 0..21 {
            let t = Instant::now();
            assert!(recv_until(&mut rx, t + wait).await.is_none());
            took.push(t.elapsed());
        }
        took.sort();
        assert!(took[0] >= wait, "{took:?}");
        assert!(took[10] < Duration::from_micros(900), "{took:?}");
        // A job sent during a wait is taken, and a long wait uses the timer then yields.
        let sender = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            tx.send(job()).await.unwrap();
            tx
        });
        let t = Instant::now();
        assert!(recv_until(&mut rx, t + Duration::from_secs(5))
            .await
            .is_some());
        assert!(t.elapsed() < Duration::from_secs(1));
        drop(sender.await.unwrap());
        // A closed queue ends the wait.
        assert!(recv_until(&mut rx, Instant::now() + Duration::from_secs(5))
            .await
            .is_none());
    }

    #[test]
    fn uncertainty_is_one_minus_the_margin() {
        let class = |scores: &[f32]| Prediction::Class {
            label: "a".into(),
            score: scores[0],
            scores: scores
                .iter()
                .enumerate()
                .map(|(i, p)| (i.to_string(), *p))
                .collect(),
        };
        let u = |p: &Prediction| Logged::of(p, 0.5).uncertainty.unwrap();
        assert!((u(&class(&[0.5, 0.5])) - 1.0).abs() < 1e-6);
        assert!(u(&class(&[0.99, 0.01])) < 0.03);
        assert!((u(&class(&[0.2, 0.5, 0.3])) - 0.8).abs() < 1e-6);
        let labels = Prediction::Labels {
            labels: vec!["x".into()],
            score: 0.9,
            scores: vec![("x".into(), 0.9), ("y".into(), 0.45)],
        };
        let l = Logged::of(&labels, 0.5);
        assert_eq!(l.label, "x");
        assert!((l.uncertainty.unwrap() - 0.9).abs() < 1e-6);
        let v = Logged::of(&Prediction::Value(2.5), 0.5);
        assert_eq!((v.label.as_str(), v.uncertainty), ("2.5", None));
    }

    #[test]
    fn regression_is_a_value() {
        let json =
            serde_json::to_string(&PredictionOut::new(Prediction::Value(1.5), Some(1))).unwrap();
        assert_eq!(json, r#"{"value":1.5}"#);
    }
}
