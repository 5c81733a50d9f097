//! The admins' page (`/users`): the accounts, a form to add one (its generated password and
//! enrolment link shown once), a button to disable or enable each (never one's own), and a
//! group's allowed addresses and retention period. Admins only; every change, and every
//! refusal, is audited.

use std::sync::Arc;

use askama::Template;
use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use storage::audit::{AuditEvent, Outcome};
use storage::db::Role;

use super::pages::{Nav, render_with};
use super::{ConsoleState, Viewer};
use crate::accounts::{self, AccountRequest, DisableError};
use crate::auth::addresses::AllowedAddresses;

/// One account as the page lists it.
struct UserRow {
    name: String,
    group: String,
    roles: String,
    allowed: String,
    second_factor: &'static str,
    disabled: bool,
    /// The admin looking at the page (who cannot disable themselves).
    is_viewer: bool,
}

#[derive(Template)]
#[template(path = "users.html")]
struct UsersPage {
    nav: Nav,
    users: Vec<UserRow>,
    message: Option<String>,
    ok: bool,
}

async fn audit(
    state: &ConsoleState,
    viewer: &Viewer,
    action: &str,
    object: String,
    reason: String,
    outcome: Outcome,
) -> Result<(), Response> {
    let event = AuditEvent {
        actor: viewer.0.actor(),
        action: action.into(),
        object,
        reason: Some(reason),
        outcome,
    };
    state
        .vault
        .audit()
        .append(event)
        .await
        .map(drop)
        .map_err(|e| {
            tracing::error!(error = %e, "cannot write the audit log");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "the audit log is unavailable",
            )
                .into_response()
        })
}

/// Admins pass; anyone else gets 403, audited.
async fn admin_only(state: &ConsoleState, viewer: &Viewer, action: &str) -> Result<(), Response> {
    if viewer.0.user.has(Role::Admin) {
        return Ok(());
    }
    audit(
        state,
        viewer,
        action,
        "users".into(),
        "refused: admins only".into(),
        Outcome::Denied,
    )
    .await?;
    Err((
        StatusCode::FORBIDDEN,
        "Only admins manage users and groups.",
    )
        .into_response())
}

async fn page(
    state: &ConsoleState,
    viewer: &Viewer,
    status: StatusCode,
    message: Option<String>,
    ok: bool,
) -> Response {
    let users = match state.vault.db().users().await {
        Ok(users) => users,
        Err(e) => return (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    };
    let users = users
        .into_iter()
        .map(|u| {
            let roles: Vec<&str> = u.roles.iter().map(|r| r.as_str()).collect();
            let allowed = if u.allowed_cidrs.is_empty() {
                "the group's addresses".to_owned()
            } else {
                u.allowed_cidrs.join(", ")
            };
            UserRow {
                is_viewer: u.user_id == viewer.0.user.user_id,
                name: u.name,
                group: u.group,
                roles: roles.join(", "),
                allowed,
                second_factor: if u.totp_wrapped.is_some() {
                    "TOTP"
                } else {
                    "—"
                },
                disabled: u.disabled,
            }
        })
        .collect();
    render_with(
        status,
        &UsersPage {
            nav: Nav::of(viewer),
            users,
            message,
            ok,
        },
    )
}

/// `GET /users`.
pub async fn users(State(state): State<Arc<ConsoleState>>, viewer: Viewer) -> Response {
    if let Err(refused) = admin_only(&state, &viewer, "user.list").await {
        return refused;
    }
    page(&state, &viewer, StatusCode::OK, None, true).await
}

/// The add-user form.
#[derive(serde::Deserialize)]
pub struct AddForm {
    #[serde(default)]
    csrf: String,
    name: String,
    group: String,
    roles: String,
    #[serde(default)]
    allowed: String,
    #[serde(default)]
    totp: Option<String>,
}

fn list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `POST /users`.
pub async fn add(
    State(state): State<Arc<ConsoleState>>,
    viewer: Viewer,
    Form(form): Form<AddForm>,
) -> Response {
    if let Err(refused) = viewer.check_csrf(Some(&form.csrf)) {
        return refused.into_response();
    }
    if let Err(refused) = admin_only(&state, &viewer, "user.add").await {
        return refused;
    }
    let roles: Result<Vec<Role>, String> = list(&form.roles)
        .iter()
        .map(|r| {
            Role::parse(r).ok_or_else(|| {
                format!("unknown role {r:?} (operator, supervisor, compliance, admin)")
            })
        })
        .collect();
    let made = match roles {
        Err(e) => Err(e),
        Ok(roles) => accounts::add(
            &state.vault,
            AccountRequest {
                name: form.name.trim().to_owned(),
                group: form.group.trim().to_owned(),
                roles,
                password: None,
                allowed: list(&form.allowed),
                second_factor: form.totp.is_some(),
            },
            &viewer.0.actor(),
        )
        .await
        .map_err(|e| e.to_string()),
    };
    match made {
        Ok(account) => {
            let mut message = format!(
                "{} added. Password (shown once): {}",
                form.name.trim(),
                account.generated_password.unwrap_or_default()
            );
            if let Some(url) = account.totp_url {
                message.push_str(&format!(" — one-time codes: {url}"));
            }
            page(&state, &viewer, StatusCode::OK, Some(message), true).await
        }
        Err(why) => page(&state, &viewer, StatusCode::BAD_REQUEST, Some(why), false).await,
    }
}

/// The group settings form.
#[derive(serde::Deserialize)]
pub struct GroupForm {
    #[serde(default)]
    csrf: String,
    group: String,
    #[serde(default)]
    allowed: String,
    #[serde(default)]
    retention_days: String,
}

/// `POST /groups`.
pub async fn group(
    State(state): State<Arc<ConsoleState>>,
    viewer: Viewer,
    Form(form): Form<GroupForm>,
) -> Response {
    if let Err(refused) = viewer.check_csrf(Some(&form.csrf)) {
        return refused.into_response();
    }
    if let Err(refused) = admin_only(&state, &viewer, "group.set").await {
        return refused;
    }
    let group = form.group.trim();
    let allowed = match AllowedAddresses::parse(&list(&form.allowed)) {
        Ok(allowed) => allowed,
        Err(e) => {
            return page(
                &state,
                &viewer,
                StatusCode::BAD_REQUEST,
                Some(e.to_string()),
                false,
            )
            .await;
        }
    };
    let days = match form.retention_days.trim() {
        "" => None,
        d => match d.parse::<u32>() {
            Ok(n) if n > 0 => Some(n),
            _ => {
                return page(
                    &state,
                    &viewer,
                    StatusCode::BAD_REQUEST,
                    Some(format!("{d:?} is not a number of days")),
                    false,
                )
                .await;
            }
        },
    };
    let db = state.vault.db();
    let saved = async {
        db.set_group_cidrs(group, &allowed.to_strings()).await?;
        db.set_group_retention(group, days).await
    }
    .await;
    if let Err(e) = saved {
        return page(
            &state,
            &viewer,
            StatusCode::BAD_REQUEST,
            Some(e.to_string()),
            false,
        )
        .await;
    }
    let what = format!(
        "allowed from {}; recordings {}",
        if allowed.is_open() {
            "anywhere".to_owned()
        } else {
            allowed.to_strings().join(", ")
        },
        days.map_or("kept until shredded by hand".to_owned(), |d| format!(
            "kept {d} days"
        ))
    );
    if let Err(unavailable) = audit(
        &state,
        &viewer,
        "group.set",
        format!("group:{group}"),
        what.clone(),
        Outcome::Success,
    )
    .await
    {
        return unavailable;
    }
    page(
        &state,
        &viewer,
        StatusCode::OK,
        Some(format!("group {group}: {what}")),
        true,
    )
    .await
}

/// The disable and enable buttons' form.
#[derive(serde::Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// `POST /users/{name}/disable`: the account can no longer log in, and its logins end now.
pub async fn disable(
    State(state): State<Arc<ConsoleState>>,
    viewer: Viewer,
    Path(name): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    set_disabled(&state, &viewer, &name, &form, true).await
}

/// `POST /users/{name}/enable`: the account may log in again.
pub async fn enable(
    State(state): State<Arc<ConsoleState>>,
    viewer: Viewer,
    Path(name): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    set_disabled(&state, &viewer, &name, &form, false).await
}

async fn set_disabled(
    state: &ConsoleState,
    viewer: &Viewer,
    name: &str,
    form: &CsrfForm,
    disable: bool,
) -> Response {
    let action = if disable {
        "user.disable"
    } else {
        "user.enable"
    };
    if let Err(refused) = viewer.check_csrf(Some(&form.csrf)) {
        return refused.into_response();
    }
    if let Err(refused) = admin_only(state, viewer, action).await {
        return refused;
    }
    if disable && name == viewer.0.user.name {
        let why = "an admin cannot disable their own account";
        if let Err(unavailable) = audit(
            state,
            viewer,
            action,
            format!("user:{name}"),
            format!("refused: {why}"),
            Outcome::Denied,
        )
        .await
        {
            return unavailable;
        }
        return page(
            state,
            viewer,
            StatusCode::BAD_REQUEST,
            Some(format!("Not done: {why}.")),
            false,
        )
        .await;
    }
    match accounts::set_disabled(&state.vault, name, disable, &viewer.0.actor()).await {
        Ok(done) => {
            let message = if disable {
                format!(
                    "{name} is disabled: {} console logins ended; logging in is refused.",
                    done.logins_ended
                )
            } else {
                format!("{name} is enabled and may log in again.")
            };
            page(state, viewer, StatusCode::OK, Some(message), true).await
        }
        Err(e @ DisableError::NoSuchUser(_)) => {
            page(
                state,
                viewer,
                StatusCode::NOT_FOUND,
                Some(e.to_string()),
                false,
            )
            .await
        }
        Err(e @ DisableError::Storage(_)) => {
            (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response()
        }
    }
}
