//! Screenshot mode: a proxy that refuses WebSocket upgrades (403, as corporate proxies do)
//! makes the agent post a sealed JPEG of the screen every 5 s over HTTPS — blinds painted —
//! and when upgrades are allowed again it streams again. The server stores the screenshots on
//! the session's timeline, every seq once, and the streamed frames captured meanwhile arrive
//! after the WebSocket is back.

mod common;

use std::time::Duration;

use agent::link::Ended;
use agent::{CustomerAction, VideoSource};
use common::{Proxy, Server, assert_complete};
use proto::{FrameFlags, Track};
use tokio::sync::mpsc;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refused_websocket_falls_back_to_screenshots_and_back() {
    let server = Server::start().await;
    let proxy = Proxy::start(server.server.addr()).await;
    proxy.refuse_upgrades(server.dir.path());
    let (session, code) = server.create().await;
    let mut config = server.agent_config(&proxy.url(), &code, VideoSource::Test);
    config
        .consent
        .as_mut()
        .unwrap()
        .insert(proto::ConsentScope::ScreenCapture);
    let (actions, actions_rx) = mpsc::channel(4);
    let running = tokio::spawn(agent::run(config, actions_rx));

    // Refused twice, then a screenshot every 5 s.
    tokio::time::sleep(Duration::from_secs(13)).await;
    proxy.allow_upgrades();
    // The WebSocket is tried again within 10 s, then the spilled frames go.
    tokio::time::sleep(Duration::from_secs(14)).await;
    actions.send(CustomerAction::End).await.unwrap();
    let outcome = running.await.unwrap().unwrap();
    assert_eq!(outcome.ended, Ended::Finished);

    server.wait_rolled(session).await;
    let stored = server.stored(session).await;
    let shots = &stored[&Track::Screenshot];
    assert!(
        shots.len() >= 2,
        "screenshots while refused: {}",
        shots.len()
    );
    let seqs: Vec<u64> = shots.iter().map(|(h, _)| h.seq).collect();
    assert_eq!(seqs, (1..=shots.len() as u64).collect::<Vec<_>>());
    for (header, jpeg) in shots {
        assert!(header.flags.contains(FrameFlags::KEYFRAME));
        assert!(jpeg.starts_with(&[0xFF, 0xD8]), "a JPEG");
    }
    for track in [Track::Camera, Track::Screen] {
        assert_complete(&stored[&track], outcome.sealed.get(track), track);
    }
}

/// The customer ends the session while the network still refuses the WebSocket: the agent
/// ends it over HTTPS and exits cleanly, saying the spilled video could not be sent; the
/// session is ended as the customer's doing and its screenshots are recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ending_while_the_websocket_is_refused_ends_the_session_over_https() {
    let server = Server::start().await;
    let proxy = Proxy::start(server.server.addr()).await;
    proxy.refuse_upgrades(server.dir.path());
    let (session, code) = server.create().await;
    let mut config = server.agent_config(&proxy.url(), &code, VideoSource::Test);
    config
        .consent
        .as_mut()
        .unwrap()
        .insert(proto::ConsentScope::ScreenCapture);
    let (actions, actions_rx) = mpsc::channel(4);
    let running = tokio::spawn(agent::run(config, actions_rx));

    // Refused twice, then screenshots.
    tokio::time::sleep(Duration::from_secs(8)).await;
    actions.send(CustomerAction::End).await.unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(30), running)
        .await
        .expect("the agent stops")
        .unwrap()
        .unwrap();
    assert_eq!(outcome.ended, Ended::StreamRefused);

    server.wait_rolled(session).await;
    let log = server.vault.audit().entries(0, 1000).await.unwrap();
    assert!(
        log.iter()
            .any(|e| e.action == "session.end" && e.actor == "customer"),
        "the customer ended it"
    );
    let stored = server.stored(session).await;
    assert!(
        !stored[&Track::Screenshot].is_empty(),
        "the screenshots are kept"
    );
    assert!(
        !stored.contains_key(&Track::Camera),
        "no stream got through the refusing proxy"
    );
    println!(
        "ended while refused: {} screenshot(s) recorded, {} camera frame(s) could not be sent",
        stored[&Track::Screenshot].len(),
        outcome.sealed.get(Track::Camera)
    );
}
