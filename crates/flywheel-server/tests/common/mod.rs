//! Shared test helpers: a tiny model trained in-process, a server on a loopback port and a
//! small HTTP client.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use axum::body::Bytes;
use flywheel_data::Record;
use flywheel_model::{train, Artifact, ModelSpec, TrainConfig};
use flywheel_server::{ModelSource, ServerConfig};
use http_body_util::{BodyExt, Full};
use hyper::{HeaderMap, Method, Request, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The admin token the tests use.
pub const TOKEN: &str = "test-admin-token-0123456789";

/// Synthetic 3-class rows: the label word decides the class.
fn records(n: usize, seed: u64) -> Vec<Record> {
    let mut x = seed | 1;
    let mut next = move |m: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % m
    };
    let names = ["neg", "neu", "pos"];
    let cues = ["awful", "okay", "great"];
    (0..n)
        .map(|i| {
            let c = i % 3;
            let mut words: Vec<String> = (0..6).map(|_| format!("w{}", next(40))).collect();
            words.push(cues[c].to_string());
            Record {
                text: words.join(" "),
                labels: vec![names[c].to_string()],
                line: i as u64 + 2,
            }
        })
        .collect()
}

/// Trains a tiny model with `seed` and writes it to `path`.
pub fn train_model(seed: u64, path: &Path) -> Artifact {
    let mut spec = ModelSpec::default();
    spec.tokenizer.num_words = Some(50);
    spec.max_len = 20;
    spec.embed_dim = 8;
    spec.hidden = 8;
    spec.dropout = 0.0;
    spec.recurrent_dropout = 0.0;
    let cfg = TrainConfig {
        epochs: 2,
        seed,
        ..TrainConfig::default()
    };
    let outcome = train(
        &records(300, seed),
        "mem",
        None,
        "|",
        &spec,
        &cfg,
        &mut |_| {},
    )
    .expect("training the test model");
    let artifact = Artifact::from_training(outcome, cfg, "synthetic.csv", "00");
    artifact.save(path).expect("saving the test model");
    artifact
}

/// Two model files with different weights (trained once per test binary).
pub fn model_files() -> (&'static Path, &'static Path) {
    static FILES: OnceLock<(tempfile::TempDir, PathBuf, PathBuf)> = OnceLock::new();
    let (_, a, b) = FILES.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let a = dir.path().join("a.fw");
        let b = dir.path().join("b.fw");
        train_model(1, &a);
        train_model(2, &b);
        (dir, a, b)
    });
    (a, b)
}

/// A copy of model file `a` in a fresh folder (for tests that overwrite it).
pub fn private_model_copy() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("m.fw");
    std::fs::copy(model_files().0, &path).expect("copying the model");
    (dir, path)
}

/// A config serving model file `path` as `tiny`.
pub fn config(path: &Path) -> ServerConfig {
    ServerConfig {
        models: vec![ModelSource {
            name: "tiny".into(),
            path: path.to_path_buf(),
        }],
        threads: 2,
        admin_token: Some(TOKEN.to_string()),
        ..ServerConfig::default()
    }
}

/// A running server.
pub struct TestServer {
    pub addr: SocketAddr,
    pub shutdown: Option<oneshot::Sender<()>>,
    pub task: JoinHandle<Result<(), flywheel_server::ServerError>>,
    pub client: Client<HttpConnector, Full<Bytes>>,
}

/// Starts a server on 127.0.0.1 with an OS-chosen port.
pub async fn start(config: ServerConfig) -> TestServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = oneshot::channel::<()>();
    let server = flywheel_server::Server::load(config)
        .await
        .expect("loading the server");
    let task = tokio::spawn(server.serve(listener, async {
        let _ = rx.await;
    }));
    TestServer {
        addr,
        shutdown: Some(tx),
        task,
        client: Client::builder(TokioExecutor::new()).build_http(),
    }
}

/// A response, read whole.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    /// `error.type` of an error body, after checking the error shape.
    pub fn error_type(&self) -> String {
        let v = self.json();
        let e = &v["error"];
        assert!(e["message"].is_string(), "no message in {v}");
        assert!(
            e.as_object().is_some_and(|o| o.contains_key("param")),
            "no param in {v}"
        );
        e["type"].as_str().unwrap_or_default().to_string()
    }
}

impl TestServer {
    /// Sends a request.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Resp {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.addr));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(body.into())).expect("request");
        let res = self.client.request(req).await.expect("response");
        let status = res.status();
        let headers = res.headers().clone();
        let body = res.into_body().collect().await.expect("body").to_bytes();
        Resp {
            status,
            headers,
            body,
        }
    }

    /// GET `path`.
    pub async fn get(&self, path: &str) -> Resp {
        self.send(Method::GET, path, &[], Bytes::new()).await
    }

    /// POST JSON to `path`.
    pub async fn post_json(&self, path: &str, body: &Value) -> Resp {
        self.send(
            Method::POST,
            path,
            &[("content-type", "application/json")],
            body.to_string(),
        )
        .await
    }

    /// POST raw bytes as JSON to `/v1/classify`.
    pub async fn classify_raw(&self, body: impl Into<Bytes>) -> Resp {
        self.send(
            Method::POST,
            "/v1/classify",
            &[("content-type", "application/json")],
            body,
        )
        .await
    }

    /// Triggers shutdown and waits for the server to stop.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.task.await.expect("join").expect("server result");
    }
}

/// Opens a raw connection and sends the head of a classification request whose body is
/// `body`, writing only its first `sent` bytes; returns the stream to finish later.
pub async fn start_slow_request(addr: SocketAddr, body: &[u8], sent: usize) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST /v1/classify HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.expect("write head");
    s.write_all(&body[..sent]).await.expect("write part");
    s.flush().await.expect("flush");
    s
}

/// Writes the rest of the body and reads the response's status line and body.
pub async fn finish_slow_request(mut s: TcpStream, body: &[u8], sent: usize) -> (u16, String) {
    s.write_all(&body[sent..]).await.expect("write rest");
    read_response(&mut s).await
}

/// Reads one HTTP/1.1 response with a content-length (status, body).
pub async fn read_response(s: &mut TcpStream) -> (u16, String) {
    read_half_response(s).await
}

/// Reads one HTTP/1.1 response with a content-length from any reader (status, body).
pub async fn read_half_response<R: tokio::io::AsyncRead + Unpin>(s: &mut R) -> (u16, String) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).await.expect("read");
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let len = text[..end]
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())
                        .flatten()
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                let status = text[9..12].parse().expect("status");
                return (status, text[end + 4..end + 4 + len].to_string());
            }
        }
    }
    panic!(
        "connection closed before a full response: {:?}",
        String::from_utf8_lossy(&buf)
    );
}

/// `n` short texts with a sentiment cue each, for requests.
pub fn texts(n: usize) -> Vec<String> {
    let cues = ["awful", "okay", "great"];
    (0..n)
        .map(|i| format!("w{} w{} {}", i % 40, (i * 7) % 40, cues[i % 3]))
        .collect()
}

/// The value of metric `name` in a Prometheus text page.
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

/// Waits (at most a minute) until `n` requests hold a concurrency slot.
pub async fn wait_for_in_flight(s: &TestServer, n: f64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let metrics = String::from_utf8(s.get("/metrics").await.body.to_vec()).unwrap();
        if metric(&metrics, "flywheel_in_flight_requests") == n {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never {n} requests in flight: {metrics}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}
