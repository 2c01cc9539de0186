//! A refused request's body is read and thrown away before its connection closes (a bounded
//! lingering close), so a client that writes its whole body before reading the answer (Python's
//! `http.client`, `requests`) gets the JSON error instead of a connection reset.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::*;

/// Writes the request head and the whole body, then reads the response to its end; returns
/// the response as text.
fn write_all_then_read(addr: SocketAddr, head: &str, body: &[u8]) -> std::io::Result<String> {
    let mut c = TcpStream::connect(addr)?;
    c.set_read_timeout(Some(Duration::from_secs(60)))?;
    c.set_write_timeout(Some(Duration::from_secs(60)))?;
    c.write_all(head.as_bytes())?;
    c.write_all(body)?;
    let mut response = Vec::new();
    c.read_to_end(&mut response)?;
    Ok(String::from_utf8_lossy(&response).into_owned())
}

/// The status code and the JSON body of a whole response.
fn status_and_json(response: &str) -> (u16, serde_json::Value) {
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {response:?}"));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    let json = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body:?}"));
    (status, json)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_writes_a_huge_body_before_reading_gets_the_413() {
    let (a, _) = model_files();
    let s = start(config(a)).await;
    let body = vec![b'x'; 20_000_000];
    let head = format!(
        "POST /v1/classify HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n",
        body.len()
    );
    let addr = s.addr;
    let response = tokio::task::spawn_blocking(move || write_all_then_read(addr, &head, &body))
        .await
        .unwrap()
        .expect("the whole body was written and the answer read, without a reset");
    let (status, json) = status_and_json(&response);
    assert_eq!(status, 413, "{response}");
    assert_eq!(json["error"]["type"], "payload_too_large", "{json}");
    assert!(
        response.to_ascii_lowercase().contains("connection: close"),
        "{response}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_on_the_headers_reaches_a_client_still_writing() {
    let (a, _) = model_files();
    let s = start(config(a)).await;
    // Refused before the body is looked at: an unknown route (404) with 5 MB of body.
    let body = vec![b'x'; 5_000_000];
    let head = format!(
        "POST /v1/nothing-here HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n",
        body.len()
    );
    let addr = s.addr;
    let response = tokio::task::spawn_blocking(move || write_all_then_read(addr, &head, &body))
        .await
        .unwrap()
        .expect("the whole body was written and the answer read, without a reset");
    let (status, json) = status_and_json(&response);
    assert_eq!(status, 404, "{response}");
    assert_eq!(json["error"]["type"], "not_found", "{json}");
    s.stop().await;
}
