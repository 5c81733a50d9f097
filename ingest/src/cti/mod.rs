//! CTI audio intake: the call centre's telephony hands in each call recording with its call
//! record, and the audio is sealed into the blob store as it arrives — never held in memory,
//! never written to disk unsealed. Two ways in:
//!
//! * **One request** after the call ([`recording`]): `POST /api/v1/cti/recordings`, the whole
//!   recording as the body.
//! * **In parts while the call runs** ([`parts`]): open an upload with the call record, `PUT`
//!   each part as the recorder produces it (every part is sealed and acknowledged on arrival,
//!   so a dropped connection or a crash of either side loses nothing acknowledged), then
//!   complete it with the end time and the SHA-256 of the whole recording. The parts become
//!   one sealed recording, exactly as if it had come in one request.
//!
//! # The call record
//! In the query, so the signature covers it: `call_id` (required), `started_at` (RFC 3339,
//! CTI clock, required), `ended_at` (RFC 3339, optional; for uploads in parts, given when
//! completing), `session_id` (optional), `correlation` (optional, e.g.
//! `ext-4711@2026-11-21T10:00Z`), `filename` (optional hint, kept in the manifest). A session
//! id or a correlation key is required.
//!
//! # Authentication
//! Headers `X-Idv-Timestamp` (unix seconds), `X-Idv-Content-SHA256` (hex SHA-256 of the body)
//! and `X-Idv-Signature` ([`sign`]): an HMAC-SHA256 under the CTI secret (32 random bytes
//! written hex to `DIR/cti.key`, 0600, on first start) of the method, the request target, the
//! timestamp and the body digest, compared in constant time before any body byte is read. A
//! timestamp more than [`REPLAY_WINDOW`] off the server clock is refused. A one-request upload
//! already accepted is refused if replayed (409); the requests of an upload in parts are
//! idempotent (a part is stored once, by its number and digest), so a replay only gets the
//! same answer. The body is hashed while it streams: a digest other than the signed one (a
//! tampered body) aborts the seal.
//!
//! # Validation
//! Only the leading bytes are inspected ([`sniff`]): a known container or frame sync, and for
//! WAV a well-formed RIFF chunk walk up to the `data` chunk (a WAV written as a stream, with
//! its sizes left 0 or 0xFFFFFFFF, is accepted: the muxer reads it to its end). A refused
//! upload leaves nothing: the sealed upload is aborted and its key forgotten.

mod call;
mod check;
pub mod client;
mod key;
pub mod parts;
pub mod recording;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, Method};
use storage::audit::{AuditEvent, Outcome};
use subtle::ConstantTimeEq;
use time::OffsetDateTime;
use uuid::Uuid;

pub use check::{AudioFormat, SNIFF_LEN, SniffError, sniff};
pub use key::{CtiKey, sign};
pub use recording::upload;

use crate::error::{IngestError, Result};
use crate::server::AppState;

/// The request path of a one-request upload.
pub const UPLOAD_PATH: &str = "/api/v1/cti/recordings";
/// The request path that opens an upload in parts.
pub const UPLOADS_PATH: &str = "/api/v1/cti/uploads";
/// Header: the request time, unix seconds.
pub const TIMESTAMP_HEADER: &str = "x-idv-timestamp";
/// Header: hex SHA-256 of the body.
pub const DIGEST_HEADER: &str = "x-idv-content-sha256";
/// Header: hex HMAC-SHA256 of the canonical request ([`sign`]).
pub const SIGNATURE_HEADER: &str = "x-idv-signature";
/// How far a request's timestamp may be from the server clock.
pub const REPLAY_WINDOW: Duration = Duration::from_secs(300);
/// The default largest recording accepted, bytes (all parts together for an upload in parts).
pub const DEFAULT_MAX_CTI_BYTES: u64 = 512 << 20;

/// What a stored recording answers (201; 200 when an upload in parts was completed before).
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

/// A request that passed authentication: its signature (for the replay cache) and the body
/// digest it signed.
pub(crate) struct Signed {
    signature: [u8; 32],
    digest: [u8; 32],
}

/// The intake's state: the key, the signatures of accepted requests (for the replay window)
/// and the calls and uploads being written now.
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

    /// Checks the request's timestamp and signature, and that it was not accepted before.
    fn authenticate(
        &self,
        method: &Method,
        path_and_query: &str,
        headers: &HeaderMap,
    ) -> Result<Signed> {
        let signed = self.authenticate_idempotent(method, path_and_query, headers)?;
        if self.already_accepted(&signed.signature) {
            return Err(IngestError::Conflict(
                "this request was accepted before (a replay)".into(),
            ));
        }
        Ok(signed)
    }

    /// Checks the request's timestamp and signature, for a request whose repetition does
    /// nothing more than the first (a replay gets the same answer).
    fn authenticate_idempotent(
        &self,
        method: &Method,
        path_and_query: &str,
        headers: &HeaderMap,
    ) -> Result<Signed> {
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
        if !bool::from(expected.ct_eq(&presented)) {
            return Err(IngestError::Unauthenticated("bad signature".into()));
        }
        Ok(Signed {
            signature: expected,
            digest,
        })
    }

    fn already_accepted(&self, signature: &[u8; 32]) -> bool {
        let mut accepted = self.accepted.lock().expect("replay cache lock");
        accepted.retain(|_, at| at.elapsed() <= 2 * REPLAY_WINDOW);
        accepted.contains_key(signature)
    }

    /// Remembers an accepted request, so that replaying it is refused.
    fn remember(&self, signed: &Signed) {
        self.accepted
            .lock()
            .expect("replay cache lock")
            .insert(signed.signature, Instant::now());
    }

    /// Reserves `what` (a call id, an upload) while one request writes it.
    fn reserve(&self, what: String, busy: impl FnOnce() -> String) -> Result<InFlight> {
        let mut reserved = self.in_flight.lock().expect("in-flight lock");
        if !reserved.insert(what.clone()) {
            return Err(IngestError::Conflict(busy()));
        }
        Ok(InFlight {
            reserved: self.in_flight.clone(),
            what,
        })
    }
}

/// Something reserved while one request writes it.
struct InFlight {
    reserved: Arc<Mutex<HashSet<String>>>,
    what: String,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Ok(mut reserved) = self.reserved.lock() {
            reserved.remove(&self.what);
        }
    }
}

/// The request target as signed: path and query exactly as sent.
fn path_and_query(uri: &axum::http::Uri) -> &str {
    uri.path_and_query().map_or(uri.path(), |pq| pq.as_str())
}

/// Audits a CTI request as `action` by the actor `cti`: success, or denied/failed with the
/// reason (storage trouble is a failure, anything refused a denial).
async fn audit<T>(state: &AppState, action: &str, object: String, result: &Result<T>) {
    let (outcome, reason) = match result {
        Ok(_) => (Outcome::Success, None),
        Err(e @ (IngestError::Io { .. } | IngestError::Storage(_) | IngestError::Secret(_))) => {
            (Outcome::Failed, Some(e.to_string()))
        }
        Err(e) => (Outcome::Denied, Some(e.to_string())),
    };
    let event = AuditEvent {
        actor: "cti".into(),
        action: action.into(),
        object,
        reason,
        outcome,
    };
    if let Err(e) = state.sessions.vault().audit().append(event).await {
        tracing::error!(error = %e, "cannot write the audit log");
    }
}
