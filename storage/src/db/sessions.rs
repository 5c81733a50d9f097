//! Sessions: one remote identification or support call, opened by an operator of a group, and
//! the state it is in. State changes are compare-and-set in SQL, so two nodes (or two tasks)
//! racing to move the same session agree on which one did it.

use std::fmt;

use sqlx::error::ErrorKind;
use time::OffsetDateTime;
use tracing::instrument;
use uuid::Uuid;

use super::{
    DbError, MetadataDb, Result, constraint_violation, from_micros, from_micros_opt, on_pool,
    parse_uuid, stored_enum, to_micros, uuid_text,
};

stored_enum! {
    /// Where a session stands: `created → joined → consented → live → ended`, and from any
    /// state but `ended` straight to `ended` (by either side, or by timeout).
    pub enum SessionState as "session state" {
        /// The operator created it; its connection code is out.
        Created => "created",
        /// The customer's agent redeemed the code.
        Joined => "joined",
        /// The customer consented; the agent may send media.
        Consented => "consented",
        /// Media is flowing.
        Live => "live",
        /// Over, for good.
        Ended => "ended",
    }
}

impl SessionState {
    /// Whether the state machine has an edge from `self` to `to`.
    pub fn can_become(self, to: SessionState) -> bool {
        use SessionState::*;
        matches!(
            (self, to),
            (Created, Joined)
                | (Joined, Consented)
                | (Consented, Live)
                | (Created | Joined | Consented | Live, Ended)
        )
    }
}

/// What the operator's request creates.
#[derive(Clone, PartialEq, Eq)]
pub struct NewSession {
    /// A fresh id.
    pub session_id: Uuid,
    /// The operator's group: only codes and links of this group open the session.
    pub group: String,
    /// The operator who created it (id or name).
    pub created_by: String,
    /// When.
    pub created_at: OffsetDateTime,
    /// The session media key, already wrapped by the caller (e.g. under a keyring KEK). Stored
    /// as opaque bytes; this crate never sees the key in clear.
    pub wrapped_media_key: Vec<u8>,
    /// The case or customer reference the operator gave, if any.
    pub case_reference: Option<String>,
}

impl fmt::Debug for NewSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewSession")
            .field("session_id", &self.session_id)
            .field("group", &self.group)
            .field("created_by", &self.created_by)
            .field("created_at", &self.created_at)
            .field(
                "wrapped_media_key",
                &Redacted(Some(&self.wrapped_media_key)),
            )
            .finish()
    }
}

/// A session as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// Its id.
    pub session_id: Uuid,
    /// The operator's group.
    pub group: String,
    /// The operator who created it.
    pub created_by: String,
    /// When it was created (kept to the microsecond).
    pub created_at: OffsetDateTime,
    /// Where it stands.
    pub state: SessionState,
    /// When it entered that state.
    pub state_changed_at: OffsetDateTime,
    /// When it ended, once it has.
    pub ended_at: Option<OffsetDateTime>,
    /// Why it ended (e.g. "operator", "customer", "timeout"), if a reason was given.
    pub end_reason: Option<String>,
    /// The wrapped session media key, or `None` once forgotten
    /// ([`MetadataDb::forget_session_media_key`]).
    pub wrapped_media_key: Option<Vec<u8>>,
    /// The case or customer reference the operator gave, if any.
    pub case_reference: Option<String>,
}

impl fmt::Debug for SessionRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionRecord")
            .field("session_id", &self.session_id)
            .field("group", &self.group)
            .field("created_by", &self.created_by)
            .field("created_at", &self.created_at)
            .field("state", &self.state)
            .field("state_changed_at", &self.state_changed_at)
            .field("ended_at", &self.ended_at)
            .field("end_reason", &self.end_reason)
            .field(
                "wrapped_media_key",
                &Redacted(self.wrapped_media_key.as_deref()),
            )
            .finish()
    }
}

/// Shows a key's length only.
struct Redacted<'a>(Option<&'a [u8]>);

impl fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(bytes) => write!(f, "[redacted, {} bytes]", bytes.len()),
            None => f.write_str("[forgotten]"),
        }
    }
}

/// Which sessions [`MetadataDb::sessions`] lists; the default lists all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionFilter {
    /// Only sessions in this state.
    pub state: Option<SessionState>,
    /// Only sessions of this group.
    pub group: Option<String>,
}

/// The columns a [`SessionRow`] reads, for `concat!` into query texts.
macro_rules! session_columns {
    () => {
        "session_id, group_name, created_by, created_at, state, state_changed_at, ended_at, \
         end_reason, media_key_wrapped, case_reference"
    };
}

/// The columns of `session_columns!`, in order.
type SessionRow = (
    String,
    String,
    String,
    i64,
    String,
    i64,
    Option<i64>,
    Option<String>,
    Option<Vec<u8>>,
    Option<String>,
);

fn from_row(row: SessionRow) -> Result<SessionRecord> {
    let (id, group, created_by, created_at, state, changed, ended_at, end_reason, key, case) = row;
    Ok(SessionRecord {
        session_id: parse_uuid("session id", &id)?,
        group,
        created_by,
        created_at: from_micros("session creation time", created_at)?,
        state: SessionState::from_stored(&state)?,
        state_changed_at: from_micros("session state change time", changed)?,
        ended_at: from_micros_opt("session end time", ended_at)?,
        end_reason,
        wrapped_media_key: key,
        case_reference: case,
    })
}

/// Refuses an empty (or blank) text where something must be said.
pub(crate) fn required(what: &'static str, text: &str) -> Result<()> {
    if text.trim().is_empty() {
        Err(DbError::EmptyField { what })
    } else {
        Ok(())
    }
}

impl MetadataDb {
    /// Creates a session in state `created` and returns it as stored.
    #[instrument(skip_all, fields(session_id = %new.session_id))]
    pub async fn create_session(&self, new: &NewSession) -> Result<SessionRecord> {
        required("the session's group", &new.group)?;
        required("the session's creator", &new.created_by)?;
        if new.wrapped_media_key.is_empty() {
            return Err(DbError::EmptyField {
                what: "the wrapped session media key",
            });
        }
        let created_at = to_micros(new.created_at);
        let inserted = on_pool!(self, pool => sqlx::query(
            "INSERT INTO sessions (session_id, group_name, created_by, created_at, state, \
             state_changed_at, media_key_wrapped, case_reference) \
             VALUES ($1, $2, $3, $4, 'created', $4, $5, $6)",
        )
        .bind(uuid_text(new.session_id))
        .bind(new.group.as_str())
        .bind(new.created_by.as_str())
        .bind(created_at)
        .bind(new.wrapped_media_key.as_slice())
        .bind(new.case_reference.as_deref())
        .execute(pool)
        .await
        .map(|_| ()));
        inserted.map_err(|e| match constraint_violation(&e) {
            Some(ErrorKind::UniqueViolation) => DbError::SessionExists {
                session_id: new.session_id,
            },
            _ => self.query_error("creating a session")(e),
        })?;
        let at = from_micros("session creation time", created_at)?;
        Ok(SessionRecord {
            session_id: new.session_id,
            group: new.group.clone(),
            created_by: new.created_by.clone(),
            created_at: at,
            state: SessionState::Created,
            state_changed_at: at,
            ended_at: None,
            end_reason: None,
            wrapped_media_key: Some(new.wrapped_media_key.clone()),
            case_reference: new.case_reference.clone(),
        })
    }

    /// One session, if it exists.
    pub async fn session(&self, session_id: Uuid) -> Result<Option<SessionRecord>> {
        let row: Option<SessionRow> = on_pool!(self, pool => sqlx::query_as(concat!(
            "SELECT ", session_columns!(), " FROM sessions WHERE session_id = $1"
        ))
        .bind(uuid_text(session_id))
        .fetch_optional(pool)
        .await)
        .map_err(self.query_error("reading a session"))?;
        row.map(from_row).transpose()
    }

    /// The sessions `filter` selects, oldest first.
    pub async fn sessions(&self, filter: &SessionFilter) -> Result<Vec<SessionRecord>> {
        let rows: Vec<SessionRow> = on_pool!(self, pool => sqlx::query_as(concat!(
            "SELECT ", session_columns!(), " FROM sessions \
             WHERE ($1 IS NULL OR state = $1) AND ($2 IS NULL OR group_name = $2) \
             ORDER BY created_at, session_id"
        ))
        .bind(filter.state.map(SessionState::as_str))
        .bind(filter.group.as_deref())
        .fetch_all(pool)
        .await)
        .map_err(self.query_error("listing sessions"))?;
        rows.into_iter().map(from_row).collect()
    }

    /// Moves a session to `to` if, and only if, it is in one of `from` right now: a single
    /// `UPDATE … WHERE state IN (…)`, so of several racing callers exactly one succeeds.
    /// Returns whether it moved; `false` means the session is absent or was in another state
    /// (read it with [`MetadataDb::session`] to say which).
    ///
    /// Moving to `ended` records `at` as the end time and `reason` as the end reason; any
    /// other move records `at` as the state change time and ignores `reason`. Asking for an
    /// edge the state machine lacks (see [`SessionState::can_become`]) is refused with
    /// [`DbError::IllegalSessionTransition`] before touching the database.
    #[instrument(skip_all, fields(%session_id, %to))]
    pub async fn transition_session(
        &self,
        session_id: Uuid,
        from: &[SessionState],
        to: SessionState,
        at: OffsetDateTime,
        reason: Option<&str>,
    ) -> Result<bool> {
        if let Some(&bad) = from.iter().find(|state| !state.can_become(to)) {
            return Err(DbError::IllegalSessionTransition { from: bad, to });
        }
        // One slot per state; unused slots are NULL, which `IN` never matches. Keeps one
        // query text for every call.
        let mut slots: [Option<&str>; SessionState::ALL.len()] = [None; SessionState::ALL.len()];
        for (slot, state) in slots.iter_mut().zip(from) {
            *slot = Some(state.as_str());
        }
        let reason = if to == SessionState::Ended {
            reason
        } else {
            None
        };
        let moved = on_pool!(self, pool => sqlx::query(
            "UPDATE sessions SET state = $2, state_changed_at = $3, \
             ended_at = CASE WHEN $2 = 'ended' THEN $3 ELSE ended_at END, \
             end_reason = CASE WHEN $2 = 'ended' THEN $4 ELSE end_reason END \
             WHERE session_id = $1 AND state IN ($5, $6, $7, $8, $9)",
        )
        .bind(uuid_text(session_id))
        .bind(to.as_str())
        .bind(to_micros(at))
        .bind(reason)
        .bind(slots[0])
        .bind(slots[1])
        .bind(slots[2])
        .bind(slots[3])
        .bind(slots[4])
        .execute(pool)
        .await
        .map(|done| done.rows_affected() == 1))
        .map_err(self.query_error("changing a session's state"))?;
        Ok(moved)
    }

    /// Forgets a session's wrapped media key once nothing needs to decrypt its raw segments
    /// any more (its archive is sealed, or retention ended): the segments sealed under it can
    /// never be decrypted again. Returns `false` if the session is absent or its key already
    /// forgotten. On SQLite the old bytes are purged from the files as for destroyed retention
    /// keys.
    pub async fn forget_session_media_key(&self, session_id: Uuid) -> Result<bool> {
        let forgotten = on_pool!(self, pool => sqlx::query(
            "UPDATE sessions SET media_key_wrapped = NULL \
             WHERE session_id = $1 AND media_key_wrapped IS NOT NULL",
        )
        .bind(uuid_text(session_id))
        .execute(pool)
        .await
        .map(|done| done.rows_affected() == 1))
        .map_err(self.query_error("forgetting a session media key"))?;
        if forgotten {
            self.purge_old_page_copies().await;
        }
        Ok(forgotten)
    }
}

/// Maps a foreign-key violation on a session reference to [`DbError::SessionNotFound`].
pub(crate) fn session_reference_error(
    db: &MetadataDb,
    session_id: Uuid,
    operation: &'static str,
) -> impl FnOnce(sqlx::Error) -> DbError {
    let query_error = db.query_error(operation);
    move |e| match constraint_violation(&e) {
        Some(ErrorKind::ForeignKeyViolation) => DbError::SessionNotFound { session_id },
        _ => query_error(e),
    }
}
