//! `flywheel audit`: out-of-fold probabilities, confident learning, suspect labels and
//! conflicting duplicates as a table, CSV, JSON and an HTML page; suspects can go to a model's
//! review queue.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use flywheel_data::read_labelled;
use flywheel_model::families;
use flywheel_model::{
    audit, autotune, Audit, AuditEvent, AuditOptions, AutotuneOptions, Family, Metric,
};

use crate::admin::{with_store, Database};
use crate::args::{DataArgs, LabelArgs, RedactArg, SeedArg, ThreadsArg};
use crate::autotune::parse_budget;

/// Arguments of `flywheel audit`.
#[derive(Args, Debug)]
pub struct AuditArgs {
    /// Labelled data to audit.
    data: PathBuf,
    /// Family whose out-of-fold probabilities are used (its default settings): linear
    /// (TF-IDF + logistic regression), fasttext, ... ; `autotune` searches within --budget
    /// first and audits with the settings it picks.
    #[arg(
        long = "model",
        value_name = "FAMILY|autotune",
        default_value = "linear"
    )]
    model: String,
    /// Audit with the settings of this model file instead (its family, spec and training
    /// settings: the champion's own, for instance).
    #[arg(long, value_name = "MODEL.fw", conflicts_with = "model")]
    like: Option<PathBuf>,
    /// Time for the search of `--model autotune`: 300, 90s, 5m.
    #[arg(long, default_value = "2m")]
    budget: String,
    /// Number of stratified folds.
    #[arg(long, default_value_t = 5)]
    folds: usize,
    /// Use these folds instead: a file with one fold number (0, 1, ...) per data row.
    #[arg(long, value_name = "FILE", conflicts_with = "folds")]
    folds_file: Option<PathBuf>,
    /// Suspect rows printed in the table.
    #[arg(long, default_value_t = 20)]
    top: usize,
    /// Write every suspect row as CSV (row, line, given, suggested, probabilities, text).
    #[arg(long, value_name = "FILE")]
    csv: Option<PathBuf>,
    /// Write the whole audit as JSON (classes, confident joint, suspects, duplicates).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Write the audit as a self-contained HTML page.
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
    /// Put the suspects into this registered model's review queue as "is this label
    /// right?" items (in the store of --database-url).
    #[arg(long, value_name = "MODEL")]
    push_review: Option<String>,
    /// The tenant whose review queue gets the items (default: the operator's).
    #[arg(long, default_value = "", requires = "push_review")]
    tenant: String,
    /// Replace personal data by typed placeholders in the pushed texts.
    #[arg(long, value_enum, default_value_t = RedactArg::Pii)]
    redact: RedactArg,
    #[command(flatten)]
    db: Database,
    #[command(flatten)]
    seed: SeedArg,
    #[command(flatten)]
    threads: ThreadsArg,
    #[command(flatten)]
    labels: LabelArgs,
    #[command(flatten)]
    data_args: DataArgs,
}

/// Runs the command.
pub fn run(args: &AuditArgs) -> Result<()> {
    let threads = args.threads.count();
    crate::init_pool(threads);
    let data = read_labelled(&args.data, &args.data_args.options())?;
    let source = args.data.display().to_string();
    let task = args.labels.task();
    let label_sep = &args.labels.label_sep;
    let (spec, mut cfg) = if let Some(path) = &args.like {
        let meta = flywheel_model::Artifact::load(path)?.meta;
        let cfg = match meta.training {
            Some(t) => t.config,
            None => families::of(meta.spec.family).default_config(),
        };
        eprintln!("Auditing with the settings of {}", path.display());
        (meta.spec, cfg)
    } else if args.model == "autotune" {
        let opts = AutotuneOptions {
            budget_secs: parse_budget(&args.budget)?,
            metric: Metric::MacroF1,
            seed: args.seed.seed,
            threads,
            validation_fraction: 0.2,
            encoder: None,
            stop_at_budget: true,
        };
        eprintln!("Searching settings for {:.0} s ...", opts.budget_secs);
        let out = autotune(&data.records, &source, task, label_sep, &opts, &mut |_| {})?;
        eprintln!("Auditing with {}", out.best.describe());
        (out.best.spec, out.best.config)
    } else {
        let family: Family = args.model.parse()?;
        let f = families::of(family);
        (f.default_spec(), f.default_config())
    };
    cfg.seed = args.seed.seed;
    cfg.threads = threads;
    let fold_of = match &args.folds_file {
        Some(path) => Some(read_folds(path)?),
        None => None,
    };
    let opts = AuditOptions {
        spec,
        cfg,
        folds: args.folds,
        fold_of,
    };
    let result = audit(
        &data.records,
        &source,
        task,
        label_sep,
        &opts,
        &mut |ev| match ev {
            AuditEvent::Fold {
                fold,
                folds,
                seconds,
            } => eprintln!("fold {fold}/{folds} scored ({seconds:.1} s)"),
        },
    )?;
    print_table(&result, args.top);
    if let Some(path) = &args.csv {
        write_csv(&result, path)?;
        eprintln!("Suspects written to {}", path.display());
    }
    if let Some(path) = &args.json {
        let file =
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
        serde_json::to_writer(std::io::BufWriter::new(file), &result)?;
        eprintln!("Audit written to {}", path.display());
    }
    if let Some(path) = &args.html {
        std::fs::write(path, flywheel_report::audit::render_audit(&result))
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("Audit page written to {}", path.display());
    }
    if let Some(model) = &args.push_review {
        let redact = args.redact == RedactArg::Pii;
        let result = &result;
        let added =
            with_store(&args.db, |store| async move {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs() as i64)
                    .unwrap_or(0);
                Ok(flywheel_server::audit::push_audit(
                    &store,
                    model,
                    &args.tenant,
                    result,
                    redact,
                    now,
                )
                .await?)
            })?;
        eprintln!(
            "{added} new item(s) in {model}'s review queue ({} suspect(s); the rest were there already)",
            result.suspects.len()
        );
    }
    Ok(())
}

/// One fold number per line.
fn read_folds(path: &PathBuf) -> Result<Vec<usize>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut folds = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        match line.parse::<usize>() {
            Ok(f) => folds.push(f),
            Err(_) => bail!(
                "{}:{}: expected a fold number, got {line:?}",
                path.display(),
                i + 1
            ),
        }
    }
    Ok(folds)
}

fn print_table(a: &Audit, top: usize) {
    println!(
        "{}: {} rows, {} labels; {}-fold out-of-fold {} accuracy {:.4}; {} suspect label(s), {} conflicting duplicate group(s) ({:.1} s)\n",
        a.source,
        a.rows,
        a.labels.len(),
        a.folds,
        a.family,
        a.out_of_fold_accuracy,
        a.suspects.len(),
        a.conflicts.len(),
        a.seconds
    );
    println!("| label | rows | threshold | estimated errors | noise rate |");
    println!("|---|---:|---:|---:|---:|");
    for c in &a.classes {
        println!(
            "| {} | {} | {:.3} | {} | {:.1} % |",
            c.label,
            c.rows,
            c.threshold,
            c.estimated_errors,
            c.noise_rate * 100.0
        );
    }
    if !a.suspects.is_empty() {
        println!("\n| line | given | suggested | p(given) | p(suggested) | text |");
        println!("|---:|---|---|---:|---:|---|");
        for s in a.suspects.iter().take(top) {
            println!(
                "| {} | {} | {} | {:.3} | {:.3} | {} |",
                s.line,
                s.given,
                s.suggested,
                s.given_probability,
                s.suggested_probability,
                shorten(&s.text, 80)
            );
        }
        if a.suspects.len() > top {
            println!(
                "(and {} more: --csv, --json or --html for all)",
                a.suspects.len() - top
            );
        }
    }
    if !a.conflicts.is_empty() {
        println!("\nDuplicates with conflicting labels:");
        for c in a.conflicts.iter().take(top) {
            let rows: Vec<String> = c
                .rows
                .iter()
                .map(|r| format!("line {}: {}", r.line, r.label))
                .collect();
            println!("  {:?} — {}", shorten(&c.text, 60), rows.join(", "));
        }
    }
}

/// The text on one line, at most `n` characters.
fn shorten(text: &str, n: usize) -> String {
    let one_line: String = text
        .chars()
        .map(|c| if c.is_whitespace() { ' ' } else { c })
        .collect();
    if one_line.chars().count() <= n {
        one_line
    } else {
        let mut s: String = one_line.chars().take(n - 1).collect();
        s.push('…');
        s
    }
}

/// Every suspect as CSV, through the store's writer (cells that a spreadsheet would run as a
/// formula are quoted, as in the usage export).
fn write_csv(a: &Audit, path: &PathBuf) -> Result<()> {
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let rows = a.suspects.iter().map(|s| {
        [
            s.row.to_string(),
            s.line.to_string(),
            s.given.clone(),
            s.suggested.clone(),
            format!("{:.6}", s.given_probability),
            format!("{:.6}", s.suggested_probability),
            s.text.clone(),
        ]
    });
    let header = [
        "row",
        "line",
        "given",
        "suggested",
        "given_probability",
        "suggested_probability",
        "text",
    ];
    flywheel_store::write_csv(std::io::BufWriter::new(file), &header, rows)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
