//! Metering many requests in one transaction ([`crate::Store::meter_batch`]), and loading the
//! in-memory [`crate::AccessSnapshot`].
//!
//! A batch is written together when that provably gives what metering its requests one by one
//! ([`crate::Store::meter`]) would: every event is new, each key's requests fall in one minute
//! and one month, the plan limits the caller gave are the database's, and each key's totals fit
//! under its limits — then every request is admitted in any order, and the batch costs three
//! statements and one commit however many requests it holds. The database checks the last two
//! conditions itself, in the same statements that count (`WHERE` clauses that compare with the
//! plan's row and the counters as they stand, under their row locks), so concurrent replicas
//! stay exact. When any condition fails the transaction is rolled back and the batch's requests
//! are metered one by one, which decides each exactly as before.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::LazyLock;

use serde::Serialize;
use sqlx::pool::PoolConnection;
use sqlx::{PgConnection, Postgres, Sqlite, SqliteConnection};

use crate::backend::{PostgresStore, SqliteStore};
use crate::types::{Decision, LimitState, MeterItem, Metered, PlanLimits};
use crate::util::month_bounds;
use crate::{Error, Result, Store};

/// The connection the group-commit task keeps for its batches (no pool hand-over per batch).
pub(crate) enum MeterConn {
    /// On SQLite.
    Sqlite(PoolConnection<Sqlite>),
    /// On PostgreSQL.
    Postgres(PoolConnection<Postgres>),
}

impl MeterConn {
    /// Closes the connection rather than returning it to the pool (a transaction may be open).
    async fn close(self) {
        let _ = match self {
            MeterConn::Sqlite(c) => c.close().await,
            MeterConn::Postgres(c) => c.close().await,
        };
    }
}

impl Store {
    /// Meters `items` as [`Store::meter_batch`] does, on `conn` (acquired when `None`, closed
    /// and emptied after an error); the flag says whether the batch went together.
    pub(crate) async fn meter_group(
        &self,
        conn: &mut Option<MeterConn>,
        items: &[MeterItem],
    ) -> (Vec<Result<Metered>>, bool) {
        let Some(plan) = plan_batch(items) else {
            return (self.meter_each(items).await, false);
        };
        let outcome = self.meter_together(conn, items, &plan).await;
        match outcome {
            Ok(Some(metered)) => (metered.into_iter().map(Ok).collect(), true),
            Ok(None) => (self.meter_each(items).await, false),
            Err(e) => {
                if let Some(c) = conn.take() {
                    c.close().await;
                }
                // Nothing was committed; every request of the batch is told so.
                let why = e.to_string();
                let failed = items.iter().map(|_| Err(Error::Commit(why.clone())));
                (failed.collect(), true)
            }
        }
    }

    async fn meter_together(
        &self,
        conn: &mut Option<MeterConn>,
        items: &[MeterItem],
        plan: &BatchPlan,
    ) -> Result<Option<Vec<Metered>>> {
        if conn.is_none() {
            *conn = Some(match self {
                Store::Sqlite(s) => MeterConn::Sqlite(s.pool.acquire().await?),
                Store::Postgres(s) => MeterConn::Postgres(s.pool.acquire().await?),
            });
        }
        match conn {
            Some(MeterConn::Sqlite(c)) => SqliteStore::meter_together(c, items, plan).await,
            Some(MeterConn::Postgres(c)) => PostgresStore::meter_together(c, items, plan).await,
            None => Ok(None),
        }
    }

    /// Each request metered on its own, in order.
    async fn meter_each(&self, items: &[MeterItem]) -> Vec<Result<Metered>> {
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            let metered = self
                .meter_with(item.key_id, &item.event, &item.predictions)
                .await;
            out.push(metered);
        }
        out
    }
}

/// One key's share of a batch.
#[derive(Debug)]
pub(crate) struct KeyGroup {
    pub key_id: i64,
    pub limits: PlanLimits,
    /// The minute all its requests fall in (Unix seconds of its start).
    pub window: i64,
    /// The UTC month all its requests fall in (its first second) and the next month's.
    pub month: i64,
    pub next_month: i64,
    /// Its requests, as indices into the batch, in order.
    pub items: Vec<usize>,
    /// Their texts, summed.
    pub texts: i64,
}

/// A batch that may be committed together, grouped by key (ascending key id: the order rows
/// are locked in, the same on every replica).
#[derive(Debug)]
pub(crate) struct BatchPlan {
    pub groups: Vec<KeyGroup>,
}

/// The batch grouped by key, or `None` when it must be metered one by one: a repeated request
/// id, a negative count, a score that is not a finite number, a key whose requests straddle a
/// minute or month, or a key whose totals exceed the limits given.
pub(crate) fn plan_batch(items: &[MeterItem]) -> Option<BatchPlan> {
    if items.is_empty() {
        return None;
    }
    let mut ids = HashSet::with_capacity(items.len());
    let mut groups: BTreeMap<i64, KeyGroup> = BTreeMap::new();
    for (i, item) in items.iter().enumerate() {
        let e = &item.event;
        if e.texts < 0 || e.characters < 0 || !ids.insert(e.id.as_str()) {
            return None;
        }
        // JSON has no NaN: such a score is stored one by one, as the database takes it.
        let finite = |p: &crate::types::NewPrediction| {
            p.score.is_finite() && p.uncertainty.is_none_or(f64::is_finite)
        };
        if !item.predictions.iter().all(finite) {
            return None;
        }
        let window = e.at - e.at.rem_euclid(60);
        let (month, next_month) = month_bounds(e.at);
        let group = groups.entry(item.key_id).or_insert_with(|| KeyGroup {
            key_id: item.key_id,
            limits: item.limits,
            window,
            month,
            next_month,
            items: Vec::new(),
            texts: 0,
        });
        if group.limits != item.limits || group.window != window || group.month != month {
            return None;
        }
        group.items.push(i);
        group.texts = group.texts.checked_add(e.texts)?;
    }
    let fits = |g: &KeyGroup| {
        (g.items.len() as i64) <= g.limits.requests_per_minute
            && g.texts <= g.limits.texts_per_month
    };
    if !groups.values().all(fits) {
        return None;
    }
    Some(BatchPlan {
        groups: groups.into_values().collect(),
    })
}

#[derive(Serialize)]
struct EventRow<'a> {
    id: &'a str,
    tenant: &'a str,
    key_prefix: &'a str,
    model: &'a str,
    version: i64,
    texts: i64,
    characters: i64,
    at: i64,
    request_sha256: &'a str,
}

#[derive(Serialize)]
struct PredictionRow<'a> {
    tenant: &'a str,
    model: &'a str,
    version: i64,
    request_id: &'a str,
    idx: i64,
    text: &'a str,
    label: &'a str,
    score: f64,
    uncertainty: Option<f64>,
    created_at: i64,
}

#[derive(Serialize)]
struct WindowRow {
    key_id: i64,
    window: i64,
    n: i64,
    rpm: i64,
    tpm: i64,
}

#[derive(Serialize)]
struct QuotaRow {
    key_id: i64,
    month: i64,
    texts: i64,
}

/// The events as one JSON array (a statement's single parameter on both back ends).
pub(crate) fn events_json(items: &[MeterItem]) -> String {
    let rows: Vec<EventRow> = items
        .iter()
        .map(|i| {
            let e = &i.event;
            EventRow {
                id: &e.id,
                tenant: &e.tenant,
                key_prefix: &e.key_prefix,
                model: &e.model,
                version: e.version,
                texts: e.texts,
                characters: e.characters,
                at: e.at,
                request_sha256: &e.request_sha256,
            }
        })
        .collect();
    serde_json::to_string(&rows).unwrap_or_default()
}

/// The predictions kept with the batch's requests.
pub(crate) fn predictions_json(items: &[MeterItem]) -> String {
    let rows: Vec<PredictionRow> = items
        .iter()
        .flat_map(|i| &i.predictions)
        .map(|p| PredictionRow {
            tenant: &p.tenant,
            model: &p.model,
            version: p.version,
            request_id: &p.request_id,
            idx: p.index,
            text: &p.text,
            label: &p.label,
            score: p.score,
            uncertainty: p.uncertainty,
            created_at: p.created_at,
        })
        .collect();
    serde_json::to_string(&rows).unwrap_or_default()
}

/// Each key's request count for its minute, with the limits the batch assumes.
pub(crate) fn windows_json(plan: &BatchPlan) -> String {
    let rows: Vec<WindowRow> = plan
        .groups
        .iter()
        .map(|g| WindowRow {
            key_id: g.key_id,
            window: g.window,
            n: g.items.len() as i64,
            rpm: g.limits.requests_per_minute,
            tpm: g.limits.texts_per_month,
        })
        .collect();
    serde_json::to_string(&rows).unwrap_or_default()
}

/// Each key's texts for its month.
pub(crate) fn quotas_json(plan: &BatchPlan) -> String {
    let rows: Vec<QuotaRow> = plan
        .groups
        .iter()
        .map(|g| QuotaRow {
            key_id: g.key_id,
            month: g.month,
            texts: g.texts,
        })
        .collect();
    serde_json::to_string(&rows).unwrap_or_default()
}

/// Each request's outcome once its key's counters were raised to `windows` (key → window
/// start, requests in it) and `quotas` (key → texts this month): the requests of a key are
/// counted in batch order, as one-by-one metering would count them. `None` if a key's counters
/// are missing (the statements refused it).
pub(crate) fn decisions(
    items: &[MeterItem],
    plan: &BatchPlan,
    windows: &HashMap<i64, (i64, i64)>,
    quotas: &HashMap<i64, i64>,
) -> Option<Vec<Metered>> {
    let mut out: Vec<Option<Metered>> = vec![None; items.len()];
    for g in &plan.groups {
        let &(window_start, requests_after) = windows.get(&g.key_id)?;
        let &texts_after = quotas.get(&g.key_id)?;
        let mut requests_used = requests_after - g.items.len() as i64;
        let mut texts_used = texts_after - g.texts;
        for &i in &g.items {
            let now = items[i].event.at;
            requests_used += 1;
            texts_used += items[i].event.texts;
            out[i] = Some(Metered {
                decision: Decision {
                    allowed: true,
                    denied_by: None,
                    requests: limit_state(
                        g.limits.requests_per_minute,
                        requests_used,
                        window_start + 60,
                        now,
                    ),
                    texts: limit_state(g.limits.texts_per_month, texts_used, g.next_month, now),
                },
                duplicate: false,
            });
        }
    }
    out.into_iter().collect()
}

/// The state of a limit of `limit` with `used` counted, resetting at `reset_at`, seen at `now`.
pub(crate) fn limit_state(limit: i64, used: i64, reset_at: i64, now: i64) -> LimitState {
    LimitState {
        limit,
        remaining: (limit - used).max(0),
        reset_at,
        reset_after: (reset_at - now).max(0),
    }
}

/// The access snapshot's loader, expanded inside each back end's module (see `backend.rs`).
macro_rules! metering_ops {
    ($store:ty) => {
        impl $store {
            /// The access epoch (see [`crate::Store::access_epoch`]).
            pub async fn access_epoch(&self) -> Result<i64> {
                Ok(sqlx::query_scalar("SELECT epoch FROM access_epoch WHERE id = 1")
                    .fetch_one(&self.pool)
                    .await?)
            }

            /// Keys, plans, grants and models as they stand (see
            /// [`crate::Store::access_snapshot`]).
            pub async fn access_snapshot(&self) -> Result<AccessSnapshot> {
                let epoch = self.access_epoch().await?;
                let keys: Vec<KeyCandidate> = sqlx::query_as(
                    "SELECT k.id, k.prefix, k.key_sha256, k.plan, k.revoked_at, t.id AS tenant_id, \
                       t.name AS tenant \
                     FROM api_keys k JOIN tenants t ON t.id = k.tenant_id",
                )
                .fetch_all(&self.pool)
                .await?;
                let plans: Vec<(String, i64, i64)> = sqlx::query_as(
                    "SELECT name, requests_per_minute, texts_per_month FROM plans",
                )
                .fetch_all(&self.pool)
                .await?;
                let models: Vec<(String, bool)> =
                    sqlx::query_as("SELECT name, public FROM models")
                        .fetch_all(&self.pool)
                        .await?;
                let grants: Vec<(String, String)> = sqlx::query_as(
                    "SELECT t.name, g.model FROM model_grants g JOIN tenants t ON t.id = g.tenant_id",
                )
                .fetch_all(&self.pool)
                .await?;
                let mut snapshot = AccessSnapshot {
                    epoch,
                    ..AccessSnapshot::default()
                };
                for k in keys {
                    let Ok(sha256) = <[u8; 32]>::try_from(k.key_sha256.as_slice()) else {
                        continue;
                    };
                    snapshot
                        .keys
                        .entry(k.info.prefix.clone())
                        .or_default()
                        .push(crate::access::HeldKey {
                            sha256,
                            info: k.info,
                            revoked: k.revoked_at.is_some(),
                        });
                }
                for (name, requests_per_minute, texts_per_month) in plans {
                    snapshot.plans.insert(
                        name,
                        PlanLimits {
                            requests_per_minute,
                            texts_per_month,
                        },
                    );
                }
                snapshot.models.extend(models);
                for (tenant, model) in grants {
                    snapshot.grants.entry(tenant).or_default().insert(model);
                }
                Ok(snapshot)
            }
        }
    };
}
pub(crate) use metering_ops;

/// The JSON rows of each statement, as SQL over `$1`-`$3`: events, windows, quotas. `$rows`
/// is the back end's table function over a JSON array parameter, aliased `j` with each element
/// in `j.value`.
macro_rules! batch_statements {
    ($events:literal, $windows:literal, $quotas:literal, $predictions:literal) => {
        [
            concat!(
                "INSERT INTO usage_events \
                   (id, tenant, key_prefix, model, version, texts, characters, at, request_sha256) \
                 SELECT j.value ->> 'id', j.value ->> 'tenant', j.value ->> 'key_prefix', \
                   j.value ->> 'model', CAST(j.value ->> 'version' AS BIGINT), \
                   CAST(j.value ->> 'texts' AS BIGINT), CAST(j.value ->> 'characters' AS BIGINT), \
                   CAST(j.value ->> 'at' AS BIGINT), j.value ->> 'request_sha256' \
                 FROM ",
                $events,
                " WHERE true ON CONFLICT (id) DO NOTHING"
            ),
            // Each key's minute, raised by its request count only if the plan is the one
            // assumed and the count stays within it (a later minute restarts the count).
            concat!(
                "INSERT INTO request_windows (key_id, window_start, requests) \
                 SELECT k.id, CAST(j.value ->> 'window' AS BIGINT), CAST(j.value ->> 'n' AS BIGINT) \
                 FROM ",
                $windows,
                " JOIN api_keys k ON k.id = CAST(j.value ->> 'key_id' AS BIGINT) \
                   JOIN plans p ON p.name = k.plan \
                 WHERE p.requests_per_minute = CAST(j.value ->> 'rpm' AS BIGINT) \
                   AND p.texts_per_month = CAST(j.value ->> 'tpm' AS BIGINT) \
                   AND CAST(j.value ->> 'n' AS BIGINT) <= p.requests_per_minute \
                 ORDER BY k.id \
                 ON CONFLICT (key_id) DO UPDATE SET \
                   requests = CASE WHEN request_windows.window_start >= excluded.window_start \
                     THEN request_windows.requests + excluded.requests ELSE excluded.requests END, \
                   window_start = CASE WHEN request_windows.window_start >= excluded.window_start \
                     THEN request_windows.window_start ELSE excluded.window_start END \
                 WHERE request_windows.window_start < excluded.window_start \
                   OR request_windows.requests + excluded.requests <= \
                     (SELECT p2.requests_per_minute FROM api_keys k2 \
                        JOIN plans p2 ON p2.name = k2.plan WHERE k2.id = excluded.key_id)"
            ),
            // Each key's texts this month, raised only while they stay within the plan.
            concat!(
                "INSERT INTO text_quota (key_id, month_start, texts) \
                 SELECT k.id, CAST(j.value ->> 'month' AS BIGINT), CAST(j.value ->> 'texts' AS BIGINT) \
                 FROM ",
                $quotas,
                " JOIN api_keys k ON k.id = CAST(j.value ->> 'key_id' AS BIGINT) \
                   JOIN plans p ON p.name = k.plan \
                 WHERE CAST(j.value ->> 'texts' AS BIGINT) <= p.texts_per_month \
                 ORDER BY k.id \
                 ON CONFLICT (key_id, month_start) DO UPDATE SET texts = text_quota.texts + excluded.texts \
                 WHERE text_quota.texts + excluded.texts <= \
                   (SELECT p2.texts_per_month FROM api_keys k2 \
                      JOIN plans p2 ON p2.name = k2.plan WHERE k2.id = excluded.key_id)"
            ),
            // The predictions kept for review (one already logged, by a retry, stays).
            concat!(
                "INSERT INTO predictions (tenant, model, version, request_id, idx, text, label, \
                   score, uncertainty, created_at) \
                 SELECT j.value ->> 'tenant', j.value ->> 'model', \
                   CAST(j.value ->> 'version' AS BIGINT), j.value ->> 'request_id', \
                   CAST(j.value ->> 'idx' AS BIGINT), j.value ->> 'text', j.value ->> 'label', \
                   CAST(j.value ->> 'score' AS DOUBLE PRECISION), \
                   CAST(j.value ->> 'uncertainty' AS DOUBLE PRECISION), \
                   CAST(j.value ->> 'created_at' AS BIGINT) \
                 FROM ",
                $predictions,
                " WHERE true ON CONFLICT (tenant, request_id, idx) DO NOTHING"
            ),
        ]
    };
}

/// The rows a batch's statements returned: events inserted, and each key's counters after.
#[derive(Default)]
struct Counted {
    events: usize,
    windows: HashMap<i64, (i64, i64)>,
    quotas: HashMap<i64, i64>,
}

impl Counted {
    /// Each request's outcome, or `None` when the database did not confirm every condition.
    fn metered(&self, items: &[MeterItem], plan: &BatchPlan) -> Option<Vec<Metered>> {
        if self.events != items.len()
            || self.windows.len() != plan.groups.len()
            || self.quotas.len() != plan.groups.len()
        {
            return None;
        }
        decisions(items, plan, &self.windows, &self.quotas)
    }
}

const SQLITE_BATCH: [&str; 4] = batch_statements!(
    "json_each($1) AS j",
    "json_each($2) AS j",
    "json_each($3) AS j",
    "json_each($4) AS j"
);

/// SQLite's batch, from `BEGIN` to `COMMIT` in one call: after each counting statement the
/// `meter_check` view (migration 5) raises unless it changed as many rows as it must (every
/// event new, every key's counters raised), which stops the call before its `COMMIT`. The
/// counters' rows come back told apart by a first column.
static SQLITE_TOGETHER: LazyLock<String> = LazyLock::new(|| {
    format!(
        "BEGIN IMMEDIATE; \
         {}; INSERT INTO meter_check VALUES (changes() = $5); \
         {} RETURNING 1, key_id, window_start, requests; \
         INSERT INTO meter_check VALUES (changes() = $6); \
         {} RETURNING 2, key_id, texts, 0; \
         INSERT INTO meter_check VALUES (changes() = $6); \
         {}; COMMIT",
        SQLITE_BATCH[0], SQLITE_BATCH[1], SQLITE_BATCH[2], SQLITE_BATCH[3]
    )
});

/// What `meter_check` raises with.
const SQLITE_NOT_TOGETHER: &str = "flywheel: the batch is metered one request at a time";

impl SqliteStore {
    /// The batch on the group-commit task's connection, from `BEGIN IMMEDIATE` to `COMMIT` in
    /// one call (the connection runs on a thread of its own: every call is a hand-over).
    /// `Ok(None)`, rolled back, when the database does not confirm every condition. On another
    /// error the transaction may still be open: the caller closes the connection.
    async fn meter_together(
        conn: &mut SqliteConnection,
        items: &[MeterItem],
        plan: &BatchPlan,
    ) -> Result<Option<Vec<Metered>>> {
        let rows: std::result::Result<Vec<(i64, i64, i64, i64)>, sqlx::Error> =
            sqlx::query_as(&SQLITE_TOGETHER)
                .bind(events_json(items))
                .bind(windows_json(plan))
                .bind(quotas_json(plan))
                .bind(predictions_json(items))
                .bind(items.len() as i64)
                .bind(plan.groups.len() as i64)
                .fetch_all(&mut *conn)
                .await;
        let rows = match rows {
            Ok(rows) => rows,
            Err(e) if is_check(&e) => {
                sqlx::query("ROLLBACK").execute(&mut *conn).await?;
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        };
        let mut counted = Counted {
            events: items.len(),
            ..Counted::default()
        };
        for (part, a, b, c) in rows {
            if part == 1 {
                counted.windows.insert(a, (b, c));
            } else {
                counted.quotas.insert(a, b);
            }
        }
        // Committed: the checks passed, so every key has its counters. Were one missing, the
        // requests must not be metered again: they are told to retry, and a retry is a
        // duplicate of its committed event.
        match counted.metered(items, plan) {
            Some(metered) => Ok(Some(metered)),
            None => Err(Error::Commit(
                "the batch was committed but its counters did not come back; retry".into(),
            )),
        }
    }
}

/// Whether `e` is `meter_check`'s refusal.
fn is_check(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|d| d.message().contains(SQLITE_NOT_TOGETHER))
}

const POSTGRES_BATCH: [&str; 4] = batch_statements!(
    "jsonb_array_elements($1::jsonb) AS j(value)",
    "jsonb_array_elements($2::jsonb) AS j(value)",
    "jsonb_array_elements($3::jsonb) AS j(value)",
    "jsonb_array_elements($4::jsonb) AS j(value)"
);

/// PostgreSQL's batch: one statement; `flywheel_require` (migration 5) raises unless every
/// event was new and every key's counters were raised.
static POSTGRES_TOGETHER: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH ins AS ({} RETURNING 1), \
           win AS ({} RETURNING key_id, window_start, requests), \
           quo AS ({} RETURNING key_id, texts), \
           pre AS ({}), \
           ok AS (SELECT flywheel_require((SELECT count(*) FROM ins) = $5 \
             AND (SELECT count(*) FROM win) = $6 AND (SELECT count(*) FROM quo) = $6) AS ok) \
         SELECT w.key_id, w.window_start, w.requests, q.texts \
         FROM ok LEFT JOIN (win w JOIN quo q ON q.key_id = w.key_id) ON ok.ok",
        POSTGRES_BATCH[0], POSTGRES_BATCH[1], POSTGRES_BATCH[2], POSTGRES_BATCH[3]
    )
});

/// The SQLSTATE `flywheel_require` raises: the batch is not for the fast path.
const NOT_TOGETHER: &str = "FWB01";

impl PostgresStore {
    /// The batch as one statement (data-modifying CTEs, committed on its own) on the
    /// group-commit task's connection: one round trip and one commit. When the database does not
    /// confirm every condition the statement raises [`NOT_TOGETHER`] and nothing of it is kept:
    /// `Ok(None)`.
    async fn meter_together(
        conn: &mut PgConnection,
        items: &[MeterItem],
        plan: &BatchPlan,
    ) -> Result<Option<Vec<Metered>>> {
        // `ok` is the left side of the join, so it is always evaluated.
        type Row = (Option<i64>, Option<i64>, Option<i64>, Option<i64>);
        let rows: std::result::Result<Vec<Row>, sqlx::Error> = sqlx::query_as(&POSTGRES_TOGETHER)
            .bind(events_json(items))
            .bind(windows_json(plan))
            .bind(quotas_json(plan))
            .bind(predictions_json(items))
            .bind(items.len() as i64)
            .bind(plan.groups.len() as i64)
            .fetch_all(&mut *conn)
            .await;
        let rows = match rows {
            Ok(rows) => rows,
            Err(e)
                if e.as_database_error().and_then(|d| d.code()).as_deref()
                    == Some(NOT_TOGETHER) =>
            {
                return Ok(None)
            }
            Err(e) => return Err(e.into()),
        };
        let mut counted = Counted {
            events: items.len(),
            ..Counted::default()
        };
        for row in rows {
            if let (Some(key_id), Some(window_start), Some(requests), Some(texts)) = row {
                counted.windows.insert(key_id, (window_start, requests));
                counted.quotas.insert(key_id, texts);
            }
        }
        Ok(counted.metered(items, plan))
    }
}
