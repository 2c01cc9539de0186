//! The server's life cycle on a loopback port: models reloaded under load, admin endpoints off
//! without a token, a graceful drain on shutdown, bad settings and files refused at start.

mod common;

use std::time::Duration;

use common::*;
use flywheel_model::Artifact;
use flywheel_server::ServerConfig;
use hyper::{Method, StatusCode};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_load_fails_no_request_and_a_bad_file_keeps_the_old_model() {
    let (dir, path) = private_model_copy();
    let (a, b) = model_files();
    let version_a = Artifact::load(a).unwrap().meta.sha256[..12].to_string();
    let version_b = Artifact::load(b).unwrap().meta.sha256[..12].to_string();
    let s = std::sync::Arc::new(start(config(&path)).await);
    let auth = format!("Bearer {TOKEN}");
    let reload_path = "/v1/admin/models/tiny/reload";

    // Authorisation.
    let r = s.send(Method::POST, reload_path, &[], "").await;
    assert_eq!(
        (r.status.as_u16(), r.error_type().as_str()),
        (401, "unauthorized")
    );
    let r = s
        .send(
            Method::POST,
            reload_path,
            &[("authorization", "Bearer wrong-token-wrong-token")],
            "",
        )
        .await;
    assert_eq!(r.status.as_u16(), 401);
    let r = s
        .send(
            Method::POST,
            "/v1/admin/models/nope/reload",
            &[("authorization", &auth)],
            "",
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), r.error_type().as_str()),
        (404, "model_not_found")
    );

    // Load: 4 clients classify without pause while the model is swapped back and forth. After
    // each swap the test waits until the clients finished 8 more requests (at most 4 of them
    // started before the swap), however long a busy machine takes, instead of sleeping.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut clients = Vec::new();
    for c in 0..4 {
        let (s, stop, done) = (
            std::sync::Arc::clone(&s),
            std::sync::Arc::clone(&stop),
            std::sync::Arc::clone(&done),
        );
        clients.push(tokio::spawn(async move {
            let mut versions = std::collections::BTreeSet::new();
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let body = json!({"model": "tiny", "inputs": texts(1 + c * 5)});
                let r = s.post_json("/v1/classify", &body).await;
                assert_eq!(
                    r.status,
                    StatusCode::OK,
                    "failed during reload: {:?}",
                    r.body
                );
                versions.insert(r.json()["version"].as_str().unwrap().to_string());
                n += 1;
                done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            (n, versions)
        }));
    }
    for i in 0..6 {
        let src = if i % 2 == 0 { b } else { a };
        let tmp = dir.path().join("next.fw");
        std::fs::copy(src, &tmp).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        let r = s
            .send(Method::POST, reload_path, &[("authorization", &auth)], "")
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        let want = if i % 2 == 0 { &version_b } else { &version_a };
        assert_eq!(&r.json()["version"], want.as_str());
        let before = done.load(std::sync::atomic::Ordering::SeqCst);
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while done.load(std::sync::atomic::Ordering::SeqCst) < before + 8 {
            assert!(
                std::time::Instant::now() < deadline,
                "the clients stalled after swap {i}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut seen = std::collections::BTreeSet::new();
    let mut total = 0;
    for c in clients {
        let (n, versions) = c.await.unwrap();
        total += n;
        seen.extend(versions);
    }
    assert!(total >= 48, "only {total} requests during the reloads");
    assert!(
        seen.iter().all(|v| *v == version_a || *v == version_b),
        "{seen:?}"
    );
    assert_eq!(seen.len(), 2, "both versions answered: {seen:?}");

    // Now serving a (after an even number of swaps... the last copy was a). A corrupt file:
    std::fs::write(&path, b"not a model").unwrap();
    let r = s
        .send(Method::POST, reload_path, &[("authorization", &auth)], "")
        .await;
    assert_eq!(
        (r.status.as_u16(), r.error_type().as_str()),
        (500, "reload_failed")
    );
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("still serving"));
    let r = s
        .post_json(
            "/v1/classify",
            &json!({"model": "tiny", "inputs": ["okay"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["version"], version_a.as_str());
    let metrics = String::from_utf8(s.get("/metrics").await.body.to_vec()).unwrap();
    assert!(metrics.contains("flywheel_model_reloads_total{model=\"tiny\",result=\"error\"} 1"));
    assert!(metrics.contains("flywheel_model_reloads_total{model=\"tiny\",result=\"ok\"} 6"));
    drop(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoints_are_off_without_a_token() {
    let (a, _) = model_files();
    let s = start(ServerConfig {
        admin_token: None,
        ..config(a)
    })
    .await;
    let r = s
        .send(
            Method::POST,
            "/v1/admin/models/tiny/reload",
            &[("authorization", &format!("Bearer {TOKEN}"))],
            "",
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), r.error_type().as_str()),
        (403, "admin_disabled")
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_requests_in_flight() {
    let (a, _) = model_files();
    let mut s = start(config(a)).await;
    let body = json!({"model": "tiny", "inputs": texts(50)})
        .to_string()
        .into_bytes();
    // Requests in flight: five connections whose bodies are not complete yet, each holding a
    // concurrency slot until the test sends the rest — waited for, not assumed after a sleep.
    let mut slow = Vec::new();
    for _ in 0..5 {
        slow.push(start_slow_request(s.addr, &body, 10).await);
    }
    wait_for_in_flight(&s, 5.0).await;
    let _ = s.shutdown.take().unwrap().send(());
    // The server has not stopped: it waits for the requests in flight (they cannot finish before
    // the test sends their bodies, so this holds however slow the machine is).
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!s.task.is_finished(), "stopped with requests in flight");
    for conn in slow {
        let (status, text) = finish_slow_request(conn, &body, 10).await;
        assert_eq!(status, 200, "{text}");
    }
    tokio::time::timeout(Duration::from_secs(5), &mut s.task)
        .await
        .expect("the server stopped after draining")
        .unwrap()
        .unwrap();
    // No new connections after shutdown.
    assert!(tokio::net::TcpStream::connect(s.addr).await.is_err());
}

#[tokio::test]
async fn bad_settings_and_files_are_refused_at_start() {
    let (a, _) = model_files();
    let bad = [
        ServerConfig {
            models: vec![],
            ..config(a)
        },
        ServerConfig {
            max_batch: 0,
            ..config(a)
        },
        ServerConfig {
            admin_token: Some("short".into()),
            ..config(a)
        },
    ];
    for c in bad {
        assert!(flywheel_server::Server::load(c).await.is_err());
    }
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.fw");
    std::fs::write(&junk, b"junk").unwrap();
    let e = match flywheel_server::Server::load(config(&junk)).await {
        Ok(_) => panic!("a junk file was loaded"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains("tiny"), "{e}");
    assert!("x".parse::<flywheel_server::ModelSource>().is_err());
    assert!("a b=x".parse::<flywheel_server::ModelSource>().is_err());
    assert!("ok=x.fw".parse::<flywheel_server::ModelSource>().is_ok());
}
