//! Fuzzes every path that reads an untrusted `*.idvr` file: `SealedHeader::parse` and
//! `read_from` on arbitrary bytes, then — under one fixed set of keys — `SealedReader::new`,
//! `verify`, `manifest` and a few seeks and reads chosen by the input. None of them may
//! panic, allocate beyond what the input can justify, or loop without end.
//!
//! Input: `ops (OPS_LEN bytes) ‖ archive bytes`. The header MAC stops the fuzzer from
//! inventing archives it can open, so the corpus is seeded with real archives sealed under
//! [`fuzz_keys`]: mutations of their chunks, manifest and trailer then reach the layout
//! arithmetic, chunk decryption and the failure diagnosis. Run with `IDV_FUZZ_SEED_DIR=dir`
//! and the target writes those seeds into `dir` before fuzzing (`scripts/fuzz.sh` does).
//!
//! When an archive verifies, the reader is also checked against itself: every seek lands
//! where `std::io::Seek` says it should and every read returns the same bytes as one
//! sequential `read_to_end`.

#![no_main]

use std::io::{Cursor, Read, Seek, SeekFrom, Write};
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use storage::archive::{
    ArchiveHeader, ArchiveKeys, FileKey, RetentionKey, SealedHeader, SealedReader, SealedWriter,
};
use uuid::Uuid;

/// Larger inputs are skipped: the reader must cope with them, but they only slow fuzzing.
const MAX_INPUT: usize = 1 << 20;
/// Four operations of four bytes each lead every input.
const OPS_LEN: usize = 16;
/// Most bytes one read operation asks for.
const MAX_READ: usize = 200_000;

/// The one archive id and key pair every seed is sealed under.
fn fuzz_keys() -> &'static ArchiveKeys {
    static KEYS: LazyLock<ArchiveKeys> = LazyLock::new(|| {
        ArchiveKeys::derive(
            archive_id(),
            &FileKey::from_bytes([0x11; 32]),
            &RetentionKey::from_bytes([0x22; 32]),
        )
    });
    &KEYS
}

fn archive_id() -> Uuid {
    Uuid::from_u128(0x1d7f_0000_0000_4000_8000_0000_0000_0001)
}

/// A seek or read chosen by four input bytes.
#[derive(Debug, Clone, Copy)]
enum Op {
    Seek(SeekFrom),
    Read(usize),
    ReadExact(usize),
}

impl Op {
    fn decode(bytes: &[u8]) -> Option<Self> {
        let &[kind, a, b, c] = bytes else { return None };
        let unsigned = u32::from_le_bytes([a, b, c, 0]);
        // Sign-extend the 24-bit value: seeks go both ways.
        let signed = i64::from(i32::from_le_bytes([0, a, b, c]) >> 8);
        Some(match kind % 5 {
            0 => Op::Seek(SeekFrom::Start(u64::from(unsigned))),
            1 => Op::Seek(SeekFrom::Current(signed)),
            2 => Op::Seek(SeekFrom::End(signed)),
            3 => Op::Read(unsigned as usize % (MAX_READ + 1)),
            _ => Op::ReadExact(unsigned as usize % (MAX_READ + 1)),
        })
    }
}

fuzz_target!(init: write_seeds_if_asked(), |data: &[u8]| {
    if data.len() > MAX_INPUT {
        return;
    }
    let (ops, archive) = data.split_at(data.len().min(OPS_LEN));
    parse_header(data);
    parse_header(archive);

    let Ok(header) = SealedHeader::parse(archive) else { return };
    let Ok(mut reader) = SealedReader::new(Cursor::new(archive), header, fuzz_keys()) else {
        return;
    };
    let payload_len = reader.payload_len();
    assert!(payload_len <= archive.len() as u64, "payload longer than the file");

    let ops: Vec<Op> = ops.chunks(4).filter_map(Op::decode).collect();
    match reader.verify(|_| {}) {
        Ok(report) => {
            assert_eq!(report.payload_len, payload_len);
            check_random_access(&mut reader, &ops);
        }
        Err(_) => {
            // A damaged archive: the reader may refuse anything, but must not panic.
            let _ = reader.manifest();
            run_unchecked(&mut reader, &ops);
        }
    }
});

/// Both header entry points accept and reject the same inputs and agree on what they read.
fn parse_header(bytes: &[u8]) {
    let parsed = SealedHeader::parse(bytes);
    let streamed = SealedHeader::read_from(&mut &bytes[..]);
    match (parsed, streamed) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a.header, b.header);
            assert_eq!(a.len(), b.len());
            assert!(a.len() <= bytes.len());
        }
        (Err(_), Err(_)) => {}
        (a, b) => panic!(
            "parse and read_from disagree: {:?} vs {:?}",
            a.err(),
            b.err()
        ),
    }
}

/// The reader of a verified archive behaves like any `Read + Seek` over its plaintext.
fn check_random_access(reader: &mut SealedReader<Cursor<&[u8]>>, ops: &[Op]) {
    let payload_len = reader.payload_len();
    reader.seek(SeekFrom::Start(0)).unwrap();
    let mut plain = Vec::new();
    reader
        .read_to_end(&mut plain)
        .expect("a verified archive reads to the end");
    assert_eq!(plain.len() as u64, payload_len);

    let mut pos = reader.stream_position().unwrap();
    assert_eq!(pos, payload_len);
    for &op in ops {
        match op {
            Op::Seek(to) => {
                let expected = match to {
                    SeekFrom::Start(n) => Some(n),
                    SeekFrom::Current(d) => pos.checked_add_signed(d),
                    SeekFrom::End(d) => payload_len.checked_add_signed(d),
                };
                match (reader.seek(to), expected) {
                    (Ok(got), Some(want)) => {
                        assert_eq!(got, want, "{to:?}");
                        pos = got;
                    }
                    (Err(_), None) => {}
                    (got, want) => panic!("{to:?} from {pos}: got {got:?}, expected {want:?}"),
                }
            }
            Op::Read(len) => {
                let mut buf = vec![0u8; len];
                let n = reader
                    .read(&mut buf)
                    .expect("reads of a verified archive succeed");
                let available = payload_len.saturating_sub(pos) as usize;
                assert!(n <= len.min(available), "read {n} of {len} at {pos}");
                assert!(
                    n > 0 || len == 0 || available == 0,
                    "read returned 0 before the end"
                );
                if n > 0 {
                    assert!(
                        buf[..n] == plain[pos as usize..pos as usize + n],
                        "read at {pos}"
                    );
                }
                pos += n as u64;
            }
            Op::ReadExact(len) => {
                let mut buf = vec![0u8; len];
                // Reading nothing always succeeds, even past the end.
                let fits = len == 0
                    || pos
                        .checked_add(len as u64)
                        .is_some_and(|end| end <= payload_len);
                match reader.read_exact(&mut buf) {
                    Ok(()) => {
                        assert!(fits, "read_exact of {len} at {pos} past the end succeeded");
                        if len > 0 {
                            assert!(
                                buf[..] == plain[pos as usize..pos as usize + len],
                                "at {pos}"
                            );
                        }
                        pos += len as u64;
                    }
                    Err(e) => {
                        assert!(!fits, "read_exact of {len} at {pos} failed: {e}");
                        // read_exact leaves the position unspecified after an error.
                        pos = reader.stream_position().unwrap();
                    }
                }
            }
        }
    }
}

/// Seeks and reads on a damaged archive: any result but a panic will do.
fn run_unchecked(reader: &mut SealedReader<Cursor<&[u8]>>, ops: &[Op]) {
    for &op in ops {
        match op {
            Op::Seek(to) => {
                let _ = reader.seek(to);
            }
            Op::Read(len) => {
                let _ = reader.read(&mut vec![0u8; len]);
            }
            Op::ReadExact(len) => {
                let _ = reader.read_exact(&mut vec![0u8; len]);
            }
        }
    }
}

/// Writes the seed corpus into `$IDV_FUZZ_SEED_DIR`, if set: real archives sealed under
/// [`fuzz_keys`] at several chunk sizes and lengths, plus a truncated, an extended and a
/// reordered one, each behind a fixed set of operations.
fn write_seeds_if_asked() {
    let Some(dir) = std::env::var_os("IDV_FUZZ_SEED_DIR") else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    std::fs::create_dir_all(&dir).expect("create the seed directory");
    // Seek to 1000, read 4096, seek back 100, read_exact 300.
    let ops: [u8; OPS_LEN] = [
        0, 0xE8, 0x03, 0, 3, 0, 0x10, 0, 1, 0x9C, 0xFF, 0xFF, 4, 0x2C, 0x01, 0,
    ];
    let mut seeds: Vec<(String, Vec<u8>)> = Vec::new();
    for (chunk_size, len) in [
        (1024, 0),
        (1024, 1),
        (1024, 1024),
        (1024, 1025),
        (1024, 3000),
        (64 * 1024, 70_000),
        (16 * 1024 * 1024, 5),
    ] {
        seeds.push((format!("seed-c{chunk_size}-n{len}"), seal(chunk_size, len)));
    }
    let three = seal(1024, 3000);
    let header_len = SealedHeader::parse(&three).unwrap().len();
    seeds.push(("seed-truncated".into(), three[..three.len() - 20].to_vec()));
    seeds.push(("seed-extended".into(), [&three[..], b"appended"].concat()));
    let mut reordered = three.clone();
    let sealed_chunk = 1024 + 16;
    let (first, rest) = reordered[header_len..].split_at_mut(sealed_chunk);
    first.swap_with_slice(&mut rest[..sealed_chunk]);
    seeds.push(("seed-reordered".into(), reordered));

    for (name, archive) in seeds {
        std::fs::write(dir.join(name), [&ops[..], &archive[..]].concat()).expect("write a seed");
    }
}

/// A deterministic archive: `len` pseudo-random bytes in chunks of `chunk_size`.
fn seal(chunk_size: u32, len: usize) -> Vec<u8> {
    let mut header = ArchiveHeader::new(
        archive_id(),
        Uuid::from_u128(2),
        "kek-fuzz".into(),
        vec![0xA5; 60],
    );
    header.chunk_size = chunk_size;
    header.nonce_prefix = [7; 7];
    let plain: Vec<u8> = (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3])
        .collect();
    let mut writer = SealedWriter::new(Vec::new(), &header, fuzz_keys()).unwrap();
    writer.write_all(&plain).unwrap();
    writer
        .finish(&serde_json::json!({ "kind": "fuzz seed", "bytes": len }))
        .unwrap()
        .inner
}
