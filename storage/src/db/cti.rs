//! CTI recordings: the customer's voice as the call centre's telephony recorded it, handed in
//! with its call record and sealed on arrival. A recording may arrive before anyone knows
//! which session it belongs to (only a correlation key, e.g. the operator's extension and the
//! time); it is attached to its session once correlated.

use sqlx::error::ErrorKind;
use time::OffsetDateTime;
use tracing::instrument;
use uuid::Uuid;

use super::sessions::{required, session_reference_error};
use super::{
    DbError, MetadataDb, Result, constraint_violation, from_micros, from_micros_opt, on_pool,
    parse_uuid, to_micros, uuid_text,
};

/// One CTI call recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CtiRecording {
    /// The row's id (fresh for each recording).
    pub recording_id: Uuid,
    /// The CTI system's call id; recorded once per session.
    pub call_id: String,
    /// The session, once correlated.
    pub session_id: Option<Uuid>,
    /// What the CTI system gave to correlate the call with a session, if anything.
    pub correlation_key: Option<String>,
    /// Call start on the CTI clock, from the call record.
    pub started_at: OffsetDateTime,
    /// Call end on the CTI clock, if the call record has it.
    pub ended_at: Option<OffsetDateTime>,
    /// Where the sealed audio is (blob store location).
    pub location: String,
    /// The archive the audio was sealed as, if it was sealed as an archive of its own.
    pub archive_id: Option<Uuid>,
    /// When idv received it.
    pub received_at: OffsetDateTime,
}

/// The columns a [`CtiRow`] reads, for `concat!` into query texts.
macro_rules! cti_columns {
    () => {
        "recording_id, call_id, session_id, correlation_key, started_at, ended_at, location, \
         archive_id, received_at"
    };
}

pub(super) use cti_columns;

/// The columns of `cti_columns!`, in order.
type CtiRow = (
    String,
    String,
    Option<String>,
    Option<String>,
    i64,
    Option<i64>,
    String,
    Option<String>,
    i64,
);

fn from_row(row: CtiRow) -> Result<CtiRecording> {
    let (id, call_id, session_id, key, started_at, ended_at, location, archive_id, received) = row;
    Ok(CtiRecording {
        recording_id: parse_uuid("CTI recording id", &id)?,
        call_id,
        session_id: session_id
            .map(|id| parse_uuid("CTI recording's session id", &id))
            .transpose()?,
        correlation_key: key,
        started_at: from_micros("CTI call start", started_at)?,
        ended_at: from_micros_opt("CTI call end", ended_at)?,
        location,
        archive_id: archive_id
            .map(|id| parse_uuid("CTI recording's archive id", &id))
            .transpose()?,
        received_at: from_micros("CTI recording receipt time", received)?,
    })
}

/// The checks a recording passes before it is stored.
pub(super) fn check_recording(rec: &CtiRecording) -> Result<()> {
    required("the CTI call id", &rec.call_id)?;
    required("the CTI recording location", &rec.location)
}

/// The insert of a [`CtiRecording`], ready to execute on a pool or inside a transaction of
/// either backend.
macro_rules! insert_recording_query {
    ($rec:expr) => {{
        let rec: &CtiRecording = $rec;
        sqlx::query(concat!(
            "INSERT INTO cti_recordings (",
            cti_columns!(),
            ") \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        ))
        .bind(uuid_text(rec.recording_id))
        .bind(rec.call_id.clone())
        .bind(rec.session_id.map(uuid_text))
        .bind(rec.correlation_key.clone())
        .bind(to_micros(rec.started_at))
        .bind(rec.ended_at.map(to_micros))
        .bind(rec.location.clone())
        .bind(rec.archive_id.map(uuid_text))
        .bind(to_micros(rec.received_at))
    }};
}
pub(super) use insert_recording_query;

impl MetadataDb {
    /// Records a CTI recording. Refused with [`DbError::CtiCallExists`] if its session
    /// already has a recording of this call, [`DbError::CtiRecordingExists`] if the id is
    /// taken and [`DbError::SessionNotFound`] if the session is unknown.
    #[instrument(skip_all, fields(recording_id = %rec.recording_id))]
    pub async fn insert_cti_recording(&self, rec: &CtiRecording) -> Result<()> {
        check_recording(rec)?;
        let inserted =
            on_pool!(self, pool => insert_recording_query!(rec).execute(pool).await.map(drop));
        match inserted {
            Ok(()) => Ok(()),
            Err(e) => Err(self.cti_recording_error(rec, e).await),
        }
    }

    /// What a failed insert of `rec` means: the call or the id taken, an unknown session, or
    /// a plain query failure.
    pub(super) async fn cti_recording_error(&self, rec: &CtiRecording, e: sqlx::Error) -> DbError {
        if constraint_violation(&e) == Some(ErrorKind::UniqueViolation) {
            match self.cti_recording(rec.recording_id).await {
                Ok(Some(_)) => {
                    return DbError::CtiRecordingExists {
                        recording_id: rec.recording_id,
                    };
                }
                Ok(None) => {}
                Err(other) => return other,
            }
            if let Some(session_id) = rec.session_id {
                return DbError::CtiCallExists {
                    call_id: rec.call_id.clone(),
                    session_id,
                };
            }
        }
        match rec.session_id {
            Some(session_id) => {
                session_reference_error(self, session_id, "recording a CTI recording")(e)
            }
            None => self.query_error("recording a CTI recording")(e),
        }
    }

    /// One CTI recording, if it exists.
    pub async fn cti_recording(&self, recording_id: Uuid) -> Result<Option<CtiRecording>> {
        let row: Option<CtiRow> = on_pool!(self, pool => sqlx::query_as(concat!(
            "SELECT ", cti_columns!(), " FROM cti_recordings WHERE recording_id = $1"
        ))
        .bind(uuid_text(recording_id))
        .fetch_optional(pool)
        .await)
        .map_err(self.query_error("reading a CTI recording"))?;
        row.map(from_row).transpose()
    }

    /// The CTI recordings attached to a session, by call start.
    pub async fn cti_recordings_for_session(&self, session_id: Uuid) -> Result<Vec<CtiRecording>> {
        let rows: Vec<CtiRow> = on_pool!(self, pool => sqlx::query_as(concat!(
            "SELECT ", cti_columns!(), " FROM cti_recordings WHERE session_id = $1 \
             ORDER BY started_at, recording_id"
        ))
        .bind(uuid_text(session_id))
        .fetch_all(pool)
        .await)
        .map_err(self.query_error("listing a session's CTI recordings"))?;
        rows.into_iter().map(from_row).collect()
    }

    /// The recordings not yet attached to a session that carry `correlation_key`, by call
    /// start: the candidates for correlating with a session.
    pub async fn unattached_cti_recordings(
        &self,
        correlation_key: &str,
    ) -> Result<Vec<CtiRecording>> {
        let rows: Vec<CtiRow> = on_pool!(self, pool => sqlx::query_as(concat!(
            "SELECT ", cti_columns!(), " FROM cti_recordings \
             WHERE session_id IS NULL AND correlation_key = $1 \
             ORDER BY started_at, recording_id"
        ))
        .bind(correlation_key)
        .fetch_all(pool)
        .await)
        .map_err(self.query_error("listing unattached CTI recordings"))?;
        rows.into_iter().map(from_row).collect()
    }

    /// Attaches a recording that is not yet attached to `session_id`. Returns `false` if the
    /// recording is absent or already attached (to any session: an attachment is not moved).
    /// Refused with [`DbError::CtiCallExists`] if the session already has this call and with
    /// [`DbError::SessionNotFound`] if the session is unknown.
    #[instrument(skip_all, fields(%recording_id, %session_id))]
    pub async fn attach_cti_recording(&self, recording_id: Uuid, session_id: Uuid) -> Result<bool> {
        let attached = on_pool!(self, pool => sqlx::query(
            "UPDATE cti_recordings SET session_id = $2 \
             WHERE recording_id = $1 AND session_id IS NULL",
        )
        .bind(uuid_text(recording_id))
        .bind(uuid_text(session_id))
        .execute(pool)
        .await
        .map(|done| done.rows_affected() == 1));
        match attached {
            Ok(attached) => Ok(attached),
            Err(e) if constraint_violation(&e) == Some(ErrorKind::UniqueViolation) => {
                let call_id = self
                    .cti_recording(recording_id)
                    .await?
                    .map(|rec| rec.call_id)
                    .unwrap_or_default();
                Err(DbError::CtiCallExists {
                    call_id,
                    session_id,
                })
            }
            Err(e) => Err(session_reference_error(
                self,
                session_id,
                "attaching a CTI recording",
            )(e)),
        }
    }
}
