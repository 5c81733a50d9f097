//! What the ingest pays to authenticate one agent media frame, against the AEAD it is built
//! on, in one run on the same frames: `raw_aes_gcm` (aes-gcm decrypting the frame's body in a
//! reused buffer: the least any opening costs), `ring_aes_gcm` (a faster peer AEAD, the same),
//! `frame_open` (`SessionCipher::open_into`: decode, copy out, decrypt — what the ingest did
//! until it only checked tags) and `frame_verify` (`FrameVerifier::verify`: decode and check
//! the tag, no keystream, no copy). One criterion group per frame size: a screen update, a
//! camera frame at ~500 kbit/s and 30 fps, a keyframe. `benches/ratios.py` prints GB/s and the
//! ratio of each to `raw_aes_gcm`.

use std::hint::black_box;
use std::time::Duration;

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{AeadInOut, KeyInit, Nonce, Tag};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use proto::frame::HEADER_LEN;
use proto::{FrameHeader, FrameVerifier, SessionCipher, SessionKey, Track, decode_frame};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce as RingNonce, UnboundKey};
use uuid::Uuid;

const SIZES: [(&str, usize); 3] = [
    ("frame-200B", 200),
    ("frame-2KiB", 2 * 1024),
    ("frame-16KiB", 16 * 1024),
];

fn frame_check(c: &mut Criterion) {
    let key = SessionKey::generate();
    let session = Uuid::new_v4();
    let cipher = SessionCipher::new(&key, session);
    let verifier = FrameVerifier::new(&key, session);
    let raw = Aes256Gcm::new(key.expose().into());
    let ring = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key.expose()).unwrap());

    for (name, size) in SIZES {
        let plain: Vec<u8> = (0..size).map(|i| (i * 7) as u8).collect();
        let frame = cipher
            .seal(&FrameHeader::new(Track::Camera, 1, 0), &plain)
            .unwrap();
        let max_payload = size;
        let decoded = decode_frame(&frame, max_payload).unwrap();
        let (body, tag) = decoded.sealed.split_at(decoded.plaintext_len());
        let nonce = decoded.nonce;
        let aad = [session.as_bytes().as_slice(), decoded.header_bytes].concat();

        let mut group = c.benchmark_group(name);
        group.throughput(Throughput::Bytes(frame.len() as u64));
        group.measurement_time(Duration::from_secs(3));
        let mut buffer = Vec::with_capacity(frame.len());

        group.bench_function("raw_aes_gcm", |b| {
            b.iter(|| {
                buffer.clear();
                buffer.extend_from_slice(body);
                raw.decrypt_inout_detached(
                    &Nonce::<Aes256Gcm>::from(nonce),
                    &aad,
                    buffer.as_mut_slice().into(),
                    &Tag::<Aes256Gcm>::try_from(tag).unwrap(),
                )
                .unwrap();
                black_box(&buffer);
            });
        });
        group.bench_function("ring_aes_gcm", |b| {
            b.iter(|| {
                buffer.clear();
                buffer.extend_from_slice(&frame[HEADER_LEN..]);
                let opened = ring
                    .open_in_place(
                        RingNonce::assume_unique_for_key(nonce),
                        Aad::from(&aad),
                        &mut buffer,
                    )
                    .unwrap();
                black_box(opened);
            });
        });
        group.bench_function("frame_open", |b| {
            b.iter(|| black_box(cipher.open_into(&frame, max_payload, &mut buffer).unwrap()));
        });
        group.bench_function("frame_verify", |b| {
            b.iter(|| black_box(verifier.verify(&frame, max_payload).unwrap()));
        });
        group.finish();
    }
}

criterion_group!(benches, frame_check);
criterion_main!(benches);
