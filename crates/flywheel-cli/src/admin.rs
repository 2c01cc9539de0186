//! Administration of the store (`flywheel-store`): the model registry, tenants, plans, API keys
//! and usage reports. Each command opens the database, does one thing and prints the result.

use std::future::Future;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use flywheel_model::Artifact;
use flywheel_store::{Alias, Store, UsageFilter, UsageRow, KEY_PREFIX_LEN, KEY_SCHEME};
use sha2::{Digest, Sha256};

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
    /// Store a model file as the next version of NAME (the file is kept in the database).
    Push {
        /// The model file (made by `flywheel train`).
        model: PathBuf,
        /// Registry name of the model.
        #[arg(long)]
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
        /// champion (served) or challenger.
        #[arg(long, default_value = "champion", value_parser = ["champion", "challenger"])]
        alias: String,
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
        /// Requests per key per minute.
        #[arg(long)]
        requests_per_minute: u32,
        /// Texts per key per calendar month (UTC).
        #[arg(long)]
        texts_per_month: u64,
    },
    /// List plans.
    List,
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
    /// Revoke a key by its prefix (as `keys list` shows it).
    Revoke {
        /// The tenant.
        #[arg(long)]
        tenant: String,
        /// The key's prefix (fw_ and 8 characters).
        prefix: String,
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
fn with_store<T, F, Fut>(db: &Database, f: F) -> Result<T>
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

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) of Unix seconds.
fn format_time(t: i64) -> String {
    let day = t.div_euclid(86_400);
    let s = t.rem_euclid(86_400);
    format!(
        "{} {:02}:{:02}:{:02}",
        flywheel_store::format_day(day),
        s / 3600,
        s / 60 % 60,
        s % 60
    )
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
        ModelsCommand::Push { model, name } => push(&args.db, &model, &name),
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
            let alias: Alias = alias.parse()?;
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

fn push(db: &Database, model: &Path, name: &str) -> Result<()> {
    let bytes = std::fs::read(model).with_context(|| format!("reading {}", model.display()))?;
    Artifact::load(model)
        .with_context(|| format!("{} is not a usable flywheel model", model.display()))?;
    let sha256 = hex(&Sha256::digest(&bytes));
    let size = bytes.len();
    let name = name.to_string();
    with_store(db, |store| async move {
        let version = store.push_model(&name, &bytes, &sha256, now_unix()).await?;
        println!(
            "Pushed {name} version {version} ({size} bytes, sha256 {})",
            &sha256[..12]
        );
        eprintln!("Make it the champion with: flywheel models promote {name} {version}");
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
        PlansCommand::Create {
            name,
            requests_per_minute,
            texts_per_month,
        } => with_store(&args.db, |store| async move {
            let texts = i64::try_from(texts_per_month)
                .map_err(|_| anyhow::anyhow!("--texts-per-month {texts_per_month} is too large"))?;
            let p = store
                .create_plan(&name, i64::from(requests_per_minute), texts)
                .await?;
            println!(
                "Created plan {}: {} requests/minute, {} texts/month per key",
                p.name, p.requests_per_minute, p.texts_per_month
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
            // Someone may paste the whole key: only its prefix is needed (and never echoed).
            let prefix: String = if prefix.starts_with(KEY_SCHEME) {
                prefix.chars().take(KEY_PREFIX_LEN).collect()
            } else {
                prefix
            };
            store.revoke_key(&tenant, &prefix).await?;
            println!("Revoked key {prefix} of tenant {tenant}");
            Ok(())
        }),
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

const USAGE_COLUMNS: [&str; 7] = [
    "tenant",
    "key_prefix",
    "model",
    "day",
    "requests",
    "texts",
    "characters",
];

fn usage_cells(r: &UsageRow) -> Vec<String> {
    vec![
        r.tenant.clone(),
        r.key_prefix.clone(),
        r.model.clone(),
        r.day.clone(),
        r.requests.to_string(),
        r.texts.to_string(),
        r.characters.to_string(),
    ]
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn print_usage(rows: &[UsageRow], format: ReportFormat) -> Result<()> {
    match format {
        ReportFormat::Csv => {
            println!("{}", USAGE_COLUMNS.join(","));
            for r in rows {
                let cells: Vec<String> = usage_cells(r).iter().map(|c| csv_field(c)).collect();
                println!("{}", cells.join(","));
            }
        }
        ReportFormat::Json => {
            let list: Vec<serde_json::Value> = rows
                .iter()
                .map(|r| {
                    serde_json::json!({
                        "tenant": r.tenant,
                        "key_prefix": r.key_prefix,
                        "model": r.model,
                        "day": r.day,
                        "requests": r.requests,
                        "texts": r.texts,
                        "characters": r.characters,
                    })
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&list)?);
        }
        ReportFormat::Table => {
            let header: Vec<String> = USAGE_COLUMNS.iter().map(|c| c.to_uppercase()).collect();
            let header: Vec<&str> = header.iter().map(String::as_str).collect();
            let mut cells: Vec<Vec<String>> = rows.iter().map(usage_cells).collect();
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
    fn formats_times() {
        assert_eq!(format_time(86_400 + 3661), "1970-01-02 01:01:01");
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact("sqlite://flywheel.db"), "sqlite://flywheel.db");
    }
}
