//! Tenants' datasets: an upload is parsed as it streams in (the readers of `flywheel-data` on a
//! blocking thread, fed chunk by chunk from the request body), its texts redacted as feedback's
//! are, and its rows written to the store in chunks as `staging`; only a complete, valid upload
//! becomes visible, with its version. A refused upload (a bad row with its line, no label
//! column, bytes that are not UTF-8, an empty file, over the plan's size) leaves nothing
//! behind, and its body is still read to the end (up to the plan's size) so that a client that
//! writes the whole body before it reads gets the JSON error rather than a reset connection.

use std::collections::BTreeMap;
use std::io::Read;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::StatusCode;
use flywheel_data::{for_each_record, DataError, Format, ReadOptions};
use flywheel_store::{DataRow, PlanQuotas, Store, UploadInfo};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::access::{now_unix, store_unavailable, Caller};
use crate::error::ApiError;
use crate::state::AppState;

/// Rows written to the store per transaction while an upload streams in.
const ROWS_PER_CHUNK: usize = 2_000;
/// Rows shown in a dataset's preview.
const SAMPLE_ROWS: usize = 5;
/// Distinct labels counted in a summary (a column of free text is not a label column).
const MAX_LABELS: usize = 10_000;
/// Texts read to tell CJK text from space-delimited text.
const LANGUAGE_SAMPLE: usize = 2_000;
/// How long the rest of a refused upload's body is read (and thrown away).
const DRAIN_TIME: Duration = Duration::from_secs(30);

/// The tenant an upload or job belongs to, from its API key.
#[derive(Debug, Clone)]
pub(crate) struct Owner {
    /// Tenant id.
    pub tenant_id: i64,
    /// Tenant name.
    pub tenant: String,
    /// Prefix of the key that asked (usage events name it).
    pub key_prefix: String,
    /// The key's plan.
    pub plan: String,
}

impl Owner {
    /// The tenant a request acts for: its API key's (the admin token and an open server act
    /// for no tenant: 403).
    pub(crate) fn of(caller: &Caller) -> Result<Owner, ApiError> {
        match caller {
            Caller::Key(key) => Ok(Owner {
                tenant_id: key.tenant_id,
                tenant: key.tenant.clone(),
                key_prefix: key.prefix.clone(),
                plan: key.plan.clone(),
            }),
            _ => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "tenant_required",
                "datasets, training jobs and batches belong to a tenant: call with the \
                 tenant's API key",
            )),
        }
    }
}

/// How to read an upload.
#[derive(Debug, Clone)]
pub(crate) struct UploadRequest {
    /// The dataset's name (a new version when it exists).
    pub name: String,
    /// The file format.
    pub format: Format,
    /// The readers' column names.
    pub options: ReadOptions,
    /// Whether rows need a label (training data) or are texts to classify (batches).
    pub labelled: bool,
    /// The body's declared length, if any.
    pub declared_len: Option<u64>,
}

/// What streams from the request body to the parser.
enum Piece {
    Bytes(Bytes),
    End,
}

/// The request body as a blocking [`Read`] for the parser: an `io::Error` when the body ended
/// without [`Piece::End`] (the upload was cut short or refused).
struct PieceReader {
    rx: tokio::sync::mpsc::Receiver<Piece>,
    current: Bytes,
    ended: bool,
}

impl Read for PieceReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            if self.ended {
                return Ok(0);
            }
            match self.rx.blocking_recv() {
                Some(Piece::Bytes(b)) => self.current = b,
                Some(Piece::End) => self.ended = true,
                None => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the upload stopped before its end",
                    ))
                }
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        let _ = self.current.split_to(n);
        Ok(n)
    }
}

/// What the parser learnt about the rows.
#[derive(Debug, Default)]
struct Summary {
    rows: u64,
    labels: BTreeMap<String, u64>,
    labels_truncated: bool,
    multi_label_rows: u64,
    characters: u64,
    sample: Vec<Value>,
    language_texts: Vec<String>,
}

impl Summary {
    fn observe(&mut self, text: &str, labels: &[String]) {
        self.rows += 1;
        self.characters += text.chars().count() as u64;
        if labels.len() > 1 {
            self.multi_label_rows += 1;
        }
        for l in labels {
            if let Some(n) = self.labels.get_mut(l) {
                *n += 1;
            } else if self.labels.len() < MAX_LABELS {
                self.labels.insert(l.clone(), 1);
            } else {
                self.labels_truncated = true;
            }
        }
        if self.sample.len() < SAMPLE_ROWS {
            self.sample.push(json!({"text": text, "labels": labels}));
        }
        if self.language_texts.len() < LANGUAGE_SAMPLE {
            self.language_texts.push(text.chars().take(500).collect());
        }
    }

    /// The task the labels suggest (as `flywheel train` would infer it).
    fn task(&self, labelled: bool) -> &'static str {
        if !labelled {
            "none (texts to classify)"
        } else if self.multi_label_rows > 0 || self.labels.keys().any(|l| l.contains('|')) {
            "multilabel"
        } else if self.labels.len() > 20 && self.labels.keys().all(|l| l.parse::<f64>().is_ok()) {
            "regression"
        } else if self.labels.len() == 2 {
            "binary"
        } else if self.labels.len() > 2 {
            "multiclass"
        } else {
            "one label only (training needs at least two)"
        }
    }

    fn to_json(&self, labelled: bool) -> Value {
        let cjk = flywheel_text::segment::cjk_share(&self.language_texts) >= 0.2;
        json!({
            "labelled": labelled,
            "rows": self.rows,
            "characters": self.characters,
            "task": self.task(labelled),
            "language": if cjk { "cjk" } else { "space-delimited" },
            "label_counts": self.labels,
            "labels_truncated": self.labels_truncated,
            "sample": self.sample,
        })
    }
}

/// Why an upload was refused.
fn invalid_data(e: &DataError) -> ApiError {
    let line = match e {
        DataError::MissingColumn { line, .. }
        | DataError::InvalidUtf8 { line, .. }
        | DataError::EmptyLabel { line, .. }
        | DataError::FieldCount { line, .. }
        | DataError::Malformed { line, .. }
        | DataError::Json { line, .. }
        | DataError::NotObject { line, .. }
        | DataError::MissingKey { line, .. }
        | DataError::BadValue { line, .. }
        | DataError::Stopped { line, .. }
        | DataError::NoFastTextLabel { line, .. } => Some(*line),
        _ => None,
    };
    let kind = match e {
        DataError::InvalidUtf8 { .. } => "invalid_encoding",
        DataError::MissingColumn { .. } | DataError::MissingKey { .. } => "missing_column",
        _ => "invalid_data",
    };
    let err = ApiError::unprocessable(kind, e.to_string());
    match line {
        Some(line) if line > 0 => err.line(line),
        _ => err,
    }
}

fn too_large(limit: i64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("the upload is larger than the plan's {limit} bytes; split the file or ask for a larger plan"),
    )
}

/// Reads what is left of a refused upload's body (up to `limit` bytes, for at most
/// [`DRAIN_TIME`]) so that the client can read the answer.
async fn drain(body: Body, limit: u64) {
    crate::wire::discard_body(body, limit, DRAIN_TIME).await;
}

/// The plan's limits of `owner`, or 503.
pub(crate) async fn quotas(store: &Store, owner: &Owner) -> Result<PlanQuotas, ApiError> {
    store
        .plan_quotas(&owner.plan)
        .await
        .map_err(|e| store_unavailable(&e))
}

/// Stores an upload as the next version of its name: 201 with the dataset, or a 4xx/5xx error
/// and nothing stored.
pub(crate) async fn upload(
    state: &AppState,
    store: &Store,
    owner: &Owner,
    req: UploadRequest,
    mut body: Body,
) -> Result<UploadInfo, ApiError> {
    let quotas = quotas(store, owner).await?;
    let limit = quotas.max_upload_bytes.max(0) as u64;
    if req.declared_len.is_some_and(|n| n > limit) {
        drain(body, limit.saturating_mul(4)).await;
        return Err(too_large(quotas.max_upload_bytes));
    }
    let kept = store
        .count_uploads(owner.tenant_id)
        .await
        .map_err(|e| store_unavailable(&e))?;
    if kept >= quotas.max_datasets {
        drain(body, limit).await;
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "limit_reached",
            format!(
                "the plan keeps at most {} datasets and {kept} are stored; delete one first",
                quotas.max_datasets
            ),
        ));
    }
    let upload_id = match store
        .begin_upload(owner.tenant_id, &req.name, req.format.name(), now_unix())
        .await
    {
        Ok(id) => id,
        Err(flywheel_store::Error::Invalid(m)) => {
            drain(body, limit).await;
            return Err(ApiError::invalid(m).param("name"));
        }
        Err(e) => return Err(store_unavailable(&e)),
    };
    let outcome = stream_rows(state, store, upload_id, &req, &mut body, limit).await;
    let finished = match outcome {
        Ok((summary, ..)) if summary.rows == 0 => Err(ApiError::unprocessable(
            "empty",
            format!(
                "{}: the upload has no rows{}; send a file with at least one example",
                req.name,
                match req.format {
                    Format::Csv | Format::Tsv => " after the header row",
                    _ => "",
                }
            ),
        )),
        other => other,
    };
    match finished {
        Ok((summary, size, digest)) => {
            let summary_json = summary.to_json(req.labelled).to_string();
            match store
                .finish_upload(
                    upload_id,
                    summary.rows as i64,
                    size as i64,
                    &digest,
                    &summary_json,
                )
                .await
            {
                Ok(info) => Ok(info),
                Err(e) => {
                    let _ = store.discard_upload(upload_id).await;
                    Err(store_unavailable(&e))
                }
            }
        }
        Err(e) => {
            drain(body, limit).await;
            if let Err(d) = store.discard_upload(upload_id).await {
                tracing::warn!(error = %d, upload_id, "a refused upload's rows stay until the sweep");
            }
            Err(e)
        }
    }
}

/// Feeds the body to the parser and the parsed rows to the store; returns the summary, the
/// bytes read and their SHA-256.
async fn stream_rows(
    state: &AppState,
    store: &Store,
    upload_id: i64,
    req: &UploadRequest,
    body: &mut Body,
    limit: u64,
) -> Result<(Summary, u64, String), ApiError> {
    let (byte_tx, byte_rx) = tokio::sync::mpsc::channel::<Piece>(16);
    let (row_tx, mut row_rx) = tokio::sync::mpsc::channel::<Vec<DataRow>>(2);
    let redact = state.redact;
    let (format, options, labelled, source) = (
        req.format,
        req.options.clone(),
        req.labelled,
        req.name.clone(),
    );
    let parser = tokio::task::spawn_blocking(move || {
        let reader = PieceReader {
            rx: byte_rx,
            current: Bytes::new(),
            ended: false,
        };
        let mut summary = Summary::default();
        let mut chunk = Vec::with_capacity(ROWS_PER_CHUNK);
        let result = for_each_record(reader, format, &source, &options, labelled, &mut |r| {
            let text = if redact {
                flywheel_text::redact::redact(&r.text).0
            } else {
                r.text
            };
            summary.observe(&text, &r.labels);
            chunk.push(DataRow {
                text,
                labels: r.labels,
            });
            if chunk.len() == ROWS_PER_CHUNK {
                let full = std::mem::replace(&mut chunk, Vec::with_capacity(ROWS_PER_CHUNK));
                if row_tx.blocking_send(full).is_err() {
                    return Err(DataError::Stopped {
                        path: source.clone().into(),
                        line: r.line,
                        message: "the store stopped taking rows".into(),
                    });
                }
            }
            Ok(())
        });
        if result.is_ok() && !chunk.is_empty() && row_tx.blocking_send(chunk).is_err() {
            return (summary, Err(None));
        }
        (summary, result.map(|_| ()).map_err(Some))
    });
    // The feed owns the parser's sender: when it ends (the body read, or refused), the parser
    // sees the end, or an error if the body did not reach its end.
    let feed = async move {
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        loop {
            match body.frame().await {
                None => break,
                Some(Err(e)) => {
                    return Err(ApiError::invalid(format!("cannot read the upload: {e}")));
                }
                Some(Ok(frame)) => {
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    size += data.len() as u64;
                    if size > limit {
                        return Err(too_large(limit as i64));
                    }
                    hasher.update(&data);
                    if byte_tx.send(Piece::Bytes(data)).await.is_err() {
                        // The parser stopped (a bad row): its error is the answer.
                        return Ok((size, String::new()));
                    }
                }
            }
        }
        let _ = byte_tx.send(Piece::End).await;
        Ok((size, hex::encode(hasher.finalize())))
    };
    let insert = async move {
        let mut position = 0i64;
        while let Some(rows) = row_rx.recv().await {
            store
                .append_upload_rows(upload_id, position, &rows)
                .await
                .map_err(|e| store_unavailable(&e))?;
            position += rows.len() as i64;
        }
        Ok::<i64, ApiError>(position)
    };
    let (fed, inserted) = tokio::join!(feed, insert);
    let (summary, parsed) = parser
        .await
        .map_err(|e| ApiError::internal(format!("the upload's parser failed: {e}")))?;
    // The parser's own error names the line; it comes first.
    match parsed {
        Err(Some(e)) if !matches!(e, DataError::Stopped { .. } | DataError::Io { .. }) => {
            return Err(invalid_data(&e))
        }
        _ => {}
    }
    let (size, digest) = fed?;
    inserted?;
    match parsed {
        Ok(()) => Ok((summary, size, digest)),
        Err(Some(e)) => Err(invalid_data(&e)),
        Err(None) => Err(ApiError::internal("the upload's rows could not be stored")),
    }
}

/// A dataset as the API answers it.
pub(crate) fn dataset_json(info: &UploadInfo) -> Value {
    let summary: Value = serde_json::from_str(&info.summary).unwrap_or(Value::Null);
    json!({
        "id": info.id,
        "object": "dataset",
        "name": info.name,
        "version": info.version,
        "format": info.format,
        "rows": info.row_count,
        "bytes": info.size_bytes,
        "sha256": info.sha256,
        "created_at": info.created_at,
        "preview": summary,
    })
}

/// Tenant `owner`'s dataset `id`: 404 when it does not exist or is another tenant's (the two
/// are not told apart).
pub(crate) async fn owned(store: &Store, owner: &Owner, id: i64) -> Result<UploadInfo, ApiError> {
    match store.get_upload(id).await {
        Ok(Some(info)) if info.tenant_id == owner.tenant_id => Ok(info),
        Ok(_) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "dataset_not_found",
            format!("no dataset {id}; GET /v1/datasets lists yours"),
        )
        .param("dataset")),
        Err(e) => Err(store_unavailable(&e)),
    }
}
