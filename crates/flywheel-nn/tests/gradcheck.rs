//! Finite-difference gradient checks (f64, max relative error ≤ 1e-4) for every layer and loss,
//! run on the same generic code that trains in f32.

use flywheel_nn::gradcheck::check;
use flywheel_nn::layers::dropout::fill_mask;
use flywheel_nn::layers::{LstmCache, Recurrent, SeqMasks};
use flywheel_nn::{
    Bidirectional, Dense, Embedding, Encoder, Gru, Loss, Lstm, Parameters, Rng, SeqBatch, SeqNet,
    SeqWorkspace, Targets, Tensor, TextCnn, TextRnn, TrainBatch, Workspace,
};

const EPS: f64 = 1e-6;
const TOL: f64 = 1e-4;

fn random(n: usize, rng: &mut Rng) -> Vec<f64> {
    (0..n).map(|_| rng.uniform(-1.0, 1.0)).collect()
}

fn assert_ok(what: &str, r: flywheel_nn::gradcheck::GradCheck) {
    assert!(
        r.max_rel_error <= TOL,
        "{what}: relative error {:.3e} at {} (analytic {}, numeric {})",
        r.max_rel_error,
        r.worst_index,
        r.analytic,
        r.numeric
    );
}

/// Replaces parameter tensor `which` of `model` by `values`.
fn set_param<M: Parameters<f64>>(model: &mut M, which: usize, values: &[f64]) {
    let t = &mut model.tensors_mut()[which];
    t.data_mut().copy_from_slice(values);
}

#[test]
fn dense_gradients() {
    let mut rng = Rng::new(1);
    let (b, i, o) = (3, 4, 5);
    let mut layer: Dense<f64> = Dense::new(i, o, &mut rng);
    layer.bias = Tensor::from_vec(&[o], random(o, &mut rng)).unwrap();
    let x = random(b * i, &mut rng);
    let w = random(b * o, &mut rng);
    let objective = |layer: &Dense<f64>, x: &[f64]| {
        let mut y = vec![0.0; b * o];
        layer.forward(x, b, &mut y);
        y.iter().zip(&w).map(|(a, c)| a * c).sum::<f64>()
    };
    let mut grads = layer.zeros_like();
    let mut dx = vec![0.0; b * i];
    layer.backward(&x, &w, b, &mut grads, Some(&mut dx));
    for p in 0..2 {
        let start = layer.tensors()[p].1.data().to_vec();
        let analytic = grads.tensors()[p].1.data().to_vec();
        let r = check(
            |v| {
                let mut l = layer.clone();
                set_param(&mut l, p, v);
                objective(&l, &x)
            },
            &start,
            &analytic,
            EPS,
        );
        assert_ok(&format!("dense param {p}"), r);
    }
    assert_ok("dense input", check(|v| objective(&layer, v), &x, &dx, EPS));
}

#[test]
fn embedding_gradients() {
    let mut rng = Rng::new(2);
    let layer: Embedding<f64> = Embedding::new(6, 3, &mut rng);
    let ids = [0u32, 5, 2, 5];
    let w = random(ids.len() * 3, &mut rng);
    let objective = |layer: &Embedding<f64>| {
        let mut y = vec![0.0; ids.len() * 3];
        layer.forward(&ids, &mut y);
        y.iter().zip(&w).map(|(a, c)| a * c).sum::<f64>()
    };
    let mut grad = Tensor::zeros(&[6, 3]);
    layer.backward(&ids, &w, &mut grad);
    let start = layer.weight.data().to_vec();
    let r = check(
        |v| {
            let mut l = layer.clone();
            l.weight.data_mut().copy_from_slice(v);
            objective(&l)
        },
        &start,
        grad.data(),
        EPS,
    );
    assert_ok("embedding", r);
}

fn lstm_case(e: usize, h: usize, with_mask: bool) {
    let mut rng = Rng::new(3);
    let (steps, batch) = (5, 3);
    let mut layer: Lstm<f64> = Lstm::new(e, h, &mut rng);
    // Non-trivial biases and larger weights so every gate is exercised away from zero.
    layer.bias = Tensor::from_vec(&[4 * h], random(4 * h, &mut rng)).unwrap();
    for v in layer.recurrent.data_mut() {
        *v *= 1.5;
    }
    let x = random(steps * batch * e, &mut rng);
    let mut in_mask = vec![0.0; batch * 4 * e];
    let mut rec_mask = vec![0.0; batch * 4 * h];
    fill_mask(&mut in_mask, 0.3, &mut rng);
    fill_mask(&mut rec_mask, 0.3, &mut rng);
    let in_mask = with_mask.then_some(in_mask);
    let rec_mask = with_mask.then_some(rec_mask);
    let w = random(batch * h, &mut rng);
    let objective = |layer: &Lstm<f64>, x: &[f64]| {
        let mut cache = LstmCache::default();
        layer.forward_train(
            x,
            steps,
            batch,
            in_mask.as_deref(),
            rec_mask.as_deref(),
            &mut cache,
        );
        cache
            .last_hidden()
            .iter()
            .zip(&w)
            .map(|(a, c)| a * c)
            .sum::<f64>()
    };
    let mut cache = LstmCache::default();
    layer.forward_train(
        &x,
        steps,
        batch,
        in_mask.as_deref(),
        rec_mask.as_deref(),
        &mut cache,
    );
    let mut grads = layer.zeros_like();
    let mut dx = vec![0.0; x.len()];
    layer.backward(
        &x,
        in_mask.as_deref(),
        rec_mask.as_deref(),
        &w,
        &mut cache,
        &mut grads,
        Some(&mut dx),
    );
    for p in 0..3 {
        let start = layer.tensors()[p].1.data().to_vec();
        let analytic = grads.tensors()[p].1.data().to_vec();
        let r = check(
            |v| {
                let mut l = layer.clone();
                set_param(&mut l, p, v);
                objective(&l, &x)
            },
            &start,
            &analytic,
            EPS,
        );
        assert_ok(&format!("lstm E={e} H={h} param {p} (mask {with_mask})"), r);
    }
    assert_ok("lstm input", check(|v| objective(&layer, v), &x, &dx, EPS));
}

#[test]
fn lstm_gradients() {
    // Width 3/4: the generic kernels; 8 and 16: the fixed-width ones.
    for (e, h) in [(4, 3), (8, 8), (16, 16)] {
        lstm_case(e, h, false);
    }
}

#[test]
fn lstm_gradients_with_per_gate_dropout() {
    for (e, h) in [(4, 3), (8, 8), (16, 16)] {
        lstm_case(e, h, true);
    }
}

fn loss_case(loss: Loss, targets: Targets<'_>, k: usize) {
    let mut rng = Rng::new(4);
    let batch = 4;
    let z: Vec<f64> = (0..batch * k).map(|_| rng.uniform(-3.0, 3.0)).collect();
    let scale = 0.25;
    let mut grad = vec![0.0; z.len()];
    loss.forward_backward(&z, k, targets, scale, &mut grad)
        .unwrap();
    let r = check(
        |v| {
            let mut g = vec![0.0; v.len()];
            scale * loss.forward_backward(v, k, targets, scale, &mut g).unwrap()
        },
        &z,
        &grad,
        EPS,
    );
    assert_ok(&format!("{loss:?}"), r);
}

#[test]
fn loss_gradients() {
    loss_case(
        Loss::BinaryCrossEntropy,
        Targets::Values(&[1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0]),
        2,
    );
    loss_case(
        Loss::MeanSquaredError,
        Targets::Values(&[0.5, -2.0, 3.0, 1.0, 0.0, 7.0, 1.5, -0.5]),
        2,
    );
    loss_case(
        Loss::SoftmaxCrossEntropy,
        Targets::Classes(&[0, 2, 1, 2]),
        3,
    );
}

#[test]
fn whole_network_gradients_with_dropout() {
    let mut rng = Rng::new(5);
    let (vocab, e, h, k, steps, batch) = (7, 3, 4, 3, 6, 4);
    let net: TextRnn<f64> = TextRnn::new(vocab, e, h, k, Loss::SoftmaxCrossEntropy, &mut rng);
    let ids: Vec<u32> = (0..steps * batch)
        .map(|_| rng.below(vocab) as u32)
        .collect();
    let mut in_mask = vec![0.0; batch * 4 * e];
    let mut rec_mask = vec![0.0; batch * 4 * h];
    fill_mask(&mut in_mask, 0.2, &mut rng);
    fill_mask(&mut rec_mask, 0.2, &mut rng);
    let classes = [0u32, 2, 1, 1];
    let tb = TrainBatch {
        ids: &ids,
        steps,
        batch,
        input_mask: Some(&in_mask),
        recurrent_mask: Some(&rec_mask),
        targets: Targets::Classes(&classes),
        scale: 1.0 / batch as f64,
    };
    let loss_of = |net: &TextRnn<f64>| {
        let mut ws = Workspace::default();
        let mut g = net.zero_grads();
        net.train_batch(&tb, &mut ws, &mut g).unwrap() / batch as f64
    };
    let mut ws = Workspace::default();
    let mut grads = net.zero_grads();
    net.train_batch(&tb, &mut ws, &mut grads).unwrap();
    let mut emb_grad = Tensor::zeros(net.embedding.weight.shape());
    let (gids, rows) = ws.embedding_grad();
    net.embedding.backward(gids, rows, &mut emb_grad);
    let mut analytic: Vec<Vec<f64>> = vec![emb_grad.data().to_vec()];
    analytic.extend(grads.lstm.tensors().iter().map(|t| t.1.data().to_vec()));
    analytic.extend(grads.dense.tensors().iter().map(|t| t.1.data().to_vec()));
    for (p, want) in analytic.iter().enumerate() {
        let start = net.tensors()[p].1.data().to_vec();
        let r = check(
            |v| {
                let mut n = net.clone();
                set_param(&mut n, p, v);
                loss_of(&n)
            },
            &start,
            want,
            EPS,
        );
        assert_ok(&format!("network param {p}"), r);
    }
}

/// A step mask with padding at the start of some rows, at the end of others, and one row with
/// no padding (as pre- and post-padding produce).
fn step_mask(steps: usize, batch: usize) -> Vec<bool> {
    let mut m = vec![true; steps * batch];
    for b in 0..batch {
        for t in 0..steps {
            m[t * batch + b] = match b % 3 {
                0 => t >= 2,
                1 => t + 1 < steps,
                _ => true,
            };
        }
    }
    m
}

/// Checks every parameter and the input gradient of a recurrent layer under the given options.
fn recurrent_case<R: Recurrent<f64>>(what: &str, layer: R, dropout: bool, masked: bool) {
    let mut rng = Rng::new(11);
    let (steps, batch) = (5, 3);
    let e = layer.inputs();
    let x = random(steps * batch * e, &mut rng);
    let mut in_mask = vec![0.0; batch * layer.input_mask_len()];
    let mut rec_mask = vec![0.0; batch * layer.recurrent_mask_len()];
    fill_mask(&mut in_mask, 0.3, &mut rng);
    fill_mask(&mut rec_mask, 0.3, &mut rng);
    let sm = step_mask(steps, batch);
    let masks = SeqMasks {
        input: dropout.then_some(in_mask.as_slice()),
        recurrent: dropout.then_some(rec_mask.as_slice()),
        steps: masked.then_some(sm.as_slice()),
    };
    let w = random(batch * layer.outputs(), &mut rng);
    let objective = |layer: &R, x: &[f64]| {
        let mut cache = R::Cache::default();
        layer.forward(x, steps, batch, &masks, &mut cache);
        layer
            .output(&cache)
            .iter()
            .zip(&w)
            .map(|(a, c)| a * c)
            .sum::<f64>()
    };
    let mut cache = R::Cache::default();
    layer.forward(&x, steps, batch, &masks, &mut cache);
    let mut grads = layer.zeros();
    let mut dx = vec![0.0; x.len()];
    layer.backward(&x, &masks, &w, &mut cache, &mut grads, Some(&mut dx));
    let n = layer.tensors().len();
    for p in 0..n {
        let start = layer.tensors()[p].1.data().to_vec();
        let analytic = grads.tensors()[p].1.data().to_vec();
        let r = check(
            |v| {
                let mut l = layer.clone();
                set_param(&mut l, p, v);
                objective(&l, &x)
            },
            &start,
            &analytic,
            EPS,
        );
        assert_ok(
            &format!("{what} param {p} (dropout {dropout}, mask {masked})"),
            r,
        );
    }
    assert_ok(
        &format!("{what} input (dropout {dropout}, mask {masked})"),
        check(|v| objective(&layer, v), &x, &dx, EPS),
    );
}

fn gru(e: usize, h: usize, seed: u64) -> Gru<f64> {
    let mut rng = Rng::new(seed);
    let mut g: Gru<f64> = Gru::new(e, h, &mut rng);
    g.bias = Tensor::from_vec(&[2, 3 * h], random(6 * h, &mut rng)).unwrap();
    for v in g.recurrent.data_mut() {
        *v *= 1.5;
    }
    g
}

fn lstm(e: usize, h: usize, seed: u64) -> Lstm<f64> {
    let mut rng = Rng::new(seed);
    let mut l: Lstm<f64> = Lstm::new(e, h, &mut rng);
    l.bias = Tensor::from_vec(&[4 * h], random(4 * h, &mut rng)).unwrap();
    l
}

#[test]
fn gru_gradients() {
    // Width 3: the generic kernels; 8 and 16: the fixed-width ones.
    for (e, h) in [(4, 3), (8, 8), (16, 16)] {
        for (dropout, masked) in [(false, false), (true, false), (false, true), (true, true)] {
            recurrent_case(&format!("gru E={e} H={h}"), gru(e, h, 21), dropout, masked);
        }
    }
}

#[test]
fn lstm_gradients_with_step_mask() {
    for (e, h) in [(4, 3), (8, 8)] {
        for dropout in [false, true] {
            recurrent_case(&format!("lstm E={e} H={h}"), lstm(e, h, 22), dropout, true);
        }
    }
}

#[test]
fn bidirectional_gradients() {
    for (dropout, masked) in [(false, false), (true, false), (false, true), (true, true)] {
        let bi = Bidirectional {
            forward: lstm(4, 3, 23),
            backward: lstm(4, 3, 24),
        };
        recurrent_case("bilstm", bi, dropout, masked);
        let bi = Bidirectional {
            forward: gru(4, 3, 25),
            backward: gru(4, 3, 26),
        };
        recurrent_case("bigru", bi, dropout, masked);
    }
}

#[test]
fn text_cnn_gradients() {
    let mut rng = Rng::new(27);
    let (steps, batch, e) = (7, 3, 4);
    let mut cnn: TextCnn<f64> = TextCnn::new(e, &[2, 3, 5], 4, &mut rng);
    for c in cnn.convs.iter_mut() {
        c.bias = Tensor::from_vec(&[4], random(4, &mut rng)).unwrap();
    }
    let x = random(batch * steps * e, &mut rng);
    let w = random(batch * cnn.outputs(), &mut rng);
    let objective = |cnn: &TextCnn<f64>, x: &[f64]| {
        let mut cache = Default::default();
        cnn.forward(x, steps, batch, None, &mut cache);
        cache
            .output()
            .iter()
            .zip(&w)
            .map(|(a, c)| a * c)
            .sum::<f64>()
    };
    let mut cache = Default::default();
    cnn.forward(&x, steps, batch, None, &mut cache);
    let pooled: &[f64] = flywheel_nn::layers::CnnCache::output(&cache);
    assert!(pooled.contains(&0.0) && pooled.iter().any(|&v| v > 0.0));
    let mut grads = cnn.zeros_like();
    let mut dx = vec![0.0; x.len()];
    cnn.backward(&x, &w, &mut cache, &mut grads, Some(&mut dx));
    for p in 0..cnn.tensors().len() {
        let start = cnn.tensors()[p].1.data().to_vec();
        let analytic = grads.tensors()[p].1.data().to_vec();
        let r = check(
            |v| {
                let mut c = cnn.clone();
                set_param(&mut c, p, v);
                objective(&c, &x)
            },
            &start,
            &analytic,
            EPS,
        );
        assert_ok(&format!("cnn param {p}"), r);
    }
    assert_ok("cnn input", check(|v| objective(&cnn, v), &x, &dx, EPS));
}

type MakeEncoder = Box<dyn Fn(usize, &mut Rng) -> Encoder<f64>>;

/// The whole `Embedding → encoder → Dense` network with dropout, for every encoder.
#[test]
fn sequence_network_gradients() {
    let (vocab, e, h, k, steps, batch) = (7, 3, 4, 3, 6, 4);
    let encoders: Vec<(&str, bool, MakeEncoder)> = vec![
        (
            "lstm",
            true,
            Box::new(move |e, r| Encoder::Lstm(Lstm::new(e, h, r))),
        ),
        (
            "gru",
            false,
            Box::new(move |e, r| Encoder::Gru(Gru::new(e, h, r))),
        ),
        (
            "gru",
            true,
            Box::new(move |e, r| Encoder::Gru(Gru::new(e, h, r))),
        ),
        (
            "bilstm",
            true,
            Box::new(move |e, r| {
                Encoder::BiLstm(Bidirectional {
                    forward: Lstm::new(e, h, r),
                    backward: Lstm::new(e, h, r),
                })
            }),
        ),
        (
            "cnn",
            false,
            Box::new(|e, r| Encoder::Cnn(TextCnn::new(e, &[2, 3], 5, r))),
        ),
    ];
    for (name, mask_zero, make) in encoders {
        let mut rng = Rng::new(28);
        let net: SeqNet<f64> = SeqNet::new(
            vocab,
            e,
            k,
            Loss::SoftmaxCrossEntropy,
            mask_zero,
            &mut rng,
            make,
        );
        // Pre-padded rows of different lengths (id 0 = padding), one all-padding leading step.
        let mut ids = vec![0u32; steps * batch];
        for b in 0..batch {
            for t in (1 + b % 3)..steps {
                ids[t * batch + b] = 1 + rng.below(vocab - 1) as u32;
            }
        }
        let mut in_mask = vec![0.0; batch * net.encoder.input_mask_len()];
        let mut rec_mask = vec![0.0; batch * net.encoder.recurrent_mask_len()];
        fill_mask(&mut in_mask, 0.2, &mut rng);
        fill_mask(&mut rec_mask, 0.2, &mut rng);
        let classes = [0u32, 2, 1, 1];
        let tb = SeqBatch {
            ids: &ids,
            steps,
            batch,
            input_mask: Some(&in_mask),
            recurrent_mask: (!rec_mask.is_empty()).then_some(rec_mask.as_slice()),
            targets: Targets::Classes(&classes),
            scale: 1.0 / batch as f64,
        };
        let loss_of = |net: &SeqNet<f64>| {
            let mut ws = SeqWorkspace::default();
            let mut g = net.zero_grads();
            net.train_batch(&tb, &mut ws, &mut g).unwrap() / batch as f64
        };
        let mut ws = SeqWorkspace::default();
        let mut grads = net.zero_grads();
        net.train_batch(&tb, &mut ws, &mut grads).unwrap();
        let mut emb_grad = Tensor::zeros(net.embedding.weight.shape());
        let (gids, rows) = ws.embedding_grad();
        net.embedding.backward(gids, rows, &mut emb_grad);
        let mut analytic: Vec<Vec<f64>> = vec![emb_grad.data().to_vec()];
        analytic.extend(grads.tensors().iter().map(|t| t.data().to_vec()));
        for (p, want) in analytic.iter().enumerate() {
            let start = net.tensors()[p].1.data().to_vec();
            let r = check(
                |v| {
                    let mut n = net.clone();
                    set_param(&mut n, p, v);
                    loss_of(&n)
                },
                &start,
                want,
                EPS,
            );
            assert_ok(&format!("{name} (mask {mask_zero}) network param {p}"), r);
        }
    }
}

/// Padding-only windows computed once and their gradient folded give the same outputs and
/// gradients as visiting every window (pre- and post-padded rows, one all-padding row).
#[test]
fn text_cnn_padding_folding_changes_nothing() {
    let mut rng = Rng::new(29);
    let (steps, batch, e) = (9, 4, 3);
    let cnn: TextCnn<f64> = TextCnn::new(e, &[2, 4], 5, &mut rng);
    let pad_row = random(e, &mut rng);
    let mut pad = vec![false; batch * steps];
    for (b, row) in pad.chunks_exact_mut(steps).enumerate() {
        match b {
            0 => row[..5].fill(true),
            1 => row[6..].fill(true),
            2 => row.fill(true),
            _ => {}
        }
    }
    let mut x = random(batch * steps * e, &mut rng);
    for (xr, &p) in x.chunks_exact_mut(e).zip(&pad) {
        if p {
            xr.copy_from_slice(&pad_row);
        }
    }
    let w = random(batch * cnn.outputs(), &mut rng);
    let run = |pad: Option<&[bool]>| {
        let mut cache = Default::default();
        cnn.forward(&x, steps, batch, pad, &mut cache);
        let out = flywheel_nn::layers::CnnCache::output(&cache).to_vec();
        let mut grads = cnn.zeros_like();
        let mut dx = vec![0.0; x.len()];
        cnn.backward(&x, &w, &mut cache, &mut grads, Some(&mut dx));
        let g: Vec<f64> = grads
            .tensors()
            .iter()
            .flat_map(|t| t.1.data().to_vec())
            .collect();
        (out, g, dx)
    };
    let (plain, folded) = (run(None), run(Some(&pad)));
    for (what, a, b) in [
        ("outputs", &plain.0, &folded.0),
        ("parameter gradients", &plain.1, &folded.1),
        ("input gradients", &plain.2, &folded.2),
    ] {
        assert_eq!(a.len(), b.len(), "{what}: length");
        let err = a
            .iter()
            .zip(b.iter())
            .map(|(p, q)| (p - q).abs())
            .fold(0.0, f64::max);
        assert!(err < 1e-12, "{what}: max difference {err:e}");
    }
    // The all-padding row gets a gradient only through tied padding windows: the fold ran.
    assert!(folded.2[2 * steps * e..3 * steps * e]
        .iter()
        .any(|&v| v != 0.0));
}
