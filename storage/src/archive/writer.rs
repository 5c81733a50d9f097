//! Sealing: a sans-IO [`ChunkSealer`] that turns plaintext into sealed chunks, and the two
//! writers around it — [`SealedWriter`] (`std::io::Write`) and [`AsyncSealedWriter`]
//! (`tokio::io::AsyncWrite`). Both **must** be `finish()`ed: that seals the final chunk,
//! the manifest and the trailer. An archive dropped unfinished has no trailer, and every
//! reader reports it as truncated.

use std::io::{self, Write};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::error::ArchiveError;
use super::header::ArchiveHeader;
use super::keys::ArchiveKeys;
use super::layout::{TRAILER_MAGIC, manifest_aad};
use super::stream::{ChunkCipher, TAG_LEN};

/// What a finished archive holds, returned by `finish`.
#[derive(Debug)]
pub struct Sealed<W> {
    /// The sink the archive was written to, flushed.
    pub inner: W,
    /// Plaintext bytes in the payload.
    pub payload_len: u64,
    /// Bytes of the whole archive (header, chunks, manifest, trailer).
    pub sealed_len: u64,
    /// Number of payload chunks.
    pub chunks: u64,
}

/// Turns plaintext into sealed chunks without doing any I/O.
struct ChunkSealer {
    chunk: ChunkCipher,
    manifest: ChunkCipher,
    chunk_size: usize,
    pending: Vec<u8>,
    next_counter: u64,
    payload_len: u64,
    sealed_len: u64,
}

impl ChunkSealer {
    fn new(header: &ArchiveHeader, keys: &ArchiveKeys) -> Self {
        let chunk_size = header.chunk_size as usize;
        Self {
            chunk: ChunkCipher::new(&keys.payload, header.nonce_prefix),
            manifest: ChunkCipher::new(&keys.manifest, header.nonce_prefix),
            chunk_size,
            pending: Vec::with_capacity(chunk_size + TAG_LEN),
            next_counter: 0,
            payload_len: 0,
            sealed_len: 0,
        }
    }

    /// A full chunk is buffered: it must be sealed (as not-last) before more data fits.
    /// It is held until then because only the next byte tells it is not the final chunk.
    fn is_full(&self) -> bool {
        self.pending.len() == self.chunk_size
    }

    /// Copies what fits of `data` into the chunk buffer; returns the bytes taken.
    fn absorb(&mut self, data: &[u8]) -> usize {
        let take = (self.chunk_size - self.pending.len()).min(data.len());
        self.pending.extend_from_slice(&data[..take]);
        take
    }

    /// Whether a whole chunk can be sealed straight from the caller's `remaining` bytes:
    /// nothing is buffered and more than a chunk follows, so this one is not the last.
    fn can_seal_direct(&self, remaining: usize) -> bool {
        self.pending.is_empty() && remaining > self.chunk_size
    }

    /// Seals one whole chunk of the caller's bytes into `out` (replacing it) without
    /// copying it into the buffer first. Only when [`Self::can_seal_direct`] said so.
    fn seal_direct(&mut self, plain: &[u8], out: &mut Vec<u8>) -> Result<(), ArchiveError> {
        debug_assert!(self.pending.is_empty() && plain.len() == self.chunk_size);
        let counter = u32::try_from(self.next_counter).map_err(|_| ArchiveError::TooLarge)?;
        out.resize(plain.len() + TAG_LEN, 0); // a no-op once the buffer has this size
        self.chunk.seal_chunk_into(counter, false, plain, out);
        self.next_counter += 1;
        self.payload_len += plain.len() as u64;
        self.sealed_len += out.len() as u64;
        Ok(())
    }

    /// Seals the buffered chunk into `out` (replacing its contents).
    fn seal_pending(&mut self, last: bool, out: &mut Vec<u8>) -> Result<(), ArchiveError> {
        let counter = u32::try_from(self.next_counter).map_err(|_| ArchiveError::TooLarge)?;
        out.clear();
        std::mem::swap(&mut self.pending, out);
        self.payload_len += out.len() as u64;
        self.chunk.seal_chunk(counter, last, out);
        self.next_counter += 1;
        self.sealed_len += out.len() as u64;
        Ok(())
    }

    /// Seals the final chunk, the manifest and the trailer into `out` (replacing it).
    fn seal_end(
        &mut self,
        manifest: &serde_json::Value,
        out: &mut Vec<u8>,
    ) -> Result<(), ArchiveError> {
        self.seal_pending(true, out)?;
        let mut sealed_manifest =
            serde_json::to_vec(manifest).expect("a serde_json::Value always serialises");
        let aad = manifest_aad(self.payload_len, self.next_counter);
        self.manifest.seal_manifest(&aad, &mut sealed_manifest);
        out.extend_from_slice(&sealed_manifest);
        out.extend_from_slice(&(sealed_manifest.len() as u64).to_le_bytes());
        out.extend_from_slice(&TRAILER_MAGIC);
        self.sealed_len += (sealed_manifest.len() + 16) as u64;
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WriterState {
    Open,
    /// A write to the sink failed; the archive can only be abandoned.
    Failed,
    Finished,
}

/// Seals a payload into any `std::io::Write` sink. Call [`SealedWriter::finish`].
pub struct SealedWriter<W: Write> {
    inner: Option<W>,
    sealer: ChunkSealer,
    out: Vec<u8>,
    state: WriterState,
}

impl<W: Write> SealedWriter<W> {
    /// Writes the header under `keys` and returns a writer for the payload.
    ///
    /// # Errors
    /// A malformed header, or the sink's I/O error.
    pub fn new(
        mut inner: W,
        header: &ArchiveHeader,
        keys: &ArchiveKeys,
    ) -> Result<Self, ArchiveError> {
        let head = header.encode(keys)?;
        inner.write_all(&head)?;
        let mut sealer = ChunkSealer::new(header, keys);
        sealer.sealed_len = head.len() as u64;
        Ok(Self {
            inner: Some(inner),
            sealer,
            out: Vec::with_capacity(header.chunk_size as usize + TAG_LEN),
            state: WriterState::Open,
        })
    }

    /// Gives up on purpose (the payload could not be produced): the archive stays
    /// unfinished, without the warning a forgotten `finish` gets. Returns the sink so the
    /// caller can remove what was written.
    pub fn abandon(mut self) -> Option<W> {
        self.state = WriterState::Failed;
        self.inner.take()
    }

    /// Plaintext bytes accepted so far.
    #[must_use]
    pub fn payload_len(&self) -> u64 {
        self.sealer.payload_len + self.sealer.pending.len() as u64
    }

    /// Seals the final chunk and the manifest, writes the trailer and flushes.
    ///
    /// # Errors
    /// The sink's I/O error, or [`ArchiveError::WriterClosed`] after an earlier failure.
    pub fn finish(mut self, manifest: &serde_json::Value) -> Result<Sealed<W>, ArchiveError> {
        if self.state != WriterState::Open {
            return Err(ArchiveError::WriterClosed);
        }
        self.sealer.seal_end(manifest, &mut self.out)?;
        let mut inner = self.inner.take().expect("present while open");
        self.state = WriterState::Finished;
        inner.write_all(&self.out)?;
        inner.flush()?;
        Ok(Sealed {
            inner,
            payload_len: self.sealer.payload_len,
            sealed_len: self.sealer.sealed_len,
            chunks: self.sealer.next_counter,
        })
    }

    fn write_sealed(&mut self) -> io::Result<()> {
        let inner = self.inner.as_mut().expect("present while open");
        if let Err(e) = inner.write_all(&self.out) {
            self.state = WriterState::Failed;
            return Err(e);
        }
        Ok(())
    }
}

impl<W: Write> Write for SealedWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.state != WriterState::Open {
            return Err(ArchiveError::WriterClosed.into_io());
        }
        let mut taken = 0;
        while taken < data.len() {
            if self.sealer.is_full() {
                self.sealer
                    .seal_pending(false, &mut self.out)
                    .map_err(ArchiveError::into_io)?;
                self.write_sealed()?;
            }
            let rest = &data[taken..];
            if self.sealer.can_seal_direct(rest.len()) {
                let whole = &rest[..self.sealer.chunk_size];
                self.sealer
                    .seal_direct(whole, &mut self.out)
                    .map_err(ArchiveError::into_io)?;
                self.write_sealed()?;
                taken += whole.len();
                continue;
            }
            taken += self.sealer.absorb(rest);
        }
        Ok(taken)
    }

    /// Flushes sealed chunks to the sink. The last partial chunk stays buffered: it can only
    /// be sealed once it is known to be the final one (or full and followed by more).
    fn flush(&mut self) -> io::Result<()> {
        match &mut self.inner {
            Some(inner) => inner.flush(),
            None => Ok(()),
        }
    }
}

impl<W: Write> Drop for SealedWriter<W> {
    fn drop(&mut self) {
        if self.state == WriterState::Open {
            tracing::warn!(
                "sealed archive writer dropped without finish(): the archive is incomplete"
            );
        }
    }
}

/// Seals a payload into any `tokio::io::AsyncWrite` sink (a file, a blob-store upload).
/// Call [`AsyncSealedWriter::finish`]; `shutdown` alone does not end the archive.
pub struct AsyncSealedWriter<W> {
    inner: Option<W>,
    sealer: ChunkSealer,
    out: Vec<u8>,
    out_pos: usize,
    state: WriterState,
}

impl<W: AsyncWrite + Unpin> AsyncSealedWriter<W> {
    /// Queues the header under `keys`; it reaches the sink with the first write or flush.
    ///
    /// # Errors
    /// A malformed header.
    pub fn new(inner: W, header: &ArchiveHeader, keys: &ArchiveKeys) -> Result<Self, ArchiveError> {
        let head = header.encode(keys)?;
        let mut sealer = ChunkSealer::new(header, keys);
        sealer.sealed_len = head.len() as u64;
        Ok(Self {
            inner: Some(inner),
            sealer,
            out: head,
            out_pos: 0,
            state: WriterState::Open,
        })
    }

    /// Plaintext bytes accepted so far.
    #[must_use]
    pub fn payload_len(&self) -> u64 {
        self.sealer.payload_len + self.sealer.pending.len() as u64
    }

    /// Seals the final chunk and the manifest, writes the trailer and flushes the sink
    /// (without shutting it down: a blob upload is completed by its owner).
    ///
    /// # Errors
    /// The sink's I/O error, or [`ArchiveError::WriterClosed`] after an earlier failure.
    pub async fn finish(mut self, manifest: &serde_json::Value) -> Result<Sealed<W>, ArchiveError> {
        if self.state != WriterState::Open {
            return Err(ArchiveError::WriterClosed);
        }
        std::future::poll_fn(|cx| self.poll_drain(cx)).await?;
        self.sealer.seal_end(manifest, &mut self.out)?;
        self.state = WriterState::Finished;
        let mut inner = self.inner.take().expect("present until finished");
        inner.write_all(&self.out).await?;
        inner.flush().await?;
        Ok(Sealed {
            inner,
            payload_len: self.sealer.payload_len,
            sealed_len: self.sealer.sealed_len,
            chunks: self.sealer.next_counter,
        })
    }

    /// Gives up on the archive and returns the sink so its owner can discard what was
    /// written (abort a blob upload, remove a staged file). The archive stays unfinished.
    pub fn abandon(mut self) -> Option<W> {
        self.state = WriterState::Failed;
        self.inner.take()
    }

    /// Writes out whatever sealed bytes are waiting.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(Err(ArchiveError::WriterClosed.into_io()));
        };
        while self.out_pos < self.out.len() {
            match ready!(Pin::new(&mut *inner).poll_write(cx, &self.out[self.out_pos..])) {
                Ok(0) => {
                    self.state = WriterState::Failed;
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                Ok(n) => self.out_pos += n,
                Err(e) => {
                    self.state = WriterState::Failed;
                    return Poll::Ready(Err(e));
                }
            }
        }
        self.out.clear();
        self.out_pos = 0;
        Poll::Ready(Ok(()))
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for AsyncSealedWriter<W> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.state != WriterState::Open {
            return Poll::Ready(Err(ArchiveError::WriterClosed.into_io()));
        }
        ready!(this.poll_drain(cx))?;
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        // Whatever is sealed here drains on the next call; the data is taken now.
        if this.sealer.is_full() {
            this.sealer
                .seal_pending(false, &mut this.out)
                .map_err(ArchiveError::into_io)?;
        } else if this.sealer.can_seal_direct(data.len()) {
            let whole = &data[..this.sealer.chunk_size];
            this.sealer
                .seal_direct(whole, &mut this.out)
                .map_err(ArchiveError::into_io)?;
            return Poll::Ready(Ok(whole.len()));
        }
        Poll::Ready(Ok(this.sealer.absorb(data)))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        match this.inner.as_mut() {
            Some(inner) => Pin::new(inner).poll_flush(cx),
            None => Poll::Ready(Ok(())),
        }
    }

    /// Drains and shuts the sink down **without** ending the archive; use `finish`.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        match this.inner.as_mut() {
            Some(inner) => Pin::new(inner).poll_shutdown(cx),
            None => Poll::Ready(Ok(())),
        }
    }
}

impl<W> Drop for AsyncSealedWriter<W> {
    fn drop(&mut self) {
        if self.state == WriterState::Open {
            tracing::warn!(
                "async sealed archive writer dropped without finish(): the archive is incomplete"
            );
        }
    }
}
