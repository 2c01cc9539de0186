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

/// Puts the calling thread in Linux's `SCHED_IDLE` class: it runs only on a core that no
/// normal thread wants, so a job's training or batch thread takes what serving leaves idle and
/// never delays an inference or I/O thread that wakes up (measured: `bench/selfserve_p99.sh`).
/// Elsewhere it does nothing. A failure (a container that forbids it) is logged once per thread.
pub(crate) fn idle_priority() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: `sched_setscheduler` with pid 0 changes only the calling thread's policy; the
        // pointer is to a live, initialised `sched_param`.
        let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
        if rc != 0 {
            tracing::warn!(
                error = %std::io::Error::last_os_error(),
                "cannot lower a job thread's priority; it competes with serving as an equal"
            );
        }
    }
}
