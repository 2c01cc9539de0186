//! The operations, written once and instantiated for each back end.
//!
//! Every statement is portable SQL (`$N` parameters work on both SQLite and PostgreSQL), so the
//! bodies below are identical for both; the macro only changes the pool type and the statement
//! that opens a write transaction (`BEGIN IMMEDIATE` on SQLite takes the database's write lock up
//! front, so read-modify-write transactions never fail on a lock upgrade).

use sqlx::postgres::PgPool;
use sqlx::sqlite::SqlitePool;
use sqlx::FromRow;
use subtle::ConstantTimeEq;

use crate::access::AccessSnapshot;
use crate::metering::limit_state;
use crate::types::*;
use crate::util::{format_day, month_bounds, now_unix, sha256, to_hex};
use crate::{Error, Result, KEY_PREFIX_LEN, KEY_RANDOM_BYTES, KEY_SCHEME};

/// The SQLite back end (one file, WAL mode, foreign keys on).
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pub(crate) pool: SqlitePool,
    /// The database file (`None` in memory): group commits open their own connection to it.
    pub(crate) file: Option<std::path::PathBuf>,
}

/// The PostgreSQL back end, for several replicas sharing one database.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pub(crate) pool: PgPool,
}

/// An `api_keys` row found by prefix, before its digest is compared.
#[derive(FromRow)]
struct KeyCandidate {
    #[sqlx(flatten)]
    info: KeyInfo,
    key_sha256: Vec<u8>,
    revoked_at: Option<i64>,
}

/// A row of the usage report, its day still a day number.
#[derive(FromRow)]
struct UsageRecord {
    tenant: String,
    key_prefix: String,
    model: String,
    day: i64,
    requests: i64,
    texts: i64,
    characters: i64,
    training_seconds: i64,
}

impl From<UsageRecord> for UsageRow {
    fn from(r: UsageRecord) -> Self {
        UsageRow {
            tenant: r.tenant,
            key_prefix: r.key_prefix,
            model: r.model,
            day: format_day(r.day),
            requests: r.requests,
            texts: r.texts,
            characters: r.characters,
            training_seconds: r.training_seconds,
        }
    }
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .map(|d| d.is_unique_violation())
        .unwrap_or(false)
}

fn is_foreign_key_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .map(|d| d.is_foreign_key_violation())
        .unwrap_or(false)
}

fn check_plan_limits(requests_per_minute: i64, texts_per_month: i64) -> Result<()> {
    if requests_per_minute < 0 || texts_per_month < 0 {
        return Err(Error::Invalid("plan limits must not be negative".into()));
    }
    Ok(())
}

fn validate_name(what: &str, name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > 128
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(Error::Invalid(format!(
            "{what} name {name:?} (use 1-128 characters from A-Z a-z 0-9 - _ .)"
        )));
    }
    Ok(())
}

macro_rules! backend {
    ($module:ident, $store:ty, $pool:ty, $db:ty, $begin:expr) => {
        mod $module {
        use super::*;
        impl $store {
            /// The connection pool, for callers that need raw access (health checks, tests).
            pub fn pool(&self) -> &$pool {
                &self.pool
            }

            /// Closes the pool, waiting for connections to be returned.
            pub async fn close(&self) {
                self.pool.close().await
            }

            // ---------------------------------------------------------------- registry

            /// Stores a new version of `name` (creating the model, private, if new) and returns
            /// its number (1, 2, ...). `sha256` (hex) must match the bytes.
            pub async fn push_model(
                &self,
                name: &str,
                bytes: &[u8],
                sha256_hex: &str,
                created_at: i64,
            ) -> Result<i64> {
                self.push_model_with_data(name, bytes, sha256_hex, created_at, None, None)
                    .await
            }

            /// Every model name with its aliases, by name.
            pub async fn list_models(&self) -> Result<Vec<ModelSummary>> {
                Ok(sqlx::query_as(
                    "SELECT m.name, m.public, m.latest_version, m.created_at, \
                       (SELECT a.version FROM model_aliases a WHERE a.name = m.name AND a.alias = 'champion') AS champion, \
                       (SELECT a.version FROM model_aliases a WHERE a.name = m.name AND a.alias = 'challenger') AS challenger \
                     FROM models m ORDER BY m.name",
                )
                .fetch_all(&self.pool)
                .await?)
            }

            /// The versions of one model, oldest first (metadata only).
            pub async fn list_versions(&self, name: &str) -> Result<Vec<VersionInfo>> {
                Ok(sqlx::query_as(
                    "SELECT name, version, sha256, size_bytes, created_at FROM model_versions \
                     WHERE name = $1 ORDER BY version",
                )
                .bind(name)
                .fetch_all(&self.pool)
                .await?)
            }

            /// One version with its artifact bytes.
            pub async fn get_version(&self, name: &str, version: i64) -> Result<ModelArtifact> {
                sqlx::query_as(
                    "SELECT name, version, sha256, size_bytes, created_at, artifact \
                     FROM model_versions WHERE name = $1 AND version = $2",
                )
                .bind(name)
                .bind(version)
                .fetch_optional(&self.pool)
                .await?
                .ok_or_else(|| Error::NotFound(format!("model {name:?} version {version}")))
            }

            /// Marks a model public (usable by every tenant) or private.
            pub async fn set_model_public(&self, name: &str, public: bool) -> Result<()> {
                let done = sqlx::query("UPDATE models SET public = $2 WHERE name = $1")
                    .bind(name)
                    .bind(public)
                    .execute(&self.pool)
                    .await?;
                if done.rows_affected() == 0 {
                    return Err(Error::NotFound(format!("model {name:?}")));
                }
                Ok(())
            }

            /// Points `alias` of `name` at `version` and records it in the alias history.
            pub async fn set_alias(&self, name: &str, alias: Alias, version: i64) -> Result<()> {
                let now = now_unix();
                let mut tx = self.pool.begin_with($begin).await?;
                point_alias(&mut tx, name, alias, version, now).await?;
                tx.commit().await?;
                Ok(())
            }

            /// The version `alias` points at, if set.
            pub async fn resolve_alias(&self, name: &str, alias: Alias) -> Result<Option<i64>> {
                Ok(sqlx::query_scalar(
                    "SELECT version FROM model_aliases WHERE name = $1 AND alias = $2",
                )
                .bind(name)
                .bind(alias.as_str())
                .fetch_optional(&self.pool)
                .await?)
            }

            /// Champion ← the previous champion. Repeated rollbacks walk further back through
            /// the history of `set`s (each rollback marks the current `set` as reverted).
            /// Returns the version that is champion now.
            pub async fn rollback(&self, name: &str) -> Result<i64> {
                let now = now_unix();
                let mut tx = self.pool.begin_with($begin).await?;
                let rows: Vec<(i64, i64)> = sqlx::query_as(
                    "SELECT id, version FROM alias_history \
                     WHERE name = $1 AND alias = 'champion' AND action = 'set' AND NOT reverted \
                     ORDER BY id DESC LIMIT 2",
                )
                .bind(name)
                .fetch_all(&mut *tx)
                .await?;
                let [(current_id, _), (_, previous), ..] = rows[..] else {
                    return Err(Error::NothingToRollBack(name.to_string()));
                };
                sqlx::query("UPDATE alias_history SET reverted = $2 WHERE id = $1")
                    .bind(current_id)
                    .bind(true)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "UPDATE model_aliases SET version = $2, updated_at = $3 \
                     WHERE name = $1 AND alias = 'champion'",
                )
                .bind(name)
                .bind(previous)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "INSERT INTO alias_history (name, alias, version, action, reverted, at) \
                     VALUES ($1, 'champion', $2, 'rollback', $3, $4)",
                )
                .bind(name)
                .bind(previous)
                .bind(false)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(previous)
            }

            /// Every alias change of a model, oldest first.
            pub async fn alias_history(&self, name: &str) -> Result<Vec<AliasEvent>> {
                Ok(sqlx::query_as(
                    "SELECT id, name, alias, version, action, reverted, at FROM alias_history \
                     WHERE name = $1 ORDER BY id",
                )
                .bind(name)
                .fetch_all(&self.pool)
                .await?)
            }

            // ---------------------------------------------------------------- tenants, keys

            /// Creates a tenant; [`Error::Invalid`] for a bad name, [`Error::AlreadyExists`] if
            /// taken.
            pub async fn create_tenant(&self, name: &str) -> Result<Tenant> {
                validate_name("tenant", name)?;
                let now = now_unix();
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO tenants (name, created_at) VALUES ($1, $2) RETURNING id",
                )
                .bind(name)
                .bind(now)
                .fetch_one(&self.pool)
                .await
                .map_err(|e| {
                    if is_unique_violation(&e) {
                        Error::AlreadyExists(format!("tenant {name:?}"))
                    } else {
                        e.into()
                    }
                })?;
                Ok(Tenant { id, name: name.to_string(), created_at: now })
            }

            /// Every tenant, by name.
            pub async fn list_tenants(&self) -> Result<Vec<Tenant>> {
                Ok(sqlx::query_as("SELECT id, name, created_at FROM tenants ORDER BY name")
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn tenant_id(&self, tenant: &str) -> Result<i64> {
                sqlx::query_scalar("SELECT id FROM tenants WHERE name = $1")
                    .bind(tenant)
                    .fetch_optional(&self.pool)
                    .await?
                    .ok_or_else(|| Error::NotFound(format!("tenant {tenant:?}")))
            }

            /// Creates a key for `tenant` on `plan`. The plaintext is returned once and only its
            /// SHA-256 is stored, with a short prefix to find and display it.
            pub async fn create_key(&self, tenant: &str, plan: &str) -> Result<NewKey> {
                let tenant_id = self.tenant_id(tenant).await?;
                let mut random = [0u8; KEY_RANDOM_BYTES];
                getrandom::fill(&mut random).map_err(|e| Error::Random(e.to_string()))?;
                let key = format!("{KEY_SCHEME}{}", crate::util::base64url(&random));
                let prefix = key[..KEY_PREFIX_LEN].to_string();
                let hash = sha256(key.as_bytes());
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO api_keys (tenant_id, plan, prefix, key_sha256, created_at) \
                     VALUES ($1, $2, $3, $4, $5) RETURNING id",
                )
                .bind(tenant_id)
                .bind(plan)
                .bind(&prefix)
                .bind(&hash[..])
                .bind(now_unix())
                .fetch_one(&self.pool)
                .await
                .map_err(|e| {
                    if is_foreign_key_violation(&e) {
                        Error::NotFound(format!("plan {plan:?}"))
                    } else {
                        e.into()
                    }
                })?;
                Ok(NewKey {
                    id,
                    key,
                    prefix,
                    tenant: tenant.to_string(),
                    plan: plan.to_string(),
                })
            }

            /// The key's owner, or `None` for an unknown, malformed or revoked key. Candidates
            /// are found by prefix; the SHA-256 digests are compared in constant time.
            pub async fn authenticate(&self, key: &str) -> Result<Option<KeyInfo>> {
                if !key.starts_with(KEY_SCHEME) || key.len() < KEY_PREFIX_LEN || !key.is_char_boundary(KEY_PREFIX_LEN) {
                    return Ok(None);
                }
                let hash = sha256(key.as_bytes());
                let rows: Vec<KeyCandidate> = sqlx::query_as(
                    "SELECT k.id, k.prefix, k.key_sha256, k.plan, k.revoked_at, t.id AS tenant_id, t.name AS tenant \
                     FROM api_keys k JOIN tenants t ON t.id = k.tenant_id WHERE k.prefix = $1",
                )
                .bind(&key[..KEY_PREFIX_LEN])
                .fetch_all(&self.pool)
                .await?;
                let mut found = None;
                for r in rows {
                    let equal: bool = r.key_sha256.as_slice().ct_eq(&hash[..]).into();
                    if equal && r.revoked_at.is_none() {
                        found = Some(r.info);
                    }
                }
                Ok(found)
            }

            /// The tenant's keys (prefixes only), oldest first.
            pub async fn list_keys(&self, tenant: &str) -> Result<Vec<KeySummary>> {
                let tenant_id = self.tenant_id(tenant).await?;
                Ok(sqlx::query_as(
                    "SELECT id, prefix, plan, created_at, revoked_at FROM api_keys \
                     WHERE tenant_id = $1 ORDER BY id",
                )
                .bind(tenant_id)
                .fetch_all(&self.pool)
                .await?)
            }

            /// Revokes the (not yet revoked) keys of `tenant` with this prefix; returns how many.
            pub async fn revoke_key(&self, tenant: &str, prefix: &str) -> Result<u64> {
                let tenant_id = self.tenant_id(tenant).await?;
                let done = sqlx::query(
                    "UPDATE api_keys SET revoked_at = $3 \
                     WHERE tenant_id = $1 AND prefix = $2 AND revoked_at IS NULL",
                )
                .bind(tenant_id)
                .bind(prefix)
                .bind(now_unix())
                .execute(&self.pool)
                .await?;
                if done.rows_affected() == 0 {
                    return Err(Error::NotFound(format!("active key {prefix:?} of tenant {tenant:?}")));
                }
                Ok(done.rows_affected())
            }

            /// Lets `tenant` use the (private) model `model`.
            pub async fn grant_model(&self, tenant: &str, model: &str) -> Result<()> {
                let tenant_id = self.tenant_id(tenant).await?;
                sqlx::query(
                    "INSERT INTO model_grants (tenant_id, model, created_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (tenant_id, model) DO NOTHING",
                )
                .bind(tenant_id)
                .bind(model)
                .bind(now_unix())
                .execute(&self.pool)
                .await
                .map_err(|e| {
                    if is_foreign_key_violation(&e) {
                        Error::NotFound(format!("model {model:?}"))
                    } else {
                        e.into()
                    }
                })?;
                Ok(())
            }

            /// Whether `tenant` may use `model`: it exists and is public or granted to the tenant.
            pub async fn can_use(&self, tenant: &str, model: &str) -> Result<bool> {
                let row: Option<i64> = sqlx::query_scalar(
                    "SELECT m.latest_version FROM models m WHERE m.name = $2 AND (m.public OR EXISTS ( \
                       SELECT 1 FROM model_grants g JOIN tenants t ON t.id = g.tenant_id \
                       WHERE t.name = $1 AND g.model = m.name))",
                )
                .bind(tenant)
                .bind(model)
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.is_some())
            }

            /// The models `tenant` may use (public or granted), by name.
            pub async fn usable_models(&self, tenant: &str) -> Result<Vec<String>> {
                let names = sqlx::query_scalar(
                    "SELECT m.name FROM models m WHERE m.public OR EXISTS ( \
                       SELECT 1 FROM model_grants g JOIN tenants t ON t.id = g.tenant_id \
                       WHERE t.name = $1 AND g.model = m.name) ORDER BY m.name",
                )
                .bind(tenant)
                .fetch_all(&self.pool)
                .await?;
                Ok(names)
            }

            // ---------------------------------------------------------------- plans, limits

            /// Creates a plan with its per-key limits; [`Error::Invalid`] for a bad name or a negative
            /// limit, [`Error::AlreadyExists`] if taken.
            pub async fn create_plan(
                &self,
                name: &str,
                requests_per_minute: i64,
                texts_per_month: i64,
            ) -> Result<Plan> {
                validate_name("plan", name)?;
                check_plan_limits(requests_per_minute, texts_per_month)?;
                let now = now_unix();
                sqlx::query(
                    "INSERT INTO plans (name, requests_per_minute, texts_per_month, created_at) \
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(name)
                .bind(requests_per_minute)
                .bind(texts_per_month)
                .bind(now)
                .execute(&self.pool)
                .await
                .map_err(|e| {
                    if is_unique_violation(&e) {
                        Error::AlreadyExists(format!("plan {name:?}"))
                    } else {
                        e.into()
                    }
                })?;
                Ok(Plan {
                    name: name.to_string(),
                    requests_per_minute,
                    texts_per_month,
                    created_at: now,
                })
            }

            /// Changes plan `name`'s limits (for every key on it); [`Error::Invalid`] for a
            /// negative limit, [`Error::NotFound`] for an unknown plan.
            pub async fn update_plan(
                &self,
                name: &str,
                requests_per_minute: i64,
                texts_per_month: i64,
            ) -> Result<Plan> {
                check_plan_limits(requests_per_minute, texts_per_month)?;
                sqlx::query_as(
                    "UPDATE plans SET requests_per_minute = $2, texts_per_month = $3 WHERE name = $1 \
                     RETURNING name, requests_per_minute, texts_per_month, created_at",
                )
                .bind(name)
                .bind(requests_per_minute)
                .bind(texts_per_month)
                .fetch_optional(&self.pool)
                .await?
                .ok_or_else(|| Error::NotFound(format!("plan {name:?}")))
            }

            /// Moves `tenant`'s active keys with this prefix to plan `plan` and returns how many;
            /// [`Error::NotFound`] for an unknown tenant or plan, or when no active key has the
            /// prefix.
            pub async fn set_key_plan(&self, tenant: &str, prefix: &str, plan: &str) -> Result<u64> {
                let tenant_id = self.tenant_id(tenant).await?;
                let done = sqlx::query(
                    "UPDATE api_keys SET plan = $3 WHERE tenant_id = $1 AND prefix = $2 \
                     AND revoked_at IS NULL",
                )
                .bind(tenant_id)
                .bind(prefix)
                .bind(plan)
                .execute(&self.pool)
                .await
                .map_err(|e| {
                    if is_foreign_key_violation(&e) {
                        Error::NotFound(format!("plan {plan:?}"))
                    } else {
                        e.into()
                    }
                })?;
                if done.rows_affected() == 0 {
                    return Err(Error::NotFound(format!(
                        "active key with prefix {prefix:?} of tenant {tenant:?}"
                    )));
                }
                Ok(done.rows_affected())
            }

            /// Every plan, by name.
            pub async fn list_plans(&self) -> Result<Vec<Plan>> {
                Ok(sqlx::query_as(
                    "SELECT name, requests_per_minute, texts_per_month, created_at FROM plans ORDER BY name",
                )
                .fetch_all(&self.pool)
                .await?)
            }

            /// Counts one request carrying `texts` texts against the key's plan, atomically across
            /// every process sharing the database. Requests are counted per fixed UTC minute,
            /// texts per UTC calendar month; a denied request counts against neither.
            pub async fn consume(&self, key_id: i64, texts: i64, now: i64) -> Result<Decision> {
                if texts < 0 {
                    return Err(Error::Invalid("texts must not be negative".into()));
                }
                let mut tx = self.pool.begin_with($begin).await?;
                let decision = count_in(&mut tx, key_id, texts, now).await?;
                if decision.allowed {
                    tx.commit().await?;
                } else {
                    tx.rollback().await?;
                }
                Ok(decision)
            }

            /// The limits as they stand for a request of `texts` texts, without counting it:
            /// `allowed` says whether [`Self::consume`] would allow it now. For refusing early
            /// (before any work); the final word is [`Self::meter`]'s.
            pub async fn peek(&self, key_id: i64, texts: i64, now: i64) -> Result<Decision> {
                let window = now - now.rem_euclid(60);
                let (month, next_month) = month_bounds(now);
                let (rpm, tpm, used_requests, used_texts): (i64, i64, Option<i64>, Option<i64>) = sqlx::query_as(
                    "SELECT p.requests_per_minute, p.texts_per_month, \
                       (SELECT w.requests FROM request_windows w WHERE w.key_id = k.id AND w.window_start >= $2) AS requests, \
                       (SELECT q.texts FROM text_quota q WHERE q.key_id = k.id AND q.month_start = $3) AS texts \
                     FROM api_keys k JOIN plans p ON p.name = k.plan WHERE k.id = $1",
                )
                .bind(key_id)
                .bind(window)
                .bind(month)
                .fetch_optional(&self.pool)
                .await?
                .ok_or_else(|| Error::NotFound(format!("key id {key_id}")))?;
                let used_requests = used_requests.unwrap_or(0);
                let used_texts = used_texts.unwrap_or(0);
                let denied_by = if used_requests >= rpm {
                    Some(LimitKind::Requests)
                } else if used_texts.saturating_add(texts) > tpm {
                    Some(LimitKind::Texts)
                } else {
                    None
                };
                Ok(Decision {
                    allowed: denied_by.is_none(),
                    denied_by,
                    requests: limit_state(rpm, used_requests, window + 60, now),
                    texts: limit_state(tpm, used_texts, next_month, now),
                })
            }

            /// Counts a served request against the key's plan and records its usage event in
            /// one transaction: either both are committed or neither is. A retry (same id, same
            /// tenant and request digest) records nothing new and counts only against the
            /// requests-per-minute window; the same id with anything else is an
            /// [`Error::IdempotencyConflict`]. Over a limit, nothing is written.
            pub async fn meter(&self, key_id: i64, event: &UsageEvent) -> Result<Metered> {
                self.meter_with(key_id, event, &[]).await
            }

            /// [`Self::meter`], also keeping `predictions` for review in the same transaction
            /// when the request is admitted.
            pub(crate) async fn meter_with(
                &self,
                key_id: i64,
                event: &UsageEvent,
                predictions: &[NewPrediction],
            ) -> Result<Metered> {
                if event.texts < 0 || event.characters < 0 {
                    return Err(Error::Invalid("texts and characters must not be negative".into()));
                }
                let mut tx = self.pool.begin_with($begin).await?;
                let inserted = insert_event(&mut tx, event).await?;
                if !inserted {
                    let (tenant, digest): (String, String) = sqlx::query_as(
                        "SELECT tenant, request_sha256 FROM usage_events WHERE id = $1",
                    )
                    .bind(&event.id)
                    .fetch_one(&mut *tx)
                    .await?;
                    if tenant != event.tenant || digest != event.request_sha256 {
                        tx.rollback().await?;
                        return Err(Error::IdempotencyConflict(event.id.clone()));
                    }
                }
                let texts = if inserted { event.texts } else { 0 };
                let decision = count_in(&mut tx, key_id, texts, event.at).await?;
                if decision.allowed {
                    insert_predictions(&mut tx, predictions).await?;
                    tx.commit().await?;
                } else {
                    tx.rollback().await?;
                }
                Ok(Metered {
                    decision,
                    duplicate: !inserted,
                })
            }

            // ---------------------------------------------------------------- usage

            /// Records one usage event; returns `false` when an event with this id already
            /// exists (the call is then a no-op).
            pub async fn record_usage(&self, event: &UsageEvent) -> Result<bool> {
                let mut tx = self.pool.begin_with($begin).await?;
                let inserted = insert_event(&mut tx, event).await?;
                tx.commit().await?;
                Ok(inserted)
            }

            /// The usage events themselves, oldest first (by time, then id).
            pub async fn usage_events(&self, filter: &UsageFilter) -> Result<Vec<UsageEvent>> {
                Ok(sqlx::query_as(
                    "SELECT id, tenant, key_prefix, model, version, texts, characters, at, request_sha256, \
                       training_seconds FROM usage_events \
                     WHERE ($1 IS NULL OR tenant = $1) AND ($2 IS NULL OR at >= $2) AND ($3 IS NULL OR at < $3) \
                     ORDER BY at, id",
                )
                .bind(filter.tenant.as_deref())
                .bind(filter.from)
                .bind(filter.to)
                .fetch_all(&self.pool)
                .await?)
            }

            /// Usage summed per tenant, key prefix, model and UTC day, in that order.
            pub async fn usage_report(&self, filter: &UsageFilter) -> Result<Vec<UsageRow>> {
                let rows: Vec<UsageRecord> = sqlx::query_as(
                    "SELECT tenant, key_prefix, model, at / 86400 AS day, COUNT(*) AS requests, \
                       CAST(SUM(texts) AS BIGINT) AS texts, CAST(SUM(characters) AS BIGINT) AS characters, \
                       CAST(SUM(training_seconds) AS BIGINT) AS training_seconds \
                     FROM usage_events \
                     WHERE ($1 IS NULL OR tenant = $1) AND ($2 IS NULL OR at >= $2) AND ($3 IS NULL OR at < $3) \
                     GROUP BY tenant, key_prefix, model, at / 86400 \
                     ORDER BY tenant, key_prefix, model, day",
                )
                .bind(filter.tenant.as_deref())
                .bind(filter.from)
                .bind(filter.to)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.into_iter().map(UsageRow::from).collect())
            }
        }

            /// Increments the key's request window and (by `texts`) its monthly text count inside
            /// `tx`, unless a limit would be passed. On a denial the caller must roll back: an
            /// increment made before the denial is still in `tx`.
            async fn count_in(
                tx: &mut sqlx::Transaction<'static, $db>,
                key_id: i64,
                texts: i64,
                now: i64,
            ) -> Result<Decision> {
                let window = now - now.rem_euclid(60);
                let (month, next_month) = month_bounds(now);
                let (rpm, tpm): (i64, i64) = sqlx::query_as(
                    "SELECT p.requests_per_minute, p.texts_per_month FROM api_keys k \
                     JOIN plans p ON p.name = k.plan WHERE k.id = $1",
                )
                .bind(key_id)
                .fetch_optional(&mut **tx)
                .await?
                .ok_or_else(|| Error::NotFound(format!("key id {key_id}")))?;

                let mut denied_by = None;
                let mut requests_used = None;
                let mut texts_used = None;
                if rpm <= 0 {
                    denied_by = Some(LimitKind::Requests);
                } else {
                    // The key's one window row: restarted at 1 when a later minute begins, else
                    // incremented while under the limit (a replica whose clock lags counts in
                    // the newer window). The row stays locked until commit, so concurrent
                    // callers serialise on it.
                    requests_used = sqlx::query_scalar(
                        "INSERT INTO request_windows (key_id, window_start, requests) VALUES ($1, $2, 1) \
                         ON CONFLICT (key_id) DO UPDATE SET \
                           requests = CASE WHEN request_windows.window_start >= excluded.window_start \
                             THEN request_windows.requests + 1 ELSE 1 END, \
                           window_start = CASE WHEN request_windows.window_start >= excluded.window_start \
                             THEN request_windows.window_start ELSE excluded.window_start END \
                         WHERE request_windows.window_start < excluded.window_start \
                           OR request_windows.requests < $3 \
                         RETURNING requests",
                    )
                    .bind(key_id)
                    .bind(window)
                    .bind(rpm)
                    .fetch_optional(&mut **tx)
                    .await?;
                    if requests_used.is_none() {
                        denied_by = Some(LimitKind::Requests);
                    }
                }
                if denied_by.is_none() {
                    if texts > tpm {
                        denied_by = Some(LimitKind::Texts);
                    } else {
                        texts_used = sqlx::query_scalar(
                            "INSERT INTO text_quota (key_id, month_start, texts) VALUES ($1, $2, $3) \
                             ON CONFLICT (key_id, month_start) DO UPDATE SET texts = text_quota.texts + $3 \
                             WHERE text_quota.texts + $3 <= $4 RETURNING texts",
                        )
                        .bind(key_id)
                        .bind(month)
                        .bind(texts)
                        .bind(tpm)
                        .fetch_optional(&mut **tx)
                        .await?;
                        if texts_used.is_none() {
                            denied_by = Some(LimitKind::Texts);
                        }
                    }
                }

                if denied_by.is_some() {
                    // The counters as they stand, without the increment made above.
                    let used_requests: i64 = match requests_used {
                        Some(n) => n - 1,
                        None => sqlx::query_scalar(
                            "SELECT requests FROM request_windows WHERE key_id = $1 AND window_start >= $2",
                        )
                        .bind(key_id)
                        .bind(window)
                        .fetch_optional(&mut **tx)
                        .await?
                        .unwrap_or(0),
                    };
                    let used_texts: i64 = sqlx::query_scalar(
                        "SELECT texts FROM text_quota WHERE key_id = $1 AND month_start = $2",
                    )
                    .bind(key_id)
                    .bind(month)
                    .fetch_optional(&mut **tx)
                    .await?
                    .unwrap_or(0);
                    return Ok(Decision {
                        allowed: false,
                        denied_by,
                        requests: limit_state(rpm, used_requests, window + 60, now),
                        texts: limit_state(tpm, used_texts, next_month, now),
                    });
                }

                let requests_used = requests_used.unwrap_or(0);
                let texts_used = texts_used.unwrap_or(0);
                Ok(Decision {
                    allowed: true,
                    denied_by: None,
                    requests: limit_state(rpm, requests_used, window + 60, now),
                    texts: limit_state(tpm, texts_used, next_month, now),
                })
            }


            /// Inserts the next version of `name` (creating the model, private, if new) inside
            /// `tx` and returns its number.
            async fn insert_version(
                tx: &mut sqlx::Transaction<'static, $db>,
                name: &str,
                bytes: &[u8],
                sha256_hex: &str,
                created_at: i64,
            ) -> Result<i64> {
                sqlx::query(
                    "INSERT INTO models (name, public, latest_version, created_at) \
                     VALUES ($1, $2, 0, $3) ON CONFLICT (name) DO NOTHING",
                )
                .bind(name)
                .bind(false)
                .bind(created_at)
                .execute(&mut **tx)
                .await?;
                // The UPDATE locks the model's row: concurrent pushes get distinct versions.
                let version: i64 = sqlx::query_scalar(
                    "UPDATE models SET latest_version = latest_version + 1 WHERE name = $1 \
                     RETURNING latest_version",
                )
                .bind(name)
                .fetch_one(&mut **tx)
                .await?;
                sqlx::query(
                    "INSERT INTO model_versions (name, version, sha256, size_bytes, artifact, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(name)
                .bind(version)
                .bind(sha256_hex)
                .bind(bytes.len() as i64)
                .bind(bytes)
                .bind(created_at)
                .execute(&mut **tx)
                .await?;
                Ok(version)
            }

            /// Points `alias` of `name` at `version` inside `tx` and records it in the history.
            async fn point_alias(
                tx: &mut sqlx::Transaction<'static, $db>,
                name: &str,
                alias: Alias,
                version: i64,
                now: i64,
            ) -> Result<()> {
                let exists: Option<i64> = sqlx::query_scalar(
                    "SELECT version FROM model_versions WHERE name = $1 AND version = $2",
                )
                .bind(name)
                .bind(version)
                .fetch_optional(&mut **tx)
                .await?;
                if exists.is_none() {
                    return Err(Error::NotFound(format!("model {name:?} version {version}")));
                }
                sqlx::query(
                    "INSERT INTO model_aliases (name, alias, version, updated_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (name, alias) DO UPDATE SET version = excluded.version, updated_at = excluded.updated_at",
                )
                .bind(name)
                .bind(alias.as_str())
                .bind(version)
                .bind(now)
                .execute(&mut **tx)
                .await?;
                sqlx::query(
                    "INSERT INTO alias_history (name, alias, version, action, reverted, at) \
                     VALUES ($1, $2, $3, 'set', $4, $5)",
                )
                .bind(name)
                .bind(alias.as_str())
                .bind(version)
                .bind(false)
                .bind(now)
                .execute(&mut **tx)
                .await?;
                Ok(())
            }

            /// Inserts `event` inside `tx`; `false` when its id is already recorded.
            async fn insert_event(
                tx: &mut sqlx::Transaction<'static, $db>,
                event: &UsageEvent,
            ) -> Result<bool> {
                let done = sqlx::query(
                    "INSERT INTO usage_events (id, tenant, key_prefix, model, version, texts, characters, at, \
                     request_sha256, training_seconds) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (id) DO NOTHING",
                )
                .bind(&event.id)
                .bind(&event.tenant)
                .bind(&event.key_prefix)
                .bind(&event.model)
                .bind(event.version)
                .bind(event.texts)
                .bind(event.characters)
                .bind(event.at)
                .bind(&event.request_sha256)
                .bind(event.training_seconds)
                .execute(&mut **tx)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            crate::feedback::feedback_ops!($store, $db, $begin);
            crate::jobs::jobs_ops!($store, $db, $begin);
            crate::metering::metering_ops!($store);
        }
    };
}

backend!(
    sqlite_ops,
    SqliteStore,
    SqlitePool,
    sqlx::Sqlite,
    "BEGIN IMMEDIATE"
);
backend!(postgres_ops, PostgresStore, PgPool, sqlx::Postgres, "BEGIN");
