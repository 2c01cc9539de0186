//! Group commit and the in-memory access snapshot, on SQLite and (when
//! `FLYWHEEL_TEST_POSTGRES_URL` is set) PostgreSQL: a batch meters exactly as its requests one
//! by one would, replicas metering in batches share limits exactly, and the snapshot answers as
//! the database does, its epoch moving with every change to who may call what.

#[macro_use]
mod common;

use common::{hex_sha256, T0};
use flywheel_store::*;

on_both!(
    batches_meter_as_one_by_one,
    fresh_requests_commit_together,
    stale_limits_are_metered_against_the_database,
    replicas_batching_share_limits_exactly,
    refusals_from_memory_match_the_database,
    snapshot_answers_as_the_database,
    epoch_moves_with_every_access_change,
);

fn event(id: &str, tenant: &str, prefix: &str, texts: i64, at: i64) -> UsageEvent {
    UsageEvent {
        id: id.to_string(),
        tenant: tenant.to_string(),
        key_prefix: prefix.to_string(),
        model: "m".to_string(),
        version: 1,
        texts,
        characters: texts * 7,
        at,
        request_sha256: format!("digest-of-{id}"),
        training_seconds: 0,
    }
}

fn prediction(e: &UsageEvent) -> NewPrediction {
    NewPrediction {
        tenant: e.tenant.clone(),
        model: e.model.clone(),
        version: 1,
        request_id: e.id.clone(),
        index: 0,
        text: format!("text of {}", e.id),
        label: "pos".to_string(),
        score: 0.75,
        uncertainty: Some(0.5),
        created_at: e.at,
        given_label: None,
    }
}

fn limits(requests_per_minute: i64, texts_per_month: i64) -> PlanLimits {
    PlanLimits {
        requests_per_minute,
        texts_per_month,
    }
}

/// What a test compares of an outcome (the key's own numbers, not its id).
fn outcome(r: &Result<Metered>) -> String {
    match r {
        Ok(m) => format!(
            "allowed={} denied_by={:?} dup={} requests={}/{} reset={} texts={}/{} reset={}",
            m.decision.allowed,
            m.decision.denied_by,
            m.duplicate,
            m.decision.requests.remaining,
            m.decision.requests.limit,
            m.decision.requests.reset_at,
            m.decision.texts.remaining,
            m.decision.texts.limit,
            m.decision.texts.reset_at
        ),
        Err(Error::IdempotencyConflict(_)) => "conflict".to_string(),
        Err(e) => format!("error {e}"),
    }
}

/// One request of the scripted sequence: (key index, id, texts, seconds after the start, a
/// different body than the first use of the id).
type Step = (usize, &'static str, i64, i64, bool);

/// Requests that cross a requests-per-minute limit, a texts-per-month limit, a minute and a
/// month boundary, with retries and a reused id, over three keys.
const SCRIPT: &[Step] = &[
    (0, "a1", 1, 0, false),
    (0, "a2", 2, 0, false),
    (1, "b1", 5, 0, false),
    (0, "a1", 1, 1, false), // a retry: counts a request, no texts
    (0, "a3", 1, 1, false), // the key's 4th request this minute: over its 3
    (1, "b2", 4, 1, false), // 9 of 10 texts
    (1, "b3", 2, 2, false), // would be 11: refused
    (1, "b4", 1, 2, false),
    (2, "c1", 1, 2, false),
    (2, "a2", 2, 2, false),  // another tenant's id: a conflict
    (1, "b1", 5, 3, true),   // the same id, another body: a conflict
    (0, "a4", 1, 60, false), // next minute: counted afresh
    (0, "a5", 1, 61, false),
    (2, "c2", 3, 61, false),
    (1, "b5", 1, 62, false), // texts of the month used up
    (0, "a6", 1, 120, false),
    (1, "b6", 3, 31 * 86_400, false), // next month
    (2, "c3", 1, 31 * 86_400, false),
];

/// Three keys, on plans of 3 requests a minute (100 texts a month), 10 a minute (10 texts) and
/// 100 a minute (1,000 texts); plans and tenants named after `tag`.
async fn script_keys(store: &Store, tag: &str) -> Vec<(NewKey, PlanLimits)> {
    let plans = [("small", 3, 100), ("texts", 10, 10), ("wide", 100, 1000)];
    let mut keys = Vec::new();
    for (i, (plan, rpm, tpm)) in plans.into_iter().enumerate() {
        let plan = format!("{tag}-{plan}");
        store.create_plan(&plan, rpm, tpm).await.unwrap();
        let tenant = format!("{tag}-t{i}");
        store.create_tenant(&tenant).await.unwrap();
        keys.push((
            store.create_key(&tenant, &plan).await.unwrap(),
            limits(rpm, tpm),
        ));
    }
    keys
}

fn script_items(keys: &[(NewKey, PlanLimits)], tag: &str) -> Vec<MeterItem> {
    // January 2026, 10 s into a minute.
    let start = T0 + 3 * 86_400 + 10;
    SCRIPT
        .iter()
        .map(|&(k, id, texts, after, other_body)| {
            let (key, limits) = &keys[k];
            let mut e = event(
                &format!("{tag}-{id}"),
                &key.tenant,
                &key.prefix,
                texts,
                start + after,
            );
            if other_body {
                e.request_sha256 = "another body".into();
            }
            // Every other request keeps its prediction for review, committed with its event.
            let predictions = if id.ends_with(['1', '3', '5']) {
                vec![prediction(&e)]
            } else {
                Vec::new()
            };
            MeterItem {
                key_id: key.id,
                limits: *limits,
                event: e,
                predictions,
            }
        })
        .collect()
}

/// The request ids (without their tag) whose prediction was kept.
async fn kept_with_prefix(store: &Store, tag: &str) -> Vec<String> {
    let mut kept = Vec::new();
    for (_, id, _, _, _) in SCRIPT {
        for t in 0..3 {
            let tenant = format!("{tag}-t{t}");
            let request = format!("{tag}-{id}");
            if let Some(p) = store.find_prediction(&tenant, &request, 0).await.unwrap() {
                assert_eq!(p.prediction.text, format!("text of {request}"));
                assert_eq!(
                    (p.prediction.score, p.prediction.uncertainty),
                    (0.75, Some(0.5))
                );
                kept.push(format!("{}:{id}", &tenant[tag.len()..]));
            }
        }
    }
    kept.sort();
    kept.dedup();
    kept
}

async fn events_with_prefix(store: &Store, tag: &str) -> Vec<(String, String, i64)> {
    let mut events: Vec<(String, String, i64)> = store
        .usage_events(&UsageFilter::default())
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.id.starts_with(&format!("{tag}-")))
        .map(|e| {
            (
                e.id[tag.len() + 1..].to_string(),
                e.tenant[tag.len()..].to_string(),
                e.texts,
            )
        })
        .collect();
    events.sort();
    events
}

async fn batches_meter_as_one_by_one(store: Store, _url: String) {
    // The reference: each request metered on its own, its predictions kept if admitted.
    let keys = script_keys(&store, "one").await;
    let mut expected = Vec::new();
    for item in script_items(&keys, "one") {
        let metered = store.meter(item.key_id, &item.event).await;
        if metered.as_ref().is_ok_and(|m| m.decision.allowed) {
            store.log_predictions(&item.predictions).await.unwrap();
        }
        expected.push(outcome(&metered));
    }
    // The same script on fresh keys and ids, in batches of several sizes.
    for (size, tag) in [(1, "b1"), (2, "b2"), (5, "b5"), (SCRIPT.len(), "ball")] {
        let keys = script_keys(&store, tag).await;
        let items = script_items(&keys, tag);
        let mut got = Vec::new();
        for chunk in items.chunks(size) {
            got.extend(store.meter_batch(chunk).await.iter().map(outcome));
        }
        assert_eq!(got, expected, "batches of {size}");
        assert_eq!(
            events_with_prefix(&store, tag).await,
            events_with_prefix(&store, "one").await,
            "batches of {size}: the same events"
        );
        assert_eq!(
            kept_with_prefix(&store, tag).await,
            kept_with_prefix(&store, "one").await,
            "batches of {size}: the same predictions kept"
        );
    }
    let events = events_with_prefix(&store, "one").await;
    let ids: Vec<&str> = events.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(
        ids,
        ["a1", "a2", "a4", "a5", "a6", "b1", "b2", "b4", "b6", "c1", "c2", "c3"]
    );
    assert!(
        expected[4].contains("denied_by=Some(Requests)"),
        "{}",
        expected[4]
    );
    assert!(
        expected[6].contains("denied_by=Some(Texts)"),
        "{}",
        expected[6]
    );
    assert_eq!(expected[9], "conflict");
    assert_eq!(expected[10], "conflict");
    assert!(expected[3].contains("dup=true"), "{}", expected[3]);
    // Kept: the admitted requests' (a1, b1, c1, a5, c3, and a1's retry keeps the first);
    // refused ones (a3, b3, b5) and conflicts keep nothing.
    assert_eq!(
        kept_with_prefix(&store, "one").await,
        ["-t0:a1", "-t0:a5", "-t1:b1", "-t2:c1", "-t2:c3"]
    );
}

async fn fresh_requests_commit_together(store: Store, _url: String) {
    let keys = script_keys(&store, "q").await;
    let queue = MeterQueue::start(store.clone(), 64);
    let at = T0 + 5 * 86_400 + 1;
    let mut tasks = Vec::new();
    for i in 0..40 {
        let (key, limits) = keys[2].clone();
        let queue = queue.clone();
        tasks.push(tokio::spawn(async move {
            let e = event(&format!("fresh-{i}"), &key.tenant, &key.prefix, 2, at);
            queue
                .meter(MeterItem {
                    key_id: key.id,
                    limits,
                    event: e,
                    predictions: Vec::new(),
                })
                .await
        }));
    }
    let mut remaining = Vec::new();
    for t in tasks {
        let m = t.await.unwrap().unwrap();
        assert!(m.decision.allowed && !m.duplicate);
        remaining.push(m.decision.requests.remaining);
    }
    remaining.sort();
    assert_eq!(
        remaining,
        (60..100).collect::<Vec<i64>>(),
        "each counted once, in turn"
    );
    let stats = queue.stats();
    let n = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(n(&stats.requests), 40);
    assert_eq!(
        n(&stats.one_by_one),
        0,
        "fresh requests under the limits go together"
    );
    assert!(n(&stats.batches) <= 40);
    // A retry among fresh requests sends its batch one by one, and is still right.
    let (key, limits) = keys[2].clone();
    let retry = MeterItem {
        key_id: key.id,
        limits,
        event: event("fresh-0", &key.tenant, &key.prefix, 2, at),
        predictions: Vec::new(),
    };
    let m = queue.meter(retry).await.unwrap();
    assert!(m.duplicate && m.decision.allowed);
    assert_eq!(m.decision.texts.remaining, 1000 - 80);
    assert_eq!(n(&stats.one_by_one), 1);
    let all = store.usage_events(&UsageFilter::default()).await.unwrap();
    assert_eq!(all.len(), 40);
    assert_eq!(all.iter().map(|e| e.texts).sum::<i64>(), 80);
}

async fn stale_limits_are_metered_against_the_database(store: Store, _url: String) {
    store.create_plan("p", 2, 100).await.unwrap();
    store.create_tenant("t").await.unwrap();
    let key = store.create_key("t", "p").await.unwrap();
    let at = T0 + 7 * 86_400 + 3;
    // The caller believes the plan allows 100 a minute; the database says 2.
    let items: Vec<MeterItem> = (0..3)
        .map(|i| MeterItem {
            key_id: key.id,
            limits: limits(100, 100),
            event: event(&format!("s{i}"), "t", &key.prefix, 1, at),
            predictions: Vec::new(),
        })
        .collect();
    let got: Vec<bool> = store
        .meter_batch(&items)
        .await
        .into_iter()
        .map(|r| r.unwrap().decision.allowed)
        .collect();
    assert_eq!(got, [true, true, false]);
    // Limits raised since the caller looked: the batch is still metered by the database's.
    store.update_plan("p", 2, 1).await.unwrap();
    let next = MeterItem {
        key_id: key.id,
        limits: limits(2, 100),
        event: event("s9", "t", &key.prefix, 1, at + 60),
        predictions: Vec::new(),
    };
    let m = store.meter_batch(&[next]).await.remove(0).unwrap();
    assert_eq!(m.decision.denied_by, Some(LimitKind::Texts));
    assert_eq!(m.decision.texts.limit, 1);
    assert_eq!(
        store
            .usage_events(&UsageFilter::default())
            .await
            .unwrap()
            .len(),
        2
    );
}

async fn replicas_batching_share_limits_exactly(store: Store, url: String) {
    store.create_plan("p", 50, 70).await.unwrap();
    store.create_tenant("t").await.unwrap();
    let key = store.create_key("t", "p").await.unwrap();
    let replica = Store::open(&url).await.unwrap();
    let queues = [
        MeterQueue::start(store.clone(), 16),
        MeterQueue::start(replica.clone(), 16),
    ];
    let at = T0 + 9 * 86_400 + 5;
    let mut tasks = Vec::new();
    for t in 0..8 {
        let queue = queues[t % 2].clone();
        let key = key.clone();
        tasks.push(tokio::spawn(async move {
            let mut admitted = Vec::new();
            for j in 0..15 {
                let id = format!("r{t}-{j}");
                // Texts: 1 or 2, so the texts limit (70) and the requests limit (50) both bite.
                let texts = 1 + (j % 2) as i64;
                let item = MeterItem {
                    key_id: key.id,
                    limits: limits(50, 70),
                    event: event(&id, "t", &key.prefix, texts, at),
                    predictions: Vec::new(),
                };
                let m = queue.meter(item).await.unwrap();
                if m.decision.allowed {
                    admitted.push((id, texts));
                }
            }
            admitted
        }));
    }
    let mut admitted = Vec::new();
    for t in tasks {
        admitted.extend(t.await.unwrap());
    }
    admitted.sort();
    let texts: i64 = admitted.iter().map(|a| a.1).sum();
    assert!(
        admitted.len() <= 50 && texts <= 70,
        "{} requests, {texts} texts",
        admitted.len()
    );
    assert!(
        admitted.len() == 50 || texts >= 69,
        "a limit was reached exactly: {} requests, {texts} texts",
        admitted.len()
    );
    let mut recorded: Vec<(String, i64)> = store
        .usage_events(&UsageFilter::default())
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.id, e.texts))
        .collect();
    recorded.sort();
    assert_eq!(
        recorded, admitted,
        "an event for exactly the admitted requests"
    );
    let d = store.peek(key.id, 0, at).await.unwrap();
    assert_eq!(d.requests.remaining, 50 - admitted.len() as i64);
    assert_eq!(d.texts.remaining, 70 - texts);
    replica.close().await;
}

async fn refusals_from_memory_match_the_database(store: Store, _url: String) {
    store.create_plan("p", 2, 5).await.unwrap();
    store.create_tenant("t").await.unwrap();
    let key = store.create_key("t", "p").await.unwrap();
    let queue = MeterQueue::start(store.clone(), 8);
    let plan = limits(2, 5);
    let at = T0 + 11 * 86_400 + 30;
    assert_eq!(
        queue.precheck(key.id, plan, 1, at),
        None,
        "nothing known yet"
    );
    for (i, texts) in [(0, 2), (1, 2)] {
        let item = MeterItem {
            key_id: key.id,
            limits: plan,
            event: event(&format!("p{i}"), "t", &key.prefix, texts, at),
            predictions: Vec::new(),
        };
        assert!(queue.meter(item).await.unwrap().decision.allowed);
    }
    let refusal = queue
        .precheck(key.id, plan, 1, at + 5)
        .expect("the minute is full");
    let database = store.peek(key.id, 1, at + 5).await.unwrap();
    assert_eq!(refusal, database, "the refusal is the database's");
    assert_eq!(refusal.denied_by, Some(LimitKind::Requests));
    assert_eq!(refusal.requests.reset_after, 25);
    // The next minute: the requests limit no longer refuses, the texts limit still does for 2
    // texts (1 left) and not for 1.
    let next = at + 60;
    let refusal = queue.precheck(key.id, plan, 2, next).expect("1 text left");
    assert_eq!(refusal.denied_by, Some(LimitKind::Texts));
    assert_eq!(refusal.texts.remaining, 1);
    assert_eq!(
        store.peek(key.id, 2, next).await.unwrap().denied_by,
        Some(LimitKind::Texts)
    );
    assert_eq!(queue.precheck(key.id, plan, 1, next), None);
    // A changed plan makes what was counted under the old one decide nothing.
    assert_eq!(queue.precheck(key.id, limits(3, 5), 1, at + 5), None);
}

async fn snapshot_answers_as_the_database(store: Store, _url: String) {
    for name in ["a-private", "b-private", "shared"] {
        let bytes = name.as_bytes();
        store
            .push_model(name, bytes, &hex_sha256(bytes), T0)
            .await
            .unwrap();
    }
    store.set_model_public("shared", true).await.unwrap();
    store.create_plan("p", 10, 100).await.unwrap();
    let mut keys = Vec::new();
    for tenant in ["a", "b", "c"] {
        store.create_tenant(tenant).await.unwrap();
        keys.push(store.create_key(tenant, "p").await.unwrap());
    }
    store.grant_model("a", "a-private").await.unwrap();
    store.grant_model("b", "b-private").await.unwrap();
    store.grant_model("b", "shared").await.unwrap();
    store.revoke_key("c", &keys[2].prefix).await.unwrap();
    let snapshot = store.access_snapshot().await.unwrap();
    for k in &keys {
        let database = store.authenticate(&k.key).await.unwrap();
        let memory = match snapshot.authenticate(&k.key) {
            KeyLookup::Valid(info) => Some(info.clone()),
            KeyLookup::Invalid => None,
            KeyLookup::Unknown => panic!("key {} missing from the snapshot", k.prefix),
        };
        assert_eq!(memory, database, "{}", k.prefix);
    }
    assert_eq!(
        snapshot.authenticate(&keys[2].key),
        KeyLookup::Invalid,
        "revoked"
    );
    // A key with a known prefix but another secret, and one with an unknown prefix.
    let forged = format!("{}{}", &keys[0].key[..KEY_PREFIX_LEN], "x".repeat(43));
    assert_eq!(snapshot.authenticate(&forged), KeyLookup::Unknown);
    assert_eq!(store.authenticate(&forged).await.unwrap(), None);
    assert_eq!(
        snapshot.authenticate(&format!("fw_{}", "z".repeat(43))),
        KeyLookup::Unknown
    );
    for bad in ["", "nonsense", "fw_short", "Bearer fw_x"] {
        assert_eq!(snapshot.authenticate(bad), KeyLookup::Invalid, "{bad:?}");
    }
    for tenant in ["a", "b", "c", "nobody"] {
        for model in ["a-private", "b-private", "shared", "missing"] {
            assert_eq!(
                snapshot.can_use(tenant, model),
                store.can_use(tenant, model).await.unwrap(),
                "{tenant} {model}"
            );
        }
        assert_eq!(
            snapshot.usable_models(tenant),
            store.usable_models(tenant).await.unwrap(),
            "{tenant}"
        );
    }
    assert_eq!(snapshot.limits("p"), Some(limits(10, 100)));
    assert_eq!(snapshot.limits("missing"), None);
    // A key created after the snapshot is unknown to it, not invalid.
    let later = store.create_key("a", "p").await.unwrap();
    assert_eq!(snapshot.authenticate(&later.key), KeyLookup::Unknown);
}

async fn epoch_moves_with_every_access_change(store: Store, _url: String) {
    let mut epoch = store.access_epoch().await.unwrap();
    fn moved(epoch: &mut i64, label: &str, now: i64) {
        assert!(
            now > *epoch,
            "{label}: the epoch did not move ({epoch} -> {now})"
        );
        *epoch = now;
    }
    store.create_plan("p", 10, 100).await.unwrap();
    moved(
        &mut epoch,
        "plan created",
        store.access_epoch().await.unwrap(),
    );
    store.create_plan("q", 20, 200).await.unwrap();
    moved(
        &mut epoch,
        "plan created",
        store.access_epoch().await.unwrap(),
    );
    store.create_tenant("t").await.unwrap();
    moved(
        &mut epoch,
        "tenant created",
        store.access_epoch().await.unwrap(),
    );
    let key = store.create_key("t", "p").await.unwrap();
    moved(
        &mut epoch,
        "key created",
        store.access_epoch().await.unwrap(),
    );
    let bytes = b"model bytes";
    store
        .push_model("m", bytes, &hex_sha256(bytes), T0)
        .await
        .unwrap();
    moved(
        &mut epoch,
        "model registered",
        store.access_epoch().await.unwrap(),
    );
    store.grant_model("t", "m").await.unwrap();
    moved(
        &mut epoch,
        "model granted",
        store.access_epoch().await.unwrap(),
    );
    store.set_model_public("m", true).await.unwrap();
    moved(
        &mut epoch,
        "model made public",
        store.access_epoch().await.unwrap(),
    );
    let updated = store.update_plan("p", 1, 5).await.unwrap();
    assert_eq!(
        (updated.requests_per_minute, updated.texts_per_month),
        (1, 5)
    );
    moved(
        &mut epoch,
        "plan changed",
        store.access_epoch().await.unwrap(),
    );
    assert_eq!(store.set_key_plan("t", &key.prefix, "q").await.unwrap(), 1);
    moved(
        &mut epoch,
        "key moved to another plan",
        store.access_epoch().await.unwrap(),
    );
    let snapshot = store.access_snapshot().await.unwrap();
    assert_eq!(snapshot.epoch(), epoch);
    match snapshot.authenticate(&key.key) {
        KeyLookup::Valid(info) => assert_eq!(info.plan, "q"),
        other => panic!("{other:?}"),
    }
    store.revoke_key("t", &key.prefix).await.unwrap();
    moved(
        &mut epoch,
        "key revoked",
        store.access_epoch().await.unwrap(),
    );
    // Serving and metering do not move it.
    let item = MeterItem {
        key_id: key.id,
        limits: limits(20, 200),
        event: event("e1", "t", &key.prefix, 1, T0 + 5),
        predictions: Vec::new(),
    };
    store.meter_batch(&[item]).await.remove(0).unwrap();
    assert_eq!(store.access_epoch().await.unwrap(), epoch);
    // Bad changes are refused and move nothing.
    assert!(matches!(
        store.update_plan("p", -1, 5).await,
        Err(Error::Invalid(_))
    ));
    assert!(matches!(
        store.update_plan("nope", 1, 5).await,
        Err(Error::NotFound(_))
    ));
    assert!(
        matches!(
            store.set_key_plan("t", &key.prefix, "q").await,
            Err(Error::NotFound(_))
        ),
        "a revoked key cannot change plan"
    );
    let other = store.create_key("t", "p").await.unwrap();
    let epoch = store.access_epoch().await.unwrap();
    assert!(matches!(
        store.set_key_plan("t", &other.prefix, "missing").await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        store.set_key_plan("nobody", &other.prefix, "q").await,
        Err(Error::NotFound(_))
    ));
    assert_eq!(store.access_epoch().await.unwrap(), epoch);
}
