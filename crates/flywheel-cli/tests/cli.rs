//! End-to-end tests of the `flywheel` binary on data made here (no downloads).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_flywheel"));
    c.env("SOURCE_DATE_EPOCH", "1700000000");
    c
}

fn run<S: AsRef<str>>(args: &[S]) -> Output {
    bin()
        .args(args.iter().map(|a| a.as_ref()))
        .output()
        .expect("flywheel runs")
}

fn show<S: AsRef<str>>(args: &[S]) -> String {
    args.iter()
        .map(|a| a.as_ref())
        .collect::<Vec<_>>()
        .join(" ")
}

fn ok<S: AsRef<str>>(args: &[S]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "flywheel {} failed:\n{}",
        show(args),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// Runs a command that must fail cleanly; returns its stderr.
fn fails(args: &[&str]) -> String {
    let out = run(args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "flywheel {args:?} should fail");
    assert!(
        !err.contains("panicked"),
        "flywheel {args:?} panicked:\n{err}"
    );
    err
}

const POS: [&str; 6] = ["good", "great", "fine", "lovely", "superb", "happy"];
const NEG: [&str; 6] = ["bad", "awful", "poor", "sad", "terrible", "broken"];
const FILL: [&str; 8] = ["the", "a", "movie", "was", "and", "it", "plot", "actors"];

/// A separable binary data set: the label follows the sentiment words.
fn sentiment_rows(n: usize, seed: u64) -> Vec<(String, &'static str)> {
    let mut x = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    let mut next = move |m: usize| {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((x >> 33) as usize) % m
    };
    (0..n)
        .map(|i| {
            let positive = i % 2 == 0;
            let words = if positive { &POS } else { &NEG };
            let mut t: Vec<&str> = Vec::new();
            for _ in 0..(3 + next(6)) {
                t.push(FILL[next(FILL.len())]);
                t.push(words[next(words.len())]);
            }
            (t.join(" "), if positive { "pos" } else { "neg" })
        })
        .collect()
}

fn write_csv(path: &Path, rows: &[(String, &str)]) {
    let mut s = String::from("text,label\n");
    for (t, l) in rows {
        s.push_str(&format!("\"{}\",{l}\n", t.replace('"', "\"\"")));
    }
    std::fs::write(path, s).unwrap();
}

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        write_csv(&root.join("train.csv"), &sentiment_rows(400, 1));
        write_csv(&root.join("test.csv"), &sentiment_rows(100, 2));
        Fixture { _dir: dir, root }
    }
    fn p(&self, name: &str) -> String {
        self.root.join(name).display().to_string()
    }
}

const SMALL: [&str; 8] = [
    "--epochs",
    "6",
    "--max-len",
    "20",
    "--num-words",
    "50",
    "--threads",
    "2",
];

fn train_small(f: &Fixture, out: &str, extra: &[&str]) {
    let mut args: Vec<String> = vec!["train".into(), f.p("train.csv"), "-o".into(), out.into()];
    args.extend(SMALL.iter().chain(extra).map(|s| s.to_string()));
    ok(&args);
}

#[test]
fn train_eval_predict_round_trip() {
    let f = Fixture::new();
    let model = f.p("m.fw");
    train_small(&f, &model, &["--lr", "0.01"]);
    let report: serde_json::Value =
        serde_json::from_str(&ok(&["eval", &model, &f.p("test.csv"), "--json"])).unwrap();
    for key in [
        "accuracy",
        "macro_f1",
        "per_class",
        "confusion_matrix",
        "roc_auc",
    ] {
        assert!(report.get(key).is_some(), "missing {key} in {report}");
    }
    let acc = report["accuracy"].as_f64().unwrap();
    assert!(acc > 0.9, "accuracy {acc} on separable data");
    let text = ok(&["eval", &model, &f.p("test.csv")]);
    assert!(text.contains("macro") && text.contains("pos") && text.contains("neg"));

    std::fs::write(
        f.p("in.txt"),
        "a great and lovely movie\nbad awful broken plot\n",
    )
    .unwrap();
    let lines: Vec<serde_json::Value> = ok(&["predict", &model, &f.p("in.txt")])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["label"], "pos");
    assert_eq!(lines[1]["label"], "neg");
    let s = &lines[0]["scores"];
    let total = s["pos"].as_f64().unwrap() + s["neg"].as_f64().unwrap();
    assert!((total - 1.0).abs() < 1e-5);
    assert!(lines[0]["score"].as_f64().unwrap() > 0.5);

    let info = ok(&["info", &model]);
    assert!(info.contains("binary") && info.contains("Epoch 6/6"));
}

#[test]
fn same_seed_and_threads_give_identical_files() {
    let f = Fixture::new();
    let (a, b, c) = (f.p("a.fw"), f.p("b.fw"), f.p("c.fw"));
    train_small(&f, &a, &["--seed", "7"]);
    train_small(&f, &b, &["--seed", "7"]);
    train_small(&f, &c, &["--seed", "8"]);
    let (ba, bb, bc) = (
        std::fs::read(&a).unwrap(),
        std::fs::read(&b).unwrap(),
        std::fs::read(&c).unwrap(),
    );
    assert_eq!(ba, bb, "same seed and threads must give the same bytes");
    assert_ne!(ba, bc, "another seed must give another model");
}

#[test]
fn multiclass_regression_and_multilabel_train() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).display().to_string();
    let words = ["red", "green", "blue"];
    let mut mc = String::from("text,label\n");
    let mut reg = String::from("text,label\n");
    let mut ml = String::from("{\"text\": \"x\", \"label\": [\"a\"]}\n");
    for i in 0..150 {
        let w = words[i % 3];
        mc.push_str(&format!("the {w} one {w},{w}\n"));
        reg.push_str(&format!("value {w} {w},{}.5\n", i % 3));
        let labels = match i % 3 {
            0 => "[\"a\"]",
            1 => "[\"b\"]",
            _ => "[\"a\", \"b\"]",
        };
        ml.push_str(&format!(
            "{{\"text\": \"item {w}\", \"label\": {labels}}}\n"
        ));
    }
    std::fs::write(p("mc.csv"), mc).unwrap();
    std::fs::write(p("reg.csv"), reg).unwrap();
    std::fs::write(p("ml.jsonl"), ml).unwrap();
    let common = ["--epochs", "3", "--max-len", "8", "--threads", "1"];
    let train = |data: &str, model: &str, extra: &[&str]| {
        let mut a: Vec<String> = vec!["train".into(), p(data), "-o".into(), p(model)];
        a.extend(common.iter().chain(extra).map(|s| s.to_string()));
        ok(&a);
    };
    let m1 = p("mc.fw");
    train("mc.csv", "mc.fw", &[]);
    let r: serde_json::Value =
        serde_json::from_str(&ok(&["eval", &m1, &p("mc.csv"), "--json"])).unwrap();
    assert_eq!(r["confusion_matrix"].as_array().unwrap().len(), 3);
    assert!(r.get("roc_auc").is_none());

    let m2 = p("reg.fw");
    train("reg.csv", "reg.fw", &["--task", "regression"]);
    let r: serde_json::Value =
        serde_json::from_str(&ok(&["eval", &m2, &p("reg.csv"), "--json"])).unwrap();
    for key in ["mse", "mae", "r2"] {
        assert!(r[key].is_number(), "{key} in {r}");
    }
    let pred = ok(&["predict", &m2, &p("reg.csv")]);
    assert!(pred.lines().next().unwrap().contains("\"value\""));

    let m3 = p("ml.fw");
    train("ml.jsonl", "ml.fw", &[]);
    let info = ok(&["info", &m3]);
    assert!(info.contains("multilabel"), "{info}");
}

#[test]
fn bad_input_gets_clear_errors() {
    let f = Fixture::new();
    let out = f.p("x.fw");
    let write = |name: &str, bytes: &[u8]| {
        std::fs::write(f.root.join(name), bytes).unwrap();
        f.p(name)
    };
    let err = fails(&["train", &f.p("missing.csv"), "-o", &out]);
    assert!(err.contains("missing.csv"), "{err}");
    let empty = write("empty.csv", b"");
    let err = fails(&["train", &empty, "-o", &out]);
    assert!(err.contains("empty.csv"), "{err}");
    let nocol = write("nocol.csv", b"body,label\nhello,a\n");
    let err = fails(&["train", &nocol, "-o", &out]);
    assert!(err.contains("text") && err.contains("body"), "{err}");
    let utf = write("utf.csv", b"text,label\nok,a\nbad \xff\xfe,b\n");
    let err = fails(&["train", &utf, "-o", &out]);
    assert!(err.contains("utf.csv") && err.contains('3'), "{err}");
    let nolabel = write("nolabel.csv", b"text,label\nfine,a\nno label here,\nok,b\n");
    let err = fails(&["train", &nolabel, "-o", &out]);
    assert!(err.contains("nolabel.csv") && err.contains('3'), "{err}");
    let reg = write("reg.csv", b"text,label\none,1.5\ntwo,abc\n");
    let err = fails(&["train", &reg, "-o", &out, "--task", "regression"]);
    assert!(err.contains("reg.csv:3") && err.contains("abc"), "{err}");
    let one = write("one.csv", b"text,label\na,x\nb,x\n");
    let err = fails(&["train", &one, "-o", &out]);
    assert!(err.contains("label"), "{err}");
    let err = fails(&[
        "train",
        &f.p("train.csv"),
        "-o",
        &out,
        "--optimizer",
        "rmsprop",
    ]);
    assert!(err.contains("rmsprop"), "{err}");
    let err = fails(&[
        "train",
        &f.p("train.csv"),
        "-o",
        &out,
        "--validation-split",
        "1.5",
    ]);
    assert!(err.contains("validation-split"), "{err}");
}

#[test]
fn corrupt_and_foreign_model_files_are_rejected() {
    let f = Fixture::new();
    let model = f.p("m.fw");
    train_small(&f, &model, &[]);
    let bytes = std::fs::read(&model).unwrap();
    let test = f.p("test.csv");

    let truncated = f.p("truncated.fw");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let err = fails(&["eval", &truncated, &test]);
    assert!(err.contains("truncated.fw"), "{err}");

    let edited = f.p("edited.fw");
    let mut e = bytes.clone();
    let last = e.len() - 3;
    e[last] ^= 0x40;
    std::fs::write(&edited, &e).unwrap();
    let err = fails(&["eval", &edited, &test]);
    assert!(err.contains("checksum"), "{err}");

    // Rename a label inside the metadata (same length, so the container still parses).
    let relabelled = f.p("relabelled.fw");
    let mut r = bytes.clone();
    let at = r
        .windows(5)
        .position(|w| w == b"\\\"pos")
        .expect("label in header");
    r[at + 2..at + 5].copy_from_slice(b"POS");
    std::fs::write(&relabelled, &r).unwrap();
    let err = fails(&["eval", &relabelled, &test]);
    assert!(err.contains("checksum"), "{err}");

    let foreign = f.p("foreign.fw");
    std::fs::write(&foreign, b"this is not a model").unwrap();
    let err = fails(&["predict", &foreign, &test]);
    assert!(err.contains("foreign.fw"), "{err}");

    let unknown = f.p("unknown.csv");
    std::fs::write(&unknown, "text,label\nhello,maybe\n").unwrap();
    let err = fails(&["eval", &model, &unknown]);
    assert!(
        err.contains("maybe") && err.contains("unknown.csv:2"),
        "{err}"
    );
}

#[test]
fn fasttext_linear_and_autotune_from_the_command_line() {
    let f = Fixture::new();
    for (name, args) in [
        (
            "ft.fw",
            &[
                "--model",
                "fasttext",
                "--epochs",
                "10",
                "--lr",
                "0.5",
                "--word-ngrams",
                "2",
                "--dim",
                "16",
                "--buckets",
                "5000",
            ][..],
        ),
        ("lin.fw", &["--model", "linear", "--c", "10"][..]),
        (
            "bal.fw",
            &["--model", "linear", "--c", "10", "--balanced"][..],
        ),
        (
            "svm.fw",
            &["--model", "linear", "--loss", "squared-hinge", "--c", "1"][..],
        ),
        (
            "digits.fw",
            &["--model", "linear", "--c", "10", "--fold-digits"][..],
        ),
    ] {
        let model = f.p(name);
        let data = f.p("train.csv");
        let mut a: Vec<&str> = vec!["train", &data, "-o", &model];
        a.extend(args);
        let train_args: Vec<String> = a.iter().map(|s| s.to_string()).collect();
        ok(&train_args);
        let report: serde_json::Value =
            serde_json::from_str(&ok(&["eval", &model, &f.p("test.csv"), "--json"])).unwrap();
        assert!(
            report["macro_f1"].as_f64().unwrap() > 0.95,
            "{name}: {report}"
        );
        let info = ok(&["info", &model]);
        assert!(info.contains(args[1]), "{info}");
        let e: serde_json::Value =
            serde_json::from_str(&ok(&["explain", &model, "the plot was awful", "--json"]))
                .unwrap();
        assert_eq!(e["label"], "neg");
    }
    // `flywheel train` with these flags fails; returns its stderr.
    let refused = |extra: &[&str]| {
        let (data, out) = (f.p("train.csv"), f.p("x.fw"));
        let mut a = vec!["train", data.as_str(), "-o", out.as_str()];
        a.extend(extra);
        fails(&a)
    };
    // Flags of one family are refused for another, with the flag named.
    let err = refused(&["--model", "fasttext", "--hidden", "8"]);
    assert!(err.contains("--hidden"), "{err}");
    let err = refused(&["--c", "3"]);
    assert!(err.contains("--c"), "{err}");
    let err = refused(&["--model", "fasttext", "--balanced"]);
    assert!(err.contains("--balanced"), "{err}");
    assert!(ok(&["info", &f.p("bal.fw")]).contains("logistic C 10 balanced"));
    assert!(ok(&["info", &f.p("svm.fw")]).contains("squared-hinge C 1"));
    assert!(ok(&["info", &f.p("digits.fw")]).contains("tokenizer word fold-digits"));
    // The Keras tokenizer keeps Keras's rules: folding digits needs a Unicode one.
    let err = refused(&["--fold-digits"]);
    assert!(
        err.contains("--fold-digits") && err.contains("--tokenizer"),
        "{err}"
    );
    // The linear losses are named; a loss no family has, or one for another family, is refused.
    for (model, loss) in [
        ("linear", "hinge"),
        ("linear", "ova"),
        ("lstm", "squared-hinge"),
    ] {
        let err = refused(&["--model", model, "--loss", loss]);
        assert!(
            err.contains(loss) || err.contains("--loss"),
            "{model} {loss}: {err}"
        );
    }
    // Fixed choices are listed by the parser.
    let err = refused(&["--tokenizer", "klingon"]);
    assert!(
        err.contains("klingon") && err.contains("[possible values: keras, word, char, cjk, jieba]"),
        "{err}"
    );

    // Autotune: a plan, one line per trial, a final table, a model eval can read.
    let model = f.p("auto.fw");
    let out = run(&[
        "autotune",
        &f.p("train.csv"),
        "-o",
        &model,
        "--budget",
        "2s",
        "--threads",
        "2",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("Plan:") && err.contains("trial") && err.contains("| rank |"));
    assert!(err.contains("Chose"), "{err}");
    let report: serde_json::Value =
        serde_json::from_str(&ok(&["eval", &model, &f.p("test.csv"), "--json"])).unwrap();
    assert!(report["macro_f1"].as_f64().unwrap() > 0.95, "{report}");
    let err = fails(&[
        "autotune",
        &f.p("train.csv"),
        "-o",
        &model,
        "--budget",
        "5x",
    ]);
    assert!(err.contains("--budget"), "{err}");
}

#[test]
fn cnn_and_bilstm_train_eval_predict_and_explain() {
    let f = Fixture::new();
    std::fs::write(
        f.p("in.txt"),
        "a great and lovely movie\nbad awful broken plot\n",
    )
    .unwrap();
    for (name, family, extra) in [
        (
            "cnn.fw",
            "cnn",
            &[
                "--filters",
                "16",
                "--kernel-sizes",
                "2,3",
                "--padding",
                "post",
            ][..],
        ),
        ("bilstm.fw", "bilstm", &["--hidden", "8"][..]),
    ] {
        let model = f.p(name);
        let mut args = vec!["--model", family, "--lr", "0.01"];
        args.extend(extra);
        train_small(&f, &model, &args);
        let report: serde_json::Value =
            serde_json::from_str(&ok(&["eval", &model, &f.p("test.csv"), "--json"])).unwrap();
        let acc = report["accuracy"].as_f64().unwrap();
        assert!(acc > 0.9, "{family}: accuracy {acc} on separable data");
        let lines: Vec<serde_json::Value> = ok(&["predict", &model, &f.p("in.txt")])
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["label"], "pos", "{family}");
        assert_eq!(lines[1]["label"], "neg", "{family}");
        let e: serde_json::Value =
            serde_json::from_str(&ok(&["explain", &model, "the plot was awful", "--json"]))
                .unwrap();
        assert_eq!(e["label"], "neg", "{family}");
        let awful = e["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["text"] == "awful")
            .unwrap();
        assert!(
            awful["attribution"].as_f64().unwrap() > 0.0,
            "{family}: {e}"
        );
        let info = ok(&["info", &model]);
        assert!(info.contains(&format!("network    {family}")), "{info}");
    }
    let info = ok(&["info", &f.p("cnn.fw")]);
    assert!(
        info.contains("filters 16 kernel-sizes 2,3") && info.contains("padding post"),
        "{info}"
    );
    assert!(ok(&["info", &f.p("bilstm.fw")]).contains("mask on"));
    // Family-specific flags are refused elsewhere, with the flag named.
    let (data, out) = (f.p("train.csv"), f.p("x.fw"));
    let err = fails(&["train", &data, "-o", &out, "--filters", "8"]);
    assert!(err.contains("--filters"), "{err}");
    let err = fails(&["train", &data, "-o", &out, "--model", "cnn", "--mask"]);
    assert!(err.contains("--mask"), "{err}");
    let err = fails(&["train", &data, "-o", &out, "--model", "rnn"]);
    assert!(err.contains("unknown model"), "{err}");
}
