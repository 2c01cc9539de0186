//! Durable state for flywheel behind one interface: the model registry (versions stored in the
//! database, `champion`/`challenger` aliases with history and rollback), tenants, API keys
//! (only their SHA-256 is stored), plans, rate limits shared by every replica, and idempotent
//! usage events; and the feedback loop's state (datasets kept with a model, a frozen holdout,
//! sampled predictions, corrections, retrain decisions and leases).
//!
//! Two back ends, chosen by URL in [`Store::open`]: SQLite (`sqlite://PATH`, created if missing,
//! WAL mode, foreign keys on) and PostgreSQL (`postgres://...`, for several replicas). The
//! migrations in `migrations/{sqlite,postgres}/` are embedded and run on open.
//!
//! Timestamps are Unix seconds (UTC) throughout.

#![warn(missing_docs)]

mod access;
mod backend;
mod export;
mod feedback;
mod group_commit;
mod jobs;
mod metering;
pub mod testing;
mod types;
mod util;

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::time::Duration;

use sqlx::error::BoxDynError;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};

pub use access::{AccessSnapshot, KeyLookup};
pub use backend::{PostgresStore, SqliteStore};
pub use export::{csv_cell, write_csv};
pub use feedback::dataset_sha256;
pub use group_commit::{MeterQueue, MeterStats};
pub use jobs::{
    BatchChunk, JobEvent, JobInfo, JobKind, JobState, NewJob, PlanQuotas, TrainedModel, UploadInfo,
};
pub use types::*;
pub use util::{day_range, days_from_civil, format_day, format_time, month_bounds, parse_day};

/// Every key starts with this.
pub const KEY_SCHEME: &str = "fw_";
/// Random bytes in a key (256 bits; base64url-encoded after [`KEY_SCHEME`]).
pub const KEY_RANDOM_BYTES: usize = 32;
/// Length of the displayed and indexed prefix: `fw_` plus 8 characters (48 of the 256 bits).
pub const KEY_PREFIX_LEN: usize = 11;

/// What a store operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database refused or could not run a statement, or could not be reached (connection
    /// lost, pool timed out, disk full, a constraint the checks below do not cover). Nothing of
    /// the operation was committed; the caller may retry later, and should report it as the
    /// store being unavailable rather than as the client's fault.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// [`Store::open`] could not bring the schema up to date (e.g. the database was migrated by
    /// a newer flywheel, or a migration failed half-way). The store is not usable: fix the
    /// database or run a matching flywheel version.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// [`Store::open`] was given a URL that is neither `sqlite:` nor `postgres://`. Ask the user
    /// for a correct URL.
    #[error("unsupported database URL {0:?} (expected sqlite://PATH or postgres://...)")]
    UnsupportedUrl(String),
    /// The named model, version, tenant, plan, key or prediction does not exist. A user error:
    /// report it (HTTP 404); retrying does not help.
    #[error("{0} not found")]
    NotFound(String),
    /// A tenant or plan with that name already exists. A user error: pick another name, or use
    /// the existing one.
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// The input was refused before anything was written: a bad name, date, label, alias or
    /// strategy, a negative limit or count, or a holdout other than the frozen one. The message
    /// says what; report it to the user (HTTP 400/422).
    #[error("invalid {0}")]
    Invalid(String),
    /// The artifact's bytes do not hash to the SHA-256 the caller gave: it was corrupted in
    /// transit or the digest belongs to another file. Nothing was stored; send the file again.
    #[error("SHA-256 mismatch: expected {expected}, the bytes hash to {actual}")]
    ChecksumMismatch {
        /// The digest the caller gave.
        expected: String,
        /// Lower-case hex SHA-256 of the bytes received.
        actual: String,
    },
    /// A request id was used again with another tenant or body: not a retry. Nothing was
    /// recorded; the client must use a fresh id for a new request (HTTP 409).
    #[error("request id {0:?} was already used for a different request")]
    IdempotencyConflict(String),
    /// [`Store::rollback`] found no earlier champion in the model's history. Nothing changed;
    /// promote a version explicitly instead.
    #[error("model {0:?} has no earlier champion to roll back to")]
    NothingToRollBack(String),
    /// The group commit that held this request failed (the database refused or could not run
    /// it): nothing of the batch was committed (or, should its results not come back after the
    /// commit, they are not trusted). Report the store as unavailable; a retry with the same
    /// request id is safe either way.
    #[error("the group commit failed: {0}")]
    Commit(String),
    /// A plan limit on a tenant's own data or work (datasets kept, jobs at once, training time)
    /// would be passed; nothing was written. The message says which (HTTP 429).
    #[error("{0}")]
    LimitReached(String),
    /// The metering queue has stopped (the server is shutting down); the request was not
    /// metered.
    #[error("metering has stopped")]
    MeterStopped,
    /// The operating system could not supply random bytes for a new key. No key was created;
    /// retrying may work, otherwise the host is misconfigured.
    #[error("the operating system's random number generator failed: {0}")]
    Random(String),
}

/// The store's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug)]
struct Embedded(&'static [(i64, &'static str, &'static str)]);

impl<'s> MigrationSource<'s> for Embedded {
    fn resolve(
        self,
    ) -> Pin<Box<dyn Future<Output = std::result::Result<Vec<Migration>, BoxDynError>> + Send + 's>>
    {
        Box::pin(async move {
            Ok(self
                .0
                .iter()
                .map(|&(version, description, sql)| {
                    Migration::new(
                        version,
                        Cow::Borrowed(description),
                        MigrationType::Simple,
                        Cow::Borrowed(sql),
                        false,
                    )
                })
                .collect())
        })
    }
}

const SQLITE_MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "initial",
        include_str!("../migrations/sqlite/0001_initial.sql"),
    ),
    (
        2,
        "usage request digest",
        include_str!("../migrations/sqlite/0002_usage_request_digest.sql"),
    ),
    (
        3,
        "one request window per key",
        include_str!("../migrations/sqlite/0003_one_request_window_per_key.sql"),
    ),
    (
        4,
        "feedback loop",
        include_str!("../migrations/sqlite/0004_feedback_loop.sql"),
    ),
    (
        5,
        "access epoch",
        include_str!("../migrations/sqlite/0005_access_epoch.sql"),
    ),
    (
        6,
        "audit items",
        include_str!("../migrations/sqlite/0006_audit_items.sql"),
    ),
    (
        7,
        "self service",
        include_str!("../migrations/sqlite/0007_self_service.sql"),
    ),
];
const POSTGRES_MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "initial",
        include_str!("../migrations/postgres/0001_initial.sql"),
    ),
    (
        2,
        "usage request digest",
        include_str!("../migrations/postgres/0002_usage_request_digest.sql"),
    ),
    (
        3,
        "one request window per key",
        include_str!("../migrations/postgres/0003_one_request_window_per_key.sql"),
    ),
    (
        4,
        "feedback loop",
        include_str!("../migrations/postgres/0004_feedback_loop.sql"),
    ),
    (
        5,
        "access epoch",
        include_str!("../migrations/postgres/0005_access_epoch.sql"),
    ),
    (
        6,
        "audit items",
        include_str!("../migrations/postgres/0006_audit_items.sql"),
    ),
    (
        7,
        "self service",
        include_str!("../migrations/postgres/0007_self_service.sql"),
    ),
];

/// The store: one interface over both back ends. Cheap to clone (a pool handle).
#[derive(Debug, Clone)]
pub enum Store {
    /// A SQLite database (`sqlite:` URLs).
    Sqlite(SqliteStore),
    /// A PostgreSQL database (`postgres://` URLs).
    Postgres(PostgresStore),
}

macro_rules! dispatch {
    ($self:ident, $s:ident => $call:expr) => {
        match $self {
            Store::Sqlite($s) => $call,
            Store::Postgres($s) => $call,
        }
    };
}

impl Store {
    /// Opens (and migrates) `sqlite://PATH` (created if missing) or `postgres://...`.
    /// `sqlite::memory:` works too (one connection; for tests and experiments).
    pub async fn open(url: &str) -> Result<Store> {
        if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(30))
                // At most 512 KiB of cached pages per connection (SQLite's default is 2 MiB),
                // 4 MiB for the pool: the operating system caches the file anyway, and what the
                // database grows to then barely shows in the server's memory.
                .pragma("cache_size", "-512");
            // Each connection to `sqlite::memory:` is its own database: use one.
            let memory = url.contains(":memory:") || url.contains("mode=memory");
            // No ping before each use: it would double the hand-overs to SQLite's thread on
            // every query (a failed connection fails its query, which the caller retries).
            let pool = SqlitePoolOptions::new()
                .max_connections(if memory { 1 } else { 8 })
                .test_before_acquire(false)
                .connect_with(options.clone())
                .await?;
            Migrator::new(Embedded(SQLITE_MIGRATIONS))
                .await?
                .run(&pool)
                .await?;
            let file = (!memory).then(|| options.get_filename().to_path_buf());
            Ok(Store::Sqlite(SqliteStore { pool, file }))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            // No ping before each use: it would double the round trips of every query (a
            // connection lost since fails its query, which the caller retries).
            let pool = PgPoolOptions::new()
                .max_connections(16)
                .test_before_acquire(false)
                .acquire_timeout(Duration::from_secs(30))
                .connect(url)
                .await?;
            // The migrator holds an advisory lock: replicas opening together migrate once.
            Migrator::new(Embedded(POSTGRES_MIGRATIONS))
                .await?
                .run(&pool)
                .await?;
            Ok(Store::Postgres(PostgresStore { pool }))
        } else {
            Err(Error::UnsupportedUrl(url.to_string()))
        }
    }

    /// `"sqlite"` or `"postgres"`.
    pub fn backend(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "sqlite",
            Store::Postgres(_) => "postgres",
        }
    }

    /// Closes the pool, waiting for connections in use to be returned.
    pub async fn close(&self) {
        dispatch!(self, s => s.close().await)
    }

    /// Stores `bytes` as the next version of model `name` (creating the model, private, if new)
    /// and returns its number (1, 2, ...); aliases are left alone. `sha256` (hex, either case)
    /// must be the bytes' digest, else [`Error::ChecksumMismatch`]; a bad name is
    /// [`Error::Invalid`]. `created_at` in Unix seconds UTC.
    pub async fn push_model(
        &self,
        name: &str,
        bytes: &[u8],
        sha256: &str,
        created_at: i64,
    ) -> Result<i64> {
        dispatch!(self, s => s.push_model(name, bytes, sha256, created_at).await)
    }
    /// Every model with its latest version and aliases, by name.
    pub async fn list_models(&self) -> Result<Vec<ModelSummary>> {
        dispatch!(self, s => s.list_models().await)
    }
    /// Versions of model `name`, oldest first, without their bytes (empty for an unknown model).
    pub async fn list_versions(&self, name: &str) -> Result<Vec<VersionInfo>> {
        dispatch!(self, s => s.list_versions(name).await)
    }
    /// One version with its artifact bytes; [`Error::NotFound`] if there is no such version.
    pub async fn get_version(&self, name: &str, version: i64) -> Result<ModelArtifact> {
        dispatch!(self, s => s.get_version(name, version).await)
    }
    /// Makes model `name` public (usable by every tenant) or private; [`Error::NotFound`] for an
    /// unknown model.
    pub async fn set_model_public(&self, name: &str, public: bool) -> Result<()> {
        dispatch!(self, s => s.set_model_public(name, public).await)
    }
    /// Points `alias` of model `name` at `version` and records the change in the alias history;
    /// [`Error::NotFound`] if the version does not exist.
    pub async fn set_alias(&self, name: &str, alias: Alias, version: i64) -> Result<()> {
        dispatch!(self, s => s.set_alias(name, alias, version).await)
    }
    /// The version `alias` of model `name` points at; `None` when not set (or no such model).
    pub async fn resolve_alias(&self, name: &str, alias: Alias) -> Result<Option<i64>> {
        dispatch!(self, s => s.resolve_alias(name, alias).await)
    }
    /// Makes the previous champion champion again and returns its version. Each rollback marks the
    /// current `set` as reverted, so repeated rollbacks walk further back;
    /// [`Error::NothingToRollBack`] when there is no earlier champion.
    pub async fn rollback(&self, name: &str) -> Result<i64> {
        dispatch!(self, s => s.rollback(name).await)
    }
    /// Every alias change of model `name` (sets and rollbacks), oldest first.
    pub async fn alias_history(&self, name: &str) -> Result<Vec<AliasEvent>> {
        dispatch!(self, s => s.alias_history(name).await)
    }
    /// Creates tenant `name`; [`Error::Invalid`] for a bad name, [`Error::AlreadyExists`] if taken.
    pub async fn create_tenant(&self, name: &str) -> Result<Tenant> {
        dispatch!(self, s => s.create_tenant(name).await)
    }
    /// Every tenant, by name.
    pub async fn list_tenants(&self) -> Result<Vec<Tenant>> {
        dispatch!(self, s => s.list_tenants().await)
    }
    /// Creates an API key for `tenant` on `plan` and returns it with its plaintext, which is not
    /// stored (only its SHA-256 and prefix are): show it once. [`Error::NotFound`] for an unknown
    /// tenant or plan, [`Error::Random`] if the OS has no random bytes.
    pub async fn create_key(&self, tenant: &str, plan: &str) -> Result<NewKey> {
        dispatch!(self, s => s.create_key(tenant, plan).await)
    }
    /// The owner of `key`; `None` for an unknown, malformed or revoked key. Digests are compared
    /// in constant time.
    pub async fn authenticate(&self, key: &str) -> Result<Option<KeyInfo>> {
        dispatch!(self, s => s.authenticate(key).await)
    }
    /// `tenant`'s keys, revoked ones included, oldest first (prefixes only); [`Error::NotFound`]
    /// for an unknown tenant.
    pub async fn list_keys(&self, tenant: &str) -> Result<Vec<KeySummary>> {
        dispatch!(self, s => s.list_keys(tenant).await)
    }
    /// Revokes `tenant`'s active keys with this prefix and returns how many; [`Error::NotFound`]
    /// for an unknown tenant or when no active key has the prefix.
    pub async fn revoke_key(&self, tenant: &str, prefix: &str) -> Result<u64> {
        dispatch!(self, s => s.revoke_key(tenant, prefix).await)
    }
    /// Lets `tenant` use the (private) model `model`; granting twice is a no-op.
    /// [`Error::NotFound`] for an unknown tenant or model.
    pub async fn grant_model(&self, tenant: &str, model: &str) -> Result<()> {
        dispatch!(self, s => s.grant_model(tenant, model).await)
    }
    /// Whether `tenant` may use `model`: it exists and is public or granted to the tenant (`false`
    /// for unknown names).
    pub async fn can_use(&self, tenant: &str, model: &str) -> Result<bool> {
        dispatch!(self, s => s.can_use(tenant, model).await)
    }
    /// The models `tenant` may use (public or granted to it), by name.
    pub async fn usable_models(&self, tenant: &str) -> Result<Vec<String>> {
        dispatch!(self, s => s.usable_models(tenant).await)
    }
    /// Creates plan `name` with its per-key limits (0 requests per minute denies every request).
    /// [`Error::Invalid`] for a bad name or a negative limit, [`Error::AlreadyExists`] if taken.
    pub async fn create_plan(
        &self,
        name: &str,
        requests_per_minute: i64,
        texts_per_month: i64,
    ) -> Result<Plan> {
        dispatch!(self, s => s.create_plan(name, requests_per_minute, texts_per_month).await)
    }
    /// Changes plan `name`'s limits, for every key on it; [`Error::Invalid`] for a negative
    /// limit, [`Error::NotFound`] for an unknown plan.
    pub async fn update_plan(
        &self,
        name: &str,
        requests_per_minute: i64,
        texts_per_month: i64,
    ) -> Result<Plan> {
        dispatch!(self, s => s.update_plan(name, requests_per_minute, texts_per_month).await)
    }
    /// Moves `tenant`'s active keys with this prefix to plan `plan` and returns how many;
    /// [`Error::NotFound`] for an unknown tenant or plan, or when no active key has the prefix.
    pub async fn set_key_plan(&self, tenant: &str, prefix: &str, plan: &str) -> Result<u64> {
        dispatch!(self, s => s.set_key_plan(tenant, prefix, plan).await)
    }
    /// Every plan, by name.
    pub async fn list_plans(&self) -> Result<Vec<Plan>> {
        dispatch!(self, s => s.list_plans().await)
    }
    /// Counts one request of `texts` texts against key `key_id`'s plan, atomically across every
    /// process sharing the database: requests per fixed UTC minute, texts per UTC calendar month.
    /// A denied request counts against neither. `now` in Unix seconds UTC. [`Error::Invalid`] for
    /// negative `texts`, [`Error::NotFound`] for an unknown key id.
    pub async fn consume(&self, key_id: i64, texts: i64, now: i64) -> Result<Decision> {
        dispatch!(self, s => s.consume(key_id, texts, now).await)
    }
    /// The limits as they stand for a request of `texts` texts, without counting it: `allowed`
    /// says whether [`Store::consume`] would allow it at `now` (Unix seconds UTC). For refusing
    /// early; [`Store::meter`] has the final word. [`Error::NotFound`] for an unknown key id.
    pub async fn peek(&self, key_id: i64, texts: i64, now: i64) -> Result<Decision> {
        dispatch!(self, s => s.peek(key_id, texts, now).await)
    }
    /// Counts a served request against key `key_id`'s plan and records its usage event in one
    /// transaction (both or neither); over a limit nothing is written. A retry (same id, tenant and
    /// request digest) counts only against the request window and sets `duplicate`; the same id
    /// otherwise is [`Error::IdempotencyConflict`]. [`Error::Invalid`] for negative counts,
    /// [`Error::NotFound`] for an unknown key id.
    pub async fn meter(&self, key_id: i64, event: &UsageEvent) -> Result<Metered> {
        dispatch!(self, s => s.meter(key_id, event).await)
    }
    /// [`Store::meter`], also keeping `predictions` in the same transaction when admitted.
    pub(crate) async fn meter_with(
        &self,
        key_id: i64,
        event: &UsageEvent,
        predictions: &[NewPrediction],
    ) -> Result<Metered> {
        dispatch!(self, s => s.meter_with(key_id, event, predictions).await)
    }
    /// Meters many served requests, each as [`Store::meter`] would, with one transaction and one
    /// commit for the whole batch when that is exact: every event is new, each key's requests
    /// fall in one minute and month, the `limits` given are the database's and each key's totals
    /// fit under them (the database checks the last two under its row locks, so replicas stay
    /// exact). Otherwise the requests are metered one by one. One result per item, in order;
    /// when the shared transaction fails, every item gets [`Error::Commit`] and nothing of the
    /// batch was written.
    pub async fn meter_batch(&self, items: &[MeterItem]) -> Vec<Result<Metered>> {
        metering::meter_batch(self, items).await
    }
    /// A counter that every change to keys, plans, tenants, grants or a model's visibility moves
    /// (by trigger, whoever makes the change): poll it, and reload [`Store::access_snapshot`]
    /// when it moves.
    pub async fn access_epoch(&self) -> Result<i64> {
        dispatch!(self, s => s.access_epoch().await)
    }
    /// Keys (digests, owners, revocation), plans, grants and models as they stand, to answer
    /// [`Store::authenticate`], [`Store::can_use`] and [`Store::usable_models`] from memory.
    pub async fn access_snapshot(&self) -> Result<AccessSnapshot> {
        dispatch!(self, s => s.access_snapshot().await)
    }
    /// Records one usage event without counting it against any limit; `false` (and nothing
    /// written) when an event with this id exists already, whatever its contents.
    pub async fn record_usage(&self, event: &UsageEvent) -> Result<bool> {
        dispatch!(self, s => s.record_usage(event).await)
    }
    /// The usage events matching `filter`, oldest first (by time, then id).
    pub async fn usage_events(&self, filter: &UsageFilter) -> Result<Vec<UsageEvent>> {
        dispatch!(self, s => s.usage_events(filter).await)
    }
    /// Usage matching `filter` summed per tenant, key prefix, model and UTC day, sorted in that
    /// order.
    pub async fn usage_report(&self, filter: &UsageFilter) -> Result<Vec<UsageRow>> {
        dispatch!(self, s => s.usage_report(filter).await)
    }
    /// [`Store::push_model`], also storing the data the version was trained on (`base`) and, at
    /// the model's first push that gives one, its `holdout`, in one transaction. The holdout is
    /// frozen: a later push may repeat the same rows, other rows are [`Error::Invalid`], as is an
    /// empty or malformed label.
    pub async fn push_model_with_data(
        &self,
        name: &str,
        bytes: &[u8],
        sha256: &str,
        created_at: i64,
        base: Option<&[DataRow]>,
        holdout: Option<&[DataRow]>,
    ) -> Result<i64> {
        dispatch!(self, s => s.push_model_with_data(name, bytes, sha256, created_at, base, holdout).await)
    }
    /// The base data stored with version `version` of `name`; `None` if it has none.
    pub async fn base_dataset(&self, name: &str, version: i64) -> Result<Option<DatasetInfo>> {
        dispatch!(self, s => s.base_dataset(name, version).await)
    }
    /// Freezes `rows` as `name`'s holdout unless it has one (a model created without labelled
    /// data freezes its first held-back corrections); returns whether it did.
    pub async fn freeze_holdout(&self, name: &str, rows: &[DataRow], now: i64) -> Result<bool> {
        dispatch!(self, s => s.freeze_holdout(name, rows, now).await)
    }
    /// Model `name`'s frozen holdout; `None` if none was given.
    pub async fn holdout_dataset(&self, name: &str) -> Result<Option<DatasetInfo>> {
        dispatch!(self, s => s.holdout_dataset(name).await)
    }
    /// A dataset's rows in their original order (empty for an unknown id).
    pub async fn dataset_rows(&self, dataset_id: i64) -> Result<Vec<DataRow>> {
        dispatch!(self, s => s.dataset_rows(dataset_id).await)
    }
    /// Keeps served predictions for review, in one transaction; one already logged (same tenant,
    /// request id and index: a retry) is left as it is. Returns how many were added.
    pub async fn log_predictions(&self, predictions: &[NewPrediction]) -> Result<u64> {
        dispatch!(self, s => s.log_predictions(predictions).await)
    }
    /// The prediction logged for text `index` of `tenant`'s request `request_id`, if any.
    pub async fn find_prediction(
        &self,
        tenant: &str,
        request_id: &str,
        index: i64,
    ) -> Result<Option<LoggedPrediction>> {
        dispatch!(self, s => s.find_prediction(tenant, request_id, index).await)
    }
    /// The logged prediction with id `id`, if any.
    pub async fn get_prediction(&self, id: i64) -> Result<Option<LoggedPrediction>> {
        dispatch!(self, s => s.get_prediction(id).await)
    }
    /// At most `limit` logged predictions of `model` that no feedback labels yet (only `tenant`'s
    /// when given): most uncertain first (those without an uncertainty last, ties oldest first),
    /// or a random sample. A negative `limit` gives none.
    pub async fn review_queue(
        &self,
        model: &str,
        tenant: Option<&str>,
        strategy: ReviewStrategy,
        limit: i64,
    ) -> Result<Vec<LoggedPrediction>> {
        dispatch!(self, s => s.review_queue(model, tenant, strategy, limit).await)
    }
    /// How many logged predictions of `model` (only `tenant`'s when given) have no feedback yet.
    pub async fn count_review_queue(&self, model: &str, tenant: Option<&str>) -> Result<i64> {
        dispatch!(self, s => s.count_review_queue(model, tenant).await)
    }
    /// Stores a correction, committed before this returns, and returns it with `true` when it was
    /// a retry (same tenant, request id and body: the stored row comes back). The same request id
    /// with another body is [`Error::IdempotencyConflict`]; no or bad labels [`Error::Invalid`];
    /// an unknown `prediction_id` [`Error::NotFound`].
    pub async fn add_feedback(&self, feedback: &NewFeedback) -> Result<(Feedback, bool)> {
        dispatch!(self, s => s.add_feedback(feedback).await)
    }
    /// Feedback on `model` with an id above `after_id`, oldest first.
    pub async fn feedback_since(&self, model: &str, after_id: i64) -> Result<Vec<Feedback>> {
        dispatch!(self, s => s.feedback_since(model, after_id).await)
    }
    /// `(count, highest id)` of the feedback on `model` with an id above `after_id`; the highest
    /// id is `after_id` when there is none.
    pub async fn count_feedback_since(&self, model: &str, after_id: i64) -> Result<(i64, i64)> {
        dispatch!(self, s => s.count_feedback_since(model, after_id).await)
    }
    /// Records a retrain that produced a challenger, in one transaction: `bytes` become the next
    /// version (created at `decision.at`, with `base_dataset` as its base data), the `challenger`
    /// alias points at it, so does `champion` when `decision.promoted`, and the decision is
    /// stored. Returns the decision with its `id` and `challenger_version` set.
    pub async fn finish_retrain(
        &self,
        bytes: &[u8],
        base_dataset: Option<i64>,
        decision: &RetrainDecision,
    ) -> Result<RetrainDecision> {
        dispatch!(self, s => s.finish_retrain(bytes, base_dataset, decision).await)
    }
    /// Records a retrain that ended without a challenger (e.g. training failed); returns it with
    /// its `id` set.
    pub async fn record_decision(&self, decision: &RetrainDecision) -> Result<RetrainDecision> {
        dispatch!(self, s => s.record_decision(decision).await)
    }
    /// Every retrain decision of model `name`, oldest first.
    pub async fn decisions(&self, name: &str) -> Result<Vec<RetrainDecision>> {
        dispatch!(self, s => s.decisions(name).await)
    }
    /// Takes the retrain lease of model `name` for `holder` until `now + ttl` (Unix seconds UTC)
    /// if it is free, expired or already `holder`'s; `false` when another holder has it.
    pub async fn try_lease(&self, name: &str, holder: &str, now: i64, ttl: i64) -> Result<bool> {
        dispatch!(self, s => s.try_lease(name, holder, now, ttl).await)
    }
    /// Gives back the retrain lease of model `name` if `holder` has it (else does nothing).
    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        dispatch!(self, s => s.release_lease(name, holder).await)
    }

    // ---------------------------------------------------------------- self-service

    /// The self-service limits of plan `plan` ([`Error::NotFound`] for an unknown plan).
    pub async fn plan_quotas(&self, plan: &str) -> Result<PlanQuotas> {
        dispatch!(self, s => s.plan_quotas(plan).await)
    }
    /// Changes plan `plan`'s self-service limits ([`Error::Invalid`] for a negative one).
    pub async fn set_plan_quotas(&self, plan: &str, quotas: &PlanQuotas) -> Result<()> {
        dispatch!(self, s => s.set_plan_quotas(plan, quotas).await)
    }
    /// Datasets tenant `tenant_id` keeps.
    pub async fn count_uploads(&self, tenant_id: i64) -> Result<i64> {
        dispatch!(self, s => s.count_uploads(tenant_id).await)
    }
    /// Starts an upload of dataset `name` (invisible until [`Store::finish_upload`]); returns
    /// its id. [`Error::Invalid`] for a bad name.
    pub async fn begin_upload(
        &self,
        tenant_id: i64,
        name: &str,
        format: &str,
        now: i64,
    ) -> Result<i64> {
        dispatch!(self, s => s.begin_upload(tenant_id, name, format, now).await)
    }
    /// Adds `rows` to a staging upload from position `start`, in one transaction.
    pub async fn append_upload_rows(
        &self,
        upload_id: i64,
        start: i64,
        rows: &[DataRow],
    ) -> Result<()> {
        dispatch!(self, s => s.append_upload_rows(upload_id, start, rows).await)
    }
    /// Makes a staging upload visible as the next version of its name and returns it.
    pub async fn finish_upload(
        &self,
        upload_id: i64,
        row_count: i64,
        size_bytes: i64,
        sha256: &str,
        summary: &str,
    ) -> Result<UploadInfo> {
        dispatch!(self, s => s.finish_upload(upload_id, row_count, size_bytes, sha256, summary).await)
    }
    /// Removes a staging upload and its rows.
    pub async fn discard_upload(&self, upload_id: i64) -> Result<()> {
        dispatch!(self, s => s.discard_upload(upload_id).await)
    }
    /// Removes uploads still staging that began before `before` (Unix seconds); returns how
    /// many.
    pub async fn sweep_uploads(&self, before: i64) -> Result<u64> {
        dispatch!(self, s => s.sweep_uploads(before).await)
    }
    /// A stored dataset, whoever owns it (the caller checks ownership).
    pub async fn get_upload(&self, id: i64) -> Result<Option<UploadInfo>> {
        dispatch!(self, s => s.get_upload(id).await)
    }
    /// Tenant `tenant_id`'s datasets (every tenant's for `None`), newest first.
    pub async fn list_uploads(&self, tenant_id: Option<i64>) -> Result<Vec<UploadInfo>> {
        dispatch!(self, s => s.list_uploads(tenant_id).await)
    }
    /// Deletes a dataset's rows and hides it; `false` if there was none.
    pub async fn delete_upload(&self, id: i64, now: i64) -> Result<bool> {
        dispatch!(self, s => s.delete_upload(id, now).await)
    }
    /// At most `limit` rows of a dataset from position `offset`, in order.
    pub async fn upload_rows(&self, id: i64, offset: i64, limit: i64) -> Result<Vec<DataRow>> {
        dispatch!(self, s => s.upload_rows(id, offset, limit).await)
    }
    /// Queues a job unless its tenant has `max_active` jobs queued or running
    /// ([`Error::LimitReached`]).
    pub async fn create_job(&self, job: &NewJob, max_active: i64) -> Result<JobInfo> {
        dispatch!(self, s => s.create_job(job, max_active).await)
    }
    /// A job, whoever owns it (the caller checks ownership).
    pub async fn get_job(&self, id: &str) -> Result<Option<JobInfo>> {
        dispatch!(self, s => s.get_job(id).await)
    }
    /// Tenant `tenant_id`'s jobs (every tenant's for `None`) of `kind` (both for `None`),
    /// newest first, at most `limit`.
    pub async fn list_jobs(
        &self,
        tenant_id: Option<i64>,
        kind: Option<JobKind>,
        limit: i64,
    ) -> Result<Vec<JobInfo>> {
        dispatch!(self, s => s.list_jobs(tenant_id, kind, limit).await)
    }
    /// Claims the oldest queued job, or one whose lease expired, for `holder` until
    /// `now + ttl`.
    pub async fn claim_job(&self, holder: &str, now: i64, ttl: i64) -> Result<Option<JobInfo>> {
        dispatch!(self, s => s.claim_job(holder, now, ttl).await)
    }
    /// Renews `holder`'s lease on a running job and records its progress and events;
    /// `false` when the job is not `holder`'s to run any more (cancelled or taken over).
    pub async fn renew_job(
        &self,
        id: &str,
        holder: &str,
        now: i64,
        ttl: i64,
        progress: Option<&str>,
        events: &[String],
    ) -> Result<bool> {
        dispatch!(self, s => s.renew_job(id, holder, now, ttl, progress, events).await)
    }
    /// A job's events after sequence number `after`, in order.
    pub async fn job_events(&self, id: &str, after: i64) -> Result<Vec<JobEvent>> {
        dispatch!(self, s => s.job_events(id, after).await)
    }
    /// Marks `holder`'s running job failed with `error`; `false` if it was not `holder`'s.
    pub async fn fail_job(&self, id: &str, holder: &str, error: &str, now: i64) -> Result<bool> {
        dispatch!(self, s => s.fail_job(id, holder, error, now).await)
    }
    /// Marks `holder`'s running job succeeded with `result`; `false` if it was not `holder`'s.
    pub async fn succeed_job(
        &self,
        id: &str,
        holder: &str,
        result: &str,
        now: i64,
    ) -> Result<bool> {
        dispatch!(self, s => s.succeed_job(id, holder, result, now).await)
    }
    /// Cancels a queued or running job; the job as it now stands (`None`: unknown id).
    pub async fn cancel_job(&self, id: &str, now: i64) -> Result<Option<JobInfo>> {
        dispatch!(self, s => s.cancel_job(id, now).await)
    }
    /// Commits a training job's model version, data, report, usage and success in one
    /// transaction if `holder` still runs it; the version, or `None` (nothing written).
    /// [`Error::AlreadyExists`] when the model belongs to another owner.
    pub async fn finish_training(
        &self,
        id: &str,
        holder: &str,
        trained: &TrainedModel<'_>,
        now: i64,
    ) -> Result<Option<i64>> {
        dispatch!(self, s => s.finish_training(id, holder, trained, now).await)
    }
    /// The report of a succeeded training job.
    pub async fn job_report(&self, id: &str) -> Result<Option<String>> {
        dispatch!(self, s => s.job_report(id).await)
    }
    /// The tenant that owns model `name` (`None`: the operator's, or no such model).
    pub async fn model_owner(&self, name: &str) -> Result<Option<i64>> {
        dispatch!(self, s => s.model_owner(name).await)
    }
    /// Whether model `name` exists.
    pub async fn model_exists(&self, name: &str) -> Result<bool> {
        dispatch!(self, s => s.model_exists(name).await)
    }
    /// Seconds of training metered to `tenant` since `since` (Unix seconds).
    pub async fn training_seconds_since(&self, tenant: &str, since: i64) -> Result<i64> {
        dispatch!(self, s => s.training_seconds_since(tenant, since).await)
    }
    /// Commits a chunk of a batch job's results with its usage and progress if `holder` still
    /// runs the job and the chunk starts where the stored results end; `false` otherwise.
    pub async fn commit_batch_chunk(
        &self,
        id: &str,
        holder: &str,
        chunk: &BatchChunk<'_>,
        now: i64,
    ) -> Result<bool> {
        dispatch!(self, s => s.commit_batch_chunk(id, holder, chunk, now).await)
    }
    /// Results a batch job has stored.
    pub async fn count_batch_results(&self, id: &str) -> Result<i64> {
        dispatch!(self, s => s.count_batch_results(id).await)
    }
    /// At most `limit` results (position, JSON) of a batch job from position `offset`.
    pub async fn batch_results(
        &self,
        id: &str,
        offset: i64,
        limit: i64,
    ) -> Result<Vec<(i64, String)>> {
        dispatch!(self, s => s.batch_results(id, offset, limit).await)
    }
}
