//! Fuzzes every path that reads untrusted bytes off the agent media WebSocket or the live
//! fan-out: `decode_frame` under a small and a large payload limit, `open_frame` and the
//! ingest's tag-only `FrameVerifier::verify` under one fixed key and session (which must agree), `LiveMessage::from_wire` for binary and text messages, and the
//! control-message parsers of both directions. None of them may panic, allocate beyond what
//! the input can justify, or disagree with one another.
//!
//! Input: the bytes of one WebSocket message. AES-GCM stops the fuzzer from inventing frames
//! that open, so the corpus is seeded with real frames sealed under [`fuzz_key`] and
//! [`fuzz_session`]: mutations of their headers and payloads then reach the authentication
//! failure paths and, for untouched frames, the success path. Run with
//! `IDV_FUZZ_SEED_DIR=dir` and the target writes those seeds (and a few control messages)
//! into `dir` before fuzzing.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use proto::frame::{TAG_LEN, frame_len};
use proto::{
    AgentControl, FrameFlags, FrameHeader, FrameVerifier, LiveMessage, ProtoError, ServerControl,
    SessionCipher, SessionKey, Track, WireMessage, decode_frame,
};
use uuid::Uuid;

/// Larger inputs are skipped: the decoder must cope with them, but they only slow fuzzing.
const MAX_INPUT: usize = 1 << 20;
/// The payload limits every input is decoded under.
const LIMITS: [usize; 3] = [0, 64, 1 << 20];

fn fuzz_key() -> SessionKey {
    SessionKey::from_bytes([0x33; 32])
}

fn fuzz_session() -> Uuid {
    Uuid::from_u128(0xf022_0000_0000_4000_8000_0000_0000_0001)
}

fuzz_target!(init: write_seeds_if_asked(), |data: &[u8]| {
    if data.len() > MAX_INPUT {
        return;
    }
    let cipher = SessionCipher::new(&fuzz_key(), fuzz_session());
    let verifier = FrameVerifier::new(&fuzz_key(), fuzz_session());
    let mut plain = Vec::new();
    for limit in LIMITS {
        let decoded = decode_frame(data, limit);
        if let Ok(frame) = &decoded {
            assert_eq!(frame_len(frame.plaintext_len()), data.len());
            assert!(frame.plaintext_len() <= limit);
            assert!(frame.header.seq > 0);
            assert_eq!(frame.sealed.len(), frame.plaintext_len() + TAG_LEN);
        }
        let opened = cipher.open_into(data, limit, &mut plain);
        assert_eq!(verifier.verify(data, limit), opened, "verify and open disagree");
        match opened {
            Ok(header) => {
                let frame = decoded.expect("a frame that opens also decodes");
                assert_eq!(header, frame.header);
                assert_eq!(plain.len(), frame.plaintext_len());
                assert!(plain.capacity() <= data.len());
            }
            Err(ProtoError::OpenFailed) => {
                assert!(decoded.is_ok(), "authentication ran on a malformed frame");
                assert!(plain.is_empty());
            }
            Err(e) => {
                assert_eq!(Err(e), decoded.map(|f| f.header), "decode and open disagree");
                assert!(plain.is_empty());
            }
        }
        let live = LiveMessage::from_wire(WireMessage::Binary(Bytes::copy_from_slice(data)), limit);
        assert_eq!(live.is_ok(), decode_frame(data, limit).is_ok());
        if let Ok(message) = live {
            assert_eq!(message.to_wire(), WireMessage::Binary(Bytes::copy_from_slice(data)));
        }
    }

    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(message) = AgentControl::from_json(text) {
            assert_eq!(AgentControl::from_json(&message.to_json()).unwrap(), message);
        }
        if let Ok(message) = ServerControl::from_json(text) {
            assert_eq!(ServerControl::from_json(&message.to_json()).unwrap(), message);
        }
        if let Ok(message) = LiveMessage::from_wire(WireMessage::Text(text.to_owned()), 0) {
            let again = LiveMessage::from_wire(message.to_wire(), 0).unwrap();
            assert_eq!(again, message);
        }
    }
});

/// Writes the seed corpus into `$IDV_FUZZ_SEED_DIR`, if set: frames of every track and flag
/// sealed under the fuzz key at several payload sizes, plus control messages and notices.
fn write_seeds_if_asked() {
    let Some(dir) = std::env::var_os("IDV_FUZZ_SEED_DIR") else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    std::fs::create_dir_all(&dir).expect("create the seed directory");
    let cipher = SessionCipher::new(&fuzz_key(), fuzz_session());
    let mut seeds: Vec<(String, Vec<u8>)> = Vec::new();
    for (i, track) in Track::ALL.into_iter().enumerate() {
        for (bits, len) in [(0u8, 0usize), (1, 1), (2, 63), (4, 64), (7, 1000)] {
            let header = FrameHeader::new(track, 1 + i as u64 * 1000 + len as u64, -(len as i64))
                .with_flags(FrameFlags::from_bits(bits).unwrap());
            let plain: Vec<u8> = (0..len).map(|n| (n * 31 + i) as u8).collect();
            let frame = cipher.seal(&header, &plain).expect("seal a seed frame");
            seeds.push((format!("seed-{track}-f{bits}-n{len}"), frame));
        }
    }
    for (name, text) in [
        (
            "hello",
            r#"{"type":"hello","protocol":1,"session_token":"t","agent":{"version":"v","platform":"p","tracks":["camera"]},"last_acked":{"camera":3}}"#,
        ),
        ("ack", r#"{"type":"ack","track":"screen","seq":7}"#),
        ("pong", r#"{"type":"pong","t1":1,"t2":2,"t3":3}"#),
        (
            "close",
            r#"{"type":"close","code":4001,"reason":"too big"}"#,
        ),
        (
            "gap",
            r#"{"type":"gap","track":"camera","from_seq":1,"to_seq":2}"#,
        ),
    ] {
        seeds.push((format!("seed-{name}"), text.as_bytes().to_vec()));
    }
    for (name, bytes) in seeds {
        std::fs::write(dir.join(name), bytes).expect("write a seed");
    }
}
