//! Before any media: TLS set up once (the pinned `--ca` certificate, else the public web PKI),
//! the one-time code redeemed for a session token and media key, and the customer's consent
//! recorded — over HTTPS with the types `proto::join` shares with the server.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use proto::join::{ConsentRequest, JoinRequest, JoinedSession};
use proto::{ConsentScope, SessionKey};
use uuid::Uuid;

use crate::config::AgentConfig;
use crate::error::AgentError;

/// The TLS client configuration every connection of the agent uses.
///
/// # Errors
/// An unreadable or empty `--ca` file.
pub fn tls_config(ca: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, AgentError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(path) => {
            let pem = std::fs::read(path)
                .map_err(|e| AgentError::Config(format!("--ca {}: {e}", path.display())))?;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| {
                    AgentError::Config(format!(
                        "--ca {}: not a PEM certificate ({e})",
                        path.display()
                    ))
                })?;
                roots
                    .add(cert)
                    .map_err(|e| AgentError::Config(format!("--ca {}: {e}", path.display())))?;
            }
            if roots.is_empty() {
                return Err(AgentError::Config(format!(
                    "--ca {}: holds no certificate",
                    path.display()
                )));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| AgentError::Config(format!("TLS: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A redeemed code: the session, its token and its media key.
pub struct Joined {
    /// The session.
    pub session_id: Uuid,
    /// The bearer of agent requests and the media connection's `hello`.
    pub token: String,
    /// Frames are sealed under it.
    pub key: SessionKey,
}

/// The agent's HTTPS client.
pub struct Api {
    http: reqwest::Client,
    base: url::Url,
}

impl Api {
    /// A client for the configured server.
    ///
    /// # Errors
    /// The HTTPS client cannot be built.
    pub fn new(config: &AgentConfig, tls: Arc<rustls::ClientConfig>) -> Result<Self, AgentError> {
        let http = reqwest::Client::builder()
            .use_preconfigured_tls((*tls).clone())
            .timeout(std::time::Duration::from_secs(20))
            .build()
            .map_err(|e| AgentError::Config(format!("HTTPS client: {e}")))?;
        Ok(Self {
            http,
            base: config.server.clone(),
        })
    }

    fn url(&self, path: &str) -> Result<url::Url, AgentError> {
        self.base
            .join(path)
            .map_err(|e| AgentError::Config(format!("--server {}: {e}", self.base)))
    }

    async fn post<T: serde::Serialize>(
        &self,
        path: &str,
        bearer: Option<&str>,
        body: &T,
    ) -> Result<Result<reqwest::Response, (u16, String)>, AgentError> {
        let mut request = self.http.post(self.url(path)?).json(body);
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.map_err(|e| AgentError::Unreachable {
            url: self.base.to_string(),
            reason: reason_of(&e),
        })?;
        if response.status().is_success() {
            return Ok(Ok(response));
        }
        let status = response.status().as_u16();
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        let reason = body["error"]
            .as_str()
            .unwrap_or("no reason given")
            .to_owned();
        Ok(Err((status, reason)))
    }

    /// Redeems the one-time code.
    ///
    /// # Errors
    /// [`AgentError::Unreachable`], or [`AgentError::CodeRefused`] with the server's reason.
    pub async fn join(&self, code: &str, group: &str) -> Result<Joined, AgentError> {
        let request = JoinRequest {
            code: code.trim().to_owned(),
            group: group.to_owned(),
            session_id: None,
        };
        let response = self
            .post("/api/v1/join", None, &request)
            .await?
            .map_err(|(_, reason)| AgentError::CodeRefused(reason))?;
        let joined: JoinedSession = response
            .json()
            .await
            .map_err(|e| AgentError::Refused(format!("unexpected answer to join: {e}")))?;
        let key = hex::decode(&joined.media_key)
            .ok()
            .and_then(|k| SessionKey::from_slice(&k))
            .ok_or_else(|| AgentError::Refused("the server sent no usable media key".into()))?;
        Ok(Joined {
            session_id: joined.session_id,
            token: joined.session_token,
            key,
        })
    }

    /// Records the customer's consent.
    ///
    /// # Errors
    /// [`AgentError::Unreachable`] or [`AgentError::Refused`].
    pub async fn consent(
        &self,
        joined: &Joined,
        scopes: &BTreeSet<ConsentScope>,
        granted_by: &str,
    ) -> Result<(), AgentError> {
        let request = ConsentRequest::new(scopes, granted_by);
        self.post("/api/v1/consent", Some(&joined.token), &request)
            .await?
            .map(drop)
            .map_err(|(status, reason)| AgentError::Refused(format!("{status}: {reason}")))
    }

    /// Ends the session as the customer over HTTPS (for when no WebSocket can be held; over
    /// one the agent closes with 4004). Ending a session that has ended already is fine.
    ///
    /// # Errors
    /// [`AgentError::Unreachable`] or [`AgentError::Refused`].
    pub async fn end_session(&self, joined: &Joined) -> Result<(), AgentError> {
        self.post(
            "/api/v1/agent/end",
            Some(&joined.token),
            &serde_json::json!({}),
        )
        .await?
        .map(drop)
        .map_err(|(status, reason)| AgentError::Refused(format!("{status}: {reason}")))
    }
}

impl Api {
    /// Posts one sealed screenshot frame; the answer is the highest screenshot seq durable.
    ///
    /// # Errors
    /// `Err((0, reason))` when the server cannot be reached, else the status and its reason.
    pub async fn post_screenshot(&self, token: &str, frame: Vec<u8>) -> Result<u64, (u16, String)> {
        let url = self
            .url("/api/v1/agent/screenshots")
            .map_err(|e| (0, e.to_string()))?;
        let response = self
            .http
            .post(url)
            .bearer_auth(token)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(frame)
            .send()
            .await
            .map_err(|e| (0, reason_of(&e)))?;
        let status = response.status().as_u16();
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        if (200..300).contains(&status) {
            body["acked"]
                .as_u64()
                .ok_or((status, "no acknowledgement in the answer".to_owned()))
        } else {
            Err((
                status,
                body["error"]
                    .as_str()
                    .unwrap_or("no reason given")
                    .to_owned(),
            ))
        }
    }
}

/// The innermost cause of a transport error (connection refused, certificate unknown …).
pub(crate) fn reason_of(error: &(dyn std::error::Error + 'static)) -> String {
    let mut source = error;
    while let Some(next) = source.source() {
        source = next;
    }
    source.to_string()
}
