//! The feedback loop's state: datasets kept with a model (base data per version, a frozen
//! holdout per model), sampled predictions, corrections, retrain decisions and the lease that
//! keeps one retrain job per model at a time. Written once as a macro, expanded inside each
//! back end's module (see `backend.rs`) so it can share that module's transaction helpers.

use sha2::{Digest, Sha256};
use sqlx::FromRow;

use crate::types::{DataRow, Feedback, NewFeedback};
use crate::util::to_hex;

/// Joins label names for storage (U+001F cannot appear in a label).
pub(crate) const LABEL_JOIN: char = '\u{1f}';

/// SHA-256 (hex) of a dataset's rows in order: what identifies a frozen holdout.
pub fn dataset_sha256(rows: &[DataRow]) -> String {
    let mut h = Sha256::new();
    for row in rows {
        h.update(row.text.as_bytes());
        for label in &row.labels {
            h.update([0x1f]);
            h.update(label.as_bytes());
        }
        h.update([0x1e]);
    }
    to_hex(&h.finalize())
}

/// The stored form of a row's labels; refuses labels that cannot round-trip.
pub(crate) fn join_labels(labels: &[String]) -> crate::Result<String> {
    if labels.is_empty() {
        return Err(crate::Error::Invalid(
            "labels: at least one is required".into(),
        ));
    }
    if let Some(bad) = labels
        .iter()
        .find(|l| l.is_empty() || l.contains(LABEL_JOIN))
    {
        return Err(crate::Error::Invalid(format!("label {bad:?}")));
    }
    let mut out = String::new();
    for (i, l) in labels.iter().enumerate() {
        if i > 0 {
            out.push(LABEL_JOIN);
        }
        out.push_str(l);
    }
    Ok(out)
}

/// The labels of a stored row (none for a text stored without labels).
pub(crate) fn split_labels(joined: &str) -> Vec<String> {
    if joined.is_empty() {
        return Vec::new();
    }
    joined.split(LABEL_JOIN).map(str::to_string).collect()
}

/// A `dataset_rows` row, its labels still joined.
#[derive(FromRow)]
pub(crate) struct DataRowRecord {
    text: String,
    labels: String,
}

impl From<DataRowRecord> for DataRow {
    fn from(r: DataRowRecord) -> Self {
        DataRow {
            text: r.text,
            labels: split_labels(&r.labels),
        }
    }
}

/// A `feedback` row, its labels still joined.
#[derive(FromRow)]
pub(crate) struct FeedbackRecord {
    id: i64,
    tenant: String,
    model: String,
    prediction_id: Option<i64>,
    text: String,
    labels: String,
    request_id: String,
    request_sha256: String,
    created_at: i64,
}

impl From<FeedbackRecord> for Feedback {
    fn from(r: FeedbackRecord) -> Self {
        Feedback {
            id: r.id,
            feedback: NewFeedback {
                tenant: r.tenant,
                model: r.model,
                prediction_id: r.prediction_id,
                text: r.text,
                labels: split_labels(&r.labels),
                request_id: r.request_id,
                request_sha256: r.request_sha256,
                created_at: r.created_at,
            },
        }
    }
}

/// Rows per multi-row INSERT (4 parameters each; well under both databases' limits).
pub(crate) const INSERT_CHUNK: usize = 1000;

macro_rules! feedback_ops {
    ($store:ty, $db:ty, $begin:expr) => {
        use crate::feedback::{dataset_sha256, join_labels, DataRowRecord, FeedbackRecord, INSERT_CHUNK};

        /// Inserts predictions inside `tx`, leaving any already logged (a retry) as they are;
        /// returns how many were added.
        async fn insert_predictions(
            tx: &mut sqlx::Transaction<'static, $db>,
            predictions: &[NewPrediction],
        ) -> Result<u64> {
            let mut added = 0;
            for p in predictions {
                let done = sqlx::query(
                    "INSERT INTO predictions (tenant, model, version, request_id, idx, text, label, \
                     score, uncertainty, created_at, given_label) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (tenant, request_id, idx) DO NOTHING",
                )
                .bind(&p.tenant)
                .bind(&p.model)
                .bind(p.version)
                .bind(&p.request_id)
                .bind(p.index)
                .bind(&p.text)
                .bind(&p.label)
                .bind(p.score)
                .bind(p.uncertainty)
                .bind(p.created_at)
                .bind(&p.given_label)
                .execute(&mut **tx)
                .await?;
                added += done.rows_affected();
            }
            Ok(added)
        }

        /// Inserts a dataset and its rows inside `tx`; returns its id.
        async fn insert_dataset(
            tx: &mut sqlx::Transaction<'static, $db>,
            name: &str,
            role: DataRole,
            rows: &[DataRow],
            now: i64,
        ) -> Result<i64> {
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO datasets (name, role, sha256, row_count, created_at) \
                 VALUES ($1, $2, $3, $4, $5) RETURNING id",
            )
            .bind(name)
            .bind(role.as_str())
            .bind(dataset_sha256(rows))
            .bind(rows.len() as i64)
            .bind(now)
            .fetch_one(&mut **tx)
            .await?;
            let mut joined = Vec::with_capacity(rows.len());
            for row in rows {
                joined.push(join_labels(&row.labels)?);
            }
            for (c, chunk) in rows.chunks(INSERT_CHUNK).enumerate() {
                let mut q = sqlx::QueryBuilder::<$db>::new(
                    "INSERT INTO dataset_rows (dataset_id, position, text, labels) ",
                );
                q.push_values(chunk.iter().enumerate(), |mut b, (i, row)| {
                    let position = c * INSERT_CHUNK + i;
                    b.push_bind(id)
                        .push_bind(position as i64)
                        .push_bind(row.text.clone())
                        .push_bind(joined[position].clone());
                });
                q.build().execute(&mut **tx).await?;
            }
            Ok(id)
        }

        /// Inserts the next version of `name` with its base data and (at the model's first
        /// push that gives one) its frozen holdout inside `tx`; returns the version.
        async fn insert_model_with_data(
            tx: &mut sqlx::Transaction<'static, $db>,
            name: &str,
            bytes: &[u8],
            sha256_hex: &str,
            created_at: i64,
            base: Option<&[DataRow]>,
            holdout: Option<&[DataRow]>,
        ) -> Result<i64> {
            let version = insert_version(tx, name, bytes, sha256_hex, created_at).await?;
            if let Some(rows) = base {
                let id = insert_dataset(tx, name, DataRole::Base, rows, created_at).await?;
                sqlx::query(
                    "UPDATE model_versions SET base_dataset = $3 WHERE name = $1 AND version = $2",
                )
                .bind(name)
                .bind(version)
                .bind(id)
                .execute(&mut **tx)
                .await?;
            }
            if let Some(rows) = holdout {
                let frozen: Option<String> = sqlx::query_scalar(
                    "SELECT d.sha256 FROM models m JOIN datasets d ON d.id = m.holdout_dataset \
                     WHERE m.name = $1",
                )
                .bind(name)
                .fetch_optional(&mut **tx)
                .await?;
                match frozen {
                    Some(sha) if sha == dataset_sha256(rows) => {}
                    Some(_) => {
                        return Err(Error::Invalid(format!(
                            "holdout: model {name:?} already has a frozen holdout with other rows \
                             (it is fixed at the first push so every challenger is compared on the same data)"
                        )))
                    }
                    None => {
                        let id =
                            insert_dataset(tx, name, DataRole::Holdout, rows, created_at)
                                .await?;
                        sqlx::query("UPDATE models SET holdout_dataset = $2 WHERE name = $1")
                            .bind(name)
                            .bind(id)
                            .execute(&mut **tx)
                            .await?;
                    }
                }
            }
            Ok(version)
        }

        const PREDICTION_COLUMNS: &str = "p.id, p.tenant, p.model, p.version, p.request_id, p.idx, \
             p.text, p.label, p.score, p.uncertainty, p.created_at, p.given_label, \
             EXISTS (SELECT 1 FROM feedback f WHERE f.prediction_id = p.id) AS labelled";

        const FEEDBACK_COLUMNS: &str = "id, tenant, model, prediction_id, text, labels, \
             request_id, request_sha256, created_at";

        impl $store {
            // ------------------------------------------------------------ datasets

            /// Stores the next version of `name` together with the data it was trained on
            /// (`base`) and, at the model's first push that gives one, its holdout, in one
            /// transaction. The holdout is frozen: a later push may repeat the same rows, any
            /// other holdout is refused.
            pub async fn push_model_with_data(
                &self,
                name: &str,
                bytes: &[u8],
                sha256_hex: &str,
                created_at: i64,
                base: Option<&[DataRow]>,
                holdout: Option<&[DataRow]>,
            ) -> Result<i64> {
                validate_name("model", name)?;
                let actual = to_hex(&sha256(bytes));
                if !actual.eq_ignore_ascii_case(sha256_hex) {
                    return Err(Error::ChecksumMismatch {
                        expected: sha256_hex.to_string(),
                        actual,
                    });
                }
                let mut tx = self.pool.begin_with($begin).await?;
                let version =
                    insert_model_with_data(&mut tx, name, bytes, &actual, created_at, base, holdout)
                        .await?;
                tx.commit().await?;
                Ok(version)
            }

            /// Freezes `rows` as `name`'s holdout unless it has one; returns whether it did.
            pub async fn freeze_holdout(&self, name: &str, rows: &[DataRow], now: i64) -> Result<bool> {
                let mut tx = self.pool.begin_with($begin).await?;
                let frozen: Option<Option<i64>> =
                    sqlx::query_scalar("SELECT holdout_dataset FROM models WHERE name = $1")
                        .bind(name)
                        .fetch_optional(&mut *tx)
                        .await?;
                match frozen {
                    None => return Err(Error::NotFound(format!("model {name:?}"))),
                    Some(Some(_)) => return Ok(false),
                    Some(None) => {}
                }
                let id = insert_dataset(&mut tx, name, DataRole::Holdout, rows, now).await?;
                sqlx::query("UPDATE models SET holdout_dataset = $2 WHERE name = $1")
                    .bind(name)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(true)
            }

            /// The base data recorded with a version, if any.
            pub async fn base_dataset(&self, name: &str, version: i64) -> Result<Option<DatasetInfo>> {
                Ok(sqlx::query_as(
                    "SELECT d.id, d.name, d.role, d.sha256, d.row_count, d.created_at \
                     FROM model_versions v JOIN datasets d ON d.id = v.base_dataset \
                     WHERE v.name = $1 AND v.version = $2",
                )
                .bind(name)
                .bind(version)
                .fetch_optional(&self.pool)
                .await?)
            }

            /// The model's frozen holdout, if one was given.
            pub async fn holdout_dataset(&self, name: &str) -> Result<Option<DatasetInfo>> {
                Ok(sqlx::query_as(
                    "SELECT d.id, d.name, d.role, d.sha256, d.row_count, d.created_at \
                     FROM models m JOIN datasets d ON d.id = m.holdout_dataset WHERE m.name = $1",
                )
                .bind(name)
                .fetch_optional(&self.pool)
                .await?)
            }

            /// A dataset's rows in their original order.
            pub async fn dataset_rows(&self, dataset_id: i64) -> Result<Vec<DataRow>> {
                let rows: Vec<DataRowRecord> = sqlx::query_as(
                    "SELECT text, labels FROM dataset_rows WHERE dataset_id = $1 ORDER BY position",
                )
                .bind(dataset_id)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.into_iter().map(DataRow::from).collect())
            }

            // ------------------------------------------------------------ predictions

            /// Keeps served predictions for review; a prediction already logged (same tenant,
            /// request id and index: a retry) is left as it is. Returns the rows added.
            pub async fn log_predictions(&self, predictions: &[NewPrediction]) -> Result<u64> {
                let mut tx = self.pool.begin_with($begin).await?;
                let added = insert_predictions(&mut tx, predictions).await?;
                tx.commit().await?;
                Ok(added)
            }

            /// The prediction logged for `(tenant, request_id, index)`.
            pub async fn find_prediction(
                &self,
                tenant: &str,
                request_id: &str,
                index: i64,
            ) -> Result<Option<LoggedPrediction>> {
                Ok(sqlx::query_as(&format!(
                    "SELECT {PREDICTION_COLUMNS} FROM predictions p \
                     WHERE p.tenant = $1 AND p.request_id = $2 AND p.idx = $3"
                ))
                .bind(tenant)
                .bind(request_id)
                .bind(index)
                .fetch_optional(&self.pool)
                .await?)
            }

            /// The logged prediction with this id.
            pub async fn get_prediction(&self, id: i64) -> Result<Option<LoggedPrediction>> {
                Ok(sqlx::query_as(&format!(
                    "SELECT {PREDICTION_COLUMNS} FROM predictions p WHERE p.id = $1"
                ))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?)
            }

            /// Logged predictions of `model` that no feedback labels yet (only `tenant`'s when
            /// given), most uncertain first or at random; at most `limit`.
            pub async fn review_queue(
                &self,
                model: &str,
                tenant: Option<&str>,
                strategy: ReviewStrategy,
                limit: i64,
            ) -> Result<Vec<LoggedPrediction>> {
                let order = match strategy {
                    ReviewStrategy::Uncertainty => {
                        "(p.uncertainty IS NULL), p.uncertainty DESC, p.id"
                    }
                    ReviewStrategy::Random => "random()",
                };
                let tenant_filter = if tenant.is_some() { "AND p.tenant = $3" } else { "" };
                let sql = format!(
                    "SELECT {PREDICTION_COLUMNS} FROM predictions p WHERE p.model = $1 {tenant_filter} \
                     AND NOT EXISTS (SELECT 1 FROM feedback f WHERE f.prediction_id = p.id) \
                     ORDER BY {order} LIMIT $2"
                );
                let mut q = sqlx::query_as(&sql).bind(model).bind(limit.max(0));
                if let Some(t) = tenant {
                    q = q.bind(t);
                }
                Ok(q.fetch_all(&self.pool).await?)
            }

            /// How many logged predictions of `model` wait for a label (a tenant's only, when
            /// given): the length of the whole review queue.
            pub async fn count_review_queue(&self, model: &str, tenant: Option<&str>) -> Result<i64> {
                let tenant_filter = if tenant.is_some() { "AND p.tenant = $2" } else { "" };
                let sql = format!(
                    "SELECT COUNT(*) FROM predictions p WHERE p.model = $1 {tenant_filter} \
                     AND NOT EXISTS (SELECT 1 FROM feedback f WHERE f.prediction_id = p.id)"
                );
                let mut q = sqlx::query_scalar(&sql).bind(model);
                if let Some(t) = tenant {
                    q = q.bind(t);
                }
                let n: i64 = q.fetch_one(&self.pool).await?;
                Ok(n)
            }

            // ------------------------------------------------------------ feedback

            /// Stores a correction, committed before this returns. The same tenant and request
            /// id with the same body is a retry: the stored row is returned with `true`; with
            /// another body it is an [`Error::IdempotencyConflict`].
            pub async fn add_feedback(&self, f: &NewFeedback) -> Result<(Feedback, bool)> {
                let labels = join_labels(&f.labels)?;
                let mut tx = self.pool.begin_with($begin).await?;
                let inserted: Option<i64> = sqlx::query_scalar(
                    "INSERT INTO feedback (tenant, model, prediction_id, text, labels, request_id, \
                     request_sha256, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                     ON CONFLICT (tenant, request_id) DO NOTHING RETURNING id",
                )
                .bind(&f.tenant)
                .bind(&f.model)
                .bind(f.prediction_id)
                .bind(&f.text)
                .bind(&labels)
                .bind(&f.request_id)
                .bind(&f.request_sha256)
                .bind(f.created_at)
                .fetch_optional(&mut *tx)
                .await
                .map_err(|e| {
                    if is_foreign_key_violation(&e) {
                        Error::NotFound(format!("prediction {:?}", f.prediction_id))
                    } else {
                        Error::from(e)
                    }
                })?;
                let result = match inserted {
                    Some(id) => (
                        Feedback {
                            id,
                            feedback: f.clone(),
                        },
                        false,
                    ),
                    None => {
                        let row: FeedbackRecord = sqlx::query_as(&format!(
                            "SELECT {FEEDBACK_COLUMNS} FROM feedback WHERE tenant = $1 AND request_id = $2"
                        ))
                        .bind(&f.tenant)
                        .bind(&f.request_id)
                        .fetch_one(&mut *tx)
                        .await?;
                        let stored = Feedback::from(row);
                        if stored.feedback.request_sha256 != f.request_sha256 {
                            return Err(Error::IdempotencyConflict(f.request_id.clone()));
                        }
                        (stored, true)
                    }
                };
                tx.commit().await?;
                Ok(result)
            }

            /// Feedback on `model` with an id above `after_id`, oldest first.
            pub async fn feedback_since(&self, model: &str, after_id: i64) -> Result<Vec<Feedback>> {
                let rows: Vec<FeedbackRecord> = sqlx::query_as(&format!(
                    "SELECT {FEEDBACK_COLUMNS} FROM feedback WHERE model = $1 AND id > $2 ORDER BY id"
                ))
                .bind(model)
                .bind(after_id)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.into_iter().map(Feedback::from).collect())
            }

            /// `(count, highest id)` of the feedback on `model` with an id above `after_id`.
            pub async fn count_feedback_since(&self, model: &str, after_id: i64) -> Result<(i64, i64)> {
                let (n, upto): (i64, i64) = sqlx::query_as(
                    "SELECT COUNT(*) AS n, COALESCE(MAX(id), 0) AS upto FROM feedback \
                     WHERE model = $1 AND id > $2",
                )
                .bind(model)
                .bind(after_id)
                .fetch_one(&self.pool)
                .await?;
                Ok((n, upto.max(after_id)))
            }

            // ------------------------------------------------------------ retrain

            /// Records a retrain that produced a challenger, in one transaction: the challenger
            /// is stored as the next version (with `base_dataset` as its base data), pointed to
            /// by the `challenger` alias, made champion when `decision.promoted`, and the
            /// decision is recorded with its version. Returns the decision as stored.
            pub async fn finish_retrain(
                &self,
                bytes: &[u8],
                base_dataset: Option<i64>,
                decision: &RetrainDecision,
            ) -> Result<RetrainDecision> {
                let name = decision.name.as_str();
                let sha = to_hex(&sha256(bytes));
                let mut tx = self.pool.begin_with($begin).await?;
                let version = insert_version(&mut tx, name, bytes, &sha, decision.at).await?;
                sqlx::query(
                    "UPDATE model_versions SET base_dataset = $3 WHERE name = $1 AND version = $2",
                )
                .bind(name)
                .bind(version)
                .bind(base_dataset)
                .execute(&mut *tx)
                .await?;
                point_alias(&mut tx, name, Alias::Challenger, version, decision.at).await?;
                if decision.promoted {
                    point_alias(&mut tx, name, Alias::Champion, version, decision.at).await?;
                }
                let mut stored = decision.clone();
                stored.challenger_version = Some(version);
                stored.id = insert_decision(&mut tx, &stored).await?;
                tx.commit().await?;
                Ok(stored)
            }

            /// Records a retrain that ended without a challenger (e.g. training failed).
            pub async fn record_decision(&self, decision: &RetrainDecision) -> Result<RetrainDecision> {
                let mut tx = self.pool.begin_with($begin).await?;
                let mut stored = decision.clone();
                stored.id = insert_decision(&mut tx, decision).await?;
                tx.commit().await?;
                Ok(stored)
            }

            /// Every retrain decision of a model, oldest first.
            pub async fn decisions(&self, name: &str) -> Result<Vec<RetrainDecision>> {
                Ok(sqlx::query_as(
                    "SELECT id, name, champion_version, challenger_version, promoted, reason, report, \
                     feedback_rows, feedback_upto, seed, cause, at FROM retrain_decisions \
                     WHERE name = $1 ORDER BY id",
                )
                .bind(name)
                .fetch_all(&self.pool)
                .await?)
            }

            /// Takes the retrain lease of `name` for `holder` until `now + ttl` if it is free,
            /// expired or already `holder`'s; `false` when another holder has it.
            pub async fn try_lease(&self, name: &str, holder: &str, now: i64, ttl: i64) -> Result<bool> {
                let mut tx = self.pool.begin_with($begin).await?;
                let done = sqlx::query(
                    "INSERT INTO retrain_leases (name, holder, expires_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
                     WHERE retrain_leases.expires_at <= $4 OR retrain_leases.holder = $2",
                )
                .bind(name)
                .bind(holder)
                .bind(now + ttl)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(done.rows_affected() == 1)
            }

            /// Gives the lease back (only `holder`'s).
            pub async fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
                sqlx::query("DELETE FROM retrain_leases WHERE name = $1 AND holder = $2")
                    .bind(name)
                    .bind(holder)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }
        }

        async fn insert_decision(
            tx: &mut sqlx::Transaction<'static, $db>,
            d: &RetrainDecision,
        ) -> Result<i64> {
            Ok(sqlx::query_scalar(
                "INSERT INTO retrain_decisions (name, champion_version, challenger_version, promoted, \
                 reason, report, feedback_rows, feedback_upto, seed, cause, at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
            )
            .bind(&d.name)
            .bind(d.champion_version)
            .bind(d.challenger_version)
            .bind(d.promoted)
            .bind(&d.reason)
            .bind(&d.report)
            .bind(d.feedback_rows)
            .bind(d.feedback_upto)
            .bind(d.seed)
            .bind(&d.cause)
            .bind(d.at)
            .fetch_one(&mut **tx)
            .await?)
        }
    };
}
pub(crate) use feedback_ops;
