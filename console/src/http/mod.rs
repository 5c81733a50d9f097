//! The console's HTTP side: pages rendered on the server (askama, escaped by default), a login
//! cookie, and a CSRF token on every write. Served by `idv serve` beside the ingest API (the
//! `console` role), on the same TLS listener.
//!
//! Every response carries a strict Content-Security-Policy (scripts and styles from the
//! console only), no framing, no referrer and no caching.

mod admin;
mod audit;
mod join;
mod live;
mod login;
mod pages;
mod recordings;
mod sessions;
mod viewer;

use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use storage::Vault;

pub use live::LiveSource;
pub use viewer::Viewer;

use crate::auth::Authenticator;

/// What the console's handlers share.
pub struct ConsoleState {
    /// Logins.
    pub auth: Authenticator,
    /// The vault (recordings, audit log, users).
    pub vault: Vault,
    /// Recordings opened for a stated reason.
    pub grants: crate::recordings::access::Grants,
    /// Where live sessions are watched from, once known (`idv serve` sets it when its
    /// listener is up).
    pub live_source: std::sync::OnceLock<LiveSource>,
    /// Watermarked MP4 exports that may run at once (each decodes and re-encodes: a 720p
    /// export takes ~230 MB and both cores of a small node).
    pub exports: Arc<tokio::sync::Semaphore>,
}

/// Watermarked MP4 exports one console runs at once; more are answered 503.
pub const CONCURRENT_EXPORTS: usize = 2;

impl ConsoleState {
    /// The console's state over `vault`.
    #[must_use]
    pub fn new(vault: Vault) -> Arc<Self> {
        Arc::new(Self {
            auth: Authenticator::new(vault.clone()),
            vault,
            grants: crate::recordings::access::Grants::default(),
            live_source: std::sync::OnceLock::new(),
            exports: Arc::new(tokio::sync::Semaphore::new(CONCURRENT_EXPORTS)),
        })
    }
}

/// The console's routes (serve with `into_make_service_with_connect_info::<SocketAddr>`: a
/// login's source address is the TCP peer).
pub fn router(state: Arc<ConsoleState>) -> Router {
    Router::new()
        .route("/", get(login::home))
        .route("/login", get(login::page).post(login::submit))
        .route("/logout", post(login::logout))
        .route("/console/me", get(login::me))
        .route("/recordings", get(recordings::list))
        .route("/recordings/{session}", get(recordings::page))
        .route("/recordings/{session}/open", post(recordings::open))
        .route("/recordings/{session}/media", get(recordings::media))
        .route("/recordings/{session}/verify", post(recordings::verify))
        .route(
            "/recordings/{session}/archive",
            get(recordings::export_sealed),
        )
        .route(
            "/recordings/{session}/export.mp4",
            get(recordings::export_mp4),
        )
        .route("/audit", get(audit::page))
        .route("/users", get(admin::users).post(admin::add))
        .route("/users/{name}/disable", post(admin::disable))
        .route("/users/{name}/enable", post(admin::enable))
        .route("/groups", post(admin::group))
        .route("/sessions", get(sessions::list))
        .route("/sessions/{session}", get(sessions::page))
        .route("/sessions/{session}/watch", get(sessions::watch))
        .route("/sessions/{session}/live", post(live::offer))
        .route("/console.css", get(stylesheet))
        .route("/console.js", get(script))
        .merge(join::routes(state.clone()))
        .layer(middleware::from_fn(security_headers))
        .with_state(state)
}

async fn stylesheet() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../console.css"),
    )
        .into_response()
}

async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("../console.js"),
    )
        .into_response()
}

async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; img-src 'self' data:; media-src 'self' blob:; connect-src 'self'; \
             frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}
