//! The server retrains by itself: after `--retrain-after N` new feedback items and/or every
//! `--retrain-every DURATION` with new feedback, one job per model at a time across replicas (a
//! lease in the store, renewed while training; one retrain at a time per server), on its own
//! threads so serving keeps its cores.
//! A promotion is installed at once here and by the other replicas' registry pollers.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use flywheel_store::Store;

use crate::access::now_unix;
use crate::models::SlotSource;
use crate::retrain::{retrain, RetrainOptions};
use crate::state::AppState;

/// A lease lasts this long unless renewed (so a crashed replica blocks no one for long).
const LEASE_SECONDS: i64 = 60;

/// Why a model is due for a retrain now, if it is.
async fn due(
    state: &AppState,
    store: &Store,
    name: &str,
    started: i64,
) -> Result<Option<(&'static str, i64)>, flywheel_store::Error> {
    let decisions = store.decisions(name).await?;
    let (after_id, last_at) = decisions
        .last()
        .map(|d| (d.feedback_upto, d.at))
        .unwrap_or((0, started));
    let (n, upto) = store.count_feedback_since(name, after_id).await?;
    if n == 0 {
        return Ok(None);
    }
    let settings = &state.retrain;
    if settings.after.is_some_and(|a| n as u64 >= a) {
        return Ok(Some(("feedback", upto)));
    }
    if settings
        .every
        .is_some_and(|e| now_unix() - last_at >= e.as_secs() as i64)
    {
        return Ok(Some(("schedule", upto)));
    }
    Ok(None)
}

/// Starts the background retrainer; it runs until aborted.
pub(crate) fn spawn(state: Arc<AppState>, store: Store) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let holder = format!("{:032x}", rand::random::<u128>());
        let started = now_unix();
        // Models whose retrain could not run, with the feedback id it saw: retried only
        // when more feedback arrives.
        let mut stuck: BTreeMap<String, i64> = BTreeMap::new();
        let mut ticker = tokio::time::interval(state.registry_poll.max(Duration::from_millis(100)));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let names: Vec<String> = state
                .models
                .load()
                .values()
                .filter(|s| matches!(s.source, SlotSource::Registry))
                .map(|s| s.name.clone())
                .collect();
            for name in names {
                let (cause, upto) = match due(&state, &store, &name, started).await {
                    Ok(Some(d)) => d,
                    Ok(None) => continue,
                    Err(e) => {
                        tracing::warn!(model = %name, error = %e, "retrain check failed");
                        continue;
                    }
                };
                if stuck.get(&name) == Some(&upto) {
                    continue;
                }
                match store
                    .try_lease(&name, &holder, now_unix(), LEASE_SECONDS)
                    .await
                {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(e) => {
                        tracing::warn!(model = %name, error = %e, "retrain lease failed");
                        continue;
                    }
                }
                // Another replica may have finished this retrain just before the lease.
                if !matches!(due(&state, &store, &name, started).await, Ok(Some(_))) {
                    let _ = store.release_lease(&name, &holder).await;
                    continue;
                }
                let job = tokio::spawn(run_one(
                    Arc::clone(&state),
                    store.clone(),
                    name.clone(),
                    holder.clone(),
                    cause,
                ));
                let failed = match job.await {
                    Ok(ok) => !ok,
                    Err(e) => {
                        tracing::error!(model = %name, error = %e, "retrain task failed");
                        true
                    }
                };
                if failed {
                    stuck.insert(name.clone(), upto);
                } else {
                    stuck.remove(&name);
                }
            }
        }
    })
}

/// One retrain under the lease; `false` when it could not run (logged).
async fn run_one(
    state: Arc<AppState>,
    store: Store,
    name: String,
    holder: String,
    cause: &'static str,
) -> bool {
    let renew = {
        let store = store.clone();
        let (name, holder) = (name.clone(), holder.clone());
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(LEASE_SECONDS as u64 / 3));
            every.tick().await;
            loop {
                every.tick().await;
                if let Err(e) = store
                    .try_lease(&name, &holder, now_unix(), LEASE_SECONDS)
                    .await
                {
                    tracing::warn!(model = %name, error = %e, "retrain lease renewal failed");
                }
            }
        })
    };
    let opts = RetrainOptions {
        policy: state.retrain.policy,
        seed: None,
        threads: state.retrain.threads,
        cause: cause.to_string(),
    };
    tracing::info!(model = %name, cause, "retraining");
    let result = retrain(&store, &name, &opts).await;
    renew.abort();
    if let Err(e) = store.release_lease(&name, &holder).await {
        tracing::warn!(model = %name, error = %e, "retrain lease release failed");
    }
    match result {
        Ok(d) => {
            let outcome = if d.promoted {
                "promoted"
            } else if d.challenger_version.is_some() {
                "rejected"
            } else {
                "skipped"
            };
            state.metrics.retrain(&name, outcome);
            tracing::info!(model = %name, champion = d.champion_version,
                challenger = ?d.challenger_version, promoted = d.promoted, reason = %d.reason,
                "retrain decided");
            if d.promoted {
                if let Err(e) = crate::registry::sync(&state, &store).await {
                    tracing::warn!(error = %e, "registry sync after a promotion failed");
                }
            }
            true
        }
        Err(e) => {
            state.metrics.retrain(&name, "failed");
            tracing::error!(model = %name, error = %e, "retrain could not run");
            false
        }
    }
}
