//! The drift monitor of each served model version: the batching worker hands it each batch's
//! texts and predicted labels (a move, no copy, and never a wait: a full queue drops the batch
//! and counts it), and its own thread turns them into observations (O(words)), keeps a sliding
//! window, and every `check_every` texts runs the tests of [`flywheel_model::drift`] against
//! the profile in the model file. The latest report and the alarm state are read by the
//! metrics, the API (`GET /v1/models/{name}/drift`), the dashboard and the request path, which
//! logs more of an alarmed model's predictions for review; an optional webhook hears every
//! change of the alarm state.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use flywheel_model::drift::{Observation, ProfileReader};
use flywheel_model::{DriftProfile, DriftReport};
use serde::Serialize;

/// Drift monitoring settings.
#[derive(Debug, Clone)]
pub struct DriftConfig {
    /// Whether served models with a drift profile are monitored.
    pub enabled: bool,
    /// Recent texts compared with the training data.
    pub window: usize,
    /// Texts between two checks.
    pub check_every: usize,
    /// Texts needed before the first check.
    pub min_window: usize,
    /// Share of an alarmed model's requests whose predictions are logged for review (at least
    /// the server's usual rate).
    pub alarm_log_rate: f64,
    /// `http://HOST[:PORT]/PATH` that gets a JSON POST at every change of a model's alarm.
    pub webhook: Option<String>,
    /// Texts per second the monitor observes at most (a burst of `window` texts allowed): under
    /// heavy traffic it samples, so its cost stays small beside serving.
    pub max_rate: f64,
}

impl Default for DriftConfig {
    fn default() -> Self {
        DriftConfig {
            enabled: true,
            window: 500,
            check_every: 100,
            min_window: 200,
            alarm_log_rate: 0.25,
            webhook: None,
            max_rate: 250.0,
        }
    }
}

/// Batches waiting for the monitor thread.
const QUEUE: usize = 256;
/// Checks kept for the dashboard's chart.
const HISTORY: usize = 120;

/// One check, as the chart and the API show it.
#[derive(Debug, Clone, Serialize)]
pub struct DriftPoint {
    /// Texts observed when it ran.
    pub observed: u64,
    /// Unix seconds.
    pub at: i64,
    /// Every test's value and line.
    pub report: DriftReport,
}

/// What the monitor knows now.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DriftStatus {
    /// Texts observed since this version was loaded.
    pub observed: u64,
    /// Batches dropped because the monitor was behind.
    pub dropped: u64,
    /// Whether the last check alarmed.
    pub alarm: bool,
    /// When the alarm started (Unix seconds).
    pub alarm_since: Option<i64>,
    /// The last check.
    pub last: Option<DriftPoint>,
    /// Recent checks, oldest first.
    pub history: Vec<DriftPoint>,
}

/// A model version's monitor.
pub(crate) struct DriftMonitor {
    tx: SyncSender<(Vec<String>, Vec<Option<usize>>)>,
    budget: Mutex<Budget>,
    rate: f64,
    burst: f64,
    status: Arc<Mutex<DriftStatus>>,
    alarm: Arc<AtomicBool>,
    dropped: AtomicU64,
}

impl std::fmt::Debug for DriftMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DriftMonitor").finish_non_exhaustive()
    }
}

impl DriftMonitor {
    /// Starts the monitor of `model` (version `version`) against `profile`; its thread ends
    /// when the monitor is dropped.
    pub fn start(model: &str, version: &str, profile: &DriftProfile, cfg: &DriftConfig) -> Self {
        let (tx, rx) = sync_channel(QUEUE);
        let status = Arc::new(Mutex::new(DriftStatus::default()));
        let alarm = Arc::new(AtomicBool::new(false));
        let worker = Worker {
            model: model.to_string(),
            version: version.to_string(),
            reader: profile.reader(),
            cfg: cfg.clone(),
            status: Arc::clone(&status),
            alarm: Arc::clone(&alarm),
            runtime: tokio::runtime::Handle::try_current().ok(),
        };
        let spawned = std::thread::Builder::new()
            .name(format!("drift-{model}"))
            .spawn(move || worker.run(rx));
        if let Err(e) = spawned {
            tracing::error!(model, error = %e, "the drift monitor could not start");
        }
        DriftMonitor {
            tx,
            budget: Mutex::new(Budget {
                tokens: cfg.window as f64,
                at: std::time::Instant::now(),
            }),
            rate: cfg.max_rate.max(0.0),
            burst: cfg.window as f64,
            status,
            alarm,
            dropped: AtomicU64::new(0),
        }
    }

    /// How many of `n` texts the monitor takes now (a token bucket: `max_rate` per second, at
    /// most a window's worth at once).
    pub fn take(&self, n: usize) -> usize {
        let mut b = self.budget.lock().unwrap_or_else(|e| e.into_inner());
        let now = std::time::Instant::now();
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * self.rate).min(self.burst);
        b.at = now;
        let k = (b.tokens.floor().max(0.0) as usize).min(n);
        b.tokens -= k as f64;
        k
    }

    /// Hands over a batch's texts and predicted label indices; never waits.
    pub fn offer(&self, texts: Vec<String>, labels: Vec<Option<usize>>) {
        match self.tx.try_send((texts, labels)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Whether the last check alarmed.
    pub fn alarmed(&self) -> bool {
        self.alarm.load(Ordering::Relaxed)
    }

    /// The monitor's state now.
    pub fn status(&self) -> DriftStatus {
        let mut s = self
            .status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        s.dropped = self.dropped.load(Ordering::Relaxed);
        s
    }
}

/// The monitor's token bucket.
struct Budget {
    tokens: f64,
    at: std::time::Instant,
}

struct Worker {
    model: String,
    version: String,
    reader: ProfileReader,
    cfg: DriftConfig,
    status: Arc<Mutex<DriftStatus>>,
    alarm: Arc<AtomicBool>,
    runtime: Option<tokio::runtime::Handle>,
}

impl Worker {
    fn run(self, rx: Receiver<(Vec<String>, Vec<Option<usize>>)>) {
        let mut window: VecDeque<Observation> = VecDeque::with_capacity(self.cfg.window + 1);
        let (mut observed, mut since_check) = (0u64, 0usize);
        while let Ok((texts, labels)) = rx.recv() {
            for (text, label) in texts.iter().zip(labels) {
                window.push_back(self.reader.observe(text, label));
                if window.len() > self.cfg.window {
                    window.pop_front();
                }
                observed += 1;
                since_check += 1;
                if since_check >= self.cfg.check_every && window.len() >= self.cfg.min_window {
                    since_check = 0;
                    let report = self.reader.check(window.make_contiguous());
                    self.record(observed, report);
                }
            }
            let mut s = self.status.lock().unwrap_or_else(|e| e.into_inner());
            s.observed = observed;
        }
    }

    fn record(&self, observed: u64, report: DriftReport) {
        let at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let alarm = report.alarm;
        let was = self.alarm.swap(alarm, Ordering::Relaxed);
        let point = DriftPoint {
            observed,
            at,
            report,
        };
        {
            let mut s = self.status.lock().unwrap_or_else(|e| e.into_inner());
            s.observed = observed;
            s.alarm = alarm;
            if alarm && !was {
                s.alarm_since = Some(at);
            } else if !alarm {
                s.alarm_since = None;
            }
            s.history.push(point.clone());
            if s.history.len() > HISTORY {
                s.history.remove(0);
            }
            s.last = Some(point.clone());
        }
        if alarm != was {
            if alarm {
                let failing: Vec<&str> = point
                    .report
                    .tests
                    .iter()
                    .filter(|t| t.alarm)
                    .map(|t| t.name)
                    .collect();
                tracing::warn!(model = %self.model, version = %self.version, tests = ?failing, "drift alarm");
            } else {
                tracing::info!(model = %self.model, version = %self.version, "drift alarm cleared");
            }
            if let (Some(url), Some(rt)) = (&self.cfg.webhook, &self.runtime) {
                let body = serde_json::json!({
                    "model": self.model,
                    "version": self.version,
                    "alarm": alarm,
                    "check": point,
                });
                let url = url.clone();
                let model = self.model.clone();
                rt.spawn(async move {
                    if let Err(e) = post_json(&url, &body.to_string()).await {
                        tracing::warn!(%model, error = %e, "the drift webhook failed");
                    }
                });
            }
        }
    }
}

/// Posts `body` to an `http://` URL (HTTP/1.1, one request, connection closed); an answer
/// other than 2xx is an error.
pub(crate) async fn post_json(url: &str, body: &str) -> Result<(), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url}: only http:// webhooks are supported"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = if authority.contains(':') {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let connect = tokio::net::TcpStream::connect(&addr);
    let mut stream = tokio::time::timeout(std::time::Duration::from_secs(5), connect)
        .await
        .map_err(|_| format!("{addr}: connection timed out"))?
        .map_err(|e| format!("{addr}: {e}"))?;
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\nUser-Agent: flywheel\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut head = vec![0u8; 64];
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut head))
        .await
        .map_err(|_| "no answer within 5 s".to_string())?
        .map_err(|e| e.to_string())?;
    let line = String::from_utf8_lossy(&head[..n]);
    let status = line.split_whitespace().nth(1).unwrap_or("");
    if status.starts_with('2') {
        Ok(())
    } else {
        Err(format!("answered {:?}", line.lines().next().unwrap_or("")))
    }
}
