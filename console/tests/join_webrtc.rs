//! The customer join page's media path, end to end on loopback with real parts: an ingest
//! server with the console beside it (as `idv serve` runs them), the join and consent requests
//! the page makes, and a webrtc-rs peer standing in for the customer's browser that sends a
//! GStreamer test camera (VP8 or H.264) to `POST /join/webrtc`. The frames are checked where
//! an operator would see them — the session's live fan-out, opened with the session key: the
//! camera track carries H.264 access units, starting with a keyframe — and the customer's
//! "leave" is checked to deliver everything and end the session. Bad input gets a clear 4xx
//! and leaves other sessions alone.
//!
//! Measured and printed (not asserted: machines are noisy): frames received, the time from the
//! first sample sent to the first frame on the fan-out, PLIs the bridge sent.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use console::live::{Feed, FeedConfig};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use proto::{LiveMessage, Track};
use storage::db::SessionState;
use uuid::Uuid;
use webrtc::api::media_engine::{MIME_TYPE_H264, MIME_TYPE_VP8, MediaEngine};
use webrtc::media::Sample;
use webrtc::peer_connection::RTCPeerConnection;
use webrtc::peer_connection::peer_connection_state::RTCPeerConnectionState;
use webrtc::peer_connection::sdp::session_description::RTCSessionDescription;
use webrtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use webrtc::rtp_transceiver::rtp_codec::{
    RTCRtpCodecCapability, RTCRtpCodecParameters, RTPCodecType,
};
use webrtc::track::track_local::track_local_static_sample::TrackLocalStaticSample;

/// Ingest and the console on one TLS listener, as `idv serve` (role all) runs them.
struct Server {
    dir: tempfile::TempDir,
    server: ingest::RunningServer,
    vault: storage::Vault,
    http: reqwest::Client,
    token: String,
}

impl Server {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let vault = storage::Vault::open(&storage::StorageConfig::embedded(dir.path()))
            .await
            .unwrap();
        let console = console::ConsoleState::new(vault.clone());
        let config = ingest::ServeConfig {
            extra_routes: Some(console::router(console.clone())),
            ..ingest::ServeConfig::local(dir.path().to_path_buf(), 0)
        };
        let server = ingest::start(config, vault.clone()).await.unwrap();
        let ca = std::fs::read(dir.path().join("tls/cert.pem")).unwrap();
        let token = std::fs::read_to_string(dir.path().join("operator.token"))
            .unwrap()
            .trim()
            .to_owned();
        let _ = console.live_source.set(console::LiveSource {
            server: server.url().parse().unwrap(),
            ca_pem: ca.clone(),
            token: token.clone(),
        });
        let http = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
            .build()
            .unwrap();
        Self {
            dir,
            server,
            vault,
            http,
            token,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.url())
    }

    /// A session, its code redeemed and the customer's consent given, as the page does:
    /// (session, session token).
    async fn joined(&self) -> (Uuid, String) {
        let created: serde_json::Value = self
            .http
            .post(self.url("/api/v1/sessions"))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let code = created["code"].as_str().unwrap();
        let joined: serde_json::Value = self
            .http
            .post(self.url("/api/v1/join"))
            .json(&serde_json::json!({"code": code, "group": "default"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token = joined["session_token"].as_str().unwrap().to_owned();
        let consent = self
            .http
            .post(self.url("/api/v1/consent"))
            .bearer_auth(&token)
            .json(&serde_json::json!({"scopes": ["camera", "recording"], "granted_by": "test"}))
            .send()
            .await
            .unwrap();
        assert!(consent.status().is_success(), "{}", consent.status());
        (
            joined["session_id"].as_str().unwrap().parse().unwrap(),
            token,
        )
    }

    async fn offer(&self, token: &str, sdp: &str, tracks: &[&str]) -> (u16, serde_json::Value) {
        let r = self
            .http
            .post(self.url("/join/webrtc"))
            .json(&serde_json::json!({"session_token": token, "sdp": sdp, "tracks": tracks}))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or_default())
    }

    async fn state(&self, session: Uuid) -> SessionState {
        self.vault
            .db()
            .session(session)
            .await
            .unwrap()
            .unwrap()
            .state
    }

    fn feed(&self, session: Uuid) -> FeedConfig {
        FeedConfig {
            server: self.server.url().parse().unwrap(),
            ca_pem: std::fs::read(self.dir.path().join("tls/cert.pem")).unwrap(),
            token: self.token.clone(),
            session,
        }
    }
}

/// The customer's "browser": a webrtc-rs peer sending one video track of `codec`.
struct Browser {
    peer: Arc<RTCPeerConnection>,
    track: Arc<TrackLocalStaticSample>,
    plis: Arc<AtomicU64>,
    state: tokio::sync::watch::Receiver<RTCPeerConnectionState>,
}

impl Browser {
    async fn new(mime: &str, fmtp: &str) -> Self {
        let capability = RTCRtpCodecCapability {
            mime_type: mime.to_owned(),
            clock_rate: 90_000,
            channels: 0,
            sdp_fmtp_line: fmtp.to_owned(),
            rtcp_feedback: vec![],
        };
        let mut media = MediaEngine::default();
        media
            .register_codec(
                RTCRtpCodecParameters {
                    capability: capability.clone(),
                    payload_type: 96,
                    ..Default::default()
                },
                RTPCodecType::Video,
            )
            .unwrap();
        let peer = common::test_peer(media).await;
        let track = Arc::new(TrackLocalStaticSample::new(
            capability,
            "camera".into(),
            "customer".into(),
        ));
        let sender = peer.add_track(track.clone()).await.unwrap();
        let plis = Arc::new(AtomicU64::new(0));
        let counted = plis.clone();
        tokio::spawn(async move {
            let mut buffer = vec![0u8; 1500];
            while let Ok((packets, _)) = sender.read(&mut buffer).await {
                let n = packets
                    .iter()
                    .filter(|p| p.as_any().is::<PictureLossIndication>())
                    .count();
                counted.fetch_add(n as u64, Ordering::SeqCst);
            }
        });
        let (changed, state) = tokio::sync::watch::channel(RTCPeerConnectionState::New);
        peer.on_peer_connection_state_change(Box::new(move |s| {
            let _ = changed.send(s);
            Box::pin(async {})
        }));
        Self {
            peer,
            track,
            plis,
            state,
        }
    }

    /// Waits until ICE and DTLS are up (a browser's encoder starts then: nothing is lost
    /// before).
    async fn connected(&self) {
        let mut state = self.state.clone();
        tokio::time::timeout(
            Duration::from_secs(10),
            state.wait_for(|s| *s == RTCPeerConnectionState::Connected),
        )
        .await
        .expect("connected within 10 s")
        .unwrap();
    }

    /// The offer, every candidate gathered.
    async fn offer(&self) -> String {
        let offer = self.peer.create_offer(None).await.unwrap();
        let mut gathered = self.peer.gathering_complete_promise().await;
        self.peer.set_local_description(offer).await.unwrap();
        let _ = gathered.recv().await;
        self.peer.local_description().await.unwrap().sdp
    }

    async fn answered(&self, sdp: &str) {
        self.peer
            .set_remote_description(RTCSessionDescription::answer(sdp.to_owned()).unwrap())
            .await
            .unwrap();
    }
}

/// A live test camera (320 × 240, 15 fps) encoded by `encoder`, its samples into a channel.
fn camera(encoder: &str) -> (gst::Pipeline, tokio::sync::mpsc::Receiver<Bytes>) {
    gst::init().unwrap();
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=240,framerate=15/1 \
         ! videoconvert ! {encoder} ! appsink name=out sync=false"
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let sink = pipeline
        .by_name("out")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let buffer = sample.buffer().ok_or(gst::FlowError::Error)?;
                let map = buffer.map_readable().map_err(|_| gst::FlowError::Error)?;
                let _ = tx.try_send(Bytes::copy_from_slice(map.as_slice()));
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    pipeline.set_state(gst::State::Playing).unwrap();
    (pipeline, rx)
}

const H264_FMTP: &str = "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f";

/// One customer sends `codec` for ~3 s of camera: the frames reach the session's camera track
/// as H.264, and leaving delivers everything and ends the session.
async fn a_browser_camera_reaches_the_session(codec: &str) {
    let server = Server::start().await;
    let (session, token) = server.joined().await;
    let (mime, fmtp, encoder) = match codec {
        "VP8" => (
            MIME_TYPE_VP8,
            "",
            "vp8enc deadline=1 keyframe-max-dist=30 target-bitrate=300000",
        ),
        _ => (
            MIME_TYPE_H264,
            H264_FMTP,
            "x264enc tune=zerolatency speed-preset=ultrafast key-int-max=30 bframes=0 \
             ! video/x-h264,profile=constrained-baseline,stream-format=byte-stream,alignment=au",
        ),
    };
    let browser = Browser::new(mime, fmtp).await;
    let offer = browser.offer().await;
    let (status, answer) = server.offer(&token, &offer, &["camera"]).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["codec"], codec);
    assert_eq!(answer["session_id"], session.to_string());
    browser.answered(answer["sdp"].as_str().unwrap()).await;
    browser.connected().await;

    // An operator watches: the session's live fan-out, opened with the session key.
    let mut feed = Feed::connect(&server.feed(session)).await.unwrap();
    let (pipeline, mut samples) = camera(encoder);
    let track = browser.track.clone();
    let first_sent = Instant::now();
    let sending = tokio::spawn(async move {
        let started = Instant::now();
        let mut sent = 0u64;
        while started.elapsed() < Duration::from_secs(4) {
            let Some(data) = samples.recv().await else {
                break;
            };
            let sample = frame_sample(data);
            track.write_sample(&sample).await.unwrap();
            sent += 1;
        }
        sent
    });

    let mut frames = 0u64;
    let mut keyframes = 0u64;
    let mut first_frame = None;
    let mut first_was_key = None;
    let mut stamps = Vec::new();
    let watch_until = Instant::now() + Duration::from_secs(6);
    while Instant::now() < watch_until {
        let message = match tokio::time::timeout(Duration::from_millis(500), feed.next()).await {
            Ok(Ok(Some(message))) => message,
            Ok(Ok(None)) => break,
            Ok(Err(e)) => panic!("the live feed failed: {e}"),
            Err(_) => continue,
        };
        let LiveMessage::Frame(frame) = message else {
            continue;
        };
        assert_eq!(frame.header().track, Track::Camera);
        let payload = frame.open(feed.cipher(), 16 << 20).unwrap();
        assert!(
            payload.starts_with(&[0, 0, 0, 1]) || payload.starts_with(&[0, 0, 1]),
            "the camera track carries H.264 (Annex-B)"
        );
        let key = frame.header().flags.contains(proto::FrameFlags::KEYFRAME);
        first_was_key.get_or_insert(key);
        first_frame.get_or_insert_with(|| first_sent.elapsed());
        frames += 1;
        keyframes += u64::from(key);
        stamps.push(frame.header().captured_at_ns);
    }
    let sent = sending.await.unwrap();
    let _ = pipeline.set_state(gst::State::Null);
    feed.close().await;
    assert!(frames >= 15, "{frames} camera frames reached the session");
    assert_eq!(
        first_was_key,
        Some(true),
        "the track starts with a keyframe"
    );
    assert!(
        stamps.windows(2).all(|w| w[0] < w[1]),
        "capture times increase"
    );
    let span_ms = (stamps.last().unwrap() - stamps.first().unwrap()) as f64 / 1e6;
    println!(
        "JOIN {codec}: {sent} samples sent, {frames} frames on the session's camera track \
         ({keyframes} keyframes) spanning {span_ms:.0} ms of capture time; first frame {:?} \
         after the first sample; {} PLI(s) from the bridge",
        first_frame.unwrap(),
        browser.plis.load(Ordering::SeqCst)
    );

    // The customer leaves: everything sealed is acknowledged and the session is over.
    let left: serde_json::Value = server
        .http
        .post(server.url("/join/leave"))
        .json(&serde_json::json!({"session_token": token}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(left["acknowledged"], true, "{left}");
    assert!(
        left["frames"]["camera"].as_u64().unwrap() >= frames,
        "{left}"
    );
    // Ingest ends the session as the media connection closes with 4004.
    let asked = Instant::now();
    while server.state(session).await != SessionState::Ended {
        assert!(
            asked.elapsed() < Duration::from_secs(10),
            "the session ends"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = browser.peer.close().await;

    // Every step is in the audit log (the ends are written as they happen, just after).
    let wanted = [
        "session.join",
        "session.consent",
        "session.join.webrtc",
        "session.join.end",
        "session.end",
    ];
    let asked = Instant::now();
    loop {
        let log = server.vault.audit().latest(100).await.unwrap();
        let actions: Vec<String> = log.into_iter().map(|e| e.action).collect();
        if wanted.iter().all(|a| actions.iter().any(|b| b == a)) {
            break;
        }
        assert!(
            asked.elapsed() < Duration::from_secs(10),
            "{wanted:?} in {actions:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Once ended, the token takes no more media.
    let (status, body) = server.offer(&token, &offer, &["camera"]).await;
    assert!((400..500).contains(&status), "{status} {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_browser_sending_vp8_is_recorded_as_the_sessions_camera() {
    a_browser_camera_reaches_the_session("VP8").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_browser_sending_h264_is_recorded_as_the_sessions_camera() {
    a_browser_camera_reaches_the_session("H264").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_offers_and_tokens_get_a_clear_4xx_and_other_sessions_are_untouched() {
    let server = Server::start().await;
    let (session, token) = server.joined().await;
    let (other, _other_token) = server.joined().await;
    let browser = Browser::new(MIME_TYPE_VP8, "").await;
    let offer = browser.offer().await;

    let forged = format!("{other}.{}", "00".repeat(32));
    let cases: [(&str, &str, &[&str], u16, &str); 6] = [
        (
            &token,
            "this is not SDP",
            &["camera"],
            400,
            "not an SDP offer",
        ),
        (&token, &offer, &["microphone"], 400, "unknown track"),
        (&token, &offer, &["camera", "screen"], 400, "sends 1 video"),
        ("nonsense", &offer, &["camera"], 401, "not valid"),
        (&forged, &offer, &["camera"], 401, "not valid"),
        ("", &offer, &["camera"], 401, "not valid"),
    ];
    for (token, sdp, tracks, expected, needle) in cases {
        let (status, body) = server.offer(token, sdp, tracks).await;
        assert_eq!(status, expected, "{tracks:?}: {body}");
        let error = body["error"].as_str().unwrap_or_default();
        assert!(error.contains(needle), "{needle}: {error}");
    }
    // A leave without a running bridge, or with a wrong token, finds nothing.
    let r = server
        .http
        .post(server.url("/join/leave"))
        .json(&serde_json::json!({"session_token": forged}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // Neither session was touched.
    for s in [session, other] {
        assert_eq!(server.state(s).await, SessionState::Consented, "{s}");
    }
    let denied = server
        .vault
        .audit()
        .latest(100)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "session.join.webrtc")
        .count();
    assert_eq!(denied, 6, "every refusal is audited");

    // The page itself: no login, the form, the strict headers.
    let page = server
        .http
        .get(server.url("/join?group=default"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'self'")
    );
    let html = page.text().await.unwrap();
    for needle in [
        "id=\"code\"",
        "consent-camera",
        "consent-recording",
        "/join.js",
        "data-group=\"default\"",
    ] {
        assert!(html.contains(needle), "{needle}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_browser_that_goes_away_ends_its_bridge_and_the_session() {
    let server = Server::start().await;
    let (session, token) = server.joined().await;
    let browser = Browser::new(MIME_TYPE_VP8, "").await;
    let offer = browser.offer().await;
    let (status, answer) = server.offer(&token, &offer, &["camera"]).await;
    assert_eq!(status, 200, "{answer}");
    browser.answered(answer["sdp"].as_str().unwrap()).await;
    browser.connected().await;
    let (pipeline, mut samples) = camera("vp8enc deadline=1 keyframe-max-dist=30");
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(2) {
        let Some(data) = samples.recv().await else {
            break;
        };
        let sample = frame_sample(data);
        browser.track.write_sample(&sample).await.unwrap();
    }
    let _ = pipeline.set_state(gst::State::Null);
    // The tab is closed: no "leave".
    let gone = Instant::now();
    let _ = browser.peer.close().await;
    while server.state(session).await != SessionState::Ended {
        assert!(gone.elapsed() < Duration::from_secs(30), "the session ends");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ended = loop {
        let log = server.vault.audit().latest(100).await.unwrap();
        if let Some(end) = log.into_iter().find(|e| e.action == "session.join.end") {
            break end;
        }
        assert!(
            gone.elapsed() < Duration::from_secs(30),
            "the bridge's end is audited"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let reason = ended.reason.unwrap_or_default();
    println!(
        "JOIN browser gone: session ended {:?} after the peer closed ({reason})",
        gone.elapsed()
    );
    assert!(reason.contains("browser is gone"), "{reason}");
    assert!(reason.contains("camera"), "frames were sealed: {reason}");
    assert!(reason.contains("all acknowledged"), "{reason}");
}

/// One encoded camera frame as the browser's track sends it (15 fps).
fn frame_sample(data: Bytes) -> Sample {
    Sample {
        data,
        duration: Duration::from_millis(67),
        timestamp: std::time::SystemTime::now(),
        packet_timestamp: 0,
        prev_dropped_packets: 0,
        prev_padding_packets: 0,
    }
}
