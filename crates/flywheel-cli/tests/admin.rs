//! End-to-end tests of the store commands (`models`, `tenants`, `plans`, `keys`, `usage`) of the
//! `flywheel` binary against a temporary SQLite database.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Db {
    dir: tempfile::TempDir,
    url: String,
}

impl Db {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        Db { dir, url }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_flywheel"))
            .args(args)
            .arg("--database-url")
            .arg(&self.url)
            .env_remove("DATABASE_URL")
            .current_dir(self.dir.path())
            .output()
            .expect("flywheel runs")
    }

    /// Runs a command that must succeed; returns (stdout, stderr).
    fn ok(&self, args: &[&str]) -> (String, String) {
        let out = self.run(args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "flywheel {args:?} failed:\n{stderr}");
        (String::from_utf8(out.stdout).unwrap(), stderr)
    }

    fn stdout(&self, args: &[&str]) -> String {
        self.ok(args).0
    }

    /// Runs a command that must fail cleanly; returns its stderr.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "flywheel {args:?} should fail");
        assert!(
            !err.contains("panicked"),
            "flywheel {args:?} panicked:\n{err}"
        );
        err
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Trains a tiny model with the binary itself.
fn train(dir: &Path, out: &str, seed: &str) -> String {
    let mut csv = String::from("text,label\n");
    let pos = ["good film", "great plot", "lovely actors", "happy end"];
    let neg = ["bad film", "awful plot", "poor actors", "sad end"];
    for i in 0..24 {
        csv.push_str(&format!("{},pos\n{},neg\n", pos[i % 4], neg[i % 4]));
    }
    let data = dir.join("data.csv");
    std::fs::write(&data, csv).unwrap();
    let model = dir.join(out);
    let status = Command::new(env!("CARGO_BIN_EXE_flywheel"))
        .args([
            "train",
            data.to_str().unwrap(),
            "-o",
            model.to_str().unwrap(),
        ])
        .args(["--epochs", "1", "--max-len", "8", "--num-words", "30"])
        .args(["--threads", "1", "--seed", seed])
        .output()
        .expect("flywheel train runs");
    assert!(
        status.status.success(),
        "training failed:\n{}",
        String::from_utf8_lossy(&status.stderr)
    );
    model.display().to_string()
}

/// Data rows of a table (the header dropped).
fn rows(table: &str) -> Vec<Vec<String>> {
    table
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

#[test]
fn model_registry_push_list_promote_rollback() {
    let db = Db::new();
    let m1 = train(db.dir.path(), "m1.fw", "1");
    let m2 = train(db.dir.path(), "m2.fw", "2");

    let out = db.stdout(&["models", "push", &m1, "--name", "tweets"]);
    assert!(out.contains("tweets version 1"), "{out}");
    let out = db.stdout(&["models", "push", &m2, "--name", "tweets"]);
    assert!(out.contains("tweets version 2"), "{out}");

    let table = db.stdout(&["models", "list"]);
    assert!(table.starts_with("NAME"), "{table}");
    let r = rows(&table);
    assert_eq!(r.len(), 2, "{table}");
    assert_eq!((r[0][0].as_str(), r[0][1].as_str()), ("tweets", "1"));
    assert_eq!((r[1][0].as_str(), r[1][1].as_str()), ("tweets", "2"));
    assert!(!table.contains("champion"), "{table}");

    db.ok(&["models", "promote", "tweets", "1"]);
    db.ok(&["models", "promote", "tweets", "2"]);
    db.ok(&["models", "promote", "tweets", "1", "--alias", "challenger"]);
    let table = db.stdout(&["models", "list", "--name", "tweets"]);
    let r = rows(&table);
    assert_eq!(r[0].last().unwrap(), "challenger", "{table}");
    assert_eq!(r[1].last().unwrap(), "champion", "{table}");

    let out = db.stdout(&["models", "rollback", "tweets"]);
    assert!(out.contains("to version 1"), "{out}");
    let table = db.stdout(&["models", "list", "--name", "tweets"]);
    let r = rows(&table);
    assert_eq!(r[0].last().unwrap(), "champion,challenger", "{table}");
    assert_eq!(r[1].len(), 6, "version 2 has no alias any more: {table}");

    // Access: grant to a tenant, make public.
    db.ok(&["tenants", "create", "acme"]);
    db.ok(&["models", "grant", "tweets", "--tenant", "acme"]);
    db.ok(&["models", "public", "tweets"]);
    let table = db.stdout(&["models", "list"]);
    assert!(rows(&table)[0].contains(&"yes".to_string()), "{table}");

    // Bad inputs fail cleanly.
    let err = db.fails(&["models", "promote", "tweets", "9"]);
    assert!(err.contains("not found"), "{err}");
    let err = db.fails(&["models", "promote", "nope", "1"]);
    assert!(err.contains("not found"), "{err}");
    let err = db.fails(&["models", "promote", "tweets", "1", "--alias", "king"]);
    assert!(err.contains("king"), "{err}");
    let err = db.fails(&["models", "list", "--name", "nope"]);
    assert!(err.contains("not found"), "{err}");
    let err = db.fails(&["models", "rollback", "nope"]);
    assert!(err.contains("nope"), "{err}");
    let err = db.fails(&["models", "grant", "tweets", "--tenant", "nobody"]);
    assert!(err.contains("not found"), "{err}");
    let err = db.fails(&["models", "grant", "nope", "--tenant", "acme"]);
    assert!(err.contains("not found"), "{err}");
    let err = db.fails(&["models", "public", "nope"]);
    assert!(err.contains("not found"), "{err}");
    let not_a_model = db.path("data.csv").display().to_string();
    let err = db.fails(&["models", "push", &not_a_model, "--name", "tweets"]);
    assert!(err.contains("not a usable flywheel model"), "{err}");
    let err = db.fails(&["models", "push", "missing.fw", "--name", "tweets"]);
    assert!(err.contains("missing.fw"), "{err}");
    let err = db.fails(&["models", "push", &m1, "--name", "bad name!"]);
    assert!(err.contains("invalid"), "{err}");
    // Nothing was pushed by the failures.
    assert_eq!(rows(&db.stdout(&["models", "list"])).len(), 2);
}

#[test]
fn tenants_plans_and_keys() {
    let db = Db::new();
    assert_eq!(db.stdout(&["tenants", "list"]), "");
    db.ok(&["tenants", "create", "acme"]);
    db.ok(&["tenants", "create", "globex"]);
    let err = db.fails(&["tenants", "create", "acme"]);
    assert!(err.contains("already exists"), "{err}");
    let err = db.fails(&["tenants", "create", "no spaces"]);
    assert!(err.contains("invalid"), "{err}");
    let names: Vec<String> = rows(&db.stdout(&["tenants", "list"]))
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    assert_eq!(names, ["acme", "globex"]);

    db.ok(&[
        "plans",
        "create",
        "free",
        "--requests-per-minute",
        "60",
        "--texts-per-month",
        "10000",
    ]);
    let err = db.fails(&[
        "plans",
        "create",
        "free",
        "--requests-per-minute",
        "1",
        "--texts-per-month",
        "1",
    ]);
    assert!(err.contains("already exists"), "{err}");
    db.fails(&[
        "plans",
        "create",
        "neg",
        "--requests-per-minute",
        "-1",
        "--texts-per-month",
        "1",
    ]);
    let plans = rows(&db.stdout(&["plans", "list"]));
    assert_eq!(plans.len(), 1);
    assert_eq!(&plans[0][..3], ["free", "60", "10000"]);

    let (out, err) = db.ok(&["keys", "create", "--tenant", "acme", "--plan", "free"]);
    let key = out.trim().to_string();
    assert!(key.starts_with("fw_") && key.len() > 40, "{out}");
    assert!(err.contains("cannot be shown again"), "{err}");
    let prefix = &key[..11];

    let (listed, listed_err) = db.ok(&["keys", "list", "--tenant", "acme"]);
    assert!(!listed.contains(&key) && !listed_err.contains(&key));
    let r = rows(&listed);
    assert_eq!(r.len(), 1, "{listed}");
    assert_eq!(r[0][0], prefix);
    assert_eq!(r[0][1], "free");
    assert_eq!(r[0].last().unwrap(), "active");
    assert_eq!(db.stdout(&["keys", "list", "--tenant", "globex"]), "");

    let err = db.fails(&["keys", "create", "--tenant", "nobody", "--plan", "free"]);
    assert!(err.contains("tenant") && err.contains("not found"), "{err}");
    let err = db.fails(&["keys", "create", "--tenant", "acme", "--plan", "gold"]);
    assert!(err.contains("plan") && err.contains("not found"), "{err}");
    let err = db.fails(&["keys", "list", "--tenant", "nobody"]);
    assert!(err.contains("not found"), "{err}");
    // Plans change in place; a key moves to another plan (by prefix, or the whole key pasted).
    db.ok(&[
        "plans",
        "update",
        "free",
        "--requests-per-minute",
        "120",
        "--texts-per-month",
        "20000",
    ]);
    let plans = rows(&db.stdout(&["plans", "list"]));
    assert_eq!(&plans[0][..3], ["free", "120", "20000"]);
    let err = db.fails(&[
        "plans",
        "update",
        "gold",
        "--requests-per-minute",
        "1",
        "--texts-per-month",
        "1",
    ]);
    assert!(err.contains("plan") && err.contains("not found"), "{err}");
    // The limits on tenants' own data and work: shown with their defaults, changed in part.
    let out = db.stdout(&["plans", "quotas", "free"]);
    assert!(
        out.contains("20 datasets") && out.contains("1 jobs at once"),
        "{out}"
    );
    let out = db.stdout(&[
        "plans",
        "quotas",
        "free",
        "--max-active-jobs",
        "3",
        "--training-seconds-per-month",
        "600",
    ]);
    assert!(
        out.contains("20 datasets")
            && out.contains("3 jobs at once")
            && out.contains("600 training seconds"),
        "{out}"
    );
    assert!(db
        .stdout(&["plans", "quotas", "free"])
        .contains("3 jobs at once"));
    let err = db.fails(&["plans", "quotas", "gold", "--max-datasets", "1"]);
    assert!(err.contains("plan") && err.contains("not found"), "{err}");
    db.ok(&[
        "plans",
        "create",
        "pro",
        "--requests-per-minute",
        "600",
        "--texts-per-month",
        "1000000",
    ]);
    let (out, err) = db.ok(&[
        "keys", "set-plan", "--tenant", "acme", &key, "--plan", "pro",
    ]);
    assert!(out.contains(prefix) && out.contains("pro"), "{out}");
    assert!(
        !out.contains(&key) && !err.contains(&key),
        "the secret is never echoed"
    );
    assert_eq!(
        rows(&db.stdout(&["keys", "list", "--tenant", "acme"]))[0][1],
        "pro"
    );
    let err = db.fails(&[
        "keys", "set-plan", "--tenant", "acme", prefix, "--plan", "gold",
    ]);
    assert!(err.contains("plan") && err.contains("not found"), "{err}");
    let err = db.fails(&[
        "keys", "set-plan", "--tenant", "globex", prefix, "--plan", "free",
    ]);
    assert!(err.contains("not found"), "{err}");
    db.ok(&[
        "keys", "set-plan", "--tenant", "acme", prefix, "--plan", "free",
    ]);

    // Another tenant cannot revoke acme's key.
    let err = db.fails(&["keys", "revoke", "--tenant", "globex", prefix]);
    assert!(err.contains("not found"), "{err}");

    let (out, err) = db.ok(&["keys", "revoke", "--tenant", "acme", prefix]);
    assert!(out.contains(prefix), "{out}");
    assert!(!out.contains(&key) && !err.contains(&key));
    let listed = db.stdout(&["keys", "list", "--tenant", "acme"]);
    assert!(listed.contains("revoked"), "{listed}");
    assert!(!listed.contains(&key));
    let err = db.fails(&["keys", "revoke", "--tenant", "acme", prefix]);
    assert!(err.contains("not found"), "{err}");
    let err = db.fails(&[
        "keys", "set-plan", "--tenant", "acme", prefix, "--plan", "pro",
    ]);
    assert!(
        err.contains("not found"),
        "a revoked key keeps its plan: {err}"
    );
}

#[test]
fn usage_report_formats_and_dates() {
    let db = Db::new();
    let csv = db.stdout(&["usage", "report", "--format", "csv"]);
    assert_eq!(
        csv.trim(),
        "tenant,key_prefix,model,day,requests,texts,characters,training_seconds"
    );
    let json = db.stdout(&["usage", "report", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v, serde_json::json!([]));

    // A tenant name may start with '-' and a usage event's model is stored as given: in the CSV
    // such cells are defused for spreadsheets, in JSON they are kept as they are.
    runtime().block_on(async {
        let store = flywheel_store::Store::open(&db.url).await.unwrap();
        let event = flywheel_store::UsageEvent {
            id: "r1".into(),
            tenant: "-acme".into(),
            key_prefix: "fw_abcdefgh".into(),
            model: "=m,1".into(),
            version: 1,
            texts: 2,
            characters: 30,
            at: 1_769_817_600, // 2026-01-31T00:00:00Z
            request_sha256: String::new(),
            training_seconds: 0,
        };
        assert!(store.record_usage(&event).await.unwrap());
        store.close().await;
    });
    let csv = db.stdout(&["usage", "report", "--format", "csv"]);
    assert_eq!(
        csv,
        "tenant,key_prefix,model,day,requests,texts,characters,training_seconds\n\
         '-acme,fw_abcdefgh,\"'=m,1\",2026-01-31,1,2,30,0\n"
    );
    let json = db.stdout(&["usage", "report", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        v,
        serde_json::json!([{
            "tenant": "-acme",
            "key_prefix": "fw_abcdefgh",
            "model": "=m,1",
            "day": "2026-01-31",
            "requests": 1,
            "texts": 2,
            "characters": 30,
            "training_seconds": 0,
        }])
    );
    let table = db.stdout(&[
        "usage",
        "report",
        "--tenant",
        "acme",
        "--from",
        "2026-01-01",
        "--to",
        "2026-01-31",
    ]);
    assert!(table.starts_with("TENANT"), "{table}");

    for bad in ["2026-02-30", "2026-13-01", "01/02/2026", "yesterday"] {
        let err = db.fails(&["usage", "report", "--from", bad]);
        assert!(err.contains("invalid date"), "{bad}: {err}");
    }
    let err = db.fails(&[
        "usage",
        "report",
        "--from",
        "2026-02-01",
        "--to",
        "2026-01-01",
    ]);
    assert!(err.contains("after"), "{err}");
    db.fails(&["usage", "report", "--format", "xml"]);
}

#[test]
fn database_url_from_the_environment_and_bad_urls() {
    let db = Db::new();
    let out = Command::new(env!("CARGO_BIN_EXE_flywheel"))
        .args(["tenants", "create", "envco"])
        .env("DATABASE_URL", &db.url)
        .current_dir(db.dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(db.stdout(&["tenants", "list"]).contains("envco"));
    let out = Command::new(env!("CARGO_BIN_EXE_flywheel"))
        .args(["tenants", "list", "--database-url", "mysql://x"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("unsupported database URL"),
        "{err}"
    );
}
