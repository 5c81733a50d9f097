//! The sealed archive format through every read path: round trips at the sizes around the
//! chunk boundary with both writers, range reads, and every way an archive can be damaged —
//! each named as the right error with the right chunk.

use std::io::{Cursor, Read, Seek, SeekFrom, Write};

use fixtures::pseudo_random_bytes;
use storage::archive::{
    ArchiveError, ArchiveHeader, ArchiveKeys, AsyncSealedWriter, FileKey, RetentionKey,
    SealedHeader, SealedReader, SealedWriter,
};
use uuid::Uuid;

const CHUNK: usize = 64 * 1024;
const SIZES: [usize; 8] = [
    0,
    1,
    CHUNK - 1,
    CHUNK,
    CHUNK + 1,
    2 * CHUNK,
    3 * CHUNK + 17,
    5_000_000,
];

struct Kit {
    header: ArchiveHeader,
    keys: ArchiveKeys,
}

impl Kit {
    fn new() -> Self {
        let (id, file, retention) = (
            Uuid::new_v4(),
            FileKey::generate(),
            RetentionKey::generate(),
        );
        Self {
            header: ArchiveHeader::new(id, Uuid::new_v4(), "kek-0001".into(), vec![0xAA; 60]),
            keys: ArchiveKeys::derive(id, &file, &retention),
        }
    }

    fn manifest(len: usize) -> serde_json::Value {
        serde_json::json!({ "kind": "test", "bytes": len })
    }

    fn seal(&self, plain: &[u8]) -> Vec<u8> {
        let mut w = SealedWriter::new(Vec::new(), &self.header, &self.keys).unwrap();
        // Uneven writes exercise chunk assembly.
        for part in plain.chunks(7_777) {
            w.write_all(part).unwrap();
        }
        let sealed = w.finish(&Self::manifest(plain.len())).unwrap();
        assert_eq!(sealed.payload_len, plain.len() as u64);
        assert_eq!(sealed.sealed_len, sealed.inner.len() as u64);
        sealed.inner
    }

    fn reader(&self, archive: Vec<u8>) -> Result<SealedReader<Cursor<Vec<u8>>>, ArchiveError> {
        let mut src = Cursor::new(archive);
        let header = SealedHeader::read_from(&mut src)?;
        SealedReader::new(src, header, &self.keys)
    }

    fn verify(&self, archive: Vec<u8>) -> Result<u64, ArchiveError> {
        Ok(self.reader(archive)?.verify(|_| {})?.payload_len)
    }
}

#[test]
fn round_trips_at_every_size_around_the_chunk_boundary() {
    let kit = Kit::new();
    for &len in &SIZES {
        let plain = pseudo_random_bytes(len as u64, len);
        let archive = kit.seal(&plain);
        let mut reader = kit.reader(archive).unwrap();
        assert_eq!(reader.payload_len(), len as u64);
        assert_eq!(
            reader.layout().chunks,
            len.div_ceil(CHUNK).max(1) as u64,
            "len {len}"
        );
        let mut back = Vec::new();
        reader.read_to_end(&mut back).unwrap();
        assert!(back == plain, "round trip differs at len {len}");
        let report = reader.verify(|_| {}).unwrap();
        assert_eq!(report.manifest, Kit::manifest(len));
    }
}

#[tokio::test]
async fn async_writer_produces_the_same_format() {
    use tokio::io::AsyncWriteExt;
    let kit = Kit::new();
    for &len in &SIZES {
        let plain = pseudo_random_bytes(len as u64 + 1, len);
        let mut w = AsyncSealedWriter::new(Vec::new(), &kit.header, &kit.keys).unwrap();
        for part in plain.chunks(10_001) {
            w.write_all(part).await.unwrap();
        }
        let sealed = w.finish(&Kit::manifest(len)).await.unwrap();
        assert_eq!(sealed.sealed_len, sealed.inner.len() as u64);
        let mut back = Vec::new();
        kit.reader(sealed.inner)
            .unwrap()
            .read_to_end(&mut back)
            .unwrap();
        assert!(back == plain, "async round trip differs at len {len}");
    }
}

#[test]
fn range_reads_at_chunk_boundaries_decrypt_only_what_they_touch() {
    let kit = Kit::new();
    let len = 4 * CHUNK + 123;
    let plain = pseudo_random_bytes(99, len);
    let mut archive = kit.seal(&plain);
    // Corrupt chunk 3: ranges inside chunks 0..=2 must still read, proving random access.
    let layout = kit.reader(archive.clone()).unwrap().layout().to_owned();
    let bad = layout.chunk_range(3).start as usize + 10;
    archive[bad] ^= 0x40;
    let mut reader = kit.reader(archive).unwrap();
    let ranges = [
        (0, 1),
        (CHUNK - 1, 2),
        (CHUNK, CHUNK),
        (2 * CHUNK - 5, 10),
        (3 * CHUNK - 1, 1),
        (17, 2 * CHUNK),
    ];
    for (start, n) in ranges {
        reader.seek(SeekFrom::Start(start as u64)).unwrap();
        let mut got = vec![0u8; n];
        reader.read_exact(&mut got).unwrap();
        assert_eq!(got, plain[start..start + n], "range {start}+{n}");
    }
    reader.seek(SeekFrom::Start(3 * CHUNK as u64)).unwrap();
    let err = reader.read(&mut [0u8; 8]).unwrap_err();
    assert!(matches!(
        ArchiveError::from_io(err),
        ArchiveError::ChunkCorrupt { index: 3 }
    ));
    // The tail after the bad chunk, and seeking from the end.
    let end = reader.seek(SeekFrom::End(-123)).unwrap();
    assert_eq!(end, (4 * CHUNK) as u64);
    let mut tail = Vec::new();
    reader.read_to_end(&mut tail).unwrap();
    assert_eq!(tail, plain[4 * CHUNK..]);
    assert!(reader.seek(SeekFrom::Current(-(len as i64) - 1)).is_err());
    reader.seek(SeekFrom::Start(len as u64 + 10)).unwrap();
    assert_eq!(
        reader.read(&mut [0u8; 4]).unwrap(),
        0,
        "reads past the end are empty"
    );
}

fn three_chunk_archive(kit: &Kit) -> (Vec<u8>, storage::archive::ArchiveLayout) {
    let archive = kit.seal(&pseudo_random_bytes(5, 2 * CHUNK + 1000));
    let layout = *kit.reader(archive.clone()).unwrap().layout();
    (archive, layout)
}

fn slice(archive: &[u8], r: std::ops::Range<u64>) -> Vec<u8> {
    archive[r.start as usize..r.end as usize].to_vec()
}

#[test]
fn a_flipped_byte_anywhere_is_caught_and_chunks_are_named() {
    let kit = Kit::new();
    let (archive, layout) = three_chunk_archive(&kit);
    // Every byte position would take minutes; step through all regions densely.
    for pos in (0..archive.len())
        .step_by(997)
        .chain([archive.len() - 1, archive.len() - 17])
    {
        let mut bad = archive.clone();
        bad[pos] ^= 0x01;
        let err = kit
            .verify(bad)
            .expect_err(&format!("flip at {pos} went unnoticed"));
        let pos = pos as u64;
        if let Some(index) = (0..layout.chunks).find(|&i| layout.chunk_range(i).contains(&pos)) {
            assert!(
                matches!(err, ArchiveError::ChunkCorrupt { index: i } if i == index),
                "flip at {pos} in chunk {index} reported as {err}"
            );
        }
    }
}

#[test]
fn reordered_chunks_are_named_with_where_they_belong() {
    let kit = Kit::new();
    let (archive, layout) = three_chunk_archive(&kit);
    let (c0, c1) = (layout.chunk_range(0), layout.chunk_range(1));
    let mut swapped = archive.clone();
    let (a, b) = (slice(&archive, c0.clone()), slice(&archive, c1.clone()));
    swapped[c0.start as usize..c0.end as usize].copy_from_slice(&b);
    swapped[c1.start as usize..c1.end as usize].copy_from_slice(&a);
    let err = kit.verify(swapped).unwrap_err();
    assert!(
        matches!(
            err,
            ArchiveError::ChunkReordered {
                index: 0,
                belongs_at: 1
            }
        ),
        "{err}"
    );
}

#[test]
fn a_chunk_spliced_from_another_archive_is_corrupt() {
    let (kit, other) = (Kit::new(), Kit::new());
    let (archive, layout) = three_chunk_archive(&kit);
    let (foreign, _) = three_chunk_archive(&other);
    let r = layout.chunk_range(1);
    let mut spliced = archive.clone();
    spliced[r.start as usize..r.end as usize].copy_from_slice(&slice(&foreign, r.clone()));
    assert!(matches!(
        kit.verify(spliced).unwrap_err(),
        ArchiveError::ChunkCorrupt { index: 1 }
    ));
}

#[test]
fn truncation_is_named_wherever_the_cut_falls() {
    let kit = Kit::new();
    let (archive, layout) = three_chunk_archive(&kit);
    // Cut inside the payload, inside the manifest, inside the trailer, inside the header.
    for cut in [
        layout.chunk_range(1).start + 100,
        layout.manifest_offset + 3,
        archive.len() as u64 - 5,
        20,
        3,
    ] {
        let err = kit.verify(archive[..cut as usize].to_vec()).unwrap_err();
        assert!(
            matches!(err, ArchiveError::Truncated(_)),
            "cut at {cut}: {err}"
        );
    }
    assert!(matches!(
        kit.verify(Vec::new()).unwrap_err(),
        ArchiveError::NotAnArchive
    ));

    // Cut at a chunk boundary with manifest and trailer put back: the last chunk left
    // was not sealed as final.
    let tail = slice(&archive, layout.manifest_offset..archive.len() as u64);
    let mut cut = archive[..layout.chunk_range(2).start as usize].to_vec();
    cut.extend_from_slice(&tail);
    let err = kit.verify(cut).unwrap_err();
    assert!(
        matches!(&err, ArchiveError::Truncated(m) if m.contains("chunk 1")),
        "{err}"
    );
}

#[test]
fn extension_is_named_whether_chunks_or_bytes_are_added() {
    let kit = Kit::new();
    let (archive, layout) = three_chunk_archive(&kit);
    // A copy of chunk 1 inserted after the final chunk.
    let mut extended = archive[..layout.manifest_offset as usize].to_vec();
    extended.extend_from_slice(&slice(&archive, layout.chunk_range(1)));
    extended.extend_from_slice(&archive[layout.manifest_offset as usize..]);
    // The short final chunk now shares its slot with the start of the copy: slot 2 is
    // neither a chunk of this archive nor anything else.
    let err = kit.verify(extended).unwrap_err();
    assert!(
        matches!(err, ArchiveError::ChunkCorrupt { index: 2 }),
        "{err}"
    );

    let mut appended = archive.clone();
    appended.extend_from_slice(b"garbage after the end");
    assert!(matches!(
        kit.verify(appended).unwrap_err(),
        ArchiveError::TrailingData(21)
    ));
}

#[test]
fn final_chunk_marker_catches_a_full_chunk_appended_before_the_manifest() {
    // Payload of exactly two full chunks: appending a copy of a full non-final chunk makes
    // position 1 (sealed final) sit before another chunk.
    let kit = Kit::new();
    let archive = kit.seal(&pseudo_random_bytes(1, 2 * CHUNK));
    let layout = *kit.reader(archive.clone()).unwrap().layout();
    let mut extended = archive[..layout.manifest_offset as usize].to_vec();
    extended.extend_from_slice(&slice(&archive, layout.chunk_range(0)));
    extended.extend_from_slice(&archive[layout.manifest_offset as usize..]);
    let err = kit.verify(extended).unwrap_err();
    assert!(
        matches!(err, ArchiveError::Extended { index: 1, extra: 1 }),
        "{err}"
    );
}

#[test]
fn wrong_keys_and_header_edits_fail_before_any_plaintext() {
    let kit = Kit::new();
    let archive = kit.seal(b"secret");
    let other = Kit::new();
    let mut src = Cursor::new(archive.clone());
    let header = SealedHeader::read_from(&mut src).unwrap();
    assert!(matches!(
        SealedReader::new(src, header, &other.keys).err().unwrap(),
        ArchiveError::HeaderAuthFailed
    ));
    let mut edited = archive.clone();
    edited[12] ^= 0x01; // chunk size
    assert!(kit.verify(edited).is_err());
    let mut version = archive;
    version[8] = 9;
    assert!(matches!(
        kit.verify(version).unwrap_err(),
        ArchiveError::UnknownVersion(9)
    ));
}

#[test]
fn manifest_edits_and_swaps_are_caught() {
    let kit = Kit::new();
    let (archive, layout) = three_chunk_archive(&kit);
    let mut bad = archive.clone();
    bad[layout.manifest_offset as usize + 2] ^= 0x10;
    assert!(matches!(
        kit.verify(bad).unwrap_err(),
        ArchiveError::ManifestCorrupt
    ));
}

#[test]
fn an_unfinished_writer_leaves_an_archive_every_reader_calls_truncated() {
    let kit = Kit::new();
    let mut buf = Vec::new();
    {
        let mut w = SealedWriter::new(&mut buf, &kit.header, &kit.keys).unwrap();
        w.write_all(&pseudo_random_bytes(3, 3 * CHUNK)).unwrap();
        // dropped without finish()
    }
    assert!(matches!(
        kit.verify(buf).unwrap_err(),
        ArchiveError::Truncated(_)
    ));
}

#[test]
fn sealed_bytes_contain_no_plaintext() {
    let kit = Kit::new();
    let plain = b"CUSTOMER-IBAN-DE89370400440532013000 ".repeat(5000);
    let archive = kit.seal(&plain);
    assert!(!archive.windows(20).any(|w| w == &plain[..20]));
}

/// Splits `plain` the way different callers write: all at once (whole chunks sealed straight
/// from the caller's buffer), in small pieces (through the chunk buffer), and unaligned.
fn write_patterns(plain: &[u8]) -> Vec<Vec<&[u8]>> {
    let mut patterns = vec![vec![plain], plain.chunks(7_777).collect()];
    if !plain.is_empty() {
        let (one, rest) = plain.split_at(1);
        patterns.push(vec![one, rest]);
        let (a, b) = plain.split_at(plain.len() / 2);
        patterns.push(vec![a, b]);
    }
    patterns
}

#[tokio::test]
async fn every_write_pattern_and_both_writers_give_identical_bytes() {
    use tokio::io::AsyncWriteExt;
    let kit = Kit::new();
    for &len in &SIZES {
        let plain = pseudo_random_bytes(len as u64 + 2, len);
        let reference = kit.seal(&plain);
        for pattern in write_patterns(&plain) {
            let mut w = SealedWriter::new(Vec::new(), &kit.header, &kit.keys).unwrap();
            let mut a = AsyncSealedWriter::new(Vec::new(), &kit.header, &kit.keys).unwrap();
            for part in &pattern {
                w.write_all(part).unwrap();
                a.write_all(part).await.unwrap();
            }
            let sync = w.finish(&Kit::manifest(len)).unwrap().inner;
            let asynchronous = a.finish(&Kit::manifest(len)).await.unwrap().inner;
            assert!(
                sync == reference,
                "len {len}, {} writes: sync differs",
                pattern.len()
            );
            assert!(
                asynchronous == reference,
                "len {len}, {} writes: async differs",
                pattern.len()
            );
        }
    }
}

#[test]
fn every_read_size_gives_the_same_plaintext() {
    let kit = Kit::new();
    let plain = pseudo_random_bytes(8, 3 * CHUNK + 999);
    for read_size in [1, 1000, CHUNK - 1, CHUNK, CHUNK + 1, 5 * CHUNK] {
        let mut reader = kit.reader(kit.seal(&plain)).unwrap();
        let mut back = Vec::new();
        let mut buf = vec![0u8; read_size];
        loop {
            let n = reader.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            back.extend_from_slice(&buf[..n]);
        }
        assert!(back == plain, "reads of {read_size} bytes differ");
    }
    // A whole-chunk read of a damaged chunk still names it.
    let mut archive = kit.seal(&plain);
    let layout = *kit.reader(archive.clone()).unwrap().layout();
    archive[layout.chunk_range(1).start as usize] ^= 1;
    let mut reader = kit.reader(archive).unwrap();
    reader.seek(SeekFrom::Start(CHUNK as u64)).unwrap();
    let err = reader.read(&mut vec![0u8; CHUNK]).unwrap_err();
    assert!(matches!(
        ArchiveError::from_io(err),
        ArchiveError::ChunkCorrupt { index: 1 }
    ));
}

#[test]
fn read_to_end_keeps_what_the_vec_held_and_continues_from_any_position() {
    let kit = Kit::new();
    let plain = pseudo_random_bytes(12, 3 * CHUNK + 5);
    let mut reader = kit.reader(kit.seal(&plain)).unwrap();
    let mut out = b"prefix".to_vec();
    assert_eq!(reader.read_to_end(&mut out).unwrap(), plain.len());
    assert!(out[..6] == *b"prefix" && out[6..] == plain[..]);
    for start in [1, CHUNK as u64 - 1, CHUNK as u64, 3 * CHUNK as u64 + 4] {
        reader.seek(SeekFrom::Start(start)).unwrap();
        let mut small = [0u8; 3];
        let n = reader.read(&mut small).unwrap();
        let mut rest = Vec::new();
        reader.read_to_end(&mut rest).unwrap();
        let from = start as usize;
        assert_eq!(small[..n], plain[from..from + n]);
        assert!(rest == plain[from + n..], "read_to_end after {start}+{n}");
    }
    let mut archive = kit.seal(&plain);
    let layout = *kit.reader(archive.clone()).unwrap().layout();
    archive[layout.chunk_range(2).start as usize + 7] ^= 4;
    let mut out = Vec::new();
    let err = kit
        .reader(archive)
        .unwrap()
        .read_to_end(&mut out)
        .unwrap_err();
    assert!(matches!(
        ArchiveError::from_io(err),
        ArchiveError::ChunkCorrupt { index: 2 }
    ));
    assert!(
        out == plain[..2 * CHUNK],
        "the chunks before the damage are delivered"
    );
}
