//! The operator's side of the HTTP API, for the CLI and tests: HTTPS to one server whose
//! certificate is pinned (`--ca`, by default the server's own `DIR/tls/cert.pem`), with the
//! bearer token from a file (`--token`, by default `DIR/operator.token`).

use std::path::Path;

use uuid::Uuid;

use crate::recordings::RecordingStatus;
use crate::session::CreatedSession;

/// A client failure, with the server's one-line reason when it gave one.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A local file (certificate, token) could not be read or is not what it should be.
    #[error("{0}")]
    Setup(String),
    /// The server could not be reached.
    #[error("cannot reach the server: {0}")]
    Transport(#[from] reqwest::Error),
    /// The server refused.
    #[error("the server said {status}: {reason}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// Its `error` text.
        reason: String,
    },
}

/// An operator's connection to a server.
pub struct OperatorClient {
    base: String,
    http: reqwest::Client,
    token: String,
}

impl OperatorClient {
    /// A client for `server` (`https://host:port`) trusting `ca` and presenting the token in
    /// `token_file`.
    ///
    /// # Errors
    /// Unreadable or invalid certificate or token file.
    pub fn new(server: &str, ca: &Path, token_file: &Path) -> Result<Self, ClientError> {
        let pem =
            std::fs::read(ca).map_err(|e| ClientError::Setup(format!("{}: {e}", ca.display())))?;
        let cert = reqwest::Certificate::from_pem(&pem)
            .map_err(|e| ClientError::Setup(format!("{}: {e}", ca.display())))?;
        let token = std::fs::read_to_string(token_file)
            .map_err(|e| ClientError::Setup(format!("{}: {e}", token_file.display())))?
            .trim()
            .to_owned();
        let http = reqwest::Client::builder()
            .add_root_certificate(cert)
            .tls_built_in_root_certs(false)
            .build()?;
        Ok(Self {
            base: server.trim_end_matches('/').to_owned(),
            http,
            token,
        })
    }

    async fn post(
        &self,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<serde_json::Value, ClientError> {
        let mut request = self
            .http
            .post(format!("{}/api/v1{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status();
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        if status.is_success() {
            Ok(body)
        } else {
            Err(ClientError::Refused {
                status: status.as_u16(),
                reason: body["error"]
                    .as_str()
                    .unwrap_or("no reason given")
                    .to_owned(),
            })
        }
    }

    async fn refused(response: reqwest::Response) -> ClientError {
        let status = response.status().as_u16();
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        ClientError::Refused {
            status,
            reason: body["error"]
                .as_str()
                .unwrap_or("no reason given")
                .to_owned(),
        }
    }

    /// The operator's group's sessions that have a recording (queued, muxing, done, failed).
    ///
    /// # Errors
    /// Transport failures or a refusal.
    pub async fn recordings(&self) -> Result<Vec<RecordingStatus>, ClientError> {
        let response = self
            .http
            .get(format!("{}/api/v1/recordings", self.base))
            .bearer_auth(&self.token)
            .send()
            .await?;
        if !response.status().is_success() {
            return Err(Self::refused(response).await);
        }
        response
            .json()
            .await
            .map_err(|e| ClientError::Setup(format!("unexpected answer: {e}")))
    }

    /// Downloads a session's sealed archive to `out`: written beside it and renamed when
    /// complete, so `out` is the whole archive or absent. Returns its length.
    ///
    /// # Errors
    /// Transport failures, a refusal (not muxed yet, unknown), or the file cannot be written.
    pub async fn download(&self, session: Uuid, out: &Path) -> Result<u64, ClientError> {
        use tokio::io::AsyncWriteExt;
        let mut response = self
            .http
            .get(format!("{}/api/v1/recordings/{session}/archive", self.base))
            .bearer_auth(&self.token)
            .send()
            .await?;
        if !response.status().is_success() {
            return Err(Self::refused(response).await);
        }
        let io = |e: std::io::Error| ClientError::Setup(format!("{}: {e}", out.display()));
        let part = out.with_extension("idvr.part");
        let mut file = tokio::fs::File::create(&part).await.map_err(io)?;
        let mut written = 0u64;
        let result: Result<(), ClientError> = async {
            while let Some(chunk) = response.chunk().await? {
                file.write_all(&chunk).await.map_err(io)?;
                written += chunk.len() as u64;
            }
            file.sync_all().await.map_err(io)?;
            Ok(())
        }
        .await;
        if let Err(e) = result {
            let _ = tokio::fs::remove_file(&part).await;
            return Err(e);
        }
        tokio::fs::rename(&part, out).await.map_err(io)?;
        Ok(written)
    }

    /// Creates a session in the operator's group: its id and one-time code.
    ///
    /// # Errors
    /// Transport failures or a refusal.
    pub async fn create_session(
        &self,
        case_reference: Option<&str>,
    ) -> Result<CreatedSession, ClientError> {
        let request = case_reference.map(|c| serde_json::json!({ "case_reference": c }));
        let body = self.post("/sessions", request).await?;
        serde_json::from_value(body)
            .map_err(|e| ClientError::Setup(format!("unexpected answer: {e}")))
    }

    /// Ends a session.
    ///
    /// # Errors
    /// Transport failures or a refusal (unknown session, another group's).
    pub async fn end_session(&self, session: Uuid, reason: &str) -> Result<(), ClientError> {
        self.post(
            &format!("/sessions/{session}/end"),
            Some(serde_json::json!({ "reason": reason })),
        )
        .await
        .map(drop)
    }
}
