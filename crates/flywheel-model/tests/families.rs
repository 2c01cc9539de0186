//! The sequence families beyond the reference model (`gru`, `bilstm`, `cnn`, masked `lstm`):
//! they learn, round-trip through the model file, handle multi-label and regression, are
//! deterministic for a seed, and with masking ignore the padding.

use flywheel_data::Record;
use flywheel_model::families::{
    self,
    sequence_net::{RnnNet, SeqModelNet},
};
use flywheel_model::Family;
use flywheel_model::{
    evaluate, train, Artifact, ModelSpec, Pipeline, Prediction, Report, Task, TrainConfig,
};
use flywheel_nn::SeqWorkspace;

fn rec(text: String, labels: Vec<String>, line: u64) -> Record {
    Record { text, labels, line }
}

/// A tiny xorshift generator for the synthetic data.
fn gen(seed: u64) -> impl FnMut(u64) -> u64 {
    let mut x = seed | 1;
    move |m: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % m
    }
}

/// Texts of 2–9 random filler words with one cue word at a random place; the cue decides the
/// class.
fn data(n: usize, classes: &[&str], seed: u64) -> Vec<Record> {
    let mut next = gen(seed);
    (0..n)
        .map(|i| {
            let c = i % classes.len();
            let len = 2 + next(8) as usize;
            let mut words: Vec<String> = (0..len).map(|_| format!("w{}", next(40))).collect();
            let at = next(len as u64 + 1) as usize;
            words.insert(at, format!("cue{c}"));
            rec(words.join(" "), vec![classes[c].to_string()], i as u64 + 2)
        })
        .collect()
}

fn spec(family: &str) -> ModelSpec {
    let mut s = families::of(family.parse::<Family>().unwrap()).default_spec();
    s.tokenizer.num_words = Some(60);
    s.max_len = 12;
    s.embed_dim = 8;
    s.hidden = 8;
    s.cnn.filters = 8;
    s.cnn.kernel_sizes = vec![2, 3];
    s
}

fn cfg() -> TrainConfig {
    TrainConfig {
        epochs: 8,
        batch_size: 16,
        lr: Some(0.02),
        threads: 2,
        ..TrainConfig::default()
    }
}

/// The families under test: name, spec.
fn families() -> Vec<(&'static str, ModelSpec)> {
    let mut masked_lstm = spec("lstm");
    masked_lstm.mask = true;
    let mut post_gru = spec("gru");
    post_gru.padding = flywheel_text::Side::Post;
    post_gru.mask = true;
    vec![
        ("gru", spec("gru")),
        ("gru mask post", post_gru),
        ("bilstm", spec("bilstm")),
        ("cnn", spec("cnn")),
        ("lstm mask", masked_lstm),
    ]
}

fn accuracy(r: &Report) -> f64 {
    match r {
        Report::Classification(c) => c.accuracy,
        other => panic!("not a classification report: {other:?}"),
    }
}

#[test]
fn every_family_learns_and_round_trips_through_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let classes = ["a", "b", "c"];
    let train_rows = data(600, &classes, 7);
    let test_rows = data(150, &classes, 99);
    for (name, s) in families() {
        let out = train(&train_rows, "mem", None, "|", &s, &cfg(), &mut |_| {}).unwrap();
        assert!(
            out.pipeline.net::<SeqModelNet>().is_ok(),
            "{name} uses the sequence network"
        );
        let acc = accuracy(&evaluate(&out.pipeline, &test_rows, "test").unwrap());
        assert!(acc > 0.9, "{name}: accuracy {acc} (chance 0.33)");
        let texts: Vec<&str> = test_rows.iter().map(|r| r.text.as_str()).collect();
        let before = out.pipeline.outputs_of_texts(&texts).unwrap();
        let art = Artifact::from_training(out, cfg(), "train.csv", "00");
        let path = dir.path().join(format!("{}.fw", name.replace(' ', "-")));
        art.save(&path).unwrap();
        let loaded = Artifact::load(&path).unwrap();
        assert_eq!(loaded.meta.spec, art.meta.spec, "{name}");
        assert_eq!(loaded.pipeline.network(), art.pipeline.network(), "{name}");
        let after = loaded.pipeline.outputs_of_texts(&texts).unwrap();
        assert_eq!(before, after, "{name}: predictions after loading");
        // An edited file of the new families is refused too.
        let mut bytes = std::fs::read(&path).unwrap();
        let at = bytes.len() - 5;
        bytes[at] ^= 1;
        let e = Artifact::from_bytes(&bytes, "edited")
            .unwrap_err()
            .to_string();
        assert!(e.contains("checksum"), "{name}: {e}");
    }
}

#[test]
fn multilabel_and_regression_for_every_family() {
    let mut next = gen(5);
    let mut ml = Vec::new();
    let mut reg = Vec::new();
    for i in 0..600u64 {
        let (a, b) = (i % 2 == 0, i % 3 == 0);
        let mut words: Vec<String> = (0..3).map(|_| format!("w{}", next(30))).collect();
        let mut labels = Vec::new();
        if a {
            words.insert(next(3) as usize, "sports".into());
            labels.push("sport".to_string());
        }
        if b {
            words.insert(next(3) as usize, "money".into());
            labels.push("finance".to_string());
        }
        if labels.is_empty() {
            words.push("misc".into());
            labels.push("other".to_string());
        }
        ml.push(rec(words.join(" "), labels, i + 2));
        let level = i % 3;
        let mut words: Vec<String> = (0..3).map(|_| format!("w{}", next(30))).collect();
        words.insert(next(4) as usize, format!("level{level}"));
        reg.push(rec(words.join(" "), vec![level.to_string()], i + 2));
    }
    let cfg = TrainConfig {
        epochs: 12,
        ..cfg()
    };
    // Trained on the first 480 rows (the last 96 of them for validation), tested on the rest.
    let (train_ml, test_ml) = ml.split_at(480);
    let (train_reg, test_reg) = reg.split_at(480);
    let both = &test_ml[0];
    assert_eq!(both.labels, ["sport", "finance"]);
    for (name, s) in families() {
        let ml_task = Some(Task::Multilabel);
        let out = train(train_ml, "mem", ml_task, "|", &s, &cfg, &mut |_| {}).unwrap();
        let Report::Multilabel(m) = evaluate(&out.pipeline, test_ml, "mem").unwrap() else {
            panic!("{name}: not a multi-label report")
        };
        assert!(m.macro_f1 > 0.9, "{name}: macro-F1 {}", m.macro_f1);
        match &out.pipeline.predict(&[both.text.as_str()]).unwrap()[0] {
            Prediction::Labels { labels, .. } => {
                assert_eq!(labels, &["finance", "sport"], "{name}: {}", both.text)
            }
            other => panic!("{name}: {other:?}"),
        }
        let reg_task = Some(Task::Regression);
        let out = train(train_reg, "mem", reg_task, "|", &s, &cfg, &mut |_| {}).unwrap();
        let Report::Regression(r) = evaluate(&out.pipeline, test_reg, "mem").unwrap() else {
            panic!("{name}: not a regression report")
        };
        assert!(r.r2 > 0.8, "{name}: regression R² {}", r.r2);
    }
}

/// Logits of `texts` through the pipeline's sequence network, padded by hand to `steps` on
/// `side` (time-major), bypassing the pipeline's own padding.
fn logits_padded(
    p: &Pipeline,
    texts: &[&str],
    steps: usize,
    side: flywheel_text::Side,
) -> Vec<f32> {
    let net = &p.net::<SeqModelNet>().unwrap().net;
    let b = texts.len();
    let mut ids = vec![0u32; steps * b];
    for (j, t) in texts.iter().enumerate() {
        let mut seq = Vec::new();
        p.encode_into(t, &mut seq);
        let start = match side {
            flywheel_text::Side::Pre => steps - seq.len(),
            flywheel_text::Side::Post => 0,
        };
        for (i, &id) in seq.iter().enumerate() {
            ids[(start + i) * b + j] = id;
        }
    }
    let mut out = vec![0.0; b * net.outputs()];
    net.predict_padded(&ids, steps, b, &mut SeqWorkspace::default(), &mut out)
        .unwrap();
    out
}

#[test]
fn masking_makes_predictions_independent_of_the_padding() {
    use flywheel_text::Side::{Post, Pre};
    let rows = data(300, &["a", "b"], 3);
    let texts = ["w1 cue0 w2", "w3 w4 w5 w6 cue1 w7 w8", "cue1"];
    let cfg = TrainConfig { epochs: 2, ..cfg() };
    for family in ["gru", "bilstm", "lstm"] {
        let mut s = spec(family);
        s.mask = true;
        let out = train(&rows, "mem", None, "|", &s, &cfg, &mut |_| {}).unwrap();
        let p = &out.pipeline;
        let base = logits_padded(p, &texts, 12, Pre);
        for (steps, side) in [(12, Post), (30, Pre), (30, Post)] {
            let other = logits_padded(p, &texts, steps, side);
            for (a, b) in base.iter().zip(&other) {
                assert!(
                    (a - b).abs() < 1e-5,
                    "{family}: {steps} steps {side:?}: {base:?} vs {other:?}"
                );
            }
        }
        // Without the mask, the same weights read the padding (so the check above can fail).
        let mut unmasked = p.net::<SeqModelNet>().unwrap().net.clone();
        unmasked.mask_zero = false;
        let mut s2 = p.spec.clone();
        s2.mask = false;
        let q = Pipeline::new(s2, p.labels.clone(), p.tokenizer().clone(), unmasked).unwrap();
        let (a, b) = (
            logits_padded(&q, &texts, 12, Pre),
            logits_padded(&q, &texts, 30, Pre),
        );
        assert!(
            a.iter().zip(&b).any(|(x, y)| (x - y).abs() > 1e-4),
            "{family}: padding should matter without the mask"
        );
    }
}

#[test]
fn same_seed_and_threads_give_bit_identical_weights() {
    let rows = data(200, &["a", "b"], 11);
    let cfg = TrainConfig { epochs: 2, ..cfg() };
    for (name, s) in families() {
        let a = train(&rows, "mem", None, "|", &s, &cfg, &mut |_| {}).unwrap();
        let b = train(&rows, "mem", None, "|", &s, &cfg, &mut |_| {}).unwrap();
        assert_eq!(a.pipeline.network(), b.pipeline.network(), "{name}");
        let c = train(
            &rows,
            "mem",
            None,
            "|",
            &s,
            &TrainConfig {
                seed: 7,
                ..cfg.clone()
            },
            &mut |_| {},
        )
        .unwrap();
        assert_ne!(
            a.pipeline.network(),
            c.pipeline.network(),
            "{name}: seed ignored"
        );
    }
}

#[test]
fn the_reference_lstm_keeps_its_network_and_bad_settings_are_refused() {
    let rows = data(60, &["a", "b"], 13);
    let cfg = TrainConfig { epochs: 1, ..cfg() };
    let out = train(&rows, "mem", None, "|", &spec("lstm"), &cfg, &mut |_| {}).unwrap();
    assert!(out.pipeline.net::<RnnNet>().is_ok());
    let mut s = spec("cnn");
    s.mask = true;
    let e = train(&rows, "mem", None, "|", &s, &cfg, &mut |_| {}).unwrap_err();
    assert!(e.to_string().contains("--mask"), "{e}");
    let mut s = spec("cnn");
    s.cnn.kernel_sizes = vec![3, 20];
    let e = train(&rows, "mem", None, "|", &s, &cfg, &mut |_| {}).unwrap_err();
    assert!(e.to_string().contains("kernel size 20"), "{e}");
    assert!("transformer".parse::<Family>().is_err());
}

#[test]
fn empty_and_unknown_texts_train_and_predict_in_every_family() {
    let mut rows = data(120, &["a", "b"], 17);
    for r in rows.iter_mut().step_by(7) {
        r.text = String::new();
    }
    let cfg = TrainConfig { epochs: 1, ..cfg() };
    for (name, s) in families() {
        let out = train(&rows, "mem", None, "|", &s, &cfg, &mut |_| {}).unwrap();
        let p = out.pipeline.predict(&["", "zzz qqq", "cue0"]).unwrap();
        assert_eq!(p.len(), 3, "{name}");
        for pred in &p {
            let Prediction::Class { scores, .. } = pred else {
                panic!("{name}: {pred:?}")
            };
            let total: f32 = scores.iter().map(|s| s.1).sum();
            assert!((total - 1.0).abs() < 1e-5, "{name}: {scores:?}");
        }
        let e = flywheel_model::explain(&out.pipeline, "").unwrap();
        assert!(e.tokens.is_empty(), "{name}");
    }
}

/// An unmasked, pre-padded GRU predicts through its padding-skipping path; the outputs equal
/// the plain pass over the padded input.
#[test]
fn the_gru_padding_shortcut_equals_the_padded_pass() {
    let rows = data(200, &["a", "b", "c"], 19);
    let cfg = TrainConfig { epochs: 2, ..cfg() };
    let s = spec("gru");
    let out = train(&rows, "mem", None, "|", &s, &cfg, &mut |_| {}).unwrap();
    let p = &out.pipeline;
    let texts = [
        "w1 cue0 w2",
        "w3 w4 w5 w6 cue1 w7 w8 w9 w10 w11 w12 w13 w14",
        "",
        "cue2",
    ];
    let fast = p.outputs_of_texts(&texts).unwrap();
    let mut plain = logits_padded(p, &texts, s.max_len, flywheel_text::Side::Pre);
    p.loss().unwrap().activate(&mut plain, p.outputs());
    for (a, b) in fast.iter().zip(&plain) {
        assert!((a - b).abs() < 1e-6, "{fast:?} vs {plain:?}");
    }
}
