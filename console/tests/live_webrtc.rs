//! The live view over WebRTC, end to end on loopback with real parts: an ingest server, an
//! agent capturing its test camera (H.264) and test screen (screen codec) in this process, the
//! console's [`console::live::answer`], and a WebRTC client peer (webrtc-rs, standing in for
//! the operator's browser) that receives both tracks, depacketizes them and decodes them with
//! GStreamer's `avdec_h264`.
//!
//! Latency is measured from capture to decoded picture: the agent stamps each frame with its
//! monotonic clock (`agent::clock`, shared with this test process), the live view carries that
//! time in the RTP timestamp (90 kHz), and the client compares it with the same clock when the
//! picture comes out of its decoder. Printed, not asserted (machines are noisy).

mod common;

use std::collections::{BTreeMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agent::{AgentConfig, CustomerAction, ScreenCodec, TrackSettings, VideoSource};
use bytes::BytesMut;
use console::live::{Ending, FeedConfig, LiveError, LiveView};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use tokio::sync::mpsc;
use uuid::Uuid;
use webrtc::api::media_engine::MediaEngine;
use webrtc::peer_connection::RTCPeerConnection;
use webrtc::peer_connection::peer_connection_state::RTCPeerConnectionState;
use webrtc::peer_connection::sdp::session_description::RTCSessionDescription;
use webrtc::rtp::codecs::h264::H264Packet;
use webrtc::rtp::packetizer::Depacketizer;
use webrtc::rtp_transceiver::RTCRtpTransceiverInit;
use webrtc::rtp_transceiver::rtp_codec::RTPCodecType;
use webrtc::rtp_transceiver::rtp_transceiver_direction::RTCRtpTransceiverDirection;
use webrtc::track::track_remote::TrackRemote;

// ---------------------------------------------------------------------------------------------
// The server and the agent

/// A real ingest server on loopback with its own data directory, and its operator.
struct Server {
    dir: tempfile::TempDir,
    server: ingest::RunningServer,
    http: reqwest::Client,
    token: String,
}

impl Server {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let vault = storage::Vault::open(&storage::StorageConfig::embedded(dir.path()))
            .await
            .unwrap();
        let config = ingest::ServeConfig::local(dir.path().to_path_buf(), 0);
        let server = ingest::start(config, vault).await.unwrap();
        let http = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&Self::ca(&dir)).unwrap())
            .build()
            .unwrap();
        let token = std::fs::read_to_string(dir.path().join("operator.token"))
            .unwrap()
            .trim()
            .to_owned();
        Self {
            dir,
            server,
            http,
            token,
        }
    }

    fn ca(dir: &tempfile::TempDir) -> Vec<u8> {
        std::fs::read(dir.path().join("tls/cert.pem")).unwrap()
    }

    /// A new session: (id, code).
    async fn create(&self) -> (Uuid, String) {
        let r = self
            .http
            .post(format!("{}/api/v1/sessions", self.server.url()))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let body: serde_json::Value = r.json().await.unwrap();
        (
            body["session_id"].as_str().unwrap().parse().unwrap(),
            body["code"].as_str().unwrap().to_owned(),
        )
    }

    /// Ends a session as its operator.
    async fn end(&self, session: Uuid) {
        let r = self
            .http
            .post(format!(
                "{}/api/v1/sessions/{session}/end",
                self.server.url()
            ))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }

    /// What the console is given to watch `session`.
    fn feed(&self, session: Uuid) -> FeedConfig {
        FeedConfig {
            server: self.server.url().parse().unwrap(),
            ca_pem: Self::ca(&self.dir),
            token: self.token.clone(),
            session,
        }
    }

    /// The agent: test camera (H.264, 15 fps, 320 × 240) and test screen (screen codec,
    /// 10 fps, 320 × 240; the ball moves and the clock runs, so every picture differs).
    fn agent_config(&self, code: &str) -> AgentConfig {
        let mut config = AgentConfig::new(self.server.url().parse().unwrap(), code);
        config.ca = Some(self.dir.path().join("tls/cert.pem"));
        config.camera = TrackSettings {
            source: VideoSource::Test,
            fps: 15,
            bitrate_kbps: 300,
            size: Some((320, 240)),
        };
        config.screen = TrackSettings {
            source: VideoSource::Test,
            fps: 10,
            bitrate_kbps: 300,
            size: Some((320, 240)),
        };
        config.screen_codec = ScreenCodec::Tiles;
        config.consent = Some(
            [
                proto::ConsentScope::Camera,
                proto::ConsentScope::Screen,
                proto::ConsentScope::Recording,
            ]
            .into(),
        );
        config
    }
}

// ---------------------------------------------------------------------------------------------
// The operator's "browser": a webrtc-rs peer that receives and decodes

/// What the client received on one track.
#[derive(Default, Debug)]
struct Received {
    packets: u64,
    access_units: u64,
    keyframes: u64,
    decoded: u64,
    /// Hashes of the decoded pictures' luma: how many different pictures were shown.
    distinct: HashSet<u64>,
    /// Capture → decoded, ms, for frames captured after the connection was up.
    latencies_ms: Vec<f64>,
}

type Tracks = Arc<Mutex<BTreeMap<String, Received>>>;

struct Browser {
    peer: Arc<RTCPeerConnection>,
    tracks: Tracks,
}

impl Browser {
    async fn new() -> Self {
        gst::init().unwrap();
        let mut media = MediaEngine::default();
        media.register_default_codecs().unwrap();
        let peer = common::test_peer(media).await;
        let tracks: Tracks = Arc::default();
        // Agent-clock time the connection came up: latency counts frames captured after it
        // (the ones kept while connecting are older by design).
        let connected_at = Arc::new(AtomicI64::new(i64::MAX));
        let connected = connected_at.clone();
        peer.on_peer_connection_state_change(Box::new(move |state| {
            if state == RTCPeerConnectionState::Connected {
                connected.store(agent::clock::now_ns(), Ordering::SeqCst);
            }
            Box::pin(async {})
        }));
        let receiving = tracks.clone();
        peer.on_track(Box::new(move |track, _, _| {
            let tracks = receiving.clone();
            let connected_at = connected_at.clone();
            tokio::spawn(receive(track, tracks, connected_at));
            Box::pin(async {})
        }));
        Self { peer, tracks }
    }

    /// An offer receiving `video` video tracks (and `audio` audio ones), candidates gathered.
    async fn offer(&self, video: usize, audio: usize) -> String {
        let recvonly = || RTCRtpTransceiverInit {
            direction: RTCRtpTransceiverDirection::Recvonly,
            send_encodings: vec![],
        };
        for _ in 0..video {
            self.peer
                .add_transceiver_from_kind(RTPCodecType::Video, Some(recvonly()))
                .await
                .unwrap();
        }
        for _ in 0..audio {
            self.peer
                .add_transceiver_from_kind(RTPCodecType::Audio, Some(recvonly()))
                .await
                .unwrap();
        }
        let offer = self.peer.create_offer(None).await.unwrap();
        let mut gathered = self.peer.gathering_complete_promise().await;
        self.peer.set_local_description(offer).await.unwrap();
        let _ = gathered.recv().await;
        self.peer.local_description().await.unwrap().sdp
    }

    async fn accept(&self, answer: String) {
        self.peer
            .set_remote_description(RTCSessionDescription::answer(answer).unwrap())
            .await
            .unwrap();
    }

    /// (packets, decoded pictures) of `track` so far.
    fn counts(&self, track: &str) -> (u64, u64) {
        let tracks = self.tracks.lock().unwrap();
        tracks.get(track).map_or((0, 0), |r| (r.packets, r.decoded))
    }

    /// Waits until `check` holds of what was received (or panics after `within`).
    async fn wait_for(
        &self,
        what: &str,
        within: Duration,
        check: impl Fn(&BTreeMap<String, Received>) -> bool,
    ) {
        let deadline = Instant::now() + within;
        loop {
            {
                let tracks = self.tracks.lock().unwrap();
                if check(&tracks) {
                    return;
                }
                assert!(
                    Instant::now() < deadline,
                    "{what}: not within {within:?}; received {tracks:#?}"
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Receives one track: RTP → access units (RFC 6184 depacketizing) → `avdec_h264`, counting
/// and timing what comes out.
async fn receive(track: Arc<TrackRemote>, tracks: Tracks, connected_at: Arc<AtomicI64>) {
    let name = track.id();
    tracks.lock().unwrap().entry(name.clone()).or_default();
    let (pipeline, source) = decoder(&name, tracks.clone(), connected_at);
    let mut depacketizer = H264Packet::default();
    let mut access_unit = BytesMut::new();
    let mut current: Option<u32> = None;
    while let Ok((packet, _)) = track.read_rtp().await {
        tracks.lock().unwrap().get_mut(&name).unwrap().packets += 1;
        if current != Some(packet.header.timestamp) {
            access_unit.clear(); // a unit whose end was lost
            current = Some(packet.header.timestamp);
        }
        match depacketizer.depacketize(&packet.payload) {
            Ok(nal) => access_unit.extend_from_slice(&nal),
            Err(_) => {
                access_unit.clear();
                continue;
            }
        }
        if !packet.header.marker || access_unit.is_empty() {
            continue;
        }
        let unit = access_unit.split().freeze();
        let keyframe = nal_types(&unit).contains(&5);
        {
            let mut tracks = tracks.lock().unwrap();
            let received = tracks.get_mut(&name).unwrap();
            received.access_units += 1;
            received.keyframes += u64::from(keyframe);
        }
        let mut buffer = gst::Buffer::from_slice(unit);
        buffer
            .get_mut()
            .unwrap()
            .set_pts(gst::ClockTime::from_nseconds(
                capture_ns(packet.header.timestamp).max(0) as u64,
            ));
        if source.push_buffer(buffer).is_err() {
            break;
        }
    }
    let _ = pipeline.set_state(gst::State::Null);
}

/// Agent-clock capture time of a frame with RTP timestamp `timestamp`, received now: the
/// live view stamps frames with the capture clock at 90 kHz.
fn capture_ns(timestamp: u32) -> i64 {
    let now = agent::clock::now_ns();
    let now_ticks = console::live::rtp_timestamp(now);
    let age_ticks = i64::from(now_ticks.wrapping_sub(timestamp));
    now - age_ticks * 1_000_000_000 / 90_000
}

/// NAL unit types in an Annex-B access unit.
fn nal_types(unit: &[u8]) -> Vec<u8> {
    let mut types = Vec::new();
    let mut zeros = 0;
    for (i, &b) in unit.iter().enumerate() {
        if b == 1 && zeros >= 2 && i + 1 < unit.len() {
            types.push(unit[i + 1] & 0x1f);
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
    }
    types
}

/// appsrc (H.264 access units, PTS = capture time) → h264parse → avdec_h264 → GRAY8 → appsink.
fn decoder(
    name: &str,
    tracks: Tracks,
    connected_at: Arc<AtomicI64>,
) -> (gst::Pipeline, gst_app::AppSrc) {
    let pipeline = gst::Pipeline::new();
    let source = gst_app::AppSrc::builder()
        .caps(
            &gst::Caps::builder("video/x-h264")
                .field("stream-format", "byte-stream")
                .field("alignment", "au")
                .build(),
        )
        .is_live(true)
        .format(gst::Format::Time)
        .build();
    let parse = gst::ElementFactory::make("h264parse").build().unwrap();
    // One thread: frame threading would hold pictures back (a browser's decoder does not).
    let decode = gst::ElementFactory::make("avdec_h264")
        .property("max-threads", 1i32)
        .build()
        .expect("avdec_h264 (gstreamer1.0-libav)");
    let convert = gst::ElementFactory::make("videoconvert").build().unwrap();
    let sink = gst_app::AppSink::builder()
        .caps(
            &gst::Caps::builder("video/x-raw")
                .field("format", "GRAY8")
                .build(),
        )
        .sync(false)
        .build();
    let name = name.to_owned();
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let decoded_at = agent::clock::now_ns();
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let buffer = sample.buffer().ok_or(gst::FlowError::Error)?;
                let captured = buffer.pts().map_or(0, |t| t.nseconds() as i64);
                let map = buffer.map_readable().map_err(|_| gst::FlowError::Error)?;
                let mut hasher = std::collections::hash_map::DefaultHasher::new();
                map.as_slice().hash(&mut hasher);
                let mut tracks = tracks.lock().unwrap();
                let received = tracks.get_mut(&name).unwrap();
                received.decoded += 1;
                received.distinct.insert(hasher.finish());
                if captured >= connected_at.load(Ordering::SeqCst) {
                    received
                        .latencies_ms
                        .push((decoded_at - captured) as f64 / 1e6);
                }
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    let chain = [
        source.upcast_ref::<gst::Element>(),
        &parse,
        &decode,
        &convert,
        sink.upcast_ref(),
    ];
    pipeline.add_many(chain).unwrap();
    gst::Element::link_many(chain).unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    (pipeline, source)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// Starts a browser, has the console answer it, and connects.
async fn watch(server: &Server, session: Uuid) -> (Browser, LiveView) {
    let browser = Browser::new().await;
    let offer = browser.offer(2, 0).await;
    let (answer, view) = console::live::answer(server.feed(session), offer)
        .await
        .expect("the console answers the offer");
    browser.accept(answer).await;
    (browser, view)
}

/// A plain feed subscriber beside the views: how old each frame is when it reaches the
/// console, per track.
async fn watch_feed(
    server: &Server,
    session: Uuid,
) -> Arc<Mutex<BTreeMap<proto::Track, Vec<f64>>>> {
    let ages: Arc<Mutex<BTreeMap<proto::Track, Vec<f64>>>> = Arc::default();
    let mut feed = console::live::Feed::connect(&server.feed(session))
        .await
        .unwrap();
    let recorded = ages.clone();
    tokio::spawn(async move {
        while let Ok(Some(message)) = feed.next().await {
            if let proto::LiveMessage::Frame(frame) = message {
                let age = agent::clock::now_ns() - frame.header().captured_at_ns;
                recorded
                    .lock()
                    .unwrap()
                    .entry(frame.header().track)
                    .or_default()
                    .push(age as f64 / 1e6);
            }
        }
    });
    ages
}

fn decoded_both(at_least: u64) -> impl Fn(&BTreeMap<String, Received>) -> bool {
    move |tracks| {
        ["camera", "screen"]
            .iter()
            .all(|name| tracks.get(*name).is_some_and(|r| r.decoded >= at_least))
    }
}

// ---------------------------------------------------------------------------------------------
// Tests

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_operator_watches_camera_and_screen_over_webrtc() {
    let server = Server::start().await;
    let (session, code) = server.create().await;
    let (actions, actions_rx) = mpsc::channel(4);
    let agent = tokio::spawn(agent::run(server.agent_config(&code), actions_rx));

    // 1. Both tracks arrive and decode; the screen's pictures change; latency is measured —
    // and, for comparison, how old each frame is when the feed delivers it to the console.
    let feed_ages = watch_feed(&server, session).await;
    let (browser, view) = watch(&server, session).await;
    assert_eq!(view.session(), session);
    browser
        .wait_for(
            "camera and screen decode",
            Duration::from_secs(30),
            |tracks| decoded_both(1)(tracks),
        )
        .await;
    // Steady state: some seconds of both.
    browser
        .wait_for(
            "5 s of camera, 5 s of screen",
            Duration::from_secs(30),
            |t| {
                t.get("camera").is_some_and(|r| r.latencies_ms.len() >= 75)
                    && t.get("screen").is_some_and(|r| r.latencies_ms.len() >= 50)
            },
        )
        .await;
    {
        let tracks = browser.tracks.lock().unwrap();
        for name in ["camera", "screen"] {
            let r = &tracks[name];
            assert!(r.keyframes >= 1, "{name} starts at a keyframe: {r:?}");
            assert!(
                r.decoded * 10 >= r.access_units * 9,
                "{name}: most access units decode: {} of {}",
                r.decoded,
                r.access_units
            );
            let mut sorted = r.latencies_ms.clone();
            sorted.sort_by(f64::total_cmp);
            println!(
                "LIVE webrtc {name}: {} packets, {} access units ({} keyframes), {} decoded, {} distinct pictures; capture→decoded latency p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms over {} frames",
                r.packets,
                r.access_units,
                r.keyframes,
                r.decoded,
                r.distinct.len(),
                percentile(&sorted, 50.0),
                percentile(&sorted, 95.0),
                sorted.last().copied().unwrap_or(f64::NAN),
                sorted.len(),
            );
        }
        for (track, ages) in feed_ages.lock().unwrap().iter_mut() {
            ages.sort_by(f64::total_cmp);
            println!(
                "LIVE feed {}: capture→console (before decoding) p50 {:.1} ms, p95 {:.1} ms over {} frames",
                track.name(),
                percentile(ages, 50.0),
                percentile(ages, 95.0),
                ages.len()
            );
        }
        let screen = &tracks["screen"];
        assert!(
            screen.distinct.len() >= 10,
            "the screen's pictures change over time: {} distinct of {}",
            screen.distinct.len(),
            screen.decoded
        );
    }

    // 2. The customer pauses sharing: nothing flows; on resume both tracks start again.
    actions.send(CustomerAction::Pause).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let paused = (browser.counts("camera").1, browser.counts("screen").1);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        (browser.counts("camera").1, browser.counts("screen").1),
        paused,
        "nothing is shown while the customer has paused sharing"
    );
    actions.send(CustomerAction::Resume).await.unwrap();
    browser
        .wait_for(
            "both tracks after the resume",
            Duration::from_secs(20),
            |t| t["camera"].decoded >= paused.0 + 15 && t["screen"].decoded >= paused.1 + 10,
        )
        .await;

    // 3. The console stops the view: the browser receives nothing more.
    let ending = tokio::time::timeout(Duration::from_secs(10), view.close())
        .await
        .expect("closing finishes");
    assert!(matches!(ending, Ending::Stopped), "{ending:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stopped = (browser.counts("camera").0, browser.counts("screen").0);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        (browser.counts("camera").0, browser.counts("screen").0),
        stopped,
        "no RTP after the view was closed"
    );
    browser.peer.close().await.unwrap();

    // 4. A browser that leaves ends its view.
    let (browser, mut view) = watch(&server, session).await;
    browser
        .wait_for(
            "the second view decodes",
            Duration::from_secs(30),
            decoded_both(5),
        )
        .await;
    browser.peer.close().await.unwrap();
    let ending = tokio::time::timeout(Duration::from_secs(20), view.ended())
        .await
        .expect("the view ends when the browser leaves");
    assert!(matches!(ending, Ending::BrowserLeft), "{ending:?}");

    // 5. The session ends: the view ends with the reason, and so does the agent.
    let (browser, mut view) = watch(&server, session).await;
    browser
        .wait_for(
            "the third view decodes",
            Duration::from_secs(30),
            decoded_both(5),
        )
        .await;
    server.end(session).await;
    let ending = tokio::time::timeout(Duration::from_secs(10), view.ended())
        .await
        .expect("the view ends with the session");
    match ending {
        Ending::SessionEnded { reason } => assert!(reason.contains("operator"), "{reason}"),
        other => panic!("expected the session's end, got {other:?}"),
    }
    browser.peer.close().await.unwrap();
    tokio::time::timeout(Duration::from_secs(20), agent)
        .await
        .expect("the agent stops when the session ends")
        .unwrap()
        .unwrap();
    drop(actions);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_error() {
    let server = Server::start().await;
    let (session, _code) = server.create().await;
    let browser = Browser::new().await;
    let offer = browser.offer(2, 0).await;

    let mut wrong_token = server.feed(session);
    wrong_token.token = "not-the-token".into();
    let e = console::live::answer(wrong_token, offer.clone())
        .await
        .unwrap_err();
    assert!(matches!(e, LiveError::Unauthorised), "{e:?}");
    assert!(e.to_string().contains("token"), "{e}");

    let unknown = Uuid::new_v4();
    let e = console::live::answer(server.feed(unknown), offer.clone())
        .await
        .unwrap_err();
    assert!(
        matches!(e, LiveError::SessionNotFound(s) if s == unknown),
        "{e:?}"
    );
    assert!(e.to_string().contains(&unknown.to_string()), "{e}");

    let mut plain = server.feed(session);
    plain.server = format!("http://{}", server.server.addr()).parse().unwrap();
    let e = console::live::answer(plain, offer.clone())
        .await
        .unwrap_err();
    assert!(matches!(e, LiveError::Config(_)), "{e:?}");

    let mut other_ca = server.feed(session);
    other_ca.ca_pem = {
        let other = tempfile::tempdir().unwrap();
        let other_server = ingest::start(
            ingest::ServeConfig::local(other.path().to_path_buf(), 0),
            storage::Vault::open(&storage::StorageConfig::embedded(other.path()))
                .await
                .unwrap(),
        )
        .await
        .unwrap();
        let pem = std::fs::read(other.path().join("tls/cert.pem")).unwrap();
        other_server.shutdown().await.unwrap();
        pem
    };
    let e = console::live::answer(other_ca, offer.clone())
        .await
        .unwrap_err();
    assert!(matches!(e, LiveError::FeedUnavailable(_)), "{e:?}");

    for garbage in ["", "hello", "v=0\r\nthis is not sdp\r\n"] {
        let e = console::live::answer(server.feed(session), garbage.to_owned())
            .await
            .unwrap_err();
        assert!(matches!(e, LiveError::BadOffer(_)), "{garbage:?}: {e:?}");
        assert!(e.to_string().contains("offer"), "{e}");
    }

    let audio_only = Browser::new().await.offer(0, 1).await;
    let e = console::live::answer(server.feed(session), audio_only)
        .await
        .unwrap_err();
    assert!(matches!(e, LiveError::BadOffer(_)), "{e:?}");
    assert!(e.to_string().contains("video"), "{e}");

    // The session is still there to watch with the right settings.
    let (answer, view) = console::live::answer(server.feed(session), offer)
        .await
        .unwrap();
    assert!(answer.contains("m=video"), "{answer}");
    assert!(answer.contains("H264"), "{answer}");
    assert!(matches!(view.close().await, Ending::Stopped));
    browser.peer.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_view_leaves_no_task_behind() {
    let server = Server::start().await;
    let (session, _code) = server.create().await;
    let tasks = || {
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
    };

    /// A browser watches until connected; then the view and the browser close. The most
    /// tasks alive meanwhile.
    async fn watch_and_close(server: &Server, session: Uuid) -> usize {
        let browser = Browser::new().await;
        let offer = browser.offer(2, 0).await;
        let (answer, view) = console::live::answer(server.feed(session), offer)
            .await
            .unwrap();
        browser.accept(answer).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        while browser.peer.connection_state() != RTCPeerConnectionState::Connected {
            assert!(Instant::now() < deadline, "the browser connects");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let running = tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks();
        assert!(matches!(view.close().await, Ending::Stopped));
        browser.peer.close().await.unwrap();
        running
    }

    // A first round starts whatever the server starts on first use; then the count settles.
    watch_and_close(&server, session).await;
    let mut before = tasks();
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        before = before.max(tasks());
    }
    let running = watch_and_close(&server, session).await;
    assert!(running > before, "a view runs tasks: {running} > {before}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while tasks() > before {
        assert!(
            Instant::now() < deadline,
            "tasks left running after the view and the browser closed: {} (before: {before}, \
             while watching: {running})",
            tasks()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "LIVE tasks: {before} before, {running} while watching, {} after",
        tasks()
    );
}
