//! Metering many requests in one transaction (group commit), and loading the in-memory
//! [`crate::AccessSnapshot`].
//!
//! A batch is written together when that provably gives what metering its requests one by one
//! ([`crate::Store::meter`]) would: every event is new, each key's requests fall in one minute
//! and one month, the plan limits the caller gave are the database's, and each key's totals fit
//! under its limits — then every request is admitted in any order, and the batch costs one
//! commit however many requests it holds. The database checks the last two
//! conditions itself, in the same statements that count (`WHERE` clauses that compare with the
//! plan's row and the counters as they stand, under their row locks), so concurrent replicas
//! stay exact. When any condition fails the transaction is rolled back and the batch's requests
//! are metered one by one, which decides each exactly as before.
//!
//! SQLite batches run on a connection of their own opened with `rusqlite` ([`sqlite`]), on the
//! committing thread: the statements are plain calls (a prepared insert per event), with none
//! of the hand-overs to a connection thread that an async driver makes per statement and per
//! row. PostgreSQL batches are one statement over JSON arrays ([`postgres`]): one round trip.

mod postgres;
mod sqlite;

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;
use sqlx::pool::PoolConnection;

use crate::types::{Decision, LimitState, MeterItem, Metered, PlanLimits};
use crate::util::month_bounds;
use crate::{Error, Result, Store};

pub(crate) use sqlite::Batcher;

/// Meters a batch as [`Store::meter_batch`] describes, with a connection of its own.
pub(crate) async fn meter_batch(store: &Store, items: &[MeterItem]) -> Vec<Result<Metered>> {
    let Some(plan) = plan_batch(items) else {
        return meter_each(store, items).await;
    };
    let outcome = match store {
        Store::Sqlite(s) => match s.file.clone() {
            Some(path) => {
                let owned = items.to_vec();
                tokio::task::spawn_blocking(move || {
                    Batcher::new(path).meter_together(&owned, &plan)
                })
                .await
                .unwrap_or_else(|e| Err(Error::Commit(e.to_string())))
            }
            None => Ok(None),
        },
        Store::Postgres(s) => match s.pool.acquire().await {
            Ok(mut conn) => postgres::meter_together(&mut conn, items, &plan).await,
            Err(e) => Err(e.into()),
        },
    };
    settle(store, items, outcome).await
}

/// Meters a batch on PostgreSQL with the group commit's kept connection (acquired when `None`,
/// dropped after an error).
pub(crate) async fn meter_batch_on(
    store: &Store,
    conn: &mut Option<PoolConnection<sqlx::Postgres>>,
    items: &[MeterItem],
) -> (Vec<Result<Metered>>, bool) {
    let (Store::Postgres(s), Some(plan)) = (store, plan_batch(items)) else {
        return (meter_batch(store, items).await, false);
    };
    let outcome = match conn {
        Some(c) => postgres::meter_together(c, items, &plan).await,
        None => match s.pool.acquire().await {
            Ok(c) => postgres::meter_together(conn.insert(c), items, &plan).await,
            Err(e) => Err(e.into()),
        },
    };
    if outcome.is_err() {
        if let Some(c) = conn.take() {
            let _ = c.close().await;
        }
    }
    let together = matches!(outcome, Ok(Some(_)));
    (settle(store, items, outcome).await, together)
}

/// The results of a batch from the fast path's outcome: its own results, the requests metered
/// one by one when it did not apply, or the error for every request when it failed (nothing
/// was committed).
pub(crate) async fn settle(
    store: &Store,
    items: &[MeterItem],
    outcome: Result<Option<Vec<Metered>>>,
) -> Vec<Result<Metered>> {
    match outcome {
        Ok(Some(metered)) => metered.into_iter().map(Ok).collect(),
        Ok(None) => meter_each(store, items).await,
        Err(e) => {
            let why = e.to_string();
            items
                .iter()
                .map(|_| Err(Error::Commit(why.clone())))
                .collect()
        }
    }
}

/// Each request metered on its own, in order (with its predictions when admitted).
pub(crate) async fn meter_each(store: &Store, items: &[MeterItem]) -> Vec<Result<Metered>> {
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let metered = store
            .meter_with(item.key_id, &item.event, &item.predictions)
            .await;
        out.push(metered);
    }
    out
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

/// The batch's two counting statements, shared by both back ends: each key's minute, then each
/// key's month. Each reads its rows from one JSON array parameter through the back end's table
/// function (`$windows`, `$quotas`), aliased `j` with each element in `j.value`.
macro_rules! counting_statements {
    ($windows:literal, $quotas:literal) => {
        [
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
        ]
    };
}
pub(crate) use counting_statements;

/// Each key's counters after a batch's counting statements (the events were checked all new
/// before).
#[derive(Default)]
pub(crate) struct Counted {
    pub windows: HashMap<i64, (i64, i64)>,
    pub quotas: HashMap<i64, i64>,
}

impl Counted {
    /// Each request's outcome, or `None` when the database did not confirm every condition.
    pub fn metered(&self, items: &[MeterItem], plan: &BatchPlan) -> Option<Vec<Metered>> {
        if self.windows.len() != plan.groups.len() || self.quotas.len() != plan.groups.len() {
            return None;
        }
        decisions(items, plan, &self.windows, &self.quotas)
    }
}
