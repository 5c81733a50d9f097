//! The metadata database: what idv knows about its sealed archives, the retention keys that
//! can crypto-shred them, and the audit log ([`crate::audit`] gives the log its meaning); and
//! what the ingest server and the muxer workers share about sessions: the sessions themselves,
//! their one-time connection codes and join attempts, consents, durable media segments,
//! clock-sync samples, CTI call recordings (and uploads of them in parts) and the mux job queue.
//!
//! A SQLite file under the data directory by default, PostgreSQL when the database URL says
//! so. Each query is written once, with `$1, $2` placeholders that both sqlx drivers accept,
//! and run on whichever pool is open (see `on_pool!`). To keep the types portable, ids are
//! stored as UUID text, times as unix microseconds (`i64`) and secrets as BLOB/BYTEA. Each
//! backend has its own migrations (`storage/migrations/{sqlite,postgres}`), applied on open.

mod archives;
pub(crate) mod audit_log;
mod clock_samples;
mod codes;
mod connect;
mod consents;
mod cti;
mod cti_uploads;
mod error;
mod grants;
mod keys;
mod mux_jobs;
mod retention;
mod segments;
mod sessions;
mod users;

use std::fmt;

use sqlx::{PgPool, SqlitePool};
use time::OffsetDateTime;
use uuid::Uuid;

pub use archives::{ArchiveRecord, ArchiveState};
pub use clock_samples::ClockSample;
pub use codes::{
    CodeFailure, CodeState, ConnectionCodeRecord, MAX_CODE_FAILURES, NewConnectionCode,
};
pub use consents::{ConsentRecord, ConsentScope};
pub use cti::CtiRecording;
pub use cti_uploads::{CtiPart, CtiUpload, PartRecorded};
pub use error::DbError;
pub use grants::{RecordingGrant, grant_hash};
pub use keys::RetentionKeyRecord;
pub use mux_jobs::{MuxJob, MuxJobState};
pub use retention::LegalHold;
pub use segments::{MediaTrack, SegmentRecord};
pub use sessions::{NewSession, SessionFilter, SessionRecord, SessionState};
pub use users::{ConsoleSession, Login, NewUser, Role, UserRecord, login_token_hash};

/// Result of a metadata database operation.
pub type Result<T, E = DbError> = std::result::Result<T, E>;

/// Which database engine holds the metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// A SQLite file (the single-machine default).
    Sqlite,
    /// A PostgreSQL server (shared by several idv nodes).
    Postgres,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        })
    }
}

/// A handle on the metadata database. Cloning is cheap: clones share one connection pool.
#[derive(Clone)]
pub struct MetadataDb {
    pub(crate) pool: Pool,
}

/// The open connection pool, one variant per backend.
#[derive(Clone)]
pub(crate) enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Evaluates `$body` with `$pool` bound to whichever backend's pool `$db` holds. The body is
/// written once and compiled once per backend, so both arms must produce the same type (map
/// driver-specific results such as `rows_affected()` inside the body).
macro_rules! on_pool {
    ($db:expr, $pool:ident => $body:expr) => {
        match &$db.pool {
            $crate::db::Pool::Sqlite($pool) => $body,
            $crate::db::Pool::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on_pool;

/// Declares a public enum stored as text (with a CHECK list in the migrations): `as_str` gives
/// the stored text, `parse` reads it back, `Display` shows it.
macro_rules! stored_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident as $what:literal {
            $($(#[$vmeta:meta])* $variant:ident => $text:literal,)+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every value, in the order declared.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The text stored in the database.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            /// The value whose stored text is `text`, if there is one.
            pub fn parse(text: &str) -> Option<Self> {
                match text {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }

            /// Reads a stored value back, reporting anything else as corruption.
            #[allow(dead_code)] // not every stored enum is read back
            pub(crate) fn from_stored(text: &str) -> $crate::db::Result<Self> {
                Self::parse(text).ok_or_else(|| $crate::db::DbError::Corrupt {
                    what: $what,
                    problem: format!("{text:?} is not one of {:?}", [$($text),+]),
                })
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
pub(crate) use stored_enum;

impl MetadataDb {
    /// Which backend this handle talks to.
    pub fn backend(&self) -> Backend {
        match self.pool {
            Pool::Sqlite(_) => Backend::Sqlite,
            Pool::Postgres(_) => Backend::Postgres,
        }
    }

    /// Closes every connection of the pool (all clones share it) and waits until they are
    /// closed; later operations fail. Call it on shutdown so SQLite can checkpoint its WAL.
    pub async fn close(&self) {
        on_pool!(self, pool => pool.close().await)
    }

    /// Wraps a driver error raised while doing `operation` (a phrase such as "reading an
    /// archive record").
    pub(crate) fn query_error(
        &self,
        operation: &'static str,
    ) -> impl FnOnce(sqlx::Error) -> DbError {
        let backend = self.backend();
        move |source| DbError::Query {
            backend,
            operation,
            source,
        }
    }
}

impl fmt::Debug for MetadataDb {
    // Deliberately not the pool's own Debug: PostgreSQL connect options carry the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetadataDb")
            .field("backend", &self.backend())
            .finish_non_exhaustive()
    }
}

/// The kind of constraint a driver error reports, if it is one.
pub(crate) fn constraint_violation(error: &sqlx::Error) -> Option<sqlx::error::ErrorKind> {
    match error {
        sqlx::Error::Database(db) => match db.kind() {
            sqlx::error::ErrorKind::Other => None,
            kind => Some(kind),
        },
        _ => None,
    }
}

/// A time as stored: unix microseconds (finer parts are dropped).
pub(crate) fn to_micros(at: OffsetDateTime) -> i64 {
    let micros = at.unix_timestamp_nanos().div_euclid(1_000);
    // `time` spans ±9999 years, about ±3.2e17 µs, well inside i64.
    i64::try_from(micros).unwrap_or(if micros < 0 { i64::MIN } else { i64::MAX })
}

/// A stored time back as a UTC date-time.
pub(crate) fn from_micros(what: &'static str, micros: i64) -> Result<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1_000).map_err(|e| {
        DbError::Corrupt {
            what,
            problem: format!("{micros} µs since 1970 is out of range ({e})"),
        }
    })
}

/// A stored UUID text back as a [`Uuid`].
pub(crate) fn parse_uuid(what: &'static str, text: &str) -> Result<Uuid> {
    Uuid::parse_str(text).map_err(|e| DbError::Corrupt {
        what,
        problem: format!("{text:?} is not a UUID ({e})"),
    })
}

/// An optional stored time back as a UTC date-time.
pub(crate) fn from_micros_opt(
    what: &'static str,
    micros: Option<i64>,
) -> Result<Option<OffsetDateTime>> {
    micros.map(|at| from_micros(what, at)).transpose()
}

/// A non-negative count or sequence number as stored (`i64`), refusing what does not fit.
pub(crate) fn stored_u64(what: &'static str, value: u64) -> Result<i64> {
    i64::try_from(value).map_err(|_| DbError::OutOfRange { what, value })
}

/// A stored non-negative integer back as `u64`.
pub(crate) fn read_u64(what: &'static str, value: i64) -> Result<u64> {
    u64::try_from(value).map_err(|_| DbError::Corrupt {
        what,
        problem: format!("{value} is negative"),
    })
}

/// A UUID as stored: lower-case hyphenated text.
pub(crate) fn uuid_text(id: Uuid) -> String {
    id.hyphenated().to_string()
}
