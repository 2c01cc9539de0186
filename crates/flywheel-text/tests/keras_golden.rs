//! Golden tests against real Keras output (`keras.src.legacy.preprocessing.text.Tokenizer` and
//! `keras.utils.pad_sequences`). Fixture: `tests/fixtures/keras_tokenizer.json`, made by
//! `tests/fixtures/gen_keras_fixtures.py` at the repository root.

use flywheel_text::{pad_sequences, KerasTokenizer, Side, TokenizerConfig};
use serde_json::Value;

fn fixture() -> Value {
    let path = format!(
        "{}/tests/fixtures/keras_tokenizer.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

fn seqs(v: &Value) -> Vec<Vec<u32>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as u32)
                .collect()
        })
        .collect()
}

fn side(v: &Value) -> Side {
    v.as_str().unwrap().parse().unwrap()
}

#[test]
fn tokenizer_and_padding_match_keras() {
    let fx = fixture();
    let cases = fx["cases"].as_array().unwrap();
    assert!(cases.len() >= 10);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let c = &case["config"];
        let config = TokenizerConfig {
            num_words: c["num_words"].as_u64().map(|n| n as usize),
            filters: c["filters"].as_str().unwrap().to_string(),
            lower: c["lower"].as_bool().unwrap(),
            split: c["split"].as_str().unwrap().to_string(),
            char_level: c["char_level"].as_bool().unwrap(),
            oov_token: c["oov_token"].as_str().map(str::to_string),
            segmentation: Default::default(),
            fold_digits: false,
        };
        let num_words = config.num_words;
        let mut tok = KerasTokenizer::new(config).unwrap();
        tok.fit(&strings(&case["fit_texts"]));
        assert_eq!(
            tok.document_count(),
            case["document_count"].as_u64().unwrap(),
            "{name}: document count"
        );
        // Every word Keras can emit (index < num_words) has the same index here.
        for pair in case["word_index"].as_array().unwrap() {
            let word = pair[0].as_str().unwrap();
            let index = pair[1].as_u64().unwrap() as u32;
            if num_words.is_none_or(|n| (index as usize) < n) {
                assert_eq!(tok.word_index(word), Some(index), "{name}: word {word:?}");
            }
        }
        let got = tok.texts_to_sequences(&strings(&case["texts"]));
        let want = seqs(&case["sequences"]);
        assert_eq!(got, want, "{name}: sequences");
        for p in case["padded"].as_array().unwrap() {
            let out = pad_sequences(
                &got,
                p["maxlen"].as_u64().map(|n| n as usize),
                side(&p["padding"]),
                side(&p["truncating"]),
                p["value"].as_u64().unwrap() as u32,
            );
            assert_eq!(out, seqs(&p["output"]), "{name}: padded {p:?}");
        }
    }
}
