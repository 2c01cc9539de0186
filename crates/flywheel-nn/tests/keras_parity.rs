//! Parity with Keras: from the same initial weights and batches, the training losses, gradients,
//! updated weights and predictions match Keras 3 (TensorFlow backend) to 1e-5 (dropout off).
//!
//! Fixtures: `tests/fixtures/keras_lstm_parity/*.json`, made by
//! `tests/fixtures/gen_keras_fixtures.py` at the repository root (see its README).

use flywheel_nn::{
    Loss, Optimizer, OptimizerKind, Parameters, Rng, Targets, Tensor, TextRnn, TrainBatch,
    Workspace,
};
use serde_json::Value;

const TOL: f32 = 1e-5;
const WEIGHT_NAMES: [&str; 6] = [
    "embedding",
    "lstm_kernel",
    "lstm_recurrent_kernel",
    "lstm_bias",
    "dense_kernel",
    "dense_bias",
];

fn load(name: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/keras_lstm_parity/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let v: Value = serde_json::from_str(&text).unwrap();
    v["cases"][0].clone()
}

fn flat(v: &Value) -> Vec<f32> {
    match v {
        Value::Array(items) => items.iter().flat_map(flat).collect(),
        Value::Number(n) => vec![n.as_f64().unwrap() as f32],
        other => panic!("not a number: {other}"),
    }
}

fn usize_of(case: &Value, key: &str) -> usize {
    case[key].as_u64().unwrap() as usize
}

fn assert_close(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let (i, err) = got
        .iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .enumerate()
        .fold((0, 0.0f32), |m, (i, e)| if e > m.1 { (i, e) } else { m });
    assert!(
        err <= TOL,
        "{what}: max abs error {err:.3e} at {i} (got {}, want {})",
        got[i],
        want[i]
    );
}

fn set_weights(net: &mut TextRnn<f32>, weights: &Value) {
    for (t, name) in net.tensors_mut().into_iter().zip(WEIGHT_NAMES) {
        let v = flat(&weights[name]);
        assert_eq!(v.len(), t.len(), "{name}");
        t.data_mut().copy_from_slice(&v);
    }
}

fn check_weights(what: &str, net: &TextRnn<f32>, weights: &Value) {
    for ((_, t), name) in net.tensors().into_iter().zip(WEIGHT_NAMES) {
        assert_close(&format!("{what} {name}"), t.data(), &flat(&weights[name]));
    }
}

/// Time-major ids from Keras's `[batch, steps]` matrix.
fn time_major(x: &Value) -> (Vec<u32>, usize, usize) {
    let rows: Vec<Vec<u32>> = x
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as u32)
                .collect()
        })
        .collect();
    let (b, t) = (rows.len(), rows[0].len());
    let mut ids = vec![0; b * t];
    for (j, r) in rows.iter().enumerate() {
        for (s, &id) in r.iter().enumerate() {
            ids[s * b + j] = id;
        }
    }
    (ids, t, b)
}

fn predictions(net: &TextRnn<f32>, x: &Value) -> Vec<f32> {
    let (ids, steps, b) = time_major(x);
    let mut ws = Workspace::default();
    let mut out = vec![0.0; b * net.outputs()];
    net.predict_padded(&ids, steps, b, &mut ws, &mut out)
        .unwrap();
    net.loss.activate(&mut out, net.outputs());
    out
}

fn run_case(name: &str) {
    let case = load(name);
    let loss = match case["loss"].as_str().unwrap() {
        "binary_crossentropy" => Loss::BinaryCrossEntropy,
        "sparse_categorical_crossentropy" => Loss::SoftmaxCrossEntropy,
        "mse" => Loss::MeanSquaredError,
        other => panic!("unknown loss {other}"),
    };
    let o = &case["optimizer"];
    let kind = match o["name"].as_str().unwrap() {
        "adam" => OptimizerKind::Adam {
            lr: o["learning_rate"].as_f64().unwrap(),
            beta1: o["beta_1"].as_f64().unwrap(),
            beta2: o["beta_2"].as_f64().unwrap(),
            epsilon: o["epsilon"].as_f64().unwrap(),
        },
        "sgd" => OptimizerKind::Sgd {
            lr: o["learning_rate"].as_f64().unwrap(),
            momentum: o["momentum"].as_f64().unwrap(),
        },
        other => panic!("unknown optimiser {other}"),
    };
    let mut net: TextRnn<f32> = TextRnn::new(
        usize_of(&case, "vocab"),
        usize_of(&case, "embed"),
        usize_of(&case, "hidden"),
        usize_of(&case, "outputs"),
        loss,
        &mut Rng::new(0),
    );
    set_weights(&mut net, &case["initial_weights"]);
    let batches = case["batches"].as_array().unwrap();
    assert_close(
        "initial predictions",
        &predictions(&net, &batches[0]["x"]),
        &flat(&case["initial_predictions"]),
    );
    let mut opt = Optimizer::new(kind);
    let mut ws = Workspace::default();
    let mut emb = net.embedding_grad();
    for (s, (step, batch)) in case["steps"]
        .as_array()
        .unwrap()
        .iter()
        .zip(batches)
        .enumerate()
    {
        let (ids, steps, b) = time_major(&batch["x"]);
        let y = flat(&batch["y"]);
        let classes: Vec<u32> = y.iter().map(|&v| v as u32).collect();
        let targets = match loss {
            Loss::SoftmaxCrossEntropy => Targets::Classes(&classes),
            _ => Targets::Values(&y),
        };
        let tb = TrainBatch {
            ids: &ids,
            steps,
            batch: b,
            input_mask: None,
            recurrent_mask: None,
            targets,
            scale: 1.0 / b as f32,
        };
        let mut grads = net.zero_grads();
        let total = net.train_batch(&tb, &mut ws, &mut grads).unwrap();
        let want = step["loss"].as_f64().unwrap();
        assert!(
            (total / b as f64 - want).abs() <= TOL as f64,
            "{name} step {s}: loss {} vs Keras {want}",
            total / b as f64
        );
        let (gids, rows) = ws.embedding_grad();
        emb.accumulate(gids, rows);
        if let Some(g) = step.get("grads") {
            assert_close(
                &format!("step {s} embedding grad"),
                emb.sum.data(),
                &flat(&g["embedding"]),
            );
            let mut dense: Vec<&Tensor<f32>> =
                grads.lstm.tensors().into_iter().map(|t| t.1).collect();
            dense.extend(grads.dense.tensors().into_iter().map(|t| t.1));
            for (t, wname) in dense.into_iter().zip(&WEIGHT_NAMES[1..]) {
                assert_close(
                    &format!("step {s} grad {wname}"),
                    t.data(),
                    &flat(&g[*wname]),
                );
            }
        }
        net.apply_update(&mut opt, &grads, &emb).unwrap();
        emb.clear();
        if let Some(w) = step.get("weights_after") {
            check_weights(&format!("{name} after step {s}"), &net, w);
        }
    }
    assert_close(
        "predictions after the steps",
        &predictions(&net, &batches[0]["x"]),
        &flat(&case["predictions_after_steps"]),
    );
}

#[test]
fn binary_adam_matches_keras() {
    run_case("binary_adam");
}

#[test]
fn multiclass_adam_matches_keras() {
    run_case("multiclass_adam");
}

#[test]
fn regression_sgd_momentum_matches_keras() {
    run_case("regression_sgd");
}

#[test]
fn reference_dims_match_keras() {
    run_case("binary_reference_dims_adam");
}

/// Dropout semantics: with the same per-gate masks (Keras 3's LSTM uses one input and one
/// recurrent mask per gate when `recurrent_dropout > 0`), the loss and every gradient match.
#[test]
fn per_gate_dropout_masks_match_keras() {
    let case = load("binary_dropout_masks");
    let mut net: TextRnn<f32> = TextRnn::new(
        usize_of(&case, "vocab"),
        usize_of(&case, "embed"),
        usize_of(&case, "hidden"),
        1,
        Loss::BinaryCrossEntropy,
        &mut Rng::new(0),
    );
    set_weights(&mut net, &case["initial_weights"]);
    let (ids, steps, b) = time_major(&case["x"]);
    let y = flat(&case["y"]);
    let in_mask = flat(&case["input_mask"]);
    let rec_mask = flat(&case["recurrent_mask"]);
    let tb = TrainBatch {
        ids: &ids,
        steps,
        batch: b,
        input_mask: Some(&in_mask),
        recurrent_mask: Some(&rec_mask),
        targets: Targets::Values(&y),
        scale: 1.0 / b as f32,
    };
    let mut ws = Workspace::default();
    let mut grads = net.zero_grads();
    let total = net.train_batch(&tb, &mut ws, &mut grads).unwrap();
    let want = case["loss_value"].as_f64().unwrap();
    assert!(
        (total / b as f64 - want).abs() <= TOL as f64,
        "loss {} vs Keras {want}",
        total / b as f64
    );
    let mut emb = net.embedding_grad();
    let (gids, rows) = ws.embedding_grad();
    emb.accumulate(gids, rows);
    let g = &case["grads"];
    assert_close("embedding grad", emb.sum.data(), &flat(&g["embedding"]));
    let mut dense: Vec<&Tensor<f32>> = grads.lstm.tensors().into_iter().map(|t| t.1).collect();
    dense.extend(grads.dense.tensors().into_iter().map(|t| t.1));
    for (t, wname) in dense.into_iter().zip(&WEIGHT_NAMES[1..]) {
        assert_close(&format!("grad {wname}"), t.data(), &flat(&g[*wname]));
    }
}
