//! Retention keys: the half of each archive's data key that lives only in this database.
//! Destroying it crypto-shreds the archive; the row remains, saying when and why.

use std::fmt;

use sqlx::error::ErrorKind;
use time::OffsetDateTime;
use tracing::{instrument, warn};
use uuid::Uuid;
use zeroize::Zeroizing;

use super::{
    DbError, MetadataDb, Pool, Result, constraint_violation, from_micros, on_pool, parse_uuid,
    to_micros, uuid_text,
};

/// One archive's retention key as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct RetentionKeyRecord {
    /// The key's id, named in the archive's header and record.
    pub key_id: Uuid,
    /// The archive it belongs to.
    pub archive_id: Uuid,
    /// The secret, or `None` once destroyed. Zeroed in memory when dropped.
    pub secret: Option<Zeroizing<[u8; 32]>>,
    /// When it was stored (kept to the microsecond).
    pub created_at: OffsetDateTime,
    /// When it was destroyed, if it was.
    pub destroyed_at: Option<OffsetDateTime>,
    /// Why it was destroyed, if it was.
    pub destroy_reason: Option<String>,
}

impl fmt::Debug for RetentionKeyRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetentionKeyRecord")
            .field("key_id", &self.key_id)
            .field("archive_id", &self.archive_id)
            .field(
                "secret",
                &match self.secret {
                    Some(_) => "[redacted]",
                    None => "[destroyed]",
                },
            )
            .field("created_at", &self.created_at)
            .field("destroyed_at", &self.destroyed_at)
            .field("destroy_reason", &self.destroy_reason)
            .finish()
    }
}

/// key_id, archive_id, secret, created_at, destroyed_at, destroy_reason
type KeyRow = (
    String,
    String,
    Option<Vec<u8>>,
    i64,
    Option<i64>,
    Option<String>,
);

fn from_row(row: KeyRow) -> Result<RetentionKeyRecord> {
    let (key_id, archive_id, secret, created_at, destroyed_at, destroy_reason) = row;
    let secret = match secret.map(Zeroizing::new) {
        None => None,
        Some(bytes) => {
            let mut key = Zeroizing::new([0u8; 32]);
            if bytes.len() != key.len() {
                return Err(DbError::Corrupt {
                    what: "retention key",
                    problem: format!("it is {} bytes long, not 32", bytes.len()),
                });
            }
            key.copy_from_slice(&bytes);
            Some(key)
        }
    };
    Ok(RetentionKeyRecord {
        key_id: parse_uuid("retention key id", &key_id)?,
        archive_id: parse_uuid("retention key's archive id", &archive_id)?,
        secret,
        created_at: from_micros("retention key creation time", created_at)?,
        destroyed_at: destroyed_at
            .map(|at| from_micros("retention key destruction time", at))
            .transpose()?,
        destroy_reason,
    })
}

impl MetadataDb {
    /// Stores a fresh retention key for an archive about to be sealed. Store it before the
    /// archive record ([`MetadataDb::insert_archive`] refuses an archive whose key is not
    /// stored).
    pub async fn insert_retention_key(
        &self,
        key_id: Uuid,
        archive_id: Uuid,
        secret: &[u8; 32],
    ) -> Result<()> {
        let created_at = to_micros(OffsetDateTime::now_utc());
        let inserted = on_pool!(self, pool => sqlx::query(
            "INSERT INTO retention_keys (key_id, archive_id, secret, created_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(uuid_text(key_id))
        .bind(uuid_text(archive_id))
        .bind(&secret[..])
        .bind(created_at)
        .execute(pool)
        .await
        .map(|_| ()));
        inserted.map_err(|e| match constraint_violation(&e) {
            Some(ErrorKind::UniqueViolation) => DbError::RetentionKeyExists { key_id, archive_id },
            _ => self.query_error("storing a retention key")(e),
        })
    }

    /// One retention key, destroyed or not, if it is stored.
    pub async fn retention_key(&self, key_id: Uuid) -> Result<Option<RetentionKeyRecord>> {
        let row: Option<KeyRow> = on_pool!(self, pool => sqlx::query_as(
            "SELECT key_id, archive_id, secret, created_at, destroyed_at, destroy_reason \
             FROM retention_keys WHERE key_id = $1",
        )
        .bind(uuid_text(key_id))
        .fetch_optional(pool)
        .await)
        .map_err(self.query_error("reading a retention key"))?;
        row.map(from_row).transpose()
    }

    /// Destroys a retention key, which crypto-shreds its archive: overwrites the secret with
    /// NULL and records when and why. Returns `false` if the key is absent or already
    /// destroyed (the first destruction's time and reason are kept).
    ///
    /// On SQLite, `secure_delete` zeroes the old bytes in the page, and the WAL is then
    /// checkpointed and truncated so no older copy of the page survives in it. On PostgreSQL
    /// the previous row version stays in the table file until `VACUUM` reclaims it, and in any
    /// WAL archive or backup taken before; plan vacuuming and backup retention accordingly.
    #[instrument(skip_all, fields(%key_id))]
    pub async fn destroy_retention_key(
        &self,
        key_id: Uuid,
        at: OffsetDateTime,
        reason: &str,
    ) -> Result<bool> {
        if reason.trim().is_empty() {
            return Err(DbError::MissingDestroyReason);
        }
        let destroyed = on_pool!(self, pool => sqlx::query(
            "UPDATE retention_keys SET secret = NULL, destroyed_at = $2, destroy_reason = $3 \
             WHERE key_id = $1 AND destroyed_at IS NULL",
        )
        .bind(uuid_text(key_id))
        .bind(to_micros(at))
        .bind(reason)
        .execute(pool)
        .await
        .map(|done| done.rows_affected() == 1))
        .map_err(self.query_error("destroying a retention key"))?;
        if destroyed {
            self.purge_old_page_copies().await;
        }
        Ok(destroyed)
    }

    /// Deletes the row of a key whose archive failed to seal. Never the way to shred: it is
    /// refused while an archive record names the key. An id with no row is a no-op. On
    /// SQLite the key's bytes are purged from the files as by
    /// [`MetadataDb::destroy_retention_key`].
    pub async fn delete_retention_key(&self, key_id: Uuid) -> Result<()> {
        let deleted = on_pool!(self, pool => sqlx::query(
            "DELETE FROM retention_keys WHERE key_id = $1",
        )
        .bind(uuid_text(key_id))
        .execute(pool)
        .await
        .map(|done| done.rows_affected() == 1));
        let deleted = deleted.map_err(|e| match constraint_violation(&e) {
            Some(ErrorKind::ForeignKeyViolation) => DbError::RetentionKeyInUse { key_id },
            _ => self.query_error("deleting a retention key")(e),
        })?;
        if deleted {
            self.purge_old_page_copies().await;
        }
        Ok(())
    }

    /// After key bytes were removed on SQLite: copies the WAL into the database file (where
    /// `secure_delete` has zeroed the old bytes) and truncates the WAL, whose older frames
    /// still hold the secret. The removal itself is already committed, so a failure here is
    /// logged rather than returned; the next checkpoint finishes the job.
    pub(super) async fn purge_old_page_copies(&self) {
        let Pool::Sqlite(pool) = &self.pool else {
            return;
        };
        let checkpoint: std::result::Result<(i64, i64, i64), _> =
            sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)")
                .fetch_one(pool)
                .await;
        match checkpoint {
            Ok((0, _, _)) => {}
            Ok(_) => warn!(
                "a reader kept the SQLite WAL busy: copies of the destroyed key stay in \
                 idv.db-wal until the next checkpoint"
            ),
            Err(error) => warn!(
                %error,
                "could not checkpoint the SQLite WAL: copies of the destroyed key stay in \
                 idv.db-wal until the next checkpoint"
            ),
        }
    }
}
