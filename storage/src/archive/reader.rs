//! Opening: [`SealedReader`] is `Read + Seek` over the plaintext payload, decrypting only the
//! chunks a read touches (so playback can seek), and [`SealedReader::verify`] checks every
//! chunk and the manifest. A chunk that fails is diagnosed: cut off, extended, moved, or
//! altered/foreign.

use std::io::{self, Read, Seek, SeekFrom};

use super::error::ArchiveError;
use super::header::{ArchiveHeader, SealedHeader};
use super::keys::ArchiveKeys;
use super::layout::{ArchiveLayout, TRAILER_LEN, TRAILER_MAGIC, manifest_aad};
use super::stream::{ChunkCipher, TAG_LEN};

/// How far back from the end [`SealedReader::new`] looks for a displaced trailer, to tell
/// "bytes appended" from "cut short".
const TRAILER_SEARCH_WINDOW: u64 = 1 << 20;

/// How many other positions a failed chunk is tried at, nearest first, before it is called
/// corrupt: bounds the failure path on huge archives (each try is one AEAD pass).
const DIAGNOSIS_SEARCH: usize = 1 << 14;

/// `index ± 1, index ± 2, …` within `0..chunks`, excluding `index` itself.
fn nearest_positions(index: u64, chunks: u64) -> impl Iterator<Item = u64> {
    (1..chunks)
        .flat_map(move |d| {
            [
                index.checked_sub(d),
                index.checked_add(d).filter(|&p| p < chunks),
            ]
        })
        .flatten()
}

/// What a successful verification saw.
#[derive(Debug, Clone)]
pub struct VerifyReport {
    /// The archive.
    pub archive_id: uuid::Uuid,
    /// Payload chunks checked.
    pub chunks: u64,
    /// Plaintext bytes in the payload.
    pub payload_len: u64,
    /// The sealed manifest, authenticated.
    pub manifest: serde_json::Value,
}

/// Reads the plaintext of a sealed archive from any `Read + Seek` source.
pub struct SealedReader<R> {
    inner: R,
    header: ArchiveHeader,
    layout: ArchiveLayout,
    chunk: ChunkCipher,
    manifest: ChunkCipher,
    /// Plaintext position.
    pos: u64,
    /// The decrypted chunk `cached`, if any (plaintext in `buf[..cached_len]`).
    cached: Option<u64>,
    cached_len: usize,
    buf: Vec<u8>,
}

impl<R: Read + Seek> SealedReader<R> {
    /// Checks the header MAC under `keys`, reads the trailer and works out the layout.
    /// `header` is what [`SealedHeader::read_from`] returned for the same source.
    ///
    /// # Errors
    /// [`ArchiveError::HeaderAuthFailed`], [`ArchiveError::Truncated`],
    /// [`ArchiveError::TrailingData`] or I/O errors.
    pub fn new(
        mut inner: R,
        header: SealedHeader,
        keys: &ArchiveKeys,
    ) -> Result<Self, ArchiveError> {
        header.verify(keys)?;
        let file_len = inner.seek(SeekFrom::End(0))?;
        let header_len = header.len() as u64;
        let chunk_size = u64::from(header.header.chunk_size);
        let layout = match read_trailer(&mut inner, file_len, header_len)? {
            Some(manifest_len) => {
                ArchiveLayout::from_trailer(header_len, chunk_size, file_len, manifest_len)?
            }
            None => {
                return Err(diagnose_missing_trailer(
                    &mut inner, file_len, header_len, chunk_size,
                )?);
            }
        };
        let header = header.header;
        Ok(Self {
            chunk: ChunkCipher::new(&keys.payload, header.nonce_prefix),
            manifest: ChunkCipher::new(&keys.manifest, header.nonce_prefix),
            inner,
            header,
            layout,
            pos: 0,
            cached: None,
            cached_len: 0,
            buf: Vec::with_capacity(chunk_size as usize + TAG_LEN),
        })
    }

    /// The authenticated header.
    #[must_use]
    pub fn header(&self) -> &ArchiveHeader {
        &self.header
    }

    /// Where the archive's parts are.
    #[must_use]
    pub fn layout(&self) -> &ArchiveLayout {
        &self.layout
    }

    /// Plaintext bytes in the payload.
    #[must_use]
    pub fn payload_len(&self) -> u64 {
        self.layout.payload_len
    }

    /// Gives the source back.
    pub fn into_inner(self) -> R {
        self.inner
    }

    /// Authenticates and parses the manifest section.
    ///
    /// # Errors
    /// [`ArchiveError::ManifestCorrupt`] or I/O errors.
    pub fn manifest(&mut self) -> Result<serde_json::Value, ArchiveError> {
        let mut sealed = vec![0u8; self.layout.manifest_len as usize];
        self.inner
            .seek(SeekFrom::Start(self.layout.manifest_offset))?;
        self.inner.read_exact(&mut sealed)?;
        let aad = manifest_aad(self.layout.payload_len, self.layout.chunks);
        let len = self
            .manifest
            .open_manifest(&aad, &mut sealed)
            .map_err(|_| ArchiveError::ManifestCorrupt)?;
        serde_json::from_slice(&sealed[..len]).map_err(|_| ArchiveError::ManifestCorrupt)
    }

    /// Checks every chunk in order, then the manifest; `progress` hears the plaintext bytes
    /// checked so far. Stops at the first problem and names it.
    ///
    /// # Errors
    /// The first [`ArchiveError`] found.
    pub fn verify(&mut self, mut progress: impl FnMut(u64)) -> Result<VerifyReport, ArchiveError> {
        let mut checked = 0;
        for index in 0..self.layout.chunks {
            checked += self.load_chunk(index)? as u64;
            progress(checked);
        }
        Ok(VerifyReport {
            archive_id: self.header.archive_id,
            chunks: self.layout.chunks,
            payload_len: self.layout.payload_len,
            manifest: self.manifest()?,
        })
    }

    /// Decrypts chunk `index` into the cache; returns its plaintext length.
    fn load_chunk(&mut self, index: u64) -> Result<usize, ArchiveError> {
        if self.cached == Some(index) {
            return Ok(self.cached_len);
        }
        let (counter, last) = self.fetch_sealed(index)?;
        match self.chunk.open_chunk(counter, last, &mut self.buf) {
            Ok(len) => {
                self.cached = Some(index);
                self.cached_len = len;
                Ok(len)
            }
            Err(_) => Err(self.diagnose_chunk(index)),
        }
    }

    /// Reads sealed chunk `index` into `buf` (dropping the cache); returns its nonce inputs.
    fn fetch_sealed(&mut self, index: u64) -> Result<(u32, bool), ArchiveError> {
        self.cached = None;
        let range = self.layout.chunk_range(index);
        self.buf.resize((range.end - range.start) as usize, 0);
        self.inner.seek(SeekFrom::Start(range.start))?;
        self.inner
            .read_exact(&mut self.buf)
            .map_err(|e| match e.kind() {
                io::ErrorKind::UnexpectedEof => {
                    ArchiveError::Truncated(format!("chunk {index} is cut short"))
                }
                _ => ArchiveError::Io(e),
            })?;
        let counter = u32::try_from(index).map_err(|_| ArchiveError::TooLarge)?;
        Ok((counter, self.layout.is_last(index)))
    }

    /// A read that covers chunk `index` whole decrypts it straight into `out`, skipping the
    /// cache (and a copy). Returns `None` when the read does not qualify.
    fn read_whole_chunk(
        &mut self,
        index: u64,
        out: &mut [u8],
    ) -> Option<Result<usize, ArchiveError>> {
        let range = self.layout.chunk_range(index);
        let plain_len = (range.end - range.start) as usize - TAG_LEN;
        if self.cached == Some(index) || out.len() < plain_len {
            return None;
        }
        Some(self.fetch_sealed(index).and_then(|(counter, last)| {
            self.chunk
                .open_chunk_into(counter, last, &self.buf, out)
                .map_err(|_| self.diagnose_chunk(index))
        }))
    }

    /// Says why chunk `index` (still sealed in `buf`) failed. Only runs on the failure
    /// path; trying every other position costs one AEAD pass per chunk.
    fn diagnose_chunk(&self, index: u64) -> ArchiveError {
        let sealed = &self.buf;
        let last = self.layout.is_last(index);
        let counter = index as u32;
        let scratch = &mut Vec::with_capacity(sealed.len());
        if self
            .chunk
            .chunk_authenticates(counter, !last, sealed, scratch)
        {
            return if last {
                ArchiveError::Truncated(format!(
                    "chunk {index} is not the final chunk: the chunks after it were cut off"
                ))
            } else {
                ArchiveError::Extended {
                    index,
                    extra: self.layout.chunks - 1 - index,
                }
            };
        }
        for other in nearest_positions(index, self.layout.chunks).take(DIAGNOSIS_SEARCH) {
            let other_counter = other as u32;
            if self
                .chunk
                .chunk_authenticates(other_counter, false, sealed, scratch)
                || self
                    .chunk
                    .chunk_authenticates(other_counter, true, sealed, scratch)
            {
                return ArchiveError::ChunkReordered {
                    index,
                    belongs_at: other,
                };
            }
        }
        ArchiveError::ChunkCorrupt { index }
    }
}

impl<R: Read + Seek> Read for SealedReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() || self.pos >= self.layout.payload_len {
            return Ok(0);
        }
        let chunk_size = self.layout.chunk_size;
        let index = self.pos / chunk_size;
        let offset = (self.pos % chunk_size) as usize;
        if offset == 0
            && let Some(whole) = self.read_whole_chunk(index, out)
        {
            let n = whole.map_err(ArchiveError::into_io)?;
            self.pos += n as u64;
            return Ok(n);
        }
        let len = self.load_chunk(index).map_err(ArchiveError::into_io)?;
        let n = (len - offset).min(out.len());
        out[..n].copy_from_slice(&self.buf[offset..offset + n]);
        self.pos += n as u64;
        Ok(n)
    }

    fn read_to_end(&mut self, out: &mut Vec<u8>) -> io::Result<usize> {
        self.read_rest_into(out).map_err(ArchiveError::into_io)
    }
}

impl<R: Read + Seek> SealedReader<R> {
    /// Appends the rest of the payload to `out`: each whole chunk is read from the source
    /// straight into `out` and decrypted there, with no zero-filling and no extra copy.
    fn read_rest_into(&mut self, out: &mut Vec<u8>) -> Result<usize, ArchiveError> {
        let start = out.len();
        let chunk_size = self.layout.chunk_size;
        out.reserve(self.layout.payload_len.saturating_sub(self.pos) as usize);
        while self.pos < self.layout.payload_len {
            let index = self.pos / chunk_size;
            if !self.pos.is_multiple_of(chunk_size) || self.cached == Some(index) {
                let len = self.load_chunk(index)?;
                let offset = (self.pos % chunk_size) as usize;
                out.extend_from_slice(&self.buf[offset..len]);
                self.pos += (len - offset) as u64;
                continue;
            }
            let range = self.layout.chunk_range(index);
            let at = out.len();
            self.inner.seek(SeekFrom::Start(range.start))?;
            let got = (&mut self.inner)
                .take(range.end - range.start)
                .read_to_end(out)?;
            let counter = u32::try_from(index).map_err(|_| ArchiveError::TooLarge)?;
            let opened = (got as u64 == range.end - range.start)
                .then(|| {
                    self.chunk
                        .open_chunk(counter, self.layout.is_last(index), &mut out[at..])
                        .ok()
                })
                .flatten();
            let Some(len) = opened else {
                out.truncate(at);
                // The slow path reads the chunk again and says what is wrong with it.
                return Err(self
                    .load_chunk(index)
                    .err()
                    .unwrap_or(ArchiveError::ChunkCorrupt { index }));
            };
            out.truncate(at + len);
            self.pos += len as u64;
        }
        Ok(out.len() - start)
    }
}

impl<R: Read + Seek> Seek for SealedReader<R> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
            SeekFrom::End(d) => self.layout.payload_len.checked_add_signed(d),
        };
        self.pos = target.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before the start of the payload",
            )
        })?;
        Ok(self.pos)
    }
}

/// The trailer's manifest length, or `None` when the file does not end with a trailer.
fn read_trailer<R: Read + Seek>(
    inner: &mut R,
    file_len: u64,
    header_len: u64,
) -> Result<Option<u64>, ArchiveError> {
    if file_len < header_len + TRAILER_LEN {
        return Ok(None);
    }
    let mut trailer = [0u8; TRAILER_LEN as usize];
    inner.seek(SeekFrom::Start(file_len - TRAILER_LEN))?;
    inner.read_exact(&mut trailer)?;
    if trailer[8..] != TRAILER_MAGIC {
        return Ok(None);
    }
    Ok(Some(u64::from_le_bytes(
        trailer[..8].try_into().expect("8 bytes"),
    )))
}

/// No trailer at the end: find out whether one sits earlier (bytes were appended) or not at
/// all (the archive was cut short or never finished).
fn diagnose_missing_trailer<R: Read + Seek>(
    inner: &mut R,
    file_len: u64,
    header_len: u64,
    chunk_size: u64,
) -> Result<ArchiveError, ArchiveError> {
    let window_start = file_len
        .saturating_sub(TRAILER_SEARCH_WINDOW)
        .max(header_len);
    let mut tail = vec![0u8; (file_len - window_start) as usize];
    inner.seek(SeekFrom::Start(window_start))?;
    inner.read_exact(&mut tail)?;
    for end in (TRAILER_LEN as usize..=tail.len()).rev() {
        if tail[end - 8..end] != TRAILER_MAGIC {
            continue;
        }
        let manifest_len = u64::from_le_bytes(tail[end - 16..end - 8].try_into().expect("8 bytes"));
        let archive_end = window_start + end as u64;
        if ArchiveLayout::from_trailer(header_len, chunk_size, archive_end, manifest_len).is_ok() {
            return Ok(ArchiveError::TrailingData(file_len - archive_end));
        }
    }
    Ok(ArchiveError::Truncated(
        "the end-of-archive trailer is missing: the file was cut short or never finished".into(),
    ))
}
