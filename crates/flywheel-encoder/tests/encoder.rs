//! The encoder on a tiny random BERT built here (no download): candle's output pooled and
//! normalised matches a plain f64 BERT written in this file; a text's vector does not depend on
//! what it is batched with (padding is masked); the thread count does not change results; and,
//! when the real all-MiniLM-L6-v2 is on this machine (`FLYWHEEL_ENCODER_DIR`, or
//! `flywheel encoders fetch`'s default place), its embeddings match sentence-transformers'
//! (the committed fixture) with cosine ≥ 0.9999. With `FLYWHEEL_REQUIRE_ENCODER=1` (CI) a missing
//! model fails that test instead of skipping it; a model directory whose files differ from the
//! fixture's SHA-256s is always refused.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::Device;
use flywheel_encoder::testing::{write_tiny_bert, H, HEADS, LAYERS};
use flywheel_encoder::Encoder;

/// The weights as f64 matrices, for the reference.
struct Weights(HashMap<String, (Vec<usize>, Vec<f64>)>);

impl Weights {
    fn load(dir: &Path) -> Weights {
        let tensors =
            candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu).unwrap();
        Weights(
            tensors
                .into_iter()
                .map(|(k, t)| {
                    let shape = t.dims().to_vec();
                    let data: Vec<f64> = t
                        .flatten_all()
                        .unwrap()
                        .to_vec1::<f32>()
                        .unwrap()
                        .into_iter()
                        .map(f64::from)
                        .collect();
                    (k, (shape, data))
                })
                .collect(),
        )
    }

    fn get(&self, name: &str) -> &[f64] {
        &self.0[name].1
    }

    /// `x W^T + b` for a `[out, in]` weight (as torch's Linear).
    fn linear(&self, x: &[Vec<f64>], prefix: &str) -> Vec<Vec<f64>> {
        let (shape, w) = &self.0[&format!("{prefix}.weight")];
        let b = self.get(&format!("{prefix}.bias"));
        let (out, inp) = (shape[0], shape[1]);
        x.iter()
            .map(|row| {
                (0..out)
                    .map(|o| b[o] + (0..inp).map(|i| row[i] * w[o * inp + i]).sum::<f64>())
                    .collect()
            })
            .collect()
    }

    fn layer_norm(&self, x: &[Vec<f64>], prefix: &str) -> Vec<Vec<f64>> {
        let g = self.get(&format!("{prefix}.weight"));
        let b = self.get(&format!("{prefix}.bias"));
        x.iter()
            .map(|row| {
                let n = row.len() as f64;
                let mean = row.iter().sum::<f64>() / n;
                let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
                row.iter()
                    .enumerate()
                    .map(|(i, v)| (v - mean) / (var + 1e-12).sqrt() * g[i] + b[i])
                    .collect()
            })
            .collect()
    }
}

/// erf by Abramowitz & Stegun 7.1.26 (error < 1.5e-7).
fn erf(x: f64) -> f64 {
    let t = 1.0 / (1.0 + 0.3275911 * x.abs());
    let y = 1.0
        - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t
            + 0.254829592)
            * t
            * (-x * x).exp();
    y.copysign(x)
}

/// A plain BERT forward pass over one unpadded sequence, mean pooling and normalisation.
fn reference(w: &Weights, ids: &[u32]) -> Vec<f64> {
    let words = w.get("embeddings.word_embeddings.weight");
    let pos = w.get("embeddings.position_embeddings.weight");
    let types = w.get("embeddings.token_type_embeddings.weight");
    let mut x: Vec<Vec<f64>> = ids
        .iter()
        .enumerate()
        .map(|(p, &id)| {
            (0..H)
                .map(|j| words[id as usize * H + j] + pos[p * H + j] + types[j])
                .collect()
        })
        .collect();
    x = w.layer_norm(&x, "embeddings.LayerNorm");
    let dh = H / HEADS;
    for l in 0..LAYERS {
        let p = format!("encoder.layer.{l}");
        let q = w.linear(&x, &format!("{p}.attention.self.query"));
        let k = w.linear(&x, &format!("{p}.attention.self.key"));
        let v = w.linear(&x, &format!("{p}.attention.self.value"));
        let n = x.len();
        let mut context = vec![vec![0.0; H]; n];
        for h in 0..HEADS {
            for i in 0..n {
                let scores: Vec<f64> = (0..n)
                    .map(|j| {
                        (0..dh)
                            .map(|d| q[i][h * dh + d] * k[j][h * dh + d])
                            .sum::<f64>()
                            / (dh as f64).sqrt()
                    })
                    .collect();
                let max = scores.iter().cloned().fold(f64::MIN, f64::max);
                let exp: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                let total: f64 = exp.iter().sum();
                for d in 0..dh {
                    context[i][h * dh + d] = (0..n)
                        .map(|j| exp[j] / total * v[j][h * dh + d])
                        .sum::<f64>();
                }
            }
        }
        let attn = w.linear(&context, &format!("{p}.attention.output.dense"));
        let added: Vec<Vec<f64>> = attn
            .iter()
            .zip(&x)
            .map(|(a, r)| a.iter().zip(r).map(|(a, r)| a + r).collect())
            .collect();
        let attn_out = w.layer_norm(&added, &format!("{p}.attention.output.LayerNorm"));
        let inter: Vec<Vec<f64>> = w
            .linear(&attn_out, &format!("{p}.intermediate.dense"))
            .into_iter()
            .map(|r| {
                r.into_iter()
                    .map(|v| 0.5 * v * (1.0 + erf(v / 2f64.sqrt())))
                    .collect()
            })
            .collect();
        let out = w.linear(&inter, &format!("{p}.output.dense"));
        let added: Vec<Vec<f64>> = out
            .iter()
            .zip(&attn_out)
            .map(|(a, r)| a.iter().zip(r).map(|(a, r)| a + r).collect())
            .collect();
        x = w.layer_norm(&added, &format!("{p}.output.LayerNorm"));
    }
    let mut mean: Vec<f64> = (0..H)
        .map(|j| x.iter().map(|r| r[j]).sum::<f64>() / x.len() as f64)
        .collect();
    let norm = mean.iter().map(|v| v * v).sum::<f64>().sqrt();
    mean.iter_mut().for_each(|v| *v /= norm);
    mean
}

const TEXTS: [&str; 6] = [
    "a happy day",
    "the film was awful !",
    "",
    "今天好",
    "the the the the the the the the the the the the the the", // over max_seq_length (12)
    "happys unknownword day",
];

#[test]
fn the_tiny_bert_matches_a_plain_reference() {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_bert(dir.path(), 42).unwrap();
    let encoder = Encoder::load(dir.path()).unwrap();
    assert_eq!((encoder.dim(), encoder.max_len()), (H, 12));
    let weights = Weights::load(dir.path());
    let vectors = encoder.encode(&TEXTS, 1).unwrap();
    for (text, got) in TEXTS.iter().zip(&vectors) {
        let ids = encoder.token_ids(text).unwrap();
        assert!(
            ids.len() <= 12 && ids[0] == 2 && *ids.last().unwrap() == 3,
            "{ids:?}"
        );
        let want = reference(&weights, &ids);
        for (g, w) in got.iter().zip(&want) {
            assert!(
                (f64::from(*g) - w).abs() < 1e-4,
                "{text:?}: {got:?} vs {want:?}"
            );
        }
        let norm: f32 = got.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5);
    }
    // Chinese characters are single word pieces; unknown words are [UNK] (id 1).
    assert_eq!(encoder.token_ids("今天好").unwrap(), vec![2, 13, 14, 15, 3]);
    assert_eq!(
        encoder.token_ids("happys zzz").unwrap(),
        vec![2, 5, 16, 1, 3]
    );
}

#[test]
fn padding_and_threads_do_not_change_a_vector() {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_bert(dir.path(), 7).unwrap();
    let encoder = Encoder::load(dir.path()).unwrap();
    let alone: Vec<Vec<f32>> = TEXTS
        .iter()
        .map(|t| encoder.encode(&[*t], 1).unwrap().remove(0))
        .collect();
    let mut many: Vec<&str> = Vec::new();
    for i in 0..40 {
        many.push(TEXTS[i % TEXTS.len()]);
    }
    for threads in [1, 2] {
        let together = encoder.encode(&many, threads).unwrap();
        for (i, v) in together.iter().enumerate() {
            let a = &alone[i % TEXTS.len()];
            let diff = v
                .iter()
                .zip(a)
                .map(|(x, y)| (x - y).abs())
                .fold(0f32, f32::max);
            assert!(
                diff < 1e-5,
                "text {i} with {threads} threads differs by {diff}"
            );
        }
    }
    assert!(encoder.encode::<&str>(&[], 2).unwrap().is_empty());
}

#[test]
fn the_fingerprint_follows_the_weights_and_broken_directories_are_refused() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    write_tiny_bert(a.path(), 1).unwrap();
    write_tiny_bert(b.path(), 2).unwrap();
    let fa = flywheel_encoder::fingerprint(a.path()).unwrap();
    assert_eq!(fa, flywheel_encoder::fingerprint(a.path()).unwrap());
    assert_ne!(fa, flywheel_encoder::fingerprint(b.path()).unwrap());
    assert_eq!(Encoder::load(a.path()).unwrap().sha256(), fa);

    std::fs::remove_file(b.path().join("tokenizer.json")).unwrap();
    let err = Encoder::load(b.path()).unwrap_err().to_string();
    assert!(err.contains("tokenizer.json"), "{err}");
    std::fs::write(a.path().join("config.json"), "{\"hidden_size\": 3}").unwrap();
    let err = Encoder::load(a.path()).unwrap_err().to_string();
    assert!(err.contains("not a BERT-family config"), "{err}");
}

/// The real all-MiniLM-L6-v2, when this machine has it; a failure instead of `None` when
/// `FLYWHEEL_REQUIRE_ENCODER=1`.
fn minilm_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("FLYWHEEL_ENCODER_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| flywheel_encoder::fetch::default_dir("all-minilm-l6-v2"));
    let required = std::env::var("FLYWHEEL_REQUIRE_ENCODER").is_ok_and(|v| v == "1");
    let complete = flywheel_encoder::fetch::is_complete(&dir);
    assert!(
        complete || !required,
        "FLYWHEEL_REQUIRE_ENCODER=1 but {} holds no all-MiniLM-L6-v2 \
         (flywheel encoders fetch all-minilm-l6-v2, or set FLYWHEEL_ENCODER_DIR)",
        dir.display()
    );
    complete.then_some(dir)
}

/// Lower-case hex SHA-256 of a file.
fn sha256_hex(path: &Path) -> String {
    use sha2::{Digest, Sha256};
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    hex::encode(Sha256::digest(&bytes))
}

#[test]
fn minilm_matches_sentence_transformers() {
    let fixture: serde_json::Value =
        serde_json::from_str(include_str!("fixtures/minilm_parity.json")).unwrap();
    let Some(dir) = minilm_dir() else {
        eprintln!("all-MiniLM-L6-v2 is not on this machine (flywheel encoders fetch all-minilm-l6-v2): parity not checked");
        return;
    };
    let files = fixture["model_files_sha256"]
        .as_object()
        .expect("the fixture lists the model files' SHA-256");
    for name in ["config.json", "tokenizer.json", "model.safetensors"] {
        assert!(
            files.contains_key(name),
            "the fixture has no SHA-256 of {name}"
        );
    }
    for (name, want) in files {
        assert_eq!(
            sha256_hex(&dir.join(name)),
            want.as_str().expect("a hex string"),
            "{} is not the file the fixture was made with ({})",
            dir.join(name).display(),
            fixture["model_package"]
        );
    }
    let encoder = Encoder::load(&dir).unwrap();
    let sentences: Vec<String> = fixture["sentences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    let vectors = encoder.encode(&sentences, 2).unwrap();
    let embeddings = fixture["embeddings"].as_array().unwrap();
    assert_eq!(vectors.len(), sentences.len());
    assert_eq!(embeddings.len(), sentences.len());
    let mut worst = f64::MAX;
    for (i, (got, want)) in vectors.iter().zip(embeddings).enumerate() {
        let ids: Vec<u64> = fixture["token_ids"][i]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        let ours: Vec<u64> = encoder
            .token_ids(&sentences[i])
            .unwrap()
            .into_iter()
            .map(u64::from)
            .collect();
        assert_eq!(ours, ids, "word pieces of {:?}", sentences[i]);
        let want: Vec<f64> = want
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(got.len(), want.len(), "dimensions of {:?}", sentences[i]);
        let dot: f64 = got.iter().zip(&want).map(|(a, b)| f64::from(*a) * b).sum();
        let na: f64 = got
            .iter()
            .map(|a| f64::from(*a).powi(2))
            .sum::<f64>()
            .sqrt();
        let nb: f64 = want.iter().map(|b| b * b).sum::<f64>().sqrt();
        let cosine = dot / (na * nb);
        assert!(cosine >= 0.9999, "{:?}: cosine {cosine}", sentences[i]);
        worst = worst.min(cosine);
    }
    eprintln!("all-MiniLM-L6-v2 vs sentence-transformers: lowest cosine {worst:.9}");
}
