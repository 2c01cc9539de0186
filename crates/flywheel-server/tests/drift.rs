//! The drift monitor on the real server: a model trained on two topics stays quiet while it is
//! served texts like its training data, and alarms — in the API, the metrics and a webhook —
//! when it is served one topic only, or texts of other words.

mod common;
use common::*;

use std::time::{Duration, Instant};

use flywheel_data::Record;
use flywheel_model::{train, Artifact, ModelSpec, TrainConfig};
use flywheel_server::drift::DriftConfig;
use flywheel_server::{ModelSource, ServerConfig};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SPORT: &[&str] = &[
    "goal", "match", "team", "win", "league", "coach", "season", "player", "cup", "score", "pitch",
    "striker",
];
const MONEY: &[&str] = &[
    "bank", "market", "shares", "profit", "rate", "loan", "price", "stock", "fund", "trade",
    "bond", "budget",
];
const BAKING: &[&str] = &[
    "recipe", "oven", "flour", "sugar", "bake", "salt", "butter", "egg", "dough", "yeast",
];

/// `n` texts of 5–14 words drawn from `words` (xorshift with `seed`).
fn texts(words: &[&str], n: usize, seed: u64) -> Vec<String> {
    let mut x = seed | 1;
    let mut next = move |m: usize| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % m as u64) as usize
    };
    (0..n)
        .map(|_| {
            let len = 5 + next(10);
            (0..len)
                .map(|_| words[next(words.len())])
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

/// Half sport, half money, alternating.
fn mixed(n: usize, seed: u64) -> Vec<String> {
    let sport = texts(SPORT, n / 2 + 1, seed);
    let money = texts(MONEY, n / 2 + 1, seed + 1);
    (0..n)
        .map(|i| {
            if i % 2 == 0 {
                sport[i / 2].clone()
            } else {
                money[i / 2].clone()
            }
        })
        .collect()
}

fn model(dir: &std::path::Path) -> std::path::PathBuf {
    let rows: Vec<Record> = mixed(800, 1)
        .into_iter()
        .enumerate()
        .map(|(i, text)| Record {
            text,
            labels: vec![if i % 2 == 0 { "sport" } else { "money" }.to_string()],
            line: i as u64 + 2,
        })
        .collect();
    let cfg = TrainConfig {
        epochs: 1,
        validation_split: 0.0,
        ..TrainConfig::default()
    };
    let outcome = train(
        &rows,
        "topics",
        None,
        "|",
        &ModelSpec::linear(),
        &cfg,
        &mut |_| {},
    )
    .unwrap();
    let artifact = Artifact::from_training(outcome, cfg, "topics.csv", "00");
    assert!(
        artifact.meta.drift.is_some(),
        "training keeps a drift profile"
    );
    let path = dir.join("topics.fw");
    artifact.save(&path).unwrap();
    path
}

/// A one-shot HTTP receiver: the body of each POST it gets goes to the channel.
async fn webhook() -> (String, tokio::sync::mpsc::UnboundedReceiver<Value>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let body = loop {
                let n = s.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    break None;
                }
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let length: usize = text
                        .lines()
                        .find_map(|l| l.strip_prefix("Content-Length: "))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    if buf.len() >= end + 4 + length {
                        break Some(buf[end + 4..end + 4 + length].to_vec());
                    }
                }
            };
            let _ = s
                .write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
                .await;
            if let Some(body) = body {
                let _ = tx.send(serde_json::from_slice(&body).unwrap_or(Value::Null));
            }
        }
    });
    (url, rx)
}

/// Sends each text in its own request, then waits until the monitor has seen them all.
async fn serve_texts(s: &TestServer, texts: &[String], seen_before: u64) -> Value {
    for t in texts {
        let r = s
            .post_json("/v1/classify", &json!({"model": "topics", "inputs": [t]}))
            .await;
        assert_eq!(r.status, 200);
    }
    let want = seen_before + texts.len() as u64;
    let started = Instant::now();
    loop {
        let d = s.get("/v1/models/topics/drift").await.json();
        if d["observed"].as_u64() == Some(want) {
            return d;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the monitor saw {} of {want} texts",
            d["observed"]
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn failing(d: &Value) -> Vec<String> {
    d["last"]["report"]["tests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["alarm"] == true)
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect()
}

fn server(path: &std::path::Path, webhook: Option<String>) -> ServerConfig {
    ServerConfig {
        models: vec![ModelSource {
            name: "topics".into(),
            path: path.to_path_buf(),
        }],
        threads: 2,
        drift: DriftConfig {
            webhook,
            // Every text observed: the test counts them.
            max_rate: 1e9,
            ..DriftConfig::default()
        },
        ..ServerConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_traffic_is_quiet_one_topic_alarms_and_the_webhook_hears_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = model(dir.path());
    let (url, mut hook) = webhook().await;
    let s = start(server(&path, Some(url))).await;

    let d = s.get("/v1/models/topics/drift").await.json();
    assert_eq!(d["monitored"], true);
    assert_eq!(d["labels"], json!(["money", "sport"]));
    assert_eq!(d["observed"], 0);
    assert!(d["last"].is_null());

    // Like the training data: 1,000 new texts, 9 checks, no alarm.
    let d = serve_texts(&s, &mixed(1000, 7), 0).await;
    assert_eq!(d["alarm"], false, "{d}");
    assert_eq!(d["history"].as_array().unwrap().len(), 9);
    assert_eq!(d["last"]["report"]["tests"].as_array().unwrap().len(), 4);
    assert!(failing(&d).is_empty());

    // Only sport: the predicted labels shift; the alarm is on within 300 texts.
    let d = serve_texts(&s, &texts(SPORT, 300, 9), 1000).await;
    assert_eq!(d["alarm"], true, "{d}");
    assert!(failing(&d).contains(&"label_psi".to_string()), "{d}");
    assert!(d["alarm_since"].is_i64());
    let m = String::from_utf8(s.get("/metrics").await.body.to_vec()).unwrap();
    assert!(
        m.contains("flywheel_drift_alarm{model=\"topics\"} 1"),
        "{m}"
    );
    assert!(m.contains("flywheel_drift_statistic{model=\"topics\",test=\"label_psi\"}"));
    assert!(m.contains("flywheel_drift_observed_texts{model=\"topics\"} 1300"));
    let heard = tokio::time::timeout(Duration::from_secs(10), hook.recv())
        .await
        .expect("the webhook is called")
        .unwrap();
    assert_eq!(heard["model"], "topics");
    assert_eq!(heard["alarm"], true);
    assert_eq!(heard["check"]["report"]["alarm"], true);

    // Back to the usual traffic: the window refills and the alarm clears, and the webhook
    // hears that too.
    let d = serve_texts(&s, &mixed(600, 11), 1300).await;
    assert_eq!(d["alarm"], false, "{d}");
    let heard = tokio::time::timeout(Duration::from_secs(10), hook.recv())
        .await
        .expect("the webhook hears the end")
        .unwrap();
    assert_eq!(heard["alarm"], false);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_words_alarm_through_vocabulary_and_domain() {
    let dir = tempfile::tempdir().unwrap();
    let path = model(dir.path());
    let s = start(server(&path, None)).await;
    // Baking texts still get "money" or "sport"; the label shares may stay balanced, but the
    // words are new.
    let d = serve_texts(&s, &texts(BAKING, 300, 5), 0).await;
    assert_eq!(d["alarm"], true, "{d}");
    let f = failing(&d);
    assert!(f.contains(&"oov_share".to_string()), "{d}");
    assert!(f.contains(&"domain_auc".to_string()), "{d}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitoring_off_and_unknown_models() {
    let dir = tempfile::tempdir().unwrap();
    let path = model(dir.path());
    let mut cfg = server(&path, None);
    cfg.drift.enabled = false;
    let s = start(cfg).await;
    let r = s
        .post_json(
            "/v1/classify",
            &json!({"model": "topics", "inputs": ["goal match"]}),
        )
        .await;
    assert_eq!(r.status, 200);
    let d = s.get("/v1/models/topics/drift").await.json();
    assert_eq!(d["monitored"], false);
    assert_eq!(d["observed"], 0);
    let r = s.get("/v1/models/nope/drift").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.error_type(), "model_not_found");
    s.stop().await;
}
