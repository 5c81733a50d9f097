//! `POST /api/v1/cti/recordings`: a whole call recording in one request, streamed into a
//! sealed blob while it is checked, then recorded (attached to its session if that exists).

use std::io;
use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{OriginalUri, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use futures::TryStreamExt;
use storage::Access;
use storage::db::{CtiRecording, DbError};
use time::OffsetDateTime;
use tokio_util::io::StreamReader;
use uuid::Uuid;

use super::call::{CallParams, CallRecord};
use super::check::{BodyCheck, Inspected, Span};
use super::{Uploaded, audit, path_and_query};
use crate::error::{IngestError, Result};
use crate::server::AppState;

/// The handler: authenticates, seals, records, and audits the outcome (`cti.upload`) either
/// way.
pub async fn upload(
    State(state): State<Arc<AppState>>,
    method: Method,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    params: std::result::Result<Query<CallParams>, QueryRejection>,
    body: Body,
) -> Result<(StatusCode, Json<Uploaded>)> {
    let call = params.as_ref().ok().map_or_else(
        || "cti".to_owned(),
        |p| format!("cti-call:{}", p.0.call_id()),
    );
    let result = upload_inner(&state, &method, &uri, &headers, params, body).await;
    let object = result
        .as_ref()
        .map_or(call, |u| format!("cti-recording:{}", u.recording_id));
    audit(&state, "cti.upload", object, &result).await;
    result.map(|u| (StatusCode::CREATED, Json(u)))
}

async fn upload_inner(
    state: &AppState,
    method: &Method,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    params: std::result::Result<Query<CallParams>, QueryRejection>,
    body: Body,
) -> Result<Uploaded> {
    let intake = &state.cti;
    let signed = intake.authenticate(method, path_and_query(uri), headers)?;
    let Query(params) = params
        .map_err(|e| IngestError::BadRequest(format!("bad call record: {}", e.body_text())))?;
    let vault = state.sessions.vault();
    let db = vault.db();
    let call = CallRecord::resolve(params, db).await?;
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && len > intake.max_bytes
    {
        return Err(IngestError::PayloadTooLarge(format!(
            "the recording is larger than the limit of {} bytes",
            intake.max_bytes
        )));
    }
    let _reserved = intake.reserve(call.call_id.clone(), || {
        format!("call {} is being uploaded already", call.call_id)
    })?;
    call.ensure_not_recorded(db).await?;
    if let Some(open) = call.open_upload(db).await? {
        return Err(IngestError::Conflict(format!(
            "call {} is being uploaded in parts (upload {})",
            call.call_id, open.upload_id
        )));
    }

    let recording_id = Uuid::new_v4();
    let blob_key = format!("cti/{recording_id}.idvr");
    let manifest = call.manifest(recording_id, &signed.digest, None);
    let stream = body.into_data_stream().map_err(io::Error::other);
    let mut inspected = Inspected::new(
        StreamReader::new(stream),
        BodyCheck::new(intake.max_bytes, Span::Whole),
        signed.digest,
    );
    let access = Access::new("cti", Some(format!("CTI call {}", call.call_id)));
    let archive = match vault
        .seal_to_blob(&mut inspected, &blob_key, manifest, &access)
        .await
    {
        Ok(archive) => archive,
        Err(e) => return Err(inspected.rejected.take().unwrap_or(IngestError::Storage(e))),
    };
    let recording = CtiRecording {
        recording_id,
        call_id: call.call_id.clone(),
        session_id: call.session_id,
        correlation_key: call.correlation_key.clone(),
        started_at: call.started_at,
        ended_at: call.ended_at,
        location: archive.location.clone(),
        archive_id: Some(archive.archive_id),
        received_at: OffsetDateTime::now_utc(),
    };
    if let Err(e) = db.insert_cti_recording(&recording).await {
        // Not recorded: the sealed audio must not linger unreferenced.
        if let Err(why) = vault.discard_archive(archive.archive_id, &access).await {
            tracing::warn!(archive_id = %archive.archive_id, error = %why, "could not remove an unrecorded CTI archive");
        }
        return Err(match e {
            DbError::CtiCallExists { call_id, .. } => {
                IngestError::Conflict(format!("call {call_id} is recorded already"))
            }
            other => IngestError::Storage(other.into()),
        });
    }
    intake.remember(&signed);
    if let Some(session) = call.session_id {
        state.sessions.cti_arrived(session).await?;
    }
    let bytes = inspected.check.bytes();
    tracing::info!(%recording_id, call_id = call.call_id, format = ?inspected.check.format(), bytes, "CTI recording stored");
    Ok(Uploaded {
        recording_id,
        call_id: call.call_id,
        session_id: call.session_id,
        archive_id: archive.archive_id,
        bytes,
    })
}
