//! The ground every other idv crate stands on: sealed archives (`*.idvr`), the keyring that
//! wraps their keys, the metadata database, the blob store and the tamper-evident audit log,
//! tied together by the [`Vault`]. Knows nothing about media or HTTP.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod archive;
pub mod audit;
pub mod blob;
mod config;
pub mod db;
pub mod journal;
pub mod keyring;
pub mod spool;
mod staged;
pub mod track_log;
mod vault;

use std::path::Path;

pub use config::{StorageConfig, redact_url};
pub use staged::StagedFile;
pub use vault::{Access, ArchiveLocation, RotationReport, SealedBlob, Vault};

/// A storage operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The archive is damaged, foreign, or shredded.
    #[error(transparent)]
    Archive(#[from] archive::ArchiveError),
    /// The keyring failed.
    #[error(transparent)]
    Keyring(#[from] keyring::KeyringError),
    /// The metadata database failed.
    #[error(transparent)]
    Db(#[from] db::DbError),
    /// The blob store failed.
    #[error(transparent)]
    Blob(#[from] blob::BlobError),
    /// The archive names a key this data directory never issued.
    #[error(
        "unknown key {key_id}: this archive was not sealed with this data directory \
         (check --data-dir / DATABASE_URL)"
    )]
    UnknownKey {
        /// The key id in the archive header.
        key_id: uuid::Uuid,
    },
    /// No archive with this id is recorded.
    #[error("no archive {archive_id} is recorded in this data directory")]
    UnknownArchive {
        /// The id asked for.
        archive_id: uuid::Uuid,
    },
    /// A recorded archive location cannot be understood.
    #[error("archive location {0:?} is not file:… or blob:…")]
    BadLocation(String),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// A background task failed.
    #[error("background task failed: {0}")]
    Task(String),
    /// What was being sealed could not be produced (the muxer failed, say); nothing was kept.
    #[error("{0}")]
    Source(String),
}

impl Error {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Self::Archive(archive::ArchiveError::from_io(e))
    }
}

/// The storage crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
