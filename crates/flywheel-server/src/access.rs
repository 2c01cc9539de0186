//! Who is calling and what they may do, when the server runs on a store: API keys (401),
//! per-tenant model access (403), plan limits (429 with `x-ratelimit-*` headers, also sent on
//! success) and usage metering committed before the response.
//!
//! Keys, plans and grants are answered from the in-memory snapshot of
//! [`crate::accounts::Accounts`], which a poller reloads when the store's access epoch moves
//! (every [`ACCESS_POLL`]): no query per request, and a revocation or plan change reaches every
//! replica within the poll interval. A key the snapshot does not know yet (created since) is
//! looked up in the database. Usage is metered through the store's group-commit queue: each
//! response waits for the commit that holds its event.

use std::sync::Arc;

use axum::http::{header, HeaderMap, StatusCode};
use flywheel_store::{
    Decision, KeyInfo, KeyLookup, LimitKind, LimitState, MeterItem, NewPrediction, Store,
    UsageEvent,
};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::accounts::ACCESS_POLL;
use crate::error::ApiError;
use crate::state::AppState;

/// Polls the access epoch every [`ACCESS_POLL`] and reloads the snapshot when it moves.
pub(crate) fn spawn_access_poller(state: Arc<AppState>) -> Option<tokio::task::JoinHandle<()>> {
    let (Some(store), Some(_)) = (state.store.clone(), state.accounts.as_ref()) else {
        return None;
    };
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(ACCESS_POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tick.tick().await;
            let Some(accounts) = &state.accounts else {
                return;
            };
            match accounts.refresh(&store, false).await {
                Ok(()) => failing = false,
                Err(e) if !failing => {
                    failing = true;
                    tracing::error!(error = %e, "reloading keys and plans failed; serving the last ones");
                }
                Err(_) => {}
            }
        }
    }))
}

/// Response headers as `(name, value)` pairs (the rate-limit state of a key).
pub(crate) type LimitHeaders = Vec<(&'static str, String)>;

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub(crate) enum Caller {
    /// No store: the server is open (file models, no keys).
    Open,
    /// The admin token: every model, no limits, no metering.
    Admin,
    /// A tenant's API key.
    Key(KeyInfo),
}

/// The bearer token of the request, if any.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

fn unauthorized(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
}

/// The store is unreachable or failed: the request cannot be authorised or metered.
pub(crate) fn store_unavailable(e: &flywheel_store::Error) -> ApiError {
    tracing::error!(error = %e, "store error");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "store_unavailable",
        "the account database is unavailable; retry shortly (with the same x-request-id)",
    )
}

/// SHA-256 of a string.
pub(crate) fn sha256(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

impl AppState {
    /// Whether `token` is the admin token (compared in constant time).
    pub(crate) fn is_admin_token(&self, token: &str) -> bool {
        self.admin_token_sha256
            .as_ref()
            .is_some_and(|expected| bool::from(sha256(token).ct_eq(expected)))
    }

    /// Who `token` is: the admin token, a valid key, or no one (`None`). The API (bearer
    /// header) and the dashboard (session cookie) both identify callers through this.
    pub(crate) async fn identify(
        &self,
        store: &Store,
        token: &str,
    ) -> Result<Option<Caller>, flywheel_store::Error> {
        if self.is_admin_token(token) {
            return Ok(Some(Caller::Admin));
        }
        if let Some(accounts) = &self.accounts {
            match accounts.snapshot.load().authenticate(token) {
                KeyLookup::Valid(info) => return Ok(Some(Caller::Key(info.clone()))),
                KeyLookup::Invalid => return Ok(None),
                KeyLookup::Unknown => {}
            }
        }
        Ok(store.authenticate(token).await?.map(Caller::Key))
    }

    /// Reloads keys, plans and grants now, after this process changed them (the poller would
    /// within [`ACCESS_POLL`]; a failure here is left to it).
    pub(crate) async fn access_changed(&self) {
        if let (Some(store), Some(accounts)) = (&self.store, &self.accounts) {
            if let Err(e) = accounts.refresh(store, true).await {
                tracing::warn!(error = %e, "reloading keys and plans failed; the poller retries");
            }
        }
    }

    /// Authenticates the request: without a store everyone may call; with one, a valid API
    /// key or the admin token is required (401 otherwise).
    pub(crate) async fn caller(&self, headers: &HeaderMap) -> Result<Caller, ApiError> {
        let Some(store) = &self.store else {
            return Ok(Caller::Open);
        };
        let Some(token) = bearer(headers) else {
            return Err(unauthorized(
                "an API key is required: 'Authorization: Bearer fw_...'",
            ));
        };
        match self.identify(store, token).await {
            Ok(Some(caller)) => Ok(caller),
            Ok(None) => Err(unauthorized(
                "the API key is not valid (unknown or revoked)",
            )),
            Err(e) => Err(store_unavailable(&e)),
        }
    }

    /// 403 unless the caller may use `model`.
    pub(crate) fn check_access(&self, caller: &Caller, model: &str) -> Result<(), ApiError> {
        let (Caller::Key(key), Some(accounts)) = (caller, &self.accounts) else {
            return Ok(());
        };
        if accounts.snapshot.load().can_use(&key.tenant, model) {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("this key's tenant may not use model '{model}'"),
            )
            .param("model"))
        }
    }

    /// The models `tenant` may use, by name (`None` without a store: every model).
    pub(crate) fn usable_models(&self, tenant: &str) -> Option<Vec<String>> {
        let accounts = self.accounts.as_ref()?;
        Some(accounts.snapshot.load().usable_models(tenant))
    }

    /// Refuses (429) a request that is already over the key's limits, before any work: decided
    /// in memory from the key's counters as of this process's last commit (a refusal there is
    /// one the database would give; the commit has the final word on admission).
    pub(crate) fn precheck(&self, caller: &Caller, texts: usize) -> Result<(), ApiError> {
        let (Caller::Key(key), Some(accounts)) = (caller, &self.accounts) else {
            return Ok(());
        };
        let limits = accounts.limits(key);
        match accounts
            .meter
            .precheck(key.id, limits, texts as i64, now_unix())
        {
            Some(refusal) => Err(too_many_requests(&refusal)),
            None => Ok(()),
        }
    }

    /// Counts a served request against the key's plan and commits its usage event and kept
    /// predictions (in the next group commit); returns the rate-limit headers for the response
    /// and the predictions left to log on their own (an unmetered caller's). Over a limit
    /// (another replica got there first) → 429, and nothing is recorded.
    pub(crate) async fn meter(
        &self,
        caller: &Caller,
        usage: Usage<'_>,
    ) -> Result<(LimitHeaders, Vec<NewPrediction>), ApiError> {
        let (Caller::Key(key), Some(accounts)) = (caller, &self.accounts) else {
            return Ok((Vec::new(), usage.predictions));
        };
        let event = UsageEvent {
            id: usage.request_id.to_string(),
            tenant: key.tenant.clone(),
            key_prefix: key.prefix.clone(),
            model: usage.model.to_string(),
            version: usage.version.unwrap_or(0),
            texts: usage.texts as i64,
            characters: usage.characters as i64,
            at: now_unix(),
            request_sha256: hex::encode(Sha256::digest(usage.body)),
            training_seconds: 0,
        };
        let item = MeterItem {
            key_id: key.id,
            limits: accounts.limits(key),
            event,
            predictions: usage.predictions,
        };
        match accounts.meter.meter(item).await {
            Ok(m) if m.decision.allowed => Ok((limit_headers(&m.decision), Vec::new())),
            Ok(m) => Err(too_many_requests(&m.decision)),
            Err(flywheel_store::Error::IdempotencyConflict(id)) => Err(ApiError::new(
                StatusCode::CONFLICT,
                "idempotency_conflict",
                format!(
                    "request id '{id}' was already used for a different request; \
                     send a new x-request-id"
                ),
            )),
            Err(e) => Err(store_unavailable(&e)),
        }
    }
}

/// The request's id (set on every request by the `observe` middleware; `""` if absent).
pub(crate) fn request_id(headers: &HeaderMap) -> &str {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// What one served request used.
pub(crate) struct Usage<'a> {
    /// The request's id (the usage event's idempotency key).
    pub request_id: &'a str,
    /// The model called.
    pub model: &'a str,
    /// The registry version that answered.
    pub version: Option<i64>,
    /// Texts classified or explained.
    pub texts: usize,
    /// Their characters.
    pub characters: usize,
    /// The request body (its digest tells a retry from a reused id).
    pub body: &'a [u8],
    /// Predictions to keep for review, committed with the event.
    pub predictions: Vec<NewPrediction>,
}

/// Unix seconds now.
pub(crate) fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A duration as OpenAI writes it in `x-ratelimit-reset-*`: `1h2m3s`, `45s`, `0s`.
pub(crate) fn format_reset(seconds: i64) -> String {
    let s = seconds.max(0);
    let (d, h, m, s) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    let mut out = String::new();
    if d > 0 {
        out.push_str(&format!("{d}d"));
    }
    if d > 0 || h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if d > 0 || h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    out.push_str(&format!("{s}s"));
    out
}

/// The `x-ratelimit-{limit,remaining,reset}-{requests,texts}` headers of a decision.
pub(crate) fn limit_headers(d: &Decision) -> LimitHeaders {
    let one = |state: &LimitState, names: [&'static str; 3]| {
        [
            (names[0], state.limit.to_string()),
            (names[1], state.remaining.to_string()),
            (names[2], format_reset(state.reset_after)),
        ]
    };
    let mut headers = Vec::with_capacity(6);
    headers.extend(one(
        &d.requests,
        [
            "x-ratelimit-limit-requests",
            "x-ratelimit-remaining-requests",
            "x-ratelimit-reset-requests",
        ],
    ));
    headers.extend(one(
        &d.texts,
        [
            "x-ratelimit-limit-texts",
            "x-ratelimit-remaining-texts",
            "x-ratelimit-reset-texts",
        ],
    ));
    headers
}

/// 429 `rate_limited` with the limit headers and `retry-after`.
fn too_many_requests(d: &Decision) -> ApiError {
    let (what, state) = match d.denied_by {
        Some(LimitKind::Texts) => ("texts per month", &d.texts),
        _ => ("requests per minute", &d.requests),
    };
    let message = if matches!(d.denied_by, Some(LimitKind::Texts)) && d.texts.remaining > 0 {
        format!(
            "this request's texts exceed the {what} left on the key's plan ({} of {}); \
             send fewer texts or wait {}",
            d.texts.remaining,
            d.texts.limit,
            format_reset(state.reset_after)
        )
    } else {
        format!(
            "the key's plan allows {} {what}; the limit resets in {}",
            state.limit,
            format_reset(state.reset_after)
        )
    };
    let mut headers = limit_headers(d);
    headers.push(("retry-after", state.reset_after.max(1).to_string()));
    ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message).with_headers(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_durations_read_like_openai() {
        assert_eq!(format_reset(0), "0s");
        assert_eq!(format_reset(-3), "0s");
        assert_eq!(format_reset(45), "45s");
        assert_eq!(format_reset(60), "1m0s");
        assert_eq!(format_reset(3723), "1h2m3s");
        assert_eq!(format_reset(86_400 * 2 + 5), "2d0h0m5s");
    }

    #[test]
    fn token_digests_compare_equal_only_when_equal() {
        let digest = sha256("secret");
        assert!(bool::from(digest.ct_eq(&sha256("secret"))));
        assert!(!bool::from(digest.ct_eq(&sha256("secreT"))));
    }

    #[test]
    fn bearer_tokens() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert(header::AUTHORIZATION, "Bearer  fw_abc ".parse().unwrap());
        assert_eq!(bearer(&h), Some("fw_abc"));
        h.insert(header::AUTHORIZATION, "bearer x".parse().unwrap());
        assert_eq!(bearer(&h), Some("x"));
        h.insert(header::AUTHORIZATION, "Basic x".parse().unwrap());
        assert_eq!(bearer(&h), None);
    }
}
