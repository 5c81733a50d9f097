//! A real agent and a real ingest server on loopback: the customer pauses and resumes (the
//! pause is in the stored media), hides a region of the screen (what is under it never reaches
//! the server, in any frame), and ends the session (after everything is acknowledged); the
//! operator ends a session and the agent stops; the microphone reference arrives as Opus packets
//! stamped 20 ms apart, pauses with the rest, and is sent only with the consent to record; a
//! wrong code, an unreachable server, a missing camera and missing consent each stop the agent
//! with one clear line.

mod common;

use std::time::Duration;

use agent::link::Ended;
use agent::{AgentError, CustomerAction, MicSource, Region, ScreenCodec, VideoSource};
use common::{Server, assert_complete};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use proto::{FrameFlags, Track};
use tokio::sync::mpsc;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pause_is_in_the_stored_media_and_the_customer_ends_after_every_ack() {
    let server = Server::start().await;
    let (session, code) = server.create().await;
    let config = server.agent_config(&server.server.url(), &code, VideoSource::Test);
    let (actions, actions_rx) = mpsc::channel(4);
    let running = tokio::spawn(agent::run(config, actions_rx));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    actions.send(CustomerAction::Pause).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    actions.send(CustomerAction::Resume).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    actions.send(CustomerAction::End).await.unwrap();
    let outcome = running.await.unwrap().unwrap();
    assert_eq!(outcome.ended, Ended::Finished);

    server.wait_rolled(session).await;
    let stored = server.stored(session).await;
    for track in [Track::Camera, Track::Screen] {
        let frames = &stored[&track];
        assert_complete(frames, outcome.sealed.get(track), track);
        let paused: Vec<usize> = frames
            .iter()
            .enumerate()
            .filter(|(_, (h, _))| h.flags.contains(FrameFlags::PAUSED))
            .map(|(i, _)| i)
            .collect();
        assert_eq!(paused.len(), 1, "one pause marker on {}", track.name());
        let at = paused[0];
        assert!(frames[at].1.is_empty(), "a pause marker carries no media");
        let (after, _) = &frames[at + 1];
        assert!(
            after.flags.contains(FrameFlags::KEYFRAME),
            "sharing resumes with a keyframe"
        );
        // The pause lasted 1 s; the first frame after it may have been captured a little
        // before the resume reached the pipeline's end, so only half is asked for.
        let held = after.captured_at_ns - frames[at].0.captured_at_ns;
        assert!(held >= 500_000_000, "nothing sent while paused ({held} ns)");
    }
    let log = server.vault.audit().entries(0, 1000).await.unwrap();
    assert!(
        log.iter()
            .any(|e| e.action == "session.end" && e.actor == "customer"),
        "the customer ended it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_microphone_reference_arrives_as_opus_packets_20_ms_apart_and_pauses() {
    const PACKET_NS: i64 = 20_000_000;
    let server = Server::start().await;
    let (session, code) = server.create().await;
    let mut config = server.agent_config(&server.server.url(), &code, VideoSource::None);
    config.mic_reference = MicSource::Test;
    let (actions, actions_rx) = mpsc::channel(4);
    let running = tokio::spawn(agent::run(config, actions_rx));
    tokio::time::sleep(Duration::from_millis(2000)).await;
    actions.send(CustomerAction::Pause).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    actions.send(CustomerAction::Resume).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    actions.send(CustomerAction::End).await.unwrap();
    let outcome = running.await.unwrap().unwrap();
    assert_eq!(outcome.ended, Ended::Finished);

    server.wait_rolled(session).await;
    let stored = server.stored(session).await;
    let track = Track::MicReference;
    let frames = &stored[&track];
    assert_complete(frames, outcome.sealed.get(track), track);
    assert!(
        !stored[&Track::Camera].is_empty(),
        "the reference goes with the video"
    );
    let paused: Vec<usize> = (0..frames.len())
        .filter(|&i| frames[i].0.flags.contains(FrameFlags::PAUSED))
        .collect();
    assert_eq!(paused.len(), 1, "one pause marker");
    assert!(frames[paused[0]].1.is_empty());

    // Each run is a stream of 20 ms Opus packets, each decoding on its own: pink noise,
    // never silence. Stamped with the capture time of its first decoded sample, so each is
    // one packet after the previous — the first too (its look-ahead is put back).
    let mut decoder = opus::Decoder::new(16_000, opus::Channels::Mono).unwrap();
    let mut pcm = vec![0i16; 1920];
    let mut steps_ms = Vec::new();
    for run in [&frames[..paused[0]], &frames[paused[0] + 1..]] {
        assert!(run.len() > 40, "{} packets", run.len());
        for (header, packet) in run {
            assert!(header.flags.contains(FrameFlags::KEYFRAME), "{header:?}");
            assert_eq!(
                opus::packet::get_nb_samples(packet, 48_000).unwrap(),
                960,
                "20 ms"
            );
            assert_eq!(
                opus::packet::get_nb_channels(packet).unwrap(),
                opus::Channels::Mono
            );
            let n = decoder.decode(packet, &mut pcm, false).unwrap();
            assert_eq!(n, 320);
        }
        let level = pcm.iter().map(|&s| i32::from(s).abs()).max().unwrap();
        assert!(level > 1000, "the noise is there (peak {level})");
        steps_ms.extend(
            run.windows(2)
                .map(|w| (w[1].0.captured_at_ns - w[0].0.captured_at_ns) as f64 / 1e6),
        );
        let span = run.last().unwrap().0.captured_at_ns - run[0].0.captured_at_ns;
        let mean = span as f64 / (run.len() - 1) as f64;
        assert!(
            (mean - PACKET_NS as f64).abs() < 100_000.0,
            "packets {mean} ns apart on average"
        );
    }
    let within = steps_ms.iter().filter(|s| (*s - 20.0).abs() <= 1.0).count();
    let (min, max) = steps_ms
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), &s| (lo.min(s), hi.max(s)));
    println!(
        "MIC {} packets: steps {min:.3}..{max:.3} ms, {within} of {} within 20 ± 1 ms",
        frames.len() - 1,
        steps_ms.len()
    );
    assert!(
        within * 10 >= steps_ms.len() * 9,
        "{within} of {} steps within 20 ± 1 ms",
        steps_ms.len()
    );
    let first_step = frames[1].0.captured_at_ns - frames[0].0.captured_at_ns;
    assert!(
        (first_step - PACKET_NS).abs() < 1_000_000,
        "the first packet's look-ahead is accounted for ({first_step} ns)"
    );
    // Paused for 1 s: the first packet after it was captured at least half of that later.
    let held = frames[paused[0] + 1].0.captured_at_ns - frames[paused[0]].0.captured_at_ns;
    assert!(held >= 500_000_000, "nothing sent while paused ({held} ns)");

    // Without the consent to record, the microphone is not sent (the video is).
    let (session, code) = server.create().await;
    let mut config = server.agent_config(&server.server.url(), &code, VideoSource::None);
    config.mic_reference = MicSource::Test;
    config.consent = Some([proto::ConsentScope::Camera].into());
    let (actions, actions_rx) = mpsc::channel(4);
    let running = tokio::spawn(agent::run(config, actions_rx));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    actions.send(CustomerAction::End).await.unwrap();
    let outcome = running.await.unwrap().unwrap();
    assert_eq!(outcome.sealed.get(track), 0);
    server.wait_rolled(session).await;
    let stored = server.stored(session).await;
    assert!(!stored[&Track::Camera].is_empty());
    assert!(
        !stored.contains_key(&track),
        "no microphone without consent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_operator_ends_the_session_and_the_agent_stops() {
    let server = Server::start().await;
    let (session, code) = server.create().await;
    let config = server.agent_config(&server.server.url(), &code, VideoSource::None);
    let (_actions, actions_rx) = mpsc::channel(4);
    let running = tokio::spawn(agent::run(config, actions_rx));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.end(session).await;
    let outcome = tokio::time::timeout(Duration::from_secs(20), running)
        .await
        .expect("the agent stops when the operator ends the session")
        .unwrap()
        .unwrap();
    assert!(
        matches!(outcome.ended, Ended::SessionEnded(_)),
        "{outcome:?}"
    );
    server.wait_rolled(session).await;
    let stored = server.stored(session).await;
    assert!(!stored[&Track::Camera].is_empty());
    assert!(!stored.contains_key(&Track::Screen));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_codes_servers_devices_and_consent_stop_the_agent_with_one_clear_line() {
    let server = Server::start().await;
    let (_, code) = server.create().await;
    let (_a, rx) = mpsc::channel(1);
    let config = server.agent_config(&server.server.url(), "000000", VideoSource::None);
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let mut config = config;
    config.code = wrong.into();
    let error = agent::run(config, rx).await.unwrap_err();
    assert!(matches!(error, AgentError::CodeRefused(_)), "{error}");

    let (_a, rx) = mpsc::channel(1);
    let config = server.agent_config("https://127.0.0.1:1", &code, VideoSource::None);
    let error = agent::run(config, rx).await.unwrap_err();
    assert!(matches!(error, AgentError::Unreachable { .. }), "{error}");
    assert!(
        error.to_string().contains("cannot reach the server"),
        "{error}"
    );

    let (_a, rx) = mpsc::channel(1);
    let mut config = server.agent_config(&server.server.url(), &code, VideoSource::None);
    config.consent = Some([proto::ConsentScope::Recording].into());
    let error = agent::run(config, rx).await.unwrap_err();
    assert!(matches!(error, AgentError::NoConsent(_)), "{error}");

    // (A code is used once: the microphone case, which joins, has one of its own.)
    let (_, mic_code) = server.create().await;
    let (_a, rx) = mpsc::channel(1);
    let mut config = server.agent_config(&server.server.url(), &mic_code, VideoSource::None);
    config.mic_reference = MicSource::File("/nonexistent/talk.wav".into());
    let error = agent::run(config, rx).await.unwrap_err();
    assert!(matches!(error, AgentError::Capture { .. }), "{error}");
    let line = error.to_string();
    assert!(
        line.starts_with("microphone file:/nonexistent/talk.wav: ") && !line.contains('\n'),
        "{line}"
    );
    let (_, mic_code) = server.create().await;
    let (_a, rx) = mpsc::channel(1);
    let mut config = server.agent_config(&server.server.url(), &mic_code, VideoSource::None);
    config.mic_reference = MicSource::Alsa(Some("hw:97,0".into()));
    let error = agent::run(config, rx).await.unwrap_err();
    assert!(matches!(error, AgentError::Capture { .. }), "{error}");
    let line = error.to_string();
    // "microphone alsa:hw:97,0: Could not open audio device for recording. (…)"
    assert!(
        line.starts_with("microphone alsa:hw:97,0: Could not open") && !line.contains('\n'),
        "{line}"
    );

    let (_a, rx) = mpsc::channel(1);
    let mut config = server.agent_config(&server.server.url(), &code, VideoSource::None);
    config.camera.source = VideoSource::V4l2("/dev/video99".into());
    let error = agent::run(config, rx).await.unwrap_err();
    assert!(matches!(error, AgentError::Capture { .. }), "{error}");
    let line = error.to_string();
    assert!(
        line.contains("camera v4l2:/dev/video99") && !line.contains('\n'),
        "{line}"
    );
}

/// A 320×240 clip of moving zone-plate rings (full-range luma, fine detail everywhere):
/// the "secret" on the customer's screen.
fn checkerboard_clip(path: &std::path::Path) {
    gst::init().unwrap();
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc pattern=zone-plate kx2=20 ky2=20 kt=1 num-buffers=40 ! \
         video/x-raw,width=320,height=240,framerate=10/1 ! x264enc ! mp4mux ! filesink location={}",
        path.display()
    ))
    .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let bus = pipeline.bus().unwrap();
    bus.timed_pop_filtered(gst::ClockTime::NONE, &[gst::MessageType::Eos])
        .unwrap();
    pipeline.set_state(gst::State::Null).unwrap();
}

/// Decodes an H.264 Annex-B stream to I420 pictures (luma planes, `w`×`h`).
fn decode_luma(units: &[Vec<u8>], w: usize, h: usize) -> Vec<Vec<u8>> {
    gst::init().unwrap();
    let pipeline = gst::parse::launch(
        "appsrc name=src caps=video/x-h264,stream-format=byte-stream,alignment=au ! h264parse ! \
         avdec_h264 ! videoconvert ! video/x-raw,format=GRAY8 ! appsink name=sink sync=false",
    )
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let src = pipeline
        .by_name("src")
        .unwrap()
        .downcast::<gst_app::AppSrc>()
        .unwrap();
    let sink = pipeline
        .by_name("sink")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    for unit in units {
        src.push_buffer(gst::Buffer::from_slice(unit.clone()))
            .unwrap();
    }
    src.end_of_stream().unwrap();
    let mut pictures = Vec::new();
    while let Ok(sample) = sink.pull_sample() {
        let map = sample.buffer().unwrap().map_readable().unwrap();
        let stride = map.len() / h;
        pictures.push(
            (0..h)
                .flat_map(|y| map[y * stride..y * stride + w].to_vec())
                .collect(),
        );
    }
    pipeline.set_state(gst::State::Null).unwrap();
    pictures
}

/// Decodes screen-codec payloads to greyscale pictures (`w`×`h`, the average of B, G and R).
fn decode_tiles(payloads: &[Vec<u8>], w: usize, h: usize) -> Vec<Vec<u8>> {
    let mut decoder = screencodec::Decoder::new();
    payloads
        .iter()
        .map(|payload| {
            let canvas = decoder.decode(payload).unwrap();
            assert_eq!((canvas.width() as usize, canvas.height() as usize), (w, h));
            (0..h)
                .flat_map(|y| (0..w).map(move |x| (x, y)))
                .map(|(x, y)| {
                    let [b, g, r] = canvas.bgr(x as u32, y as u32).unwrap();
                    ((u16::from(b) + u16::from(g) + u16::from(r)) / 3) as u8
                })
                .collect()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn what_the_customer_hides_never_reaches_the_server_in_h264() {
    hidden_region_never_reaches_the_server(ScreenCodec::H264).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn what_the_customer_hides_never_reaches_the_server_in_tiles() {
    hidden_region_never_reaches_the_server(ScreenCodec::Tiles).await;
}

async fn hidden_region_never_reaches_the_server(codec: ScreenCodec) {
    let server = Server::start().await;
    let clip = server.dir.path().join("screen.mp4");
    checkerboard_clip(&clip);
    let (session, code) = server.create().await;
    let mut config = server.agent_config(&server.server.url(), &code, VideoSource::File(clip));
    config.camera.source = VideoSource::None;
    config.screen.size = Some((320, 240));
    config.screen_codec = codec;
    config.screen.bitrate_kbps = 2000;
    let hidden = Region {
        x: 96,
        y: 64,
        w: 128,
        h: 96,
    };
    config.blinds = vec![hidden];
    let (_actions, actions_rx) = mpsc::channel(4);
    // The clip plays to its end (4 s), which ends the session.
    let outcome = agent::run(config, actions_rx).await.unwrap();
    assert_eq!(outcome.ended, Ended::Finished);
    server.wait_rolled(session).await;
    let stored = server.stored(session).await;
    let frames = &stored[&Track::Screen];
    assert_complete(frames, outcome.sealed.get(Track::Screen), Track::Screen);
    let units: Vec<Vec<u8>> = frames.iter().map(|(_, data)| data.clone()).collect();
    let pictures = match codec {
        ScreenCodec::H264 => decode_luma(&units, 320, 240),
        ScreenCodec::Tiles => decode_tiles(&units, 320, 240),
    };
    assert_eq!(pictures.len(), units.len(), "every stored frame decodes");
    for (n, luma) in pictures.iter().enumerate() {
        let at = |x: u32, y: u32| i32::from(luma[(y * 320 + x) as usize]);
        // Inside (a 4-pixel margin left for the codec's edge filtering): only the hatch,
        // no trace of the checkerboard's black-and-white squares.
        let mut worst = 0;
        for y in hidden.y + 4..hidden.y + hidden.h - 4 {
            for x in hidden.x + 4..hidden.x + hidden.w - 4 {
                let hatch = if ((x - hidden.x + y - hidden.y) / 8).is_multiple_of(2) {
                    112
                } else {
                    136
                };
                worst = worst.max((at(x, y) - hatch).abs());
            }
        }
        assert!(
            worst <= 24,
            "frame {n}: the hidden region differs from the hatch by {worst}"
        );
        // Outside, the checkerboard is there (so the test is not looking at a blank screen).
        let contrast =
            (0..40).map(|x| at(x, 10)).max().unwrap() - (0..40).map(|x| at(x, 10)).min().unwrap();
        assert!(
            contrast > 150,
            "frame {n}: the visible screen has its content ({contrast})"
        );
    }
}
