//! `flywheel autotune`: search model settings within a time budget, retrain the best on all
//! rows, write the model.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use flywheel_data::read_labelled;
use flywheel_model::{autotune, Artifact, AutotuneEvent, AutotuneOptions, Metric, TRIALS_UNTIL};

use crate::args::{DataArgs, EncoderArg, LabelArgs, SeedArg, ThreadsArg};
use crate::encoder_dir;

/// Arguments of `flywheel autotune`.
#[derive(Args, Debug)]
pub struct AutotuneArgs {
    /// Labelled training data.
    data: PathBuf,
    /// Where to write the best model.
    #[arg(short, long)]
    output: PathBuf,
    /// Planned time for the search and the final training: 300, 90s, 5m, 1h.
    #[arg(long, default_value = "5m")]
    budget: String,
    /// What to maximise on the validation split: macro-f1, accuracy or f1:LABEL.
    #[arg(long, default_value = "macro-f1")]
    metric: String,
    #[command(flatten)]
    seed: SeedArg,
    /// Trials run at once, one thread each.
    #[command(flatten)]
    threads: ThreadsArg,
    /// Share of the rows held out (stratified) to score trials.
    #[arg(long, default_value_t = 0.2)]
    validation_fraction: f64,
    #[command(flatten)]
    labels: LabelArgs,
    /// The search also tries --model encoder with this encoder, with and without n-grams.
    #[command(flatten)]
    encoder: EncoderArg,
    /// Run every planned trial even past the budget. By default no trial starts that its
    /// planned seconds would carry past 85 % of the budget (reported when it happens), so the
    /// budget holds when the cost
    /// model misjudges the data or the machine is busy; with this flag the choice depends
    /// only on the data, seed and budget, however long it takes.
    #[arg(long)]
    all_trials: bool,
    /// Print the trials as JSON lines instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    data_args: DataArgs,
}

/// Parses `300`, `90s`, `5m`, `1h` into seconds.
pub fn parse_budget(s: &str) -> Result<f64> {
    let s = s.trim();
    let (num, unit) = match s.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let v: f64 = num
        .trim()
        .parse()
        .with_context(|| format!("--budget '{s}': expected a number with s, m or h"))?;
    let secs = match unit {
        "s" | "sec" => v,
        "m" | "min" => v * 60.0,
        "h" => v * 3600.0,
        other => bail!("--budget '{s}': unknown unit '{other}' (use s, m or h)"),
    };
    if !(secs.is_finite() && secs > 0.0) {
        bail!("--budget must be positive");
    }
    Ok(secs)
}

/// Runs the command.
pub fn run(args: &AutotuneArgs) -> Result<()> {
    let opts = AutotuneOptions {
        budget_secs: parse_budget(&args.budget)?,
        metric: args.metric.parse::<Metric>()?,
        seed: args.seed.seed,
        threads: args.threads.count(),
        validation_fraction: args.validation_fraction,
        encoder: args
            .encoder
            .encoder
            .as_deref()
            .map(encoder_dir)
            .transpose()?,
        stop_at_budget: !args.all_trials,
    };
    if opts.encoder.is_some() {
        crate::keep_large_blocks();
    }
    let task = args.labels.task();
    let data = read_labelled(&args.data, &args.data_args.options())?;
    let source = args.data.display().to_string();
    eprintln!(
        "Read {} rows from {source}; budget {:.0} s, metric {}, seed {}, {} trials at a time",
        data.records.len(),
        opts.budget_secs,
        opts.metric,
        opts.seed,
        opts.threads
    );
    let started = Instant::now();
    let json = args.json;
    let out = autotune(
        &data.records,
        &source,
        task,
        &args.labels.label_sep,
        &opts,
        &mut |ev| match ev {
            AutotuneEvent::Plan {
                rungs,
                train_rows,
                val_rows,
                folds,
                planned_secs,
            } => eprintln!(
                "Plan: {} candidates on a third of {train_rows} rows, the best {} on all; \
                 scored on {val_rows} held-out rows{}; ~{planned_secs:.0} s",
                rungs[0],
                rungs[1],
                if folds > 1 {
                    format!(" (mean of {folds} cross-validation folds)")
                } else {
                    String::new()
                }
            ),
            AutotuneEvent::Trial(t) => {
                if json {
                    println!("{}", serde_json::to_string(t).unwrap_or_default());
                } else {
                    eprintln!(
                        "trial {:>3} rung {} rows {:>6}  {:<78} {} {:.4}  ({:.1} s, planned {:.1})",
                        t.number,
                        t.rung,
                        t.rows,
                        t.candidate.describe(),
                        opts.metric,
                        t.score,
                        t.seconds,
                        t.planned
                    );
                }
            }
            AutotuneEvent::Extended { work_share, rungs } => eprintln!(
                "Plan grown: rung 0's linear trials needed {:.0} % of the L-BFGS iterations \
                 planned; {} candidates on a third of the rows, the best {} on all",
                work_share * 100.0,
                rungs[0],
                rungs[1]
            ),
            AutotuneEvent::Embedded { texts, seconds } => {
                eprintln!("Embedded {texts} texts with the encoder in {seconds:.1} s")
            }
            AutotuneEvent::Deadline { rung, skipped } => eprintln!(
                "Deadline: {skipped} planned trials of rung {rung} did not run: they would have \
                 ended after {:.0} % of the budget (the cost model misjudged this data or the \
                 machine was busy; --all-trials runs them all)",
                TRIALS_UNTIL * 100.0
            ),
            AutotuneEvent::Final(c) => {
                eprintln!("Retraining the best on all rows: {}", c.describe())
            }
        },
    )?;
    let mut last: Vec<_> = out.trials.iter().filter(|t| t.rung == 1).collect();
    last.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.number.cmp(&b.number)));
    eprintln!();
    eprintln!("| rank | trial | {} | configuration |", opts.metric);
    eprintln!("|---:|---:|---:|---|");
    for (i, t) in last.iter().take(10).enumerate() {
        eprintln!(
            "| {} | {} | {:.4} | {} |",
            i + 1,
            t.number,
            t.score,
            t.candidate.describe()
        );
    }
    let file_name = args
        .data
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let artifact = Artifact::from_training(
        out.outcome,
        out.best.config.clone(),
        &file_name,
        &data.sha256,
    );
    artifact
        .save(&args.output)
        .with_context(|| format!("saving the model to {}", args.output.display()))?;
    eprintln!(
        "\nChose {} ({} {:.4} on validation) from {} trials in {:.1} s; model written to {}",
        out.best.describe(),
        opts.metric,
        out.best_score,
        out.trials.len(),
        started.elapsed().as_secs_f64(),
        args.output.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_budget;

    #[test]
    fn budgets() {
        assert_eq!(parse_budget("300").unwrap(), 300.0);
        assert_eq!(parse_budget("90s").unwrap(), 90.0);
        assert_eq!(parse_budget("5m").unwrap(), 300.0);
        assert_eq!(parse_budget("1h").unwrap(), 3600.0);
        assert!(parse_budget("5x").is_err());
        assert!(parse_budget("-1m").is_err());
        assert!(parse_budget("m").is_err());
    }
}
