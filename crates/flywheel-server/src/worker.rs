//! What the job runner (`jobs`) and the handlers share: this process's name in leases, the
//! lease's length, its worker slots and the call that wakes it when a job is queued here. A
//! leaf, so that the state can hold it without importing the runner.

use std::time::Duration;

/// The runner's settings and its wake-up call, shared by the handlers.
pub(crate) struct Jobs {
    /// This process's name in leases (host, pid and a random part).
    pub holder: String,
    /// How long a lease lasts without renewal.
    pub lease: Duration,
    /// Jobs run at once by this process.
    pub workers: usize,
    /// Wakes the runner when a job is queued here.
    pub wake: tokio::sync::Notify,
    /// Rows a batch job classifies per committed chunk.
    pub batch_chunk: i64,
}

impl Jobs {
    /// The runner's state for `workers` slots, leases of `lease` and batch chunks of
    /// `batch_chunk` rows.
    pub fn new(workers: usize, lease: Duration, batch_chunk: usize) -> Jobs {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "flywheel".into());
        Jobs {
            holder: format!(
                "{host}-{}-{:08x}",
                std::process::id(),
                rand::random::<u32>()
            ),
            lease,
            workers,
            wake: tokio::sync::Notify::new(),
            batch_chunk: batch_chunk.max(1) as i64,
        }
    }

    pub(crate) fn ttl(&self) -> i64 {
        self.lease.as_secs().max(1) as i64
    }

    /// How often a running job renews its lease and records its progress.
    pub(crate) fn beat(&self) -> Duration {
        (self.lease / 3).clamp(Duration::from_millis(200), Duration::from_secs(2))
    }
}
