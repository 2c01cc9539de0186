//! Group commit for metering: [`MeterQueue`] hands served requests to one committer (a thread
//! with its own connection on SQLite, a task on PostgreSQL) that meters whatever has arrived as
//! one batch, as [`crate::Store::meter_batch`] does — the requests that came while a commit was
//! in flight join the next — and answers each request once the commit holding its event
//! returns. Nothing is acknowledged before it is durable; a crash loses only requests not yet
//! answered.
//!
//! The queue also remembers each key's counters as of its last commit, so a request over a
//! limit is refused from memory ([`MeterQueue::precheck`]): counters only grow within a minute
//! or month, so a refusal seen there is one the database would give.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};

use crate::metering::{self, Batcher};
use crate::types::{Decision, LimitKind, MeterItem, Metered, PlanLimits};
use crate::{Error, Result, Store};

/// Requests waiting for a commit, per batch allowed in the queue before senders wait.
const QUEUED_BATCHES: usize = 8;

struct Job {
    item: MeterItem,
    reply: oneshot::Sender<Result<Metered>>,
}

/// Counts of what the queue has committed.
#[derive(Debug, Default)]
pub struct MeterStats {
    /// Batches metered (transactions, or one-by-one rounds).
    pub batches: AtomicU64,
    /// Requests metered.
    pub requests: AtomicU64,
    /// Requests of batches that were metered one by one (a retry, a limit reached, a minute
    /// or month boundary, a plan changed meanwhile).
    pub one_by_one: AtomicU64,
}

/// The group-commit queue of one process. Cheap to clone; the committer ends when the last
/// clone is dropped.
#[derive(Clone)]
pub struct MeterQueue {
    jobs: mpsc::Sender<Job>,
    known: Arc<Mutex<HashMap<i64, Decision>>>,
    stats: Arc<MeterStats>,
}

impl std::fmt::Debug for MeterQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeterQueue").finish_non_exhaustive()
    }
}

impl MeterQueue {
    /// Starts committing (called inside a tokio runtime): on a SQLite file, from a thread of its
    /// own with its own connection; otherwise from a task on the runtime. At most `max_batch`
    /// requests (at least 1) share one commit.
    pub fn start(store: Store, max_batch: usize) -> MeterQueue {
        let max_batch = max_batch.max(1);
        let (jobs, queue) = mpsc::channel(max_batch * QUEUED_BATCHES);
        let known = Arc::new(Mutex::new(HashMap::new()));
        let stats = Arc::new(MeterStats::default());
        let committer = Committer {
            store,
            max_batch,
            known: Arc::clone(&known),
            stats: Arc::clone(&stats),
        };
        let file = match &committer.store {
            Store::Sqlite(s) => s.file.clone(),
            Store::Postgres(_) => None,
        };
        match file {
            Some(path) => {
                let runtime = tokio::runtime::Handle::current();
                // The queue goes to the thread, or back to a task if no thread can start.
                let queue = Arc::new(Mutex::new(Some(queue)));
                let for_thread = Arc::clone(&queue);
                let thread_committer = committer.clone();
                let spawned = std::thread::Builder::new()
                    .name("flywheel-meter".into())
                    .spawn(move || {
                        if let Some(queue) = for_thread.lock().ok().and_then(|mut q| q.take()) {
                            thread_committer.run_sqlite(queue, Batcher::new(path), runtime);
                        }
                    });
                if spawned.is_err() {
                    if let Some(queue) = queue.lock().ok().and_then(|mut q| q.take()) {
                        tokio::spawn(committer.run_async(queue));
                    }
                }
            }
            None => {
                tokio::spawn(committer.run_async(queue));
            }
        }
        MeterQueue { jobs, known, stats }
    }

    /// Meters one served request as [`crate::Store::meter`] would, in the next group commit;
    /// returns once that commit has returned. [`Error::MeterStopped`] if the queue has stopped.
    pub async fn meter(&self, item: MeterItem) -> Result<Metered> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job { item, reply })
            .await
            .map_err(|_| Error::MeterStopped)?;
        answer.await.map_err(|_| Error::MeterStopped)?
    }

    /// The refusal of a request of `texts` texts by key `key_id` (on a plan of `limits`) at
    /// `now`, when the key's counters as of this process's last commit already rule it out;
    /// `None` when it may go ahead (the commit has the final word).
    pub fn precheck(
        &self,
        key_id: i64,
        limits: PlanLimits,
        texts: i64,
        now: i64,
    ) -> Option<Decision> {
        let known = *self.known.lock().ok()?.get(&key_id)?;
        if known.requests.limit != limits.requests_per_minute
            || known.texts.limit != limits.texts_per_month
        {
            // The plan changed since: what was counted under it decides nothing.
            return None;
        }
        let requests_full = now < known.requests.reset_at && known.requests.remaining == 0;
        let texts_full = now < known.texts.reset_at && texts > known.texts.remaining;
        let denied_by = if requests_full {
            LimitKind::Requests
        } else if texts_full {
            LimitKind::Texts
        } else {
            return None;
        };
        let mut decision = known;
        decision.allowed = false;
        decision.denied_by = Some(denied_by);
        for state in [&mut decision.requests, &mut decision.texts] {
            state.reset_after = (state.reset_at - now).max(0);
        }
        Some(decision)
    }

    /// What the queue has committed so far.
    pub fn stats(&self) -> &MeterStats {
        &self.stats
    }
}

/// What commits the queue's batches.
#[derive(Clone)]
struct Committer {
    store: Store,
    max_batch: usize,
    known: Arc<Mutex<HashMap<i64, Decision>>>,
    stats: Arc<MeterStats>,
}

impl Committer {
    /// The loop of a task: each batch through the store's async drivers (PostgreSQL keeps one
    /// connection between batches).
    async fn run_async(self, mut queue: mpsc::Receiver<Job>) {
        let mut jobs = Vec::with_capacity(self.max_batch);
        let mut conn = None;
        while queue.recv_many(&mut jobs, self.max_batch).await > 0 {
            let (items, replies): (Vec<MeterItem>, Vec<_>) =
                jobs.drain(..).map(|j| (j.item, j.reply)).unzip();
            let (results, together) =
                metering::meter_batch_on(&self.store, &mut conn, &items).await;
            self.finish(&items, replies, results, together);
        }
    }

    /// The loop of the SQLite thread: the fast path on the batcher's own connection, blocking;
    /// requests metered one by one go through the pool, on `runtime`.
    fn run_sqlite(
        self,
        mut queue: mpsc::Receiver<Job>,
        mut batcher: Batcher,
        runtime: tokio::runtime::Handle,
    ) {
        let mut jobs = Vec::with_capacity(self.max_batch);
        while let Some(first) = queue.blocking_recv() {
            jobs.push(first);
            while jobs.len() < self.max_batch {
                match queue.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
            let (items, replies): (Vec<MeterItem>, Vec<_>) =
                jobs.drain(..).map(|j| (j.item, j.reply)).unzip();
            let outcome = match metering::plan_batch(&items) {
                Some(plan) => batcher.meter_together(&items, &plan),
                None => Ok(None),
            };
            let together = matches!(outcome, Ok(Some(_)));
            let results = runtime.block_on(metering::settle(&self.store, &items, outcome));
            self.finish(&items, replies, results, together);
        }
    }

    /// Counts the batch, remembers each key's newest counters and answers every request.
    fn finish(
        &self,
        items: &[MeterItem],
        replies: Vec<oneshot::Sender<Result<Metered>>>,
        results: Vec<Result<Metered>>,
        together: bool,
    ) {
        self.stats.batches.fetch_add(1, Ordering::Relaxed);
        self.stats
            .requests
            .fetch_add(items.len() as u64, Ordering::Relaxed);
        if !together {
            self.stats
                .one_by_one
                .fetch_add(items.len() as u64, Ordering::Relaxed);
        }
        // Results come in commit order: the last one of a key is its newest state.
        if let Ok(mut known) = self.known.lock() {
            for (item, result) in items.iter().zip(&results) {
                if let Ok(m) = result {
                    known.insert(item.key_id, m.decision);
                }
            }
        }
        for (reply, result) in replies.into_iter().zip(results) {
            // A request whose client has gone is committed all the same.
            let _ = reply.send(result);
        }
    }
}
