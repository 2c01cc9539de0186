//! Helpers shared by the end-to-end tests that run `flywheel` processes on a store.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use flywheel_store::testing::ScratchDatabase;

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Runs `test` with a SQLite URL, then with a fresh PostgreSQL database when configured.
pub fn on_both(test: fn(&str, &Path)) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("flywheel.db").display());
    test(&url, dir.path());
    let rt = runtime();
    let Some(db) = rt.block_on(ScratchDatabase::create()).unwrap() else {
        eprintln!("FLYWHEEL_TEST_POSTGRES_URL is not set: skipping the PostgreSQL run");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let outcome = std::panic::catch_unwind(|| test(&db.url, dir.path()));
    rt.block_on(db.drop_now()).unwrap();
    if let Err(e) = outcome {
        std::panic::resume_unwind(e);
    }
}

/// Runs the binary; it must succeed. Returns stdout.
pub fn flywheel(url: &str, dir: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_flywheel"))
        .args(args)
        .env("DATABASE_URL", url)
        .current_dir(dir)
        .output()
        .expect("flywheel runs");
    assert!(
        out.status.success(),
        "flywheel {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `flywheel serve` process on the store.
pub struct Replica {
    pub child: Child,
    pub port: u16,
}

impl Replica {
    pub fn start(url: &str, dir: &Path, port: u16) -> Replica {
        Replica::start_with(url, dir, port, &[])
    }

    /// A replica with more `flywheel serve` arguments.
    pub fn start_with(url: &str, dir: &Path, port: u16, extra: &[&str]) -> Replica {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(format!("serve-{port}.log")))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_flywheel"))
            .args(["serve", "--database-url", url, "--threads", "1"])
            .args(["--addr", &format!("127.0.0.1:{port}")])
            .args(["--registry-poll-ms", "200"])
            .args(extra)
            .env_remove("DATABASE_URL")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("flywheel serve starts");
        Replica { child, port }
    }

    pub fn wait_ready(&self) {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(60) {
            if matches!(http(self.port, "GET", "/readyz", None, None, ""), Ok(r) if r.status == 200)
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("replica on port {} never became ready", self.port);
    }

    pub fn kill(&mut self) {
        // SIGKILL on Unix: no shutdown code runs.
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request with a JSON body on a fresh connection.
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    key: Option<&str>,
    request_id: Option<&str>,
    body: &str,
) -> std::io::Result<HttpResponse> {
    let auth = key.map(|k| format!("Bearer {k}"));
    let mut headers = vec![("content-type", "application/json")];
    if let Some(a) = &auth {
        headers.push(("authorization", a));
    }
    if let Some(id) = request_id {
        headers.push(("x-request-id", id));
    }
    http_with(port, method, path, &headers, body)
}

/// One HTTP/1.1 request with the given headers on a fresh connection (`host: 127.0.0.1`).
pub fn http_with(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> std::io::Result<HttpResponse> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())?;
    s.write_all(body.as_bytes())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("truncated response"))?;
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("no status line"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Ok(HttpResponse {
        status,
        headers,
        body: body.to_string(),
    })
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Why the browser test cannot run here, if it cannot.
fn browser_missing(script_dir: &Path) -> Option<String> {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !Path::new(&chromium).exists() {
        return Some(format!(
            "no Chromium at {chromium} (apt-get install chromium)"
        ));
    }
    if Command::new("node").arg("--version").output().is_err() {
        return Some("no Node.js".into());
    }
    if !script_dir.join("node_modules/playwright-core").exists() {
        return Some("playwright-core is not installed (npm ci --prefix tests/browser)".into());
    }
    None
}

/// Runs `node SCRIPT` in the browser tests' folder with `env`; it must succeed and print
/// `passed` (its last line of checks). Returns its output.
pub fn run_browser_script(
    script_dir: &Path,
    script: &str,
    env: &[(&str, &str)],
    passed: &str,
) -> String {
    let mut node = Command::new("node");
    node.arg(script_dir.join(script)).current_dir(script_dir);
    for (k, v) in env {
        node.env(k, v);
    }
    let out = node.output().expect("node runs");
    let log = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "the browser walk-through failed:\n{log}"
    );
    assert!(log.contains(passed), "{log}");
    log
}

/// The browser tests' folder, or `None` (with the reason printed) when they cannot run here;
/// with `FLYWHEEL_REQUIRE_BROWSER=1` (as CI sets) that is a failure instead.
pub fn browser_scripts() -> Option<PathBuf> {
    let script_dir = repo_root().join("tests/browser");
    if let Some(why) = browser_missing(&script_dir) {
        assert!(
            std::env::var("FLYWHEEL_REQUIRE_BROWSER").as_deref() != Ok("1"),
            "FLYWHEEL_REQUIRE_BROWSER=1 but the browser test cannot run: {why}"
        );
        eprintln!("skipping the browser test: {why}");
        return None;
    }
    Some(script_dir)
}
