//! The CTI system's side of the intake, for `idv cti push` and the tests: signed requests to
//! one server whose certificate is pinned, posting a recording in one request or in parts.

use std::path::Path;

use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;
use uuid::Uuid;

use super::parts::{PartStored, UploadState};
use super::{
    CtiKey, DIGEST_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, UPLOAD_PATH, UPLOADS_PATH, Uploaded,
    sign,
};
use crate::client::ClientError;

/// A call record as the CTI system sends it (times RFC 3339 on the CTI clock).
#[derive(Debug, Clone, Default)]
pub struct CallInfo {
    /// The CTI system's call id.
    pub call_id: String,
    /// Call start.
    pub started_at: String,
    /// Call end, if known.
    pub ended_at: Option<String>,
    /// The session, if known.
    pub session_id: Option<String>,
    /// A correlation key, when the session is not known.
    pub correlation: Option<String>,
    /// The recorder's file name.
    pub filename: Option<String>,
}

impl CallInfo {
    fn query(&self, with_end: bool) -> Vec<(&'static str, &str)> {
        let mut pairs = vec![
            ("call_id", self.call_id.as_str()),
            ("started_at", self.started_at.as_str()),
        ];
        let optional = [
            ("ended_at", self.ended_at.as_deref().filter(|_| with_end)),
            ("session_id", self.session_id.as_deref()),
            ("correlation", self.correlation.as_deref()),
            ("filename", self.filename.as_deref()),
        ];
        pairs.extend(optional.into_iter().filter_map(|(k, v)| Some((k, v?))));
        pairs
    }
}

/// A signed connection to one server's CTI intake.
pub struct CtiClient {
    base: reqwest::Url,
    http: reqwest::Client,
    key: CtiKey,
}

impl CtiClient {
    /// A client for `server` (`https://host:port`) trusting the certificate in `ca`, signing
    /// with `key`.
    ///
    /// # Errors
    /// A bad URL or an unreadable certificate.
    pub fn new(server: &str, ca: &Path, key: CtiKey) -> Result<Self, ClientError> {
        let base = reqwest::Url::parse(server.trim_end_matches('/'))
            .map_err(|e| ClientError::Setup(format!("--server {server:?} is not a URL: {e}")))?;
        let pem =
            std::fs::read(ca).map_err(|e| ClientError::Setup(format!("{}: {e}", ca.display())))?;
        let cert = reqwest::Certificate::from_pem(&pem)
            .map_err(|e| ClientError::Setup(format!("{}: {e}", ca.display())))?;
        let http = reqwest::Client::builder()
            .add_root_certificate(cert)
            .tls_built_in_root_certs(false)
            .build()?;
        Ok(Self { base, http, key })
    }

    fn url(&self, path: &str, query: &[(&str, &str)]) -> Result<reqwest::Url, ClientError> {
        let mut url = self
            .base
            .join(path)
            .map_err(|e| ClientError::Setup(format!("bad request path {path:?}: {e}")))?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        Ok(url)
    }

    /// A request signed over its method, target, time and body digest.
    fn signed(
        &self,
        method: reqwest::Method,
        url: reqwest::Url,
        digest: &[u8; 32],
    ) -> reqwest::RequestBuilder {
        let target = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        };
        let timestamp = time::OffsetDateTime::now_utc().unix_timestamp();
        let signature = sign(&self.key, method.as_str(), &target, timestamp, digest);
        self.http
            .request(method, url)
            .header(TIMESTAMP_HEADER, timestamp.to_string())
            .header(DIGEST_HEADER, hex::encode(digest))
            .header(SIGNATURE_HEADER, signature)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
    }

    async fn answer<T: serde::de::DeserializeOwned>(
        response: reqwest::Response,
    ) -> Result<T, ClientError> {
        let status = response.status();
        if !status.is_success() {
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            return Err(ClientError::Refused {
                status: status.as_u16(),
                reason: body["error"]
                    .as_str()
                    .unwrap_or("no reason given")
                    .to_owned(),
            });
        }
        response
            .json()
            .await
            .map_err(|e| ClientError::Setup(format!("unexpected answer: {e}")))
    }

    /// Posts the recording in `file` in one request, streamed.
    ///
    /// # Errors
    /// An unreadable file, transport failures or a refusal.
    pub async fn push(&self, call: &CallInfo, file: &Path) -> Result<Uploaded, ClientError> {
        let digest = sha256_of(file).await?;
        let url = self.url(UPLOAD_PATH, &call.query(true))?;
        let body = tokio::fs::File::open(file).await.map_err(io_error(file))?;
        let len = body.metadata().await.map_err(io_error(file))?.len();
        let response = self
            .signed(reqwest::Method::POST, url, &digest)
            .header(reqwest::header::CONTENT_LENGTH, len)
            .body(reqwest::Body::from(body))
            .send()
            .await?;
        Self::answer(response).await
    }

    /// Opens an upload in parts (or finds the call's open one, and where it stands).
    ///
    /// # Errors
    /// Transport failures or a refusal.
    pub async fn open_upload(&self, call: &CallInfo) -> Result<UploadState, ClientError> {
        let url = self.url(UPLOADS_PATH, &call.query(false))?;
        let empty: [u8; 32] = Sha256::digest(b"").into();
        let response = self
            .signed(reqwest::Method::POST, url, &empty)
            .send()
            .await?;
        Self::answer(response).await
    }

    /// Sends part `part` of an upload.
    ///
    /// # Errors
    /// Transport failures or a refusal (out of order, other bytes than stored, too large).
    pub async fn put_part(
        &self,
        upload: Uuid,
        part: u64,
        bytes: Vec<u8>,
    ) -> Result<PartStored, ClientError> {
        let url = self.url(&format!("{UPLOADS_PATH}/{upload}/parts/{part}"), &[])?;
        let digest: [u8; 32] = Sha256::digest(&bytes).into();
        let response = self
            .signed(reqwest::Method::PUT, url, &digest)
            .body(bytes)
            .send()
            .await?;
        Self::answer(response).await
    }

    /// Completes an upload: `sha256` is the digest of the whole recording.
    ///
    /// # Errors
    /// Transport failures or a refusal (the parts do not add up, no parts).
    pub async fn complete(
        &self,
        upload: Uuid,
        sha256: &[u8; 32],
        ended_at: Option<&str>,
    ) -> Result<Uploaded, ClientError> {
        let digest = hex::encode(sha256);
        let mut query = vec![("sha256", digest.as_str())];
        if let Some(end) = ended_at {
            query.push(("ended_at", end));
        }
        let url = self.url(&format!("{UPLOADS_PATH}/{upload}/complete"), &query)?;
        let empty: [u8; 32] = Sha256::digest(b"").into();
        let response = self
            .signed(reqwest::Method::POST, url, &empty)
            .send()
            .await?;
        Self::answer(response).await
    }

    /// Posts the recording in `file` in parts of `part_bytes`, as a recorder does while the
    /// call runs: opens (or resumes) the upload, sends each part it does not have yet, and
    /// completes it. A part whose answer was lost is sent again (the server stores it once).
    ///
    /// # Errors
    /// An unreadable file, transport failures that outlast the retries, or a refusal.
    pub async fn push_in_parts(
        &self,
        call: &CallInfo,
        file: &Path,
        part_bytes: usize,
    ) -> Result<Uploaded, ClientError> {
        let digest = sha256_of(file).await?;
        let upload = self.open_upload(call).await?;
        let mut reader = tokio::fs::File::open(file).await.map_err(io_error(file))?;
        let mut part = 0u64;
        loop {
            let mut chunk = Vec::with_capacity(part_bytes);
            (&mut reader)
                .take(part_bytes as u64)
                .read_to_end(&mut chunk)
                .await
                .map_err(io_error(file))?;
            if chunk.is_empty() {
                break;
            }
            if part >= upload.next_part {
                self.put_part_retrying(upload.upload_id, part, chunk)
                    .await?;
            }
            part += 1;
        }
        self.complete(upload.upload_id, &digest, call.ended_at.as_deref())
            .await
    }

    async fn put_part_retrying(
        &self,
        upload: Uuid,
        part: u64,
        bytes: Vec<u8>,
    ) -> Result<PartStored, ClientError> {
        let mut delay = std::time::Duration::from_millis(200);
        for _ in 0..4 {
            match self.put_part(upload, part, bytes.clone()).await {
                Err(ClientError::Transport(e)) => {
                    tracing::warn!(%upload, part, error = %e, "part not acknowledged; sending it again");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                other => return other,
            }
        }
        self.put_part(upload, part, bytes).await
    }
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> ClientError + '_ {
    move |e| ClientError::Setup(format!("{}: {e}", path.display()))
}

async fn sha256_of(path: &Path) -> Result<[u8; 32], ClientError> {
    let mut file = tokio::fs::File::open(path).await.map_err(io_error(path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = file.read(&mut buf).await.map_err(io_error(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().into())
}
