//! `flywheel serve` processes on one store, end to end: two replicas share one key's
//! requests-per-minute limit exactly, apply a plan change and a revocation within a second and
//! follow a promotion within seconds; replicas killed
//! with SIGKILL under load lose no usage event or correction and record none twice, and leave a
//! database that passes its integrity check. Each test runs on SQLite
//! (several processes on one file) and, when `FLYWHEEL_TEST_POSTGRES_URL` is set, PostgreSQL.

mod common;
use common::*;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flywheel_store::{Store, UsageFilter};

/// Trains a tiny model file with the binary.
fn train(dir: &Path, out: &str, seed: &str) -> PathBuf {
    let mut csv = String::from("text,label\n");
    let pos = ["good film", "great plot", "lovely actors", "happy end"];
    let neg = ["bad film", "awful plot", "poor actors", "sad end"];
    for i in 0..24 {
        csv.push_str(&format!("{},pos\n{},neg\n", pos[i % 4], neg[i % 4]));
    }
    let data = dir.join("data.csv");
    std::fs::write(&data, csv).unwrap();
    let model = dir.join(out);
    let status = Command::new(env!("CARGO_BIN_EXE_flywheel"))
        .arg("train")
        .arg(&data)
        .arg("-o")
        .arg(&model)
        .args(["--epochs", "1", "--max-len", "8", "--num-words", "30"])
        .args(["--threads", "1", "--seed", seed])
        .output()
        .expect("flywheel train runs");
    assert!(status.status.success(), "training failed");
    model
}

/// A store holding model `m` (champion version 1, public), plan `p`, tenant `t`; returns a key.
fn seed_store(url: &str, dir: &Path, requests_per_minute: &str) -> String {
    let model = train(dir, "m1.fw", "1");
    flywheel(
        url,
        dir,
        &["models", "push", model.to_str().unwrap(), "--name", "m"],
    );
    flywheel(url, dir, &["models", "promote", "m", "1"]);
    flywheel(url, dir, &["models", "public", "m"]);
    flywheel(
        url,
        dir,
        &[
            "plans",
            "create",
            "p",
            "--requests-per-minute",
            requests_per_minute,
            "--texts-per-month",
            "100000000",
        ],
    );
    flywheel(url, dir, &["tenants", "create", "t"]);
    flywheel(
        url,
        dir,
        &["keys", "create", "--tenant", "t", "--plan", "p"],
    )
    .trim()
    .to_string()
}

fn classify_body(model: &str, texts: &[&str]) -> String {
    let inputs: Vec<String> = texts.iter().map(|t| format!("\"{t}\"")).collect();
    format!(
        "{{\"model\":\"{model}\",\"inputs\":[{}]}}",
        inputs.join(",")
    )
}

fn served_version(port: u16) -> Option<String> {
    let r = http(port, "GET", "/readyz", None, None, "").ok()?;
    let at = r.body.find("\"version\":\"")? + 11;
    Some(r.body[at..].split('"').next()?.to_string())
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn usage_events(url: &str) -> Vec<flywheel_store::UsageEvent> {
    runtime().block_on(async {
        let store = Store::open(url).await.unwrap();
        let events = store.usage_events(&UsageFilter::default()).await.unwrap();
        store.close().await;
        events
    })
}

#[test]
fn two_replicas_share_one_limit_and_follow_promotions() {
    on_both(|url, dir| {
        let key = seed_store(url, dir, "100");
        let replicas = [
            Replica::start(url, dir, free_port()),
            Replica::start(url, dir, free_port()),
        ];
        for r in &replicas {
            r.wait_ready();
        }
        // One fixed UTC minute must hold the whole burst.
        if 60 - unix_now() % 60 < 30 {
            std::thread::sleep(Duration::from_secs(60 - unix_now() % 60));
        }
        let ports: Vec<u16> = replicas.iter().map(|r| r.port).collect();
        let outcomes = Arc::new(Mutex::new(Vec::new()));
        let threads: Vec<_> = (0..6)
            .map(|t| {
                let (key, ports, outcomes) = (key.clone(), ports.clone(), Arc::clone(&outcomes));
                std::thread::spawn(move || {
                    for i in 0..25 {
                        let port = ports[(t + i) % 2];
                        let body = classify_body("m", &["good film"]);
                        let r = http(port, "POST", "/v1/classify", Some(&key), None, &body)
                            .expect("replica answers");
                        outcomes.lock().unwrap().push(r);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let outcomes = outcomes.lock().unwrap();
        let ok = outcomes.iter().filter(|r| r.status == 200).count();
        let limited: Vec<&HttpResponse> = outcomes.iter().filter(|r| r.status == 429).collect();
        assert_eq!(
            ok, 100,
            "exactly the plan's 100 requests succeed across both replicas"
        );
        assert_eq!(limited.len(), 50);
        for r in &limited {
            assert_eq!(r.header("x-ratelimit-limit-requests"), Some("100"));
            assert_eq!(r.header("x-ratelimit-remaining-requests"), Some("0"));
            let reset = r.header("x-ratelimit-reset-requests").unwrap();
            let secs = reset_seconds(reset);
            assert!(secs <= 60, "{reset}");
            let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
            assert!((1..=60).contains(&retry));
            assert!(r.header("x-ratelimit-remaining-texts").is_some());
            assert!(r.body.contains("rate_limited"), "{}", r.body);
        }
        for r in outcomes.iter().filter(|r| r.status == 200) {
            assert!(r.header("x-ratelimit-remaining-requests").is_some());
        }
        assert_eq!(usage_events(url).len(), 100);

        // A plan change and a revocation, made with the CLI on the database, reach both
        // replicas within a second (each holds keys and plans in memory, reloaded when the
        // database's access epoch moves).
        let body = classify_body("m", &["good film"]);
        flywheel(
            url,
            dir,
            &[
                "plans",
                "update",
                "p",
                "--requests-per-minute",
                "100",
                "--texts-per-month",
                "777",
            ],
        );
        let changed = Instant::now();
        for port in &ports {
            loop {
                let r = http(*port, "POST", "/v1/classify", Some(&key), None, &body).unwrap();
                if r.header("x-ratelimit-limit-texts") == Some("777") {
                    break;
                }
                assert!(
                    changed.elapsed() < Duration::from_secs(1),
                    "replica {port} still applies the old plan after 1 s"
                );
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let plan_seen = changed.elapsed();
        let prefix = &key[..11];
        flywheel(url, dir, &["keys", "revoke", "--tenant", "t", prefix]);
        let revoked = Instant::now();
        for port in &ports {
            loop {
                let r = http(*port, "POST", "/v1/classify", Some(&key), None, &body).unwrap();
                if r.status == 401 {
                    break;
                }
                assert!(
                    revoked.elapsed() < Duration::from_secs(1),
                    "replica {port} still accepts the revoked key after 1 s"
                );
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        eprintln!(
            "plan change applied by both replicas after {plan_seen:?}, revocation after {:?}",
            revoked.elapsed()
        );
        assert_eq!(
            usage_events(url).len(),
            100,
            "refused requests leave no usage"
        );

        // A promotion reaches both replicas (in about the registry's poll interval; the deadline
        // is generous so a busy machine cannot fail it, and the time taken is printed).
        let model = train(dir, "m2.fw", "2");
        flywheel(
            url,
            dir,
            &["models", "push", model.to_str().unwrap(), "--name", "m"],
        );
        let promoted = Instant::now();
        flywheel(url, dir, &["models", "promote", "m", "2"]);
        for port in &ports {
            while served_version(*port).as_deref() != Some("2") {
                assert!(
                    promoted.elapsed() < PROPAGATION_DEADLINE,
                    "replica {port} still serves {:?}",
                    served_version(*port)
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        eprintln!(
            "promotion served by both replicas after {:?}",
            promoted.elapsed()
        );
        flywheel(url, dir, &["models", "rollback", "m"]);
        for port in &ports {
            while served_version(*port).as_deref() != Some("1") {
                assert!(
                    promoted.elapsed() < 2 * PROPAGATION_DEADLINE,
                    "replica {port} still serves {:?} after the rollback",
                    served_version(*port)
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    });
}

/// How long a promotion or rollback may take to reach every replica before the test fails: far
/// above the poll interval, so only a promotion that never arrives fails it.
const PROPAGATION_DEADLINE: Duration = Duration::from_secs(60);

/// Sends one request until it gets a definitive answer (a status other than 503), retrying
/// with the same request id across connection failures (a killed replica) and 503s.
fn until_answered(
    port: u16,
    key: &str,
    path: &str,
    id: &str,
    body: &str,
    retries: &AtomicUsize,
) -> u16 {
    let started = Instant::now();
    loop {
        match http(port, "POST", path, Some(key), Some(id), body) {
            Ok(r) if r.status != 503 => return r.status,
            _ => {
                retries.fetch_add(1, Ordering::Relaxed);
                assert!(
                    started.elapsed() < Duration::from_secs(60),
                    "request {id} never answered"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// What the database holds after the kills: feedback request ids, and whether it passes its
/// integrity checks (SQLite: `integrity_check` and `foreign_key_check`; PostgreSQL: amcheck on
/// every B-tree index).
fn feedback_ids_and_integrity(url: &str) -> (Vec<String>, bool) {
    runtime().block_on(async {
        let store = Store::open(url).await.unwrap();
        let ids: Vec<String> = store
            .feedback_since("m", 0)
            .await
            .unwrap()
            .into_iter()
            .map(|f| f.feedback.request_id)
            .collect();
        let ok = match &store {
            Store::Sqlite(s) => {
                let check: String = sqlx::query_scalar("PRAGMA integrity_check")
                    .fetch_one(s.pool())
                    .await
                    .unwrap();
                let dangling: Vec<sqlx::sqlite::SqliteRow> =
                    sqlx::query("PRAGMA foreign_key_check")
                        .fetch_all(s.pool())
                        .await
                        .unwrap();
                check == "ok" && dangling.is_empty()
            }
            Store::Postgres(p) => {
                // .ci/postgres-setup installs amcheck in template1 (creating it needs a
                // superuser); elsewhere the index check is skipped, loudly.
                let amcheck: Option<i32> =
                    sqlx::query_scalar("SELECT 1 FROM pg_extension WHERE extname = 'amcheck'")
                        .fetch_optional(p.pool())
                        .await
                        .unwrap();
                if amcheck.is_none() {
                    eprintln!("amcheck is not installed: skipping the PostgreSQL index check");
                    store.close().await;
                    return (ids, true);
                }
                let indexes: Vec<String> = sqlx::query_scalar(
                    "SELECT c.relname::text FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
                     JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_am a ON a.oid = c.relam \
                     WHERE n.nspname = 'public' AND a.amname = 'btree'",
                )
                .fetch_all(p.pool())
                .await
                .unwrap();
                for index in &indexes {
                    sqlx::query(&format!("SELECT bt_index_check('{index}'::regclass, true)"))
                        .execute(p.pool())
                        .await
                        .unwrap();
                }
                !indexes.is_empty()
            }
        };
        store.close().await;
        (ids, ok)
    })
}

#[test]
fn sigkill_under_load_loses_and_duplicates_no_usage_event_or_feedback() {
    on_both(|url, dir| {
        let key = seed_store(url, dir, "1000000");
        let port = free_port();
        let mut replica = Replica::start(url, dir, port);
        replica.wait_ready();
        let stop = Arc::new(AtomicBool::new(false));
        let retries = Arc::new(AtomicUsize::new(0));
        let answered = Arc::new(Mutex::new(Vec::new()));
        // What each classify request sent: request id -> (texts, characters).
        let sent = Arc::new(Mutex::new(BTreeMap::new()));
        let clients: Vec<_> = (0..4)
            .map(|t| {
                let (key, stop, retries, answered, sent) = (
                    key.clone(),
                    Arc::clone(&stop),
                    Arc::clone(&retries),
                    Arc::clone(&answered),
                    Arc::clone(&sent),
                );
                std::thread::spawn(move || {
                    let mut i = 0;
                    while !stop.load(Ordering::Relaxed) {
                        i += 1;
                        let id = format!("load-{t}-{i}");
                        if i % 2 == 0 {
                            // A correction; every 3rd names a label the model lacks: 422.
                            let label = if i % 3 == 0 { "bogus" } else { "pos" };
                            let body = format!(
                                "{{\"model\":\"m\",\"text\":\"fine film {i}\",\"label\":\"{label}\"}}"
                            );
                            let status =
                                until_answered(port, &key, "/v1/feedback", &id, &body, &retries);
                            answered.lock().unwrap().push((id, status, true));
                            continue;
                        }
                        // Every 5th classify names a model that does not exist: a 404, unmetered.
                        let model = if i % 5 == 0 { "missing" } else { "m" };
                        let texts = ["good film", "awful plot", "happy end"];
                        let texts = &texts[..1 + i % 3];
                        let characters: usize = texts.iter().map(|t| t.chars().count()).sum();
                        sent.lock()
                            .unwrap()
                            .insert(id.clone(), (texts.len() as i64, characters as i64));
                        let body = classify_body(model, texts);
                        let status =
                            until_answered(port, &key, "/v1/classify", &id, &body, &retries);
                        answered.lock().unwrap().push((id, status, false));
                    }
                })
            })
            .collect();
        let kills = 5;
        for _ in 0..kills {
            std::thread::sleep(Duration::from_millis(800));
            replica.kill();
            replica = Replica::start(url, dir, port);
        }
        replica.wait_ready();
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::Relaxed);
        for c in clients {
            c.join().unwrap();
        }
        let answered = answered.lock().unwrap();
        let ok: BTreeSet<&str> = answered
            .iter()
            .filter(|(_, s, feedback)| *s == 200 && !feedback)
            .map(|(id, _, _)| id.as_str())
            .collect();
        let refused = answered
            .iter()
            .filter(|(_, s, feedback)| *s == 404 && !feedback)
            .count();
        let fed: BTreeSet<&str> = answered
            .iter()
            .filter(|(_, s, feedback)| *feedback && (*s == 201 || *s == 200))
            .map(|(id, _, _)| id.as_str())
            .collect();
        let bad_labels = answered
            .iter()
            .filter(|(_, s, feedback)| *feedback && *s == 422)
            .count();
        assert_eq!(
            ok.len() + refused + fed.len() + bad_labels,
            answered.len(),
            "only 200/404 (classify) and 201/200/422 (feedback) expected"
        );
        let events = usage_events(url);
        let recorded: BTreeSet<&str> = events.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(recorded.len(), events.len(), "no id recorded twice");
        let missing: Vec<_> = ok.difference(&recorded).collect();
        let extra: Vec<_> = recorded.difference(&ok).collect();
        assert!(missing.is_empty(), "2xx without a usage event: {missing:?}");
        assert!(extra.is_empty(), "usage events without a 2xx: {extra:?}");
        // Each event counts what its request sent: a retry after a kill neither loses nor adds
        // texts.
        let sent = sent.lock().unwrap();
        for e in &events {
            assert_eq!(
                sent.get(&e.id),
                Some(&(e.texts, e.characters)),
                "usage event {} counts {} texts / {} characters",
                e.id,
                e.texts,
                e.characters
            );
        }
        let (stored, intact) = feedback_ids_and_integrity(url);
        let stored_set: BTreeSet<&str> = stored.iter().map(String::as_str).collect();
        assert_eq!(stored_set.len(), stored.len(), "a correction stored twice");
        let lost: Vec<_> = fed.difference(&stored_set).collect();
        let unasked: Vec<_> = stored_set.difference(&fed).collect();
        assert!(lost.is_empty(), "2xx corrections not stored: {lost:?}");
        assert!(
            unasked.is_empty(),
            "corrections stored without a 2xx: {unasked:?}"
        );
        assert!(intact, "the database failed its integrity check");
        let retried = retries.load(Ordering::Relaxed);
        assert!(
            ok.len() > 40 && refused > 5 && fed.len() > 20 && bad_labels > 5,
            "{} ok, {refused} refused, {} corrections, {bad_labels} bad labels",
            ok.len(),
            fed.len()
        );
        assert!(retried > 0, "the kills must hit requests in flight");
        eprintln!(
            "{kills} kills: {} classify successes, each with exactly one usage event; {refused} 404s \
             with none; {} corrections stored exactly once, {bad_labels} refused and not stored; \
             {retried} retried attempts; integrity checks passed",
            ok.len(),
            fed.len()
        );
    });
}

/// Seconds of an OpenAI-style reset duration (`45s`, `1m0s`, `1h2m3s`).
fn reset_seconds(d: &str) -> u64 {
    let mut total = 0;
    let mut num = String::new();
    for c in d.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: u64 = num.parse().unwrap_or_else(|_| panic!("bad duration {d}"));
        num.clear();
        total += n * match c {
            'd' => 86_400,
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => panic!("bad duration {d}"),
        };
    }
    assert!(num.is_empty(), "bad duration {d}");
    total
}
