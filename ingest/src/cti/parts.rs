//! CTI recordings uploaded in parts while the call runs.
//!
//! 1. `POST /api/v1/cti/uploads?CALL RECORD` (empty body) opens an upload: 201 with its id,
//!    or 200 with the open upload of the same call and where it stands (`next_part`), so a
//!    recorder that restarted picks up where it was.
//! 2. `PUT /api/v1/cti/uploads/{id}/parts/{n}` takes part `n` (0, 1, 2 …, strictly in order;
//!    at least one byte): sealed as an archive of its own (under a blob key of its own per
//!    attempt) and recorded before the 201, so an
//!    acknowledged part survives a crash. Part 0 must start like a recording the muxer reads
//!    (a WAV written as a stream, its sizes left 0 or 0xFFFFFFFF, is fine). A resend of a
//!    stored part with the same bytes answers 200; other bytes, or a part out of order, 409
//!    naming the part expected.
//! 3. `POST /api/v1/cti/uploads/{id}/complete?sha256=HEX[&ended_at=T]` (empty body): the parts
//!    are read back in order, checked against the SHA-256 of the whole recording, and sealed
//!    as one CTI recording, exactly as if it had come in one request; then the parts'
//!    archives are discarded. A repeated completion answers 200 with the same recording.
//!
//! Every request is signed as [`super::sign`] says; each is idempotent, so a replay gets
//! the answer the first got. An upload the CTI system stops feeding
//! is closed by [`close_idle`] with what arrived (its manifest says so), so a crashed
//! recorder does not cost the session its audio.

use std::io::{self, Read};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{OriginalUri, Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use futures::TryStreamExt;
use storage::Access;
use storage::db::{CtiPart, CtiRecording, CtiUpload, DbError, PartRecorded};
use time::OffsetDateTime;
use tokio_util::io::StreamReader;
use uuid::Uuid;

use super::call::{CallParams, CallRecord, parse_end};
use super::check::{BodyCheck, Inspected, Span};
use super::{Uploaded, audit, path_and_query};
use crate::error::{IngestError, Result};
use crate::server::AppState;

/// Where an upload stands (answer to opening it).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct UploadState {
    /// The upload.
    pub upload_id: Uuid,
    /// The CTI system's call id.
    pub call_id: String,
    /// The session it is attached to, if idv knows it.
    pub session_id: Option<Uuid>,
    /// The part it takes next.
    pub next_part: u64,
    /// Audio bytes stored so far.
    pub bytes: u64,
}

/// What a stored part answers (201, or 200 for a resend of a stored part).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PartStored {
    /// The upload.
    pub upload_id: Uuid,
    /// The part.
    pub part: u64,
    /// Its bytes.
    pub bytes: u64,
    /// The part the upload takes next.
    pub next_part: u64,
    /// Audio bytes stored so far, all parts.
    pub total_bytes: u64,
}

/// The query of a completion.
#[derive(Debug, serde::Deserialize)]
pub struct CompleteParams {
    sha256: String,
    ended_at: Option<String>,
}

fn upload_id(text: &str) -> Result<Uuid> {
    Uuid::parse_str(text).map_err(|_| IngestError::NotFound(format!("no CTI upload {text:?}")))
}

async fn open_upload_of(state: &AppState, id: Uuid) -> Result<CtiUpload> {
    state
        .sessions
        .vault()
        .db()
        .cti_upload(id)
        .await?
        .ok_or_else(|| IngestError::NotFound(format!("no CTI upload {id}")))
}

/// `POST /api/v1/cti/uploads`: opens an upload (audited `cti.upload.open`).
pub async fn open(
    State(state): State<Arc<AppState>>,
    method: Method,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    params: std::result::Result<Query<CallParams>, QueryRejection>,
) -> Result<(StatusCode, Json<UploadState>)> {
    let call = params.as_ref().ok().map_or_else(
        || "cti".to_owned(),
        |p| format!("cti-call:{}", p.0.call_id()),
    );
    let result = open_inner(&state, &method, &uri, &headers, params).await;
    let object = result
        .as_ref()
        .map_or(call, |(_, u)| format!("cti-upload:{}", u.upload_id));
    audit(&state, "cti.upload.open", object, &result).await;
    result.map(|(status, u)| (status, Json(u)))
}

async fn open_inner(
    state: &AppState,
    method: &Method,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    params: std::result::Result<Query<CallParams>, QueryRejection>,
) -> Result<(StatusCode, UploadState)> {
    let intake = &state.cti;
    intake.authenticate_idempotent(method, path_and_query(uri), headers)?;
    let Query(params) = params
        .map_err(|e| IngestError::BadRequest(format!("bad call record: {}", e.body_text())))?;
    if params.has_end() {
        return Err(IngestError::BadRequest(
            "ended_at is given when the upload is completed".into(),
        ));
    }
    let db = state.sessions.vault().db();
    let call = CallRecord::resolve(params, db).await?;
    let _reserved = intake.reserve(call.call_id.clone(), || {
        format!("call {} is being uploaded already", call.call_id)
    })?;
    call.ensure_not_recorded(db).await?;
    if let Some(open) = call.open_upload(db).await? {
        return Ok((StatusCode::OK, standing(state, &open).await?));
    }
    let upload = CtiUpload {
        upload_id: Uuid::new_v4(),
        call_id: call.call_id.clone(),
        session_id: call.session_id,
        correlation_key: call.correlation_key.clone(),
        started_at: call.started_at,
        source_name: call.filename.clone(),
        opened_at: OffsetDateTime::now_utc(),
        recording_id: None,
    };
    db.insert_cti_upload(&upload).await.map_err(|e| match e {
        DbError::CtiUploadOpen { call_id } => {
            IngestError::Conflict(format!("call {call_id} is being uploaded in parts already"))
        }
        other => other.into(),
    })?;
    Ok((StatusCode::CREATED, standing(state, &upload).await?))
}

async fn standing(state: &AppState, upload: &CtiUpload) -> Result<UploadState> {
    let parts = state
        .sessions
        .vault()
        .db()
        .cti_parts(upload.upload_id)
        .await?;
    Ok(UploadState {
        upload_id: upload.upload_id,
        call_id: upload.call_id.clone(),
        session_id: upload.session_id,
        next_part: parts.len() as u64,
        bytes: parts.iter().map(|p| p.bytes).sum(),
    })
}

/// `PUT /api/v1/cti/uploads/{id}/parts/{n}`: stores one part (audited `cti.upload.part`).
pub async fn put_part(
    State(state): State<Arc<AppState>>,
    method: Method,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    Path((id, part)): Path<(String, String)>,
    body: Body,
) -> Result<(StatusCode, Json<PartStored>)> {
    let object = format!("cti-upload:{id}/part:{part}");
    let result = put_part_inner(&state, &method, &uri, &headers, &id, &part, body).await;
    audit(&state, "cti.upload.part", object, &result).await;
    result.map(|(status, p)| (status, Json(p)))
}

async fn put_part_inner(
    state: &AppState,
    method: &Method,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    id: &str,
    part: &str,
    body: Body,
) -> Result<(StatusCode, PartStored)> {
    let intake = &state.cti;
    let signed = intake.authenticate_idempotent(method, path_and_query(uri), headers)?;
    let upload = open_upload_of(state, upload_id(id)?).await?;
    let part: u64 = part
        .parse()
        .map_err(|_| IngestError::BadRequest(format!("part {part:?} is not a number")))?;
    if upload.recording_id.is_some() {
        return Err(IngestError::Conflict(format!(
            "CTI upload {} is completed",
            upload.upload_id
        )));
    }
    let _reserved = intake.reserve(format!("upload:{}", upload.upload_id), || {
        format!("CTI upload {} is being written already", upload.upload_id)
    })?;
    let vault = state.sessions.vault();
    let db = vault.db();
    let parts = db.cti_parts(upload.upload_id).await?;
    let next = parts.len() as u64;
    let total: u64 = parts.iter().map(|p| p.bytes).sum();
    if let Some(stored) = parts.get(usize::try_from(part).unwrap_or(usize::MAX)) {
        if stored.sha256 == signed.digest {
            return Ok((
                StatusCode::OK,
                PartStored {
                    upload_id: upload.upload_id,
                    part,
                    bytes: stored.bytes,
                    next_part: next,
                    total_bytes: total,
                },
            ));
        }
        return Err(IngestError::Conflict(format!(
            "part {part} is stored with other bytes; the upload takes part {next} next"
        )));
    }
    if part != next {
        return Err(IngestError::Conflict(format!(
            "the upload takes part {next} next, not part {part}"
        )));
    }
    let room = intake.max_bytes.saturating_sub(total);
    // A key of its own per attempt: a losing writer (another node) never deletes the winner's.
    let blob_key = format!(
        "cti/uploads/{}/{part:06}-{}.idvr",
        upload.upload_id,
        Uuid::new_v4()
    );
    let manifest = serde_json::json!({
        "kind": "cti-part",
        "upload_id": upload.upload_id,
        "call_id": upload.call_id,
        "part": part,
        "sha256": hex::encode(signed.digest),
        "tool": concat!("idv ", env!("CARGO_PKG_VERSION")),
    });
    let stream = body.into_data_stream().map_err(io::Error::other);
    let span = if part == 0 {
        Span::Leading
    } else {
        Span::Later
    };
    let mut inspected = Inspected::new(
        StreamReader::new(stream),
        BodyCheck::new(room, span),
        signed.digest,
    );
    let access = Access::new(
        "cti",
        Some(format!("CTI call {} part {part}", upload.call_id)),
    );
    let archive = match vault
        .seal_to_blob(&mut inspected, &blob_key, manifest, &access)
        .await
    {
        Ok(archive) => archive,
        Err(e) => return Err(inspected.rejected.take().unwrap_or(IngestError::Storage(e))),
    };
    let bytes = inspected.check.bytes();
    let discard = || async {
        if let Err(why) = vault.discard_archive(archive.archive_id, &access).await {
            tracing::warn!(archive_id = %archive.archive_id, error = %why, "could not remove an unrecorded CTI part");
        }
    };
    if bytes == 0 {
        discard().await;
        return Err(IngestError::BadRequest(
            "a part holds at least one byte".into(),
        ));
    }
    let record = CtiPart {
        upload_id: upload.upload_id,
        part,
        archive_id: archive.archive_id,
        location: blob_key.clone(),
        bytes,
        sha256: signed.digest,
        received_at: OffsetDateTime::now_utc(),
    };
    match db.insert_cti_part(&record).await {
        Ok(PartRecorded::Recorded) => {}
        Ok(PartRecorded::OutOfOrder { expected }) => {
            discard().await;
            return Err(IngestError::Conflict(format!(
                "the upload takes part {expected} next, not part {part}"
            )));
        }
        Err(e) => {
            discard().await;
            return Err(e.into());
        }
    }
    Ok((
        StatusCode::CREATED,
        PartStored {
            upload_id: upload.upload_id,
            part,
            bytes,
            next_part: part + 1,
            total_bytes: total + bytes,
        },
    ))
}

/// `POST /api/v1/cti/uploads/{id}/complete`: seals the parts as one recording (audited
/// `cti.upload.complete`).
pub async fn complete(
    State(state): State<Arc<AppState>>,
    method: Method,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    Path(id): Path<String>,
    params: std::result::Result<Query<CompleteParams>, QueryRejection>,
) -> Result<(StatusCode, Json<Uploaded>)> {
    let object = format!("cti-upload:{id}");
    let result = complete_inner(&state, &method, &uri, &headers, &id, params).await;
    audit(&state, "cti.upload.complete", object, &result).await;
    result.map(|(status, u)| (status, Json(u)))
}

async fn complete_inner(
    state: &AppState,
    method: &Method,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    id: &str,
    params: std::result::Result<Query<CompleteParams>, QueryRejection>,
) -> Result<(StatusCode, Uploaded)> {
    state
        .cti
        .authenticate_idempotent(method, path_and_query(uri), headers)?;
    let upload = open_upload_of(state, upload_id(id)?).await?;
    let Query(params) = params
        .map_err(|e| IngestError::BadRequest(format!("bad completion: {}", e.body_text())))?;
    let mut whole = [0u8; 32];
    hex::decode_to_slice(params.sha256.trim(), &mut whole).map_err(|_| {
        IngestError::BadRequest("sha256 is not the hex SHA-256 of the recording".into())
    })?;
    let ended_at = params
        .ended_at
        .as_deref()
        .map(|t| parse_end(upload.started_at, t))
        .transpose()?;
    finish(state, &upload, ended_at, Some(whole)).await
}

/// What an upload became, once completed.
async fn completed(state: &AppState, upload: &CtiUpload) -> Result<Option<Uploaded>> {
    let Some(recording_id) = upload.recording_id else {
        return Ok(None);
    };
    let db = state.sessions.vault().db();
    let recording = db.cti_recording(recording_id).await?.ok_or_else(|| {
        IngestError::Storage(storage::Error::BadLocation(format!(
            "CTI upload {} names a missing recording",
            upload.upload_id
        )))
    })?;
    let archive_id = recording.archive_id.unwrap_or_default();
    let bytes = match db.archive(archive_id).await? {
        Some(archive) => archive.payload_len,
        None => 0,
    };
    Ok(Some(Uploaded {
        recording_id,
        call_id: recording.call_id,
        session_id: recording.session_id,
        archive_id,
        bytes,
    }))
}

/// Seals an upload's parts as one CTI recording, checked against `whole` (the SHA-256 of
/// the recording) when the CTI system gave it; `None` when idv closes an upload the CTI
/// system stopped feeding. Then discards the parts and tells the session.
async fn finish(
    state: &AppState,
    upload: &CtiUpload,
    ended_at: Option<OffsetDateTime>,
    whole: Option<[u8; 32]>,
) -> Result<(StatusCode, Uploaded)> {
    if let Some(done) = completed(state, upload).await? {
        return Ok((StatusCode::OK, done));
    }
    let intake = &state.cti;
    let _reserved = intake.reserve(format!("upload:{}", upload.upload_id), || {
        format!("CTI upload {} is being written already", upload.upload_id)
    })?;
    let vault = state.sessions.vault();
    let db = vault.db();
    let parts = db.cti_parts(upload.upload_id).await?;
    if parts.is_empty() {
        return Err(IngestError::BadRequest(format!(
            "CTI upload {} has no parts yet",
            upload.upload_id
        )));
    }
    let call = CallRecord::of_upload(upload, ended_at);
    let access = Access::new("cti", Some(format!("CTI call {}", call.call_id)));
    let mut sealed_parts = Vec::with_capacity(parts.len());
    for part in &parts {
        sealed_parts.push(vault.sealed_blob(&part.location, &access).await?);
    }

    let recording_id = Uuid::new_v4();
    let blob_key = format!("cti/{recording_id}.idvr");
    let rejected: Arc<Mutex<Option<IngestError>>> = Arc::default();
    let reject = {
        let rejected = rejected.clone();
        let key = blob_key.clone();
        move |e: IngestError| {
            let source = io::Error::other(e.to_string());
            *rejected.lock().expect("rejection slot") = Some(e);
            storage::Error::Io {
                path: key.clone(),
                source,
            }
        }
    };
    let limit = intake.max_bytes;
    let upload_ref = (upload.upload_id, parts.len());
    let manifest_call = call.clone();
    let sealed = vault
        .seal_into_blob(&blob_key, "archive.seal", &access, move |out| {
            let mut check = BodyCheck::new(limit, Span::Whole);
            let mut buf = vec![0u8; 256 * 1024];
            for part in &sealed_parts {
                let mut reader = part.open()?;
                loop {
                    let n = reader.read(&mut buf).map_err(|source| storage::Error::Io {
                        path: part.key().to_owned(),
                        source,
                    })?;
                    if n == 0 {
                        break;
                    }
                    check.feed(&buf[..n]).map_err(&reject)?;
                    out.write_all(&buf[..n])
                        .map_err(|source| storage::Error::Io {
                            path: "sealed CTI recording".into(),
                            source,
                        })?;
                }
            }
            let digest = check.digest().map_err(&reject)?;
            if let Some(whole) = whole
                && digest != whole
            {
                return Err(reject(IngestError::BadRequest(
                    "the parts do not add up to the recording's SHA-256 (a part missing or altered?)"
                        .into(),
                )));
            }
            let mut manifest = manifest_call.manifest(recording_id, &digest, Some(upload_ref));
            manifest["upload"]["complete"] = serde_json::json!(whole.is_some());
            Ok(manifest)
        })
        .await;
    let archive = match sealed {
        Ok(archive) => archive,
        Err(e) => {
            let rejection = rejected.lock().expect("rejection slot").take();
            return Err(rejection.unwrap_or(IngestError::Storage(e)));
        }
    };
    let recording = CtiRecording {
        recording_id,
        call_id: call.call_id.clone(),
        session_id: call.session_id,
        correlation_key: call.correlation_key.clone(),
        started_at: call.started_at,
        ended_at,
        location: archive.location.clone(),
        archive_id: Some(archive.archive_id),
        received_at: OffsetDateTime::now_utc(),
    };
    if let Err(e) = db.complete_cti_upload(upload.upload_id, &recording).await {
        if let Err(why) = vault.discard_archive(archive.archive_id, &access).await {
            tracing::warn!(archive_id = %archive.archive_id, error = %why, "could not remove an unrecorded CTI archive");
        }
        return Err(match e {
            DbError::CtiCallExists { call_id, .. } => {
                IngestError::Conflict(format!("call {call_id} is recorded already"))
            }
            DbError::CtiUploadNotOpen { upload_id } => {
                IngestError::Conflict(format!("CTI upload {upload_id} was completed meanwhile"))
            }
            other => other.into(),
        });
    }
    // The recording stands on its own now; the parts are copies of it.
    for part in &parts {
        if let Err(why) = vault.discard_archive(part.archive_id, &access).await {
            tracing::warn!(archive_id = %part.archive_id, error = %why, "could not remove a completed CTI part");
        }
    }
    if let Some(session) = call.session_id {
        state.sessions.cti_arrived(session).await?;
    }
    let bytes = parts.iter().map(|p| p.bytes).sum();
    tracing::info!(%recording_id, call_id = call.call_id, parts = parts.len(), bytes, "CTI recording stored from its parts");
    Ok((
        StatusCode::CREATED,
        Uploaded {
            recording_id,
            call_id: call.call_id,
            session_id: call.session_id,
            archive_id: archive.archive_id,
            bytes,
        },
    ))
}

/// Closes the uploads that received nothing for `idle`: each becomes a recording of the
/// parts that arrived, its manifest saying the upload was not completed (audited
/// `cti.upload.close` by `system:timeout`). Returns how many were closed.
///
/// # Errors
/// Storage failures listing the uploads; one upload failing to close is logged and left for
/// the next round.
pub async fn close_idle(state: &AppState, idle: Duration) -> Result<usize> {
    let before = OffsetDateTime::now_utc() - idle;
    let db = state.sessions.vault().db();
    let mut closed = 0;
    for upload in db.idle_cti_uploads(before).await? {
        let result = if db.cti_parts(upload.upload_id).await?.is_empty() {
            // Nothing to keep: the upload is dropped, and the call can be posted again.
            db.drop_empty_cti_upload(upload.upload_id)
                .await
                .map(|_| "opened, but no part arrived: dropped".to_owned())
                .map_err(IngestError::from)
        } else {
            finish(state, &upload, None, None).await.map(|_| {
                format!(
                    "nothing received for {} s: closed with the parts that arrived",
                    idle.as_secs()
                )
            })
        };
        if result.is_ok() {
            closed += 1;
        } else if let Err(e) = &result {
            tracing::warn!(upload_id = %upload.upload_id, error = %e, "could not close an idle CTI upload");
        }
        let event = storage::audit::AuditEvent {
            actor: "system:timeout".into(),
            action: "cti.upload.close".into(),
            object: format!("cti-upload:{}", upload.upload_id),
            reason: Some(match &result {
                Ok(what) => what.clone(),
                Err(e) => e.to_string(),
            }),
            outcome: if result.is_ok() {
                storage::audit::Outcome::Success
            } else {
                storage::audit::Outcome::Failed
            },
        };
        if let Err(e) = state.sessions.vault().audit().append(event).await {
            tracing::error!(error = %e, "cannot write the audit log");
        }
    }
    Ok(closed)
}
