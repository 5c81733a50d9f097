//! Network trouble between a real agent and a real ingest server, through a fault-injecting
//! proxy: the connection is cut for 1 s, 10 s and 30 s, and the agent's address changes. The
//! agent keeps capturing into its spill buffer, reconnects, resumes from the server's
//! acknowledgement, and when the customer ends the session the server holds every frame the
//! agent sealed — none missing, none twice.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use agent::{CustomerAction, VideoSource, link::Ended};
use common::{Proxy, Server, assert_complete};
use proto::Track;
use tokio::sync::mpsc;

/// Streams through the proxy, runs `trouble` two seconds in, streams two seconds more after
/// it, ends the session and checks what the server stored.
async fn survives(trouble: impl AsyncFnOnce(&Proxy)) -> (Server, Proxy) {
    let server = Server::start().await;
    let proxy = Proxy::start(server.server.addr()).await;
    let (session, code) = server.create().await;
    let config = server.agent_config(&proxy.url(), &code, VideoSource::Test);
    let (actions, actions_rx) = mpsc::channel(4);
    let running = tokio::spawn(agent::run(config, actions_rx));

    tokio::time::sleep(Duration::from_secs(2)).await;
    trouble(&proxy).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    actions.send(CustomerAction::End).await.unwrap();
    let outcome = running.await.unwrap().unwrap();
    assert_eq!(outcome.ended, Ended::Finished);
    assert_eq!(outcome.session_id, session);
    assert_eq!(outcome.dropped, 0, "the spill buffer held everything");

    server.wait_rolled(session).await;
    let stored = server.stored(session).await;
    for track in [Track::Camera, Track::Screen] {
        let last = outcome.sealed.get(track);
        assert!(last > 10, "{} sent frames: {last}", track.name());
        let gaps = assert_complete(&stored[&track], last, track);
        assert_eq!(gaps, 0, "nothing was dropped, so no gap is declared");
    }
    (server, proxy)
}

/// Cuts the link for `how_long`; the agent must have come back through a new connection.
async fn cut_for(how_long: Duration) {
    let (_, proxy) = survives(async |proxy: &Proxy| {
        proxy.cut(how_long);
        tokio::time::sleep(how_long).await;
    })
    .await;
    let reconnected = proxy.connections_from(IpAddr::V4(Ipv4Addr::LOCALHOST));
    assert!(
        reconnected >= 2,
        "the agent reconnected ({reconnected} connections)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_one_second_cut_loses_nothing() {
    cut_for(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_ten_second_cut_loses_nothing() {
    cut_for(Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thirty_second_cut_loses_nothing() {
    cut_for(Duration::from_secs(30)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_local_address_resumes_like_a_reconnect() {
    let other = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    let (_, proxy) = survives(async |proxy: &Proxy| {
        proxy.switch_source(other);
        tokio::time::sleep(Duration::from_secs(1)).await;
    })
    .await;
    assert!(
        proxy.connections_from(other) >= 1,
        "resumed from the new address"
    );
}
