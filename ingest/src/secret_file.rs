//! Files only the server's user may read (private keys, the bootstrap token): created with
//! mode 0600 from the start, never widened afterwards.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::error::{IngestError, Result};

/// Writes `bytes` to a new file at `path` readable and writable by the owner only.
///
/// # Errors
/// The file exists already or cannot be written.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| IngestError::io(path, e))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| IngestError::io(path, e))
}
