//! End-to-end tests of `explain`, `history`, `eval --report` and `train --tensorboard` on a
//! small binary data set made here (no downloads).

use std::path::Path;
use std::process::Command;

fn flywheel(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_flywheel"))
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .env("NO_COLOR", "1")
        .args(args)
        .output()
        .expect("flywheel runs");
    let (o, e) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(!e.contains("panicked"), "flywheel {args:?} panicked:\n{e}");
    (out.status.success(), o, e)
}

fn ok(args: &[&str]) -> String {
    let (success, out, err) = flywheel(args);
    assert!(success, "flywheel {args:?} failed:\n{err}");
    out
}

fn write_data(path: &Path, n: usize) {
    let pos = ["good", "great", "lovely"];
    let neg = ["bad", "awful", "poor"];
    let fill = ["the", "a", "movie", "was", "and", "it", "plot", "actors"];
    let mut x = 17u64;
    let mut next = |m: usize| {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((x >> 33) as usize) % m
    };
    let mut csv = String::from("text,label\n");
    for i in 0..n {
        let label = if i % 2 == 0 { "pos" } else { "neg" };
        let mut words: Vec<&str> = (0..5).map(|_| fill[next(fill.len())]).collect();
        let w = if label == "pos" { pos } else { neg }[next(3)];
        words.insert(next(words.len() + 1), w);
        csv.push_str(&format!("{},{label}\n", words.join(" ")));
    }
    std::fs::write(path, csv).unwrap();
}

#[test]
fn explain_history_report_and_tensorboard() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("train.csv");
    write_data(&data, 400);
    let model = dir.path().join("m.fw");
    let tb = dir.path().join("tb");
    let (d, m, t) = (
        data.to_str().unwrap(),
        model.to_str().unwrap(),
        tb.to_str().unwrap(),
    );
    ok(&[
        "train",
        d,
        "-o",
        m,
        "--epochs",
        "3",
        "--max-len",
        "10",
        "--threads",
        "1",
        "--tensorboard",
        t,
    ]);
    for run in ["train", "validation"] {
        let files: Vec<_> = std::fs::read_dir(tb.join(run)).unwrap().collect();
        assert_eq!(files.len(), 1, "{run}");
    }

    // explain --json: offsets are chars of the original text.
    let text = "Café 😀 was great!";
    let out = ok(&["explain", m, text, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(v["label"].is_string() && v["score"].as_f64().is_some());
    let tokens = v["tokens"].as_array().unwrap();
    let chars: Vec<char> = text.chars().collect();
    for t in tokens {
        let (s, e) = (
            t["start"].as_u64().unwrap() as usize,
            t["end"].as_u64().unwrap() as usize,
        );
        let piece: String = chars[s..e].iter().collect();
        assert_eq!(t["text"], piece.as_str());
    }
    let great = tokens.iter().find(|t| t["text"] == "great").unwrap();
    assert_eq!(
        (great["start"].as_u64(), great["end"].as_u64()),
        (Some(11), Some(16))
    );
    // Plain output (not a terminal): a table, no escape codes.
    let plain = ok(&["explain", m, text]);
    assert!(plain.contains("great") && !plain.contains('\x1b'));
    let (success, _, err) = flywheel(&["explain", m, text, "--label", "nope"]);
    assert!(!success && err.contains("unknown label"));

    // history: a table; --png with an .svg name writes SVG.
    let out = ok(&["history", m]);
    assert_eq!(out.lines().count(), 4, "{out}");
    assert!(out.starts_with("epoch"));
    // SVG needs no font file, so it is always drawn.
    let svg = dir.path().join("curves.svg");
    ok(&["history", m, "--png", svg.to_str().unwrap()]);
    let s = std::fs::read_to_string(&svg).unwrap();
    assert!(s.contains("<svg") && s.contains("val_loss"));

    // eval --report: one self-contained page with every section.
    let report = dir.path().join("report.html");
    ok(&["eval", m, d, "--report", report.to_str().unwrap()]);
    let html = std::fs::read_to_string(&report).unwrap();
    let needles = [
        "id=\"metrics\"",
        "id=\"confusion\"",
        "id=\"curves\"",
        "id=\"roc\"",
        "id=\"calibration\"",
        "id=\"mistakes\"",
        "</html>",
        "<svg",
        "ROC curve",
        "Precision-recall curve",
        "Reliability diagram",
    ];
    for needle in needles {
        assert!(html.contains(needle), "report lacks {needle}");
    }
    // Self-contained: nothing is fetched.
    for bad in ["src=\"http", "href=\"http", "<link", "<script", "@import"] {
        assert!(!html.contains(bad), "report contains {bad}");
    }
}
