//! Streaming uploads ([`BlobWriter`]) with bounded memory, and the limits
//! ([`UploadLimits`]) that bound it.
//!
//! `object_store` has a `BufWriter` that does most of this; it is not used because it accepts
//! any write whole (one large write becomes many parts in memory at once), panics when used
//! after shutdown, and does not say how much it buffered.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use futures::future::BoxFuture;
use object_store::path::Path;
use object_store::{MultipartUpload, ObjectStore, ObjectStoreExt, PutPayloadMut};
use tokio::io::AsyncWrite;
use tokio::task::JoinSet;

use super::error::{BlobError, Result, from_backend};

/// S3 rejects parts smaller than this (except the last).
const MIN_PART_SIZE: usize = 5 * 1024 * 1024;
/// S3 rejects parts larger than this.
const MAX_PART_SIZE: usize = 5 * 1024 * 1024 * 1024;
/// More parts in flight than this buys no throughput and costs a part of memory each.
const MAX_PARTS_IN_FLIGHT: usize = 64;
/// Allocation granularity of the part buffer: few, large blocks instead of many 8 KiB ones.
const BUFFER_BLOCK: usize = 256 * 1024;

/// How a [`BlobWriter`] cuts a blob into parts, which bounds its memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadLimits {
    part_size: usize,
    parts_in_flight: usize,
}

impl Default for UploadLimits {
    /// 5 MiB parts (the S3 minimum), 4 in flight: at most 25 MiB per writer.
    fn default() -> Self {
        Self {
            part_size: MIN_PART_SIZE,
            parts_in_flight: 4,
        }
    }
}

impl UploadLimits {
    /// Parts of `part_size` bytes (5 MiB to 5 GiB, S3's limits), at most `parts_in_flight`
    /// (1 to 64) uploading at once.
    pub fn new(part_size: usize, parts_in_flight: usize) -> Result<Self> {
        if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&part_size) {
            return Err(BlobError::InvalidSettings {
                reason: format!(
                    "upload part size {part_size} is outside S3's limits; choose between 5 MiB \
                     ({MIN_PART_SIZE}) and 5 GiB ({MAX_PART_SIZE}) bytes"
                ),
            });
        }
        if !(1..=MAX_PARTS_IN_FLIGHT).contains(&parts_in_flight) {
            return Err(BlobError::InvalidSettings {
                reason: format!(
                    "{parts_in_flight} upload parts in flight is not possible; choose 1 to \
                     {MAX_PARTS_IN_FLIGHT}"
                ),
            });
        }
        Ok(Self {
            part_size,
            parts_in_flight,
        })
    }

    /// Bytes per part (every part but the last has exactly this size).
    pub fn part_size(&self) -> usize {
        self.part_size
    }

    /// Parts uploading at once.
    pub fn parts_in_flight(&self) -> usize {
        self.parts_in_flight
    }

    /// The most memory one writer holds for blob data: the part being filled plus the parts
    /// in flight.
    pub fn max_buffered_bytes(&self) -> usize {
        self.part_size * (self.parts_in_flight + 1)
    }
}

/// A streaming upload of one blob.
///
/// Write with `tokio::io::AsyncWriteExt`, then call [`finish`](Self::finish) (or `shutdown`,
/// which does the same) to store the blob. Must be driven inside a tokio runtime (parts upload
/// as tokio tasks).
///
/// A blob smaller than one part is kept in memory and stored with one PUT when the writer
/// finishes. Once it outgrows one part the writer switches to a multipart upload: each full
/// part is sent in the background while the next one fills, with at most
/// [`UploadLimits::parts_in_flight`] parts on the wire; a write that finds the next part full
/// and every slot taken waits (back-pressure), and a write never takes more than fits in the
/// current part. So a writer never holds more than [`UploadLimits::max_buffered_bytes`],
/// however large the blob or the writes ([`peak_buffered_bytes`](Self::peak_buffered_bytes)
/// shows what it did hold).
///
/// Nothing is visible under the key until `finish` returns: S3 shows a multipart upload only
/// once it is completed, and the local store writes to a staging file that is renamed into
/// place. A failed or aborted writer aborts its multipart upload; one dropped unfinished aborts
/// it on the current tokio runtime in the background and logs that it did.
pub struct BlobWriter {
    store: Arc<dyn ObjectStore>,
    description: Arc<str>,
    key: String,
    path: Path,
    limits: UploadLimits,
    phase: Phase,
    written: u64,
    peak_buffered: usize,
}

impl std::fmt::Debug for BlobWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobWriter")
            .field("store", &self.description)
            .field("key", &self.key)
            .field("phase", &self.phase.name())
            .field("written", &self.written)
            .finish()
    }
}

enum Phase {
    /// Less than one part so far: all in memory, stored with one PUT on finish.
    Buffering(PutPayloadMut),
    /// Outgrew one part: the multipart upload is being created.
    Starting {
        start: PendingStart,
        buffer: PutPayloadMut,
    },
    /// Parts are being uploaded.
    Uploading(Multipart),
    /// `finish` or `shutdown` is storing the blob.
    Completing(BoxFuture<'static, Result<()>>),
    /// The blob is stored.
    Finished,
    /// An error ended the upload; `upload` is still to be aborted, if any.
    Failed {
        upload: Option<Multipart>,
        reason: String,
    },
    /// `abort` ran.
    Aborted,
}

impl Phase {
    fn name(&self) -> &'static str {
        match self {
            Self::Buffering(_) => "buffering",
            Self::Starting { .. } => "starting",
            Self::Uploading(_) => "uploading",
            Self::Completing(_) => "completing",
            Self::Finished => "finished",
            Self::Failed { .. } => "failed",
            Self::Aborted => "aborted",
        }
    }
}

impl BlobWriter {
    pub(crate) fn new(
        store: Arc<dyn ObjectStore>,
        description: Arc<str>,
        key: String,
        path: Path,
        limits: UploadLimits,
    ) -> Self {
        Self {
            store,
            description,
            key,
            path,
            limits,
            phase: Phase::Buffering(new_buffer()),
            written: 0,
            peak_buffered: 0,
        }
    }

    /// The key this writer stores under.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Bytes accepted so far.
    pub fn bytes_written(&self) -> u64 {
        self.written
    }

    /// The most blob bytes this writer has held in memory at once (part being filled plus
    /// parts in flight); never more than [`UploadLimits::max_buffered_bytes`].
    pub fn peak_buffered_bytes(&self) -> usize {
        self.peak_buffered
    }

    /// Stores everything written so far under the key and returns the blob's size.
    ///
    /// On error the upload is aborted and nothing is stored under the key (an earlier blob
    /// under the same key stays as it was).
    pub async fn finish(mut self) -> Result<u64> {
        if let Phase::Failed { upload, .. } = &mut self.phase
            && let Some(upload) = upload.take()
        {
            upload.abort().await;
        }
        std::future::poll_fn(|cx| self.poll_finish(cx)).await?;
        Ok(self.written)
    }

    /// Abandons the upload and removes whatever parts were already sent.
    ///
    /// Nothing is stored under the key; an earlier blob under the same key stays as it was.
    /// Errors only if the writer had already finished.
    pub async fn abort(mut self) -> Result<()> {
        match std::mem::replace(&mut self.phase, Phase::Aborted) {
            Phase::Buffering(_) | Phase::Aborted => Ok(()),
            Phase::Starting { mut start, .. } => {
                if let Some(Ok(upload)) = start.wait().await {
                    self.multipart(upload, new_buffer()).abort().await;
                }
                Ok(())
            }
            Phase::Uploading(upload)
            | Phase::Failed {
                upload: Some(upload),
                ..
            } => {
                upload.abort().await;
                Ok(())
            }
            Phase::Failed { upload: None, .. } => Ok(()),
            // Dropping the completion aborts a multipart upload that has not completed yet.
            Phase::Completing(_) => Ok(()),
            Phase::Finished => {
                self.phase = Phase::Finished;
                Err(BlobError::UploadClosed {
                    key: self.key.clone(),
                    state: "finished",
                })
            }
        }
    }

    /// Appends `data`; writes all of it, waiting for upload slots as needed.
    pub(crate) async fn write_all_blob(&mut self, mut data: &[u8]) -> Result<()> {
        while !data.is_empty() {
            let n = std::future::poll_fn(|cx| self.poll_append(cx, data)).await?;
            data = &data[n..];
        }
        Ok(())
    }

    fn fail(&mut self, error: BlobError, upload: Option<Multipart>) -> BlobError {
        tracing::warn!(store = %self.description, key = %self.key, error = %error, "blob upload failed");
        self.phase = Phase::Failed {
            upload,
            reason: error.to_string(),
        };
        error
    }

    fn closed_error(&self) -> BlobError {
        match &self.phase {
            Phase::Failed { reason, .. } => BlobError::UploadFailed {
                key: self.key.clone(),
                reason: reason.clone(),
            },
            Phase::Aborted => BlobError::UploadClosed {
                key: self.key.clone(),
                state: "aborted",
            },
            _ => BlobError::UploadClosed {
                key: self.key.clone(),
                state: "finished",
            },
        }
    }

    fn multipart(&self, upload: Box<dyn MultipartUpload>, buffer: PutPayloadMut) -> Multipart {
        Multipart {
            upload: Some(upload),
            parts: JoinSet::new(),
            in_flight: 0,
            buffer,
            description: Arc::clone(&self.description),
            key: self.key.clone(),
        }
    }

    fn note_buffered(&mut self, bytes: usize) {
        self.peak_buffered = self.peak_buffered.max(bytes);
    }

    /// Accepts a prefix of `data` (at most what fits in the current part) and returns its length.
    fn poll_append(&mut self, cx: &mut Context<'_>, data: &[u8]) -> Poll<Result<usize>> {
        let part_size = self.limits.part_size;
        let parts_in_flight = self.limits.parts_in_flight;
        loop {
            match &mut self.phase {
                Phase::Buffering(buffer) => {
                    let buffered = buffer.content_length();
                    if buffered + data.len() <= part_size {
                        buffer.extend_from_slice(data);
                        self.written += data.len() as u64;
                        self.note_buffered(buffered + data.len());
                        return Poll::Ready(Ok(data.len()));
                    }
                    // More than one part: switch to a multipart upload.
                    let buffer = std::mem::take(buffer);
                    let store = Arc::clone(&self.store);
                    let path = self.path.clone();
                    let start = PendingStart::new(
                        Box::pin(async move { store.put_multipart(&path).await }),
                        Arc::clone(&self.description),
                        self.key.clone(),
                    );
                    self.phase = Phase::Starting { start, buffer };
                }
                Phase::Starting { .. } => ready!(self.poll_started(cx))?,
                Phase::Uploading(upload) => {
                    if let Err(error) = upload.reap() {
                        return Poll::Ready(Err(self.fail_uploading(error)));
                    }
                    if upload.buffer.content_length() == part_size {
                        match upload.poll_slots(cx, parts_in_flight - 1) {
                            Poll::Pending => return Poll::Pending,
                            Poll::Ready(Err(error)) => {
                                return Poll::Ready(Err(self.fail_uploading(error)));
                            }
                            Poll::Ready(Ok(())) => upload.send_buffer(),
                        }
                    }
                    let n = (part_size - upload.buffer.content_length()).min(data.len());
                    upload.buffer.extend_from_slice(&data[..n]);
                    // Send a full part at once when a slot is free, so the wire stays busy.
                    if upload.buffer.content_length() == part_size
                        && upload.parts.len() < parts_in_flight
                    {
                        upload.send_buffer();
                    }
                    let held = upload.held_bytes();
                    self.written += n as u64;
                    self.note_buffered(held);
                    return Poll::Ready(Ok(n));
                }
                Phase::Completing(_) | Phase::Finished | Phase::Failed { .. } | Phase::Aborted => {
                    return Poll::Ready(Err(self.closed_error()));
                }
            }
        }
    }

    /// Waits for a multipart upload to start, then hands it the buffered first part.
    fn poll_started(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let Phase::Starting { start, buffer } = &mut self.phase else {
            return Poll::Ready(Ok(()));
        };
        match ready!(start.poll(cx)) {
            Ok(upload) => {
                let buffer = std::mem::take(buffer);
                self.phase = Phase::Uploading(self.multipart(upload, buffer));
                Poll::Ready(Ok(()))
            }
            Err(error) => {
                let error = from_backend(
                    error,
                    &self.description,
                    "starting the upload of",
                    &self.key,
                );
                Poll::Ready(Err(self.fail(error, None)))
            }
        }
    }

    /// Turns a part failure into the writer's error, keeping the upload for `abort`/drop.
    fn fail_uploading(&mut self, error: object_store::Error) -> BlobError {
        let error = from_backend(error, &self.description, "uploading a part of", &self.key);
        let upload = match std::mem::replace(&mut self.phase, Phase::Aborted) {
            Phase::Uploading(upload) => Some(upload),
            _ => None,
        };
        self.fail(error, upload)
    }

    /// Drives the upload to the end: one PUT, or the last part and the completion.
    fn poll_finish(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        loop {
            match &mut self.phase {
                Phase::Buffering(buffer) => {
                    let payload = std::mem::take(buffer).freeze();
                    let store = Arc::clone(&self.store);
                    let path = self.path.clone();
                    let description = Arc::clone(&self.description);
                    let key = self.key.clone();
                    self.phase = Phase::Completing(Box::pin(async move {
                        store
                            .put(&path, payload)
                            .await
                            .map(drop)
                            .map_err(|error| from_backend(error, &description, "storing", &key))
                    }));
                }
                Phase::Starting { .. } => ready!(self.poll_started(cx))?,
                Phase::Uploading(_) => {
                    if let Phase::Uploading(upload) =
                        std::mem::replace(&mut self.phase, Phase::Aborted)
                    {
                        self.phase = Phase::Completing(Box::pin(upload.complete()));
                    }
                }
                Phase::Completing(completion) => {
                    let outcome = ready!(completion.as_mut().poll(cx));
                    return Poll::Ready(match outcome {
                        Ok(()) => {
                            self.phase = Phase::Finished;
                            tracing::debug!(store = %self.description, key = %self.key, bytes = self.written, "blob stored");
                            Ok(())
                        }
                        // The completion aborted the upload itself.
                        Err(error) => Err(self.fail(error, None)),
                    });
                }
                Phase::Finished => return Poll::Ready(Ok(())),
                Phase::Failed { .. } | Phase::Aborted => {
                    return Poll::Ready(Err(self.closed_error()));
                }
            }
        }
    }
}

impl AsyncWrite for BlobWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        self.get_mut()
            .poll_append(cx, data)
            .map_err(io::Error::from)
    }

    /// Parts are sent as they fill; nothing more can be pushed out before `shutdown`.
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// Same as [`BlobWriter::finish`]: stores the blob under its key.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_finish(cx).map_err(io::Error::from)
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        match &self.phase {
            Phase::Starting { .. } | Phase::Uploading(_) | Phase::Completing(_) => {
                tracing::warn!(
                    store = %self.description,
                    key = %self.key,
                    bytes = self.written,
                    "blob upload dropped before it finished; aborting it"
                );
            }
            Phase::Buffering(buffer) if !buffer.is_empty() => {
                tracing::debug!(store = %self.description, key = %self.key, "unfinished small blob upload dropped; nothing was sent");
            }
            _ => {}
        }
        // Field drops do the rest: `Multipart` and `PendingStart` abort themselves.
    }
}

fn new_buffer() -> PutPayloadMut {
    PutPayloadMut::new().with_block_size(BUFFER_BLOCK)
}

/// The creation of a multipart upload. If dropped before it resolves, it is driven to the
/// end on the runtime and the upload it created is aborted.
struct PendingStart {
    future: Option<BoxFuture<'static, object_store::Result<Box<dyn MultipartUpload>>>>,
    description: Arc<str>,
    key: String,
}

impl PendingStart {
    fn new(
        future: BoxFuture<'static, object_store::Result<Box<dyn MultipartUpload>>>,
        description: Arc<str>,
        key: String,
    ) -> Self {
        Self {
            future: Some(future),
            description,
            key,
        }
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<object_store::Result<Box<dyn MultipartUpload>>> {
        let Some(future) = self.future.as_mut() else {
            return Poll::Ready(Err(object_store::Error::Generic {
                store: "idv",
                source: "multipart upload creation polled after it resolved".into(),
            }));
        };
        let outcome = ready!(future.as_mut().poll(cx));
        self.future = None;
        Poll::Ready(outcome)
    }

    /// Waits for the creation; `None` if it already resolved.
    async fn wait(&mut self) -> Option<object_store::Result<Box<dyn MultipartUpload>>> {
        match self.future.take() {
            Some(future) => Some(future.await),
            None => None,
        }
    }
}

impl Drop for PendingStart {
    fn drop(&mut self) {
        let Some(future) = self.future.take() else {
            return;
        };
        let description = Arc::clone(&self.description);
        let key = self.key.clone();
        spawn_cleanup(&self.description, &self.key, async move {
            if let Ok(upload) = future.await {
                abort_upload(Some(upload), JoinSet::new(), &description, &key).await;
            }
        });
    }
}

/// A multipart upload in progress: the part being filled and the parts on the wire.
/// Dropped without `complete` or `abort`, it aborts itself on the runtime.
struct Multipart {
    /// `None` once completed or aborted.
    upload: Option<Box<dyn MultipartUpload>>,
    /// Each task uploads one part and returns its size.
    parts: JoinSet<object_store::Result<usize>>,
    /// Bytes in parts that were sent and not yet reaped.
    in_flight: usize,
    buffer: PutPayloadMut,
    description: Arc<str>,
    key: String,
}

impl Multipart {
    fn held_bytes(&self) -> usize {
        self.in_flight + self.buffer.content_length()
    }

    /// Sends the buffer as the next part.
    fn send_buffer(&mut self) {
        let payload = std::mem::replace(&mut self.buffer, new_buffer()).freeze();
        let Some(upload) = self.upload.as_mut() else {
            return;
        };
        let size = payload.content_length();
        // The part number is fixed here, in call order, so parts may finish in any order.
        let part = upload.put_part(payload);
        self.in_flight += size;
        self.parts.spawn(async move { part.await.map(|()| size) });
    }

    fn settle(
        &mut self,
        joined: std::result::Result<object_store::Result<usize>, tokio::task::JoinError>,
    ) -> object_store::Result<()> {
        match joined {
            Ok(Ok(size)) => {
                self.in_flight -= size;
                Ok(())
            }
            Ok(Err(error)) => Err(error),
            Err(error) => Err(object_store::Error::JoinError { source: error }),
        }
    }

    /// Collects parts that finished, without waiting.
    fn reap(&mut self) -> object_store::Result<()> {
        while let Some(joined) = self.parts.try_join_next() {
            self.settle(joined)?;
        }
        Ok(())
    }

    /// Waits until at most `max` parts are in flight.
    fn poll_slots(&mut self, cx: &mut Context<'_>, max: usize) -> Poll<object_store::Result<()>> {
        while self.parts.len() > max {
            match ready!(self.parts.poll_join_next(cx)) {
                Some(joined) => self.settle(joined)?,
                None => break,
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Sends the last part, waits for all parts and completes the upload; aborts on failure.
    async fn complete(mut self) -> Result<()> {
        if !self.buffer.is_empty() {
            self.send_buffer();
        }
        let mut failure = None;
        while let Some(joined) = self.parts.join_next().await {
            if let Err(error) = self.settle(joined) {
                failure = Some(self.backend_error(error, "uploading a part of"));
                break;
            }
        }
        if failure.is_none()
            && let Some(upload) = self.upload.as_mut()
        {
            match upload.complete().await {
                Ok(_) => {
                    self.upload = None;
                    return Ok(());
                }
                Err(error) => {
                    failure = Some(self.backend_error(error, "completing the upload of"));
                }
            }
        }
        let key = self.key.clone();
        self.abort().await;
        Err(failure.unwrap_or(BlobError::UploadClosed {
            key,
            state: "aborted",
        }))
    }

    fn backend_error(&self, error: object_store::Error, action: &'static str) -> BlobError {
        from_backend(error, &self.description, action, &self.key)
    }

    /// Cancels the parts in flight and aborts the upload. Failures are logged: the caller is
    /// already on an error path or walking away.
    async fn abort(mut self) {
        let upload = self.upload.take();
        let parts = std::mem::take(&mut self.parts);
        abort_upload(upload, parts, &self.description, &self.key).await;
    }
}

impl Drop for Multipart {
    fn drop(&mut self) {
        let Some(upload) = self.upload.take() else {
            return;
        };
        let parts = std::mem::take(&mut self.parts);
        let description = Arc::clone(&self.description);
        let key = self.key.clone();
        spawn_cleanup(&self.description, &self.key, async move {
            abort_upload(Some(upload), parts, &description, &key).await;
        });
    }
}

/// How long an abort waits for part uploads already on the wire to end.
const PARTS_SETTLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

async fn abort_upload(
    upload: Option<Box<dyn MultipartUpload>>,
    mut parts: JoinSet<object_store::Result<usize>>,
    description: &str,
    key: &str,
) {
    // Parts still on the wire must end before the abort, or they could land after it:
    // cancelling our side does not stop a request whose body the server already has (S3
    // documents the same race). So let them finish, for a bounded time, then cancel.
    let settled = tokio::time::timeout(PARTS_SETTLE_TIMEOUT, async {
        while parts.join_next().await.is_some() {}
    })
    .await;
    if settled.is_err() {
        tracing::warn!(store = %description, key = %key, "parts still uploading after the abort wait; cancelling them");
        parts.shutdown().await;
    }
    let Some(mut upload) = upload else {
        return;
    };
    match upload.abort().await {
        Ok(()) => tracing::debug!(store = %description, key = %key, "multipart upload aborted"),
        Err(error) => tracing::warn!(
            store = %description,
            key = %key,
            error = %error,
            "could not abort the multipart upload; its parts stay until the bucket's lifecycle \
             rule for incomplete multipart uploads removes them"
        ),
    }
}

/// Runs `cleanup` on the current tokio runtime, or logs that it cannot.
fn spawn_cleanup(description: &str, key: &str, cleanup: impl Future<Output = ()> + Send + 'static) {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => drop(handle.spawn(cleanup)),
        Err(_) => tracing::warn!(
            store = %description,
            key = %key,
            "no tokio runtime to abort an unfinished multipart upload; its parts stay until the \
             bucket's lifecycle rule for incomplete multipart uploads removes them"
        ),
    }
}
