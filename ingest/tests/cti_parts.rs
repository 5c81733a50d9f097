//! CTI recordings uploaded in parts while the call runs, over the real HTTPS API: each part is
//! sealed and acknowledged on arrival; a recorder that restarts resumes where the server
//! stands; a resend is stored once; parts out of order, other bytes, garbage, a bad signature,
//! an oversize total and a completion whose digest does not add up are refused without
//! touching what is stored; completing seals one recording (the parts' archives go) and
//! expedites the ended session's mux job; an upload the CTI system stops feeding is closed
//! with what arrived.

mod common;

use std::io::Read;
use std::time::Duration;

use common::{Harness, wav};
use ingest::client::ClientError;
use ingest::cti::client::{CallInfo, CtiClient};
use ingest::cti::{self, CtiKey};
use sha2::{Digest, Sha256};
use storage::Access;
use uuid::Uuid;

/// A mono 8 kHz PCM WAV as a recorder writes it during the call: both sizes left 0.
fn streamed_wav(samples: usize) -> Vec<u8> {
    let mut wav = wav(samples);
    assert_eq!(&wav[36..40], b"data");
    wav[4..8].fill(0);
    wav[40..44].fill(0);
    wav
}

fn client(h: &Harness) -> CtiClient {
    let key = CtiKey::from_file(&h.dir.path().join("cti.key")).unwrap();
    CtiClient::new(&h.server().url(), &h.dir.path().join("tls/cert.pem"), key).unwrap()
}

fn call(call_id: &str, session: Option<Uuid>) -> CallInfo {
    CallInfo {
        call_id: call_id.into(),
        started_at: "2026-11-21T10:00:00Z".into(),
        ended_at: None,
        session_id: session.map(|s| s.to_string()),
        correlation: session
            .is_none()
            .then(|| "ext-4711@2026-11-21T10:00Z".to_owned()),
        filename: Some("call.wav".into()),
    }
}

fn refused(result: Result<impl std::fmt::Debug, ClientError>, status: u16, mentions: &str) {
    match result {
        Err(ClientError::Refused { status: s, reason }) => {
            assert_eq!(s, status, "{reason}");
            assert!(
                reason.to_lowercase().contains(mentions),
                "{reason:?} should mention {mentions:?}"
            );
        }
        other => panic!("expected a {status} refusal, got {other:?}"),
    }
}

async fn session(h: &Harness) -> Uuid {
    h.create().await["session_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// Opens a sealed blob and reads it whole: (plaintext, manifest).
async fn open_sealed(h: &Harness, location: &str) -> (Vec<u8>, serde_json::Value) {
    let key = location
        .strip_prefix("blob:")
        .unwrap_or(location)
        .to_owned();
    let mut reader = h
        .vault
        .open_blob(&key, &Access::new("test", Some("check".into())))
        .await
        .unwrap();
    tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        reader.read_to_end(&mut out).unwrap();
        (out, reader.manifest().unwrap())
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn parts_are_acknowledged_resumed_and_completed_into_one_sealed_recording() {
    let h = Harness::new(|_| {}).await;
    let session = session(&h).await;
    let audio = streamed_wav(24_000);
    let cti = client(&h);
    let info = call("call-parts-1", Some(session));

    let opened = cti.open_upload(&info).await.unwrap();
    assert_eq!((opened.next_part, opened.bytes), (0, 0));
    assert_eq!(opened.session_id, Some(session));
    let chunks: Vec<&[u8]> = audio.chunks(16_384).collect();
    assert_eq!(chunks.len(), 3);
    for (n, chunk) in chunks[..2].iter().enumerate() {
        let stored = cti
            .put_part(opened.upload_id, n as u64, chunk.to_vec())
            .await
            .unwrap();
        assert_eq!((stored.part, stored.next_part), (n as u64, n as u64 + 1));
    }
    // Each acknowledged part is sealed in the blob store: no plaintext, opens to its bytes.
    let parts = h.vault.db().cti_parts(opened.upload_id).await.unwrap();
    assert_eq!(parts.len(), 2);
    let (first, manifest) = open_sealed(&h, &parts[0].location).await;
    assert_eq!(first, chunks[0]);
    assert_eq!(manifest["kind"], "cti-part");
    let raw = h
        .vault
        .blobs()
        .get_range(&parts[1].location, 0..parts[1].bytes)
        .await
        .unwrap();
    assert!(!raw.windows(32).any(|w| w == &chunks[1][100..132]));

    // The recorder restarts: opening again finds the upload and where it stands.
    let resumed = cti.open_upload(&info).await.unwrap();
    assert_eq!(resumed.upload_id, opened.upload_id);
    assert_eq!((resumed.next_part, resumed.bytes), (2, 32_768));
    // A part whose answer was lost is sent again: stored once.
    let again = cti
        .put_part(opened.upload_id, 1, chunks[1].to_vec())
        .await
        .unwrap();
    assert_eq!(again.next_part, 2);
    assert_eq!(
        h.vault
            .db()
            .cti_parts(opened.upload_id)
            .await
            .unwrap()
            .len(),
        2
    );
    // Other bytes for a stored part, or a part that skips ahead, are refused.
    refused(
        cti.put_part(opened.upload_id, 1, b"other".to_vec()).await,
        409,
        "other bytes",
    );
    refused(
        cti.put_part(opened.upload_id, 3, b"ahead".to_vec()).await,
        409,
        "part 2 next",
    );
    // While the upload is open, the same call cannot come in one request.
    let whole_file = h.dir.path().join("whole.wav");
    std::fs::write(&whole_file, &audio).unwrap();
    refused(cti.push(&info, &whole_file).await, 409, "in parts");

    cti.put_part(opened.upload_id, 2, chunks[2].to_vec())
        .await
        .unwrap();
    // A completion whose digest does not add up is refused, and the parts stay.
    let wrong: [u8; 32] = Sha256::digest(b"not the recording").into();
    refused(
        cti.complete(opened.upload_id, &wrong, None).await,
        400,
        "do not add up",
    );
    assert_eq!(
        h.vault
            .db()
            .cti_parts(opened.upload_id)
            .await
            .unwrap()
            .len(),
        3
    );

    let digest: [u8; 32] = Sha256::digest(&audio).into();
    let done = cti
        .complete(opened.upload_id, &digest, Some("2026-11-21T10:00:03Z"))
        .await
        .unwrap();
    assert_eq!(done.bytes, audio.len() as u64);
    assert_eq!(done.session_id, Some(session));
    // Completing again answers the same recording.
    let twice = cti.complete(opened.upload_id, &digest, None).await.unwrap();
    assert_eq!(twice.recording_id, done.recording_id);

    let db = h.vault.db();
    let recording = db.cti_recording(done.recording_id).await.unwrap().unwrap();
    assert_eq!(recording.session_id, Some(session));
    assert!(recording.ended_at.is_some());
    let (opened_audio, manifest) = open_sealed(&h, &recording.location).await;
    assert!(opened_audio == audio, "the recording is the parts in order");
    assert_eq!(manifest["sha256"], hex::encode(digest));
    assert_eq!(manifest["upload"]["parts"], 3);
    assert_eq!(manifest["upload"]["complete"], true);
    // The parts' archives are gone: one archive, one blob under cti/.
    assert!(db.cti_parts(opened.upload_id).await.unwrap().is_empty());
    assert_eq!(h.vault.blobs().list("cti/").await.unwrap().len(), 1);
    assert_eq!(db.archives().await.unwrap().len(), 1);

    // The same bytes as another call, in one request, as a WAV written as a stream.
    let pushed = cti
        .push(&call("call-parts-2", Some(session)), &whole_file)
        .await
        .unwrap();
    assert_eq!(pushed.bytes, audio.len() as u64);

    let log = h.vault.audit().entries(0, 1000).await.unwrap();
    for action in ["cti.upload.open", "cti.upload.part", "cti.upload.complete"] {
        assert!(log.iter().any(|e| e.action == action), "{action} audited");
    }
    assert!(
        log.iter()
            .any(|e| e.action == "cti.upload.part" && e.outcome == storage::audit::Outcome::Denied)
    );
}

#[tokio::test]
async fn bad_parts_are_refused_and_leave_the_upload_as_it_was() {
    let h = Harness::new(|c| c.max_cti_bytes = 40_000).await;
    let cti = client(&h);
    let upload = cti.open_upload(&call("call-bad", None)).await.unwrap();
    assert_eq!(upload.session_id, None);

    // Part 0 must start like a recording.
    refused(
        cti.put_part(upload.upload_id, 0, b"hello, this is not audio".to_vec())
            .await,
        415,
        "not a recognised audio format",
    );
    refused(
        cti.put_part(upload.upload_id, 0, Vec::new()).await,
        400,
        "empty",
    );
    let audio = streamed_wav(30_000);
    cti.put_part(upload.upload_id, 0, audio[..30_000].to_vec())
        .await
        .unwrap();
    // The total is capped across parts.
    refused(
        cti.put_part(upload.upload_id, 1, audio[30_000..].to_vec())
            .await,
        413,
        "larger than the limit",
    );
    // A bad signature is refused before the body is read.
    let target = format!("{}/{}/parts/1", cti::UPLOADS_PATH, upload.upload_id);
    let r = h
        .http
        .put(format!("{}{target}", h.server().url()))
        .header(
            cti::TIMESTAMP_HEADER,
            time::OffsetDateTime::now_utc().unix_timestamp().to_string(),
        )
        .header(cti::DIGEST_HEADER, hex::encode(Sha256::digest(b"x")))
        .header(cti::SIGNATURE_HEADER, "00".repeat(32))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // An unknown upload.
    refused(
        cti.put_part(Uuid::new_v4(), 0, b"RIFF".to_vec()).await,
        404,
        "no cti upload",
    );

    let parts = h.vault.db().cti_parts(upload.upload_id).await.unwrap();
    assert_eq!(parts.len(), 1, "only the good part is stored");
    assert_eq!(h.vault.blobs().list("cti/").await.unwrap().len(), 1);
    assert_eq!(h.vault.db().archives().await.unwrap().len(), 1);
    let (first, _) = open_sealed(&h, &parts[0].location).await;
    assert!(first == audio[..30_000]);
}

#[tokio::test]
async fn completing_expedites_the_ended_sessions_mux_job() {
    let h = Harness::new(|_| {}).await;
    let joined = h.consented_session(&["camera", "recording"]).await;
    let cti = client(&h);
    let audio = streamed_wav(8_000);
    let upload = cti
        .open_upload(&call("call-late", Some(joined.session)))
        .await
        .unwrap();
    cti.put_part(upload.upload_id, 0, audio.clone())
        .await
        .unwrap();
    h.end(joined.session).await;
    let db = h.vault.db();
    let job = db
        .mux_job_for_session(joined.session)
        .await
        .unwrap()
        .unwrap();
    assert!(job.video_only, "still waiting for the call: {job:?}");
    assert!(job.not_before > time::OffsetDateTime::now_utc());

    let digest: [u8; 32] = Sha256::digest(&audio).into();
    cti.complete(upload.upload_id, &digest, None).await.unwrap();
    let job = db
        .mux_job_for_session(joined.session)
        .await
        .unwrap()
        .unwrap();
    assert!(!job.video_only, "{job:?}");
    assert!(job.not_before <= time::OffsetDateTime::now_utc());
}

#[tokio::test]
async fn an_upload_the_cti_system_stops_feeding_is_closed_with_what_arrived() {
    let h = Harness::new(|c| c.cti_upload_idle = Duration::from_millis(600)).await;
    let session = session(&h).await;
    let cti = client(&h);
    let audio = streamed_wav(8_000);
    let fed = cti
        .open_upload(&call("call-dropped", Some(session)))
        .await
        .unwrap();
    cti.put_part(fed.upload_id, 0, audio[..10_000].to_vec())
        .await
        .unwrap();
    let empty = cti
        .open_upload(&call("call-never-fed", Some(session)))
        .await
        .unwrap();

    let db = h.vault.db();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let recording = loop {
        let upload = db.cti_upload(fed.upload_id).await.unwrap().unwrap();
        if let Some(id) = upload.recording_id {
            break db.cti_recording(id).await.unwrap().unwrap();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the idle upload was not closed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(recording.session_id, Some(session));
    assert_eq!(recording.ended_at, None);
    let (bytes, manifest) = open_sealed(&h, &recording.location).await;
    assert!(bytes == audio[..10_000]);
    assert_eq!(manifest["upload"]["complete"], false);
    // The upload that never got a part is dropped, so the call can be posted afresh.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while db.cti_upload(empty.upload_id).await.unwrap().is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "the empty upload was not dropped"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = h.vault.audit().entries(0, 1000).await.unwrap();
    assert!(log.iter().any(|e| e.action == "cti.upload.close"
        && e.actor == "system:timeout"
        && e.object == format!("cti-upload:{}", fed.upload_id)));
}
