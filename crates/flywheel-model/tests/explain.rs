//! Explanations: offsets into the original text (English, Chinese, mixed), flags for tokens the
//! model does not see, a decisive word dominating, agreement with `predict`, and the deletion
//! (faithfulness) check on ≥ 200 texts.

use flywheel_data::Record;
use flywheel_model::explain::deletion_check;
use flywheel_model::{explain, explain_label, train, ModelSpec, Pipeline, Prediction, TrainConfig};

/// A tiny xorshift generator (tests must not depend on the engine's RNG).
struct Gen(u64);

impl Gen {
    fn next(&mut self, m: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % m
    }
}

/// Noise words plus sentiment words; the label is the sign of (#good − #bad), ties avoided.
fn sentiment_text(g: &mut Gen) -> (String, &'static str) {
    let good = ["great", "love", "excellent"];
    let bad = ["awful", "hate", "terrible"];
    let mut words: Vec<String> = (0..4 + g.next(6))
        .map(|_| format!("w{}", g.next(50)))
        .collect();
    let (np, nn) = loop {
        let (a, b) = (g.next(3), g.next(3));
        if a != b {
            break (a, b);
        }
    };
    for _ in 0..np {
        let at = g.next(words.len() as u64 + 1) as usize;
        words.insert(at, good[g.next(3) as usize].to_string());
    }
    for _ in 0..nn {
        let at = g.next(words.len() as u64 + 1) as usize;
        words.insert(at, bad[g.next(3) as usize].to_string());
    }
    (words.join(" "), if np > nn { "pos" } else { "neg" })
}

fn sentiment_data(n: usize, seed: u64) -> Vec<Record> {
    let mut g = Gen(seed | 1);
    (0..n)
        .map(|i| {
            let (text, label) = sentiment_text(&mut g);
            Record {
                text,
                labels: vec![label.to_string()],
                line: i as u64 + 2,
            }
        })
        .collect()
}

fn trained(records: &[Record], spec: &ModelSpec, epochs: usize) -> Pipeline {
    let cfg = TrainConfig {
        epochs,
        threads: 1,
        validation_split: 0.1,
        ..TrainConfig::default()
    };
    train(records, "mem", None, "|", spec, &cfg, &mut |_| {})
        .unwrap()
        .pipeline
}

fn word_spec() -> ModelSpec {
    let mut s = ModelSpec::default();
    s.tokenizer.num_words = Some(100);
    s.max_len = 20;
    s.embed_dim = 8;
    s.hidden = 8;
    s.dropout = 0.0;
    s.recurrent_dropout = 0.0;
    s
}

fn sentiment_model() -> Pipeline {
    trained(&sentiment_data(3000, 7), &word_spec(), 6)
}

fn substr(text: &str, start: usize, end: usize) -> String {
    text.chars().skip(start).take(end - start).collect()
}

#[test]
fn explains_sentiment_faithfully() {
    let model = sentiment_model();

    // A decisive word dominates and supports the label.
    let e = explain(&model, "w3 w17 excellent w8 w21").unwrap();
    assert_eq!(e.label, "pos");
    let best = e
        .tokens
        .iter()
        .max_by(|a, b| a.attribution.abs().total_cmp(&b.attribution.abs()))
        .unwrap();
    assert_eq!(best.text, "excellent", "{e:?}");
    assert!(best.attribution > 0.0);
    for t in &e.tokens {
        if t.text != "excellent" {
            assert!(
                t.attribution.abs() < 0.5 * best.attribution,
                "{t:?} vs {best:?}"
            );
        }
    }

    // The explanation's label and score are the prediction's.
    let text = "I hate w4, TERRIBLE w9!";
    let e = explain(&model, text).unwrap();
    match &model.predict(&[text]).unwrap()[0] {
        Prediction::Class { label, score, .. } => {
            assert_eq!(&e.label, label);
            assert!((e.score - score).abs() < 1e-5, "{} vs {score}", e.score);
        }
        p => panic!("unexpected prediction {p:?}"),
    }
    assert_eq!(e.label, "neg");
    let hate = e.tokens.iter().find(|t| t.text == "hate").unwrap();
    let terrible = e.tokens.iter().find(|t| t.text == "TERRIBLE").unwrap();
    assert!(
        hate.attribution > 0.0 && terrible.attribution > 0.0,
        "{e:?}"
    );
    // Explaining the other label flips the signs.
    let other = explain_label(&model, text, Some("pos")).unwrap();
    let hate_pos = other.tokens.iter().find(|t| t.text == "hate").unwrap();
    assert!((hate_pos.attribution + hate.attribution).abs() < 1e-5);
    assert!(explain_label(&model, text, Some("nope")).is_err());

    // Faithfulness: deleting the 3 top-attributed tokens changes the score more than deleting 3
    // random ones, averaged over 250 held-out texts.
    let mut g = Gen(99);
    let texts: Vec<String> = (0..250).map(|_| sentiment_text(&mut g).0).collect();
    let check = deletion_check(&model, &texts, 3, 1).unwrap();
    println!("deletion check on synthetic data: {check:?}");
    assert!(check.texts >= 200, "{check:?}");
    assert!(
        check.mean_drop_top > check.mean_drop_random + 0.05,
        "{check:?}"
    );
    assert!(check.mean_abs_change_top > check.mean_abs_change_random);
}

#[test]
fn offsets_flags_and_truncation() {
    let mut spec = word_spec();
    spec.max_len = 4;
    let model = trained(&sentiment_data(300, 3), &spec, 1);
    // 'İ' lower-cases to two chars, '😀' is 4 bytes, 'é' 2 bytes: offsets are chars of the
    // original text.
    let text = "İzmir café 😀 w1, GREAT w2 w3 love w4";
    let e = explain(&model, text).unwrap();
    let words: Vec<&str> = e.tokens.iter().map(|t| t.text.as_str()).collect();
    assert_eq!(
        words,
        ["İzmir", "café", "😀", "w1", "GREAT", "w2", "w3", "love", "w4"]
    );
    for t in &e.tokens {
        assert_eq!(substr(text, t.start, t.end), t.text);
    }
    assert_eq!((e.tokens[1].start, e.tokens[1].end), (6, 10));
    assert_eq!((e.tokens[4].start, e.tokens[4].end), (17, 22));
    // Unknown words are dropped: flagged, attribution 0.
    for t in &e.tokens[..3] {
        assert!(
            !t.in_vocabulary && !t.truncated && t.attribution == 0.0,
            "{t:?}"
        );
    }
    // max_len 4 with pre-truncation keeps the last 4 known tokens: w3 love w4 and w2.
    let kept: Vec<&str> = e
        .tokens
        .iter()
        .filter(|t| t.in_vocabulary && !t.truncated)
        .map(|t| t.text.as_str())
        .collect();
    assert_eq!(kept, ["w2", "w3", "love", "w4"]);
    for t in e.tokens.iter().filter(|t| t.truncated) {
        assert_eq!(t.attribution, 0.0);
    }
    // JSON shape.
    let v = serde_json::to_value(&e).unwrap();
    assert!(v["label"].is_string() && v["score"].is_number());
    assert_eq!(v["tokens"][1]["text"], "café");
    assert_eq!(v["tokens"][1]["start"], 6);
    assert!(v["tokens"][1]["attribution"].is_number());

    // Empty and token-less texts explain to no tokens.
    assert!(explain(&model, "").unwrap().tokens.is_empty());
    assert!(explain(&model, "!!! ...").unwrap().tokens.is_empty());
}

#[test]
fn chinese_char_level_offsets() {
    let pos = ["好", "赞", "爱"];
    let neg = ["差", "烂", "恨"];
    let filler: Vec<char> = "的了是在我有他这中大来上国个到说们为子和你地出道也时年"
        .chars()
        .collect();
    let mut g = Gen(5);
    let records: Vec<Record> = (0..800)
        .map(|i| {
            let mut s: String = (0..6)
                .map(|_| filler[g.next(filler.len() as u64) as usize])
                .collect();
            let label = i % 2;
            let w = if label == 1 { pos } else { neg }[g.next(3) as usize];
            s.insert_str(3 * g.next(3) as usize, w);
            Record {
                text: s,
                labels: vec![if label == 1 { "pos" } else { "neg" }.to_string()],
                line: i as u64 + 2,
            }
        })
        .collect();
    let mut spec = word_spec();
    spec.tokenizer.char_level = true;
    let model = trained(&records, &spec, 4);
    let text = "这个电影很好, Very好!";
    let e = explain(&model, text).unwrap();
    let chars: Vec<char> = text.chars().collect();
    assert_eq!(e.tokens.len(), chars.len());
    for (i, t) in e.tokens.iter().enumerate() {
        assert_eq!((t.start, t.end), (i, i + 1));
        assert_eq!(t.text, chars[i].to_string());
    }
    assert_eq!(e.label, "pos");
}
