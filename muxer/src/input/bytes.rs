//! Where an input file's bytes come from: a file on disk (the `idv mux` command), or a source
//! the caller opens — for the mux worker, a CTI recording sealed in the blob store, decrypted
//! chunk by chunk as it is read, so its plaintext never touches a disk. Readers (WAV, G.711,
//! symphonia's demuxers) open the bytes as often as they need: once to learn the format and
//! length, again to decode, again to hash.

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{MuxError, Result};

/// A seekable byte stream an input is read from.
pub trait InputReader: Read + Seek + Send + Sync {}

impl<T: Read + Seek + Send + Sync> InputReader for T {}

/// Bytes that can be opened again and again, each time from the start.
pub trait ByteSource: Send + Sync {
    /// What to call it in messages and the manifest (`cti/….idvr`).
    fn label(&self) -> String;

    /// A fresh reader at offset 0.
    ///
    /// # Errors
    /// Whatever keeps it from being opened.
    fn open(&self) -> io::Result<Box<dyn InputReader>>;
}

/// An input's bytes.
#[derive(Clone)]
pub enum InputBytes {
    /// A file.
    File(PathBuf),
    /// A source the caller provides.
    Source(Arc<dyn ByteSource>),
}

impl fmt::Debug for InputBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => f.debug_tuple("File").field(path).finish(),
            Self::Source(source) => f.debug_tuple("Source").field(&source.label()).finish(),
        }
    }
}

impl From<PathBuf> for InputBytes {
    fn from(path: PathBuf) -> Self {
        Self::File(path)
    }
}

impl From<&PathBuf> for InputBytes {
    fn from(path: &PathBuf) -> Self {
        Self::File(path.clone())
    }
}

impl From<&Path> for InputBytes {
    fn from(path: &Path) -> Self {
        Self::File(path.to_path_buf())
    }
}

impl InputBytes {
    /// What errors name: the path, or the source's label.
    #[must_use]
    pub fn name(&self) -> PathBuf {
        match self {
            Self::File(path) => path.clone(),
            Self::Source(source) => PathBuf::from(source.label()),
        }
    }

    /// The name the manifest records: a file's name without its directories, or the label.
    #[must_use]
    pub fn file_name(&self) -> String {
        match self {
            Self::File(path) => path.file_name().map_or_else(
                || path.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            ),
            Self::Source(source) => source.label(),
        }
    }

    /// The name's extension, a hint for demuxers (the bytes decide).
    #[must_use]
    pub fn extension(&self) -> Option<String> {
        let name = self.name();
        let ext = name.extension()?.to_str()?;
        // A sealed object's own suffix says nothing about what is inside.
        (ext != "idvr").then(|| ext.to_owned())
    }

    /// A reader at offset 0.
    ///
    /// # Errors
    /// [`MuxError::Input`] when it cannot be opened.
    pub fn open(&self) -> Result<Box<dyn InputReader>> {
        match self {
            Self::File(path) => File::open(path)
                .map(|f| Box::new(f) as Box<dyn InputReader>)
                .map_err(|e| MuxError::input(path, e.to_string())),
            Self::Source(source) => source
                .open()
                .map_err(|e| MuxError::input(&self.name(), e.to_string())),
        }
    }

    /// The first up-to-`n` bytes (fewer when the input is shorter).
    ///
    /// # Errors
    /// [`MuxError::Input`] when it cannot be read.
    pub fn head(&self, n: usize) -> Result<Vec<u8>> {
        let mut head = Vec::with_capacity(n);
        self.open()?
            .take(n as u64)
            .read_to_end(&mut head)
            .map_err(|e| MuxError::input(&self.name(), e.to_string()))?;
        Ok(head)
    }

    /// Its length in bytes.
    ///
    /// # Errors
    /// [`MuxError::Input`] when it cannot be opened.
    pub fn byte_len(&self) -> Result<u64> {
        self.open()?
            .seek(SeekFrom::End(0))
            .map_err(|e| MuxError::input(&self.name(), e.to_string()))
    }
}

/// An [`InputReader`] as symphonia's `MediaSource` (seekable, length known).
pub(super) struct MediaBytes {
    reader: Box<dyn InputReader>,
    len: Option<u64>,
}

impl MediaBytes {
    pub(super) fn open(bytes: &InputBytes) -> Result<Self> {
        let mut reader = bytes.open()?;
        let len = reader.seek(SeekFrom::End(0)).ok();
        reader
            .seek(SeekFrom::Start(0))
            .map_err(|e| MuxError::input(&bytes.name(), e.to_string()))?;
        Ok(Self { reader, len })
    }
}

impl Read for MediaBytes {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reader.read(buf)
    }
}

impl Seek for MediaBytes {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.reader.seek(pos)
    }
}

impl symphonia::core::io::MediaSource for MediaBytes {
    fn is_seekable(&self) -> bool {
        true
    }

    fn byte_len(&self) -> Option<u64> {
        self.len
    }
}
