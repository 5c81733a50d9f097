//! What every page shares: the header's navigation (by role) and rendering.

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use storage::db::Role;

use super::Viewer;

/// The header: who is signed in, what they may open, the CSRF token of the sign-out form.
pub struct Nav {
    pub name: String,
    pub group: String,
    pub roles: String,
    pub csrf: String,
    pub operator: bool,
    pub compliance: bool,
    pub admin: bool,
}

impl Nav {
    /// The header for `viewer`.
    #[must_use]
    pub fn of(viewer: &Viewer) -> Self {
        let user = &viewer.0.user;
        Self {
            name: user.name.clone(),
            group: user.group.clone(),
            roles: user
                .roles
                .iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            csrf: viewer.0.csrf.clone(),
            operator: user.has(Role::Operator) || user.has(Role::Supervisor),
            compliance: user.has(Role::Compliance),
            admin: user.has(Role::Admin),
        }
    }
}

/// The page, or a 500 if it does not render.
pub fn render(page: &impl Template) -> Response {
    match page.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "a page did not render");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// The page with `status`.
pub fn render_with(status: StatusCode, page: &impl Template) -> Response {
    let mut response = render(page);
    if response.status() == StatusCode::OK {
        *response.status_mut() = status;
    }
    response
}

/// A UTC time as pages show it.
#[must_use]
pub fn utc(at: time::OffsetDateTime) -> String {
    let f = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    at.format(&f).unwrap_or_else(|_| at.to_string())
}
