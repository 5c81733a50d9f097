//! Opening a recording: a compliance officer of the recording's group states a reason and
//! gets a *grant* — the recording opened once (header checked, keys unwrapped, audited as
//! `archive.open` with the reason) and kept for [`GRANT_LIFETIME`] so the player's many range
//! requests do not each unwrap keys. Each use of a grant is audited with the same reason:
//! `recording.view`, `recording.play` (once per grant), `recording.verify`,
//! `recording.export`. Anyone else is refused, and the refusal is audited too.
//!
//! Grants are kept in the database (`recording_grants`, only the hash of the id), so any
//! console node behind a load balancer serves a grant another opened: a node that has not
//! opened the archive yet opens it once itself (audited `archive.open` with the grant's
//! reason) and keeps it in memory until the grant expires.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use storage::db::{RecordingGrant, grant_hash};
use time::OffsetDateTime;

use storage::audit::{AuditEvent, Outcome};
use storage::db::Role;
use storage::{Access, ArchiveLocation, SealedBlob, Vault};
use uuid::Uuid;

use crate::auth::LoggedIn;

/// How long an opened recording stays open.
pub const GRANT_LIFETIME: Duration = Duration::from_secs(30 * 60);
/// The shortest reason accepted.
pub const MIN_REASON: usize = 8;

/// A recording opened for a reason.
#[derive(Clone)]
pub struct Grant {
    /// The grant's id (goes in the page's links).
    pub id: String,
    /// Who opened it.
    pub user: Uuid,
    /// The session.
    pub session_id: Uuid,
    /// Its archive.
    pub archive_id: Uuid,
    /// The stated reason.
    pub reason: String,
    /// The opened archive.
    pub sealed: SealedBlob,
    /// Its plaintext length.
    pub payload_len: u64,
    /// Until when it may be used.
    pub expires_at: OffsetDateTime,
}

/// Why a recording was not opened.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// The user lacks the compliance role.
    #[error("only compliance officers open recordings")]
    NotCompliance,
    /// No reason, or too short a one.
    #[error("state why you open this recording (at least {MIN_REASON} characters)")]
    NoReason,
    /// Not a sealed recording of the user's group.
    #[error("no sealed recording of your group for session {0}")]
    NotFound(Uuid),
    /// Its keys were destroyed (retention ended).
    #[error("this recording was crypto-shredded and can never be opened")]
    Shredded,
    /// Storage failed.
    #[error("the recording cannot be opened: {0}")]
    Storage(#[from] storage::Error),
}

impl From<storage::db::DbError> for AccessError {
    fn from(e: storage::db::DbError) -> Self {
        Self::Storage(e.into())
    }
}

/// The grants this console process has opened archives for (the grants themselves are in the
/// database).
#[derive(Default)]
pub struct Grants {
    open: Mutex<HashMap<String, Grant>>,
}

/// Opens archive `archive_id` for `login` (audited `archive.open` with `reason` by the vault):
/// the sealed blob and its plaintext length.
async fn open_archive(
    vault: &Vault,
    login: &LoggedIn,
    session: Uuid,
    archive_id: Uuid,
    reason: &str,
) -> Result<(SealedBlob, u64), AccessError> {
    let archive = vault
        .db()
        .archive(archive_id)
        .await?
        .ok_or(AccessError::NotFound(session))?;
    if archive.state == storage::db::ArchiveState::Shredded {
        return Err(AccessError::Shredded);
    }
    let Some(ArchiveLocation::Blob(key)) = ArchiveLocation::parse(&archive.location) else {
        return Err(AccessError::NotFound(session));
    };
    let access = Access::new(login.actor(), Some(reason.to_owned()));
    let sealed = vault.sealed_blob(&key, &access).await?;
    Ok((sealed, archive.payload_len))
}

impl Grants {
    /// Opens `session`'s recording for `login`, auditing the outcome (`recording.view`).
    ///
    /// # Errors
    /// [`AccessError`].
    pub async fn open(
        &self,
        vault: &Vault,
        login: &LoggedIn,
        session: Uuid,
        reason: &str,
    ) -> Result<Grant, AccessError> {
        let reason = reason.trim();
        let opened = self.try_open(vault, login, session, reason).await;
        let outcome = match &opened {
            Ok(_) => Outcome::Success,
            Err(AccessError::Storage(_)) => Outcome::Failed,
            Err(_) => Outcome::Denied,
        };
        let stated = match &opened {
            Ok(_) => reason.to_owned(),
            Err(e) if reason.is_empty() => e.to_string(),
            Err(e) => format!("{reason} — refused: {e}"),
        };
        audit(vault, login, "recording.view", session, &stated, outcome).await?;
        let grant = opened?;
        vault
            .db()
            .insert_recording_grant(&RecordingGrant {
                grant_hash: grant_hash(&grant.id),
                user_id: grant.user,
                session_id: grant.session_id,
                archive_id: grant.archive_id,
                reason: grant.reason.clone(),
                opened_at: OffsetDateTime::now_utc(),
                expires_at: grant.expires_at,
            })
            .await?;
        self.open
            .lock()
            .expect("grants lock")
            .insert(grant.id.clone(), grant.clone());
        Ok(grant)
    }

    async fn try_open(
        &self,
        vault: &Vault,
        login: &LoggedIn,
        session: Uuid,
        reason: &str,
    ) -> Result<Grant, AccessError> {
        if !login.user.has(Role::Compliance) {
            return Err(AccessError::NotCompliance);
        }
        if reason.chars().count() < MIN_REASON {
            return Err(AccessError::NoReason);
        }
        let db = vault.db();
        let record = db
            .session(session)
            .await?
            .filter(|s| s.group == login.user.group)
            .ok_or(AccessError::NotFound(session))?;
        let archive_id = db
            .mux_job_for_session(record.session_id)
            .await?
            .and_then(|job| job.archive_id)
            .ok_or(AccessError::NotFound(session))?;
        let (sealed, payload_len) = open_archive(vault, login, session, archive_id, reason).await?;
        let mut id = [0u8; 16];
        getrandom::fill(&mut id).expect("the OS has randomness");
        Ok(Grant {
            id: hex::encode(id),
            user: login.user.user_id,
            session_id: session,
            archive_id,
            reason: reason.to_owned(),
            sealed,
            payload_len,
            expires_at: OffsetDateTime::now_utc() + GRANT_LIFETIME,
        })
    }

    /// The grant `id` of `login` for `session`, if it is still open: this node's, or one
    /// another node opened (then its archive is opened here too, audited with its reason).
    /// `None` as well when the database or the archive cannot be read now (logged).
    pub async fn get(
        &self,
        vault: &Vault,
        id: &str,
        login: &LoggedIn,
        session: Uuid,
    ) -> Option<Grant> {
        let now = OffsetDateTime::now_utc();
        let mine = |g: &Grant| g.user == login.user.user_id && g.session_id == session;
        {
            let mut open = self.open.lock().expect("grants lock");
            open.retain(|_, g| g.expires_at > now);
            if let Some(grant) = open.get(id) {
                return Some(grant.clone()).filter(mine);
            }
        }
        let stored = match vault.db().recording_grant(&grant_hash(id), now).await {
            Ok(stored) => stored?,
            Err(e) => {
                tracing::error!(error = %e, "cannot read a grant");
                return None;
            }
        };
        if stored.user_id != login.user.user_id || stored.session_id != session {
            return None;
        }
        let opened = open_archive(vault, login, session, stored.archive_id, &stored.reason).await;
        let (sealed, payload_len) = opened
            .inspect_err(|e| tracing::warn!(error = %e, "cannot open a granted recording"))
            .ok()?;
        let grant = Grant {
            id: id.to_owned(),
            user: stored.user_id,
            session_id: stored.session_id,
            archive_id: stored.archive_id,
            reason: stored.reason,
            sealed,
            payload_len,
            expires_at: stored.expires_at,
        };
        self.open
            .lock()
            .expect("grants lock")
            .insert(grant.id.clone(), grant.clone());
        Some(grant)
    }

    /// Marks the grant played; whether it was the first time on any node (then audit it).
    pub async fn first_play(&self, vault: &Vault, id: &str) -> bool {
        vault
            .db()
            .mark_recording_grant_played(&grant_hash(id))
            .await
            .inspect_err(|e| tracing::error!(error = %e, "cannot mark a grant played"))
            .unwrap_or(false)
    }
}

/// Audits a use of a recording by `login`.
///
/// # Errors
/// The audit log fails (then the use must not happen).
pub async fn audit(
    vault: &Vault,
    login: &LoggedIn,
    action: &str,
    session: Uuid,
    reason: &str,
    outcome: Outcome,
) -> Result<(), storage::Error> {
    vault
        .audit()
        .append(AuditEvent {
            actor: login.actor(),
            action: action.to_owned(),
            object: format!("session:{session}"),
            reason: Some(reason.to_owned()).filter(|r| !r.is_empty()),
            outcome,
        })
        .await?;
    Ok(())
}
