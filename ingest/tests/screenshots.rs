//! Screenshot mode over plain HTTPS: each screenshot is acknowledged only once durable,
//! resends are idempotent, gaps and foreign, mislabelled, oversize or non-JPEG frames are
//! refused with a clear status, screenshots need their own consent, and a WebSocket that
//! owns the session takes precedence.

mod common;

use common::{Harness, Joined};
use proto::{FrameFlags, FrameHeader, SessionCipher, SessionKey, Track};
use storage::track_log::Records;

/// A JPEG-looking payload (the server checks the SOI marker only; the muxer decodes).
fn jpeg(n: u64) -> Vec<u8> {
    let mut bytes = vec![0xff, 0xd8, 0xff, 0xe0];
    bytes.extend(format!("screenshot {n}").bytes());
    bytes
}

fn shot(joined: &Joined, track: Track, seq: u64, payload: &[u8]) -> Vec<u8> {
    let header = FrameHeader::new(track, seq, 1_000_000_000 + seq as i64 * 5_000_000_000)
        .with_flags(FrameFlags::KEYFRAME);
    SessionCipher::new(&joined.key, joined.session)
        .seal(&header, payload)
        .unwrap()
}

async fn post(h: &Harness, token: Option<&str>, body: Vec<u8>) -> (u16, serde_json::Value) {
    let mut request = h.http.post(h.url("/agent/screenshots")).body(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
    )
}

async fn stored(h: &Harness, joined: &Joined) -> Vec<u64> {
    h.settle().await;
    let path = h
        .dir
        .path()
        .join(format!("spool/{}/screenshot-000000.log", joined.session));
    Records::open(&path)
        .unwrap()
        .map(|r| r.unwrap().seq)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn screenshots_are_acknowledged_once_durable_and_resends_are_idempotent() {
    let h = Harness::new(|_| {}).await;
    let joined = h.consented_session(&["screen_capture", "recording"]).await;
    for seq in 1..=3 {
        let (status, ack) = post(
            &h,
            Some(&joined.token),
            shot(&joined, Track::Screenshot, seq, &jpeg(seq)),
        )
        .await;
        assert_eq!(status, 200, "{ack}");
        assert_eq!(ack["acked"], seq);
        assert_eq!(ack["track"], "screenshot");
    }
    // The answer to 2 was lost: the agent sends it again.
    let (status, ack) = post(
        &h,
        Some(&joined.token),
        shot(&joined, Track::Screenshot, 2, &jpeg(2)),
    )
    .await;
    assert_eq!((status, ack["acked"].as_u64()), (200, Some(3)));
    // A hole in the sequence is refused.
    let (status, body) = post(
        &h,
        Some(&joined.token),
        shot(&joined, Track::Screenshot, 5, &jpeg(5)),
    )
    .await;
    assert_eq!(status, 409);
    assert!(body.to_string().contains("expected 4"), "{body}");
    assert_eq!(stored(&h, &joined).await, [1, 2, 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_screenshots_are_refused_and_nothing_is_stored() {
    let h = Harness::new(|c| c.max_payload = 64 * 1024).await;
    let joined = h.consented_session(&["screen_capture", "recording"]).await;
    let good = shot(&joined, Track::Screenshot, 1, &jpeg(1));

    assert_eq!(post(&h, None, good.clone()).await.0, 401);
    assert_eq!(post(&h, Some("nonsense.token"), good.clone()).await.0, 401);
    // Sealed under another session's key.
    let foreign = Joined {
        session: joined.session,
        token: joined.token.clone(),
        key: SessionKey::generate(),
    };
    let (status, body) = post(
        &h,
        Some(&joined.token),
        shot(&foreign, Track::Screenshot, 1, &jpeg(1)),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    // A camera frame, a PNG, garbage, an oversize frame.
    assert_eq!(
        post(
            &h,
            Some(&joined.token),
            shot(&joined, Track::Camera, 1, &jpeg(1))
        )
        .await
        .0,
        400
    );
    let png = b"\x89PNG\r\n\x1a\n....".to_vec();
    assert_eq!(
        post(
            &h,
            Some(&joined.token),
            shot(&joined, Track::Screenshot, 1, &png)
        )
        .await
        .0,
        415
    );
    assert_eq!(post(&h, Some(&joined.token), vec![0x42; 300]).await.0, 400);
    let mut big = jpeg(1);
    big.resize(64 * 1024 + 1, 0);
    assert_eq!(
        post(
            &h,
            Some(&joined.token),
            shot(&joined, Track::Screenshot, 1, &big)
        )
        .await
        .0,
        413
    );
    let path = h
        .dir
        .path()
        .join(format!("spool/{}/screenshot-000000.log", joined.session));
    assert!(!path.exists() || stored(&h, &joined).await.is_empty());

    // The good one still goes through afterwards.
    assert_eq!(post(&h, Some(&joined.token), good).await.0, 200);
    assert_eq!(stored(&h, &joined).await, [1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn screenshots_need_their_own_consent_and_an_open_session() {
    let h = Harness::new(|_| {}).await;
    let joined = h
        .consented_session(&["camera", "screen", "recording"])
        .await;
    let (status, body) = post(
        &h,
        Some(&joined.token),
        shot(&joined, Track::Screenshot, 1, &jpeg(1)),
    )
    .await;
    assert_eq!(status, 403);
    assert!(body.to_string().contains("screen capture"), "{body}");

    let other = h.consented_session(&["screen_capture", "recording"]).await;
    h.end(other.session).await;
    assert_eq!(
        post(
            &h,
            Some(&other.token),
            shot(&other, Track::Screenshot, 1, &jpeg(1))
        )
        .await
        .0,
        403
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_owns_the_session_while_it_is_connected() {
    let h = Harness::new(|_| {}).await;
    let joined = h.consented_session(&["screen_capture", "recording"]).await;
    let (agent, _) = h.agent(&joined).await;
    let (status, body) = post(
        &h,
        Some(&joined.token),
        shot(&joined, Track::Screenshot, 1, &jpeg(1)),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    drop(agent);
    // Once the connection is gone (it closes asynchronously), posting works again.
    let mut status = 0;
    for _ in 0..100 {
        status = post(
            &h,
            Some(&joined.token),
            shot(&joined, Track::Screenshot, 1, &jpeg(1)),
        )
        .await
        .0;
        if status == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(status, 200);
}

/// An agent that cannot hold a WebSocket ends the session over HTTPS with its session token:
/// the session ends as the customer's doing, its screenshots roll into the blob store and its
/// mux job is queued; a second call changes nothing, and no other token can end it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_customer_ends_a_screenshot_session_over_https() {
    let h = Harness::new(|_| {}).await;
    let joined = h.consented_session(&["screen_capture", "recording"]).await;
    let other = h.consented_session(&["screen_capture", "recording"]).await;
    for seq in 1..=2 {
        let (status, _) = post(
            &h,
            Some(&joined.token),
            shot(&joined, Track::Screenshot, seq, &jpeg(seq)),
        )
        .await;
        assert_eq!(status, 200);
    }
    let end = |token: Option<String>| {
        let mut request = h.http.post(h.url("/agent/end"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            (status, body)
        }
    };
    assert_eq!(end(None).await.0, 401);
    assert_eq!(end(Some(format!("{}.00", joined.session))).await.0, 401);

    let (status, body) = end(Some(joined.token.clone())).await;
    assert_eq!(
        (status, body["ended_now"].as_bool()),
        (200, Some(true)),
        "{body}"
    );
    let db = h.vault.db();
    let record = db.session(joined.session).await.unwrap().unwrap();
    assert_eq!(record.state, storage::db::SessionState::Ended);
    let segments = db.segments(joined.session, None).await.unwrap();
    assert_eq!(
        segments
            .iter()
            .map(|s| (s.track, s.last_seq))
            .collect::<Vec<_>>(),
        [(storage::db::MediaTrack::Screenshot, 2)]
    );
    assert!(
        db.mux_job_for_session(joined.session)
            .await
            .unwrap()
            .is_some()
    );
    let log = h.vault.audit().latest(20).await.unwrap();
    assert!(
        log.iter().any(|e| e.action == "session.end"
            && e.actor == "customer"
            && e.object == format!("session:{}", joined.session)),
        "audited as the customer's"
    );

    let (status, body) = end(Some(joined.token.clone())).await;
    assert_eq!((status, body["ended_now"].as_bool()), (200, Some(false)));
    let still = db.session(other.session).await.unwrap().unwrap();
    assert_ne!(
        still.state,
        storage::db::SessionState::Ended,
        "other sessions untouched"
    );
}
