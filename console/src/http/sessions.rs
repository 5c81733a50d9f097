//! The operator's pages: `GET /sessions` (the group's open sessions and a button that starts
//! one) and `GET /sessions/{id}` (running one: the code, the customer joining and consenting,
//! the live view, chat, control, pauses and blinds as they happen, and the end).
//!
//! These pages only render; what they do goes from the operator's browser to the ingest API
//! under `/api/v1` with the same login (ingest takes the console's cookie and CSRF token for
//! operators and supervisors, see `ingest::operator`): creating a session, following it
//! (`/api/v1/sessions/{id}/live?frames=none`, a WebSocket of notices that also carries chat
//! and input), ending it. So every action is audited once, by the server that does it, under
//! the user's own name.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use storage::db::{Role, SessionFilter, SessionState};
use uuid::Uuid;

use super::pages::{Nav, render, utc};
use super::{ConsoleState, Viewer};

/// The refusal for anyone but operators and supervisors.
fn refused_unless_operator(viewer: &Viewer) -> Option<Response> {
    let user = &viewer.0.user;
    let operator = user.has(Role::Operator) || user.has(Role::Supervisor);
    (!operator).then(|| {
        (
            StatusCode::FORBIDDEN,
            "only operators and supervisors run sessions",
        )
            .into_response()
    })
}

/// One open session in the list.
struct Row {
    session: Uuid,
    case: String,
    state: &'static str,
    created_by: String,
    created_at: String,
}

#[derive(Template)]
#[template(path = "sessions.html")]
struct SessionsPage {
    nav: Nav,
    rows: Vec<Row>,
}

/// `GET /sessions`.
pub async fn list(State(state): State<Arc<ConsoleState>>, viewer: Viewer) -> Response {
    if let Some(refused) = refused_unless_operator(&viewer) {
        return refused;
    }
    let filter = SessionFilter {
        group: Some(viewer.0.user.group.clone()),
        ..SessionFilter::default()
    };
    let records = match state.vault.db().sessions(&filter).await {
        Ok(records) => records,
        Err(e) => return (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    };
    let mut rows: Vec<Row> = records
        .into_iter()
        .filter(|r| r.state != SessionState::Ended)
        .map(|r| Row {
            session: r.session_id,
            case: r.case_reference.unwrap_or_default(),
            state: r.state.as_str(),
            created_by: r.created_by,
            created_at: utc(r.created_at),
        })
        .collect();
    rows.sort_by(|a, b| b.created_at.cmp(&a.created_at));
    render(&SessionsPage {
        nav: Nav::of(&viewer),
        rows,
    })
}

#[derive(Template)]
#[template(path = "session.html")]
struct SessionPage {
    nav: Nav,
    session: Uuid,
    case: String,
    state: &'static str,
}

/// `GET /sessions/{id}`: a session of the operator's group.
pub async fn page(
    State(state): State<Arc<ConsoleState>>,
    viewer: Viewer,
    Path(session): Path<Uuid>,
) -> Response {
    if let Some(refused) = refused_unless_operator(&viewer) {
        return refused;
    }
    let record = match state.vault.db().session(session).await {
        Ok(record) => record.filter(|r| r.group == viewer.0.user.group),
        Err(e) => return (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    };
    let Some(record) = record else {
        return (StatusCode::NOT_FOUND, "no session of your group").into_response();
    };
    render(&SessionPage {
        nav: Nav::of(&viewer),
        session,
        case: record.case_reference.clone().unwrap_or_default(),
        state: record.state.as_str(),
    })
}

/// `GET /sessions/{id}/watch`: the session page's earlier address.
pub async fn watch(Path(session): Path<Uuid>) -> Redirect {
    Redirect::to(&format!("/sessions/{session}"))
}
