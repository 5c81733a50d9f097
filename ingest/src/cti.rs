//! CTI audio intake: the call centre's telephony posts each call recording to
//! `POST /api/v1/cti/recordings`, and the audio is sealed into the blob store as it arrives.
//!
//! # Request
//! * Body: the recording's bytes as the recorder wrote them (WAV, FLAC, Ogg, MP3, AAC/ADTS or
//!   M4A), streamed; never held in memory and never written to disk unsealed.
//! * Query (so the signature covers the call record): `call_id` (required), `started_at`
//!   (RFC 3339, CTI clock, required), `ended_at` (RFC 3339, optional), `session_id` (optional),
//!   `correlation` (optional, e.g. `ext-4711@2026-11-21T10:00Z`), `filename` (optional hint,
//!   kept in the manifest). A session id or a correlation key is required.
//! * Headers: `X-Idv-Timestamp` (unix seconds), `X-Idv-Content-SHA256` (hex SHA-256 of the
//!   body), `X-Idv-Signature` (hex HMAC-SHA256, see [`sign`]).
//!
//! # Authentication
//! The CTI secret is 32 random bytes written hex to `DIR/cti.key` (0600) on first start. The
//! signature is `hex(HMAC-SHA256(secret, METHOD "\n" PATH?QUERY "\n" TIMESTAMP "\n"
//! hex(SHA-256(body))))`, compared in constant time before any body byte is read; a timestamp
//! more than [`REPLAY_WINDOW`] off the server clock is refused. The body is hashed while it
//! streams: when it ends, a digest other than the signed one (a tampered body) aborts the seal.
//! A request already accepted is refused if replayed (409), and a call id is recorded once
//! per session (or once per correlation key while unattached).
//!
//! # Validation
//! Only the leading bytes are inspected ([`sniff`]): a known container or frame sync, and for
//! WAV a well-formed RIFF chunk walk up to the `data` chunk. Decoding is the muxer's job. A
//! refused upload leaves nothing: the sealed upload is aborted and its key forgotten.

use std::collections::{HashMap, HashSet};
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{OriginalUri, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use futures::TryStreamExt;
use hmac::{KeyInit, Mac};
use sha2::{Digest, Sha256};
use storage::Access;
use storage::audit::{AuditEvent, Outcome};
use storage::db::{CtiRecording, DbError};
use subtle::ConstantTimeEq;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::io::{AsyncRead, ReadBuf};
use tokio_util::io::StreamReader;
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::error::{IngestError, Result};
use crate::secret_file;
use crate::server::AppState;

/// The request path of an upload.
pub const UPLOAD_PATH: &str = "/api/v1/cti/recordings";
/// Header: the request time, unix seconds.
pub const TIMESTAMP_HEADER: &str = "x-idv-timestamp";
/// Header: hex SHA-256 of the body.
pub const DIGEST_HEADER: &str = "x-idv-content-sha256";
/// Header: hex HMAC-SHA256 of the canonical request ([`sign`]).
pub const SIGNATURE_HEADER: &str = "x-idv-signature";
/// How far a request's timestamp may be from the server clock.
pub const REPLAY_WINDOW: Duration = Duration::from_secs(300);
/// The default largest recording accepted, bytes.
pub const DEFAULT_MAX_CTI_BYTES: u64 = 512 << 20;
/// How many leading bytes [`sniff`] looks at (fewer if the body is shorter).
pub const SNIFF_LEN: usize = 64 * 1024;

/// The CTI system's shared secret.
#[derive(Clone)]
pub struct CtiKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for CtiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CtiKey(…)")
    }
}

impl CtiKey {
    /// Loads `DIR/cti.key`, writing a fresh random one (0600) first if there is none.
    ///
    /// # Errors
    /// The file cannot be written or read, or holds no key.
    pub fn load_or_create(data_dir: &Path) -> Result<Self> {
        let path = data_dir.join("cti.key");
        if !path.exists() {
            let mut secret = Zeroizing::new([0u8; 32]);
            getrandom::fill(secret.as_mut())
                .map_err(|e| IngestError::Secret(format!("no OS randomness: {e}")))?;
            let text = Zeroizing::new(format!("{}\n", hex::encode(secret.as_ref())));
            secret_file::write_private(&path, text.as_bytes())?;
            tracing::info!(path = %path.display(), "wrote the CTI signing key");
        }
        Self::from_file(&path)
    }

    /// Reads a key file: 64 hex digits.
    ///
    /// # Errors
    /// The file cannot be read or holds no key.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text =
            Zeroizing::new(std::fs::read_to_string(path).map_err(|e| IngestError::io(path, e))?);
        let mut key = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(text.trim(), key.as_mut()).map_err(|_| {
            IngestError::Secret(format!("{}: not a CTI key (64 hex digits)", path.display()))
        })?;
        Ok(Self(key))
    }

    fn mac(
        &self,
        method: &str,
        path_and_query: &str,
        timestamp: i64,
        body_sha256: &[u8; 32],
    ) -> [u8; 32] {
        let mut mac = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(self.0.as_ref())
            .expect("HMAC takes any key length");
        mac.update(method.as_bytes());
        mac.update(b"\n");
        mac.update(path_and_query.as_bytes());
        mac.update(b"\n");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b"\n");
        mac.update(hex::encode(body_sha256).as_bytes());
        mac.finalize().into_bytes().into()
    }
}

/// The `X-Idv-Signature` of a request: hex HMAC-SHA256 under `key` of
/// `METHOD \n PATH?QUERY \n TIMESTAMP \n hex(SHA-256(body))`. `path_and_query` is the request
/// target exactly as sent (percent-encoding included). The one implementation, shared by the
/// server and `idv cti push`.
#[must_use]
pub fn sign(
    key: &CtiKey,
    method: &str,
    path_and_query: &str,
    timestamp: i64,
    body_sha256: &[u8; 32],
) -> String {
    hex::encode(key.mac(method, path_and_query, timestamp, body_sha256))
}

/// An audio container or stream the muxer reads, as recognised by its leading bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AudioFormat {
    /// RIFF/WAVE (PCM or G.711).
    Wav,
    /// Native FLAC.
    Flac,
    /// Ogg (Vorbis or Opus).
    Ogg,
    /// MP3 (ID3 tag or an MPEG audio frame).
    Mp3,
    /// AAC in ADTS frames.
    Aac,
    /// MPEG-4 audio (`ftyp`).
    M4a,
}

/// Why an upload's leading bytes were refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SniffError {
    /// Not a format the muxer reads (415).
    Unsupported(String),
    /// The format is recognised but its header is damaged or cut short (400).
    Corrupt(String),
}

/// Recognises an upload from its first bytes (up to [`SNIFF_LEN`]; `complete` says whether
/// `head` is the whole body). WAV headers are walked chunk by chunk up to `data`.
///
/// # Errors
/// [`SniffError`] with a one-line reason.
pub fn sniff(head: &[u8], complete: bool) -> Result<AudioFormat, SniffError> {
    let unsupported = || {
        SniffError::Unsupported(
            "not a recognised audio format (expected WAV, FLAC, Ogg, MP3, AAC or M4A)".into(),
        )
    };
    if head.len() < 4 {
        return Err(if head.is_empty() {
            SniffError::Corrupt("the recording is empty".into())
        } else {
            unsupported()
        });
    }
    match &head[..4] {
        b"RIFF" => return sniff_wav(head, complete).map(|()| AudioFormat::Wav),
        b"fLaC" => return Ok(AudioFormat::Flac),
        b"OggS" => return Ok(AudioFormat::Ogg),
        _ => {}
    }
    if head.starts_with(b"ID3") {
        return Ok(AudioFormat::Mp3);
    }
    if head.len() >= 8 && &head[4..8] == b"ftyp" {
        return Ok(AudioFormat::M4a);
    }
    let (b0, b1, b2) = (head[0], head[1], head[2]);
    if b0 == 0xFF && b1 & 0xF6 == 0xF0 {
        // ADTS: 12-bit sync, layer 00; sampling frequency index 0..=12.
        if (b2 >> 2) & 0x0F <= 12 {
            return Ok(AudioFormat::Aac);
        }
        return Err(SniffError::Corrupt(
            "corrupt AAC (ADTS) header: bad sampling frequency index".into(),
        ));
    }
    if b0 == 0xFF && b1 & 0xE0 == 0xE0 {
        let version = (b1 >> 3) & 0x03;
        let layer = (b1 >> 1) & 0x03;
        let bitrate = b2 >> 4;
        let rate = (b2 >> 2) & 0x03;
        if version != 1 && layer != 0 && bitrate != 0x0F && rate != 3 {
            return Ok(AudioFormat::Mp3);
        }
        return Err(SniffError::Corrupt(
            "corrupt MPEG audio frame header".into(),
        ));
    }
    Err(unsupported())
}

fn sniff_wav(head: &[u8], complete: bool) -> Result<(), SniffError> {
    let corrupt = |why: &str| Err(SniffError::Corrupt(format!("corrupt WAV header: {why}")));
    if head.len() < 12 {
        return corrupt("shorter than the RIFF header");
    }
    if &head[8..12] != b"WAVE" {
        return Err(SniffError::Unsupported(
            "a RIFF file that is not WAVE audio".into(),
        ));
    }
    let u16_at = |at: usize| u16::from_le_bytes([head[at], head[at + 1]]);
    let u32_at =
        |at: usize| u32::from_le_bytes([head[at], head[at + 1], head[at + 2], head[at + 3]]);
    if u32_at(4) < 4 {
        return corrupt("the RIFF size is too small");
    }
    let mut at = 12usize;
    let mut fmt_seen = false;
    loop {
        if at + 8 > head.len() {
            if !complete && fmt_seen {
                // The chunks before `data` go beyond what we look at; the muxer checks the rest.
                return Ok(());
            }
            return corrupt(if fmt_seen {
                "cut short before the data chunk"
            } else {
                "cut short before the fmt chunk"
            });
        }
        let id = &head[at..at + 4];
        let size = u32_at(at + 4) as usize;
        let body = at + 8;
        match id {
            b"fmt " => {
                if size < 16 {
                    return corrupt("the fmt chunk is shorter than 16 bytes");
                }
                if body + 16 > head.len() {
                    return corrupt("the fmt chunk is cut short");
                }
                let (tag, channels, rate, align) = (
                    u16_at(body),
                    u16_at(body + 2),
                    u32_at(body + 4),
                    u16_at(body + 12),
                );
                if tag == 0 {
                    return corrupt("format tag 0");
                }
                if channels == 0 {
                    return corrupt("0 channels");
                }
                if rate == 0 {
                    return corrupt("sample rate 0");
                }
                if align == 0 {
                    return corrupt("block alignment 0");
                }
                fmt_seen = true;
            }
            b"data" => {
                if !fmt_seen {
                    return corrupt("the data chunk comes before the fmt chunk");
                }
                return Ok(());
            }
            _ => {}
        }
        at = body.saturating_add(size).saturating_add(size & 1);
    }
}

/// The call record, as query parameters.
#[derive(Debug, serde::Deserialize)]
pub struct UploadParams {
    call_id: String,
    started_at: String,
    ended_at: Option<String>,
    session_id: Option<String>,
    correlation: Option<String>,
    filename: Option<String>,
}

/// What a stored upload answers (201).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Uploaded {
    /// The new CTI recording.
    pub recording_id: Uuid,
    /// The CTI system's call id.
    pub call_id: String,
    /// The session it is attached to, if any yet.
    pub session_id: Option<Uuid>,
    /// The sealed archive holding the audio.
    pub archive_id: Uuid,
    /// Audio bytes received.
    pub bytes: u64,
}

/// The intake's state: the key, the signatures of accepted requests (for the replay window)
/// and the calls being uploaded now.
pub struct CtiIntake {
    key: CtiKey,
    max_bytes: u64,
    accepted: Mutex<HashMap<[u8; 32], Instant>>,
    in_flight: Arc<Mutex<HashSet<String>>>,
}

impl CtiIntake {
    /// The intake of `data_dir` (its `cti.key` made on first start), accepting up to
    /// `max_bytes` per recording.
    ///
    /// # Errors
    /// The key file cannot be made or read.
    pub fn load_or_create(data_dir: &Path, max_bytes: u64) -> Result<Self> {
        Ok(Self {
            key: CtiKey::load_or_create(data_dir)?,
            max_bytes,
            accepted: Mutex::default(),
            in_flight: Arc::default(),
        })
    }

    /// Checks the request's timestamp and signature; returns the signature and the signed
    /// body digest.
    fn authenticate(
        &self,
        method: &Method,
        path_and_query: &str,
        headers: &HeaderMap,
    ) -> Result<([u8; 32], [u8; 32])> {
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .ok_or_else(|| IngestError::Unauthenticated(format!("missing {name} header")))
        };
        let timestamp: i64 = header(TIMESTAMP_HEADER)?.parse().map_err(|_| {
            IngestError::Unauthenticated(format!("{TIMESTAMP_HEADER} is not unix seconds"))
        })?;
        let skew = OffsetDateTime::now_utc()
            .unix_timestamp()
            .abs_diff(timestamp);
        if skew > REPLAY_WINDOW.as_secs() {
            return Err(IngestError::Unauthenticated(format!(
                "request timestamp is {skew} s off the server clock (allowed: {} s)",
                REPLAY_WINDOW.as_secs()
            )));
        }
        let mut digest = [0u8; 32];
        hex::decode_to_slice(header(DIGEST_HEADER)?, &mut digest).map_err(|_| {
            IngestError::Unauthenticated(format!("{DIGEST_HEADER} is not a hex SHA-256"))
        })?;
        let mut presented = [0u8; 32];
        hex::decode_to_slice(header(SIGNATURE_HEADER)?, &mut presented)
            .map_err(|_| IngestError::Unauthenticated("bad signature".into()))?;
        let expected = self
            .key
            .mac(method.as_str(), path_and_query, timestamp, &digest);
        if bool::from(expected.ct_eq(&presented)) {
            Ok((expected, digest))
        } else {
            Err(IngestError::Unauthenticated("bad signature".into()))
        }
    }

    fn already_accepted(&self, signature: &[u8; 32]) -> bool {
        let mut accepted = self.accepted.lock().expect("replay cache lock");
        accepted.retain(|_, at| at.elapsed() <= 2 * REPLAY_WINDOW);
        accepted.contains_key(signature)
    }

    fn remember(&self, signature: [u8; 32]) {
        self.accepted
            .lock()
            .expect("replay cache lock")
            .insert(signature, Instant::now());
    }

    fn reserve(&self, call_id: &str) -> Result<InFlight> {
        let mut calls = self.in_flight.lock().expect("in-flight lock");
        if !calls.insert(call_id.to_owned()) {
            return Err(IngestError::Conflict(format!(
                "call {call_id} is being uploaded already"
            )));
        }
        Ok(InFlight {
            calls: self.in_flight.clone(),
            call_id: call_id.to_owned(),
        })
    }
}

/// A call id reserved while its upload runs.
struct InFlight {
    calls: Arc<Mutex<HashSet<String>>>,
    call_id: String,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Ok(mut calls) = self.calls.lock() {
            calls.remove(&self.call_id);
        }
    }
}

/// The body as it streams into the seal: counted against the limit, hashed, and its leading
/// bytes recognised. Any refusal is kept in `rejected` and surfaces as a read error, which
/// makes the vault abort the sealed upload.
struct Inspected<R> {
    inner: R,
    limit: u64,
    bytes: u64,
    hasher: Sha256,
    signed_digest: [u8; 32],
    head: Vec<u8>,
    format: Option<AudioFormat>,
    rejected: Option<IngestError>,
    ended: bool,
}

impl<R> Inspected<R> {
    fn reject(&mut self, error: IngestError) -> io::Error {
        let e = io::Error::other(error.to_string());
        self.rejected = Some(error);
        e
    }

    fn check_head(&mut self, complete: bool) -> io::Result<()> {
        if self.format.is_some() {
            return Ok(());
        }
        match sniff(&self.head, complete) {
            Ok(format) => {
                self.format = Some(format);
                self.head = Vec::new();
                Ok(())
            }
            Err(SniffError::Unsupported(why)) => {
                Err(self.reject(IngestError::UnsupportedMedia(why)))
            }
            Err(SniffError::Corrupt(why)) => Err(self.reject(IngestError::BadRequest(why))),
        }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Inspected<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.rejected.is_some() {
            return Poll::Ready(Err(io::Error::other("upload refused")));
        }
        if this.ended {
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {}
            other => return other,
        }
        let new = &buf.filled()[before..];
        if new.is_empty() {
            this.ended = true;
            this.check_head(true)?;
            let digest: [u8; 32] = std::mem::take(&mut this.hasher).finalize().into();
            if !bool::from(digest.ct_eq(&this.signed_digest)) {
                return Poll::Ready(Err(this.reject(IngestError::BadRequest(
                    "the body does not match its signed SHA-256 (altered in transit?)".into(),
                ))));
            }
            return Poll::Ready(Ok(()));
        }
        this.bytes += new.len() as u64;
        if this.bytes > this.limit {
            let limit = this.limit;
            return Poll::Ready(Err(this.reject(IngestError::PayloadTooLarge(format!(
                "the recording is larger than the limit of {limit} bytes"
            )))));
        }
        this.hasher.update(new);
        if this.format.is_none() {
            let take = new.len().min(SNIFF_LEN - this.head.len());
            this.head.extend_from_slice(&new[..take]);
            if this.head.len() >= SNIFF_LEN {
                this.check_head(false)?;
            }
        }
        Poll::Ready(Ok(()))
    }
}

fn parse_time(name: &str, text: &str) -> Result<OffsetDateTime> {
    OffsetDateTime::parse(text, &Rfc3339)
        .map_err(|_| IngestError::BadRequest(format!("{name} is not an RFC 3339 time: {text:?}")))
}

/// `POST /api/v1/cti/recordings`: authenticates, streams the body into a sealed blob while
/// checking it, records the recording (attached to its session if that exists) and audits
/// the outcome either way.
pub async fn upload(
    State(state): State<Arc<AppState>>,
    method: Method,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    params: std::result::Result<Query<UploadParams>, QueryRejection>,
    body: Body,
) -> Result<(StatusCode, Json<Uploaded>)> {
    let call = params
        .as_ref()
        .ok()
        .map_or_else(|| "cti".to_owned(), |p| format!("cti-call:{}", p.call_id));
    let result = upload_inner(&state, &method, &uri, &headers, params, body).await;
    let (outcome, reason) = match &result {
        Ok(_) => (Outcome::Success, None),
        Err(e @ (IngestError::Io { .. } | IngestError::Storage(_) | IngestError::Secret(_))) => {
            (Outcome::Failed, Some(e.to_string()))
        }
        Err(e) => (Outcome::Denied, Some(e.to_string())),
    };
    let event = AuditEvent {
        actor: "cti".into(),
        action: "cti.upload".into(),
        object: result
            .as_ref()
            .map_or(call, |u| format!("cti-recording:{}", u.recording_id)),
        reason,
        outcome,
    };
    if let Err(e) = state.sessions.vault().audit().append(event).await {
        tracing::error!(error = %e, "cannot write the audit log");
    }
    result.map(|u| (StatusCode::CREATED, Json(u)))
}

async fn upload_inner(
    state: &AppState,
    method: &Method,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    params: std::result::Result<Query<UploadParams>, QueryRejection>,
    body: Body,
) -> Result<Uploaded> {
    let intake = &state.cti;
    let path_and_query = uri.path_and_query().map_or(uri.path(), |pq| pq.as_str());
    let (signature, signed_digest) = intake.authenticate(method, path_and_query, headers)?;
    let Query(params) = params
        .map_err(|e| IngestError::BadRequest(format!("bad call record: {}", e.body_text())))?;
    if intake.already_accepted(&signature) {
        return Err(IngestError::Conflict(
            "this request was accepted before (a replay)".into(),
        ));
    }
    let call_id = params.call_id.trim().to_owned();
    if call_id.is_empty() || call_id.len() > 200 {
        return Err(IngestError::BadRequest(
            "call_id must be 1 to 200 characters".into(),
        ));
    }
    let started_at = parse_time("started_at", &params.started_at)?;
    let ended_at = params
        .ended_at
        .as_deref()
        .map(|t| parse_time("ended_at", t))
        .transpose()?;
    if ended_at.is_some_and(|end| end < started_at) {
        return Err(IngestError::BadRequest(
            "ended_at is before started_at".into(),
        ));
    }
    let asked_session = params
        .session_id
        .as_deref()
        .map(|s| {
            Uuid::parse_str(s.trim())
                .map_err(|_| IngestError::BadRequest(format!("session_id is not a UUID: {s:?}")))
        })
        .transpose()?;
    let correlation = params
        .correlation
        .as_deref()
        .map(str::trim)
        .filter(|c| !c.is_empty());
    if asked_session.is_none() && correlation.is_none() {
        return Err(IngestError::BadRequest(
            "give a session_id or a correlation key".into(),
        ));
    }
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && len > intake.max_bytes
    {
        return Err(IngestError::PayloadTooLarge(format!(
            "the recording is larger than the limit of {} bytes",
            intake.max_bytes
        )));
    }
    let _reserved = intake.reserve(&call_id)?;

    let vault = state.sessions.vault();
    let db = vault.db();
    let session_id = match asked_session {
        Some(id) if db.session(id).await?.is_some() => Some(id),
        _ => None,
    };
    // Unknown session: kept unattached, findable by the session id it was posted with.
    let correlation_key = correlation
        .map(str::to_owned)
        .or_else(|| asked_session.map(|id| format!("session:{id}")));
    let duplicate = match (session_id, &correlation_key) {
        (Some(id), _) => db.cti_recordings_for_session(id).await,
        (None, Some(key)) => db.unattached_cti_recordings(key).await,
        (None, None) => Ok(Vec::new()),
    }?
    .into_iter()
    .any(|r| r.call_id == call_id);
    if duplicate {
        return Err(IngestError::Conflict(format!(
            "call {call_id} is recorded already"
        )));
    }

    let recording_id = Uuid::new_v4();
    let blob_key = format!("cti/{recording_id}.idvr");
    let manifest = serde_json::json!({
        "kind": "cti",
        "recording_id": recording_id,
        "call_id": call_id,
        "session_id": session_id,
        "correlation_key": correlation_key,
        "started_at": params.started_at,
        "ended_at": params.ended_at,
        "source_name": params.filename,
        "sha256": hex::encode(signed_digest),
        "received_at": OffsetDateTime::now_utc().format(&Rfc3339).unwrap_or_default(),
        "tool": concat!("idv ", env!("CARGO_PKG_VERSION")),
    });
    let stream = body.into_data_stream().map_err(io::Error::other);
    let mut inspected = Inspected {
        inner: StreamReader::new(stream),
        limit: intake.max_bytes,
        bytes: 0,
        hasher: Sha256::new(),
        signed_digest,
        head: Vec::new(),
        format: None,
        rejected: None,
        ended: false,
    };
    let access = Access::new("cti", Some(format!("CTI call {call_id}")));
    let sealed = vault
        .seal_to_blob(&mut inspected, &blob_key, manifest, &access)
        .await;
    let archive = match sealed {
        Ok(archive) => archive,
        Err(e) => {
            return Err(match inspected.rejected.take() {
                Some(rejection) => rejection,
                None => IngestError::Storage(e),
            });
        }
    };
    let recording = CtiRecording {
        recording_id,
        call_id: call_id.clone(),
        session_id,
        correlation_key,
        started_at,
        ended_at,
        location: archive.location.clone(),
        archive_id: Some(archive.archive_id),
        received_at: OffsetDateTime::now_utc(),
    };
    if let Err(e) = db.insert_cti_recording(&recording).await {
        // Not recorded: the sealed audio must not linger unreferenced.
        if let Err(why) = vault.blobs().delete(&blob_key).await {
            tracing::warn!(key = blob_key, error = %why, "could not remove an unrecorded CTI blob");
        }
        if let Err(why) = db.delete_archive(archive.archive_id).await {
            tracing::warn!(archive_id = %archive.archive_id, error = %why, "could not remove an unrecorded CTI archive record");
        } else if let Err(why) = db.delete_retention_key(archive.key_id).await {
            tracing::warn!(key_id = %archive.key_id, error = %why, "could not remove the key of an unrecorded CTI archive");
        }
        return Err(match e {
            DbError::CtiCallExists { call_id, .. } => {
                IngestError::Conflict(format!("call {call_id} is recorded already"))
            }
            other => IngestError::Storage(other.into()),
        });
    }
    intake.remember(signature);
    if let Some(session) = session_id {
        state.sessions.cti_arrived(session).await?;
    }
    tracing::info!(%recording_id, call_id, format = ?inspected.format, bytes = inspected.bytes, "CTI recording stored");
    Ok(Uploaded {
        recording_id,
        call_id,
        session_id,
        archive_id: archive.archive_id,
        bytes: inspected.bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wav_header(channels: u16, rate: u32) -> Vec<u8> {
        let mut h = Vec::new();
        h.extend_from_slice(b"RIFF");
        h.extend_from_slice(&40u32.to_le_bytes());
        h.extend_from_slice(b"WAVEfmt ");
        h.extend_from_slice(&16u32.to_le_bytes());
        h.extend_from_slice(&1u16.to_le_bytes());
        h.extend_from_slice(&channels.to_le_bytes());
        h.extend_from_slice(&rate.to_le_bytes());
        h.extend_from_slice(&(rate * 2 * u32::from(channels)).to_le_bytes());
        h.extend_from_slice(&(2 * channels).to_le_bytes());
        h.extend_from_slice(&16u16.to_le_bytes());
        h.extend_from_slice(b"data");
        h.extend_from_slice(&4u32.to_le_bytes());
        h.extend_from_slice(&[0, 0, 1, 0]);
        h
    }

    #[test]
    fn sniff_recognises_each_format() {
        assert_eq!(sniff(&wav_header(1, 8000), true), Ok(AudioFormat::Wav));
        assert_eq!(sniff(b"fLaC\0\0\0\x22", true), Ok(AudioFormat::Flac));
        assert_eq!(sniff(b"OggS\0\x02", true), Ok(AudioFormat::Ogg));
        assert_eq!(sniff(b"ID3\x04\0\0", true), Ok(AudioFormat::Mp3));
        assert_eq!(sniff(&[0xFF, 0xFB, 0x90, 0x64], true), Ok(AudioFormat::Mp3));
        assert_eq!(sniff(&[0xFF, 0xF1, 0x50, 0x80], true), Ok(AudioFormat::Aac));
        assert_eq!(sniff(b"\0\0\0\x20ftypM4A ", true), Ok(AudioFormat::M4a));
    }

    #[test]
    fn sniff_refuses_garbage_and_damaged_wav() {
        assert!(matches!(
            sniff(b"hello, not audio", true),
            Err(SniffError::Unsupported(_))
        ));
        assert!(matches!(
            sniff(b"RIFF\x10\0\0\0AVI ", true),
            Err(SniffError::Unsupported(_))
        ));
        let wav = wav_header(1, 8000);
        assert!(matches!(
            sniff(&wav[..30], true),
            Err(SniffError::Corrupt(_))
        ));
        assert!(matches!(
            sniff(&wav[..36], true),
            Err(SniffError::Corrupt(_))
        ));
        assert!(matches!(
            sniff(&wav_header(0, 8000), true),
            Err(SniffError::Corrupt(_))
        ));
        assert!(matches!(
            sniff(&wav_header(1, 0), true),
            Err(SniffError::Corrupt(_))
        ));
        assert!(matches!(sniff(b"", true), Err(SniffError::Corrupt(_))));
    }

    #[test]
    fn signature_covers_every_part() {
        let key = CtiKey(Zeroizing::new([7u8; 32]));
        let digest = [1u8; 32];
        let base = sign(&key, "POST", "/p?a=1", 100, &digest);
        assert_eq!(base.len(), 64);
        assert_ne!(base, sign(&key, "PUT", "/p?a=1", 100, &digest));
        assert_ne!(base, sign(&key, "POST", "/p?a=2", 100, &digest));
        assert_ne!(base, sign(&key, "POST", "/p?a=1", 101, &digest));
        assert_ne!(base, sign(&key, "POST", "/p?a=1", 100, &[2u8; 32]));
        let other = CtiKey(Zeroizing::new([8u8; 32]));
        assert_ne!(base, sign(&other, "POST", "/p?a=1", 100, &digest));
    }
}
