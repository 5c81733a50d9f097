//! Sessions from the operator's request to the end: a session and its one-time code are made
//! together; the customer's agent redeems the code (once, within its lifetime, from the
//! operator's group) and receives a session token and the session media key; consent is
//! recorded scope by scope before anything is accepted; either side ends it. Every step is
//! written to the audit log, refusals included.
//!
//! Guessing is limited twice: a code presented with its session id (a session-bound link)
//! counts failures against that session's code, which locks after
//! [`storage::db::MAX_CODE_FAILURES`]; and every source address may fail at most
//! [`MAX_SOURCE_FAILURES`] times in [`SOURCE_WINDOW`], after which it is refused before any
//! code is looked at. Codes are compared as keyed hashes ([`crate::code`]).

use std::net::IpAddr;
use std::time::Duration;

use hmac::{KeyInit, Mac};
use sha2::Sha256;
use storage::Vault;
use storage::archive::FileKey;
use storage::audit::{AuditEvent, Outcome};
use storage::db::{ConsentScope, NewConnectionCode, NewSession, SessionState};
use subtle::ConstantTimeEq;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::code::{CodeKey, ConnectionCode};
use crate::error::{IngestError, Result};
use crate::operator::Operator;

/// Failed joins a source address may make in [`SOURCE_WINDOW`].
pub const MAX_SOURCE_FAILURES: u64 = 20;
/// The window for [`MAX_SOURCE_FAILURES`].
pub const SOURCE_WINDOW: Duration = Duration::from_secs(15 * 60);

/// A new session, as the operator sees it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CreatedSession {
    /// The session.
    pub session_id: Uuid,
    /// The six digits to read to the customer.
    pub code: String,
    /// When the code stops working (RFC 3339).
    pub expires_at: String,
    /// The operator's group the code is bound to.
    pub group: String,
}

pub use proto::join::JoinedSession;

/// Sessions, codes, consent: the rules around the metadata tables.
#[derive(Clone)]
pub struct Sessions {
    vault: Vault,
    codes: CodeKey,
    code_ttl: Duration,
    cti_deadline: Duration,
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

impl Sessions {
    /// Sessions stored in `vault`, codes hashed with `codes`, valid for `code_ttl`; an ended
    /// session waits `cti_deadline` for its CTI recording before it is muxed video-only.
    #[must_use]
    pub fn new(vault: Vault, codes: CodeKey, code_ttl: Duration, cti_deadline: Duration) -> Self {
        Self {
            vault,
            codes,
            code_ttl,
            cti_deadline,
        }
    }

    /// The vault the sessions are stored in.
    #[must_use]
    pub fn vault(&self) -> &Vault {
        &self.vault
    }

    async fn audit(
        &self,
        actor: &str,
        action: &str,
        object: String,
        reason: Option<String>,
        outcome: Outcome,
    ) {
        let event = AuditEvent {
            actor: actor.to_owned(),
            action: action.to_owned(),
            object,
            reason,
            outcome,
        };
        if let Err(e) = self.vault.audit().append(event).await {
            tracing::error!(error = %e, action, "cannot write the audit log");
        }
    }

    /// Creates a session in the operator's group and its one-time code.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn create(
        &self,
        operator: &Operator,
        case_reference: Option<&str>,
    ) -> Result<CreatedSession> {
        let case_reference = case_reference
            .map(checked_case_reference)
            .transpose()?
            .flatten();
        let session_id = Uuid::new_v4();
        let created_at = now();
        let key = FileKey::generate();
        let wrapped_media_key = self.vault.wrap_session_media_key(session_id, &key).await?;
        self.vault
            .db()
            .create_session(&NewSession {
                case_reference: case_reference.clone(),
                session_id,
                group: operator.group.clone(),
                created_by: operator.name.clone(),
                created_at,
                wrapped_media_key,
            })
            .await?;
        let expires_at = created_at + self.code_ttl;
        // A fresh code can collide with one still open in the group (one in a million per
        // open code): draw again rather than fail the operator.
        let mut attempts = 0;
        let code = loop {
            let code = ConnectionCode::generate()?;
            let inserted = self
                .vault
                .db()
                .insert_connection_code(&NewConnectionCode {
                    code_hash: self.codes.hash(&operator.group, &code).to_vec(),
                    session_id,
                    group: operator.group.clone(),
                    created_at,
                    expires_at,
                })
                .await;
            match inserted {
                Ok(_) => break code,
                Err(storage::db::DbError::ConnectionCodeInUse) if attempts < 8 => attempts += 1,
                Err(e) => return Err(e.into()),
            }
        };
        self.audit(
            &operator.actor(),
            "session.create",
            format!("session:{session_id}"),
            case_reference.map(|c| format!("case {c}")),
            Outcome::Success,
        )
        .await;
        Ok(CreatedSession {
            session_id,
            code: code.as_str().to_owned(),
            expires_at: rfc3339(expires_at),
            group: operator.group.clone(),
        })
    }

    /// Redeems a typed code from `source` for the given group (and session, for a
    /// session-bound link).
    ///
    /// # Errors
    /// [`IngestError::TooManyAttempts`] for a source over its limit, [`IngestError::Forbidden`]
    /// for a wrong, used, expired, locked or foreign code (one message for all: the caller
    /// learns nothing about which), [`IngestError::BadRequest`] for a malformed code.
    pub async fn join(
        &self,
        typed_code: &str,
        group: &str,
        session: Option<Uuid>,
        source: IpAddr,
    ) -> Result<JoinedSession> {
        let db = self.vault.db();
        let at = now();
        let source_text = source.to_string();
        let actor = format!("agent@{source_text}");
        let failures = db
            .join_failures_since(&source_text, at - SOURCE_WINDOW)
            .await?;
        if failures >= MAX_SOURCE_FAILURES {
            self.audit(
                &actor,
                "session.join",
                "code".into(),
                Some("too many failed attempts from this address".into()),
                Outcome::Denied,
            )
            .await;
            return Err(IngestError::TooManyAttempts);
        }
        let code = match ConnectionCode::parse(typed_code) {
            Ok(code) => code,
            Err(e) => {
                db.record_join_attempt(&source_text, at, false).await?;
                return Err(e);
            }
        };
        let hash = self.codes.hash(group, &code);
        let redeemed = match session {
            Some(id) => db.redeem_session_code(id, &hash, group, at).await,
            None => db.redeem_connection_code(&hash, group, at).await,
        }?;
        db.record_join_attempt(&source_text, at, redeemed.is_some())
            .await?;
        let Some(session_id) = redeemed else {
            let mut reason = "wrong, used, expired or locked code".to_owned();
            if let Some(id) = session
                && let Some(failure) = db.record_code_failure(id, at).await?
                && failure.locked
            {
                reason = "code locked after too many wrong attempts".into();
            }
            let object = session.map_or_else(|| "code".into(), |id| format!("session:{id}"));
            self.audit(
                &actor,
                "session.join",
                object,
                Some(reason),
                Outcome::Denied,
            )
            .await;
            return Err(IngestError::Forbidden("the code is not valid".into()));
        };
        db.transition_session(
            session_id,
            &[SessionState::Created],
            SessionState::Joined,
            at,
            None,
        )
        .await?;
        let record = db
            .session(session_id)
            .await?
            .ok_or_else(|| IngestError::Forbidden("the code is not valid".into()))?;
        let wrapped = record
            .wrapped_media_key
            .ok_or_else(|| IngestError::Forbidden("the session is over".into()))?;
        let key = self
            .vault
            .unwrap_session_media_key(session_id, &wrapped)
            .await?;
        self.audit(
            &actor,
            "session.join",
            format!("session:{session_id}"),
            None,
            Outcome::Success,
        )
        .await;
        Ok(JoinedSession {
            session_id,
            session_token: self.agent_token(session_id),
            media_key: hex::encode(key.expose()),
        })
    }

    /// The session media key, unwrapped.
    ///
    /// # Errors
    /// [`IngestError::Forbidden`] once the key is forgotten; keyring failures.
    pub async fn media_key(
        &self,
        session: Uuid,
        wrapped: Option<&[u8]>,
    ) -> Result<proto::SessionKey> {
        let wrapped =
            wrapped.ok_or_else(|| IngestError::Forbidden("the session is over".into()))?;
        let key = self
            .vault
            .unwrap_session_media_key(session, wrapped)
            .await?;
        Ok(proto::SessionKey::from_bytes(*key.expose()))
    }

    /// `<session id>.<hex HMAC(code key, "agent-token" ‖ session id)>`: names its session and
    /// cannot be made without the server's key.
    fn agent_token(&self, session: Uuid) -> String {
        format!("{session}.{}", hex::encode(self.token_mac(session)))
    }

    fn token_mac(&self, session: Uuid) -> [u8; 32] {
        let mut mac = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(self.codes.secret())
            .expect("HMAC takes any key length");
        mac.update(b"agent-token\0");
        mac.update(session.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// The session an agent token stands for (compared in constant time).
    ///
    /// # Errors
    /// [`IngestError::Unauthorised`].
    pub fn session_of_token(&self, token: &str) -> Result<Uuid> {
        let (id, mac) = token.split_once('.').ok_or(IngestError::Unauthorised)?;
        let session = Uuid::parse_str(id).map_err(|_| IngestError::Unauthorised)?;
        let mac = hex::decode(mac).map_err(|_| IngestError::Unauthorised)?;
        if bool::from(mac.as_slice().ct_eq(&self.token_mac(session))) {
            Ok(session)
        } else {
            Err(IngestError::Unauthorised)
        }
    }

    /// Records the customer's consent to `scopes`, moving a joined session to consented.
    ///
    /// # Errors
    /// [`IngestError::Forbidden`] when the session is over; storage failures.
    pub async fn consent(
        &self,
        session: Uuid,
        scopes: &[ConsentScope],
        granted_by: &str,
    ) -> Result<()> {
        let db = self.vault.db();
        let record = db
            .session(session)
            .await?
            .ok_or(IngestError::Unauthorised)?;
        if record.state == SessionState::Ended {
            return Err(IngestError::Forbidden("the session is over".into()));
        }
        let at = now();
        for &scope in scopes {
            db.grant_consent(session, scope, granted_by, at).await?;
            self.audit(
                &format!("customer:{granted_by}"),
                "session.consent",
                format!("session:{session}"),
                Some(scope.as_str().to_owned()),
                Outcome::Success,
            )
            .await;
        }
        db.transition_session(
            session,
            &[SessionState::Joined],
            SessionState::Consented,
            at,
            None,
        )
        .await?;
        Ok(())
    }

    /// Ends a session of the operator's group; returns the state it was in (what follows is
    /// [`crate::ending::wrap_up`]).
    ///
    /// # Errors
    /// [`IngestError::NotFound`] for an unknown session or one of another group.
    pub async fn end(
        &self,
        operator: &Operator,
        session: Uuid,
        reason: &str,
    ) -> Result<SessionState> {
        let db = self.vault.db();
        let record = db.session(session).await?;
        let Some(record) = record.filter(|r| r.group == operator.group) else {
            self.audit(
                &operator.actor(),
                "session.end",
                format!("session:{session}"),
                Some("not found in the operator's group".into()),
                Outcome::Denied,
            )
            .await;
            return Err(IngestError::NotFound("no such session".into()));
        };
        if record.state != SessionState::Ended {
            self.end_as(&operator.actor(), session, reason).await?;
        }
        Ok(record.state)
    }

    /// Ends `session` for `actor` (`customer`, `system:timeout`, `operator:NAME`), audited;
    /// `false` if it had ended already. What follows is [`crate::ending::wrap_up`].
    ///
    /// # Errors
    /// Storage failures.
    pub async fn end_as(&self, actor: &str, session: Uuid, reason: &str) -> Result<bool> {
        let moved = self
            .vault
            .db()
            .transition_session(
                session,
                &[
                    SessionState::Created,
                    SessionState::Joined,
                    SessionState::Consented,
                    SessionState::Live,
                ],
                SessionState::Ended,
                now(),
                Some(reason),
            )
            .await?;
        if moved {
            self.audit(
                actor,
                "session.end",
                format!("session:{session}"),
                Some(reason.to_owned()),
                Outcome::Success,
            )
            .await;
        }
        Ok(moved)
    }

    /// Queues the mux job of an ended session: due now if its CTI recording is here, else
    /// at the CTI deadline (then video-only unless the recording comes first).
    ///
    /// # Errors
    /// Storage failures.
    pub async fn queue_mux(&self, session: Uuid) -> Result<()> {
        let db = self.vault.db();
        let has_audio = !db.cti_recordings_for_session(session).await?.is_empty();
        let at = now();
        let not_before = if has_audio {
            at
        } else {
            at + self.cti_deadline
        };
        let job = db.enqueue_mux_job(session, !has_audio, not_before).await?;
        let why = if has_audio {
            "CTI recording present".to_owned()
        } else {
            format!(
                "waiting for the CTI recording until {}",
                rfc3339(not_before)
            )
        };
        self.audit(
            "system:ingest",
            "mux.enqueue",
            format!("mux-job:{}", job.job_id),
            Some(why),
            Outcome::Success,
        )
        .await;
        Ok(())
    }

    /// A CTI recording arrived for `session`: if the session has ended, its job becomes due
    /// now and muxes the audio too.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn cti_arrived(&self, session: Uuid) -> Result<()> {
        let db = self.vault.db();
        let Some(record) = db.session(session).await? else {
            return Ok(());
        };
        if record.state != SessionState::Ended {
            return Ok(()); // queued with audio when the session ends
        }
        if db.expedite_mux_job(session, now()).await? {
            self.audit(
                "system:ingest",
                "mux.expedite",
                format!("session:{session}"),
                Some("CTI recording arrived".into()),
                Outcome::Success,
            )
            .await;
        }
        Ok(())
    }
}

/// The longest case or customer reference, in characters.
pub const MAX_CASE_REFERENCE: usize = 128;

/// A case or customer reference as stored: trimmed, `None` if blank; at most
/// [`MAX_CASE_REFERENCE`] characters of printable text.
///
/// # Errors
/// [`IngestError::BadRequest`] saying what is wrong with it.
pub fn checked_case_reference(text: &str) -> Result<Option<String>> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    if text.chars().count() > MAX_CASE_REFERENCE {
        return Err(IngestError::BadRequest(format!(
            "a case reference is at most {MAX_CASE_REFERENCE} characters"
        )));
    }
    if text.chars().any(char::is_control) {
        return Err(IngestError::BadRequest(
            "a case reference cannot hold control characters".into(),
        ));
    }
    Ok(Some(text.to_owned()))
}
