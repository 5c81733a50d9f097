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
    assert!(spool.join("camera-000000.log").exists());

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
    assert!(spool.join("camera-000000.log").exists());

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

/// Every seq in the session's recorded segments of `track`, in index order, checking each
/// row against what its segment holds.
async fn recorded_seqs(h: &Harness, joined: &common::Joined, track: MediaTrack) -> Vec<u64> {
    let segments = h
        .vault
        .db()
        .segments(joined.session, Some(track))
        .await
        .unwrap();
    let mut seqs = Vec::new();
    for (i, segment) in segments.iter().enumerate() {
        assert_eq!(
            segment.index, i as u64,
            "segments are numbered from 0 without a hole"
        );
        let held = segment_seqs(h, joined, &segment.location).await;
        assert_eq!(
            (held[0], *held.last().unwrap()),
            (segment.first_seq, segment.last_seq)
        );
        seqs.extend(held);
    }
    seqs
}

/// Waits (up to 10 s) until `track` has at least `n` recorded segments; returns how many.
async fn wait_for_segments(
    h: &Harness,
    joined: &common::Joined,
    track: MediaTrack,
    n: usize,
) -> usize {
    for _ in 0..200 {
        let count = h
            .vault
            .db()
            .segments(joined.session, Some(track))
            .await
            .unwrap()
            .len();
        if count >= n {
            return count;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("fewer than {n} segments rolled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_session_rolls_its_full_logs_into_the_blob_store() {
    // ~48 small frames to a 4 KiB segment.
    let h = Harness::new(|c| c.segments.max_bytes = 4 << 10).await;
    let joined = h.consented_session(&["camera", "recording"]).await;
    // A log is closed after the batch that filled it: 20 frames a batch here.
    let (mut agent, _) = h.agent(&joined).await;
    for seq in 1..=200 {
        agent
            .send_frame(Track::Camera, seq, format!("frame {seq}").as_bytes())
            .await;
        if seq % 20 == 0 {
            agent.acked_through(Track::Camera, seq).await;
        }
    }
    drop(agent);

    // Rolled while the session runs: the spool keeps only what is not rolled yet. (A log is
    // closed after the batch that takes it past 4 KiB: 16 KB of frames close at least two.)
    let rolled = wait_for_segments(&h, &joined, MediaTrack::Camera, 2).await;
    let seqs = recorded_seqs(&h, &joined, MediaTrack::Camera).await;
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    let spool = h.dir.path().join("spool");
    let local = storage::spool::local_logs(&spool, joined.session, "camera").unwrap();
    assert!(
        local.iter().all(|l| l.index >= rolled as u64),
        "rolled logs leave the spool: {local:?}"
    );

    // A reconnecting agent is told where the track stands and goes on from there; resends
    // of rolled frames are acknowledged and not stored again.
    let (mut agent, acked) = h.agent(&joined).await;
    assert_eq!(acked.get(Track::Camera), 200);
    for seq in (190..=260).chain([5]) {
        agent
            .send_frame(Track::Camera, seq, format!("frame {seq}").as_bytes())
            .await;
        if seq % 20 == 0 {
            agent.acked_through(Track::Camera, seq).await;
        }
    }
    agent.acked_through(Track::Camera, 260).await;
    drop(agent);

    // A restart rolls what a crash could have left closed, and the session goes on.
    let mut h = h;
    let config = ingest::ServeConfig {
        segments: ingest::SegmentPolicy {
            max_bytes: 4 << 10,
            ..ingest::SegmentPolicy::default()
        },
        ..ingest::ServeConfig::local(h.dir.path().to_path_buf(), 0)
    };
    h.server.take().unwrap().shutdown().await.unwrap();
    h.server = Some(ingest::start(config, h.vault.clone()).await.unwrap());
    let (mut agent, acked) = h.agent(&joined).await;
    assert_eq!(acked.get(Track::Camera), 260);
    for seq in 261..=300 {
        agent
            .send_frame(Track::Camera, seq, format!("frame {seq}").as_bytes())
            .await;
        if seq % 20 == 0 {
            agent.acked_through(Track::Camera, seq).await;
        }
    }
    drop(agent);

    h.end(joined.session).await;
    assert!(!spool.join(joined.session.to_string()).exists());
    let seqs = recorded_seqs(&h, &joined, MediaTrack::Camera).await;
    assert_eq!(
        seqs,
        (1..=300).collect::<Vec<_>>(),
        "every frame once, in order"
    );
    let segments = h.vault.db().segments(joined.session, None).await.unwrap();
    println!("300 frames in {} camera segments", segments.len());
    // 24 KB of frames in logs of 4 to 5.6 KiB.
    assert!(segments.len() >= 4, "{} segments", segments.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_is_rolled_once_it_is_old_enough() {
    let h = Harness::new(|c| c.segments.max_age = std::time::Duration::from_millis(100)).await;
    let joined = h.consented_session(&["camera", "recording"]).await;
    let (mut agent, _) = h.agent(&joined).await;
    for seq in 1..=4 {
        agent
            .send_frame(Track::Camera, seq, format!("frame {seq}").as_bytes())
            .await;
        agent.acked_through(Track::Camera, seq).await;
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    }
    // The first log got frames 1 and 2 (it was young at 1); from then on every frame went to
    // a log old enough to be closed after it.
    wait_for_segments(&h, &joined, MediaTrack::Camera, 3).await;
    drop(agent);
    h.end(joined.session).await;
    assert_eq!(
        recorded_seqs(&h, &joined, MediaTrack::Camera).await,
        [1, 2, 3, 4]
    );
    let segments = h
        .vault
        .db()
        .segments(joined.session, Some(MediaTrack::Camera))
        .await
        .unwrap();
    let held: Vec<_> = segments.iter().map(|s| (s.first_seq, s.last_seq)).collect();
    assert_eq!(held, [(1, 2), (3, 3), (4, 4)]);
}
