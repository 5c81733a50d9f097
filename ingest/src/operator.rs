//! Who is calling the operators' API. Two credentials are accepted:
//!
//! * the **bootstrap token**, written on first start to `DIR/operator.token` (0600) and
//!   presented as `Authorization: Bearer …` by the CLI and scripts. The server keeps only its
//!   SHA-256 and compares digests in constant time; it acts for the bootstrap operator of the
//!   `default` group;
//! * a **console login** (the `idv_console` cookie the web console sets): the browser of a
//!   signed-in operator or supervisor calls this API directly. Such a login acts as its user,
//!   in the user's group; every write must carry the login's CSRF token (`X-CSRF-Token`) and
//!   a request with an `Origin` must come from this server's own origin (a WebSocket upgrade
//!   is a GET a foreign page could start). Console logins never reach recordings here:
//!   compliance officers open those in the console.
use std::path::Path;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use sha2::{Digest, Sha256};
use storage::db::Role;
use subtle::ConstantTimeEq;

use crate::error::{IngestError, Result};
use crate::secret_file;
use crate::server::AppState;

/// The console's login cookie.
pub const LOGIN_COOKIE: &str = "idv_console";

/// The group the bootstrap operator belongs to.
pub const DEFAULT_GROUP: &str = "default";

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Operator {
    /// Operator name.
    pub name: String,
    /// The operator's group: codes and sessions are bound to it.
    pub group: String,
    /// How they proved it.
    pub credential: Credential,
}

/// How an operator proved who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Credential {
    /// The bootstrap token (the CLI, scripts, the console's own feed).
    BootstrapToken,
    /// A signed-in console user (operator or supervisor).
    ConsoleLogin,
}

impl Operator {
    /// The name the audit log knows them by: `operator:bootstrap`, or the console's
    /// `user:NAME` — one actor for what a user does in the console and through this API.
    #[must_use]
    pub fn actor(&self) -> String {
        match self.credential {
            Credential::BootstrapToken => format!("operator:{}", self.name),
            Credential::ConsoleLogin => format!("user:{}", self.name),
        }
    }

    /// Passes for the bootstrap token only (recordings: the CLI's contract; people open
    /// recordings in the console, as compliance officers).
    ///
    /// # Errors
    /// [`IngestError::Forbidden`] for a console login.
    pub fn require_token(&self) -> Result<()> {
        match self.credential {
            Credential::BootstrapToken => Ok(()),
            Credential::ConsoleLogin => Err(IngestError::Forbidden(
                "recordings are opened in the console, by compliance officers".into(),
            )),
        }
    }
}

/// The value of cookie `name` in `headers`, if sent.
#[must_use]
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

impl FromRequestParts<Arc<AppState>> for Operator {
    type Rejection = IngestError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let found = if parts.headers.contains_key(header::AUTHORIZATION) {
            state.operators.authenticate(&parts.headers)
        } else if let Some(token) = cookie(&parts.headers, LOGIN_COOKIE) {
            console_login(state, parts, &token).await
        } else {
            Err(IngestError::Unauthorised)
        };
        found.inspect_err(|e| {
            if matches!(e, IngestError::Unauthorised) {
                state.metrics.unauthorised.fetch_add(1, Ordering::Relaxed);
            }
        })
    }
}

/// The operator a console login stands for.
async fn console_login(state: &AppState, parts: &Parts, token: &str) -> Result<Operator> {
    let headers = &parts.headers;
    if !same_origin(parts) {
        return Err(IngestError::Forbidden(
            "a console login is accepted from the console's own pages only".into(),
        ));
    }
    let login = state
        .sessions
        .vault()
        .db()
        .login(token, time::OffsetDateTime::now_utc())
        .await?
        .ok_or(IngestError::Unauthorised)?;
    if !parts.method.is_safe() {
        let presented = headers
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let matches: bool = presented
            .as_bytes()
            .ct_eq(login.session.csrf_token.as_bytes())
            .into();
        if !matches {
            return Err(IngestError::Forbidden(
                "missing or wrong CSRF token: reload the page and try again".into(),
            ));
        }
    }
    let user = login.user;
    if !(user.has(Role::Operator) || user.has(Role::Supervisor)) {
        return Err(IngestError::Forbidden(
            "only operators and supervisors run sessions".into(),
        ));
    }
    Ok(Operator {
        name: user.name,
        group: user.group,
        credential: Credential::ConsoleLogin,
    })
}

/// Whether a request's `Origin`, if it has one, is this server (`https://` + the host it was
/// addressed to: HTTP/2's authority or HTTP/1's `Host`).
fn same_origin(parts: &Parts) -> bool {
    let Some(origin) = parts.headers.get(header::ORIGIN) else {
        return true;
    };
    let host = parts.uri.authority().map(|a| a.as_str()).or_else(|| {
        parts
            .headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
    });
    match (origin.to_str().ok(), host) {
        (Some(origin), Some(host)) => origin.strip_prefix("https://") == Some(host),
        _ => false,
    }
}

/// The accepted operator credentials.
#[derive(Clone)]
pub struct OperatorTokens {
    digest: [u8; 32],
}

impl OperatorTokens {
    /// Loads `DIR/operator.token`, writing a fresh random one first if there is none.
    ///
    /// # Errors
    /// The file cannot be written or read, or holds no token.
    pub fn load_or_create(data_dir: &Path) -> Result<Self> {
        let path = data_dir.join("operator.token");
        if !path.exists() {
            let mut secret = [0u8; 32];
            getrandom::fill(&mut secret)
                .map_err(|e| IngestError::Secret(format!("no OS randomness: {e}")))?;
            secret_file::write_private(&path, format!("{}\n", hex::encode(secret)).as_bytes())?;
            tracing::info!(path = %path.display(), "wrote the bootstrap operator token");
        }
        let token = std::fs::read_to_string(&path).map_err(|e| IngestError::io(&path, e))?;
        let token = token.trim();
        if token.len() < 32 {
            return Err(IngestError::BadRequest(format!(
                "{}: not a token",
                path.display()
            )));
        }
        Ok(Self {
            digest: Sha256::digest(token.as_bytes()).into(),
        })
    }

    /// The operator the request's bearer token stands for.
    ///
    /// # Errors
    /// [`IngestError::Unauthorised`] without a valid token.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Operator> {
        let presented = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or(IngestError::Unauthorised)?;
        let digest: [u8; 32] = Sha256::digest(presented.trim().as_bytes()).into();
        if bool::from(digest.ct_eq(&self.digest)) {
            Ok(Operator {
                name: "bootstrap".into(),
                group: DEFAULT_GROUP.into(),
                credential: Credential::BootstrapToken,
            })
        } else {
            Err(IngestError::Unauthorised)
        }
    }
}
