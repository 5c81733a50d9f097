//! The blob store: where sealed recordings (`*.idvr`) and other large objects live, on the
//! local filesystem by default or in an S3-compatible bucket at scale.
//!
//! [`BlobStore`] is a thin, cloneable handle over `object_store`: one API for both backends,
//! keys checked before they reach a backend ([`BlobError::InvalidKey`]), backend errors mapped
//! into the one public [`BlobError`], and uploads that are all-or-nothing — a blob appears under
//! its key only when its [`BlobWriter`] finishes, replacing any earlier blob in one step.
//!
//! Keys are relative paths such as `recordings/2026/11/<id>.idvr`: `/`-separated segments, no
//! empty, `.` or `..` segments, no leading `/`, no `\`, `#`, `%` or control characters, at most
//! 1024 bytes.

mod error;
mod key;
mod location;
mod reader;
mod writer;

use std::ops::Range;
use std::path::Path as FsPath;
use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{GetOptions, ObjectStore, ObjectStoreExt};
use tokio::io::{AsyncRead, AsyncReadExt};

pub use error::{BackendError, BlobError, Result};
pub use location::{DEFAULT_REGION, S3Options};
pub use reader::{BlobReader, BlobStream, DEFAULT_READ_AHEAD};
pub use writer::{BlobWriter, UploadLimits};

use error::from_backend;
use location::Location;

/// Size of the buffer `put_stream` reads its source with.
const COPY_BUFFER: usize = 64 * 1024;

/// A blob's key and size, as listed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BlobMeta {
    /// The blob's key, relative to the store (without an S3 prefix).
    pub key: String,
    /// Size in bytes.
    pub size: u64,
}

/// A handle on one blob store (a local directory or an S3 bucket and prefix); cheap to clone.
#[derive(Clone)]
pub struct BlobStore {
    inner: Arc<dyn ObjectStore>,
    /// Where the blobs live, for logs and messages; never credentials.
    description: Arc<str>,
    limits: UploadLimits,
}

impl std::fmt::Debug for BlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobStore")
            .field("location", &self.description)
            .field("limits", &self.limits)
            .finish()
    }
}

impl BlobStore {
    /// A store in the local directory `root`, created if missing.
    ///
    /// Writes are atomic (staged in a temporary file, then renamed into place) and synced to
    /// disk before they count as stored.
    pub fn local(root: &FsPath) -> Result<Self> {
        let local_root = |source| BlobError::LocalRoot {
            path: root.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(root).map_err(local_root)?;
        let canonical = std::fs::canonicalize(root).map_err(local_root)?;
        let store = LocalFileSystem::new_with_prefix(&canonical)
            .map_err(|error| BlobError::LocalRoot {
                path: root.to_path_buf(),
                source: std::io::Error::other(error),
            })?
            .with_fsync(true);
        Ok(Self::from_parts(
            Arc::new(store),
            format!("file://{}", canonical.display()),
        ))
    }

    /// A store in an S3 (or S3-compatible) bucket, under `options.prefix`.
    ///
    /// Checks the options but does not connect: a wrong endpoint or credential shows on the
    /// first request.
    pub fn s3(options: S3Options) -> Result<Self> {
        let prefix = options.validate()?;
        let description = options.describe(&prefix);
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&options.bucket)
            .with_region(options.region.as_deref().unwrap_or(DEFAULT_REGION))
            .with_allow_http(options.allow_http)
            .with_virtual_hosted_style_request(false);
        if let Some(endpoint) = &options.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if let (Some(id), Some(secret)) = (&options.access_key_id, &options.secret_access_key) {
            builder = builder
                .with_access_key_id(id)
                .with_secret_access_key(secret);
        }
        if let Some(token) = &options.session_token {
            builder = builder.with_token(token);
        }
        let s3 = builder
            .build()
            .map_err(|error| BlobError::InvalidSettings {
                reason: format!("the S3 client for {description} could not be set up: {error}"),
            })?;
        let inner: Arc<dyn ObjectStore> = if prefix.is_empty() {
            Arc::new(s3)
        } else {
            let prefix = key::parse_key(&prefix)?;
            Arc::new(PrefixStore::new(s3, prefix))
        };
        Ok(Self::from_parts(inner, description))
    }

    /// A store named by URL: `s3://bucket[/prefix]` (settings from the standard AWS
    /// environment variables, see [`S3Options::from_env`]) or `file:///absolute/path`.
    pub fn from_url(url: &str) -> Result<Self> {
        match location::parse_url(url)? {
            Location::Local(path) => Self::local(&path),
            Location::S3 { bucket, prefix } => Self::s3(S3Options::from_env(bucket, prefix)?),
        }
    }

    /// The store for a data directory: `blob_url` when given, else `data_dir/blobs`.
    pub fn open(data_dir: &FsPath, blob_url: Option<&str>) -> Result<Self> {
        match blob_url {
            Some(url) => Self::from_url(url),
            None => Self::local(&data_dir.join("blobs")),
        }
    }

    /// The same store, uploading with `limits`.
    pub fn with_upload_limits(mut self, limits: UploadLimits) -> Self {
        self.limits = limits;
        self
    }

    /// How uploads are cut into parts.
    pub fn upload_limits(&self) -> UploadLimits {
        self.limits
    }

    /// Where the blobs live (`file:///…` or `s3://bucket/prefix at endpoint`), for logs;
    /// never holds credentials.
    pub fn description(&self) -> &str {
        &self.description
    }

    fn from_parts(inner: Arc<dyn ObjectStore>, description: String) -> Self {
        Self {
            inner,
            description: description.into(),
            limits: UploadLimits::default(),
        }
    }

    /// Starts a streaming upload to `key`; see [`BlobWriter`]. No request is made until data
    /// is written.
    pub fn writer(&self, key: &str) -> Result<BlobWriter> {
        let path = key::parse_key(key)?;
        Ok(BlobWriter::new(
            Arc::clone(&self.inner),
            Arc::clone(&self.description),
            key.to_owned(),
            path,
            self.limits,
        ))
    }

    /// Stores everything `reader` yields under `key` and returns the size.
    ///
    /// If reading fails ([`BlobError::Io`]) or the store fails, the upload is aborted and
    /// nothing is stored under `key` (an earlier blob there stays as it was).
    pub async fn put_stream<R: AsyncRead + Unpin>(&self, key: &str, mut reader: R) -> Result<u64> {
        let mut writer = self.writer(key)?;
        let mut buffer = vec![0_u8; COPY_BUFFER];
        loop {
            let n = match reader.read(&mut buffer).await {
                Ok(0) => break,
                Ok(n) => n,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    tracing::warn!(store = %self.description, key, error = %source, "reading upload data failed; aborting");
                    abort_quietly(writer).await;
                    return Err(BlobError::Io {
                        key: key.to_owned(),
                        source,
                    });
                }
            };
            if let Err(error) = writer.write_all_blob(&buffer[..n]).await {
                abort_quietly(writer).await;
                return Err(error);
            }
        }
        writer.finish().await
    }

    /// The bytes of `key` in `range` (end exclusive), exactly; a range reaching past the end
    /// is [`BlobError::RangeOutOfBounds`].
    pub async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        let path = key::parse_key(key)?;
        self.fetch_range(key, &path, range, None).await
    }

    /// The whole blob as a stream, fetched as it is read.
    pub async fn get_stream(&self, key: &str) -> Result<BlobStream> {
        let path = key::parse_key(key)?;
        let result = self
            .inner
            .get(&path)
            .await
            .map_err(|error| from_backend(error, &self.description, "reading", key))?;
        let size = result.meta.size;
        let description = Arc::clone(&self.description);
        let key = key.to_owned();
        let stream = result
            .into_stream()
            .map_err(move |error| {
                std::io::Error::from(from_backend(error, &description, "reading", &key))
            })
            .boxed();
        Ok(BlobStream::new(stream, size))
    }

    /// The size of `key` in bytes; [`BlobError::NotFound`] if nothing is stored there.
    pub async fn size(&self, key: &str) -> Result<u64> {
        let path = key::parse_key(key)?;
        Ok(self.head_path(key, &path).await?.0)
    }

    /// Removes `key`. Removing a key that holds nothing succeeds, so retention jobs can retry.
    pub async fn delete(&self, key: &str) -> Result<()> {
        let path = key::parse_key(key)?;
        match self.inner.delete(&path).await {
            Ok(()) => {
                tracing::debug!(store = %self.description, key, "blob deleted");
                Ok(())
            }
            Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(error) => Err(from_backend(error, &self.description, "deleting", key)),
        }
    }

    /// Every blob under `prefix`, sorted by key.
    ///
    /// The prefix matches whole segments, like a folder: `recordings/2026` lists
    /// `recordings/2026/11/a.idvr` but not `recordings/20261.idvr`. An empty prefix lists all.
    pub async fn list(&self, prefix: &str) -> Result<Vec<BlobMeta>> {
        let path = key::parse_prefix(prefix)?;
        let mut blobs: Vec<BlobMeta> = self
            .inner
            .list(path.as_ref())
            .map_ok(|meta| BlobMeta {
                key: meta.location.to_string(),
                size: meta.size,
            })
            .try_collect()
            .await
            .map_err(|error| from_backend(error, &self.description, "listing", prefix))?;
        blobs.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        Ok(blobs)
    }

    /// A blocking `Read + Seek` view of `key`, to use on a blocking thread; requests run on
    /// `handle`'s runtime. See [`BlobReader`].
    pub fn blocking_reader(&self, key: &str, handle: tokio::runtime::Handle) -> Result<BlobReader> {
        let path = key::parse_key(key)?;
        Ok(BlobReader::new(self.clone(), key.to_owned(), path, handle))
    }

    /// Size and ETag of the blob at `path`.
    pub(crate) async fn head_path(&self, key: &str, path: &Path) -> Result<(u64, Option<String>)> {
        let meta = self
            .inner
            .head(path)
            .await
            .map_err(|error| from_backend(error, &self.description, "looking up", key))?;
        Ok((meta.size, meta.e_tag))
    }

    /// Exactly the bytes in `range`; with `if_match`, only from the version with that ETag
    /// (else [`BlobError::ChangedWhileReading`]).
    pub(crate) async fn fetch_range(
        &self,
        key: &str,
        path: &Path,
        range: Range<u64>,
        if_match: Option<String>,
    ) -> Result<Bytes> {
        let out_of_bounds = |size| BlobError::RangeOutOfBounds {
            key: key.to_owned(),
            start: range.start,
            end: range.end,
            size,
        };
        if range.start > range.end {
            return Err(BlobError::InvalidRange {
                key: key.to_owned(),
                start: range.start,
                end: range.end,
            });
        }
        if range.is_empty() {
            // Backends disagree on empty ranges; answer from the size instead.
            let (size, _) = self.head_path(key, path).await?;
            return if range.start > size {
                Err(out_of_bounds(size))
            } else {
                Ok(Bytes::new())
            };
        }
        let options = GetOptions::new()
            .with_range(Some(range.clone()))
            .with_if_match(if_match.clone());
        let reading = |error| from_backend(error, &self.description, "reading", key);
        match self.inner.get_opts(path, options).await {
            Ok(result) => {
                // Not every S3-compatible server honours If-Match; check the answer as well.
                if let (Some(expected), Some(found)) = (&if_match, &result.meta.e_tag)
                    && expected != found
                {
                    return Err(BlobError::ChangedWhileReading {
                        key: key.to_owned(),
                    });
                }
                // Backends clamp a range that reaches past the end; we promise exact ranges.
                if result.range != range {
                    return Err(out_of_bounds(result.meta.size));
                }
                let bytes = result.bytes().await.map_err(reading)?;
                if bytes.len() as u64 != range.end - range.start {
                    return Err(out_of_bounds(range.start + bytes.len() as u64));
                }
                Ok(bytes)
            }
            Err(error) => {
                let error = reading(error);
                if !matches!(error, BlobError::Backend { .. }) {
                    return Err(error);
                }
                // A start past the end fails in a backend-specific way; tell it apart.
                match self.head_path(key, path).await {
                    Ok((size, _)) if range.end > size => Err(out_of_bounds(size)),
                    _ => Err(error),
                }
            }
        }
    }
}

/// Aborts `writer` on an error path, where the first error is the one to report.
async fn abort_quietly(writer: BlobWriter) {
    let key = writer.key().to_owned();
    if let Err(error) = writer.abort().await {
        tracing::warn!(key, error = %error, "aborting the failed upload failed");
    }
}
