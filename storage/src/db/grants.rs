//! Recordings opened for a stated reason (the console's *grants*): who opened which session's
//! archive, why, until when, and whether playing it was audited yet. Kept in the database so
//! that every console node behind a load balancer serves the same grant; the grant's id is a
//! secret in the page's links, so only its SHA-256 is stored.

use std::fmt;

use time::OffsetDateTime;
use uuid::Uuid;

use super::sessions::required;
use super::{MetadataDb, Result, from_micros, on_pool, parse_uuid, to_micros, uuid_text};

/// A recording opened for a reason.
#[derive(Clone, PartialEq, Eq)]
pub struct RecordingGrant {
    /// SHA-256 of the grant's id.
    pub grant_hash: [u8; 32],
    /// Who opened it.
    pub user_id: Uuid,
    /// The session.
    pub session_id: Uuid,
    /// Its archive.
    pub archive_id: Uuid,
    /// The stated reason.
    pub reason: String,
    /// When it was opened.
    pub opened_at: OffsetDateTime,
    /// Until when it may be used.
    pub expires_at: OffsetDateTime,
}

impl fmt::Debug for RecordingGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordingGrant")
            .field("user_id", &self.user_id)
            .field("session_id", &self.session_id)
            .field("archive_id", &self.archive_id)
            .field("reason", &self.reason)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// What the database keeps of a grant's id: its SHA-256.
#[must_use]
pub fn grant_hash(id: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(id.as_bytes()).into()
}

type GrantRow = (String, String, String, String, i64, i64);

impl MetadataDb {
    /// Records a grant.
    pub async fn insert_recording_grant(&self, grant: &RecordingGrant) -> Result<()> {
        required("the reason", &grant.reason)?;
        on_pool!(self, pool => sqlx::query(
            "INSERT INTO recording_grants (grant_hash, user_id, session_id, archive_id, reason, \
             opened_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(grant.grant_hash.as_slice())
        .bind(uuid_text(grant.user_id))
        .bind(uuid_text(grant.session_id))
        .bind(uuid_text(grant.archive_id))
        .bind(grant.reason.as_str())
        .bind(to_micros(grant.opened_at))
        .bind(to_micros(grant.expires_at))
        .execute(pool)
        .await
        .map(|_| ()))
        .map_err(self.query_error("recording a grant"))
    }

    /// The grant whose id hashes to `grant_hash`, if it is still valid at `now`.
    pub async fn recording_grant(
        &self,
        grant_hash: &[u8; 32],
        now: OffsetDateTime,
    ) -> Result<Option<RecordingGrant>> {
        let row: Option<GrantRow> = on_pool!(self, pool => sqlx::query_as(
            "SELECT user_id, session_id, archive_id, reason, opened_at, expires_at \
             FROM recording_grants WHERE grant_hash = $1 AND expires_at > $2",
        )
        .bind(grant_hash.as_slice())
        .bind(to_micros(now))
        .fetch_optional(pool)
        .await)
        .map_err(self.query_error("reading a grant"))?;
        row.map(|(user, session, archive, reason, opened_at, expires_at)| {
            Ok(RecordingGrant {
                grant_hash: *grant_hash,
                user_id: parse_uuid("grant's user", &user)?,
                session_id: parse_uuid("grant's session", &session)?,
                archive_id: parse_uuid("grant's archive", &archive)?,
                reason,
                opened_at: from_micros("grant's opening", opened_at)?,
                expires_at: from_micros("grant's expiry", expires_at)?,
            })
        })
        .transpose()
    }

    /// Marks a grant played; whether this was the first time (on any node: one of several
    /// racing callers gets `true`).
    pub async fn mark_recording_grant_played(&self, grant_hash: &[u8; 32]) -> Result<bool> {
        on_pool!(self, pool => sqlx::query(
            "UPDATE recording_grants SET played = TRUE WHERE grant_hash = $1 AND NOT played",
        )
        .bind(grant_hash.as_slice())
        .execute(pool)
        .await
        .map(|done| done.rows_affected() == 1))
        .map_err(self.query_error("marking a grant played"))
    }

    /// Forgets the grants that expired before `now`; how many.
    pub async fn delete_expired_recording_grants(&self, now: OffsetDateTime) -> Result<u64> {
        on_pool!(self, pool => sqlx::query("DELETE FROM recording_grants WHERE expires_at <= $1")
        .bind(to_micros(now))
        .execute(pool)
        .await
        .map(|done| done.rows_affected()))
        .map_err(self.query_error("forgetting expired grants"))
    }
}
