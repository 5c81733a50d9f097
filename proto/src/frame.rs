//! The binary media frame: one WebSocket binary message carries exactly one frame, a fixed
//! 40-byte little-endian header followed by the sealed payload (ciphertext ‖ 16-byte tag).
//!
//! ```text
//! offset size field
//!      0    2 magic "iv" (0x69 0x76)
//!      2    1 protocol version (1)
//!      3    1 message type (1 = media)
//!      4    1 track (1 camera, 2 screen, 3 screenshot, 4 mic-reference)
//!      5    1 flags (0x01 keyframe, 0x02 gap, 0x04 paused; other bits must be 0)
//!      6    2 reserved, must be 0
//!      8    8 sequence number (u64, per track, starts at 1)
//!     16    8 capture timestamp (i64 ns, agent monotonic clock)
//!     24   12 AES-GCM nonce (random per sealing)
//!     36    4 sealed payload length (u32: ciphertext + tag)
//!     40    … sealed payload
//! ```
//!
//! This module owns the layout and the strict decoder; [`crate::seal`] owns the crypto.
//! Decoding borrows from the input and allocates nothing, and every malformed input is a
//! typed [`ProtoError`], never a panic.

use serde::{Deserialize, Serialize};

use crate::error::{ProtoError, Result};

/// The first two bytes of every frame.
pub const MAGIC: [u8; 2] = *b"iv";
/// The protocol version this build speaks, in every frame and in [`crate::AgentControl::Hello`].
pub const PROTOCOL_VERSION: u8 = 1;
/// Bytes of the fixed frame header.
pub const HEADER_LEN: usize = 40;
/// Bytes of the AES-GCM nonce carried in the header.
pub const NONCE_LEN: usize = 12;
/// Bytes the AEAD tag adds to every payload.
pub const TAG_LEN: usize = 16;
/// A default limit on a frame's plaintext payload: a 1080p keyframe or a full-screen
/// update fits; the server announces its own limit in [`crate::ServerControl::Welcome`].
pub const DEFAULT_MAX_PAYLOAD: usize = 1 << 20;

const OFF_VERSION: usize = 2;
const OFF_KIND: usize = 3;
const OFF_TRACK: usize = 4;
const OFF_FLAGS: usize = 5;
const OFF_RESERVED: usize = 6;
const OFF_SEQ: usize = 8;
const OFF_TIMESTAMP: usize = 16;
pub(crate) const OFF_NONCE: usize = 24;
const OFF_LEN: usize = 36;

/// What a binary message carries. Version 1 defines media frames only; the byte exists so
/// a later version can add binary messages without a new framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FrameKind {
    /// A sealed media unit of one track.
    Media = 1,
}

impl FrameKind {
    /// The kind for a wire byte, if it is one this version defines.
    #[must_use]
    pub fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            1 => Some(Self::Media),
            _ => None,
        }
    }
}

/// A media track of a session. Each track has its own sequence numbers and acks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Track {
    /// The customer's camera (video).
    Camera = 1,
    /// The customer's screen (video, dirty-region encoded).
    Screen = 2,
    /// Still screenshots, on the same timeline as the screen track.
    Screenshot = 3,
    /// A low-rate microphone reference, used only to align the CTI audio.
    MicReference = 4,
}

impl Track {
    /// Every track, in wire-byte order.
    pub const ALL: [Track; 4] = [
        Track::Camera,
        Track::Screen,
        Track::Screenshot,
        Track::MicReference,
    ];

    /// The track for a wire byte, if it is one this version defines.
    #[must_use]
    pub fn from_byte(byte: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|t| *t as u8 == byte)
    }

    /// The wire byte.
    #[must_use]
    pub fn to_byte(self) -> u8 {
        self as u8
    }

    /// A short lowercase name for logs and file names (`camera`, `mic_reference`, …).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Track::Camera => "camera",
            Track::Screen => "screen",
            Track::Screenshot => "screenshot",
            Track::MicReference => "mic_reference",
        }
    }
}

impl std::fmt::Display for Track {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A frame's flag bits. Only the bits named here may be set; the decoder rejects others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub struct FrameFlags(u8);

impl FrameFlags {
    /// No flags.
    pub const NONE: Self = Self(0);
    /// The payload decodes on its own (a video keyframe; every screenshot).
    pub const KEYFRAME: Self = Self(0x01);
    /// Media was lost on the agent before this frame (encoder overrun, capture stall): the
    /// timeline has a gap between the previous frame's timestamp and this one's.
    pub const GAP: Self = Self(0x02);
    /// The customer paused sharing at this frame's timestamp; the payload carries no media
    /// (it may be empty) and the pause lasts until the track's next frame without this flag.
    pub const PAUSED: Self = Self(0x04);
    /// Every bit this version defines.
    pub const KNOWN: Self = Self(0x07);

    /// Flags from wire bits, `None` if an undefined bit is set.
    #[must_use]
    pub fn from_bits(bits: u8) -> Option<Self> {
        (bits & !Self::KNOWN.0 == 0).then_some(Self(bits))
    }

    /// The wire bits.
    #[must_use]
    pub fn bits(self) -> u8 {
        self.0
    }

    /// Whether every flag of `other` is set.
    #[must_use]
    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether no flag is set.
    #[must_use]
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl std::ops::BitOr for FrameFlags {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

impl std::ops::BitOrAssign for FrameFlags {
    fn bitor_assign(&mut self, rhs: Self) {
        self.0 |= rhs.0;
    }
}

impl TryFrom<u8> for FrameFlags {
    type Error = ProtoError;
    fn try_from(bits: u8) -> Result<Self> {
        Self::from_bits(bits).ok_or(ProtoError::UnknownFlags(bits & !Self::KNOWN.0))
    }
}

impl From<FrameFlags> for u8 {
    fn from(flags: FrameFlags) -> u8 {
        flags.0
    }
}

/// What the sender says about a media unit; all of it is authenticated with the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FrameHeader {
    /// The track this unit belongs to.
    pub track: Track,
    /// Position in the track: 1 for the first frame sent, then +1 per frame sent (never
    /// reused, no holes; media lost on the agent is marked with [`FrameFlags::GAP`]).
    pub seq: u64,
    /// Capture time on the agent's monotonic clock, in nanoseconds. Clock sync maps it to
    /// the server's UTC clock; the raw value is stored as it came.
    pub captured_at_ns: i64,
    /// Keyframe, gap and paused marks.
    pub flags: FrameFlags,
}

impl FrameHeader {
    /// A header without flags.
    #[must_use]
    pub fn new(track: Track, seq: u64, captured_at_ns: i64) -> Self {
        Self {
            track,
            seq,
            captured_at_ns,
            flags: FrameFlags::NONE,
        }
    }

    /// The same header with `flags`.
    #[must_use]
    pub fn with_flags(self, flags: FrameFlags) -> Self {
        Self { flags, ..self }
    }

    /// The 40 header bytes for a sealed payload of `sealed_len` bytes under `nonce`.
    pub(crate) fn encode(&self, nonce: &[u8; NONCE_LEN], sealed_len: u32) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[..2].copy_from_slice(&MAGIC);
        out[OFF_VERSION] = PROTOCOL_VERSION;
        out[OFF_KIND] = FrameKind::Media as u8;
        out[OFF_TRACK] = self.track.to_byte();
        out[OFF_FLAGS] = self.flags.bits();
        // OFF_RESERVED..OFF_SEQ stay zero.
        out[OFF_SEQ..OFF_TIMESTAMP].copy_from_slice(&self.seq.to_le_bytes());
        out[OFF_TIMESTAMP..OFF_NONCE].copy_from_slice(&self.captured_at_ns.to_le_bytes());
        out[OFF_NONCE..OFF_LEN].copy_from_slice(nonce);
        out[OFF_LEN..].copy_from_slice(&sealed_len.to_le_bytes());
        out
    }
}

/// A decoded, not yet authenticated frame, borrowing the bytes it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The message type.
    pub kind: FrameKind,
    /// Track, sequence number, timestamp and flags — unauthenticated until opened.
    pub header: FrameHeader,
    /// The AES-GCM nonce this payload was sealed under.
    pub nonce: [u8; NONCE_LEN],
    /// The 40 header bytes as received (the associated data is built from them).
    pub header_bytes: &'a [u8; HEADER_LEN],
    /// Ciphertext ‖ tag.
    pub sealed: &'a [u8],
}

impl Frame<'_> {
    /// Bytes of plaintext the sealed payload holds.
    #[must_use]
    pub fn plaintext_len(&self) -> usize {
        self.sealed.len() - TAG_LEN
    }
}

/// Bytes on the wire of a frame whose plaintext payload is `plaintext_len` bytes.
#[must_use]
pub const fn frame_len(plaintext_len: usize) -> usize {
    HEADER_LEN + plaintext_len + TAG_LEN
}

fn u16_at(bytes: &[u8; HEADER_LEN], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

fn u32_at(bytes: &[u8; HEADER_LEN], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(b)
}

fn u64_at(bytes: &[u8; HEADER_LEN], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(b)
}

/// Decodes one binary WebSocket message as a frame, without authenticating it.
///
/// `max_payload` is the largest plaintext payload the caller accepts. Checks run in wire
/// order, so the first thing wrong is the thing reported: magic, version, header length,
/// message type, track, flags, reserved bytes, sequence number, declared length against
/// `max_payload` and the tag, and finally that exactly the declared bytes follow the header
/// (one frame per message: nothing missing, nothing appended).
///
/// # Errors
/// A [`ProtoError`] naming the first malformed field.
pub fn decode_frame(bytes: &[u8], max_payload: usize) -> Result<Frame<'_>> {
    if let Some(found) = bytes.first_chunk::<2>()
        && *found != MAGIC
    {
        return Err(ProtoError::BadMagic { found: *found });
    }
    if let Some(&version) = bytes.get(OFF_VERSION)
        && version != PROTOCOL_VERSION
    {
        return Err(ProtoError::UnsupportedVersion {
            found: version,
            supported: PROTOCOL_VERSION,
        });
    }
    let Some((header_bytes, sealed)) = bytes.split_first_chunk::<HEADER_LEN>() else {
        return Err(ProtoError::Truncated {
            needed: HEADER_LEN,
            got: bytes.len(),
        });
    };
    let kind = FrameKind::from_byte(header_bytes[OFF_KIND])
        .ok_or(ProtoError::UnknownKind(header_bytes[OFF_KIND]))?;
    let track = Track::from_byte(header_bytes[OFF_TRACK])
        .ok_or(ProtoError::UnknownTrack(header_bytes[OFF_TRACK]))?;
    let flags = FrameFlags::try_from(header_bytes[OFF_FLAGS])?;
    let reserved = u16_at(header_bytes, OFF_RESERVED);
    if reserved != 0 {
        return Err(ProtoError::ReservedNotZero(reserved));
    }
    let seq = u64_at(header_bytes, OFF_SEQ);
    if seq == 0 {
        return Err(ProtoError::ZeroSequence);
    }
    let captured_at_ns = u64_at(header_bytes, OFF_TIMESTAMP) as i64;
    let declared = u32_at(header_bytes, OFF_LEN);
    let Some(plaintext_len) = (declared as usize).checked_sub(TAG_LEN) else {
        return Err(ProtoError::SealedTooShort(declared));
    };
    if plaintext_len > max_payload {
        return Err(ProtoError::PayloadTooLarge {
            len: plaintext_len as u64,
            max: max_payload as u64,
        });
    }
    if sealed.len() != declared as usize {
        return Err(ProtoError::LengthMismatch {
            declared,
            actual: sealed.len(),
        });
    }
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&header_bytes[OFF_NONCE..OFF_LEN]);
    Ok(Frame {
        kind,
        header: FrameHeader {
            track,
            seq,
            captured_at_ns,
            flags,
        },
        nonce,
        header_bytes,
        sealed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(header: FrameHeader, sealed: &[u8]) -> Vec<u8> {
        let mut out = header.encode(&[9; NONCE_LEN], sealed.len() as u32).to_vec();
        out.extend_from_slice(sealed);
        out
    }

    #[test]
    fn header_layout_is_little_endian_at_documented_offsets() {
        let h = FrameHeader::new(Track::Screen, 0x0102_0304_0506_0708, -2)
            .with_flags(FrameFlags::KEYFRAME | FrameFlags::PAUSED);
        let bytes = h.encode(&[0xAB; NONCE_LEN], 0x11223344);
        assert_eq!(&bytes[..8], &[b'i', b'v', 1, 1, 2, 0x05, 0, 0]);
        assert_eq!(&bytes[8..16], &[8, 7, 6, 5, 4, 3, 2, 1]);
        assert_eq!(
            &bytes[16..24],
            &[0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]
        );
        assert_eq!(&bytes[24..36], &[0xAB; 12]);
        assert_eq!(&bytes[36..40], &[0x44, 0x33, 0x22, 0x11]);
    }

    #[test]
    fn decode_reads_back_what_encode_wrote() {
        let h =
            FrameHeader::new(Track::MicReference, u64::MAX, i64::MIN).with_flags(FrameFlags::GAP);
        let bytes = frame(h, &[7; 20]);
        let f = decode_frame(&bytes, 4).unwrap();
        assert_eq!(f.header, h);
        assert_eq!(f.kind, FrameKind::Media);
        assert_eq!(f.nonce, [9; NONCE_LEN]);
        assert_eq!(f.sealed, &[7; 20]);
        assert_eq!(f.plaintext_len(), 4);
        assert_eq!(frame_len(4), bytes.len());
    }

    #[test]
    fn flags_reject_unknown_bits_and_combine() {
        assert_eq!(FrameFlags::from_bits(0x07), Some(FrameFlags::KNOWN));
        assert_eq!(FrameFlags::from_bits(0x08), None);
        assert_eq!(
            FrameFlags::try_from(0x88),
            Err(ProtoError::UnknownFlags(0x88))
        );
        let f = FrameFlags::KEYFRAME | FrameFlags::GAP;
        assert!(f.contains(FrameFlags::GAP) && !f.contains(FrameFlags::PAUSED));
        assert!(FrameFlags::NONE.is_empty());
    }

    #[test]
    fn tracks_round_trip_through_their_bytes_and_names() {
        for t in Track::ALL {
            assert_eq!(Track::from_byte(t.to_byte()), Some(t));
            let json = serde_json::to_string(&t).unwrap();
            assert_eq!(json, format!("\"{}\"", t.name()));
        }
        assert_eq!(Track::from_byte(0), None);
        assert_eq!(Track::from_byte(5), None);
    }
}
