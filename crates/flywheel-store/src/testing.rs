//! Throw-away PostgreSQL databases for tests of the store and of the crates built on it.
//! `FLYWHEEL_TEST_POSTGRES_URL` names a server and a user allowed to create databases.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::Result;

/// The environment variable naming the PostgreSQL server tests may use.
pub const POSTGRES_URL_VAR: &str = "FLYWHEEL_TEST_POSTGRES_URL";

/// A fresh, empty PostgreSQL database; [`ScratchDatabase::drop_now`] removes it.
#[derive(Debug)]
pub struct ScratchDatabase {
    /// URL of the new database.
    pub url: String,
    name: String,
    base: String,
}

impl ScratchDatabase {
    /// Creates a database with a unique name on the server of [`POSTGRES_URL_VAR`]; `None`
    /// when the variable is unset (the PostgreSQL half of a test is then skipped).
    pub async fn create() -> Result<Option<ScratchDatabase>> {
        let Ok(base) = std::env::var(POSTGRES_URL_VAR) else {
            return Ok(None);
        };
        static N: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!(
            "flywheel_test_{}_{}_{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let admin = sqlx::PgPool::connect(&base).await?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&admin)
            .await?;
        admin.close().await;
        Ok(Some(ScratchDatabase {
            url: with_database(&base, &name),
            name,
            base,
        }))
    }

    /// Drops the database, disconnecting whoever is still connected.
    ///
    /// `WITH (FORCE)` ends the sessions still on it; one it may not end (an autovacuum worker,
    /// when the test role is not in `pg_signal_backend`) fails the drop, which is tried again
    /// for up to 5 s while that session finishes.
    pub async fn drop_now(self) -> Result<()> {
        let admin = sqlx::PgPool::connect(&self.base).await?;
        let drop = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let mut tries = 0;
        let outcome = loop {
            match sqlx::query(&drop).execute(&admin).await {
                Ok(_) => break Ok(()),
                Err(e) if tries < 50 && e.as_database_error().is_some() => {
                    tries += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                Err(e) => break Err(e.into()),
            }
        };
        admin.close().await;
        outcome
    }
}

/// `base` with its database name replaced by `db`.
pub fn with_database(base: &str, db: &str) -> String {
    let (head, query) = match base.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (base, None),
    };
    let after_scheme = head.find("://").map(|i| i + 3).unwrap_or(0);
    let host_end = head[after_scheme..]
        .find('/')
        .map(|i| after_scheme + i)
        .unwrap_or(head.len());
    let mut url = format!("{}/{db}", &head[..host_end]);
    if let Some(q) = query {
        url.push('?');
        url.push_str(q);
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_name_is_replaced_in_urls() {
        assert_eq!(
            with_database("postgres://u:p@h:5432/base?sslmode=disable", "x"),
            "postgres://u:p@h:5432/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://u@h", "x"), "postgres://u@h/x");
    }
}
