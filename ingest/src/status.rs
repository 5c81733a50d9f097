//! Where a session stands, for the operator running it: `GET /api/v1/sessions/{id}` (one),
//! `GET /api/v1/sessions` (the open sessions of the caller's group), and the
//! [`LiveNotice::Session`] every live subscriber gets when the customer joins, consents, or the
//! agent connects — so the console's session page changes the moment it happens.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use proto::{LiveMessage, LiveNotice};
use storage::db::{SessionFilter, SessionRecord, SessionState};
use uuid::Uuid;

use crate::error::{IngestError, Result};
use crate::operator::Operator;
use crate::server::AppState;

/// A session as its operator sees it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SessionStatus {
    /// The session.
    pub session_id: Uuid,
    /// Its group.
    pub group: String,
    /// Who created it.
    pub created_by: String,
    /// When (RFC 3339, UTC).
    pub created_at: String,
    /// `created`, `joined`, `consented`, `live` or `ended`.
    pub state: String,
    /// When it reached that state (RFC 3339, UTC).
    pub state_changed_at: String,
    /// The scopes the customer consents to now.
    pub scopes: Vec<String>,
    /// Whether the customer's agent is connected now (to this node).
    pub agent_connected: bool,
    /// Why it ended, once it has.
    pub end_reason: Option<String>,
    /// The case or customer reference given at its start.
    pub case_reference: Option<String>,
}

fn rfc3339(at: time::OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// The status of `record`.
async fn of(state: &AppState, record: SessionRecord) -> Result<SessionStatus> {
    let consents = state
        .sessions
        .vault()
        .db()
        .consents(record.session_id)
        .await?;
    let mut scopes: Vec<String> = consents
        .iter()
        .filter(|c| c.revoked_at.is_none())
        .map(|c| c.scope.as_str().to_owned())
        .collect();
    scopes.sort();
    Ok(SessionStatus {
        session_id: record.session_id,
        scopes,
        agent_connected: state.live.is_connected(record.session_id),
        group: record.group,
        created_by: record.created_by,
        created_at: rfc3339(record.created_at),
        state: record.state.as_str().to_owned(),
        state_changed_at: rfc3339(record.state_changed_at),
        end_reason: record.end_reason,
        case_reference: record.case_reference,
    })
}

/// The status of `session` if it belongs to `group`.
///
/// # Errors
/// [`IngestError::NotFound`] for an unknown session or one of another group.
pub async fn of_group(state: &AppState, group: &str, session: Uuid) -> Result<SessionStatus> {
    let record = state
        .sessions
        .vault()
        .db()
        .session(session)
        .await?
        .filter(|r| r.group == group)
        .ok_or_else(|| IngestError::NotFound("no such session".into()))?;
    of(state, record).await
}

/// `GET /api/v1/sessions/{id}`.
///
/// # Errors
/// [`IngestError::NotFound`] for a session of another group.
pub async fn one(
    State(state): State<Arc<AppState>>,
    operator: Operator,
    Path(session): Path<Uuid>,
) -> Result<Json<SessionStatus>> {
    of_group(&state, &operator.group, session).await.map(Json)
}

/// `GET /api/v1/sessions`: the caller's group's sessions that have not ended, newest first.
///
/// # Errors
/// Storage failures.
pub async fn open(
    State(state): State<Arc<AppState>>,
    operator: Operator,
) -> Result<Json<Vec<SessionStatus>>> {
    let records = state
        .sessions
        .vault()
        .db()
        .sessions(&SessionFilter {
            group: Some(operator.group.clone()),
            ..SessionFilter::default()
        })
        .await?;
    let mut open = Vec::new();
    for record in records
        .into_iter()
        .filter(|r| r.state != SessionState::Ended)
    {
        open.push(of(&state, record).await?);
    }
    open.sort_by(|a, b| b.created_at.cmp(&a.created_at));
    Ok(Json(open))
}

/// The [`LiveNotice::Session`] for where `session` stands now.
///
/// # Errors
/// Storage failures; [`IngestError::NotFound`] for an unknown session.
pub async fn notice(state: &AppState, session: Uuid) -> Result<LiveNotice> {
    let record = state
        .sessions
        .vault()
        .db()
        .session(session)
        .await?
        .ok_or_else(|| IngestError::NotFound("no such session".into()))?;
    let status = of(state, record).await?;
    Ok(LiveNotice::Session {
        state: status.state,
        scopes: status.scopes,
    })
}

/// Tells `session`'s live subscribers where it stands now (best effort: a failure to read
/// it is logged; the page can always ask).
pub async fn announce(state: &AppState, session: Uuid) {
    if !state.feeds.subscribed(session) {
        return;
    }
    match notice(state, session).await {
        Ok(notice) => state.feeds.publish(session, &LiveMessage::Notice(notice)),
        Err(e) => tracing::warn!(%session, error = %e, "cannot announce a session's state"),
    }
}
