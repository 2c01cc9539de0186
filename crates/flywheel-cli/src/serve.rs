//! `flywheel serve`: the flags, whose defaults are the server's own
//! ([`flywheel_server::ServerConfig::default`]), and the server they start.

use anyhow::Result;
use clap::Args;
use flywheel_server::ServerConfig;

use crate::args::{RedactArg, ThreadsArg};

/// The server's defaults, which the flags' defaults show.
fn defaults() -> ServerConfig {
    ServerConfig::default()
}

/// A duration in whole milliseconds, for a flag's default.
fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A duration in whole microseconds, for a flag's default.
fn micros(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// `--redact`'s default: the server's.
fn default_redact() -> RedactArg {
    if defaults().redact {
        RedactArg::Pii
    } else {
        RedactArg::None
    }
}

/// Flags of `flywheel serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// A model file to serve as NAME=PATH (repeat for several models).
    #[arg(long = "model", value_name = "NAME=PATH")]
    models: Vec<flywheel_server::ModelSource>,
    /// Serve from a store instead: every registered model's champion (followed live), API
    /// keys required, plan limits enforced, usage metered. sqlite://PATH or postgres://...
    /// (DATABASE_URL is used when no --model is given).
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
    /// How often the registry is polled for promotions and new models, in milliseconds.
    #[arg(long, default_value_t = millis(defaults().registry_poll))]
    registry_poll_ms: u64,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: std::net::SocketAddr,
    #[command(flatten)]
    threads: ThreadsArg,
    /// Threads handling connections (async runtime).
    #[arg(long, default_value_t = defaults().io_threads)]
    io_threads: usize,
    /// Most texts in one inference batch.
    #[arg(long, default_value_t = defaults().max_batch)]
    max_batch: usize,
    /// Microseconds a batch may wait for more requests after its first one while an inference
    /// thread is idle (requests arriving while all are busy are batched anyway).
    #[arg(long, default_value_t = micros(defaults().max_wait))]
    max_wait_us: u64,
    /// Requests that may wait in each model's queue; more are refused with 503.
    #[arg(long, default_value_t = defaults().queue_capacity)]
    queue_capacity: usize,
    /// Most texts in one request (more: 422).
    #[arg(long, default_value_t = defaults().max_inputs)]
    max_inputs: usize,
    /// Most characters in one text (more: 422).
    #[arg(long, default_value_t = defaults().max_chars)]
    max_chars: usize,
    /// Largest request body in bytes (more: 413).
    #[arg(long, default_value_t = defaults().max_body_bytes)]
    max_body_bytes: usize,
    /// Time limit of a classification request in milliseconds (over: 504).
    #[arg(long, default_value_t = millis(defaults().timeout))]
    timeout_ms: u64,
    /// Classification requests served at once; more are refused at once with 503.
    #[arg(long, default_value_t = defaults().max_concurrency)]
    max_concurrency: usize,
    /// Bearer token for the admin endpoints (at least 16 characters); without it they are off.
    #[arg(long, env = "FLYWHEEL_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// With a store: the fraction of classify requests whose predictions are kept for review
    /// and feedback (a request with "log": true is always kept).
    #[arg(long, default_value_t = defaults().log_predictions, value_name = "RATE")]
    log_predictions: f64,
    /// Replace personal data (e-mail, phone, card and ID numbers, IPs, URL credentials) by
    /// typed placeholders before any text is stored: pii or none.
    #[arg(long, value_enum, default_value_t = default_redact())]
    redact: RedactArg,
    /// Retrain a model in the background once this many new feedback items arrived.
    #[arg(long, value_name = "N")]
    retrain_after: Option<u64>,
    /// Retrain a model in the background this long after its last retrain when there is new
    /// feedback (e.g. 30m, 1h).
    #[arg(long, value_name = "DURATION")]
    retrain_every: Option<String>,
    /// Training threads of a background retrain (serving keeps its own threads).
    #[arg(long, default_value_t = defaults().retrain.threads)]
    retrain_threads: usize,
    /// Background retrains promote only if macro-F1 on the frozen holdout improves by at least
    /// this many points...
    #[arg(long, default_value_t = defaults().retrain.policy.min_gain)]
    min_gain: f64,
    /// ...and no class's F1 falls by more than this many points.
    #[arg(long, default_value_t = defaults().retrain.policy.max_class_drop)]
    max_class_drop: f64,
    /// Connections open at once; more wait to be accepted.
    #[arg(long, default_value_t = defaults().max_connections)]
    max_connections: usize,
    /// Close a connection that neither reads nor writes for this many seconds.
    #[arg(long, default_value_t = defaults().idle_timeout.as_secs())]
    idle_timeout_s: u64,
    /// Training and batch jobs (tenants' own, over the API) run at once by this process, each
    /// on a thread of its own apart from inference; 0 leaves them to other replicas.
    #[arg(long, default_value_t = defaults().train_workers)]
    train_workers: usize,
    /// A job whose worker stops renewing its lease for this many seconds (the process died)
    /// is taken up again by any replica.
    #[arg(long, default_value_t = defaults().job_lease.as_secs())]
    job_lease_s: u64,
    /// Rows a batch job classifies per committed chunk (its results and usage are one
    /// transaction; a batch resumes after its last chunk).
    #[arg(long, default_value_t = defaults().batch_chunk)]
    batch_chunk: usize,
    /// Do not monitor drift (by default every model whose file holds a drift profile is).
    #[arg(long)]
    no_drift: bool,
    /// Recent texts the drift tests compare with the training data.
    #[arg(long, default_value_t = defaults().drift.window)]
    drift_window: usize,
    /// Texts between two drift checks.
    #[arg(long, default_value_t = defaults().drift.check_every)]
    drift_check_every: usize,
    /// Share of an alarmed model's requests whose predictions are logged for review.
    #[arg(long, default_value_t = defaults().drift.alarm_log_rate, value_name = "RATE")]
    drift_log_rate: f64,
    /// Texts per second the drift monitor observes at most per model (it samples above).
    #[arg(long, default_value_t = defaults().drift.max_rate, value_name = "TEXTS")]
    drift_max_rate: f64,
    /// POST a JSON message to this http:// URL whenever a model's drift alarm starts or ends.
    #[arg(long, value_name = "URL")]
    drift_webhook: Option<String>,
}

pub fn cmd_serve(args: ServeArgs) -> Result<()> {
    crate::limit_malloc_arenas();
    let env_url = if args.models.is_empty() {
        std::env::var("DATABASE_URL").ok()
    } else {
        None
    };
    let serves_store = args.models.is_empty();
    if serves_store && args.train_workers > 0 {
        // Training jobs free large buffers all the time; returned to the system each time, the
        // unmapping takes the process's memory-map lock and stalls the inference threads' page
        // faults: p99.9 at 1,000 req/s went from 7 ms to 28 ms while a job trained
        // (docs/benchmarks.md). Kept in the heap, they are reused.
        crate::keep_large_blocks();
    }
    let config = flywheel_server::ServerConfig {
        models: args.models,
        threads: args.threads.count(),
        io_threads: args.io_threads,
        max_batch: args.max_batch,
        max_wait: std::time::Duration::from_micros(args.max_wait_us),
        queue_capacity: args.queue_capacity,
        max_inputs: args.max_inputs,
        max_chars: args.max_chars,
        max_body_bytes: args.max_body_bytes,
        timeout: std::time::Duration::from_millis(args.timeout_ms),
        max_concurrency: args.max_concurrency,
        admin_token: args.admin_token,
        database_url: args.database_url.or(env_url),
        registry_poll: std::time::Duration::from_millis(args.registry_poll_ms),
        log_predictions: args.log_predictions,
        max_connections: args.max_connections,
        idle_timeout: std::time::Duration::from_secs(args.idle_timeout_s),
        train_workers: args.train_workers,
        job_lease: std::time::Duration::from_secs(args.job_lease_s),
        batch_chunk: args.batch_chunk,
        redact: args.redact == RedactArg::Pii,
        retrain: flywheel_server::AutoRetrain {
            after: args.retrain_after,
            every: match &args.retrain_every {
                Some(s) => Some(std::time::Duration::from_secs_f64(
                    crate::autotune::parse_budget(s)
                        .map_err(|e| anyhow::anyhow!("--retrain-every: {e}"))?,
                )),
                None => None,
            },
            threads: args.retrain_threads,
            policy: flywheel_model::PromotionPolicy {
                min_gain: args.min_gain,
                max_class_drop: args.max_class_drop,
            },
        },
        drift: flywheel_server::drift::DriftConfig {
            enabled: !args.no_drift,
            window: args.drift_window,
            check_every: args.drift_check_every.max(1),
            min_window: defaults().drift.min_window.min(args.drift_window),
            alarm_log_rate: args.drift_log_rate,
            webhook: args.drift_webhook,
            max_rate: args.drift_max_rate,
        },
    };
    if !(0.0..=1.0).contains(&config.drift.alarm_log_rate) {
        anyhow::bail!("--drift-log-rate must be between 0 and 1");
    }
    if config.drift.window < 20 {
        anyhow::bail!("--drift-window must be at least 20");
    }
    if let Some(url) = &config.drift.webhook {
        if !url.starts_with("http://") {
            anyhow::bail!("--drift-webhook: only http:// URLs are supported, got {url}");
        }
    }
    let what = match &config.database_url {
        Some(url) => format!("the registry's champions ({})", crate::admin::redact(url)),
        None => config
            .models
            .iter()
            .map(|m| m.name.clone())
            .collect::<Vec<_>>()
            .join(", "),
    };
    flywheel_server::run(config, args.addr, |addr| {
        eprintln!(
            "Serving {what} on http://{addr} (POST /v1/classify, /v1/explain; GET /openapi.json); Ctrl-C stops"
        );
    })?;
    Ok(())
}
