//! The server on a store: API keys, tenant isolation, plan limits with `x-ratelimit-*`
//! headers, usage metering (one event per 2xx, retries idempotent) and serving the registry's
//! champions as they change. Every test runs on SQLite and, when `FLYWHEEL_TEST_POSTGRES_URL`
//! is set, on PostgreSQL.

mod common;

use std::future::Future;
use std::time::{Duration, Instant};

use common::{model_files, Resp, TestServer, TOKEN};
use flywheel_server::ServerConfig;
use flywheel_store::testing::ScratchDatabase;
use flywheel_store::{Alias, NewKey, Store, UsageFilter};
use hyper::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

fn sha_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

async fn on_sqlite<F, Fut>(test: F)
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("flywheel.db").display());
    test(url).await;
}

async fn on_postgres<F, Fut>(test: F)
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(db) = ScratchDatabase::create().await.unwrap() else {
        eprintln!("FLYWHEEL_TEST_POSTGRES_URL is not set: skipping the PostgreSQL run");
        return;
    };
    let outcome = tokio::spawn(test(db.url.clone())).await;
    db.drop_now().await.unwrap();
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::on_sqlite(super::$name).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::on_postgres(super::$name).await
                }
            )*
        }
    };
}

on_both!(
    keys_are_required,
    tenants_see_only_their_models_and_usage,
    limits_answer_429_with_headers,
    one_usage_event_per_success,
    follows_the_registry_champion,
);

/// Pushes a model file as a new version of `name` and returns its number.
async fn push(store: &Store, name: &str, path: &std::path::Path) -> i64 {
    let bytes = std::fs::read(path).unwrap();
    store
        .push_model(name, &bytes, &sha_hex(&bytes), 0)
        .await
        .unwrap()
}

/// A store with models `a-private` (granted to tenant a), `b-private` (tenant b) and
/// `shared` (public), each with a champion, plan `basic` and one key per tenant.
async fn seeded(
    url: &str,
    requests_per_minute: i64,
    texts_per_month: i64,
) -> (Store, NewKey, NewKey) {
    let store = Store::open(url).await.unwrap();
    let (a, b) = model_files();
    for (name, file) in [("a-private", a), ("b-private", b), ("shared", a)] {
        let v = push(&store, name, file).await;
        store.set_alias(name, Alias::Champion, v).await.unwrap();
    }
    store.set_model_public("shared", true).await.unwrap();
    store
        .create_plan("basic", requests_per_minute, texts_per_month)
        .await
        .unwrap();
    store.create_tenant("a").await.unwrap();
    store.create_tenant("b").await.unwrap();
    store.grant_model("a", "a-private").await.unwrap();
    store.grant_model("b", "b-private").await.unwrap();
    let ka = store.create_key("a", "basic").await.unwrap();
    let kb = store.create_key("b", "basic").await.unwrap();
    (store, ka, kb)
}

fn store_config(url: &str) -> ServerConfig {
    ServerConfig {
        database_url: Some(url.to_string()),
        threads: 2,
        admin_token: Some(TOKEN.to_string()),
        registry_poll: Duration::from_millis(100),
        ..ServerConfig::default()
    }
}

async fn call(
    server: &TestServer,
    path: &str,
    key: Option<&str>,
    request_id: Option<&str>,
    body: &Value,
) -> Resp {
    let auth = key.map(|k| format!("Bearer {k}"));
    let mut headers = vec![("content-type", "application/json")];
    if let Some(a) = &auth {
        headers.push(("authorization", a.as_str()));
    }
    if let Some(id) = request_id {
        headers.push(("x-request-id", id));
    }
    server
        .send(Method::POST, path, &headers, body.to_string())
        .await
}

async fn get(server: &TestServer, path: &str, key: &str) -> Resp {
    let auth = format!("Bearer {key}");
    server
        .send(Method::GET, path, &[("authorization", &auth)], Vec::new())
        .await
}

fn classify(model: &str, inputs: &[&str]) -> Value {
    json!({"model": model, "inputs": inputs})
}

fn header(r: &Resp, name: &str) -> String {
    r.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no {name} header in {:?}", r.headers))
        .to_string()
}

async fn keys_are_required(url: String) {
    let (store, ka, _) = seeded(&url, 1000, 1_000_000).await;
    let server = common::start(store_config(&url)).await;
    let body = classify("shared", &["great"]);
    let r = call(&server, "/v1/classify", None, None, &body).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.error_type(), "unauthorized");
    assert_eq!(header(&r, "www-authenticate"), "Bearer");
    for bad in ["fw_not-a-real-key-at-all", "nonsense", ""] {
        let r = call(&server, "/v1/classify", Some(bad), None, &body).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{bad:?}");
    }
    let r = call(&server, "/v1/classify", Some(&ka.key), None, &body).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.json()["version"], "1");
    // The admin token may call every model, unmetered.
    let r = call(
        &server,
        "/v1/classify",
        Some(TOKEN),
        None,
        &classify("b-private", &["x"]),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.headers.get("x-ratelimit-limit-requests").is_none());
    // A changed plan applies within a second (keys and plans are held in memory and reloaded
    // when the database's access epoch moves), and so does a revocation.
    store.update_plan("basic", 1000, 999).await.unwrap();
    let changed = Instant::now();
    loop {
        let r = call(&server, "/v1/classify", Some(&ka.key), None, &body).await;
        assert_eq!(r.status, StatusCode::OK);
        if header(&r, "x-ratelimit-limit-texts") == "999" {
            break;
        }
        assert!(
            changed.elapsed() < Duration::from_secs(1),
            "plan change not seen after 1 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let plan_seen = changed.elapsed();
    store.revoke_key("a", &ka.prefix).await.unwrap();
    let revoked = Instant::now();
    loop {
        let r = call(&server, "/v1/classify", Some(&ka.key), None, &body).await;
        if r.status == StatusCode::UNAUTHORIZED {
            break;
        }
        assert_eq!(r.status, StatusCode::OK);
        assert!(
            revoked.elapsed() < Duration::from_secs(1),
            "revoked key still served after 1 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!(
        "plan change seen after {plan_seen:?}, revocation after {:?}",
        revoked.elapsed()
    );
    // /v1/models and /v1/usage need a key too; health and metrics do not.
    assert_eq!(
        server.get("/v1/models").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        server.get("/v1/usage").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(server.get("/healthz").await.status, StatusCode::OK);
    assert_eq!(server.get("/readyz").await.status, StatusCode::OK);
    server.stop().await;
    store.close().await;
}

async fn tenants_see_only_their_models_and_usage(url: String) {
    let (store, ka, kb) = seeded(&url, 1000, 1_000_000).await;
    let server = common::start(store_config(&url)).await;
    let r = call(
        &server,
        "/v1/classify",
        Some(&ka.key),
        None,
        &classify("b-private", &["x"]),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.error_type(), "forbidden");
    let r = call(
        &server,
        "/v1/explain",
        Some(&ka.key),
        None,
        &json!({"model": "b-private", "input": "x"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = call(
        &server,
        "/v1/classify",
        Some(&ka.key),
        None,
        &classify("missing", &["x"]),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    for (key, own) in [(&ka, "a-private"), (&kb, "b-private")] {
        let r = call(
            &server,
            "/v1/classify",
            Some(&key.key),
            None,
            &classify(own, &["great", "awful"]),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK);
        let r = call(
            &server,
            "/v1/explain",
            Some(&key.key),
            None,
            &json!({"model": "shared", "input": "great w1"}),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK);
        let models = get(&server, "/v1/models", &key.key).await.json();
        let names: Vec<&str> = models["models"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, [own, "shared"]);
    }
    let admin_models = get(&server, "/v1/models", TOKEN).await.json();
    assert_eq!(admin_models["models"].as_array().unwrap().len(), 3);

    let usage = get(&server, "/v1/usage", &ka.key).await.json();
    let rows = usage["usage"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{usage}");
    assert!(rows
        .iter()
        .all(|r| r["tenant"] == "a" && r["key_prefix"] == ka.prefix.as_str()));
    let texts: i64 = rows.iter().map(|r| r["texts"].as_i64().unwrap()).sum();
    assert_eq!(texts, 3);
    let r = get(&server, "/v1/usage?tenant=b", &ka.key).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = get(&server, "/v1/usage?from=yesterday", &ka.key).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = get(&server, "/v1/usage?colour=red", &ka.key).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let all = get(&server, "/v1/usage", TOKEN).await.json();
    assert_eq!(all["usage"].as_array().unwrap().len(), 4);
    let only_b = get(
        &server,
        "/v1/usage?tenant=b&from=2000-01-01&to=2999-12-31",
        TOKEN,
    )
    .await
    .json();
    assert!(only_b["usage"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["tenant"] == "b"));
    assert_eq!(only_b["usage"].as_array().unwrap().len(), 2);
    server.stop().await;
    store.close().await;
}

/// Waits until at least `left` seconds remain in the current UTC minute.
async fn fresh_minute(left: u64) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    if 60 - now % 60 < left {
        tokio::time::sleep(Duration::from_secs(60 - now % 60)).await;
    }
}

async fn limits_answer_429_with_headers(url: String) {
    let (store, ka, kb) = seeded(&url, 3, 5).await;
    let server = common::start(store_config(&url)).await;
    fresh_minute(20).await;
    for i in 0..3 {
        let r = call(
            &server,
            "/v1/classify",
            Some(&ka.key),
            None,
            &classify("shared", &["x"]),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(header(&r, "x-ratelimit-limit-requests"), "3");
        assert_eq!(
            header(&r, "x-ratelimit-remaining-requests"),
            (2 - i).to_string()
        );
        assert!(header(&r, "x-ratelimit-reset-requests").ends_with('s'));
        assert_eq!(header(&r, "x-ratelimit-limit-texts"), "5");
        assert_eq!(
            header(&r, "x-ratelimit-remaining-texts"),
            (4 - i).to_string()
        );
    }
    let r = call(
        &server,
        "/v1/classify",
        Some(&ka.key),
        None,
        &classify("shared", &["x"]),
    )
    .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.error_type(), "rate_limited");
    assert_eq!(header(&r, "x-ratelimit-remaining-requests"), "0");
    assert_eq!(header(&r, "x-ratelimit-remaining-texts"), "2");
    let retry: u64 = header(&r, "retry-after").parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    // Keys are limited separately; b's texts: 3 of 5 fit, then 3 more do not.
    let r = call(
        &server,
        "/v1/classify",
        Some(&kb.key),
        None,
        &classify("shared", &["x", "y", "z"]),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = call(
        &server,
        "/v1/classify",
        Some(&kb.key),
        None,
        &classify("shared", &["x", "y", "z"]),
    )
    .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&r, "x-ratelimit-remaining-texts"), "2");
    assert!(
        header(&r, "x-ratelimit-reset-texts").contains('d')
            || header(&r, "x-ratelimit-reset-texts").contains('h')
    );
    // Refused requests leave no usage.
    let events = store.usage_events(&UsageFilter::default()).await.unwrap();
    assert_eq!(events.len(), 4);
    server.stop().await;
    store.close().await;
}

async fn one_usage_event_per_success(url: String) {
    let (store, ka, _) = seeded(&url, 1000, 1_000_000).await;
    let server = common::start(store_config(&url)).await;
    let body = classify("a-private", &["great w1", "awful"]);
    let r = call(
        &server,
        "/v1/classify",
        Some(&ka.key),
        Some("req-0001"),
        &body,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(header(&r, "x-request-id"), "req-0001");
    // A retry with the same id and body is answered again and not billed twice.
    let r = call(
        &server,
        "/v1/classify",
        Some(&ka.key),
        Some("req-0001"),
        &body,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    // The same id for another request is a conflict, not a free request.
    let other = classify("a-private", &["something else"]);
    let r = call(
        &server,
        "/v1/classify",
        Some(&ka.key),
        Some("req-0001"),
        &other,
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.error_type(), "idempotency_conflict");
    // Failures leave nothing.
    let r = call(
        &server,
        "/v1/classify",
        Some(&ka.key),
        Some("req-bad"),
        &json!({"model": "a-private", "inputs": []}),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let events = store.usage_events(&UsageFilter::default()).await.unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    let e = &events[0];
    assert_eq!(
        (
            e.id.as_str(),
            e.tenant.as_str(),
            e.key_prefix.as_str(),
            e.model.as_str()
        ),
        ("req-0001", "a", ka.prefix.as_str(), "a-private")
    );
    assert_eq!((e.version, e.texts, e.characters), (1, 2, 13));
    assert_eq!(e.request_sha256, sha_hex(body.to_string().as_bytes()));
    // Without a client id the server makes one, and every success is recorded.
    for _ in 0..5 {
        let r = call(&server, "/v1/classify", Some(&ka.key), None, &body).await;
        assert_eq!(r.status, StatusCode::OK);
    }
    assert_eq!(
        store
            .usage_events(&UsageFilter::default())
            .await
            .unwrap()
            .len(),
        6
    );
    // The group commit's counters: every metered request (the retry and the conflict too)
    // went through it, in at most as many commits.
    let metrics = String::from_utf8(server.get("/metrics").await.body.to_vec()).unwrap();
    let counter = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} in /metrics"))
            .trim()
            .parse()
            .unwrap()
    };
    assert_eq!(counter("flywheel_metered_requests_total"), 8);
    let commits = counter("flywheel_meter_commits_total");
    assert!((1..=8).contains(&commits), "{commits}");
    // The retry and the reused id were metered one by one (they are not new events).
    assert!(counter("flywheel_metered_one_by_one_total") >= 2);
    server.stop().await;
    store.close().await;
}

/// Polls `/readyz` until `model` is served at `version` (failing after a generous minute).
async fn wait_for_version(server: &TestServer, model: &str, version: &str) -> Duration {
    let started = Instant::now();
    loop {
        let ready = server.get("/readyz").await.json();
        let served = ready["models"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["name"] == model && m["version"] == version);
        if served {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{model} v{version} not served: {ready}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn follows_the_registry_champion(url: String) {
    let (store, ka, _) = seeded(&url, 1000, 1_000_000).await;
    let server = common::start(store_config(&url)).await;
    let (_, b) = model_files();
    let v2 = push(&store, "a-private", b).await;
    // Pushing alone changes nothing; promoting does, without a restart.
    tokio::time::sleep(Duration::from_millis(300)).await;
    wait_for_version(&server, "a-private", "1").await;
    store
        .set_alias("a-private", Alias::Champion, v2)
        .await
        .unwrap();
    wait_for_version(&server, "a-private", "2").await;
    let r = call(
        &server,
        "/v1/classify",
        Some(&ka.key),
        None,
        &classify("a-private", &["x"]),
    )
    .await;
    assert_eq!(r.json()["version"], "2");
    store.rollback("a-private").await.unwrap();
    wait_for_version(&server, "a-private", "1").await;
    // A new model appears once it has a champion; the admin reload syncs at once.
    let v = push(&store, "late", b).await;
    store.set_alias("late", Alias::Champion, v).await.unwrap();
    let r = server
        .send(
            Method::POST,
            "/v1/admin/models/a-private/reload",
            &[("authorization", &format!("Bearer {TOKEN}"))],
            Vec::new(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    wait_for_version(&server, "late", "1").await;
    // A stored artifact that does not load leaves the champion serving.
    let junk = b"not a model".to_vec();
    let bad = store
        .push_model("a-private", &junk, &sha_hex(&junk), 0)
        .await
        .unwrap();
    store
        .set_alias("a-private", Alias::Champion, bad)
        .await
        .unwrap();
    let failed = "flywheel_model_reloads_total{model=\"a-private\",result=\"error\"} 1";
    let served = &server;
    let metrics =
        || async move { String::from_utf8(served.get("/metrics").await.body.to_vec()).unwrap() };
    let started = Instant::now();
    while !metrics().await.contains(failed) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the poller never tried the broken version: {}",
            metrics().await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    wait_for_version(&server, "a-private", "1").await;
    // Two more syncs (the admin reload syncs at once) do not try it again.
    for _ in 0..2 {
        let r = server
            .send(
                Method::POST,
                "/v1/admin/models/a-private/reload",
                &[("authorization", &format!("Bearer {TOKEN}"))],
                Vec::new(),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        assert_eq!(r.json()["version"], "1");
    }
    let metrics = metrics().await;
    assert!(
        metrics.contains(failed),
        "one failed attempt, not retried on every poll: {metrics}"
    );
    server.stop().await;
    store.close().await;
}
