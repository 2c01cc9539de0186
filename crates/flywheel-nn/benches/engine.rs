//! One epoch of the reference model on synthetic data (20,000 sequences x 100 steps, batch 32,
//! one thread, Adam), the setting the design notes quote for the prototype (0.79 s), plus
//! inference throughput. Run: `cargo bench -p flywheel-nn --bench engine`.

use std::time::Instant;

use flywheel_nn::layers::dropout::fill_mask;
use flywheel_nn::{Loss, Optimizer, OptimizerKind, Rng, Targets, TextRnn, TrainBatch, Workspace};

fn main() {
    // One thread for everything, the optimiser's parallel path included.
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build_global();
    let (vocab, e, h, steps, batch, n) = (10_000usize, 16, 16, 100, 32, 20_000);
    let mut rng = Rng::new(42);
    let mut net: TextRnn<f32> = TextRnn::new(vocab, e, h, 1, Loss::BinaryCrossEntropy, &mut rng);
    let data: Vec<u32> = (0..n * steps).map(|_| rng.below(vocab) as u32).collect();
    let labels: Vec<f32> = (0..n).map(|i| (i % 2) as f32).collect();
    let mut opt = Optimizer::new(OptimizerKind::adam());
    let mut ws = Workspace::default();
    let mut grads = net.zero_grads();
    let mut emb_grad = net.embedding_grad();
    let mut ids = vec![0u32; steps * batch];
    let mut in_mask = vec![0f32; batch * 4 * e];
    let mut rec_mask = vec![0f32; batch * 4 * h];
    for epoch in 0..3 {
        let start = Instant::now();
        let (mut t_fb, mut t_opt) = (0.0, 0.0);
        let mut total = 0.0;
        for b0 in (0..n).step_by(batch) {
            let bs = batch.min(n - b0);
            for j in 0..bs {
                for t in 0..steps {
                    ids[t * bs + j] = data[(b0 + j) * steps + t];
                }
            }
            fill_mask(&mut in_mask[..bs * 4 * e], 0.2, &mut rng);
            fill_mask(&mut rec_mask[..bs * 4 * h], 0.2, &mut rng);
            let tb = TrainBatch {
                ids: &ids[..steps * bs],
                steps,
                batch: bs,
                input_mask: Some(&in_mask[..bs * 4 * e]),
                recurrent_mask: Some(&rec_mask[..bs * 4 * h]),
                targets: Targets::Values(&labels[b0..b0 + bs]),
                scale: 1.0 / bs as f32,
            };
            let t0 = Instant::now();
            grads.clear();
            total += net.train_batch(&tb, &mut ws, &mut grads).unwrap();
            let (gids, rows) = ws.embedding_grad();
            emb_grad.accumulate(gids, rows);
            let t1 = Instant::now();
            net.apply_update(&mut opt, &grads, &emb_grad).unwrap();
            emb_grad.clear();
            t_fb += (t1 - t0).as_secs_f64();
            t_opt += t1.elapsed().as_secs_f64();
        }
        println!(
            "epoch {epoch}: {:.3} s (forward+backward {t_fb:.3} s, optimiser {t_opt:.3} s), mean loss {:.4}",
            start.elapsed().as_secs_f64(),
            total / n as f64
        );
    }
    // Inference: full-length sequences (no padding to skip) at batch 256.
    let pads = net.pad_states(steps, 0).unwrap();
    let mut out = vec![0f32; 256];
    let start = Instant::now();
    let mut done = 0;
    for b0 in (0..n).step_by(256) {
        let bs = 256.min(n - b0);
        let seqs: Vec<&[u32]> = (b0..b0 + bs)
            .map(|i| &data[i * steps..(i + 1) * steps])
            .collect();
        net.predict_pre_padded(&seqs, &pads, &mut ws, &mut out[..bs])
            .unwrap();
        done += bs;
    }
    println!(
        "inference, 100 real tokens per sequence, batch 256: {:.0} sequences/s",
        done as f64 / start.elapsed().as_secs_f64()
    );
}
