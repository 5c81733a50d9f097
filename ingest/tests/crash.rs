//! Nothing acknowledged is lost: the server is killed with SIGKILL again and again while a
//! simulated agent streams and resumes; at the end every frame it saw acknowledged is stored
//! exactly once, in order, and opens to what was sent.
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
        let server = ingest::start(ingest::ServeConfig::local(dir.into(), 0), vault)
            .await
            .unwrap();
        println!("listening on {}", server.url());
        server.wait().await.unwrap();
    });
}

fn spawn_server(dir: &std::path::Path) -> (Child, String) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "crash_server_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("IDV_CRASH_CHILD_DIR", dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
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
    // Set the session up with an in-process server on the same data directory, then hand the
    // directory to the child servers.
    let h = Harness::new(|_| {}).await;
    let s = h.consented_session(&["camera"]).await;
    let cert = h.cert();
    let dir = h.dir.path().to_path_buf();
    let mut h = h;
    h.server.take().unwrap().shutdown().await.unwrap();

    let max_acked = Arc::new(AtomicU64::new(0));
    for round in 0..KILLS {
        let (mut child, url) = tokio::task::spawn_blocking({
            let dir = dir.clone();
            move || spawn_server(&dir)
        })
        .await
        .unwrap();
        let agent_url = format!("{}/api/v1/agent", url.replace("https://", "wss://"));
        let (agent, acked) = Agent::connect(&agent_url, &cert, &s.token, &s.key, s.session).await;
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
        child.kill().unwrap();
        child.wait().unwrap();
        sender.abort();
        let _ = reader.await;
    }

    // A last start: what was acknowledged is there, once, in order, and opens to what was sent.
    let (mut child, _) = spawn_server(&dir);
    child.kill().unwrap();
    child.wait().unwrap();
    let acked = max_acked.load(Ordering::SeqCst);
    assert!(
        acked > 100,
        "the agent got far enough to mean something ({acked} frames)"
    );
    let records = TrackLog::read_all(&dir.join(format!("spool/{}/camera.log", s.session))).unwrap();
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
        "{KILLS} kills: {acked} frames acknowledged, {} stored",
        seqs.len()
    );
}
