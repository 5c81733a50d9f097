//! A recording's plaintext for the browser's player, decrypted on the fly for each HTTP range
//! (the sealed format is chunked, so a range costs the chunks it touches): nothing decrypted
//! is ever written to disk.

use std::io::{Read, Seek, SeekFrom};

use storage::SealedBlob;

/// The most one response carries; a player asks again for the rest.
pub const MAX_RANGE: u64 = 4 << 20;

/// A byte range of the plaintext.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    /// First byte.
    pub start: u64,
    /// Last byte (inclusive).
    pub end: u64,
}

/// A `Range` header that cannot be served (416).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unsatisfiable;

/// The range a `Range` header asks for in a plaintext of `len` bytes (`bytes=A-B`, `bytes=A-`,
/// `bytes=-N`; one range only), capped at [`MAX_RANGE`]; `None` when absent; `Err` when it
/// cannot be served (416).
///
/// # Errors
/// A malformed or unsatisfiable range.
pub fn parse_range(header: Option<&str>, len: u64) -> Result<Option<ByteRange>, Unsatisfiable> {
    let Some(header) = header else {
        return Ok(None);
    };
    let spec = header.trim().strip_prefix("bytes=").ok_or(Unsatisfiable)?;
    if spec.contains(',') || len == 0 {
        return Err(Unsatisfiable);
    }
    let (a, b) = spec.split_once('-').ok_or(Unsatisfiable)?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", n) => {
            let n: u64 = n.parse().map_err(|_| Unsatisfiable)?;
            if n == 0 {
                return Err(Unsatisfiable);
            }
            (len.saturating_sub(n), len - 1)
        }
        (a, "") => (a.parse().map_err(|_| Unsatisfiable)?, len - 1),
        (a, b) => (
            a.parse().map_err(|_| Unsatisfiable)?,
            b.parse::<u64>().map_err(|_| Unsatisfiable)?.min(len - 1),
        ),
    };
    if start > end || start >= len {
        return Err(Unsatisfiable);
    }
    Ok(Some(ByteRange {
        start,
        end: end.min(start + MAX_RANGE - 1),
    }))
}

/// Decrypts `range` of the recording (on a blocking thread: the reader is blocking).
///
/// # Errors
/// The archive cannot be read or a chunk fails its check.
pub async fn read(sealed: &SealedBlob, range: ByteRange) -> std::io::Result<Vec<u8>> {
    let sealed = sealed.clone();
    tokio::task::spawn_blocking(move || {
        let mut reader = sealed.open().map_err(std::io::Error::other)?;
        reader.seek(SeekFrom::Start(range.start))?;
        let mut out = vec![0u8; usize::try_from(range.end - range.start + 1).unwrap_or(0)];
        reader.read_exact(&mut out)?;
        Ok(out)
    })
    .await
    .map_err(std::io::Error::other)?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_read_as_players_send_them() {
        let r = |a, b| Ok(Some(ByteRange { start: a, end: b }));
        assert_eq!(parse_range(None, 100), Ok(None));
        assert_eq!(parse_range(Some("bytes=0-"), 100), r(0, 99));
        assert_eq!(parse_range(Some("bytes=10-19"), 100), r(10, 19));
        assert_eq!(parse_range(Some("bytes=90-200"), 100), r(90, 99));
        assert_eq!(parse_range(Some("bytes=-10"), 100), r(90, 99));
        assert_eq!(parse_range(Some("bytes=0-"), 10 << 20), r(0, MAX_RANGE - 1));
        for bad in [
            "bytes=100-",
            "bytes=5-4",
            "bytes=0-1,5-6",
            "items=0-1",
            "bytes=x-",
            "bytes=-0",
        ] {
            assert_eq!(parse_range(Some(bad), 100), Err(Unsatisfiable), "{bad}");
        }
    }
}
