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
    pub name: String,
    /// Public models may be used by every tenant.
    pub public: bool,
    /// Highest version pushed so far (0 when none).
    pub latest_version: i64,
    pub champion: Option<i64>,
    pub challenger: Option<i64>,
    pub created_at: i64,
}

/// Metadata of one stored version (without its bytes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, FromRow)]
pub struct VersionInfo {
    pub name: String,
    pub version: i64,
    /// Lower-case hex SHA-256 of the artifact bytes.
    pub sha256: String,
    pub size_bytes: i64,
    pub created_at: i64,
}

/// A stored model version with its artifact bytes.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct ModelArtifact {
    #[sqlx(flatten)]
    pub info: VersionInfo,
    #[sqlx(rename = "artifact")]
    pub bytes: Vec<u8>,
}

/// One row of the alias history (oldest first).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, FromRow)]
pub struct AliasEvent {
    pub id: i64,
    pub name: String,
    pub alias: String,
    pub version: i64,
    /// `set` or `rollback`.
    pub action: String,
    /// A `set` undone by a later rollback.
    pub reverted: bool,
    pub at: i64,
}

/// A customer account: its keys, grants and usage belong to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, FromRow)]
pub struct Tenant {
    pub id: i64,
    pub name: String,
    pub created_at: i64,
}

/// Limits shared by every key on the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, FromRow)]
pub struct Plan {
    pub name: String,
    pub requests_per_minute: i64,
    pub texts_per_month: i64,
    pub created_at: i64,
}

/// A key just created. `key` is the only copy of the plaintext: show it once.
#[derive(Clone, PartialEq, Eq)]
pub struct NewKey {
    pub id: i64,
    pub key: String,
    pub prefix: String,
    pub tenant: String,
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
    pub id: i64,
    pub prefix: String,
    pub tenant_id: i64,
    pub tenant: String,
    pub plan: String,
}

/// A key as listed: prefix only, never the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, FromRow)]
pub struct KeySummary {
    pub id: i64,
    pub prefix: String,
    pub plan: String,
    pub created_at: i64,
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
    pub limit: i64,
    pub remaining: i64,
    /// Unix time (seconds) at which the window resets.
    pub reset_at: i64,
    /// Seconds from `now` until `reset_at`.
    pub reset_after: i64,
}

/// Result of a rate-limit check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// The first limit that denied the request, if any.
    pub denied_by: Option<LimitKind>,
    pub requests: LimitState,
    pub texts: LimitState,
}

/// One metered request; `id` is the request id and makes recording idempotent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, FromRow)]
pub struct UsageEvent {
    pub id: String,
    pub tenant: String,
    pub key_prefix: String,
    pub model: String,
    pub version: i64,
    pub texts: i64,
    pub characters: i64,
    /// Unix seconds.
    pub at: i64,
    /// Hex SHA-256 of the request body (may be empty): the same id with another digest is an
    /// [`crate::Error::IdempotencyConflict`], not a retry.
    pub request_sha256: String,
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
    pub tenant: Option<String>,
    pub from: Option<i64>,
    pub to: Option<i64>,
}

/// Usage summed per tenant / key prefix / model / UTC day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UsageRow {
    pub tenant: String,
    pub key_prefix: String,
    pub model: String,
    /// `YYYY-MM-DD` (UTC).
    pub day: String,
    pub requests: i64,
    pub texts: i64,
    pub characters: i64,
}

impl UsageRow {
    /// Column names in the order of [`UsageRow::cells`]: the CSV header of usage exports and
    /// the JSON keys.
    pub const COLUMNS: [&'static str; 7] = [
        "tenant",
        "key_prefix",
        "model",
        "day",
        "requests",
        "texts",
        "characters",
    ];

    /// The values as text, in the order of [`UsageRow::COLUMNS`].
    pub fn cells(&self) -> [String; 7] {
        [
            self.tenant.clone(),
            self.key_prefix.clone(),
            self.model.clone(),
            self.day.clone(),
            self.requests.to_string(),
            self.texts.to_string(),
            self.characters.to_string(),
        ]
    }
}

/// One labelled row of a stored dataset (base data or holdout).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DataRow {
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
    pub id: i64,
    pub name: String,
    pub role: String,
    /// Hex SHA-256 over the rows (see [`crate::dataset_sha256`]).
    pub sha256: String,
    #[sqlx(rename = "row_count")]
    pub rows: i64,
    pub created_at: i64,
}

/// A served prediction to keep for review (its text already redacted).
#[derive(Debug, Clone, PartialEq, Serialize, FromRow)]
pub struct NewPrediction {
    /// Not serialized: the API shows a tenant only its own predictions.
    #[serde(skip_serializing)]
    pub tenant: String,
    pub model: String,
    pub version: i64,
    /// The request's id; with `index`, the prediction's identity for feedback.
    pub request_id: String,
    /// Position of the text in the request's `inputs` (column `idx`).
    #[sqlx(rename = "idx")]
    pub index: i64,
    pub text: String,
    /// The predicted label (several joined by `", "`; the value for regression).
    pub label: String,
    pub score: f64,
    /// In `[0, 1]`, higher = less sure; `None` for regression.
    pub uncertainty: Option<f64>,
    pub created_at: i64,
}

/// A logged prediction.
#[derive(Debug, Clone, PartialEq, Serialize, FromRow)]
pub struct LoggedPrediction {
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
    pub tenant: String,
    pub model: String,
    /// The logged prediction it corrects, if any.
    pub prediction_id: Option<i64>,
    pub text: String,
    pub labels: Vec<String>,
    pub request_id: String,
    /// Hex SHA-256 of the request body: the same id with another body is a conflict.
    pub request_sha256: String,
    pub created_at: i64,
}

/// A stored correction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Feedback {
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
    pub name: String,
    pub champion_version: i64,
    /// The challenger's version (`None` when training failed before one existed).
    pub challenger_version: Option<i64>,
    pub promoted: bool,
    pub reason: String,
    /// The numbers compared, as JSON.
    pub report: String,
    /// Feedback rows trained on.
    pub feedback_rows: i64,
    /// Highest feedback id considered.
    pub feedback_upto: i64,
    pub seed: i64,
    /// `manual`, `feedback` (after N new items) or `schedule`.
    pub cause: String,
    pub at: i64,
}
