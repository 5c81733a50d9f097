//! The one public error of the blob store, and the private mapping of `object_store`'s errors
//! into it. Backend errors stay opaque ([`BackendError`]) so callers never depend on which
//! library talks to the bucket.

use std::fmt;

/// A `Result` whose error is [`BlobError`].
pub type Result<T, E = BlobError> = std::result::Result<T, E>;

/// Everything that can go wrong when storing or reading blobs.
///
/// Messages name the blob and say what to do; the backend's own detail is kept as the
/// [`source`](std::error::Error::source).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BlobError {
    /// Nothing is stored under the key.
    #[error(
        "no blob is stored under `{key}`: check the key, and whether the blob was deleted \
         (retention) or its upload never finished"
    )]
    NotFound {
        /// The key that was asked for.
        key: String,
    },

    /// The key is not a plain relative path; rejected before reaching the backend.
    #[error(
        "blob key {key:?} is not allowed: {reason}; use a relative path of plain segments such \
         as `recordings/2026/11/<id>.idvr`"
    )]
    InvalidKey {
        /// The key as given (printed with control characters escaped).
        key: String,
        /// Which rule the key breaks.
        reason: &'static str,
    },

    /// The blob store URL cannot be used.
    #[error("blob store URL `{url}` cannot be used: {reason}")]
    InvalidUrl {
        /// The URL as given, with any password removed.
        url: String,
        /// What is wrong and how to fix it.
        reason: String,
    },

    /// The blob store settings (S3 options, upload limits) cannot be used.
    #[error("blob store settings cannot be used: {reason}")]
    InvalidSettings {
        /// What is wrong and how to fix it.
        reason: String,
    },

    /// The local blob directory could not be created or opened.
    #[error(
        "cannot use `{path}` as the local blob directory: {source}; check that it exists or can \
         be created and that this user may write to it, or choose another data directory"
    )]
    LocalRoot {
        /// The directory.
        path: std::path::PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },

    /// A byte range was asked for whose start lies after its end.
    #[error("byte range {start}..{end} of blob `{key}` starts after it ends; ask for start <= end")]
    InvalidRange {
        /// The blob.
        key: String,
        /// First byte asked for.
        start: u64,
        /// One past the last byte asked for.
        end: u64,
    },

    /// A byte range reaches past the end of the blob.
    #[error(
        "byte range {start}..{end} reaches past the end of blob `{key}`, which holds {size} bytes; \
         ask for a range within the blob"
    )]
    RangeOutOfBounds {
        /// The blob.
        key: String,
        /// First byte asked for.
        start: u64,
        /// One past the last byte asked for.
        end: u64,
        /// The blob's size in bytes.
        size: u64,
    },

    /// The blob changed (was overwritten) while a reader was reading it.
    #[error(
        "blob `{key}` was replaced while it was being read; open it again to read the new version"
    )]
    ChangedWhileReading {
        /// The blob.
        key: String,
    },

    /// The store refused the credentials or the operation.
    #[error(
        "the blob store {store} refused {action} `{key}`: check AWS_ACCESS_KEY_ID and \
         AWS_SECRET_ACCESS_KEY (or the instance role) and the bucket policy"
    )]
    AccessDenied {
        /// The store, as described in logs (never credentials).
        store: String,
        /// What was being done, e.g. "reading".
        action: &'static str,
        /// The blob.
        key: String,
        /// The backend's detail.
        source: BackendError,
    },

    /// The store failed for another reason (network, server error, disk).
    #[error(
        "the blob store {store} failed while {action} `{key}`: check that it is reachable and has \
         space, then retry"
    )]
    Backend {
        /// The store, as described in logs (never credentials).
        store: String,
        /// What was being done, e.g. "reading".
        action: &'static str,
        /// The blob (or prefix).
        key: String,
        /// The backend's detail.
        source: BackendError,
    },

    /// Reading the data to upload failed; the upload was aborted and nothing was stored.
    #[error(
        "reading the data to store under `{key}` failed, so the upload was aborted and nothing \
         was stored; fix the source and upload again"
    )]
    Io {
        /// The blob that was being written.
        key: String,
        /// What the source reported.
        source: std::io::Error,
    },

    /// The upload failed earlier and was aborted; the writer cannot be used any more.
    #[error(
        "the upload to `{key}` failed earlier ({reason}) and was aborted; nothing was stored, \
         upload it again with a new writer"
    )]
    UploadFailed {
        /// The blob that was being written.
        key: String,
        /// The first error, as text.
        reason: String,
    },

    /// The writer was already finished or aborted.
    #[error("the upload to `{key}` is already {state}; start a new one with `BlobStore::writer`")]
    UploadClosed {
        /// The blob that was being written.
        key: String,
        /// "finished" or "aborted".
        state: &'static str,
    },
}

impl BlobError {
    /// The [`std::io::ErrorKind`] that fits this error, for the `std::io`/`tokio::io` views.
    pub fn io_kind(&self) -> std::io::ErrorKind {
        use std::io::ErrorKind;
        match self {
            Self::NotFound { .. } => ErrorKind::NotFound,
            Self::InvalidKey { .. }
            | Self::InvalidUrl { .. }
            | Self::InvalidSettings { .. }
            | Self::InvalidRange { .. } => ErrorKind::InvalidInput,
            Self::RangeOutOfBounds { .. } => ErrorKind::UnexpectedEof,
            Self::AccessDenied { .. } => ErrorKind::PermissionDenied,
            Self::Io { source, .. } | Self::LocalRoot { source, .. } => source.kind(),
            _ => ErrorKind::Other,
        }
    }
}

impl From<BlobError> for std::io::Error {
    fn from(error: BlobError) -> Self {
        std::io::Error::new(error.io_kind(), error)
    }
}

/// The blob backend's own error, kept opaque; read it through [`std::error::Error::source`]
/// or its `Display`.
pub struct BackendError(Box<object_store::Error>);

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl std::error::Error for BackendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// Maps an `object_store` error met while doing `action` on `key` into a [`BlobError`].
pub(crate) fn from_backend(
    error: object_store::Error,
    store: &str,
    action: &'static str,
    key: &str,
) -> BlobError {
    match error {
        object_store::Error::NotFound { .. } => BlobError::NotFound {
            key: key.to_owned(),
        },
        object_store::Error::Precondition { .. } => BlobError::ChangedWhileReading {
            key: key.to_owned(),
        },
        error @ (object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. }) => BlobError::AccessDenied {
            store: store.to_owned(),
            action,
            key: key.to_owned(),
            source: BackendError(Box::new(error)),
        },
        error => BlobError::Backend {
            store: store.to_owned(),
            action,
            key: key.to_owned(),
            source: BackendError(Box::new(error)),
        },
    }
}
