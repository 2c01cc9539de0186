//! One training epoch of each `SeqNet` encoder on the reference engine bench's synthetic data
//! (20,000 random sequences x 100 steps, batch 32, one thread, Adam, Keras's default dropout of
//! each family), then inference throughput on the same sequences.
//! Run: `cargo bench -p flywheel-nn --bench families`.

use std::time::Instant;

use flywheel_nn::layers::dropout::fill_mask;
use flywheel_nn::{
    Bidirectional, Encoder, Gru, Loss, Lstm, Optimizer, OptimizerKind, Rng, SeqBatch, SeqNet,
    SeqWorkspace, Targets, TextCnn,
};

type Make = Box<dyn Fn(usize, &mut Rng) -> Encoder<f32>>;

fn main() {
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build_global();
    let (vocab, e, h, steps, batch, n) = (10_000usize, 16, 16, 100, 32, 20_000);
    let mut rng = Rng::new(42);
    let data: Vec<u32> = (0..n * steps).map(|_| rng.below(vocab) as u32).collect();
    let labels: Vec<f32> = (0..n).map(|i| (i % 2) as f32).collect();
    let encoders: Vec<(&str, f32, f32, Make)> = vec![
        (
            "gru",
            0.2,
            0.2,
            Box::new(move |e, r| Encoder::Gru(Gru::new(e, h, r))),
        ),
        (
            "bilstm",
            0.2,
            0.2,
            Box::new(move |e, r| {
                Encoder::BiLstm(Bidirectional {
                    forward: Lstm::new(e, h, r),
                    backward: Lstm::new(e, h, r),
                })
            }),
        ),
        (
            "cnn 100x(3,4,5)",
            0.5,
            0.0,
            Box::new(|e, r| Encoder::Cnn(TextCnn::new(e, &[3, 4, 5], 100, r))),
        ),
    ];
    for (name, dropout, rec_dropout, make) in encoders {
        let mut net: SeqNet<f32> =
            SeqNet::new(vocab, e, 1, Loss::BinaryCrossEntropy, false, &mut rng, make);
        let (mi, mr) = (
            net.encoder.input_mask_len(),
            net.encoder.recurrent_mask_len(),
        );
        let mut opt = Optimizer::new(OptimizerKind::adam());
        let mut ws = SeqWorkspace::default();
        let mut grads = net.zero_grads();
        let mut emb_grad = net.embedding_grad();
        let mut ids = vec![0u32; steps * batch];
        let mut in_mask = vec![0f32; batch * mi];
        let mut rec_mask = vec![0f32; batch * mr];
        let start = Instant::now();
        for b0 in (0..n).step_by(batch) {
            let bs = batch.min(n - b0);
            for j in 0..bs {
                for t in 0..steps {
                    ids[t * bs + j] = data[(b0 + j) * steps + t];
                }
            }
            fill_mask(&mut in_mask[..bs * mi], dropout, &mut rng);
            fill_mask(&mut rec_mask[..bs * mr], rec_dropout, &mut rng);
            let tb = SeqBatch {
                ids: &ids[..steps * bs],
                steps,
                batch: bs,
                input_mask: Some(&in_mask[..bs * mi]),
                recurrent_mask: (rec_dropout > 0.0).then_some(&rec_mask[..bs * mr]),
                targets: Targets::Values(&labels[b0..b0 + bs]),
                scale: 1.0 / bs as f32,
            };
            grads.clear();
            net.train_batch(&tb, &mut ws, &mut grads).unwrap();
            let (gids, rows) = ws.embedding_grad();
            emb_grad.accumulate(gids, rows);
            net.apply_update(&mut opt, &grads, &emb_grad).unwrap();
            emb_grad.clear();
        }
        let epoch = start.elapsed().as_secs_f64();
        let infer = 256;
        let start = Instant::now();
        let mut out = vec![0f32; infer];
        let mut done = 0;
        for b0 in (0..n).step_by(infer) {
            let bs = infer.min(n - b0);
            let mut block = vec![0u32; steps * bs];
            for j in 0..bs {
                for t in 0..steps {
                    block[t * bs + j] = data[(b0 + j) * steps + t];
                }
            }
            net.predict_padded(&block, steps, bs, &mut ws, &mut out[..bs])
                .unwrap();
            done += bs;
        }
        let rate = done as f64 / start.elapsed().as_secs_f64();
        println!("{name:>16}: epoch {epoch:.2} s, inference {rate:.0} sequences/s (100 steps)");
    }
}
