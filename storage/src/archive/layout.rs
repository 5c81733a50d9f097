//! Where things are in an archive file: from the header length, the chunk size and the
//! trailer, work out the chunk boundaries, the payload length and the manifest section —
//! without reading the chunks. Pure arithmetic, shared by every reader.

use super::error::ArchiveError;
use super::stream::TAG_LEN;

/// Last eight bytes of every finished archive.
pub const TRAILER_MAGIC: [u8; 8] = *b"IDVR-END";
/// Bytes of the trailer: sealed manifest length (u64 LE) and [`TRAILER_MAGIC`].
pub const TRAILER_LEN: u64 = 16;
/// Largest sealed manifest a reader accepts.
pub const MAX_MANIFEST_LEN: u64 = 16 * 1024 * 1024;

/// The associated data binding the manifest to the payload it describes.
#[must_use]
pub(crate) fn manifest_aad(payload_len: u64, chunks: u64) -> Vec<u8> {
    let mut aad = b"idv/archive/v1/manifest".to_vec();
    aad.extend_from_slice(&payload_len.to_le_bytes());
    aad.extend_from_slice(&chunks.to_le_bytes());
    aad
}

/// The positions of an archive's parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchiveLayout {
    /// Bytes of header at the start.
    pub header_len: u64,
    /// Plaintext bytes per chunk.
    pub chunk_size: u64,
    /// Number of payload chunks (at least one).
    pub chunks: u64,
    /// Plaintext bytes in the payload.
    pub payload_len: u64,
    /// Offset of the sealed manifest.
    pub manifest_offset: u64,
    /// Bytes of the sealed manifest.
    pub manifest_len: u64,
}

impl ArchiveLayout {
    /// Works the layout out from the file length and the trailer's manifest length.
    ///
    /// # Errors
    /// [`ArchiveError::Truncated`] when the parts cannot fit the file.
    pub fn from_trailer(
        header_len: u64,
        chunk_size: u64,
        file_len: u64,
        manifest_len: u64,
    ) -> Result<Self, ArchiveError> {
        let sealed_chunk = chunk_size + TAG_LEN as u64;
        if !(TAG_LEN as u64..=MAX_MANIFEST_LEN).contains(&manifest_len) {
            return Err(ArchiveError::Truncated(
                "the trailer's manifest length is impossible (cut short or altered)".into(),
            ));
        }
        let payload_sealed = file_len
            .checked_sub(header_len + manifest_len + TRAILER_LEN)
            .filter(|&len| len >= TAG_LEN as u64)
            .ok_or_else(|| {
                ArchiveError::Truncated("the file is too short to hold a payload chunk".into())
            })?;
        let chunks = payload_sealed.div_ceil(sealed_chunk);
        let last_sealed = payload_sealed - (chunks - 1) * sealed_chunk;
        if last_sealed < TAG_LEN as u64 {
            return Err(ArchiveError::Truncated(format!(
                "chunk {} is cut short",
                chunks - 1
            )));
        }
        if chunks > u64::from(u32::MAX) + 1 {
            return Err(ArchiveError::TooLarge);
        }
        Ok(Self {
            header_len,
            chunk_size,
            chunks,
            payload_len: payload_sealed - chunks * TAG_LEN as u64,
            manifest_offset: header_len + payload_sealed,
            manifest_len,
        })
    }

    /// Byte range of sealed chunk `index` in the file.
    #[must_use]
    pub fn chunk_range(&self, index: u64) -> std::ops::Range<u64> {
        let sealed_chunk = self.chunk_size + TAG_LEN as u64;
        let start = self.header_len + index * sealed_chunk;
        let end = (start + sealed_chunk).min(self.manifest_offset);
        start..end
    }

    /// Whether `index` is the final chunk.
    #[must_use]
    pub fn is_last(&self, index: u64) -> bool {
        index + 1 == self.chunks
    }

    /// Total bytes of the archive file.
    #[must_use]
    pub fn file_len(&self) -> u64 {
        self.manifest_offset + self.manifest_len + TRAILER_LEN
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_what_the_writer_produces() {
        // 1 KiB chunks, 2.5 chunks of payload: 3 chunks, last holds 512 bytes.
        let (h, cs, m) = (100, 1024, 40);
        let payload = 2560;
        let file = h + payload + 3 * 16 + m + TRAILER_LEN;
        let l = ArchiveLayout::from_trailer(h, cs, file, m).unwrap();
        assert_eq!((l.chunks, l.payload_len), (3, payload));
        assert_eq!(l.chunk_range(2), (h + 2 * 1040)..(h + 2 * 1040 + 512 + 16));
        assert_eq!(l.file_len(), file);
        // An empty payload still has one (empty) final chunk.
        let l = ArchiveLayout::from_trailer(h, cs, h + 16 + m + 16, m).unwrap();
        assert_eq!((l.chunks, l.payload_len), (1, 0));
    }

    #[test]
    fn impossible_lengths_are_truncation_not_panics() {
        assert!(ArchiveLayout::from_trailer(100, 1024, 50, 40).is_err());
        assert!(ArchiveLayout::from_trailer(100, 1024, 100 + 8 + 40 + 16, 40).is_err());
        assert!(ArchiveLayout::from_trailer(100, 1024, u64::MAX, u64::MAX).is_err());
        // A last chunk shorter than a tag.
        assert!(ArchiveLayout::from_trailer(100, 1024, 100 + 1040 + 5 + 40 + 16, 40).is_err());
    }
}
