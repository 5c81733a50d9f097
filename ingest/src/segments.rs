//! Rolling track logs into the blob store as segments, so a mux worker on any node can read
//! them and a long session does not live only on this node's disk until it ends.
//!
//! A track is a series of logs in the spool ([`storage::spool`]). An agent connection closes
//! its track's log once it holds `segment_bytes` or is `segment_age` old and goes on in a new
//! one ([`due`]); the closed log is rolled in the background by the [`Roller`]. When the
//! session ends the last logs are rolled too ([`Roller::roll_all`]).
//!
//! Rolling a log: everything journaled for it is written into it ([`GroupCommit::applied`];
//! at a session's end [`GroupCommit::settle`]), it is synced and read through (every record checked), uploaded as
//! `segments/SESSION/TRACK-NNNNNN.log`, recorded in the `segments` table with the range of
//! frames it holds, and only then removed. Every step can be repeated: the upload overwrites
//! the same key with the same bytes, a log whose segment is recorded already is just removed.
//! A session's logs are rolled by one task at a time, lowest index first, because the table
//! takes a track's segments only in order. [`Roller::recover`] runs at start-up and finishes
//! what a crash interrupted.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use proto::Track;
use storage::Vault;
use storage::db::{DbError, MediaTrack, SegmentRecord, SessionState};
use storage::spool::{self, ActiveLog, LocalLog, Recorded};
use storage::track_log::{Records, TrackLog};
use time::OffsetDateTime;
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::commit::GroupCommit;
use crate::error::{IngestError, Result};

/// When a connection closes a track's log and starts the next segment.
#[derive(Debug, Clone, Copy)]
pub struct SegmentPolicy {
    /// A log this large is closed…
    pub max_bytes: u64,
    /// … or one holding frames this long after it was opened.
    pub max_age: Duration,
}

impl Default for SegmentPolicy {
    /// 64 MiB or 5 minutes: a camera at 500 kbit/s fills a segment every ~17 minutes, so the
    /// age decides; a crash of the node's disk loses at most that much of a running session.
    fn default() -> Self {
        Self {
            max_bytes: 64 << 20,
            max_age: Duration::from_secs(5 * 60),
        }
    }
}

/// Whether `log`, opened at `opened`, is due to be closed.
#[must_use]
pub fn due(policy: &SegmentPolicy, log: &TrackLog, opened: Instant) -> bool {
    !log.is_empty() && (log.len() >= policy.max_bytes || opened.elapsed() >= policy.max_age)
}

/// The stored track of a protocol track (the names are the same).
fn media_track(track: Track) -> MediaTrack {
    MediaTrack::parse(track.name()).expect("every protocol track is a stored track")
}

/// The spool directory of a session.
#[must_use]
pub fn spool_dir(data_dir: &Path, session: Uuid) -> PathBuf {
    spool::session_dir(&spool_root(data_dir), session)
}

/// The spool's root in a data directory.
#[must_use]
pub fn spool_root(data_dir: &Path) -> PathBuf {
    data_dir.join("spool")
}

/// Where `track`'s recorded segments end, if any is recorded.
///
/// # Errors
/// The database fails.
pub async fn recorded(vault: &Vault, session: Uuid, track: Track) -> Result<Option<Recorded>> {
    let segments = vault
        .db()
        .segments(session, Some(media_track(track)))
        .await?;
    Ok(segments.last().map(|s| Recorded {
        index: s.index,
        last_seq: s.last_seq,
    }))
}

/// Opens the log `track`'s frames go to (see [`spool::open_active`]).
///
/// # Errors
/// The database fails, or the log cannot be opened.
pub async fn open_active(
    vault: &Vault,
    data_dir: &Path,
    session: Uuid,
    track: Track,
) -> Result<ActiveLog> {
    let recorded = recorded(vault, session, track).await?;
    let root = spool_root(data_dir);
    let dir = spool::session_dir(&root, session);
    let opened = tokio::task::spawn_blocking(move || {
        spool::open_active(&root, session, track.name(), recorded)
    })
    .await
    .map_err(|e| IngestError::io(&dir, std::io::Error::other(e.to_string())))?;
    opened.map_err(log_error(&dir))
}

/// Rolls closed logs into the blob store, in the background or when told to.
pub struct Roller {
    vault: Vault,
    /// Settled before a log is read: its last records may still be only in the journal.
    commit: Arc<GroupCommit>,
    root: PathBuf,
    /// One lock per session with logs: only one task rolls a session's logs at a time.
    locks: Mutex<HashMap<Uuid, Arc<tokio::sync::Mutex<()>>>>,
    wake: mpsc::UnboundedSender<Uuid>,
}

impl Roller {
    /// A roller for the spool in `data_dir`, and its background task (run it with
    /// [`Roller::run`]).
    #[must_use]
    pub fn new(
        vault: Vault,
        data_dir: &Path,
        commit: Arc<GroupCommit>,
    ) -> (Arc<Self>, mpsc::UnboundedReceiver<Uuid>) {
        let (wake, woken) = mpsc::unbounded_channel();
        let roller = Self {
            vault,
            commit,
            root: spool_root(data_dir),
            locks: Mutex::new(HashMap::new()),
            wake,
        };
        (Arc::new(roller), woken)
    }

    /// Rolls the closed logs of each session it is told of; a failure is retried later.
    pub async fn run(self: Arc<Self>, mut woken: mpsc::UnboundedReceiver<Uuid>) {
        while let Some(session) = woken.recv().await {
            if let Err(e) = self.roll_closed(session).await {
                tracing::warn!(%session, error = %e, "cannot roll a closed log yet: retrying");
                let again = self.wake.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    let _ = again.send(session);
                });
            }
        }
    }

    /// A log of `session` was closed: roll it soon.
    pub fn closed(&self, session: Uuid) {
        let _ = self.wake.send(session);
    }

    /// Rolls every closed log of `session` (all but each track's highest-index one).
    ///
    /// # Errors
    /// A log cannot be read, an upload or the database fails (the logs are then kept).
    pub async fn roll_closed(&self, session: Uuid) -> Result<()> {
        let _rolling = self.lock(session).await;
        self.settle(false).await?;
        for track in Track::ALL {
            let mut logs = self.local(session, track)?;
            logs.pop(); // the active one
            for log in logs {
                self.roll_log(session, track, &log).await?;
            }
        }
        Ok(())
    }

    /// Rolls all of the ended `session`'s logs and removes its spool directory.
    ///
    /// # Errors
    /// As [`Roller::roll_closed`].
    pub async fn roll_all(&self, session: Uuid) -> Result<()> {
        let rolling = self.lock(session).await;
        self.settle(true).await?;
        for track in Track::ALL {
            for log in self.local(session, track)? {
                self.roll_log(session, track, &log).await?;
            }
        }
        let dir = spool::session_dir(&self.root, session);
        match std::fs::remove_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "spool directory not removed");
            }
        }
        drop(rolling);
        self.locks.lock().expect("not poisoned").remove(&session);
        Ok(())
    }

    /// At start-up: every session in the spool has its closed logs rolled, and an ended one
    /// (a crash came between its end and its roll) all of them. Returns the ended ones.
    ///
    /// # Errors
    /// The spool cannot be listed, a roll or the database fails.
    pub async fn recover(&self) -> Result<Vec<Uuid>> {
        let entries = match std::fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(IngestError::io(&self.root, e)),
        };
        let mut ended = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| IngestError::io(&self.root, e))?;
            let Some(session) = entry
                .file_name()
                .to_str()
                .and_then(|n| Uuid::parse_str(n).ok())
            else {
                continue;
            };
            let state = self.vault.db().session(session).await?.map(|s| s.state);
            if state == Some(SessionState::Ended) {
                self.roll_all(session).await?;
                ended.push(session);
            } else {
                self.roll_closed(session).await?;
            }
        }
        Ok(ended)
    }

    /// Every record journaled so far written into its log, so a closed log's file is whole:
    /// at once (`hurry`: the session ended, its recording waits for this) or at the
    /// applier's pace.
    async fn settle(&self, hurry: bool) -> Result<()> {
        let settled = if hurry {
            self.commit.settle().await
        } else {
            self.commit.applied().await
        };
        settled.map_err(|e| IngestError::io(&self.root, std::io::Error::other(e.to_string())))
    }

    async fn lock(&self, session: Uuid) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = Arc::clone(
            self.locks
                .lock()
                .expect("not poisoned")
                .entry(session)
                .or_default(),
        );
        lock.lock_owned().await
    }

    fn local(&self, session: Uuid, track: Track) -> Result<Vec<LocalLog>> {
        spool::local_logs(&self.root, session, track.name())
            .map_err(|e| IngestError::io(&spool::session_dir(&self.root, session), e))
    }

    /// Rolls one log (the caller holds the session's lock) and removes it.
    async fn roll_log(&self, session: Uuid, track: Track, log: &LocalLog) -> Result<()> {
        let db = self.vault.db();
        let recorded = db.segments(session, Some(media_track(track))).await?;
        if recorded.iter().any(|s| s.index == log.index) {
            return remove(&log.path); // rolled before a crash interrupted the clean-up
        }
        let path = log.path.clone();
        let range = tokio::task::spawn_blocking(move || scan(&path))
            .await
            .map_err(|e| IngestError::io(&log.path, std::io::Error::other(e.to_string())))??;
        let Some(range) = range else {
            return remove(&log.path); // nothing in it (a track the agent never sent)
        };
        let key = spool::segment_key(session, track.name(), log.index);
        let file = tokio::fs::File::open(&log.path)
            .await
            .map_err(|e| IngestError::io(&log.path, e))?;
        self.vault
            .blobs()
            .put_stream(&key, file)
            .await
            .map_err(storage::Error::from)?;
        let segment = SegmentRecord {
            session_id: session,
            track: media_track(track),
            index: log.index,
            location: format!("blob:{key}"),
            first_seq: range.first_seq,
            last_seq: range.last_seq,
            first_ts: range.first_ts,
            last_ts: range.last_ts,
            bytes: range.bytes,
            sealed_at: OffsetDateTime::now_utc(),
        };
        match db.insert_segment(&segment).await {
            Ok(()) => remove(&log.path),
            // Out of order or overlapping: the log stays, and is looked at by a person.
            Err(e @ DbError::SegmentExists { .. }) => {
                tracing::error!(%session, log = %log.path.display(), error = %e,
                    "a log does not follow the track's recorded segments: kept");
                Err(e.into())
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// What one log holds.
struct Range {
    first_seq: u64,
    last_seq: u64,
    first_ts: i64,
    last_ts: i64,
    bytes: u64,
}

/// Syncs the log at `path` and reads it through: the frames it holds (`None`: none), every
/// record checked on the way.
fn scan(path: &Path) -> Result<Option<Range>> {
    let file = std::fs::File::open(path).map_err(|e| IngestError::io(path, e))?;
    file.sync_data().map_err(|e| IngestError::io(path, e))?;
    let bytes = file.metadata().map_err(|e| IngestError::io(path, e))?.len();
    drop(file);
    let mut range: Option<Range> = None;
    for record in Records::open(path).map_err(log_error(path))? {
        let record = record.map_err(log_error(path))?;
        match &mut range {
            None => {
                range = Some(Range {
                    first_seq: record.seq,
                    last_seq: record.seq,
                    first_ts: record.timestamp,
                    last_ts: record.timestamp,
                    bytes,
                });
            }
            Some(r) => {
                r.last_seq = record.seq;
                r.first_ts = r.first_ts.min(record.timestamp);
                r.last_ts = r.last_ts.max(record.timestamp);
            }
        }
    }
    Ok(range)
}

fn log_error(path: &Path) -> impl Fn(storage::track_log::LogError) -> IngestError + '_ {
    move |e| IngestError::io(path, std::io::Error::other(e.to_string()))
}

fn remove(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(IngestError::io(path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_protocol_track_has_its_stored_name() {
        for track in Track::ALL {
            assert_eq!(media_track(track).as_str(), track.name());
        }
    }
}
