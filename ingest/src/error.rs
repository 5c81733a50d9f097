//! What can go wrong in the ingest server, and how each kind reaches an HTTP client: a status
//! and one line of JSON (`{"error": "…"}`), never an internal detail an attacker could use.

use std::path::{Path, PathBuf};

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// An ingest failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IngestError {
    /// A file under the data directory could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The TLS certificate or key is missing or unusable.
    #[error("TLS: {0}")]
    Tls(String),
    /// A server secret is missing, malformed, or cannot be made.
    #[error("secret: {0}")]
    Secret(String),
    /// The request carries no valid credentials.
    #[error("not authorised")]
    Unauthorised,
    /// Credentials are valid but do not allow this (a wrong code, another group's session).
    #[error("{0}")]
    Forbidden(String),
    /// No such thing (or not visible to the caller).
    #[error("{0}")]
    NotFound(String),
    /// Too many failed attempts from this source: wait.
    #[error("too many failed attempts; try again later")]
    TooManyAttempts,
    /// The request is malformed or not allowed in the current state.
    #[error("{0}")]
    BadRequest(String),
    /// The request's credentials are missing, stale or wrong, with a reason safe to show
    /// (a CTI upload's timestamp or signature).
    #[error("{0}")]
    Unauthenticated(String),
    /// It conflicts with what is stored (a CTI call recorded already, a replayed request).
    #[error("{0}")]
    Conflict(String),
    /// The body is larger than allowed.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// The body is not in a format we accept.
    #[error("{0}")]
    UnsupportedMedia(String),
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] storage::Error),
}

impl IngestError {
    /// An [`IngestError::Io`] for `path`.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The ingest server's result type.
pub type Result<T, E = IngestError> = std::result::Result<T, E>;

impl From<storage::db::DbError> for IngestError {
    fn from(e: storage::db::DbError) -> Self {
        Self::Storage(e.into())
    }
}

impl IntoResponse for IngestError {
    fn into_response(self) -> Response {
        let (status, message) = match &self {
            Self::Unauthorised => (StatusCode::UNAUTHORIZED, self.to_string()),
            Self::BadRequest(m) => (StatusCode::BAD_REQUEST, m.clone()),
            Self::Forbidden(m) => (StatusCode::FORBIDDEN, m.clone()),
            Self::NotFound(m) => (StatusCode::NOT_FOUND, m.clone()),
            Self::TooManyAttempts => (StatusCode::TOO_MANY_REQUESTS, self.to_string()),
            Self::Unauthenticated(m) => (StatusCode::UNAUTHORIZED, m.clone()),
            Self::Conflict(m) => (StatusCode::CONFLICT, m.clone()),
            Self::PayloadTooLarge(m) => (StatusCode::PAYLOAD_TOO_LARGE, m.clone()),
            Self::UnsupportedMedia(m) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, m.clone()),
            Self::Io { .. } | Self::Tls(_) | Self::Secret(_) | Self::Storage(_) => {
                tracing::error!(error = %self, "request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error".to_owned(),
                )
            }
        };
        (status, Json(serde_json::json!({ "error": message }))).into_response()
    }
}
