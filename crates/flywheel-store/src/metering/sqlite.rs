//! SQLite's batch, on a connection of its own opened with `rusqlite` and used from one thread:
//! `BEGIN IMMEDIATE`, the statements and `COMMIT` as plain calls into the same SQLite library
//! the pool uses (one copy, so its file locks are shared), with the counts checked between them.
//! Events and kept predictions are inserted a row at a time through prepared statements with
//! bound values (in-process calls, cheaper than building and parsing a JSON array per batch);
//! each key's counters are raised by the shared counting statements.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::time::Duration;

use rusqlite::{Connection, TransactionBehavior};

use super::{quotas_json, windows_json, BatchPlan, Counted};
use crate::types::{MeterItem, Metered};
use crate::{Error, Result};

/// The counting statements, each over the JSON array `$1`.
const COUNTING: [&str; 2] = super::counting_statements!("json_each($1) AS j", "json_each($1) AS j");

/// One usage event (a retry's, already recorded, is left as it is).
const INSERT_EVENT: &str = "INSERT INTO usage_events \
      (id, tenant, key_prefix, model, version, texts, characters, at, request_sha256) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT (id) DO NOTHING";

/// One prediction kept for review (one already logged, by a retry, stays).
const INSERT_PREDICTION: &str = "INSERT INTO predictions \
      (tenant, model, version, request_id, idx, text, label, score, uncertainty, created_at) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) \
    ON CONFLICT (tenant, request_id, idx) DO NOTHING";

/// The counting statements with the counters they leave.
static WINDOWS: LazyLock<String> =
    LazyLock::new(|| format!("{} RETURNING key_id, window_start, requests", COUNTING[0]));
static QUOTAS: LazyLock<String> =
    LazyLock::new(|| format!("{} RETURNING key_id, texts", COUNTING[1]));

/// A connection to the store's SQLite file for group commits, opened on first use and again
/// after an error.
pub(crate) struct Batcher {
    path: PathBuf,
    conn: Option<Connection>,
}

impl Batcher {
    /// A batcher for the database file at `path` (nothing is opened yet).
    pub(crate) fn new(path: PathBuf) -> Batcher {
        Batcher { path, conn: None }
    }

    /// The batch in one transaction; `Ok(None)`, rolled back, when the database does not
    /// confirm every condition of the fast path. [`Error::Commit`] when SQLite failed (nothing
    /// was committed; the connection is reopened next time).
    pub(crate) fn meter_together(
        &mut self,
        items: &[MeterItem],
        plan: &BatchPlan,
    ) -> Result<Option<Vec<Metered>>> {
        let conn = match &mut self.conn {
            Some(conn) => conn,
            slot => slot.insert(open(&self.path).map_err(commit_error)?),
        };
        let outcome = run(conn, items, plan);
        if outcome.is_err() {
            self.conn = None;
        }
        outcome.map_err(commit_error)
    }
}

fn commit_error(e: rusqlite::Error) -> Error {
    Error::Commit(e.to_string())
}

/// A connection as the pool's are set up: the log in WAL mode, foreign keys on, a 30 s wait for
/// the write lock, and every commit synced (`synchronous = FULL`) before it returns.
fn open(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(30))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", true)?;
    conn.pragma_update(None, "cache_size", -512)?;
    Ok(conn)
}

fn run(
    conn: &mut Connection,
    items: &[MeterItem],
    plan: &BatchPlan,
) -> rusqlite::Result<Option<Vec<Metered>>> {
    // Dropped without a commit, the transaction rolls back.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut inserted = 0;
    {
        let mut insert = tx.prepare_cached(INSERT_EVENT)?;
        for item in items {
            let e = &item.event;
            inserted += insert.execute(rusqlite::params![
                e.id,
                e.tenant,
                e.key_prefix,
                e.model,
                e.version,
                e.texts,
                e.characters,
                e.at,
                e.request_sha256
            ])?;
        }
    }
    if inserted != items.len() {
        // A retry among them: its texts must not count again.
        return Ok(None);
    }
    let mut counted = Counted::default();
    {
        let mut windows = tx.prepare_cached(&WINDOWS)?;
        let rows = windows.query_map([windows_json(plan)], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })?;
        for row in rows {
            let (key_id, window_start, requests) = row?;
            counted.windows.insert(key_id, (window_start, requests));
        }
    }
    {
        let mut quotas = tx.prepare_cached(&QUOTAS)?;
        let rows = quotas.query_map([quotas_json(plan)], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
        })?;
        let found: HashMap<i64, i64> = rows.collect::<rusqlite::Result<_>>()?;
        counted.quotas = found;
    }
    let Some(metered) = counted.metered(items, plan) else {
        return Ok(None);
    };
    if items.iter().any(|i| !i.predictions.is_empty()) {
        let mut insert = tx.prepare_cached(INSERT_PREDICTION)?;
        for p in items.iter().flat_map(|i| &i.predictions) {
            insert.execute(rusqlite::params![
                p.tenant,
                p.model,
                p.version,
                p.request_id,
                p.index,
                p.text,
                p.label,
                p.score,
                p.uncertainty,
                p.created_at
            ])?;
        }
    }
    tx.commit()?;
    Ok(Some(metered))
}
