//! Nothing acknowledged is lost: the server is killed with SIGKILL again and again while a
//! simulated agent streams and resumes; at the end every frame it saw acknowledged is stored
//! exactly once, in order, and opens to what was sent. Once with checkpoints of the journal
//! every few milliseconds (kills land before, during and after them), once with the track
//! logs' unsynced part garbled after each kill, as a power loss could leave it: what the agent
//! saw acknowledged must come back from the journal alone.
//!
//! The server runs in a child process — this same test binary, re-run with
//! `IDV_CRASH_CHILD_DIR` set, serving until it is killed.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::{Agent, Harness};
use futures::{SinkExt, StreamExt};
use proto::{ServerControl, Track};
use storage::track_log::TrackLog;
use tokio_tungstenite::tungstenite::Message;

const KILLS: usize = 24;
/// Rounds of the power-loss variant.
const LOSSES: usize = 12;

/// Not a test on its own: the server process of `acknowledged_frames_survive_sigkill`.
#[test]
fn crash_server_child() {
    let Ok(dir) = std::env::var("IDV_CRASH_CHILD_DIR") else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let vault = storage::Vault::open(&storage::StorageConfig::embedded(&dir))
            .await
            .unwrap();
        let mut config = ingest::ServeConfig::local(dir.into(), 0);
        let every = std::env::var("IDV_CRASH_CHECKPOINT_MS").unwrap();
        config.checkpoint_every = Duration::from_millis(every.parse().unwrap());
        let segment = std::env::var("IDV_CRASH_SEGMENT_BYTES").unwrap();
        config.segments.max_bytes = segment.parse().unwrap();
        let server = ingest::start(config, vault).await.unwrap();
        println!("listening on {}", server.url());
        server.wait().await.unwrap();
    });
}

/// A child server, killed when dropped (also when an assertion fails mid-round, so no server is
/// left holding the data directory).
struct ChildServer(Child);

impl ChildServer {
    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// How a round's server runs.
#[derive(Clone, Copy)]
struct Settings {
    checkpoint_ms: u64,
    /// Track logs this large are rolled into the blob store mid-session.
    segment_bytes: u64,
}

/// Segments never roll mid-session: the camera's frames all stay in its first log.
const ONE_SEGMENT: u64 = u64::MAX;

fn spawn_server(dir: &std::path::Path, settings: Settings) -> (ChildServer, String) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "crash_server_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("IDV_CRASH_CHILD_DIR", dir)
        .env(
            "IDV_CRASH_CHECKPOINT_MS",
            settings.checkpoint_ms.to_string(),
        )
        .env(
            "IDV_CRASH_SEGMENT_BYTES",
            settings.segment_bytes.to_string(),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let child = ChildServer(child);
    let url = loop {
        let line = lines
            .next()
            .expect("the child prints where it listens")
            .unwrap();
        // libtest may have printed "test crash_server_child ... " on the same line.
        if let Some((_, url)) = line.split_once("listening on ") {
            break url.trim().to_owned();
        }
    };
    (child, url)
}

fn payload(seq: u64) -> Vec<u8> {
    let mut p = seq.to_le_bytes().repeat(512); // 4 KiB, different for every frame
    p.truncate(4096);
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_frames_survive_sigkill() {
    let settings = Settings {
        checkpoint_ms: 20,
        segment_bytes: ONE_SEGMENT,
    };
    crash_again_and_again(KILLS, settings, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_frames_survive_sigkill_while_segments_roll() {
    // 64 frames a segment: kills land before, during and after logs are closed, rolled into
    // the blob store and removed, and the journal's replay may write a rolled log again.
    let settings = Settings {
        checkpoint_ms: 20,
        segment_bytes: 64 * 4200,
    };
    crash_again_and_again(KILLS / 2, settings, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_frames_survive_losing_what_the_logs_had_not_synced() {
    // No checkpoint during a round: what the log held at `welcome` (synced when the server
    // opened it) is all of it that is surely on disk.
    let settings = Settings {
        checkpoint_ms: 3_600_000,
        segment_bytes: ONE_SEGMENT,
    };
    crash_again_and_again(LOSSES, settings, true).await;
}

/// Kills the server `kills` times while an agent streams; with `garble`, the camera log's
/// bytes past what was synced when the agent connected are overwritten after each kill.
async fn crash_again_and_again(kills: usize, settings: Settings, garble: bool) {
    // Set the session up with an in-process server on the same data directory, then hand the
    // directory to the child servers.
    let h = Harness::new(|_| {}).await;
    let s = h.consented_session(&["camera"]).await;
    let cert = h.cert();
    let dir = h.dir.path().to_path_buf();
    let mut h = h;
    h.server.take().unwrap().shutdown().await.unwrap();

    let log = dir.join(format!("spool/{}/camera-000000.log", s.session));
    let max_acked = Arc::new(AtomicU64::new(0));
    let mut garbled = 0;
    for round in 0..kills {
        let (mut child, url) = tokio::task::spawn_blocking({
            let dir = dir.clone();
            move || spawn_server(&dir, settings)
        })
        .await
        .unwrap();
        let agent_url = format!("{}/api/v1/agent", url.replace("https://", "wss://"));
        let (agent, acked) = Agent::connect(&agent_url, &cert, &s.token, &s.key, s.session).await;
        let synced = std::fs::metadata(&log).map_or(0, |m| m.len());
        let durable = acked.get(Track::Camera);
        let seen = max_acked.load(Ordering::SeqCst);
        assert!(
            durable >= seen,
            "round {round}: the server acknowledged {seen} but after the crash has only {durable}"
        );
        // Resume from what the server says is durable, sending as fast as it goes.
        let cipher = proto::SessionCipher::new(&s.key, s.session);
        let (mut tx, mut rx) = agent.ws.split();
        let sender = tokio::spawn(async move {
            let mut seq = durable + 1;
            loop {
                let header = proto::FrameHeader::new(Track::Camera, seq, seq as i64 * 33_333_333);
                let bytes = cipher.seal(&header, &payload(seq)).unwrap();
                if tx.send(Message::Binary(bytes.into())).await.is_err() {
                    return;
                }
                seq += 1;
                if seq % 8 == 0 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        });
        let acks = Arc::clone(&max_acked);
        let reader = tokio::spawn(async move {
            while let Some(Ok(Message::Text(text))) = rx.next().await {
                if let Ok(ServerControl::Ack {
                    track: Track::Camera,
                    seq,
                }) = ServerControl::from_json(&text)
                {
                    acks.fetch_max(seq, Ordering::SeqCst);
                }
            }
        });
        // Kill at a different moment every round.
        tokio::time::sleep(Duration::from_millis(40 + (round as u64 * 37) % 160)).await;
        child.kill();
        sender.abort();
        let _ = reader.await;
        // Only past records the journal has (one acknowledged in this round): what the log
        // got in the batch before the kill is not journaled yet, and garbage where no journaled
        // record follows would be damage no crash leaves (a power loss leaves zeros or nothing).
        if garble && max_acked.load(Ordering::SeqCst) > durable {
            garble_after(&log, synced);
            garbled += 1;
        }
    }

    // A last start: what was acknowledged is there, once, in order, and opens to what was sent.
    let (mut child, _) = spawn_server(&dir, settings);
    child.kill();
    let acked = max_acked.load(Ordering::SeqCst);
    assert!(
        acked > 100,
        "the agent got far enough to mean something ({acked} frames)"
    );
    let (records, segments) = if settings.segment_bytes == ONE_SEGMENT {
        (TrackLog::read_all(&log).unwrap(), 1)
    } else {
        camera_records(&h, &dir, s.session).await
    };
    if settings.segment_bytes != ONE_SEGMENT {
        assert!(segments > 3, "the camera's frames span {segments} segments");
    }
    let seqs: Vec<u64> = records.iter().map(|r| r.seq).collect();
    assert!(
        seqs.len() as u64 >= acked,
        "{} stored < {acked} acknowledged",
        seqs.len()
    );
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "no hole, no duplicate"
    );
    let cipher = proto::SessionCipher::new(&s.key, s.session);
    for r in &records {
        let (header, plaintext) = cipher.open(&r.frame, 1 << 20).unwrap();
        assert_eq!((header.seq, plaintext), (r.seq, payload(r.seq)));
    }
    println!(
        "{kills} kills ({garbled} with the logs' unsynced part garbled): {acked} frames \
         acknowledged, {} stored in {segments} segment(s)",
        seqs.len()
    );
    if garble {
        assert!(garbled >= kills / 2, "only {garbled} rounds lost something");
    }
}

/// The camera's records: from its segments in the blob store, then from the logs still in the
/// spool after them; and how many segments and logs held them.
async fn camera_records(
    h: &Harness,
    dir: &std::path::Path,
    session: uuid::Uuid,
) -> (Vec<storage::track_log::Record>, usize) {
    let stored = h
        .vault
        .db()
        .segments(session, Some(storage::db::MediaTrack::Camera))
        .await
        .unwrap();
    let mut records = Vec::new();
    for segment in &stored {
        let key = segment.location.strip_prefix("blob:").unwrap();
        let size = h.vault.blobs().size(key).await.unwrap();
        let bytes = h.vault.blobs().get_range(key, 0..size).await.unwrap();
        let read: Vec<_> =
            storage::track_log::Records::from_reader(key, std::io::Cursor::new(bytes.to_vec()))
                .map(Result::unwrap)
                .collect();
        assert_eq!(
            (read.first().unwrap().seq, read.last().unwrap().seq),
            (segment.first_seq, segment.last_seq),
            "segment {} holds what its row says",
            segment.index
        );
        records.extend(read);
    }
    let after = stored.last().map(|s| s.index);
    let local = storage::spool::local_logs(&dir.join("spool"), session, "camera").unwrap();
    let unrolled: Vec<_> = local
        .iter()
        .filter(|l| after.is_none_or(|a| l.index > a))
        .collect();
    for log in &unrolled {
        records.extend(TrackLog::read_all(&log.path).unwrap());
    }
    (records, stored.len() + unrolled.len())
}

/// What a power loss may leave of a file's unsynced part: some of it, then garbage (here all
/// of it garbage, and some more).
fn garble_after(path: &std::path::Path, synced: u64) {
    let mut bytes = std::fs::read(path).unwrap();
    let synced = usize::try_from(synced).unwrap().min(bytes.len());
    for (i, b) in bytes[synced..].iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(31) ^ 0x5a;
    }
    bytes.extend_from_slice(&[0; 4096]);
    std::fs::write(path, bytes).unwrap();
}
