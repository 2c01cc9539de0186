//! Parity with Keras for the sequence families beyond the reference model (GRU, masked LSTM/GRU,
//! bidirectional LSTM, TextCNN): from the same initial weights and batches, the losses, every
//! gradient, the weights after each optimizer step and the predictions match Keras 3
//! (TensorFlow backend) (dropout off), and the GRU's per-gate dropout masks give Keras's loss
//! and gradients. Each tensor within `1e-4 · max|Keras's tensor| + 1e-7` (`tests/common`); the
//! updates are compared as changes of the weights; a missing key or a list of the wrong length
//! fails.
//!
//! Fixtures: `tests/fixtures/keras_family_parity/*.json`, made by
//! `tests/fixtures/gen_keras_family_fixtures.py` at the repository root.

mod common;

use common::{
    array, assert_close, assert_close_scalar, assert_step, flat, get, number, string, time_major,
    usize_of, zip_exact,
};
use flywheel_nn::{
    Bidirectional, Encoder, Gru, Loss, Lstm, Optimizer, OptimizerKind, Parameters, Rng, SeqBatch,
    SeqNet, SeqWorkspace, Targets, TextCnn,
};
use serde_json::Value;

fn load(name: &str) -> Value {
    let file = common::load(&format!("keras_family_parity/{name}.json"));
    let cases = array(&file, "cases");
    assert_eq!(cases.len(), 1, "{name}: one case per file");
    assert_eq!(string(&cases[0], "name"), name);
    cases[0].clone()
}

fn loss_of(case: &Value) -> Loss {
    match string(case, "loss") {
        "binary_crossentropy" => Loss::BinaryCrossEntropy,
        "sparse_categorical_crossentropy" => Loss::SoftmaxCrossEntropy,
        "mse" => Loss::MeanSquaredError,
        other => panic!("unknown loss {other}"),
    }
}

/// The network the case describes, with Keras's initial weights.
fn network(case: &Value, loss: Loss) -> SeqNet<f32> {
    let h = usize_of(case, "hidden");
    let kind = string(case, "kind").to_string();
    let (widths, filters) = if kind == "cnn" {
        let widths: Vec<usize> = array(case, "kernel_sizes")
            .iter()
            .map(|v| v.as_u64().expect("a kernel size") as usize)
            .collect();
        assert!(!widths.is_empty(), "kernel_sizes");
        (widths, usize_of(case, "filters"))
    } else {
        (Vec::new(), 0)
    };
    let mut net: SeqNet<f32> = SeqNet::new(
        usize_of(case, "vocab"),
        usize_of(case, "embed"),
        usize_of(case, "outputs"),
        loss,
        get(case, "mask_zero").as_bool().expect("mask_zero"),
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
    let weights = array(case, "initial_weights");
    for (i, (t, w)) in zip_exact("initial weights", &net.tensors_mut(), weights).enumerate() {
        assert_eq!(flat(w).len(), t.len(), "tensor {i}");
    }
    for (t, w) in net.tensors_mut().into_iter().zip(weights) {
        t.data_mut().copy_from_slice(&flat(w));
    }
    net
}

fn weights_of(net: &SeqNet<f32>) -> Vec<Vec<f32>> {
    net.tensors()
        .into_iter()
        .map(|(_, t)| t.data().to_vec())
        .collect()
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
    let o = get(&case, "optimizer");
    let kind = match string(o, "name") {
        "adam" => OptimizerKind::Adam {
            lr: number(o, "learning_rate"),
            beta1: number(o, "beta_1"),
            beta2: number(o, "beta_2"),
            epsilon: number(o, "epsilon"),
        },
        "sgd" => {
            assert_eq!(get(o, "nesterov"), &Value::Bool(false), "nesterov");
            OptimizerKind::Sgd {
                lr: number(o, "learning_rate"),
                momentum: number(o, "momentum"),
            }
        }
        other => panic!("unknown optimiser {other}"),
    };
    let mut net = network(&case, loss);
    let batches = array(&case, "batches");
    let steps_want = array(&case, "steps");
    assert_eq!(batches.len(), 3, "{name}: batches");
    assert_close(
        &format!("{name} initial predictions"),
        &predictions(&net, get(&batches[0], "x")),
        &flat(get(&case, "initial_predictions")),
    );
    let mut opt = Optimizer::new(kind);
    let mut ws = SeqWorkspace::default();
    let mut emb = net.embedding_grad();
    let mut want_before: Vec<Vec<f32>> = array(&case, "initial_weights").iter().map(flat).collect();
    for (s, (step, batch)) in zip_exact("steps", steps_want, batches).enumerate() {
        let (ids, steps, b) = time_major(get(batch, "x"));
        assert_eq!(b, usize_of(&case, "batch"), "{name}: batch size");
        assert_eq!(steps, usize_of(&case, "steps_T"), "{name}: steps");
        let y = flat(get(batch, "y"));
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
        assert_close_scalar(
            &format!("{name} step {s} loss"),
            total / b as f64,
            number(step, "loss"),
        );
        let (gids, rows) = ws.embedding_grad();
        emb.accumulate(gids, rows);
        let want_grads = array(step, "grads");
        // The embedding's gradient first, then one per tensor of the encoder and the output.
        assert_eq!(
            want_grads.len(),
            1 + grads.tensors().len(),
            "{name} step {s}: gradient tensors"
        );
        assert_close(
            &format!("{name} step {s} embedding grad"),
            emb.sum.data(),
            &flat(&want_grads[0]),
        );
        for (i, (t, w)) in zip_exact("gradients", &grads.tensors(), &want_grads[1..]).enumerate() {
            assert_close(
                &format!("{name} step {s} grad {}", i + 1),
                t.data(),
                &flat(w),
            );
        }
        let before = weights_of(&net);
        net.apply_update(&mut opt, &grads, &emb).unwrap();
        emb.clear();
        let after = weights_of(&net);
        let want_after: Vec<Vec<f32>> = array(step, "weights_after").iter().map(flat).collect();
        let pairs = zip_exact("weights after the step", &after, &want_after);
        for (i, (got, want)) in pairs.enumerate() {
            assert_step(
                &format!("{name} after step {s} weight {i}"),
                &before[i],
                got,
                &want_before[i],
                want,
            );
        }
        want_before = want_after;
    }
    assert_close(
        &format!("{name} predictions after the steps"),
        &predictions(&net, get(&batches[0], "x")),
        &flat(get(&case, "predictions_after_steps")),
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
    let name = "gru_dropout_masks";
    let case = load(name);
    let net = network(&case, Loss::BinaryCrossEntropy);
    let (ids, steps, b) = time_major(get(&case, "x"));
    let y = flat(get(&case, "y"));
    let in_mask = flat(get(&case, "input_mask"));
    let rec_mask = flat(get(&case, "recurrent_mask"));
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
    assert_close_scalar(
        &format!("{name} loss"),
        total / b as f64,
        number(&case, "loss"),
    );
    let mut emb = net.embedding_grad();
    let (gids, rows) = ws.embedding_grad();
    emb.accumulate(gids, rows);
    let want_grads = array(&case, "grads");
    assert_eq!(
        want_grads.len(),
        1 + grads.tensors().len(),
        "gradient tensors"
    );
    assert_close(
        &format!("{name} embedding grad"),
        emb.sum.data(),
        &flat(&want_grads[0]),
    );
    for (i, (t, w)) in zip_exact("gradients", &grads.tensors(), &want_grads[1..]).enumerate() {
        assert_close(&format!("{name} grad {}", i + 1), t.data(), &flat(w));
    }
}
