//! What every handler shares: [`AppState`] (the served models, the store, limits, metrics and
//! settings), the per-request [`Limits`] and the dashboard's [`MetaCache`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::http::StatusCode;
use flywheel_model::artifact::ArtifactMeta;
use flywheel_store::Store;
use tokio::sync::Semaphore;

use crate::error::ApiError;
use crate::metrics::{Metrics, ModelGauge};
use crate::models::{Batching, ModelSlot};

/// Versions whose metadata the dashboard keeps in memory.
const META_CACHE: usize = 256;

/// Per-request limits.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    /// Most texts in one request.
    pub max_inputs: usize,
    /// Most characters in one text.
    pub max_chars: usize,
    /// Largest request body in bytes.
    pub max_body_bytes: usize,
    /// Time limit of a request: body upload, queueing and inference.
    pub timeout: Duration,
}

/// Everything the handlers share.
pub(crate) struct AppState {
    /// The served models by name (replaced as a whole when the registry adds one).
    pub models: ArcSwap<BTreeMap<String, Arc<ModelSlot>>>,
    /// Starts the batching worker of a model added while serving.
    pub batching: Batching,
    /// The store, when serving from one: keys, limits, metering and the registry.
    pub store: Option<Store>,
    /// With a store: keys, plans and grants in memory, and the metering queue.
    pub accounts: Option<crate::accounts::Accounts>,
    /// One registry sync at a time.
    pub sync_lock: tokio::sync::Mutex<()>,
    /// Registry versions that failed to load (not retried).
    pub registry_failed: Mutex<BTreeSet<(String, i64)>>,
    /// How often the registry is polled.
    pub registry_poll: Duration,
    /// Per-request limits.
    pub limits: Limits,
    /// Prometheus counters and histograms.
    pub metrics: Arc<Metrics>,
    /// One permit per classification or explanation request being served.
    pub concurrency: Arc<Semaphore>,
    /// The number of those permits.
    pub max_concurrency: usize,
    /// SHA-256 of the admin token; `None` disables the admin endpoints.
    pub admin_token_sha256: Option<[u8; 32]>,
    /// Set once shutdown has begun (`/readyz` answers 503).
    pub draining: AtomicBool,
    /// Fraction of classify requests whose predictions are logged.
    pub log_rate: f64,
    /// The logging rate of a model whose drift monitor alarms (if above `log_rate`).
    pub drift_log_rate: f64,
    /// Redact personal data before storing texts.
    pub redact: bool,
    /// Background retraining settings.
    pub retrain: crate::AutoRetrain,
    /// Connections open at once.
    pub max_connections: usize,
    /// Idle connections are closed after this.
    pub idle_timeout: Duration,
    /// Model metadata the dashboard has read from the registry.
    pub dashboard_meta: MetaCache,
    /// With a store: the runner of training and batch jobs.
    pub jobs: Option<crate::worker::Jobs>,
}

impl AppState {
    /// Name, version and queue depth of every served model.
    pub fn gauges(&self) -> Vec<ModelGauge> {
        self.models
            .load()
            .values()
            .map(|slot| {
                let current = slot.current.load();
                ModelGauge {
                    name: slot.name.clone(),
                    version: current.version.clone(),
                    created_at: current.artifact.meta.created_at.clone(),
                    queue_depth: slot.queue_depth(),
                    drift: current.drift.as_ref().map(|m| m.status()),
                }
            })
            .collect()
    }

    /// Share of `model`'s requests whose predictions are logged for review: the server's rate,
    /// raised to the drift alarm's rate while the model's monitor alarms.
    pub fn log_rate_of(&self, model: &str) -> f64 {
        let alarmed = self.models.load().get(model).is_some_and(|slot| {
            slot.current
                .load()
                .drift
                .as_ref()
                .is_some_and(|m| m.alarmed())
        });
        if alarmed {
            self.log_rate.max(self.drift_log_rate)
        } else {
            self.log_rate
        }
    }

    /// The served model `name`; 404 `model_not_found` when there is none.
    pub fn model_slot(&self, name: &str) -> Result<Arc<ModelSlot>, ApiError> {
        self.models.load().get(name).cloned().ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "model_not_found",
                format!("no model named '{name}'; GET /v1/models lists the models served"),
            )
            .param("model")
        })
    }
}

/// Metadata of registry versions already read (versions never change once pushed), at most
/// [`META_CACHE`] of them.
#[derive(Default)]
pub(crate) struct MetaCache(Mutex<HashMap<(String, i64), Arc<ArtifactMeta>>>);

impl MetaCache {
    /// The metadata of `name` version `version`, if it was read before.
    pub fn get(&self, name: &str, version: i64) -> Option<Arc<ArtifactMeta>> {
        let cache = self.0.lock().ok()?;
        cache.get(&(name.to_string(), version)).cloned()
    }

    /// Keeps the metadata of `name` version `version` (emptying a full cache first).
    pub fn insert(&self, name: &str, version: i64, meta: Arc<ArtifactMeta>) {
        if let Ok(mut cache) = self.0.lock() {
            if cache.len() >= META_CACHE {
                cache.clear();
            }
            cache.insert((name.to_string(), version), meta);
        }
    }
}
