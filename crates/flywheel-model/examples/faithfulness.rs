//! Measures how faithful `explain` is on a labelled file: for the first N texts, the mean drop
//! of the predicted label's probability after deleting the 3 top-attributed tokens vs 3 random
//! tokens. Used by `bench/faithfulness.sh`.
//!
//! `cargo run --release -p flywheel-model --example faithfulness -- MODEL DATA [N] [K]`

use std::path::Path;
use std::time::Instant;

use flywheel_data::{read_labelled, ReadOptions};
use flywheel_model::explain::deletion_check;
use flywheel_model::Artifact;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        return Err("usage: faithfulness MODEL DATA [N] [K]".into());
    }
    let n: usize = args.get(2).map_or(Ok(usize::MAX), |s| s.parse())?;
    let k: usize = args.get(3).map_or(Ok(3), |s| s.parse())?;
    let artifact = Artifact::load(Path::new(&args[0]))?;
    let data = read_labelled(Path::new(&args[1]), &ReadOptions::default())?;
    let texts: Vec<&str> = data
        .records
        .iter()
        .take(n)
        .map(|r| r.text.as_str())
        .collect();
    let started = Instant::now();
    let c = deletion_check(&artifact.pipeline, &texts, k, 1)?;
    println!(
        "{{\"model\": {:?}, \"data\": {:?}, \"texts_read\": {}, \"texts_measured\": {}, \"k\": {}, \
         \"mean_drop_top\": {:.4}, \"mean_drop_random\": {:.4}, \"mean_abs_change_top\": {:.4}, \
         \"mean_abs_change_random\": {:.4}, \"top_wins\": {:.4}, \"seconds\": {:.2}}}",
        args[0],
        args[1],
        texts.len(),
        c.texts,
        c.k,
        c.mean_drop_top,
        c.mean_drop_random,
        c.mean_abs_change_top,
        c.mean_abs_change_random,
        c.top_wins,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
