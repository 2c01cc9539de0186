//! The fastText-style family end to end: every task trains, the artifact round-trips to the
//! same outputs, explanations point at the words that decide, training is deterministic, and
//! Chinese text is detected and read per character without flags.

use flywheel_data::Record;
use flywheel_model::{
    evaluate, explain, train, Artifact, BagLossChoice, LinearLossChoice, ModelSpec, Pipeline,
    Prediction, Report, Task, TrainConfig,
};
use flywheel_text::Segmentation;

fn rec(text: &str, label: &str, line: u64) -> Record {
    Record {
        text: text.to_string(),
        labels: vec![label.to_string()],
        line,
    }
}

/// Texts of random filler words plus one word (or word pair) that decides the label.
fn data(n: usize, classes: &[&str], seed: u64) -> Vec<Record> {
    let mut x = seed | 1;
    let mut next = move |m: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % m
    };
    (0..n)
        .map(|i| {
            let c = i % classes.len();
            let mut words: Vec<String> = (0..8).map(|_| format!("w{}", next(50))).collect();
            let at = next(8) as usize;
            words.insert(at, format!("cue{c}"));
            rec(&words.join(" "), classes[c], i as u64 + 2)
        })
        .collect()
}

fn cfg() -> TrainConfig {
    TrainConfig {
        epochs: 10,
        lr: Some(0.5),
        validation_split: 0.0,
        ..TrainConfig::default()
    }
}

fn spec() -> ModelSpec {
    let mut s = ModelSpec::fasttext();
    s.embed_dim = 16;
    s.bag.word_ngrams = 2;
    s.bag.buckets = 10_000;
    s
}

fn accuracy(r: &Report) -> f64 {
    match r {
        Report::Classification(c) => c.accuracy,
        other => panic!("not a classification report: {other:?}"),
    }
}

#[test]
fn learns_multiclass_and_binary_and_round_trips_through_the_file() {
    let dir = tempfile::tempdir().unwrap();
    for (classes, loss) in [
        (&["a", "b", "c"][..], BagLossChoice::Softmax),
        (&["a", "b", "c"][..], BagLossChoice::Hs),
        (&["a", "b", "c"][..], BagLossChoice::Ova),
        (&["neg", "pos"][..], BagLossChoice::Softmax),
        (&["neg", "pos"][..], BagLossChoice::Hs),
    ] {
        let train_rows = data(600, classes, 7);
        let test_rows = data(150, classes, 99);
        let mut s = spec();
        s.bag.loss = loss;
        let out = train(&train_rows, "mem", None, "|", &s, &cfg(), &mut |_| {}).unwrap();
        let acc = accuracy(&evaluate(&out.pipeline, &test_rows, "test").unwrap());
        assert!(acc > 0.95, "{classes:?} {loss:?}: accuracy {acc}");
        let before = out.pipeline.outputs_of_texts(&["cue1 w3 w4"]).unwrap();
        let art = Artifact::from_training(out, cfg(), "train.csv", "00");
        let path = dir.path().join("m.fw");
        art.save(&path).unwrap();
        let loaded = Artifact::load(&path).unwrap();
        let after = loaded.pipeline.outputs_of_texts(&["cue1 w3 w4"]).unwrap();
        assert_eq!(before, after, "{classes:?} {loss:?}");
        assert_eq!(loaded.meta.spec.family, flywheel_model::Family::FastText);
    }
}

#[test]
fn multilabel_and_regression() {
    let mut rows = Vec::new();
    for i in 0..400u64 {
        let (a, b) = (i % 2 == 0, i % 3 == 0);
        let mut words = vec![format!("w{}", i % 17), format!("w{}", i % 11)];
        let mut labels = Vec::new();
        if a {
            words.push("sports".into());
            labels.push("sport");
        }
        if b {
            words.push("money".into());
            labels.push("finance");
        }
        if labels.is_empty() {
            labels.push("other");
            words.push("misc".into());
        }
        rows.push(Record {
            text: words.join(" "),
            labels: labels.iter().map(|l| l.to_string()).collect(),
            line: i + 2,
        });
    }
    let out = train(
        &rows,
        "mem",
        Some(Task::Multilabel),
        "|",
        &spec(),
        &cfg(),
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(out.pipeline.labels.task, Task::Multilabel);
    let p = out.pipeline.predict(&["w1 sports money"]).unwrap();
    match &p[0] {
        Prediction::Labels { labels, .. } => {
            assert_eq!(labels, &vec!["finance".to_string(), "sport".to_string()])
        }
        other => panic!("{other:?}"),
    }

    let reg: Vec<Record> = (0..300u64)
        .map(|i| {
            let v = (i % 3) as f32;
            rec(
                &format!("w{} level{}", i % 13, i % 3),
                &v.to_string(),
                i + 2,
            )
        })
        .collect();
    let c = TrainConfig {
        lr: Some(0.1),
        epochs: 20,
        ..cfg()
    };
    let out = train(
        &reg,
        "mem",
        Some(Task::Regression),
        "|",
        &spec(),
        &c,
        &mut |_| {},
    )
    .unwrap();
    match evaluate(&out.pipeline, &reg, "mem").unwrap() {
        Report::Regression(r) => assert!(r.mae < 0.25, "mae {}", r.mae),
        other => panic!("{other:?}"),
    }
}

#[test]
fn same_seed_same_model_and_other_seed_differs() {
    let rows = data(300, &["a", "b"], 3);
    let run = |seed| {
        let c = TrainConfig { seed, ..cfg() };
        let out = train(&rows, "mem", None, "|", &spec(), &c, &mut |_| {}).unwrap();
        Artifact::from_training(out, c, "t", "00")
            .pipeline
            .outputs_of_texts(&["w1 w2 cue0", "cue1"])
            .unwrap()
    };
    assert_eq!(run(1), run(1));
    assert_ne!(run(1), run(2));
}

#[test]
fn explanation_points_at_the_deciding_word() {
    let rows = data(600, &["a", "b"], 5);
    let out = train(&rows, "mem", None, "|", &spec(), &cfg(), &mut |_| {}).unwrap();
    let e = explain(&out.pipeline, "w1 w2 cue1 w3 unseenword").unwrap();
    assert_eq!(e.label, "b");
    let top = e
        .tokens
        .iter()
        .max_by(|a, b| a.attribution.total_cmp(&b.attribution))
        .unwrap();
    assert_eq!(top.text, "cue1");
    // Unknown words are still seen (through their n-grams) and get an attribution.
    assert!(e
        .tokens
        .iter()
        .any(|t| t.text == "unseenword" && !t.in_vocabulary));
}

#[test]
fn chinese_is_detected_and_read_per_character() {
    let pos = [
        "这部电影很好看",
        "服务很好，非常满意",
        "质量好，值得推荐",
        "很好很棒",
    ];
    let neg = [
        "这部电影太差了",
        "服务很差，不满意",
        "质量差，不推荐",
        "太差太烂",
    ];
    let mut rows = Vec::new();
    for i in 0..200u64 {
        let (t, l) = if i % 2 == 0 {
            (pos[(i / 2) as usize % 4], "正面")
        } else {
            (neg[(i / 2) as usize % 4], "负面")
        };
        rows.push(rec(t, l, i + 2));
    }
    let out = train(&rows, "mem", None, "|", &spec(), &cfg(), &mut |_| {}).unwrap();
    assert_eq!(
        out.pipeline.spec.tokenizer.segmentation,
        Segmentation::Cjk,
        "CJK text must switch the tokenizer without flags"
    );
    assert!(!out.pipeline.spec.detect_cjk);
    // A sentence never seen whole: only its characters were.
    let p = out.pipeline.predict(&["质量很差"]).unwrap();
    match &p[0] {
        Prediction::Class { label, .. } => assert_eq!(label, "负面"),
        other => panic!("{other:?}"),
    }
    // English data keeps the configured tokenizer.
    let out = train(
        &data(100, &["a", "b"], 1),
        "mem",
        None,
        "|",
        &spec(),
        &cfg(),
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(out.pipeline.spec.tokenizer.segmentation, Segmentation::Word);
}

#[test]
fn character_ngrams_generalise_to_unseen_spellings() {
    // The cue is a long word; the test spells it with a different suffix no text had.
    let mk = |n: usize, suffix: &str, seed: u64| -> Vec<Record> {
        data(n, &["a", "b"], seed)
            .into_iter()
            .map(|mut r| {
                r.text = r
                    .text
                    .replace("cue0", &format!("terrible{suffix}"))
                    .replace("cue1", &format!("wonderful{suffix}"));
                r
            })
            .collect()
    };
    let mut s = spec();
    s.bag.minn = 3;
    s.bag.maxn = 5;
    let out = train(&mk(400, "ly", 2), "mem", None, "|", &s, &cfg(), &mut |_| {}).unwrap();
    let acc = accuracy(&evaluate(&out.pipeline, &mk(100, "ness", 8), "test").unwrap());
    assert!(acc > 0.9, "accuracy on unseen spellings {acc}");
}

#[test]
fn rejects_bad_settings() {
    let rows = data(50, &["a", "b"], 1);
    let mut s = spec();
    s.bag.minn = 5;
    s.bag.maxn = 3;
    let e = train(&rows, "mem", None, "|", &s, &cfg(), &mut |_| {}).unwrap_err();
    assert!(e.to_string().contains("--minn"), "{e}");
    let mut s = spec();
    s.bag.word_ngrams = 0;
    assert!(train(&rows, "mem", None, "|", &s, &cfg(), &mut |_| {}).is_err());
    let mut s = spec();
    s.bag.loss = BagLossChoice::Hs;
    let e = train(
        &rows,
        "mem",
        Some(Task::Regression),
        "|",
        &s,
        &cfg(),
        &mut |_| {},
    );
    assert!(e.is_err());
}

#[test]
fn thread_count_does_not_change_the_model() {
    // Long texts, so rounds are big enough to be split among threads.
    let rows: Vec<Record> = data(64, &["a", "b"], 11)
        .into_iter()
        .map(|mut r| {
            r.text = std::iter::repeat_n(r.text.as_str(), 120)
                .collect::<Vec<_>>()
                .join(" ");
            r
        })
        .collect();
    let run = |threads| {
        let c = TrainConfig {
            threads,
            epochs: 3,
            ..cfg()
        };
        let out = train(&rows, "mem", None, "|", &spec(), &c, &mut |_| {}).unwrap();
        out.pipeline
            .outputs_of_texts(&["w1 cue0", "cue1 w9"])
            .unwrap()
    };
    let one = run(1);
    assert_eq!(one, run(2));
    assert_eq!(one, run(3));
}

/// The token of `text` with the largest attribution.
fn top_token(pipeline: &Pipeline, text: &str) -> String {
    let e = explain(pipeline, text).unwrap();
    let top = e
        .tokens
        .iter()
        .max_by(|a, b| a.attribution.total_cmp(&b.attribution))
        .unwrap();
    top.text.clone()
}

fn linear_spec() -> ModelSpec {
    let mut s = ModelSpec::linear();
    s.bag.buckets = 10_000;
    s.linear.c = 10.0;
    s
}

#[test]
fn linear_family_learns_round_trips_and_explains() {
    let dir = tempfile::tempdir().unwrap();
    for classes in [&["a", "b", "c"][..], &["neg", "pos"][..]] {
        let out = train(
            &data(600, classes, 7),
            "mem",
            None,
            "|",
            &linear_spec(),
            &cfg(),
            &mut |_| {},
        )
        .unwrap();
        let acc = accuracy(&evaluate(&out.pipeline, &data(150, classes, 99), "test").unwrap());
        assert!(acc > 0.95, "{classes:?}: accuracy {acc}");
        assert_eq!(top_token(&out.pipeline, "w1 w2 cue1 w3"), "cue1");
        let before = out.pipeline.outputs_of_texts(&["cue1 w3 w4"]).unwrap();
        let path = dir.path().join("l.fw");
        Artifact::from_training(out, cfg(), "train.csv", "00")
            .save(&path)
            .unwrap();
        let loaded = Artifact::load(&path).unwrap();
        assert_eq!(loaded.meta.spec.family, flywheel_model::Family::Linear);
        assert_eq!(
            before,
            loaded.pipeline.outputs_of_texts(&["cue1 w3 w4"]).unwrap()
        );
    }
    // Regression: least squares on the level word.
    let reg: Vec<Record> = (0..300u64)
        .map(|i| {
            rec(
                &format!("w{} level{}", i % 13, i % 3),
                &((i % 3) as f32).to_string(),
                i + 2,
            )
        })
        .collect();
    let out = train(
        &reg,
        "mem",
        Some(Task::Regression),
        "|",
        &linear_spec(),
        &cfg(),
        &mut |_| {},
    )
    .unwrap();
    match evaluate(&out.pipeline, &reg, "mem").unwrap() {
        Report::Regression(r) => assert!(r.r2 > 0.8, "r2 {}", r.r2),
        other => panic!("{other:?}"),
    }
    let mut bad = linear_spec();
    bad.linear.c = 0.0;
    assert!(train(&reg, "mem", None, "|", &bad, &cfg(), &mut |_| {}).is_err());
}

#[test]
fn balanced_linear_weighs_the_rare_class_up_and_round_trips() {
    // "amb" is said by 15 rows of the common class and by 10 of the rare one: unweighted, the
    // common class wins it; with balanced class weights, the rare one does.
    let rows: Vec<Record> = (0..300u64)
        .map(|i| {
            let (word, label) = match i % 30 {
                0..=9 => ("amb", "b"),
                10..=24 => ("amb", "a"),
                25 | 26 => ("other", "c"),
                _ => ("plain", "a"),
            };
            rec(&format!("{word} f{}", i % 7), label, i + 2)
        })
        .collect();
    let p_rare = |balanced: bool| -> (f32, flywheel_model::TrainOutcome) {
        let mut s = linear_spec();
        s.linear.balanced = balanced;
        let out = train(&rows, "mem", None, "|", &s, &cfg(), &mut |_| {}).unwrap();
        let p = out.pipeline.outputs_of_texts(&["amb f1"]).unwrap();
        assert_eq!(p.len(), 3, "{p:?}");
        (p[1], out)
    };
    let (plain, _) = p_rare(false);
    let (weighted, out) = p_rare(true);
    assert!(plain < 0.5 && weighted > 0.5, "{plain} {weighted}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.fw");
    Artifact::from_training(out, cfg(), "train.csv", "00")
        .save(&path)
        .unwrap();
    let loaded = Artifact::load(&path).unwrap();
    assert!(loaded.meta.spec.linear.balanced);
    let p = loaded.pipeline.outputs_of_texts(&["amb f1"]).unwrap();
    assert!((p[1] - weighted).abs() < 1e-6);
    // Specs written before class weights existed read as unweighted.
    let mut json = serde_json::to_value(linear_spec()).unwrap();
    json["linear"].as_object_mut().unwrap().remove("balanced");
    let old: ModelSpec = serde_json::from_value(json).unwrap();
    assert!(!old.linear.balanced);
}

#[test]
fn squared_hinge_linear_learns_round_trips_and_is_refused_where_it_does_not_apply() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = linear_spec();
    s.linear.loss = LinearLossChoice::SquaredHinge;
    s.linear.c = 1.0;
    for classes in [&["a", "b", "c"][..], &["neg", "pos"][..]] {
        let out = train(
            &data(600, classes, 5),
            "mem",
            None,
            "|",
            &s,
            &cfg(),
            &mut |_| {},
        )
        .unwrap();
        let acc = accuracy(&evaluate(&out.pipeline, &data(150, classes, 98), "test").unwrap());
        assert!(acc > 0.95, "{classes:?}: accuracy {acc}");
        // The margins' softmax: a distribution that ranks the deciding word's class first (a
        // binary model reports the second class's share alone).
        let p = out.pipeline.outputs_of_texts(&["w3 cue1 w4"]).unwrap();
        if let [pos] = p[..] {
            assert!(pos > 0.5 && pos < 1.0, "{p:?}");
        } else {
            let sum: f32 = p.iter().sum();
            assert!((sum - 1.0).abs() < 1e-5, "{p:?}");
            let best = p
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .unwrap()
                .0;
            assert_eq!(best, 1, "{classes:?}: {p:?}");
        }
        assert_eq!(top_token(&out.pipeline, "w1 w2 cue1 w3"), "cue1");
        let path = dir.path().join("h.fw");
        Artifact::from_training(out, cfg(), "train.csv", "00")
            .save(&path)
            .unwrap();
        let loaded = Artifact::load(&path).unwrap();
        assert_eq!(loaded.meta.spec.linear.loss, LinearLossChoice::SquaredHinge);
        assert_eq!(
            p,
            loaded.pipeline.outputs_of_texts(&["w3 cue1 w4"]).unwrap()
        );
    }
    // Multi-label and regression have no squared-hinge form: refused before any work.
    let multi: Vec<Record> = (0..60u64)
        .map(|i| rec(&format!("w{} x", i % 5), "a|b", i + 2))
        .collect();
    let err = train(
        &multi,
        "mem",
        Some(Task::Multilabel),
        "|",
        &s,
        &cfg(),
        &mut |_| {},
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("squared-hinge"), "{err}");
    let reg: Vec<Record> = (0..60u64)
        .map(|i| rec(&format!("w{}", i % 5), &(i % 3).to_string(), i + 2))
        .collect();
    assert!(train(
        &reg,
        "mem",
        Some(Task::Regression),
        "|",
        &s,
        &cfg(),
        &mut |_| {}
    )
    .is_err());
    // Specs written before the loss could be chosen read as logistic regression.
    let mut json = serde_json::to_value(linear_spec()).unwrap();
    json["linear"].as_object_mut().unwrap().remove("loss");
    let old: ModelSpec = serde_json::from_value(json).unwrap();
    assert_eq!(old.linear.loss, LinearLossChoice::Logistic);
    assert_eq!(
        LinearLossChoice::parse("squared-hinge").unwrap(),
        LinearLossChoice::SquaredHinge
    );
    assert!(LinearLossChoice::parse("hinge").is_err());
}

#[test]
fn min_df_drops_what_only_one_training_text_says() {
    // "zebra" and the bigram "zebra cue1" occur in one training text only (labelled "a",
    // against its cue word's "b").
    let mut rows = data(300, &["a", "b"], 5);
    rows.push(rec("zebra cue1", "a", 999));
    let fit = |min_df: usize| {
        let mut s = linear_spec();
        s.linear.min_df = min_df;
        train(&rows, "mem", None, "|", &s, &cfg(), &mut |_| {}).unwrap()
    };
    let (kept, dropped) = (fit(1), fit(2));
    assert_eq!(kept.pipeline.spec.linear.min_df, 1);
    // Fewer rows: the one-text n-grams have none.
    assert!(
        dropped.pipeline.num_parameters() < kept.pipeline.num_parameters(),
        "{} vs {}",
        dropped.pipeline.num_parameters(),
        kept.pipeline.num_parameters()
    );
    let out = |o: &flywheel_model::TrainOutcome, text: &str| {
        o.pipeline.outputs_of_texts(&[text]).unwrap()
    };
    // With min_df=1 the rare word is a feature; with min_df=2 it reads as an unknown word.
    assert_ne!(out(&kept, "zebra w1"), out(&kept, "unseen w1"));
    assert_eq!(out(&dropped, "zebra w1"), out(&dropped, "unseen w1"));
    // Features that several texts share still decide.
    let acc = accuracy(&evaluate(&dropped.pipeline, &data(150, &["a", "b"], 99), "test").unwrap());
    assert!(acc > 0.95, "accuracy {acc}");
    // The pruned model round-trips to the same outputs.
    let before = out(&dropped, "zebra cue1 w3");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.fw");
    Artifact::from_training(dropped, cfg(), "train.csv", "00")
        .save(&path)
        .unwrap();
    let loaded = Artifact::load(&path).unwrap();
    assert_eq!(loaded.meta.spec.linear.min_df, 2);
    assert_eq!(
        before,
        loaded
            .pipeline
            .outputs_of_texts(&["zebra cue1 w3"])
            .unwrap()
    );
    // Specs written before the setting existed keep every feature.
    let mut json = serde_json::to_value(linear_spec()).unwrap();
    json["linear"].as_object_mut().unwrap().remove("min_df");
    let old: ModelSpec = serde_json::from_value(json).unwrap();
    assert_eq!(old.linear.min_df, 1);
    assert_eq!(ModelSpec::linear().linear.min_df, 2);
}

#[test]
fn folded_digits_read_unseen_numbers_by_their_shape_and_round_trip() {
    // Class "b" texts carry a 4-digit number, each a different one; class "a" texts none.
    let rows: Vec<Record> = (0..300u64)
        .map(|i| {
            let filler = format!("w{} w{}", i % 17, (i * 7) % 23);
            match i % 2 {
                0 => rec(&format!("{filler} call {}", 1000 + i * 3), "b", i + 2),
                _ => rec(&format!("{filler} call now"), "a", i + 2),
            }
        })
        .collect();
    let fit = |fold: bool| {
        let mut s = linear_spec();
        s.linear.min_df = 1;
        s.tokenizer.fold_digits = fold;
        train(&rows, "mem", None, "|", &s, &cfg(), &mut |_| {}).unwrap()
    };
    let (kept, folded) = (fit(false), fit(true));
    let out = |o: &flywheel_model::TrainOutcome, text: &str| {
        o.pipeline.outputs_of_texts(&[text]).unwrap()
    };
    // Folded, a number never seen in training is the feature "0000" that every "b" text had.
    assert_eq!(out(&folded, "w1 call 9876"), out(&folded, "w1 call 1006"));
    match &folded.pipeline.predict(&["w1 call 9876"]).unwrap()[0] {
        Prediction::Class { label, .. } => assert_eq!(label, "b"),
        other => panic!("{other:?}"),
    }
    assert_eq!(top_token(&folded.pipeline, "w1 call 9876"), "9876");
    // Kept, every number is its own word: an unseen one is no evidence.
    assert_ne!(out(&kept, "w1 call 9876"), out(&kept, "w1 call 1006"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.fw");
    let before = out(&folded, "w2 call 55");
    Artifact::from_training(folded, cfg(), "train.csv", "00")
        .save(&path)
        .unwrap();
    let loaded = Artifact::load(&path).unwrap();
    assert!(loaded.meta.spec.tokenizer.fold_digits);
    assert_eq!(
        before,
        loaded.pipeline.outputs_of_texts(&["w2 call 55"]).unwrap()
    );
    // Specs written before the setting existed keep digits as they are.
    let mut json = serde_json::to_value(linear_spec()).unwrap();
    json["tokenizer"]
        .as_object_mut()
        .unwrap()
        .remove("fold_digits");
    let old: ModelSpec = serde_json::from_value(json).unwrap();
    assert!(!old.tokenizer.fold_digits);
}

#[test]
fn multilabel_threshold_is_tuned_on_validation_and_saved() {
    // Three labels; each text carries the cue words of its labels among many fillers, so
    // probabilities of true labels sit below 0.5 for a short training run.
    let mut rows = Vec::new();
    let names = ["red", "green", "blue"];
    for i in 0..600u64 {
        let mut words: Vec<String> = (0..12)
            .map(|j| format!("f{}", (i * 7 + j * 13) % 97))
            .collect();
        let mut labels = Vec::new();
        // Rare labels (one text in eight each): an under-trained model keeps their
        // probabilities low, so the best threshold is below 0.5.
        for (b, name) in names.iter().enumerate() {
            if i % 8 == b as u64 || i % 24 == 3 + b as u64 {
                words.push(format!("cue{name}"));
                labels.push(name.to_string());
            }
        }
        if labels.is_empty() {
            labels.push("none".to_string());
        }
        rows.push(Record {
            text: words.join(" "),
            labels,
            line: i + 2,
        });
    }
    let c = TrainConfig {
        epochs: 1,
        lr: Some(0.05),
        validation_split: 0.25,
        ..cfg()
    };
    let out = train(
        &rows,
        "mem",
        Some(Task::Multilabel),
        "|",
        &spec(),
        &c,
        &mut |_| {},
    )
    .unwrap();
    let t = out.pipeline.labels.threshold;
    assert!(t > 0.0 && t < 0.5, "threshold {t}");
    // The tuned threshold is at least as good as 0.5 on the validation rows.
    let val = &rows[out.train_rows..];
    let tuned = match evaluate(&out.pipeline, val, "v").unwrap() {
        Report::Multilabel(m) => m.macro_f1,
        other => panic!("{other:?}"),
    };
    let mut half = out.pipeline.clone();
    half.labels.threshold = 0.5;
    let plain = match evaluate(&half, val, "v").unwrap() {
        Report::Multilabel(m) => m.macro_f1,
        other => panic!("{other:?}"),
    };
    assert!(tuned > plain, "tuned {tuned} <= 0.5's {plain}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ml.fw");
    Artifact::from_training(out, c, "t", "00")
        .save(&path)
        .unwrap();
    assert_eq!(Artifact::load(&path).unwrap().pipeline.labels.threshold, t);
}

#[test]
fn damaged_ngram_model_files_are_refused() {
    for spec in [spec(), linear_spec()] {
        let out = train(
            &data(200, &["a", "b", "c"], 3),
            "mem",
            None,
            "|",
            &spec,
            &cfg(),
            &mut |_| {},
        )
        .unwrap();
        let bytes = Artifact::from_training(out, cfg(), "t", "00")
            .to_bytes()
            .unwrap();
        assert!(Artifact::from_bytes(&bytes, "ok").is_ok());
        // Truncated anywhere.
        for cut in [10, bytes.len() / 3, bytes.len() - 1] {
            assert!(
                Artifact::from_bytes(&bytes[..cut], "cut").is_err(),
                "cut at {cut}"
            );
        }
        // One flipped bit in the data part (the bucket list and the weights live at the end).
        for back in [1, 5, 17, 64, 301] {
            let mut b = bytes.clone();
            let at = b.len() - back;
            b[at] ^= 0x10;
            let e = Artifact::from_bytes(&b, "flip").unwrap_err().to_string();
            assert!(e.contains("checksum"), "{}: {e}", spec.family);
        }
    }
}
