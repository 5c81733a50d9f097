//! Rows of the audit log and its head, as stored. What the hash chain means, and how it is
//! verified, is [`crate::audit`]'s business; this module only reads and appends rows, taking
//! the lock that makes appends from many tasks and processes form one chain.

use std::time::Duration;

use sqlx::error::ErrorKind;

use super::{Backend, DbError, MetadataDb, Pool, Result, constraint_violation, on_pool};

/// One audit entry exactly as stored; hashes are left as bytes so that verification can look
/// at rows that were tampered with.
#[derive(Debug, Clone)]
pub(crate) struct AuditRow {
    pub seq: i64,
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub object: String,
    pub reason: Option<String>,
    pub outcome: String,
    pub prev_hash: Vec<u8>,
    pub hash: Vec<u8>,
}

/// seq, at, actor, action, object, reason, outcome, prev_hash, hash
type RawRow = (
    i64,
    i64,
    String,
    String,
    String,
    Option<String>,
    String,
    Vec<u8>,
    Vec<u8>,
);

impl From<RawRow> for AuditRow {
    fn from(row: RawRow) -> Self {
        let (seq, at, actor, action, object, reason, outcome, prev_hash, hash) = row;
        AuditRow {
            seq,
            at,
            actor,
            action,
            object,
            reason,
            outcome,
            prev_hash,
            hash,
        }
    }
}

/// How many times an append is tried when the database reports contention.
const APPEND_ATTEMPTS: u32 = 8;

/// What one append attempt found.
enum Attempt {
    Appended(AuditRow),
    HeadMissing,
    HeadCorrupt(usize),
}

/// Appends inside the open transaction `$tx`, whose head query `$head_sql` holds the write
/// lock (SQLite: `BEGIN IMMEDIATE`; PostgreSQL: `FOR UPDATE`).
macro_rules! append_in_transaction {
    ($tx:ident, $head_sql:expr, $seal:ident) => {{
        let head: Option<(i64, Vec<u8>)> =
            sqlx::query_as($head_sql).fetch_optional(&mut *$tx).await?;
        let Some((head_seq, head_hash)) = head else {
            return Ok(Attempt::HeadMissing);
        };
        let Ok(head_hash) = <[u8; 32]>::try_from(head_hash.as_slice()) else {
            return Ok(Attempt::HeadCorrupt(head_hash.len()));
        };
        let row = $seal(head_seq + 1, head_hash);
        sqlx::query(
            "INSERT INTO audit_log \
             (seq, at, actor, action, object, reason, outcome, prev_hash, hash) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(row.seq)
        .bind(row.at)
        .bind(row.actor.as_str())
        .bind(row.action.as_str())
        .bind(row.object.as_str())
        .bind(row.reason.as_deref())
        .bind(row.outcome.as_str())
        .bind(row.prev_hash.as_slice())
        .bind(row.hash.as_slice())
        .execute(&mut *$tx)
        .await?;
        sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1")
            .bind(row.seq)
            .bind(row.hash.as_slice())
            .execute(&mut *$tx)
            .await?;
        $tx.commit().await?;
        Ok(Attempt::Appended(row))
    }};
}

impl MetadataDb {
    /// Appends one entry after the current head, in one transaction that also advances the
    /// head. `seal(seq, prev_hash)` builds the row to store; it may be called more than once
    /// if the database asks for a retry.
    pub(crate) async fn append_audit_row<F>(&self, seal: F) -> Result<AuditRow>
    where
        F: Fn(i64, [u8; 32]) -> AuditRow,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let error = match self.try_append(&seal).await {
                Ok(Attempt::Appended(row)) => return Ok(row),
                Ok(Attempt::HeadMissing) => return Err(DbError::AuditHeadMissing),
                Ok(Attempt::HeadCorrupt(len)) => {
                    return Err(DbError::Corrupt {
                        what: "audit head hash",
                        problem: format!("it is {len} bytes long, not 32"),
                    });
                }
                Err(error) => error,
            };
            let taken = constraint_violation(&error) == Some(ErrorKind::UniqueViolation);
            if attempt < APPEND_ATTEMPTS && (taken || is_contention(self.backend(), &error)) {
                // Back off a little longer each time so competing writers spread out.
                tokio::time::sleep(Duration::from_millis(2u64 << attempt.min(6))).await;
                continue;
            }
            if taken {
                let seq = self.audit_head().await?.map_or(1, |(seq, _)| seq + 1);
                return Err(DbError::AuditSeqTaken { seq });
            }
            return Err(self.query_error("appending to the audit log")(error));
        }
    }

    async fn try_append<F>(&self, seal: &F) -> std::result::Result<Attempt, sqlx::Error>
    where
        F: Fn(i64, [u8; 32]) -> AuditRow,
    {
        match &self.pool {
            Pool::Sqlite(pool) => {
                // IMMEDIATE takes the write lock up front, so no other writer can slip in
                // between reading the head and advancing it.
                let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                append_in_transaction!(tx, "SELECT seq, hash FROM audit_head WHERE id = 1", seal)
            }
            Pool::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                append_in_transaction!(
                    tx,
                    "SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE",
                    seal
                )
            }
        }
    }

    /// The head's seq and hash, or `None` if its row is missing.
    pub(crate) async fn audit_head(&self) -> Result<Option<(i64, Vec<u8>)>> {
        on_pool!(self, pool => sqlx::query_as("SELECT seq, hash FROM audit_head WHERE id = 1")
            .fetch_optional(pool)
            .await)
        .map_err(self.query_error("reading the audit head"))
    }

    /// Up to `limit` rows with `after_seq < seq <= through_seq`, in seq order.
    pub(crate) async fn audit_rows(
        &self,
        after_seq: i64,
        through_seq: i64,
        limit: i64,
    ) -> Result<Vec<AuditRow>> {
        let rows: Vec<RawRow> = on_pool!(self, pool => sqlx::query_as(
            "SELECT seq, at, actor, action, object, reason, outcome, prev_hash, hash \
             FROM audit_log WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT $3",
        )
        .bind(after_seq)
        .bind(through_seq)
        .bind(limit.max(0))
        .fetch_all(pool)
        .await)
        .map_err(self.query_error("reading audit entries"))?;
        Ok(rows.into_iter().map(AuditRow::from).collect())
    }

    /// Rows other than `seq` whose recorded predecessor hash is `prev_hash`. Only used to
    /// explain a break, so it may scan the table.
    pub(crate) async fn audit_rows_linked_to(
        &self,
        prev_hash: &[u8],
        seq: i64,
    ) -> Result<Vec<AuditRow>> {
        let rows: Vec<RawRow> = on_pool!(self, pool => sqlx::query_as(
            "SELECT seq, at, actor, action, object, reason, outcome, prev_hash, hash \
             FROM audit_log WHERE prev_hash = $1 AND seq <> $2 ORDER BY seq",
        )
        .bind(prev_hash)
        .bind(seq)
        .fetch_all(pool)
        .await)
        .map_err(self.query_error("searching the audit log"))?;
        Ok(rows.into_iter().map(AuditRow::from).collect())
    }

    /// The head's seq and the highest stored seq, read in one statement so that a concurrent
    /// append (which moves both together) cannot make them disagree.
    pub(crate) async fn audit_extent(&self) -> Result<(Option<i64>, Option<i64>)> {
        on_pool!(self, pool => sqlx::query_as(
            "SELECT (SELECT seq FROM audit_head WHERE id = 1), (SELECT MAX(seq) FROM audit_log)",
        )
        .fetch_one(pool)
        .await)
        .map_err(self.query_error("reading the extent of the audit log"))
    }
}

/// Whether the database refused only because of concurrent writers, so trying again helps.
fn is_contention(backend: Backend, error: &sqlx::Error) -> bool {
    let sqlx::Error::Database(db) = error else {
        return false;
    };
    let Some(code) = db.code() else {
        return false;
    };
    match backend {
        // Extended result codes; the low byte is the primary code: BUSY = 5, LOCKED = 6.
        Backend::Sqlite => code
            .parse::<i32>()
            .is_ok_and(|code| matches!(code & 0xff, 5 | 6)),
        // SQLSTATE: serialization failure, deadlock detected.
        Backend::Postgres => matches!(&*code, "40001" | "40P01"),
    }
}
