//! Sealed recordings as the mux jobs leave them: `GET /api/v1/recordings` lists the sessions of
//! the operator's group with their mux status, `GET /api/v1/recordings/{session}/archive`
//! streams the sealed archive as stored (still encrypted: `idv open` with the server's data
//! directory decrypts it). Every download is audited. (Role separation — compliance officers
//! open recordings, operators do not — comes with the console's users.)

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use storage::ArchiveLocation;
use storage::audit::{AuditEvent, Outcome};
use storage::db::{MuxJob, MuxJobState, SessionFilter};
use tokio_util::io::ReaderStream;
use uuid::Uuid;

use crate::error::{IngestError, Result};
use crate::operator::Operator;
use crate::server::AppState;

/// One line of the list.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RecordingStatus {
    /// The session.
    pub session_id: Uuid,
    /// `queued`, `muxing`, `muxed`, `video-only` or `failed`.
    pub status: String,
    /// The sealed archive, once muxed.
    pub archive_id: Option<Uuid>,
}

fn status(job: &MuxJob) -> &'static str {
    match (job.state, job.video_only) {
        (MuxJobState::Queued, _) => "queued",
        (MuxJobState::Running, _) => "muxing",
        (MuxJobState::Done, false) => "muxed",
        (MuxJobState::Done, true) => "video-only",
        (MuxJobState::Failed, _) => "failed",
    }
}

/// `GET /api/v1/recordings`.
pub async fn list(
    State(state): State<Arc<AppState>>,
    operator: Operator,
) -> Result<axum::Json<Vec<RecordingStatus>>> {
    operator.require_token()?;
    let db = state.sessions.vault().db();
    let sessions = db
        .sessions(&SessionFilter {
            group: Some(operator.group.clone()),
            ..SessionFilter::default()
        })
        .await?;
    let mut out = Vec::new();
    for session in sessions {
        if let Some(job) = db.mux_job_for_session(session.session_id).await? {
            out.push(RecordingStatus {
                session_id: session.session_id,
                status: status(&job).to_owned(),
                archive_id: job.archive_id,
            });
        }
    }
    Ok(axum::Json(out))
}

/// `GET /api/v1/recordings/{session}/archive`.
pub async fn archive(
    State(state): State<Arc<AppState>>,
    operator: Operator,
    Path(session): Path<Uuid>,
) -> Result<Response> {
    let actor = operator.actor();
    let result = match operator.require_token() {
        Ok(()) => find_archive(&state, &operator.group, session).await,
        Err(refused) => Err(refused),
    };
    let event = AuditEvent {
        actor,
        action: "recording.download".into(),
        object: format!("session:{session}"),
        reason: result.as_ref().err().map(ToString::to_string),
        outcome: if result.is_ok() {
            Outcome::Success
        } else {
            Outcome::Denied
        },
    };
    if let Err(e) = state.sessions.vault().audit().append(event).await {
        tracing::error!(error = %e, "cannot write the audit log");
    }
    let (archive_id, key) = result?;
    let stream = state
        .sessions
        .vault()
        .blobs()
        .get_stream(&key)
        .await
        .map_err(storage::Error::from)?;
    let size = stream.size();
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (header::CONTENT_LENGTH, size.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{archive_id}.idvr\""),
            ),
        ],
        Body::from_stream(ReaderStream::new(stream)),
    )
        .into_response())
}

/// The archive of a muxed session of `group`: its id and blob key.
async fn find_archive(state: &AppState, group: &str, session: Uuid) -> Result<(Uuid, String)> {
    let db = state.sessions.vault().db();
    let not_found = || IngestError::NotFound("no such recording".into());
    let record = db
        .session(session)
        .await?
        .filter(|s| s.group == group)
        .ok_or_else(not_found)?;
    let job = db
        .mux_job_for_session(record.session_id)
        .await?
        .ok_or_else(not_found)?;
    let archive_id = job.archive_id.ok_or_else(|| {
        IngestError::NotFound(format!("the recording is not muxed yet ({})", status(&job)))
    })?;
    let archive = db.archive(archive_id).await?.ok_or_else(not_found)?;
    match ArchiveLocation::parse(&archive.location) {
        Some(ArchiveLocation::Blob(key)) => Ok((archive_id, key)),
        _ => Err(IngestError::NotFound(
            "the archive is not in the blob store".into(),
        )),
    }
}
