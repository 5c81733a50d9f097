//! The customer join page — no login: it is the customer's, reached by a link from the bank
//! (`/join?group=G`, or `/join?group=G&session=ID` for a session-bound link).
//!
//! * `GET /join` — the page: the code, the consent choices in plain words, "Join"; while
//!   sending, the "remote support in progress" notice and "Stop sharing and leave".
//! * `GET /join.js`, `GET /join.css` — its script and style sheet (the page redeems the code and consents itself, over the
//!   ingest API, as the agent does; then sends the camera and screen over WebRTC).
//! * `POST /join/webrtc` — `{session_token, sdp, tracks}` → `{sdp, session_id, codec}`: the
//!   browser's offer answered by a bridge ([`crate::join`]).
//! * `POST /join/leave` — `{session_token}`: the customer leaves; answers once what was
//!   captured is delivered and the session has ended.
//!
//! Audited (actor `customer@ADDRESS`): every offer as `session.join.webrtc`, taken (with the
//! codec and tracks) or refused (with the reason), and every bridge's end as
//! `session.join.end` (why, and what was sealed). Ingest audits the code, the consent and the
//! end of the session itself.

use std::net::SocketAddr;
use std::sync::Arc;

use askama::Template;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use proto::Track;
use storage::audit::{AuditEvent, Outcome};
use uuid::Uuid;

use super::ConsoleState;
use super::pages::render;
use crate::join::{Bridges, IngestEndpoint, JoinError, session_named_by};

/// What the join routes share.
struct JoinState {
    console: Arc<ConsoleState>,
    bridges: Bridges,
}

/// The join page's routes, on their own state (the running bridges).
pub fn routes(console: Arc<ConsoleState>) -> Router<Arc<ConsoleState>> {
    Router::new()
        .route("/join", get(page))
        .route("/join.js", get(script))
        .route("/join.css", get(stylesheet))
        .route("/join/webrtc", post(offer))
        .route("/join/leave", post(leave))
        .with_state(Arc::new(JoinState {
            console,
            bridges: Bridges::default(),
        }))
}

#[derive(Template)]
#[template(path = "join.html")]
struct JoinPage {
    group: String,
    session: String,
}

/// The link's parameters.
#[derive(serde::Deserialize)]
struct JoinLink {
    #[serde(default)]
    group: Option<String>,
    #[serde(default)]
    session: Option<Uuid>,
}

async fn page(Query(link): Query<JoinLink>) -> Response {
    let group = link
        .group
        .filter(|g| {
            !g.is_empty()
                && g.len() <= 64
                && g.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        })
        .unwrap_or_else(|| "default".into());
    render(&JoinPage {
        group,
        session: link.session.map(|s| s.to_string()).unwrap_or_default(),
    })
}

async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("../join.js"),
    )
        .into_response()
}

async fn stylesheet() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../join.css"),
    )
        .into_response()
}

/// The browser's offer.
#[derive(serde::Deserialize)]
struct Offer {
    session_token: String,
    sdp: String,
    /// The tracks its sending video m-lines carry, in order (`camera`, `screen`).
    #[serde(default = "camera_only")]
    tracks: Vec<String>,
}

fn camera_only() -> Vec<String> {
    vec!["camera".into()]
}

fn refusal(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": message.into() }))).into_response()
}

fn status_of(error: &JoinError) -> StatusCode {
    match error {
        JoinError::BadOffer(_) => StatusCode::BAD_REQUEST,
        JoinError::BadToken => StatusCode::UNAUTHORIZED,
        JoinError::Refused(_) => StatusCode::FORBIDDEN,
        JoinError::InUse => StatusCode::CONFLICT,
        JoinError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

async fn audit(console: &ConsoleState, event: AuditEvent) {
    if let Err(e) = console.vault.audit().append(event).await {
        tracing::error!(error = %e, "cannot write the audit log");
    }
}

async fn offer(
    State(state): State<Arc<JoinState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Json(offer): Json<Offer>,
) -> Response {
    let actor = format!("customer@{}", peer.ip());
    let named = session_named_by(&offer.session_token);
    let object = named.map_or_else(|| "token".to_owned(), |s| format!("session:{s}"));
    let refused = |error: JoinError| {
        let event = AuditEvent {
            actor: actor.clone(),
            action: "session.join.webrtc".into(),
            object: object.clone(),
            reason: Some(error.to_string()),
            outcome: Outcome::Denied,
        };
        let state = state.clone();
        async move {
            audit(&state.console, event).await;
            refusal(status_of(&error), error.to_string())
        }
    };
    let tracks: Option<Vec<Track>> = offer
        .tracks
        .iter()
        .map(|name| match name.as_str() {
            "camera" => Some(Track::Camera),
            "screen" => Some(Track::Screen),
            _ => None,
        })
        .collect();
    let Some(tracks) = tracks else {
        return refused(JoinError::BadOffer(format!(
            "unknown track in {:?} (camera, screen)",
            offer.tracks
        )))
        .await;
    };
    let Some(source) = state.console.live_source.get() else {
        return refused(JoinError::Unavailable(
            "this console is not connected to an ingest server".into(),
        ))
        .await;
    };
    if named.is_some_and(|s| state.bridges.is_running(s)) {
        return refused(JoinError::InUse).await;
    }
    let endpoint = IngestEndpoint {
        server: source.server.clone(),
        ca_pem: source.ca_pem.clone(),
    };
    let answered = crate::join::answer(
        &endpoint,
        &state.console.vault,
        &offer.session_token,
        offer.sdp,
        &tracks,
    )
    .await;
    let (sdp, bridge) = match answered {
        Ok(answered) => answered,
        Err(e) => return refused(e).await,
    };
    let session = bridge.session();
    let codec = bridge.codec();
    if !state.bridges.insert(bridge.clone()) {
        tracing::warn!(%session, "two offers for one session at once; the newer link supersedes");
    }
    let names: Vec<&str> = tracks.iter().map(|t| t.name()).collect();
    audit(
        &state.console,
        AuditEvent {
            actor: actor.clone(),
            action: "session.join.webrtc".into(),
            object: format!("session:{session}"),
            reason: Some(format!("{} over WebRTC, {codec}", names.join(" and "))),
            outcome: Outcome::Success,
        },
    )
    .await;
    // The bridge runs on its own; when it ends, its end is audited and it is forgotten.
    let watcher = state.clone();
    tokio::spawn(async move {
        let summary = bridge.ended().await;
        let sealed: Vec<String> = summary
            .sealed
            .iter()
            .map(|(t, n)| format!("{} {n} frames", t.name()))
            .collect();
        audit(
            &watcher.console,
            AuditEvent {
                actor,
                action: "session.join.end".into(),
                object: format!("session:{session}"),
                reason: Some(format!(
                    "{}; sealed: {}{}",
                    summary.ending,
                    if sealed.is_empty() {
                        "nothing".into()
                    } else {
                        sealed.join(", ")
                    },
                    if summary.acknowledged {
                        ", all acknowledged"
                    } else {
                        ", not all acknowledged"
                    }
                )),
                outcome: Outcome::Success,
            },
        )
        .await;
        watcher.bridges.remove(session);
    });
    Json(serde_json::json!({
        "sdp": sdp,
        "session_id": session,
        "codec": codec.encoding_name(),
    }))
    .into_response()
}

/// The customer's "leave".
#[derive(serde::Deserialize)]
struct Leave {
    session_token: String,
}

async fn leave(State(state): State<Arc<JoinState>>, Json(leave): Json<Leave>) -> Response {
    let Some(bridge) = state.bridges.find(&leave.session_token) else {
        return refusal(
            StatusCode::NOT_FOUND,
            "no media from this page is running for that session",
        );
    };
    let summary = bridge.leave().await;
    Json(serde_json::json!({
        "session_id": bridge.session(),
        "ended": summary.ending.to_string(),
        "frames": summary.sealed.iter().map(|(t, n)| (t.name(), n)).collect::<std::collections::BTreeMap<_, _>>(),
        "acknowledged": summary.acknowledged,
    }))
    .into_response()
}
