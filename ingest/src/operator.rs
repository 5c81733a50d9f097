//! Operators until the console brings users: one bootstrap API token, written on first start
//! to `DIR/operator.token` (0600) and presented as `Authorization: Bearer …`. The server keeps
//! only its SHA-256 and compares digests in constant time. The token acts for the bootstrap
//! operator of the `default` group.

use std::path::Path;

use axum::http::HeaderMap;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::{IngestError, Result};
use crate::secret_file;

/// The group the bootstrap operator belongs to.
pub const DEFAULT_GROUP: &str = "default";

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Operator {
    /// Operator name.
    pub name: String,
    /// The operator's group: codes and sessions are bound to it.
    pub group: String,
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
            })
        } else {
            Err(IngestError::Unauthorised)
        }
    }
}
