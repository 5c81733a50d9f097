//! PostgreSQL for integration tests: each test gets a fresh schema in the shared test database
//! (other test runs may use the same database at the same time) and drops it afterwards.
//!
//! The database is `postgres://postgres@127.0.0.1:5432/test` unless `IDV_TEST_DATABASE_URL`
//! says otherwise. When it cannot be reached the test prints `SKIPPED postgres: <reason>` and
//! passes, unless `IDV_REQUIRE_POSTGRES=1`, in which case it fails.

use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures::FutureExt;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Connection, PgConnection};

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// Where the test schema lives.
#[derive(Debug, Clone)]
pub struct PgSchema {
    /// The database URL (no schema in it).
    pub url: String,
    /// The schema created for this test.
    pub name: String,
}

impl PgSchema {
    /// A pool whose connections see only this schema: for tests that act on the tables
    /// directly, the way someone with database access could.
    #[allow(dead_code)] // not every test file acts on the tables directly
    pub async fn raw_pool(&self) -> anyhow::Result<PgPool> {
        let options = self
            .url
            .parse::<PgConnectOptions>()?
            .options([("search_path", self.name.as_str())]);
        Ok(PgPoolOptions::new()
            .max_connections(2)
            .connect_with(options)
            .await?)
    }
}

/// Runs `test` against a fresh schema, then drops the schema whether the test passed,
/// failed or panicked. Skips (loudly) when PostgreSQL is unreachable, unless required.
pub async fn run<F, Fut>(test: F)
where
    F: FnOnce(PgSchema) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let url = std::env::var("IDV_TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_URL.into());
    let required = std::env::var("IDV_REQUIRE_POSTGRES").is_ok_and(|v| v == "1");
    let mut admin = match PgConnection::connect(&url).await {
        Ok(connection) => connection,
        Err(error) if required => {
            panic!("IDV_REQUIRE_POSTGRES=1 but PostgreSQL is unreachable: {error}")
        }
        Err(error) => {
            eprintln!("SKIPPED postgres: cannot connect to the test database: {error}");
            return;
        }
    };
    let name = format!("idv_t_{}", uuid::Uuid::new_v4().simple());
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {name}")))
        .execute(&mut admin)
        .await
        .expect("create the test schema");
    let outcome = AssertUnwindSafe(test(PgSchema {
        url: url.clone(),
        name: name.clone(),
    }))
    .catch_unwind()
    .await;
    let dropped = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA {name} CASCADE")))
        .execute(&mut admin)
        .await;
    let _ = admin.close().await;
    match outcome {
        Err(panic) => std::panic::resume_unwind(panic),
        Ok(Err(error)) => panic!("test failed: {error:?}"),
        Ok(Ok(())) => {}
    }
    if let Err(error) = dropped {
        panic!("could not drop test schema {name}: {error}");
    }
}
