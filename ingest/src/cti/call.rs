//! The call record a CTI recording comes with: read from the query, checked, and resolved
//! against the sessions idv knows.

use storage::db::{CtiUpload, MetadataDb};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use crate::error::{IngestError, Result};

/// The call record, as query parameters.
#[derive(Debug, serde::Deserialize)]
pub struct CallParams {
    call_id: String,
    started_at: String,
    ended_at: Option<String>,
    session_id: Option<String>,
    correlation: Option<String>,
    filename: Option<String>,
}

impl CallParams {
    /// The call id as given.
    pub(super) fn call_id(&self) -> &str {
        &self.call_id
    }

    /// Whether an end time was given.
    pub(super) fn has_end(&self) -> bool {
        self.ended_at.is_some()
    }
}

/// A checked call record.
#[derive(Debug, Clone)]
pub(super) struct CallRecord {
    pub(super) call_id: String,
    pub(super) started_at: OffsetDateTime,
    pub(super) ended_at: Option<OffsetDateTime>,
    /// The session, if one with the id given exists.
    pub(super) session_id: Option<Uuid>,
    /// The correlation key given or, for a session id idv does not know (yet), `session:ID`,
    /// so the recording stays findable by it.
    pub(super) correlation_key: Option<String>,
    pub(super) filename: Option<String>,
}

fn parse_time(name: &str, text: &str) -> Result<OffsetDateTime> {
    OffsetDateTime::parse(text, &Rfc3339)
        .map_err(|_| IngestError::BadRequest(format!("{name} is not an RFC 3339 time: {text:?}")))
}

/// `ended_at` checked against `started_at`.
pub(super) fn parse_end(started_at: OffsetDateTime, text: &str) -> Result<OffsetDateTime> {
    let ended_at = parse_time("ended_at", text)?;
    if ended_at < started_at {
        return Err(IngestError::BadRequest(
            "ended_at is before started_at".into(),
        ));
    }
    Ok(ended_at)
}

impl CallRecord {
    /// Checks the parameters and looks the session up.
    pub(super) async fn resolve(params: CallParams, db: &MetadataDb) -> Result<Self> {
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
            .map(|t| parse_end(started_at, t))
            .transpose()?;
        let asked_session = params
            .session_id
            .as_deref()
            .map(|s| {
                Uuid::parse_str(s.trim()).map_err(|_| {
                    IngestError::BadRequest(format!("session_id is not a UUID: {s:?}"))
                })
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
        let session_id = match asked_session {
            Some(id) if db.session(id).await?.is_some() => Some(id),
            _ => None,
        };
        Ok(Self {
            call_id,
            started_at,
            ended_at,
            session_id,
            correlation_key: correlation
                .map(str::to_owned)
                .or_else(|| asked_session.map(|id| format!("session:{id}"))),
            filename: params.filename,
        })
    }

    /// The call record an upload in parts was opened with, ending at `ended_at`.
    pub(super) fn of_upload(upload: &CtiUpload, ended_at: Option<OffsetDateTime>) -> Self {
        Self {
            call_id: upload.call_id.clone(),
            started_at: upload.started_at,
            ended_at,
            session_id: upload.session_id,
            correlation_key: upload.correlation_key.clone(),
            filename: upload.source_name.clone(),
        }
    }

    /// Refuses a call that is recorded already for its session (or correlation key), or
    /// being uploaded in parts.
    pub(super) async fn ensure_not_recorded(&self, db: &MetadataDb) -> Result<()> {
        let recorded = match (self.session_id, &self.correlation_key) {
            (Some(id), _) => db.cti_recordings_for_session(id).await,
            (None, Some(key)) => db.unattached_cti_recordings(key).await,
            (None, None) => Ok(Vec::new()),
        }?
        .into_iter()
        .any(|r| r.call_id == self.call_id);
        if recorded {
            return Err(IngestError::Conflict(format!(
                "call {} is recorded already",
                self.call_id
            )));
        }
        Ok(())
    }

    /// The open upload in parts of this call, if there is one.
    pub(super) async fn open_upload(&self, db: &MetadataDb) -> Result<Option<CtiUpload>> {
        Ok(db
            .open_cti_upload(
                &self.call_id,
                self.session_id,
                self.correlation_key.as_deref(),
            )
            .await?)
    }

    /// The manifest sealed with the recording.
    pub(super) fn manifest(
        &self,
        recording_id: Uuid,
        sha256: &[u8; 32],
        parts: Option<(Uuid, usize)>,
    ) -> serde_json::Value {
        let time = |t: OffsetDateTime| t.format(&Rfc3339).unwrap_or_default();
        let mut manifest = serde_json::json!({
            "kind": "cti",
            "recording_id": recording_id,
            "call_id": self.call_id,
            "session_id": self.session_id,
            "correlation_key": self.correlation_key,
            "started_at": time(self.started_at),
            "ended_at": self.ended_at.map(time),
            "source_name": self.filename,
            "sha256": hex::encode(sha256),
            "received_at": time(OffsetDateTime::now_utc()),
            "tool": concat!("idv ", env!("CARGO_PKG_VERSION")),
        });
        if let Some((upload_id, count)) = parts {
            manifest["upload"] = serde_json::json!({ "upload_id": upload_id, "parts": count });
        }
        manifest
    }
}
