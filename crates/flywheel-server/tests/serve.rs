//! The real server on a loopback port: every endpoint and every error (reloads, shutdown and
//! start-up refusals are in `lifecycle.rs`).

mod common;

use std::time::Duration;

use common::*;
use flywheel_model::Artifact;
use flywheel_server::ServerConfig;
use hyper::{Method, StatusCode};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classify_matches_the_pipeline_and_echoes_request_ids() {
    let (a, _) = model_files();
    let s = start(config(a)).await;
    let inputs = texts(10);
    let r = s
        .post_json("/v1/classify", &json!({"model": "tiny", "inputs": inputs}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.headers["content-type"], "application/json");
    let id = r.headers["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(id.len(), 32, "generated request id: {id}");
    let v = r.json();
    assert_eq!(v["model"], "tiny");
    let artifact = Artifact::load(a).unwrap();
    assert_eq!(v["version"], artifact.meta.sha256[..12]);
    let expected = artifact.pipeline.predict(&inputs).unwrap();
    let preds = v["predictions"].as_array().unwrap();
    assert_eq!(preds.len(), inputs.len());
    for (p, e) in preds.iter().zip(&expected) {
        let e = e.to_json();
        // The server writes the shortest f32 form; the CLI's JSON widens to f64 first.
        let f = |v: &Value| v.as_f64().unwrap() as f32;
        assert_eq!(p["label"], e["label"]);
        assert_eq!(f(&p["score"]), f(&e["score"]));
        let (ps, es) = (
            p["scores"].as_object().unwrap(),
            e["scores"].as_object().unwrap(),
        );
        assert_eq!(ps.len(), es.len());
        for (label, v) in es {
            assert_eq!(f(&ps[label]), f(v), "{label}");
        }
    }

    // A client's request id is echoed; top_k keeps the k best, best first.
    let r = s
        .send(
            Method::POST,
            "/v1/classify",
            &[
                ("content-type", "application/json"),
                ("x-request-id", "req-42"),
            ],
            json!({"model": "tiny", "inputs": ["w1 great"], "top_k": 2}).to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers["x-request-id"], "req-42");
    let v = r.json();
    let scores = v["predictions"][0]["scores"].as_object().unwrap();
    assert_eq!(scores.len(), 2);
    // The best label comes first in the body (JSON objects keep the server's order there).
    let label = v["predictions"][0]["label"].as_str().unwrap();
    let raw = String::from_utf8(r.body.to_vec()).unwrap();
    assert!(raw.contains(&format!("\"scores\":{{\"{label}\":")), "{raw}");
    let best = v["predictions"][0]["score"].as_f64().unwrap();
    assert!(scores.values().all(|x| x.as_f64().unwrap() <= best));
    s.stop().await;
}

/// Multi-byte characters (2, 3 and 4 bytes in UTF-8) before, between and inside tokens, so
/// that char and byte offsets differ.
const ACCENTED: &str = "Ça w3 GREAT — naïve w7 ☕ okay 😀 w12 café great";

/// Checks a served token list against the library's explanation of the same text.
fn assert_same_tokens(text: &str, served: &Value, expected: &flywheel_model::Explanation) {
    let chars: Vec<char> = text.chars().collect();
    let tokens = served.as_array().expect("tokens is an array");
    assert_eq!(tokens.len(), expected.tokens.len(), "{served}");
    for (t, e) in tokens.iter().zip(&expected.tokens) {
        let (start, end) = (
            t["start"].as_u64().unwrap() as usize,
            t["end"].as_u64().unwrap() as usize,
        );
        assert_eq!((start, end), (e.start, e.end), "{t}");
        assert_eq!(t["text"], e.text.as_str());
        // Offsets count chars of the original text, not bytes.
        assert_eq!(chars[start..end].iter().collect::<String>(), e.text);
        assert_eq!(t["in_vocabulary"], e.in_vocabulary);
        assert_eq!(t["truncated"], e.truncated);
        let a = t["attribution"].as_f64().unwrap() as f32;
        assert!(
            (a - e.attribution).abs() <= 1e-6,
            "{}: served {a}, library {}",
            e.text,
            e.attribution
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_matches_the_library_with_char_offsets() {
    let (a, _) = model_files();
    let s = start(config(a)).await;
    let artifact = Artifact::load(a).unwrap();
    let pipeline = &artifact.pipeline;

    // The predicted label, as `flywheel explain --json` computes it.
    let r = s
        .post_json("/v1/explain", &json!({"model": "tiny", "input": ACCENTED}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let v = r.json();
    let expected = flywheel_model::explain(pipeline, ACCENTED).unwrap();
    assert_eq!(v["model"], "tiny");
    assert_eq!(v["version"], artifact.meta.sha256[..12]);
    assert_eq!(v["label"], expected.label.as_str());
    assert_eq!(v["method"], expected.method.as_str());
    assert_eq!(v["score"].as_f64().unwrap() as f32, expected.score);
    assert_same_tokens(ACCENTED, &v["tokens"], &expected);
    // The CLI's JSON fields, plus model and version.
    let cli = serde_json::to_value(&expected).unwrap();
    let mut keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    keys.retain(|k| !matches!(k.as_str(), "model" | "version"));
    let mut cli_keys: Vec<&String> = cli.as_object().unwrap().keys().collect();
    keys.sort();
    cli_keys.sort();
    assert_eq!(keys, cli_keys);
    assert_eq!(
        v["tokens"][0].as_object().unwrap().len(),
        cli["tokens"][0].as_object().unwrap().len()
    );
    let bytes_differ = expected
        .tokens
        .iter()
        .any(|t| ACCENTED.char_indices().nth(t.start).map(|(b, _)| b) != Some(t.start));
    assert!(
        bytes_differ,
        "the text should put char and byte offsets apart"
    );

    // Another label, on request.
    let r = s
        .post_json(
            "/v1/explain",
            &json!({"model": "tiny", "input": ACCENTED, "label": "neg"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let v = r.json();
    let expected = flywheel_model::explain_label(pipeline, ACCENTED, Some("neg")).unwrap();
    assert_eq!(v["label"], "neg");
    assert_eq!(v["score"].as_f64().unwrap() as f32, expected.score);
    assert_same_tokens(ACCENTED, &v["tokens"], &expected);

    let metrics = String::from_utf8(s.get("/metrics").await.body.to_vec()).unwrap();
    assert!(
        metrics.contains("flywheel_explained_texts_total{model=\"tiny\"} 2"),
        "{metrics}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classify_with_explain_adds_tokens_to_each_prediction() {
    let (a, _) = model_files();
    let s = std::sync::Arc::new(start(config(a)).await);
    let artifact = Artifact::load(a).unwrap();
    let pipeline = &artifact.pipeline;
    let inputs = vec![ACCENTED.to_string(), "w1 awful".into(), "".into()];
    // Plain requests at the same time are batched on their own and carry no tokens.
    let plain = {
        let s = std::sync::Arc::clone(&s);
        tokio::spawn(async move {
            let mut all = Vec::new();
            for i in 0..8 {
                let body = json!({"model": "tiny", "inputs": [format!("w{i} okay")]});
                all.push(s.post_json("/v1/classify", &body).await);
            }
            all
        })
    };
    let r = s
        .post_json(
            "/v1/classify",
            &json!({"model": "tiny", "inputs": inputs, "explain": true, "top_k": 1}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let v = r.json();
    let preds = v["predictions"].as_array().unwrap();
    assert_eq!(preds.len(), inputs.len());
    let expected = pipeline.predict(&inputs).unwrap();
    for ((p, text), e) in preds.iter().zip(&inputs).zip(&expected) {
        let e = e.to_json();
        assert_eq!(p["label"], e["label"]);
        assert_eq!(p["scores"].as_object().unwrap().len(), 1, "top_k applies");
        let label = e["label"].as_str().unwrap();
        let explanation = flywheel_model::explain_label(pipeline, text, Some(label)).unwrap();
        assert_same_tokens(text, &p["tokens"], &explanation);
    }
    assert_eq!(preds[2]["tokens"], json!([]), "an empty text has no tokens");
    for r in plain.await.unwrap() {
        assert_eq!(r.status, StatusCode::OK);
        let v = r.json();
        assert!(v["predictions"][0].get("tokens").is_none(), "{v}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_errors_are_json_with_the_right_status() {
    let (a, _) = model_files();
    let s = start(ServerConfig {
        max_chars: 100,
        ..config(a)
    })
    .await;
    let cases: Vec<(&str, Value, u16, &str, Option<&str>)> = vec![
        (
            "empty input",
            json!({"model": "tiny", "input": ""}),
            400,
            "invalid_request",
            Some("input"),
        ),
        (
            "blank input",
            json!({"model": "tiny", "input": "  \t "}),
            400,
            "invalid_request",
            Some("input"),
        ),
        (
            "missing input",
            json!({"model": "tiny"}),
            400,
            "invalid_request",
            Some("input"),
        ),
        (
            "input not a string",
            json!({"model": "tiny", "input": ["a"]}),
            400,
            "invalid_request",
            Some("input"),
        ),
        (
            "unknown field",
            json!({"model": "tiny", "input": "a", "top_k": 1}),
            400,
            "invalid_request",
            Some("top_k"),
        ),
        (
            "label not a string",
            json!({"model": "tiny", "input": "a", "label": 2}),
            400,
            "invalid_request",
            Some("label"),
        ),
        (
            "unknown label",
            json!({"model": "tiny", "input": "w1 great", "label": "joy"}),
            422,
            "unknown_label",
            Some("label"),
        ),
        (
            "unknown model",
            json!({"model": "nope", "input": "a"}),
            404,
            "model_not_found",
            Some("model"),
        ),
        (
            "input too long",
            json!({"model": "tiny", "input": "é".repeat(101)}),
            422,
            "input_too_long",
            Some("input"),
        ),
        (
            "NUL character",
            json!({"model": "tiny", "input": "a\u{0}b"}),
            422,
            "invalid_input",
            Some("input"),
        ),
    ];
    for (what, body, status, kind, param) in cases {
        let r = s.post_json("/v1/explain", &body).await;
        assert_eq!(r.status.as_u16(), status, "{what}: {:?}", r.body);
        assert_eq!(r.error_type(), kind, "{what}");
        assert_eq!(r.json()["error"]["param"].as_str(), param, "{what}");
    }
    let r = s
        .post_json(
            "/v1/explain",
            &json!({"model": "tiny", "input": "a", "label": "joy"}),
        )
        .await;
    let message = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(message.contains("neg, neu, pos"), "{message}");
    for (body, ct) in [
        (&b"{\"model\":"[..], "application/json"),
        (&b"{}"[..], "text/plain"),
    ] {
        let r = s
            .send(Method::POST, "/v1/explain", &[("content-type", ct)], body)
            .await;
        let want = if ct == "text/plain" {
            (415, "unsupported_media_type")
        } else {
            (400, "invalid_json")
        };
        assert_eq!((r.status.as_u16(), r.error_type().as_str()), want);
    }
    // The limits of /v1/classify hold with "explain": true.
    let r = s
        .post_json(
            "/v1/classify",
            &json!({"model": "tiny", "inputs": ["ok", "é".repeat(101)], "explain": true}),
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), r.error_type().as_str()),
        (422, "input_too_long")
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_explanations_time_out_and_leave_the_server_serving() {
    let (a, _) = model_files();
    let s = start(ServerConfig {
        timeout: Duration::from_millis(2),
        threads: 1,
        ..config(a)
    })
    .await;
    // 256 texts of 20 words each: 256 × 21 forward passes, far more than 2 ms (at 20 ms, a
    // fast machine finished them in time); one short explanation takes microseconds.
    let inputs: Vec<String> = (0..256)
        .map(|i| {
            (0..20)
                .map(|j| format!("w{}", (i + j) % 40))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    let r = s
        .post_json(
            "/v1/classify",
            &json!({"model": "tiny", "inputs": inputs, "explain": true}),
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), r.error_type().as_str()),
        (504, "timeout")
    );
    // The abandoned explanation stops early; the only inference thread serves again (within a
    // generous minute: each try may itself time out while the thread is busy).
    let mut ok = false;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        let r = s
            .post_json(
                "/v1/explain",
                &json!({"model": "tiny", "input": "w1 great"}),
            )
            .await;
        if r.status == StatusCode::OK {
            ok = true;
            break;
        }
        assert_eq!(r.status.as_u16(), 504, "{:?}", r.body);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        ok,
        "the server did not recover from an abandoned explanation"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_are_batched() {
    let (a, _) = model_files();
    // A batch waits (up to a minute, far longer than the requests take to arrive) until it
    // holds 16 texts, so the 16 one-text requests below make one batch however slowly they
    // arrive.
    let s = std::sync::Arc::new(
        start(ServerConfig {
            max_wait: Duration::from_secs(60),
            max_batch: 16,
            timeout: Duration::from_secs(120),
            idle_timeout: Duration::from_secs(180),
            ..config(a)
        })
        .await,
    );
    let mut tasks = Vec::new();
    for i in 0..16 {
        let s = std::sync::Arc::clone(&s);
        tasks.push(tokio::spawn(async move {
            let body = json!({"model": "tiny", "inputs": [format!("w{i} okay")]});
            s.post_json("/v1/classify", &body).await.status
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), StatusCode::OK);
    }
    let metrics = String::from_utf8(s.get("/metrics").await.body.to_vec()).unwrap();
    let count = metric(&metrics, "flywheel_batch_size_count{model=\"tiny\"}");
    let sum = metric(&metrics, "flywheel_batch_size_sum{model=\"tiny\"}");
    assert_eq!(sum, 16.0);
    assert_eq!(
        count, 1.0,
        "16 concurrent texts in {count} batches: not batched"
    );
}

/// Sends a 1.6 MB body (or only its head, for a declared length) and reads the answer.
async fn oversized_request(addr: std::net::SocketAddr, head: &str) -> (u16, String) {
    use tokio::io::AsyncWriteExt;
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "POST /v1/classify HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n{head}\r\n\r\n"
    );
    conn.write_all(request.as_bytes()).await.unwrap();
    let (mut read, mut write) = conn.into_split();
    if head.starts_with("transfer-encoding") {
        tokio::spawn(async move {
            let chunk = vec![b' '; 100_000];
            for _ in 0..16 {
                let frame = [format!("{:x}\r\n", chunk.len()).as_bytes(), &chunk, b"\r\n"].concat();
                if write.write_all(&frame).await.is_err() {
                    break;
                }
            }
        });
    }
    read_half_response(&mut read).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_endpoints() {
    let (a, _) = model_files();
    let s = start(config(a)).await;
    let artifact = Artifact::load(a).unwrap();
    let version = &artifact.meta.sha256[..12];

    let r = s.get("/healthz").await;
    assert_eq!(
        (r.status, r.json()),
        (StatusCode::OK, json!({"status": "ok"}))
    );

    let r = s.get("/readyz").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.json()["models"][0],
        json!({"name": "tiny", "version": version})
    );

    let r = s.get("/v1/models").await;
    assert_eq!(r.status, StatusCode::OK);
    let m = &r.json()["models"][0];
    assert_eq!(m["name"], "tiny");
    assert_eq!(m["version"], version);
    assert_eq!(m["sha256"], artifact.meta.sha256);
    assert_eq!(m["task"], "multiclass");
    assert_eq!(m["labels"], json!(["neg", "neu", "pos"]));
    assert_eq!(m["created_at"], artifact.meta.created_at);

    let r = s.get("/openapi.json").await;
    assert_eq!(r.status, StatusCode::OK);
    let doc = r.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/v1/classify",
        "/v1/explain",
        "/v1/models",
        "/v1/models/{name}/drift",
        "/v1/usage",
        "/v1/feedback",
        "/v1/review-queue",
        "/v1/review/{id}",
        "/v1/admin/models/{name}/reload",
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
        "/v1/datasets",
        "/v1/datasets/{id}",
        "/v1/training-jobs",
        "/v1/training-jobs/{id}",
        "/v1/training-jobs/{id}/cancel",
        "/v1/training-jobs/{id}/events",
        "/v1/training-jobs/{id}/report",
        "/v1/models/{name}/deploy",
        "/v1/batches",
        "/v1/batches/{id}",
        "/v1/batches/{id}/cancel",
        "/v1/batches/{id}/events",
        "/v1/batches/{id}/results",
    ] {
        assert!(
            doc["paths"][path].is_object(),
            "{path} missing from the OpenAPI document"
        );
    }
    // Every reference resolves.
    fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::Object(o) => {
                if let Some(Value::String(r)) = o.get("$ref") {
                    out.push(r);
                }
                o.values().for_each(|v| refs(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(all.contains(&"#/components/schemas/TokenAttribution"));
    for r in all {
        let pointer = r.strip_prefix('#').unwrap();
        assert!(doc.pointer(pointer).is_some(), "unresolved {r}");
    }

    let ok = s
        .post_json(
            "/v1/classify",
            &json!({"model": "tiny", "inputs": ["okay"]}),
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK);
    let _ = s.get("/nope").await;
    let r = s.get("/metrics").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = String::from_utf8(r.body.to_vec()).unwrap();
    for needle in [
        "flywheel_http_requests_total{route=\"/v1/classify\",method=\"POST\",status=\"200\"} 1",
        "flywheel_http_requests_total{route=\"unmatched\",method=\"GET\",status=\"404\"} 1",
        "flywheel_http_request_duration_seconds_bucket{route=\"/v1/classify\",le=\"+Inf\"} 1",
        "flywheel_batch_size_bucket{model=\"tiny\",le=\"1\"} 1",
        "flywheel_queue_depth{model=\"tiny\"} 0",
        "flywheel_texts_total{model=\"tiny\"} 1",
        "flywheel_in_flight_requests 0",
    ] {
        assert!(text.contains(needle), "{needle} not in\n{text}");
    }
    assert!(text.contains(&format!(
        "flywheel_model_info{{model=\"tiny\",version=\"{version}\",created_at=\"{}\"}} 1",
        artifact.meta.created_at
    )));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_is_json_with_the_right_status() {
    let (a, _) = model_files();
    let s = start(ServerConfig {
        max_inputs: 4,
        max_body_bytes: 1_500_000,
        ..config(a)
    })
    .await;
    let long = "a".repeat(1_000_000);
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "invalid JSON",
            b"{\"model\": ".to_vec(),
            400,
            "invalid_json",
        ),
        ("not an object", b"[1]".to_vec(), 400, "invalid_request"),
        (
            "model not a string",
            br#"{"model": 3, "inputs": ["x"]}"#.to_vec(),
            400,
            "invalid_request",
        ),
        (
            "inputs not a list",
            br#"{"model": "tiny", "inputs": "x"}"#.to_vec(),
            400,
            "invalid_request",
        ),
        (
            "input not a string",
            br#"{"model": "tiny", "inputs": [1]}"#.to_vec(),
            400,
            "invalid_request",
        ),
        (
            "empty inputs",
            br#"{"model": "tiny", "inputs": []}"#.to_vec(),
            400,
            "invalid_request",
        ),
        (
            "bad top_k",
            br#"{"model": "tiny", "inputs": ["x"], "top_k": -1}"#.to_vec(),
            400,
            "invalid_request",
        ),
        (
            "invalid UTF-8",
            b"{\"model\": \"tiny\", \"inputs\": [\"\xc3\x28\"]}".to_vec(),
            400,
            "invalid_utf8",
        ),
        (
            "unknown model",
            br#"{"model": "nope", "inputs": ["x"]}"#.to_vec(),
            404,
            "model_not_found",
        ),
        (
            "too many inputs",
            br#"{"model": "tiny", "inputs": ["a","b","c","d","e"]}"#.to_vec(),
            422,
            "too_many_inputs",
        ),
        (
            "1 MB string",
            json!({"model": "tiny", "inputs": [long]})
                .to_string()
                .into_bytes(),
            422,
            "input_too_long",
        ),
        (
            "NUL byte",
            br#"{"model": "tiny", "inputs": ["a\u0000b"]}"#.to_vec(),
            422,
            "invalid_input",
        ),
        (
            "bad explain flag",
            br#"{"model": "tiny", "inputs": ["x"], "explain": 1}"#.to_vec(),
            400,
            "invalid_request",
        ),
    ];
    for (what, body, status, kind) in cases {
        let r = s.classify_raw(body).await;
        assert_eq!(r.status.as_u16(), status, "{what}: {:?}", r.body);
        assert_eq!(r.error_type(), kind, "{what}");
        assert!(r.headers.contains_key("x-request-id"), "{what}");
    }
    // The parameter at fault is named.
    let r = s
        .classify_raw(&br#"{"model": "tiny", "inputs": ["ok", "a\u0000"]}"#[..])
        .await;
    assert_eq!(r.json()["error"]["param"], "inputs[1]");

    // Body too large, by declared length (answered before the body is sent) and streamed
    // without a length (chunked).
    for head in ["content-length: 1600000", "transfer-encoding: chunked"] {
        let (status, text) = oversized_request(s.addr, head).await;
        assert_eq!(status, 413, "{head}: {text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["error"]["type"], "payload_too_large");
    }

    // Wrong or missing content type.
    for headers in [vec![("content-type", "text/plain")], vec![]] {
        let r = s
            .send(
                Method::POST,
                "/v1/classify",
                &headers,
                r#"{"model":"tiny","inputs":["x"]}"#,
            )
            .await;
        assert_eq!(r.status.as_u16(), 415);
        assert_eq!(r.error_type(), "unsupported_media_type");
    }

    // Unknown route, wrong method.
    let r = s.get("/v2/nothing").await;
    assert_eq!(
        (r.status.as_u16(), r.error_type().as_str()),
        (404, "not_found")
    );
    let r = s.get("/v1/classify").await;
    assert_eq!(
        (r.status.as_u16(), r.error_type().as_str()),
        (405, "method_not_allowed")
    );
    // Nothing above hurt the server.
    let r = s
        .post_json(
            "/v1/classify",
            &json!({"model": "tiny", "inputs": ["okay"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_cap_rejects_at_once_and_timeouts_are_504() {
    let (a, _) = model_files();
    let s = start(ServerConfig {
        max_concurrency: 1,
        timeout: Duration::from_secs(30),
        ..config(a)
    })
    .await;
    let body = json!({"model": "tiny", "inputs": ["okay"]})
        .to_string()
        .into_bytes();
    // A request whose body is still arriving holds the only slot (for up to 30 s).
    let slow = start_slow_request(s.addr, &body, 5).await;
    wait_for_in_flight(&s, 1.0).await;
    // Another is refused while the slot is still held: it does not wait for the slot.
    let r = s.classify_raw(body.clone()).await;
    assert_eq!(
        (r.status.as_u16(), r.error_type().as_str()),
        (503, "overloaded")
    );
    assert_eq!(r.headers["retry-after"], "1");
    // Health is never capped.
    assert_eq!(s.get("/healthz").await.status, StatusCode::OK);
    // Only now does the slow request finish, and it is served.
    let (status, text) = finish_slow_request(slow, &body, 5).await;
    assert_eq!(status, 200, "{text}");
    s.stop().await;

    // With a short time limit, a request whose body stops arriving is answered 504 by the
    // server (read before the rest of the body is sent), and frees its slot.
    let s = start(ServerConfig {
        max_concurrency: 1,
        timeout: Duration::from_millis(300),
        ..config(a)
    })
    .await;
    let mut slow = start_slow_request(s.addr, &body, 5).await;
    let (status, text) = tokio::time::timeout(Duration::from_secs(60), read_response(&mut slow))
        .await
        .expect("no answer to a stalled request");
    assert_eq!(status, 504, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["error"]["type"], "timeout");
    wait_for_in_flight(&s, 0.0).await;
    let r = s.classify_raw(body).await;
    assert_eq!(r.status, StatusCode::OK);
    s.stop().await;
}
