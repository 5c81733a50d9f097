//! Opening the metadata database: picking the backend from the URL, the connection settings
//! each backend needs, and bringing its schema up to date.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection, PgConnection};
use tracing::instrument;

use super::{Backend, DbError, MetadataDb, Pool, Result};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

/// The SQLite file's name inside the data directory.
pub(crate) const SQLITE_FILE_NAME: &str = "idv.db";

/// Writers wait this long for SQLite's write lock before giving up.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);
const SQLITE_MAX_CONNECTIONS: u32 = 8;
const POSTGRES_MAX_CONNECTIONS: u32 = 10;
const POSTGRES_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a database URL points.
enum Location {
    SqliteFile(PathBuf),
    Postgres,
}

impl MetadataDb {
    /// Opens the metadata database: `data_dir/idv.db` (the directory and file are created if
    /// missing) unless `database_url` is set, in which case it is used as by
    /// [`MetadataDb::connect`]. An empty `database_url` counts as unset. Brings the schema
    /// up to date.
    ///
    /// The SQLite file is opened in WAL mode with foreign keys enforced, a 5 s busy timeout
    /// and `secure_delete=ON`, so that the bytes of a destroyed retention key are overwritten
    /// in the file rather than left in free space. On Unix a new file is readable by its owner
    /// only, because it holds key material.
    #[instrument(skip_all)]
    pub async fn open(data_dir: &Path, database_url: Option<&str>) -> Result<Self> {
        match database_url.map(str::trim).filter(|url| !url.is_empty()) {
            Some(url) => Self::connect(url).await,
            None => {
                create_dir(data_dir).await?;
                open_sqlite(&data_dir.join(SQLITE_FILE_NAME)).await
            }
        }
    }

    /// Connects to the database a URL names and brings its schema up to date:
    /// `postgres://…` or `postgresql://…` for PostgreSQL, `sqlite://PATH` (or `sqlite:PATH`)
    /// for a SQLite file, which is created along with its directory if missing.
    #[instrument(skip_all)]
    pub async fn connect(url: &str) -> Result<Self> {
        match locate(url)? {
            Location::SqliteFile(path) => {
                if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
                    create_dir(dir).await?;
                }
                open_sqlite(&path).await
            }
            Location::Postgres => connect_postgres(postgres_options(url)?).await,
        }
    }

    /// Connects to PostgreSQL keeping every idv table in `schema` (which must exist, and is
    /// a plain identifier: ASCII letters, digits and `_`, not starting with a digit), and
    /// brings that schema up to date. Lets several idv installations, or test runs, share one
    /// database.
    #[instrument(skip_all, fields(schema))]
    pub async fn connect_in_schema(url: &str, schema: &str) -> Result<Self> {
        let plain = schema.len() <= 63
            && schema.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && schema
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !plain {
            return Err(DbError::UnsupportedUrl {
                problem: format!(
                    "schema name {schema:?} must be ASCII letters, digits and `_`, at most 63 \
                     characters, not starting with a digit"
                ),
            });
        }
        match locate(url)? {
            Location::SqliteFile(_) => Err(DbError::UnsupportedUrl {
                problem: "schemas exist only on PostgreSQL, and this is a SQLite URL".into(),
            }),
            Location::Postgres => {
                connect_postgres(postgres_options(url)?.options([("search_path", schema)])).await
            }
        }
    }
}

/// Decides the backend from the URL's scheme without ever echoing the rest of it.
fn locate(url: &str) -> Result<Location> {
    let url = url.trim();
    let Some((scheme, rest)) = url.split_once(':') else {
        return Err(DbError::UnsupportedUrl {
            problem: "it has no scheme such as postgres:// or sqlite://".into(),
        });
    };
    match scheme.to_ascii_lowercase().as_str() {
        "postgres" | "postgresql" => Ok(Location::Postgres),
        "sqlite" => {
            let path = rest.strip_prefix("//").unwrap_or(rest);
            if path.is_empty() || path == ":memory:" || path.contains('?') {
                Err(DbError::UnsupportedUrl {
                    problem: "a SQLite URL must name a file, without query parameters".into(),
                })
            } else {
                Ok(Location::SqliteFile(PathBuf::from(path)))
            }
        }
        other => Err(DbError::UnsupportedUrl {
            problem: format!("the scheme {other:?} is not supported"),
        }),
    }
}

fn postgres_options(url: &str) -> Result<PgConnectOptions> {
    // The parser's message is not passed on: it might quote parts of the URL.
    url.parse::<PgConnectOptions>()
        .map_err(|_| DbError::UnsupportedUrl {
            problem: "it cannot be parsed as a PostgreSQL URL".into(),
        })
}

/// `user@host:port/database`, for messages: everything needed to spot a wrong URL, and no
/// password.
fn describe_postgres(options: &PgConnectOptions) -> String {
    let host = match options.get_socket() {
        Some(socket) => socket.display().to_string(),
        None => options.get_host().to_string(),
    };
    format!(
        "{}@{}:{}/{}",
        options.get_username(),
        host,
        options.get_port(),
        options.get_database().unwrap_or("(default database)")
    )
}

async fn connect_postgres(options: PgConnectOptions) -> Result<MetadataDb> {
    // One plain connection first: it fails at once with the server's own reason (refused,
    // password, unknown database), where a pool would retry until "pool timed out".
    let mut first = PgConnection::connect_with(&options)
        .await
        .map_err(|source| DbError::ConnectPostgres {
            target: describe_postgres(&options),
            source,
        })?;
    let migrated = POSTGRES_MIGRATIONS.run(&mut first).await;
    // Closing is a courtesy to the server; the connection is dropped either way.
    let _ = first.close().await;
    migrated.map_err(|source| DbError::Migrate {
        backend: Backend::Postgres,
        source,
    })?;
    let pool = PgPoolOptions::new()
        .max_connections(POSTGRES_MAX_CONNECTIONS)
        .acquire_timeout(POSTGRES_ACQUIRE_TIMEOUT)
        .connect_lazy_with(options);
    Ok(MetadataDb {
        pool: Pool::Postgres(pool),
    })
}

async fn open_sqlite(path: &Path) -> Result<MetadataDb> {
    let open_error = |source| DbError::OpenSqlite {
        path: path.to_path_buf(),
        source,
    };
    create_private_file(path)
        .await
        .map_err(|e| open_error(sqlx::Error::Io(e)))?;
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        // Every committed audit entry and key destruction survives a power cut.
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        .busy_timeout(SQLITE_BUSY_TIMEOUT)
        .pragma("secure_delete", "ON");
    let pool = SqlitePoolOptions::new()
        .max_connections(SQLITE_MAX_CONNECTIONS)
        .connect_with(options)
        .await
        .map_err(open_error)?;
    SQLITE_MIGRATIONS
        .run(&pool)
        .await
        .map_err(|source| DbError::Migrate {
            backend: Backend::Sqlite,
            source,
        })?;
    Ok(MetadataDb {
        pool: Pool::Sqlite(pool),
    })
}

async fn create_dir(dir: &Path) -> Result<()> {
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|source| DbError::DataDir {
            path: dir.to_path_buf(),
            source,
        })
}

/// Creates an empty database file readable by its owner only, if there is none yet. SQLite
/// gives its `-wal` and `-shm` files the same permissions.
async fn create_private_file(path: &Path) -> std::io::Result<()> {
    let mut options = tokio::fs::OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    options.mode(0o600);
    options.open(path).await.map(drop)
}
