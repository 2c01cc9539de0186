//! The label audit inside the loop: suspect rows become "is this label right?" items in a
//! model's review queue (`flywheel audit --push-review`, the dashboard's audit page), and a
//! registered model's base data is audited with the champion's tokenizer settings.

use flywheel_data::Record;
use flywheel_model::{audit, families, Audit, AuditOptions, Family};
use flywheel_store::{Alias, NewPrediction, Store};
use sha2::{Digest, Sha256};

use crate::retrain::RetrainError;

/// The review items of an audit's suspects for `model` (version `version`, owned by
/// `tenant`, `""` for the operator): `label` is the suggested label, `given_label` the data's,
/// `uncertainty` one minus the given label's out-of-fold probability. An item's id is a hash
/// of its text and given label, so pushing the same audit twice adds nothing.
pub fn audit_items(
    audit: &Audit,
    model: &str,
    version: i64,
    tenant: &str,
    redact: bool,
    now: i64,
) -> Vec<NewPrediction> {
    audit
        .suspects
        .iter()
        .map(|s| {
            let mut h = Sha256::new();
            h.update(s.text.as_bytes());
            h.update([0x1f]);
            h.update(s.given.as_bytes());
            let digest = h.finalize();
            let id: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
            NewPrediction {
                tenant: tenant.to_string(),
                model: model.to_string(),
                version,
                request_id: format!("audit-{id}"),
                index: 0,
                text: if redact {
                    flywheel_text::redact::redact(&s.text).0
                } else {
                    s.text.clone()
                },
                label: s.suggested.clone(),
                score: f64::from(s.suggested_probability),
                uncertainty: Some(f64::from(1.0 - s.given_probability).clamp(0.0, 1.0)),
                created_at: now,
                given_label: Some(s.given.clone()),
            }
        })
        .collect()
}

/// Puts an audit's suspects into `model`'s review queue (see [`audit_items`]), attributed to
/// its champion; returns how many were new.
pub async fn push_audit(
    store: &Store,
    model: &str,
    tenant: &str,
    audit: &Audit,
    redact: bool,
    now: i64,
) -> Result<u64, RetrainError> {
    let version = store
        .resolve_alias(model, Alias::Champion)
        .await?
        .ok_or_else(|| {
            RetrainError::Missing(format!(
                "model {model:?} has no champion: push and promote a version first"
            ))
        })?;
    let items = audit_items(audit, model, version, tenant, redact, now);
    Ok(store.log_predictions(&items).await?)
}

/// Audits the base data kept with `model`'s champion: out-of-fold probabilities of the
/// `linear` family's defaults (TF-IDF + logistic regression) on 5 stratified folds (seed 42), on
/// `threads` threads.
pub async fn audit_base_data(
    store: &Store,
    model: &str,
    threads: usize,
) -> Result<Audit, RetrainError> {
    let version = store
        .resolve_alias(model, Alias::Champion)
        .await?
        .ok_or_else(|| RetrainError::Missing(format!("model {model:?} has no champion")))?;
    let base = store.base_dataset(model, version).await?.ok_or_else(|| {
        RetrainError::Missing(format!(
            "version {version} of {model:?} has no base data: push it with \
             `flywheel models push MODEL --name {model} --data TRAIN`"
        ))
    })?;
    let rows = store.dataset_rows(base.id).await?;
    let records: Vec<Record> = rows
        .into_iter()
        .enumerate()
        .map(|(i, r)| Record {
            text: r.text,
            labels: r.labels,
            line: i as u64 + 2,
        })
        .collect();
    let source = format!("{model} v{version} base data");
    let opts = AuditOptions {
        spec: families::of(Family::Linear).default_spec(),
        cfg: families::of(Family::Linear).default_config(),
        folds: 5,
        fold_of: None,
    };
    tokio::task::spawn_blocking(move || {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads.max(1))
            .build()
            .map_err(|e| RetrainError::Task(e.to_string()))?;
        pool.install(|| audit(&records, &source, None, "|", &opts, &mut |_| {}))
            .map_err(RetrainError::from)
    })
    .await
    .map_err(|e| RetrainError::Task(e.to_string()))?
}
