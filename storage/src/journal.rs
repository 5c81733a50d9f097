//! The node's write-ahead journal: one append-only file that many track logs' new records are
//! written to first, so that one `fdatasync` makes a whole group of them durable (group commit)
//! instead of one sync per log. The records reach their track logs afterwards: the
//! [`apply::Applier`] reads them back from the journal every few hundred milliseconds and
//! writes each log's in one go (a frame at a time, a log's append cost about four times as
//! much in the kernel), without a sync. The logs are synced now and then at a *checkpoint*,
//! after which the journal generation that covered them is retired. After a crash,
//! [`Journal::recover`] replays what the journal holds into the logs before anything reads
//! them. `docs/JOURNAL.md` describes the files.
//!
//! A generation is one file, `DIR/GENERATION.journal` (20 decimal digits), starting with a
//! 16-byte header (`IDVJRNL2`, generation as u64 LE), then records (little-endian):
//!
//! | bytes | field |
//! |---|---|
//! | 4 | frame length `n` |
//! | 8 | offset of the record in its track log |
//! | 8 | sequence number |
//! | 8 | capture timestamp |
//! | 2 | length `p` of the log's name |
//! | p | the log's path relative to the logs' root, UTF-8 |
//! | n | the frame |
//! | 4 | CRC-32 of the generation (u64 LE), then of the 38 + p + n bytes before it |
//!
//! A checkpointed generation's file is not removed but kept as `DIR/spare`, and the next
//! generation is written over it: overwriting a file's allocated blocks needs no block
//! allocation, and its `fdatasync` no metadata write (the size stays), and the pages are
//! usually still cached. With a new file for every generation the commit thread needed about
//! half as much CPU again at 1,000 agents, and every removal a discard of a gigabyte
//! (`benches/README.md`). What an older generation left past the new one's end does not
//! read as records: their CRCs cover another generation. Generations of the first format
//! (`IDVJRNL1`, CRC of the record alone) are still replayed.
//!
//! Replay reads each generation up to its first incomplete or damaged record: an ack is only
//! sent after a sync that covered everything written before it, so whatever lies past that
//! record was never acknowledged (a power loss can leave holes anywhere in the unsynced tail,
//! which is why damage there is not told apart from a torn end). For each log, the first
//! record says where the log's synced part ends: the log is cut there and every journaled
//! record is written again, so replaying twice gives the same bytes.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use crate::track_log::{Appended, LogError, TrackLog, sync_dir};

pub mod apply;

/// Generations written since 2026-11-22: each record's CRC also covers the generation.
const MAGIC: &[u8; 8] = b"IDVJRNL2";
/// Generations of the first format (CRC of the record alone); still replayed after an upgrade.
const MAGIC_V1: &[u8; 8] = b"IDVJRNL1";
/// The file header: magic and generation.
const HEADER: u64 = 16;
/// Bytes of a record before the log's name.
const HEAD: usize = 30;
/// Bytes after the frame.
const TAIL: usize = 4;
/// A journal file's extension.
const EXTENSION: &str = "journal";
/// A checkpointed generation's file, kept to be written over by a later generation.
const SPARE: &str = "spare";
/// The largest frame a record holds (far above any frame the ingest takes): a garbled length
/// in a generation's tail reads as its end without allocating what it claims.
const MAX_FRAME: usize = 256 * 1024 * 1024;

/// The journal failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JournalError {
    /// A journal file could not be read, written or synced.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Another process holds the journal (two servers on one data directory).
    #[error(
        "{} is locked: another server is running on this data directory",
        path.display()
    )]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// A file in the journal directory that is not a journal of this format.
    #[error("{}: not an idv journal", path.display())]
    Foreign {
        /// The file.
        path: PathBuf,
    },
    /// A log does not end where its next journaled record starts: something other than the
    /// applier wrote or cut it, or it is not a path under the logs' root.
    #[error("the log {log} ends at byte {len}, but its next journaled record starts at {offset}")]
    OutOfStep {
        /// The log.
        log: String,
        /// Where it ends.
        len: u64,
        /// Where the record starts.
        offset: u64,
    },
    /// A record that cannot be written (a name or frame too long).
    #[error("a journal record for {log} is too large")]
    TooLarge {
        /// The log it was for.
        log: String,
    },
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> JournalError + '_ {
    move |source| JournalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One record appended to a track log, to be journaled with it.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The log's path relative to the logs' root (`SESSION/camera.log`).
    pub log: Arc<str>,
    /// Where the record starts in the log ([`TrackLog::len`] before the append).
    pub offset: u64,
    /// Its sequence number.
    pub seq: u64,
    /// Its capture timestamp.
    pub timestamp: i64,
    /// The frame as appended.
    pub frame: Bytes,
}

/// A journaled record as [`Journal::append`] placed it: where its frame is in the journal.
#[derive(Debug, Clone)]
pub struct Placed {
    /// The log's path relative to the logs' root.
    pub log: Arc<str>,
    /// Where the record starts in the log.
    pub offset: u64,
    /// Its sequence number.
    pub seq: u64,
    /// Its capture timestamp.
    pub timestamp: i64,
    /// The generation holding it.
    pub generation: u64,
    /// Where its frame starts in that generation's file.
    pub at: u64,
    /// The frame's length.
    pub len: u32,
}

/// The journal's current generation, open for appending. One writer per data directory: it
/// holds the directory's lock while it lives.
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    generation: u64,
    path: PathBuf,
    file: File,
    len: u64,
    records: u64,
    buf: Vec<u8>,
    _lock: File,
}

/// What [`replay`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Replayed {
    /// The generations read, oldest first.
    pub generations: Vec<u64>,
    /// Complete records found.
    pub records: u64,
    /// Records written into logs again.
    pub rewritten: u64,
    /// Logs cut and rewritten.
    pub logs: usize,
    /// Bytes past the last complete record of each generation (torn tails, and what an older
    /// generation left in a reused file), summed.
    pub cut_bytes: u64,
    /// Logs whose records were not replayed, and why: rolled away already (their records
    /// start past the beginning of a log that is gone), or damaged before the journaled part.
    pub skipped: Vec<(String, String)>,
}

impl Journal {
    /// Locks `dir`, replays every generation in it into the logs under `root`, syncs those
    /// logs, starts the next generation and retires the replayed ones.
    ///
    /// # Errors
    /// [`JournalError::Locked`] while another process holds `dir`; [`JournalError::Io`];
    /// [`JournalError::Foreign`] for a file in `dir` that is not a journal.
    pub fn recover(dir: &Path, root: &Path) -> Result<(Self, Replayed), JournalError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let lock_path = dir.join("lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(JournalError::Locked { path: lock_path });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(&lock_path)(e)),
        }
        let replayed = replay(dir, root)?;
        let next = replayed.generations.last().map_or(1, |g| g + 1);
        let journal = Self::create(dir, next, lock)?;
        retire_through(dir, next - 1)?;
        Ok((journal, replayed))
    }

    /// Starts generation `generation` (synced into the directory before any record), in the
    /// spare file when there is one: its records are then written over the checkpointed
    /// generation's, which their CRCs tell apart (see the module docs).
    fn create(dir: &Path, generation: u64, lock: File) -> Result<Self, JournalError> {
        let path = file_of(dir, generation);
        let spare = dir.join(SPARE);
        let reused = match std::fs::rename(&spare, &path) {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => return Err(io(&spare)(e)),
        };
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(!reused)
            .open(&path)
            .map_err(io(&path))?;
        let mut header = [0u8; HEADER as usize];
        header[..8].copy_from_slice(MAGIC);
        header[8..].copy_from_slice(&generation.to_le_bytes());
        file.write_all(&header).map_err(io(&path))?;
        file.sync_all().map_err(io(&path))?;
        sync_dir(dir).map_err(io(dir))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            generation,
            path,
            file,
            len: HEADER,
            records: 0,
            buf: Vec::new(),
            _lock: lock,
        })
    }

    /// Starts the next generation; the current one stays on disk until
    /// [`retire_through`] retires it after a checkpoint. Returns the generation left.
    ///
    /// # Errors
    /// [`JournalError::Io`]: the current generation stays in use.
    pub fn rotate(&mut self) -> Result<u64, JournalError> {
        let lock = self._lock.try_clone().map_err(io(&self.dir))?;
        let next = Self::create(&self.dir, self.generation + 1, lock)?;
        let old = std::mem::replace(self, next);
        Ok(old.generation)
    }

    /// Writes `entries` at the end of the current generation (durable after [`Self::sync`]);
    /// returns where each one's frame is, for the [`apply::Applier`] to write it into its log.
    ///
    /// # Errors
    /// [`JournalError::TooLarge`]; [`JournalError::Io`]: then nothing may be acknowledged
    /// from here on, since what reached the file is unknown.
    pub fn append<'a>(
        &mut self,
        entries: impl IntoIterator<Item = &'a Entry>,
    ) -> Result<Vec<Placed>, JournalError> {
        // Written in pieces of about `WRITE_PIECE`: few system calls, a small buffer.
        const WRITE_PIECE: usize = 256 * 1024;
        self.buf.clear();
        let mut placed = Vec::new();
        for entry in entries {
            let record = self.len + self.buf.len() as u64;
            encode(self.generation, entry, &mut self.buf)?;
            placed.push(Placed {
                log: Arc::clone(&entry.log),
                offset: entry.offset,
                seq: entry.seq,
                timestamp: entry.timestamp,
                generation: self.generation,
                at: record + (HEAD + entry.log.len()) as u64,
                len: u32::try_from(entry.frame.len()).expect("checked by encode"),
            });
            if self.buf.len() >= WRITE_PIECE {
                self.write_buf()?;
            }
        }
        self.write_buf()?;
        self.records += placed.len() as u64;
        // A frame far larger than usual must not keep its buffer for good.
        if self.buf.capacity() > 2 * WRITE_PIECE {
            self.buf = Vec::new();
        }
        Ok(placed)
    }

    fn write_buf(&mut self) -> Result<(), JournalError> {
        self.file.write_all(&self.buf).map_err(io(&self.path))?;
        self.len += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    /// Makes everything appended so far durable (`fdatasync`).
    ///
    /// # Errors
    /// [`JournalError::Io`]: nothing appended since the last sync may be acknowledged.
    pub fn sync(&mut self) -> Result<(), JournalError> {
        self.file.sync_data().map_err(io(&self.path))
    }

    /// The current generation.
    #[must_use]
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Bytes in the current generation's file.
    #[must_use]
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the current generation holds no record.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// The journal's directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// The file of `generation` in the journal directory `dir`.
pub(crate) fn file_of(dir: &Path, generation: u64) -> PathBuf {
    dir.join(format!("{generation:020}.{EXTENSION}"))
}

/// The generations in `dir`, oldest first.
fn generations(dir: &Path) -> Result<Vec<u64>, JournalError> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let name = entry.file_name();
        let Some(stem) = name
            .to_str()
            .and_then(|n| n.strip_suffix(&format!(".{EXTENSION}")))
        else {
            continue;
        };
        match stem.parse() {
            Ok(generation) => found.push(generation),
            Err(_) => {
                return Err(JournalError::Foreign { path: entry.path() });
            }
        }
    }
    found.sort_unstable();
    Ok(found)
}

/// Retires every generation up to and including `generation` (their logs are synced): the
/// newest becomes the spare file, for the next generation to be written over, and any older
/// one is removed. Then syncs the directory, so a retired generation never comes back after
/// a power loss while a later one is gone (replaying it would cut logs back past records only
/// the later one had).
///
/// # Errors
/// [`JournalError::Io`].
pub fn retire_through(dir: &Path, generation: u64) -> Result<(), JournalError> {
    let retired: Vec<u64> = generations(dir)?
        .into_iter()
        .take_while(|&g| g <= generation)
        .collect();
    let Some((&newest, older)) = retired.split_last() else {
        return Ok(());
    };
    for &old in older {
        let path = file_of(dir, old);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&path)(e)),
        }
    }
    let path = file_of(dir, newest);
    std::fs::rename(&path, dir.join(SPARE)).map_err(io(&path))?;
    sync_dir(dir).map_err(io(dir))
}

/// A record's CRC: of the generation it belongs to, then of its bytes before the CRC (the
/// first format's: of those bytes alone).
fn checksum(generation: Option<u64>, bytes: &[&[u8]]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    if let Some(generation) = generation {
        hasher.update(&generation.to_le_bytes());
    }
    for piece in bytes {
        hasher.update(piece);
    }
    hasher.finalize()
}

fn encode(generation: u64, entry: &Entry, out: &mut Vec<u8>) -> Result<(), JournalError> {
    let too_large = || JournalError::TooLarge {
        log: entry.log.to_string(),
    };
    if entry.frame.len() > MAX_FRAME {
        return Err(too_large());
    }
    let n = u32::try_from(entry.frame.len()).map_err(|_| too_large())?;
    let p = u16::try_from(entry.log.len()).map_err(|_| too_large())?;
    let start = out.len();
    out.reserve(HEAD + entry.log.len() + entry.frame.len() + TAIL);
    out.extend_from_slice(&n.to_le_bytes());
    out.extend_from_slice(&entry.offset.to_le_bytes());
    out.extend_from_slice(&entry.seq.to_le_bytes());
    out.extend_from_slice(&entry.timestamp.to_le_bytes());
    out.extend_from_slice(&p.to_le_bytes());
    out.extend_from_slice(entry.log.as_bytes());
    out.extend_from_slice(&entry.frame);
    let crc = checksum(Some(generation), &[&out[start..]]);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// One record read back.
struct Record {
    log: String,
    offset: u64,
    seq: u64,
    timestamp: i64,
    frame: Vec<u8>,
}

/// The next complete, intact record of `generation` (`None` for the first format) within the
/// `remaining` bytes of the file; `None` at the end or at the first torn or damaged record,
/// or one an earlier generation left in a reused file.
fn decode(
    reader: &mut impl Read,
    remaining: u64,
    generation: Option<u64>,
) -> std::io::Result<Option<(Record, u64)>> {
    let mut head = [0u8; HEAD];
    if !read_exactly(reader, &mut head)? {
        return Ok(None);
    }
    let n = u32::from_le_bytes(head[0..4].try_into().expect("4 bytes")) as usize;
    let p = u16::from_le_bytes(head[28..30].try_into().expect("2 bytes")) as usize;
    if n > MAX_FRAME || (HEAD + p + n + TAIL) as u64 > remaining {
        return Ok(None); // torn, or a garbled length: never allocate what is not there
    }
    let mut rest = vec![0u8; p + n + TAIL];
    if !read_exactly(reader, &mut rest)? {
        return Ok(None);
    }
    let crc = u32::from_le_bytes(rest[p + n..].try_into().expect("4 bytes"));
    if checksum(generation, &[&head, &rest[..p + n]]) != crc {
        return Ok(None);
    }
    let Ok(log) = std::str::from_utf8(&rest[..p]) else {
        return Ok(None);
    };
    let record = Record {
        log: log.to_owned(),
        offset: u64::from_le_bytes(head[4..12].try_into().expect("8 bytes")),
        seq: u64::from_le_bytes(head[12..20].try_into().expect("8 bytes")),
        timestamp: i64::from_le_bytes(head[20..28].try_into().expect("8 bytes")),
        frame: rest[p..p + n].to_vec(),
    };
    Ok(Some((record, (HEAD + p + n + TAIL) as u64)))
}

/// Fills `buf`; false when the input ends first.
fn read_exactly(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<bool> {
    match reader.read_exact(buf) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

/// `log` as a path under `root`, if it is a plain relative path (no `..`, no root).
fn log_path(root: &Path, log: &str) -> Option<PathBuf> {
    let relative = Path::new(log);
    let plain = relative
        .components()
        .all(|c| matches!(c, Component::Normal(_)));
    (plain && !log.is_empty()).then(|| root.join(relative))
}

/// A log during replay.
enum Target {
    Open(TrackLog),
    Skipped,
}

/// Replays every generation in `dir`, oldest first, into the logs under `root`, and syncs the
/// logs it wrote. The generations stay on disk ([`Journal::recover`] retires them).
///
/// # Errors
/// [`JournalError::Io`] for the journal's own files or a log that cannot be synced;
/// [`JournalError::Foreign`]. A log that cannot be replayed is reported in
/// [`Replayed::skipped`] and the rest go on.
pub fn replay(dir: &Path, root: &Path) -> Result<Replayed, JournalError> {
    let mut report = Replayed::default();
    let mut targets: HashMap<String, Target> = HashMap::new();
    for generation in generations(dir)? {
        let path = file_of(dir, generation);
        let file = File::open(&path).map_err(io(&path))?;
        let file_len = file.metadata().map_err(io(&path))?.len();
        let mut reader = BufReader::with_capacity(256 * 1024, file);
        let mut header = [0u8; HEADER as usize];
        report.generations.push(generation);
        if !read_exactly(&mut reader, &mut header).map_err(io(&path))? {
            // Created just before the crash: nothing in it was ever synced.
            report.cut_bytes += file_len;
            continue;
        }
        let seed = match &header[..8] {
            magic if magic == MAGIC => Some(generation),
            magic if magic == MAGIC_V1 => None,
            _ => return Err(JournalError::Foreign { path }),
        };
        if seed.is_some() && header[8..] != generation.to_le_bytes() {
            // The spare file renamed, its header not yet written over: nothing in it was
            // synced for this generation.
            report.cut_bytes += file_len;
            continue;
        }
        let mut read = HEADER;
        while let Some((record, len)) =
            decode(&mut reader, file_len - read, seed).map_err(io(&path))?
        {
            read += len;
            report.records += 1;
            apply(root, record, &mut targets, &mut report);
        }
        if read < file_len {
            tracing::warn!(journal = %path.display(), offset = read, bytes = file_len - read,
                "the journal generation ends here (what follows was never acknowledged: a \
                 torn tail, or an older generation's records in a reused file)");
            report.cut_bytes += file_len - read;
        }
    }
    for target in targets.values_mut() {
        if let Target::Open(log) = target {
            log.sync().map_err(|e| match e {
                LogError::Io { path, source } => JournalError::Io { path, source },
                other => JournalError::Io {
                    path: log.path().to_path_buf(),
                    source: std::io::Error::other(other.to_string()),
                },
            })?;
        }
    }
    Ok(report)
}

/// Notes that `log`'s journaled records are not replayed, and why.
fn skip(report: &mut Replayed, log: &str, why: String) -> Target {
    tracing::error!(log, why, "a log's journaled records are not replayed");
    report.skipped.push((log.to_owned(), why));
    Target::Skipped
}

/// The log a generation's first record for it names, cut where that record starts.
fn target(root: &Path, record: &Record, report: &mut Replayed) -> Target {
    let opened = match log_path(root, &record.log) {
        None => {
            return skip(
                report,
                &record.log,
                "not a path under the logs' root".into(),
            );
        }
        Some(path) if !path.exists() && record.offset == 0 => TrackLog::open(&path),
        // Rolled into the blob store and removed: nothing to restore here.
        Some(path) if !path.exists() => {
            return skip(report, &record.log, "the log is gone (rolled)".into());
        }
        Some(path) => TrackLog::open_at(&path, record.offset),
    };
    match opened {
        Ok(mut log) => {
            // A later segment of its track starts at the seq it was journaled with.
            log.continue_after(record.seq.saturating_sub(1));
            report.logs += 1;
            Target::Open(log)
        }
        Err(e) => skip(report, &record.log, e.to_string()),
    }
}

/// Writes one journaled record into its log again.
fn apply(
    root: &Path,
    record: Record,
    targets: &mut HashMap<String, Target>,
    report: &mut Replayed,
) {
    if !targets.contains_key(&record.log) {
        let target = target(root, &record, report);
        targets.insert(record.log.clone(), target);
    }
    let Some(Target::Open(log)) = targets.get_mut(&record.log) else {
        return;
    };
    if log.len() == record.offset
        && let Ok(Appended::Stored) = log.append(record.seq, record.timestamp, &record.frame)
    {
        report.rewritten += 1;
        return;
    }
    let why = format!(
        "record {} at byte {} does not follow on (the log ends at byte {}, seq {:?})",
        record.seq,
        record.offset,
        log.len(),
        log.last_seq()
    );
    let skipped = skip(report, &record.log, why);
    targets.insert(record.log, skipped);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A data directory: journal in `journal/`, logs under `spool/` (also `apply`'s tests').
    pub(super) struct Node {
        _tmp: tempfile::TempDir,
        pub(super) journal: PathBuf,
        pub(super) root: PathBuf,
    }

    impl Node {
        pub(super) fn new() -> Self {
            let tmp = tempfile::tempdir().unwrap();
            Self {
                journal: tmp.path().join("journal"),
                root: tmp.path().join("spool"),
                _tmp: tmp,
            }
        }

        fn log(&self, name: &str) -> PathBuf {
            self.root.join(name)
        }
    }

    fn frame(name: &str, seq: u64) -> Vec<u8> {
        format!("{name} frame {seq} ")
            .repeat(seq as usize % 7 + 1)
            .into_bytes()
    }

    /// Appends frames `seqs` to the log `name` without syncing it, journals them and syncs the
    /// journal: what a connection and the committer do for one batch.
    fn commit(node: &Node, journal: &mut Journal, name: &str, seqs: std::ops::RangeInclusive<u64>) {
        let mut log = TrackLog::open(&node.log(name)).unwrap();
        let entries: Vec<Entry> = seqs
            .map(|seq| {
                let offset = log.len();
                let frame = frame(name, seq);
                log.append(seq, seq as i64 * 10, &frame).unwrap();
                Entry {
                    log: name.into(),
                    offset,
                    seq,
                    timestamp: seq as i64 * 10,
                    frame: frame.into(),
                }
            })
            .collect();
        journal.append(&entries).unwrap();
        journal.sync().unwrap();
    }

    fn seqs(path: &Path) -> Vec<u64> {
        TrackLog::read_all(path)
            .unwrap()
            .iter()
            .map(|r| r.seq)
            .collect()
    }

    fn assert_intact(path: &Path, name: &str, last: u64) {
        let records = TrackLog::read_all(path).unwrap();
        assert_eq!(
            records.iter().map(|r| r.seq).collect::<Vec<_>>(),
            (1..=last).collect::<Vec<_>>()
        );
        for r in records {
            assert_eq!(r.frame, frame(name, r.seq));
            assert_eq!(r.timestamp, r.seq as i64 * 10);
        }
    }

    /// A power loss that kept only the first `keep` bytes of a log's unsynced part and
    /// garbage after them.
    fn garble_after(path: &Path, keep: u64) {
        let mut bytes = std::fs::read(path).unwrap();
        for b in &mut bytes[keep as usize..] {
            *b = 0xa5;
        }
        bytes.extend_from_slice(&[0; 100]);
        std::fs::write(path, bytes).unwrap();
    }

    #[test]
    fn replay_rewrites_what_the_logs_lost_of_their_unsynced_tail() {
        let node = Node::new();
        let (mut journal, replayed) = Journal::recover(&node.journal, &node.root).unwrap();
        assert_eq!(replayed, Replayed::default());
        commit(&node, &mut journal, "s1/camera.log", 1..=5);
        commit(&node, &mut journal, "s2/screen.log", 1..=3);
        commit(&node, &mut journal, "s1/camera.log", 6..=9);
        drop(journal); // the crash
        garble_after(&node.log("s1/camera.log"), 70);
        std::fs::remove_file(node.log("s2/screen.log")).unwrap(); // its entry never reached the disk

        let (journal, replayed) = Journal::recover(&node.journal, &node.root).unwrap();
        assert_eq!(replayed.generations, [1]);
        assert_eq!(
            (replayed.records, replayed.rewritten, replayed.logs),
            (12, 12, 2)
        );
        assert!(replayed.skipped.is_empty(), "{:?}", replayed.skipped);
        assert_intact(&node.log("s1/camera.log"), "s1/camera.log", 9);
        assert_intact(&node.log("s2/screen.log"), "s2/screen.log", 3);
        assert_eq!(journal.generation(), 2);
        assert_eq!(
            generations(&node.journal).unwrap(),
            [2],
            "replayed ones retired"
        );
    }

    #[test]
    fn a_torn_tail_record_is_cut_and_what_came_before_is_replayed() {
        let node = Node::new();
        let (mut journal, _) = Journal::recover(&node.journal, &node.root).unwrap();
        commit(&node, &mut journal, "s/camera.log", 1..=4);
        let synced = journal.len();
        // The crash came while writing the next batch: half of its record reached the disk.
        let mut torn = Vec::new();
        encode(
            1,
            &Entry {
                log: "s/camera.log".into(),
                offset: TrackLog::open(&node.log("s/camera.log")).unwrap().len(),
                seq: 5,
                timestamp: 50,
                frame: frame("s/camera.log", 5).into(),
            },
            &mut torn,
        )
        .unwrap();
        let path = file_of(&node.journal, 1);
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(&torn[..torn.len() / 2]).unwrap();
        drop(file);
        drop(journal);
        std::fs::write(node.log("s/camera.log"), b"").unwrap(); // nothing of the log was synced

        let replayed = replay(&node.journal, &node.root).unwrap();
        assert_eq!((replayed.records, replayed.rewritten), (4, 4));
        assert_eq!(replayed.cut_bytes, (torn.len() / 2) as u64);
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            synced + (torn.len() / 2) as u64
        );
        assert_intact(&node.log("s/camera.log"), "s/camera.log", 4);

        // A damaged record (a hole a power loss left in the unsynced part) ends the replay too.
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - torn.len() / 2 - 1;
        bytes[last] ^= 0xff; // the CRC of record 4
        std::fs::write(&path, &bytes).unwrap();
        let replayed = replay(&node.journal, &node.root).unwrap();
        assert_eq!((replayed.records, replayed.rewritten), (3, 3));
        assert_intact(&node.log("s/camera.log"), "s/camera.log", 3);
    }

    #[test]
    fn a_checkpoint_then_a_crash_replays_only_the_newer_generation() {
        let node = Node::new();
        let (mut journal, _) = Journal::recover(&node.journal, &node.root).unwrap();
        commit(&node, &mut journal, "s/camera.log", 1..=6);
        // Checkpoint: the logs of generation 1 synced, then generation 1 retired.
        let old = journal.rotate().unwrap();
        TrackLog::open(&node.log("s/camera.log"))
            .unwrap()
            .sync()
            .unwrap();
        retire_through(&node.journal, old).unwrap();
        let synced = std::fs::metadata(node.log("s/camera.log")).unwrap().len();
        commit(&node, &mut journal, "s/camera.log", 7..=10);
        commit(&node, &mut journal, "t/screen.log", 1..=2);
        drop(journal);
        garble_after(&node.log("s/camera.log"), synced);

        let (_journal, replayed) = Journal::recover(&node.journal, &node.root).unwrap();
        assert_eq!(replayed.generations, [2]);
        assert_eq!((replayed.records, replayed.rewritten), (6, 6));
        assert_intact(&node.log("s/camera.log"), "s/camera.log", 10);
        assert_intact(&node.log("t/screen.log"), "t/screen.log", 2);
    }

    /// A checkpoint as the applier runs it: the logs synced, the old generation retired.
    fn checkpoint(node: &Node, journal: &mut Journal, logs: &[&str]) {
        let old = journal.rotate().unwrap();
        for log in logs {
            TrackLog::open(&node.log(log)).unwrap().sync().unwrap();
        }
        retire_through(&node.journal, old).unwrap();
    }

    fn inode(path: &Path) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).unwrap().ino()
    }

    #[test]
    fn a_retired_generation_is_written_over_and_its_records_are_not_replayed_again() {
        let node = Node::new();
        let (mut journal, _) = Journal::recover(&node.journal, &node.root).unwrap();
        commit(&node, &mut journal, "s/camera.log", 1..=40);
        let first = inode(&file_of(&node.journal, 1));
        let long = journal.len();
        checkpoint(&node, &mut journal, &["s/camera.log"]); // 1 retired: the spare
        assert!(node.journal.join(SPARE).exists());
        commit(&node, &mut journal, "s/camera.log", 41..=42);
        checkpoint(&node, &mut journal, &["s/camera.log"]); // 3 is written over 1's file
        assert_eq!(journal.generation(), 3);
        assert_eq!(
            inode(&file_of(&node.journal, 3)),
            first,
            "the spare is reused"
        );
        assert_eq!(generations(&node.journal).unwrap(), [3]);
        // Records as long as 1's first three (a name and frames of the same lengths), so 3
        // ends exactly where 1's fourth record starts: s/camera.log seq 4, whole and intact
        // but for a CRC that covers generation 1. Read as 3's, it would cut s/camera.log
        // back to seq 3 and lose 41 and 42.
        commit(&node, &mut journal, "u/camera.log", 1..=3);
        assert!(
            journal.len() < long,
            "generation 1's records lie past the end"
        );
        drop(journal); // the crash
        std::fs::write(node.log("u/camera.log"), b"").unwrap(); // nothing of it was synced

        let (journal, replayed) = Journal::recover(&node.journal, &node.root).unwrap();
        assert_eq!(replayed.generations, [3]);
        assert_eq!((replayed.records, replayed.rewritten), (3, 3));
        assert!(replayed.skipped.is_empty(), "{:?}", replayed.skipped);
        assert!(replayed.cut_bytes > 0, "1's leftovers read as the end");
        assert_intact(&node.log("s/camera.log"), "s/camera.log", 42);
        assert_intact(&node.log("u/camera.log"), "u/camera.log", 3);
        // The replayed generation is the spare now; the next one was written over the other.
        assert_eq!(journal.generation(), 4);
        assert!(node.journal.join(SPARE).exists());
        assert_eq!(generations(&node.journal).unwrap(), [4]);
    }

    #[test]
    fn a_spare_renamed_before_its_header_was_written_over_holds_nothing() {
        let node = Node::new();
        let (mut journal, _) = Journal::recover(&node.journal, &node.root).unwrap();
        commit(&node, &mut journal, "s/camera.log", 1..=5);
        checkpoint(&node, &mut journal, &["s/camera.log"]);
        commit(&node, &mut journal, "s/camera.log", 6..=7);
        checkpoint(&node, &mut journal, &["s/camera.log"]);
        drop(journal);
        // The crash came between renaming the spare (generation 2's file, its records all
        // synced into their log) and writing generation 4's header over it.
        let spare = node.journal.join(SPARE);
        let len = std::fs::metadata(&spare).unwrap().len();
        // 3 was written over 1's file: it holds only its header, then 1's leftovers.
        let leftovers = std::fs::metadata(file_of(&node.journal, 3)).unwrap().len() - HEADER;
        assert!(leftovers > 0);
        std::fs::rename(&spare, file_of(&node.journal, 4)).unwrap();
        let log = std::fs::read(node.log("s/camera.log")).unwrap();

        let (_journal, replayed) = Journal::recover(&node.journal, &node.root).unwrap();
        assert_eq!(replayed.generations, [3, 4]);
        assert_eq!(replayed.records, 0);
        assert_eq!(
            replayed.cut_bytes,
            leftovers + len,
            "3 has no record, 4 reads as empty"
        );
        assert_eq!(std::fs::read(node.log("s/camera.log")).unwrap(), log);
    }

    #[test]
    fn a_garbled_length_past_the_end_is_the_end_not_an_allocation() {
        let node = Node::new();
        let (mut journal, _) = Journal::recover(&node.journal, &node.root).unwrap();
        commit(&node, &mut journal, "s/camera.log", 1..=3);
        let end = journal.len();
        drop(journal);
        // Past the synced records: a length of 2 GiB, in a file (sparse here) long enough to
        // hold it, as an older generation's leftovers in a reused file could be.
        use std::os::unix::fs::FileExt;
        let path = file_of(&node.journal, 1);
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.write_all_at(&(2u32 << 30).to_le_bytes(), end).unwrap();
        file.set_len(end + (3 << 30)).unwrap();
        drop(file);
        std::fs::write(node.log("s/camera.log"), b"").unwrap();

        let replayed = replay(&node.journal, &node.root).unwrap();
        assert_eq!((replayed.records, replayed.rewritten), (3, 3));
        assert_eq!(replayed.cut_bytes, 3 << 30);
        assert_intact(&node.log("s/camera.log"), "s/camera.log", 3);
    }

    #[test]
    fn a_generation_of_the_first_format_is_still_replayed() {
        let node = Node::new();
        std::fs::create_dir_all(&node.journal).unwrap();
        let mut bytes = Vec::from(*MAGIC_V1);
        bytes.extend_from_slice(&7u64.to_le_bytes());
        let mut offset = 0u64;
        for seq in 1..=3 {
            let frame = frame("s/camera.log", seq);
            let start = bytes.len();
            bytes.extend_from_slice(&u32::try_from(frame.len()).unwrap().to_le_bytes());
            bytes.extend_from_slice(&offset.to_le_bytes());
            bytes.extend_from_slice(&seq.to_le_bytes());
            bytes.extend_from_slice(&(seq as i64 * 10).to_le_bytes());
            bytes.extend_from_slice(&12u16.to_le_bytes());
            bytes.extend_from_slice(b"s/camera.log");
            bytes.extend_from_slice(&frame);
            let crc = crc32fast::hash(&bytes[start..]);
            bytes.extend_from_slice(&crc.to_le_bytes());
            offset += (20 + frame.len() + 4) as u64; // the track log's record
        }
        std::fs::write(file_of(&node.journal, 7), &bytes).unwrap();

        let (journal, replayed) = Journal::recover(&node.journal, &node.root).unwrap();
        assert_eq!(replayed.generations, [7]);
        assert_eq!((replayed.records, replayed.rewritten), (3, 3));
        assert_intact(&node.log("s/camera.log"), "s/camera.log", 3);
        assert_eq!(journal.generation(), 8);
    }

    #[test]
    fn replay_is_idempotent_even_when_interrupted() {
        let node = Node::new();
        let (mut journal, _) = Journal::recover(&node.journal, &node.root).unwrap();
        commit(&node, &mut journal, "s/camera.log", 1..=3);
        let old = journal.rotate().unwrap();
        commit(&node, &mut journal, "s/camera.log", 4..=8);
        commit(&node, &mut journal, "s/screen.log", 1..=4);
        drop(journal);
        let _ = old; // both generations stay: the checkpoint never ran

        let first = replay(&node.journal, &node.root).unwrap();
        assert_eq!(first.generations, [1, 2]);
        let camera = std::fs::read(node.log("s/camera.log")).unwrap();
        let screen = std::fs::read(node.log("s/screen.log")).unwrap();
        // Again, as after a crash during the first replay (which left a longer log).
        let again = replay(&node.journal, &node.root).unwrap();
        assert_eq!(again, first);
        assert_eq!(std::fs::read(node.log("s/camera.log")).unwrap(), camera);
        assert_eq!(std::fs::read(node.log("s/screen.log")).unwrap(), screen);
        // And a crash in the middle of a replay that had cut the log back.
        std::fs::write(node.log("s/camera.log"), &camera[..60]).unwrap();
        assert_eq!(replay(&node.journal, &node.root).unwrap(), first);
        assert_eq!(std::fs::read(node.log("s/camera.log")).unwrap(), camera);
        assert_eq!(seqs(&node.log("s/camera.log")), (1..=8).collect::<Vec<_>>());
    }

    #[test]
    fn a_rolled_log_is_not_made_again_from_part_of_it() {
        let node = Node::new();
        let (mut journal, _) = Journal::recover(&node.journal, &node.root).unwrap();
        commit(&node, &mut journal, "s/camera.log", 1..=2);
        let old = journal.rotate().unwrap();
        TrackLog::open(&node.log("s/camera.log"))
            .unwrap()
            .sync()
            .unwrap();
        retire_through(&node.journal, old).unwrap();
        commit(&node, &mut journal, "s/camera.log", 3..=5);
        drop(journal);
        // The session ended and its log was rolled into the blob store and removed.
        std::fs::remove_dir_all(node.root.join("s")).unwrap();

        let (_journal, replayed) = Journal::recover(&node.journal, &node.root).unwrap();
        assert_eq!((replayed.records, replayed.rewritten), (3, 0));
        assert_eq!(replayed.skipped.len(), 1);
        assert!(!node.root.join("s").exists());
    }

    #[test]
    fn a_name_outside_the_root_is_not_followed() {
        let node = Node::new();
        let (mut journal, _) = Journal::recover(&node.journal, &node.root).unwrap();
        let entry = |log: &str| Entry {
            log: log.into(),
            offset: 0,
            seq: 1,
            timestamp: 0,
            frame: Bytes::from_static(b"x"),
        };
        journal
            .append(&[entry("../escape.log"), entry("/abs.log"), entry("")])
            .unwrap();
        journal.sync().unwrap();
        drop(journal);
        let (_journal, replayed) = Journal::recover(&node.journal, &node.root).unwrap();
        assert_eq!(replayed.skipped.len(), 3);
        assert!(!node.root.parent().unwrap().join("escape.log").exists());
    }

    #[test]
    fn a_second_writer_on_the_same_directory_is_refused() {
        let node = Node::new();
        let (journal, _) = Journal::recover(&node.journal, &node.root).unwrap();
        let err = Journal::recover(&node.journal, &node.root).unwrap_err();
        assert!(matches!(err, JournalError::Locked { .. }), "{err}");
        drop(journal);
        Journal::recover(&node.journal, &node.root).unwrap();
    }
}
