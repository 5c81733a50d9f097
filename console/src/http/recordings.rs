//! The compliance pages: search, open for a reason, play (decrypted range by range), verify,
//! export the sealed archive or a watermarked MP4. Only compliance officers of the recording's group get in;
//! every refusal and every use is audited (see [`crate::recordings::access`]).

use std::sync::Arc;

use askama::Template;
use axum::Form;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use futures::StreamExt;
use storage::audit::Outcome;
use storage::db::Role;
use time::{Date, OffsetDateTime, Time};
use tokio_util::io::ReaderStream;
use uuid::Uuid;

use super::pages::{Nav, render, render_with, utc};
use super::{ConsoleState, Viewer};
use crate::recordings::access::{self, AccessError, Grant};
use crate::recordings::export;
use crate::recordings::manifest_view::ManifestView;
use crate::recordings::media;
use crate::recordings::search::{self, SearchFilter, Status};
use crate::recordings::timeline::timeline_svg;
use crate::recordings::watermark::Watermark;

/// The search form as sent (kept to fill the form again).
#[derive(Debug, Default, serde::Deserialize)]
pub struct SearchForm {
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    operator: String,
    #[serde(default)]
    session: String,
    #[serde(default)]
    case: String,
    #[serde(default)]
    status: String,
}

struct Row {
    session: String,
    operator: String,
    case: String,
    created: String,
    ended: String,
    status: &'static str,
    openable: bool,
    note: String,
}

#[derive(Template)]
#[template(path = "recordings.html")]
struct RecordingsPage {
    nav: Nav,
    form: SearchForm,
    statuses: Vec<&'static str>,
    rows: Vec<Row>,
    problem: Option<String>,
}

#[derive(Template)]
#[template(path = "recording_reason.html")]
struct ReasonPage {
    nav: Nav,
    session: Uuid,
    problem: Option<String>,
}

#[derive(Template)]
#[template(path = "recording.html")]
struct RecordingPage {
    nav: Nav,
    session: Uuid,
    grant: String,
    reason: String,
    manifest: String,
    /// The manifest in words (escaped by the template).
    view: ManifestView,
    /// The timeline picture: SVG escaped by its maker, inserted as is.
    timeline: String,
    verified: Option<(bool, String)>,
}

fn date(text: &str, what: &str) -> Result<Option<OffsetDateTime>, String> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    let f = time::macros::format_description!("[year]-[month]-[day]");
    Date::parse(text.trim(), &f)
        .map(|d| Some(d.with_time(Time::MIDNIGHT).assume_utc()))
        .map_err(|_| format!("{what}: {text:?} is not a date (YYYY-MM-DD)"))
}

fn filter_of(form: &SearchForm) -> Result<SearchFilter, String> {
    let non_empty = |s: &str| Some(s.trim().to_owned()).filter(|s| !s.is_empty());
    Ok(SearchFilter {
        from: date(&form.from, "from")?,
        // Up to and including the day named.
        to: date(&form.to, "to")?.map(|d| d + time::Duration::days(1)),
        operator: non_empty(&form.operator),
        session: non_empty(&form.session),
        case_reference: non_empty(&form.case),
        status: match form.status.trim() {
            "" => None,
            s => Some(Status::parse(s).ok_or_else(|| format!("unknown status {s:?}"))?),
        },
    })
}

/// A refusal for someone without the compliance role, audited.
async fn not_compliance(
    state: &ConsoleState,
    viewer: &Viewer,
    action: &str,
    object: Option<Uuid>,
) -> Response {
    let object = object.unwrap_or_default();
    if let Err(e) = access::audit(
        &state.vault,
        &viewer.0,
        action,
        object,
        "refused: only compliance officers open recordings",
        Outcome::Denied,
    )
    .await
    {
        tracing::error!(error = %e, "cannot write the audit log");
    }
    (
        StatusCode::FORBIDDEN,
        "Only compliance officers find and open recordings.",
    )
        .into_response()
}

/// `GET /recordings`.
pub async fn list(
    State(state): State<Arc<ConsoleState>>,
    viewer: Viewer,
    Query(form): Query<SearchForm>,
) -> Response {
    if !viewer.0.user.has(Role::Compliance) {
        return not_compliance(&state, &viewer, "recording.search", None).await;
    }
    let (rows, problem) = match filter_of(&form) {
        Err(problem) => (Vec::new(), Some(problem)),
        Ok(filter) => match search::search(&state.vault, &viewer.0.user.group, &filter).await {
            Ok(rows) => (rows, None),
            Err(e) => (Vec::new(), Some(format!("the search failed: {e}"))),
        },
    };
    let rows = rows
        .into_iter()
        .map(|r| Row {
            session: r.session_id.to_string(),
            operator: r.operator,
            case: r.case_reference.unwrap_or_default(),
            created: utc(r.created_at),
            ended: r.ended_at.map(utc).unwrap_or_default(),
            status: r.status.as_str(),
            openable: r.archive_id.is_some(),
            note: r.error.unwrap_or_default(),
        })
        .collect();
    render(&RecordingsPage {
        nav: Nav::of(&viewer),
        form,
        statuses: ["queued", "muxing", "muxed", "video-only", "failed"].into(),
        rows,
        problem,
    })
}

/// The grant named in the query (`?grant=`).
#[derive(serde::Deserialize)]
pub struct GrantQuery {
    #[serde(default)]
    grant: String,
}

async fn grant_of(state: &ConsoleState, viewer: &Viewer, id: &str, session: Uuid) -> Option<Grant> {
    state.grants.get(&state.vault, id, &viewer.0, session).await
}

/// The answer to a use of a recording without an open grant.
fn no_grant() -> Response {
    (
        StatusCode::FORBIDDEN,
        "open the recording first, stating why",
    )
        .into_response()
}

/// Audits a use of an opened recording with the grant's reason; the 503 to answer instead
/// when the audit log fails (then the use must not happen).
async fn audit_use(
    state: &ConsoleState,
    viewer: &Viewer,
    action: &str,
    grant: &Grant,
    outcome: Outcome,
) -> Result<(), Response> {
    audit_reason(
        state,
        viewer,
        action,
        grant.session_id,
        &grant.reason,
        outcome,
    )
    .await
}

/// Audits an action on `session`'s recording with `reason` as given; the 503 to answer
/// instead when the audit log fails.
async fn audit_reason(
    state: &ConsoleState,
    viewer: &Viewer,
    action: &str,
    session: Uuid,
    reason: &str,
    outcome: Outcome,
) -> Result<(), Response> {
    access::audit(&state.vault, &viewer.0, action, session, reason, outcome)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "cannot write the audit log");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "the audit log is unavailable",
            )
                .into_response()
        })
}

/// `GET /recordings/{session}`: the reason form, or the recording with `?grant=`.
pub async fn page(
    State(state): State<Arc<ConsoleState>>,
    viewer: Viewer,
    Path(session): Path<Uuid>,
    Query(query): Query<GrantQuery>,
) -> Response {
    if !viewer.0.user.has(Role::Compliance) {
        return not_compliance(&state, &viewer, "recording.view", Some(session)).await;
    }
    match grant_of(&state, &viewer, &query.grant, session).await {
        Some(grant) => recording_page(&viewer, grant, None).await,
        None => render(&ReasonPage {
            nav: Nav::of(&viewer),
            session,
            problem: None,
        }),
    }
}

async fn recording_page(
    viewer: &Viewer,
    grant: Grant,
    verified: Option<(bool, String)>,
) -> Response {
    let sealed = grant.sealed.clone();
    let manifest = tokio::task::spawn_blocking(move || {
        sealed
            .open()
            .map_err(|e| e.to_string())
            .and_then(|mut reader| reader.manifest().map_err(|e| e.to_string()))
    })
    .await
    .map_err(|e| e.to_string())
    .and_then(|m| m);
    let (manifest, view, timeline) = match manifest {
        Ok(m) => (
            serde_json::to_string_pretty(&m).unwrap_or_default(),
            ManifestView::from_manifest(&m),
            timeline_svg(&m),
        ),
        Err(e) => (
            format!("the manifest cannot be read: {e}"),
            ManifestView::from_manifest(&serde_json::Value::Null),
            String::new(),
        ),
    };
    render(&RecordingPage {
        nav: Nav::of(viewer),
        session: grant.session_id,
        grant: grant.id,
        reason: grant.reason,
        manifest,
        view,
        timeline,
        verified,
    })
}

/// The reason form's fields.
#[derive(serde::Deserialize)]
pub struct ReasonForm {
    #[serde(default)]
    reason: String,
    #[serde(default)]
    csrf: String,
}

/// `POST /recordings/{session}/open`.
pub async fn open(
    State(state): State<Arc<ConsoleState>>,
    viewer: Viewer,
    Path(session): Path<Uuid>,
    Form(form): Form<ReasonForm>,
) -> Response {
    if let Err(refused) = viewer.check_csrf(Some(&form.csrf)) {
        return refused.into_response();
    }
    match state
        .grants
        .open(&state.vault, &viewer.0, session, &form.reason)
        .await
    {
        Ok(grant) => {
            Redirect::to(&format!("/recordings/{session}?grant={}", grant.id)).into_response()
        }
        Err(AccessError::NotCompliance) => (
            StatusCode::FORBIDDEN,
            "Only compliance officers find and open recordings.",
        )
            .into_response(),
        Err(e @ AccessError::NoReason) => render_with(
            StatusCode::BAD_REQUEST,
            &ReasonPage {
                nav: Nav::of(&viewer),
                session,
                problem: Some(e.to_string()),
            },
        ),
        Err(e @ (AccessError::NotFound(_) | AccessError::Shredded)) => {
            (StatusCode::NOT_FOUND, e.to_string()).into_response()
        }
        Err(e @ AccessError::Storage(_)) => {
            (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response()
        }
    }
}

/// `GET /recordings/{session}/media?grant=`: the plaintext, by ranges.
pub async fn media(
    State(state): State<Arc<ConsoleState>>,
    viewer: Viewer,
    Path(session): Path<Uuid>,
    Query(query): Query<GrantQuery>,
    headers: HeaderMap,
) -> Response {
    let Some(grant) = grant_of(&state, &viewer, &query.grant, session).await else {
        return no_grant();
    };
    if state.grants.first_play(&state.vault, &grant.id).await
        && let Err(unavailable) =
            audit_use(&state, &viewer, "recording.play", &grant, Outcome::Success).await
    {
        return unavailable;
    }
    let len = grant.payload_len;
    let asked = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let range = match media::parse_range(asked, len) {
        Ok(Some(range)) => range,
        Ok(None) => media::ByteRange {
            start: 0,
            end: len.saturating_sub(1).min(media::MAX_RANGE - 1),
        },
        Err(media::Unsatisfiable) => {
            return (
                StatusCode::RANGE_NOT_SATISFIABLE,
                [(header::CONTENT_RANGE, format!("bytes */{len}"))],
            )
                .into_response();
        }
    };
    let bytes = match media::read(&grant.sealed, range).await {
        Ok(bytes) => bytes,
        Err(e) => {
            tracing::error!(%session, error = %e, "cannot decrypt a range of a recording");
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the recording cannot be read",
            )
                .into_response();
        }
    };
    let partial = asked.is_some() || range.end + 1 < len;
    let mut response = (
        [
            (header::CONTENT_TYPE, "video/mp4".to_owned()),
            (header::ACCEPT_RANGES, "bytes".to_owned()),
            (
                header::CONTENT_RANGE,
                format!("bytes {}-{}/{len}", range.start, range.end),
            ),
        ],
        bytes,
    )
        .into_response();
    if partial {
        *response.status_mut() = StatusCode::PARTIAL_CONTENT;
    }
    response
}

/// A write with a grant.
#[derive(serde::Deserialize)]
pub struct GrantForm {
    #[serde(default)]
    grant: String,
    #[serde(default)]
    csrf: String,
}

/// `POST /recordings/{session}/verify`.
pub async fn verify(
    State(state): State<Arc<ConsoleState>>,
    viewer: Viewer,
    Path(session): Path<Uuid>,
    Form(form): Form<GrantForm>,
) -> Response {
    if let Err(refused) = viewer.check_csrf(Some(&form.csrf)) {
        return refused.into_response();
    }
    let Some(grant) = grant_of(&state, &viewer, &form.grant, session).await else {
        return no_grant();
    };
    let sealed = grant.sealed.clone();
    let report = tokio::task::spawn_blocking(move || {
        let mut reader = sealed.open().map_err(|e| e.to_string())?;
        reader.verify(|_| {}).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())
    .and_then(|r| r);
    let (ok, text) = match &report {
        Ok(report) => (
            true,
            format!("Intact: every chunk and the manifest check out ({report:?})."),
        ),
        Err(e) => (false, format!("Damaged: {e}")),
    };
    let outcome = if ok {
        Outcome::Success
    } else {
        Outcome::Failed
    };
    if let Err(unavailable) = audit_use(&state, &viewer, "recording.verify", &grant, outcome).await
    {
        return unavailable;
    }
    recording_page(&viewer, grant, Some((ok, text))).await
}

/// `GET /recordings/{session}/archive?grant=`: the sealed archive as stored (still encrypted).
pub async fn export_sealed(
    State(state): State<Arc<ConsoleState>>,
    viewer: Viewer,
    Path(session): Path<Uuid>,
    Query(query): Query<GrantQuery>,
) -> Response {
    let Some(grant) = grant_of(&state, &viewer, &query.grant, session).await else {
        return no_grant();
    };
    if let Err(unavailable) = audit_use(
        &state,
        &viewer,
        "recording.export",
        &grant,
        Outcome::Success,
    )
    .await
    {
        return unavailable;
    }
    let stream = match state.vault.blobs().get_stream(grant.sealed.key()).await {
        Ok(stream) => stream,
        Err(e) => return (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (header::CONTENT_LENGTH, stream.size().to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{session}.idvr\""),
            ),
        ],
        Body::from_stream(ReaderStream::new(stream)),
    )
        .into_response()
}

/// `GET /recordings/{session}/export.mp4?grant=`: the recording decrypted and encoded again
/// with a watermark naming the exporter, the time, the session and the reason on every video
/// frame (`recordings::export`), streamed as it is made (chunked: its length is not known
/// before the end) as `SESSION-watermarked.mp4`. Audited as `recording.export` with the
/// reason and what was drawn; an export that fails or is abandoned by the client is audited
/// again as failed. One that fails before its first byte (not media, no video) is answered
/// 422 with the reason instead of a download. A GET like the sealed archive's link: the
/// grant in the address is a per-login secret another site cannot know, and the cookie is
/// `SameSite=Strict`.
pub async fn export_mp4(
    State(state): State<Arc<ConsoleState>>,
    viewer: Viewer,
    Path(session): Path<Uuid>,
    Query(query): Query<GrantQuery>,
) -> Response {
    const ACTION: &str = "recording.export";
    if !viewer.0.user.has(Role::Compliance) {
        return not_compliance(&state, &viewer, ACTION, Some(session)).await;
    }
    let Some(grant) = grant_of(&state, &viewer, &query.grant, session).await else {
        let why = "refused: a watermarked MP4 without an open grant";
        // A failure to audit is logged; the answer is a refusal either way.
        let _ = audit_reason(&state, &viewer, ACTION, session, why, Outcome::Denied).await;
        return no_grant();
    };
    let Ok(running) = Arc::clone(&state.exports).try_acquire_owned() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "60")],
            "other exports are running: try again in a minute",
        )
            .into_response();
    };
    let watermark = Watermark {
        exporter: viewer.0.actor(),
        at: OffsetDateTime::now_utc(),
        session,
        reason: grant.reason.clone(),
    };
    let detail = format!(
        "{} [decrypted MP4, watermarked \"exported by {} · {}\"]",
        grant.reason,
        watermark.exporter,
        watermark.when()
    );
    if let Err(unavailable) =
        audit_reason(&state, &viewer, ACTION, session, &detail, Outcome::Success).await
    {
        return unavailable;
    }
    let export::Export { mut body, finished } =
        export::start(grant.sealed.clone(), grant.payload_len, &watermark);
    tokio::spawn(audit_if_unfinished(
        state.vault.clone(),
        viewer.0.clone(),
        session,
        detail,
        finished,
    ));
    // The first piece (the MP4's header) decides the answer: a recording that cannot be
    // exported at all gets an error page, not a download that breaks at once.
    let first = match body.recv().await {
        Some(Ok(first)) => first,
        Some(Err(e)) => {
            return (
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("the recording cannot be exported: {e}"),
            )
                .into_response();
        }
        None => {
            return (StatusCode::INTERNAL_SERVER_ERROR, "the export stopped").into_response();
        }
    };
    // The export holds its place until the body is done or dropped (the client left).
    let rest = futures::stream::poll_fn(move |cx| {
        let _running = &running;
        body.poll_recv(cx)
    });
    (
        [
            (header::CONTENT_TYPE, "video/mp4".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{session}-watermarked.mp4\""),
            ),
        ],
        Body::from_stream(futures::stream::once(async { Ok(first) }).chain(rest)),
    )
        .into_response()
}

/// Waits for an export to stop; one that failed or whose client left is audited again
/// (`recording.export`, failed, with why), one that completed is only logged.
async fn audit_if_unfinished(
    vault: storage::Vault,
    login: crate::auth::LoggedIn,
    session: Uuid,
    detail: String,
    finished: tokio::task::JoinHandle<Result<export::Report, export::ExportError>>,
) {
    let stopped = match finished.await {
        Ok(Ok(report)) if !report.client_left => {
            tracing::info!(%session, bytes = report.bytes, frames = report.frames,
                seconds = report.elapsed.as_secs_f64(), "watermarked MP4 exported");
            return;
        }
        Ok(Ok(report)) => format!("the client left after {} bytes were made", report.bytes),
        Ok(Err(e)) => e.to_string(),
        Err(e) => format!("the export stopped: {e}"),
    };
    tracing::warn!(%session, %stopped, "watermarked MP4 export did not complete");
    let reason = format!("{detail} — not completed: {stopped}");
    let failed = Outcome::Failed;
    if let Err(e) =
        access::audit(&vault, &login, "recording.export", session, &reason, failed).await
    {
        tracing::error!(error = %e, "cannot write the audit log");
    }
}
