//! The mux worker (`idv serve --role muxer`, or inside `--role all`): claims the mux jobs
//! ingest queues when a session ends, muxes the session's stored media with its CTI
//! recording, seals the result into the blob store and records it on the job.
//!
//! * **One result per job.** A job is claimed under a lease that a background task renews
//!   while the mux runs. Only the job's current claimant can complete it: a worker that lost
//!   its lease (it stalled, another worker took the job over) has its result refused by the
//!   database, and discards the archive it made — bytes, record and key. Each run writes
//!   under a blob key of its own, so a late worker never touches the winner's archive.
//! * **Crashes.** A worker that dies stops renewing; once its lease expires another worker
//!   claims the job again (`attempts` counts the claims). Past [`WorkerConfig::max_attempts`]
//!   the job is failed for good rather than crash workers forever.
//! * **Failures.** Inputs that cannot be muxed (a damaged recording, no video, no clock sync)
//!   will not get better: the job fails for good with the reason. Anything else (storage, the
//!   keyring) is retried after a back-off.
//! * **Shutdown.** A stopping worker abandons the mux in progress (its upload is aborted, so
//!   nothing is stored) and releases the job, which is queued again at once and the attempt
//!   not counted.
//! * **No plaintext on disk.** Frames are decrypted in memory from the sealed track logs,
//!   the CTI recording is decrypted chunk by chunk from its sealed archive, and the mux writes
//!   through the AEAD into a multipart upload.

mod inputs;

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use storage::db::MuxJob;
use storage::{Access, Vault};
use time::OffsetDateTime;
use tokio::sync::watch;
use uuid::Uuid;

use crate::mux::OutputFormat;
pub use inputs::{ReferenceStatus, SessionInputs};

/// How a worker runs.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Unique among live workers (host, process id and a random suffix by default).
    pub id: String,
    /// Where ingest keeps the sessions' track logs (`DATA_DIR/spool`).
    pub spool_dir: PathBuf,
    /// How long a claim holds without renewal; renewed every third of it.
    pub lease: Duration,
    /// How often to look for work when there was none.
    pub poll_interval: Duration,
    /// A job claimed this many times without finishing is failed for good.
    pub max_attempts: u32,
    /// First retry delay after a transient failure (doubled per attempt).
    pub retry_after: Duration,
    /// The output container.
    pub format: OutputFormat,
}

impl WorkerConfig {
    /// Defaults for a worker reading the track logs under `data_dir`.
    #[must_use]
    pub fn local(data_dir: &std::path::Path) -> Self {
        Self {
            id: default_worker_id(),
            spool_dir: data_dir.join("spool"),
            lease: Duration::from_secs(60),
            poll_interval: Duration::from_secs(1),
            max_attempts: 3,
            retry_after: Duration::from_secs(30),
            format: OutputFormat::Mp4,
        }
    }
}

/// `host:pid:random`.
#[must_use]
pub fn default_worker_id() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    let suffix = &Uuid::new_v4().simple().to_string()[..8];
    format!("{host}:{}:{suffix}", std::process::id())
}

/// What became of a claimed job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOutcome {
    /// Muxed, sealed and recorded.
    Done {
        /// The session.
        session_id: Uuid,
        /// The sealed archive.
        archive_id: Uuid,
    },
    /// Failed; queued again for a later attempt.
    Retrying {
        /// The session.
        session_id: Uuid,
        /// Why.
        error: String,
    },
    /// Failed for good.
    Failed {
        /// The session.
        session_id: Uuid,
        /// Why.
        error: String,
    },
    /// Another worker owns the job now; whatever this one made was discarded.
    LostLease {
        /// The session.
        session_id: Uuid,
    },
    /// Given back unfinished because the worker is stopping.
    Released {
        /// The session.
        session_id: Uuid,
    },
}

/// Why a job could not be done.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The session's media cannot be muxed as stored; retrying will not help.
    #[error("{0}")]
    Unmuxable(String),
    /// Storage, the keyring or the database failed; worth another try.
    #[error("{0}")]
    Transient(String),
    /// The mux was stopped (lease lost, or shutting down).
    #[error("stopped")]
    Stopped,
}

impl From<storage::Error> for JobError {
    fn from(e: storage::Error) -> Self {
        Self::Transient(e.to_string())
    }
}

impl From<storage::db::DbError> for JobError {
    fn from(e: storage::db::DbError) -> Self {
        Self::Transient(e.to_string())
    }
}

/// A mux worker.
pub struct Worker {
    vault: Vault,
    config: WorkerConfig,
}

impl Worker {
    /// A worker storing through `vault`.
    #[must_use]
    pub fn new(vault: Vault, config: WorkerConfig) -> Self {
        Self { vault, config }
    }

    /// Its id (the `claimed_by` of its jobs).
    #[must_use]
    pub fn id(&self) -> &str {
        &self.config.id
    }

    /// Claims and runs jobs until `stop` turns true; a job in progress is then released.
    pub async fn run(&self, mut stop: watch::Receiver<bool>) {
        tracing::info!(worker = %self.config.id, "mux worker started");
        while !*stop.borrow() {
            match self.run_once(stop.clone()).await {
                Ok(Some(outcome)) => {
                    tracing::info!(worker = %self.config.id, ?outcome, "mux job finished");
                    continue;
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(worker = %self.config.id, error = %e, "cannot claim mux jobs")
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(self.config.poll_interval) => {}
                _ = stop.changed() => {}
            }
        }
        tracing::info!(worker = %self.config.id, "mux worker stopped");
    }

    /// Claims one due job and runs it; `None` when there is none.
    ///
    /// # Errors
    /// The database could not be asked for a job, or a job's state could not be recorded.
    pub async fn run_once(
        &self,
        stop: watch::Receiver<bool>,
    ) -> Result<Option<JobOutcome>, storage::Error> {
        let db = self.vault.db();
        let Some(job) = db
            .claim_mux_job(
                &self.config.id,
                OffsetDateTime::now_utc(),
                self.config.lease,
            )
            .await?
        else {
            return Ok(None);
        };
        tracing::info!(worker = %self.config.id, job = %job.job_id, session = %job.session_id,
            attempt = job.attempts, video_only = job.video_only, "mux job claimed");
        if job.attempts > self.config.max_attempts {
            let error = format!(
                "gave up after {} attempts; the last: {}",
                job.attempts - 1,
                job.error
                    .as_deref()
                    .unwrap_or("the worker stopped without a word")
            );
            db.fail_mux_job(job.job_id, &self.config.id, &error, None, now())
                .await?;
            return Ok(Some(JobOutcome::Failed {
                session_id: job.session_id,
                error,
            }));
        }
        Ok(Some(self.run_job(&job, stop).await?))
    }

    async fn run_job(
        &self,
        job: &MuxJob,
        mut stop: watch::Receiver<bool>,
    ) -> Result<JobOutcome, storage::Error> {
        let db = self.vault.db();
        let session_id = job.session_id;
        let halt = Arc::new(AtomicBool::new(false));
        let lease_lost = Arc::new(AtomicBool::new(false));
        let renewer = {
            let (db, worker, lease) = (db.clone(), self.config.id.clone(), self.config.lease);
            let (halt, lease_lost, job_id) = (halt.clone(), lease_lost.clone(), job.job_id);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(lease / 3);
                tick.tick().await;
                if *stop.borrow_and_update() {
                    halt.store(true, Ordering::SeqCst);
                    return;
                }
                loop {
                    tokio::select! {
                        _ = tick.tick() => {}
                        _ = stop.changed() => {
                            if *stop.borrow() {
                                halt.store(true, Ordering::SeqCst);
                                return;
                            }
                            continue;
                        }
                    }
                    match db.renew_mux_job(job_id, &worker, now() + lease).await {
                        Ok(true) => {}
                        Ok(false) => {
                            tracing::warn!(%job_id, "mux job lease lost: stopping");
                            lease_lost.store(true, Ordering::SeqCst);
                            halt.store(true, Ordering::SeqCst);
                            return;
                        }
                        // A database hiccup: try again at the next tick; the lease has two
                        // more thirds to run.
                        Err(e) => tracing::warn!(%job_id, error = %e, "cannot renew a lease"),
                    }
                }
            })
        };
        let result = self.mux_job(job, halt.clone()).await;
        renewer.abort();

        let worker = self.config.id.as_str();
        match result {
            Ok(archive_id) => {
                if db
                    .complete_mux_job(job.job_id, worker, archive_id, now())
                    .await?
                {
                    Ok(JobOutcome::Done {
                        session_id,
                        archive_id,
                    })
                } else {
                    self.vault
                        .discard_archive(archive_id, &self.access(job))
                        .await?;
                    Ok(JobOutcome::LostLease { session_id })
                }
            }
            Err(JobError::Stopped) if lease_lost.load(Ordering::SeqCst) => {
                Ok(JobOutcome::LostLease { session_id })
            }
            Err(JobError::Stopped) => {
                db.release_mux_job(job.job_id, worker).await?;
                Ok(JobOutcome::Released { session_id })
            }
            Err(JobError::Unmuxable(error)) => {
                tracing::warn!(session = %session_id, %error, "mux job failed for good");
                db.fail_mux_job(job.job_id, worker, &error, None, now())
                    .await?;
                Ok(JobOutcome::Failed { session_id, error })
            }
            Err(JobError::Transient(error)) => {
                // Doubling per attempt, at most an hour.
                let delay = self
                    .config
                    .retry_after
                    .saturating_mul(2u32.saturating_pow(job.attempts.max(1) - 1))
                    .min(Duration::from_secs(3600));
                tracing::warn!(session = %session_id, %error, ?delay, "mux job will be retried");
                db.fail_mux_job(job.job_id, worker, &error, Some(now() + delay), now())
                    .await?;
                Ok(JobOutcome::Retrying { session_id, error })
            }
        }
    }

    fn access(&self, job: &MuxJob) -> Access {
        Access::new(
            format!("muxer:{}", self.config.id),
            Some(format!(
                "mux job {} (session {})",
                job.job_id, job.session_id
            )),
        )
    }

    /// Muxes the job's session into a sealed archive in the blob store; its id.
    async fn mux_job(&self, job: &MuxJob, halt: Arc<AtomicBool>) -> Result<Uuid, JobError> {
        let access = self.access(job);
        let inputs =
            SessionInputs::gather(&self.vault, &self.config.spool_dir, job, &access).await?;
        let request = inputs.request(self.config.format);
        let session = serde_json::json!({
            "session_id": job.session_id,
            "group": inputs.group,
            "job_id": job.job_id,
            "attempt": job.attempts,
            "worker": self.config.id,
            "cti_call_id": inputs.cti_call_id,
            "mic_reference": inputs.reference_status,
        });
        // A key of its own per run: a released job is claimed again under the same attempt
        // number, and the loser of a lease discards its archive by key.
        let key = format!("recordings/{}/{}.idvr", job.session_id, Uuid::new_v4());
        let produce_halt = halt.clone();
        // The mux's own error, kept for `classify` (the vault passes on only its message).
        let mux_error = Arc::new(std::sync::Mutex::new(None));
        let produce_error = mux_error.clone();
        let sealed = self
            .vault
            .seal_into_blob(&key, "archive.mux", &access, move |out| {
                let mut out = Halting {
                    inner: out,
                    halt: &produce_halt,
                };
                let manifest = crate::mux(&request, &mut out, &mut |_| {}).map_err(|e| {
                    let message = e.to_string();
                    *produce_error.lock().expect("not poisoned") = Some(e);
                    storage::Error::Source(message)
                })?;
                let mut value = serde_json::to_value(&manifest)
                    .map_err(|e| storage::Error::Source(e.to_string()))?;
                value["session"] = session;
                Ok(value)
            })
            .await;
        match sealed {
            Ok(record) => Ok(record.archive_id),
            Err(_) if halt.load(Ordering::SeqCst) => Err(JobError::Stopped),
            Err(e) => match mux_error.lock().expect("not poisoned").take() {
                Some(mux) => Err(classify(mux)),
                None => Err(e.into()),
            },
        }
    }
}

/// Bad inputs and impossible requests are final; a failing pipeline or output is not.
fn classify(e: crate::MuxError) -> JobError {
    use crate::MuxError;
    match e {
        MuxError::Input { .. } | MuxError::Timeline(_) | MuxError::Request(_) => {
            JobError::Unmuxable(e.to_string())
        }
        other => JobError::Transient(other.to_string()),
    }
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// Fails every write once `halt` is set, which stops the mux at its next output bytes.
struct Halting<'a> {
    inner: &'a mut dyn Write,
    halt: &'a AtomicBool,
}

impl Write for Halting<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.halt.load(Ordering::SeqCst) {
            return Err(std::io::Error::other("the mux job was stopped"));
        }
        self.inner.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
