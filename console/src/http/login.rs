//! Signing in and out, and the home page.
//!
//! The login form is protected against cross-site submission too: `GET /login` sets a
//! short-lived random cookie and puts the same value in the form; `POST /login` needs both
//! to match (double submit), besides the cookies being `SameSite=Strict`.

use std::net::SocketAddr;
use std::sync::Arc;

use askama::Template;
use axum::Form;
use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use subtle::ConstantTimeEq;

use super::pages::{Nav, render};
use super::viewer::{COOKIE, cookie};
use super::{ConsoleState, Viewer};
use crate::auth::{LOGIN_LIFETIME, LoginError};

/// The login form's own CSRF cookie.
const LOGIN_COOKIE: &str = "idv_login_csrf";

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage<'a> {
    csrf: &'a str,
    name: &'a str,
    message: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage {
    nav: Nav,
}

fn random_hex() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the OS has randomness");
    hex::encode(bytes)
}

fn login_form(status: StatusCode, name: &str, message: Option<&str>) -> Response {
    let csrf = random_hex();
    let mut response = render(&LoginPage {
        csrf: &csrf,
        name,
        message,
    });
    *response.status_mut() = status;
    let cookie = format!(
        "{LOGIN_COOKIE}={csrf}; Path=/login; Max-Age=1800; Secure; HttpOnly; SameSite=Strict"
    );
    if let Ok(value) = cookie.parse() {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

/// `GET /login`.
pub async fn page() -> Response {
    login_form(StatusCode::OK, "", None)
}

/// The login form's fields.
#[derive(serde::Deserialize)]
pub struct LoginForm {
    name: String,
    password: String,
    #[serde(default)]
    otp: String,
    #[serde(default)]
    csrf: String,
}

/// `POST /login`.
pub async fn submit(
    State(state): State<Arc<ConsoleState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if expected.is_empty() || !bool::from(expected.as_bytes().ct_eq(form.csrf.as_bytes())) {
        return login_form(
            StatusCode::FORBIDDEN,
            &form.name,
            Some("The form expired or came from elsewhere: please sign in again."),
        );
    }
    let otp = Some(form.otp.as_str()).filter(|o| !o.trim().is_empty());
    match state
        .auth
        .login(&form.name, &form.password, otp, peer.ip())
        .await
    {
        Ok(login) => {
            let mut response = Redirect::to("/").into_response();
            let cookie = format!(
                "{COOKIE}={}; Path=/; Max-Age={}; Secure; HttpOnly; SameSite=Strict",
                login.token,
                LOGIN_LIFETIME.whole_seconds()
            );
            if let Ok(value) = cookie.parse() {
                response.headers_mut().append(header::SET_COOKIE, value);
            }
            response
        }
        Err(e) => {
            let status = match &e {
                LoginError::AddressNotAllowed(_) => StatusCode::FORBIDDEN,
                LoginError::TooManyAttempts => StatusCode::TOO_MANY_REQUESTS,
                LoginError::Storage(_) => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::UNAUTHORIZED,
            };
            login_form(status, &form.name, Some(&e.to_string()))
        }
    }
}

/// A write's CSRF field.
#[derive(serde::Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// `POST /logout`.
pub async fn logout(
    State(state): State<Arc<ConsoleState>>,
    viewer: Viewer,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Err(refused) = viewer.check_csrf(Some(&form.csrf)) {
        return refused.into_response();
    }
    if let Err(e) = state.auth.logout(&viewer.0).await {
        tracing::error!(error = %e, "cannot log out");
        return (StatusCode::SERVICE_UNAVAILABLE, "cannot sign out now").into_response();
    }
    let mut response = Redirect::to("/login").into_response();
    let cleared = format!("{COOKIE}=; Path=/; Max-Age=0; Secure; HttpOnly; SameSite=Strict");
    if let Ok(value) = cleared.parse() {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

/// `GET /`.
pub async fn home(viewer: Viewer) -> Response {
    render(&HomePage {
        nav: Nav::of(&viewer),
    })
}

/// `GET /console/me`: who is signed in, and the CSRF token scripts send as `X-CSRF-Token`.
pub async fn me(viewer: Viewer) -> Json<serde_json::Value> {
    let user = &viewer.0.user;
    Json(serde_json::json!({
        "name": user.name,
        "group": user.group,
        "roles": user.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
        "csrf": viewer.0.csrf,
    }))
}
