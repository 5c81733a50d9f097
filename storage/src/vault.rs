//! The vault: where sealed archives are made, opened, verified, rewrapped and shredded. It
//! ties the archive format to the keyring, the metadata database, the blob store and the
//! audit log, so no caller can touch an archive without the access being recorded.

use std::fs::{self, File};
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use tokio::io::{AsyncRead, AsyncReadExt};
use uuid::Uuid;

use crate::archive::{
    ArchiveError, ArchiveHeader, ArchiveKeys, AsyncSealedWriter, FileKey, RetentionKey,
    SealedHeader, SealedReader, SealedWriter, VerifyReport,
};
use crate::audit::{AuditEvent, AuditLog, Outcome};
use crate::blob::BlobStore;
use crate::db::{ArchiveRecord, ArchiveState, MetadataDb};
use crate::keyring::{FileKeyring, Keyring, KeyringError};
use crate::staged::StagedFile;
use crate::{Error, Result, StorageConfig};

/// Who is acting and why; every vault operation writes it to the audit log.
#[derive(Debug, Clone)]
pub struct Access {
    /// The person or service acting (`cli:alice`, `muxer@node-2`, …).
    pub actor: String,
    /// The stated reason, required for retrievals in the console.
    pub reason: Option<String>,
}

impl Access {
    /// An access by `actor` for `reason`.
    #[must_use]
    pub fn new(actor: impl Into<String>, reason: Option<String>) -> Self {
        Self {
            actor: actor.into(),
            reason,
        }
    }
}

/// Where an archive lives, as recorded in `archives.location`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArchiveLocation {
    /// A local file (absolute path).
    File(PathBuf),
    /// An object in the blob store.
    Blob(String),
}

impl ArchiveLocation {
    fn encode(&self) -> String {
        match self {
            Self::File(p) => format!("file:{}", p.display()),
            Self::Blob(k) => format!("blob:{k}"),
        }
    }

    /// Reads a location as the metadata DB stores it (`file:…` or `blob:…`).
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        Self::decode(s)
    }

    fn decode(s: &str) -> Option<Self> {
        if let Some(p) = s.strip_prefix("file:") {
            Some(Self::File(PathBuf::from(p)))
        } else {
            s.strip_prefix("blob:").map(|k| Self::Blob(k.to_owned()))
        }
    }
}

/// A sealed archive in the blob store whose keys are unwrapped: opened as many times as a
/// reader needs, each time with a fresh [`SealedReader`] (blocking; use it on a blocking
/// thread, never on the runtime's). Obtained from [`Vault::sealed_blob`], which audits it once.
#[derive(Clone)]
pub struct SealedBlob {
    blobs: BlobStore,
    key: String,
    header: SealedHeader,
    keys: Arc<ArchiveKeys>,
    handle: tokio::runtime::Handle,
}

impl std::fmt::Debug for SealedBlob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedBlob")
            .field("key", &self.key)
            .field("archive_id", &self.header.header.archive_id)
            .finish_non_exhaustive()
    }
}

impl SealedBlob {
    /// The blob key.
    #[must_use]
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The archive's id.
    #[must_use]
    pub fn archive_id(&self) -> Uuid {
        self.header.header.archive_id
    }

    /// A fresh reader over the plaintext, positioned at 0.
    ///
    /// # Errors
    /// A blob that changed or vanished since, a bad header MAC, or I/O errors.
    pub fn open(&self) -> Result<SealedReader<crate::blob::BlobReader>> {
        let source = self.blobs.blocking_reader(&self.key, self.handle.clone())?;
        Ok(SealedReader::new(source, self.header.clone(), &self.keys)?)
    }
}

/// What a key rotation did.
#[derive(Debug, Clone, Default)]
pub struct RotationReport {
    /// The KEK now active.
    pub active_kek: String,
    /// Archives whose headers were rewrapped.
    pub rewrapped: Vec<Uuid>,
    /// Archives that could not be reached (moved or deleted files); their old KEK is kept.
    pub unreachable: Vec<(Uuid, String)>,
    /// Old KEKs destroyed because no archive names them any more.
    pub destroyed_keks: Vec<String>,
}

/// The keyring, metadata DB, blob store and audit log of one data directory.
#[derive(Clone)]
pub struct Vault {
    keyring: Arc<dyn Keyring>,
    db: MetadataDb,
    blobs: BlobStore,
    audit: AuditLog,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("keyring", &self.keyring)
            .finish_non_exhaustive()
    }
}

impl Vault {
    /// Opens (creating on first use) the data directory's keyring, database and blob store.
    ///
    /// # Errors
    /// Any part that cannot be opened.
    pub async fn open(config: &StorageConfig) -> Result<Self> {
        fs::create_dir_all(&config.data_dir).map_err(|e| Error::io(&config.data_dir, e))?;
        let keyring: Arc<dyn Keyring> = Arc::new(FileKeyring::open(&config.data_dir)?);
        let db = MetadataDb::open(&config.data_dir, config.database_url.as_deref()).await?;
        let blobs = BlobStore::open(&config.data_dir, config.blob_url.as_deref())?;
        Ok(Self::from_parts(keyring, db, blobs))
    }

    /// A vault over parts opened elsewhere (tests, other keyrings).
    #[must_use]
    pub fn from_parts(keyring: Arc<dyn Keyring>, db: MetadataDb, blobs: BlobStore) -> Self {
        let audit = AuditLog::new(db.clone());
        Self {
            keyring,
            db,
            blobs,
            audit,
        }
    }

    /// The audit log.
    #[must_use]
    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }

    /// The metadata database.
    #[must_use]
    pub fn db(&self) -> &MetadataDb {
        &self.db
    }

    /// The blob store.
    #[must_use]
    pub fn blobs(&self) -> &BlobStore {
        &self.blobs
    }

    /// The keyring's KEKs (ids and dates, never key bytes).
    ///
    /// # Errors
    /// A keyring failure.
    pub async fn keyring_keks(&self) -> Result<Vec<crate::keyring::KekInfo>> {
        Ok(self.keyring.keks().await?)
    }

    /// Wraps a secret that is not an archive key (a live session's media key) under the active
    /// KEK, bound to `context` (say what it is and whose: `b"session-media-key:<uuid>"`). The
    /// result names its KEK, so it unwraps after rotations as long as that KEK lives:
    /// `[kek id length: u8][kek id][wrapped key]`.
    ///
    /// # Errors
    /// A keyring failure.
    pub async fn wrap_secret(&self, context: &[u8], secret: &FileKey) -> Result<Vec<u8>> {
        let kek = self.keyring.active_kek().await?;
        let wrapped = self.keyring.wrap(&kek, context, secret).await?;
        let id = u8::try_from(kek.len()).expect("KEK ids are short");
        let mut out = Vec::with_capacity(1 + kek.len() + wrapped.len());
        out.push(id);
        out.extend_from_slice(kek.as_bytes());
        out.extend_from_slice(&wrapped);
        Ok(out)
    }

    /// Unwraps what [`Vault::wrap_secret`] made with the same `context`.
    ///
    /// # Errors
    /// Malformed input, a destroyed KEK, or another context.
    pub async fn unwrap_secret(&self, context: &[u8], wrapped: &[u8]) -> Result<FileKey> {
        let malformed = || KeyringError::UnwrapFailed {
            kek_id: "(malformed wrapped secret)".into(),
        };
        let (&len, rest) = wrapped.split_first().ok_or_else(malformed)?;
        if rest.len() < usize::from(len) {
            return Err(malformed().into());
        }
        let (kek, key) = rest.split_at(usize::from(len));
        let kek = std::str::from_utf8(kek).map_err(|_| malformed())?;
        Ok(self.keyring.unwrap(kek, context, key).await?)
    }

    /// Wraps a new session's media key (the key the agent seals frames under) for the
    /// sessions table, bound to the session: a wrapped key moved to another session's row
    /// does not unwrap.
    ///
    /// # Errors
    /// A keyring failure.
    pub async fn wrap_session_media_key(&self, session_id: Uuid, key: &FileKey) -> Result<Vec<u8>> {
        self.wrap_secret(&session_media_key_context(session_id), key)
            .await
    }

    /// A session's media key, unwrapped from its row.
    ///
    /// # Errors
    /// A key wrapped for another session, or a keyring failure.
    pub async fn unwrap_session_media_key(
        &self,
        session_id: Uuid,
        wrapped: &[u8],
    ) -> Result<FileKey> {
        self.unwrap_secret(&session_media_key_context(session_id), wrapped)
            .await
    }

    /// Seals the file `input` into the archive file `output`: written to a temporary file
    /// beside it, synced and renamed, so `output` is either a complete archive or absent.
    ///
    /// # Errors
    /// Unreadable input, unwritable output, or a keyring/database failure.
    pub async fn seal_file(
        &self,
        input: &Path,
        output: &Path,
        access: &Access,
        mut progress: impl FnMut(u64) + Send + 'static,
    ) -> Result<ArchiveRecord> {
        let source = File::open(input).map_err(|e| Error::io(input, e));
        let source_name = input.file_name().map(|n| n.to_string_lossy().into_owned());
        let input_path = input.to_path_buf();
        self.seal_with(output, "archive.seal", access, move |writer| {
            let source = source?;
            let mut hasher = Sha256::new();
            let mut reader = BufReader::with_capacity(256 * 1024, source);
            let mut buf = vec![0u8; 256 * 1024];
            let mut total = 0u64;
            loop {
                let n = match reader.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(Error::io(&input_path, e)),
                };
                hasher.update(&buf[..n]);
                writer.write_all(&buf[..n])?;
                total += n as u64;
                progress(total);
            }
            Ok(serde_json::json!({
                "kind": "file",
                "source_name": source_name,
                "bytes": total,
                "sha256": hex::encode(hasher.finalize()),
                "sealed_at": now_rfc3339(),
                "tool": concat!("idv ", env!("CARGO_PKG_VERSION")),
            }))
        })
        .await
    }

    /// Seals whatever `produce` writes into the archive file `output`, with the manifest it
    /// returns; `action` names the operation in the audit log (`archive.seal`, `archive.mux`).
    /// `produce` runs on a blocking thread and sees only a [`Write`]: plaintext goes straight
    /// into the AEAD, never to disk. The archive is staged beside `output`, synced and renamed
    /// only when `produce` succeeded, so `output` is either complete or absent — a failure
    /// leaves no file, no key and no record.
    ///
    /// # Errors
    /// Whatever `produce` returns, an unwritable output, or a keyring/database failure.
    pub async fn seal_with(
        &self,
        output: &Path,
        action: &str,
        access: &Access,
        produce: impl FnOnce(&mut dyn Write) -> Result<serde_json::Value> + Send + 'static,
    ) -> Result<ArchiveRecord> {
        let result = self.seal_with_inner(output, produce).await;
        self.record(access, action, &result, |r| r.archive_id, output)
            .await?;
        result
    }

    async fn seal_with_inner(
        &self,
        output: &Path,
        produce: impl FnOnce(&mut dyn Write) -> Result<serde_json::Value> + Send + 'static,
    ) -> Result<ArchiveRecord> {
        let output = absolute(output)?;
        let (header, keys) = self.new_archive_keys().await?;
        let (archive_id, key_id, kek_id) =
            (header.archive_id, header.key_id, header.kek_id.clone());
        let out_path = output.clone();
        let sealed = tokio::task::spawn_blocking(move || -> Result<(u64, u64)> {
            let staged = StagedFile::create(&out_path)?;
            let mut writer = SealedWriter::new(staged.file(), &header, &keys)?;
            let manifest = match produce(&mut writer) {
                Ok(manifest) => manifest,
                Err(e) => {
                    writer.abandon(); // the staged file is removed when `staged` drops
                    return Err(e);
                }
            };
            let sealed = writer.finish(&manifest)?;
            let lens = (sealed.payload_len, sealed.sealed_len);
            staged.commit()?;
            Ok(lens)
        })
        .await
        .map_err(|e| Error::Task(e.to_string()))?;
        let (payload_len, sealed_len) = match sealed {
            Ok(lens) => lens,
            Err(e) => {
                self.discard_key(key_id).await;
                return Err(e);
            }
        };
        self.record_sealed(
            archive_id,
            key_id,
            kek_id,
            ArchiveLocation::File(output),
            payload_len,
            sealed_len,
        )
        .await
    }

    /// Seals a stream into the blob store under `key`: a multipart upload, memory bounded,
    /// aborted on any failure so nothing is left under `key` but a complete archive.
    ///
    /// # Errors
    /// A read, upload, keyring or database failure.
    pub async fn seal_to_blob<R: AsyncRead + Unpin>(
        &self,
        mut source: R,
        key: &str,
        manifest: serde_json::Value,
        access: &Access,
    ) -> Result<ArchiveRecord> {
        let result = async {
            let (header, keys) = self.new_archive_keys().await?;
            let (archive_id, key_id, kek_id) =
                (header.archive_id, header.key_id, header.kek_id.clone());
            let upload = self.blobs.writer(key)?;
            let mut writer = AsyncSealedWriter::new(upload, &header, &keys)?;
            let copied = async {
                let mut buf = vec![0u8; 256 * 1024];
                loop {
                    let n = source.read(&mut buf).await?;
                    if n == 0 {
                        break;
                    }
                    tokio::io::AsyncWriteExt::write_all(&mut writer, &buf[..n]).await?;
                }
                Ok::<_, io::Error>(())
            }
            .await;
            if let Err(e) = copied {
                if let Some(upload) = writer.abandon()
                    && let Err(abort) = upload.abort().await
                {
                    tracing::warn!(key, error = %abort, "could not abort the upload of a failed archive");
                }
                self.discard_key(key_id).await;
                return Err(ArchiveError::Io(e).into());
            }
            let (upload, payload_len, sealed_len) = match writer.finish(&manifest).await {
                Ok(s) => (s.inner, s.payload_len, s.sealed_len),
                Err(e) => {
                    // The upload was dropped with the writer, which aborts it.
                    self.discard_key(key_id).await;
                    return Err(e.into());
                }
            };
            if let Err(e) = upload.finish().await {
                self.discard_key(key_id).await;
                return Err(e.into());
            }
            let location = ArchiveLocation::Blob(key.to_owned());
            self.record_sealed(archive_id, key_id, kek_id, location, payload_len, sealed_len)
                .await
        }
        .await;
        self.record(access, "archive.seal", &result, |r| r.archive_id, key)
            .await?;
        result
    }

    /// Seals whatever `produce` writes into the blob store under `key`, with the manifest it
    /// returns — [`Self::seal_with`] for the blob store. `produce` runs on a blocking thread
    /// and writes through the AEAD straight into a multipart upload (memory bounded): the
    /// plaintext never touches a disk, and if `produce` or the upload fails the upload is
    /// aborted, so `key` holds a complete archive or nothing.
    ///
    /// # Errors
    /// Whatever `produce` returns, an upload failure, or a keyring/database failure.
    pub async fn seal_into_blob(
        &self,
        key: &str,
        action: &str,
        access: &Access,
        produce: impl FnOnce(&mut dyn Write) -> Result<serde_json::Value> + Send + 'static,
    ) -> Result<ArchiveRecord> {
        let result = async {
            let (header, keys) = self.new_archive_keys().await?;
            let (archive_id, key_id, kek_id) =
                (header.archive_id, header.key_id, header.kek_id.clone());
            let upload = self.blobs.writer(key)?;
            let handle = tokio::runtime::Handle::current();
            let sealed = tokio::task::spawn_blocking(move || {
                let bridge = tokio_util::io::SyncIoBridge::new_with_handle(upload, handle);
                // A writer dropped with its upload aborts the upload.
                let mut writer =
                    SealedWriter::new(bridge, &header, &keys).map_err(|e| (e.into(), None))?;
                let manifest = match produce(&mut writer) {
                    Ok(manifest) => manifest,
                    Err(e) => return Err((e, writer.abandon().map(|b| Box::new(b.into_inner())))),
                };
                match writer.finish(&manifest) {
                    Ok(sealed) => Ok((sealed.inner.into_inner(), sealed.payload_len, sealed.sealed_len)),
                    Err(e) => Err((e.into(), None)),
                }
            })
            .await
            .map_err(|e| Error::Task(e.to_string()))?;
            let (upload, payload_len, sealed_len) = match sealed {
                Ok(done) => done,
                Err((e, upload)) => {
                    if let Some(upload) = upload
                        && let Err(abort) = upload.abort().await
                    {
                        tracing::warn!(key, error = %abort, "could not abort the upload of a failed archive");
                    }
                    self.discard_key(key_id).await;
                    return Err(e);
                }
            };
            if let Err(e) = upload.finish().await {
                self.discard_key(key_id).await;
                return Err(e.into());
            }
            let location = ArchiveLocation::Blob(key.to_owned());
            self.record_sealed(archive_id, key_id, kek_id, location, payload_len, sealed_len)
                .await
        }
        .await;
        self.record(access, action, &result, |r| r.archive_id, key)
            .await?;
        result
    }

    /// Removes an archive nobody may keep: its bytes, its key and its record (a mux result
    /// that lost its job to another worker). Audited as `archive.discard`. Shredded archives
    /// keep their record and are refused.
    ///
    /// # Errors
    /// A storage or database failure; an unknown archive is a no-op.
    pub async fn discard_archive(&self, archive_id: Uuid, access: &Access) -> Result<()> {
        let result = async {
            let Some(record) = self.db.archive(archive_id).await? else {
                return Ok(());
            };
            match ArchiveLocation::parse(&record.location) {
                Some(ArchiveLocation::Blob(key)) => self.blobs.delete(&key).await?,
                Some(ArchiveLocation::File(path)) => match fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(Error::io(&path, e)),
                },
                None => {}
            }
            self.db.delete_archive(archive_id).await?;
            self.db.delete_retention_key(record.key_id).await?;
            Ok(())
        }
        .await;
        self.audit_event(
            access,
            "archive.discard",
            &format!("archive:{archive_id}"),
            outcome_of(&result),
        )
        .await?;
        result
    }

    /// Opens an archive file for reading after checking its header; the access is audited.
    ///
    /// # Errors
    /// A damaged or foreign archive, a shredded key, or I/O errors.
    pub async fn open_file(&self, path: &Path, access: &Access) -> Result<SealedReader<File>> {
        let result = self.open_file_unaudited(path).await;
        self.record(
            access,
            "archive.open",
            &result,
            |r| r.header().archive_id,
            path,
        )
        .await?;
        result
    }

    /// Checks every chunk and the manifest of an archive file; the check is audited.
    ///
    /// # Errors
    /// The first problem found, naming the chunk.
    pub async fn verify_file(
        &self,
        path: &Path,
        access: &Access,
        progress: impl FnMut(u64) + Send + 'static,
    ) -> Result<VerifyReport> {
        let result = async {
            let reader = self.open_file_unaudited(path).await?;
            run_blocking(move || {
                let mut reader = reader;
                Ok(reader.verify(progress)?)
            })
            .await
        }
        .await;
        self.record(access, "archive.verify", &result, |r| r.archive_id, path)
            .await?;
        result
    }

    /// Opens an archive stored in the blob store, as a blocking reader for a blocking thread.
    ///
    /// # Errors
    /// As [`Self::open_file`].
    pub async fn open_blob(
        &self,
        key: &str,
        access: &Access,
    ) -> Result<SealedReader<crate::blob::BlobReader>> {
        let sealed = self.sealed_blob(key, access).await?;
        run_blocking(move || sealed.open()).await
    }

    /// Opens an archive stored in the blob store once — header checked, keys unwrapped, the
    /// access audited — for a reader that needs to read it several times over (a demuxer
    /// probing, then decoding): [`SealedBlob::open`] gives a fresh reader each time.
    ///
    /// # Errors
    /// As [`Self::open_file`].
    pub async fn sealed_blob(&self, key: &str, access: &Access) -> Result<SealedBlob> {
        let result = async {
            let mut source = self
                .blobs
                .blocking_reader(key, tokio::runtime::Handle::current())?;
            let header = run_blocking(move || Ok(SealedHeader::read_from(&mut source)?)).await?;
            let keys = Arc::new(self.keys_for(&header).await?);
            let sealed = SealedBlob {
                blobs: self.blobs.clone(),
                key: key.to_owned(),
                header,
                keys,
                handle: tokio::runtime::Handle::current(),
            };
            // Check the header's MAC and the trailer now, so a bad archive is refused (and
            // audited as such) here rather than at the first read.
            let check = sealed.clone();
            run_blocking(move || check.open().map(drop)).await?;
            Ok(sealed)
        }
        .await;
        self.record(
            access,
            "archive.open",
            &result,
            |r| r.header.header.archive_id,
            key,
        )
        .await?;
        result
    }

    async fn open_file_unaudited(&self, path: &Path) -> Result<SealedReader<File>> {
        let path = path.to_owned();
        let (header, file) = run_blocking(move || {
            let mut file = File::open(&path).map_err(|e| Error::io(&path, e))?;
            Ok((SealedHeader::read_from(&mut file)?, file))
        })
        .await?;
        let keys = self.keys_for(&header).await?;
        Ok(SealedReader::new(file, header, &keys)?)
    }

    /// The keys of an archive: its retention key from the database, its file key unwrapped
    /// by the keyring.
    ///
    /// # Errors
    /// [`ArchiveError::Shredded`], [`ArchiveError::WrongKey`], or [`Error::UnknownKey`].
    pub async fn keys_for(&self, sealed: &SealedHeader) -> Result<ArchiveKeys> {
        let header = &sealed.header;
        let record = self
            .db
            .retention_key(header.key_id)
            .await?
            .ok_or(Error::UnknownKey {
                key_id: header.key_id,
            })?;
        let Some(secret) = record.secret.as_deref() else {
            let at = record
                .destroyed_at
                .map_or_else(|| "an unrecorded time".to_owned(), rfc3339);
            return Err(ArchiveError::Shredded {
                archive_id: header.archive_id,
                at,
            }
            .into());
        };
        let retention = RetentionKey::from_bytes(*secret);
        let file = self
            .keyring
            .unwrap(&header.kek_id, &header.wrap_context(), &header.wrapped_key)
            .await
            .map_err(|e| match e {
                KeyringError::UnwrapFailed { kek_id } | KeyringError::UnknownKek { kek_id } => {
                    Error::Archive(ArchiveError::WrongKey { kek_id })
                }
                other => other.into(),
            })?;
        Ok(ArchiveKeys::derive(header.archive_id, &file, &retention))
    }

    /// Makes a new KEK active, rewraps every reachable archive under it (header only; the
    /// payload is copied byte for byte), and — when every archive was reached — destroys the
    /// KEKs no archive needs any more.
    ///
    /// # Errors
    /// A keyring or database failure. Unreachable archives are reported, not errors.
    pub async fn rotate_keys(&self, access: &Access) -> Result<RotationReport> {
        let result = self.rotate_inner().await;
        let object = result.as_ref().map_or_else(
            |_| "keyring".to_owned(),
            |r| format!("keyring:{}", r.active_kek),
        );
        self.audit_event(access, "keys.rotate", &object, outcome_of(&result))
            .await?;
        result
    }

    async fn rotate_inner(&self) -> Result<RotationReport> {
        let active = self.keyring.rotate().await?;
        let mut report = RotationReport {
            active_kek: active.clone(),
            ..RotationReport::default()
        };
        for record in self.db.archives().await? {
            if record.state != ArchiveState::Sealed || record.kek_id == active {
                continue;
            }
            match self.rewrap(&record, &active).await {
                Ok(()) => report.rewrapped.push(record.archive_id),
                Err(e) => {
                    tracing::warn!(archive_id = %record.archive_id, error = %e, "archive not rewrapped; its old KEK is kept");
                    report.unreachable.push((record.archive_id, e.to_string()));
                }
            }
        }
        if !report.unreachable.is_empty() {
            // A header we could not read may name any older KEK (the database can lag a
            // header rewrite by a crash): keep them all until every archive is rewrapped.
            return Ok(report);
        }
        let still_needed: std::collections::HashSet<String> = self
            .db
            .archives()
            .await?
            .into_iter()
            .filter(|r| r.state == ArchiveState::Sealed)
            .map(|r| r.kek_id)
            .collect();
        for kek in self.keyring.keks().await? {
            if !kek.active && !still_needed.contains(&kek.id) {
                self.keyring.destroy_kek(&kek.id).await?;
                report.destroyed_keks.push(kek.id);
            }
        }
        Ok(report)
    }

    async fn rewrap(&self, record: &ArchiveRecord, new_kek: &str) -> Result<()> {
        let location = ArchiveLocation::decode(&record.location)
            .ok_or_else(|| Error::BadLocation(record.location.clone()))?;
        let ArchiveLocation::File(path) = location else {
            return self.rewrap_blob(record, new_kek).await;
        };
        let read_path = path.clone();
        let (sealed, file) = run_blocking(move || {
            let mut file = File::open(&read_path).map_err(|e| Error::io(&read_path, e))?;
            Ok((SealedHeader::read_from(&mut file)?, file))
        })
        .await?;
        let new_header = self.rewrapped_header(&sealed, record, new_kek).await?;
        let old_len = sealed.len() as u64;
        run_blocking(move || {
            let staged = StagedFile::create(&path)?;
            let mut out = staged.file();
            out.write_all(&new_header)
                .map_err(|e| Error::io(&path, e))?;
            let mut rest = file;
            io::Seek::seek(&mut rest, io::SeekFrom::Start(old_len))
                .map_err(|e| Error::io(&path, e))?;
            io::copy(&mut rest, &mut out).map_err(|e| Error::io(&path, e))?;
            staged.commit()
        })
        .await?;
        self.db.set_archive_kek(record.archive_id, new_kek).await?;
        Ok(())
    }

    async fn rewrap_blob(&self, record: &ArchiveRecord, new_kek: &str) -> Result<()> {
        let ArchiveLocation::Blob(key) = ArchiveLocation::decode(&record.location)
            .ok_or_else(|| Error::BadLocation(record.location.clone()))?
        else {
            unreachable!("called for blob locations only");
        };
        let head = self
            .blobs
            .get_range(
                &key,
                0..crate::archive::MAX_HEADER_LEN.min(record.sealed_len as usize) as u64,
            )
            .await?;
        let sealed = SealedHeader::parse(&head)?;
        let new_header = self.rewrapped_header(&sealed, record, new_kek).await?;
        // Objects are immutable: upload header + the old bytes after it as a new object
        // version under the same key; the old object stays until the upload completes.
        let mut upload = self.blobs.writer(&key)?;
        tokio::io::AsyncWriteExt::write_all(&mut upload, &new_header).await?;
        let mut offset = sealed.len() as u64;
        while offset < record.sealed_len {
            let end = (offset + 8 * 1024 * 1024).min(record.sealed_len);
            let part = self.blobs.get_range(&key, offset..end).await?;
            tokio::io::AsyncWriteExt::write_all(&mut upload, &part).await?;
            offset = end;
        }
        upload.finish().await?;
        self.db.set_archive_kek(record.archive_id, new_kek).await?;
        Ok(())
    }

    /// The header of `sealed` rewrapped under `new_kek`, MAC'd under the unchanged keys.
    async fn rewrapped_header(
        &self,
        sealed: &SealedHeader,
        record: &ArchiveRecord,
        new_kek: &str,
    ) -> Result<Vec<u8>> {
        if sealed.header.archive_id != record.archive_id {
            return Err(Error::Archive(ArchiveError::MalformedHeader(
                "the file at this location is another archive",
            )));
        }
        let keys = self.keys_for(sealed).await?;
        sealed.verify(&keys)?;
        let header = &sealed.header;
        let file = self
            .keyring
            .unwrap(&header.kek_id, &header.wrap_context(), &header.wrapped_key)
            .await?;
        let context = crate::archive::wrap_context(header.archive_id, header.key_id, new_kek);
        let wrapped = self.keyring.wrap(new_kek, &context, &file).await?;
        Ok(header
            .rewrapped(new_kek.to_owned(), wrapped)
            .encode(&keys)?)
    }

    /// Crypto-shreds an archive: destroys its retention key, so no copy of it can ever be
    /// read again, and records when and why.
    ///
    /// # Errors
    /// [`Error::UnknownArchive`] or a database failure.
    pub async fn shred(&self, archive_id: Uuid, access: &Access) -> Result<()> {
        let result = async {
            let record = self
                .db
                .archive(archive_id)
                .await?
                .ok_or(Error::UnknownArchive { archive_id })?;
            let reason = access.reason.as_deref().unwrap_or("retention period ended");
            self.db
                .destroy_retention_key(record.key_id, OffsetDateTime::now_utc(), reason)
                .await?;
            self.db.mark_archive_shredded(archive_id).await?;
            Ok(())
        }
        .await;
        self.audit_event(
            access,
            "archive.shred",
            &format!("archive:{archive_id}"),
            outcome_of(&result),
        )
        .await?;
        result
    }

    /// Fresh keys and header for a new archive; the retention key is recorded first.
    async fn new_archive_keys(&self) -> Result<(ArchiveHeader, ArchiveKeys)> {
        let (archive_id, key_id) = (Uuid::new_v4(), Uuid::new_v4());
        let (file, retention) = (FileKey::generate(), RetentionKey::generate());
        let kek_id = self.keyring.active_kek().await?;
        let context = crate::archive::wrap_context(archive_id, key_id, &kek_id);
        let wrapped = self.keyring.wrap(&kek_id, &context, &file).await?;
        self.db
            .insert_retention_key(key_id, archive_id, retention.expose())
            .await?;
        let keys = ArchiveKeys::derive(archive_id, &file, &retention);
        Ok((
            ArchiveHeader::new(archive_id, key_id, kek_id, wrapped),
            keys,
        ))
    }

    /// Records a finished archive. If that fails the archive and its key are removed: an
    /// archive nobody can find by id would escape rotation and retention.
    async fn record_sealed(
        &self,
        archive_id: Uuid,
        key_id: Uuid,
        kek_id: String,
        location: ArchiveLocation,
        payload_len: u64,
        sealed_len: u64,
    ) -> Result<ArchiveRecord> {
        let record = ArchiveRecord {
            archive_id,
            key_id,
            kek_id,
            location: location.encode(),
            payload_len,
            sealed_len,
            created_at: OffsetDateTime::now_utc(),
            state: ArchiveState::Sealed,
        };
        if let Err(e) = self.db.insert_archive(&record).await {
            let removed = match &location {
                ArchiveLocation::File(path) => fs::remove_file(path).map_err(|e| e.to_string()),
                ArchiveLocation::Blob(key) => {
                    self.blobs.delete(key).await.map_err(|e| e.to_string())
                }
            };
            if let Err(why) = removed {
                tracing::warn!(location = %record.location, error = %why, "could not remove an unrecorded archive");
            }
            self.discard_key(key_id).await;
            return Err(e.into());
        }
        Ok(record)
    }

    /// Forgets the key of an archive that was never completed.
    async fn discard_key(&self, key_id: Uuid) {
        if let Err(e) = self.db.delete_retention_key(key_id).await {
            tracing::warn!(%key_id, error = %e, "could not remove the key of an unfinished archive");
        }
    }

    async fn record<T>(
        &self,
        access: &Access,
        action: &str,
        result: &Result<T>,
        archive_id: impl Fn(&T) -> Uuid,
        place: impl AsRef<Path>,
    ) -> Result<()> {
        let object = match result {
            Ok(v) => format!("archive:{}", archive_id(v)),
            Err(_) => format!("path:{}", place.as_ref().display()),
        };
        self.audit_event(access, action, &object, outcome_of(result))
            .await
    }

    async fn audit_event(
        &self,
        access: &Access,
        action: &str,
        object: &str,
        outcome: Outcome,
    ) -> Result<()> {
        self.audit
            .append(AuditEvent {
                actor: access.actor.clone(),
                action: action.to_owned(),
                object: object.to_owned(),
                reason: access.reason.clone(),
                outcome,
            })
            .await?;
        Ok(())
    }
}

fn session_media_key_context(session_id: Uuid) -> Vec<u8> {
    format!("idv session media key v1:{session_id}").into_bytes()
}

fn outcome_of<T>(result: &Result<T>) -> Outcome {
    if result.is_ok() {
        Outcome::Success
    } else {
        Outcome::Failed
    }
}

async fn run_blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Task(e.to_string()))?
}

fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).map_err(|e| Error::io(path, e))
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

fn now_rfc3339() -> String {
    rfc3339(OffsetDateTime::now_utc())
}
