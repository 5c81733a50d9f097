//! Archive records: where each sealed archive lives, which key-encryption key (KEK) wraps its
//! header, and whether it has been shredded.

use std::fmt;

use sqlx::error::ErrorKind;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{
    DbError, MetadataDb, Result, constraint_violation, from_micros, on_pool, parse_uuid, to_micros,
    uuid_text,
};

/// What the database knows about one sealed archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveRecord {
    /// The id written in the archive's header.
    pub archive_id: Uuid,
    /// The retention key that, with the KEK-wrapped half, yields the data key.
    pub key_id: Uuid,
    /// The keyring KEK that currently wraps the archive's header.
    pub kek_id: String,
    /// Where the sealed bytes are: `file:/abs/path` or `blob:key`.
    pub location: String,
    /// Plaintext length in bytes.
    pub payload_len: u64,
    /// Length of the sealed file in bytes.
    pub sealed_len: u64,
    /// When it was sealed (kept to the microsecond).
    pub created_at: OffsetDateTime,
    /// Whether it can still be opened.
    pub state: ArchiveState,
}

/// Whether an archive can still be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArchiveState {
    /// Readable by whoever holds both key halves.
    Sealed,
    /// Its retention key was destroyed: the bytes can never be decrypted again.
    Shredded,
}

impl ArchiveState {
    /// The text stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            ArchiveState::Sealed => "sealed",
            ArchiveState::Shredded => "shredded",
        }
    }

    fn from_stored(text: &str) -> Result<Self> {
        match text {
            "sealed" => Ok(ArchiveState::Sealed),
            "shredded" => Ok(ArchiveState::Shredded),
            other => Err(DbError::Corrupt {
                what: "archive state",
                problem: format!("{other:?} is neither \"sealed\" nor \"shredded\""),
            }),
        }
    }
}

impl fmt::Display for ArchiveState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// archive_id, key_id, kek_id, location, payload_len, sealed_len, created_at, state
type ArchiveRow = (String, String, String, String, i64, i64, i64, String);

fn from_row(row: ArchiveRow) -> Result<ArchiveRecord> {
    let (archive_id, key_id, kek_id, location, payload_len, sealed_len, created_at, state) = row;
    let len = |what, value: i64| {
        u64::try_from(value).map_err(|_| DbError::Corrupt {
            what,
            problem: format!("{value} is negative"),
        })
    };
    Ok(ArchiveRecord {
        archive_id: parse_uuid("archive id", &archive_id)?,
        key_id: parse_uuid("archive key id", &key_id)?,
        kek_id,
        location,
        payload_len: len("archive payload length", payload_len)?,
        sealed_len: len("archive sealed length", sealed_len)?,
        created_at: from_micros("archive creation time", created_at)?,
        state: ArchiveState::from_stored(&state)?,
    })
}

fn stored_len(what: &'static str, value: u64) -> Result<i64> {
    i64::try_from(value).map_err(|_| DbError::TooLarge { what, value })
}

impl MetadataDb {
    /// Records a sealed archive. Its retention key must already be stored for this archive
    /// ([`MetadataDb::insert_retention_key`]): the key is written first so that no archive
    /// ever exists whose key half was lost.
    pub async fn insert_archive(&self, rec: &ArchiveRecord) -> Result<()> {
        let payload_len = stored_len("the archive payload length", rec.payload_len)?;
        let sealed_len = stored_len("the sealed archive length", rec.sealed_len)?;
        let inserted = on_pool!(self, pool => sqlx::query(
            "INSERT INTO archives \
             (archive_id, key_id, kek_id, location, payload_len, sealed_len, created_at, state) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(uuid_text(rec.archive_id))
        .bind(uuid_text(rec.key_id))
        .bind(rec.kek_id.as_str())
        .bind(rec.location.as_str())
        .bind(payload_len)
        .bind(sealed_len)
        .bind(to_micros(rec.created_at))
        .bind(rec.state.as_str())
        .execute(pool)
        .await
        .map(|_| ()));
        inserted.map_err(|e| match constraint_violation(&e) {
            Some(ErrorKind::UniqueViolation) => DbError::ArchiveExists {
                archive_id: rec.archive_id,
                key_id: rec.key_id,
            },
            Some(ErrorKind::ForeignKeyViolation) => DbError::RetentionKeyMissing {
                archive_id: rec.archive_id,
                key_id: rec.key_id,
            },
            _ => self.query_error("recording an archive")(e),
        })
    }

    /// The record of one archive, if there is one.
    pub async fn archive(&self, archive_id: Uuid) -> Result<Option<ArchiveRecord>> {
        let row: Option<ArchiveRow> = on_pool!(self, pool => sqlx::query_as(
            "SELECT archive_id, key_id, kek_id, location, payload_len, sealed_len, created_at, \
             state FROM archives WHERE archive_id = $1",
        )
        .bind(uuid_text(archive_id))
        .fetch_optional(pool)
        .await)
        .map_err(self.query_error("reading an archive record"))?;
        row.map(from_row).transpose()
    }

    /// Every archive record, sealed or shredded, oldest first.
    pub async fn archives(&self) -> Result<Vec<ArchiveRecord>> {
        let rows: Vec<ArchiveRow> = on_pool!(self, pool => sqlx::query_as(
            "SELECT archive_id, key_id, kek_id, location, payload_len, sealed_len, created_at, \
             state FROM archives ORDER BY created_at, archive_id",
        )
        .fetch_all(pool)
        .await)
        .map_err(self.query_error("listing archive records"))?;
        rows.into_iter().map(from_row).collect()
    }

    /// The sealed (not shredded) archives whose header is wrapped by `kek_id`, oldest first:
    /// what must be rewrapped before that KEK can be retired.
    pub async fn archives_wrapped_by(&self, kek_id: &str) -> Result<Vec<ArchiveRecord>> {
        let rows: Vec<ArchiveRow> = on_pool!(self, pool => sqlx::query_as(
            "SELECT archive_id, key_id, kek_id, location, payload_len, sealed_len, created_at, \
             state FROM archives WHERE kek_id = $1 AND state = 'sealed' \
             ORDER BY created_at, archive_id",
        )
        .bind(kek_id)
        .fetch_all(pool)
        .await)
        .map_err(self.query_error("listing the archives wrapped by a KEK"))?;
        rows.into_iter().map(from_row).collect()
    }

    /// Records that a sealed archive's header is now wrapped by `kek_id` (after a rewrap).
    pub async fn set_archive_kek(&self, archive_id: Uuid, kek_id: &str) -> Result<()> {
        let updated = on_pool!(self, pool => sqlx::query(
            "UPDATE archives SET kek_id = $2 WHERE archive_id = $1 AND state = 'sealed'",
        )
        .bind(uuid_text(archive_id))
        .bind(kek_id)
        .execute(pool)
        .await
        .map(|done| done.rows_affected()))
        .map_err(self.query_error("recording an archive's new KEK"))?;
        if updated == 1 {
            Ok(())
        } else {
            Err(self.why_unchangeable(archive_id).await?)
        }
    }

    /// Marks an archive shredded once its retention key has been destroyed
    /// ([`MetadataDb::destroy_retention_key`]). Marking an already shredded archive again
    /// changes nothing.
    pub async fn mark_archive_shredded(&self, archive_id: Uuid) -> Result<()> {
        let updated = on_pool!(self, pool => sqlx::query(
            "UPDATE archives SET state = 'shredded' WHERE archive_id = $1 AND EXISTS \
             (SELECT 1 FROM retention_keys k \
              WHERE k.key_id = archives.key_id AND k.destroyed_at IS NOT NULL)",
        )
        .bind(uuid_text(archive_id))
        .execute(pool)
        .await
        .map(|done| done.rows_affected()))
        .map_err(self.query_error("marking an archive shredded"))?;
        if updated == 1 {
            return Ok(());
        }
        match self.archive(archive_id).await? {
            None => Err(DbError::ArchiveNotFound { archive_id }),
            Some(rec) => Err(DbError::RetentionKeyNotDestroyed {
                archive_id,
                key_id: rec.key_id,
            }),
        }
    }

    /// Deletes the record of an archive whose sealing failed. Shredded archives keep their
    /// record as evidence and are refused; an id with no record is a no-op.
    pub async fn delete_archive(&self, archive_id: Uuid) -> Result<()> {
        let deleted = on_pool!(self, pool => sqlx::query(
            "DELETE FROM archives WHERE archive_id = $1 AND state = 'sealed'",
        )
        .bind(uuid_text(archive_id))
        .execute(pool)
        .await
        .map(|done| done.rows_affected()))
        .map_err(self.query_error("deleting an archive record"))?;
        if deleted == 0 && self.archive(archive_id).await?.is_some() {
            return Err(DbError::ArchiveShredded { archive_id });
        }
        Ok(())
    }

    /// Why a sealed-only update touched no row.
    async fn why_unchangeable(&self, archive_id: Uuid) -> Result<DbError> {
        Ok(match self.archive(archive_id).await? {
            None => DbError::ArchiveNotFound { archive_id },
            Some(_) => DbError::ArchiveShredded { archive_id },
        })
    }
}
