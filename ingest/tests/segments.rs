//! When a session ends its track logs roll into the blob store as recorded segments, so a
//! mux worker on any node can read them, and leave the local spool; a session that ended just
//! before a crash is rolled (and its mux job queued) at the next start.

mod common;

use common::Harness;
use proto::Track;
use storage::db::{MediaTrack, SessionState};
use storage::track_log::Records;

async fn stream(h: &Harness, joined: &common::Joined, frames: u64) {
    let (mut agent, _) = h.agent(joined).await;
    for seq in 1..=frames {
        agent
            .send_frame(Track::Camera, seq, format!("frame {seq}").as_bytes())
            .await;
    }
    agent.acked_through(Track::Camera, frames).await;
}

/// The seqs in the blob-stored segment at `location`, each opening under the session key.
async fn segment_seqs(h: &Harness, joined: &common::Joined, location: &str) -> Vec<u64> {
    let key = location.strip_prefix("blob:").unwrap();
    let size = h.vault.blobs().size(key).await.unwrap();
    let bytes = h.vault.blobs().get_range(key, 0..size).await.unwrap();
    let cipher = proto::SessionCipher::new(&joined.key, joined.session);
    Records::from_reader(key, std::io::Cursor::new(bytes.to_vec()))
        .map(|r| {
            let r = r.unwrap();
            let (header, plain) = cipher.open(&r.frame, 1 << 20).unwrap();
            assert_eq!(plain, format!("frame {}", header.seq).as_bytes());
            r.seq
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ended_session_rolls_into_the_blob_store_and_leaves_the_spool() {
    let h = Harness::new(|_| {}).await;
    let joined = h.consented_session(&["camera", "recording"]).await;
    stream(&h, &joined, 40).await;
    let spool = h.dir.path().join(format!("spool/{}", joined.session));
    assert!(spool.join("camera.log").exists());

    h.end(joined.session).await;

    assert!(!spool.exists(), "the spool is emptied once rolled");
    let segments = h.vault.db().segments(joined.session, None).await.unwrap();
    assert_eq!(segments.len(), 1, "{segments:?}");
    let camera = &segments[0];
    assert_eq!(camera.track, MediaTrack::Camera);
    assert_eq!(
        (camera.first_seq, camera.last_seq, camera.index),
        (1, 40, 0)
    );
    assert!(camera.first_ts < camera.last_ts);
    assert_eq!(
        segment_seqs(&h, &joined, &camera.location).await,
        (1..=40).collect::<Vec<_>>()
    );
    assert!(
        h.vault
            .db()
            .mux_job_for_session(joined.session)
            .await
            .unwrap()
            .is_some(),
        "queued after the roll"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_that_ended_before_a_crash_is_rolled_at_the_next_start() {
    let mut h = Harness::new(|_| {}).await;
    let joined = h.consented_session(&["camera", "recording"]).await;
    stream(&h, &joined, 25).await;
    // The session is marked ended, then the process dies before rolling or queuing.
    h.vault
        .db()
        .transition_session(
            joined.session,
            &[SessionState::Live, SessionState::Consented],
            SessionState::Ended,
            time::OffsetDateTime::now_utc(),
            Some("ended by the operator"),
        )
        .await
        .unwrap();
    h.server.take().unwrap().shutdown().await.unwrap();
    let spool = h.dir.path().join(format!("spool/{}", joined.session));
    assert!(spool.join("camera.log").exists());

    let restarted = ingest::start(
        ingest::ServeConfig::local(h.dir.path().to_path_buf(), 0),
        h.vault.clone(),
    )
    .await
    .unwrap();
    assert!(!spool.exists());
    let segments = h.vault.db().segments(joined.session, None).await.unwrap();
    assert_eq!(segments.len(), 1);
    assert_eq!(
        segment_seqs(&h, &joined, &segments[0].location).await,
        (1..=25).collect::<Vec<_>>()
    );
    assert!(
        h.vault
            .db()
            .mux_job_for_session(joined.session)
            .await
            .unwrap()
            .is_some()
    );
    restarted.shutdown().await.unwrap();
}
