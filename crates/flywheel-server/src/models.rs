//! The served models: each has a hot-swappable current version and a micro-batching worker
//! that feeds a dedicated rayon pool.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use axum::body::Bytes;
use axum::http::StatusCode;
use flywheel_model::{Artifact, Prediction};
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::error::ApiError;
use crate::metrics::Metrics;

/// One loaded version of a model.
#[derive(Debug)]
pub struct LoadedModel {
    /// The model and its metadata.
    pub artifact: Artifact,
    /// A short version id: the first 12 hex digits of the file's SHA-256.
    pub version: String,
}

impl LoadedModel {
    /// Reads and validates a model file (blocking).
    pub fn load(path: &Path) -> Result<Self, flywheel_model::ModelError> {
        let artifact = Artifact::load(path)?;
        let sha = &artifact.meta.sha256;
        let version = sha.get(..12).unwrap_or(sha).to_string();
        Ok(LoadedModel { artifact, version })
    }
}

/// A classification request waiting for its batch.
pub(crate) struct Job {
    /// The texts.
    pub texts: Vec<String>,
    /// Keep only the k best scores.
    pub top_k: Option<usize>,
    /// Where the response body (or error) goes.
    pub reply: oneshot::Sender<Result<Bytes, ApiError>>,
}

/// One served model: its name, file, current version and request queue.
pub(crate) struct ModelSlot {
    pub name: String,
    pub path: PathBuf,
    pub current: Arc<ArcSwap<LoadedModel>>,
    pub queue: mpsc::Sender<Job>,
    reload_lock: tokio::sync::Mutex<()>,
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
        let path = self.path.clone();
        let loaded = tokio::task::spawn_blocking(move || LoadedModel::load(&path))
            .await
            .map_err(|e| ApiError::internal(format!("the reload task failed: {e}")))?;
        match loaded {
            Ok(new) => {
                let new = Arc::new(new);
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

    /// Requests waiting in the queue.
    pub fn queue_depth(&self) -> usize {
        self.queue.max_capacity() - self.queue.capacity()
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
}

impl Batching {
    /// Starts the batching worker of a loaded model (needs a tokio runtime).
    pub fn start_loaded(&self, name: &str, path: &Path, loaded: LoadedModel) -> ModelSlot {
        let current = Arc::new(ArcSwap::from_pointee(loaded));
        let (tx, rx) = mpsc::channel(self.queue_capacity);
        tokio::spawn(worker(
            name.to_string(),
            Arc::clone(&current),
            rx,
            self.clone(),
        ));
        ModelSlot {
            name: name.to_string(),
            path: path.to_path_buf(),
            current,
            queue: tx,
            reload_lock: tokio::sync::Mutex::new(()),
        }
    }
}

/// Groups queued jobs into batches of up to `max_batch` texts (or what arrived within
/// `max_wait` of the first) and runs each batch on the rayon pool. Ends when every sender is
/// gone.
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
        let deadline = tokio::time::Instant::now() + b.max_wait;
        let Ok(permit) = Arc::clone(&b.permits).acquire_owned().await else {
            break;
        };
        let mut texts = first.texts.len();
        let mut jobs = vec![first];
        while texts < b.max_batch {
            let next = match rx.try_recv() {
                Ok(job) => job,
                Err(mpsc::error::TryRecvError::Disconnected) => break,
                Err(mpsc::error::TryRecvError::Empty) => {
                    match tokio::time::timeout_at(deadline, rx.recv()).await {
                        Ok(Some(job)) => job,
                        Ok(None) | Err(_) => break,
                    }
                }
            };
            if texts + next.texts.len() > b.max_batch {
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
    let k = pipeline.net().outputs();
    match outputs {
        Ok(outputs) if k > 0 && outputs.len() == texts.len() * k => {
            let mut rows = outputs.chunks_exact(k);
            for job in jobs {
                let predictions: Vec<PredictionOut> = rows
                    .by_ref()
                    .take(job.texts.len())
                    .map(|row| PredictionOut::new(pipeline.decide(row), job.top_k))
                    .collect();
                let body = ClassifyResponse {
                    model: name,
                    version: &model.version,
                    predictions,
                };
                let reply = serde_json::to_vec(&body)
                    .map(Bytes::from)
                    .map_err(|e| ApiError::internal(format!("cannot encode the response: {e}")));
                // The requester may have given up meanwhile; nothing to do then.
                let _ = job.reply.send(reply);
            }
        }
        other => {
            let message = match other {
                Err(e) => format!("inference failed: {e}"),
                Ok(_) => "inference returned the wrong number of outputs".to_string(),
            };
            tracing::error!(model = %name, %message, "batch failed");
            for job in jobs {
                let _ = job.reply.send(Err(ApiError::internal(message.clone())));
            }
        }
    }
}

#[derive(Serialize)]
struct ClassifyResponse<'a> {
    model: &'a str,
    version: &'a str,
    predictions: Vec<PredictionOut>,
}

/// A prediction as the API answers it; scores keep their order (label order, or best first
/// with `top_k`).
#[derive(Serialize)]
#[serde(untagged)]
enum PredictionOut {
    Class {
        label: String,
        score: f32,
        #[serde(serialize_with = "ordered_map")]
        scores: Vec<(String, f32)>,
    },
    Labels {
        label: Vec<String>,
        score: f32,
        #[serde(serialize_with = "ordered_map")]
        scores: Vec<(String, f32)>,
    },
    Value {
        value: f32,
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
            },
            Prediction::Labels {
                labels,
                score,
                scores,
            } => PredictionOut::Labels {
                label: labels,
                score,
                scores: keep(scores),
            },
            Prediction::Value(value) => PredictionOut::Value { value },
        }
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
    fn regression_is_a_value() {
        let json =
            serde_json::to_string(&PredictionOut::new(Prediction::Value(1.5), Some(1))).unwrap();
        assert_eq!(json, r#"{"value":1.5}"#);
    }
}
