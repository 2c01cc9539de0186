//! Plain values returned by the store. The row types read from the database derive
//! [`sqlx::FromRow`] (the same for both back ends) and [`Serialize`], with the field names as
//! JSON keys.

use serde::Serialize;
use sqlx::FromRow;

use crate::Error;

/// A named pointer to a model version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alias {
    /// The version that is served.
    Champion,
    /// The version that is being evaluated against the champion.
    Challenger,
}

impl Alias {
    /// The name stored in the database (`champion` / `challenger`).
    pub fn as_str(self) -> &'static str {
        match self {
            Alias::Champion => "champion",
            Alias::Challenger => "challenger",
        }
    }
}

impl std::fmt::Display for Alias {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Alias {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "champion" => Ok(Alias::Champion),
            "challenger" => Ok(Alias::Challenger),
            other => Err(Error::Invalid(format!(
                "alias {other:?} (expected champion or challenger)"
            ))),
        }
    }
}

/// One registered model name with its aliases.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, FromRow)]
pub struct ModelSummary {
    /// Model name (unique).
    pub name: String,
    /// Public models may be used by every tenant.
    pub public: bool,
    /// Highest version pushed so far (0 when none).
    pub latest_version: i64,
    /// Version the `champion` alias points at, if set.
    pub champion: Option<i64>,
    /// Version the `challenger` alias points at, if set.
    pub challenger: Option<i64>,
    /// When the model's first version was pushed (Unix seconds UTC).
    pub created_at: i64,
}

/// Metadata of one stored version (without its bytes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, FromRow)]
pub struct VersionInfo {
    /// Model name.
    pub name: String,
    /// Version number: 1, 2, ... per model.
    pub version: i64,
    /// Lower-case hex SHA-256 of the artifact bytes.
    pub sha256: String,
    /// Artifact size in bytes.
    pub size_bytes: i64,
    /// When the version was pushed (Unix seconds UTC).
    pub created_at: i64,
}

/// A stored model version with its artifact bytes.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct ModelArtifact {
    /// The version's metadata.
    #[sqlx(flatten)]
    pub info: VersionInfo,
    /// The artifact as pushed (`size_bytes` long).
    #[sqlx(rename = "artifact")]
    pub bytes: Vec<u8>,
}

/// One row of the alias history (oldest first).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, FromRow)]
pub struct AliasEvent {
    /// Row id, increasing with each change.
    pub id: i64,
    /// Model name.
    pub name: String,
    /// `champion` or `challenger`.
    pub alias: String,
    /// Version the alias was pointed at.
    pub version: i64,
    /// `set` or `rollback`.
    pub action: String,
    /// A `set` undone by a later rollback.
    pub reverted: bool,
    /// When (Unix seconds UTC).
    pub at: i64,
}

/// A customer account: its keys, grants and usage belong to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, FromRow)]
pub struct Tenant {
    /// Database id.
    pub id: i64,
    /// Unique name.
    pub name: String,
    /// When it was created (Unix seconds UTC).
    pub created_at: i64,
}

/// Limits shared by every key on the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, FromRow)]
pub struct Plan {
    /// Unique name.
    pub name: String,
    /// Requests each key may make per UTC minute (0 denies every request).
    pub requests_per_minute: i64,
    /// Texts each key may send per UTC calendar month.
    pub texts_per_month: i64,
    /// When it was created (Unix seconds UTC).
    pub created_at: i64,
}

/// A key just created. `key` is the only copy of the plaintext: show it once.
#[derive(Clone, PartialEq, Eq)]
pub struct NewKey {
    /// Database id: the `key_id` of [`crate::Store::consume`] and [`crate::Store::meter`].
    pub id: i64,
    /// The plaintext key: [`crate::KEY_SCHEME`] and 43 base64url characters.
    pub key: String,
    /// Its first [`crate::KEY_PREFIX_LEN`] characters: stored, displayed, used to revoke it.
    pub prefix: String,
    /// Name of the tenant that owns it.
    pub tenant: String,
    /// Name of its plan.
    pub plan: String,
}

impl std::fmt::Debug for NewKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewKey")
            .field("id", &self.id)
            .field("key", &"<redacted>")
            .field("prefix", &self.prefix)
            .field("tenant", &self.tenant)
            .field("plan", &self.plan)
            .finish()
    }
}

/// Who a valid key belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, FromRow)]
pub struct KeyInfo {
    /// Key id: the `key_id` of [`crate::Store::consume`] and [`crate::Store::meter`].
    pub id: i64,
    /// The key's prefix.
    pub prefix: String,
    /// Id of the tenant that owns it.
    pub tenant_id: i64,
    /// Name of the tenant that owns it.
    pub tenant: String,
    /// Name of its plan.
    pub plan: String,
}

/// A key as listed: prefix only, never the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, FromRow)]
pub struct KeySummary {
    /// Key id.
    pub id: i64,
    /// The key's prefix.
    pub prefix: String,
    /// Name of its plan.
    pub plan: String,
    /// When it was created (Unix seconds UTC).
    pub created_at: i64,
    /// When it was revoked (Unix seconds UTC); `None` while it is valid.
    pub revoked_at: Option<i64>,
}

/// Which limit denied a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    /// requests per minute
    Requests,
    /// texts per calendar month (UTC)
    Texts,
}

/// State of one limit after a [`crate::Store::consume`] call; maps onto the
/// `x-ratelimit-{limit,remaining,reset}-*` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitState {
    /// The plan's limit for this window.
    pub limit: i64,
    /// How many more the window allows (never negative).
    pub remaining: i64,
    /// Unix time (seconds) at which the window resets.
    pub reset_at: i64,
    /// Seconds from `now` until `reset_at`.
    pub reset_after: i64,
}

/// Result of a rate-limit check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may go ahead (and, from a counting call, was counted).
    pub allowed: bool,
    /// The first limit that denied the request, if any.
    pub denied_by: Option<LimitKind>,
    /// The requests-per-minute limit.
    pub requests: LimitState,
    /// The texts-per-month limit.
    pub texts: LimitState,
}

/// One metered request; `id` is the request id and makes recording idempotent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, FromRow)]
pub struct UsageEvent {
    /// The request id, unique across events.
    pub id: String,
    /// Tenant name.
    pub tenant: String,
    /// Prefix of the key that made the request.
    pub key_prefix: String,
    /// Model name.
    pub model: String,
    /// Model version that served it.
    pub version: i64,
    /// Texts in the request.
    pub texts: i64,
    /// Characters in those texts, summed.
    pub characters: i64,
    /// Unix seconds.
    pub at: i64,
    /// Hex SHA-256 of the request body (may be empty): the same id with another digest is an
    /// [`crate::Error::IdempotencyConflict`], not a retry.
    pub request_sha256: String,
    /// Seconds of training metered by a training job (0 for a classification request).
    pub training_seconds: i64,
}

/// A plan's per-key limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanLimits {
    /// Requests each key may make per UTC minute (0 denies every request).
    pub requests_per_minute: i64,
    /// Texts each key may send per UTC calendar month.
    pub texts_per_month: i64,
}

/// One served request to meter in a group commit ([`crate::Store::meter_batch`]).
#[derive(Debug, Clone, PartialEq)]
pub struct MeterItem {
    /// The key that made it.
    pub key_id: i64,
    /// The key's plan limits as the caller knows them (from an
    /// [`crate::AccessSnapshot`]); a batch whose limits differ from the database's is metered
    /// one request at a time against the database's.
    pub limits: PlanLimits,
    /// Its usage event.
    pub event: UsageEvent,
    /// Its predictions kept for review, committed with the event (nothing when the request is
    /// refused); usually empty.
    pub predictions: Vec<NewPrediction>,
}

/// Outcome of [`crate::Store::meter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metered {
    /// The limits after the call; when `decision.allowed` is false nothing was recorded.
    pub decision: Decision,
    /// The event was already recorded (a retry): only the request window was counted.
    pub duplicate: bool,
}

/// Filter for [`crate::Store::usage_report`]: `from` inclusive, `to` exclusive (Unix seconds).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageFilter {
    /// Only this tenant's events.
    pub tenant: Option<String>,
    /// Only events at or after this time (Unix seconds UTC).
    pub from: Option<i64>,
    /// Only events before this time (Unix seconds UTC).
    pub to: Option<i64>,
}

/// Usage summed per tenant / key prefix / model / UTC day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UsageRow {
    /// Tenant name.
    pub tenant: String,
    /// Prefix of the key.
    pub key_prefix: String,
    /// Model name.
    pub model: String,
    /// `YYYY-MM-DD` (UTC).
    pub day: String,
    /// Requests (usage events).
    pub requests: i64,
    /// Texts, summed.
    pub texts: i64,
    /// Characters, summed.
    pub characters: i64,
    /// Seconds of training (training jobs), summed.
    pub training_seconds: i64,
}

impl UsageRow {
    /// Column names in the order of [`UsageRow::cells`]: the CSV header of usage exports and
    /// the JSON keys.
    pub const COLUMNS: [&'static str; 8] = [
        "tenant",
        "key_prefix",
        "model",
        "day",
        "requests",
        "texts",
        "characters",
        "training_seconds",
    ];

    /// The values as text, in the order of [`UsageRow::COLUMNS`].
    pub fn cells(&self) -> [String; 8] {
        [
            self.tenant.clone(),
            self.key_prefix.clone(),
            self.model.clone(),
            self.day.clone(),
            self.requests.to_string(),
            self.texts.to_string(),
            self.characters.to_string(),
            self.training_seconds.to_string(),
        ]
    }
}

/// One labelled row of a stored dataset (base data or holdout).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DataRow {
    /// The input text.
    pub text: String,
    /// One label (several for multi-label; the value as text for regression).
    pub labels: Vec<String>,
}

/// Which stored dataset of a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataRole {
    /// The data a version was trained on, before feedback.
    Base,
    /// The holdout frozen at the first push that gave one.
    Holdout,
}

impl DataRole {
    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            DataRole::Base => "base",
            DataRole::Holdout => "holdout",
        }
    }
}

/// A stored dataset's description (without its rows).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, FromRow)]
pub struct DatasetInfo {
    /// Database id (for [`crate::Store::dataset_rows`]).
    pub id: i64,
    /// Model name.
    pub name: String,
    /// `base` or `holdout` (see [`DataRole`]).
    pub role: String,
    /// Hex SHA-256 over the rows (see [`crate::dataset_sha256`]).
    pub sha256: String,
    /// Number of rows.
    #[sqlx(rename = "row_count")]
    pub rows: i64,
    /// When it was stored (Unix seconds UTC).
    pub created_at: i64,
}

/// A served prediction to keep for review (its text already redacted).
#[derive(Debug, Clone, PartialEq, Serialize, FromRow)]
pub struct NewPrediction {
    /// Not serialized: the API shows a tenant only its own predictions.
    #[serde(skip_serializing)]
    pub tenant: String,
    /// Model name.
    pub model: String,
    /// Model version that made it.
    pub version: i64,
    /// The request's id; with `index`, the prediction's identity for feedback.
    pub request_id: String,
    /// Position of the text in the request's `inputs` (column `idx`).
    #[sqlx(rename = "idx")]
    pub index: i64,
    /// The input text (redacted).
    pub text: String,
    /// The predicted label (several joined by `", "`; the value for regression).
    pub label: String,
    /// The predicted label's probability (the value for regression).
    pub score: f64,
    /// In `[0, 1]`, higher = less sure; `None` for regression.
    pub uncertainty: Option<f64>,
    /// When it was served (Unix seconds UTC).
    pub created_at: i64,
    /// An audit item ("is this label right?"): the label the data gave the text, while
    /// `label` is the one the audit suggests; `None` for served predictions.
    pub given_label: Option<String>,
}

/// A logged prediction.
#[derive(Debug, Clone, PartialEq, Serialize, FromRow)]
pub struct LoggedPrediction {
    /// Database id (what [`NewFeedback::prediction_id`] refers to).
    pub id: i64,
    /// Whether feedback already labels it.
    pub labelled: bool,
    /// Serialized inline: its fields sit next to `id` and `labelled`.
    #[sqlx(flatten)]
    #[serde(flatten)]
    pub prediction: NewPrediction,
}

/// How the review queue is ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReviewStrategy {
    /// Most uncertain first (ties: oldest first).
    Uncertainty,
    /// A random sample.
    Random,
}

impl std::str::FromStr for ReviewStrategy {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "uncertainty" => Ok(ReviewStrategy::Uncertainty),
            "random" => Ok(ReviewStrategy::Random),
            other => Err(Error::Invalid(format!(
                "strategy {other:?} (expected uncertainty or random)"
            ))),
        }
    }
}

/// A correction to store (its text already redacted). `request_id` makes it idempotent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewFeedback {
    /// Tenant that sent it.
    pub tenant: String,
    /// Model name.
    pub model: String,
    /// The logged prediction it corrects, if any.
    pub prediction_id: Option<i64>,
    /// The text (redacted).
    pub text: String,
    /// The correct labels: at least one (several for multi-label; the value as text for
    /// regression).
    pub labels: Vec<String>,
    /// The feedback request's id, unique per tenant.
    pub request_id: String,
    /// Hex SHA-256 of the request body: the same id with another body is a conflict.
    pub request_sha256: String,
    /// When it was received (Unix seconds UTC).
    pub created_at: i64,
}

/// A stored correction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Feedback {
    /// Database id, increasing: feedback is read in id order.
    pub id: i64,
    /// Serialized inline: its fields sit next to `id`.
    #[serde(flatten)]
    pub feedback: NewFeedback,
}

/// Outcome of one retrain: what was compared and why the challenger was (not) promoted.
#[derive(Debug, Clone, PartialEq, Serialize, FromRow)]
pub struct RetrainDecision {
    /// Set by the store.
    pub id: i64,
    /// Model name.
    pub name: String,
    /// The champion the challenger was compared with.
    pub champion_version: i64,
    /// The challenger's version (`None` when training failed before one existed).
    pub challenger_version: Option<i64>,
    /// Whether the challenger was made champion.
    pub promoted: bool,
    /// Why, in words.
    pub reason: String,
    /// The numbers compared, as JSON.
    pub report: String,
    /// Feedback rows trained on.
    pub feedback_rows: i64,
    /// Highest feedback id considered.
    pub feedback_upto: i64,
    /// The training run's random seed.
    pub seed: i64,
    /// `manual`, `feedback` (after N new items) or `schedule`.
    pub cause: String,
    /// When it was decided (Unix seconds UTC); also the challenger's `created_at`.
    pub at: i64,
}
