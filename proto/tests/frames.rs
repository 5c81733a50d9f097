//! The frame decoder against every class of malformed input, and property-style checks that
//! it is total: any bytes give a frame or a typed error, never a panic.

mod common;

use common::{Gen, key, session};
use proto::frame::{DEFAULT_MAX_PAYLOAD, MAGIC, TAG_LEN, frame_len};
use proto::{FrameFlags, FrameHeader, HEADER_LEN, ProtoError, Track, decode_frame, seal_frame};

/// A valid sealed frame with a `len`-byte payload.
fn valid(len: usize) -> Vec<u8> {
    let header = FrameHeader::new(Track::Camera, 7, 123_456).with_flags(FrameFlags::KEYFRAME);
    seal_frame(&key(), session(), &header, &vec![0xCC; len]).unwrap()
}

fn decode(bytes: &[u8]) -> Result<FrameHeader, ProtoError> {
    decode_frame(bytes, 1024).map(|f| f.header)
}

#[test]
fn short_inputs_are_truncated_not_panics() {
    let frame = valid(10);
    assert_eq!(
        decode(&[]),
        Err(ProtoError::Truncated {
            needed: HEADER_LEN,
            got: 0
        })
    );
    for len in 1..HEADER_LEN {
        assert_eq!(
            decode(&frame[..len]),
            Err(ProtoError::Truncated {
                needed: HEADER_LEN,
                got: len
            }),
            "{len} bytes"
        );
    }
}

#[test]
fn wrong_magic_is_named_before_anything_else() {
    let mut frame = valid(10);
    frame[0] = b'X';
    assert_eq!(decode(&frame), Err(ProtoError::BadMagic { found: *b"Xv" }));
    // Even two bytes are enough to tell it is not ours.
    assert_eq!(decode(b"GE"), Err(ProtoError::BadMagic { found: *b"GE" }));
    let text = decode(b"GET / HTTP/1.1\r\n").unwrap_err().to_string();
    assert!(text.contains("not an idv media frame"), "{text}");
}

#[test]
fn other_protocol_versions_are_refused_with_both_versions_named() {
    for version in [0u8, 2, 0xFF] {
        let mut frame = valid(0);
        frame[2] = version;
        let err = decode(&frame).unwrap_err();
        assert_eq!(
            err,
            ProtoError::UnsupportedVersion {
                found: version,
                supported: 1
            }
        );
        assert!(
            err.to_string()
                .contains(&format!("protocol version {version}"))
        );
        // A short frame of another version is reported as a version problem too.
        assert!(matches!(
            decode(&frame[..3]),
            Err(ProtoError::UnsupportedVersion { .. })
        ));
    }
}

#[test]
fn unknown_message_types_tracks_and_flags_are_refused() {
    for kind in [0u8, 2, 0x80, 0xFF] {
        let mut frame = valid(0);
        frame[3] = kind;
        assert_eq!(decode(&frame), Err(ProtoError::UnknownKind(kind)));
    }
    for track in [0u8, 5, 0xFF] {
        let mut frame = valid(0);
        frame[4] = track;
        assert_eq!(decode(&frame), Err(ProtoError::UnknownTrack(track)));
    }
    for bit in 3..8 {
        let mut frame = valid(0);
        frame[5] |= 1 << bit;
        assert_eq!(decode(&frame), Err(ProtoError::UnknownFlags(1 << bit)));
    }
}

#[test]
fn reserved_bytes_must_be_zero() {
    let mut frame = valid(0);
    frame[7] = 1;
    assert_eq!(decode(&frame), Err(ProtoError::ReservedNotZero(0x0100)));
}

#[test]
fn sequence_number_zero_is_refused() {
    let mut frame = valid(0);
    frame[8..16].fill(0);
    assert_eq!(decode(&frame), Err(ProtoError::ZeroSequence));
}

#[test]
fn declared_length_must_hold_the_tag_and_match_the_bytes() {
    let frame = valid(10);
    let set_len = |frame: &mut Vec<u8>, len: u32| frame[36..40].copy_from_slice(&len.to_le_bytes());

    let mut short = frame.clone();
    set_len(&mut short, 15);
    assert_eq!(decode(&short), Err(ProtoError::SealedTooShort(15)));

    // Payload cut off, or bytes appended after it.
    assert_eq!(
        decode(&frame[..frame.len() - 1]),
        Err(ProtoError::LengthMismatch {
            declared: 26,
            actual: 25
        })
    );
    let mut long = frame.clone();
    long.push(0);
    assert_eq!(
        decode(&long),
        Err(ProtoError::LengthMismatch {
            declared: 26,
            actual: 27
        })
    );
    // A header alone, declaring a payload that never came.
    assert_eq!(
        decode(&frame[..HEADER_LEN]),
        Err(ProtoError::LengthMismatch {
            declared: 26,
            actual: 0
        })
    );
}

#[test]
fn oversize_payloads_are_refused_against_the_callers_limit() {
    let frame = valid(100);
    assert!(decode_frame(&frame, 100).is_ok());
    let err = decode_frame(&frame, 99).unwrap_err();
    assert_eq!(err, ProtoError::PayloadTooLarge { len: 100, max: 99 });
    assert!(err.to_string().contains("exceeds the limit of 99"));

    // A header claiming 4 GiB is refused on the claim, before anything is read or allocated.
    let mut huge = valid(0);
    huge[36..40].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(
        decode_frame(&huge, DEFAULT_MAX_PAYLOAD),
        Err(ProtoError::PayloadTooLarge {
            len: u64::from(u32::MAX) - TAG_LEN as u64,
            max: DEFAULT_MAX_PAYLOAD as u64
        })
    );
}

#[test]
fn empty_payloads_are_frames_too() {
    // A paused marker carries no media: just the tag.
    let header = FrameHeader::new(Track::Screen, 3, -5).with_flags(FrameFlags::PAUSED);
    let frame = seal_frame(&key(), session(), &header, &[]).unwrap();
    assert_eq!(frame.len(), frame_len(0));
    let f = decode_frame(&frame, 0).unwrap();
    assert_eq!(f.header, header);
    assert_eq!(f.plaintext_len(), 0);
}

#[test]
fn decoded_frames_borrow_exactly_the_input() {
    let frame = valid(33);
    let f = decode_frame(&frame, 1024).unwrap();
    assert_eq!(f.header_bytes.as_slice(), &frame[..HEADER_LEN]);
    assert!(std::ptr::eq(
        f.sealed.as_ptr(),
        frame[HEADER_LEN..].as_ptr()
    ));
    assert_eq!(f.sealed.len(), 33 + TAG_LEN);
}

#[test]
fn property_every_header_round_trips() {
    let mut g = Gen::new(1);
    for _ in 0..2000 {
        let header = g.header();
        let len = g.below(300);
        let payload = g.bytes(len);
        let frame = seal_frame(&key(), session(), &header, &payload).unwrap();
        assert_eq!(frame.len(), frame_len(len));
        let f = decode_frame(&frame, len).unwrap();
        assert_eq!(f.header, header);
        assert_eq!(f.sealed.len(), len + TAG_LEN);
        assert_eq!(decode_frame(&frame, len.wrapping_sub(1)).is_err(), len > 0);
    }
}

#[test]
fn property_arbitrary_bytes_decode_or_fail_cleanly() {
    let mut g = Gen::new(2);
    let mut accepted = 0;
    for i in 0..20_000 {
        let len = g.below(120);
        let mut bytes = g.bytes(len);
        // Most inputs get a plausible prefix so the later checks are reached too.
        if i % 4 != 0 && len >= 6 {
            bytes[..2].copy_from_slice(&MAGIC);
            bytes[2] = 1;
            bytes[3] = 1;
            bytes[4] = 1 + g.below(4) as u8;
            bytes[5] &= 0x07;
        }
        if i % 2 == 0 && len >= HEADER_LEN {
            bytes[6] = 0;
            bytes[7] = 0;
            let declared = (len - HEADER_LEN) as u32;
            bytes[36..40].copy_from_slice(&declared.to_le_bytes());
        }
        match decode_frame(&bytes, 64) {
            Ok(f) => {
                accepted += 1;
                assert_eq!(frame_len(f.plaintext_len()), bytes.len());
                assert!(f.header.seq > 0);
                assert!(f.plaintext_len() <= 64);
            }
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    }
    assert!(
        accepted > 1000,
        "only {accepted} inputs reached the end of the decoder"
    );
}
