//! What can be wrong with an archive, named precisely enough for a compliance officer to act
//! on: which chunk, and whether it was altered, moved, cut off or added to.

use std::io;

/// An archive could not be written, read or verified.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArchiveError {
    /// The file does not start with the archive magic.
    #[error("not an idv archive (the file does not start with the .idvr magic)")]
    NotAnArchive,
    /// The header names a format version this build does not know.
    #[error("archive format version {0} is not supported by this idv (it reads version 1)")]
    UnknownVersion(u16),
    /// A header field is out of range or inconsistent.
    #[error("malformed archive header: {0}")]
    MalformedHeader(&'static str),
    /// The header MAC does not match.
    #[error(
        "archive header failed authentication: a header byte was changed, or the key record \
         does not belong to this archive"
    )]
    HeaderAuthFailed,
    /// The file key could not be unwrapped.
    #[error(
        "wrong key: the file key does not unwrap with key-encryption key {kek_id} (another \
         keyring, or the header's key fields were changed)"
    )]
    WrongKey {
        /// The KEK the header names.
        kek_id: String,
    },
    /// The archive's retention key was destroyed: it is crypto-shredded for good.
    #[error("archive {archive_id} was crypto-shredded at {at}; it can never be read again")]
    Shredded {
        /// The archive.
        archive_id: uuid::Uuid,
        /// When its retention key was destroyed (RFC 3339).
        at: String,
    },
    /// The file ends early.
    #[error("archive is truncated: {0}")]
    Truncated(String),
    /// Bytes follow the end of a complete archive.
    #[error("archive has {0} unexpected byte(s) appended after its end")]
    TrailingData(u64),
    /// A chunk failed authentication and is not any other chunk of this archive.
    #[error("chunk {index} is corrupt: it was altered, or spliced in from another archive")]
    ChunkCorrupt {
        /// Zero-based position of the bad chunk.
        index: u64,
    },
    /// A chunk of this archive sits at the wrong position.
    #[error("chunk {index} is out of order: it is chunk {belongs_at} of this archive")]
    ChunkReordered {
        /// Where the chunk was found.
        index: u64,
        /// Where it belongs.
        belongs_at: u64,
    },
    /// The chunk at `index` is the archive's final chunk but more follow.
    #[error("archive was extended: chunk {index} is the final chunk but {extra} more follow it")]
    Extended {
        /// Position of the real final chunk.
        index: u64,
        /// Chunks added after it.
        extra: u64,
    },
    /// The manifest section failed authentication.
    #[error("manifest is corrupt or does not belong to this payload")]
    ManifestCorrupt,
    /// The payload outgrew what the nonce counter can address.
    #[error("archive too large: the chunk counter would overflow")]
    TooLarge,
    /// The writer was used after `finish` or after an error.
    #[error("archive writer already finished or failed")]
    WriterClosed,
    /// Reading or writing the underlying bytes failed.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
}

impl ArchiveError {
    /// Wraps this error for `std::io` traits; [`Self::from_io`] gets it back.
    #[must_use]
    pub fn into_io(self) -> io::Error {
        match self {
            Self::Io(e) => e,
            other => io::Error::new(io::ErrorKind::InvalidData, other),
        }
    }

    /// Recovers an [`ArchiveError`] that travelled through a `std::io` trait.
    #[must_use]
    pub fn from_io(err: io::Error) -> Self {
        if err.get_ref().is_some_and(|inner| inner.is::<Self>()) {
            *err.into_inner()
                .expect("checked above")
                .downcast::<Self>()
                .expect("checked above")
        } else {
            Self::Io(err)
        }
    }
}
