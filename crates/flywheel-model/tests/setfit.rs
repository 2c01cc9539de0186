//! The `setfit` and `zeroshot` families on a tiny random BERT written by the test (no
//! download): our engine's forward pass equals candle's on the same weights; a SetFit model
//! fine-tunes every layer, saves its weights in the model file and predicts the same after
//! loading, is reproducible for a seed and thread count, and refuses regression; a zero-shot
//! model calibrates its softmax and round-trips through its file.
#![cfg(feature = "encoder")]

use std::path::{Path, PathBuf};

use flywheel_data::Record;
use flywheel_model::embed::load_encoder;
use flywheel_model::{train, Artifact, Family, ModelSpec, Task, TrainConfig};
use flywheel_nn::BertCache;

fn tiny(dir: &Path, seed: u64) -> PathBuf {
    let enc = dir.join(format!("enc{seed}"));
    std::fs::create_dir_all(&enc).unwrap();
    flywheel_encoder::testing::write_tiny_bert(&enc, seed).unwrap();
    enc
}

/// "happy" / "great" mark pos, "sad" / "awful" neg.
fn records(n: usize) -> Vec<Record> {
    let fill = ["a day", "the film", "the day was", "a film"];
    (0..n)
        .map(|i| {
            let (word, label) = match i % 4 {
                0 => ("happy", "pos"),
                1 => ("sad", "neg"),
                2 => ("great", "pos"),
                _ => ("awful", "neg"),
            };
            Record {
                text: format!("{} {word} !", fill[(i / 4) % 4]),
                labels: vec![label.to_string()],
                line: i as u64 + 2,
            }
        })
        .collect()
}

fn config() -> TrainConfig {
    TrainConfig {
        epochs: 1,
        validation_split: 0.0,
        threads: 2,
        seed: 3,
        ..TrainConfig::default()
    }
}

#[test]
fn our_forward_pass_equals_candles_on_the_same_weights() {
    let dir = tempfile::tempdir().unwrap();
    let encoder = load_encoder(&tiny(dir.path(), 4)).unwrap();
    let bert = encoder.trainable().unwrap();
    let texts = ["a happy day !", "the film was awful", "今天好", "sad"];
    let ids: Vec<Vec<u32>> = texts
        .iter()
        .map(|t| {
            let mut v = Vec::new();
            encoder.token_ids(t, &mut v);
            v
        })
        .collect();
    let seqs: Vec<&[u32]> = ids.iter().map(|v| v.as_slice()).collect();
    let ours = bert.forward(&seqs, None, &mut BertCache::new()).unwrap();
    let candle = encoder.embed_ids(&seqs).unwrap();
    let dim = encoder.dim();
    for (i, (a, b)) in ours.chunks(dim).zip(candle.chunks(dim)).enumerate() {
        let norm = a.iter().map(|x| x * x).sum::<f32>().sqrt();
        for (x, y) in a.iter().zip(b) {
            assert!(
                (x / norm - y).abs() < 1e-5,
                "text {i}: {} against {y}",
                x / norm
            );
        }
    }
}

#[test]
fn setfit_fine_tunes_saves_its_weights_and_predicts_the_same_after_loading() {
    let dir = tempfile::tempdir().unwrap();
    let enc = tiny(dir.path(), 5);
    let data = records(24);
    let spec = ModelSpec::setfit(enc.display().to_string());
    let out = train(&data, "data", None, "|", &spec, &config(), &mut |_| {}).unwrap();
    let p = &out.pipeline;
    assert_eq!(p.spec.family, Family::SetFit);
    let ft = p.spec.fine_tune.clone().unwrap();
    let base = p.spec.encoder.clone().unwrap();
    assert_eq!(ft.tuned_sha256.len(), 64);
    assert_ne!(ft.tuned_sha256, base.sha256, "the weights changed");
    let bytes = Artifact::from_training(out.clone(), config(), "data", "x")
        .to_bytes()
        .unwrap();
    let loaded = Artifact::from_bytes(&bytes, "m").unwrap();
    let texts: Vec<&str> = data.iter().map(|r| r.text.as_str()).collect();
    assert_eq!(
        p.outputs_of_texts(&texts).unwrap(),
        loaded.pipeline.outputs_of_texts(&texts).unwrap()
    );
    // Every layer moved away from the base encoder.
    let frozen = load_encoder(&enc).unwrap().trainable().unwrap();
    let tuned = flywheel_model::families::setfit::SetFitNet::body_of(&loaded.pipeline).unwrap();
    for prm in frozen.params() {
        let moved = frozen.weights[prm.range()]
            .iter()
            .zip(&tuned.weights[prm.range()])
            .any(|(a, b)| a != b);
        assert!(moved, "{} did not change", prm.name);
    }
    // Same seed and threads: the same weights.
    let again = train(&data, "data", None, "|", &spec, &config(), &mut |_| {}).unwrap();
    assert_eq!(
        again.pipeline.spec.fine_tune.unwrap().tuned_sha256,
        ft.tuned_sha256
    );
    // A model whose base encoder changed is refused.
    let other = tiny(dir.path(), 6);
    std::fs::copy(
        other.join("model.safetensors"),
        enc.join("model.safetensors"),
    )
    .unwrap();
    let err = Artifact::from_bytes(&bytes, "m").unwrap_err().to_string();
    assert!(
        err.contains("not the one the model was trained with"),
        "{err}"
    );
}

#[test]
fn setfit_refuses_regression() {
    let dir = tempfile::tempdir().unwrap();
    let enc = tiny(dir.path(), 7);
    let spec = ModelSpec::setfit(enc.display().to_string());
    let mut numbers = records(8);
    for (i, r) in numbers.iter_mut().enumerate() {
        r.labels = vec![format!("{}.5", i)];
    }
    let err = train(
        &numbers,
        "data",
        Some(Task::Regression),
        "|",
        &spec,
        &config(),
        &mut |_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("does not fit regression"), "{err}");
}

#[test]
fn a_zero_shot_model_calibrates_its_softmax_and_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let enc = tiny(dir.path(), 8);
    let data = records(16);
    let mut spec = ModelSpec::zeroshot(enc.display().to_string());
    if let Some(z) = spec.zero_shot.as_mut() {
        z.templates = vec!["{} day".into(), "a {}".into()];
        z.descriptions.insert("pos".into(), "happy great".into());
        z.descriptions.insert("neg".into(), "sad awful".into());
    }
    let out = train(&data, "data", None, "|", &spec, &config(), &mut |_| {}).unwrap();
    let scale = out.pipeline.spec.zero_shot.clone().unwrap().scale;
    assert!(scale > 0.0 && scale != 20.0, "calibrated: {scale}");
    let texts: Vec<&str> = data.iter().map(|r| r.text.as_str()).collect();
    let outputs = out.pipeline.outputs_of_texts(&texts).unwrap();
    assert!(outputs.iter().all(|p| (0.0..=1.0).contains(p)));
    let bytes = Artifact::from_training(out.clone(), config(), "data", "x")
        .to_bytes()
        .unwrap();
    let loaded = Artifact::from_bytes(&bytes, "m").unwrap();
    assert_eq!(loaded.pipeline.outputs_of_texts(&texts).unwrap(), outputs);
    // With no rows at all, from label names.
    let labels = flywheel_model::families::zeroshot::zero_shot_labels(&[
        "pos".into(),
        "neg".into(),
        "meh".into(),
    ])
    .unwrap();
    let p = flywheel_model::families::zeroshot::zero_shot_pipeline(&spec, labels, 1).unwrap();
    let probs = p.outputs_of_texts(&["a happy day"]).unwrap();
    assert_eq!(probs.len(), 3);
    assert!((probs.iter().sum::<f32>() - 1.0).abs() < 1e-5);
}
