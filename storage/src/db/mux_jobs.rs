//! The mux job queue: ingest enqueues one job per ended session; muxer workers, on any node,
//! claim jobs under a lease, renew it while they work, and complete or fail them.
//!
//! A job is never done twice: only the current claimant (the worker named in `claimed_by`
//! while the job is `running`) can renew, complete, fail or release it. A worker that dies
//! stops renewing; once its lease has expired any worker may claim the job again (`attempts`
//! counts the claims), and from then on the dead worker's late completion is refused.
//! Worker ids must therefore be unique among live workers (e.g. host, process id and a random
//! suffix), and a worker should stop working on a job when a renewal is refused.
//!
//! A job whose work keeps crashing its worker is claimed again after each lease expiry; the
//! worker sees `attempts` on the claimed job and should [`MetadataDb::fail_mux_job`] it for
//! good past its own limit.

use std::time::Duration;

use time::OffsetDateTime;
use tracing::instrument;
use uuid::Uuid;

use super::sessions::{required, session_reference_error};
use super::{
    MetadataDb, Pool, Result, from_micros, from_micros_opt, on_pool, parse_uuid, read_u64,
    stored_enum, to_micros, uuid_text,
};

stored_enum! {
    /// Where a mux job stands.
    pub enum MuxJobState as "mux job state" {
        /// Waiting for a worker (from `not_before` on).
        Queued => "queued",
        /// Claimed by a worker whose lease runs until `lease_until`.
        Running => "running",
        /// Muxed and sealed: `archive_id` names the result.
        Done => "done",
        /// Given up on: `error` says why.
        Failed => "failed",
    }
}

/// A mux job as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MuxJob {
    /// The job's id.
    pub job_id: Uuid,
    /// The session to mux (one job per session).
    pub session_id: Uuid,
    /// Where it stands.
    pub state: MuxJobState,
    /// Whether to mux without CTI audio (its deadline passed); the archive is flagged so.
    pub video_only: bool,
    /// How many times it has been claimed (a released claim does not count).
    pub attempts: u32,
    /// When it was enqueued.
    pub created_at: OffsetDateTime,
    /// No worker claims it before this.
    pub not_before: OffsetDateTime,
    /// The latest claimant.
    pub claimed_by: Option<String>,
    /// When the latest claim was made.
    pub claimed_at: Option<OffsetDateTime>,
    /// Until when the claimant holds it (running jobs only).
    pub lease_until: Option<OffsetDateTime>,
    /// When it was completed or failed for good.
    pub finished_at: Option<OffsetDateTime>,
    /// The sealed archive it produced (done jobs only).
    pub archive_id: Option<Uuid>,
    /// The latest failure's message.
    pub error: Option<String>,
}

/// The columns a [`JobRow`] reads, for `concat!` into query texts.
macro_rules! job_columns {
    () => {
        "job_id, session_id, state, video_only, attempts, created_at, not_before, claimed_by, \
         claimed_at, lease_until, finished_at, archive_id, error"
    };
}

/// The columns of `job_columns!`, in order.
type JobRow = (
    String,
    String,
    String,
    bool,
    i64,
    i64,
    i64,
    Option<String>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<String>,
    Option<String>,
);

fn from_row(row: JobRow) -> Result<MuxJob> {
    let (
        job_id,
        session_id,
        state,
        video_only,
        attempts,
        created_at,
        not_before,
        claimed_by,
        claimed_at,
        lease_until,
        finished_at,
        archive_id,
        error,
    ) = row;
    Ok(MuxJob {
        job_id: parse_uuid("mux job id", &job_id)?,
        session_id: parse_uuid("mux job's session id", &session_id)?,
        state: MuxJobState::from_stored(&state)?,
        video_only,
        attempts: u32::try_from(read_u64("mux job attempts", attempts)?).unwrap_or(u32::MAX),
        created_at: from_micros("mux job creation time", created_at)?,
        not_before: from_micros("mux job start time", not_before)?,
        claimed_by,
        claimed_at: from_micros_opt("mux job claim time", claimed_at)?,
        lease_until: from_micros_opt("mux job lease", lease_until)?,
        finished_at: from_micros_opt("mux job finish time", finished_at)?,
        archive_id: archive_id
            .map(|id| parse_uuid("mux job's archive id", &id))
            .transpose()?,
        error,
    })
}

/// What a claimable job is: queued and due, or running under an expired lease (its worker
/// is presumed dead). `$1` is now.
macro_rules! claimable {
    () => {
        "(state = 'queued' AND not_before <= $1) OR (state = 'running' AND lease_until <= $1)"
    };
}

/// Takes the job `job_id = …` (the rest of the WHERE clause follows) for worker `$2` until
/// `$3`, counting the attempt.
macro_rules! claim_update {
    () => {
        "UPDATE mux_jobs SET state = 'running', attempts = attempts + 1, claimed_by = $2, \
         claimed_at = $1, lease_until = $3 WHERE job_id = "
    };
}

impl MetadataDb {
    /// Queues the mux job of a session to run from `not_before` on, and returns it.
    /// Idempotent: if the session already has a job, that job is returned unchanged (whatever
    /// its state and `video_only`). Refused with [`super::DbError::SessionNotFound`] for an
    /// unknown session.
    #[instrument(skip_all, fields(%session_id, video_only))]
    pub async fn enqueue_mux_job(
        &self,
        session_id: Uuid,
        video_only: bool,
        not_before: OffsetDateTime,
    ) -> Result<MuxJob> {
        on_pool!(self, pool => sqlx::query(
            "INSERT INTO mux_jobs (job_id, session_id, state, video_only, attempts, created_at, \
             not_before) VALUES ($1, $2, 'queued', $3, 0, $4, $5) \
             ON CONFLICT (session_id) DO NOTHING",
        )
        .bind(uuid_text(Uuid::new_v4()))
        .bind(uuid_text(session_id))
        .bind(video_only)
        .bind(to_micros(OffsetDateTime::now_utc()))
        .bind(to_micros(not_before))
        .execute(pool)
        .await
        .map(|_| ()))
        .map_err(session_reference_error(
            self,
            session_id,
            "queueing a mux job",
        ))?;
        self.mux_job_for_session(session_id)
            .await?
            .ok_or(super::DbError::SessionNotFound { session_id })
    }

    /// Makes a session's queued job due now and with audio: its CTI recording arrived before
    /// the deadline the job was waiting for. `false` if the session has no queued job (none
    /// yet, or already claimed: a running video-only mux is not interrupted).
    #[instrument(skip_all, fields(%session_id))]
    pub async fn expedite_mux_job(&self, session_id: Uuid, now: OffsetDateTime) -> Result<bool> {
        on_pool!(self, pool => sqlx::query(
            "UPDATE mux_jobs SET not_before = $2, video_only = $3 \
             WHERE session_id = $1 AND state = 'queued'",
        )
        .bind(uuid_text(session_id))
        .bind(to_micros(now))
        .bind(false)
        .execute(pool)
        .await
        .map(|r| r.rows_affected() > 0))
        .map_err(self.query_error("expediting a mux job"))
    }

    /// Claims the next due job for `worker` until `now + lease`: the oldest-due queued job,
    /// or a running one whose lease expired before `now` (its worker is presumed dead).
    /// `None` if there is none.
    ///
    /// On PostgreSQL the job is picked with `SELECT … FOR UPDATE SKIP LOCKED` and taken in the
    /// same transaction: concurrent claimers skip each other's rows instead of queueing on
    /// them, and a row another claimer took meanwhile no longer matches when re-checked. On
    /// SQLite one `UPDATE … WHERE job_id = (SELECT … LIMIT 1) RETURNING …` picks and takes it.
    /// That is equivalent: SQLite lets one writer at a time into the database, and a writing
    /// statement takes the write lock before it reads, so no other claim can come between the
    /// pick and the take, and the next claimer sees this one's result. SKIP LOCKED has
    /// nothing to add there, as SQLite has no row locks to wait on.
    #[instrument(skip_all, fields(worker))]
    pub async fn claim_mux_job(
        &self,
        worker: &str,
        now: OffsetDateTime,
        lease: Duration,
    ) -> Result<Option<MuxJob>> {
        required("the worker id", worker)?;
        let now_us = to_micros(now);
        let lease_until = to_micros(now + lease);
        let claimed: std::result::Result<Option<JobRow>, sqlx::Error> = match &self.pool {
            Pool::Sqlite(pool) => {
                sqlx::query_as(concat!(
                    claim_update!(),
                    "(SELECT job_id FROM mux_jobs WHERE ",
                    claimable!(),
                    " ORDER BY not_before, job_id LIMIT 1) RETURNING ",
                    job_columns!()
                ))
                .bind(now_us)
                .bind(worker)
                .bind(lease_until)
                .fetch_optional(pool)
                .await
            }
            Pool::Postgres(pool) => {
                async {
                    let mut tx = pool.begin().await?;
                    let picked: Option<(String,)> = sqlx::query_as(concat!(
                        "SELECT job_id FROM mux_jobs WHERE ",
                        claimable!(),
                        " ORDER BY not_before, job_id LIMIT 1 FOR UPDATE SKIP LOCKED"
                    ))
                    .bind(now_us)
                    .fetch_optional(&mut *tx)
                    .await?;
                    let Some((job_id,)) = picked else {
                        tx.rollback().await?;
                        return Ok(None);
                    };
                    let row: JobRow =
                        sqlx::query_as(concat!(claim_update!(), "$4 RETURNING ", job_columns!()))
                            .bind(now_us)
                            .bind(worker)
                            .bind(lease_until)
                            .bind(job_id)
                            .fetch_one(&mut *tx)
                            .await?;
                    tx.commit().await?;
                    Ok(Some(row))
                }
                .await
            }
        };
        claimed
            .map_err(self.query_error("claiming a mux job"))?
            .map(from_row)
            .transpose()
    }

    /// Extends the lease of a job `worker` is running to `lease_until`. `false` if the job is
    /// not running under `worker` (any more): stop working on it.
    pub async fn renew_mux_job(
        &self,
        job_id: Uuid,
        worker: &str,
        lease_until: OffsetDateTime,
    ) -> Result<bool> {
        on_pool!(self, pool => sqlx::query(
            "UPDATE mux_jobs SET lease_until = $3 \
             WHERE job_id = $1 AND claimed_by = $2 AND state = 'running'",
        )
        .bind(uuid_text(job_id))
        .bind(worker)
        .bind(to_micros(lease_until))
        .execute(pool)
        .await
        .map(|done| done.rows_affected() == 1))
        .map_err(self.query_error("renewing a mux job's lease"))
    }

    /// Marks a job `worker` is running done, with the archive it produced. `false` if the
    /// job is not running under `worker`: another worker took it over after this one's lease
    /// expired (or it was already finished), and this result must be discarded. A lease that
    /// expired without anyone taking the job over does not stop its worker from completing.
    #[instrument(skip_all, fields(%job_id, worker))]
    pub async fn complete_mux_job(
        &self,
        job_id: Uuid,
        worker: &str,
        archive_id: Uuid,
        at: OffsetDateTime,
    ) -> Result<bool> {
        on_pool!(self, pool => sqlx::query(
            "UPDATE mux_jobs SET state = 'done', archive_id = $3, finished_at = $4, \
             lease_until = NULL \
             WHERE job_id = $1 AND claimed_by = $2 AND state = 'running'",
        )
        .bind(uuid_text(job_id))
        .bind(worker)
        .bind(uuid_text(archive_id))
        .bind(to_micros(at))
        .execute(pool)
        .await
        .map(|done| done.rows_affected() == 1))
        .map_err(self.query_error("completing a mux job"))
    }

    /// Records that a job `worker` is running failed with `error`: queued again from
    /// `retry_at` on, or failed for good if `retry_at` is `None`. `false` if the job is not
    /// running under `worker`.
    #[instrument(skip_all, fields(%job_id, worker))]
    pub async fn fail_mux_job(
        &self,
        job_id: Uuid,
        worker: &str,
        error: &str,
        retry_at: Option<OffsetDateTime>,
        at: OffsetDateTime,
    ) -> Result<bool> {
        required("the mux job's error", error)?;
        on_pool!(self, pool => sqlx::query(
            "UPDATE mux_jobs SET \
             state = CASE WHEN $4 IS NULL THEN 'failed' ELSE 'queued' END, \
             not_before = COALESCE($4, not_before), \
             finished_at = CASE WHEN $4 IS NULL THEN $5 ELSE NULL END, \
             lease_until = NULL, error = $3 \
             WHERE job_id = $1 AND claimed_by = $2 AND state = 'running'",
        )
        .bind(uuid_text(job_id))
        .bind(worker)
        .bind(error)
        .bind(retry_at.map(to_micros))
        .bind(to_micros(at))
        .execute(pool)
        .await
        .map(|done| done.rows_affected() == 1))
        .map_err(self.query_error("failing a mux job"))
    }

    /// Gives back a job `worker` is running without having done it (a graceful shutdown):
    /// it is queued again at once and the attempt is not counted. `false` if the job is not
    /// running under `worker`.
    pub async fn release_mux_job(&self, job_id: Uuid, worker: &str) -> Result<bool> {
        on_pool!(self, pool => sqlx::query(
            "UPDATE mux_jobs SET state = 'queued', lease_until = NULL, \
             attempts = attempts - 1 \
             WHERE job_id = $1 AND claimed_by = $2 AND state = 'running'",
        )
        .bind(uuid_text(job_id))
        .bind(worker)
        .execute(pool)
        .await
        .map(|done| done.rows_affected() == 1))
        .map_err(self.query_error("releasing a mux job"))
    }

    /// One job, if it exists.
    pub async fn mux_job(&self, job_id: Uuid) -> Result<Option<MuxJob>> {
        let row: Option<JobRow> = on_pool!(self, pool => sqlx::query_as(concat!(
            "SELECT ", job_columns!(), " FROM mux_jobs WHERE job_id = $1"
        ))
        .bind(uuid_text(job_id))
        .fetch_optional(pool)
        .await)
        .map_err(self.query_error("reading a mux job"))?;
        row.map(from_row).transpose()
    }

    /// The job of a session, if it has one.
    pub async fn mux_job_for_session(&self, session_id: Uuid) -> Result<Option<MuxJob>> {
        let row: Option<JobRow> = on_pool!(self, pool => sqlx::query_as(concat!(
            "SELECT ", job_columns!(), " FROM mux_jobs WHERE session_id = $1"
        ))
        .bind(uuid_text(session_id))
        .fetch_optional(pool)
        .await)
        .map_err(self.query_error("reading a session's mux job"))?;
        row.map(from_row).transpose()
    }

    /// The jobs in `state` (all jobs if `None`), oldest first.
    pub async fn mux_jobs(&self, state: Option<MuxJobState>) -> Result<Vec<MuxJob>> {
        let rows: Vec<JobRow> = on_pool!(self, pool => sqlx::query_as(concat!(
            "SELECT ", job_columns!(), " FROM mux_jobs WHERE ($1 IS NULL OR state = $1) \
             ORDER BY created_at, job_id"
        ))
        .bind(state.map(MuxJobState::as_str))
        .fetch_all(pool)
        .await)
        .map_err(self.query_error("listing mux jobs"))?;
        rows.into_iter().map(from_row).collect()
    }
}
