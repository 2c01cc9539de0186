//! Shared by the store's test files: the same test function runs against SQLite (a temporary
//! file) and, when `FLYWHEEL_TEST_POSTGRES_URL` is set, against PostgreSQL (a fresh database per
//! test, created and dropped here; the URL's user needs CREATEDB).

#![allow(dead_code)]

use std::future::Future;

use flywheel_store::{testing, Store};
use sha2::{Digest, Sha256};

pub fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub async fn on_sqlite<F, Fut>(test: F)
where
    F: FnOnce(Store, String) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("flywheel.db").display());
    let store = Store::open(&url).await.unwrap();
    // Opening again runs the migrations again: a no-op.
    Store::open(&url).await.unwrap().close().await;
    let outcome = tokio::spawn(test(store.clone(), url.clone())).await;
    store.close().await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

pub async fn on_postgres<F, Fut>(test: F)
where
    F: FnOnce(Store, String) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(db) = testing::ScratchDatabase::create().await.unwrap() else {
        eprintln!("FLYWHEEL_TEST_POSTGRES_URL is not set: skipping the PostgreSQL run");
        return;
    };
    let store = Store::open(&db.url).await.unwrap();
    Store::open(&db.url).await.unwrap().close().await;
    let outcome = tokio::spawn(test(store.clone(), db.url.clone())).await;
    store.close().await;
    db.drop_now().await.unwrap();
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// Runs each named test function on SQLite and on PostgreSQL (`#[macro_use] mod common;`).
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::common::on_sqlite(super::$name).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::common::on_postgres(super::$name).await
                }
            )*
        }
    };
}

/// 2026-01-01T00:00:00Z.
pub const T0: i64 = 1_767_225_600;
