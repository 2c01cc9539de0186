//! The feedback loop end to end, on the real server: corrections sent through the API lead to
//! an automatic retrain whose challenger is promoted and changes the served predictions; a
//! deliberately worse challenger is rejected with its reason recorded; rollback restores the
//! previous version; and no raw personal data from feedback or logged predictions reaches the
//! database. Runs on SQLite and, when `FLYWHEEL_TEST_POSTGRES_URL` is set, PostgreSQL.

mod common;
use common::*;

use std::path::Path;
use std::time::{Duration, Instant};

use flywheel_store::Store;
use serde_json::Value;

const POS_OLD: [&str; 4] = ["good", "great", "fine", "nice"];
const NEG_OLD: [&str; 4] = ["bad", "awful", "poor", "ugly"];
const POS_NEW: [&str; 4] = ["stellar", "superb", "brilliant", "splendid"];
const NEG_NEW: [&str; 4] = ["dire", "dismal", "dreadful", "abysmal"];
const FILLER: [&str; 4] = [
    "the film was",
    "that show is",
    "our meal felt",
    "this book seems",
];

/// `n` sentences `FILLER word` with their labels, cycling through the words.
fn sentences(pos: &[&str], neg: &[&str], n: usize, offset: usize) -> Vec<(String, &'static str)> {
    (0..n)
        .map(|i| {
            let k = i + offset;
            if i % 2 == 0 {
                (format!("{} {}", FILLER[k % 4], pos[(k / 2) % 4]), "pos")
            } else {
                (
                    format!("{} {}", FILLER[(k + 1) % 4], neg[(k / 2) % 4]),
                    "neg",
                )
            }
        })
        .collect()
}

fn write_csv(path: &Path, rows: &[(String, &str)]) {
    let mut csv = String::from("text,label\n");
    for (t, l) in rows {
        csv.push_str(&format!("{t},{l}\n"));
    }
    std::fs::write(path, csv).unwrap();
}

fn json(r: &HttpResponse) -> Value {
    serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{e}: {}", r.body))
}

fn classify(port: u16, key: &str, texts: &[String], log: bool) -> (String, Vec<String>) {
    let body = serde_json::json!({"model": "m", "inputs": texts, "log": log}).to_string();
    let r = http(port, "POST", "/v1/classify", Some(key), None, &body).unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    if log {
        assert_eq!(r.header("x-prediction-logged"), Some("true"));
    }
    let labels = json(&r)["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["label"].as_str().unwrap().to_string())
        .collect();
    (r.header("x-request-id").unwrap().to_string(), labels)
}

fn feedback(port: u16, key: &str, body: Value) -> Value {
    let r = http(
        port,
        "POST",
        "/v1/feedback",
        Some(key),
        None,
        &body.to_string(),
    )
    .unwrap();
    assert_eq!(r.status, 201, "{}", r.body);
    json(&r)
}

fn decisions(url: &str) -> Vec<flywheel_store::RetrainDecision> {
    runtime().block_on(async {
        let store = Store::open(url).await.unwrap();
        let d = store.decisions("m").await.unwrap();
        store.close().await;
        d
    })
}

/// Waits until `done(decisions)` holds (retrains run in the background).
fn wait_for(url: &str, what: &str, done: impl Fn(&[flywheel_store::RetrainDecision]) -> bool) {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(120) {
        if done(&decisions(url)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("timed out waiting for {what}: {:#?}", decisions(url));
}

fn served_version(port: u16) -> String {
    let r = http(port, "GET", "/readyz", None, None, "").unwrap();
    json(&r)["models"][0]["version"]
        .as_str()
        .unwrap()
        .to_string()
}

fn wait_served(port: u16, version: &str) {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        if served_version(port) == version {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "version {version} never served (serving {})",
        served_version(port)
    );
}

fn accuracy(predicted: &[String], truth: &[(String, &str)]) -> f64 {
    let right = predicted
        .iter()
        .zip(truth)
        .filter(|(p, t)| p.as_str() == t.1)
        .count();
    right as f64 / truth.len() as f64
}

const PII: [&str; 5] = [
    "jane.doe@example.com",
    "+1 415 555 0132",
    "4111 1111 1111 1111",
    "11010519491231002X",
    "13812345678",
];

/// Every value of every column of every table, byte columns (BLOB, BYTEA: the model artifacts)
/// decoded as the bytes they hold rather than rendered as hex, plus (SQLite) the raw files.
fn database_dump(url: &str) -> String {
    let mut all = String::new();
    if let Some(path) = url.strip_prefix("sqlite://") {
        for suffix in ["", "-wal", "-shm"] {
            if let Ok(bytes) = std::fs::read(format!("{path}{suffix}")) {
                all.push_str(&String::from_utf8_lossy(&bytes));
            }
        }
    }
    let values: Vec<Vec<u8>> = runtime().block_on(async {
        let mut values = Vec::new();
        match Store::open(url).await.unwrap() {
            Store::Sqlite(s) => {
                let columns: Vec<(String, String)> = sqlx::query_as(
                    "SELECT t.name, c.name FROM sqlite_master t, pragma_table_info(t.name) c \
                     WHERE t.type = 'table'",
                )
                .fetch_all(s.pool())
                .await
                .unwrap();
                for (table, column) in columns {
                    // CAST AS BLOB: text as its UTF-8 bytes, a BLOB as it is.
                    let sql = format!("SELECT CAST(\"{column}\" AS BLOB) FROM \"{table}\"");
                    let rows: Vec<Option<Vec<u8>>> =
                        sqlx::query_scalar(&sql).fetch_all(s.pool()).await.unwrap();
                    values.extend(rows.into_iter().flatten());
                }
                s.close().await;
            }
            Store::Postgres(p) => {
                let columns: Vec<(String, String, String)> = sqlx::query_as(
                    "SELECT table_name::text, column_name::text, data_type::text \
                     FROM information_schema.columns WHERE table_schema = 'public'",
                )
                .fetch_all(p.pool())
                .await
                .unwrap();
                for (table, column, data_type) in columns {
                    let sql = if data_type == "bytea" {
                        format!("SELECT \"{column}\" FROM \"{table}\"")
                    } else {
                        format!("SELECT convert_to(\"{column}\"::text, 'UTF8') FROM \"{table}\"")
                    };
                    let rows: Vec<Option<Vec<u8>>> =
                        sqlx::query_scalar(&sql).fetch_all(p.pool()).await.unwrap();
                    values.extend(rows.into_iter().flatten());
                }
                p.close().await;
            }
        }
        values
    });
    for v in values {
        all.push_str(&String::from_utf8_lossy(&v));
        all.push('\n');
    }
    all
}

fn the_loop(url: &str, dir: &Path) {
    // Champion v1 knows only the "old" sentiment words; the frozen holdout also has new ones.
    let base = sentences(&POS_OLD, &NEG_OLD, 64, 0);
    let mut holdout = sentences(&POS_OLD, &NEG_OLD, 16, 1);
    holdout.extend(sentences(&POS_NEW, &NEG_NEW, 16, 1));
    write_csv(&dir.join("base.csv"), &base);
    write_csv(&dir.join("holdout.csv"), &holdout);
    let model = dir.join("m1.fw");
    flywheel(
        url,
        dir,
        &[
            "train",
            "base.csv",
            "-o",
            "m1.fw",
            "--model",
            "fasttext",
            "--epochs",
            "30",
            "--lr",
            "0.5",
            "--dim",
            "16",
            "--threads",
            "1",
            "--seed",
            "7",
        ],
    );
    assert!(model.exists());
    flywheel(
        url,
        dir,
        &[
            "models",
            "push",
            "m1.fw",
            "--name",
            "m",
            "--data",
            "base.csv",
            "--holdout",
            "holdout.csv",
        ],
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
            "100000",
            "--texts-per-month",
            "100000000",
        ],
    );
    flywheel(url, dir, &["tenants", "create", "t"]);
    let key = flywheel(
        url,
        dir,
        &["keys", "create", "--tenant", "t", "--plan", "p"],
    )
    .trim()
    .to_string();

    let port = free_port();
    let server = Replica::start_with(
        url,
        dir,
        port,
        &["--retrain-after", "24", "--log-predictions", "0"],
    );
    server.wait_ready();
    assert_eq!(served_version(port), "1");

    // New words: the champion cannot know them.
    let probe = sentences(&POS_NEW, &NEG_NEW, 16, 3);
    let probe_texts: Vec<String> = probe.iter().map(|p| p.0.clone()).collect();
    let (_, before) = classify(port, &key, &probe_texts, false);
    let acc_before = accuracy(&before, &probe);
    assert!(
        acc_before < 0.85,
        "v1 already knows the new words: {acc_before}"
    );

    // Corrections: 12 by request id (predictions logged on request, some with personal data),
    // 12 as labelled texts.
    let fresh = sentences(&POS_NEW, &NEG_NEW, 24, 0);
    let logged_texts: Vec<String> = fresh[..12]
        .iter()
        .enumerate()
        .map(|(i, (t, _))| format!("{t} {}", PII[i % PII.len()]))
        .collect();
    let (request_id, _) = classify(port, &key, &logged_texts, true);
    for (i, (_, label)) in fresh[..12].iter().enumerate() {
        let r = feedback(
            port,
            &key,
            serde_json::json!({"request_id": request_id, "index": i, "label": label}),
        );
        assert!(r["prediction_id"].is_i64(), "{r}");
    }
    for (i, (t, label)) in fresh[12..].iter().enumerate() {
        let text = format!("{t} contact {}", PII[i % PII.len()]);
        feedback(
            port,
            &key,
            serde_json::json!({"model": "m", "text": text, "label": label}),
        );
    }
    wait_for(url, "the first retrain", |d| !d.is_empty());
    let first = &decisions(url)[0];
    assert!(first.promoted, "{first:#?}");
    assert_eq!(first.cause, "feedback");
    assert_eq!(first.challenger_version, Some(2));
    assert!(first.reason.starts_with("promoted"), "{}", first.reason);
    let report: Value = serde_json::from_str(&first.report).unwrap();
    assert_eq!(report["holdout"]["rows"], 32);
    wait_served(port, "2");
    let (_, after) = classify(port, &key, &probe_texts, false);
    let acc_after = accuracy(&after, &probe);
    assert!(
        acc_after >= 0.9 && acc_after > acc_before,
        "{acc_before} → {acc_after}"
    );
    // The lineage is in the artifact.
    let info = runtime().block_on(async {
        let store = Store::open(url).await.unwrap();
        let a = store.get_version("m", 2).await.unwrap();
        store.close().await;
        flywheel_model::Artifact::from_bytes(&a.bytes, "v2").unwrap()
    });
    let lineage = info.meta.lineage.expect("lineage");
    assert_eq!(lineage.parent_version, 1);
    assert!(lineage.feedback_rows > 0 && lineage.feedback_rows <= 24);

    // A deliberately worse challenger: flipped labels on the old words, many of them.
    let flipped = sentences(&POS_OLD, &NEG_OLD, 120, 2);
    for (t, label) in &flipped {
        let wrong = if *label == "pos" { "neg" } else { "pos" };
        feedback(
            port,
            &key,
            serde_json::json!({"model": "m", "text": t, "label": wrong}),
        );
    }
    // Retrains run every 24 new items; wait until none is due any more.
    let settled = || {
        runtime().block_on(async {
            let store = Store::open(url).await.unwrap();
            let upto = store
                .decisions("m")
                .await
                .unwrap()
                .last()
                .map_or(0, |d| d.feedback_upto);
            let (pending, _) = store.count_feedback_since("m", upto).await.unwrap();
            store.close().await;
            pending < 24
        })
    };
    let started = Instant::now();
    while !settled() {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "retrains never caught up: {:#?}",
            decisions(url)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let all = decisions(url);
    let rejected: Vec<_> = all[1..]
        .iter()
        .filter(|d| d.challenger_version.is_some())
        .collect();
    assert!(!rejected.is_empty(), "{all:#?}");
    for d in &rejected {
        assert!(!d.promoted, "{d:#?}");
        assert!(d.reason.starts_with("rejected"), "{}", d.reason);
    }
    assert_eq!(served_version(port), "2");
    let history = flywheel(url, dir, &["models", "history", "m"]);
    assert!(history.contains("promoted: macro-F1"), "{history}");
    assert!(history.contains("rejected: macro-F1"), "{history}");

    // Rollback: one step back to version 1, served again with its old predictions.
    flywheel(url, dir, &["models", "rollback", "m"]);
    wait_served(port, "1");
    let (_, rolled_back) = classify(port, &key, &probe_texts, false);
    assert_eq!(rolled_back, before);

    // The review queue: logged predictions without a label, most uncertain first.
    let unlabelled = sentences(&POS_NEW, &NEG_NEW, 6, 5);
    let texts: Vec<String> = unlabelled.iter().map(|p| p.0.clone()).collect();
    classify(port, &key, &texts, true);
    let r = http(
        port,
        "GET",
        "/v1/review-queue?model=m&limit=10",
        Some(&key),
        None,
        "",
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let items = json(&r)["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 6, "{items:?}");
    let u: Vec<f64> = items
        .iter()
        .map(|i| i["uncertainty"].as_f64().unwrap())
        .collect();
    assert!(u.windows(2).all(|w| w[0] >= w[1]), "{u:?}");
    let id = items[0]["id"].as_i64().unwrap();
    let r = http(
        port,
        "POST",
        &format!("/v1/review/{id}"),
        Some(&key),
        None,
        r#"{"label":"pos"}"#,
    )
    .unwrap();
    assert_eq!(r.status, 201, "{}", r.body);
    let r = http(
        port,
        "POST",
        &format!("/v1/review/{id}"),
        Some(&key),
        None,
        r#"{"label":"nope"}"#,
    )
    .unwrap();
    assert_eq!(r.status, 422, "{}", r.body);
    let r = http(
        port,
        "GET",
        "/v1/review-queue?model=m&limit=10",
        Some(&key),
        None,
        "",
    )
    .unwrap();
    assert_eq!(json(&r)["items"].as_array().unwrap().len(), 5);

    // No raw personal data anywhere in the database; the placeholders are there.
    drop(server);
    let dump = database_dump(url);
    for raw in PII {
        assert!(!dump.contains(raw), "{raw:?} is stored");
    }
    assert!(
        dump.contains("[EMAIL]") && dump.contains("[CARD]"),
        "placeholders missing"
    );
    // The artifacts were searched as the bytes they hold (their format tag is in each one).
    assert!(
        dump.contains(flywheel_model::artifact::FORMAT),
        "model artifacts missing from the dump"
    );
}

#[test]
fn corrections_retrain_promote_reject_and_roll_back() {
    on_both(the_loop);
}
