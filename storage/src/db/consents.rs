//! Consents: what the customer allowed, scope by scope. Each grant is a row; revoking stamps
//! it and keeps it, so the history of who allowed what, and when, stays complete. At most
//! one grant per scope is in force at a time.

use time::OffsetDateTime;
use tracing::instrument;
use uuid::Uuid;

use super::sessions::{required, session_reference_error};
use super::{
    MetadataDb, Result, from_micros, from_micros_opt, on_pool, parse_uuid, stored_enum, to_micros,
    uuid_text,
};

stored_enum! {
    /// What a consent allows. Recording, file transfer and screen capture each need their
    /// own consent; an operator cannot give any of them for the customer.
    pub enum ConsentScope as "consent scope" {
        /// The camera may be streamed.
        Camera => "camera",
        /// The screen may be shared.
        Screen => "screen",
        /// The session may be recorded.
        Recording => "recording",
        /// Files may be transferred.
        FileTransfer => "file_transfer",
        /// Screenshots may be taken.
        ScreenCapture => "screen_capture",
        /// A low-rate microphone reference track may be sent (for aligning the CTI audio).
        MicReference => "mic_reference",
    }
}

/// One consent as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentRecord {
    /// The row's id.
    pub consent_id: Uuid,
    /// The session.
    pub session_id: Uuid,
    /// What it allows.
    pub scope: ConsentScope,
    /// Who gave it: the customer's agent or device as it described itself.
    pub granted_by: String,
    /// When it was given.
    pub granted_at: OffsetDateTime,
    /// When it was withdrawn, if it was.
    pub revoked_at: Option<OffsetDateTime>,
}

/// consent_id, session_id, scope, granted_by, granted_at, revoked_at
type ConsentRow = (String, String, String, String, i64, Option<i64>);

fn from_row(row: ConsentRow) -> Result<ConsentRecord> {
    let (id, session_id, scope, granted_by, granted_at, revoked_at) = row;
    Ok(ConsentRecord {
        consent_id: parse_uuid("consent id", &id)?,
        session_id: parse_uuid("consent's session id", &session_id)?,
        scope: ConsentScope::from_stored(&scope)?,
        granted_by,
        granted_at: from_micros("consent time", granted_at)?,
        revoked_at: from_micros_opt("consent revocation time", revoked_at)?,
    })
}

impl MetadataDb {
    /// Records the customer's consent to `scope`. Returns `false`, changing nothing, if a
    /// consent to that scope is already in force (the first grant stands); refused with
    /// [`super::DbError::SessionNotFound`] for an unknown session.
    #[instrument(skip_all, fields(%session_id, %scope))]
    pub async fn grant_consent(
        &self,
        session_id: Uuid,
        scope: ConsentScope,
        granted_by: &str,
        at: OffsetDateTime,
    ) -> Result<bool> {
        required("who granted the consent", granted_by)?;
        on_pool!(self, pool => sqlx::query(
            "INSERT INTO consents (consent_id, session_id, scope, granted_by, granted_at) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (session_id, scope) WHERE revoked_at IS NULL DO NOTHING",
        )
        .bind(uuid_text(Uuid::new_v4()))
        .bind(uuid_text(session_id))
        .bind(scope.as_str())
        .bind(granted_by)
        .bind(to_micros(at))
        .execute(pool)
        .await
        .map(|done| done.rows_affected() == 1))
        .map_err(session_reference_error(
            self,
            session_id,
            "recording a consent",
        ))
    }

    /// Withdraws the consent to `scope` in force, stamping it with `at`. Returns `false` if
    /// none was in force.
    #[instrument(skip_all, fields(%session_id, %scope))]
    pub async fn revoke_consent(
        &self,
        session_id: Uuid,
        scope: ConsentScope,
        at: OffsetDateTime,
    ) -> Result<bool> {
        on_pool!(self, pool => sqlx::query(
            "UPDATE consents SET revoked_at = $3 \
             WHERE session_id = $1 AND scope = $2 AND revoked_at IS NULL",
        )
        .bind(uuid_text(session_id))
        .bind(scope.as_str())
        .bind(to_micros(at))
        .execute(pool)
        .await
        .map(|done| done.rows_affected() == 1))
        .map_err(self.query_error("revoking a consent"))
    }

    /// Every consent of a session, in force or revoked, in the order given.
    pub async fn consents(&self, session_id: Uuid) -> Result<Vec<ConsentRecord>> {
        let rows: Vec<ConsentRow> = on_pool!(self, pool => sqlx::query_as(
            "SELECT consent_id, session_id, scope, granted_by, granted_at, revoked_at \
             FROM consents WHERE session_id = $1 ORDER BY granted_at, consent_id",
        )
        .bind(uuid_text(session_id))
        .fetch_all(pool)
        .await)
        .map_err(self.query_error("listing consents"))?;
        rows.into_iter().map(from_row).collect()
    }

    /// Whether a consent to `scope` is in force for the session now.
    pub async fn has_consent(&self, session_id: Uuid, scope: ConsentScope) -> Result<bool> {
        let (in_force,): (bool,) = on_pool!(self, pool => sqlx::query_as(
            "SELECT EXISTS (SELECT 1 FROM consents \
             WHERE session_id = $1 AND scope = $2 AND revoked_at IS NULL)",
        )
        .bind(uuid_text(session_id))
        .bind(scope.as_str())
        .fetch_one(pool)
        .await)
        .map_err(self.query_error("looking up a consent"))?;
        Ok(in_force)
    }
}
