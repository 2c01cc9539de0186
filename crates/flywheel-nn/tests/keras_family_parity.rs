//! Parity with Keras for the sequence families beyond the reference model (GRU, masked LSTM/GRU,
//! bidirectional LSTM, TextCNN): from the same initial weights and batches, the losses, every
//! gradient, the weights after each optimizer step and the predictions match Keras 3
//! (TensorFlow backend) to 1e-5 (dropout off), and the GRU's per-gate dropout masks give
//! Keras's loss and gradients.
//!
//! Fixtures: `tests/fixtures/keras_family_parity/*.json`, made by
//! `tests/fixtures/gen_keras_family_fixtures.py` at the repository root.

use flywheel_nn::{
    Bidirectional, Encoder, Gru, Loss, Lstm, Optimizer, OptimizerKind, Parameters, Rng, SeqBatch,
    SeqNet, SeqWorkspace, Targets, TextCnn,
};
use serde_json::Value;

const TOL: f32 = 1e-5;

fn load(name: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/keras_family_parity/{name}.json",
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

fn loss_of(case: &Value) -> Loss {
    match case["loss"].as_str().unwrap() {
        "binary_crossentropy" => Loss::BinaryCrossEntropy,
        "sparse_categorical_crossentropy" => Loss::SoftmaxCrossEntropy,
        "mse" => Loss::MeanSquaredError,
        other => panic!("unknown loss {other}"),
    }
}

/// The network the case describes, with Keras's initial weights.
fn network(case: &Value, loss: Loss) -> SeqNet<f32> {
    let h = usize_of(case, "hidden");
    let kind = case["kind"].as_str().unwrap().to_string();
    let widths: Vec<usize> = case["kernel_sizes"]
        .as_array()
        .map(|a| a.iter().map(|v| v.as_u64().unwrap() as usize).collect())
        .unwrap_or_default();
    let filters = case["filters"].as_u64().unwrap_or(0) as usize;
    let mut net: SeqNet<f32> = SeqNet::new(
        usize_of(case, "vocab"),
        usize_of(case, "embed"),
        usize_of(case, "outputs"),
        loss,
        case["mask_zero"].as_bool().unwrap(),
        &mut Rng::new(0),
        |e, rng| match kind.as_str() {
            "gru" => Encoder::Gru(Gru::new(e, h, rng)),
            "lstm" => Encoder::Lstm(Lstm::new(e, h, rng)),
            "bilstm" => Encoder::BiLstm(Bidirectional {
                forward: Lstm::new(e, h, rng),
                backward: Lstm::new(e, h, rng),
            }),
            "cnn" => Encoder::Cnn(TextCnn::new(e, &widths, filters, rng)),
            other => panic!("unknown kind {other}"),
        },
    );
    let weights = case["initial_weights"].as_array().unwrap();
    let tensors = net.tensors_mut();
    assert_eq!(tensors.len(), weights.len(), "tensor count");
    for (i, (t, w)) in tensors.into_iter().zip(weights).enumerate() {
        let v = flat(w);
        assert_eq!(v.len(), t.len(), "tensor {i}");
        t.data_mut().copy_from_slice(&v);
    }
    net
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

fn predictions(net: &SeqNet<f32>, x: &Value) -> Vec<f32> {
    let (ids, steps, b) = time_major(x);
    let mut ws = SeqWorkspace::default();
    let mut out = vec![0.0; b * net.outputs()];
    net.predict_padded(&ids, steps, b, &mut ws, &mut out)
        .unwrap();
    net.loss.activate(&mut out, net.outputs());
    out
}

fn run_case(name: &str) {
    let case = load(name);
    let loss = loss_of(&case);
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
    let mut net = network(&case, loss);
    let batches = case["batches"].as_array().unwrap();
    assert_close(
        &format!("{name} initial predictions"),
        &predictions(&net, &batches[0]["x"]),
        &flat(&case["initial_predictions"]),
    );
    let mut opt = Optimizer::new(kind);
    let mut ws = SeqWorkspace::default();
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
        let tb = SeqBatch {
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
        let want_grads = step["grads"].as_array().unwrap();
        assert_close(
            &format!("{name} step {s} embedding grad"),
            emb.sum.data(),
            &flat(&want_grads[0]),
        );
        for (i, (t, w)) in grads
            .tensors()
            .into_iter()
            .zip(&want_grads[1..])
            .enumerate()
        {
            assert_close(
                &format!("{name} step {s} grad {}", i + 1),
                t.data(),
                &flat(w),
            );
        }
        net.apply_update(&mut opt, &grads, &emb).unwrap();
        emb.clear();
        let after = step["weights_after"].as_array().unwrap();
        for (i, ((_, t), w)) in net.tensors().into_iter().zip(after).enumerate() {
            assert_close(
                &format!("{name} after step {s} weight {i}"),
                t.data(),
                &flat(w),
            );
        }
    }
    assert_close(
        &format!("{name} predictions after the steps"),
        &predictions(&net, &batches[0]["x"]),
        &flat(&case["predictions_after_steps"]),
    );
}

#[test]
fn gru_matches_keras() {
    run_case("gru_binary_adam");
}

#[test]
fn masked_gru_matches_keras() {
    run_case("gru_masked_multiclass_adam");
}

#[test]
fn masked_lstm_matches_keras() {
    run_case("lstm_masked_binary_adam");
}

#[test]
fn bidirectional_lstm_matches_keras() {
    run_case("bilstm_binary_adam");
}

#[test]
fn masked_bidirectional_lstm_with_sgd_matches_keras() {
    run_case("bilstm_masked_regression_sgd");
}

#[test]
fn text_cnn_matches_keras() {
    run_case("cnn_multiclass_adam");
}

/// Post-padding: each row's padding comes after its tokens, so with masking a row's state is
/// carried unchanged over its own trailing steps while other rows still read tokens.
#[test]
fn post_padded_masked_gru_matches_keras() {
    run_case("gru_masked_post_binary_adam");
}

#[test]
fn post_padded_masked_bidirectional_lstm_matches_keras() {
    run_case("bilstm_masked_post_multiclass_adam");
}

#[test]
fn post_padded_text_cnn_matches_keras() {
    run_case("cnn_post_binary_adam");
}

/// GRU dropout semantics: with the same per-gate masks (Keras 3's GRU uses one input and one
/// recurrent mask per gate when `recurrent_dropout > 0`), the loss and every gradient match.
#[test]
fn gru_per_gate_dropout_masks_match_keras() {
    let case = load("gru_dropout_masks");
    let net = network(&case, Loss::BinaryCrossEntropy);
    let (ids, steps, b) = time_major(&case["x"]);
    let y = flat(&case["y"]);
    let in_mask = flat(&case["input_mask"]);
    let rec_mask = flat(&case["recurrent_mask"]);
    let tb = SeqBatch {
        ids: &ids,
        steps,
        batch: b,
        input_mask: Some(&in_mask),
        recurrent_mask: Some(&rec_mask),
        targets: Targets::Values(&y),
        scale: 1.0 / b as f32,
    };
    let mut ws = SeqWorkspace::default();
    let mut grads = net.zero_grads();
    let total = net.train_batch(&tb, &mut ws, &mut grads).unwrap();
    let want = case["loss"].as_f64().unwrap();
    assert!(
        (total / b as f64 - want).abs() <= TOL as f64,
        "loss {} vs Keras {want}",
        total / b as f64
    );
    let mut emb = net.embedding_grad();
    let (gids, rows) = ws.embedding_grad();
    emb.accumulate(gids, rows);
    let want_grads = case["grads"].as_array().unwrap();
    assert_close("embedding grad", emb.sum.data(), &flat(&want_grads[0]));
    for (i, (t, w)) in grads
        .tensors()
        .into_iter()
        .zip(&want_grads[1..])
        .enumerate()
    {
        assert_close(&format!("grad {}", i + 1), t.data(), &flat(w));
    }
}
