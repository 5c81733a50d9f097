//! Reading the inputs: video containers and frame streams ([`video`], [`frames`]; JPEG stills
//! checked in `jpeg`), CTI recordings ([`audio`]; Ogg Opus in `opus`), the agent's microphone
//! reference track ([`mic`]), and the SHA-256 every input is identified by in the manifest.

pub mod audio;
pub mod bytes;
pub mod frames;
pub mod g711;
mod jpeg;
pub mod mic;
mod opus;
pub mod sealed;
mod streamed_wav;
pub mod tiles;
pub mod video;

use std::io::Read;

use sha2::{Digest, Sha256};

use crate::error::{MuxError, Result};
use bytes::InputBytes;
use video::VideoSource;

/// SHA-256 (hex) and size of an input's bytes, read in 1 MiB blocks.
///
/// # Errors
/// [`MuxError::Input`] when it cannot be read.
pub fn fingerprint(bytes: &InputBytes) -> Result<(String, u64)> {
    let mut file = bytes.open()?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| MuxError::input(&bytes.name(), e.to_string()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((hex::encode(hasher.finalize()), total))
}

/// SHA-256 (hex) and size of a video input: a file as [`fingerprint`] reads it; a frame
/// source as the concatenation of every frame's bytes in decode order (no timestamps, flags or
/// framing added), so the same frames always give the same digest.
///
/// # Errors
/// [`MuxError::Input`] when the file or the frames cannot be read.
pub fn fingerprint_video(source: &VideoSource) -> Result<(String, u64)> {
    match source {
        VideoSource::File(path) => fingerprint(&InputBytes::File(path.clone())),
        VideoSource::Frames(frames) => {
            let mut hasher = Sha256::new();
            let mut total = 0u64;
            for frame in frames.frames()? {
                let frame = frame?;
                hasher.update(&frame.data);
                total += frame.data.len() as u64;
            }
            Ok((hex::encode(hasher.finalize()), total))
        }
    }
}
