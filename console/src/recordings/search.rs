//! Finding recordings: the sessions of a group with their mux outcome, filtered by date,
//! operator, session id and status.

use storage::Vault;
use storage::db::{MuxJob, MuxJobState, SessionFilter};
use time::OffsetDateTime;
use uuid::Uuid;

/// What a recording's mux came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Waiting for its CTI audio or a worker.
    Queued,
    /// Being muxed.
    Muxing,
    /// Muxed with the call's audio.
    Muxed,
    /// Muxed without audio (none arrived in time).
    VideoOnly,
    /// Given up on.
    Failed,
}

impl Status {
    /// The word shown and used in filters.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Muxing => "muxing",
            Status::Muxed => "muxed",
            Status::VideoOnly => "video-only",
            Status::Failed => "failed",
        }
    }

    /// The status a filter names.
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        [
            Status::Queued,
            Status::Muxing,
            Status::Muxed,
            Status::VideoOnly,
            Status::Failed,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }

    fn of(job: &MuxJob) -> Self {
        match (job.state, job.video_only) {
            (MuxJobState::Queued, _) => Status::Queued,
            (MuxJobState::Running, _) => Status::Muxing,
            (MuxJobState::Done, false) => Status::Muxed,
            (MuxJobState::Done, true) => Status::VideoOnly,
            (MuxJobState::Failed, _) => Status::Failed,
        }
    }
}

/// One recording in a list.
#[derive(Debug, Clone)]
pub struct RecordingRow {
    /// Its session.
    pub session_id: Uuid,
    /// The operator who ran the session.
    pub operator: String,
    /// The case or customer reference given at its start.
    pub case_reference: Option<String>,
    /// When the session was created.
    pub created_at: OffsetDateTime,
    /// When it ended.
    pub ended_at: Option<OffsetDateTime>,
    /// What its mux came to.
    pub status: Status,
    /// The sealed archive, once muxed.
    pub archive_id: Option<Uuid>,
    /// Why the mux failed, if it did.
    pub error: Option<String>,
}

/// What to look for; every field is optional.
#[derive(Debug, Clone, Default)]
pub struct SearchFilter {
    /// Sessions created at or after.
    pub from: Option<OffsetDateTime>,
    /// Sessions created before.
    pub to: Option<OffsetDateTime>,
    /// The operator (exact name).
    pub operator: Option<String>,
    /// A session id, or its first characters.
    pub session: Option<String>,
    /// Part of the case or customer reference (any case).
    pub case_reference: Option<String>,
    /// The outcome.
    pub status: Option<Status>,
}

/// The recordings of `group` that match `filter`, newest first.
///
/// # Errors
/// The database fails.
pub async fn search(
    vault: &Vault,
    group: &str,
    filter: &SearchFilter,
) -> Result<Vec<RecordingRow>, storage::Error> {
    let db = vault.db();
    let sessions = db
        .sessions(&SessionFilter {
            group: Some(group.to_owned()),
            ..SessionFilter::default()
        })
        .await?;
    let mut rows = Vec::new();
    for session in sessions.into_iter().rev() {
        if filter.from.is_some_and(|from| session.created_at < from)
            || filter.to.is_some_and(|to| session.created_at >= to)
            || filter
                .operator
                .as_deref()
                .is_some_and(|op| session.created_by != op)
            || filter
                .session
                .as_deref()
                .is_some_and(|s| !session.session_id.to_string().starts_with(s.trim()))
            || filter
                .case_reference
                .as_deref()
                .is_some_and(|wanted| !mentions(session.case_reference.as_deref(), wanted))
        {
            continue;
        }
        let Some(job) = db.mux_job_for_session(session.session_id).await? else {
            continue; // never joined: nothing was recorded
        };
        let status = Status::of(&job);
        if filter.status.is_some_and(|s| s != status) {
            continue;
        }
        rows.push(RecordingRow {
            session_id: session.session_id,
            operator: session.created_by,
            case_reference: session.case_reference,
            created_at: session.created_at,
            ended_at: session.ended_at,
            status,
            archive_id: job.archive_id,
            error: job.error,
        });
    }
    Ok(rows)
}

/// Whether `reference` holds `wanted` (trimmed), in any case.
fn mentions(reference: Option<&str>, wanted: &str) -> bool {
    reference.is_some_and(|r| r.to_lowercase().contains(&wanted.trim().to_lowercase()))
}
