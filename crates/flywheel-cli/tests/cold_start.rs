//! The loop from zero labels, end to end on the real server (SQLite, a tiny random BERT written
//! by the test): `flywheel models create` makes a zero-shot champion from label names; it
//! serves at once and every prediction lands in the review queue; labels given through the
//! queue trigger a retrain whose challenger fine-tunes the encoder (SetFit), is judged on the
//! held-back labels (frozen as the holdout, since there was no labelled data) and promoted by
//! the usual rule; the new champion serves, and predictions are sampled again as usual.
#![cfg(feature = "encoder")]

mod common;
use common::*;

use std::time::{Duration, Instant};

use flywheel_model::{Artifact, Family};
use flywheel_store::Store;
use serde_json::Value;

/// Texts of the tiny model's words: "happy" / "great" mark pos, "sad" / "awful" neg.
fn texts(n: usize, offset: usize) -> Vec<(String, &'static str)> {
    let fill = ["a day", "the film", "the day was", "a film", "was the"];
    (0..n)
        .map(|i| {
            let k = i + offset;
            let (word, label) = match k % 4 {
                0 => ("happy", "pos"),
                1 => ("sad", "neg"),
                2 => ("great", "pos"),
                _ => ("awful", "neg"),
            };
            let f = fill[(k / 4) % fill.len()];
            let text = match (k / 20) % 2 {
                0 => format!("{word} {f}"),
                _ => format!("{f} {word} !"),
            };
            (text, label)
        })
        .collect()
}

fn json(r: &HttpResponse) -> Value {
    serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{e}: {}", r.body))
}

/// Classifies without asking to log; returns the labels and the logged header.
fn classify(port: u16, key: &str, texts: &[String]) -> (Vec<String>, Option<String>) {
    let body = serde_json::json!({"model": "m", "inputs": texts}).to_string();
    let r = http(port, "POST", "/v1/classify", Some(key), None, &body).unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let labels = json(&r)["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["label"].as_str().unwrap().to_string())
        .collect();
    (labels, r.header("x-prediction-logged").map(str::to_string))
}

fn served_version(port: u16) -> String {
    let r = http(port, "GET", "/readyz", None, None, "").unwrap();
    json(&r)["models"][0]["version"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn a_zero_shot_model_fills_the_review_queue_and_its_corrections_train_a_promoted_setfit() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let url = format!("sqlite://{}", dir.join("flywheel.db").display());
    let enc = dir.join("enc");
    std::fs::create_dir_all(&enc).unwrap();
    flywheel_encoder::testing::write_tiny_bert(&enc, 21).unwrap();
    let enc_s = enc.display().to_string();
    let out = flywheel(
        &url,
        dir,
        &[
            "models",
            "create",
            "m",
            "--labels",
            "pos,neg",
            "--encoder",
            &enc_s,
            "--threads",
            "1",
        ],
    );
    assert!(out.contains("zero-shot over neg, pos"), "{out}");
    flywheel(&url, dir, &["models", "public", "m"]);
    flywheel(
        &url,
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
    flywheel(&url, dir, &["tenants", "create", "t"]);
    let key = flywheel(
        &url,
        dir,
        &["keys", "create", "--tenant", "t", "--plan", "p"],
    )
    .trim()
    .to_string();
    let port = free_port();
    let server = Replica::start_with(
        &url,
        dir,
        port,
        &["--retrain-after", "40", "--log-predictions", "0"],
    );
    server.wait_ready();
    assert_eq!(served_version(port), "1");

    let probe = texts(40, 3);
    let probe_inputs: Vec<String> = probe.iter().map(|r| r.0.clone()).collect();
    let right = |labels: &[String]| {
        labels
            .iter()
            .zip(&probe)
            .filter(|(p, t)| p.as_str() == t.1)
            .count()
    };
    let (zero_shot, _) = classify(port, &key, &probe_inputs);
    let before = right(&zero_shot);

    // The first request is served and kept for review although no one asked to log it.
    let rows = texts(60, 0);
    let inputs: Vec<String> = rows.iter().map(|r| r.0.clone()).collect();
    let (_, logged) = classify(port, &key, &inputs);
    assert_eq!(logged.as_deref(), Some("true"));
    let truth: std::collections::HashMap<&str, &str> =
        rows.iter().map(|(t, l)| (t.as_str(), *l)).collect();

    // Label the queue, most uncertain first.
    let r = http(
        port,
        "GET",
        "/v1/review-queue?model=m&limit=100",
        Some(&key),
        None,
        "",
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let items = json(&r)["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 100, "every prediction is in the queue");
    for item in &items {
        let id = item["id"].as_i64().unwrap();
        let text = item["text"].as_str().unwrap();
        let Some(label) = truth.get(text) else {
            continue;
        };
        let body = serde_json::json!({"label": label}).to_string();
        let r = http(
            port,
            "POST",
            &format!("/v1/review/{id}"),
            Some(&key),
            None,
            &body,
        )
        .unwrap();
        assert!(r.status == 200 || r.status == 201, "{}", r.body);
    }

    // The retrain runs in the background: SetFit on the corrections, judged on the held-back
    // ones (frozen as the holdout), promoted.
    let decisions = || {
        runtime().block_on(async {
            let store = Store::open(&url).await.unwrap();
            let d = store.decisions("m").await.unwrap();
            let holdout = store.holdout_dataset("m").await.unwrap();
            store.close().await;
            (d, holdout)
        })
    };
    let started = Instant::now();
    while decisions().0.is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "no retrain decision"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let (d, holdout) = decisions();
    let first = &d[0];
    assert!(first.promoted, "{first:#?}");
    assert_eq!(first.challenger_version, Some(2));
    let holdout = holdout.expect("the held-back corrections are frozen as the holdout");
    assert!(holdout.rows > 0 && holdout.rows < 30, "{holdout:?}");
    let report: Value = serde_json::from_str(&first.report).unwrap();
    assert_eq!(report["holdout"]["rows"], holdout.rows);

    let started = Instant::now();
    while served_version(port) != "2" {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "v2 never served"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let v2 = runtime().block_on(async {
        let store = Store::open(&url).await.unwrap();
        let a = store.get_version("m", 2).await.unwrap();
        store.close().await;
        Artifact::from_bytes(&a.bytes, "v2").unwrap()
    });
    assert_eq!(v2.pipeline.spec.family, Family::SetFit);
    let (labels, logged) = classify(port, &key, &probe_inputs);
    let after = right(&labels);
    // The tiny model's label names mean nothing to it; the fine-tuned one learned the words.
    assert!(
        after >= 32 && after >= before + 8,
        "{before}/40 right with zero-shot, {after}/40 after the retrain"
    );
    assert_ne!(
        logged.as_deref(),
        Some("true"),
        "sampling is back to normal"
    );
}
