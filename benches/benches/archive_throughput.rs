//! Throughput of the sealed archive format against the AEAD it is built on, in one run on the
//! same bytes: `raw_aes_gcm` (aes-gcm, 64 KiB pieces in place, counter nonce — the format's
//! floor), `ring_aes_gcm` (a faster peer AEAD on the same pieces), and the format's three
//! paths: `idv_seal`, `idv_open` and `idv_verify`. One criterion group per payload size;
//! `benches/ratios.py` turns the results into GB/s and ratios to `raw_aes_gcm`.

use std::hint::black_box;
use std::io::{Cursor, Read, Write};
use std::time::Duration;

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{AeadInOut, KeyInit, Nonce};
use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, UnboundKey};
use storage::archive::{
    ArchiveHeader, ArchiveKeys, FileKey, RetentionKey, SealedHeader, SealedReader, SealedWriter,
};
use uuid::Uuid;

/// The format's chunk size; the raw AEAD benches cut the buffer the same way.
const PIECE: usize = 64 * 1024;
const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;
/// Payload sizes: one chunk, a few chunks in cache, and a recording-sized buffer that does
/// not fit in cache.
const SIZES: [(&str, usize); 3] = [("64KiB", 64 * KIB), ("1MiB", MIB), ("64MiB", 64 * MIB)];

/// A counter nonce laid out like the format's (prefix ‖ u32 BE counter ‖ flag), so both raw
/// baselines do the same nonce work per piece as the format.
fn counter_nonce(counter: u32, last: bool) -> [u8; 12] {
    let mut nonce = [0x42u8; 12];
    nonce[7..11].copy_from_slice(&counter.to_be_bytes());
    nonce[11] = u8::from(last);
    nonce
}

/// One archive's header and keys, fixed for the whole run.
struct Archive {
    header: ArchiveHeader,
    keys: ArchiveKeys,
}

impl Archive {
    fn new() -> Self {
        let id = Uuid::new_v4();
        let keys = ArchiveKeys::derive(id, &FileKey::generate(), &RetentionKey::generate());
        let header = ArchiveHeader::new(id, Uuid::new_v4(), "kek-bench".into(), vec![0xAA; 60]);
        Self { header, keys }
    }

    fn manifest() -> serde_json::Value {
        serde_json::json!({ "kind": "bench" })
    }

    /// Seals `plain` into `sink` (cleared first, capacity kept).
    fn seal_into(&self, plain: &[u8], sink: &mut Vec<u8>) {
        sink.clear();
        let mut writer = SealedWriter::new(sink, &self.header, &self.keys).unwrap();
        writer.write_all(plain).unwrap();
        writer.finish(&Self::manifest()).unwrap();
    }

    /// Parses the header and opens a reader over `sealed`, as a caller holding the keys would.
    fn reader<'a>(&self, sealed: &'a [u8]) -> SealedReader<Cursor<&'a [u8]>> {
        let mut src = Cursor::new(sealed);
        let header = SealedHeader::read_from(&mut src).unwrap();
        SealedReader::new(src, header, &self.keys).unwrap()
    }
}

fn throughput(c: &mut Criterion) {
    let archive = Archive::new();
    let aes_key = [7u8; 32];
    let aes = Aes256Gcm::new(&aes_key.into());
    let ring_key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &aes_key).unwrap());

    for (label, size) in SIZES {
        let plain = fixtures::pseudo_random_bytes(size as u64, size);
        let mut group = c.benchmark_group(label);
        group.throughput(Throughput::Bytes(size as u64));
        if size >= 16 * MIB {
            // Tens of milliseconds per iteration: few samples, each one iteration long.
            group
                .sample_size(10)
                .sampling_mode(SamplingMode::Flat)
                .warm_up_time(Duration::from_secs(1))
                .measurement_time(Duration::from_secs(4));
        } else {
            group
                .sample_size(if size > PIECE { 50 } else { 100 })
                .warm_up_time(Duration::from_secs(1))
                .measurement_time(Duration::from_secs(3));
        }

        // Every bench that writes works on its own copy made once, outside the timing.
        let mut work = plain.clone();
        group.bench_function("raw_aes_gcm", |b| {
            b.iter(|| {
                let pieces = work.len().div_ceil(PIECE).max(1);
                for (i, piece) in work.chunks_mut(PIECE).enumerate() {
                    let nonce = Nonce::<Aes256Gcm>::from(counter_nonce(i as u32, i + 1 == pieces));
                    let tag = aes
                        .encrypt_inout_detached(&nonce, b"", piece.into())
                        .unwrap();
                    let _ = black_box(tag);
                }
            });
        });

        group.bench_function("ring_aes_gcm", |b| {
            b.iter(|| {
                let pieces = work.len().div_ceil(PIECE).max(1);
                for (i, piece) in work.chunks_mut(PIECE).enumerate() {
                    let nonce = ring::aead::Nonce::assume_unique_for_key(counter_nonce(
                        i as u32,
                        i + 1 == pieces,
                    ));
                    let tag = ring_key
                        .seal_in_place_separate_tag(nonce, Aad::empty(), piece)
                        .unwrap();
                    let _ = black_box(tag);
                }
            });
        });

        // Sized once for the whole archive, so no iteration pays for growing or faulting it in.
        let sealed_len = size + size.div_ceil(PIECE).max(1) * 16 + 4 * KIB;
        let mut sink = Vec::with_capacity(sealed_len);
        group.bench_function("idv_seal", |b| {
            b.iter(|| archive.seal_into(black_box(&plain), &mut sink));
        });

        let mut sealed = Vec::with_capacity(sealed_len);
        archive.seal_into(&plain, &mut sealed);
        let mut out = Vec::with_capacity(size);
        archive.reader(&sealed).read_to_end(&mut out).unwrap();
        assert!(out == plain, "idv_open returns other bytes at {label}");
        group.bench_function("idv_open", |b| {
            b.iter(|| {
                out.clear();
                let mut reader = archive.reader(black_box(&sealed));
                reader.read_to_end(&mut out).unwrap();
            });
        });

        group.bench_function("idv_verify", |b| {
            b.iter(|| {
                let mut reader = archive.reader(black_box(&sealed));
                black_box(reader.verify(|_| {}).unwrap());
            });
        });

        group.finish();
    }
}

criterion_group!(benches, throughput);
criterion_main!(benches);
