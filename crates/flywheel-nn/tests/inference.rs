//! The fast inference path (padding skipped) equals the plain padded pass and the training
//! forward pass without dropout.

use flywheel_nn::{Loss, Rng, Targets, TextRnn, TrainBatch, Workspace};

fn setup() -> (TextRnn<f32>, Vec<Vec<u32>>, usize) {
    let mut rng = Rng::new(11);
    let net = TextRnn::new(30, 8, 6, 3, Loss::SoftmaxCrossEntropy, &mut rng);
    let steps = 9;
    let seqs: Vec<Vec<u32>> = [0usize, 9, 3, 1, 7, 9, 2]
        .iter()
        .map(|&len| (0..len).map(|_| 1 + rng.below(29) as u32).collect())
        .collect();
    (net, seqs, steps)
}

/// Pre-padded, time-major ids.
fn padded(seqs: &[Vec<u32>], steps: usize) -> Vec<u32> {
    let b = seqs.len();
    let mut ids = vec![0u32; steps * b];
    for (j, s) in seqs.iter().enumerate() {
        let pad = steps - s.len();
        for (i, &id) in s.iter().enumerate() {
            ids[(pad + i) * b + j] = id;
        }
    }
    ids
}

#[test]
fn skipping_padding_changes_nothing() {
    let (net, seqs, steps) = setup();
    let b = seqs.len();
    let k = net.outputs();
    let ids = padded(&seqs, steps);
    let mut ws = Workspace::default();
    let mut full = vec![0.0f32; b * k];
    net.predict_padded(&ids, steps, b, &mut ws, &mut full)
        .unwrap();
    let pads = net.pad_states(steps, 0).unwrap();
    let refs: Vec<&[u32]> = seqs.iter().map(|s| s.as_slice()).collect();
    let mut fast = vec![0.0f32; b * k];
    net.predict_pre_padded(&refs, &pads, &mut ws, &mut fast)
        .unwrap();
    assert_eq!(full.len(), fast.len());
    for (a, c) in full.iter().zip(&fast) {
        assert!((a - c).abs() < 1e-6, "{a} vs {c}");
    }
    // The training forward pass (no dropout) gives the same logits.
    let classes = vec![0u32; b];
    let tb = TrainBatch {
        ids: &ids,
        steps,
        batch: b,
        input_mask: None,
        recurrent_mask: None,
        targets: Targets::Classes(&classes),
        scale: 1.0,
    };
    let mut g = net.zero_grads();
    net.train_batch(&tb, &mut ws, &mut g).unwrap();
    assert_eq!(ws.logits().len(), full.len(), "logits");
    for (a, c) in full.iter().zip(ws.logits()) {
        assert!((a - c).abs() < 1e-6, "{a} vs {c}");
    }
}

#[test]
fn rejects_out_of_range_ids_and_long_sequences() {
    let (net, _, steps) = setup();
    let pads = net.pad_states(steps, 0).unwrap();
    let mut ws = Workspace::default();
    let mut out = vec![0.0f32; 3];
    let bad: &[u32] = &[1, 99];
    assert!(net
        .predict_pre_padded(&[bad], &pads, &mut ws, &mut out)
        .is_err());
    let long = vec![1u32; steps + 1];
    assert!(net
        .predict_pre_padded(&[&long], &pads, &mut ws, &mut out)
        .is_err());
}

/// The GRU network's padding-skipping path equals its plain padded pass (widths 6: generic
/// kernels, 16: fixed-width ones).
#[test]
fn gru_skipping_padding_changes_nothing() {
    use flywheel_nn::{Encoder, Gru, SeqNet, SeqWorkspace};
    let (_, seqs, steps) = setup();
    let b = seqs.len();
    for h in [6, 16] {
        let mut rng = Rng::new(12);
        let net: SeqNet<f32> = SeqNet::new(
            30,
            8,
            3,
            Loss::SoftmaxCrossEntropy,
            false,
            &mut rng,
            |e, r| Encoder::Gru(Gru::new(e, h, r)),
        );
        let k = net.outputs();
        let ids = padded(&seqs, steps);
        let mut ws = SeqWorkspace::default();
        let mut full = vec![0.0f32; b * k];
        net.predict_padded(&ids, steps, b, &mut ws, &mut full)
            .unwrap();
        let pads = net.pad_states(steps).unwrap();
        let refs: Vec<&[u32]> = seqs.iter().map(|s| s.as_slice()).collect();
        let mut fast = vec![0.0f32; b * k];
        net.predict_pre_padded(&refs, &pads, &mut ws, &mut fast)
            .unwrap();
        assert_eq!(full.len(), fast.len());
        for (a, c) in full.iter().zip(&fast) {
            assert!((a - c).abs() < 1e-6, "H={h}: {a} vs {c}");
        }
        let long = vec![1u32; steps + 1];
        assert!(net
            .predict_pre_padded(&[&long], &pads, &mut ws, &mut fast[..k])
            .is_err());
    }
}
