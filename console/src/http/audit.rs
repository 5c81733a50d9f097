//! The audit log for compliance officers: the newest entries, filtered by actor, action and
//! object, and whether the hash chain is intact. Reading it is itself audited.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use storage::audit::{AuditEvent, ChainReport, Outcome};
use storage::db::Role;

use super::pages::{Nav, render, utc};
use super::{ConsoleState, Viewer};

/// How many entries are searched (the newest).
const WINDOW: i64 = 2000;
/// How many are shown.
const SHOWN: usize = 500;

/// The filter form.
#[derive(Debug, Default, serde::Deserialize)]
pub struct AuditForm {
    #[serde(default)]
    actor: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    object: String,
}

struct Entry {
    seq: i64,
    at: String,
    actor: String,
    action: String,
    object: String,
    reason: String,
    outcome: String,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    nav: Nav,
    form: AuditForm,
    chain: String,
    chain_ok: bool,
    entries: Vec<Entry>,
}

/// `GET /audit`.
pub async fn page(
    State(state): State<Arc<ConsoleState>>,
    viewer: Viewer,
    Query(form): Query<AuditForm>,
) -> Response {
    let allowed = viewer.0.user.has(Role::Compliance);
    let event = AuditEvent {
        actor: viewer.0.actor(),
        action: "audit.read".into(),
        object: "audit-log".into(),
        reason: None,
        outcome: if allowed {
            Outcome::Success
        } else {
            Outcome::Denied
        },
    };
    if let Err(e) = state.vault.audit().append(event).await {
        tracing::error!(error = %e, "cannot write the audit log");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "the audit log is unavailable",
        )
            .into_response();
    }
    if !allowed {
        return (
            StatusCode::FORBIDDEN,
            "Only compliance officers read the audit log.",
        )
            .into_response();
    }
    let (chain, chain_ok) = match state.vault.audit().verify().await {
        Ok(report @ ChainReport::Intact { .. }) => (report.to_string(), true),
        Ok(report) => (report.to_string(), false),
        Err(e) => (format!("the chain cannot be checked: {e}"), false),
    };
    let latest = match state.vault.audit().latest(WINDOW).await {
        Ok(entries) => entries,
        Err(e) => return (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    };
    let matches =
        |field: &str, wanted: &str| wanted.trim().is_empty() || field.contains(wanted.trim());
    let entries = latest
        .into_iter()
        .rev()
        .filter(|e| {
            matches(&e.actor, &form.actor)
                && matches(&e.action, &form.action)
                && matches(&e.object, &form.object)
        })
        .take(SHOWN)
        .map(|e| Entry {
            seq: e.seq,
            at: utc(e.at),
            actor: e.actor,
            action: e.action,
            object: e.object,
            reason: e.reason.unwrap_or_default(),
            outcome: e.outcome.to_string(),
        })
        .collect();
    render(&AuditPage {
        nav: Nav::of(&viewer),
        form,
        chain,
        chain_ok,
        entries,
    })
}
