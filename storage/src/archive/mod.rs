//! The sealed archive format v1 (`*.idvr`), specified in `docs/FORMAT.md`: an authenticated
//! header, a payload sealed in 64 KiB AES-256-GCM chunks (age-style STREAM), a sealed JSON
//! manifest and a trailer. Writers stream; the reader seeks. This module knows nothing of
//! keyrings or databases: callers hand it the [`ArchiveKeys`].

mod error;
mod header;
mod keys;
mod layout;
mod reader;
mod stream;
mod writer;

pub use error::ArchiveError;
pub use header::{
    ArchiveHeader, CHUNK_SIZE_RANGE, DEFAULT_CHUNK_SIZE, FORMAT_VERSION, MAGIC, MAX_HEADER_LEN,
    SealedHeader, wrap_context,
};
pub use keys::{ArchiveKeys, FileKey, KEY_LEN, RetentionKey};
pub use layout::{ArchiveLayout, TRAILER_LEN, TRAILER_MAGIC};
pub use reader::{SealedReader, VerifyReport};
pub use stream::{NONCE_PREFIX_LEN, TAG_LEN};
pub use writer::{AsyncSealedWriter, Sealed, SealedWriter};
