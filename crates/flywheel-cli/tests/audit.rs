//! The label audit and the drift monitor in the loop, end to end with `flywheel` processes on a
//! store (SQLite, then PostgreSQL when configured): `flywheel audit` finds injected label flips
//! and a conflicting duplicate, writes CSV/JSON/HTML, and `--push-review` puts the suspects in
//! a model's review queue (once, however often it runs) with the given label beside the
//! suggestion; a served model that drifts raises its prediction-logging rate; a tenant sees
//! only its own models' drift and review items.

mod common;
use common::*;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

const SPORT: &[&str] = &[
    "goal", "match", "team", "win", "league", "coach", "season", "player", "cup", "score",
];
const MONEY: &[&str] = &[
    "bank", "market", "shares", "profit", "rate", "loan", "price", "stock", "fund", "trade",
];

/// `n` texts alternating sport / money (labels as given), words drawn with `seed`.
fn rows(n: usize, seed: u64) -> Vec<(String, &'static str)> {
    let mut x = seed | 1;
    let mut next = move |m: usize| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % m as u64) as usize
    };
    (0..n)
        .map(|i| {
            let (words, label) = if i % 2 == 0 {
                (SPORT, "sport")
            } else {
                (MONEY, "money")
            };
            let len = 6 + next(6);
            let text: Vec<&str> = (0..len).map(|_| words[next(words.len())]).collect();
            (text.join(" "), label)
        })
        .collect()
}

fn write_csv(path: &Path, rows: &[(String, &str)]) {
    let mut w = csv::Writer::from_path(path).unwrap();
    w.write_record(["text", "label"]).unwrap();
    for (t, l) in rows {
        w.write_record([t.as_str(), l]).unwrap();
    }
    w.flush().unwrap();
}

fn json(r: &HttpResponse) -> Value {
    serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{e}: {}", r.body))
}

fn audit_and_drift(url: &str, dir: &Path) {
    // 400 clean rows, 12 flipped (recorded), one duplicate with the other label.
    let clean = rows(400, 3);
    let mut noisy = clean.clone();
    let flipped: Vec<usize> = (0..12).map(|i| 7 + i * 31).collect();
    for &r in &flipped {
        noisy[r].1 = if noisy[r].1 == "sport" {
            "money"
        } else {
            "sport"
        };
    }
    noisy.push((format!("{}!", clean[0].0.to_uppercase()), "money"));
    write_csv(&dir.join("noisy.csv"), &noisy);
    write_csv(&dir.join("clean.csv"), &clean);

    let table = flywheel(
        url,
        dir,
        &[
            "audit",
            "noisy.csv",
            "--json",
            "a.json",
            "--csv",
            "a.csv",
            "--html",
            "a.html",
            "--threads",
            "1",
        ],
    );
    assert!(table.contains("| label | rows | threshold"), "{table}");
    let audit: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("a.json")).unwrap()).unwrap();
    let flagged: Vec<usize> = audit["suspects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["row"].as_u64().unwrap() as usize)
        .collect();
    let found = flipped.iter().filter(|r| flagged.contains(r)).count();
    assert!(found >= 11, "found {found} of 12 flips: {flagged:?}");
    assert!(flagged.len() <= 14, "too many suspects: {flagged:?}");
    // Each suspect's line is its row + 2 (header, 1-based) and the suggestion is the true label.
    for s in audit["suspects"].as_array().unwrap() {
        let row = s["row"].as_u64().unwrap() as usize;
        assert_eq!(s["line"].as_u64().unwrap() as usize, row + 2);
        if flipped.contains(&row) {
            assert_eq!(s["suggested"], clean[row].1);
            assert_eq!(s["given"], noisy[row].1);
        }
    }
    let conflicts = audit["conflicts"].as_array().unwrap();
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    let lines: Vec<u64> = conflicts[0]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, vec![2, 402]);
    let classes = audit["classes"].as_array().unwrap();
    let errors: u64 = classes
        .iter()
        .map(|c| c["estimated_errors"].as_u64().unwrap())
        .sum();
    assert!((8..=20).contains(&errors), "estimated errors {errors}");
    let csv_text = std::fs::read_to_string(dir.join("a.csv")).unwrap();
    assert_eq!(csv_text.lines().count(), flagged.len() + 1);
    let html = std::fs::read_to_string(dir.join("a.html")).unwrap();
    assert!(html.contains("Suspect labels") && html.contains("Duplicates with conflicting labels"));

    // A served model, owned by tenant t; tenant u has its own model.
    flywheel(
        url,
        dir,
        &["train", "clean.csv", "-o", "m.fw", "--model", "linear"],
    );
    // With a model's own settings (here the linear defaults again): the same suspects.
    flywheel(
        url,
        dir,
        &[
            "audit",
            "noisy.csv",
            "--like",
            "m.fw",
            "--json",
            "b.json",
            "--threads",
            "1",
        ],
    );
    let like: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("b.json")).unwrap()).unwrap();
    assert_eq!(like["suspects"], audit["suspects"]);
    flywheel(
        url,
        dir,
        &[
            "models",
            "push",
            "m.fw",
            "--name",
            "m",
            "--data",
            "noisy.csv",
        ],
    );
    flywheel(url, dir, &["models", "promote", "m", "1"]);
    flywheel(url, dir, &["models", "push", "m.fw", "--name", "other"]);
    flywheel(url, dir, &["models", "promote", "other", "1"]);
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
    for t in ["t", "u"] {
        flywheel(url, dir, &["tenants", "create", t]);
    }
    flywheel(url, dir, &["models", "grant", "m", "--tenant", "t"]);
    flywheel(url, dir, &["models", "grant", "other", "--tenant", "u"]);
    let key = |t: &str| {
        flywheel(url, dir, &["keys", "create", "--tenant", t, "--plan", "p"])
            .trim()
            .to_string()
    };
    let (kt, ku) = (key("t"), key("u"));

    // The suspects go to t's review queue, once.
    let push = |dir: &Path| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_flywheel"))
            .args([
                "audit",
                "noisy.csv",
                "--push-review",
                "m",
                "--tenant",
                "t",
                "--threads",
                "1",
            ])
            .env("DATABASE_URL", url)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let first = push(dir);
    assert!(
        first.contains(&format!(
            "{} new item(s) in m's review queue",
            flagged.len()
        )),
        "{first}"
    );
    assert!(push(dir).contains("0 new item(s)"));

    let port = free_port();
    let server = Replica::start_with(
        url,
        dir,
        port,
        &[
            "--log-predictions",
            "0",
            "--drift-log-rate",
            "1",
            "--drift-max-rate",
            "1000000",
        ],
    );
    server.wait_ready();
    let r = http(
        port,
        "GET",
        "/v1/review-queue?model=m&limit=100",
        Some(&kt),
        None,
        "",
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let items = json(&r)["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), flagged.len());
    for item in &items {
        let given = item["given_label"].as_str().expect("an audit item");
        assert_ne!(given, item["label"].as_str().unwrap());
    }
    // u sees neither t's queue nor t's model's drift.
    let r = http(port, "GET", "/v1/review-queue?model=m", Some(&ku), None, "").unwrap();
    assert_eq!(r.status, 403, "{}", r.body);
    let r = http(port, "GET", "/v1/models/m/drift", Some(&ku), None, "").unwrap();
    assert_eq!(r.status, 403, "{}", r.body);
    let r = http(port, "GET", "/v1/models/other/drift", Some(&ku), None, "").unwrap();
    assert_eq!(r.status, 200, "{}", r.body);

    // Like the training data: no alarm, nothing logged (rate 0).
    let classify = |text: &str| {
        let body = serde_json::json!({"model": "m", "inputs": [text]}).to_string();
        let r = http(port, "POST", "/v1/classify", Some(&kt), None, &body).unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
        r.header("x-prediction-logged").map(str::to_string)
    };
    let wait_observed = |n: u64| -> Value {
        let started = Instant::now();
        loop {
            let r = http(port, "GET", "/v1/models/m/drift", Some(&kt), None, "").unwrap();
            assert_eq!(r.status, 200, "{}", r.body);
            let d = json(&r);
            if d["observed"].as_u64() == Some(n) {
                return d;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "{d}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    for (text, _) in rows(300, 9) {
        assert_eq!(classify(&text), None);
    }
    let d = wait_observed(300);
    assert_eq!(d["monitored"], true);
    assert_eq!(d["alarm"], false, "{d}");
    // Only sport: the alarm starts, and from then on every prediction is logged for review.
    let sport: Vec<String> = rows(600, 11)
        .into_iter()
        .filter(|r| r.1 == "sport")
        .map(|r| r.0)
        .collect();
    for text in &sport[..250] {
        classify(text);
    }
    let d = wait_observed(550);
    assert_eq!(d["alarm"], true, "{d}");
    assert_eq!(classify(&sport[250]).as_deref(), Some("true"));
}

#[test]
fn audit_push_review_and_drift_in_the_loop() {
    on_both(audit_and_drift);
}
