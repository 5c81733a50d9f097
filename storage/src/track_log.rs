//! Where an agent's frames are kept: one append-only log per session and track, on the ingest
//! server's disk (and read back by the mux worker). A frame is acknowledged only once it is
//! durable: either this file is `fdatasync`ed ([`TrackLog::sync`]) or the record is in the
//! node's write-ahead journal ([`crate::journal`]), which is synced for many logs at once,
//! written into the logs by its applier soon after ([`TrackLog::append_journaled`]) and
//! replayed into them after a crash.
//!
//! The frames are stored exactly as they arrived — sealed by the agent under the session key —
//! so no plaintext media is ever on the server's disk. Record layout (little-endian):
//!
//! | bytes | field |
//! |---|---|
//! | 4 | record length `n` (of the frame) |
//! | 8 | sequence number |
//! | 8 | capture timestamp (agent clock, ns) |
//! | n | the frame as received |
//! | 4 | CRC-32 of the 20 + n bytes before it |
//!
//! Opening a log replays it: a torn last record (the crash came mid-write) is cut off — it was
//! never acknowledged — while a damaged record followed by more data is an error, since that is
//! not what a crash leaves (the journal's replay first cuts a log back to where its journaled
//! records start, so an unsynced tail a power loss garbled is never read). What a log holds when
//! it is opened is synced before anyone is told about it, and a log (or directory) it creates
//! is synced into its directory, so a frame acknowledged by `welcome` is durable too.
//!
//! Write-back is paced: every 64–448 KiB appended (at random), the log asks the kernel to
//! start writing those bytes to disk (without waiting). Left to itself the kernel writes dirty
//! pages back once they are 30 s old, all at once: at 400 agents that was 1.1 GB in two
//! seconds, the file system's CPU time saturating both cores — the acks' p99 went from
//! ~15 ms to 170 ms in those seconds. Paced, the disk sees a steady stream and a checkpoint's
//! syncs find little left to write (`benches/README.md`).
//!
//! Sequence numbers start at 1 and must follow on (`last + 1`), as the media protocol numbers
//! them; a frame at or below the last stored one is a resend after a reconnect and is
//! acknowledged without being stored twice. A track is kept as a series of logs, one per
//! segment ([`crate::spool`]): a later one starts empty and [`TrackLog::continue_after`] tells
//! it where the track stands.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, IoSlice, Read, Seek, SeekFrom, Write};
use std::num::NonZeroU64;
use std::path::{Path, PathBuf};

use rustix::fs::Advice;

/// Bytes before the frame in a record.
pub(crate) const HEAD: usize = 20;
/// Bytes after it.
pub(crate) const TAIL: usize = 4;
/// Bytes appended between two starts of write-back, on average ([`TrackLog::append`]).
const WRITEBACK_EVERY: u64 = 256 * 1024;

/// Where write-back is next started for a log now `len` long: after 1/4 to 7/4 of
/// [`WRITEBACK_EVERY`], at random — agents that started together at the same bitrate would
/// otherwise all reach the mark in the same instant, every time.
fn next_writeback(len: u64) -> u64 {
    use std::hash::BuildHasher;
    let jitter = std::hash::RandomState::new().hash_one(len) % (WRITEBACK_EVERY * 3 / 2);
    len + WRITEBACK_EVERY / 4 + jitter
}

/// Write-back pacing of one log file (see the module docs): where the kernel was last asked
/// to start writing it to disk, and when to ask next.
#[derive(Debug)]
pub(crate) struct Writeback {
    written_back: u64,
    at: u64,
}

impl Writeback {
    /// For a file `len` bytes long, all of which counts as written back.
    pub(crate) fn new(len: u64) -> Self {
        Self {
            written_back: len,
            at: next_writeback(len),
        }
    }

    /// The file is now `len` bytes long: once past the mark, asks the kernel to start writing
    /// what was appended since the last time, and returns at once (`POSIX_FADV_DONTNEED`
    /// starts the write-back of the range's dirty pages without waiting; it drops only pages
    /// already clean, and never a partial last one). Advice only: a failure shows at the
    /// next sync, not here.
    pub(crate) fn after_append(&mut self, file: &File, len: u64) {
        if len < self.at {
            return;
        }
        if let Some(range) = NonZeroU64::new(len.saturating_sub(self.written_back)) {
            let _ = rustix::fs::fadvise(file, self.written_back, Some(range), Advice::DontNeed);
        }
        self.written_back = len;
        self.at = next_writeback(len);
    }
}

/// The bytes of a record before its frame.
pub(crate) fn record_head(n: u32, seq: u64, timestamp: i64) -> [u8; HEAD] {
    let mut head = [0u8; HEAD];
    head[0..4].copy_from_slice(&n.to_le_bytes());
    head[4..12].copy_from_slice(&seq.to_le_bytes());
    head[12..20].copy_from_slice(&timestamp.to_le_bytes());
    head
}

/// The bytes of a record after its frame: the CRC of everything before.
pub(crate) fn record_tail(head: &[u8; HEAD], frame: &[u8]) -> [u8; TAIL] {
    let mut crc = crc32fast::Hasher::new();
    crc.update(head);
    crc.update(frame);
    crc.finalize().to_le_bytes()
}

/// A track log failed.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The log.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A record in the middle of the log is damaged (not a torn tail).
    #[error("{}: damaged record at byte {offset}", path.display())]
    Damaged {
        /// The log.
        path: PathBuf,
        /// Where the damaged record starts.
        offset: u64,
    },
    /// A frame skips sequence numbers.
    #[error("frame {got} does not follow {last:?}: frames {expected}.. are missing")]
    OutOfOrder {
        /// The last stored sequence number.
        last: Option<u64>,
        /// What came.
        got: u64,
        /// What was expected.
        expected: u64,
    },
    /// A frame larger than a record can hold.
    #[error("a frame of {0} bytes is too large for a record")]
    TooLarge(usize),
    /// The log is shorter than records known to be synced say it must be.
    #[error("{}: {len} bytes, but synced records reach byte {offset}", path.display())]
    Short {
        /// The log.
        path: PathBuf,
        /// Its length.
        len: u64,
        /// Where the synced part ends.
        offset: u64,
    },
}

/// What [`TrackLog::append`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// Written (durable after the next [`TrackLog::sync`]).
    Stored,
    /// Already stored before: a resend.
    Duplicate,
}

/// One stored frame, read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Its sequence number.
    pub seq: u64,
    /// Its capture timestamp.
    pub timestamp: i64,
    /// The frame as received.
    pub frame: Vec<u8>,
}

/// An open track log.
#[derive(Debug)]
pub struct TrackLog {
    path: PathBuf,
    file: File,
    len: u64,
    first_seq: Option<u64>,
    last_seq: Option<u64>,
    /// The track's last seq before this log (a later segment of it); 0 for the first.
    after: u64,
    records: u64,
    dirty: bool,
    writeback: Writeback,
}

impl TrackLog {
    /// Opens (or creates) the log at `path`, replaying it and cutting a torn tail.
    ///
    /// # Errors
    /// [`LogError::Io`], or [`LogError::Damaged`] for damage a crash cannot explain.
    pub fn open(path: &Path) -> Result<Self, LogError> {
        let io = |source| LogError::Io {
            path: path.to_path_buf(),
            source,
        };
        let existed = path.exists();
        if let Some(dir) = path.parent() {
            create_dir_durably(dir).map_err(io)?;
        }
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(io)?;
        if !existed && let Some(dir) = path.parent() {
            sync_dir(dir).map_err(io)?;
        }
        let mut log = Self {
            path: path.to_path_buf(),
            file,
            len: 0,
            first_seq: None,
            last_seq: None,
            after: 0,
            records: 0,
            dirty: false,
            writeback: Writeback::new(0),
        };
        let mut reader = BufReader::new(log.file.try_clone().map_err(io)?);
        loop {
            match read_record(&mut reader) {
                Ok(Some(record)) => {
                    log.first_seq.get_or_insert(record.seq);
                    log.last_seq = Some(record.seq);
                    log.records += 1;
                    log.len += (HEAD + record.frame.len() + TAIL) as u64;
                }
                Ok(None) => break,
                Err(ReadError::Torn) | Err(ReadError::Crc) => {
                    // A crash leaves at most one partial record; more after the damage than
                    // that record can hold is real damage.
                    if !tail_is_one_record(path, log.len)? {
                        return Err(LogError::Damaged {
                            path: path.to_path_buf(),
                            offset: log.len,
                        });
                    }
                    tracing::warn!(log = %path.display(), offset = log.len, "cut a torn record left by a crash");
                    log.file.set_len(log.len).map_err(io)?;
                    log.file.sync_all().map_err(io)?;
                    break;
                }
                Err(ReadError::Io(e)) => return Err(io(e)),
            }
        }
        // Records written before a crash (or by a connection cut off at a shutdown) may be in
        // the page cache only; once this log is opened its last seq is reported as durable.
        log.file.sync_data().map_err(io)?;
        log.writeback = Writeback::new(log.len);
        Ok(log)
    }

    /// Opens the log at `path` after cutting it at `offset`, where a journal's records for it
    /// start: everything before was synced, everything from there on is rewritten from the
    /// journal (and may be garbled by a power loss).
    ///
    /// # Errors
    /// [`LogError::Io`]; [`LogError::Damaged`] when the part before `offset` is damaged or
    /// does not end at a record boundary; [`LogError::Short`] when the file is shorter than
    /// `offset` (synced records are missing).
    pub fn open_at(path: &Path, offset: u64) -> Result<Self, LogError> {
        let io = |source| LogError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = OpenOptions::new().write(true).open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        if len < offset {
            return Err(LogError::Short {
                path: path.to_path_buf(),
                len,
                offset,
            });
        }
        if len > offset {
            file.set_len(offset).map_err(io)?;
        }
        drop(file);
        let log = Self::open(path)?;
        if log.len != offset {
            return Err(LogError::Damaged {
                path: path.to_path_buf(),
                offset: log.len,
            });
        }
        Ok(log)
    }

    /// Makes an empty log a later segment of its track, whose frames continue after `seq`
    /// (the last one of the segments before it): frames up to `seq` are then resends, and the
    /// next one must be `seq + 1`. A log that holds records keeps what they say.
    pub fn continue_after(&mut self, seq: u64) {
        if self.records == 0 {
            self.after = seq;
        }
    }

    /// The last sequence number of the track this log knows of: its own last record (durable
    /// once synced), or for an empty later segment the one it continues after.
    #[must_use]
    pub fn last_seq(&self) -> Option<u64> {
        self.last_seq.or((self.after > 0).then_some(self.after))
    }

    /// The first sequence number stored.
    #[must_use]
    pub fn first_seq(&self) -> Option<u64> {
        self.first_seq
    }

    /// Bytes in the log: where the next record will start.
    #[must_use]
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the log holds no record.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// Where the log is.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends frame `seq` (unless it is already stored).
    ///
    /// # Errors
    /// [`LogError::OutOfOrder`] when sequence numbers are skipped; [`LogError::Io`].
    pub fn append(&mut self, seq: u64, timestamp: i64, frame: &[u8]) -> Result<Appended, LogError> {
        if self.follows(seq)? == Appended::Duplicate {
            return Ok(Appended::Duplicate);
        }
        let n = u32::try_from(frame.len()).map_err(|_| LogError::TooLarge(frame.len()))?;
        // Written with one system call from where the frame is, without building the record
        // in a copy and an allocation of its own.
        let head = record_head(n, seq, timestamp);
        let tail = record_tail(&head, frame);
        write_all_vectored(&mut self.file, [&head[..], frame, &tail[..]]).map_err(|source| {
            LogError::Io {
                path: self.path.clone(),
                source,
            }
        })?;
        self.advance(seq, frame.len());
        self.dirty = true;
        self.writeback.after_append(&self.file, self.len);
        Ok(Appended::Stored)
    }

    /// Takes frame `seq` (unless it is already stored) as [`Self::append`] does, but leaves
    /// the writing to the node's journal: the caller journals the record at [`Self::len`]
    /// (as it was before this call), and the journal's applier
    /// ([`crate::journal::apply::Applier`]) writes it into the file later, grouped with the
    /// log's other records. Until then the file is shorter than this log says: whoever reads
    /// or opens the file first waits for the applier.
    ///
    /// # Errors
    /// [`LogError::OutOfOrder`] when sequence numbers are skipped; [`LogError::TooLarge`].
    pub fn append_journaled(&mut self, seq: u64, frame_len: usize) -> Result<Appended, LogError> {
        if self.follows(seq)? == Appended::Duplicate {
            return Ok(Appended::Duplicate);
        }
        u32::try_from(frame_len).map_err(|_| LogError::TooLarge(frame_len))?;
        self.advance(seq, frame_len);
        Ok(Appended::Stored)
    }

    /// Whether `seq` is the next frame (`Stored`) or a resend (`Duplicate`).
    fn follows(&self, seq: u64) -> Result<Appended, LogError> {
        let last = self.last_seq.unwrap_or(self.after);
        if seq <= last {
            return Ok(Appended::Duplicate);
        }
        if seq != last + 1 {
            return Err(LogError::OutOfOrder {
                last: self.last_seq(),
                got: seq,
                expected: last + 1,
            });
        }
        Ok(Appended::Stored)
    }

    /// Counts a record of a `frame_len`-byte frame `seq` in.
    fn advance(&mut self, seq: u64, frame_len: usize) {
        self.len += (HEAD + frame_len + TAIL) as u64;
        self.first_seq.get_or_insert(seq);
        self.last_seq = Some(seq);
        self.records += 1;
    }

    /// Makes everything appended so far durable (`fdatasync`); a no-op when nothing changed.
    ///
    /// # Errors
    /// [`LogError::Io`]: then nothing appended since the last sync may be acknowledged.
    pub fn sync(&mut self) -> Result<(), LogError> {
        if self.dirty {
            self.file.sync_data().map_err(|source| LogError::Io {
                path: self.path.clone(),
                source,
            })?;
            self.dirty = false;
        }
        Ok(())
    }

    /// Every record in the log at `path`, in order.
    ///
    /// # Errors
    /// [`LogError::Io`] or [`LogError::Damaged`].
    pub fn read_all(path: &Path) -> Result<Vec<Record>, LogError> {
        Records::open(path)?.collect()
    }
}

/// The records of a log, read one at a time (a long call's log is never held in memory) —
/// from its file, or from any reader (a segment rolled into the blob store).
pub struct Records {
    path: PathBuf,
    reader: BufReader<Box<dyn Read + Send>>,
    offset: u64,
    done: bool,
}

impl Records {
    /// Reads the log at `path` from its first record.
    ///
    /// # Errors
    /// [`LogError::Io`] when it cannot be opened.
    pub fn open(path: &Path) -> Result<Self, LogError> {
        let file = File::open(path).map_err(|source| LogError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Self::from_reader(path, file))
    }

    /// Reads records from `reader`; `name` names it in errors.
    pub fn from_reader(name: impl Into<PathBuf>, reader: impl Read + Send + 'static) -> Self {
        Self {
            path: name.into(),
            reader: BufReader::new(Box::new(reader)),
            offset: 0,
            done: false,
        }
    }
}

impl Iterator for Records {
    type Item = Result<Record, LogError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let item = match read_record(&mut self.reader) {
            Ok(Some(r)) => {
                self.offset += (HEAD + r.frame.len() + TAIL) as u64;
                return Some(Ok(r));
            }
            Ok(None) => return None,
            Err(ReadError::Io(source)) => LogError::Io {
                path: self.path.clone(),
                source,
            },
            Err(_) => LogError::Damaged {
                path: self.path.clone(),
                offset: self.offset,
            },
        };
        self.done = true;
        Some(Err(item))
    }
}

/// Writes every piece of `pieces`, in order, with as few system calls as the kernel allows
/// (`writev`; `Write::write_all_vectored` is not stable yet).
fn write_all_vectored<const N: usize>(file: &mut File, pieces: [&[u8]; N]) -> std::io::Result<()> {
    let mut slices = pieces.map(IoSlice::new);
    let mut rest = &mut slices[..];
    IoSlice::advance_slices(&mut rest, 0); // skips empty pieces
    while !rest.is_empty() {
        match file.write_vectored(rest) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut rest, n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Creates `dir` and any missing parents, each synced into its parent, so a log created in it
/// is still found after a power loss.
fn create_dir_durably(dir: &Path) -> std::io::Result<()> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        create_dir_durably(parent)?;
    }
    match std::fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(e),
    }
    match dir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => sync_dir(parent),
        _ => Ok(()),
    }
}

/// Syncs a directory's entries (a file created or removed in it).
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Whether everything from `offset` to the end of the file could be one partial record: its
/// length field (when complete) says a record at least as long as what is there.
fn tail_is_one_record(path: &Path, offset: u64) -> Result<bool, LogError> {
    let io = |source| LogError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(io)?;
    let file_len = file.metadata().map_err(io)?.len();
    let rest = file_len - offset;
    if rest < 4 {
        return Ok(true);
    }
    file.seek(SeekFrom::Start(offset)).map_err(io)?;
    let mut len = [0u8; 4];
    file.read_exact(&mut len).map_err(io)?;
    let record = (HEAD + TAIL) as u64 + u64::from(u32::from_le_bytes(len));
    Ok(rest <= record)
}

enum ReadError {
    /// The file ends inside a record.
    Torn,
    /// A complete record whose checksum does not match.
    Crc,
    Io(std::io::Error),
}

fn read_record(reader: &mut impl Read) -> Result<Option<Record>, ReadError> {
    let mut head = [0u8; HEAD];
    match read_full(reader, &mut head)? {
        0 => return Ok(None),
        n if n < HEAD => return Err(ReadError::Torn),
        _ => {}
    }
    let n = u32::from_le_bytes(head[0..4].try_into().expect("4 bytes")) as usize;
    let seq = u64::from_le_bytes(head[4..12].try_into().expect("8 bytes"));
    let timestamp = i64::from_le_bytes(head[12..20].try_into().expect("8 bytes"));
    let mut frame = Vec::new();
    let got = reader
        .take(n as u64)
        .read_to_end(&mut frame)
        .map_err(ReadError::Io)?;
    if got < n {
        return Err(ReadError::Torn);
    }
    let mut crc = [0u8; TAIL];
    if read_full(reader, &mut crc)? < TAIL {
        return Err(ReadError::Torn);
    }
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&head);
    hasher.update(&frame);
    if hasher.finalize() != u32::from_le_bytes(crc) {
        return Err(ReadError::Crc);
    }
    Ok(Some(Record {
        seq,
        timestamp,
        frame,
    }))
}

/// Reads until `buf` is full or the input ends; returns how many bytes were read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> Result<usize, ReadError> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ReadError::Io(e)),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_in(dir: &tempfile::TempDir) -> PathBuf {
        dir.path().join("s/camera.log")
    }

    #[test]
    fn frames_survive_a_reopen_and_resends_are_not_stored_twice() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_in(&dir);
        let mut log = TrackLog::open(&path).unwrap();
        for seq in 1..=3 {
            assert_eq!(
                log.append(seq, seq as i64 * 33, &[seq as u8; 10]).unwrap(),
                Appended::Stored
            );
        }
        log.sync().unwrap();
        drop(log);
        let mut log = TrackLog::open(&path).unwrap();
        assert_eq!((log.first_seq(), log.last_seq()), (Some(1), Some(3)));
        assert_eq!(log.append(2, 66, &[2; 10]).unwrap(), Appended::Duplicate);
        assert_eq!(log.append(4, 132, &[4; 10]).unwrap(), Appended::Stored);
        log.sync().unwrap();
        let records = TrackLog::read_all(&path).unwrap();
        assert_eq!(
            records.iter().map(|r| r.seq).collect::<Vec<_>>(),
            [1, 2, 3, 4]
        );
        assert_eq!(records[3].frame, vec![4; 10]);
        assert_eq!(records[3].timestamp, 132);
    }

    /// Megabytes of frames of every size, so that write-back is started many times and the
    /// records land across page and write-back boundaries: read back exactly as written.
    #[test]
    fn a_long_log_reads_back_whole_across_write_back_starts() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_in(&dir);
        let mut log = TrackLog::open(&path).unwrap();
        let frame = |seq: u64| vec![(seq % 251) as u8; (seq as usize * 7919) % 20_000];
        for seq in 1..=400 {
            log.append(seq, seq as i64, &frame(seq)).unwrap();
        }
        assert!(log.len() > 3 * 1024 * 1024, "{}", log.len());
        assert!(log.writeback.written_back > 0, "write-back was started");
        assert!(log.writeback.at > log.writeback.written_back);
        log.sync().unwrap();
        drop(log);
        let records = TrackLog::read_all(&path).unwrap();
        assert_eq!(records.len(), 400);
        for (record, seq) in records.iter().zip(1..) {
            assert_eq!((record.seq, record.timestamp), (seq, seq as i64));
            assert_eq!(record.frame, frame(seq), "frame {seq}");
        }
        let log = TrackLog::open(&path).unwrap();
        assert_eq!(
            (log.last_seq(), log.writeback.written_back),
            (Some(400), log.len())
        );
    }

    #[test]
    fn a_skipped_sequence_number_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = TrackLog::open(&log_in(&dir)).unwrap();
        let err = log.append(7, 0, b"x").unwrap_err();
        assert!(
            matches!(
                err,
                LogError::OutOfOrder {
                    expected: 1,
                    got: 7,
                    ..
                }
            ),
            "{err}"
        );
        log.append(1, 0, b"x").unwrap();
        let err = log.append(3, 0, b"y").unwrap_err();
        assert!(
            matches!(
                err,
                LogError::OutOfOrder {
                    expected: 2,
                    got: 3,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn a_torn_tail_is_cut_and_the_log_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_in(&dir);
        let mut log = TrackLog::open(&path).unwrap();
        log.append(1, 0, &[1; 100]).unwrap();
        log.append(2, 0, &[2; 100]).unwrap();
        log.sync().unwrap();
        let whole = std::fs::metadata(&path).unwrap().len();
        // The crash came while writing frame 3: only part of its record reached the disk.
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        let mut partial = Vec::new();
        partial.extend_from_slice(&100u32.to_le_bytes());
        partial.extend_from_slice(&3u64.to_le_bytes());
        partial.extend_from_slice(&[3; 30]);
        file.write_all(&partial).unwrap();
        drop(file);
        let mut log = TrackLog::open(&path).unwrap();
        assert_eq!(log.last_seq(), Some(2));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), whole);
        log.append(3, 0, &[3; 100]).unwrap();
        log.sync().unwrap();
        assert_eq!(TrackLog::read_all(&path).unwrap().len(), 3);
    }

    #[test]
    fn damage_in_the_middle_is_an_error_not_a_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_in(&dir);
        let mut log = TrackLog::open(&path).unwrap();
        for seq in 1..=3 {
            log.append(seq, 0, &[seq as u8; 100]).unwrap();
        }
        log.sync().unwrap();
        drop(log);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[HEAD + 50] ^= 0xff; // inside frame 1
        std::fs::write(&path, &bytes).unwrap();
        let err = TrackLog::open(&path).unwrap_err();
        assert!(matches!(err, LogError::Damaged { offset: 0, .. }), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "nothing cut");
    }
}
