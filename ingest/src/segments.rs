//! Rolling a session's track logs into the blob store when it ends, so a mux worker on any
//! node can read them: each log (frames still sealed by the agent, CRC-framed) is uploaded as
//! a segment `segments/SESSION/TRACK-000000.log`, recorded in the `segments` table with the
//! range of frames it holds, and only then removed from the local spool.
//!
//! Every step can be repeated: the upload overwrites the same key with the same bytes, an
//! already recorded segment is not recorded twice, and a log whose segment is recorded is just
//! removed. [`recover`] runs at start-up and finishes what a crash interrupted (and queues the
//! session's mux job, which is idempotent too).

use std::path::{Path, PathBuf};

use proto::Track;
use storage::Vault;
use storage::db::{DbError, MediaTrack, SegmentRecord, SessionState};
use storage::track_log::Records;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::{IngestError, Result};

/// What one log holds.
struct Range {
    first_seq: u64,
    last_seq: u64,
    first_ts: i64,
    last_ts: i64,
    bytes: u64,
}

/// The stored track of a protocol track (the names are the same).
fn media_track(track: Track) -> MediaTrack {
    MediaTrack::parse(track.name()).expect("every protocol track is a stored track")
}

/// The blob key of a session's track segment.
#[must_use]
pub fn segment_key(session: Uuid, track: Track, index: u64) -> String {
    format!("segments/{session}/{}-{index:06}.log", track.name())
}

/// The spool directory of a session.
#[must_use]
pub fn spool_dir(data_dir: &Path, session: Uuid) -> PathBuf {
    data_dir.join("spool").join(session.to_string())
}

/// Rolls every track log of the ended `session` into the blob store.
///
/// # Errors
/// A log that cannot be read, an upload or database failure (the local logs are then kept,
/// and the next call or [`recover`] tries again).
pub async fn roll(vault: &Vault, data_dir: &Path, session: Uuid) -> Result<()> {
    let dir = spool_dir(data_dir, session);
    for track in Track::ALL {
        let path = dir.join(format!("{}.log", track.name()));
        if !path.exists() {
            continue;
        }
        let scanned = path.clone();
        let range = tokio::task::spawn_blocking(move || scan(&scanned))
            .await
            .map_err(|e| IngestError::io(&path, std::io::Error::other(e.to_string())))??;
        if let Some(range) = range {
            roll_track(vault, session, track, &path, &range).await?;
        }
        remove(&path)?;
    }
    match std::fs::remove_dir(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(dir = %dir.display(), error = %e, "spool directory not removed"),
    }
    Ok(())
}

async fn roll_track(
    vault: &Vault,
    session: Uuid,
    track: Track,
    path: &Path,
    range: &Range,
) -> Result<()> {
    let db = vault.db();
    let recorded = db.last_seq(session, media_track(track)).await?;
    if recorded.is_some_and(|last| last >= range.last_seq) {
        return Ok(()); // rolled before a crash interrupted the clean-up
    }
    let index = db
        .segments(session, Some(media_track(track)))
        .await?
        .iter()
        .map(|s| s.index + 1)
        .max()
        .unwrap_or(0);
    let key = segment_key(session, track, index);
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| IngestError::io(path, e))?;
    vault
        .blobs()
        .put_stream(&key, file)
        .await
        .map_err(storage::Error::from)?;
    let segment = SegmentRecord {
        session_id: session,
        track: media_track(track),
        index,
        location: format!("blob:{key}"),
        first_seq: range.first_seq,
        last_seq: range.last_seq,
        first_ts: range.first_ts,
        last_ts: range.last_ts,
        bytes: range.bytes,
        sealed_at: OffsetDateTime::now_utc(),
    };
    match db.insert_segment(&segment).await {
        Ok(()) | Err(DbError::SegmentExists { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The frames a log holds (`None`: none), checking every record on the way.
fn scan(path: &Path) -> Result<Option<Range>> {
    let bytes = std::fs::metadata(path)
        .map_err(|e| IngestError::io(path, e))?
        .len();
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

/// The ended sessions whose logs are still in the local spool (a crash came between the end
/// and the roll): rolled now. Open sessions' logs stay where their agents resume them.
///
/// # Errors
/// The spool directory cannot be listed, or the database fails.
pub async fn recover(vault: &Vault, data_dir: &Path) -> Result<Vec<Uuid>> {
    let spool = data_dir.join("spool");
    let entries = match std::fs::read_dir(&spool) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(IngestError::io(&spool, e)),
    };
    let mut rolled = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| IngestError::io(&spool, e))?;
        let Some(session) = entry
            .file_name()
            .to_str()
            .and_then(|n| Uuid::parse_str(n).ok())
        else {
            continue;
        };
        let ended = vault
            .db()
            .session(session)
            .await?
            .is_some_and(|s| s.state == SessionState::Ended);
        if ended {
            roll(vault, data_dir, session).await?;
            rolled.push(session);
        }
    }
    Ok(rolled)
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
