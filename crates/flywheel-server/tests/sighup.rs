//! SIGHUP reloads every model (own test binary: the signal goes to the whole process).

mod common;

use std::time::Duration;

use common::*;
use flywheel_model::Artifact;
use hyper::StatusCode;
use serde_json::json;

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_models() {
    let (dir, path) = private_model_copy();
    let (_, b) = model_files();
    let version_b = Artifact::load(b).unwrap().meta.sha256[..12].to_string();
    let s = start(config(&path)).await;
    // The first answer proves the server (and its SIGHUP handler) is up.
    let body = json!({"model": "tiny", "inputs": ["okay"]});
    let r = s.post_json("/v1/classify", &body).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_ne!(r.json()["version"], version_b.as_str());

    let tmp = dir.path().join("next.fw");
    std::fs::copy(b, &tmp).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    let pid = std::process::id().to_string();
    let status = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    // The reload is asynchronous: wait for it, for at most a generous minute.
    let mut version = String::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let r = s.post_json("/v1/classify", &body).await;
        assert_eq!(r.status, StatusCode::OK);
        version = r.json()["version"].as_str().unwrap().to_string();
        if version == version_b {
            break;
        }
    }
    assert_eq!(version, version_b, "SIGHUP did not reload the model");
    s.stop().await;
}
