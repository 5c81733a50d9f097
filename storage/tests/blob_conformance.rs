//! One conformance suite for `storage::blob`, run against every backend: the local filesystem
//! (in a temporary directory) and a real S3-compatible server (`s3s-fs`) on loopback.
//!
//! Each case in [`suite`] takes a [`Backend`] (a `BlobStore` plus a way to look at what the
//! backend left on disk); the `conformance!` macro turns every case into one test per backend:
//! `local_fs::<case>` and `s3::<case>`.

#[path = "common/s3.rs"]
mod s3_server;

use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use storage::blob::BlobStore;
use tokio::io::{AsyncRead, ReadBuf};

use s3_server::S3Server;

/// A blob store under test and the directory its backend keeps data in.
struct Backend {
    store: BlobStore,
    kind: BackendKind,
}

enum BackendKind {
    Local {
        root: PathBuf,
        _dir: tempfile::TempDir,
    },
    S3 {
        server: S3Server,
    },
}

impl Backend {
    /// The local default: `BlobStore::open(data_dir, None)` → `data_dir/blobs`.
    fn local() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let store = BlobStore::open(dir.path(), None)?;
        Ok(Self {
            store,
            kind: BackendKind::Local {
                root: dir.path().join("blobs"),
                _dir: dir,
            },
        })
    }

    /// An `s3s-fs` on loopback with a fresh bucket; the store sits under a key prefix, as a
    /// bank's shared bucket would be used. `None` when the server binary is absent.
    fn s3() -> anyhow::Result<Option<Self>> {
        let Some(server) = S3Server::start()? else {
            return Ok(None);
        };
        let store = server.store("idv-recordings", "tenant-a/blobs")?;
        Ok(Some(Self {
            store,
            kind: BackendKind::S3 { server },
        }))
    }

    /// Files of unfinished uploads the backend still keeps on disk.
    fn upload_leftovers(&self) -> Vec<PathBuf> {
        match &self.kind {
            BackendKind::Local { root, .. } => {
                // The local store stages uploads as `<name>#<n>` next to the destination.
                let mut found = Vec::new();
                let mut dirs = vec![root.clone()];
                while let Some(dir) = dirs.pop() {
                    for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                        let path = entry.path();
                        if path.is_dir() {
                            dirs.push(path);
                        } else if path.to_string_lossy().contains('#') {
                            found.push(path);
                        }
                    }
                }
                found
            }
            BackendKind::S3 { server } => server.upload_leftovers(),
        }
    }

    /// Waits (briefly: aborts of dropped writers run in the background) until no unfinished
    /// upload is left on disk.
    async fn assert_no_upload_leftovers(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let leftovers = self.upload_leftovers();
            if leftovers.is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("unfinished uploads left on disk: {leftovers:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// S3's minimum part size, which is also the store's default part size.
const PART: usize = 5 * 1024 * 1024;
const MIB: usize = 1024 * 1024;

/// Byte `offset` of the deterministic test stream `seed` (splitmix64 of each 8-byte word).
fn pattern_fill(seed: u64, offset: u64, out: &mut [u8]) {
    for (i, byte) in out.iter_mut().enumerate() {
        let at = offset + i as u64;
        let mut z = (seed ^ (at / 8)).wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        *byte = (z >> (8 * (at % 8))) as u8;
    }
}

fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut data = vec![0; len];
    pattern_fill(seed, 0, &mut data);
    data
}

/// Yields `len` pattern bytes, or fails with an I/O error once `fail_at` bytes were yielded.
struct PatternReader {
    seed: u64,
    position: u64,
    len: u64,
    fail_at: Option<u64>,
}

impl PatternReader {
    fn new(seed: u64, len: u64) -> Self {
        Self {
            seed,
            position: 0,
            len,
            fail_at: None,
        }
    }

    fn failing_at(seed: u64, fail_at: u64) -> Self {
        Self {
            seed,
            position: 0,
            len: u64::MAX,
            fail_at: Some(fail_at),
        }
    }
}

impl AsyncRead for PatternReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut end = self.len;
        if let Some(fail_at) = self.fail_at {
            if self.position >= fail_at {
                return Poll::Ready(Err(io::Error::other("camera feed lost")));
            }
            end = end.min(fail_at);
        }
        let n = (buf.remaining() as u64)
            .min(64 * 1024)
            .min(end - self.position) as usize;
        let mut chunk = vec![0; n];
        pattern_fill(self.seed, self.position, &mut chunk);
        buf.put_slice(&chunk);
        self.position += n as u64;
        Poll::Ready(Ok(()))
    }
}

/// Fails with the first differing offset instead of printing megabytes.
fn ensure_same(expected: &[u8], actual: &[u8], what: &str) -> anyhow::Result<()> {
    if let Some(at) = expected.iter().zip(actual).position(|(a, b)| a != b) {
        bail!("{what}: first difference at byte {at}");
    }
    ensure!(
        expected.len() == actual.len(),
        "{what}: expected {} bytes, got {}",
        expected.len(),
        actual.len()
    );
    Ok(())
}

async fn read_all(store: &BlobStore, key: &str) -> anyhow::Result<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut stream = store.get_stream(key).await?;
    let mut data = Vec::with_capacity(stream.size() as usize);
    stream.read_to_end(&mut data).await?;
    ensure!(
        data.len() as u64 == stream.size(),
        "stream size disagrees with its bytes"
    );
    Ok(data)
}

/// Streams `key` back and compares it with `len` bytes of pattern `seed`, without holding it.
async fn ensure_pattern_stored(
    store: &BlobStore,
    key: &str,
    seed: u64,
    len: u64,
) -> anyhow::Result<()> {
    use tokio::io::AsyncReadExt;
    let mut stream = store.get_stream(key).await?;
    ensure!(stream.size() == len, "size {} != {len}", stream.size());
    let mut buf = vec![0; 256 * 1024];
    let mut expected = vec![0; buf.len()];
    let mut offset = 0_u64;
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        pattern_fill(seed, offset, &mut expected[..n]);
        ensure_same(&expected[..n], &buf[..n], &format!("{key} at {offset}"))?;
        offset += n as u64;
    }
    ensure!(offset == len, "{key}: read {offset} bytes, expected {len}");
    Ok(())
}

fn is_not_found(error: &storage::blob::BlobError, key: &str) -> bool {
    matches!(error, storage::blob::BlobError::NotFound { key: k } if k == key)
}

mod suite {
    use super::*;
    use std::io::{Read, Seek, SeekFrom};
    use storage::blob::{BlobError, UploadLimits};
    use tokio::io::AsyncWriteExt;

    /// Sizes around S3's 5 MiB part boundary and a blob of several parts, written through
    /// the `AsyncWrite` writer in odd-sized writes, read back whole and by size.
    pub async fn round_trips_at_part_boundaries(backend: &Backend) -> anyhow::Result<()> {
        let store = &backend.store;
        for (seed, len) in [
            (1, 0),
            (2, 1),
            (3, PART - 1),
            (4, PART),
            (5, PART + 1),
            (6, 4 * PART + 12_345),
        ] {
            let key = format!("recordings/2026/11/size-{len}.idvr");
            let data = pattern(seed, len);
            let mut writer = store.writer(&key)?;
            for chunk in data.chunks(100_003) {
                writer.write_all(chunk).await?;
            }
            ensure!(writer.bytes_written() == len as u64);
            let stored = writer.finish().await?;
            ensure!(stored == len as u64, "finish reported {stored} for {len}");
            ensure!(store.size(&key).await? == len as u64, "size of {key}");
            ensure_same(&data, &read_all(store, &key).await?, &key)?;
        }
        backend.assert_no_upload_leftovers().await
    }

    /// `put_stream` from a reader, small and multipart; `shutdown` finishes like `finish`.
    pub async fn put_stream_round_trips(backend: &Backend) -> anyhow::Result<()> {
        let store = &backend.store;
        for (seed, len) in [(10, 0_u64), (11, 70_000), (12, 2 * PART as u64 + 7)] {
            let key = format!("cti/audio-{len}.wav");
            let stored = store
                .put_stream(&key, PatternReader::new(seed, len))
                .await?;
            ensure!(stored == len, "put_stream reported {stored} for {len}");
            ensure_pattern_stored(store, &key, seed, len).await?;
        }
        let mut writer = store.writer("cti/shutdown.wav")?;
        writer.write_all(&pattern(13, PART + 99)).await?;
        writer.shutdown().await?;
        ensure!(writer.finish().await? == PART as u64 + 99);
        ensure_pattern_stored(store, "cti/shutdown.wav", 13, PART as u64 + 99).await
    }

    /// 64 MiB through the writer never holds more than the part being filled plus the parts
    /// in flight, with small writes (`tokio::io::copy`) and with one huge write.
    pub async fn streaming_upload_memory_stays_bounded(backend: &Backend) -> anyhow::Result<()> {
        ensure!(backend.store.upload_limits().max_buffered_bytes() == 5 * PART);
        // One part in flight: the tightest bound, so any missing back-pressure shows.
        let limits = UploadLimits::new(PART, 1)?;
        let store = &backend.store.clone().with_upload_limits(limits);
        let bound = limits.max_buffered_bytes();
        let len = 64 * MIB as u64;

        let mut writer = store.writer("recordings/long-session.idvr")?;
        let copied = tokio::io::copy(&mut PatternReader::new(20, len), &mut writer).await?;
        ensure!(copied == len);
        let peak = writer.peak_buffered_bytes();
        ensure!(peak <= bound, "writer held {peak} bytes, bound is {bound}");
        ensure!(
            peak >= limits.part_size(),
            "peak {peak} is below one part: not measured?"
        );
        ensure!(writer.finish().await? == len);
        ensure_pattern_stored(store, "recordings/long-session.idvr", 20, len).await?;

        // One write of 40 MiB is accepted a part at a time, not copied in whole.
        let big = pattern(21, 40 * MIB);
        let mut writer = store.writer("recordings/one-write.idvr")?;
        writer.write_all(&big).await?;
        let peak = writer.peak_buffered_bytes();
        ensure!(
            peak <= bound,
            "writer held {peak} bytes for one big write, bound is {bound}"
        );
        writer.finish().await?;
        ensure_same(
            &big,
            &read_all(store, "recordings/one-write.idvr").await?,
            "one write",
        )
    }

    /// Exact ranges anywhere (first byte, last byte, across part boundaries), empty ranges,
    /// and clear errors for ranges past the end or backwards.
    pub async fn get_range_returns_exact_bytes(backend: &Backend) -> anyhow::Result<()> {
        let store = &backend.store;
        let key = "recordings/ranges.idvr";
        let len = PART + MIB + 3;
        let data = pattern(30, len);
        store.put_stream(key, &data[..]).await?;
        let n = len as u64;
        let part = PART as u64;
        for range in [
            0..1,
            n - 1..n,
            0..n,
            part - 10..part + 10,
            12_345..678_901,
            65_536..131_072,
            5..5,
            n..n,
        ] {
            let bytes = store.get_range(key, range.clone()).await?;
            let expected = &data[range.start as usize..range.end as usize];
            ensure_same(expected, &bytes, &format!("range {range:?}"))?;
        }
        for range in [n - 1..n + 1, n + 10..n + 20, n + 1..n + 1] {
            match store.get_range(key, range.clone()).await {
                Err(BlobError::RangeOutOfBounds { size, .. }) => {
                    ensure!(size == n, "reported size {size} for {range:?}")
                }
                other => bail!("range {range:?} past the end gave {other:?}"),
            }
        }
        #[allow(clippy::reversed_empty_ranges)]
        let backwards = 10..5;
        match store.get_range(key, backwards).await {
            Err(BlobError::InvalidRange {
                start: 10, end: 5, ..
            }) => Ok(()),
            other => bail!("backwards range gave {other:?}"),
        }
    }

    /// Missing blobs are `NotFound` naming the key, on every read path.
    pub async fn missing_blobs_are_not_found(backend: &Backend) -> anyhow::Result<()> {
        let store = &backend.store;
        let key = "recordings/2026/11/never-written.idvr";
        let error = store.size(key).await.unwrap_err();
        ensure!(is_not_found(&error, key), "size: {error:?}");
        ensure!(
            error.to_string().contains(key),
            "message lacks the key: {error}"
        );
        let error = store.get_range(key, 0..10).await.unwrap_err();
        ensure!(is_not_found(&error, key), "get_range: {error:?}");
        let error = store.get_stream(key).await.unwrap_err();
        ensure!(is_not_found(&error, key), "get_stream: {error:?}");
        let mut reader = store.blocking_reader(key, tokio::runtime::Handle::current())?;
        let error = tokio::task::spawn_blocking(move || {
            let mut buf = [0; 4];
            reader.read(&mut buf).unwrap_err()
        })
        .await?;
        ensure!(
            error.kind() == io::ErrorKind::NotFound,
            "blocking read: {error:?}"
        );
        ensure!(store.list("recordings").await?.is_empty());
        Ok(())
    }

    /// Listing matches whole segments under the prefix, sorted, with sizes.
    pub async fn list_by_prefix(backend: &Backend) -> anyhow::Result<()> {
        let store = &backend.store;
        for (key, len) in [
            ("recordings/2026/11/b.idvr", 3),
            ("recordings/2026/11/a.idvr", 1),
            ("recordings/2026/12/c.idvr", PART + 1),
            ("recordings/20261/d.idvr", 4),
            ("cti/e.wav", 0),
        ] {
            store.put_stream(key, &pattern(40, len)[..]).await?;
        }
        let keys = |blobs: Vec<storage::blob::BlobMeta>| {
            blobs
                .into_iter()
                .map(|b| (b.key, b.size))
                .collect::<Vec<_>>()
        };
        let month = keys(store.list("recordings/2026/11").await?);
        ensure!(
            month
                == [
                    ("recordings/2026/11/a.idvr".to_owned(), 1),
                    ("recordings/2026/11/b.idvr".to_owned(), 3)
                ],
            "{month:?}"
        );
        ensure!(keys(store.list("recordings/2026/11/").await?) == month);
        let year = keys(store.list("recordings/2026").await?);
        ensure!(year.len() == 3, "whole segments only: {year:?}");
        ensure!(year[2] == ("recordings/2026/12/c.idvr".to_owned(), PART as u64 + 1));
        let all = keys(store.list("").await?);
        let all_keys: Vec<&str> = all.iter().map(|(k, _)| k.as_str()).collect();
        ensure!(
            all_keys
                == [
                    "cti/e.wav",
                    "recordings/2026/11/a.idvr",
                    "recordings/2026/11/b.idvr",
                    "recordings/2026/12/c.idvr",
                    "recordings/20261/d.idvr"
                ],
            "{all_keys:?}"
        );
        ensure!(store.list("nothing/here").await?.is_empty());
        let blob_as_prefix = store.list("recordings/2026/11/a.idvr").await?;
        ensure!(
            blob_as_prefix.is_empty(),
            "a blob is not a folder: {blob_as_prefix:?}"
        );
        Ok(())
    }

    /// Delete removes the blob; deleting again (or something never stored) succeeds.
    pub async fn delete_removes_blobs(backend: &Backend) -> anyhow::Result<()> {
        let store = &backend.store;
        let key = "recordings/2026/11/retired.idvr";
        store.put_stream(key, &pattern(50, 1000)[..]).await?;
        store
            .put_stream("recordings/2026/11/kept.idvr", &b"kept"[..])
            .await?;
        store.delete(key).await?;
        let error = store.size(key).await.unwrap_err();
        ensure!(is_not_found(&error, key), "{error:?}");
        store.delete(key).await?;
        store.delete("recordings/never.idvr").await?;
        let left = store.list("recordings").await?;
        ensure!(
            left.len() == 1 && left[0].key == "recordings/2026/11/kept.idvr",
            "{left:?}"
        );
        Ok(())
    }

    /// An explicit abort, small or multipart, leaves nothing under the key and no parts on disk;
    /// an earlier blob under the key stays intact; a dropped writer aborts in the background.
    pub async fn aborted_uploads_leave_nothing(backend: &Backend) -> anyhow::Result<()> {
        let store = &backend.store;

        let mut small = store.writer("recordings/small.idvr")?;
        small.write_all(b"half a header").await?;
        small.abort().await?;

        let mut large = store.writer("recordings/large.idvr")?;
        large.write_all(&pattern(60, 2 * PART + 5)).await?;
        large.abort().await?;

        let mut dropped = store.writer("recordings/dropped.idvr")?;
        dropped.write_all(&pattern(61, 2 * PART + 5)).await?;
        drop(dropped);

        for key in [
            "recordings/small.idvr",
            "recordings/large.idvr",
            "recordings/dropped.idvr",
        ] {
            let error = store.size(key).await.unwrap_err();
            ensure!(is_not_found(&error, key), "{key}: {error:?}");
        }
        ensure!(store.list("").await?.is_empty());
        backend.assert_no_upload_leftovers().await?;

        let key = "recordings/kept.idvr";
        let old = pattern(62, PART + 10);
        store.put_stream(key, &old[..]).await?;
        let mut replacement = store.writer(key)?;
        replacement.write_all(&pattern(63, 3 * PART)).await?;
        replacement.abort().await?;
        ensure_same(
            &old,
            &read_all(store, key).await?,
            "blob after aborted overwrite",
        )?;
        backend.assert_no_upload_leftovers().await
    }

    /// A source that fails halfway aborts the upload: an `Io` error naming the key, nothing
    /// stored (an earlier blob stays), no parts left behind.
    pub async fn failing_source_aborts_upload(backend: &Backend) -> anyhow::Result<()> {
        let store = &backend.store;
        let key = "recordings/2026/11/interrupted.idvr";
        for fail_at in [1000_u64, 7 * MIB as u64] {
            let error = store
                .put_stream(key, PatternReader::failing_at(70, fail_at))
                .await
                .unwrap_err();
            ensure!(
                matches!(&error, BlobError::Io { key: k, .. } if k == key),
                "{error:?}"
            );
            ensure!(error.to_string().contains("nothing was stored"), "{error}");
            let error = store.size(key).await.unwrap_err();
            ensure!(
                is_not_found(&error, key),
                "after failing at {fail_at}: {error:?}"
            );
        }
        let old = pattern(71, 4096);
        store.put_stream(key, &old[..]).await?;
        store
            .put_stream(key, PatternReader::failing_at(72, 11 * MIB as u64))
            .await
            .unwrap_err();
        ensure_same(
            &old,
            &read_all(store, key).await?,
            "blob after failed overwrite",
        )?;
        backend.assert_no_upload_leftovers().await
    }

    /// While a new version uploads, readers see the old one whole; after `finish`, the new one.
    pub async fn overwrite_replaces_atomically(backend: &Backend) -> anyhow::Result<()> {
        let store = &backend.store;
        let key = "recordings/rewrapped.idvr";
        let first = pattern(80, PART + 1);
        store.put_stream(key, &first[..]).await?;

        let second = pattern(81, 3 * PART + 17);
        let mut writer = store.writer(key)?;
        writer.write_all(&second[..2 * PART + 3]).await?;
        ensure!(
            store.size(key).await? == first.len() as u64,
            "size changed mid-upload"
        );
        ensure_same(
            &first,
            &read_all(store, key).await?,
            "old version mid-upload",
        )?;
        writer.write_all(&second[2 * PART + 3..]).await?;
        writer.finish().await?;
        ensure_same(&second, &read_all(store, key).await?, "new version")?;

        let third = pattern(82, 10);
        store.put_stream(key, &third[..]).await?;
        ensure!(store.size(key).await? == 10);
        ensure_same(&third, &read_all(store, key).await?, "small over large")?;
        ensure!(store.list("recordings").await?.len() == 1);
        backend.assert_no_upload_leftovers().await
    }

    /// Keys that are not plain relative paths are refused by every operation, before any
    /// request, and nothing is created.
    pub async fn invalid_keys_are_rejected(backend: &Backend) -> anyhow::Result<()> {
        let store = &backend.store;
        let handle = tokio::runtime::Handle::current();
        let invalid = |result: Result<(), BlobError>, key: &str, op: &str| match result {
            Err(BlobError::InvalidKey { key: k, .. }) if k == key => Ok(()),
            other => bail!("{op}({key:?}) gave {other:?}"),
        };
        for key in [
            "",
            "/etc/passwd",
            "..",
            "../outside.idvr",
            "recordings/../../outside.idvr",
            "recordings/./a.idvr",
            "recordings//a.idvr",
            "recordings/",
            "recordings\\a.idvr",
            "recordings/a\n.idvr",
            "recordings/a\u{0}.idvr",
            "recordings/a#1",
        ] {
            invalid(store.writer(key).map(drop), key, "writer")?;
            invalid(
                store.put_stream(key, &b"x"[..]).await.map(drop),
                key,
                "put_stream",
            )?;
            invalid(store.get_range(key, 0..1).await.map(drop), key, "get_range")?;
            invalid(store.get_stream(key).await.map(drop), key, "get_stream")?;
            invalid(store.size(key).await.map(drop), key, "size")?;
            invalid(store.delete(key).await, key, "delete")?;
            invalid(
                store.blocking_reader(key, handle.clone()).map(drop),
                key,
                "blocking_reader",
            )?;
        }
        invalid(store.list("../x").await.map(drop), "../x", "list")?;
        let message = store.size("../x").await.unwrap_err().to_string();
        ensure!(message.contains("relative path"), "{message}");
        ensure!(store.list("").await?.is_empty(), "something was created");
        Ok(())
    }

    /// The blocking `Read + Seek` view gives the blob's bytes from anywhere: whole, from the
    /// start, middle and end, across read-ahead windows, past the end; and it refuses to mix
    /// two versions when the blob is replaced mid-read.
    pub async fn blocking_reader_reads_and_seeks(backend: &Backend) -> anyhow::Result<()> {
        let store = backend.store.clone();
        let key = "recordings/playback.idvr";
        let data = pattern(90, 700_001);
        store.put_stream(key, &data[..]).await?;
        let handle = tokio::runtime::Handle::current();

        for read_ahead in [storage::blob::DEFAULT_READ_AHEAD, 1000] {
            let reader = store
                .blocking_reader(key, handle.clone())?
                .with_read_ahead(read_ahead);
            let data = data.clone();
            tokio::task::spawn_blocking(move || check_read_seek(reader, &data))
                .await?
                .with_context(|| format!("read-ahead {read_ahead}"))?;
        }

        // Replaced mid-read: the next fetch must fail rather than splice two versions.
        let mut reader = store.blocking_reader(key, handle.clone())?;
        let mut head = vec![0; 1000];
        let mut reader =
            tokio::task::spawn_blocking(move || reader.read_exact(&mut head).map(|()| reader))
                .await??;
        store.put_stream(key, &pattern(91, 700_001)[..]).await?;
        let error = tokio::task::spawn_blocking(move || {
            reader.seek(SeekFrom::Start(600_000))?;
            let mut buf = vec![0; 100];
            reader.read_exact(&mut buf)
        })
        .await?
        .unwrap_err();
        let inner = error.get_ref().map(ToString::to_string).unwrap_or_default();
        ensure!(
            inner.contains("replaced while it was being read"),
            "{error:?}"
        );
        Ok(())
    }

    fn check_read_seek(mut reader: storage::blob::BlobReader, data: &[u8]) -> anyhow::Result<()> {
        let n = data.len() as u64;
        ensure!(reader.size()? == n);

        let mut whole = Vec::new();
        reader.read_to_end(&mut whole)?;
        ensure_same(data, &whole, "read_to_end")?;
        ensure!(reader.read(&mut [0; 8])? == 0, "read at the end");

        ensure!(reader.seek(SeekFrom::Start(0))? == 0);
        let mut buf = vec![0; 10];
        reader.read_exact(&mut buf)?;
        ensure_same(&data[..10], &buf, "start")?;

        // Across the default 256 KiB window edge, and a read larger than the window.
        for (at, len) in [(262_144 - 5, 10), (n / 2, 4096), (1, 600_000)] {
            ensure!(reader.seek(SeekFrom::Start(at))? == at);
            let mut buf = vec![0; len];
            reader.read_exact(&mut buf)?;
            ensure_same(
                &data[at as usize..at as usize + len],
                &buf,
                &format!("at {at}"),
            )?;
        }

        ensure!(reader.seek(SeekFrom::End(-1))? == n - 1);
        let mut last = [0; 1];
        reader.read_exact(&mut last)?;
        ensure!(last[0] == data[data.len() - 1], "last byte");
        ensure!(reader.stream_position()? == n);
        ensure!(reader.seek(SeekFrom::End(0))? == n);
        ensure!(reader.read(&mut [0; 8])? == 0);
        ensure!(reader.seek(SeekFrom::Current(-(n as i64) + 3))? == 3);
        reader.read_exact(&mut buf)?;
        ensure_same(&data[3..13], &buf, "relative seek")?;
        ensure!(reader.seek(SeekFrom::Start(n + 100))? == n + 100);
        ensure!(reader.read(&mut [0; 8])? == 0, "read past the end");
        let error = reader.seek(SeekFrom::End(-(n as i64) - 1)).unwrap_err();
        ensure!(error.kind() == io::ErrorKind::InvalidInput, "{error:?}");

        // A fixed walk of chunk-sized reads at scattered offsets, as archive playback does.
        let mut at = 17_u64;
        for step in 0..64_u64 {
            at = (at * 7_919 + step * 104_729) % n;
            let len = ((step * 4_099) % 70_000 + 1).min(n - at) as usize;
            reader.seek(SeekFrom::Start(at))?;
            let mut buf = vec![0; len];
            reader.read_exact(&mut buf)?;
            ensure_same(
                &data[at as usize..at as usize + len],
                &buf,
                &format!("walk at {at}"),
            )?;
        }
        Ok(())
    }
}

macro_rules! conformance {
    ($($case:ident),+ $(,)?) => {
        /// The suite on the local filesystem, in a temporary data directory.
        mod local_fs {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() -> anyhow::Result<()> {
                    let backend = super::Backend::local()?;
                    super::suite::$case(&backend).await
                }
            )+
        }

        /// The suite on `s3s-fs` on loopback; skipped (with a note) when it is not installed.
        mod s3 {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() -> anyhow::Result<()> {
                    let Some(backend) = super::Backend::s3()? else {
                        return Ok(());
                    };
                    super::suite::$case(&backend).await
                }
            )+
        }
    };
}

conformance!(
    round_trips_at_part_boundaries,
    put_stream_round_trips,
    streaming_upload_memory_stays_bounded,
    get_range_returns_exact_bytes,
    missing_blobs_are_not_found,
    list_by_prefix,
    delete_removes_blobs,
    aborted_uploads_leave_nothing,
    failing_source_aborts_upload,
    overwrite_replaces_atomically,
    invalid_keys_are_rejected,
    blocking_reader_reads_and_seeks,
);

/// Blobs under one S3 prefix are invisible to a store on another prefix of the same bucket,
/// and `from_url`-style descriptions never carry credentials.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_prefixes_isolate_stores() -> anyhow::Result<()> {
    let Some(server) = S3Server::start()? else {
        return Ok(());
    };
    let tenant_a = server.store("shared-bucket", "tenant-a")?;
    let tenant_b = BlobStore::s3(server.options("shared-bucket", "tenant-b"))?;
    tenant_a.put_stream("recordings/x.idvr", &b"a"[..]).await?;
    tenant_b.put_stream("recordings/x.idvr", &b"bb"[..]).await?;
    ensure!(tenant_a.size("recordings/x.idvr").await? == 1);
    ensure!(tenant_b.size("recordings/x.idvr").await? == 2);
    ensure!(tenant_a.list("").await?.len() == 1);
    let description = tenant_a.description();
    ensure!(
        description.starts_with("s3://shared-bucket/tenant-a"),
        "{description}"
    );
    let options = server.options("shared-bucket", "tenant-a");
    let secret = options.secret_access_key.clone().unwrap_or_default();
    ensure!(!description.contains(&secret) && !format!("{tenant_a:?}").contains(&secret));
    Ok(())
}

/// Wrong credentials fail with advice about them, not with a generic error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_wrong_credentials_are_reported() -> anyhow::Result<()> {
    let Some(server) = S3Server::start()? else {
        return Ok(());
    };
    server.create_bucket("idv-recordings")?;
    let mut options = server.options("idv-recordings", "");
    options.secret_access_key = Some("not-the-secret".to_owned());
    let store = BlobStore::s3(options)?;
    let error = store.size("recordings/x.idvr").await.unwrap_err();
    ensure!(
        matches!(error, storage::blob::BlobError::AccessDenied { .. }),
        "{error:?}"
    );
    ensure!(
        error.to_string().contains("AWS_SECRET_ACCESS_KEY"),
        "{error}"
    );
    Ok(())
}

/// `file:///abs/path` URLs reach the same local store as `BlobStore::local`.
#[tokio::test]
async fn file_urls_open_the_local_store() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("custom blobs");
    let url = url_for(&root);
    let by_url = BlobStore::from_url(&url)?;
    by_url.put_stream("recordings/a.idvr", &b"abc"[..]).await?;
    let by_path = BlobStore::local(&root)?;
    ensure!(by_path.get_range("recordings/a.idvr", 0..3).await? == "abc");
    ensure!(
        root.join("recordings/a.idvr").is_file(),
        "not stored where the URL points"
    );
    let not_a_dir = dir.path().join("plain-file");
    std::fs::write(&not_a_dir, "x")?;
    let error = BlobStore::local(&not_a_dir).unwrap_err();
    ensure!(
        matches!(error, storage::blob::BlobError::LocalRoot { .. }),
        "{error:?}"
    );
    ensure!(error.to_string().contains("data directory"), "{error}");
    let message = BlobStore::from_url("ftp://host/x").unwrap_err().to_string();
    ensure!(
        message.contains("file://") && message.contains("s3://"),
        "{message}"
    );
    Ok(())
}

fn url_for(path: &std::path::Path) -> String {
    let text = path.to_string_lossy().replace(' ', "%20");
    format!("file://{text}")
}
