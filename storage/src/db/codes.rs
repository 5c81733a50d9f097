//! One-time connection codes and the join attempts that limit guessing them.
//!
//! # What is stored
//!
//! The 6-digit code is never stored. The caller stores, and later looks up, a **keyed hash**
//! of it, e.g. `HMAC-SHA256(server secret, group ‖ code)`. Looking a code up by that hash is
//! safe: without the server secret the hash reveals nothing about the code, and a lookup by
//! an indexed hash leaks at most whether *some* open code has that hash, which is what a
//! redemption answers anyway. Whatever the caller compares itself (e.g. a presented hash
//! against a stored one) it compares in constant time (`subtle`); the database only ever
//! sees hashes. Because the group is inside the hash and also checked in SQL, a code issued
//! in group A never opens a session of group B.
//!
//! At most one *open* code has a given hash (a partial unique index), so a redemption names
//! exactly one session; [`MetadataDb::insert_connection_code`] retires an expired holder of
//! the hash first and otherwise refuses with [`DbError::ConnectionCodeInUse`], and the
//! caller draws another code.
//!
//! # Brute-force limits, and how the ingest server combines them
//!
//! A wrong code cannot be attributed to the code it was meant to be: a guess that matches no
//! hash matches no row. So the limits are:
//!
//! * **Per session (session-bound links).** When the agent presents a link carrying the
//!   session id as well as the code, the server redeems with
//!   [`MetadataDb::redeem_session_code`]; on a miss it calls
//!   [`MetadataDb::record_code_failure`] for that session, which counts against the
//!   session's open codes and locks them at [`MAX_CODE_FAILURES`] wrong attempts. A locked
//!   code never redeems, even with the right digits; the operator issues a new one.
//! * **Per source address (every attempt).** Each attempt, right or wrong, is recorded with
//!   [`MetadataDb::record_join_attempt`]. *Before* redeeming, the server asks
//!   [`MetadataDb::join_failures_since`] for the source's failures in its window (say the
//!   last 15 minutes) and refuses, without even looking at the code, if they exceed its
//!   limit. A periodic task calls [`MetadataDb::prune_join_attempts`] to drop rows older
//!   than the longest window.
//!
//! With 10⁶ codes, a 10-minute lifetime and, say, 10 failures per source per 15 minutes, a
//! single source's chance of hitting any live code stays negligible; every attempt also goes
//! to the audit log, which is where a distributed guessing campaign shows up.

use std::fmt;

use sqlx::error::ErrorKind;
use time::OffsetDateTime;
use tracing::instrument;
use uuid::Uuid;

use super::sessions::{required, session_reference_error};
use super::{
    DbError, MetadataDb, Result, constraint_violation, from_micros, from_micros_opt, on_pool,
    parse_uuid, read_u64, stored_enum, to_micros, uuid_text,
};

/// Wrong attempts against a session's code after which the code is locked.
pub const MAX_CODE_FAILURES: u32 = 5;

/// The shortest and longest code hash accepted (e.g. a truncated or a full HMAC-SHA512).
const CODE_HASH_LEN: std::ops::RangeInclusive<usize> = 16..=64;

stored_enum! {
    /// Whether a connection code can still be redeemed.
    pub enum CodeState as "connection code state" {
        /// Redeemable until it expires.
        Open => "open",
        /// Redeemed; a code is used once.
        Used => "used",
        /// Too many wrong attempts against its session.
        Locked => "locked",
        /// Found past its expiry (codes past expiry are refused whether or not they were
        /// marked yet).
        Expired => "expired",
    }
}

/// A connection code to store.
#[derive(Clone, PartialEq, Eq)]
pub struct NewConnectionCode {
    /// The caller's keyed hash of group and code (16 to 64 bytes).
    pub code_hash: Vec<u8>,
    /// The session it opens.
    pub session_id: Uuid,
    /// The operator's group it is bound to.
    pub group: String,
    /// When it was issued.
    pub created_at: OffsetDateTime,
    /// The first instant at which it no longer redeems.
    pub expires_at: OffsetDateTime,
}

impl fmt::Debug for NewConnectionCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewConnectionCode")
            .field("code_hash", &"[redacted]")
            .field("session_id", &self.session_id)
            .field("group", &self.group)
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// A connection code as stored (its hash, never the code).
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectionCodeRecord {
    /// The row's id.
    pub code_id: Uuid,
    /// The caller's keyed hash.
    pub code_hash: Vec<u8>,
    /// The session it opens.
    pub session_id: Uuid,
    /// The group it is bound to.
    pub group: String,
    /// When it was issued.
    pub created_at: OffsetDateTime,
    /// When it stops redeeming.
    pub expires_at: OffsetDateTime,
    /// Whether it can still be redeemed.
    pub state: CodeState,
    /// When it was redeemed.
    pub used_at: Option<OffsetDateTime>,
    /// Wrong attempts counted against it.
    pub failed_attempts: u32,
    /// When it was locked.
    pub locked_at: Option<OffsetDateTime>,
}

impl fmt::Debug for ConnectionCodeRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionCodeRecord")
            .field("code_id", &self.code_id)
            .field("code_hash", &"[redacted]")
            .field("session_id", &self.session_id)
            .field("group", &self.group)
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .field("state", &self.state)
            .field("used_at", &self.used_at)
            .field("failed_attempts", &self.failed_attempts)
            .field("locked_at", &self.locked_at)
            .finish()
    }
}

/// What [`MetadataDb::record_code_failure`] did to a session's open codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodeFailure {
    /// The highest count of wrong attempts among the codes it counted against.
    pub failed_attempts: u32,
    /// Whether this failure locked them (the session has no open code left).
    pub locked: bool,
}

/// code_id, code_hash, session_id, group_name, created_at, expires_at, state, used_at,
/// failed_attempts, locked_at
type CodeRow = (
    String,
    Vec<u8>,
    String,
    String,
    i64,
    i64,
    String,
    Option<i64>,
    i64,
    Option<i64>,
);

fn from_row(row: CodeRow) -> Result<ConnectionCodeRecord> {
    let (id, hash, session_id, group, created_at, expires_at, state, used_at, failed, locked_at) =
        row;
    let failed = read_u64("connection code failure count", failed)?;
    Ok(ConnectionCodeRecord {
        code_id: parse_uuid("connection code id", &id)?,
        code_hash: hash,
        session_id: parse_uuid("connection code's session id", &session_id)?,
        group,
        created_at: from_micros("connection code issue time", created_at)?,
        expires_at: from_micros("connection code expiry", expires_at)?,
        state: CodeState::from_stored(&state)?,
        used_at: from_micros_opt("connection code use time", used_at)?,
        failed_attempts: u32::try_from(failed).unwrap_or(u32::MAX),
        locked_at: from_micros_opt("connection code lock time", locked_at)?,
    })
}

impl MetadataDb {
    /// Stores a connection code (as its keyed hash) for a session; returns the row's id.
    /// Refused with [`DbError::ConnectionCodeInUse`] while another open, unexpired code has
    /// the same hash (draw another code), and with [`DbError::SessionNotFound`] for an
    /// unknown session.
    #[instrument(skip_all, fields(session_id = %code.session_id))]
    pub async fn insert_connection_code(&self, code: &NewConnectionCode) -> Result<Uuid> {
        if !CODE_HASH_LEN.contains(&code.code_hash.len()) {
            return Err(DbError::InvalidCodeHash {
                len: code.code_hash.len(),
            });
        }
        required("the connection code's group", &code.group)?;
        let code_id = Uuid::new_v4();
        let created_at = to_micros(code.created_at);
        let inserted: std::result::Result<(), sqlx::Error> = on_pool!(self, pool => async {
            let mut tx = pool.begin().await?;
            // An expired code no longer holds its hash.
            sqlx::query(
                "UPDATE connection_codes SET state = 'expired' \
                 WHERE code_hash = $1 AND state = 'open' AND expires_at <= $2",
            )
            .bind(code.code_hash.as_slice())
            .bind(created_at)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO connection_codes \
                 (code_id, code_hash, session_id, group_name, created_at, expires_at, state) \
                 VALUES ($1, $2, $3, $4, $5, $6, 'open')",
            )
            .bind(uuid_text(code_id))
            .bind(code.code_hash.as_slice())
            .bind(uuid_text(code.session_id))
            .bind(code.group.as_str())
            .bind(created_at)
            .bind(to_micros(code.expires_at))
            .execute(&mut *tx)
            .await?;
            tx.commit().await
        }
        .await);
        inserted.map_err(|e| match constraint_violation(&e) {
            Some(ErrorKind::UniqueViolation) => DbError::ConnectionCodeInUse,
            _ => session_reference_error(self, code.session_id, "storing a connection code")(e),
        })?;
        Ok(code_id)
    }

    /// Redeems a code: atomically marks the open, unexpired (`now < expires_at`) code with
    /// this hash and group used, provided its session is still `created`, and returns the
    /// session. `None` for anything else (unknown, used, locked, expired, other group, session
    /// already joined or ended); the caller records the attempt either way.
    ///
    /// Single use under concurrency: the check and the marking are one `UPDATE`, so of any
    /// number of concurrent redemptions of one code exactly one gets the session.
    #[instrument(skip_all)]
    pub async fn redeem_connection_code(
        &self,
        code_hash: &[u8],
        group: &str,
        now: OffsetDateTime,
    ) -> Result<Option<Uuid>> {
        self.redeem(code_hash, group, None, now).await
    }

    /// Redeems a code presented with its session id (a session-bound link): as
    /// [`MetadataDb::redeem_connection_code`], but only a code of that session counts. On
    /// `None`, call [`MetadataDb::record_code_failure`] for the session.
    #[instrument(skip_all, fields(%session_id))]
    pub async fn redeem_session_code(
        &self,
        session_id: Uuid,
        code_hash: &[u8],
        group: &str,
        now: OffsetDateTime,
    ) -> Result<Option<Uuid>> {
        self.redeem(code_hash, group, Some(session_id), now).await
    }

    async fn redeem(
        &self,
        code_hash: &[u8],
        group: &str,
        session_id: Option<Uuid>,
        now: OffsetDateTime,
    ) -> Result<Option<Uuid>> {
        let redeemed: Option<(String,)> = on_pool!(self, pool => sqlx::query_as(
            "UPDATE connection_codes SET state = 'used', used_at = $3 \
             WHERE code_hash = $1 AND group_name = $2 AND state = 'open' AND expires_at > $3 \
             AND ($4 IS NULL OR session_id = $4) \
             AND EXISTS (SELECT 1 FROM sessions s \
                         WHERE s.session_id = connection_codes.session_id \
                         AND s.state = 'created') \
             RETURNING session_id",
        )
        .bind(code_hash)
        .bind(group)
        .bind(to_micros(now))
        .bind(session_id.map(uuid_text))
        .fetch_optional(pool)
        .await)
        .map_err(self.query_error("redeeming a connection code"))?;
        redeemed
            .map(|(id,)| parse_uuid("connection code's session id", &id))
            .transpose()
    }

    /// Counts a wrong code presented for `session_id` (a session-bound link) against the
    /// session's open codes, and locks them once they reach [`MAX_CODE_FAILURES`]. One
    /// atomic `UPDATE`, so concurrent wrong guesses are all counted. `None` if the session
    /// has no open code (nothing left to protect).
    #[instrument(skip_all, fields(%session_id))]
    pub async fn record_code_failure(
        &self,
        session_id: Uuid,
        now: OffsetDateTime,
    ) -> Result<Option<CodeFailure>> {
        let rows: Vec<(i64, String)> = on_pool!(self, pool => sqlx::query_as(
            "UPDATE connection_codes SET failed_attempts = failed_attempts + 1, \
             state = CASE WHEN failed_attempts + 1 >= $3 THEN 'locked' ELSE state END, \
             locked_at = CASE WHEN failed_attempts + 1 >= $3 THEN $2 ELSE locked_at END \
             WHERE session_id = $1 AND state = 'open' \
             RETURNING failed_attempts, state",
        )
        .bind(uuid_text(session_id))
        .bind(to_micros(now))
        .bind(i64::from(MAX_CODE_FAILURES))
        .fetch_all(pool)
        .await)
        .map_err(self.query_error("counting a wrong connection code"))?;
        let mut failure: Option<CodeFailure> = None;
        for (attempts, state) in rows {
            let attempts = read_u64("connection code failure count", attempts)?;
            let attempts = u32::try_from(attempts).unwrap_or(u32::MAX);
            let locked = CodeState::from_stored(&state)? == CodeState::Locked;
            failure = Some(match failure {
                None => CodeFailure {
                    failed_attempts: attempts,
                    locked,
                },
                Some(seen) => CodeFailure {
                    failed_attempts: seen.failed_attempts.max(attempts),
                    locked: seen.locked && locked,
                },
            });
        }
        Ok(failure)
    }

    /// Every connection code issued for a session, oldest first.
    pub async fn connection_codes(&self, session_id: Uuid) -> Result<Vec<ConnectionCodeRecord>> {
        let rows: Vec<CodeRow> = on_pool!(self, pool => sqlx::query_as(
            "SELECT code_id, code_hash, session_id, group_name, created_at, expires_at, state, \
             used_at, failed_attempts, locked_at FROM connection_codes \
             WHERE session_id = $1 ORDER BY created_at, code_id",
        )
        .bind(uuid_text(session_id))
        .fetch_all(pool)
        .await)
        .map_err(self.query_error("listing connection codes"))?;
        rows.into_iter().map(from_row).collect()
    }

    /// Marks open codes past their expiry `expired` (housekeeping: expired codes never redeem
    /// either way); returns how many.
    pub async fn expire_connection_codes(&self, now: OffsetDateTime) -> Result<u64> {
        on_pool!(self, pool => sqlx::query(
            "UPDATE connection_codes SET state = 'expired' \
             WHERE state = 'open' AND expires_at <= $1",
        )
        .bind(to_micros(now))
        .execute(pool)
        .await
        .map(|done| done.rows_affected()))
        .map_err(self.query_error("expiring connection codes"))
    }

    /// Records one attempt to join from `source` (the client address as the server sees it),
    /// successful or not.
    pub async fn record_join_attempt(
        &self,
        source: &str,
        at: OffsetDateTime,
        ok: bool,
    ) -> Result<()> {
        required("the join attempt's source", source)?;
        on_pool!(self, pool => sqlx::query(
            "INSERT INTO join_attempts (source, at, ok) VALUES ($1, $2, $3)",
        )
        .bind(source)
        .bind(to_micros(at))
        .bind(ok)
        .execute(pool)
        .await
        .map(|_| ()))
        .map_err(self.query_error("recording a join attempt"))
    }

    /// How many failed join attempts `source` made at or after `since`.
    pub async fn join_failures_since(&self, source: &str, since: OffsetDateTime) -> Result<u64> {
        let (count,): (i64,) = on_pool!(self, pool => sqlx::query_as(
            "SELECT COUNT(*) FROM join_attempts WHERE source = $1 AND at >= $2 AND ok = $3",
        )
        .bind(source)
        .bind(to_micros(since))
        .bind(false)
        .fetch_one(pool)
        .await)
        .map_err(self.query_error("counting failed join attempts"))?;
        read_u64("join failure count", count)
    }

    /// Deletes join attempts older than `before`; returns how many.
    pub async fn prune_join_attempts(&self, before: OffsetDateTime) -> Result<u64> {
        on_pool!(self, pool => sqlx::query("DELETE FROM join_attempts WHERE at < $1")
            .bind(to_micros(before))
            .execute(pool)
            .await
            .map(|done| done.rows_affected()))
        .map_err(self.query_error("pruning join attempts"))
    }
}
