//! `--model encoder` end to end on a tiny random BERT written by the test (no download):
//! train (vector alone and with n-grams), eval, predict, explain, info and serve; the vectors
//! land in the embedding cache; a model refuses an encoder directory whose files changed.
#![cfg(feature = "encoder")]

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use common::{free_port, http, Replica};

fn run(home: &Path, args: &[&str], stdin: &str) -> (bool, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_flywheel"))
        .args(args)
        .env("FLYWHEEL_HOME", home)
        .env_remove("FLYWHEEL_EMBEDDING_CACHE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("flywheel runs");
    if let Some(mut input) = child.stdin.take() {
        input.write_all(stdin.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(home: &Path, args: &[&str]) -> String {
    let (success, out, err) = run(home, args, "");
    assert!(success, "flywheel {args:?} failed:\n{err}");
    out
}

/// Texts made of the tiny model's words: "happy" / "great" mark pos, "sad" / "awful" neg.
fn write_data(path: &Path) {
    let mut f = std::fs::File::create(path).unwrap();
    writeln!(f, "text,label").unwrap();
    let fill = [
        "a day",
        "the film",
        "the day was",
        "a film",
        "was the",
        "今天",
    ];
    for i in 0..240 {
        let (word, label) = match i % 4 {
            0 => ("happy", "pos"),
            1 => ("great", "pos"),
            2 => ("sad", "neg"),
            _ => ("awful", "neg"),
        };
        let text = match (i / 4) % 3 {
            0 => format!("{word} {}", fill[(i / 12) % 6]),
            1 => format!("{} {word}", fill[(i / 12) % 6]),
            _ => format!("{} {word} !", fill[(i / 12) % 6]),
        };
        writeln!(f, "{text},{label}").unwrap();
    }
}

#[test]
fn an_encoder_model_trains_evaluates_explains_serves_and_guards_its_encoder() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let enc = dir.path().join("tiny-bert");
    std::fs::create_dir_all(&enc).unwrap();
    flywheel_encoder::testing::write_tiny_bert(&enc, 11).unwrap();
    let data = dir.path().join("data.csv");
    write_data(&data);
    let (data, enc_s) = (data.display().to_string(), enc.display().to_string());
    let model = dir.path().join("m.fw").display().to_string();
    let hybrid = dir.path().join("h.fw").display().to_string();

    ok(
        &home,
        &[
            "train",
            &data,
            "-o",
            &model,
            "--model",
            "encoder",
            "--encoder",
            &enc_s,
            "--c",
            "100",
        ],
    );
    let cached: Vec<_> = std::fs::read_dir(home.join("embeddings"))
        .unwrap()
        .flat_map(|d| std::fs::read_dir(d.unwrap().path()).unwrap())
        .map(|f| f.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "emb"))
        .collect();
    assert_eq!(cached.len(), 1, "one cache segment for the training texts");

    let report: serde_json::Value =
        serde_json::from_str(&ok(&home, &["eval", &model, &data, "--json"])).unwrap();
    let accuracy = report["accuracy"].as_f64().unwrap();
    assert!(accuracy >= 0.9, "training-set accuracy {accuracy}");

    let info = ok(&home, &["info", &model]);
    assert!(
        info.contains("network    encoder") && info.contains("16 values"),
        "{info}"
    );

    let (success, predicted, err) =
        run(&home, &["predict", &model, "-"], "happy film\nawful day\n");
    assert!(success, "{err}");
    let labels: Vec<String> = predicted
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["label"].to_string())
        .collect();
    assert_eq!(labels, ["\"pos\"", "\"neg\""], "{predicted}");

    let explained: serde_json::Value = serde_json::from_str(&ok(
        &home,
        &["explain", &model, "the film was awful", "--json"],
    ))
    .unwrap();
    let tokens = explained["tokens"].as_array().unwrap();
    let top = tokens
        .iter()
        .max_by(|a, b| {
            a["attribution"]
                .as_f64()
                .unwrap()
                .total_cmp(&b["attribution"].as_f64().unwrap())
        })
        .unwrap();
    assert_eq!(explained["label"], "neg");
    assert_eq!(top["text"], "awful", "{explained}");

    ok(
        &home,
        &[
            "train",
            &data,
            "-o",
            &hybrid,
            "--model",
            "encoder",
            "--encoder",
            &enc_s,
            "--with-ngrams",
        ],
    );
    let info = ok(&home, &["info", &hybrid]);
    assert!(info.contains("with word-ngrams 2"), "{info}");

    let port = free_port();
    let mut server = serve(dir.path(), port, &model);
    server.wait_ready();
    let r = http(
        port,
        "POST",
        "/v1/classify",
        None,
        None,
        r#"{"model": "m", "inputs": ["a happy day", "sad film"]}"#,
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    let served: Vec<&str> = body["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["label"].as_str().unwrap())
        .collect();
    assert_eq!(served, ["pos", "neg"], "{}", r.body);
    server.kill();

    // Other weights in the encoder's directory: every command refuses the model.
    flywheel_encoder::testing::write_tiny_bert(&enc, 12).unwrap();
    let (success, _, err) = run(&home, &["predict", &model, "-"], "happy\n");
    assert!(!success);
    assert!(
        err.contains("not the one the model was trained with"),
        "{err}"
    );
    let (success, _, err) = run(
        &home,
        &[
            "train",
            &data,
            "-o",
            &model,
            "--model",
            "linear",
            "--encoder",
            &enc_s,
        ],
        "",
    );
    assert!(
        !success && err.contains("--encoder applies to --model encoder"),
        "{err}"
    );
}

/// `flywheel serve --model m=PATH` (no store).
fn serve(dir: &Path, port: u16, model: &str) -> Replica {
    let log = std::fs::File::create(dir.join("serve.log")).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_flywheel"))
        .args(["serve", "--model", &format!("m={model}"), "--threads", "1"])
        .args(["--addr", &format!("127.0.0.1:{port}")])
        .env_remove("DATABASE_URL")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("flywheel serve starts");
    Replica { child, port }
}
