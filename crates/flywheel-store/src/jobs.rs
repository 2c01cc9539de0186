//! Tenants' own data and work: uploaded datasets and the jobs that run on them (training and
//! batch classification), queued in the database with leases.
//!
//! An upload streams in as `staging` chunks (each its own short transaction, so a large file
//! never holds the write lock that metering needs) and becomes visible, with its version, only
//! when [`crate::Store::finish_upload`] marks it `ready`; a failed or abandoned upload is
//! removed. A job is claimed by one worker at a time through a lease that the worker renews;
//! a worker that dies stops renewing, and once the lease expires any replica claims the job
//! again. Everything a job produces — a trained model version with its report and usage, or a
//! chunk of batch results with its usage — is committed in one transaction together with the
//! check that the worker still holds the lease, so a job taken over never writes twice.

use serde::Serialize;
use sqlx::FromRow;

use crate::{Error, Result};

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobKind {
    /// Trains a model on a dataset.
    Training,
    /// Classifies a dataset's texts with a model.
    Batch,
}

impl JobKind {
    /// The name stored in the database and used by the API.
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Training => "training",
            JobKind::Batch => "batch",
        }
    }

    fn parse(s: &str) -> Result<JobKind> {
        match s {
            "training" => Ok(JobKind::Training),
            "batch" => Ok(JobKind::Batch),
            other => Err(Error::Invalid(format!(
                "job kind {other:?} in the database"
            ))),
        }
    }
}

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Waiting for a worker.
    Queued,
    /// A worker holds its lease.
    Running,
    /// Done; its result is stored.
    Succeeded,
    /// Stopped by an error (the job's `error` says which).
    Failed,
    /// Cancelled by its tenant.
    Cancelled,
}

impl JobState {
    /// The name stored in the database and used by the API.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    /// Whether the job will not change any more.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
        )
    }

    fn parse(s: &str) -> Result<JobState> {
        match s {
            "queued" => Ok(JobState::Queued),
            "running" => Ok(JobState::Running),
            "succeeded" => Ok(JobState::Succeeded),
            "failed" => Ok(JobState::Failed),
            "cancelled" => Ok(JobState::Cancelled),
            other => Err(Error::Invalid(format!(
                "job state {other:?} in the database"
            ))),
        }
    }
}

/// A plan's limits on a tenant's own data and work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, FromRow)]
pub struct PlanQuotas {
    /// Datasets a tenant may keep.
    pub max_datasets: i64,
    /// Largest upload, in bytes.
    pub max_upload_bytes: i64,
    /// Jobs (training and batch) queued or running at once.
    pub max_active_jobs: i64,
    /// Seconds of training per UTC calendar month.
    pub training_seconds_per_month: i64,
}

/// A stored dataset (a completed upload).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, FromRow)]
pub struct UploadInfo {
    /// Its id.
    pub id: i64,
    /// Id of the tenant that owns it.
    pub tenant_id: i64,
    /// The name it was uploaded under.
    pub name: String,
    /// 1 for the first upload under this name, then 2, 3, ...
    pub version: i64,
    /// `csv`, `tsv`, `jsonl` or `fasttext`.
    pub format: String,
    /// Labelled rows.
    pub row_count: i64,
    /// Bytes uploaded.
    pub size_bytes: i64,
    /// Hex SHA-256 of the bytes uploaded.
    pub sha256: String,
    /// A JSON object describing the rows (label counts, task, language), written by the server.
    pub summary: String,
    /// Unix seconds.
    pub created_at: i64,
}

/// A job to queue.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// Its id (unique; made by the caller).
    pub id: String,
    /// The tenant that asks.
    pub tenant_id: i64,
    /// Training or batch.
    pub kind: JobKind,
    /// The dataset it works on.
    pub upload_id: i64,
    /// The model trained (training) or used (batch).
    pub model: String,
    /// The settings as a JSON object (the server's to read).
    pub settings: String,
    /// Unix seconds.
    pub now: i64,
}

/// A job as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobInfo {
    /// Its id.
    pub id: String,
    /// Id of the tenant that owns it.
    pub tenant_id: i64,
    /// Training or batch.
    pub kind: JobKind,
    /// Where it stands.
    pub state: JobState,
    /// The dataset it works on.
    pub upload_id: i64,
    /// The model trained or used.
    pub model: String,
    /// Its settings (JSON object).
    pub settings: String,
    /// Its latest progress (JSON object).
    pub progress: String,
    /// What it produced (JSON object), once succeeded.
    pub result: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
    /// Times a worker claimed it (more than 1 after a worker died).
    pub attempts: i64,
    /// Unix seconds.
    pub created_at: i64,
    /// When a worker first claimed it.
    pub started_at: Option<i64>,
    /// When it reached a final state.
    pub finished_at: Option<i64>,
}

#[derive(FromRow)]
pub(crate) struct JobRecord {
    id: String,
    tenant_id: i64,
    kind: String,
    state: String,
    upload_id: i64,
    model: String,
    settings: String,
    progress: String,
    result: Option<String>,
    error: Option<String>,
    attempts: i64,
    created_at: i64,
    started_at: Option<i64>,
    finished_at: Option<i64>,
}

impl TryFrom<JobRecord> for JobInfo {
    type Error = Error;

    fn try_from(r: JobRecord) -> Result<JobInfo> {
        Ok(JobInfo {
            id: r.id,
            tenant_id: r.tenant_id,
            kind: JobKind::parse(&r.kind)?,
            state: JobState::parse(&r.state)?,
            upload_id: r.upload_id,
            model: r.model,
            settings: r.settings,
            progress: r.progress,
            result: r.result,
            error: r.error,
            attempts: r.attempts,
            created_at: r.created_at,
            started_at: r.started_at,
            finished_at: r.finished_at,
        })
    }
}

/// One progress event of a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, FromRow)]
pub struct JobEvent {
    /// 1, 2, ... in the order they happened.
    pub seq: i64,
    /// Unix seconds.
    pub at: i64,
    /// The event (JSON object).
    pub data: String,
}

/// What a training job produced, committed in one transaction with the job's success.
#[derive(Debug, Clone)]
pub struct TrainedModel<'a> {
    /// The model file.
    pub bytes: &'a [u8],
    /// The rows it was trained on (kept as the version's base data, for retraining).
    pub base: &'a [crate::DataRow],
    /// The rows it was evaluated on (frozen as the model's holdout at its first version).
    pub holdout: &'a [crate::DataRow],
    /// The evaluation report (HTML).
    pub report_html: &'a str,
    /// The job's result (JSON object); `"version"` is added by the store.
    pub result: &'a serde_json::Value,
    /// The training time metered (the event's `version` is set by the store).
    pub usage: &'a crate::UsageEvent,
}

/// A chunk of batch results, committed in one transaction with its usage and progress.
#[derive(Debug, Clone)]
pub struct BatchChunk<'a> {
    /// Position of the first output.
    pub start: i64,
    /// One JSON object per row, in order.
    pub outputs: &'a [String],
    /// The texts classified in this chunk, metered once.
    pub usage: &'a crate::UsageEvent,
    /// The job's progress after this chunk (JSON object).
    pub progress: &'a str,
}

/// The SQL that reads a job.
pub(crate) const JOB_COLUMNS: &str = "id, tenant_id, kind, state, upload_id, model, settings, \
     progress, result, error, attempts, created_at, started_at, finished_at";

/// The SQL that reads an upload.
pub(crate) const UPLOAD_COLUMNS: &str =
    "id, tenant_id, name, version, format, row_count, size_bytes, sha256, summary, created_at";

macro_rules! jobs_ops {
    ($store:ty, $db:ty, $begin:expr) => {
        use crate::jobs::{
            BatchChunk, JobEvent, JobInfo, JobKind, JobRecord, NewJob, PlanQuotas,
            TrainedModel, UploadInfo, JOB_COLUMNS, UPLOAD_COLUMNS,
        };

        impl $store {
            // ------------------------------------------------------------ uploads

            /// The self-service limits of plan `plan`.
            pub async fn plan_quotas(&self, plan: &str) -> Result<PlanQuotas> {
                sqlx::query_as(
                    "SELECT max_datasets, max_upload_bytes, max_active_jobs, \
                     training_seconds_per_month FROM plans WHERE name = $1",
                )
                .bind(plan)
                .fetch_optional(&self.pool)
                .await?
                .ok_or_else(|| Error::NotFound(format!("plan {plan:?}")))
            }

            /// Changes plan `plan`'s self-service limits.
            pub async fn set_plan_quotas(&self, plan: &str, q: &PlanQuotas) -> Result<()> {
                if q.max_datasets < 0
                    || q.max_upload_bytes < 0
                    || q.max_active_jobs < 0
                    || q.training_seconds_per_month < 0
                {
                    return Err(Error::Invalid("plan limits must not be negative".into()));
                }
                let done = sqlx::query(
                    "UPDATE plans SET max_datasets = $2, max_upload_bytes = $3, \
                     max_active_jobs = $4, training_seconds_per_month = $5 WHERE name = $1",
                )
                .bind(plan)
                .bind(q.max_datasets)
                .bind(q.max_upload_bytes)
                .bind(q.max_active_jobs)
                .bind(q.training_seconds_per_month)
                .execute(&self.pool)
                .await?;
                if done.rows_affected() == 0 {
                    return Err(Error::NotFound(format!("plan {plan:?}")));
                }
                Ok(())
            }

            /// Datasets `tenant_id` keeps (ready, not deleted).
            pub async fn count_uploads(&self, tenant_id: i64) -> Result<i64> {
                Ok(sqlx::query_scalar(
                    "SELECT COUNT(*) FROM uploads WHERE tenant_id = $1 AND state = 'ready' \
                     AND deleted_at IS NULL",
                )
                .bind(tenant_id)
                .fetch_one(&self.pool)
                .await?)
            }

            /// Starts an upload (invisible until finished); returns its id.
            pub async fn begin_upload(
                &self,
                tenant_id: i64,
                name: &str,
                format: &str,
                now: i64,
            ) -> Result<i64> {
                validate_name("dataset", name)?;
                Ok(sqlx::query_scalar(
                    "INSERT INTO uploads (tenant_id, name, version, state, format, row_count, \
                     size_bytes, sha256, summary, created_at) \
                     VALUES ($1, $2, 0, 'staging', $3, 0, 0, '', '{}', $4) RETURNING id",
                )
                .bind(tenant_id)
                .bind(name)
                .bind(format)
                .bind(now)
                .fetch_one(&self.pool)
                .await?)
            }

            /// Adds rows (with or without labels) to a staging upload, from position `start`, in
            /// one transaction.
            pub async fn append_upload_rows(
                &self,
                upload_id: i64,
                start: i64,
                rows: &[DataRow],
            ) -> Result<()> {
                let mut joined = Vec::with_capacity(rows.len());
                for row in rows {
                    // A text uploaded to be classified has no labels.
                    joined.push(if row.labels.is_empty() {
                        String::new()
                    } else {
                        join_labels(&row.labels)?
                    });
                }
                let mut tx = self.pool.begin_with($begin).await?;
                for (c, chunk) in rows.chunks(INSERT_CHUNK).enumerate() {
                    let mut q = sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO upload_rows (upload_id, position, text, labels) ",
                    );
                    q.push_values(chunk.iter().enumerate(), |mut b, (i, row)| {
                        let k = c * INSERT_CHUNK + i;
                        b.push_bind(upload_id)
                            .push_bind(start + k as i64)
                            .push_bind(row.text.clone())
                            .push_bind(joined[k].clone());
                    });
                    q.build().execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok(())
            }

            /// Makes a staging upload visible as the next version of its name.
            pub async fn finish_upload(
                &self,
                upload_id: i64,
                row_count: i64,
                size_bytes: i64,
                sha256_hex: &str,
                summary: &str,
            ) -> Result<UploadInfo> {
                let mut tx = self.pool.begin_with($begin).await?;
                let (tenant_id, name): (i64, String) = sqlx::query_as(
                    "SELECT tenant_id, name FROM uploads WHERE id = $1 AND state = 'staging'",
                )
                .bind(upload_id)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| Error::NotFound(format!("upload {upload_id}")))?;
                let version: i64 = sqlx::query_scalar(
                    "SELECT COALESCE(MAX(version), 0) + 1 FROM uploads \
                     WHERE tenant_id = $1 AND name = $2 AND state = 'ready'",
                )
                .bind(tenant_id)
                .bind(&name)
                .fetch_one(&mut *tx)
                .await?;
                sqlx::query(
                    "UPDATE uploads SET state = 'ready', version = $2, row_count = $3, \
                     size_bytes = $4, sha256 = $5, summary = $6 WHERE id = $1",
                )
                .bind(upload_id)
                .bind(version)
                .bind(row_count)
                .bind(size_bytes)
                .bind(sha256_hex)
                .bind(summary)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                self.get_upload(upload_id)
                    .await?
                    .ok_or_else(|| Error::NotFound(format!("upload {upload_id}")))
            }

            /// Removes a staging upload and its rows (a failed upload leaves nothing).
            pub async fn discard_upload(&self, upload_id: i64) -> Result<()> {
                let mut tx = self.pool.begin_with($begin).await?;
                sqlx::query("DELETE FROM upload_rows WHERE upload_id = $1")
                    .bind(upload_id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("DELETE FROM uploads WHERE id = $1 AND state = 'staging'")
                    .bind(upload_id)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(())
            }

            /// Removes uploads still staging that began before `before` (abandoned by a
            /// process that died mid-upload); returns how many.
            pub async fn sweep_uploads(&self, before: i64) -> Result<u64> {
                let ids: Vec<i64> = sqlx::query_scalar(
                    "SELECT id FROM uploads WHERE state = 'staging' AND created_at < $1",
                )
                .bind(before)
                .fetch_all(&self.pool)
                .await?;
                for id in &ids {
                    self.discard_upload(*id).await?;
                }
                Ok(ids.len() as u64)
            }

            /// A dataset (ready, not deleted), whoever owns it.
            pub async fn get_upload(&self, id: i64) -> Result<Option<UploadInfo>> {
                Ok(sqlx::query_as(&format!(
                    "SELECT {UPLOAD_COLUMNS} FROM uploads WHERE id = $1 AND state = 'ready' \
                     AND deleted_at IS NULL"
                ))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?)
            }

            /// `tenant_id`'s datasets (every tenant's for `None`), newest first.
            pub async fn list_uploads(&self, tenant_id: Option<i64>) -> Result<Vec<UploadInfo>> {
                Ok(sqlx::query_as(&format!(
                    "SELECT {UPLOAD_COLUMNS} FROM uploads WHERE state = 'ready' \
                     AND deleted_at IS NULL AND ($1 IS NULL OR tenant_id = $1) ORDER BY id DESC"
                ))
                .bind(tenant_id)
                .fetch_all(&self.pool)
                .await?)
            }

            /// Deletes a dataset's rows and hides it; `false` if there was none. Jobs that
            /// used it keep their results.
            pub async fn delete_upload(&self, id: i64, now: i64) -> Result<bool> {
                let mut tx = self.pool.begin_with($begin).await?;
                let done = sqlx::query(
                    "UPDATE uploads SET deleted_at = $2 WHERE id = $1 AND state = 'ready' \
                     AND deleted_at IS NULL",
                )
                .bind(id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() == 0 {
                    return Ok(false);
                }
                sqlx::query("DELETE FROM upload_rows WHERE upload_id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(true)
            }

            /// At most `limit` rows of a dataset from position `offset`, in order.
            pub async fn upload_rows(
                &self,
                id: i64,
                offset: i64,
                limit: i64,
            ) -> Result<Vec<DataRow>> {
                let rows: Vec<DataRowRecord> = sqlx::query_as(
                    "SELECT text, labels FROM upload_rows WHERE upload_id = $1 \
                     AND position >= $2 ORDER BY position LIMIT $3",
                )
                .bind(id)
                .bind(offset)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.into_iter().map(DataRow::from).collect())
            }

            // ------------------------------------------------------------ jobs

            /// Queues a job unless its tenant has `max_active` jobs queued or running already
            /// ([`Error::LimitReached`]).
            pub async fn create_job(&self, job: &NewJob, max_active: i64) -> Result<JobInfo> {
                let mut tx = self.pool.begin_with($begin).await?;
                let active: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM jobs WHERE tenant_id = $1 \
                     AND state IN ('queued', 'running')",
                )
                .bind(job.tenant_id)
                .fetch_one(&mut *tx)
                .await?;
                if active >= max_active {
                    return Err(Error::LimitReached(format!(
                        "the plan allows {max_active} jobs queued or running at once and \
                         {active} are; wait for one to finish or cancel one"
                    )));
                }
                sqlx::query(
                    "INSERT INTO jobs (id, tenant_id, kind, state, upload_id, model, settings, \
                     progress, created_at) VALUES ($1, $2, $3, 'queued', $4, $5, $6, '{}', $7)",
                )
                .bind(&job.id)
                .bind(job.tenant_id)
                .bind(job.kind.as_str())
                .bind(job.upload_id)
                .bind(&job.model)
                .bind(&job.settings)
                .bind(job.now)
                .execute(&mut *tx)
                .await?;
                Self::append_event(&mut tx, &job.id, job.now, r#"{"state":"queued"}"#).await?;
                tx.commit().await?;
                self.get_job(&job.id)
                    .await?
                    .ok_or_else(|| Error::NotFound(format!("job {:?}", job.id)))
            }

            async fn append_event(
                tx: &mut sqlx::Transaction<'static, $db>,
                id: &str,
                now: i64,
                data: &str,
            ) -> Result<()> {
                sqlx::query(
                    "INSERT INTO job_events (job_id, seq, at, data) VALUES ($1, \
                     (SELECT COALESCE(MAX(seq), 0) + 1 FROM job_events WHERE job_id = $1), $2, $3)",
                )
                .bind(id)
                .bind(now)
                .bind(data)
                .execute(&mut **tx)
                .await?;
                Ok(())
            }

            /// A job, whoever owns it.
            pub async fn get_job(&self, id: &str) -> Result<Option<JobInfo>> {
                let record: Option<JobRecord> =
                    sqlx::query_as(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1"))
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await?;
                record.map(JobInfo::try_from).transpose()
            }

            /// `tenant_id`'s jobs (every tenant's for `None`) of `kind` (both for `None`),
            /// newest first, at most `limit`.
            pub async fn list_jobs(
                &self,
                tenant_id: Option<i64>,
                kind: Option<JobKind>,
                limit: i64,
            ) -> Result<Vec<JobInfo>> {
                let records: Vec<JobRecord> = sqlx::query_as(&format!(
                    "SELECT {JOB_COLUMNS} FROM jobs WHERE ($1 IS NULL OR tenant_id = $1) \
                     AND ($2 IS NULL OR kind = $2) ORDER BY created_at DESC, id DESC LIMIT $3"
                ))
                .bind(tenant_id)
                .bind(kind.map(JobKind::as_str))
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
                records.into_iter().map(JobInfo::try_from).collect()
            }

            /// Claims the oldest job that is queued or whose worker's lease expired, for
            /// `holder` until `now + ttl`; `None` when there is none.
            pub async fn claim_job(&self, holder: &str, now: i64, ttl: i64) -> Result<Option<JobInfo>> {
                let mut tx = self.pool.begin_with($begin).await?;
                // The state is checked again by the UPDATE itself: of two replicas that picked
                // the same job, the second finds it taken once the first's commit releases the
                // row.
                let claimed: Option<String> = sqlx::query_scalar(
                    "UPDATE jobs SET state = 'running', lease_holder = $1, lease_expires = $2, \
                     attempts = attempts + 1, started_at = COALESCE(started_at, $3) \
                     WHERE id = (SELECT id FROM jobs WHERE state = 'queued' \
                                   OR (state = 'running' AND lease_expires < $3) \
                                 ORDER BY created_at, id LIMIT 1) \
                     AND (state = 'queued' OR (state = 'running' AND lease_expires < $3)) \
                     RETURNING id",
                )
                .bind(holder)
                .bind(now + ttl)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?;
                if let Some(id) = &claimed {
                    Self::append_event(&mut tx, id, now, r#"{"state":"running"}"#).await?;
                }
                tx.commit().await?;
                match claimed {
                    Some(id) => self.get_job(&id).await,
                    None => Ok(None),
                }
            }

            /// Extends `holder`'s lease on a running job to `now + ttl` and records its
            /// progress and `events`; `false` when the job is no longer `holder`'s to
            /// run (cancelled, or its lease expired and another worker took it).
            pub async fn renew_job(
                &self,
                id: &str,
                holder: &str,
                now: i64,
                ttl: i64,
                progress: Option<&str>,
                events: &[String],
            ) -> Result<bool> {
                let mut tx = self.pool.begin_with($begin).await?;
                let done = sqlx::query(
                    "UPDATE jobs SET lease_expires = $3, progress = COALESCE($4, progress) \
                     WHERE id = $1 AND lease_holder = $2 AND state = 'running'",
                )
                .bind(id)
                .bind(holder)
                .bind(now + ttl)
                .bind(progress)
                .execute(&mut *tx)
                .await?;
                let held = done.rows_affected() == 1;
                if held {
                    for data in events {
                        Self::append_event(&mut tx, id, now, data).await?;
                    }
                }
                tx.commit().await?;
                Ok(held)
            }

            /// A job's events after `after`, in order.
            pub async fn job_events(&self, id: &str, after: i64) -> Result<Vec<JobEvent>> {
                Ok(sqlx::query_as(
                    "SELECT seq, at, data FROM job_events WHERE job_id = $1 AND seq > $2 \
                     ORDER BY seq",
                )
                .bind(id)
                .bind(after)
                .fetch_all(&self.pool)
                .await?)
            }

            /// Marks `holder`'s running job failed; `false` if it was not `holder`'s.
            pub async fn fail_job(&self, id: &str, holder: &str, error: &str, now: i64) -> Result<bool> {
                let mut tx = self.pool.begin_with($begin).await?;
                let done = sqlx::query(
                    "UPDATE jobs SET state = 'failed', error = $3, finished_at = $4, \
                     lease_holder = NULL, lease_expires = NULL \
                     WHERE id = $1 AND lease_holder = $2 AND state = 'running'",
                )
                .bind(id)
                .bind(holder)
                .bind(error)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                let held = done.rows_affected() == 1;
                if held {
                    let data = serde_json::json!({"state": "failed", "error": error}).to_string();
                    Self::append_event(&mut tx, id, now, &data).await?;
                }
                tx.commit().await?;
                Ok(held)
            }

            /// Cancels a job that is queued or running (its worker stops at its next lease
            /// renewal); returns the job as it now stands, `None` for an unknown id.
            pub async fn cancel_job(&self, id: &str, now: i64) -> Result<Option<JobInfo>> {
                let mut tx = self.pool.begin_with($begin).await?;
                let done = sqlx::query(
                    "UPDATE jobs SET state = 'cancelled', finished_at = $2, lease_holder = NULL, \
                     lease_expires = NULL WHERE id = $1 AND state IN ('queued', 'running')",
                )
                .bind(id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() == 1 {
                    Self::append_event(&mut tx, id, now, r#"{"state":"cancelled"}"#).await?;
                }
                tx.commit().await?;
                self.get_job(id).await
            }

            /// Commits what a training job produced in one transaction, if `holder` still runs
            /// it: the next version of the job's model (created owned by the tenant and granted
            /// to it; a model of another owner is refused), its base data and (at the model's
            /// first version) its holdout, the report, the metered training time and the job's
            /// success. Returns the version, or `None` when the job was not `holder`'s any more
            /// (nothing written).
            pub async fn finish_training(
                &self,
                id: &str,
                holder: &str,
                trained: &TrainedModel<'_>,
                now: i64,
            ) -> Result<Option<i64>> {
                let mut tx = self.pool.begin_with($begin).await?;
                let job: Option<(i64, String)> = sqlx::query_as(
                    "SELECT tenant_id, model FROM jobs WHERE id = $1 AND lease_holder = $2 \
                     AND state = 'running'",
                )
                .bind(id)
                .bind(holder)
                .fetch_optional(&mut *tx)
                .await?;
                let Some((tenant_id, model)) = job else {
                    return Ok(None);
                };
                let owner: Option<Option<i64>> =
                    sqlx::query_scalar("SELECT owner_tenant FROM models WHERE name = $1")
                        .bind(&model)
                        .fetch_optional(&mut *tx)
                        .await?;
                if matches!(owner, Some(o) if o != Some(tenant_id)) {
                    return Err(Error::AlreadyExists(format!("model {model:?}")));
                }
                // A later version keeps the holdout frozen at the first.
                let frozen: Option<Option<i64>> =
                    sqlx::query_scalar("SELECT holdout_dataset FROM models WHERE name = $1")
                        .bind(&model)
                        .fetch_optional(&mut *tx)
                        .await?;
                let holdout = match frozen.flatten() {
                    Some(_) => None,
                    None => Some(trained.holdout),
                };
                let digest = to_hex(&sha256(trained.bytes));
                let version = insert_model_with_data(
                    &mut tx,
                    &model,
                    trained.bytes,
                    &digest,
                    now,
                    Some(trained.base),
                    holdout,
                )
                .await?;
                sqlx::query("UPDATE models SET owner_tenant = $2 WHERE name = $1")
                    .bind(&model)
                    .bind(tenant_id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "INSERT INTO model_grants (tenant_id, model, created_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (tenant_id, model) DO NOTHING",
                )
                .bind(tenant_id)
                .bind(&model)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "INSERT INTO job_reports (job_id, html) VALUES ($1, $2) \
                     ON CONFLICT (job_id) DO UPDATE SET html = excluded.html",
                )
                .bind(id)
                .bind(trained.report_html)
                .execute(&mut *tx)
                .await?;
                let mut usage = trained.usage.clone();
                usage.version = version;
                insert_event(&mut tx, &usage).await?;
                let mut result = trained.result.clone();
                if let Some(map) = result.as_object_mut() {
                    map.insert("version".into(), version.into());
                }
                let result = result.to_string();
                sqlx::query(
                    "UPDATE jobs SET state = 'succeeded', result = $2, finished_at = $3, \
                     lease_holder = NULL, lease_expires = NULL WHERE id = $1",
                )
                .bind(id)
                .bind(&result)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                let data = format!(r#"{{"state":"succeeded","result":{result}}}"#);
                Self::append_event(&mut tx, id, now, &data).await?;
                tx.commit().await?;
                Ok(Some(version))
            }

            /// The report of a succeeded training job.
            pub async fn job_report(&self, id: &str) -> Result<Option<String>> {
                Ok(sqlx::query_scalar("SELECT html FROM job_reports WHERE job_id = $1")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            /// The tenant that owns model `name` (`None`: the operator's, or no such model).
            pub async fn model_owner(&self, name: &str) -> Result<Option<i64>> {
                let owner: Option<Option<i64>> =
                    sqlx::query_scalar("SELECT owner_tenant FROM models WHERE name = $1")
                        .bind(name)
                        .fetch_optional(&self.pool)
                        .await?;
                Ok(owner.flatten())
            }

            /// Whether model `name` exists.
            pub async fn model_exists(&self, name: &str) -> Result<bool> {
                let found: Option<i64> =
                    sqlx::query_scalar("SELECT latest_version FROM models WHERE name = $1")
                        .bind(name)
                        .fetch_optional(&self.pool)
                        .await?;
                Ok(found.is_some())
            }

            /// Seconds of training metered to `tenant` from `since` (Unix seconds) on.
            pub async fn training_seconds_since(&self, tenant: &str, since: i64) -> Result<i64> {
                let used: Option<i64> = sqlx::query_scalar(
                    "SELECT CAST(SUM(training_seconds) AS BIGINT) FROM usage_events \
                     WHERE tenant = $1 AND at >= $2",
                )
                .bind(tenant)
                .bind(since)
                .fetch_one(&self.pool)
                .await?;
                Ok(used.unwrap_or(0))
            }

            // ------------------------------------------------------------ batches

            /// Commits a chunk of a batch job's results with its usage event and progress, if
            /// `holder` still runs the job and the chunk starts where the stored results end;
            /// `false` (nothing written) otherwise.
            pub async fn commit_batch_chunk(
                &self,
                id: &str,
                holder: &str,
                chunk: &BatchChunk<'_>,
                now: i64,
            ) -> Result<bool> {
                let mut tx = self.pool.begin_with($begin).await?;
                let held: Option<i64> = sqlx::query_scalar(
                    "SELECT attempts FROM jobs WHERE id = $1 AND lease_holder = $2 \
                     AND state = 'running'",
                )
                .bind(id)
                .bind(holder)
                .fetch_optional(&mut *tx)
                .await?;
                let stored: i64 =
                    sqlx::query_scalar("SELECT COUNT(*) FROM batch_results WHERE job_id = $1")
                        .bind(id)
                        .fetch_one(&mut *tx)
                        .await?;
                if held.is_none() || stored != chunk.start {
                    return Ok(false);
                }
                for (c, part) in chunk.outputs.chunks(INSERT_CHUNK).enumerate() {
                    let mut q = sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO batch_results (job_id, position, output) ",
                    );
                    q.push_values(part.iter().enumerate(), |mut b, (i, out)| {
                        b.push_bind(id.to_string())
                            .push_bind(chunk.start + (c * INSERT_CHUNK + i) as i64)
                            .push_bind(out.clone());
                    });
                    q.build().execute(&mut *tx).await?;
                }
                insert_event(&mut tx, chunk.usage).await?;
                sqlx::query("UPDATE jobs SET progress = $2 WHERE id = $1")
                    .bind(id)
                    .bind(chunk.progress)
                    .execute(&mut *tx)
                    .await?;
                Self::append_event(&mut tx, id, now, chunk.progress).await?;
                tx.commit().await?;
                Ok(true)
            }

            /// Results a batch job has stored.
            pub async fn count_batch_results(&self, id: &str) -> Result<i64> {
                Ok(
                    sqlx::query_scalar("SELECT COUNT(*) FROM batch_results WHERE job_id = $1")
                        .bind(id)
                        .fetch_one(&self.pool)
                        .await?,
                )
            }

            /// At most `limit` results of a batch job from position `offset`, in order.
            pub async fn batch_results(
                &self,
                id: &str,
                offset: i64,
                limit: i64,
            ) -> Result<Vec<(i64, String)>> {
                Ok(sqlx::query_as(
                    "SELECT position, output FROM batch_results WHERE job_id = $1 \
                     AND position >= $2 ORDER BY position LIMIT $3",
                )
                .bind(id)
                .bind(offset)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?)
            }

            /// Marks `holder`'s running job succeeded with `result`; `false` if it was not
            /// `holder`'s.
            pub async fn succeed_job(
                &self,
                id: &str,
                holder: &str,
                result: &str,
                now: i64,
            ) -> Result<bool> {
                let mut tx = self.pool.begin_with($begin).await?;
                let done = sqlx::query(
                    "UPDATE jobs SET state = 'succeeded', result = $3, finished_at = $4, \
                     lease_holder = NULL, lease_expires = NULL \
                     WHERE id = $1 AND lease_holder = $2 AND state = 'running'",
                )
                .bind(id)
                .bind(holder)
                .bind(result)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                let held = done.rows_affected() == 1;
                if held {
                    let data = format!(r#"{{"state":"succeeded","result":{result}}}"#);
                    Self::append_event(&mut tx, id, now, &data).await?;
                }
                tx.commit().await?;
                Ok(held)
            }
        }
    };
}
pub(crate) use jobs_ops;
