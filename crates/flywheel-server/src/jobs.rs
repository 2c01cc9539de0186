//! Work that outlives a request: training jobs and batch jobs, queued in the store with leases.
//!
//! Any replica may run a job: its runner claims the oldest queued job (or one whose worker
//! stopped renewing its lease) when one of its `train_workers` slots is free, runs it on a
//! thread of its own (never an inference thread), renews the lease while it runs and records
//! its progress as events. What a job produces is committed together with the check that the
//! lease is still held (see `flywheel_store::jobs`), so a worker killed at any point leaves
//! either nothing or the whole result, and another worker completes the job.
//!
//! A training job splits the dataset (stratified, seeded) into training and evaluation rows,
//! trains one family or searches them within the budget (autotune), evaluates on the held-out
//! rows and stores the version with its report, base data and holdout; its seconds are metered.
//! A batch job classifies a dataset's texts in chunks; each chunk's results and its usage event
//! are one transaction that resumes where the stored results end, so every row is classified and
//! metered exactly once.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use flywheel_data::Record;
use flywheel_model::autotune::stratified_split;
use flywheel_model::{
    autotune, evaluate, families, Artifact, AutotuneEvent, AutotuneOptions, Family, LabelSet,
    Metric, TrainEvent,
};
use flywheel_store::{
    BatchChunk, DataRow, JobInfo, JobKind, NewJob, Store, TrainedModel, UsageEvent,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::access::{now_unix, store_unavailable};
use crate::datasets::{owned, quotas, Owner};
use crate::error::ApiError;
use crate::retrain::records;
use crate::state::AppState;
use crate::worker::{idle_priority, Jobs};

/// How often an idle runner looks for work (a job created on this replica wakes it at once).
const POLL: Duration = Duration::from_secs(1);
/// Staging uploads older than this are abandoned (their process died mid-upload).
const STAGING_MAX_AGE: i64 = 6 * 3600;
/// Separator of several labels in one field (as `flywheel train`'s default).
const LABEL_SEP: &str = "|";
/// Shortest and longest budget of a training job, seconds.
const BUDGET_RANGE: (f64, f64) = (5.0, 86_400.0);
/// The families a training job may ask for besides `autotune` (the encoder families need a
/// pretrained encoder on the server, zero-shot no training at all).
const TRAINABLE: [Family; 6] = [
    Family::Linear,
    Family::FastText,
    Family::Lstm,
    Family::Gru,
    Family::BiLstm,
    Family::Cnn,
];

/// A training job's settings, as stored with the job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct TrainSettings {
    /// `autotune` or a family name.
    pub family: String,
    /// Planned seconds (autotune's search and final training).
    pub budget_seconds: f64,
    /// Seed of the split and the training.
    pub seed: u64,
    /// Share of the rows held out to evaluate the model (its report) and freeze as holdout.
    pub eval_fraction: f64,
    /// Epochs (families trained by epochs), overriding the family's default.
    pub epochs: Option<usize>,
    /// The tenant (usage events name it).
    pub tenant: String,
    /// The key that asked (usage events name it).
    pub key_prefix: String,
}

/// A batch job's settings, as stored with the job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct BatchSettings {
    /// The tenant (usage events name it).
    pub tenant: String,
    /// The key that asked (usage events name it).
    pub key_prefix: String,
}

/// A validated `POST /v1/training-jobs`.
#[derive(Debug, Clone)]
pub(crate) struct TrainingRequest {
    /// The dataset.
    pub dataset: i64,
    /// The model's name (`None`: `TENANT.DATASET`).
    pub name: Option<String>,
    /// `autotune` or a family name.
    pub family: String,
    /// Planned seconds.
    pub budget_seconds: f64,
    /// Seed.
    pub seed: u64,
    /// Held-out share.
    pub eval_fraction: f64,
    /// Epochs override.
    pub epochs: Option<usize>,
}

fn new_job_id(prefix: &str) -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    format!("{prefix}_{ms:012x}{:016x}", rand::random::<u64>())
}

fn conflict(kind: &'static str, message: String) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, kind, message)
}

fn limit_reached(message: String) -> ApiError {
    ApiError::new(StatusCode::TOO_MANY_REQUESTS, "limit_reached", message)
}

fn create_error(e: flywheel_store::Error) -> ApiError {
    match e {
        flywheel_store::Error::LimitReached(m) => limit_reached(m),
        other => store_unavailable(&other),
    }
}

fn valid_model_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// Queues a training job for `owner`: 202 with the job, or why not.
pub(crate) async fn create_training(
    state: &AppState,
    store: &Store,
    owner: &Owner,
    req: TrainingRequest,
) -> Result<JobInfo, ApiError> {
    let dataset = owned(store, owner, req.dataset).await?;
    let labelled = serde_json::from_str::<Value>(&dataset.summary)
        .ok()
        .and_then(|v| v.get("labelled").and_then(Value::as_bool))
        .unwrap_or(false);
    if !labelled {
        return Err(ApiError::unprocessable(
            "unlabelled_dataset",
            format!(
                "dataset {} was uploaded as texts to classify (labelled=false); upload labelled rows to train",
                dataset.id
            ),
        )
        .param("dataset"));
    }
    if req.family != "autotune" && !TRAINABLE.iter().any(|f| f.name() == req.family) {
        let names: Vec<&str> = TRAINABLE.iter().map(|f| f.name()).collect();
        return Err(ApiError::invalid(format!(
            "model {:?}: use \"autotune\" or one of {}",
            req.family,
            names.join(", ")
        ))
        .param("model"));
    }
    if !(BUDGET_RANGE.0..=BUDGET_RANGE.1).contains(&req.budget_seconds) {
        return Err(ApiError::invalid(format!(
            "budget must be between {} and {} seconds",
            BUDGET_RANGE.0, BUDGET_RANGE.1
        ))
        .param("budget"));
    }
    if !(req.eval_fraction > 0.0 && req.eval_fraction < 0.5) {
        return Err(
            ApiError::invalid("settings.eval_fraction must be in (0, 0.5)")
                .param("settings.eval_fraction"),
        );
    }
    let name = req
        .name
        .clone()
        .unwrap_or_else(|| format!("{}.{}", owner.tenant, dataset.name));
    if !valid_model_name(&name) {
        return Err(ApiError::invalid(format!(
            "name {name:?}: use 1-64 characters of A-Z, a-z, 0-9, '_', '-' or '.'"
        ))
        .param("name"));
    }
    let exists = store
        .model_exists(&name)
        .await
        .map_err(|e| store_unavailable(&e))?;
    let owner_of = store
        .model_owner(&name)
        .await
        .map_err(|e| store_unavailable(&e))?;
    if exists && owner_of != Some(owner.tenant_id) {
        return Err(conflict(
            "model_name_taken",
            format!("a model named {name:?} exists and is not yours; choose another name"),
        )
        .param("name"));
    }
    let quotas = quotas(store, owner).await?;
    let now = now_unix();
    let used = store
        .training_seconds_since(&owner.tenant, flywheel_store::month_bounds(now).0)
        .await
        .map_err(|e| store_unavailable(&e))?;
    if used as f64 + req.budget_seconds > quotas.training_seconds_per_month as f64 {
        return Err(limit_reached(format!(
            "the plan allows {} seconds of training a month and {used} are used; ask for a \
             budget of at most {} seconds",
            quotas.training_seconds_per_month,
            (quotas.training_seconds_per_month - used).max(0)
        )));
    }
    let settings = TrainSettings {
        family: req.family,
        budget_seconds: req.budget_seconds,
        seed: req.seed,
        eval_fraction: req.eval_fraction,
        epochs: req.epochs,
        tenant: owner.tenant.clone(),
        key_prefix: owner.key_prefix.clone(),
    };
    let job = NewJob {
        id: new_job_id("job"),
        tenant_id: owner.tenant_id,
        kind: JobKind::Training,
        upload_id: dataset.id,
        model: name,
        settings: serde_json::to_string(&settings)
            .map_err(|e| ApiError::internal(e.to_string()))?,
        now,
    };
    enqueue(state, store, &job, quotas.max_active_jobs).await
}

/// Queues `job` unless its tenant has `max_active` jobs already (429), and wakes this
/// process's runner.
async fn enqueue(
    state: &AppState,
    store: &Store,
    job: &NewJob,
    max_active: i64,
) -> Result<JobInfo, ApiError> {
    let info = store
        .create_job(job, max_active)
        .await
        .map_err(create_error)?;
    if let Some(jobs) = &state.jobs {
        jobs.wake.notify_one();
    }
    Ok(info)
}

/// Queues a batch job for `owner`: classify dataset `dataset` with model `model`.
pub(crate) async fn create_batch(
    state: &AppState,
    store: &Store,
    owner: &Owner,
    caller: &crate::access::Caller,
    model: &str,
    dataset: i64,
) -> Result<JobInfo, ApiError> {
    let data = owned(store, owner, dataset).await?;
    state.model_slot(model)?;
    state.check_access(caller, model)?;
    let quotas = quotas(store, owner).await?;
    let settings = BatchSettings {
        tenant: owner.tenant.clone(),
        key_prefix: owner.key_prefix.clone(),
    };
    let job = NewJob {
        id: new_job_id("batch"),
        tenant_id: owner.tenant_id,
        kind: JobKind::Batch,
        upload_id: data.id,
        model: model.to_string(),
        settings: serde_json::to_string(&settings)
            .map_err(|e| ApiError::internal(e.to_string()))?,
        now: now_unix(),
    };
    enqueue(state, store, &job, quotas.max_active_jobs).await
}

/// `owner`'s job `id` of `kind`: 404 when it does not exist, is another tenant's or of the
/// other kind (not told apart).
pub(crate) async fn owned_job(
    store: &Store,
    owner: &Owner,
    id: &str,
    kind: JobKind,
) -> Result<JobInfo, ApiError> {
    match store.get_job(id).await {
        Ok(Some(job)) if job.tenant_id == owner.tenant_id && job.kind == kind => Ok(job),
        Ok(_) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "job_not_found",
            format!(
                "no {} job {id:?}; GET /v1/{} lists yours",
                kind.as_str(),
                match kind {
                    JobKind::Training => "training-jobs",
                    JobKind::Batch => "batches",
                }
            ),
        )),
        Err(e) => Err(store_unavailable(&e)),
    }
}

/// The evaluation report (HTML) of `owner`'s training job `id`: 404 while it has none.
pub(crate) async fn report(store: &Store, owner: &Owner, id: &str) -> Result<String, ApiError> {
    owned_job(store, owner, id, JobKind::Training).await?;
    store
        .job_report(id)
        .await
        .map_err(|e| store_unavailable(&e))?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "report_not_ready",
                format!("job {id:?} has no report yet: it is written when the job succeeds"),
            )
        })
}

/// A job as the API answers it.
pub(crate) fn job_json(job: &JobInfo) -> Value {
    let parse = |s: &str| serde_json::from_str::<Value>(s).unwrap_or(Value::Null);
    let mut settings = parse(&job.settings);
    if let Some(map) = settings.as_object_mut() {
        map.remove("tenant");
        map.remove("key_prefix");
    }
    json!({
        "id": job.id,
        "object": match job.kind { JobKind::Training => "training_job", JobKind::Batch => "batch" },
        "state": job.state,
        "dataset": job.upload_id,
        "model": job.model,
        "settings": settings,
        "progress": parse(&job.progress),
        "result": job.result.as_deref().map(parse),
        "error": job.error,
        "attempts": job.attempts,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
    })
}

/// Makes version `version` of model `name` its champion, for the admin or the tenant that owns
/// the model (404 for anyone else: another tenant's model is not told apart from none), and
/// serves it here at once (other replicas follow within their registry poll).
pub(crate) async fn deploy(
    state: &AppState,
    store: &Store,
    caller: &crate::access::Caller,
    name: &str,
    version: i64,
) -> Result<(), ApiError> {
    let owner = store
        .model_owner(name)
        .await
        .map_err(|e| store_unavailable(&e))?;
    let allowed = match caller {
        crate::access::Caller::Admin => true,
        crate::access::Caller::Key(key) => owner == Some(key.tenant_id),
        crate::access::Caller::Open => false,
    };
    if !allowed {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "model_not_found",
            format!("no model {name:?} of yours; a training job creates one"),
        ));
    }
    match store
        .set_alias(name, flywheel_store::Alias::Champion, version)
        .await
    {
        Ok(()) => {}
        Err(flywheel_store::Error::NotFound(m)) => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "version_not_found",
                format!("{m} not found"),
            )
            .param("version"))
        }
        Err(e) => return Err(store_unavailable(&e)),
    }
    if let Err(e) = crate::registry::sync(state, store).await {
        tracing::warn!(error = %e, "registry sync after deploy failed; the poller retries");
    }
    state.access_changed().await;
    Ok(())
}

/// Starts the runner: claims jobs while a worker slot is free, sweeps abandoned uploads.
pub(crate) fn spawn_runner(
    state: Arc<AppState>,
    store: Store,
) -> Option<tokio::task::JoinHandle<()>> {
    let workers = state.jobs.as_ref()?.workers;
    if workers == 0 {
        return None;
    }
    Some(tokio::spawn(async move {
        let slots = Arc::new(tokio::sync::Semaphore::new(workers));
        let mut last_sweep = 0i64;
        let mut failing = false;
        loop {
            let Some(jobs) = state.jobs.as_ref() else {
                return;
            };
            let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
                return;
            };
            let now = now_unix();
            if now - last_sweep > 600 {
                last_sweep = now;
                match store.sweep_uploads(now - STAGING_MAX_AGE).await {
                    Ok(n) if n > 0 => tracing::info!(uploads = n, "removed abandoned uploads"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "sweeping abandoned uploads failed"),
                }
            }
            match store.claim_job(&jobs.holder, now, jobs.ttl()).await {
                Ok(Some(job)) => {
                    failing = false;
                    tracing::info!(job = %job.id, kind = job.kind.as_str(), attempt = job.attempts, "job claimed");
                    let (state, store) = (Arc::clone(&state), store.clone());
                    tokio::spawn(async move {
                        run(&state, &store, job).await;
                        drop(slot);
                    });
                }
                Ok(None) => {
                    failing = false;
                    drop(slot);
                    tokio::select! {
                        _ = tokio::time::sleep(POLL) => {}
                        _ = jobs.wake.notified() => {}
                    }
                }
                Err(e) => {
                    if !failing {
                        tracing::error!(error = %e, "claiming a job failed; retrying");
                    }
                    failing = true;
                    drop(slot);
                    tokio::time::sleep(POLL).await;
                }
            }
        }
    }))
}

/// What a job's thread reports to its supervisor.
#[derive(Default)]
struct Progress {
    /// The latest progress (JSON object).
    current: Option<Value>,
    /// Events not yet recorded.
    events: Vec<Value>,
}

/// Shared between a job's thread and its supervisor.
#[derive(Clone, Default)]
struct Shared {
    progress: Arc<Mutex<Progress>>,
    cancel: Arc<AtomicBool>,
}

impl Shared {
    fn set(&self, current: Value, event: Option<Value>) {
        if let Ok(mut p) = self.progress.lock() {
            p.current = Some(current);
            p.events.extend(event);
        }
    }

    fn take(&self) -> (Option<String>, Vec<String>) {
        match self.progress.lock() {
            Ok(mut p) => (
                p.current.as_ref().map(Value::to_string),
                p.events.drain(..).map(|e| e.to_string()).collect(),
            ),
            Err(_) => (None, Vec::new()),
        }
    }

    /// Stops the job's thread at its next progress report (it unwinds with [`Cancelled`]).
    fn check(&self) {
        if self.cancel.load(Ordering::Relaxed) {
            std::panic::resume_unwind(Box::new(Cancelled));
        }
    }
}

/// The payload a cancelled job's thread unwinds with (`resume_unwind` runs no panic hook).
struct Cancelled;

/// Why a job's work ended without a result.
enum Stop {
    /// Cancelled, or the lease was lost: nothing to record.
    Cancelled,
    /// Failed: recorded on the job.
    Failed(String),
}

/// Runs `work` on a thread of its own while renewing the job's lease and recording its
/// progress; a lost lease (cancelled or taken over) stops the work.
async fn supervise<T: Send + 'static>(
    jobs: &Jobs,
    store: &Store,
    job: &JobInfo,
    shared: &Shared,
    work: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, Stop> {
    let (tx, mut rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name(format!("flywheel-job-{}", job.kind.as_str()))
        .spawn(move || {
            idle_priority();
            let outcome = std::panic::catch_unwind(AssertUnwindSafe(work));
            let _ = tx.send(outcome);
        });
    if let Err(e) = spawned {
        return Err(Stop::Failed(format!("cannot start the job's thread: {e}")));
    }
    let mut beat = tokio::time::interval(jobs.beat());
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            outcome = &mut rx => {
                return match outcome {
                    Ok(Ok(Ok(value))) => Ok(value),
                    Ok(Ok(Err(message))) => Err(Stop::Failed(message)),
                    Ok(Err(payload)) if payload.is::<Cancelled>() => Err(Stop::Cancelled),
                    Ok(Err(_)) | Err(_) => Err(Stop::Failed("the job's thread panicked".into())),
                };
            }
            _ = beat.tick() => {
                let (current, events) = shared.take();
                let held = match store
                    .renew_job(&job.id, &jobs.holder, now_unix(), jobs.ttl(), current.as_deref(), &events)
                    .await
                {
                    Ok(h) => h,
                    Err(e) => {
                        tracing::warn!(job = %job.id, error = %e, "renewing a job's lease failed");
                        true
                    }
                };
                if !held {
                    tracing::info!(job = %job.id, "job cancelled or taken over; stopping it");
                    shared.cancel.store(true, Ordering::Relaxed);
                }
            }
        }
    }
}

async fn run(state: &AppState, store: &Store, job: JobInfo) {
    let Some(jobs) = state.jobs.as_ref() else {
        return;
    };
    let outcome = match job.kind {
        JobKind::Training => run_training(jobs, store, &job).await,
        JobKind::Batch => run_batch(state, jobs, store, &job).await,
    };
    match outcome {
        Ok(()) => tracing::info!(job = %job.id, "job finished"),
        Err(Stop::Cancelled) => tracing::info!(job = %job.id, "job stopped"),
        Err(Stop::Failed(message)) => {
            tracing::warn!(job = %job.id, error = %message, "job failed");
            if let Err(e) = store
                .fail_job(&job.id, &jobs.holder, &message, now_unix())
                .await
            {
                tracing::error!(job = %job.id, error = %e, "recording a job's failure failed; its lease will expire");
            }
        }
    }
}

/// What a training job's thread hands back.
struct Trained {
    bytes: Vec<u8>,
    report: String,
    result: Value,
    base: Vec<DataRow>,
    holdout: Vec<DataRow>,
}

async fn run_training(jobs: &Jobs, store: &Store, job: &JobInfo) -> Result<(), Stop> {
    let settings: TrainSettings = serde_json::from_str(&job.settings)
        .map_err(|e| Stop::Failed(format!("unreadable job settings: {e}")))?;
    let rows = store
        .upload_rows(job.upload_id, 0, i64::MAX)
        .await
        .map_err(|e| Stop::Failed(format!("reading the dataset failed: {e}")))?;
    if rows.is_empty() {
        return Err(Stop::Failed(format!(
            "dataset {} has no rows (it was deleted)",
            job.upload_id
        )));
    }
    let shared = Shared::default();
    let thread_shared = shared.clone();
    let (model, data_name) = (job.model.clone(), format!("dataset-{}", job.upload_id));
    let (tenant, key_prefix) = (settings.tenant.clone(), settings.key_prefix.clone());
    let started = Instant::now();
    let trained = supervise(jobs, store, job, &shared, move || {
        train(&rows, &settings, &model, &data_name, &thread_shared)
    })
    .await?;
    // The job's wall-clock seconds on its worker, which it holds alone.
    let seconds = started.elapsed().as_secs_f64().ceil() as i64;
    let usage = UsageEvent {
        id: format!("{}:training", job.id),
        tenant,
        key_prefix,
        model: job.model.clone(),
        version: 0,
        texts: 0,
        characters: 0,
        at: now_unix(),
        request_sha256: String::new(),
        training_seconds: seconds,
    };
    let mut result = trained.result;
    if let Some(map) = result.as_object_mut() {
        map.insert("training_seconds".into(), seconds.into());
    }
    let done = store
        .finish_training(
            &job.id,
            &jobs.holder,
            &TrainedModel {
                bytes: &trained.bytes,
                base: &trained.base,
                holdout: &trained.holdout,
                report_html: &trained.report,
                result: &result,
                usage: &usage,
            },
            now_unix(),
        )
        .await;
    match done {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(Stop::Cancelled),
        Err(flywheel_store::Error::AlreadyExists(m)) => Err(Stop::Failed(format!(
            "{m} belongs to another tenant; train under another name"
        ))),
        Err(e) => Err(Stop::Failed(format!("storing the model failed: {e}"))),
    }
}

/// Splits, trains, evaluates and reports (on the job's thread, one training thread).
fn train(
    rows: &[DataRow],
    settings: &TrainSettings,
    model: &str,
    data_name: &str,
    shared: &Shared,
) -> Result<Trained, String> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .thread_name(|_| "flywheel-job-train".into())
        .start_handler(|_| idle_priority())
        .build()
        .map_err(|e| e.to_string())?;
    pool.install(|| train_on_pool(rows, settings, model, data_name, shared))
}

fn train_on_pool(
    rows: &[DataRow],
    settings: &TrainSettings,
    model: &str,
    data_name: &str,
    shared: &Shared,
) -> Result<Trained, String> {
    let all = records(rows);
    let labels = LabelSet::infer(&all, None, LABEL_SEP, data_name).map_err(|e| e.to_string())?;
    let targets = labels.encode(&all, data_name).map_err(|e| e.to_string())?;
    let (train_idx, eval_idx) = stratified_split(
        &targets,
        labels.task,
        all.len(),
        settings.eval_fraction,
        settings.seed,
    );
    if train_idx.len() < 10 || eval_idx.is_empty() {
        return Err(format!(
            "{} rows are too few: training needs at least 10 rows and evaluation 1",
            all.len()
        ));
    }
    let pick = |idx: &[usize]| -> Vec<Record> { idx.iter().map(|&i| all[i].clone()).collect() };
    let (train_rows, eval_rows) = (pick(&train_idx), pick(&eval_idx));
    let sha = flywheel_store::dataset_sha256(rows);
    let started = Instant::now();
    let budget = settings.budget_seconds;
    let elapsed = move || started.elapsed().as_secs_f64();
    shared.set(
        json!({"phase": "training", "fraction": 0.0, "elapsed_seconds": 0.0}),
        Some(json!({"phase": "training", "train_rows": train_rows.len(), "eval_rows": eval_rows.len()})),
    );
    let (artifact, described) = if settings.family == "autotune" {
        let opts = AutotuneOptions {
            budget_secs: budget,
            metric: Metric::MacroF1,
            seed: settings.seed,
            threads: 1,
            validation_fraction: 0.2,
            encoder: None,
            stop_at_budget: true,
        };
        let mut trials = 0usize;
        let mut planned = 0usize;
        let mut best = f64::NAN;
        let out = autotune(&train_rows, data_name, None, LABEL_SEP, &opts, &mut |ev| {
            shared.check();
            let event = match ev {
                AutotuneEvent::Plan { rungs, .. } => {
                    planned = rungs.iter().sum();
                    Some(json!({"phase": "search", "planned_trials": planned}))
                }
                AutotuneEvent::Extended { rungs, .. } => {
                    planned = rungs.iter().sum();
                    None
                }
                AutotuneEvent::Trial(t) => {
                    trials += 1;
                    if best.is_nan() || t.score > best {
                        best = t.score;
                    }
                    Some(json!({"phase": "search", "trial": t.number, "score": t.score, "configuration": t.candidate.describe()}))
                }
                AutotuneEvent::Final(c) => {
                    Some(json!({"phase": "final", "configuration": c.describe()}))
                }
                _ => None,
            };
            let t = elapsed();
            shared.set(
                json!({
                    "phase": "search",
                    "trials": trials,
                    "planned_trials": planned,
                    "best_score": if best.is_nan() { Value::Null } else { json!(best) },
                    "fraction": (t / budget).min(0.99),
                    "elapsed_seconds": t,
                    "eta_seconds": (budget - t).max(0.0),
                }),
                event,
            );
        })
        .map_err(|e| e.to_string())?;
        let described = out.best.describe();
        let artifact =
            Artifact::from_training(out.outcome, out.best.config.clone(), data_name, &sha);
        (artifact, described)
    } else {
        let family: Family = settings
            .family
            .parse()
            .map_err(|e: flywheel_model::ModelError| e.to_string())?;
        let fam = families::of(family);
        let spec = fam.default_spec();
        let mut cfg = fam.default_config();
        cfg.seed = settings.seed;
        cfg.threads = 1;
        if let Some(e) = settings.epochs {
            cfg.epochs = e.max(1);
        }
        let epochs = cfg.epochs.max(1);
        let outcome = flywheel_model::train(
            &train_rows,
            data_name,
            None,
            LABEL_SEP,
            &spec,
            &cfg,
            &mut |ev| {
                shared.check();
                let t = elapsed();
                match ev {
                    TrainEvent::Batch { epoch, done, batches, loss } => {
                        let fraction = ((epoch - 1) as f64 + done as f64 / batches.max(1) as f64)
                            / epochs as f64;
                        let eta = if fraction > 0.0 { t / fraction - t } else { 0.0 };
                        shared.set(
                            json!({"phase": "training", "epoch": epoch, "epochs": epochs,
                                   "loss": loss, "fraction": fraction.min(0.99),
                                   "elapsed_seconds": t, "eta_seconds": eta}),
                            None,
                        );
                    }
                    TrainEvent::Epoch { record, seconds } => {
                        let fraction = record.epoch as f64 / epochs as f64;
                        let eta = if fraction > 0.0 { t / fraction - t } else { 0.0 };
                        shared.set(
                            json!({"phase": "training", "epoch": record.epoch, "epochs": epochs,
                                   "loss": record.loss, "fraction": fraction.min(0.99),
                                   "elapsed_seconds": t, "eta_seconds": eta}),
                            Some(json!({"phase": "training", "epoch": record.epoch, "loss": record.loss,
                                        "val_loss": record.val_loss, "seconds": seconds})),
                        );
                    }
                    _ => {}
                }
            },
        )
        .map_err(|e| e.to_string())?;
        let described = family.name().to_string();
        (
            Artifact::from_training(outcome, cfg, data_name, &sha),
            described,
        )
    };
    shared.check();
    shared.set(
        json!({"phase": "evaluating", "fraction": 0.99, "elapsed_seconds": elapsed()}),
        Some(json!({"phase": "evaluating", "rows": eval_rows.len()})),
    );
    let report = evaluate(&artifact.pipeline, &eval_rows, data_name).map_err(|e| e.to_string())?;
    let texts: Vec<&str> = eval_rows.iter().map(|r| r.text.as_str()).collect();
    let outputs = artifact
        .pipeline
        .outputs_of_texts(&texts)
        .map_err(|e| e.to_string())?;
    let html = flywheel_report::report::render(&flywheel_report::report::ReportInput {
        artifact: &artifact,
        model_name: model,
        data_name: &format!("{data_name} (held-out rows)"),
        records: &eval_rows,
        report: &report,
        outputs: &outputs,
    })
    .map_err(|e| e.to_string())?;
    let bytes = artifact.to_bytes().map_err(|e| e.to_string())?;
    let to_rows = |recs: &[Record]| -> Vec<DataRow> {
        recs.iter()
            .map(|r| DataRow {
                text: r.text.clone(),
                labels: r.labels.clone(),
            })
            .collect()
    };
    Ok(Trained {
        bytes,
        report: html,
        result: json!({
            "model": model,
            "family": artifact.pipeline.spec.family.name(),
            "configuration": described,
            "train_rows": train_rows.len(),
            "eval_rows": eval_rows.len(),
            "metrics": report,
        }),
        base: to_rows(&train_rows),
        holdout: to_rows(&eval_rows),
    })
}

async fn run_batch(
    state: &AppState,
    jobs: &Jobs,
    store: &Store,
    job: &JobInfo,
) -> Result<(), Stop> {
    let settings: BatchSettings = serde_json::from_str(&job.settings)
        .map_err(|e| Stop::Failed(format!("unreadable job settings: {e}")))?;
    let total = store
        .get_upload(job.upload_id)
        .await
        .map_err(|e| Stop::Failed(format!("reading the dataset failed: {e}")))?
        .map(|u| u.row_count)
        .ok_or_else(|| Stop::Failed(format!("dataset {} was deleted", job.upload_id)))?;
    let pool = Arc::new(
        rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .thread_name(|_| "flywheel-job-batch".into())
            .start_handler(|_| idle_priority())
            .build()
            .map_err(|e| Stop::Failed(e.to_string()))?,
    );
    let mut done = store
        .count_batch_results(&job.id)
        .await
        .map_err(|e| Stop::Failed(format!("reading the batch's results failed: {e}")))?;
    let mut beat = Instant::now();
    while done < total {
        if beat.elapsed() >= jobs.beat() {
            beat = Instant::now();
            let held = store
                .renew_job(&job.id, &jobs.holder, now_unix(), jobs.ttl(), None, &[])
                .await
                .map_err(|e| Stop::Failed(format!("renewing the lease failed: {e}")))?;
            if !held {
                return Err(Stop::Cancelled);
            }
        }
        let rows = store
            .upload_rows(job.upload_id, done, jobs.batch_chunk)
            .await
            .map_err(|e| Stop::Failed(format!("reading the dataset failed: {e}")))?;
        if rows.is_empty() {
            return Err(Stop::Failed(format!(
                "dataset {} was deleted",
                job.upload_id
            )));
        }
        let slot = state
            .model_slot(&job.model)
            .map_err(|e| Stop::Failed(e.message))?;
        let loaded = slot.current.load_full();
        let texts: Vec<String> = rows.into_iter().map(|r| r.text).collect();
        let characters = texts.iter().map(|t| t.chars().count() as i64).sum::<i64>();
        let (pool, texts_for_thread) = (Arc::clone(&pool), texts);
        let count = texts_for_thread.len() as i64;
        let predictions = tokio::task::spawn_blocking(move || {
            pool.install(|| loaded.artifact.pipeline.predict(&texts_for_thread))
                .map(|p| (p, loaded.version.clone(), loaded.registry_version))
        })
        .await
        .map_err(|e| Stop::Failed(format!("the batch's thread failed: {e}")))?
        .map_err(|e| Stop::Failed(format!("classifying failed: {e}")))?;
        let (predictions, version, registry_version) = predictions;
        let outputs: Vec<String> = predictions
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let mut v = p.to_json();
                if let Some(map) = v.as_object_mut() {
                    map.insert("index".into(), (done + i as i64).into());
                    map.insert("version".into(), version.clone().into());
                }
                v.to_string()
            })
            .collect();
        let usage = UsageEvent {
            id: format!("{}:{done}", job.id),
            tenant: settings.tenant.clone(),
            key_prefix: settings.key_prefix.clone(),
            model: job.model.clone(),
            version: registry_version.unwrap_or(0),
            texts: count,
            characters,
            at: now_unix(),
            request_sha256: String::new(),
            training_seconds: 0,
        };
        let progress = json!({"rows": total, "done": done + count, "fraction": (done + count) as f64 / total as f64}).to_string();
        let committed = store
            .commit_batch_chunk(
                &job.id,
                &jobs.holder,
                &BatchChunk {
                    start: done,
                    outputs: &outputs,
                    usage: &usage,
                    progress: &progress,
                },
                now_unix(),
            )
            .await
            .map_err(|e| Stop::Failed(format!("storing the results failed: {e}")))?;
        if !committed {
            return Err(Stop::Cancelled);
        }
        done += count;
    }
    let result =
        json!({"rows": total, "results": format!("/v1/batches/{}/results", job.id)}).to_string();
    match store
        .succeed_job(&job.id, &jobs.holder, &result, now_unix())
        .await
    {
        Ok(true) => Ok(()),
        Ok(false) => Err(Stop::Cancelled),
        Err(e) => Err(Stop::Failed(format!(
            "recording the batch's end failed: {e}"
        ))),
    }
}
