//! Sealing of frame payloads: AES-256-GCM under the 32-byte session media key.
//!
//! * **Key**: [`SessionKey`], one per session, drawn from the OS CSPRNG when the session is
//!   created and handed to the agent when it redeems its code (over TLS). Never reused by
//!   another session.
//! * **Nonce**: 96 random bits per sealing, carried in the frame header. Deterministic nonces
//!   from (track, seq) were rejected: an agent that restarts, or re-encodes after a
//!   reconnect, can seal *different* bytes (or the same bytes with other flags) under a seq
//!   it used before, and one such repeat under GCM leaks the XOR of two plaintexts and the
//!   authentication key. With random nonces a resend is always safe, however it is made.
//!   The birthday bound (2⁻³² collision chance after 2³² frames under one key) is far above
//!   a session's frame count (≈ 10⁶ for hours of 30 fps on four tracks).
//! * **Associated data**: `session id (16 bytes, RFC 4122 order) ‖ the 40 header bytes`
//!   — magic, version, message type, track, flags, reserved, seq, timestamp, nonce and
//!   length. A frame replayed under another seq, moved to another track or time, with a
//!   flag flipped, from another protocol version or from another session fails to open.
//!
//! Opening authenticates before anything is decrypted and allocates at most the plaintext.
//! A server that only stores frames does not open them: [`FrameVerifier`] checks the tag and
//! never decrypts, so it handles no plaintext at all (and skips half of AES-GCM's work).

use aes::Aes256;
use aes::cipher::BlockCipherEncrypt;
use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{AeadInOut, KeyInit, Nonce, Tag};
use ghash::GHash;
use ghash::universal_hash::UniversalHash;
use subtle::ConstantTimeEq;
use uuid::Uuid;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::error::{ProtoError, Result};
use crate::frame::{FrameHeader, HEADER_LEN, NONCE_LEN, TAG_LEN, decode_frame};

/// Bytes of a session media key.
pub const KEY_LEN: usize = 32;
/// Bytes of associated data: session id ‖ frame header.
const AAD_LEN: usize = 16 + HEADER_LEN;

/// The session media key: AES-256, one per session, wiped from memory on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SessionKey([u8; KEY_LEN]);

impl SessionKey {
    /// A fresh key from the operating system's CSPRNG.
    ///
    /// # Panics
    /// If the OS has no randomness to give, which leaves nothing safe to do.
    #[must_use]
    pub fn generate() -> Self {
        let mut bytes = [0u8; KEY_LEN];
        getrandom::fill(&mut bytes).expect("the OS random number generator failed");
        Self(bytes)
    }

    /// Takes ownership of key bytes (as received at code redemption, or read from storage).
    #[must_use]
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// Key bytes from a slice, `None` unless it is exactly [`KEY_LEN`] long.
    #[must_use]
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; KEY_LEN]>::try_from(bytes).ok().map(Self)
    }

    /// The raw key bytes, to hand to the agent or to store wrapped. Never log them.
    #[must_use]
    pub fn expose(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKey(<redacted>)")
    }
}

/// Seals and opens the frames of one session. Build it once per connection: the AES key
/// schedule and GHASH key are computed here, not per frame.
pub struct SessionCipher {
    aead: Aes256Gcm,
    session: Uuid,
}

impl std::fmt::Debug for SessionCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionCipher")
            .field("session", &self.session)
            .finish_non_exhaustive()
    }
}

impl SessionCipher {
    /// The cipher for `session`'s frames under `key`.
    #[must_use]
    pub fn new(key: &SessionKey, session: Uuid) -> Self {
        Self {
            aead: Aes256Gcm::new(key.expose().into()),
            session,
        }
    }

    /// The session this cipher binds frames to.
    #[must_use]
    pub fn session(&self) -> Uuid {
        self.session
    }

    /// Seals `plaintext` as one frame with a fresh random nonce.
    ///
    /// # Errors
    /// [`ProtoError::ZeroSequence`] for seq 0, [`ProtoError::PayloadTooLarge`] when the sealed
    /// payload would not fit the header's 32-bit length.
    pub fn seal(&self, header: &FrameHeader, plaintext: &[u8]) -> Result<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).expect("the OS random number generator failed");
        self.seal_with_nonce(header, nonce, plaintext)
    }

    /// Seals with a caller-chosen nonce: for test vectors only — a nonce must never repeat
    /// under one key.
    pub(crate) fn seal_with_nonce(
        &self,
        header: &FrameHeader,
        nonce: [u8; NONCE_LEN],
        plaintext: &[u8],
    ) -> Result<Vec<u8>> {
        if header.seq == 0 {
            return Err(ProtoError::ZeroSequence);
        }
        let max = u32::MAX as usize - TAG_LEN;
        if plaintext.len() > max {
            return Err(ProtoError::PayloadTooLarge {
                len: plaintext.len() as u64,
                max: max as u64,
            });
        }
        let sealed_len = (plaintext.len() + TAG_LEN) as u32;
        let header_bytes = header.encode(&nonce, sealed_len);
        let mut out = Vec::with_capacity(HEADER_LEN + sealed_len as usize);
        out.extend_from_slice(&header_bytes);
        out.extend_from_slice(plaintext);
        let aad = associated_data(self.session, &header_bytes);
        let tag = self
            .aead
            .encrypt_inout_detached(
                &Nonce::<Aes256Gcm>::from(nonce),
                &aad,
                (&mut out[HEADER_LEN..]).into(),
            )
            .expect("a payload under 4 GiB is far below AES-GCM's length limit");
        out.extend_from_slice(&tag);
        Ok(out)
    }

    /// Decodes and authenticates one frame, writing its plaintext into `out` (cleared
    /// first, so one buffer serves a whole connection). On any error `out` is left empty.
    ///
    /// # Errors
    /// Whatever [`decode_frame`] reports, or [`ProtoError::OpenFailed`].
    pub fn open_into(
        &self,
        bytes: &[u8],
        max_payload: usize,
        out: &mut Vec<u8>,
    ) -> Result<FrameHeader> {
        out.clear();
        let frame = decode_frame(bytes, max_payload)?;
        let (body, tag) = frame.sealed.split_at(frame.plaintext_len());
        let tag = Tag::<Aes256Gcm>::try_from(tag).map_err(|_| ProtoError::OpenFailed)?;
        out.extend_from_slice(body);
        let aad = associated_data(self.session, frame.header_bytes);
        let opened = self.aead.decrypt_inout_detached(
            &Nonce::<Aes256Gcm>::from(frame.nonce),
            &aad,
            out.as_mut_slice().into(),
            &tag,
        );
        if opened.is_err() {
            out.clear();
            return Err(ProtoError::OpenFailed);
        }
        Ok(frame.header)
    }

    /// Decodes and authenticates one frame, returning its header and plaintext.
    ///
    /// # Errors
    /// Whatever [`decode_frame`] reports, or [`ProtoError::OpenFailed`].
    pub fn open(&self, bytes: &[u8], max_payload: usize) -> Result<(FrameHeader, Vec<u8>)> {
        let mut out = Vec::new();
        let header = self.open_into(bytes, max_payload, &mut out)?;
        Ok((header, out))
    }
}

/// The associated data a frame is sealed with: session id ‖ header.
fn associated_data(session: Uuid, header_bytes: &[u8; HEADER_LEN]) -> [u8; AAD_LEN] {
    let mut aad = [0u8; AAD_LEN];
    aad[..16].copy_from_slice(session.as_bytes());
    aad[16..].copy_from_slice(header_bytes);
    aad
}

/// Checks that frames are authentic without opening them: for the ingest, which stores
/// frames still sealed and has no use for their plaintext.
///
/// A GCM tag is `GHASH_H(aad, ciphertext) ⊕ AES_K(J0)` (NIST SP 800-38D §7.2), with
/// `H = AES_K(0¹²⁸)` and `J0 = nonce ‖ 0³¹ ‖ 1` for a 96-bit nonce: it is a function of the
/// ciphertext, so it can be checked with one AES block per frame and no keystream. The
/// answer is the one [`SessionCipher::open`] gives for the same bytes (the tests hold the two
/// to it, on good and tampered frames); the comparison takes constant time.
pub struct FrameVerifier {
    aes: Aes256,
    /// GHASH keyed with `H`, cloned for each frame.
    ghash: GHash,
    session: Uuid,
}

impl std::fmt::Debug for FrameVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameVerifier")
            .field("session", &self.session)
            .finish_non_exhaustive()
    }
}

impl FrameVerifier {
    /// The verifier for `session`'s frames under `key`.
    #[must_use]
    pub fn new(key: &SessionKey, session: Uuid) -> Self {
        let aes = Aes256::new(key.expose().into());
        let mut h = ghash::Key::default();
        aes.encrypt_block(&mut h);
        let ghash = GHash::new(&h);
        h.as_mut_slice().zeroize();
        Self {
            aes,
            ghash,
            session,
        }
    }

    /// Decodes one frame and checks its tag; the header of an authentic frame.
    ///
    /// # Errors
    /// Whatever [`decode_frame`] reports, or [`ProtoError::OpenFailed`] when the tag does not
    /// match (another key or session, or any changed byte).
    pub fn verify(&self, bytes: &[u8], max_payload: usize) -> Result<FrameHeader> {
        let frame = decode_frame(bytes, max_payload)?;
        let (ciphertext, tag) = frame.sealed.split_at(frame.plaintext_len());
        let aad = associated_data(self.session, frame.header_bytes);

        let mut ghash = self.ghash.clone();
        ghash.update_padded(&aad);
        ghash.update_padded(ciphertext);
        let mut lengths = ghash::Block::default();
        lengths[..8].copy_from_slice(&(AAD_LEN as u64 * 8).to_be_bytes());
        lengths[8..].copy_from_slice(&(ciphertext.len() as u64 * 8).to_be_bytes());
        ghash.update(&[lengths]);
        let mut expected = ghash.finalize();

        let mut mask = aes::Block::default();
        mask[..NONCE_LEN].copy_from_slice(&frame.nonce);
        mask[15] = 1;
        self.aes.encrypt_block(&mut mask);
        for (e, m) in expected.iter_mut().zip(mask.iter()) {
            *e ^= m;
        }
        let authentic: bool = expected.as_slice().ct_eq(tag).into();
        expected.as_mut_slice().zeroize();
        mask.as_mut_slice().zeroize();
        if authentic {
            Ok(frame.header)
        } else {
            Err(ProtoError::OpenFailed)
        }
    }
}

/// Seals `plaintext` as one frame of `session` (see [`SessionCipher::seal`]).
///
/// # Errors
/// As [`SessionCipher::seal`].
pub fn seal_frame(
    key: &SessionKey,
    session: Uuid,
    header: &FrameHeader,
    plaintext: &[u8],
) -> Result<Vec<u8>> {
    SessionCipher::new(key, session).seal(header, plaintext)
}

/// Decodes and authenticates one frame of `session` (see [`SessionCipher::open`]).
///
/// # Errors
/// As [`SessionCipher::open`].
pub fn open_frame(
    key: &SessionKey,
    session: Uuid,
    bytes: &[u8],
    max_payload: usize,
) -> Result<(FrameHeader, Vec<u8>)> {
    SessionCipher::new(key, session).open(bytes, max_payload)
}

/// Decodes and authenticates one frame of `session` into a reused buffer (see
/// [`SessionCipher::open_into`]).
///
/// # Errors
/// As [`SessionCipher::open_into`].
pub fn open_frame_into(
    key: &SessionKey,
    session: Uuid,
    bytes: &[u8],
    max_payload: usize,
    out: &mut Vec<u8>,
) -> Result<FrameHeader> {
    SessionCipher::new(key, session).open_into(bytes, max_payload, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{FrameFlags, Track};

    #[test]
    fn known_vector_is_stable() {
        // Pins the construction (layout, AAD order, nonce placement): if this changes, the
        // wire format changed and PROTOCOL_VERSION must too.
        let cipher = SessionCipher::new(
            &SessionKey::from_bytes([0x42; KEY_LEN]),
            Uuid::from_u128(0x0011_2233_4455_6677_8899_aabb_ccdd_eeff),
        );
        let header =
            FrameHeader::new(Track::Camera, 1, 1_000_000_000).with_flags(FrameFlags::KEYFRAME);
        let sealed = cipher
            .seal_with_nonce(&header, [0x24; NONCE_LEN], b"idv")
            .unwrap();
        assert_eq!(sealed.len(), HEADER_LEN + 3 + TAG_LEN);
        let hex: String = sealed[HEADER_LEN..]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(hex, KNOWN_SEALED_HEX);
        assert_eq!(cipher.open(&sealed, 3).unwrap(), (header, b"idv".to_vec()));
        let verifier = FrameVerifier::new(
            &SessionKey::from_bytes([0x42; KEY_LEN]),
            Uuid::from_u128(0x0011_2233_4455_6677_8899_aabb_ccdd_eeff),
        );
        assert_eq!(verifier.verify(&sealed, 3), Ok(header));
    }

    fn random_bytes(len: usize) -> Vec<u8> {
        let mut bytes = vec![0u8; len];
        getrandom::fill(&mut bytes).unwrap();
        bytes
    }

    /// The verifier's answer is the opener's, for every length around GHASH's 16-byte blocks
    /// and a few frame-sized ones, under fresh keys, sessions and headers.
    #[test]
    fn verify_accepts_what_open_accepts() {
        let lengths = (0..=67).chain([255, 256, 257, 1500, 4096, 15_003]);
        for (i, len) in lengths.enumerate() {
            let key = SessionKey::generate();
            let session = Uuid::from_bytes(random_bytes(16).try_into().unwrap());
            let track = Track::ALL[i % Track::ALL.len()];
            let header = FrameHeader::new(track, i as u64 + 1, i as i64 * 33_333_333 - 7);
            let sealed = SessionCipher::new(&key, session)
                .seal(&header, &random_bytes(len))
                .unwrap();
            let verifier = FrameVerifier::new(&key, session);
            assert_eq!(verifier.verify(&sealed, 16_384), Ok(header), "length {len}");
            assert_eq!(
                SessionCipher::new(&key, session)
                    .open(&sealed, 16_384)
                    .map(|(h, _)| h),
                Ok(header)
            );
        }
    }

    /// Any flipped bit, a cut frame, another key or another session: refused, and refused
    /// the same way `open` refuses it.
    #[test]
    fn verify_refuses_what_open_refuses() {
        let key = SessionKey::generate();
        let session = Uuid::from_u128(7);
        let cipher = SessionCipher::new(&key, session);
        let verifier = FrameVerifier::new(&key, session);
        let sealed = cipher
            .seal(&FrameHeader::new(Track::Camera, 9, 1), &random_bytes(37))
            .unwrap();
        for at in 0..sealed.len() {
            for bit in [0x01, 0x80] {
                let mut tampered = sealed.clone();
                tampered[at] ^= bit;
                let verified = verifier.verify(&tampered, 64);
                let opened = cipher.open(&tampered, 64).map(|(h, _)| h);
                assert_eq!(verified, opened, "byte {at} bit {bit:#x}");
                assert!(verified.is_err(), "byte {at} bit {bit:#x} went through");
            }
        }
        for cut in [1, TAG_LEN, sealed.len() - HEADER_LEN] {
            let short = &sealed[..sealed.len() - cut];
            assert!(verifier.verify(short, 64).is_err());
        }
        let other_key = FrameVerifier::new(&SessionKey::generate(), session);
        assert_eq!(other_key.verify(&sealed, 64), Err(ProtoError::OpenFailed));
        let other_session = FrameVerifier::new(&key, Uuid::from_u128(8));
        assert_eq!(
            other_session.verify(&sealed, 64),
            Err(ProtoError::OpenFailed)
        );
    }

    /// Computed independently with Python's `cryptography` (`AESGCM(key).encrypt(nonce,
    /// b"idv", session_id_bytes + header)`); the same vector is in `docs/PROTOCOL.md`.
    const KNOWN_SEALED_HEX: &str = "7cf5b2355b6b23a7e0bb0041d3ff3e359e0d31";

    #[test]
    fn random_nonces_differ_between_sealings_of_the_same_frame() {
        let cipher = SessionCipher::new(&SessionKey::generate(), Uuid::from_u128(1));
        let header = FrameHeader::new(Track::Screen, 5, 0);
        let a = cipher.seal(&header, b"same").unwrap();
        let b = cipher.seal(&header, b"same").unwrap();
        assert_ne!(a[24..36], b[24..36]);
        assert_eq!(cipher.open(&a, 16).unwrap().1, b"same");
        assert_eq!(cipher.open(&b, 16).unwrap().1, b"same");
    }

    #[test]
    fn keys_are_redacted_and_fresh() {
        let key = SessionKey::generate();
        assert_eq!(format!("{key:?}"), "SessionKey(<redacted>)");
        assert_ne!(key.expose(), SessionKey::generate().expose());
        assert!(SessionKey::from_slice(&[0; 31]).is_none());
        assert_eq!(SessionKey::from_slice(&[3; 32]).unwrap().expose(), &[3; 32]);
    }

    #[test]
    fn open_into_leaves_the_buffer_empty_on_failure() {
        let cipher = SessionCipher::new(&SessionKey::from_bytes([1; 32]), Uuid::from_u128(1));
        let mut sealed = cipher
            .seal(&FrameHeader::new(Track::Camera, 1, 0), b"secret")
            .unwrap();
        *sealed.last_mut().unwrap() ^= 1;
        let mut out = b"stale".to_vec();
        assert_eq!(
            cipher.open_into(&sealed, 64, &mut out),
            Err(ProtoError::OpenFailed)
        );
        assert!(out.is_empty());
    }
}
