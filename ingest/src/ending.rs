//! How a session ends — by the operator (`POST /sessions/{id}/end`), by the customer (the agent
//! sends `close` with code 4004), or by timeout (the reaper) — and what follows each way the
//! same: the agent connection closes after storing its last frames and clock samples,
//! watchers are told, the track logs roll into the blob store, and the mux job is queued —
//! except for a session nobody ever joined: no agent, so nothing to record.
//!
//! Timeouts: a session whose code was never redeemed ends when the code expires; a joined
//! session ends after `session_idle` with no agent connected (counted from the agent's last
//! connection or screenshot, or from the server's start for sessions it has not seen).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use storage::db::{SessionFilter, SessionState};
use uuid::Uuid;

use crate::error::Result;
use crate::server::AppState;

/// When each session's agent was last seen (disconnected, or posted a screenshot).
#[derive(Default)]
pub struct LastSeen {
    at: Mutex<HashMap<Uuid, Instant>>,
}

impl LastSeen {
    /// The agent of `session` was there just now.
    pub fn touch(&self, session: Uuid) {
        self.at
            .lock()
            .expect("not poisoned")
            .insert(session, Instant::now());
    }

    fn get(&self, session: Uuid) -> Option<Instant> {
        self.at.lock().expect("not poisoned").get(&session).copied()
    }

    fn forget(&self, session: Uuid) {
        self.at.lock().expect("not poisoned").remove(&session);
    }
}

/// What follows once `session` is in state ended (the caller made that transition);
/// `joined`: whether an agent ever joined it (else there is nothing to mux).
///
/// # Errors
/// The mux job cannot be queued.
pub async fn wrap_up(state: &AppState, session: Uuid, reason: &str, joined: bool) -> Result<()> {
    // The agent's last frames and clock samples are stored before the job can run.
    state
        .live
        .close_and_wait(session, proto::CloseCode::SessionEnded, state.config.drain)
        .await;
    state.live.forget(session);
    state.feeds.end(session, reason);
    state.last_seen.forget(session);
    // Into the blob store, where a worker on any node reads it: the roll first has the logs
    // written whole from the journal, and syncs each one before it reads it. If that fails the
    // logs stay in the spool (a worker here still reads them, so they are synced in place,
    // not only durable through the journal) and the next start rolls them.
    if let Err(e) = state.roller.roll_all(session).await {
        tracing::error!(%session, error = %e, "cannot roll the session's logs into the blob store");
        let dir = crate::segments::spool_dir(&state.config.data_dir, session);
        match tokio::task::spawn_blocking(move || crate::commit::sync_session_logs(&dir)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(%session, error = %e, "cannot sync the session's logs"),
            Err(e) => tracing::error!(%session, error = %e, "cannot sync the session's logs"),
        }
    }
    if joined {
        state.sessions.queue_mux(session).await?;
    }
    Ok(())
}

/// The customer ended `session` (from the agent): ended, audited as the customer's, and
/// wrapped up; whether this call ended it (`false`: it had ended already).
///
/// # Errors
/// The database fails, or the mux job cannot be queued.
pub async fn end_by_customer(state: &AppState, session: Uuid) -> Result<bool> {
    let reason = "ended by the customer";
    let ended = state.sessions.end_as("customer", session, reason).await?;
    if ended {
        wrap_up(state, session, reason, true).await?;
    }
    Ok(ended)
}

/// Ends the sessions that timed out; returns them.
///
/// # Errors
/// The database fails.
pub async fn reap(state: &AppState, started: Instant) -> Result<Vec<Uuid>> {
    let db = state.sessions.vault().db();
    let now = time::OffsetDateTime::now_utc();
    let mut ended = Vec::new();
    let mut open = Vec::new();
    for state in [
        SessionState::Created,
        SessionState::Joined,
        SessionState::Consented,
        SessionState::Live,
    ] {
        let filter = SessionFilter {
            state: Some(state),
            ..SessionFilter::default()
        };
        open.extend(db.sessions(&filter).await?);
    }
    for record in open {
        let reason = match record.state {
            SessionState::Ended => continue,
            SessionState::Created if now - record.created_at > state.config.code_ttl => {
                "timeout: the code was never redeemed"
            }
            SessionState::Created => continue,
            _ if state.live.connected(record.session_id) => continue,
            _ => {
                let since = state.last_seen.get(record.session_id).unwrap_or(started);
                if since.elapsed() < state.config.session_idle {
                    continue;
                }
                "timeout: no agent connected"
            }
        };
        if state
            .sessions
            .end_as("system:timeout", record.session_id, reason)
            .await?
        {
            let joined = record.state != SessionState::Created;
            wrap_up(state, record.session_id, reason, joined).await?;
            ended.push(record.session_id);
        }
    }
    Ok(ended)
}

/// Runs [`reap`] every `every` until the server stops, and closes idle CTI uploads
/// ([`crate::cti::parts::close_idle`]) on the same beat.
pub fn spawn_reaper(state: Arc<AppState>, every: Duration) -> tokio::task::JoinHandle<()> {
    let started = Instant::now();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            match reap(&state, started).await {
                Ok(ended) if !ended.is_empty() => {
                    tracing::info!(sessions = ?ended, "sessions ended by timeout");
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cannot end timed-out sessions"),
            }
            match crate::cti::parts::close_idle(&state, state.config.cti_upload_idle).await {
                Ok(0) => {}
                Ok(closed) => tracing::info!(closed, "idle CTI uploads closed"),
                Err(e) => tracing::warn!(error = %e, "cannot close idle CTI uploads"),
            }
        }
    })
}
