//! The one public error type of the metadata database and the audit log.

use std::path::PathBuf;

use uuid::Uuid;

use super::Backend;

/// What went wrong in the metadata database. Messages say what to check; none of them repeat
/// a database URL's password.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
    /// The data directory that holds the SQLite file could not be created.
    #[error(
        "cannot create the data directory {}: check that its parent exists and is writable",
        path.display()
    )]
    DataDir {
        /// The directory idv tried to create.
        path: PathBuf,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },

    /// The SQLite file could not be opened or created.
    #[error(
        "cannot open the SQLite database {}: check that the file is writable, is an idv \
         database and is not on a network share without locking",
        path.display()
    )]
    OpenSqlite {
        /// The database file.
        path: PathBuf,
        /// The driver's reason.
        #[source]
        source: sqlx::Error,
    },

    /// No connection to PostgreSQL could be made.
    #[error(
        "cannot reach PostgreSQL at {target}: is DATABASE_URL right, is the server running \
         and does it accept this user?"
    )]
    ConnectPostgres {
        /// `user@host:port/database` (never the password).
        target: String,
        /// The driver's reason.
        #[source]
        source: sqlx::Error,
    },

    /// The database URL names a database idv does not support or cannot be parsed.
    #[error(
        "the database URL is not usable ({problem}): use postgres://USER@HOST:PORT/DATABASE, \
         postgresql://… or sqlite://PATH"
    )]
    UnsupportedUrl {
        /// What is wrong with it (without the URL's password).
        problem: String,
    },

    /// The schema could not be brought up to date.
    #[error(
        "cannot bring the {backend} metadata schema up to date: check that the database user \
         may create tables (and, on PostgreSQL, that the schema exists) and that no newer idv \
         version has migrated this database"
    )]
    Migrate {
        /// Which backend.
        backend: Backend,
        /// The migrator's reason.
        #[source]
        source: sqlx::migrate::MigrateError,
    },

    /// A query failed for a reason not covered by a more specific variant.
    #[error(
        "the {backend} metadata database failed while {operation}: check that it is reachable, \
         not read-only and not out of space"
    )]
    Query {
        /// Which backend.
        backend: Backend,
        /// What idv was doing, e.g. "recording an archive".
        operation: &'static str,
        /// The driver's reason.
        #[source]
        source: sqlx::Error,
    },

    /// No archive record has this id.
    #[error("archive {archive_id} is not in the metadata database: check the archive id")]
    ArchiveNotFound {
        /// The id looked for.
        archive_id: Uuid,
    },

    /// The archive was shredded; its record is evidence and no longer changes.
    #[error(
        "archive {archive_id} has been shredded: its record is kept as evidence of the \
         destruction and can no longer be changed or removed"
    )]
    ArchiveShredded {
        /// The shredded archive.
        archive_id: Uuid,
    },

    /// The archive id, or its key id, is already recorded.
    #[error(
        "archive {archive_id} or its key {key_id} is already recorded: every archive needs a \
         fresh id and a fresh key"
    )]
    ArchiveExists {
        /// The archive being recorded.
        archive_id: Uuid,
        /// The key it names.
        key_id: Uuid,
    },

    /// The archive names a retention key that is not stored for it.
    #[error(
        "archive {archive_id} names retention key {key_id}, which is not stored for this \
         archive: store the retention key before recording the archive"
    )]
    RetentionKeyMissing {
        /// The archive being recorded.
        archive_id: Uuid,
        /// The key it names.
        key_id: Uuid,
    },

    /// The key id, or a key for this archive, is already stored.
    #[error(
        "retention key {key_id} or another key for archive {archive_id} is already stored: \
         every archive gets exactly one fresh key"
    )]
    RetentionKeyExists {
        /// The key being stored.
        key_id: Uuid,
        /// The archive it belongs to.
        archive_id: Uuid,
    },

    /// The retention key still belongs to a recorded archive.
    #[error(
        "retention key {key_id} still belongs to a recorded archive: delete the archive record \
         first (to shred an archive, destroy its key instead of deleting it)"
    )]
    RetentionKeyInUse {
        /// The key that was to be deleted.
        key_id: Uuid,
    },

    /// The archive cannot be marked shredded while its key still exists.
    #[error(
        "archive {archive_id} cannot be marked shredded while its retention key {key_id} still \
         exists: destroy the key first"
    )]
    RetentionKeyNotDestroyed {
        /// The archive.
        archive_id: Uuid,
        /// Its key, still intact.
        key_id: Uuid,
    },

    /// A retention key is only destroyed with a stated reason.
    #[error(
        "a retention key is destroyed only with a reason: say why (e.g. which retention rule expired)"
    )]
    MissingDestroyReason,

    /// A length is larger than the database can store.
    #[error("{what} is {value} bytes, more than the metadata database can record (at most {max})", max = i64::MAX)]
    TooLarge {
        /// Which length.
        what: &'static str,
        /// Its value.
        value: u64,
    },

    /// A number is larger than the database can store.
    #[error("{what} is {value}, more than the metadata database can record (at most {max})", max = i64::MAX)]
    OutOfRange {
        /// Which number.
        what: &'static str,
        /// Its value.
        value: u64,
    },

    /// No session has this id.
    #[error("session {session_id} is not in the metadata database: check the session id")]
    SessionNotFound {
        /// The id looked for.
        session_id: Uuid,
    },

    /// The session id is already taken.
    #[error("session {session_id} already exists: every session needs a fresh id")]
    SessionExists {
        /// The id that was to be created.
        session_id: Uuid,
    },

    /// A state change the session state machine does not have was asked for.
    #[error(
        "a session cannot go from {from} to {to}: sessions only move created → joined → \
         consented → live, and from any of those to ended"
    )]
    IllegalSessionTransition {
        /// The state moved from.
        from: super::SessionState,
        /// The state asked for.
        to: super::SessionState,
    },

    /// An open connection code already has this hash.
    #[error(
        "an open connection code with the same hash already exists (same group, same code): \
         draw another code"
    )]
    ConnectionCodeInUse,

    /// A connection code hash of an unusable length.
    #[error(
        "a connection code hash of {len} bytes cannot be stored: pass the keyed hash itself \
         (16 to 64 bytes, e.g. a 32-byte HMAC-SHA256), never the code"
    )]
    InvalidCodeHash {
        /// Its length.
        len: usize,
    },

    /// A user of that name exists already.
    #[error("a user called {name:?} exists already")]
    UserExists {
        /// The name.
        name: String,
    },

    /// The segment index is already recorded for this track.
    #[error(
        "segment {index} of the {track} track of session {session_id} is already recorded: \
         segments are recorded once"
    )]
    SegmentExists {
        /// The session.
        session_id: Uuid,
        /// The track.
        track: super::MediaTrack,
        /// The segment index.
        index: u64,
    },

    /// The segment does not start after what is already durable for its track.
    #[error(
        "segment {index} of the {track} track of session {session_id} is out of order: it \
         must start after seq {last_seq} and after the last recorded segment index"
    )]
    SegmentOutOfOrder {
        /// The session.
        session_id: Uuid,
        /// The track.
        track: super::MediaTrack,
        /// The segment index.
        index: u64,
        /// The highest seq already durable on the track.
        last_seq: u64,
    },

    /// A segment's seq or timestamp range runs backwards.
    #[error("segment {index} has its last {what} before its first: it cannot be recorded")]
    SegmentRangeReversed {
        /// The segment index.
        index: u64,
        /// "seq" or "timestamp".
        what: &'static str,
    },

    /// The session already has a CTI recording with this call id.
    #[error(
        "session {session_id} already has the CTI recording of call {call_id:?}: a call is \
         recorded once per session"
    )]
    CtiCallExists {
        /// The call id.
        call_id: String,
        /// The session.
        session_id: Uuid,
    },

    /// The CTI recording id is already taken.
    #[error("CTI recording {recording_id} already exists: every recording needs a fresh id")]
    CtiRecordingExists {
        /// The recording id.
        recording_id: Uuid,
    },

    /// Another upload of the call is open for the same session (or correlation key).
    #[error("call {call_id} is being uploaded in parts already")]
    CtiUploadOpen {
        /// The call id.
        call_id: String,
    },

    /// The upload is unknown or completed already.
    #[error("CTI upload {upload_id} is not open")]
    CtiUploadNotOpen {
        /// The upload id.
        upload_id: Uuid,
    },

    /// A stored text field is empty where it must say something.
    #[error("{what} must not be empty")]
    EmptyField {
        /// Which field.
        what: &'static str,
    },

    /// An audit event is missing something or holds text the log cannot store.
    #[error("audit event field `{field}` {problem}")]
    InvalidAuditEvent {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        problem: &'static str,
    },

    /// The audit log's head row is gone, so nothing can be chained to it.
    #[error(
        "the audit head row is missing, so no audit entry can be appended: the audit log was \
         altered outside idv; run `idv audit verify` and restore the database from a backup"
    )]
    AuditHeadMissing,

    /// An entry already holds the seq the head says comes next.
    #[error(
        "audit entry {seq} already exists although the audit head ends before it: the audit log \
         was altered outside idv; run `idv audit verify`"
    )]
    AuditSeqTaken {
        /// The seq that was to be appended.
        seq: i64,
    },

    /// A stored value cannot be what idv wrote.
    #[error(
        "the stored {what} is not valid ({problem}): the metadata database was altered outside \
         idv or is damaged; restore it from a backup"
    )]
    Corrupt {
        /// Which value.
        what: &'static str,
        /// What is wrong with it.
        problem: String,
    },
}
