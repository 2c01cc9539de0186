//! The `encoder` family on a stand-in encoder defined here (deterministic word vectors, so no
//! model files are needed): the head learns, vectors are read back from the on-disk cache
//! instead of being encoded again, a saved model predicts the same after loading, loading
//! refuses a different encoder, n-grams can sit beside the vector, and explanations delete
//! words from the text as written.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use flywheel_data::Record;
use flywheel_model::autotune::AutotuneEvent;
use flywheel_model::embed::{register_encoder, EmbeddingCache, TextEncoder};
use flywheel_model::{
    autotune, explain, train, Artifact, AutotuneOptions, Metric, ModelError, ModelSpec, TrainConfig,
};

const DIM: usize = 8;

/// Each word's id is a hash of it; a text's vector is the normalised mean of fixed
/// pseudo-random word vectors, so words that mark a class move the vector one way.
#[derive(Debug)]
struct Stand {
    dir: PathBuf,
    fingerprint: String,
    seed: u64,
    cache: Option<PathBuf>,
    embedded: AtomicUsize,
}

fn hash(word: &str) -> u32 {
    word.bytes()
        .fold(2166136261u32, |h, b| (h ^ b as u32).wrapping_mul(16777619))
        % 10_000
        + 1
}

impl TextEncoder for Stand {
    fn dim(&self) -> usize {
        DIM
    }
    fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
    fn dir(&self) -> &Path {
        &self.dir
    }
    fn token_ids(&self, text: &str, out: &mut Vec<u32>) {
        out.extend(
            text.split_whitespace()
                .map(|w| hash(&w.to_lowercase()))
                .take(16),
        );
    }
    fn embed_ids(&self, seqs: &[&[u32]]) -> Result<Vec<f32>, ModelError> {
        self.embedded.fetch_add(seqs.len(), Ordering::SeqCst);
        let mut out = Vec::with_capacity(seqs.len() * DIM);
        for seq in seqs {
            let mut v = [0.0f32; DIM];
            for &id in seq.iter() {
                for (j, x) in v.iter_mut().enumerate() {
                    let mut s = (id as u64 + self.seed)
                        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                        .wrapping_add(j as u64);
                    s ^= s >> 29;
                    s = s.wrapping_mul(0xBF58_476D_1CE4_E5B9);
                    *x += ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0;
                }
            }
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
            out.extend(v.iter().map(|x| x / norm));
        }
        Ok(out)
    }
    fn cache_dir(&self) -> Option<PathBuf> {
        self.cache.clone()
    }
}

fn stand(dir: &Path, seed: u64, cache: Option<PathBuf>) -> Arc<Stand> {
    Arc::new(Stand {
        dir: dir.to_path_buf(),
        fingerprint: format!("{seed:064x}"),
        seed,
        cache,
        embedded: AtomicUsize::new(0),
    })
}

fn data(n: usize) -> Vec<Record> {
    let good = ["great", "love", "excellent", "happy"];
    let bad = ["awful", "hate", "terrible", "sad"];
    let noise = ["the", "a", "film", "day", "was", "it", "so", "and"];
    (0..n)
        .map(|i| {
            let pos = (i * 7 + i / 3) % 2 == 0;
            let mark = if pos { good[i % 4] } else { bad[(i / 2) % 4] };
            let text = format!(
                "{} {} {mark} {}",
                noise[i % 8],
                noise[(i / 8) % 8],
                noise[(i / 3) % 8]
            );
            Record {
                text,
                labels: vec![if pos { "pos" } else { "neg" }.to_string()],
                line: i as u64 + 2,
            }
        })
        .collect()
}

fn cfg() -> TrainConfig {
    TrainConfig {
        threads: 2,
        ..TrainConfig::default()
    }
}

fn spec(dir: &Path, ngrams: bool) -> ModelSpec {
    let mut s = ModelSpec::encoder(dir.display().to_string());
    if let Some(e) = s.encoder.as_mut() {
        e.ngrams = ngrams;
    }
    s
}

#[test]
fn the_head_learns_and_the_cache_saves_encoding() {
    let dir = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let enc = stand(dir.path(), 1, Some(cache.path().to_path_buf()));
    let dyn_enc: Arc<dyn TextEncoder> = enc.clone();
    register_encoder(dir.path(), &dyn_enc);
    let records = data(400);
    let out = train(
        &records,
        "t.csv",
        None,
        "|",
        &spec(dir.path(), false),
        &cfg(),
        &mut |_| {},
    )
    .unwrap();
    let val = out.validation.as_ref().and_then(|r| r.accuracy()).unwrap();
    assert!(val > 0.9, "validation accuracy {val}");
    let first = enc.embedded.load(Ordering::SeqCst);
    let distinct: std::collections::HashSet<&str> =
        records.iter().map(|r| r.text.as_str()).collect();
    assert_eq!(first, distinct.len(), "each distinct text encoded once");
    let recorded = out.pipeline.spec.encoder.clone().unwrap();
    assert_eq!(recorded.sha256, enc.fingerprint());
    assert_eq!(recorded.dim, DIM);

    // A second training reads every vector back from disk.
    let again = train(
        &records,
        "t.csv",
        None,
        "|",
        &spec(dir.path(), false),
        &cfg(),
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(enc.embedded.load(Ordering::SeqCst), first);
    let texts: Vec<&str> = records.iter().map(|r| r.text.as_str()).collect();
    assert_eq!(
        out.pipeline.outputs_of_texts(&texts).unwrap(),
        again.pipeline.outputs_of_texts(&texts).unwrap()
    );
    // The cached vectors are the encoder's.
    let c = EmbeddingCache::new(cache.path().join("unused"), enc.as_ref());
    let direct = flywheel_model::embed::embed_texts(enc.as_ref(), &texts[..5]).unwrap();
    let (cached, stats) = EmbeddingCache::new(cache.path().to_path_buf(), enc.as_ref())
        .embed(enc.as_ref(), &texts[..5])
        .unwrap();
    assert_eq!(stats.encoded, 0);
    assert_eq!(cached, direct);
    assert_ne!(c.key("a"), c.key("b"));

    // A damaged segment is skipped, not trusted: those texts are encoded again.
    for entry in std::fs::read_dir(cache.path()).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|x| x == "emb") {
            let bytes = std::fs::read(&p).unwrap();
            std::fs::write(&p, &bytes[..bytes.len() - 3]).unwrap();
        }
    }
    let (_, stats) = EmbeddingCache::new(cache.path().to_path_buf(), enc.as_ref())
        .embed(enc.as_ref(), &texts[..5])
        .unwrap();
    assert_eq!(stats.hits, 0);
    assert_eq!(stats.encoded, 5);
}

#[test]
fn saved_models_predict_the_same_and_refuse_another_encoder() {
    let dir = tempfile::tempdir().unwrap();
    let records = data(300);
    let texts: Vec<&str> = records.iter().map(|r| r.text.as_str()).collect();
    let path = dir.path().join("m.fw");
    let enc_dir = dir.path().join("encoder");
    std::fs::create_dir_all(&enc_dir).unwrap();
    for ngrams in [false, true] {
        let enc: Arc<dyn TextEncoder> = stand(&enc_dir, 3, None);
        register_encoder(&enc_dir, &enc);
        let out = train(
            &records,
            "t.csv",
            None,
            "|",
            &spec(&enc_dir, ngrams),
            &cfg(),
            &mut |_| {},
        )
        .unwrap();
        let expected = out.pipeline.outputs_of_texts(&texts).unwrap();
        let parameters = out.pipeline.num_parameters();
        Artifact::from_training(out, cfg(), "t.csv", "00")
            .save(&path)
            .unwrap();
        let loaded = Artifact::load(&path).unwrap();
        assert_eq!(loaded.pipeline.outputs_of_texts(&texts).unwrap(), expected);
        assert_eq!(loaded.pipeline.num_parameters(), parameters);
        assert_eq!(
            loaded.pipeline.spec.encoder.as_ref().map(|e| e.ngrams),
            Some(ngrams)
        );
        if ngrams {
            assert!(
                parameters > 2 * (DIM + 1),
                "n-gram weights are part of the head"
            );
        }
        drop(loaded);
        drop(enc);
        // Another encoder in the same place: refused, with both fingerprints named.
        let other: Arc<dyn TextEncoder> = stand(&enc_dir, 4, None);
        register_encoder(&enc_dir, &other);
        let err = Artifact::load(&path).unwrap_err().to_string();
        assert!(
            err.contains("not the one the model was trained with")
                && err.contains(&format!("{:064x}", 4))
                && err.contains(&format!("{:064x}", 3)),
            "{err}"
        );
        drop(other);
    }
    // An encoder directory that is gone is named in the error.
    let spec_dir = dir.path().join("gone");
    let mut s = spec(&spec_dir, false);
    s.encoder.as_mut().unwrap().sha256 = "ab".repeat(32);
    let err = train(&records, "t.csv", None, "|", &s, &cfg(), &mut |_| {}).unwrap_err();
    assert!(err.to_string().contains("gone"), "{err}");
}

#[test]
fn explanations_delete_words_from_the_text_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let enc: Arc<dyn TextEncoder> = stand(dir.path(), 5, None);
    register_encoder(dir.path(), &enc);
    let records = data(400);
    let out = train(
        &records,
        "t.csv",
        None,
        "|",
        &spec(dir.path(), false),
        &cfg(),
        &mut |_| {},
    )
    .unwrap();
    let text = "the film was great, so great";
    let e = explain(&out.pipeline, text).unwrap();
    let p = out.pipeline.predict(&[text]).unwrap();
    assert_eq!(p[0].to_json()["label"], e.label.as_str());
    assert!((p[0].to_json()["score"].as_f64().unwrap() - f64::from(e.score)).abs() < 1e-6);
    let words: Vec<&str> = e.tokens.iter().map(|t| t.text.as_str()).collect();
    assert!(
        words.starts_with(&["the", "film", "was", "great"]),
        "{words:?}"
    );
    assert!(e.tokens.iter().all(|t| t.in_vocabulary && !t.truncated));
    let top = e
        .tokens
        .iter()
        .max_by(|a, b| a.attribution.total_cmp(&b.attribution))
        .unwrap();
    assert_eq!(top.text, "great");
    assert_eq!(&text[top.start..top.end], "great");
}

#[test]
fn the_family_needs_an_encoder_directory() {
    let records = data(50);
    let mut s = ModelSpec::encoder(String::new());
    let err = train(&records, "t.csv", None, "|", &s, &cfg(), &mut |_| {}).unwrap_err();
    assert!(err.to_string().contains("--encoder DIR"), "{err}");
    s.encoder = None;
    assert!(s.validate().is_err());
    let mut linear = ModelSpec::linear();
    linear.encoder = ModelSpec::encoder("x").encoder;
    assert!(linear.validate().is_err());
}

#[test]
fn autotune_embeds_each_text_once_and_may_choose_the_encoder() {
    let dir = tempfile::tempdir().unwrap();
    let enc = stand(dir.path(), 9, None);
    let dyn_enc: Arc<dyn TextEncoder> = enc.clone();
    register_encoder(dir.path(), &dyn_enc);
    let records = data(400);
    let distinct: std::collections::HashSet<&str> =
        records.iter().map(|r| r.text.as_str()).collect();
    let opts = AutotuneOptions {
        budget_secs: 20.0,
        metric: Metric::MacroF1,
        seed: 3,
        threads: 2,
        validation_fraction: 0.2,
        encoder: Some(dir.path().display().to_string()),
        stop_at_budget: false,
    };
    let mut embedded = None;
    let out = autotune(&records, "t.csv", None, "|", &opts, &mut |ev| {
        if let AutotuneEvent::Embedded { texts, .. } = ev {
            embedded = Some(texts);
        }
    })
    .unwrap();
    assert_eq!(embedded, Some(400));
    let encoder_trials = out
        .trials
        .iter()
        .filter(|t| t.candidate.spec.family == flywheel_model::Family::Encoder)
        .count();
    assert!(encoder_trials > 0, "the encoder family is searched");
    // Trials and the final training read the vectors from memory: each text went through the
    // encoder once.
    assert_eq!(enc.embedded.load(Ordering::SeqCst), distinct.len());
    assert!(out.best_score > 0.8, "{}", out.best_score);
    let texts: Vec<&str> = records.iter().map(|r| r.text.as_str()).collect();
    let outputs = out.outcome.pipeline.outputs_of_texts(&texts[..3]).unwrap();
    assert_eq!(outputs.len(), 3);
}
