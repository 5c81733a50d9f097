//! Retention: a recording whose session ended more than its group's retention period ago is
//! crypto-shredded — its retention key destroyed, so no copy can ever be read again
//! ([`storage::Vault::shred`], audited `archive.shred`) — unless a legal hold keeps it. Each
//! shredding is also audited as `retention.shred` on the session, by `system:retention`.

use storage::Vault;
use storage::audit::{AuditEvent, Outcome};
use storage::db::{ArchiveState, SessionFilter, SessionState};
use storage::{Access, Error};
use time::OffsetDateTime;
use uuid::Uuid;

/// The audit actor of retention.
pub const ACTOR: &str = "system:retention";

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RetentionPass {
    /// Sessions whose recording was shredded now.
    pub shredded: Vec<Uuid>,
    /// Expired sessions kept by a legal hold.
    pub held: Vec<Uuid>,
}

/// Shreds every recording past its group's retention at `now`, except those on hold.
///
/// # Errors
/// The database, keyring or audit log fails (what was shredded before stays shredded).
pub async fn enforce(vault: &Vault, now: OffsetDateTime) -> Result<RetentionPass, Error> {
    let db = vault.db();
    let mut pass = RetentionPass::default();
    for (group, days) in db.group_retentions().await? {
        let cutoff = now - time::Duration::days(i64::from(days));
        let ended = db
            .sessions(&SessionFilter {
                state: Some(SessionState::Ended),
                group: Some(group.clone()),
            })
            .await?;
        for session in ended {
            if session.ended_at.is_none_or(|at| at >= cutoff) {
                continue;
            }
            let Some(archive_id) = db
                .mux_job_for_session(session.session_id)
                .await?
                .and_then(|job| job.archive_id)
            else {
                continue;
            };
            let Some(archive) = db.archive(archive_id).await? else {
                continue;
            };
            if archive.state == ArchiveState::Shredded {
                continue;
            }
            if db.legal_hold(session.session_id).await?.is_some() {
                pass.held.push(session.session_id);
                continue;
            }
            let reason = format!("retention of {days} days for group {group} ended");
            vault
                .shred(archive_id, &Access::new(ACTOR, Some(reason.clone())))
                .await?;
            vault
                .audit()
                .append(AuditEvent {
                    actor: ACTOR.into(),
                    action: "retention.shred".into(),
                    object: format!("session:{}", session.session_id),
                    reason: Some(reason),
                    outcome: Outcome::Success,
                })
                .await?;
            pass.shredded.push(session.session_id);
        }
    }
    Ok(pass)
}

/// Runs [`enforce`] every `every` until the task is dropped (an error is logged and retried).
pub async fn run(vault: Vault, every: std::time::Duration) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        match enforce(&vault, OffsetDateTime::now_utc()).await {
            Ok(pass) if !pass.shredded.is_empty() => {
                tracing::info!(
                    shredded = pass.shredded.len(),
                    held = pass.held.len(),
                    "retention"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "retention could not run"),
        }
        // Grants that expired are of no use to anyone: their rows go too.
        let now = OffsetDateTime::now_utc();
        if let Err(e) = vault.db().delete_expired_recording_grants(now).await {
            tracing::error!(error = %e, "cannot forget expired grants");
        }
    }
}
