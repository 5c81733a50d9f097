//! An ingest node's spool: where a session's track logs ([`crate::track_log`]) are kept on the
//! node's disk until they are rolled into the blob store as segments. Ingest writes it, the
//! mux worker on the same node reads what is not rolled yet, and both find the files here.
//!
//! A track is a series of logs, one per segment: `ROOT/SESSION/TRACK-NNNNNN.log`, `NNNNNN` the
//! segment's index (from 0, the index it is recorded under in the `segments` table). The log
//! with the highest index is the one frames are appended to; every lower one is *closed*: full,
//! synced, and waiting to be rolled. A session's logs go into the blob store as they close
//! (segments of a long session do not wait for its end) and the last one when it ends.

use std::path::{Path, PathBuf};

use uuid::Uuid;

use crate::track_log::{LogError, Records, TrackLog};

/// A session's directory in the spool.
#[must_use]
pub fn session_dir(root: &Path, session: Uuid) -> PathBuf {
    root.join(session.to_string())
}

/// A log's name relative to the spool root (`SESSION/camera-000003.log`): how the journal
/// names it.
#[must_use]
pub fn log_name(session: Uuid, track: &str, index: u64) -> String {
    format!("{session}/{track}-{index:06}.log")
}

/// The blob key of a track's segment.
#[must_use]
pub fn segment_key(session: Uuid, track: &str, index: u64) -> String {
    format!("segments/{session}/{track}-{index:06}.log")
}

/// One log in the spool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalLog {
    /// Its segment index.
    pub index: u64,
    /// Where it is.
    pub path: PathBuf,
}

/// The logs of `track` in `session`'s spool directory, lowest index first (none if the
/// directory does not exist).
///
/// # Errors
/// The directory cannot be listed.
pub fn local_logs(root: &Path, session: Uuid, track: &str) -> std::io::Result<Vec<LocalLog>> {
    let dir = session_dir(root, session);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut logs = Vec::new();
    for entry in entries {
        let name = entry?.file_name();
        let Some(index) = name.to_str().and_then(|n| index_of(n, track)) else {
            continue;
        };
        logs.push(LocalLog {
            index,
            path: dir.join(name),
        });
    }
    logs.sort_by_key(|l| l.index);
    Ok(logs)
}

/// The segment index in a file name `TRACK-NNNNNN.log`, if it is one of `track`'s.
fn index_of(file_name: &str, track: &str) -> Option<u64> {
    let digits = file_name
        .strip_prefix(track)?
        .strip_prefix('-')?
        .strip_suffix(".log")?;
    (digits.len() >= 6 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// Where a track's recorded segments end: the highest index and seq in the `segments` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recorded {
    /// The last recorded segment's index.
    pub index: u64,
    /// Its last frame's seq.
    pub last_seq: u64,
}

/// The log a track's frames are appended to.
#[derive(Debug)]
pub struct ActiveLog {
    /// The log, told where the track stands.
    pub log: TrackLog,
    /// Its name relative to the spool root.
    pub name: String,
    /// Its segment index.
    pub index: u64,
}

/// The log frames of `track` are appended to, opened (see [`TrackLog::open`]).
///
/// It is the highest-index local log above what is `recorded`, or a new one after it. An
/// empty one continues after the log before it, or after the recorded segments. Local logs at
/// or below `recorded` were rolled already (a crash came before they were removed, or the
/// journal's replay wrote them again) and are left for the roller to remove.
///
/// # Errors
/// [`LogError`] when the spool cannot be listed or a log cannot be opened or read.
pub fn open_active(
    root: &Path,
    session: Uuid,
    track: &str,
    recorded: Option<Recorded>,
) -> Result<ActiveLog, LogError> {
    let dir = session_dir(root, session);
    let local = local_logs(root, session, track).map_err(|source| LogError::Io {
        path: dir.clone(),
        source,
    })?;
    let floor = recorded.map(|r| r.index);
    let unrolled: Vec<&LocalLog> = local
        .iter()
        .filter(|l| floor.is_none_or(|f| l.index > f))
        .collect();
    let index = match unrolled.last() {
        Some(l) => l.index,
        None => floor.map_or(0, |f| f + 1),
    };
    let name = log_name(session, track, index);
    let mut log = TrackLog::open(&root.join(&name))?;
    if log.is_empty() {
        let before = match unrolled.iter().rev().nth(1) {
            Some(previous) => last_seq_of(&previous.path)?,
            None => None,
        };
        let after = before.or(recorded.map(|r| r.last_seq)).unwrap_or(0);
        log.continue_after(after);
    }
    Ok(ActiveLog { log, name, index })
}

/// The last seq the log at `path` holds.
///
/// # Errors
/// [`LogError`] when it cannot be read or is damaged.
pub fn last_seq_of(path: &Path) -> Result<Option<u64>, LogError> {
    let mut last = None;
    for record in Records::open(path)? {
        last = Some(record?.seq);
    }
    Ok(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_names_carry_the_segment_index() {
        let s = Uuid::nil();
        assert_eq!(
            log_name(s, "camera", 3),
            "00000000-0000-0000-0000-000000000000/camera-000003.log"
        );
        assert_eq!(index_of("camera-000003.log", "camera"), Some(3));
        assert_eq!(index_of("camera-1234567.log", "camera"), Some(1_234_567));
        assert_eq!(index_of("screen-000003.log", "camera"), None);
        assert_eq!(index_of("camera.log", "camera"), None);
        assert_eq!(index_of("camera-00003.log", "camera"), None);
        assert_eq!(index_of("camera-00000x.log", "camera"), None);
        // `mic_reference` is not taken for a `mic` track's log.
        assert_eq!(index_of("mic_reference-000001.log", "mic"), None);
    }

    fn append(log: &mut TrackLog, seqs: std::ops::RangeInclusive<u64>) {
        for seq in seqs {
            log.append(seq, seq as i64, b"frame").unwrap();
        }
        log.sync().unwrap();
    }

    #[test]
    fn the_active_log_is_the_highest_unrolled_one_and_a_new_one_continues_the_track() {
        let root = tempfile::tempdir().unwrap();
        let s = Uuid::new_v4();
        // Nothing yet: segment 0, from seq 1.
        let ActiveLog { mut log, name, .. } = open_active(root.path(), s, "camera", None).unwrap();
        assert_eq!(name, log_name(s, "camera", 0));
        assert_eq!(log.last_seq(), None);
        assert!(log.append(2, 0, b"x").is_err(), "the first frame is 1");
        append(&mut log, 1..=5);
        drop(log);
        // Reopened: the same log.
        let ActiveLog { log, name, index } = open_active(root.path(), s, "camera", None).unwrap();
        assert_eq!(
            (name, index, log.last_seq()),
            (log_name(s, "camera", 0), 0, Some(5))
        );
        // A later segment created empty (the rotation) continues after the one before.
        TrackLog::open(&root.path().join(log_name(s, "camera", 1))).unwrap();
        let ActiveLog { mut log, name, .. } = open_active(root.path(), s, "camera", None).unwrap();
        assert_eq!(name, log_name(s, "camera", 1));
        assert_eq!(log.last_seq(), Some(5));
        assert_eq!(
            log.append(5, 0, b"x").unwrap(),
            crate::track_log::Appended::Duplicate
        );
        assert!(log.append(7, 0, b"x").is_err());
        append(&mut log, 6..=8);
        // Both rolled and removed: a new segment after the recorded ones.
        std::fs::remove_dir_all(session_dir(root.path(), s)).unwrap();
        let recorded = Some(Recorded {
            index: 1,
            last_seq: 8,
        });
        let ActiveLog { log, index, .. } = open_active(root.path(), s, "camera", recorded).unwrap();
        assert_eq!((index, log.last_seq()), (2, Some(8)));
        // A rolled log written again by the journal's replay is not the active one.
        let ActiveLog { log, index, .. } = open_active(
            root.path(),
            s,
            "camera",
            Some(Recorded {
                index: 2,
                last_seq: 8,
            }),
        )
        .unwrap();
        assert_eq!((index, log.last_seq()), (3, Some(8)));
        let logs = local_logs(root.path(), s, "camera").unwrap();
        assert_eq!(logs.iter().map(|l| l.index).collect::<Vec<_>>(), [2, 3]);
        assert!(local_logs(root.path(), s, "screen").unwrap().is_empty());
    }
}
