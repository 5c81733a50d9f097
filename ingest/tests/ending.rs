//! A session ends by the operator, by the customer (the agent's `close` 4004) or by timeout
//! (an unredeemed code expires; no agent connected for the idle time) — each audited with its
//! actor, and each followed the same way: logs rolled, mux job queued when anything was
//! recorded, watchers told.

mod common;

use std::time::Duration;

use common::{Agent, Harness};
use proto::{AgentControl, Close, CloseCode, Track};
use storage::db::SessionState;

async fn state_of(h: &Harness, session: uuid::Uuid) -> (SessionState, Option<String>) {
    let record = h.vault.db().session(session).await.unwrap().unwrap();
    (record.state, record.end_reason)
}

async fn end_actor(h: &Harness, session: uuid::Uuid) -> Option<String> {
    h.vault
        .audit()
        .latest(100)
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.action == "session.end" && e.object == format!("session:{session}"))
        .map(|e| e.actor)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_customer_ends_the_session_from_the_agent() {
    let h = Harness::new(|_| {}).await;
    let joined = h.consented_session(&["camera", "recording"]).await;
    let (mut agent, _) = h.agent(&joined).await;
    for seq in 1..=5 {
        agent.send_frame(Track::Camera, seq, b"frame").await;
    }
    agent.acked_through(Track::Camera, 5).await;
    let bye = AgentControl::Close(Close::new(CloseCode::SessionEnded, "customer pressed end"));
    agent.send_text(bye.to_json()).await;
    let closed = agent.closed().await;
    assert_eq!(closed.code, 4004, "{closed:?}");

    let mut waited = 0;
    while h
        .vault
        .db()
        .mux_job_for_session(joined.session)
        .await
        .unwrap()
        .is_none()
    {
        assert!(waited < 200, "no mux job after the customer ended");
        tokio::time::sleep(Duration::from_millis(20)).await;
        waited += 1;
    }
    assert_eq!(
        state_of(&h, joined.session).await,
        (SessionState::Ended, Some("ended by the customer".into()))
    );
    assert_eq!(
        end_actor(&h, joined.session).await.as_deref(),
        Some("customer")
    );
    let segments = h.vault.db().segments(joined.session, None).await.unwrap();
    assert_eq!(segments.len(), 1, "rolled: {segments:?}");
    // The token no longer opens anything.
    let mut again =
        Agent::connect_raw(&h.agent_url(), &h.cert(), &joined.key, joined.session).await;
    again.hello(&joined.token).await;
    assert_eq!(again.closed().await.code, 4004);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_time_out_when_idle_or_never_joined() {
    let h = Harness::new(|c| {
        c.session_idle = Duration::from_millis(800);
        c.code_ttl = Duration::from_millis(800);
    })
    .await;
    // Never redeemed.
    let created = h.create().await;
    let unjoined = uuid::Uuid::parse_str(created["session_id"].as_str().unwrap()).unwrap();
    // Joined, streamed, then the agent went away.
    let idle = h.consented_session(&["camera", "recording"]).await;
    {
        let (mut agent, _) = h.agent(&idle).await;
        agent.send_frame(Track::Camera, 1, b"frame").await;
        agent.acked_through(Track::Camera, 1).await;
    }
    // Joined and still connected: it stays open however long.
    let busy = h.consented_session(&["camera", "recording"]).await;
    let (mut busy_agent, _) = h.agent(&busy).await;

    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        state_of(&h, unjoined).await,
        (
            SessionState::Ended,
            Some("timeout: the code was never redeemed".into())
        )
    );
    assert!(
        h.vault
            .db()
            .mux_job_for_session(unjoined)
            .await
            .unwrap()
            .is_none(),
        "nothing recorded, nothing to mux"
    );
    assert_eq!(
        state_of(&h, idle.session).await,
        (
            SessionState::Ended,
            Some("timeout: no agent connected".into())
        )
    );
    assert_eq!(
        end_actor(&h, idle.session).await.as_deref(),
        Some("system:timeout")
    );
    assert!(
        h.vault
            .db()
            .mux_job_for_session(idle.session)
            .await
            .unwrap()
            .is_some()
    );
    assert_ne!(state_of(&h, busy.session).await.0, SessionState::Ended);
    busy_agent.send_frame(Track::Camera, 1, b"still here").await;
    busy_agent.acked_through(Track::Camera, 1).await;
}
