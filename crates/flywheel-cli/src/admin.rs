//! Administration of the store (`flywheel-store`): the model registry, tenants, plans, API keys
//! and usage reports. Each command opens the database, does one thing and prints the result.

use std::future::Future;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use flywheel_model::Artifact;
use flywheel_store::{
    format_time, Alias, DataRow, Store, UsageFilter, UsageRow, KEY_PREFIX_LEN, KEY_SCHEME,
};
use sha2::{Digest, Sha256};

use crate::args::{RedactArg, ThreadsArg};
use crate::training::{zero_shot_artifact, ZeroShotArgs};

/// Where the store lives.
#[derive(Args, Debug)]
pub struct Database {
    /// Database URL: sqlite://PATH (created if missing) or postgres://USER:PASS@HOST/DB.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://flywheel.db",
        hide_env_values = true,
        global = true
    )]
    database_url: String,
}

#[derive(Args, Debug)]
pub struct ModelsArgs {
    #[command(flatten)]
    db: Database,
    #[command(subcommand)]
    command: ModelsCommand,
}

#[derive(Subcommand, Debug)]
enum ModelsCommand {
    /// Create NAME from label names alone (no labelled data) and make it the champion: a
    /// zero-shot model that serves at once and keeps every prediction for review; retraining
    /// on the corrections fine-tunes the encoder (SetFit) and the challenger is promoted by
    /// the usual rule.
    Create {
        /// Registry name of the model.
        name: String,
        #[command(flatten)]
        model: ZeroShotArgs,
        /// Labelled data never trained on, frozen now [default: the first held-back
        /// corrections, frozen at the first retrain that has some].
        #[arg(long, value_name = "FILE")]
        holdout: Option<PathBuf>,
    },
    /// Store a model file as the next version of NAME (the file is kept in the database).
    Push {
        /// The model file (made by `flywheel train`).
        model: PathBuf,
        /// Registry name of the model.
        #[arg(long)]
        name: String,
        /// The labelled data the model was trained on, kept with this version: `flywheel
        /// retrain` trains challengers on it plus the feedback.
        #[arg(long, value_name = "FILE")]
        data: Option<PathBuf>,
        /// Labelled data never trained on, frozen at the model's first push: every challenger
        /// is compared with the champion on it.
        #[arg(long, value_name = "FILE")]
        holdout: Option<PathBuf>,
        /// Replace personal data by typed placeholders in the stored rows.
        #[arg(long, value_enum, default_value_t = RedactArg::Pii)]
        redact: RedactArg,
    },
    /// Show a model's alias changes and retrain decisions (numbers and reasons).
    History {
        /// Registry name of the model.
        name: String,
    },
    /// List registered models and their versions.
    List {
        /// Only this model.
        #[arg(long)]
        name: Option<String>,
    },
    /// Point an alias (champion by default) at a version.
    Promote {
        /// Registry name of the model.
        name: String,
        /// The version to promote.
        version: u32,
        /// The alias to point.
        #[arg(long, value_enum, default_value_t = AliasArg::Champion)]
        alias: AliasArg,
    },
    /// Point the champion back at the version it had before its last promotion.
    Rollback {
        /// Registry name of the model.
        name: String,
    },
    /// Let a tenant's keys use a model.
    Grant {
        /// Registry name of the model.
        name: String,
        /// The tenant.
        #[arg(long)]
        tenant: String,
    },
    /// Make a model usable by every tenant (--private undoes it).
    Public {
        /// Registry name of the model.
        name: String,
        /// Make it private again: only granted tenants may use it.
        #[arg(long)]
        private: bool,
    },
}

#[derive(Args, Debug)]
pub struct TenantsArgs {
    #[command(flatten)]
    db: Database,
    #[command(subcommand)]
    command: TenantsCommand,
}

#[derive(Subcommand, Debug)]
enum TenantsCommand {
    /// Create a tenant (a customer account).
    Create {
        /// Tenant name (A-Z a-z 0-9 - _ .).
        name: String,
    },
    /// List tenants.
    List,
}

#[derive(Args, Debug)]
pub struct PlansArgs {
    #[command(flatten)]
    db: Database,
    #[command(subcommand)]
    command: PlansCommand,
}

#[derive(Subcommand, Debug)]
enum PlansCommand {
    /// Create a plan: the limits of every key on it.
    Create {
        /// Plan name (A-Z a-z 0-9 - _ .).
        name: String,
        #[command(flatten)]
        limits: PlanLimitArgs,
    },
    /// Change a plan's limits, for every key on it (servers apply it within a second).
    Update {
        /// Plan name.
        name: String,
        #[command(flatten)]
        limits: PlanLimitArgs,
    },
    /// List plans.
    List,
    /// Show a plan's limits on tenants' own data and work, and change those given.
    Quotas {
        /// Plan name.
        name: String,
        /// Datasets a tenant may keep.
        #[arg(long)]
        max_datasets: Option<u32>,
        /// Largest upload, in bytes.
        #[arg(long)]
        max_upload_bytes: Option<u64>,
        /// Training and batch jobs queued or running at once.
        #[arg(long)]
        max_active_jobs: Option<u32>,
        /// Seconds of training per calendar month (UTC).
        #[arg(long)]
        training_seconds_per_month: Option<u64>,
    },
}

/// A plan's per-key limits, as `plans create` and `plans update` take them.
#[derive(Args, Debug)]
struct PlanLimitArgs {
    /// Requests per key per minute.
    #[arg(long)]
    requests_per_minute: u32,
    /// Texts per key per calendar month (UTC).
    #[arg(long)]
    texts_per_month: u64,
}

impl PlanLimitArgs {
    /// `(requests per minute, texts per month)` as the store takes them.
    fn values(&self) -> Result<(i64, i64)> {
        let texts = i64::try_from(self.texts_per_month).map_err(|_| {
            anyhow::anyhow!("--texts-per-month {} is too large", self.texts_per_month)
        })?;
        Ok((i64::from(self.requests_per_minute), texts))
    }
}

#[derive(Args, Debug)]
pub struct KeysArgs {
    #[command(flatten)]
    db: Database,
    #[command(subcommand)]
    command: KeysCommand,
}

#[derive(Subcommand, Debug)]
enum KeysCommand {
    /// Create an API key; it is printed once and cannot be shown again.
    Create {
        /// The tenant the key belongs to.
        #[arg(long)]
        tenant: String,
        /// The plan whose limits apply to the key.
        #[arg(long)]
        plan: String,
    },
    /// List a tenant's keys (prefixes only).
    List {
        /// The tenant.
        #[arg(long)]
        tenant: String,
    },
    /// Revoke a key by its prefix (as `keys list` shows it); servers refuse it within a second.
    Revoke {
        /// The tenant.
        #[arg(long)]
        tenant: String,
        /// The key's prefix (fw_ and 8 characters).
        prefix: String,
    },
    /// Move a key to another plan (servers apply it within a second).
    SetPlan {
        /// The tenant.
        #[arg(long)]
        tenant: String,
        /// The key's prefix (fw_ and 8 characters).
        prefix: String,
        /// The new plan.
        #[arg(long)]
        plan: String,
    },
}

#[derive(Args, Debug)]
pub struct UsageArgs {
    #[command(flatten)]
    db: Database,
    #[command(subcommand)]
    command: UsageCommand,
}

#[derive(Subcommand, Debug)]
enum UsageCommand {
    /// Usage summed per tenant, key, model and UTC day.
    Report {
        /// Only this tenant.
        #[arg(long)]
        tenant: Option<String>,
        /// First UTC day included (YYYY-MM-DD).
        #[arg(long)]
        from: Option<String>,
        /// Last UTC day included (YYYY-MM-DD).
        #[arg(long)]
        to: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
        format: ReportFormat,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum ReportFormat {
    Table,
    Csv,
    Json,
}

/// Opens the store and runs `f` on a current-thread runtime.
pub(crate) fn with_store<T, F, Fut>(db: &Database, f: F) -> Result<T>
where
    F: FnOnce(Store) -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let store = Store::open(&db.database_url)
            .await
            .with_context(|| format!("opening the database {}", redact(&db.database_url)))?;
        let result = f(store.clone()).await;
        store.close().await;
        result
    })
}

/// The URL without its password, for messages.
/// The URL with its password masked, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &userinfo[..colon],
                    &url[at..]
                ),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Prints rows as left-aligned columns under a header.
fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}  "));
            }
        }
        println!("{}", s.trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

pub fn models(args: ModelsArgs) -> Result<()> {
    match args.command {
        ModelsCommand::Push {
            model,
            name,
            data,
            holdout,
            redact,
        } => push(
            &args.db,
            &model,
            &name,
            data.as_deref(),
            holdout.as_deref(),
            redact == RedactArg::Pii,
        ),
        ModelsCommand::History { name } => {
            with_store(
                &args.db,
                |store| async move { history(&store, &name).await },
            )
        }
        ModelsCommand::List { name } => with_store(&args.db, |store| async move {
            let models = store.list_models().await?;
            let models: Vec<_> = models
                .into_iter()
                .filter(|m| name.as_deref().is_none_or(|n| m.name == n))
                .collect();
            if let Some(n) = &name {
                if models.is_empty() {
                    bail!("model {n:?} not found");
                }
            }
            let mut rows = Vec::new();
            for m in &models {
                for v in store.list_versions(&m.name).await? {
                    let mut aliases = Vec::new();
                    if m.champion == Some(v.version) {
                        aliases.push("champion");
                    }
                    if m.challenger == Some(v.version) {
                        aliases.push("challenger");
                    }
                    rows.push(vec![
                        m.name.clone(),
                        v.version.to_string(),
                        v.sha256.chars().take(12).collect(),
                        format_time(v.created_at),
                        if m.public { "yes" } else { "no" }.to_string(),
                        aliases.join(","),
                    ]);
                }
            }
            if rows.is_empty() {
                eprintln!("No models registered yet: flywheel models push MODEL --name NAME");
                return Ok(());
            }
            print_table(
                &[
                    "NAME",
                    "VERSION",
                    "SHA256",
                    "CREATED (UTC)",
                    "PUBLIC",
                    "ALIASES",
                ],
                &rows,
            );
            Ok(())
        }),
        ModelsCommand::Promote {
            name,
            version,
            alias,
        } => with_store(&args.db, |store| async move {
            let alias = Alias::from(alias);
            let previous = store.resolve_alias(&name, alias).await?;
            store.set_alias(&name, alias, i64::from(version)).await?;
            match previous {
                Some(p) => println!("{name}: {alias} is now version {version} (was {p})"),
                None => println!("{name}: {alias} is now version {version}"),
            }
            Ok(())
        }),
        ModelsCommand::Rollback { name } => with_store(&args.db, |store| async move {
            let before = store.resolve_alias(&name, Alias::Champion).await?;
            let now = store.rollback(&name).await?;
            match before {
                Some(b) => {
                    println!("{name}: champion rolled back from version {b} to version {now}")
                }
                None => println!("{name}: champion rolled back to version {now}"),
            }
            Ok(())
        }),
        ModelsCommand::Grant { name, tenant } => with_store(&args.db, |store| async move {
            store.grant_model(&tenant, &name).await?;
            println!("Tenant {tenant} may now use model {name}");
            Ok(())
        }),
        ModelsCommand::Create {
            name,
            model,
            holdout,
        } => create(&args.db, &name, &model, holdout.as_deref()),
        ModelsCommand::Public { name, private } => with_store(&args.db, |store| async move {
            store.set_model_public(&name, !private).await?;
            if private {
                println!("Model {name} is private: only tenants granted it may use it");
            } else {
                println!("Model {name} is public: every tenant may use it");
            }
            Ok(())
        }),
    }
}

/// `flywheel models create`: a zero-shot model pushed with empty base data and made the
/// champion.
fn create(db: &Database, name: &str, model: &ZeroShotArgs, holdout: Option<&Path>) -> Result<()> {
    let artifact = zero_shot_artifact(model)?;
    let frozen = match holdout {
        Some(path) => Some(data_rows(path, true)?.1),
        None => None,
    };
    let bytes = artifact.to_bytes()?;
    let sha256 = hex::encode(Sha256::digest(&bytes));
    let label_list = artifact.pipeline.labels.labels.join(", ");
    let name = name.to_string();
    with_store(db, |store| async move {
        let version = store
            .push_model_with_data(
                &name,
                &bytes,
                &sha256,
                now_unix(),
                Some(&[]),
                frozen.as_deref(),
            )
            .await?;
        store.set_alias(&name, Alias::Champion, version).await?;
        println!(
            "Created {name} version {version}: zero-shot over {label_list}; it is the champion"
        );
        eprintln!(
            "Every prediction it serves is kept for review; label them (dashboard or \
             POST /v1/feedback), then `flywheel retrain {name}` fine-tunes the encoder on them"
        );
        Ok(())
    })
}

/// Reads a labelled file into storable rows (redacted when asked).
fn data_rows(path: &Path, redact_pii: bool) -> Result<(Vec<flywheel_data::Record>, Vec<DataRow>)> {
    let data = flywheel_data::read_labelled(path, &flywheel_data::ReadOptions::default())
        .with_context(|| format!("reading {}", path.display()))?;
    let rows = data
        .records
        .iter()
        .map(|r| DataRow {
            text: if redact_pii {
                flywheel_text::redact::redact(&r.text).0
            } else {
                r.text.clone()
            },
            labels: r.labels.clone(),
        })
        .collect();
    Ok((data.records, rows))
}

fn push(
    db: &Database,
    model: &Path,
    name: &str,
    data: Option<&Path>,
    holdout: Option<&Path>,
    redact_pii: bool,
) -> Result<()> {
    let bytes = std::fs::read(model).with_context(|| format!("reading {}", model.display()))?;
    let artifact = Artifact::load(model)
        .with_context(|| format!("{} is not a usable flywheel model", model.display()))?;
    let base = match data {
        Some(path) => {
            let (records, rows) = data_rows(path, redact_pii)?;
            // The base data must be data the model can learn from again: known labels.
            artifact
                .pipeline
                .labels
                .encode(&records, &path.display().to_string())?;
            Some(rows)
        }
        None => None,
    };
    let frozen = match holdout {
        Some(path) => {
            let (records, rows) = data_rows(path, redact_pii)?;
            let report =
                flywheel_model::evaluate(&artifact.pipeline, &records, &path.display().to_string())
                    .with_context(|| {
                        format!("evaluating the model on the holdout {}", path.display())
                    })?;
            let scores = flywheel_model::Scores::of(&report);
            eprintln!(
                "Holdout {}: {} rows; this model scores {:.4} on it",
                path.display(),
                rows.len(),
                scores.headline
            );
            Some(rows)
        }
        None => None,
    };
    let sha256 = hex::encode(Sha256::digest(&bytes));
    let size = bytes.len();
    let name = name.to_string();
    with_store(db, |store| async move {
        let version = store
            .push_model_with_data(
                &name,
                &bytes,
                &sha256,
                now_unix(),
                base.as_deref(),
                frozen.as_deref(),
            )
            .await?;
        println!(
            "Pushed {name} version {version} ({size} bytes, sha256 {})",
            &sha256[..12]
        );
        if let Some(rows) = &base {
            println!("  base data: {} rows kept for retraining", rows.len());
        }
        eprintln!("Make it the champion with: flywheel models promote {name} {version}");
        Ok(())
    })
}

/// Alias changes and retrain decisions, oldest first.
async fn history(store: &Store, name: &str) -> Result<()> {
    let aliases = store.alias_history(name).await?;
    let decisions = store.decisions(name).await?;
    if aliases.is_empty() && decisions.is_empty() {
        bail!("model {name:?} has no history (unknown model, or nothing promoted yet)");
    }
    let mut rows: Vec<(i64, u8, Vec<String>)> = Vec::new();
    for a in &aliases {
        let what = match (a.action.as_str(), a.reverted) {
            ("rollback", _) => format!("rollback: champion back to version {}", a.version),
            (_, true) => format!("{} → version {} (later rolled back)", a.alias, a.version),
            _ => format!("{} → version {}", a.alias, a.version),
        };
        rows.push((a.at, 0, vec![format_time(a.at), "alias".into(), what]));
    }
    for d in &decisions {
        let challenger = d
            .challenger_version
            .map(|v| format!("v{v}"))
            .unwrap_or_else(|| "none".into());
        let what = format!(
            "retrain ({}, seed {}, {} feedback rows): champion v{} vs challenger {challenger}: {}",
            d.cause, d.seed, d.feedback_rows, d.champion_version, d.reason
        );
        rows.push((d.at, 1, vec![format_time(d.at), "decision".into(), what]));
    }
    // Decisions before the alias changes they caused (same second).
    rows.sort_by_key(|r| (r.0, std::cmp::Reverse(r.1)));
    let rows: Vec<Vec<String>> = rows.into_iter().map(|r| r.2).collect();
    print_table(&["WHEN (UTC)", "KIND", "WHAT"], &rows);
    Ok(())
}

/// `flywheel retrain NAME`.
#[derive(Args, Debug)]
pub struct RetrainArgs {
    #[command(flatten)]
    db: Database,
    /// Registry name of the model.
    name: String,
    /// Promote only if macro-F1 (regression: R²) on the frozen holdout improves by at least
    /// this many points.
    #[arg(long, default_value_t = 0.5)]
    min_gain: f64,
    /// ...and no class's F1 falls by more than this many points.
    #[arg(long, default_value_t = 2.0)]
    max_class_drop: f64,
    /// Training seed (default: the champion's seed plus the highest feedback id; recorded).
    #[arg(long)]
    seed: Option<u64>,
    #[command(flatten)]
    pub threads: ThreadsArg,
}

/// A registry alias.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum AliasArg {
    /// The version that is served.
    Champion,
    /// The version being evaluated against the champion.
    Challenger,
}

impl From<AliasArg> for Alias {
    fn from(a: AliasArg) -> Alias {
        match a {
            AliasArg::Champion => Alias::Champion,
            AliasArg::Challenger => Alias::Challenger,
        }
    }
}

/// Retrains a registered model on its base data plus feedback and promotes the challenger only
/// if it beats the champion on the frozen holdout.
pub fn retrain(args: RetrainArgs, threads: usize) -> Result<()> {
    let opts = flywheel_server::retrain::RetrainOptions {
        policy: flywheel_model::PromotionPolicy {
            min_gain: args.min_gain,
            max_class_drop: args.max_class_drop,
        },
        seed: args.seed,
        threads,
        cause: "manual".into(),
    };
    let name = args.name.clone();
    with_store(&args.db, |store| async move {
        let d = flywheel_server::retrain::retrain(&store, &name, &opts).await?;
        match d.challenger_version {
            Some(v) => println!(
                "{name}: challenger version {v} trained on {} feedback rows (seed {}) — {}",
                d.feedback_rows, d.seed, d.reason
            ),
            None => println!("{name}: {}", d.reason),
        }
        if d.promoted {
            println!(
                "{name}: champion is now version {}",
                d.challenger_version.unwrap_or_default()
            );
        }
        Ok(())
    })
}

pub fn tenants(args: TenantsArgs) -> Result<()> {
    match args.command {
        TenantsCommand::Create { name } => with_store(&args.db, |store| async move {
            let t = store.create_tenant(&name).await?;
            println!("Created tenant {}", t.name);
            Ok(())
        }),
        TenantsCommand::List => with_store(&args.db, |store| async move {
            let rows: Vec<Vec<String>> = store
                .list_tenants()
                .await?
                .into_iter()
                .map(|t| vec![t.name, format_time(t.created_at)])
                .collect();
            if rows.is_empty() {
                eprintln!("No tenants yet: flywheel tenants create NAME");
                return Ok(());
            }
            print_table(&["NAME", "CREATED (UTC)"], &rows);
            Ok(())
        }),
    }
}

pub fn plans(args: PlansArgs) -> Result<()> {
    match args.command {
        PlansCommand::Create { name, limits } => with_store(&args.db, |store| async move {
            let (requests, texts) = limits.values()?;
            let p = store.create_plan(&name, requests, texts).await?;
            println!(
                "Created plan {}: {} requests/minute, {} texts/month per key",
                p.name, p.requests_per_minute, p.texts_per_month
            );
            Ok(())
        }),
        PlansCommand::Update { name, limits } => with_store(&args.db, |store| async move {
            let (requests, texts) = limits.values()?;
            let p = store.update_plan(&name, requests, texts).await?;
            println!(
                "Plan {}: {} requests/minute, {} texts/month per key",
                p.name, p.requests_per_minute, p.texts_per_month
            );
            Ok(())
        }),
        PlansCommand::Quotas {
            name,
            max_datasets,
            max_upload_bytes,
            max_active_jobs,
            training_seconds_per_month,
        } => with_store(&args.db, |store| async move {
            let mut q = store.plan_quotas(&name).await?;
            let big = |flag: &str, v: u64| {
                i64::try_from(v).map_err(|_| anyhow::anyhow!("{flag} {v} is too large"))
            };
            let changed = max_datasets.is_some()
                || max_upload_bytes.is_some()
                || max_active_jobs.is_some()
                || training_seconds_per_month.is_some();
            if let Some(v) = max_datasets {
                q.max_datasets = i64::from(v);
            }
            if let Some(v) = max_upload_bytes {
                q.max_upload_bytes = big("--max-upload-bytes", v)?;
            }
            if let Some(v) = max_active_jobs {
                q.max_active_jobs = i64::from(v);
            }
            if let Some(v) = training_seconds_per_month {
                q.training_seconds_per_month = big("--training-seconds-per-month", v)?;
            }
            if changed {
                store.set_plan_quotas(&name, &q).await?;
            }
            println!(
                "Plan {name}: {} datasets, {} bytes per upload, {} jobs at once, {} training seconds/month per tenant",
                q.max_datasets, q.max_upload_bytes, q.max_active_jobs, q.training_seconds_per_month
            );
            Ok(())
        }),
        PlansCommand::List => with_store(&args.db, |store| async move {
            let rows: Vec<Vec<String>> = store
                .list_plans()
                .await?
                .into_iter()
                .map(|p| {
                    vec![
                        p.name,
                        p.requests_per_minute.to_string(),
                        p.texts_per_month.to_string(),
                        format_time(p.created_at),
                    ]
                })
                .collect();
            if rows.is_empty() {
                eprintln!("No plans yet: flywheel plans create NAME --requests-per-minute N --texts-per-month N");
                return Ok(());
            }
            print_table(
                &["NAME", "REQUESTS/MINUTE", "TEXTS/MONTH", "CREATED (UTC)"],
                &rows,
            );
            Ok(())
        }),
    }
}

pub fn keys(args: KeysArgs) -> Result<()> {
    match args.command {
        KeysCommand::Create { tenant, plan } => with_store(&args.db, |store| async move {
            let k = store.create_key(&tenant, &plan).await?;
            // The key alone on stdout (for scripts); everything else on stderr.
            println!("{}", k.key);
            eprintln!(
                "Created key {} for tenant {} on plan {}.\n\
                 WARNING: this is the only time the key is shown; it cannot be shown again \
                 (only its SHA-256 is stored). Keep it somewhere safe now.",
                k.prefix, k.tenant, k.plan
            );
            Ok(())
        }),
        KeysCommand::List { tenant } => with_store(&args.db, |store| async move {
            let rows: Vec<Vec<String>> = store
                .list_keys(&tenant)
                .await?
                .into_iter()
                .map(|k| {
                    vec![
                        k.prefix,
                        k.plan,
                        format_time(k.created_at),
                        match k.revoked_at {
                            Some(t) => format!("revoked {}", format_time(t)),
                            None => "active".to_string(),
                        },
                    ]
                })
                .collect();
            if rows.is_empty() {
                eprintln!("Tenant {tenant} has no keys: flywheel keys create --tenant {tenant} --plan PLAN");
                return Ok(());
            }
            print_table(&["PREFIX", "PLAN", "CREATED (UTC)", "STATUS"], &rows);
            Ok(())
        }),
        KeysCommand::Revoke { tenant, prefix } => with_store(&args.db, |store| async move {
            let prefix = key_prefix(prefix);
            store.revoke_key(&tenant, &prefix).await?;
            println!("Revoked key {prefix} of tenant {tenant}");
            Ok(())
        }),
        KeysCommand::SetPlan {
            tenant,
            prefix,
            plan,
        } => with_store(&args.db, |store| async move {
            let prefix = key_prefix(prefix);
            store.set_key_plan(&tenant, &prefix, &plan).await?;
            println!("Key {prefix} of tenant {tenant} is now on plan {plan}");
            Ok(())
        }),
    }
}

/// Someone may paste the whole key: only its prefix is needed (and never echoed).
fn key_prefix(given: String) -> String {
    if given.starts_with(KEY_SCHEME) {
        given.chars().take(KEY_PREFIX_LEN).collect()
    } else {
        given
    }
}

pub fn usage(args: UsageArgs) -> Result<()> {
    match args.command {
        UsageCommand::Report {
            tenant,
            from,
            to,
            format,
        } => {
            let (from, to) = flywheel_store::day_range(from.as_deref(), to.as_deref())?;
            let filter = UsageFilter { tenant, from, to };
            with_store(&args.db, |store| async move {
                let rows = store.usage_report(&filter).await?;
                print_usage(&rows, format)
            })
        }
    }
}

fn print_usage(rows: &[UsageRow], format: ReportFormat) -> Result<()> {
    match format {
        ReportFormat::Csv => {
            let mut out = std::io::stdout().lock();
            flywheel_store::write_csv(
                &mut out,
                &UsageRow::COLUMNS,
                rows.iter().map(UsageRow::cells),
            )
            .context("writing the CSV report")?;
        }
        ReportFormat::Json => println!("{}", serde_json::to_string_pretty(rows)?),
        ReportFormat::Table => {
            let header: Vec<String> = UsageRow::COLUMNS.iter().map(|c| c.to_uppercase()).collect();
            let header: Vec<&str> = header.iter().map(String::as_str).collect();
            let mut cells: Vec<Vec<String>> = rows.iter().map(|r| r.cells().to_vec()).collect();
            if !rows.is_empty() {
                let sum = |f: fn(&UsageRow) -> i64| rows.iter().map(f).sum::<i64>().to_string();
                cells.push(vec![
                    "TOTAL".into(),
                    String::new(),
                    String::new(),
                    String::new(),
                    sum(|r| r.requests),
                    sum(|r| r.texts),
                    sum(|r| r.characters),
                    sum(|r| r.training_seconds),
                ]);
            }
            print_table(&header, &cells);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact("sqlite://flywheel.db"), "sqlite://flywheel.db");
    }
}
