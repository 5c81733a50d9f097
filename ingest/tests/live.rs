//! Live fan-out: an operator of the session's group watches the agent's frames as they
//! arrive, opens them with the key it is given, sees pauses and the end; a watcher too slow
//! to keep up loses frames it is told about exactly, and never slows the agent; nobody else
//! may watch.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::Harness;
use futures::StreamExt;
use proto::{LiveMessage, LiveNotice, SessionCipher, SessionKey, Track, WireMessage};
use tokio_tungstenite::tungstenite::Message;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Subscribes to `session` with `token`; the HTTP status if refused.
async fn watch(h: &Harness, session: uuid::Uuid, token: Option<&str>) -> Result<Socket, u16> {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = bearer
        .iter()
        .map(|b| ("authorization", b.as_str()))
        .collect();
    common::websocket(h, &format!("/sessions/{session}/live"), &headers).await
}

/// The next message to the watcher (`None` once closed), passing over where the session
/// stands (the agent connecting: `live`).
async fn next(watcher: &mut Socket) -> Option<LiveMessage> {
    loop {
        match common::next_live(watcher).await {
            Some(LiveMessage::Notice(LiveNotice::Session { .. })) => {}
            other => return other,
        }
    }
}

async fn subscribed(watcher: &mut Socket, session: uuid::Uuid) -> SessionCipher {
    match next(watcher).await {
        Some(LiveMessage::Notice(LiveNotice::Subscribed {
            session_id,
            media_key,
        })) => {
            assert_eq!(session_id, session);
            let key = SessionKey::from_slice(&hex::decode(media_key).unwrap()).unwrap();
            SessionCipher::new(&key, session)
        }
        other => panic!("expected the subscription notice, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_watches_frames_pauses_and_the_end_live() {
    let h = Harness::new(|_| {}).await;
    let joined = h
        .consented_session(&["camera", "screen", "recording"])
        .await;
    let mut watcher = watch(&h, joined.session, Some(&h.token)).await.unwrap();
    let cipher = subscribed(&mut watcher, joined.session).await;

    let (mut agent, _) = h.agent(&joined).await;
    for seq in 1..=10u64 {
        agent
            .send_frame(Track::Camera, seq, format!("camera frame {seq}").as_bytes())
            .await;
    }
    agent.acked_through(Track::Camera, 10).await;
    for seq in 1..=10u64 {
        let Some(LiveMessage::Frame(frame)) = next(&mut watcher).await else {
            panic!("expected frame {seq}");
        };
        assert_eq!(
            (frame.header().track, frame.header().seq),
            (Track::Camera, seq)
        );
        assert_eq!(
            frame.open(&cipher, 1 << 20).unwrap(),
            format!("camera frame {seq}").as_bytes()
        );
    }

    let pause = proto::AgentControl::Pause {
        tracks: BTreeSet::from([Track::Screen]),
        at_ns: 42,
    };
    agent.send_text(pause.to_json()).await;
    match next(&mut watcher).await {
        Some(LiveMessage::Notice(LiveNotice::Paused { tracks, at_ns })) => {
            assert_eq!((tracks, at_ns), (BTreeSet::from([Track::Screen]), 42));
        }
        other => panic!("expected the pause, got {other:?}"),
    }

    h.end(joined.session).await;
    match next(&mut watcher).await {
        Some(LiveMessage::Notice(LiveNotice::Ended { reason })) => {
            assert!(reason.contains("operator"), "{reason}");
        }
        other => panic!("expected the end, got {other:?}"),
    }
    assert!(next(&mut watcher).await.is_none(), "closed after the end");

    let actions: Vec<String> = h
        .vault
        .audit()
        .latest(50)
        .await
        .unwrap()
        .into_iter()
        .map(|e| format!("{} {}", e.action, e.outcome))
        .collect();
    assert!(
        actions.contains(&"session.watch success".to_owned()),
        "{actions:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_watcher_is_told_what_it_lost_and_never_slows_the_agent() {
    const FRAMES: u64 = 400;
    let h = Harness::new(|c| c.max_bytes_per_sec = 1 << 30).await;
    let joined = h.consented_session(&["camera", "recording"]).await;
    let mut watcher = watch(&h, joined.session, Some(&h.token)).await.unwrap();
    let cipher = subscribed(&mut watcher, joined.session).await;

    // The watcher reads nothing while 400 frames of 96 KiB (38 MiB) go by.
    let (mut agent, _) = h.agent(&joined).await;
    let payload = vec![0x42u8; 96 * 1024];
    for seq in 1..=FRAMES {
        agent.send_frame(Track::Camera, seq, &payload).await;
    }
    agent.acked_through(Track::Camera, FRAMES).await;

    // Every frame is either delivered or inside a gap it was told of, once, in order.
    let mut accounted = Vec::new();
    let mut gaps = 0;
    let mut account = |message: LiveMessage| match message {
        LiveMessage::Frame(frame) => {
            assert_eq!(frame.open(&cipher, 1 << 20).unwrap(), payload);
            accounted.push(frame.header().seq);
            true
        }
        LiveMessage::Notice(LiveNotice::Gap {
            track,
            from_seq,
            to_seq,
        }) => {
            assert_eq!(track, Track::Camera);
            gaps += 1;
            accounted.extend(from_seq..=to_seq);
            true
        }
        LiveMessage::Notice(LiveNotice::Ended { .. }) => false,
        other => panic!("unexpected {other:?}"),
    };
    // The watcher catches up with what was queued for it…
    while let Ok(Some(Ok(message))) =
        tokio::time::timeout(Duration::from_secs(1), watcher.next()).await
    {
        if let Message::Binary(bytes) = message {
            account(LiveMessage::from_wire(WireMessage::Binary(bytes), 1 << 20).unwrap());
        }
    }
    // …and the next frames come after the notice of what it missed.
    let more = vec![0x42u8; 96 * 1024];
    assert_eq!(more, payload);
    for seq in FRAMES + 1..=FRAMES + 10 {
        agent.send_frame(Track::Camera, seq, &more).await;
    }
    agent.acked_through(Track::Camera, FRAMES + 10).await;
    h.end(joined.session).await;
    while let Some(message) = next(&mut watcher).await {
        if !account(message) {
            break;
        }
    }
    assert!(gaps > 0, "a watcher that never reads must lose frames");
    let expected: Vec<u64> = (1..=FRAMES + 10).collect();
    assert_eq!(accounted, expected, "{gaps} gaps");
    println!("LIVE slow watcher: {FRAMES}+10 frames, {gaps} gap notice(s)");
}

/// Waits (skipping acks) until the agent is asked for a keyframe; of which track.
async fn keyframe_asked(agent: &mut common::Agent) -> Track {
    loop {
        match agent.control().await {
            Ok(proto::ServerControl::Keyframe { track }) => return track,
            Ok(_) => {}
            Err(closed) => panic!("closed while waiting for a keyframe request: {closed:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_watcher_and_one_that_lost_frames_ask_the_agent_for_a_keyframe() {
    let h = Harness::new(|c| c.max_bytes_per_sec = 1 << 30).await;
    let joined = h
        .consented_session(&["camera", "screen", "recording"])
        .await;
    let (mut agent, _) = h.agent(&joined).await;
    let mut watcher = watch(&h, joined.session, Some(&h.token)).await.unwrap();
    subscribed(&mut watcher, joined.session).await;
    let asked = BTreeSet::from([
        keyframe_asked(&mut agent).await,
        keyframe_asked(&mut agent).await,
    ]);
    assert_eq!(asked, BTreeSet::from([Track::Camera, Track::Screen]));

    // The watcher reads nothing while 38 MiB go by, then catches up: told of a gap, and the
    // agent is asked for a camera keyframe to resume its view from.
    let payload = vec![0x42u8; 96 * 1024];
    for seq in 1..=400 {
        agent.send_frame(Track::Camera, seq, &payload).await;
    }
    agent.acked_through(Track::Camera, 400).await;
    while let Ok(Some(Ok(_))) = tokio::time::timeout(Duration::from_secs(1), watcher.next()).await {
    }
    // The gap is told before the next frame.
    agent.send_frame(Track::Camera, 401, &payload).await;
    loop {
        match next(&mut watcher).await {
            Some(LiveMessage::Notice(LiveNotice::Gap { track, .. })) => {
                assert_eq!(track, Track::Camera);
                break;
            }
            Some(_) => {}
            None => panic!("a watcher that never reads must lose frames"),
        }
    }
    assert_eq!(keyframe_asked(&mut agent).await, Track::Camera);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_an_operator_of_the_group_may_watch_an_open_session() {
    let h = Harness::new(|_| {}).await;
    let joined = h.consented_session(&["camera", "recording"]).await;
    assert_eq!(watch(&h, joined.session, None).await.err(), Some(401));
    assert_eq!(
        watch(&h, joined.session, Some("not-the-token")).await.err(),
        Some(401)
    );
    assert_eq!(
        watch(&h, uuid::Uuid::new_v4(), Some(&h.token)).await.err(),
        Some(404)
    );
    h.end(joined.session).await;
    assert_eq!(
        watch(&h, joined.session, Some(&h.token)).await.err(),
        Some(404),
        "an ended session has nothing live"
    );
    let denied = h
        .vault
        .audit()
        .latest(50)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "session.watch" && e.outcome.to_string() == "denied")
        .count();
    assert_eq!(denied, 2);
}
