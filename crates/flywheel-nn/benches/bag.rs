//! The fastText-style bag's SGD step on one thread: 200,000 examples of 24 features (word ids
//! and hashed n-grams from 500,000 rows), dimension 100, for softmax over 4 classes, one-vs-all
//! over 4 labels and hierarchical softmax over 20 classes. Prints the time per epoch and a
//! checksum of the trained weights (bit-identical builds give the same checksum). Run:
//! `cargo bench -p flywheel-nn --bench bag`.

use std::time::Instant;

use flywheel_nn::{BagLoss, BagModel, BagScratch, BagTarget, HuffmanTree, Rng};

fn main() {
    let (rows, dim, n, per) = (500_000usize, 100, 200_000, 24);
    let mut rng = Rng::new(7);
    let mut features: Vec<Vec<u32>> = (0..n)
        .map(|_| (0..per).map(|_| rng.below(rows) as u32).collect())
        .collect();
    features.iter_mut().for_each(|f| f.sort_unstable());
    let classes: Vec<u32> = (0..n).map(|_| rng.below(20) as u32).collect();
    let labels: Vec<f32> = (0..n * 4)
        .map(|_| (rng.below(3) == 0) as u32 as f32)
        .collect();
    let counts: Vec<u64> = (0..20).map(|c| 1 + (20 - c) as u64 * 10).collect();
    let cases: [(&str, BagLoss, usize); 3] = [
        ("softmax 4", BagLoss::Softmax, 4),
        ("one-vs-all 4", BagLoss::OneVsAll, 4),
        (
            "hierarchical 20",
            BagLoss::Hierarchical(HuffmanTree::new(&counts)),
            20,
        ),
    ];
    for (name, loss, k) in cases {
        let mut m = BagModel::new(rows, dim, k, loss.clone(), &mut Rng::new(1));
        let mut s = BagScratch::default();
        for epoch in 0..2 {
            let start = Instant::now();
            let mut total = 0.0f64;
            for (i, f) in features.iter().enumerate() {
                let target = match loss {
                    BagLoss::OneVsAll => BagTarget::Values(&labels[i * 4..i * 4 + 4]),
                    BagLoss::Softmax => BagTarget::Class(classes[i] % 4),
                    _ => BagTarget::Class(classes[i]),
                };
                total += f64::from(m.step(f, target, 0.05, &mut s).unwrap());
            }
            let secs = start.elapsed().as_secs_f64();
            let checksum: f64 = m
                .input
                .data()
                .iter()
                .chain(m.output.data())
                .enumerate()
                .map(|(j, &v)| f64::from(v) * (1 + j % 7) as f64)
                .sum();
            println!(
                "bag {name:<16} epoch {epoch}: {secs:.3} s ({:.0} examples/s), mean loss {:.6}, checksum {checksum:e}",
                n as f64 / secs,
                total / n as f64
            );
        }
    }
}
