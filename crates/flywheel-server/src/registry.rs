//! Serving from the store's registry: every model with a champion is served, and a poller
//! installs a new champion (promotion, rollback) or a newly registered model within one poll
//! interval, on every replica, without a restart.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use flywheel_store::{ModelArtifact, Store};

use crate::models::{LoadedModel, ModelSlot, SlotSource};
use crate::state::AppState;

/// What one sync did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct SyncReport {
    /// `(model, version)` installed (new models and new champions).
    pub installed: Vec<(String, i64)>,
    /// `(model, why)` that could not be installed; the old version (if any) keeps serving.
    pub failed: Vec<(String, String)>,
}

/// Brings the served models in line with the registry's champions.
pub(crate) async fn sync(
    state: &AppState,
    store: &Store,
) -> Result<SyncReport, flywheel_store::Error> {
    let _guard = state.sync_lock.lock().await;
    let mut report = SyncReport::default();
    for summary in store.list_models().await? {
        let Some(champion) = summary.champion else {
            continue;
        };
        let served = state.models.load().get(&summary.name).cloned();
        if let Some(slot) = &served {
            if slot.current.load().registry_version == Some(champion) {
                continue;
            }
        }
        let key = (summary.name.clone(), champion);
        if state.registry_failed.lock().is_ok_and(|f| f.contains(&key)) {
            // Already tried and found unusable: not retried (nor logged) on every poll.
            continue;
        }
        let stored: ModelArtifact = match store.get_version(&summary.name, champion).await {
            Ok(a) => a,
            Err(e) => {
                report.failed.push((summary.name.clone(), e.to_string()));
                continue;
            }
        };
        let loaded = tokio::task::spawn_blocking(move || LoadedModel::from_registry(&stored))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r);
        let loaded = match loaded {
            Ok(l) => l,
            Err(why) => {
                state.metrics.reload(&summary.name, "error");
                tracing::error!(model = %summary.name, version = champion, error = %why,
                    "cannot load the registry champion; the served version (if any) stays");
                if let Ok(mut failed) = state.registry_failed.lock() {
                    failed.insert(key);
                }
                report.failed.push((summary.name.clone(), why));
                continue;
            }
        };
        match served {
            Some(slot) => slot.install(loaded, &state.metrics),
            None => {
                let slot = Arc::new(state.batching.start_loaded(
                    &summary.name,
                    SlotSource::Registry,
                    loaded,
                ));
                tracing::info!(model = %summary.name, version = champion, "registry model added");
                state.models.rcu(|models| {
                    let mut next: BTreeMap<String, Arc<ModelSlot>> = (**models).clone();
                    next.insert(summary.name.clone(), Arc::clone(&slot));
                    next
                });
            }
        }
        report.installed.push((summary.name.clone(), champion));
    }
    Ok(report)
}

/// Polls the registry every `every` until the task is aborted; errors are logged and retried.
pub(crate) fn spawn_poller(
    state: Arc<AppState>,
    store: Store,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            if let Err(e) = sync(&state, &store).await {
                tracing::warn!(error = %e, "registry poll failed; retrying");
            }
        }
    })
}
