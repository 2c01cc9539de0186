//! Who may call what, held in memory: [`AccessSnapshot`] answers what [`crate::Store::authenticate`],
//! [`crate::Store::can_use`] and [`crate::Store::usable_models`] answer, without a query. A
//! server loads one with [`crate::Store::access_snapshot`] and loads a new one when
//! [`crate::Store::access_epoch`] moves (every change to keys, plans, tenants, grants or a
//! model's visibility bumps it, by trigger).

use std::collections::{BTreeSet, HashMap};

use subtle::ConstantTimeEq;

use crate::types::{KeyInfo, PlanLimits};
use crate::util::sha256;
use crate::{KEY_PREFIX_LEN, KEY_SCHEME};

/// One key as the snapshot holds it: its digest, owner and whether it was revoked.
#[derive(Debug, Clone)]
pub(crate) struct HeldKey {
    pub sha256: [u8; 32],
    pub info: KeyInfo,
    pub revoked: bool,
}

/// What the snapshot knows of a presented key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyLookup<'a> {
    /// A valid key and its owner.
    Valid(&'a KeyInfo),
    /// Not a key, or a revoked one: refuse it.
    Invalid,
    /// Well formed but not in the snapshot: created after it was taken, or unknown. Ask the
    /// database ([`crate::Store::authenticate`]).
    Unknown,
}

/// Keys, plans, grants and public models as of one [`crate::Store::access_epoch`].
#[derive(Debug, Clone, Default)]
pub struct AccessSnapshot {
    pub(crate) epoch: i64,
    /// Keys by prefix (several keys may share one).
    pub(crate) keys: HashMap<String, Vec<HeldKey>>,
    pub(crate) plans: HashMap<String, PlanLimits>,
    /// Every model, with whether it is public.
    pub(crate) models: HashMap<String, bool>,
    /// Models granted to each tenant.
    pub(crate) grants: HashMap<String, BTreeSet<String>>,
}

impl AccessSnapshot {
    /// The epoch it was taken at (read before the tables: a change made while it was loaded
    /// moves the epoch past it, so the next poll loads again).
    pub fn epoch(&self) -> i64 {
        self.epoch
    }

    /// The owner of `key`, as [`crate::Store::authenticate`] would say: digests are compared in
    /// constant time; a revoked or malformed key is [`KeyLookup::Invalid`].
    pub fn authenticate(&self, key: &str) -> KeyLookup<'_> {
        if !key.starts_with(KEY_SCHEME)
            || key.len() < KEY_PREFIX_LEN
            || !key.is_char_boundary(KEY_PREFIX_LEN)
        {
            return KeyLookup::Invalid;
        }
        let Some(candidates) = self.keys.get(&key[..KEY_PREFIX_LEN]) else {
            return KeyLookup::Unknown;
        };
        let hash = sha256(key.as_bytes());
        let mut found = KeyLookup::Unknown;
        for k in candidates {
            let equal: bool = k.sha256.ct_eq(&hash).into();
            if equal {
                found = if k.revoked {
                    KeyLookup::Invalid
                } else {
                    KeyLookup::Valid(&k.info)
                };
            }
        }
        found
    }

    /// The limits of plan `plan`; `None` for an unknown plan.
    pub fn limits(&self, plan: &str) -> Option<PlanLimits> {
        self.plans.get(plan).copied()
    }

    /// Whether `tenant` may use `model`, as [`crate::Store::can_use`] would say.
    pub fn can_use(&self, tenant: &str, model: &str) -> bool {
        match self.models.get(model) {
            Some(true) => true,
            Some(false) => self.grants.get(tenant).is_some_and(|g| g.contains(model)),
            None => false,
        }
    }

    /// The models `tenant` may use, by name, as [`crate::Store::usable_models`] would say.
    pub fn usable_models(&self, tenant: &str) -> Vec<String> {
        let mut names: Vec<String> = self
            .models
            .keys()
            .filter(|m| self.can_use(tenant, m))
            .cloned()
            .collect();
        names.sort();
        names
    }
}
