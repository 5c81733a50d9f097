//! Reading blobs: [`BlobStream`], an async stream of a whole blob, and [`BlobReader`], a
//! blocking `Read + Seek` view for code that runs on a blocking thread (the sealed-archive
//! reader seeks to 64 KiB chunks anywhere in an archive).
//!
//! `BlobReader` is not `object_store`'s `BufReader` behind tokio's `SyncIoBridge` because that
//! reader drops its buffer on every seek, even `stream_position()`, so chunk-by-chunk playback
//! would cost one request per chunk.

use std::io::{self, Read, Seek, SeekFrom};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::path::Path;
use tokio::io::{AsyncRead, ReadBuf};
use tokio_util::io::StreamReader;

use super::BlobStore;
use super::error::Result;

/// Default read-ahead of a [`BlobReader`]: four 64 KiB archive chunks per request.
pub const DEFAULT_READ_AHEAD: usize = 256 * 1024;

/// A whole blob as a tokio [`AsyncRead`], fetched as it is read.
///
/// Errors met mid-stream come out of `read` as `std::io::Error`s wrapping a
/// [`BlobError`](super::BlobError).
pub struct BlobStream {
    inner: StreamReader<BoxStream<'static, io::Result<Bytes>>, Bytes>,
    size: u64,
}

impl std::fmt::Debug for BlobStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobStream")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl BlobStream {
    pub(crate) fn new(stream: BoxStream<'static, io::Result<Bytes>>, size: u64) -> Self {
        Self {
            inner: StreamReader::new(stream),
            size,
        }
    }

    /// The blob's size in bytes, as the store reported it when the stream opened.
    pub fn size(&self) -> u64 {
        self.size
    }
}

impl AsyncRead for BlobStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

/// A blocking `Read + Seek` view of one blob.
///
/// Use it on a blocking thread (`tokio::task::spawn_blocking` or a plain thread): each fetch
/// runs on the runtime behind the handle given to [`BlobStore::blocking_reader`] and blocks
/// until it is done. Like tokio's `SyncIoBridge`, calling it on an async worker thread panics.
///
/// It keeps one read-ahead window (at least [`DEFAULT_READ_AHEAD`] bytes, see
/// [`with_read_ahead`](Self::with_read_ahead)) and fetches a new one with a ranged GET only when
/// a read falls outside it. Seeking just moves the cursor, so seeking within the window, or
/// asking for the position, costs no request.
///
/// The blob's size and ETag are looked up on the first read (or seek from the end); a missing
/// blob gives an error of kind [`io::ErrorKind::NotFound`] wrapping
/// [`BlobError::NotFound`](super::BlobError::NotFound). Every later fetch is pinned to that
/// version, so a blob replaced mid-read gives
/// [`BlobError::ChangedWhileReading`](super::BlobError::ChangedWhileReading) instead of a mix of
/// two versions.
pub struct BlobReader {
    store: BlobStore,
    key: String,
    path: Path,
    handle: tokio::runtime::Handle,
    read_ahead: usize,
    /// Size and ETag, once looked up.
    version: Option<(u64, Option<String>)>,
    position: u64,
    window_start: u64,
    window: Bytes,
}

impl std::fmt::Debug for BlobReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobReader")
            .field("store", &self.store.description())
            .field("key", &self.key)
            .field("position", &self.position)
            .field("size", &self.version.as_ref().map(|(size, _)| *size))
            .finish_non_exhaustive()
    }
}

impl BlobReader {
    pub(crate) fn new(
        store: BlobStore,
        key: String,
        path: Path,
        handle: tokio::runtime::Handle,
    ) -> Self {
        Self {
            store,
            key,
            path,
            handle,
            read_ahead: DEFAULT_READ_AHEAD,
            version: None,
            position: 0,
            window_start: 0,
            window: Bytes::new(),
        }
    }

    /// Fetches at least `bytes` per request (default [`DEFAULT_READ_AHEAD`]); at least 1.
    pub fn with_read_ahead(mut self, bytes: usize) -> Self {
        self.read_ahead = bytes.max(1);
        self
    }

    /// The key being read.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The blob's size in bytes (looked up on first use).
    pub fn size(&mut self) -> Result<u64> {
        Ok(self.version()?.0)
    }

    /// Size and ETag of the version being read, looked up once.
    fn version(&mut self) -> Result<(u64, Option<String>)> {
        if let Some(version) = &self.version {
            return Ok(version.clone());
        }
        let found = self
            .handle
            .block_on(self.store.head_path(&self.key, &self.path))?;
        self.version = Some(found.clone());
        Ok(found)
    }

    /// Replaces the window with bytes from the cursor on.
    fn fill(&mut self, wanted: usize) -> Result<()> {
        let (size, e_tag) = self.version()?;
        let start = self.position;
        let len = wanted.max(self.read_ahead) as u64;
        let end = start.saturating_add(len).min(size);
        let bytes = self.handle.block_on(self.store.fetch_range(
            &self.key,
            &self.path,
            start..end,
            e_tag,
        ))?;
        self.window_start = start;
        self.window = bytes;
        Ok(())
    }

    /// The part of the window at and after the cursor.
    fn window_from_cursor(&self) -> &[u8] {
        let window_end = self.window_start + self.window.len() as u64;
        if self.position < self.window_start || self.position >= window_end {
            return &[];
        }
        // In range: the offset is below the window's length, which is a usize.
        let offset = (self.position - self.window_start) as usize;
        &self.window[offset..]
    }
}

impl Read for BlobReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        let size = self.size()?;
        if self.position >= size {
            return Ok(0);
        }
        if self.window_from_cursor().is_empty() {
            self.fill(out.len())?;
        }
        let available = self.window_from_cursor();
        let n = available.len().min(out.len());
        out[..n].copy_from_slice(&available[..n]);
        self.position += n as u64;
        Ok(n)
    }
}

impl Seek for BlobReader {
    /// Moves the cursor; no request unless the seek is relative to the end and the size is not
    /// known yet. Seeking past the end is allowed (reads there return 0 bytes), seeking before
    /// the start is an error, as for `std::fs::File`.
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let (base, offset) = match to {
            SeekFrom::Start(offset) => {
                self.position = offset;
                return Ok(offset);
            }
            SeekFrom::End(offset) => (self.size()?, offset),
            SeekFrom::Current(offset) => (self.position, offset),
        };
        let position = base.checked_add_signed(offset).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "cannot seek {offset} bytes from {base} in blob `{}`: that is before its \
                     start or beyond 2^64",
                    self.key
                ),
            )
        })?;
        self.position = position;
        Ok(position)
    }

    fn stream_position(&mut self) -> io::Result<u64> {
        Ok(self.position)
    }
}
