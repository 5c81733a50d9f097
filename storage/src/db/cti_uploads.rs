//! CTI recordings uploaded in parts while the call runs: the upload (its call record), and
//! each part as it was sealed on arrival. Parts are numbered from 0 and recorded strictly in
//! order; completing an upload records the CTI recording it became, in the same transaction
//! that forgets its parts.

use sqlx::error::ErrorKind;
use time::OffsetDateTime;
use tracing::instrument;
use uuid::Uuid;

use super::cti::{CtiRecording, cti_columns, insert_recording_query};
use super::sessions::{required, session_reference_error};
use super::{
    DbError, MetadataDb, Result, constraint_violation, from_micros, on_pool, parse_uuid, read_u64,
    stored_u64, to_micros, uuid_text,
};

/// An upload in parts, as opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CtiUpload {
    /// The upload's id.
    pub upload_id: Uuid,
    /// The CTI system's call id.
    pub call_id: String,
    /// The session, if it was known when the upload was opened.
    pub session_id: Option<Uuid>,
    /// What the CTI system gave to correlate the call with a session, if anything.
    pub correlation_key: Option<String>,
    /// Call start on the CTI clock.
    pub started_at: OffsetDateTime,
    /// The recorder's file name, if it gave one.
    pub source_name: Option<String>,
    /// When the upload was opened.
    pub opened_at: OffsetDateTime,
    /// The CTI recording it became, once completed.
    pub recording_id: Option<Uuid>,
}

/// One part of an upload, sealed as an archive of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CtiPart {
    /// The upload.
    pub upload_id: Uuid,
    /// Its place, from 0.
    pub part: u64,
    /// The archive it was sealed as.
    pub archive_id: Uuid,
    /// Where that archive is (blob store key).
    pub location: String,
    /// Audio bytes it holds.
    pub bytes: u64,
    /// SHA-256 of those bytes.
    pub sha256: [u8; 32],
    /// When it was stored.
    pub received_at: OffsetDateTime,
}

/// What recording a part did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartRecorded {
    /// Recorded.
    Recorded,
    /// Not recorded: the upload's next part is `expected` (this one is a resend of a part
    /// already recorded, or skips ahead).
    OutOfOrder {
        /// The part the upload takes next.
        expected: u64,
    },
}

macro_rules! upload_columns {
    () => {
        "upload_id, call_id, session_id, correlation_key, started_at, source_name, opened_at, \
         recording_id"
    };
}

type UploadRow = (
    String,
    String,
    Option<String>,
    Option<String>,
    i64,
    Option<String>,
    i64,
    Option<String>,
);

fn upload_from_row(row: UploadRow) -> Result<CtiUpload> {
    let (id, call_id, session_id, key, started_at, source_name, opened_at, recording_id) = row;
    let optional_uuid = |what, id: Option<String>| id.map(|id| parse_uuid(what, &id)).transpose();
    Ok(CtiUpload {
        upload_id: parse_uuid("CTI upload id", &id)?,
        call_id,
        session_id: optional_uuid("CTI upload's session id", session_id)?,
        correlation_key: key,
        started_at: from_micros("CTI upload's call start", started_at)?,
        source_name,
        opened_at: from_micros("CTI upload open time", opened_at)?,
        recording_id: optional_uuid("CTI upload's recording id", recording_id)?,
    })
}

type PartRow = (String, i64, String, String, i64, Vec<u8>, i64);

fn part_from_row(row: PartRow) -> Result<CtiPart> {
    let (upload_id, part, archive_id, location, bytes, sha256, received_at) = row;
    Ok(CtiPart {
        upload_id: parse_uuid("CTI part's upload id", &upload_id)?,
        part: read_u64("CTI part number", part)?,
        archive_id: parse_uuid("CTI part's archive id", &archive_id)?,
        location,
        bytes: read_u64("CTI part length", bytes)?,
        sha256: sha256.try_into().map_err(|_| DbError::Corrupt {
            what: "CTI part digest",
            problem: "not 32 bytes".into(),
        })?,
        received_at: from_micros("CTI part receipt time", received_at)?,
    })
}

impl MetadataDb {
    /// Records a new upload. Refused with [`DbError::CtiUploadOpen`] while another upload of
    /// the same call is open for the same session (or correlation key), and with
    /// [`DbError::SessionNotFound`] for an unknown session.
    #[instrument(skip_all, fields(upload_id = %upload.upload_id))]
    pub async fn insert_cti_upload(&self, upload: &CtiUpload) -> Result<()> {
        required("the CTI call id", &upload.call_id)?;
        let inserted = on_pool!(self, pool => sqlx::query(concat!(
            "INSERT INTO cti_uploads (", upload_columns!(), ") \
             VALUES ($1, $2, $3, $4, $5, $6, $7, NULL)"
        ))
        .bind(uuid_text(upload.upload_id))
        .bind(upload.call_id.as_str())
        .bind(upload.session_id.map(uuid_text))
        .bind(upload.correlation_key.as_deref())
        .bind(to_micros(upload.started_at))
        .bind(upload.source_name.as_deref())
        .bind(to_micros(upload.opened_at))
        .execute(pool)
        .await
        .map(drop));
        match inserted {
            Ok(()) => Ok(()),
            Err(e) if constraint_violation(&e) == Some(ErrorKind::UniqueViolation) => {
                Err(DbError::CtiUploadOpen {
                    call_id: upload.call_id.clone(),
                })
            }
            Err(e) => Err(match upload.session_id {
                Some(id) => session_reference_error(self, id, "opening a CTI upload")(e),
                None => self.query_error("opening a CTI upload")(e),
            }),
        }
    }

    /// One upload, if it exists.
    pub async fn cti_upload(&self, upload_id: Uuid) -> Result<Option<CtiUpload>> {
        let row: Option<UploadRow> = on_pool!(self, pool => sqlx::query_as(concat!(
            "SELECT ", upload_columns!(), " FROM cti_uploads WHERE upload_id = $1"
        ))
        .bind(uuid_text(upload_id))
        .fetch_optional(pool)
        .await)
        .map_err(self.query_error("reading a CTI upload"))?;
        row.map(upload_from_row).transpose()
    }

    /// The open upload of a call for a session (or, with no session, for a correlation key).
    pub async fn open_cti_upload(
        &self,
        call_id: &str,
        session_id: Option<Uuid>,
        correlation_key: Option<&str>,
    ) -> Result<Option<CtiUpload>> {
        let row: Option<UploadRow> = on_pool!(self, pool => sqlx::query_as(concat!(
            "SELECT ", upload_columns!(), " FROM cti_uploads \
             WHERE recording_id IS NULL AND call_id = $1 \
             AND COALESCE(session_id, '') = COALESCE($2, '') \
             AND COALESCE(correlation_key, '') = COALESCE($3, '')"
        ))
        .bind(call_id)
        .bind(session_id.map(uuid_text))
        .bind(correlation_key)
        .fetch_optional(pool)
        .await)
        .map_err(self.query_error("finding an open CTI upload"))?;
        row.map(upload_from_row).transpose()
    }

    /// Open uploads whose newest part (or, without parts, whose opening) is older than
    /// `before`: uploads the CTI system has stopped feeding.
    pub async fn idle_cti_uploads(&self, before: OffsetDateTime) -> Result<Vec<CtiUpload>> {
        let rows: Vec<UploadRow> = on_pool!(self, pool => sqlx::query_as(concat!(
            "SELECT ", upload_columns!(), " FROM cti_uploads u \
             WHERE recording_id IS NULL \
             AND COALESCE((SELECT MAX(received_at) FROM cti_upload_parts p \
                           WHERE p.upload_id = u.upload_id), opened_at) < $1 \
             ORDER BY opened_at"
        ))
        .bind(to_micros(before))
        .fetch_all(pool)
        .await)
        .map_err(self.query_error("listing idle CTI uploads"))?;
        rows.into_iter().map(upload_from_row).collect()
    }

    /// Removes an open upload that has no parts (opened, then never fed). Returns whether
    /// it did.
    pub async fn drop_empty_cti_upload(&self, upload_id: Uuid) -> Result<bool> {
        on_pool!(self, pool => sqlx::query(
            "DELETE FROM cti_uploads WHERE upload_id = $1 AND recording_id IS NULL \
             AND NOT EXISTS (SELECT 1 FROM cti_upload_parts WHERE upload_id = $1)",
        )
        .bind(uuid_text(upload_id))
        .execute(pool)
        .await
        .map(|done| done.rows_affected() == 1))
        .map_err(self.query_error("dropping an empty CTI upload"))
    }

    /// Records a sealed part, if it is the upload's next one (parts are taken strictly in
    /// order, so a resend of a recorded part is not recorded twice).
    #[instrument(skip_all, fields(upload_id = %part.upload_id, part = part.part))]
    pub async fn insert_cti_part(&self, part: &CtiPart) -> Result<PartRecorded> {
        required("the CTI part location", &part.location)?;
        let number = stored_u64("the CTI part number", part.part)?;
        let bytes = stored_u64("the CTI part length", part.bytes)?;
        let inserted = on_pool!(self, pool => sqlx::query(
            "INSERT INTO cti_upload_parts \
             (upload_id, part, archive_id, location, bytes, sha256, received_at) \
             SELECT $1, $2, $3, $4, $5, $6, $7 \
             WHERE (SELECT COUNT(*) FROM cti_upload_parts WHERE upload_id = $1) = $2 \
             AND EXISTS (SELECT 1 FROM cti_uploads WHERE upload_id = $1 AND recording_id IS NULL)",
        )
        .bind(uuid_text(part.upload_id))
        .bind(number)
        .bind(uuid_text(part.archive_id))
        .bind(part.location.as_str())
        .bind(bytes)
        .bind(part.sha256.as_slice())
        .bind(to_micros(part.received_at))
        .execute(pool)
        .await
        .map(|done| done.rows_affected() == 1));
        match inserted {
            Ok(true) => Ok(PartRecorded::Recorded),
            Ok(false) => Ok(PartRecorded::OutOfOrder {
                expected: self.cti_parts(part.upload_id).await?.len() as u64,
            }),
            Err(e) if constraint_violation(&e) == Some(ErrorKind::UniqueViolation) => {
                Ok(PartRecorded::OutOfOrder {
                    expected: self.cti_parts(part.upload_id).await?.len() as u64,
                })
            }
            Err(e) => Err(self.query_error("recording a CTI part")(e)),
        }
    }

    /// An upload's parts, in order.
    pub async fn cti_parts(&self, upload_id: Uuid) -> Result<Vec<CtiPart>> {
        let rows: Vec<PartRow> = on_pool!(self, pool => sqlx::query_as(
            "SELECT upload_id, part, archive_id, location, bytes, sha256, received_at \
             FROM cti_upload_parts WHERE upload_id = $1 ORDER BY part",
        )
        .bind(uuid_text(upload_id))
        .fetch_all(pool)
        .await)
        .map_err(self.query_error("listing a CTI upload's parts"))?;
        rows.into_iter().map(part_from_row).collect()
    }

    /// Completes an open upload: records `recording` (what its parts became), marks the
    /// upload completed by it and forgets its parts, all in one transaction. Refused with
    /// [`DbError::CtiUploadNotOpen`] if the upload is unknown or completed already, and as
    /// [`MetadataDb::insert_cti_recording`] refuses the recording.
    #[instrument(skip_all, fields(%upload_id, recording_id = %recording.recording_id))]
    pub async fn complete_cti_upload(
        &self,
        upload_id: Uuid,
        recording: &CtiRecording,
    ) -> Result<()> {
        super::cti::check_recording(recording)?;
        let upload = uuid_text(upload_id);
        let done: std::result::Result<bool, sqlx::Error> = on_pool!(self, pool => async {
            let mut tx = pool.begin().await?;
            insert_recording_query!(recording).execute(&mut *tx).await?;
            // Only an open upload is completed: a concurrent completion waits on this row and
            // then finds it completed (and rolls its recording back).
            let marked = sqlx::query(
                "UPDATE cti_uploads SET recording_id = $2 \
                 WHERE upload_id = $1 AND recording_id IS NULL",
            )
            .bind(upload.as_str())
            .bind(uuid_text(recording.recording_id))
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if marked != 1 {
                return Ok(false);
            }
            sqlx::query("DELETE FROM cti_upload_parts WHERE upload_id = $1")
                .bind(upload.as_str())
                .execute(&mut *tx)
                .await?;
            tx.commit().await.map(|()| true)
        }
        .await);
        match done {
            Ok(true) => Ok(()),
            Ok(false) => Err(DbError::CtiUploadNotOpen { upload_id }),
            Err(e) => Err(self.cti_recording_error(recording, e).await),
        }
    }
}
