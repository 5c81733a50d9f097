//! The logged-in user behind a request, read from the login cookie; and the CSRF check every
//! write passes.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};

use super::ConsoleState;
use crate::auth::LoggedIn;

/// The login cookie's name.
pub const COOKIE: &str = "idv_console";

/// The value of cookie `name` in `headers`, if sent.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// A request from a logged-in user; without a valid login, a page request is sent to the
/// login page and anything else gets 401.
#[derive(Debug, Clone)]
pub struct Viewer(pub LoggedIn);

impl Viewer {
    /// Passes when `presented` is this login's CSRF token.
    ///
    /// # Errors
    /// [`CsrfRefused`] (a 403).
    pub fn check_csrf(&self, presented: Option<&str>) -> Result<(), CsrfRefused> {
        if presented.is_some_and(|p| self.0.csrf_matches(p)) {
            Ok(())
        } else {
            Err(CsrfRefused)
        }
    }
}

/// A write without this login's CSRF token.
#[derive(Debug)]
pub struct CsrfRefused;

impl IntoResponse for CsrfRefused {
    fn into_response(self) -> Response {
        (
            StatusCode::FORBIDDEN,
            "missing or wrong CSRF token: reload the page and try again",
        )
            .into_response()
    }
}

impl FromRequestParts<Arc<ConsoleState>> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<ConsoleState>,
    ) -> Result<Self, Self::Rejection> {
        let wants_page = parts
            .headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("text/html"));
        let refused = || {
            if wants_page {
                Redirect::to("/login").into_response()
            } else {
                (StatusCode::UNAUTHORIZED, "sign in first").into_response()
            }
        };
        let Some(token) = cookie(&parts.headers, COOKIE) else {
            return Err(refused());
        };
        match state.auth.session(&token).await {
            Ok(Some(login)) => Ok(Self(login)),
            Ok(None) => Err(refused()),
            Err(e) => {
                tracing::error!(error = %e, "cannot check a console login");
                Err((
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the console cannot check logins now",
                )
                    .into_response())
            }
        }
    }
}
