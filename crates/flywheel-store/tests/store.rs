//! The registry, API keys, tenants, plans, rate limits and metering, on SQLite and (when
//! `FLYWHEEL_TEST_POSTGRES_URL` is set) PostgreSQL.

#[macro_use]
mod common;

use common::{hex_sha256, T0};
use flywheel_store::*;
use sha2::{Digest, Sha256};
use sqlx::Row;

on_both!(
    registry_push_promote_rollback,
    registry_rejects_bad_input,
    keys_are_hashed_and_listed_by_prefix,
    revoked_key_does_not_authenticate,
    tenant_isolation,
    rate_limit_requests_per_minute,
    rate_limit_texts_per_month,
    concurrent_consume_is_exact,
    usage_events_are_idempotent,
    usage_report_sums,
    meter_counts_and_records_in_one_commit,
    meter_retries_and_conflicts,
    concurrent_meter_is_exact,
    peek_does_not_count,
    usable_models_per_tenant,
);

async fn registry_push_promote_rollback(store: Store, _url: String) {
    let a = b"artifact one".to_vec();
    let b = b"artifact two".to_vec();
    let c = b"artifact three".to_vec();
    assert_eq!(
        store
            .push_model("sentiment", &a, &hex_sha256(&a), T0)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store
            .push_model("sentiment", &b, &hex_sha256(&b), T0 + 1)
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        store
            .push_model("sentiment", &c, &hex_sha256(&c), T0 + 2)
            .await
            .unwrap(),
        3
    );
    assert_eq!(
        store
            .push_model("spam", &a, &hex_sha256(&a), T0)
            .await
            .unwrap(),
        1
    );

    let got = store.get_version("sentiment", 2).await.unwrap();
    assert_eq!(got.bytes, b);
    assert_eq!(got.info.sha256, hex_sha256(&b));
    assert_eq!(got.info.size_bytes, b.len() as i64);
    assert_eq!(got.info.created_at, T0 + 1);
    assert!(matches!(
        store.get_version("sentiment", 9).await,
        Err(Error::NotFound(_))
    ));
    assert_eq!(store.list_versions("sentiment").await.unwrap().len(), 3);

    assert_eq!(
        store
            .resolve_alias("sentiment", Alias::Champion)
            .await
            .unwrap(),
        None
    );
    assert!(matches!(
        store.rollback("sentiment").await,
        Err(Error::NothingToRollBack(_))
    ));
    store
        .set_alias("sentiment", Alias::Champion, 1)
        .await
        .unwrap();
    assert!(matches!(
        store.rollback("sentiment").await,
        Err(Error::NothingToRollBack(_))
    ));
    store
        .set_alias("sentiment", Alias::Champion, 2)
        .await
        .unwrap();
    store
        .set_alias("sentiment", Alias::Challenger, 3)
        .await
        .unwrap();
    store
        .set_alias("sentiment", Alias::Champion, 3)
        .await
        .unwrap();
    assert_eq!(
        store
            .resolve_alias("sentiment", Alias::Champion)
            .await
            .unwrap(),
        Some(3)
    );
    assert_eq!(
        store
            .resolve_alias("sentiment", Alias::Challenger)
            .await
            .unwrap(),
        Some(3)
    );

    // champion <- the previous champion, then the one before; the challenger is untouched.
    assert_eq!(store.rollback("sentiment").await.unwrap(), 2);
    assert_eq!(
        store
            .resolve_alias("sentiment", Alias::Champion)
            .await
            .unwrap(),
        Some(2)
    );
    assert_eq!(store.rollback("sentiment").await.unwrap(), 1);
    assert_eq!(
        store
            .resolve_alias("sentiment", Alias::Champion)
            .await
            .unwrap(),
        Some(1)
    );
    assert!(matches!(
        store.rollback("sentiment").await,
        Err(Error::NothingToRollBack(_))
    ));
    assert_eq!(
        store
            .resolve_alias("sentiment", Alias::Challenger)
            .await
            .unwrap(),
        Some(3)
    );
    // A new promotion after rollbacks, then a rollback returns to the champion before it.
    store
        .set_alias("sentiment", Alias::Champion, 3)
        .await
        .unwrap();
    assert_eq!(store.rollback("sentiment").await.unwrap(), 1);

    let history = store.alias_history("sentiment").await.unwrap();
    let actions: Vec<(String, String, i64, bool)> = history
        .iter()
        .map(|e| (e.alias.clone(), e.action.clone(), e.version, e.reverted))
        .collect();
    let s = |x: &str| x.to_string();
    assert_eq!(
        actions,
        vec![
            (s("champion"), s("set"), 1, false),
            (s("champion"), s("set"), 2, true),
            (s("challenger"), s("set"), 3, false),
            (s("champion"), s("set"), 3, true),
            (s("champion"), s("rollback"), 2, false),
            (s("champion"), s("rollback"), 1, false),
            (s("champion"), s("set"), 3, true),
            (s("champion"), s("rollback"), 1, false),
        ]
    );

    let models = store.list_models().await.unwrap();
    assert_eq!(models.len(), 2);
    assert_eq!(models[0].name, "sentiment");
    assert_eq!(models[0].latest_version, 3);
    assert_eq!(models[0].champion, Some(1));
    assert_eq!(models[0].challenger, Some(3));
    assert!(!models[0].public);
    assert_eq!(models[1].name, "spam");
    assert_eq!(models[1].champion, None);
}

async fn registry_rejects_bad_input(store: Store, _url: String) {
    let a = b"bytes".to_vec();
    assert!(matches!(
        store.push_model("m", &a, &hex_sha256(b"other"), T0).await,
        Err(Error::ChecksumMismatch { .. })
    ));
    assert!(matches!(
        store.push_model("bad name", &a, &hex_sha256(&a), T0).await,
        Err(Error::Invalid(_))
    ));
    // An uppercase digest is accepted and stored in lower case.
    store
        .push_model("m", &a, &hex_sha256(&a).to_uppercase(), T0)
        .await
        .unwrap();
    assert_eq!(
        store.get_version("m", 1).await.unwrap().info.sha256,
        hex_sha256(&a)
    );
    assert!(matches!(
        store.set_alias("m", Alias::Champion, 2).await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        store.set_alias("nope", Alias::Champion, 1).await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!("winner".parse::<Alias>(), Err(Error::Invalid(_))));
    assert_eq!("challenger".parse::<Alias>().unwrap(), Alias::Challenger);
}

/// Every text and byte value stored in `api_keys`.
async fn api_key_values(store: &Store) -> Vec<Vec<u8>> {
    let sql = "SELECT prefix, plan, key_sha256 FROM api_keys";
    let mut out = Vec::new();
    match store {
        Store::Sqlite(s) => {
            for r in sqlx::query(sql).fetch_all(s.pool()).await.unwrap() {
                out.push(r.get::<String, _>(0).into_bytes());
                out.push(r.get::<String, _>(1).into_bytes());
                out.push(r.get::<Vec<u8>, _>(2));
            }
        }
        Store::Postgres(s) => {
            for r in sqlx::query(sql).fetch_all(s.pool()).await.unwrap() {
                out.push(r.get::<String, _>(0).into_bytes());
                out.push(r.get::<String, _>(1).into_bytes());
                out.push(r.get::<Vec<u8>, _>(2));
            }
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

async fn keys_are_hashed_and_listed_by_prefix(store: Store, _url: String) {
    store.create_plan("free", 10, 1000).await.unwrap();
    assert!(matches!(
        store.create_plan("free", 1, 1).await,
        Err(Error::AlreadyExists(_))
    ));
    store.create_tenant("acme").await.unwrap();
    assert!(matches!(
        store.create_tenant("acme").await,
        Err(Error::AlreadyExists(_))
    ));
    assert!(matches!(
        store.create_key("acme", "gold").await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        store.create_key("nobody", "free").await,
        Err(Error::NotFound(_))
    ));

    let k1 = store.create_key("acme", "free").await.unwrap();
    let k2 = store.create_key("acme", "free").await.unwrap();
    for k in [&k1, &k2] {
        assert!(k.key.starts_with("fw_"));
        // 32 random bytes -> 43 base64url characters (>= 128 bits).
        assert_eq!(k.key.len(), 3 + 43);
        assert!(k.key[3..]
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        assert_eq!(k.prefix, &k.key[..KEY_PREFIX_LEN]);
        assert!(
            !format!("{k:?}").contains(&k.key),
            "Debug must not print the key"
        );
    }
    assert_ne!(k1.key, k2.key);

    // The plaintext (or its secret part) is nowhere in the table; its SHA-256 is.
    let values = api_key_values(&store).await;
    for k in [&k1, &k2] {
        let secret = &k.key.as_bytes()[KEY_PREFIX_LEN..];
        assert!(values
            .iter()
            .all(|v| !contains(v, k.key.as_bytes()) && !contains(v, secret)));
        let digest: Vec<u8> = Sha256::digest(k.key.as_bytes()).to_vec();
        assert!(values.contains(&digest));
    }
    // On SQLite, the whole database (file and WAL) never holds the plaintext either.
    if let Store::Sqlite(s) = &store {
        let file: String =
            sqlx::query_scalar("SELECT file FROM pragma_database_list WHERE name = 'main'")
                .fetch_one(s.pool())
                .await
                .unwrap();
        let mut scanned = 0;
        for path in [file.clone(), format!("{file}-wal")] {
            if let Ok(bytes) = std::fs::read(&path) {
                scanned += bytes.len();
                for k in [&k1, &k2] {
                    assert!(
                        !contains(&bytes, &k.key.as_bytes()[KEY_PREFIX_LEN..]),
                        "{path} holds a key"
                    );
                }
            }
        }
        assert!(scanned > 0);
    }

    let info = store
        .authenticate(&k1.key)
        .await
        .unwrap()
        .expect("valid key");
    assert_eq!(info.id, k1.id);
    assert_eq!(info.tenant, "acme");
    assert_eq!(info.plan, "free");
    assert_eq!(info.prefix, k1.prefix);
    assert_eq!(
        store.authenticate(&k2.key).await.unwrap().unwrap().id,
        k2.id
    );

    // Wrong keys: same prefix but another secret, truncated, foreign scheme, empty, non-ASCII.
    let mut forged = k1.key.clone().into_bytes();
    let last = forged.len() - 1;
    forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    for bad in [
        forged.as_str(),
        &k1.key[..20],
        "sk_abcdefghijklmnop",
        "",
        "fw_é",
        &k1.prefix,
    ] {
        assert_eq!(store.authenticate(bad).await.unwrap(), None, "{bad:?}");
    }

    let listed = store.list_keys("acme").await.unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].prefix, k1.prefix);
    assert_eq!(listed[1].prefix, k2.prefix);
    assert!(listed
        .iter()
        .all(|k| k.revoked_at.is_none() && k.plan == "free"));
    assert_eq!(store.list_plans().await.unwrap()[0].requests_per_minute, 10);

    // A key made by another process: only its SHA-256, written here as a literal, is stored.
    // Authenticating it checks that keys are hashed the same way in every process.
    const GOLDEN_KEY: &str = "fw_golden00AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    // SHA-256 of GOLDEN_KEY.
    const GOLDEN_KEY_SHA256: &str =
        "665a2d1a09221898f9130ed0a92e851df5ca3640291294aaafcb4ec69b9c8d73";
    let digest: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(&GOLDEN_KEY_SHA256[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let tenant_id = store.list_tenants().await.unwrap()[0].id;
    let insert = "INSERT INTO api_keys (tenant_id, plan, prefix, key_sha256, created_at) \
                  VALUES ($1, 'free', $2, $3, 0) RETURNING id";
    let prefix = &GOLDEN_KEY[..KEY_PREFIX_LEN];
    let golden_id: i64 = match &store {
        Store::Sqlite(s) => sqlx::query_scalar(insert)
            .bind(tenant_id)
            .bind(prefix)
            .bind(&digest)
            .fetch_one(s.pool())
            .await
            .unwrap(),
        Store::Postgres(s) => sqlx::query_scalar(insert)
            .bind(tenant_id)
            .bind(prefix)
            .bind(&digest)
            .fetch_one(s.pool())
            .await
            .unwrap(),
    };
    let golden = store.authenticate(GOLDEN_KEY).await.unwrap();
    assert_eq!(
        golden.map(|k| (k.id, k.tenant)),
        Some((golden_id, "acme".into()))
    );
}

async fn revoked_key_does_not_authenticate(store: Store, _url: String) {
    store.create_plan("free", 10, 1000).await.unwrap();
    store.create_tenant("acme").await.unwrap();
    store.create_tenant("other").await.unwrap();
    let k = store.create_key("acme", "free").await.unwrap();
    let keep = store.create_key("acme", "free").await.unwrap();
    assert!(store.authenticate(&k.key).await.unwrap().is_some());
    // Another tenant cannot revoke it.
    assert!(matches!(
        store.revoke_key("other", &k.prefix).await,
        Err(Error::NotFound(_))
    ));
    assert_eq!(store.revoke_key("acme", &k.prefix).await.unwrap(), 1);
    assert_eq!(store.authenticate(&k.key).await.unwrap(), None);
    assert!(matches!(
        store.revoke_key("acme", &k.prefix).await,
        Err(Error::NotFound(_))
    ));
    assert!(store.authenticate(&keep.key).await.unwrap().is_some());
    let listed = store.list_keys("acme").await.unwrap();
    assert!(listed[0].revoked_at.is_some());
    assert!(listed[1].revoked_at.is_none());
}

async fn tenant_isolation(store: Store, _url: String) {
    let a = b"model".to_vec();
    let sha = hex_sha256(&a);
    store.push_model("a-private", &a, &sha, T0).await.unwrap();
    store.push_model("b-private", &a, &sha, T0).await.unwrap();
    store.push_model("shared", &a, &sha, T0).await.unwrap();
    store.set_model_public("shared", true).await.unwrap();
    assert!(matches!(
        store.set_model_public("nope", true).await,
        Err(Error::NotFound(_))
    ));
    store.create_tenant("a").await.unwrap();
    store.create_tenant("b").await.unwrap();
    store.grant_model("a", "a-private").await.unwrap();
    store.grant_model("a", "a-private").await.unwrap(); // idempotent
    store.grant_model("b", "b-private").await.unwrap();
    assert!(matches!(
        store.grant_model("a", "nope").await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        store.grant_model("nobody", "shared").await,
        Err(Error::NotFound(_))
    ));

    assert!(store.can_use("a", "a-private").await.unwrap());
    assert!(!store.can_use("a", "b-private").await.unwrap());
    assert!(store.can_use("b", "b-private").await.unwrap());
    assert!(!store.can_use("b", "a-private").await.unwrap());
    assert!(store.can_use("a", "shared").await.unwrap());
    assert!(store.can_use("b", "shared").await.unwrap());
    assert!(!store.can_use("a", "missing").await.unwrap());
    assert!(!store.can_use("nobody", "a-private").await.unwrap());
    assert!(store.can_use("nobody", "shared").await.unwrap());
    store.set_model_public("shared", false).await.unwrap();
    assert!(!store.can_use("a", "shared").await.unwrap());
}

async fn key_on_plan(store: &Store, rpm: i64, tpm: i64) -> NewKey {
    store.create_plan("p", rpm, tpm).await.unwrap();
    store.create_tenant("t").await.unwrap();
    store.create_key("t", "p").await.unwrap()
}

async fn rate_limit_requests_per_minute(store: Store, _url: String) {
    let key = key_on_plan(&store, 5, 1_000_000).await;
    let now = T0 + 3600 + 20; // 20 s into a minute
    for i in 1..=5 {
        let d = store.consume(key.id, 1, now + i).await.unwrap();
        assert!(d.allowed, "request {i}");
        assert_eq!(d.denied_by, None);
        assert_eq!(d.requests.limit, 5);
        assert_eq!(d.requests.remaining, 5 - i);
        assert_eq!(d.requests.reset_at, T0 + 3660);
        assert_eq!(d.requests.reset_after, 40 - i);
        assert_eq!(d.texts.remaining, 1_000_000 - i);
    }
    for _ in 0..3 {
        let d = store.consume(key.id, 1, now + 30).await.unwrap();
        assert!(!d.allowed);
        assert_eq!(d.denied_by, Some(LimitKind::Requests));
        assert_eq!(d.requests.remaining, 0);
        assert_eq!(d.requests.reset_after, 10);
        // Denied requests do not use texts.
        assert_eq!(d.texts.remaining, 1_000_000 - 5);
    }
    // The next minute starts afresh.
    let d = store.consume(key.id, 1, T0 + 3660).await.unwrap();
    assert!(d.allowed);
    assert_eq!(d.requests.remaining, 4);
    assert_eq!(d.requests.reset_after, 60);
    assert!(matches!(
        store.consume(key.id, -1, now).await,
        Err(Error::Invalid(_))
    ));
    assert!(matches!(
        store.consume(key.id + 100, 1, now).await,
        Err(Error::NotFound(_))
    ));

    // A plan with 0 requests per minute admits nothing.
    store.create_plan("closed", 0, 10).await.unwrap();
    let closed = store.create_key("t", "closed").await.unwrap();
    let d = store.consume(closed.id, 1, now).await.unwrap();
    assert!(!d.allowed);
    assert_eq!(d.denied_by, Some(LimitKind::Requests));
}

async fn rate_limit_texts_per_month(store: Store, _url: String) {
    let key = key_on_plan(&store, 1000, 10).await;
    let jan = T0 + 86_400 * 10;
    let feb1 = T0 + 86_400 * 31;
    let d = store.consume(key.id, 6, jan).await.unwrap();
    assert!(d.allowed);
    assert_eq!(d.texts.remaining, 4);
    assert_eq!(d.texts.reset_at, feb1);
    assert_eq!(d.texts.reset_after, feb1 - jan);
    // 5 more would exceed 10: denied, and the request is not counted either.
    let d = store.consume(key.id, 5, jan + 1).await.unwrap();
    assert!(!d.allowed);
    assert_eq!(d.denied_by, Some(LimitKind::Texts));
    assert_eq!(d.texts.remaining, 4);
    assert_eq!(d.requests.remaining, 999);
    // A request larger than the whole quota is denied without touching the counters.
    let d = store.consume(key.id, 11, jan + 2).await.unwrap();
    assert_eq!(d.denied_by, Some(LimitKind::Texts));
    assert_eq!(d.requests.remaining, 999);
    let d = store.consume(key.id, 4, jan + 3).await.unwrap();
    assert!(d.allowed);
    assert_eq!(d.texts.remaining, 0);
    assert_eq!(d.requests.remaining, 998);
    let d = store.consume(key.id, 1, jan + 4).await.unwrap();
    assert_eq!(d.denied_by, Some(LimitKind::Texts));
    // A request with no texts still passes (it uses no quota).
    assert!(store.consume(key.id, 0, jan + 5).await.unwrap().allowed);
    // February: a new quota.
    let d = store.consume(key.id, 10, feb1).await.unwrap();
    assert!(d.allowed);
    assert_eq!(d.texts.remaining, 0);
}

async fn concurrent_consume_is_exact(store: Store, url: String) {
    let limit = 40;
    let key = key_on_plan(&store, limit, 1_000_000).await;
    let now = T0 + 7 * 60 + 1;
    // Two stores (two pools, as two replicas would have) on the same database, 4 tasks each.
    let replica = Store::open(&url).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = if i % 2 == 0 {
            store.clone()
        } else {
            replica.clone()
        };
        tasks.push(tokio::spawn(async move {
            let mut allowed = 0;
            for _ in 0..10 {
                if store.consume(key.id, 2, now).await.unwrap().allowed {
                    allowed += 1;
                }
            }
            allowed
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    assert_eq!(
        total, limit,
        "exactly the limit is admitted out of 80 requests"
    );
    let d = store.consume(key.id, 1, now).await.unwrap();
    assert!(!d.allowed);
    assert_eq!(d.requests.remaining, 0);
    // The texts counter saw exactly the admitted requests.
    assert_eq!(d.texts.remaining, 1_000_000 - 2 * limit);
}

fn event(id: &str, tenant: &str, prefix: &str, model: &str, texts: i64, at: i64) -> UsageEvent {
    UsageEvent {
        id: id.to_string(),
        tenant: tenant.to_string(),
        key_prefix: prefix.to_string(),
        model: model.to_string(),
        version: 1,
        texts,
        characters: texts * 10,
        at,
        request_sha256: format!("digest-of-{id}"),
        training_seconds: 0,
    }
}

async fn usage_events_are_idempotent(store: Store, _url: String) {
    let e = event("req-1", "a", "fw_aaaaaaaa", "m", 3, T0);
    assert!(store.record_usage(&e).await.unwrap());
    assert!(!store.record_usage(&e).await.unwrap());
    // Same id, different content: still ignored (the first write wins).
    let mut changed = e.clone();
    changed.texts = 100;
    assert!(!store.record_usage(&changed).await.unwrap());
    // Concurrent duplicates: exactly one insert.
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let store = store.clone();
        let e = event("req-2", "a", "fw_aaaaaaaa", "m", 1, T0);
        tasks.push(tokio::spawn(async move {
            store.record_usage(&e).await.unwrap()
        }));
    }
    let mut inserted = 0;
    for t in tasks {
        inserted += t.await.unwrap() as i32;
    }
    assert_eq!(inserted, 1);
    let rows = store.usage_report(&UsageFilter::default()).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].requests, 2);
    assert_eq!(rows[0].texts, 4);
    assert_eq!(rows[0].characters, 40);
}

async fn usage_report_sums(store: Store, _url: String) {
    let day = 86_400;
    let events = [
        event("1", "a", "fw_aaaaaaaa", "m1", 2, T0 + 10),
        event("2", "a", "fw_aaaaaaaa", "m1", 3, T0 + 20),
        event("3", "a", "fw_aaaaaaaa", "m2", 1, T0 + 30),
        event("4", "a", "fw_aaaaaaab", "m1", 5, T0 + 40),
        event("5", "a", "fw_aaaaaaaa", "m1", 7, T0 + day + 5),
        event("6", "b", "fw_bbbbbbbb", "m1", 11, T0 + 50),
        event("7", "b", "fw_bbbbbbbb", "m1", 13, T0 + 2 * day),
    ];
    for e in &events {
        assert!(store.record_usage(e).await.unwrap());
    }
    let row =
        |tenant: &str, prefix: &str, model: &str, d: &str, requests: i64, texts: i64| UsageRow {
            tenant: tenant.into(),
            key_prefix: prefix.into(),
            model: model.into(),
            day: d.into(),
            requests,
            texts,
            characters: texts * 10,
            training_seconds: 0,
        };
    let all = store.usage_report(&UsageFilter::default()).await.unwrap();
    assert_eq!(
        all,
        vec![
            row("a", "fw_aaaaaaaa", "m1", "2026-01-01", 2, 5),
            row("a", "fw_aaaaaaaa", "m1", "2026-01-02", 1, 7),
            row("a", "fw_aaaaaaaa", "m2", "2026-01-01", 1, 1),
            row("a", "fw_aaaaaaab", "m1", "2026-01-01", 1, 5),
            row("b", "fw_bbbbbbbb", "m1", "2026-01-01", 1, 11),
            row("b", "fw_bbbbbbbb", "m1", "2026-01-03", 1, 13),
        ]
    );
    let b = store
        .usage_report(&UsageFilter {
            tenant: Some("b".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(b.len(), 2);
    assert!(b.iter().all(|r| r.tenant == "b"));
    // [from, to): only the second day.
    let second_day = store
        .usage_report(&UsageFilter {
            tenant: None,
            from: Some(T0 + day),
            to: Some(T0 + 2 * day),
        })
        .await
        .unwrap();
    assert_eq!(
        second_day,
        vec![row("a", "fw_aaaaaaaa", "m1", "2026-01-02", 1, 7)]
    );
    let none = store
        .usage_report(&UsageFilter {
            tenant: Some("c".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(none.is_empty());
}

#[tokio::test]
async fn sqlite_in_memory_works() {
    let store = Store::open("sqlite::memory:").await.unwrap();
    assert_eq!(store.backend(), "sqlite");
    let a = b"x".to_vec();
    assert_eq!(
        store
            .push_model("m", &a, &hex_sha256(&a), T0)
            .await
            .unwrap(),
        1
    );
    assert_eq!(store.get_version("m", 1).await.unwrap().bytes, a);
    assert!(matches!(
        Store::open("mysql://x").await,
        Err(Error::UnsupportedUrl(_))
    ));
}

async fn events_of(store: &Store) -> Vec<(String, i64)> {
    let rows = match store {
        Store::Sqlite(s) => sqlx::query("SELECT id, texts FROM usage_events ORDER BY id")
            .fetch_all(s.pool())
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get::<String, _>(0), r.get::<i64, _>(1)))
            .collect(),
        Store::Postgres(s) => sqlx::query("SELECT id, texts FROM usage_events ORDER BY id")
            .fetch_all(s.pool())
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get::<String, _>(0), r.get::<i64, _>(1)))
            .collect(),
    };
    rows
}

async fn meter_counts_and_records_in_one_commit(store: Store, _url: String) {
    let key = key_on_plan(&store, 3, 10).await;
    let now = T0 + 3600 + 5;
    let mut e = event("r1", "t", &key.prefix, "m", 4, now);
    let m = store.meter(key.id, &e).await.unwrap();
    assert!(m.decision.allowed && !m.duplicate);
    assert_eq!(m.decision.requests.remaining, 2);
    assert_eq!(m.decision.texts.remaining, 6);
    // Over the text quota: nothing is written, neither the event nor the counters.
    e.id = "r2".into();
    e.texts = 7;
    e.request_sha256 = "digest-of-r2".into();
    let m = store.meter(key.id, &e).await.unwrap();
    assert!(!m.decision.allowed);
    assert_eq!(m.decision.denied_by, Some(LimitKind::Texts));
    assert_eq!(m.decision.requests.remaining, 2);
    assert_eq!(m.decision.texts.remaining, 6);
    assert_eq!(events_of(&store).await, vec![("r1".to_string(), 4)]);
    // Two more requests fit the minute, the fourth does not and leaves no event.
    for id in ["r3", "r4", "r5"] {
        let e = event(id, "t", &key.prefix, "m", 1, now + 1);
        let m = store.meter(key.id, &e).await.unwrap();
        assert_eq!(m.decision.allowed, id != "r5", "{id}");
    }
    let ids: Vec<String> = events_of(&store).await.into_iter().map(|e| e.0).collect();
    assert_eq!(ids, ["r1", "r3", "r4"]);
    let listed = store.usage_events(&UsageFilter::default()).await.unwrap();
    assert_eq!(listed.len(), 3);
    assert_eq!(listed[0], event("r1", "t", &key.prefix, "m", 4, now));
    let other = UsageFilter {
        tenant: Some("other".into()),
        ..UsageFilter::default()
    };
    assert!(store.usage_events(&other).await.unwrap().is_empty());
    assert!(matches!(
        store
            .meter(key.id, &event("r6", "t", &key.prefix, "m", -1, now))
            .await,
        Err(Error::Invalid(_))
    ));
}

async fn meter_retries_and_conflicts(store: Store, _url: String) {
    let key = key_on_plan(&store, 10, 100).await;
    store.create_tenant("other").await.unwrap();
    let now = T0 + 7200 + 1;
    let e = event("same", "t", &key.prefix, "m", 5, now);
    assert!(!store.meter(key.id, &e).await.unwrap().duplicate);
    // A retry: counted against the request window only, no second event, no texts.
    let m = store.meter(key.id, &e).await.unwrap();
    assert!(m.decision.allowed && m.duplicate);
    assert_eq!(m.decision.requests.remaining, 8);
    assert_eq!(m.decision.texts.remaining, 95);
    // The same id with another body, or from another tenant, is refused and counts nothing.
    let mut other_body = e.clone();
    other_body.request_sha256 = "another".into();
    assert!(matches!(
        store.meter(key.id, &other_body).await,
        Err(Error::IdempotencyConflict(id)) if id == "same"
    ));
    let mut other_tenant = e.clone();
    other_tenant.tenant = "other".into();
    assert!(matches!(
        store.meter(key.id, &other_tenant).await,
        Err(Error::IdempotencyConflict(_))
    ));
    let d = store.peek(key.id, 0, now).await.unwrap();
    assert_eq!(d.requests.remaining, 8);
    assert_eq!(d.texts.remaining, 95);
    assert_eq!(events_of(&store).await, vec![("same".to_string(), 5)]);
}

async fn concurrent_meter_is_exact(store: Store, url: String) {
    let limit = 30;
    let key = key_on_plan(&store, limit, 1_000_000).await;
    let now = T0 + 9 * 60 + 2;
    let replica = Store::open(&url).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..6 {
        let store = if i % 2 == 0 {
            store.clone()
        } else {
            replica.clone()
        };
        let prefix = key.prefix.clone();
        tasks.push(tokio::spawn(async move {
            let mut allowed = Vec::new();
            for j in 0..10 {
                let id = format!("c{i}-{j}");
                let e = event(&id, "t", &prefix, "m", 1, now);
                if store.meter(key.id, &e).await.unwrap().decision.allowed {
                    allowed.push(id);
                }
            }
            allowed
        }));
    }
    let mut allowed = Vec::new();
    for t in tasks {
        allowed.extend(t.await.unwrap());
    }
    allowed.sort();
    assert_eq!(allowed.len() as i64, limit);
    let recorded: Vec<String> = events_of(&store).await.into_iter().map(|e| e.0).collect();
    assert_eq!(
        recorded, allowed,
        "an event for exactly the admitted requests"
    );
    replica.close().await;
}

async fn peek_does_not_count(store: Store, _url: String) {
    let key = key_on_plan(&store, 2, 5).await;
    let now = T0 + 60 * 30 + 10;
    for _ in 0..3 {
        let d = store.peek(key.id, 5, now).await.unwrap();
        assert!(d.allowed);
        assert_eq!(d.requests.remaining, 2);
        assert_eq!(d.texts.remaining, 5);
        assert_eq!(d.requests.reset_after, 50);
    }
    assert_eq!(
        store.peek(key.id, 6, now).await.unwrap().denied_by,
        Some(LimitKind::Texts)
    );
    store.consume(key.id, 1, now).await.unwrap();
    store.consume(key.id, 1, now).await.unwrap();
    let d = store.peek(key.id, 1, now).await.unwrap();
    assert_eq!(d.denied_by, Some(LimitKind::Requests));
    assert_eq!(d.texts.remaining, 3);
    assert!(matches!(
        store.peek(key.id + 9, 1, now).await,
        Err(Error::NotFound(_))
    ));
}

async fn usable_models_per_tenant(store: Store, _url: String) {
    for name in ["a-model", "b-model", "shared"] {
        let bytes = name.as_bytes();
        store
            .push_model(name, bytes, &hex_sha256(bytes), T0)
            .await
            .unwrap();
    }
    store.create_tenant("a").await.unwrap();
    store.create_tenant("b").await.unwrap();
    store.grant_model("a", "a-model").await.unwrap();
    store.grant_model("b", "b-model").await.unwrap();
    store.set_model_public("shared", true).await.unwrap();
    assert_eq!(
        store.usable_models("a").await.unwrap(),
        ["a-model", "shared"]
    );
    assert_eq!(
        store.usable_models("b").await.unwrap(),
        ["b-model", "shared"]
    );
    assert_eq!(store.usable_models("nobody").await.unwrap(), ["shared"]);
}
