//! Training-loop behaviour: Keras's validation split, early stopping with best-weight
//! restoration, and the fast inference path agreeing with evaluation.

use flywheel_data::Record;
use flywheel_model::{evaluate, train, ModelSpec, Report, TrainConfig};

fn records(n: usize, seed: u64, signal: bool) -> Vec<Record> {
    let mut x = seed | 1;
    let mut next = move |m: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % m
    };
    (0..n)
        .map(|i| {
            let label = if signal { i % 2 } else { next(2) as usize };
            let mut words: Vec<String> = (0..6).map(|_| format!("w{}", next(40))).collect();
            if signal {
                words.push(if label == 1 {
                    "yes".into()
                } else {
                    "no".into()
                });
            }
            Record {
                text: words.join(" "),
                labels: vec![if label == 1 { "a".into() } else { "b".into() }],
                line: i as u64 + 2,
            }
        })
        .collect()
}

fn small_spec() -> ModelSpec {
    let mut s = ModelSpec::default();
    s.tokenizer.num_words = Some(60);
    s.max_len = 10;
    s.embed_dim = 8;
    s.hidden = 8;
    s
}

#[test]
fn validation_split_takes_the_last_rows() {
    let data = records(50, 3, true);
    let cfg = TrainConfig {
        epochs: 1,
        validation_split: 0.2,
        ..TrainConfig::default()
    };
    let out = train(&data, "mem", None, "|", &small_spec(), &cfg, &mut |_| {}).unwrap();
    assert_eq!((out.train_rows, out.val_rows), (40, 10));
    // Keras: split_at = floor(n * (1 - split)).
    let cfg = TrainConfig {
        validation_split: 0.3,
        ..cfg
    };
    let out = train(
        &data[..7],
        "mem",
        None,
        "|",
        &small_spec(),
        &cfg,
        &mut |_| {},
    )
    .unwrap();
    assert_eq!((out.train_rows, out.val_rows), (4, 3));
}

#[test]
fn early_stopping_restores_the_best_epoch() {
    // Labels are noise: the model can only overfit, so validation loss soon rises.
    let data = records(300, 9, false);
    let cfg = TrainConfig {
        epochs: 60,
        patience: Some(2),
        lr: Some(0.02),
        threads: 2,
        ..TrainConfig::default()
    };
    let out = train(&data, "mem", None, "|", &small_spec(), &cfg, &mut |_| {}).unwrap();
    assert!(out.stopped_early, "ran all {} epochs", out.history.len());
    assert!(out.history.len() < 60);
    let best = out.best_epoch.unwrap();
    let losses: Vec<f64> = out.history.iter().map(|r| r.val_loss.unwrap()).collect();
    let min = losses.iter().cloned().fold(f64::INFINITY, f64::min);
    assert_eq!(losses[best - 1], min);
    assert_eq!(
        out.history.len(),
        best + 2,
        "stops `patience` epochs after the best"
    );
    // The kept weights are the best epoch's: the final validation log-loss equals its val_loss.
    let Some(Report::Classification(r)) = &out.validation else {
        panic!("no validation report")
    };
    let ll = r.log_loss.unwrap();
    assert!(
        (ll - min).abs() < 1e-4,
        "log-loss {ll} vs best val_loss {min}"
    );
}

#[test]
fn evaluation_matches_the_training_validation() {
    let data = records(200, 5, true);
    let cfg = TrainConfig {
        epochs: 3,
        threads: 2,
        ..TrainConfig::default()
    };
    let out = train(&data, "mem", None, "|", &small_spec(), &cfg, &mut |_| {}).unwrap();
    let val = &data[out.train_rows..];
    let report = evaluate(&out.pipeline, val, "mem").unwrap();
    assert_eq!(Some(report), out.validation);
    let acc = out.history.last().unwrap().val_accuracy.unwrap();
    let Some(Report::Classification(r)) = &out.validation else {
        panic!("no validation report")
    };
    assert!((r.accuracy - acc).abs() < 1e-12);
}

#[test]
fn errors_say_what_kind_of_problem_it_is() {
    use flywheel_model::ModelError;
    let data = records(50, 3, true);
    let bad_setting = TrainConfig {
        epochs: 0,
        ..TrainConfig::default()
    };
    let err = train(
        &data,
        "mem",
        None,
        "|",
        &small_spec(),
        &bad_setting,
        &mut |_| {},
    )
    .unwrap_err();
    assert!(matches!(err, ModelError::Setting(_)), "{err:?}");
    assert!(err.to_string().contains("--epochs"), "{err}");

    let one_label: Vec<Record> = data
        .iter()
        .map(|r| Record {
            labels: vec!["a".into()],
            ..r.clone()
        })
        .collect();
    let cfg = TrainConfig {
        epochs: 1,
        ..TrainConfig::default()
    };
    let err = train(
        &one_label,
        "mem",
        None,
        "|",
        &small_spec(),
        &cfg,
        &mut |_| {},
    )
    .unwrap_err();
    assert!(matches!(err, ModelError::Unusable(_)), "{err:?}");
    assert!(
        err.to_string().contains("mem: found 1 distinct label"),
        "{err}"
    );

    let mut other_family = small_spec();
    other_family.mask = true;
    other_family.family = flywheel_model::Family::Linear;
    let err = train(&data, "mem", None, "|", &other_family, &cfg, &mut |_| {}).unwrap_err();
    assert!(matches!(err, ModelError::Setting(_)), "{err:?}");
}
