//! Parity of the BERT fine-tuning path with PyTorch / Hugging Face `transformers`: the same
//! initial weights (`fixtures/bert_finetune/init.safetensors`, float64), the same pairs, the
//! same loss (sentence-transformers' `CosineSimilarityLoss` on mean-pooled outputs) and the
//! same optimiser (`torch.optim.AdamW` with SetFit's decay exclusions) give the same pooled
//! vectors, loss, gradients and weights after three steps. `fixtures/bert_finetune/make.py`
//! made the fixture (run with `bench/.venv-setfit/bin/python`, see `bench/setfit/setup.sh`).

use std::path::PathBuf;

use flywheel_nn::bert::{cosine_pair_loss, AdamW};
use flywheel_nn::{Bert, BertCache, BertConfig};
use safetensors::{Dtype, SafeTensors};
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/bert_finetune")
        .join(name)
}

fn tensors(name: &str) -> Vec<(String, Vec<f64>)> {
    let bytes = std::fs::read(fixture(name)).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(n, t)| {
            assert_eq!(t.dtype(), Dtype::F64, "{n}");
            let v = t
                .data()
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
                .collect();
            (n, v)
        })
        .collect()
}

fn json(name: &str) -> Value {
    serde_json::from_slice(&std::fs::read(fixture(name)).unwrap()).unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn model() -> Bert<f64> {
    let c = json("config.json");
    let u = |k: &str| c[k].as_u64().unwrap() as usize;
    let mut bert = Bert::<f64>::zeros(BertConfig {
        vocab: u("vocab_size"),
        hidden: u("hidden_size"),
        layers: u("num_hidden_layers"),
        heads: u("num_attention_heads"),
        intermediate: u("intermediate_size"),
        max_positions: u("max_position_embeddings"),
        type_vocab: u("type_vocab_size"),
        eps: c["layer_norm_eps"].as_f64().unwrap(),
        hidden_dropout: 0.0,
        attention_dropout: 0.0,
    })
    .unwrap();
    let mut set = 0;
    for (name, values) in tensors("init.safetensors") {
        if bert.param(&name).is_some() {
            bert.set(&name, values.into_iter()).unwrap();
            set += 1;
        } else {
            assert!(name.starts_with("pooler."), "unexpected tensor {name}");
        }
    }
    assert_eq!(
        set,
        bert.params().len(),
        "every tensor comes from the fixture"
    );
    bert
}

type Batch = (Vec<Vec<u32>>, Vec<(usize, usize, f32)>);

/// The pairs' texts (a first, b second) and the pairs as indices into them.
fn batch() -> Batch {
    let pairs = json("pairs.json");
    let mut seqs = Vec::new();
    let mut idx = Vec::new();
    for p in pairs.as_array().unwrap() {
        let ids = |k: &str| -> Vec<u32> {
            p[k].as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as u32)
                .collect()
        };
        seqs.push(ids("a"));
        seqs.push(ids("b"));
        idx.push((
            seqs.len() - 2,
            seqs.len() - 1,
            p["label"].as_f64().unwrap() as f32,
        ));
    }
    (seqs, idx)
}

fn loss_and_grads(bert: &Bert<f64>, (seqs, pairs): &Batch) -> (f64, Vec<f64>, Vec<f64>) {
    let refs: Vec<&[u32]> = seqs.iter().map(|s| s.as_slice()).collect();
    let mut cache = BertCache::new();
    let pooled = bert.forward(&refs, None, &mut cache).unwrap();
    let (loss, d) = cosine_pair_loss(&pooled, bert.config().hidden, pairs);
    let mut grads = vec![0.0; bert.weights.len()];
    bert.backward(&cache, &d, &mut grads).unwrap();
    (loss, grads, pooled)
}

fn close(what: &str, got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * (1.0 + w.abs()),
            "{what}[{i}]: {g} against PyTorch's {w}"
        );
    }
}

#[test]
fn pooled_vectors_loss_and_gradients_match_pytorch() {
    let bert = model();
    let expected = json("expected.json");
    let b = batch();
    let (loss, grads, pooled) = loss_and_grads(&bert, &b);
    let h = bert.config().hidden;
    let step0 = &expected["step0"];
    close(
        "pooled a",
        &pooled[..h],
        &floats(&step0["pooled_first_pair_a"]),
        1e-10,
    );
    close(
        "pooled b",
        &pooled[h..2 * h],
        &floats(&step0["pooled_first_pair_b"]),
        1e-10,
    );
    let first = expected["loss_before_step"][0].as_f64().unwrap();
    assert!((loss - first).abs() < 1e-12, "loss {loss}, PyTorch {first}");
    let want = tensors("grads0.safetensors");
    let mut compared = 0;
    for (name, g) in want {
        if let Some(p) = bert.param(&name) {
            close(&name, &grads[p.range()], &g, 1e-9);
            compared += 1;
        }
    }
    assert_eq!(compared, bert.params().len());
}

#[test]
fn three_adamw_steps_match_pytorch() {
    let mut bert = model();
    let expected = json("expected.json");
    let opt_cfg = &expected["optimizer"];
    let lr = opt_cfg["lr"].as_f64().unwrap();
    let betas = floats(&opt_cfg["betas"]);
    let mut opt = AdamW::new(
        betas[0],
        betas[1],
        opt_cfg["eps"].as_f64().unwrap(),
        opt_cfg["weight_decay"].as_f64().unwrap(),
    );
    // The fixture's exemptions from weight decay are ours.
    let exempt: Vec<&str> = opt_cfg["no_decay_params"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for p in bert.params() {
        assert_eq!(p.decays(), !exempt.contains(&p.name.as_str()), "{}", p.name);
    }
    let b = batch();
    let params = bert.params().to_vec();
    let losses = floats(&expected["loss_before_step"]);
    for (step, want) in losses.iter().enumerate() {
        let (loss, grads, _) = loss_and_grads(&bert, &b);
        assert!(
            (loss - want).abs() < 1e-10,
            "step {step}: loss {loss}, PyTorch {want}"
        );
        opt.step(&params, &mut bert.weights, &grads, lr).unwrap();
    }
    let (last, _, _) = loss_and_grads(&bert, &b);
    let want = expected["loss_after_last_step"].as_f64().unwrap();
    assert!((last - want).abs() < 1e-10, "after: {last}, PyTorch {want}");
    for (name, w) in tensors("after.safetensors") {
        if let Some(p) = bert.param(&name) {
            close(&name, &bert.weights[p.range()], &w, 1e-9);
        }
    }
}
