//! The HTTP API under `/api/v1` (described by `/api/v1/openapi.json`): operators create and
//! end sessions; customers' agents join with a code and record consent; the CTI system posts
//! call recordings ([`crate::cti`]).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use storage::db::ConsentScope;
use uuid::Uuid;

use crate::error::{IngestError, Result};
use crate::operator::Operator;
use crate::server::AppState;
use crate::session::CreatedSession;
use proto::join::{ConsentRequest, JoinRequest, JoinedSession};

/// The API's routes.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/whoami", get(whoami))
        .route("/openapi.json", get(openapi))
        .route("/sessions", post(create_session).get(crate::status::open))
        .route("/sessions/{id}", get(crate::status::one))
        .route("/sessions/{id}/end", post(end_session))
        .route("/sessions/{id}/live", get(crate::live::subscribe))
        .route("/join", post(join))
        .route("/consent", post(consent))
        .route("/agent", get(crate::media::agent_socket))
        .route("/agent/screenshots", post(crate::screenshot::upload))
        .route("/agent/end", post(agent_end))
        .route("/recordings", get(crate::recordings::list))
        .route("/recordings/{id}/archive", get(crate::recordings::archive))
        .route("/cti/recordings", post(crate::cti::upload))
        .route("/cti/uploads", post(crate::cti::parts::open))
        .route(
            "/cti/uploads/{id}/parts/{part}",
            put(crate::cti::parts::put_part),
        )
        .route(
            "/cti/uploads/{id}/complete",
            post(crate::cti::parts::complete),
        )
}

/// The operator the presented token stands for.
async fn whoami(operator: Operator) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "name": operator.name,
        "group": operator.group,
        "actor": operator.actor(),
        "credential": operator.credential,
    }))
}

async fn openapi() -> Json<serde_json::Value> {
    Json(
        serde_json::from_str(include_str!("openapi.json"))
            .expect("the bundled OpenAPI document is JSON"),
    )
}

/// What an operator may say about a new session.
#[derive(serde::Deserialize, Default)]
struct CreateRequest {
    /// The case or customer reference (compliance searches recordings by it).
    case_reference: Option<String>,
}

async fn create_session(
    State(state): State<Arc<AppState>>,
    operator: Operator,
    body: Option<Json<CreateRequest>>,
) -> Result<(StatusCode, Json<CreatedSession>)> {
    let request = body.map(|b| b.0).unwrap_or_default();
    let created = state
        .sessions
        .create(&operator, request.case_reference.as_deref())
        .await?;
    state
        .metrics
        .sessions_created
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Ok((StatusCode::CREATED, Json(created)))
}

#[derive(serde::Deserialize, Default)]
struct EndRequest {
    reason: Option<String>,
}

async fn end_session(
    State(state): State<Arc<AppState>>,
    operator: Operator,
    Path(id): Path<Uuid>,
    body: Option<Json<EndRequest>>,
) -> Result<Json<serde_json::Value>> {
    let reason = body
        .and_then(|b| b.0.reason)
        .unwrap_or_else(|| "ended by the operator".into());
    let was = state.sessions.end(&operator, id, &reason).await?;
    let joined = was != storage::db::SessionState::Created;
    crate::ending::wrap_up(&state, id, &reason, joined).await?;
    Ok(Json(
        serde_json::json!({ "session_id": id, "state": "ended" }),
    ))
}

async fn join(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Json(request): Json<JoinRequest>,
) -> Result<Json<JoinedSession>> {
    let joined = state
        .sessions
        .join(&request.code, &request.group, request.session_id, peer.ip())
        .await?;
    crate::status::announce(&state, joined.session_id).await;
    Ok(Json(joined))
}

/// The session an agent's bearer token stands for.
pub(crate) fn agent_session(state: &AppState, headers: &HeaderMap) -> Result<Uuid> {
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or(IngestError::Unauthorised)?;
    state.sessions.session_of_token(token.trim())
}

/// `POST /api/v1/agent/end`: the customer ends the session from an agent that cannot hold
/// a WebSocket (screenshot mode); over a WebSocket the agent closes with 4004 instead.
async fn agent_end(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>> {
    let session = agent_session(&state, &headers)?;
    let ended_now = crate::ending::end_by_customer(&state, session).await?;
    Ok(Json(serde_json::json!({
        "session_id": session,
        "state": "ended",
        "ended_now": ended_now,
    })))
}

async fn consent(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Json(request): Json<ConsentRequest>,
) -> Result<Json<serde_json::Value>> {
    let session = agent_session(&state, &headers)?;
    let scopes = request
        .scopes
        .iter()
        .map(|s| {
            ConsentScope::parse(s)
                .ok_or_else(|| IngestError::BadRequest(format!("unknown consent scope {s:?}")))
        })
        .collect::<Result<Vec<_>>>()?;
    state
        .sessions
        .consent(session, &scopes, &request.granted_by)
        .await?;
    crate::status::announce(&state, session).await;
    Ok(Json(
        serde_json::json!({ "session_id": session, "consented": request.scopes }),
    ))
}
