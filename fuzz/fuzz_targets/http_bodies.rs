//! Every endpoint's request body (and query) on arbitrary bytes, through the real router on a
//! store: a JSON error, never a panic or a 500.
#![no_main]

use std::sync::OnceLock;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;

const TOKEN: &str = "fuzz-admin-token-0123456789";

struct App {
    runtime: tokio::runtime::Runtime,
    router: axum::Router,
    _dir: tempfile::TempDir,
}

fn app() -> &'static App {
    static APP: OnceLock<App> = OnceLock::new();
    APP.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("fuzz.db").display());
        let router = runtime.block_on(async {
            let model = include_bytes!("../seeds/model.fw");
            let sha = flywheel_model::artifact::hex(&<sha2::Sha256 as sha2::Digest>::digest(model));
            let store = flywheel_store::Store::open(&url).await.expect("store");
            store.push_model("m", model, &sha, 0).await.expect("push");
            store
                .set_alias("m", flywheel_store::Alias::Champion, 1)
                .await
                .expect("promote");
            store.close().await;
            let config = flywheel_server::ServerConfig {
                database_url: Some(url),
                admin_token: Some(TOKEN.to_string()),
                threads: 1,
                log_predictions: 1.0,
                ..Default::default()
            };
            flywheel_server::Server::load(config)
                .await
                .expect("server")
                .router()
        });
        App {
            runtime,
            router,
            _dir: dir,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let app = app();
    let query = String::from_utf8_lossy(body);
    let query: String = query.chars().filter(|c| c.is_ascii_graphic()).take(200).collect();
    let (method, uri) = match selector % 8 {
        0 => ("POST", "/v1/classify".to_string()),
        1 => ("POST", "/v1/explain".to_string()),
        2 => ("POST", "/v1/feedback".to_string()),
        3 => ("POST", "/v1/review/1".to_string()),
        4 => ("GET", format!("/v1/review-queue?{query}")),
        5 => ("GET", format!("/v1/usage?{query}")),
        6 => ("POST", "/v1/admin/models/m/reload".to_string()),
        _ => ("GET", "/v1/models".to_string()),
    };
    let Ok(request) = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Body::from(body.to_vec()))
    else {
        return;
    };
    let response = app
        .runtime
        .block_on(app.router.clone().oneshot(request))
        .expect("infallible");
    assert_ne!(
        response.status(),
        StatusCode::INTERNAL_SERVER_ERROR,
        "500 for {method} {:?}",
        String::from_utf8_lossy(body)
    );
});
