//! The accounts side of a server on a store: keys, plans and grants held in memory
//! ([`AccessSnapshot`], reloaded when the store's access epoch moves) and the group-commit
//! [`MeterQueue`] that usage events go through.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use flywheel_store::{AccessSnapshot, KeyInfo, MeterQueue, PlanLimits, Store};

/// How often every replica checks the store's access epoch.
pub(crate) const ACCESS_POLL: Duration = Duration::from_millis(100);

/// Most requests metered by one commit.
const METER_MAX_BATCH: usize = 512;

/// Limits that match no plan: metering with them goes one request at a time, against the
/// database's plan (a key whose plan the snapshot does not know yet).
const UNKNOWN_LIMITS: PlanLimits = PlanLimits {
    requests_per_minute: -1,
    texts_per_month: -1,
};

/// The accounts side of a server on a store: the access snapshot and the metering queue.
pub(crate) struct Accounts {
    /// Keys, plans, grants and models as of the last poll.
    pub snapshot: ArcSwap<AccessSnapshot>,
    /// The group-commit queue usage events go through.
    pub meter: MeterQueue,
}

impl Accounts {
    /// Loads the snapshot and starts the metering queue (inside a tokio runtime).
    pub async fn open(store: &Store) -> Result<Accounts, flywheel_store::Error> {
        Ok(Accounts {
            snapshot: ArcSwap::from_pointee(store.access_snapshot().await?),
            meter: MeterQueue::start(store.clone(), METER_MAX_BATCH),
        })
    }

    /// Reloads the snapshot if the store's access epoch has moved (or always, with `force`).
    pub async fn refresh(&self, store: &Store, force: bool) -> Result<(), flywheel_store::Error> {
        if force || store.access_epoch().await? != self.snapshot.load().epoch() {
            self.snapshot
                .store(Arc::new(store.access_snapshot().await?));
        }
        Ok(())
    }

    /// The limits of `key`'s plan as the snapshot knows them.
    pub fn limits(&self, key: &KeyInfo) -> PlanLimits {
        self.snapshot
            .load()
            .limits(&key.plan)
            .unwrap_or(UNKNOWN_LIMITS)
    }
}
