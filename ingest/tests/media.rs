//! The agent media protocol against a real server over TLS: frames acknowledged only once
//! durable, resumed without loss or duplicates, and every kind of bad input closed with its
//! code while other sessions carry on.

mod common;

use common::{Agent, Harness};
use proto::{CloseCode, ServerControl, Track};
use storage::track_log::TrackLog;

async fn log_of(h: &Harness, session: uuid::Uuid, track: &str) -> Vec<u64> {
    h.settle().await;
    let path = h
        .dir
        .path()
        .join(format!("spool/{session}/{track}-000000.log"));
    TrackLog::read_all(&path)
        .unwrap()
        .into_iter()
        .map(|r| r.seq)
        .collect()
}

#[tokio::test]
async fn frames_are_acknowledged_when_durable_and_a_resume_neither_loses_nor_repeats() {
    let h = Harness::new(|_| {}).await;
    let s = h
        .consented_session(&["camera", "screen", "recording"])
        .await;
    let (mut agent, acked) =
        Agent::connect(&h.agent_url(), &h.cert(), &s.token, &s.key, s.session).await;
    assert_eq!(acked.get(Track::Camera), 0);
    for seq in 1..=50 {
        agent
            .send_frame(Track::Camera, seq, &[seq as u8; 2000])
            .await;
    }
    assert_eq!(agent.acked_through(Track::Camera, 50).await, 50);
    drop(agent); // the network drops

    let (mut agent, acked) =
        Agent::connect(&h.agent_url(), &h.cert(), &s.token, &s.key, s.session).await;
    assert_eq!(acked.get(Track::Camera), 50, "welcome says where to resume");
    // The agent resends what it was unsure of, then goes on.
    for seq in 45..=60 {
        agent
            .send_frame(Track::Camera, seq, &[seq as u8; 2000])
            .await;
    }
    agent.send_frame(Track::Screen, 1, b"screen").await;
    assert_eq!(agent.acked_through(Track::Camera, 60).await, 60);
    agent.acked_through(Track::Screen, 1).await;
    assert_eq!(
        log_of(&h, s.session, "camera").await,
        (1..=60).collect::<Vec<_>>()
    );
    // Stored as sealed: the payload bytes are nowhere in the log in clear (nor in the journal).
    let raw = std::fs::read(
        h.dir
            .path()
            .join(format!("spool/{}/camera-000000.log", s.session)),
    )
    .unwrap();
    assert!(
        !raw.windows(64).any(|w| w.iter().all(|&b| b == 30)),
        "plaintext found in the log"
    );
    for journal in std::fs::read_dir(h.dir.path().join("journal")).unwrap() {
        let raw = std::fs::read(journal.unwrap().path()).unwrap();
        assert!(
            !raw.windows(64).any(|w| w.iter().all(|&b| b == 30)),
            "plaintext found in the journal"
        );
    }
}

#[tokio::test]
async fn clock_sync_is_answered_and_stored_and_pauses_are_audited() {
    let h = Harness::new(|_| {}).await;
    let s = h.consented_session(&["camera"]).await;
    let (mut agent, _) =
        Agent::connect(&h.agent_url(), &h.cert(), &s.token, &s.key, s.session).await;
    agent
        .send_text(proto::AgentControl::Ping { t1: 1_000 }.to_json())
        .await;
    let Ok(ServerControl::Pong { t1, t2, t3 }) = agent.control().await else {
        panic!("no pong")
    };
    assert_eq!(t1, 1_000);
    assert!(t3 >= t2 && t2 > 1_700_000_000_000_000_000, "server UTC ns");
    // The agent's clock saw the round trip take 0.5 ms more than the server held the ping.
    let t4 = t1 + (t3 - t2) + 500_000;
    let sample = proto::ClockSample { t1, t2, t3, t4 };
    agent
        .send_text(proto::AgentControl::ClockSample(sample).to_json())
        .await;
    let screen: std::collections::BTreeSet<Track> = [Track::Screen].into_iter().collect();
    let pause = proto::AgentControl::Pause {
        tracks: screen.clone(),
        at_ns: 5_000,
    };
    agent.send_text(pause.to_json()).await;
    let resume = proto::AgentControl::Resume {
        tracks: screen,
        at_ns: 9_000,
    };
    agent.send_text(resume.to_json()).await;
    agent
        .send_text(
            proto::AgentControl::Close(proto::Close::new(CloseCode::SessionEnded, "bye")).to_json(),
        )
        .await;
    assert_eq!(agent.closed().await.code, CloseCode::SessionEnded.to_u16());
    let stored = h.vault.db().clock_samples(s.session).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!((stored[0].t1, stored[0].t4), (1_000, t4));
    let log = h.vault.audit().entries(0, 1000).await.unwrap();
    let pauses: Vec<_> = log
        .iter()
        .filter(|e| e.action.starts_with("session.pause") || e.action.starts_with("session.resume"))
        .map(|e| (e.action.as_str(), e.reason.as_deref().unwrap_or("")))
        .collect();
    assert_eq!(
        pauses,
        [
            ("session.pause", "screen at agent clock 5000 ns"),
            ("session.resume", "screen at agent clock 9000 ns")
        ]
    );
}

/// Each bad input closes only its own connection, with its code; the good session beside it
/// keeps streaming and its frames stay acknowledged.
#[tokio::test]
async fn bad_input_closes_that_connection_only() {
    let h = Harness::new(|c| c.max_payload = 64 * 1024).await;
    let good = h.consented_session(&["camera"]).await;
    let (mut bystander, _) = Agent::connect(
        &h.agent_url(),
        &h.cert(),
        &good.token,
        &good.key,
        good.session,
    )
    .await;
    let mut next = 1u64;

    let other = h.consented_session(&["camera"]).await;
    let camera_only = h.consented_session(&["camera"]).await;
    type Case<'a> = (&'a str, Box<dyn Fn(&Agent) -> Vec<u8> + 'a>, u16);
    let foreign = proto::SessionCipher::new(&other.key, other.session);
    let wrong_key = proto::SessionCipher::new(&proto::SessionKey::generate(), other.session);
    let cases: Vec<Case> = vec![
        (
            "garbage bytes",
            Box::new(|_| b"this is not a frame at all, not even close".to_vec()),
            4000,
        ),
        (
            "wrong key",
            Box::new(|_| {
                wrong_key
                    .seal(&proto::FrameHeader::new(Track::Camera, 1, 0), b"x")
                    .unwrap()
            }),
            4000,
        ),
        (
            "a frame of another session",
            Box::new(|_| {
                foreign
                    .seal(&proto::FrameHeader::new(Track::Camera, 1, 0), b"x")
                    .unwrap()
            }),
            4000,
        ),
        (
            "oversize frame",
            Box::new(|a| a.frame(Track::Camera, 1, &vec![0; 65 * 1024])),
            4001,
        ),
        (
            "skipped sequence numbers",
            Box::new(|a| a.frame(Track::Camera, 5, b"x")),
            4000,
        ),
        (
            "a frame of a track without consent",
            Box::new(|a| a.frame(Track::Screen, 1, b"x")),
            4006,
        ),
        (
            "a replayed frame under another seq",
            Box::new(|a| {
                let mut bytes = a.frame(Track::Camera, 1, b"x");
                bytes[8] = 2; // seq 1 → 2 in the header: the AAD no longer matches
                bytes
            }),
            4000,
        ),
    ];
    for (name, make, code) in &cases {
        let (mut agent, _) = Agent::connect(
            &h.agent_url(),
            &h.cert(),
            &camera_only.token,
            &camera_only.key,
            camera_only.session,
        )
        .await;
        let bytes = make(&agent);
        agent.send_bytes(bytes).await;
        let closed = agent.closed().await;
        assert_eq!(closed.code, *code, "{name}: {closed:?}");
        assert!(!closed.reason.is_empty(), "{name}: a reason is given");
        // The bystander never noticed.
        bystander
            .send_frame(Track::Camera, next, b"still here")
            .await;
        assert_eq!(
            bystander.acked_through(Track::Camera, next).await,
            next,
            "{name}"
        );
        next += 1;
    }
    assert!(
        log_of(&h, camera_only.session, "camera").await.is_empty(),
        "nothing bad was stored"
    );

    // Before hello, and with a wrong token.
    let mut early = Agent::connect_raw(&h.agent_url(), &h.cert(), &good.key, good.session).await;
    early.send_frame(Track::Camera, 1, b"x").await;
    assert_eq!(early.closed().await.code, 4000);
    let mut forged = Agent::connect_raw(&h.agent_url(), &h.cert(), &good.key, good.session).await;
    forged
        .hello(&format!("{}.{}", good.session, "ab".repeat(32)))
        .await;
    assert_eq!(forged.closed().await.code, CloseCode::AuthFailed.to_u16());
    bystander
        .send_frame(Track::Camera, next, b"still here")
        .await;
    bystander.acked_through(Track::Camera, next).await;
    assert_eq!(
        log_of(&h, good.session, "camera").await,
        (1..=next).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_newer_connection_supersedes_and_ending_the_session_closes_the_agent() {
    let h = Harness::new(|_| {}).await;
    let s = h.consented_session(&["camera"]).await;
    let (mut first, _) =
        Agent::connect(&h.agent_url(), &h.cert(), &s.token, &s.key, s.session).await;
    first.send_frame(Track::Camera, 1, b"a").await;
    first.acked_through(Track::Camera, 1).await;
    let (mut second, acked) =
        Agent::connect(&h.agent_url(), &h.cert(), &s.token, &s.key, s.session).await;
    assert_eq!(acked.get(Track::Camera), 1);
    assert_eq!(first.closed().await.code, CloseCode::Superseded.to_u16());
    second.send_frame(Track::Camera, 2, b"b").await;
    second.acked_through(Track::Camera, 2).await;

    let r = h
        .http
        .post(h.url(&format!("/sessions/{}/end", s.session)))
        .bearer_auth(&h.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(second.closed().await.code, CloseCode::SessionEnded.to_u16());
    let mut late = Agent::connect_raw(&h.agent_url(), &h.cert(), &s.key, s.session).await;
    late.hello(&s.token).await;
    assert_eq!(late.closed().await.code, CloseCode::SessionEnded.to_u16());
}

#[tokio::test]
async fn a_shutdown_acknowledges_what_arrived_then_tells_the_agent_to_go() {
    let mut h = Harness::new(|_| {}).await;
    let s = h.consented_session(&["camera"]).await;
    let (mut agent, _) =
        Agent::connect(&h.agent_url(), &h.cert(), &s.token, &s.key, s.session).await;
    for seq in 1..=20 {
        agent.send_frame(Track::Camera, seq, b"frame").await;
    }
    agent.acked_through(Track::Camera, 20).await;
    let server = h.server.take().unwrap();
    let stopping = tokio::spawn(server.shutdown());
    let closed = agent.closed().await;
    assert_eq!(
        closed.code,
        CloseCode::ServerShuttingDown.to_u16(),
        "{closed:?}"
    );
    stopping.await.unwrap().unwrap();
    assert_eq!(
        log_of(&h, s.session, "camera").await,
        (1..=20).collect::<Vec<_>>()
    );
}
