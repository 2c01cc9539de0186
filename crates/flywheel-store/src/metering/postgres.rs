//! PostgreSQL's batch: one statement of data-modifying CTEs, committed on its own.

use std::sync::LazyLock;

use sqlx::PgConnection;

use super::{events_json, predictions_json, quotas_json, windows_json, BatchPlan, Counted};
use crate::types::{MeterItem, Metered};
use crate::{Error, Result};

/// The events, each read from the JSON array `$1`.
const EVENTS: &str = concat!(
    "INSERT INTO usage_events \
           (id, tenant, key_prefix, model, version, texts, characters, at, request_sha256) \
         SELECT j.value ->> 'id', j.value ->> 'tenant', j.value ->> 'key_prefix', \
           j.value ->> 'model', CAST(j.value ->> 'version' AS BIGINT), \
           CAST(j.value ->> 'texts' AS BIGINT), CAST(j.value ->> 'characters' AS BIGINT), \
           CAST(j.value ->> 'at' AS BIGINT), j.value ->> 'request_sha256' \
         FROM ",
    "jsonb_array_elements($1::jsonb) AS j(value)",
    " WHERE true ON CONFLICT (id) DO NOTHING"
);

/// The counting statements over the JSON arrays `$2` (minutes) and `$3` (months).
const COUNTING: [&str; 2] = super::counting_statements!(
    "jsonb_array_elements($2::jsonb) AS j(value)",
    "jsonb_array_elements($3::jsonb) AS j(value)"
);

/// The predictions kept for review, each read from the JSON array `$4` (one already logged, by
/// a retry, stays).
const PREDICTIONS: &str = concat!(
    "INSERT INTO predictions (tenant, model, version, request_id, idx, text, label, \
           score, uncertainty, created_at) \
         SELECT j.value ->> 'tenant', j.value ->> 'model', \
           CAST(j.value ->> 'version' AS BIGINT), j.value ->> 'request_id', \
           CAST(j.value ->> 'idx' AS BIGINT), j.value ->> 'text', j.value ->> 'label', \
           CAST(j.value ->> 'score' AS DOUBLE PRECISION), \
           CAST(j.value ->> 'uncertainty' AS DOUBLE PRECISION), \
           CAST(j.value ->> 'created_at' AS BIGINT) \
         FROM ",
    "jsonb_array_elements($4::jsonb) AS j(value)",
    " WHERE true ON CONFLICT (tenant, request_id, idx) DO NOTHING"
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
        EVENTS, COUNTING[0], COUNTING[1], PREDICTIONS
    )
});

/// The SQLSTATE `flywheel_require` raises: the batch is not for the fast path.
const NOT_TOGETHER: &str = "FWB01";

/// The batch as one statement (data-modifying CTEs, committed on its own) on `conn`: one
/// round trip and one commit. When the database does not
/// confirm every condition the statement raises [`NOT_TOGETHER`] and nothing of it is kept:
/// `Ok(None)`.
pub(super) async fn meter_together(
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
        Err(e) if e.as_database_error().and_then(|d| d.code()).as_deref() == Some(NOT_TOGETHER) => {
            return Ok(None)
        }
        Err(e) => return Err(e.into()),
    };
    let mut counted = Counted::default();
    for row in rows {
        if let (Some(key_id), Some(window_start), Some(requests), Some(texts)) = row {
            counted.windows.insert(key_id, (window_start, requests));
            counted.quotas.insert(key_id, texts);
        }
    }
    // The statement committed and its checks passed, so every key has its counters; were one
    // missing, the requests must not be metered again (a retry is a duplicate of its event).
    match counted.metered(items, plan) {
        Some(metered) => Ok(Some(metered)),
        None => Err(Error::Commit(
            "the batch was committed but its counters did not come back; retry".into(),
        )),
    }
}
