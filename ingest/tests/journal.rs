//! The group commit as a user of the server sees it: many agents' frames acknowledged through
//! one journal, checkpoints that keep it short while agents stream, a clean shutdown that
//! leaves nothing to replay, and one server per data directory. (Crashes: `crash.rs`.)

mod common;

use std::time::Duration;

use common::Harness;
use proto::Track;
use storage::track_log::TrackLog;

/// The journal generations on disk.
fn generations(h: &Harness) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(h.dir.path().join("journal"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".journal"))
        .collect();
    names.sort();
    names
}

async fn metric(h: &Harness, name: &str) -> u64 {
    let text = h
        .http
        .get(format!("{}/metrics", h.server().url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_streaming_together_share_syncs_and_checkpoints_keep_the_journal_short() {
    let mut h = Harness::new(|c| c.checkpoint_every = Duration::from_millis(30)).await;
    let mut sessions = Vec::new();
    for _ in 0..6 {
        sessions.push(h.consented_session(&["camera", "screen"]).await);
    }
    let mut agents = Vec::new();
    for joined in &sessions {
        agents.push(h.agent(joined).await.0);
    }
    const FRAMES: u64 = 60;
    for seq in 1..=FRAMES {
        for agent in &mut agents {
            agent
                .send_frame(Track::Camera, seq, format!("camera {seq}").as_bytes())
                .await;
            if seq % 3 == 0 {
                agent
                    .send_frame(Track::Screen, seq / 3, format!("screen {seq}").as_bytes())
                    .await;
            }
        }
        if seq % 10 == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    for agent in &mut agents {
        agent.acked_through(Track::Camera, FRAMES).await;
        agent.acked_through(Track::Screen, FRAMES / 3).await;
    }
    let syncs = metric(&h, "idv_journal_syncs_total").await;
    let frames = metric(&h, "idv_frames_acknowledged_total").await;
    assert_eq!(frames, 6 * (FRAMES + FRAMES / 3));
    assert!(
        syncs > 0 && syncs < frames,
        "{syncs} syncs for {frames} frames"
    );
    assert!(metric(&h, "idv_journal_checkpoints_total").await > 0);
    assert!(
        generations(&h).len() <= 2,
        "a checkpoint removes what it covered: {:?}",
        generations(&h)
    );
    h.settle().await;
    for joined in &sessions {
        let log = h
            .dir
            .path()
            .join(format!("spool/{}/camera-000000.log", joined.session));
        let seqs: Vec<u64> = TrackLog::read_all(&log)
            .unwrap()
            .iter()
            .map(|r| r.seq)
            .collect();
        assert_eq!(seqs, (1..=FRAMES).collect::<Vec<_>>());
    }

    // A clean stop checkpoints everything: nothing is left to replay.
    drop(agents);
    h.server.take().unwrap().shutdown().await.unwrap();
    assert_eq!(generations(&h), Vec::<String>::new());
}

/// The seqs in a log's file as it is on disk now (a torn last record, mid-write, is not one).
fn on_disk(path: &std::path::Path) -> Vec<u64> {
    storage::track_log::Records::open(path)
        .map(|records| records.map_while(Result::ok).map(|r| r.seq).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_frames_reach_their_logs_in_the_background_a_log_at_a_time() {
    let h = Harness::new(|c| c.apply_interval = Duration::from_millis(200)).await;
    let joined = h.consented_session(&["camera"]).await;
    let (mut agent, _) = h.agent(&joined).await;
    const FRAMES: u64 = 90;
    for seq in 1..=FRAMES {
        agent
            .send_frame(Track::Camera, seq, format!("frame {seq}").as_bytes())
            .await;
        if seq % 10 == 0 {
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    }
    agent.acked_through(Track::Camera, FRAMES).await;
    // No settle: the applier's rounds write them on their own, within a round or two.
    let log = h
        .dir
        .path()
        .join(format!("spool/{}/camera-000000.log", joined.session));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while on_disk(&log).len() < FRAMES as usize {
        assert!(
            std::time::Instant::now() < deadline,
            "acknowledged frames never reached the log: {:?}",
            on_disk(&log)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(on_disk(&log), (1..=FRAMES).collect::<Vec<_>>());
    assert!(metric(&h, "idv_journal_applied_records_total").await >= FRAMES);
    // Written a round at a time, not a frame at a time.
    let rounds = metric(&h, "idv_journal_apply_seconds_count").await;
    assert!(
        (1..FRAMES / 3).contains(&rounds),
        "{rounds} rounds for {FRAMES} frames"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_on_the_same_data_directory_is_refused() {
    let h = Harness::new(|_| {}).await;
    let second = ingest::start(
        ingest::ServeConfig::local(h.dir.path().to_path_buf(), 0),
        h.vault.clone(),
    )
    .await;
    let Err(err) = second else {
        panic!("two servers on one data directory");
    };
    assert!(
        err.to_string().contains("another server is running"),
        "{err}"
    );
}
