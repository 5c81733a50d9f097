//! Writing journaled records into their track logs: the journal is the logs' write-behind
//! buffer. A connection only counts a frame into its log ([`TrackLog::append_journaled`]) and
//! hands the record to the group commit, which journals and syncs it; the [`Applier`] then
//! reads the records back from the journal (still in the page cache: they were just written)
//! and writes each log's in one system call. Appending a frame at a time across thousands of
//! logs cost about four times as much kernel time per record as appending each log's records
//! of a few hundred milliseconds together, and it was done on the threads that serve the
//! agents (`benches/README.md`).
//!
//! The applier holds no frame in memory between rounds, only where each record is
//! ([`Placed`]). Until a log's records are applied its file is shorter than the log says, so
//! whoever opens or reads a log file first has everything applied ([`Applier::apply`]); a
//! checkpoint applies everything before it syncs the logs and removes the generation that
//! held them, and after a crash [`super::Journal::recover`] replays the journal as before.
//!
//! [`TrackLog::append_journaled`]: crate::track_log::TrackLog::append_journaled

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{JournalError, Placed, file_of, io, log_path};
use crate::track_log::{Writeback, record_head, record_tail};

/// A log's records are written in pieces of at most about this much.
const WRITE_PIECE: usize = 1024 * 1024;

/// What one [`Applier::apply`] wrote.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// Records written into their logs.
    pub records: u64,
    /// Logs written to.
    pub logs: usize,
    /// Records not written because their log is gone (see [`Applier::apply`]).
    pub skipped: u64,
}

/// A log open for applying records to it.
#[derive(Debug)]
struct LogFile {
    file: File,
    /// Where its next record starts.
    len: u64,
    writeback: Writeback,
    /// Written to in the current round (a log idle for a round is closed).
    used: bool,
}

/// Applies journaled records to their logs (see the module docs). One per node, on one thread.
#[derive(Debug)]
pub struct Applier {
    dir: PathBuf,
    root: PathBuf,
    /// Journaled, not yet in their logs: in journal order, so each log's in log order.
    pending: Vec<Placed>,
    /// Generation files open for reading.
    generations: HashMap<u64, File>,
    /// Logs written to in the last round.
    logs: HashMap<Arc<str>, LogFile>,
    /// Logs written to since [`Self::take_written`]: what a checkpoint must sync.
    written: HashSet<Arc<str>>,
    buf: Vec<u8>,
}

impl Applier {
    /// An applier for the journal in `dir` and the logs under `root`.
    #[must_use]
    pub fn new(dir: &Path, root: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            root: root.to_path_buf(),
            pending: Vec::new(),
            generations: HashMap::new(),
            logs: HashMap::new(),
            written: HashSet::new(),
            buf: Vec::new(),
        }
    }

    /// Records just journaled and synced, in the order [`super::Journal::append`] placed them.
    pub fn add(&mut self, placed: impl IntoIterator<Item = Placed>) {
        self.pending.extend(placed);
    }

    /// Records not yet applied.
    #[must_use]
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Writes every pending record into its log, each log's with as few writes as
    /// [`WRITE_PIECE`] allows; nothing is synced.
    ///
    /// A log that is gone was rolled into the blob store and removed while frames still came
    /// for it — its session ended, and a connection that did not close in time went on
    /// sending. Those records are skipped with a warning, as replay skips them: they arrived
    /// after the recording was closed, and one session's stray frames must not stop the node.
    ///
    /// # Errors
    /// [`JournalError::Io`] when a generation cannot be read or a log written;
    /// [`JournalError::OutOfStep`] when a log does not end where its next record starts
    /// (something else wrote or cut it). What was written before the error stays written;
    /// the journal still holds every record, so nothing acknowledged is lost, but no more may
    /// be acknowledged.
    pub fn apply(&mut self) -> Result<Applied, JournalError> {
        let mut pending = std::mem::take(&mut self.pending);
        // Stable: a log's records stay in journal order, which is their order in the log.
        pending.sort_by(|a, b| a.log.cmp(&b.log));
        let mut applied = Applied::default();
        for run in pending.chunk_by(|a, b| a.log == b.log) {
            if self.write_run(run)? {
                applied.records += run.len() as u64;
                applied.logs += 1;
            } else {
                applied.skipped += run.len() as u64;
            }
        }
        // A log not written to this round is closed (one rolled away is never written again).
        self.logs.retain(|_, log| std::mem::take(&mut log.used));
        // The allocation is kept for the next round unless a burst made it large.
        pending.clear();
        if pending.capacity() > 4 * 65_536 {
            pending = Vec::new();
        }
        self.pending = pending;
        Ok(applied)
    }

    /// Writes one log's records (all for the same log, in order); `false` when the log is
    /// gone.
    fn write_run(&mut self, run: &[Placed]) -> Result<bool, JournalError> {
        let first = &run[0];
        let log = match self.logs.get_mut(&first.log) {
            Some(log) => log,
            None => match open_log(&self.root, &first.log)? {
                Some(opened) => self.logs.entry(Arc::clone(&first.log)).or_insert(opened),
                None => {
                    tracing::warn!(log = %first.log, records = run.len(),
                        "frames for a log already rolled away are not written");
                    return Ok(false);
                }
            },
        };
        let out_of_step = |len: u64, offset: u64| JournalError::OutOfStep {
            log: first.log.to_string(),
            len,
            offset,
        };
        if log.len != first.offset {
            return Err(out_of_step(log.len, first.offset));
        }
        let path = || self.root.join(&*first.log);
        let mut start = log.len;
        self.buf.clear();
        for record in run {
            if record.offset != start + self.buf.len() as u64 {
                return Err(out_of_step(start + self.buf.len() as u64, record.offset));
            }
            let head = record_head(record.len, record.seq, record.timestamp);
            self.buf.extend_from_slice(&head);
            let frame = self.buf.len();
            self.buf.resize(frame + record.len as usize, 0);
            let generation = match self.generations.get(&record.generation) {
                Some(file) => file,
                None => {
                    let path = file_of(&self.dir, record.generation);
                    let file = File::open(&path).map_err(io(&path))?;
                    self.generations.entry(record.generation).or_insert(file)
                }
            };
            generation
                .read_exact_at(&mut self.buf[frame..], record.at)
                .map_err(|e| io(&file_of(&self.dir, record.generation))(e))?;
            let tail = record_tail(&head, &self.buf[frame..]);
            self.buf.extend_from_slice(&tail);
            if self.buf.len() >= WRITE_PIECE {
                log.file
                    .write_all_at(&self.buf, start)
                    .map_err(|e| io(&path())(e))?;
                start += self.buf.len() as u64;
                self.buf.clear();
            }
        }
        log.file
            .write_all_at(&self.buf, start)
            .map_err(|e| io(&path())(e))?;
        log.len = start + self.buf.len() as u64;
        log.used = true;
        log.writeback.after_append(&log.file, log.len);
        if self.buf.capacity() > 2 * WRITE_PIECE {
            self.buf = Vec::new();
        }
        if !self.written.contains(&first.log) {
            self.written.insert(Arc::clone(&first.log));
        }
        Ok(true)
    }

    /// The logs written to since the last call: a checkpoint syncs them.
    pub fn take_written(&mut self) -> HashSet<Arc<str>> {
        std::mem::take(&mut self.written)
    }

    /// Closes the files of generations up to `generation` (everything in them is applied; a
    /// checkpoint is about to remove them).
    pub fn forget_through(&mut self, generation: u64) {
        self.generations.retain(|&g, _| g > generation);
    }
}

/// Opens a log to apply records to (the connection created it); `None` when it is gone.
fn open_log(root: &Path, log: &str) -> Result<Option<LogFile>, JournalError> {
    let path = log_path(root, log).ok_or_else(|| JournalError::OutOfStep {
        log: log.to_owned(),
        len: 0,
        offset: 0,
    })?;
    let file = match OpenOptions::new().write(true).open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(&path)(e)),
    };
    let len = file.metadata().map_err(io(&path))?.len();
    Ok(Some(LogFile {
        file,
        len,
        writeback: Writeback::new(len),
        used: false,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::tests::Node;
    use crate::journal::{Entry, Journal};
    use crate::track_log::TrackLog;

    fn frame(name: &str, seq: u64) -> Vec<u8> {
        format!("{name}:{seq};")
            .repeat(seq as usize * 37 % 300 + 1)
            .into_bytes()
    }

    /// What a connection does for a batch: counts the frames into its log and journals them.
    fn journal_frames(
        journal: &mut Journal,
        log: &mut TrackLog,
        name: &str,
        seqs: std::ops::RangeInclusive<u64>,
    ) -> Vec<Placed> {
        let entries: Vec<Entry> = seqs
            .map(|seq| {
                let offset = log.len();
                let frame = frame(name, seq);
                log.append_journaled(seq, frame.len()).unwrap();
                Entry {
                    log: name.into(),
                    offset,
                    seq,
                    timestamp: seq as i64 * 33,
                    frame: frame.into(),
                }
            })
            .collect();
        let placed = journal.append(&entries).unwrap();
        journal.sync().unwrap();
        placed
    }

    fn assert_holds(node: &Node, name: &str, seqs: std::ops::RangeInclusive<u64>) {
        let records = TrackLog::read_all(&node.root.join(name)).unwrap();
        assert_eq!(
            records.iter().map(|r| r.seq).collect::<Vec<_>>(),
            seqs.collect::<Vec<_>>()
        );
        for r in records {
            assert_eq!(r.frame, frame(name, r.seq), "{name} frame {}", r.seq);
            assert_eq!(r.timestamp, r.seq as i64 * 33);
        }
    }

    #[test]
    fn interleaved_records_of_many_logs_land_in_their_logs_whole_and_in_order() {
        let node = Node::new();
        let (mut journal, _) = Journal::recover(&node.journal, &node.root).unwrap();
        let names = ["a/camera.log", "a/screen.log", "b/camera.log"];
        let mut logs: Vec<TrackLog> = names
            .iter()
            .map(|n| TrackLog::open(&node.root.join(n)).unwrap())
            .collect();
        let mut applier = Applier::new(&node.journal, &node.root);
        for round in 0..3u64 {
            for batch in 0..4u64 {
                for (log, name) in logs.iter_mut().zip(names) {
                    let first = round * 40 + batch * 10 + 1;
                    let placed = journal_frames(&mut journal, log, name, first..=first + 9);
                    applier.add(placed);
                }
            }
            if round == 1 {
                journal.rotate().unwrap(); // records of two generations in one round
            }
            assert_eq!(applier.pending(), 120);
            let applied = applier.apply().unwrap();
            assert_eq!((applied.records, applied.logs), (120, 3));
            assert_eq!(applier.pending(), 0);
            for (log, name) in logs.iter().zip(names) {
                let on_disk = std::fs::metadata(node.root.join(name)).unwrap().len();
                assert_eq!(on_disk, log.len(), "{name} holds what its log counted");
            }
        }
        for name in names {
            assert_holds(&node, name, 1..=120);
        }
        let written = applier.take_written();
        assert_eq!(written.len(), 3);
        assert!(applier.take_written().is_empty());
        // What the applier wrote is what a log opened afresh finds.
        let reopened = TrackLog::open(&node.root.join(names[0])).unwrap();
        assert_eq!(
            (reopened.last_seq(), reopened.len()),
            (Some(120), logs[0].len())
        );
    }

    #[test]
    fn a_log_that_does_not_end_where_its_records_start_stops_the_applier() {
        let node = Node::new();
        let (mut journal, _) = Journal::recover(&node.journal, &node.root).unwrap();
        let name = "s/camera.log";
        let mut log = TrackLog::open(&node.root.join(name)).unwrap();
        let placed = journal_frames(&mut journal, &mut log, name, 1..=5);
        // Something cut into the log's file behind the applier's back.
        std::fs::write(node.root.join(name), b"xx").unwrap();
        let mut applier = Applier::new(&node.journal, &node.root);
        applier.add(placed);
        let err = applier.apply().unwrap_err();
        assert!(
            matches!(
                &err,
                JournalError::OutOfStep {
                    len: 2,
                    offset: 0,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(
            std::fs::read(node.root.join(name)).unwrap(),
            b"xx",
            "untouched"
        );
        // The journal still holds the records: a restart's replay restores the log.
        drop(journal);
        std::fs::write(node.root.join(name), b"").unwrap();
        Journal::recover(&node.journal, &node.root).unwrap();
        assert_holds(&node, name, 1..=5);
    }

    #[test]
    fn frames_for_a_log_rolled_away_are_skipped_and_the_others_written() {
        let node = Node::new();
        let (mut journal, _) = Journal::recover(&node.journal, &node.root).unwrap();
        let (gone, kept) = ("s/screen.log", "t/screen.log");
        let mut gone_log = TrackLog::open(&node.root.join(gone)).unwrap();
        let mut kept_log = TrackLog::open(&node.root.join(kept)).unwrap();
        let mut applier = Applier::new(&node.journal, &node.root);
        applier.add(journal_frames(&mut journal, &mut gone_log, gone, 1..=2));
        applier.add(journal_frames(&mut journal, &mut kept_log, kept, 1..=3));
        // Its session ended and the roller removed it while a connection still sent.
        std::fs::remove_dir_all(node.root.join("s")).unwrap();
        let applied = applier.apply().unwrap();
        assert_eq!((applied.records, applied.skipped), (3, 2));
        assert!(!node.root.join("s").exists(), "not made again");
        assert_holds(&node, kept, 1..=3);
    }
}
