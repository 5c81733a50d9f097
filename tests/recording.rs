//! The whole path as the outside sees it, through a real `idv serve` process (every role) and
//! the CLI contract: an operator creates a session (`idv session create`), a simulated agent
//! redeems the code, consents, syncs its clock and streams a real H.264 camera; the CTI system
//! pushes the call in parts, as a WAV written while the call ran (`idv cti push --part-bytes`);
//! the operator ends the session (`idv session end`); the mux
//! worker muxes and seals it; `idv recordings list` shows it muxed, `idv recordings get`
//! downloads the sealed archive and `idv open --data-dir` of the server's data directory
//! decrypts it — with the camera's flashes and the call's beeps in sync. A second session
//! whose CTI never comes is muxed video-only once the deadline passes. A third, streamed by
//! `idv agent` itself with a microphone reference, has its call placed by that reference
//! although its call record is wrong.

#[path = "../ingest/tests/common/mod.rs"]
mod common;
mod support;

use std::time::{Duration, Instant, SystemTime};

use common::Agent;
use fixtures::media::{
    CameraClip, CtiEncoding, CtiRecording, Voice, h264_access_units, measure_with_ffmpeg,
};
use proto::{AgentControl, FrameFlags, FrameHeader, ServerControl, SessionKey, Track};
use serde_json::json;
use support::Server;

const FPS: u32 = 30;
const FLASH_FRAMES: [u32; 2] = [30, 105];
/// The call started this long before the camera.
const CTI_LEAD_S: f64 = 0.4;
/// Seconds past a session's end its CTI may still come.
const CTI_DEADLINE_S: u64 = 3;

/// The agent's monotonic clock: nanoseconds since it started, from an arbitrary origin.
struct AgentClock(Instant);

impl AgentClock {
    const ORIGIN_NS: i64 = 5_000_000_000_000;

    fn now(&self) -> i64 {
        Self::ORIGIN_NS + self.0.elapsed().as_nanos() as i64
    }
}

fn utc_ns(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_nanos() as i64
}

fn rfc3339_ns(ns: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ns))
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// Five NTP-style exchanges, each stored by the server as a clock sample.
async fn sync_clock(agent: &mut Agent, clock: &AgentClock) {
    for _ in 0..5 {
        let t1 = clock.now();
        agent.send_text(AgentControl::Ping { t1 }.to_json()).await;
        let (t2, t3) = loop {
            match agent.control().await {
                Ok(ServerControl::Pong { t1: echoed, t2, t3 }) if echoed == t1 => break (t2, t3),
                Ok(_) => {}
                Err(closed) => panic!("closed during clock sync: {closed:?}"),
            }
        };
        let t4 = clock.now();
        let sample = proto::ClockSample::from_pong(t1, t2, t3, t4);
        agent
            .send_text(AgentControl::ClockSample(sample).to_json())
            .await;
    }
}

/// An operator's session joined by an agent that consented to camera and recording.
async fn joined_session(server: &Server, http: &reqwest::Client) -> (String, String, SessionKey) {
    let created = server.idv_out(&["session", "create", "--server", &server.url]);
    let mut fields = created.split_whitespace();
    let (session, code) = (fields.next().unwrap().to_owned(), fields.next().unwrap());
    assert_eq!(code.len(), 6, "{created}");
    let joined: serde_json::Value = http
        .post(format!("{}/api/v1/join", server.url))
        .json(&json!({ "code": code, "group": "default" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(joined["session_id"], session.as_str(), "{joined}");
    let token = joined["session_token"].as_str().unwrap().to_owned();
    let consent = http
        .post(format!("{}/api/v1/consent", server.url))
        .bearer_auth(&token)
        .json(&json!({ "scopes": ["camera", "recording"], "granted_by": "customer" }))
        .send()
        .await
        .unwrap();
    assert_eq!(consent.status(), 200);
    let key = hex::decode(joined["media_key"].as_str().unwrap()).unwrap();
    (session, token, SessionKey::from_slice(&key).unwrap())
}

/// Streams `units` as the camera, captured from now on; returns the UTC of the first frame.
async fn stream_camera(
    server: &Server,
    session: &str,
    token: &str,
    key: &SessionKey,
    units: &[fixtures::media::AccessUnit],
) -> i64 {
    let session_id = uuid::Uuid::parse_str(session).unwrap();
    let cert = std::fs::read(server.data.join("tls/cert.pem")).unwrap();
    let url = format!(
        "{}/api/v1/agent",
        server.url.replacen("https://", "wss://", 1)
    );
    let (mut agent, _) = Agent::connect(&url, &cert, token, key, session_id).await;
    let clock = AgentClock(Instant::now());
    sync_clock(&mut agent, &clock).await;
    // The first frame's capture instant on both clocks (taken together: the mapping the
    // server learns from the exchanges must put it back here).
    let (agent_start, utc_start) = (clock.now(), utc_ns(SystemTime::now()));
    for (i, unit) in units.iter().enumerate() {
        let seq = i as u64 + 1;
        let flags = if unit.keyframe {
            FrameFlags::KEYFRAME
        } else {
            FrameFlags::NONE
        };
        let captured = agent_start + unit.pts.as_nanos() as i64;
        let header = FrameHeader::new(Track::Camera, seq, captured).with_flags(flags);
        agent
            .send_bytes(agent.cipher.seal(&header, &unit.data).unwrap())
            .await;
    }
    agent.acked_through(Track::Camera, units.len() as u64).await;
    sync_clock(&mut agent, &clock).await;
    utc_start
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_becomes_a_sealed_recording_in_sync_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), CTI_DEADLINE_S);
    let http = server.http();

    let clip = dir.path().join("camera.mp4");
    CameraClip {
        frames: 150,
        fps: FPS,
        width: 320,
        height: 240,
        flash_frames: FLASH_FRAMES.to_vec(),
        ..CameraClip::default()
    }
    .write(&clip)
    .unwrap();
    let units = h264_access_units(&clip).unwrap();

    // Session 1: with its call recording.
    let (session, token, key) = joined_session(&server, &http).await;
    let camera_utc = stream_camera(&server, &session, &token, &key, &units).await;
    let cti_start = camera_utc - (CTI_LEAD_S * 1e9) as i64;
    let wav = dir.path().join("call.wav");
    let truth = CtiRecording {
        duration: Duration::from_secs(6),
        beeps: FLASH_FRAMES
            .iter()
            .map(|&f| Duration::from_secs_f64(CTI_LEAD_S + f64::from(f) / f64::from(FPS)))
            .collect(),
        ..CtiRecording::default()
    }
    .write(&wav)
    .unwrap();
    // Recorded as a stream during the call: the WAV's sizes are left unknown (0), and it is
    // posted in parts.
    let mut streamed = std::fs::read(&wav).unwrap();
    assert_eq!(&streamed[36..40], b"data");
    streamed[4..8].fill(0);
    streamed[40..44].fill(0);
    std::fs::write(&wav, &streamed).unwrap();
    let cti_end = cti_start + truth.true_duration.as_nanos() as i64;
    server.idv(&[
        "cti",
        "push",
        "--part-bytes",
        "32768",
        "--server",
        &server.url,
        "--call-id",
        "call-0001",
        "--session",
        &session,
        "--started-at",
        &rfc3339_ns(cti_start),
        "--ended-at",
        &rfc3339_ns(cti_end),
        wav.to_str().unwrap(),
    ]);

    // Session 2: the call recording never comes.
    let (silent, silent_token, silent_key) = joined_session(&server, &http).await;
    stream_camera(&server, &silent, &silent_token, &silent_key, &units).await;

    for id in [&session, &silent] {
        server.idv(&["session", "end", "--server", &server.url, id]);
    }
    let (status, archive) = server.wait_recording(&session);
    assert_eq!(status, "muxed");
    let (silent_status, _) = server.wait_recording(&silent);
    assert_eq!(silent_status, "video-only");

    let sealed = dir.path().join("recording.idvr");
    let manifest = server.sealed_recording(&session, &sealed);
    assert_eq!(manifest["session"]["session_id"], session.as_str());
    assert_eq!(manifest["video_only"], false);
    assert_eq!(manifest["clock"]["agent_clock"]["samples"], 10);
    let plain = dir.path().join("recording.mp4");
    server.idv(&[
        "open",
        sealed.to_str().unwrap(),
        "-o",
        plain.to_str().unwrap(),
        "--reason",
        "end-to-end test",
    ]);
    let measured = measure_with_ffmpeg(&plain, 0).unwrap();
    assert_eq!(measured.flashes.len(), FLASH_FRAMES.len(), "{measured:?}");
    assert_eq!(measured.beeps.len(), FLASH_FRAMES.len(), "{measured:?}");
    for (flash, beep) in measured.flashes.iter().zip(&measured.beeps) {
        let sync_ms = (beep.as_secs_f64() - flash.as_secs_f64()) * 1e3;
        println!("SYNC end-to-end: flash {flash:?}: audio − video {sync_ms:+.3} ms");
        // The agent-to-UTC mapping over loopback is good to a fraction of a millisecond; a
        // wrong mapping is off by the agent clock's origin (seconds).
        assert!(sync_ms.abs() < 2.0, "audio − video = {sync_ms:.3} ms");
    }
    assert!(archive.len() == 36, "archive id in the list: {archive}");
    server.stop();
}

/// libopus's look-ahead at 16 kHz (104 samples): the agent's reference starts this long
/// before the first sample of what its microphone heard.
const OPUS_LOOKAHEAD_NS: i64 = 6_500_000;

fn parse_rfc3339_ns(text: &str) -> i64 {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .unwrap()
        .unix_timestamp_nanos() as i64
}

/// `idv agent --mic-reference file:…` plays a talk (the customer's voice and the sync beeps)
/// into its microphone reference while its camera plays a clip; the CTI system pushes the
/// same talk as the call centre recorded it, with a call record whose start is wrong by
/// about 400 ms; the sealed recording's manifest shows the call placed where the agent's
/// microphone heard it.
#[test]
fn the_agents_microphone_reference_corrects_a_wrong_call_record_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), 60);
    let clip = dir.path().join("camera.mp4");
    CameraClip {
        frames: 150,
        fps: FPS,
        width: 320,
        height: 240,
        flash_frames: FLASH_FRAMES.to_vec(),
        ..CameraClip::default()
    }
    .write(&clip)
    .unwrap();
    let talk = |encoding, rate_hz, noise_seed| CtiRecording {
        encoding,
        rate_hz,
        duration: Duration::from_secs(6),
        beeps: FLASH_FRAMES
            .iter()
            .map(|&f| Duration::from_secs_f64(f64::from(f) / f64::from(FPS)))
            .collect(),
        noise_seed,
        voice: Some(Voice {
            seed: 31,
            from: Duration::ZERO,
        }),
        ..CtiRecording::default()
    };
    let mic = dir.path().join("microphone.wav");
    talk(CtiEncoding::Pcm16, 16_000, 7).write(&mic).unwrap();
    let call = dir.path().join("call.wav");
    let truth = talk(CtiEncoding::MuLaw, 8000, 1).write(&call).unwrap();

    let created = server.idv_out(&["session", "create", "--server", &server.url]);
    let mut fields = created.split_whitespace();
    let (session, code) = (fields.next().unwrap(), fields.next().unwrap());
    let launched = utc_ns(SystemTime::now());
    let agent = std::process::Command::new(env!("CARGO_BIN_EXE_idv"))
        .args(["agent", "--server", &server.url, "--ca"])
        .arg(server.data.join("tls/cert.pem"))
        .args(["--code", code, "--consent", "camera,recording"])
        .arg(format!("--camera=file:{}", clip.display()))
        .arg(format!("--mic-reference=file:{}", mic.display()))
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&agent.stderr);
    assert!(agent.status.success(), "{stderr}");
    assert!(stderr.contains("microphone (timing reference)"), "{stderr}");

    // The call record: the start as the PBX saw it, 400 ms after the agent was launched
    // (the microphone started a little after that: it is wrong by about 400 ms less that),
    // in whole microseconds as the database keeps it.
    let recorded_start = (launched + 400_000_000) / 1000 * 1000;
    server.idv(&[
        "cti",
        "push",
        "--server",
        &server.url,
        "--call-id",
        "call-0002",
        "--session",
        session,
        "--started-at",
        &rfc3339_ns(recorded_start),
        "--ended-at",
        &rfc3339_ns(recorded_start + truth.true_duration.as_nanos() as i64),
        call.to_str().unwrap(),
    ]);
    let (status, _) = server.wait_recording(session);
    assert_eq!(status, "muxed");
    let sealed = dir.path().join("talk.idvr");
    let manifest = server.sealed_recording(session, &sealed);
    let input = |role: &str| {
        manifest["inputs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["role"] == role)
            .unwrap_or_else(|| panic!("no {role} input: {manifest}"))
            .clone()
    };
    let reference_start = parse_rfc3339_ns(input("mic_reference")["start"].as_str().unwrap());
    let cti_recorded = parse_rfc3339_ns(input("cti_audio")["start"].as_str().unwrap());
    assert_eq!(cti_recorded, recorded_start);
    let clock = &manifest["clock"];
    let refined_ms = clock["refined_by_ms"].as_f64().expect("refined");
    let confidence = clock["confidence"].as_f64().unwrap();
    // Where the call truly started: where the microphone heard the talk's first sample.
    let true_start = reference_start + OPUS_LOOKAHEAD_NS;
    let planted_ms = (recorded_start - true_start) as f64 / 1e6;
    let error_ms = planted_ms + refined_ms;
    let plain = dir.path().join("talk.mp4");
    server.idv(&[
        "open",
        sealed.to_str().unwrap(),
        "-o",
        plain.to_str().unwrap(),
        "--reason",
        "end-to-end test",
    ]);
    let measured = measure_with_ffmpeg(&plain, 0).unwrap();
    let sync_ms: Vec<f64> = measured
        .flashes
        .iter()
        .zip(&measured.beeps)
        .map(|(f, b)| (b.as_secs_f64() - f.as_secs_f64()) * 1e3)
        .collect();
    println!(
        "REFERENCE end-to-end: call record {planted_ms:+.3} ms off; refined by {refined_ms:+.3} \
         ms (error {error_ms:+.3} ms), confidence {confidence:.3}, {}; audio − video at the \
         flashes {sync_ms:+.3?} ms (the camera and the microphone each start when their \
         pipeline does)",
        manifest["session"]["mic_reference"]
    );
    assert!(confidence >= 0.5, "confidence {confidence}: {clock}");
    assert!(
        error_ms.abs() < 3.0,
        "the call lies {error_ms} ms from where the microphone heard it"
    );
    assert!(
        clock["method"]
            .as_str()
            .unwrap()
            .contains("refined by GCC-PHAT"),
        "{clock}"
    );
    assert_eq!(measured.beeps.len(), FLASH_FRAMES.len(), "{measured:?}");
    server.stop();
}
