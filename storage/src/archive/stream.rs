//! The STREAM construction (after age's `primitives/stream.rs`): the payload is cut into
//! fixed-size chunks, each sealed with AES-256-GCM under the payload key with the nonce
//! `prefix(7) ‖ counter(4, big-endian) ‖ flag(1)`, flag `0x01` on the final chunk only. The
//! counter stops reordering, the flag stops truncation and extension, the per-archive key
//! stops splicing. This file is the one seam to the AEAD: a faster backend replaces it alone.

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::inout::InOutBuf;
use aes_gcm::aead::{AeadInOut, KeyInit, Nonce, Tag};

/// Bytes of nonce prefix stored in the header.
pub const NONCE_PREFIX_LEN: usize = 7;
/// Bytes the AEAD adds to every chunk.
pub const TAG_LEN: usize = 16;
/// Flag byte of a chunk that is not the last.
const FLAG_MORE: u8 = 0x00;
/// Flag byte of the final payload chunk.
const FLAG_LAST: u8 = 0x01;
/// Flag byte of the manifest section (sealed under its own key, counter `u32::MAX`).
const FLAG_MANIFEST: u8 = 0x02;

/// The AEAD failed to authenticate a sealed chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AuthFailed;

/// Seals and opens one archive's chunks.
pub(crate) struct ChunkCipher {
    aead: Aes256Gcm,
    nonce_prefix: [u8; NONCE_PREFIX_LEN],
}

impl ChunkCipher {
    pub(crate) fn new(key: &[u8; 32], nonce_prefix: [u8; NONCE_PREFIX_LEN]) -> Self {
        Self {
            aead: Aes256Gcm::new(key.into()),
            nonce_prefix,
        }
    }

    fn nonce(&self, counter: u32, flag: u8) -> Nonce<Aes256Gcm> {
        let mut nonce = Nonce::<Aes256Gcm>::default();
        nonce[..NONCE_PREFIX_LEN].copy_from_slice(&self.nonce_prefix);
        nonce[NONCE_PREFIX_LEN..11].copy_from_slice(&counter.to_be_bytes());
        nonce[11] = flag;
        nonce
    }

    /// Encrypts `chunk` in place and appends its tag.
    pub(crate) fn seal_chunk(&self, counter: u32, last: bool, chunk: &mut Vec<u8>) {
        let flag = if last { FLAG_LAST } else { FLAG_MORE };
        self.seal(counter, flag, b"", chunk);
    }

    /// Seals `plain` into `out` (exactly `plain.len() + TAG_LEN` bytes) without touching
    /// `plain`: the copy-free path for whole chunks taken straight from a caller's buffer.
    pub(crate) fn seal_chunk_into(&self, counter: u32, last: bool, plain: &[u8], out: &mut [u8]) {
        let flag = if last { FLAG_LAST } else { FLAG_MORE };
        let (body, tag_out) = out.split_at_mut(plain.len());
        let buf = InOutBuf::new(plain, body).expect("body is as long as the plaintext");
        let tag = self
            .aead
            .encrypt_inout_detached(&self.nonce(counter, flag), b"", buf)
            .expect("chunks are far below AES-GCM's length limit");
        tag_out.copy_from_slice(&tag);
    }

    /// Authenticates `sealed` and decrypts it into `out` (at least `sealed.len() - TAG_LEN`
    /// bytes), leaving `sealed` as it was; returns the plaintext length. On failure nothing
    /// is written to `out` (the tag is checked before any decryption).
    pub(crate) fn open_chunk_into(
        &self,
        counter: u32,
        last: bool,
        sealed: &[u8],
        out: &mut [u8],
    ) -> Result<usize, AuthFailed> {
        let flag = if last { FLAG_LAST } else { FLAG_MORE };
        let len = sealed.len().checked_sub(TAG_LEN).ok_or(AuthFailed)?;
        let (body, tag) = sealed.split_at(len);
        let tag = Tag::<Aes256Gcm>::try_from(tag).map_err(|_| AuthFailed)?;
        let buf = InOutBuf::new(body, &mut out[..len]).map_err(|_| AuthFailed)?;
        self.aead
            .decrypt_inout_detached(&self.nonce(counter, flag), b"", buf, &tag)
            .map_err(|_| AuthFailed)?;
        Ok(len)
    }

    /// Authenticates and decrypts `sealed` (ciphertext ‖ tag) in place; on success the
    /// plaintext is `sealed[..sealed.len() - TAG_LEN]`.
    pub(crate) fn open_chunk(
        &self,
        counter: u32,
        last: bool,
        sealed: &mut [u8],
    ) -> Result<usize, AuthFailed> {
        let flag = if last { FLAG_LAST } else { FLAG_MORE };
        self.open(counter, flag, b"", sealed)
    }

    /// Whether `sealed` authenticates as chunk `counter` (with or without the last flag),
    /// leaving it untouched: used to diagnose a chunk that failed (was it moved, or is it
    /// the final chunk of a truncated archive?). The tag is checked before anything is
    /// decrypted, so a failed try costs one GHASH pass and writes nothing to `scratch`.
    pub(crate) fn chunk_authenticates(
        &self,
        counter: u32,
        last: bool,
        sealed: &[u8],
        scratch: &mut Vec<u8>,
    ) -> bool {
        scratch.resize(sealed.len().saturating_sub(TAG_LEN), 0);
        self.open_chunk_into(counter, last, sealed, scratch).is_ok()
    }

    /// Seals the manifest; `aad` binds it to the payload it describes.
    pub(crate) fn seal_manifest(&self, aad: &[u8], manifest: &mut Vec<u8>) {
        self.seal(u32::MAX, FLAG_MANIFEST, aad, manifest);
    }

    /// Opens the manifest section in place, returning the plaintext length.
    pub(crate) fn open_manifest(&self, aad: &[u8], sealed: &mut [u8]) -> Result<usize, AuthFailed> {
        self.open(u32::MAX, FLAG_MANIFEST, aad, sealed)
    }

    fn seal(&self, counter: u32, flag: u8, aad: &[u8], buf: &mut Vec<u8>) {
        let tag = self
            .aead
            .encrypt_inout_detached(&self.nonce(counter, flag), aad, buf.as_mut_slice().into())
            .expect("chunks are far below AES-GCM's length limit");
        buf.extend_from_slice(&tag);
    }

    fn open(
        &self,
        counter: u32,
        flag: u8,
        aad: &[u8],
        sealed: &mut [u8],
    ) -> Result<usize, AuthFailed> {
        let len = sealed.len().checked_sub(TAG_LEN).ok_or(AuthFailed)?;
        let (body, tag) = sealed.split_at_mut(len);
        let tag = Tag::<Aes256Gcm>::try_from(&*tag).map_err(|_| AuthFailed)?;
        self.aead
            .decrypt_inout_detached(&self.nonce(counter, flag), aad, body.into(), &tag)
            .map_err(|_| AuthFailed)?;
        Ok(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cipher() -> ChunkCipher {
        ChunkCipher::new(&[9; 32], [1, 2, 3, 4, 5, 6, 7])
    }

    #[test]
    fn chunk_round_trips_and_binds_counter_and_flag() {
        let c = cipher();
        let mut buf = b"hello chunk".to_vec();
        c.seal_chunk(3, false, &mut buf);
        assert_eq!(buf.len(), 11 + TAG_LEN);
        let scratch = &mut Vec::new();
        assert!(
            !c.chunk_authenticates(4, false, &buf, scratch),
            "counter is bound"
        );
        assert!(
            !c.chunk_authenticates(3, true, &buf, scratch),
            "last flag is bound"
        );
        assert!(c.chunk_authenticates(3, false, &buf, scratch));
        let n = c.open_chunk(3, false, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"hello chunk");
    }

    #[test]
    fn copy_free_paths_match_the_in_place_ones() {
        let c = cipher();
        let plain = b"sixteen bytes...and more".to_vec();
        let mut in_place = plain.clone();
        c.seal_chunk(5, true, &mut in_place);
        let mut direct = vec![0u8; plain.len() + TAG_LEN];
        c.seal_chunk_into(5, true, &plain, &mut direct);
        assert_eq!(in_place, direct);
        let mut out = vec![0u8; plain.len()];
        assert!(c.open_chunk_into(5, false, &direct, &mut out).is_err());
        assert!(out.iter().all(|&b| b == 0), "nothing written on failure");
        assert_eq!(
            c.open_chunk_into(5, true, &direct, &mut out),
            Ok(plain.len())
        );
        assert_eq!(out, plain);
    }

    #[test]
    fn manifest_is_bound_to_its_aad_and_distinct_from_chunks() {
        let c = cipher();
        let mut m = b"{}".to_vec();
        c.seal_manifest(b"len=5", &mut m);
        assert!(c.open_manifest(b"len=6", &mut m.clone()).is_err());
        assert!(!c.chunk_authenticates(u32::MAX, true, &m, &mut Vec::new()));
        assert_eq!(c.open_manifest(b"len=5", &mut m).unwrap(), 2);
    }
}
