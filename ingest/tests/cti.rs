//! CTI audio intake over the real HTTPS API: a signed upload is streamed into a sealed blob,
//! recorded and attached to its session; a bad signature, a stale or missing timestamp, a
//! tampered body, a replay, an oversize body, garbage and a damaged WAV header are each
//! refused with their status and one line of JSON, leaving nothing stored and later uploads
//! unaffected.

mod common;

use std::io::Read;

use common::{Harness, wav};
use ingest::cti::{self, CtiKey};
use serde_json::Value;
use sha2::{Digest, Sha256};
use storage::Access;
use uuid::Uuid;

fn key(h: &Harness) -> CtiKey {
    CtiKey::from_file(&h.dir.path().join("cti.key")).unwrap()
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// The request target for a call record (`pairs` as query parameters).
fn target(pairs: &[(&str, &str)]) -> String {
    let mut url = reqwest::Url::parse("https://x")
        .unwrap()
        .join(cti::UPLOAD_PATH)
        .unwrap();
    url.query_pairs_mut().extend_pairs(pairs);
    format!("{}?{}", url.path(), url.query().unwrap())
}

/// A signed request, ready to be changed and sent.
struct Upload {
    target: String,
    timestamp: Option<i64>,
    digest: [u8; 32],
    signature: String,
    body: Vec<u8>,
}

impl Upload {
    fn signed(key: &CtiKey, target: String, body: Vec<u8>) -> Self {
        Self::signed_at(key, target, body, now())
    }

    fn signed_at(key: &CtiKey, target: String, body: Vec<u8>, timestamp: i64) -> Self {
        let digest: [u8; 32] = Sha256::digest(&body).into();
        let signature = cti::sign(key, "POST", &target, timestamp, &digest);
        Self {
            target,
            timestamp: Some(timestamp),
            digest,
            signature,
            body,
        }
    }

    fn request(&self, h: &Harness) -> reqwest::RequestBuilder {
        let mut request = h
            .http
            .post(format!("{}{}", h.server().url(), self.target))
            .header(cti::DIGEST_HEADER, hex::encode(self.digest))
            .header(cti::SIGNATURE_HEADER, &self.signature);
        if let Some(t) = self.timestamp {
            request = request.header(cti::TIMESTAMP_HEADER, t.to_string());
        }
        request
    }

    async fn send(&self, h: &Harness) -> (u16, Value) {
        answer(
            self.request(h)
                .body(self.body.clone())
                .send()
                .await
                .unwrap(),
        )
        .await
    }
}

async fn answer(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    assert!(!text.contains('\n'), "one line: {text:?}");
    (status, serde_json::from_str(&text).unwrap())
}

fn call(call_id: &str, session: Option<Uuid>) -> String {
    let session = session.map(|s| s.to_string());
    let mut pairs = vec![
        ("call_id", call_id),
        ("started_at", "2026-11-21T10:00:00+01:00"),
        ("ended_at", "2026-11-21T10:05:00+01:00"),
        ("filename", "call.wav"),
    ];
    match &session {
        Some(s) => pairs.push(("session_id", s)),
        None => pairs.push(("correlation", "ext-4711@2026-11-21T09:00Z")),
    }
    target(&pairs)
}

/// Nothing of a refused upload may remain: no CTI row, blob, or archive beyond `archives`.
async fn assert_nothing_stored(h: &Harness, archives: usize) {
    let db = h.vault.db();
    assert!(
        db.unattached_cti_recordings("ext-4711@2026-11-21T09:00Z")
            .await
            .unwrap()
            .is_empty()
    );
    let blobs = h.vault.blobs().list("cti/").await.unwrap();
    assert_eq!(blobs.len(), archives, "{blobs:?}");
    assert_eq!(db.archives().await.unwrap().len(), archives);
}

fn refused(status: u16, body: &Value, expected: u16, mentions: &str) {
    assert_eq!(status, expected, "{body}");
    let error = body["error"].as_str().unwrap_or_else(|| panic!("{body}"));
    assert!(
        error.to_lowercase().contains(mentions),
        "{error:?} should mention {mentions:?}"
    );
}

#[tokio::test]
async fn upload_is_sealed_recorded_and_attached_to_its_session() {
    let h = Harness::new(|_| {}).await;
    let session: Uuid = h.create().await["session_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let audio = wav(16_000);
    let (status, body) = Upload::signed(&key(&h), call("call-1", Some(session)), audio.clone())
        .send(&h)
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["call_id"], "call-1");
    assert_eq!(body["session_id"], session.to_string());
    assert_eq!(body["bytes"], audio.len());
    let recording: Uuid = body["recording_id"].as_str().unwrap().parse().unwrap();
    let archive: Uuid = body["archive_id"].as_str().unwrap().parse().unwrap();

    let db = h.vault.db();
    let row = db.cti_recording(recording).await.unwrap().unwrap();
    assert_eq!(row.session_id, Some(session));
    assert_eq!(row.archive_id, Some(archive));
    assert_eq!(row.call_id, "call-1");
    assert!(row.ended_at.unwrap() > row.started_at);
    assert_eq!(
        db.cti_recordings_for_session(session).await.unwrap(),
        vec![row.clone()]
    );

    // Sealed at rest: the stored object holds none of the WAV's bytes in the clear…
    let key = row.location.strip_prefix("blob:").unwrap().to_owned();
    let size = h.vault.blobs().size(&key).await.unwrap();
    let stored = h.vault.blobs().get_range(&key, 0..size).await.unwrap();
    for needle in [&b"RIFF"[..], b"WAVEfmt ", &audio[44..76]] {
        assert!(
            !stored.windows(needle.len()).any(|w| w == needle),
            "plaintext {needle:?} in the blob"
        );
    }
    // …and opens with the vault to exactly the uploaded bytes.
    let mut reader = h
        .vault
        .open_blob(&key, &Access::new("test", Some("check".into())))
        .await
        .unwrap();
    assert_eq!(reader.header().archive_id, archive);
    let (opened, manifest) = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        reader.read_to_end(&mut out).unwrap();
        (out, reader.manifest().unwrap())
    })
    .await
    .unwrap();
    assert!(opened == audio, "the archive opens to the uploaded bytes");
    assert_eq!(manifest["kind"], "cti");
    assert_eq!(manifest["call_id"], "call-1");
    assert_eq!(manifest["sha256"], hex::encode(Sha256::digest(&audio)));

    let log = h.vault.audit().entries(0, 1000).await.unwrap();
    assert!(log.iter().any(|e| e.action == "cti.upload"
        && e.outcome == storage::audit::Outcome::Success
        && e.object == format!("cti-recording:{recording}")));
    // No plaintext file anywhere under the data directory either.
    assert_no_plaintext_under(h.dir.path(), &audio[44..76]);
}

fn assert_no_plaintext_under(dir: &std::path::Path, needle: &[u8]) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            assert_no_plaintext_under(&path, needle);
        } else {
            let bytes = std::fs::read(&path).unwrap();
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "plaintext audio in {}",
                path.display()
            );
        }
    }
}

#[tokio::test]
async fn upload_without_a_known_session_stays_unattached_with_its_correlation_key() {
    let h = Harness::new(|_| {}).await;
    let (status, body) = Upload::signed(&key(&h), call("call-7", None), wav(800))
        .send(&h)
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["session_id"], Value::Null);
    let waiting = h
        .vault
        .db()
        .unattached_cti_recordings("ext-4711@2026-11-21T09:00Z")
        .await
        .unwrap();
    assert_eq!(waiting.len(), 1);
    assert_eq!(waiting[0].call_id, "call-7");

    // A session id nobody knows: kept unattached, findable by that id.
    let ghost = Uuid::new_v4();
    let (status, body) = Upload::signed(&key(&h), call("call-8", Some(ghost)), wav(800))
        .send(&h)
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["session_id"], Value::Null);
    let waiting = h
        .vault
        .db()
        .unattached_cti_recordings(&format!("session:{ghost}"))
        .await
        .unwrap();
    assert_eq!(waiting.len(), 1);
}

#[tokio::test]
async fn bad_credentials_are_refused_before_anything_is_stored() {
    let h = Harness::new(|_| {}).await;
    let key = key(&h);

    // Signed with another key.
    let stranger = tempfile::tempdir().unwrap();
    let wrong = CtiKey::load_or_create(stranger.path()).unwrap();
    let (status, body) = Upload::signed(&wrong, call("c1", None), wav(800))
        .send(&h)
        .await;
    refused(status, &body, 401, "signature");

    // A signature for another call record (the query was changed after signing).
    let mut moved = Upload::signed(&key, call("c1", None), wav(800));
    moved.target = call("c2", None);
    let (status, body) = moved.send(&h).await;
    refused(status, &body, 401, "signature");

    // No timestamp.
    let mut bare = Upload::signed(&key, call("c1", None), wav(800));
    bare.timestamp = None;
    let (status, body) = bare.send(&h).await;
    refused(status, &body, 401, "timestamp");

    // Outside the replay window, though correctly signed — in the past and in the future.
    for skew in [-301, 400] {
        let (status, body) = Upload::signed_at(&key, call("c1", None), wav(800), now() + skew)
            .send(&h)
            .await;
        refused(status, &body, 401, "timestamp");
    }

    // A body other than the one signed.
    let mut tampered = Upload::signed(&key, call("c1", None), wav(800));
    tampered.body[100] ^= 0x40;
    let (status, body) = tampered.send(&h).await;
    refused(status, &body, 400, "sha-256");

    assert_nothing_stored(&h, 0).await;
    let log = h.vault.audit().entries(0, 1000).await.unwrap();
    let denied = log
        .iter()
        .filter(|e| e.action == "cti.upload" && e.outcome == storage::audit::Outcome::Denied)
        .count();
    assert_eq!(denied, 6, "every refusal is audited");

    // The intake still works.
    let (status, body) = Upload::signed(&key, call("c1", None), wav(800))
        .send(&h)
        .await;
    assert_eq!(status, 201, "{body}");
}

#[tokio::test]
async fn a_replayed_upload_is_refused_and_stores_nothing_more() {
    let h = Harness::new(|_| {}).await;
    let session: Uuid = h.create().await["session_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let key = key(&h);
    for target in [call("call-r", Some(session)), call("call-u", None)] {
        let upload = Upload::signed(&key, target.clone(), wav(800));
        let (status, body) = upload.send(&h).await;
        assert_eq!(status, 201, "{body}");
        // The identical request again.
        let (status, body) = upload.send(&h).await;
        refused(status, &body, 409, "replay");
        // The same call signed afresh (a CTI retry): recorded once.
        let (status, body) = Upload::signed_at(&key, target, wav(800), now() + 1)
            .send(&h)
            .await;
        refused(status, &body, 409, "recorded already");
    }
    assert_eq!(
        h.vault
            .db()
            .cti_recordings_for_session(session)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_nothing_stored_but(&h, 2).await;
}

async fn assert_nothing_stored_but(h: &Harness, archives: usize) {
    assert_eq!(h.vault.blobs().list("cti/").await.unwrap().len(), archives);
    assert_eq!(h.vault.db().archives().await.unwrap().len(), archives);
}

#[tokio::test]
async fn an_oversize_body_is_refused_whether_announced_or_streamed() {
    let h = Harness::new(|c| c.max_cti_bytes = 4096).await;
    let key = key(&h);
    let big = wav(4000); // 8 KiB of samples

    // Announced by Content-Length: refused before the body is read.
    let (status, body) = Upload::signed(&key, call("big", None), big.clone())
        .send(&h)
        .await;
    refused(status, &body, 413, "limit");

    // Streamed without a length: refused when the count passes the limit.
    let upload = Upload::signed(&key, call("big", None), big.clone());
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        big.chunks(1000).map(|c| Ok(c.to_vec())).collect();
    let response = upload
        .request(&h)
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    let (status, body) = answer(response).await;
    refused(status, &body, 413, "limit");

    assert_nothing_stored(&h, 0).await;
    let (status, body) = Upload::signed(&key, call("small", None), wav(1000))
        .send(&h)
        .await;
    assert_eq!(status, 201, "{body}");
}

#[tokio::test]
async fn garbage_and_damaged_wav_headers_are_refused() {
    let h = Harness::new(|_| {}).await;
    let key = key(&h);
    let good = wav(800);

    let (status, body) = Upload::signed(
        &key,
        call("g", None),
        b"this is a spreadsheet, not a call recording".repeat(50),
    )
    .send(&h)
    .await;
    refused(status, &body, 415, "not a recognised audio format");

    let mut avi = good.clone();
    avi[8..12].copy_from_slice(b"AVI ");
    let (status, body) = Upload::signed(&key, call("g", None), avi).send(&h).await;
    refused(status, &body, 415, "not wave");

    // Cut inside the fmt chunk.
    let (status, body) = Upload::signed(&key, call("g", None), good[..30].to_vec())
        .send(&h)
        .await;
    refused(status, &body, 400, "corrupt wav header");

    // Cut right after the fmt chunk: no data chunk.
    let (status, body) = Upload::signed(&key, call("g", None), good[..36].to_vec())
        .send(&h)
        .await;
    refused(status, &body, 400, "corrupt wav header");

    // Zero channels.
    let mut zero = good.clone();
    zero[22..24].copy_from_slice(&0u16.to_le_bytes());
    let (status, body) = Upload::signed(&key, call("g", None), zero).send(&h).await;
    refused(status, &body, 400, "0 channels");

    // Empty.
    let (status, body) = Upload::signed(&key, call("g", None), Vec::new())
        .send(&h)
        .await;
    refused(status, &body, 400, "empty");

    // A bad call record (after a good signature).
    let (status, body) = Upload::signed(
        &key,
        target(&[
            ("call_id", "g"),
            ("started_at", "yesterday"),
            ("correlation", "x"),
        ]),
        good.clone(),
    )
    .send(&h)
    .await;
    refused(status, &body, 400, "rfc 3339");

    assert_nothing_stored(&h, 0).await;
    let (status, body) = Upload::signed(&key, call("g", None), good).send(&h).await;
    assert_eq!(status, 201, "{body}");
    assert_nothing_stored_but(&h, 1).await;
}

/// Ending a session queues its mux: due now with audio when the CTI recording is in;
/// otherwise video-only after the deadline — until a recording arrives, which expedites it.
#[tokio::test]
async fn an_ended_session_is_queued_for_muxing_and_a_late_recording_expedites_it() {
    use storage::db::MuxJobState;
    let h = Harness::new(|_| {}).await;
    let end = |id: Uuid| {
        let url = h.url(&format!("/sessions/{id}/end"));
        let http = h.http.clone();
        let token = h.token.clone();
        async move {
            let r = http.post(url).bearer_auth(token).send().await.unwrap();
            assert_eq!(r.status(), 200);
        }
    };
    let db = h.vault.db();

    // Recording first, then the end: due at once, with audio.
    let early = h.consented_session(&["camera"]).await.session;
    let (status, body) = Upload::signed(&key(&h), call("call-early", Some(early)), wav(8000))
        .send(&h)
        .await;
    assert_eq!(status, 201, "{body}");
    end(early).await;
    let job = db
        .mux_job_for_session(early)
        .await
        .unwrap()
        .expect("queued");
    assert_eq!((job.state, job.video_only), (MuxJobState::Queued, false));
    assert!(job.not_before <= time::OffsetDateTime::now_utc());

    // Ended first: video-only after the 15-minute deadline…
    let late = h.consented_session(&["camera"]).await.session;
    end(late).await;
    let job = db.mux_job_for_session(late).await.unwrap().expect("queued");
    assert!(job.video_only);
    assert!(job.not_before > time::OffsetDateTime::now_utc() + time::Duration::minutes(14));
    // …until the recording arrives.
    let (status, _) = Upload::signed(&key(&h), call("call-late", Some(late)), wav(8000))
        .send(&h)
        .await;
    assert_eq!(status, 201);
    let job = db.mux_job_for_session(late).await.unwrap().expect("queued");
    assert!(!job.video_only && job.not_before <= time::OffsetDateTime::now_utc());
    let actions: Vec<String> = h
        .vault
        .audit()
        .entries(0, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(actions.iter().filter(|a| *a == "mux.enqueue").count(), 2);
    assert!(actions.iter().any(|a| a == "mux.expedite"));
}
