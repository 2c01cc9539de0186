//! Trains one small model of every family that needs no pretrained encoder, with a fixed seed,
//! and writes their model files: a refactor that claims "behaviour unchanged" runs it before
//! and after and compares the files byte for byte (with `SOURCE_DATE_EPOCH` set).
//!
//! `SOURCE_DATE_EPOCH=0 cargo run --release -p flywheel-model --example model_files -- DATA OUT_DIR`

use std::path::Path;

use flywheel_data::{read_labelled, ReadOptions};
use flywheel_model::{train, Artifact, ModelSpec, TrainConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [data, out] = args.as_slice() else {
        return Err("usage: model_files DATA OUT_DIR".into());
    };
    let data = read_labelled(Path::new(data), &ReadOptions::default())?;
    let rows = &data.records[..data.records.len().min(2000)];
    std::fs::create_dir_all(out)?;
    let sequence = TrainConfig {
        epochs: 2,
        threads: 2,
        ..TrainConfig::default()
    };
    let bag = TrainConfig {
        epochs: 3,
        lr: Some(0.1),
        validation_split: 0.1,
        threads: 2,
        ..TrainConfig::default()
    };
    let masked = ModelSpec {
        mask: true,
        ..ModelSpec::default()
    };
    let runs = [
        ("lstm", ModelSpec::default(), &sequence),
        ("lstm-masked", masked, &sequence),
        ("gru", ModelSpec::gru(), &sequence),
        ("bilstm", ModelSpec::bilstm(), &sequence),
        ("cnn", ModelSpec::cnn(), &sequence),
        ("fasttext", ModelSpec::fasttext(), &bag),
        ("linear", ModelSpec::linear(), &bag),
    ];
    for (name, spec, cfg) in runs {
        let outcome = train(rows, "data", None, "|", &spec, cfg, &mut |_| {})?;
        let artifact = Artifact::from_training(outcome, cfg.clone(), "data", "0");
        let path = Path::new(out).join(format!("{name}.fw"));
        artifact.save(&path)?;
        println!("{}", path.display());
    }
    Ok(())
}
