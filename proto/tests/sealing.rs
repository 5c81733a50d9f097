//! Sealing: every way a frame can be tampered with, replayed or spliced fails to open, and
//! opening never returns plaintext it did not authenticate.

mod common;

use common::{Gen, key, other_session, session};
use proto::frame::TAG_LEN;
use proto::{
    FrameFlags, FrameHeader, HEADER_LEN, ProtoError, SessionCipher, SessionKey, Track, open_frame,
    open_frame_into, seal_frame,
};

const MAX: usize = 4096;

fn sealed() -> (FrameHeader, Vec<u8>) {
    let header =
        FrameHeader::new(Track::Camera, 42, 1_234_567_890).with_flags(FrameFlags::KEYFRAME);
    (
        header,
        seal_frame(&key(), session(), &header, b"customer's face, frame 42").unwrap(),
    )
}

#[test]
fn a_sealed_frame_opens_to_its_header_and_plaintext() {
    let (header, frame) = sealed();
    assert_eq!(
        open_frame(&key(), session(), &frame, MAX).unwrap(),
        (header, b"customer's face, frame 42".to_vec())
    );
    // The plaintext is not in the frame.
    assert!(!frame.windows(8).any(|w| w == b"customer"));
}

#[test]
fn wrong_key_fails_to_open() {
    let (_, frame) = sealed();
    let err = open_frame(&SessionKey::from_bytes([0x5B; 32]), session(), &frame, MAX);
    assert_eq!(err, Err(ProtoError::OpenFailed));
    assert!(
        ProtoError::OpenFailed
            .to_string()
            .contains("wrong session key")
    );
}

#[test]
fn a_frame_of_another_session_fails_to_open() {
    let (_, frame) = sealed();
    assert_eq!(
        open_frame(&key(), other_session(), &frame, MAX),
        Err(ProtoError::OpenFailed)
    );
}

/// Rewrites one header field and expects authentication — not decoding — to fail.
fn altered(at: std::ops::Range<usize>, value: &[u8]) {
    let (_, mut frame) = sealed();
    frame[at.clone()].copy_from_slice(value);
    assert!(
        proto::decode_frame(&frame, MAX).is_ok(),
        "still well-formed"
    );
    assert_eq!(
        open_frame(&key(), session(), &frame, MAX),
        Err(ProtoError::OpenFailed),
        "bytes {at:?} set to {value:?}"
    );
}

#[test]
fn altered_seq_fails_to_open() {
    altered(8..16, &43u64.to_le_bytes());
    altered(8..16, &41u64.to_le_bytes());
}

#[test]
fn altered_timestamp_fails_to_open() {
    altered(16..24, &1_234_567_891i64.to_le_bytes());
}

#[test]
fn altered_flags_fail_to_open() {
    altered(5..6, &[0x00]);
    altered(5..6, &[0x03]);
    altered(5..6, &[0x05]);
}

#[test]
fn altered_track_fails_to_open() {
    altered(4..5, &[Track::Screen.to_byte()]);
}

#[test]
fn altered_nonce_fails_to_open() {
    altered(24..25, &[0x00]);
}

#[test]
fn truncated_tag_fails() {
    let (_, frame) = sealed();
    // Cut the tag and fix up the declared length, so it is well-formed but unauthentic.
    for cut in 1..=TAG_LEN {
        let mut short = frame[..frame.len() - cut].to_vec();
        let declared = (short.len() - HEADER_LEN) as u32;
        short[36..40].copy_from_slice(&declared.to_le_bytes());
        let result = open_frame(&key(), session(), &short, MAX);
        assert!(
            matches!(result, Err(ProtoError::OpenFailed)),
            "cut {cut}: {result:?}"
        );
    }
    // Left as is, it is a length mismatch.
    assert!(matches!(
        open_frame(&key(), session(), &frame[..frame.len() - 1], MAX),
        Err(ProtoError::LengthMismatch { .. })
    ));
}

#[test]
fn replayed_frame_under_another_seq_fails_but_identical_resend_opens() {
    let cipher = SessionCipher::new(&key(), session());
    let first = cipher
        .seal(&FrameHeader::new(Track::Screen, 1, 100), b"one")
        .unwrap();
    let second = cipher
        .seal(&FrameHeader::new(Track::Screen, 2, 200), b"two")
        .unwrap();
    // Splice: frame 1's payload (with its nonce) behind frame 2's header.
    let mut spliced = second[..HEADER_LEN].to_vec();
    spliced[24..36].copy_from_slice(&first[24..36]);
    spliced[36..40].copy_from_slice(&first[36..40]);
    spliced.extend_from_slice(&first[HEADER_LEN..]);
    assert_eq!(cipher.open(&spliced, MAX), Err(ProtoError::OpenFailed));
    // A resend of the identical bytes opens: idempotency by seq is the receiver's job.
    assert_eq!(cipher.open(&first, MAX).unwrap().1, b"one");
    assert_eq!(cipher.open(&first, MAX).unwrap().0.seq, 1);
}

#[test]
fn open_checks_the_payload_limit_before_decrypting() {
    let (_, frame) = sealed();
    assert!(matches!(
        open_frame(&key(), session(), &frame, 3),
        Err(ProtoError::PayloadTooLarge { len: 25, max: 3 })
    ));
}

#[test]
fn open_allocates_no_more_than_the_input() {
    let mut g = Gen::new(3);
    for len in [0, 1, 7, 8, 100, 4096] {
        let frame = seal_frame(&key(), session(), &g.header(), &g.bytes(len)).unwrap();
        let (_, plain) = open_frame(&key(), session(), &frame, MAX).unwrap();
        assert_eq!(plain.len(), len);
        assert!(
            plain.capacity() <= frame.len(),
            "{len}: {}",
            plain.capacity()
        );
    }
}

#[test]
fn sealing_refuses_sequence_number_zero() {
    assert_eq!(
        seal_frame(
            &key(),
            session(),
            &FrameHeader::new(Track::Camera, 0, 0),
            b"x"
        ),
        Err(ProtoError::ZeroSequence)
    );
}

#[test]
fn property_every_byte_flip_is_caught() {
    let mut g = Gen::new(4);
    let cipher = SessionCipher::new(&key(), session());
    let mut out = Vec::new();
    for _ in 0..40 {
        let len = g.below(64);
        let frame = cipher.seal(&g.header(), &g.bytes(len)).unwrap();
        for at in 0..frame.len() {
            let mut bad = frame.clone();
            bad[at] ^= 1 << g.below(8);
            let result = cipher.open_into(&bad, MAX, &mut out);
            assert!(
                result.is_err(),
                "flip at byte {at} of {} opened",
                frame.len()
            );
            assert!(out.is_empty());
        }
    }
}

#[test]
fn property_frames_only_open_in_their_own_session_under_their_own_key() {
    let mut g = Gen::new(5);
    let mut out = Vec::new();
    for _ in 0..500 {
        let header = g.header();
        let len = g.below(200);
        let payload = g.bytes(len);
        let frame = seal_frame(&key(), session(), &header, &payload).unwrap();
        assert_eq!(
            open_frame_into(&key(), session(), &frame, MAX, &mut out).unwrap(),
            header
        );
        assert_eq!(out, payload);
        assert!(open_frame(&key(), other_session(), &frame, MAX).is_err());
        let mut other_key = *key().expose();
        other_key[g.below(32)] ^= 1 << g.below(8);
        assert!(open_frame(&SessionKey::from_bytes(other_key), session(), &frame, MAX).is_err());
    }
}
