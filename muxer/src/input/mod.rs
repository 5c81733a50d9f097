//! Reading the inputs: video containers ([`video`]), CTI recordings ([`audio`]; Ogg Opus in
//! `opus`), and the SHA-256 every input is identified by in the manifest.

pub mod audio;
pub mod g711;
mod opus;
pub mod video;

use std::fs::File;
use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::{MuxError, Result};

/// SHA-256 (hex) and size of a file, read in 1 MiB blocks.
///
/// # Errors
/// [`MuxError::Input`] when it cannot be read.
pub fn fingerprint(path: &Path) -> Result<(String, u64)> {
    let mut file = File::open(path).map_err(|e| MuxError::input(path, e.to_string()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| MuxError::input(path, e.to_string()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((hex::encode(hasher.finalize()), total))
}
