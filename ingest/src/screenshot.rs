//! Screenshot mode: an agent that cannot hold a WebSocket (a proxy that refuses the upgrade)
//! posts a JPEG of the screen every few seconds instead, over plain HTTPS:
//! `POST /api/v1/agent/screenshots` with its session token as bearer and one media frame as
//! the body — the same frame as on the WebSocket (`docs/PROTOCOL.md` §2), track
//! `screenshot`, keyframe, sealed under the session key, stamped on the agent's clock. So
//! screenshots land on the session's timeline like any frame, and the answer is the same
//! durable, cumulative acknowledgement: the response comes only once the screenshot is
//! durable (appended to the track log and journaled by the group commit, like a frame on the
//! WebSocket), and a resent screenshot (the agent never saw the answer) is
//! acknowledged again without being stored twice.
//!
//! Screenshots need their own consent (`screen_capture`). While the agent holds a WebSocket
//! the logs belong to that connection and a post is refused (409): send them there.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use proto::frame::{HEADER_LEN, TAG_LEN};
use proto::{FrameFlags, SessionCipher, Track};
use storage::db::{ConsentScope, SessionState};
use storage::journal::Entry;
use storage::track_log::{Appended, LogError, TrackLog};
use uuid::Uuid;

use crate::error::{IngestError, Result};
use crate::server::AppState;

/// The acknowledgement.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ScreenshotAck {
    /// `screenshot`.
    pub track: Track,
    /// Every screenshot up to this seq is durable.
    pub acked: u64,
}

/// `POST /api/v1/agent/screenshots`.
///
/// # Errors
/// 401 without a valid session token; 403 for a session that is not open or without
/// `screen_capture` consent; 400 for a frame that does not open under the session key or is
/// not a screenshot; 413 past the frame size limit; 415 for a payload that is not a JPEG;
/// 409 for a sequence gap or while a WebSocket owns the session.
pub async fn upload(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<ScreenshotAck>> {
    let session = crate::api::agent_session(&state, &headers)?;
    let max_payload = state.config.max_payload;
    if body.len() > HEADER_LEN + max_payload + TAG_LEN {
        return Err(IngestError::PayloadTooLarge(format!(
            "a screenshot is at most {max_payload} bytes"
        )));
    }
    let cipher = open_session(&state, session).await?;
    let mut plain = Vec::new();
    let header = cipher
        .open_into(&body, max_payload, &mut plain)
        .map_err(|e| IngestError::BadRequest(format!("not a frame of this session: {e}")))?;
    let is_jpeg = plain.starts_with(&[0xff, 0xd8, 0xff]);
    plain.fill(0);
    if header.track != Track::Screenshot {
        return Err(IngestError::BadRequest(format!(
            "a {} frame cannot be posted here: only screenshots",
            header.track.name()
        )));
    }
    if !header.flags.contains(FrameFlags::KEYFRAME) || !is_jpeg {
        return Err(IngestError::UnsupportedMedia(
            "a screenshot is one JPEG image, flagged keyframe".into(),
        ));
    }
    let Some(owner) = state.live.try_own(session) else {
        return Err(IngestError::Conflict(
            "the agent is connected over WebSocket: send screenshots there".into(),
        ));
    };
    let path = crate::segments::spool_dir(&state.config.data_dir, session);
    // Appended and made durable in a task of its own: a client that hangs up midway must not
    // leave a record in the log that the journal never saw.
    let stored = tokio::spawn(store(
        Arc::clone(&state),
        owner,
        session,
        header,
        body.clone(),
    ))
    .await
    .map_err(|e| IngestError::io(&path, std::io::Error::other(e.to_string())))?;
    let appended = match stored {
        Ok(appended) => Ok(appended),
        Err(Stored::Log(e)) => Err(e),
        Err(Stored::Spool(e)) => return Err(e),
        Err(Stored::Commit(e)) => {
            tracing::error!(%session, error = %e, "cannot make a screenshot durable");
            return Err(IngestError::io(&path, std::io::Error::other(e.to_string())));
        }
    };
    let acked = match appended {
        Ok((Appended::Stored, acked)) => {
            state.feeds.publish_frame(session, &body, max_payload);
            state
                .metrics
                .frames_acknowledged
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            acked
        }
        Ok((Appended::Duplicate, acked)) => acked,
        Err(LogError::OutOfOrder { expected, got, .. }) => {
            return Err(IngestError::Conflict(format!(
                "screenshot {got} skips sequence numbers (expected {expected})"
            )));
        }
        Err(e) => {
            tracing::error!(%session, error = %e, "cannot store a screenshot");
            return Err(IngestError::io(&path, std::io::Error::other(e.to_string())));
        }
    };
    state.last_seen.touch(session);
    let _ = state
        .sessions
        .vault()
        .db()
        .transition_session(
            session,
            &[SessionState::Consented],
            SessionState::Live,
            time::OffsetDateTime::now_utc(),
            None,
        )
        .await;
    Ok(Json(ScreenshotAck {
        track: Track::Screenshot,
        acked,
    }))
}

/// Why a screenshot was not stored.
enum Stored {
    Log(LogError),
    Spool(IngestError),
    Commit(crate::commit::CommitError),
}

/// Appends the screenshot to the session's log and makes it durable, holding the session's
/// logs meanwhile; returns what the log did and its last seq. A resend needs no commit: opening
/// the log made what it holds durable. A log that is full is closed after the commit (the next
/// screenshot opens the next segment) and rolled into the blob store in the background.
async fn store(
    state: Arc<AppState>,
    owner: tokio::sync::OwnedMutexGuard<()>,
    session: Uuid,
    header: proto::FrameHeader,
    frame: Bytes,
) -> std::result::Result<(Appended, u64), Stored> {
    // The last screenshot (or an agent connection's frames) may still be only in the journal.
    state.commit.settle().await.map_err(Stored::Commit)?;
    let active = crate::segments::open_active(
        state.sessions.vault(),
        &state.config.data_dir,
        session,
        Track::Screenshot,
    )
    .await
    .map_err(Stored::Spool)?;
    // The log's name in the journal: its path under the spool.
    let name: Arc<str> = active.name.into();
    let (mut log, index) = (active.log, active.index);
    // Journaled by the commit below and written into the log by its applier.
    let offset = log.len();
    let appended = log
        .append_journaled(header.seq, frame.len())
        .map_err(Stored::Log)?;
    let entry = (appended == Appended::Stored).then(|| Entry {
        log: name,
        offset,
        seq: header.seq,
        timestamp: header.captured_at_ns,
        frame,
    });
    let last = log.last_seq().unwrap_or(0);
    if let Some(entry) = entry {
        state
            .commit
            .commit(vec![entry])
            .await
            .map_err(Stored::Commit)?;
    }
    if log.len() >= state.config.segments.max_bytes {
        let next = crate::segments::spool_root(&state.config.data_dir).join(
            storage::spool::log_name(session, Track::Screenshot.name(), index + 1),
        );
        tokio::task::spawn_blocking(move || TrackLog::open(&next))
            .await
            .map_err(|e| {
                Stored::Log(LogError::Io {
                    path: log.path().to_path_buf(),
                    source: std::io::Error::other(e.to_string()),
                })
            })?
            .map_err(Stored::Log)?;
        state.roller.closed(session);
    }
    drop(owner);
    Ok((appended, last))
}

/// The cipher of an open session whose customer consented to screenshots.
async fn open_session(state: &AppState, session: Uuid) -> Result<SessionCipher> {
    let db = state.sessions.vault().db();
    let record = db
        .session(session)
        .await?
        .ok_or(IngestError::Unauthorised)?;
    if matches!(record.state, SessionState::Ended | SessionState::Created) {
        return Err(IngestError::Forbidden("the session is not open".into()));
    }
    let consented = db
        .consents(session)
        .await?
        .into_iter()
        .any(|c| c.scope == ConsentScope::ScreenCapture && c.revoked_at.is_none());
    if !consented {
        return Err(IngestError::Forbidden(
            "no consent for screen capture (screenshots)".into(),
        ));
    }
    let key = state
        .sessions
        .media_key(session, record.wrapped_media_key.as_deref())
        .await?;
    Ok(SessionCipher::new(&key, session))
}
