//! No request can make the server hold unbounded memory: deeply nested JSON is refused without
//! recursing, a huge batch or text is refused before inference, and slow or idle clients can
//! hold at most `max_connections` connections, each for at most `idle_timeout` without progress.

mod common;

use std::time::{Duration, Instant};

use common::*;
use flywheel_server::ServerConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_json_huge_batches_and_huge_texts_are_refused() {
    let (a, _) = model_files();
    let s = start(ServerConfig {
        max_body_bytes: 4_000_000,
        ..config(a)
    })
    .await;
    // 600,000 levels of nesting: serde_json stops at 128 without growing the stack.
    for open in ["[", "{\"a\":"] {
        let body = open.repeat(600_000);
        let r = s.classify_raw(body).await;
        assert_eq!(r.status, 400, "{:?}", r.body);
        assert_eq!(r.error_type(), "invalid_json", "{:?}", r.body);
    }
    let deep_input = format!(
        "{{\"model\":\"tiny\",\"inputs\":[\"x\"],\"top_k\":{}1{}}}",
        "[".repeat(200),
        "]".repeat(200)
    );
    assert_eq!(s.classify_raw(deep_input).await.status, 400);
    // Half a million one-character texts: over --max-inputs, refused before any inference.
    let many = format!(
        "{{\"model\":\"tiny\",\"inputs\":[{}\"x\"]}}",
        "\"x\",".repeat(499_999)
    );
    let r = s.classify_raw(many).await;
    assert_eq!(r.status, 422, "{:?}", r.body);
    assert_eq!(r.error_type(), "too_many_inputs");
    // One text of 3 million characters: over --max-chars.
    let huge = format!(
        "{{\"model\":\"tiny\",\"inputs\":[\"{}\"]}}",
        "a".repeat(3_000_000)
    );
    let r = s.classify_raw(huge).await;
    assert_eq!(r.status, 422, "{:?}", r.body);
    assert_eq!(r.error_type(), "input_too_long");
    // Still serving.
    let ok = s
        .post_json(
            "/v1/classify",
            &serde_json::json!({"model": "tiny", "inputs": ["fine"]}),
        )
        .await;
    assert_eq!(ok.status, 200);
    s.stop().await;
}

/// Opens a connection that sends half a request head and then nothing.
async fn stalled(addr: std::net::SocketAddr) -> TcpStream {
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(b"POST /v1/classify HTTP/1.1\r\nhost: x\r\ncontent-ty")
        .await
        .unwrap();
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_hold_bounded_connections_for_a_bounded_time() {
    let (a, _) = model_files();
    let s = start(ServerConfig {
        max_connections: 8,
        idle_timeout: Duration::from_millis(1500),
        timeout: Duration::from_millis(1000),
        ..config(a)
    })
    .await;
    // Eight stalled clients take every connection slot...
    let mut slow = Vec::new();
    for _ in 0..8 {
        slow.push(stalled(s.addr).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // ...so a ninth client waits in the accept queue rather than costing memory, and is served
    // once the idle timeout closes the stalled ones.
    let started = Instant::now();
    let ok = s
        .post_json(
            "/v1/classify",
            &serde_json::json!({"model": "tiny", "inputs": ["fine"]}),
        )
        .await;
    let waited = started.elapsed();
    assert_eq!(ok.status, 200);
    assert!(
        waited >= Duration::from_millis(800),
        "served after {waited:?}: the cap did not hold"
    );
    assert!(
        waited < Duration::from_secs(10),
        "served after {waited:?}: idle connections were not closed"
    );
    // The stalled connections were closed by the server (EOF or reset).
    for mut c in slow {
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf)).await;
        assert!(
            matches!(read, Ok(Ok(0)) | Ok(Err(_))),
            "a stalled connection stayed open: {read:?}"
        );
    }
    // A keep-alive connection that goes quiet is closed too, after the idle timeout.
    let mut idle = TcpStream::connect(s.addr).await.unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(10), idle.read(&mut buf)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
    assert!(started.elapsed() >= Duration::from_millis(1200));
    s.stop().await;
}

#[tokio::test]
async fn idle_timeout_must_exceed_the_request_timeout() {
    let (a, _) = model_files();
    let bad = ServerConfig {
        idle_timeout: Duration::from_secs(5),
        timeout: Duration::from_secs(10),
        ..config(a)
    };
    let err = flywheel_server::Server::load(bad).await.err().unwrap();
    assert!(err.to_string().contains("--idle-timeout-s"), "{err}");
}

/// Sends one request on a fresh connection and returns the response head.
async fn head_of(addr: std::net::SocketAddr, content_type: &str, body: &str) -> String {
    let mut c = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "POST /v1/classify HTTP/1.1\r\nhost: x\r\ncontent-type: {content_type}\r\n\
         content-length: {}\r\n\r\n{body}",
        body.len()
    );
    c.write_all(request.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), c.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
    text.split("\r\n\r\n").next().unwrap_or("").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_left_unread_closes_the_connection_openly() {
    let (a, _) = model_files();
    let s = start(config(a)).await;
    let body = r#"{"model":"tiny","inputs":["fine"]}"#;
    // Refused on its headers: the body stays unread, and the answer says the connection closes.
    let refused = head_of(s.addr, "text/plain", body).await;
    assert!(refused.starts_with("http/1.1 415"), "{refused}");
    assert!(refused.contains("connection: close"), "{refused}");
    // Read and answered: the connection stays open for the next request.
    let served = head_of(s.addr, "application/json", body).await;
    assert!(served.starts_with("http/1.1 200"), "{served}");
    assert!(!served.contains("connection: close"), "{served}");
    s.stop().await;
}
