//! The flywheel HTTP API: `POST /v1/classify` with micro-batched inference on a dedicated
//! thread pool, `POST /v1/explain` (token attributions, as `flywheel explain`), hot model swap
//! (admin endpoint and SIGHUP), Prometheus metrics, an OpenAPI document, hard limits with JSON
//! errors, request ids and graceful shutdown.
//!
//! ```no_run
//! use flywheel_server::{ServerConfig, ModelSource};
//! let config = ServerConfig {
//!     models: vec![ModelSource { name: "spam".into(), path: "spam.fw".into() }],
//!     ..ServerConfig::default()
//! };
//! flywheel_server::run(config, "127.0.0.1:8080".parse().unwrap(), |addr| {
//!     eprintln!("listening on http://{addr}")
//! })
//! .unwrap();
//! ```

#![warn(missing_docs)]

mod access;
mod accounts;
mod api;
pub mod audit;
mod autoretrain;
mod conn;
mod dashboard;
mod datasets;
pub mod drift;
mod error;
mod feedback;
mod jobs;
mod metrics;
mod models;
mod registry;
pub mod retrain;
mod service;
mod state;
mod wire;
mod worker;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

pub use api::OPENAPI;
pub use error::{ApiError, ServerError};
pub use metrics::{Metrics, ModelGauge};
pub use models::LoadedModel;

use models::{Batching, SlotSource};
use state::{AppState, Limits};

/// A model to serve: its name in the API and its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSource {
    /// The name clients use (`[A-Za-z0-9_.-]`, 1–64 characters).
    pub name: String,
    /// The model file.
    pub path: PathBuf,
}

impl std::str::FromStr for ModelSource {
    type Err = ServerError;

    /// Parses `NAME=PATH`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, path) = s
            .split_once('=')
            .ok_or_else(|| ServerError::Config(format!("--model takes NAME=PATH, got '{s}'")))?;
        let source = ModelSource {
            name: name.to_string(),
            path: PathBuf::from(path),
        };
        source.validate()?;
        Ok(source)
    }
}

impl ModelSource {
    fn validate(&self) -> Result<(), ServerError> {
        let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
        if self.name.is_empty() || self.name.len() > 64 || !self.name.chars().all(ok_char) {
            return Err(ServerError::Config(format!(
                "model name '{}' must be 1-64 characters of A-Z, a-z, 0-9, '_', '-' or '.'",
                self.name
            )));
        }
        if self.path.as_os_str().is_empty() {
            return Err(ServerError::Config(format!(
                "model '{}' has an empty path",
                self.name
            )));
        }
        Ok(())
    }
}

/// Server settings; [`ServerConfig::default`] gives the documented defaults.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The models to serve (at least one; names unique).
    pub models: Vec<ModelSource>,
    /// Inference threads (a dedicated rayon pool) [default: all cores].
    pub threads: usize,
    /// Threads of the async runtime that handles connections (used by [`run`]) [default: 1].
    pub io_threads: usize,
    /// Most texts in one inference batch [default: 64].
    pub max_batch: usize,
    /// How long a batch may wait for more requests after its first one [default: 0]. Requests
    /// that arrive while every inference thread is busy are batched without any wait; a wait
    /// only trades latency for bigger batches when a thread is idle. Waits under 2 ms do not
    /// use tokio's 1 ms timer (the batcher yields to the runtime until the deadline).
    pub max_wait: Duration,
    /// Requests that may wait in each model's queue; more get 503 [default: 1024].
    pub queue_capacity: usize,
    /// Most texts in one request [default: 256].
    pub max_inputs: usize,
    /// Most characters in one text [default: 20000].
    pub max_chars: usize,
    /// Largest request body in bytes [default: 2 MiB].
    pub max_body_bytes: usize,
    /// Time limit of a classification request, queueing included [default: 10 s].
    pub timeout: Duration,
    /// Classification requests served at once; more get 503 at once [default: 256].
    pub max_concurrency: usize,
    /// Bearer token of the admin endpoints; `None` disables them. With a store it also
    /// authorises every API call (no limits, no metering).
    pub admin_token: Option<String>,
    /// Serve from a store (`sqlite://PATH` or `postgres://...`) instead of model files: every
    /// registered model's champion, API keys required, plan limits enforced, usage metered.
    pub database_url: Option<String>,
    /// How often the registry is polled for new champions and models [default: 1 s].
    pub registry_poll: Duration,
    /// Fraction of classify requests whose predictions are kept for review (with a store;
    /// chosen by a hash of the request id, so a retry is sampled the same way). A request
    /// with `"log": true` is always kept [default: 0.05].
    pub log_predictions: f64,
    /// Replace personal data (e-mail, phone, card, ID numbers, IPs, URL credentials) by typed
    /// placeholders before any text is stored [default: true].
    pub redact: bool,
    /// Retraining in the background (with a store).
    pub retrain: AutoRetrain,
    /// Drift monitoring of the served models.
    pub drift: drift::DriftConfig,
    /// Connections open at once; more wait in the kernel's accept queue [default: 1024].
    pub max_connections: usize,
    /// A connection that neither reads nor writes for this long is closed (slow or idle
    /// clients); must exceed `timeout` [default: 60 s].
    pub idle_timeout: Duration,
    /// Training and batch jobs this process runs at once, each on a thread of its own (with a
    /// store; 0 runs none here, other replicas still do) [default: 1].
    pub train_workers: usize,
    /// How long a job's lease lasts without renewal: a job whose worker died is taken up again
    /// after this [default: 30 s].
    pub job_lease: Duration,
    /// Rows a batch job classifies per committed chunk (results and usage in one transaction;
    /// a batch resumes after its last chunk) [default: 500].
    pub batch_chunk: usize,
}

/// When the server retrains a model by itself: after `after` new feedback items and/or every
/// `every` (when there is new feedback), one job per model at a time across replicas.
#[derive(Debug, Clone)]
pub struct AutoRetrain {
    /// Retrain once this many feedback items arrived since the last retrain.
    pub after: Option<u64>,
    /// Retrain this long after the last retrain when there is new feedback.
    pub every: Option<Duration>,
    /// Training threads of a background retrain (its own pool; serving keeps its threads)
    /// [default: 1].
    pub threads: usize,
    /// When a challenger is promoted.
    pub policy: flywheel_model::PromotionPolicy,
}

impl Default for AutoRetrain {
    fn default() -> Self {
        AutoRetrain {
            after: None,
            every: None,
            threads: 1,
            policy: flywheel_model::PromotionPolicy::default(),
        }
    }
}

impl AutoRetrain {
    /// Whether background retraining is on.
    pub fn enabled(&self) -> bool {
        self.after.is_some() || self.every.is_some()
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            models: Vec::new(),
            threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            io_threads: 1,
            max_batch: 64,
            max_wait: Duration::ZERO,
            queue_capacity: 1024,
            max_inputs: 256,
            max_chars: 20_000,
            max_body_bytes: 2 * 1024 * 1024,
            timeout: Duration::from_secs(10),
            max_concurrency: 256,
            admin_token: None,
            database_url: None,
            registry_poll: Duration::from_secs(1),
            log_predictions: 0.05,
            redact: true,
            retrain: AutoRetrain::default(),
            drift: drift::DriftConfig::default(),
            max_connections: 1024,
            idle_timeout: Duration::from_secs(60),
            train_workers: 1,
            job_lease: Duration::from_secs(30),
            batch_chunk: 500,
        }
    }
}

impl ServerConfig {
    /// Checks that the settings are usable.
    pub fn validate(&self) -> Result<(), ServerError> {
        match (self.models.is_empty(), &self.database_url) {
            (true, None) => {
                return Err(ServerError::Config(
                    "no model to serve: pass --model NAME=PATH or --database-url URL".into(),
                ))
            }
            (false, Some(_)) => {
                return Err(ServerError::Config(
                    "--model and --database-url do not mix: with a store, every model comes \
                     from its registry (flywheel models push FILE --name NAME)"
                        .into(),
                ))
            }
            _ => {}
        }
        if !(0.0..=1.0).contains(&self.log_predictions) {
            return Err(ServerError::Config(
                "--log-predictions must be a fraction between 0 and 1".into(),
            ));
        }
        if self.retrain.enabled() && self.database_url.is_none() {
            return Err(ServerError::Config(
                "--retrain-after/--retrain-every need a store (--database-url): feedback and \
                 the registry live there"
                    .into(),
            ));
        }
        if self.retrain.after == Some(0) || self.retrain.every.is_some_and(|d| d.is_zero()) {
            return Err(ServerError::Config(
                "--retrain-after and --retrain-every must be positive".into(),
            ));
        }
        if self.job_lease < Duration::from_secs(1) {
            return Err(ServerError::Config(
                "--job-lease-s must be at least 1".into(),
            ));
        }
        if self.registry_poll.is_zero() {
            return Err(ServerError::Config(
                "--registry-poll-ms must be at least 1".into(),
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for m in &self.models {
            m.validate()?;
            if !seen.insert(&m.name) {
                return Err(ServerError::Config(format!(
                    "model name '{}' is given twice",
                    m.name
                )));
            }
        }
        let positive = [
            ("threads", self.threads),
            ("io-threads", self.io_threads),
            ("max-batch", self.max_batch),
            ("queue-capacity", self.queue_capacity),
            ("max-inputs", self.max_inputs),
            ("max-chars", self.max_chars),
            ("max-body-bytes", self.max_body_bytes),
            ("max-concurrency", self.max_concurrency),
            ("retrain-threads", self.retrain.threads),
            ("max-connections", self.max_connections),
            ("batch-chunk", self.batch_chunk),
        ];
        for (name, v) in positive {
            if v == 0 {
                return Err(ServerError::Config(format!("--{name} must be at least 1")));
            }
        }
        if self.max_concurrency > Semaphore::MAX_PERMITS {
            return Err(ServerError::Config("--max-concurrency is too large".into()));
        }
        if self.idle_timeout <= self.timeout {
            return Err(ServerError::Config(
                "--idle-timeout-s must exceed the request timeout (--timeout-ms)".into(),
            ));
        }
        if self.max_connections > Semaphore::MAX_PERMITS {
            return Err(ServerError::Config("--max-connections is too large".into()));
        }
        if self.timeout.is_zero() {
            return Err(ServerError::Config(
                "--timeout-ms must be at least 1".into(),
            ));
        }
        if self
            .admin_token
            .as_ref()
            .is_some_and(|t| t.trim().len() < 16)
        {
            return Err(ServerError::Config(
                "the admin token must have at least 16 characters".into(),
            ));
        }
        Ok(())
    }
}

/// A server with its models loaded, ready to serve.
pub struct Server {
    state: Arc<AppState>,
}

impl Server {
    /// Validates the settings, starts the inference threads and loads every model (the files
    /// are read off the async threads; with a store, every registry champion). Must run
    /// inside a tokio runtime.
    pub async fn load(config: ServerConfig) -> Result<Server, ServerError> {
        config.validate()?;
        let metrics = Arc::new(Metrics::default());
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(config.threads)
            .thread_name(|i| format!("flywheel-infer-{i}"))
            .panic_handler(|_| {
                tracing::error!("an inference thread panicked; its requests get a 500")
            })
            .build()?;
        let batching = Batching {
            pool: Arc::new(pool),
            permits: Arc::new(Semaphore::new(config.threads)),
            max_batch: config.max_batch,
            max_wait: config.max_wait,
            queue_capacity: config.queue_capacity,
            metrics: Arc::clone(&metrics),
            drift: config.drift.clone(),
        };
        let mut models = BTreeMap::new();
        for source in &config.models {
            let path = source.path.clone();
            let loaded = tokio::task::spawn_blocking(move || LoadedModel::load(&path))
                .await
                .map_err(|e| {
                    ServerError::Config(format!("loading model '{}' failed: {e}", source.name))
                })?
                .map_err(|e| ServerError::Load {
                    name: source.name.clone(),
                    source: Box::new(e),
                })?;
            let slot =
                batching.start_loaded(&source.name, SlotSource::File(source.path.clone()), loaded);
            tracing::info!(model = %source.name, version = %slot.current.load().version,
                path = %source.path.display(), "model loaded");
            models.insert(source.name.clone(), Arc::new(slot));
        }
        let store = match &config.database_url {
            Some(url) => Some(flywheel_store::Store::open(url).await?),
            None => None,
        };
        let accounts = match &store {
            Some(store) => Some(accounts::Accounts::open(store).await?),
            None => None,
        };
        let state = Arc::new(AppState {
            models: ArcSwap::from_pointee(models),
            batching,
            store,
            accounts,
            sync_lock: tokio::sync::Mutex::new(()),
            registry_failed: Default::default(),
            registry_poll: config.registry_poll,
            limits: Limits {
                max_inputs: config.max_inputs,
                max_chars: config.max_chars,
                max_body_bytes: config.max_body_bytes,
                timeout: config.timeout,
            },
            metrics,
            concurrency: Arc::new(Semaphore::new(config.max_concurrency)),
            max_concurrency: config.max_concurrency,
            admin_token_sha256: config
                .admin_token
                .as_deref()
                .map(|t| access::sha256(t.trim())),
            draining: AtomicBool::new(false),
            log_rate: config.log_predictions,
            drift_log_rate: config.drift.alarm_log_rate,
            redact: config.redact,
            retrain: config.retrain.clone(),
            max_connections: config.max_connections,
            idle_timeout: config.idle_timeout,
            dashboard_meta: Default::default(),
            jobs: config.database_url.is_some().then(|| {
                worker::Jobs::new(config.train_workers, config.job_lease, config.batch_chunk)
            }),
        });
        if let Some(store) = &state.store {
            let report = registry::sync(&state, store).await?;
            for (name, why) in &report.failed {
                tracing::error!(model = %name, error = %why, "registry champion not served");
            }
            tracing::info!(
                models = report.installed.len(),
                backend = store.backend(),
                "serving the registry's champions"
            );
        }
        Ok(Server { state })
    }

    /// The HTTP routes over this server's state, to embed in another axum application or to
    /// drive in-process (tests, fuzzing). The registry poller, the background retrainer and
    /// the SIGHUP reloader run only under [`Server::serve`].
    pub fn router(&self) -> axum::Router {
        api::router(Arc::clone(&self.state))
    }

    /// The name and version of every model served.
    pub fn models(&self) -> Vec<ModelGauge> {
        self.state.gauges()
    }

    /// Serves HTTP on `listener` until `shutdown` completes, then stops accepting connections
    /// and waits for the requests in flight to finish. SIGHUP reloads every model from its
    /// file (Unix).
    pub async fn serve<F>(self, listener: TcpListener, shutdown: F) -> Result<(), ServerError>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let state = self.state;
        let hup = spawn_sighup_reloader(Arc::clone(&state));
        let poller = state
            .store
            .clone()
            .map(|store| registry::spawn_poller(Arc::clone(&state), store, state.registry_poll));
        let access_poller = access::spawn_access_poller(Arc::clone(&state));
        let retrainer = match &state.store {
            Some(store) if state.retrain.enabled() => {
                Some(autoretrain::spawn(Arc::clone(&state), store.clone()))
            }
            _ => None,
        };
        let runner = state
            .store
            .clone()
            .and_then(|store| jobs::spawn_runner(Arc::clone(&state), store));
        let app = api::router(Arc::clone(&state));
        let draining = Arc::clone(&state);
        let listener =
            conn::LimitedListener::new(listener, state.max_connections, state.idle_timeout);
        let result = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                shutdown.await;
                draining.draining.store(true, Ordering::Relaxed);
                tracing::info!("shutting down: draining requests in flight");
            })
            .await;
        for task in [hup, poller, access_poller, retrainer, runner]
            .into_iter()
            .flatten()
        {
            task.abort();
        }
        if let Some(store) = &state.store {
            store.close().await;
        }
        tracing::info!("server stopped");
        result.map_err(ServerError::Io)
    }
}

/// Loads the models ([`Server::load`]) and serves on `listener` until `shutdown` completes
/// ([`Server::serve`]).
pub async fn serve<F>(
    config: ServerConfig,
    listener: TcpListener,
    shutdown: F,
) -> Result<(), ServerError>
where
    F: Future<Output = ()> + Send + 'static,
{
    Server::load(config).await?.serve(listener, shutdown).await
}

#[cfg(unix)]
fn spawn_sighup_reloader(state: Arc<AppState>) -> Option<tokio::task::JoinHandle<()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; reload through the admin endpoint");
            return None;
        }
    };
    Some(tokio::spawn(async move {
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading every model");
            if let Some(store) = &state.store {
                if let Err(e) = registry::sync(&state, store).await {
                    tracing::warn!(error = %e, "registry sync failed");
                }
            }
            let slots: Vec<_> = state.models.load().values().cloned().collect();
            for slot in slots {
                if matches!(slot.source, SlotSource::File(_)) {
                    // Failures are logged and counted; the old version keeps serving.
                    let _ = slot.reload(&state.metrics).await;
                }
            }
        }
    }))
}

#[cfg(not(unix))]
fn spawn_sighup_reloader(_state: Arc<AppState>) -> Option<tokio::task::JoinHandle<()>> {
    None
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// Starts a runtime with `config.io_threads` threads, loads the models, listens on `addr`,
/// calls `on_listening` with the bound address and serves until SIGINT or SIGTERM.
pub fn run(
    config: ServerConfig,
    addr: SocketAddr,
    on_listening: impl FnOnce(SocketAddr),
) -> Result<(), ServerError> {
    config.validate()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.io_threads)
        .thread_name("flywheel-io")
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let server = Server::load(config).await?;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Bind {
                addr: addr.to_string(),
                source,
            })?;
        on_listening(listener.local_addr()?);
        server.serve(listener, shutdown_signal()).await
    })
}
