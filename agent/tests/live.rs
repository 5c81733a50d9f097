//! A watcher who starts watching gets a keyframe at once: the server asks the agent for one
//! (`keyframe`) and the agent forces it, instead of the watcher waiting for the next scheduled
//! keyframe (every 2 s of camera: up to 30 frames at the harness's 15 fps).

mod common;

use std::time::{Duration, Instant};

use agent::VideoSource;
use common::Server;
use futures::StreamExt;
use proto::{FrameFlags, LiveFrame, Track};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// Camera frames a new watcher may see before its first keyframe: one or two already on
/// their way when the request reached the encoder.
const AT_MOST: usize = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_watcher_gets_a_camera_keyframe_within_a_few_frames() {
    let server = Server::start().await;
    let (session, code) = server.create().await;
    let config = server.agent_config(&server.server.url(), &code, VideoSource::None);
    let (_actions, actions_rx) = mpsc::channel(4);
    let running = tokio::spawn(agent::run(config, actions_rx));
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let mut waits = Vec::new();
    for round in 0..4u64 {
        let mut watcher = server.watch(session).await;
        let subscribed = Instant::now();
        let mut frames = 0;
        loop {
            let message = tokio::time::timeout(Duration::from_secs(10), watcher.next())
                .await
                .expect("camera frames keep coming")
                .unwrap()
                .unwrap();
            let Message::Binary(bytes) = message else {
                continue;
            };
            let frame = LiveFrame::from_wire(bytes, 8 << 20).unwrap();
            if frame.header().track != Track::Camera {
                continue;
            }
            frames += 1;
            if frame.header().flags.contains(FrameFlags::KEYFRAME) {
                break;
            }
        }
        waits.push((frames, subscribed.elapsed()));
        drop(watcher);
        // Past the agent's once-a-second limit, and at another point of the 2 s schedule.
        tokio::time::sleep(Duration::from_millis(1100 + round * 370)).await;
    }
    println!("LIVE first keyframe for a new watcher (camera frames, time): {waits:?}");
    assert!(
        waits.iter().all(|(frames, _)| *frames <= AT_MOST),
        "a watcher waited for the scheduled keyframe: {waits:?}"
    );

    server.end(session).await;
    tokio::time::timeout(Duration::from_secs(20), running)
        .await
        .expect("the agent stops when the session ends")
        .unwrap()
        .unwrap();
}
