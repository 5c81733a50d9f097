//! The archive header: its byte layout, parsing, and the HMAC that authenticates it.
//! Layout (all integers little-endian), specified in `docs/FORMAT.md`:
//!
//! ```text
//! magic(8) version(2) header_len(2) chunk_size(4) archive_id(16) key_id(16)
//! nonce_prefix(7) kek_id_len(1) kek_id(n) wrapped_key_len(2) wrapped_key(m) mac(32)
//! ```

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::io::Read;
use uuid::Uuid;

use super::error::ArchiveError;
use super::keys::ArchiveKeys;
use super::stream::NONCE_PREFIX_LEN;

/// First eight bytes of every archive: `\x89IDVR\r\n\x1a` (PNG-style, so text-mode transfers
/// and truncated downloads are caught at once).
pub const MAGIC: [u8; 8] = *b"\x89IDVR\r\n\x1a";
/// The one format version this code writes and reads.
pub const FORMAT_VERSION: u16 = 1;
/// Plaintext bytes per chunk written by this implementation.
pub const DEFAULT_CHUNK_SIZE: u32 = 64 * 1024;
/// Smallest and largest chunk sizes a reader accepts (powers of two).
pub const CHUNK_SIZE_RANGE: std::ops::RangeInclusive<u32> = 1024..=(16 * 1024 * 1024);
/// Longest key-encryption-key id.
pub const MAX_KEK_ID_LEN: usize = 64;
/// Longest wrapped file key (room for KMS ciphertext blobs).
pub const MAX_WRAPPED_KEY_LEN: usize = 1024;
/// Length of the header MAC.
pub const MAC_LEN: usize = 32;

const FIXED_LEN: usize = 8 + 2 + 2 + 4 + 16 + 16 + NONCE_PREFIX_LEN + 1;
/// Longest header a reader will accept.
pub const MAX_HEADER_LEN: usize = FIXED_LEN + MAX_KEK_ID_LEN + 2 + MAX_WRAPPED_KEY_LEN + MAC_LEN;

/// The fields of an archive header.
#[derive(Clone, PartialEq, Eq)]
pub struct ArchiveHeader {
    /// Plaintext bytes per chunk.
    pub chunk_size: u32,
    /// Identifies the archive; also the HKDF salt of its key schedule.
    pub archive_id: Uuid,
    /// Identifies the retention key record in the metadata database.
    pub key_id: Uuid,
    /// Random prefix of every chunk nonce.
    pub nonce_prefix: [u8; NONCE_PREFIX_LEN],
    /// Which key-encryption key wrapped the file key.
    pub kek_id: String,
    /// The file key, wrapped by the keyring (opaque to the format).
    pub wrapped_key: Vec<u8>,
}

impl std::fmt::Debug for ArchiveHeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArchiveHeader")
            .field("chunk_size", &self.chunk_size)
            .field("archive_id", &self.archive_id)
            .field("key_id", &self.key_id)
            .field("kek_id", &self.kek_id)
            .field("wrapped_key_len", &self.wrapped_key.len())
            .finish_non_exhaustive()
    }
}

impl ArchiveHeader {
    /// A header for a new archive with a fresh nonce prefix and the default chunk size.
    ///
    /// # Panics
    /// If the OS has no randomness to give.
    #[must_use]
    pub fn new(archive_id: Uuid, key_id: Uuid, kek_id: String, wrapped_key: Vec<u8>) -> Self {
        let mut nonce_prefix = [0u8; NONCE_PREFIX_LEN];
        getrandom::fill(&mut nonce_prefix).expect("the OS random number generator failed");
        Self {
            chunk_size: DEFAULT_CHUNK_SIZE,
            archive_id,
            key_id,
            nonce_prefix,
            kek_id,
            wrapped_key,
        }
    }

    /// The same header with another wrapping of the same file key (KEK rotation).
    #[must_use]
    pub fn rewrapped(&self, kek_id: String, wrapped_key: Vec<u8>) -> Self {
        Self {
            kek_id,
            wrapped_key,
            ..self.clone()
        }
    }

    /// Bytes the header occupies on disk.
    #[must_use]
    pub fn encoded_len(&self) -> usize {
        FIXED_LEN + self.kek_id.len() + 2 + self.wrapped_key.len() + MAC_LEN
    }

    /// The associated data a keyring binds the wrapped file key to: a wrapped key copied into
    /// another archive's header does not unwrap there.
    #[must_use]
    pub fn wrap_context(&self) -> Vec<u8> {
        wrap_context(self.archive_id, self.key_id, &self.kek_id)
    }

    /// Serialises the header and appends its MAC under `keys`.
    ///
    /// # Errors
    /// [`ArchiveError::MalformedHeader`] when a field is out of the format's range.
    pub fn encode(&self, keys: &ArchiveKeys) -> Result<Vec<u8>, ArchiveError> {
        self.validate()?;
        let mut out = Vec::with_capacity(self.encoded_len());
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        let len = u16::try_from(self.encoded_len()).expect("validated above");
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&self.chunk_size.to_le_bytes());
        out.extend_from_slice(self.archive_id.as_bytes());
        out.extend_from_slice(self.key_id.as_bytes());
        out.extend_from_slice(&self.nonce_prefix);
        out.push(u8::try_from(self.kek_id.len()).expect("validated above"));
        out.extend_from_slice(self.kek_id.as_bytes());
        let wrapped_len = u16::try_from(self.wrapped_key.len()).expect("validated above");
        out.extend_from_slice(&wrapped_len.to_le_bytes());
        out.extend_from_slice(&self.wrapped_key);
        let mac = header_mac(keys, &out);
        out.extend_from_slice(&mac);
        debug_assert_eq!(out.len(), self.encoded_len());
        Ok(out)
    }

    fn validate(&self) -> Result<(), ArchiveError> {
        if !CHUNK_SIZE_RANGE.contains(&self.chunk_size) || !self.chunk_size.is_power_of_two() {
            return Err(ArchiveError::MalformedHeader("chunk size out of range"));
        }
        if self.kek_id.is_empty() || self.kek_id.len() > MAX_KEK_ID_LEN {
            return Err(ArchiveError::MalformedHeader(
                "key-encryption key id length",
            ));
        }
        if self.wrapped_key.is_empty() || self.wrapped_key.len() > MAX_WRAPPED_KEY_LEN {
            return Err(ArchiveError::MalformedHeader("wrapped key length"));
        }
        Ok(())
    }
}

/// See [`ArchiveHeader::wrap_context`].
#[must_use]
pub fn wrap_context(archive_id: Uuid, key_id: Uuid, kek_id: &str) -> Vec<u8> {
    let mut aad = b"idv/archive/v1/file-key".to_vec();
    aad.extend_from_slice(archive_id.as_bytes());
    aad.extend_from_slice(key_id.as_bytes());
    aad.extend_from_slice(kek_id.as_bytes());
    aad
}

/// A header as read from an archive: its fields and the exact bytes they came from, kept so
/// the MAC can be checked once the keys are known.
#[derive(Clone, Debug)]
pub struct SealedHeader {
    /// The parsed fields.
    pub header: ArchiveHeader,
    raw: Vec<u8>,
}

impl SealedHeader {
    /// Parses a header from the start of `bytes` (which may continue past it).
    ///
    /// # Errors
    /// [`ArchiveError::NotAnArchive`], [`ArchiveError::UnknownVersion`],
    /// [`ArchiveError::MalformedHeader`] or [`ArchiveError::Truncated`].
    pub fn parse(bytes: &[u8]) -> Result<Self, ArchiveError> {
        let truncated = || ArchiveError::Truncated("the file ends inside the header".into());
        if bytes.len() < MAGIC.len() {
            return Err(if !bytes.is_empty() && MAGIC.starts_with(bytes) {
                truncated()
            } else {
                ArchiveError::NotAnArchive
            });
        }
        if bytes[..8] != MAGIC {
            return Err(ArchiveError::NotAnArchive);
        }
        let mut r = Cursor { bytes, pos: 8 };
        let version = r.u16().ok_or_else(truncated)?;
        if version != FORMAT_VERSION {
            return Err(ArchiveError::UnknownVersion(version));
        }
        let header_len = usize::from(r.u16().ok_or_else(truncated)?);
        if !(FIXED_LEN + 1 + 2 + 1 + MAC_LEN..=MAX_HEADER_LEN).contains(&header_len) {
            return Err(ArchiveError::MalformedHeader("header length out of range"));
        }
        if bytes.len() < header_len {
            return Err(truncated());
        }
        let mut r = Cursor {
            bytes: &bytes[..header_len],
            pos: r.pos,
        };
        let short = || ArchiveError::MalformedHeader("fields overrun the header length");
        let chunk_size = r.u32().ok_or_else(short)?;
        let archive_id = Uuid::from_bytes(r.array().ok_or_else(short)?);
        let key_id = Uuid::from_bytes(r.array().ok_or_else(short)?);
        let nonce_prefix = r.array().ok_or_else(short)?;
        let kek_len = usize::from(r.u8().ok_or_else(short)?);
        let kek_id = std::str::from_utf8(r.take(kek_len).ok_or_else(short)?)
            .map_err(|_| ArchiveError::MalformedHeader("key-encryption key id is not UTF-8"))?
            .to_owned();
        let wrapped_len = usize::from(r.u16().ok_or_else(short)?);
        let wrapped_key = r.take(wrapped_len).ok_or_else(short)?.to_vec();
        if r.pos + MAC_LEN != header_len {
            return Err(ArchiveError::MalformedHeader(
                "header length does not match its fields",
            ));
        }
        let header = ArchiveHeader {
            chunk_size,
            archive_id,
            key_id,
            nonce_prefix,
            kek_id,
            wrapped_key,
        };
        header.validate()?;
        Ok(Self {
            header,
            raw: bytes[..header_len].to_vec(),
        })
    }

    /// Reads and parses the header from the start of a stream.
    ///
    /// # Errors
    /// As [`Self::parse`], plus [`ArchiveError::Io`].
    pub fn read_from<R: Read>(reader: &mut R) -> Result<Self, ArchiveError> {
        let mut head = vec![0u8; 12];
        let got = read_up_to(reader, &mut head)?;
        head.truncate(got);
        if got < 12 {
            return Self::parse(&head);
        }
        // Check magic and version before trusting the length field.
        let probe = Self::parse(&head);
        if let Err(e @ (ArchiveError::NotAnArchive | ArchiveError::UnknownVersion(_))) = probe {
            return Err(e);
        }
        let header_len = usize::from(u16::from_le_bytes([head[10], head[11]]));
        if !(12..=MAX_HEADER_LEN).contains(&header_len) {
            return Err(ArchiveError::MalformedHeader("header length out of range"));
        }
        head.resize(header_len, 0);
        let got = read_up_to(reader, &mut head[12..])?;
        head.truncate(12 + got);
        Self::parse(&head)
    }

    /// Bytes the header occupies at the start of the archive.
    #[must_use]
    pub fn len(&self) -> usize {
        self.raw.len()
    }

    /// Always false: a header is never empty (clippy's `len` convention).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// Checks the header MAC under the archive's keys (constant time).
    ///
    /// # Errors
    /// [`ArchiveError::HeaderAuthFailed`] when a header byte was changed or the keys belong
    /// to another archive.
    pub fn verify(&self, keys: &ArchiveKeys) -> Result<(), ArchiveError> {
        let (body, mac) = self.raw.split_at(self.raw.len() - MAC_LEN);
        let mut check = <Hmac<Sha256> as KeyInit>::new_from_slice(keys.header_mac.as_slice())
            .expect("HMAC takes any key length");
        check.update(body);
        check
            .verify_slice(mac)
            .map_err(|_| ArchiveError::HeaderAuthFailed)
    }
}

fn header_mac(keys: &ArchiveKeys, body: &[u8]) -> [u8; MAC_LEN] {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(keys.header_mac.as_slice())
        .expect("HMAC takes any key length");
    mac.update(body);
    mac.finalize().into_bytes().into()
}

fn read_up_to<R: Read>(reader: &mut R, buf: &mut [u8]) -> Result<usize, ArchiveError> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ArchiveError::Io(e)),
        }
    }
    Ok(filled)
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let out = self.bytes.get(self.pos..end)?;
        self.pos = end;
        Some(out)
    }
    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)
            .map(|b| b.try_into().expect("take returned N bytes"))
    }
    fn u8(&mut self) -> Option<u8> {
        self.array::<1>().map(|[b]| b)
    }
    fn u16(&mut self) -> Option<u16> {
        self.array().map(u16::from_le_bytes)
    }
    fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_le_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::keys::{FileKey, RetentionKey};

    fn sample() -> (ArchiveHeader, ArchiveKeys) {
        let id = Uuid::from_u128(1);
        let keys = ArchiveKeys::derive(
            id,
            &FileKey::from_bytes([1; 32]),
            &RetentionKey::from_bytes([2; 32]),
        );
        let header = ArchiveHeader::new(id, Uuid::from_u128(2), "kek-0001".into(), vec![5; 60]);
        (header, keys)
    }

    #[test]
    fn header_round_trips_through_bytes_and_streams() {
        let (header, keys) = sample();
        let bytes = header.encode(&keys).unwrap();
        assert_eq!(bytes.len(), header.encoded_len());
        let parsed = SealedHeader::parse(&bytes).unwrap();
        assert_eq!(parsed.header, header);
        parsed.verify(&keys).unwrap();
        let mut with_tail = bytes.clone();
        with_tail.extend_from_slice(b"payload follows");
        let streamed = SealedHeader::read_from(&mut with_tail.as_slice()).unwrap();
        assert_eq!(streamed.header, header);
        assert_eq!(streamed.len(), bytes.len());
    }

    #[test]
    fn every_header_byte_is_authenticated_or_rejected() {
        let (header, keys) = sample();
        let bytes = header.encode(&keys).unwrap();
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x01;
            let ok = SealedHeader::parse(&bad).and_then(|h| h.verify(&keys));
            assert!(ok.is_err(), "flipping header byte {i} went unnoticed");
        }
    }

    #[test]
    fn unknown_version_and_foreign_files_are_named() {
        let (header, keys) = sample();
        let mut bytes = header.encode(&keys).unwrap();
        bytes[8] = 2;
        assert!(matches!(
            SealedHeader::parse(&bytes),
            Err(ArchiveError::UnknownVersion(2))
        ));
        assert!(matches!(
            SealedHeader::parse(b"RIFF....WAVE"),
            Err(ArchiveError::NotAnArchive)
        ));
        assert!(matches!(
            SealedHeader::parse(&MAGIC[..5]),
            Err(ArchiveError::Truncated(_))
        ));
    }
}
