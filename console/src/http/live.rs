//! The operator's live view: `POST /sessions/{id}/live` (the session page's WebRTC offer →
//! the answer, see [`crate::live`]).
//! Operators and supervisors of the session's group only; every watch is audited
//! (`session.watch`), refusals too. The console reaches the session through ingest's live
//! fan-out with the feed credentials it was given ([`LiveSource`]).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use storage::audit::{AuditEvent, Outcome};
use storage::db::{Role, SessionState};
use uuid::Uuid;

use super::{ConsoleState, Viewer};
use crate::live::{FeedConfig, LiveError};

/// Where the console subscribes to live sessions: the ingest server, its certificate and the
/// token the console uses there.
#[derive(Clone)]
pub struct LiveSource {
    /// `https://host:port` of the ingest server.
    pub server: url::Url,
    /// Its certificate, PEM.
    pub ca_pem: Vec<u8>,
    /// A bearer token ingest accepts for the live fan-out.
    pub token: String,
}

/// Whether `viewer` may watch `session` (role and group), audited either way.
async fn may_watch(state: &ConsoleState, viewer: &Viewer, session: Uuid) -> Result<(), Response> {
    let user = &viewer.0.user;
    let role = user.has(Role::Operator) || user.has(Role::Supervisor);
    let record = state
        .vault
        .db()
        .session(session)
        .await
        .map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response())?;
    let open = record
        .as_ref()
        .is_some_and(|r| r.group == user.group && r.state != SessionState::Ended);
    let refusal = match (role, open) {
        (false, _) => Some((
            StatusCode::FORBIDDEN,
            "only operators and supervisors watch sessions",
        )),
        (true, false) => Some((StatusCode::NOT_FOUND, "no open session of your group")),
        (true, true) => None,
    };
    let event = AuditEvent {
        actor: viewer.0.actor(),
        action: "session.watch".into(),
        object: format!("session:{session}"),
        reason: refusal.map(|(_, why)| why.to_owned()),
        outcome: if refusal.is_some() {
            Outcome::Denied
        } else {
            Outcome::Success
        },
    };
    if let Err(e) = state.vault.audit().append(event).await {
        return Err((StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response());
    }
    match refusal {
        Some(refused) => Err(refused.into_response()),
        None => Ok(()),
    }
}

/// The browser's offer.
#[derive(serde::Deserialize)]
pub struct Offer {
    sdp: String,
}

/// `POST /sessions/{id}/live` (`X-CSRF-Token` required).
pub async fn offer(
    State(state): State<Arc<ConsoleState>>,
    viewer: Viewer,
    Path(session): Path<Uuid>,
    headers: HeaderMap,
    Json(offer): Json<Offer>,
) -> Response {
    let csrf = headers.get("x-csrf-token").and_then(|v| v.to_str().ok());
    if let Err(refused) = viewer.check_csrf(csrf) {
        return refused.into_response();
    }
    if let Err(refused) = may_watch(&state, &viewer, session).await {
        return refused;
    }
    let Some(source) = state.live_source.get() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "this console is not connected to an ingest server",
        )
            .into_response();
    };
    let feed = FeedConfig {
        server: source.server.clone(),
        ca_pem: source.ca_pem.clone(),
        token: source.token.clone(),
        session,
    };
    match crate::live::answer(feed, offer.sdp).await {
        Ok((sdp, mut view)) => {
            // The view runs until the browser leaves or the session ends.
            tokio::spawn(async move {
                let ending = view.ended().await;
                tracing::info!(%session, ?ending, "a live view ended");
            });
            Json(serde_json::json!({ "sdp": sdp })).into_response()
        }
        Err(e @ LiveError::BadOffer(_)) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
        Err(e @ LiveError::SessionNotFound(_)) => {
            (StatusCode::NOT_FOUND, e.to_string()).into_response()
        }
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}
