//! The mux worker over a session as ingest stores it (SQLite + local blobs): sealed track logs
//! stamped on an agent clock with an arbitrary origin and a 300 ppm skew, the clock-sync
//! exchanges, a CTI recording sealed in the blob store. The worker claims the job, muxes in
//! sync, seals into the blob store, records the archive on the job — once, whatever crashes,
//! stolen leases or shutdowns happen — and leaves no plaintext on disk. Screenshots stand in
//! for a screen track the session does not have, and only then. The agent's microphone
//! reference (sealed Opus packets) corrects a call record that is late; a broken or useless
//! one leaves the call record as it is, and the recording is made all the same.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use fixtures::media::{
    CameraClip, CtiEncoding, CtiRecording, Screenshot, Voice, h264_access_units,
    measure_with_ffmpeg,
};
use muxer::timeline::UtcNanos;
use muxer::worker::{JobOutcome, Worker, WorkerConfig};
use proto::{FrameFlags, FrameHeader, SessionCipher, SessionKey, Track};
use storage::archive::FileKey;
use storage::db::{ClockSample, CtiRecording as CtiRow, MuxJobState, NewSession};
use storage::keyring::FileKeyring;
use storage::track_log::TrackLog;
use storage::{Access, Vault};
use time::OffsetDateTime;
use tokio::sync::watch;
use uuid::Uuid;

const FPS: u32 = 30;
/// The agent's monotonic clock reads this at the camera's first frame.
const AGENT_ORIGIN_NS: i64 = 987_654_321_000;
/// The agent clock runs this much slow against UTC.
const SKEW_PPM: f64 = 300.0;
/// The CTI call starts this long before the camera.
const CTI_LEAD_S: f64 = 0.5;
const FLASH_FRAMES: [u32; 2] = [30, 105];

struct Stored {
    dir: tempfile::TempDir,
    vault: Vault,
    session: Uuid,
    /// When the camera's first frame was captured (UTC).
    camera_start: UtcNanos,
    /// The session media key the logs are sealed under.
    key: SessionKey,
    /// The camera log's frames: agent clock, keyframe, payload.
    camera_frames: Vec<(i64, bool, Vec<u8>)>,
}

fn data_dir(stored: &Stored) -> &Path {
    stored.dir.path()
}

/// The agent clock at UTC `t` (the camera's start is the origin of both).
fn agent_clock(camera_start: UtcNanos, t: UtcNanos) -> i64 {
    let since = (t.0 - camera_start.0) as f64;
    AGENT_ORIGIN_NS + (since * (1.0 - SKEW_PPM * 1e-6)).round() as i64
}

async fn vault(dir: &Path) -> Vault {
    let keyring = Arc::new(FileKeyring::open(dir).unwrap());
    let db = storage::db::MetadataDb::open(dir, None).await.unwrap();
    let blobs = storage::blob::BlobStore::open(dir, None).unwrap();
    Vault::from_parts(keyring, db, blobs)
}

/// Frames for the camera log: the clip's access units, or `garbage` instead.
enum Camera {
    Clip,
    Garbage,
}

/// A session as ingest leaves it when it ended; its mux job queued.
async fn stored_session(camera: Camera, with_cti: bool) -> Stored {
    let dir = tempfile::tempdir().unwrap();
    let vault = vault(dir.path()).await;
    let session = Uuid::new_v4();
    let now = OffsetDateTime::now_utc();
    let camera_start = UtcNanos::from_datetime(now)
        .unwrap()
        .plus(-20 * UtcNanos::SECOND);

    let media_key = FileKey::generate();
    let wrapped = vault
        .wrap_session_media_key(session, &media_key)
        .await
        .unwrap();
    vault
        .db()
        .create_session(&NewSession {
            case_reference: None,
            session_id: session,
            group: "branch-7".into(),
            created_by: "operator-1".into(),
            created_at: now,
            wrapped_media_key: wrapped,
        })
        .await
        .unwrap();

    // Clock sync: an exchange every second over 6 s, 0.4 ms each way, 0.1 ms in the server.
    let samples: Vec<ClockSample> = (0..7)
        .map(|i| {
            let sent = camera_start.plus(i * UtcNanos::SECOND);
            let received = sent.plus(400_000);
            let answered = received.plus(100_000);
            let back = answered.plus(400_000);
            ClockSample {
                t1: agent_clock(camera_start, sent),
                t2: received.0,
                t3: answered.0,
                t4: agent_clock(camera_start, back),
            }
        })
        .collect();
    vault
        .db()
        .insert_clock_samples(session, &samples)
        .await
        .unwrap();

    // The camera log, frames sealed as the agent sends them.
    let clip_path = dir.path().join("fixture-camera.mp4");
    let frames: Vec<(i64, bool, Vec<u8>)> = match camera {
        Camera::Clip => {
            CameraClip {
                frames: 150,
                fps: FPS,
                width: 320,
                height: 240,
                flash_frames: FLASH_FRAMES.to_vec(),
                ..CameraClip::default()
            }
            .write(&clip_path)
            .unwrap();
            let units = h264_access_units(&clip_path).unwrap();
            std::fs::remove_file(&clip_path).unwrap();
            units
                .into_iter()
                .map(|u| {
                    let at = camera_start.plus(u.pts.as_nanos() as i64);
                    (agent_clock(camera_start, at), u.keyframe, u.data)
                })
                .collect()
        }
        Camera::Garbage => (0..30)
            .map(|i| {
                let at = camera_start.plus(i * 33_333_333);
                (agent_clock(camera_start, at), i == 0, vec![0x5a; 900])
            })
            .collect(),
    };
    let key = SessionKey::from_bytes(*media_key.expose());
    write_track_log(dir.path(), session, &key, Track::Camera, &frames);

    // The CTI recording: beeps where the flashes are, on the call's own clock; sealed.
    if with_cti {
        let cti_start = camera_start.plus(-(CTI_LEAD_S * 1e9) as i64);
        let beeps = FLASH_FRAMES
            .iter()
            .map(|&f| Duration::from_secs_f64(CTI_LEAD_S + f64::from(f) / f64::from(FPS)))
            .collect();
        let wav = dir.path().join("fixture-cti.wav");
        let truth = CtiRecording {
            duration: Duration::from_secs(6),
            beeps,
            ..CtiRecording::default()
        }
        .write(&wav)
        .unwrap();
        let bytes = std::fs::read(&wav).unwrap();
        std::fs::remove_file(&wav).unwrap();
        let recording_id = Uuid::new_v4();
        let blob_key = format!("cti/{recording_id}.idvr");
        let record = vault
            .seal_to_blob(
                bytes.as_slice(),
                &blob_key,
                serde_json::json!({ "kind": "cti" }),
                &Access::new("cti:test", None),
            )
            .await
            .unwrap();
        vault
            .db()
            .insert_cti_recording(&CtiRow {
                recording_id,
                call_id: "call-4711".into(),
                session_id: Some(session),
                correlation_key: None,
                started_at: cti_start.to_datetime(),
                ended_at: Some(
                    cti_start
                        .plus(truth.true_duration.as_nanos() as i64)
                        .to_datetime(),
                ),
                location: record.location.clone(),
                archive_id: Some(record.archive_id),
                received_at: now,
            })
            .await
            .unwrap();
    }
    vault
        .db()
        .enqueue_mux_job(session, !with_cti, now)
        .await
        .unwrap();
    Stored {
        dir,
        vault,
        session,
        camera_start,
        key,
        camera_frames: frames,
    }
}

/// Seals `frames` (agent clock, keyframe, payload) as the agent sends them into the session's
/// log of `track`, as ingest stores them.
fn write_track_log(
    data_dir: &Path,
    session: Uuid,
    key: &SessionKey,
    track: Track,
    frames: &[(i64, bool, Vec<u8>)],
) {
    let cipher = SessionCipher::new(key, session);
    let log_path = data_dir
        .join("spool")
        .join(session.to_string())
        .join(format!("{}-000000.log", track.name()));
    let mut log = TrackLog::open(&log_path).unwrap();
    for (i, (captured, keyframe, data)) in frames.iter().enumerate() {
        let seq = i as u64 + 1;
        let flags = if *keyframe {
            FrameFlags::KEYFRAME
        } else {
            FrameFlags::NONE
        };
        let header = FrameHeader::new(track, seq, *captured).with_flags(flags);
        log.append(seq, *captured, &cipher.seal(&header, data).unwrap())
            .unwrap();
    }
    log.sync().unwrap();
}

/// The bright screenshot, seconds after the camera's start (between two output frames).
const BRIGHT_SHOT_S: f64 = 2.45;
/// The first screenshot, seconds after the camera's start: the cut's in point.
const FIRST_SHOT_S: f64 = 0.3;

/// Stores screenshots (JPEGs, every one a keyframe) at 0.3 s, 2.45 s (bright) and 4.6 s of the
/// camera's 5 s, on the agent's clock.
fn store_screenshots(stored: &Stored) {
    let shots: Vec<(i64, bool, Vec<u8>)> =
        [(FIRST_SHOT_S, false), (BRIGHT_SHOT_S, true), (4.6, false)]
            .into_iter()
            .enumerate()
            .map(|(i, (s, bright))| {
                let jpeg = Screenshot {
                    width: 320,
                    height: 240,
                    bright,
                    seed: i as u32,
                }
                .jpeg()
                .unwrap();
                let at = stored.camera_start.plus((s * 1e9) as i64);
                (agent_clock(stored.camera_start, at), true, jpeg)
            })
            .collect();
    write_track_log(
        data_dir(stored),
        stored.session,
        &stored.key,
        Track::Screenshot,
        &shots,
    );
}

fn worker(stored: &Stored, id: &str, lease: Duration) -> Worker {
    Worker::new(
        stored.vault.clone(),
        WorkerConfig {
            id: id.into(),
            lease,
            retry_after: Duration::from_millis(100),
            ..WorkerConfig::local(data_dir(stored))
        },
    )
}

/// The session's mux job as stored now.
async fn job_of(stored: &Stored) -> storage::db::MuxJob {
    stored
        .vault
        .db()
        .mux_job_for_session(stored.session)
        .await
        .unwrap()
        .expect("a job")
}

/// Runs one claim with a fresh worker `id` (30 s lease).
async fn run_one(stored: &Stored, id: &str) -> Option<JobOutcome> {
    worker(stored, id, Duration::from_secs(30))
        .run_once(running())
        .await
        .unwrap()
}

fn running() -> watch::Receiver<bool> {
    // The sender is leaked so the receiver never sees it dropped.
    let (tx, rx) = watch::channel(false);
    std::mem::forget(tx);
    rx
}

/// The archive's plaintext and manifest (read here, by the test, in a temp dir).
async fn open_archive(stored: &Stored, archive_id: Uuid) -> (PathBuf, serde_json::Value) {
    let record = stored
        .vault
        .db()
        .archive(archive_id)
        .await
        .unwrap()
        .expect("recorded");
    let key = record
        .location
        .strip_prefix("blob:")
        .expect("in the blob store");
    let reader = stored
        .vault
        .open_blob(key, &Access::new("test", Some("check".into())))
        .await
        .unwrap();
    let out = stored.dir.path().join("check-out.mp4");
    let out_path = out.clone();
    let manifest = tokio::task::spawn_blocking(move || {
        let mut reader = reader;
        let manifest = reader.verify(|_| {}).unwrap().manifest;
        std::io::Seek::seek(&mut reader, std::io::SeekFrom::Start(0)).unwrap();
        let mut file = std::fs::File::create(&out_path).unwrap();
        std::io::copy(&mut reader, &mut file).unwrap();
        manifest
    })
    .await
    .unwrap();
    (out, manifest)
}

/// Every file under `dir`, with its bytes.
fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push((path.clone(), std::fs::read(&path).unwrap_or_default()));
            }
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ended_session_is_muxed_in_sync_sealed_and_recorded() {
    let stored = stored_session(Camera::Clip, true).await;
    let worker = worker(&stored, "worker-a", Duration::from_secs(30));
    let outcome = worker.run_once(running()).await.unwrap().expect("a job");
    let JobOutcome::Done {
        session_id,
        archive_id,
    } = outcome
    else {
        panic!("expected done, got {outcome:?}");
    };
    assert_eq!(session_id, stored.session);
    let job = job_of(&stored).await;
    assert_eq!(job.state, MuxJobState::Done);
    assert_eq!(job.archive_id, Some(archive_id));
    assert!(
        worker.run_once(running()).await.unwrap().is_none(),
        "nothing left"
    );

    // No plaintext media anywhere in the data directory: no MP4 box, no WAV header.
    for (path, bytes) in files(data_dir(&stored)) {
        for magic in [&b"ftyp"[..], b"mdat", b"RIFF", b"WAVEfmt"] {
            assert!(
                !contains(&bytes, magic),
                "{} holds plaintext ({})",
                path.display(),
                String::from_utf8_lossy(magic)
            );
        }
    }

    let (mp4, manifest) = open_archive(&stored, archive_id).await;
    assert_eq!(
        manifest["session"]["session_id"],
        stored.session.to_string()
    );
    assert_eq!(manifest["session"]["group"], "branch-7");
    assert_eq!(manifest["session"]["cti_call_id"], "call-4711");
    assert_eq!(manifest["video_only"], false);
    let agent = &manifest["clock"]["agent_clock"];
    assert_eq!(agent["samples"], 7, "{agent}");
    let skew = agent["skew_ppm"].as_f64().unwrap();
    assert!((skew - SKEW_PPM).abs() < 1.0, "skew {skew} ppm");
    let offset = manifest["clock"]["audio_offset_s"].as_f64().unwrap();
    assert!(
        (offset + CTI_LEAD_S).abs() < 1e-3,
        "audio offset {offset} s"
    );
    // The cut starts at the camera's first frame (the CTI started earlier), as mapped from the
    // agent's clock: within a microsecond of the truth.
    let cut_in = OffsetDateTime::parse(
        manifest["cuts"]["in"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let error_ns = (UtcNanos::from_datetime(cut_in).unwrap().0 - stored.camera_start.0).abs();
    assert!(
        error_ns < 1_000,
        "cut in {error_ns} ns off the camera's first frame"
    );

    let measured = measure_with_ffmpeg(&mp4, 0).unwrap();
    assert_eq!(measured.flashes.len(), FLASH_FRAMES.len(), "{measured:?}");
    assert_eq!(measured.beeps.len(), FLASH_FRAMES.len(), "{measured:?}");
    for (flash, beep) in measured.flashes.iter().zip(&measured.beeps) {
        let sync_ms = (beep.as_secs_f64() - flash.as_secs_f64()) * 1e3;
        println!("SYNC worker: flash {flash:?} beep {beep:?}: audio − video {sync_ms:+.3} ms");
        assert!(sync_ms.abs() < 1.0, "audio − video = {sync_ms} ms");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_cti_audio_the_archive_is_video_only() {
    let stored = stored_session(Camera::Clip, false).await;
    let outcome = run_one(&stored, "worker-a").await;
    let Some(JobOutcome::Done { archive_id, .. }) = outcome else {
        panic!("expected done, got {outcome:?}");
    };
    let job = job_of(&stored).await;
    assert!(job.video_only);
    let (mp4, manifest) = open_archive(&stored, archive_id).await;
    assert_eq!(manifest["video_only"], true);
    assert!(manifest["session"]["cti_call_id"].is_null());
    let measured = measure_with_ffmpeg(&mp4, 0).unwrap();
    assert_eq!(measured.flashes.len(), FLASH_FRAMES.len());
    assert!(measured.beeps.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_worker_crashed_is_retried_and_done_once() {
    let stored = stored_session(Camera::Clip, true).await;
    let db = stored.vault.db();
    // A worker claims the job and dies: it never renews, never completes.
    let dead = db
        .claim_mux_job(
            "dead-worker",
            OffsetDateTime::now_utc(),
            Duration::from_millis(500),
        )
        .await
        .unwrap()
        .unwrap();
    let alive = worker(&stored, "worker-b", Duration::from_secs(30));
    assert!(
        alive.run_once(running()).await.unwrap().is_none(),
        "the lease still holds"
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    let outcome = alive.run_once(running()).await.unwrap();
    let Some(JobOutcome::Done { archive_id, .. }) = outcome else {
        panic!("expected done, got {outcome:?}");
    };
    let job = db.mux_job(dead.job_id).await.unwrap().unwrap();
    assert_eq!((job.state, job.attempts), (MuxJobState::Done, 2));
    // The dead worker coming back cannot complete it a second time.
    assert!(
        !db.complete_mux_job(
            dead.job_id,
            "dead-worker",
            Uuid::new_v4(),
            OffsetDateTime::now_utc()
        )
        .await
        .unwrap()
    );
    assert_eq!(
        db.mux_job(dead.job_id).await.unwrap().unwrap().archive_id,
        Some(archive_id)
    );
    assert_eq!(
        db.archives()
            .await
            .unwrap()
            .iter()
            .filter(|a| a.location.starts_with("blob:recordings/"))
            .count(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_loses_its_lease_keeps_nothing() {
    let stored = stored_session(Camera::Clip, true).await;
    let db = stored.vault.db().clone();
    let slow = worker(&stored, "worker-slow", Duration::from_millis(900));
    let first = tokio::spawn(async move { slow.run_once(running()).await });
    // Once it runs, another node takes the job over (as after an expired lease).
    let job = loop {
        let job = db
            .mux_job_for_session(stored.session)
            .await
            .unwrap()
            .unwrap();
        if job.state == MuxJobState::Running {
            break job;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert!(db.release_mux_job(job.job_id, "worker-slow").await.unwrap());
    let winner = worker(&stored, "worker-fast", Duration::from_secs(30));
    let won = winner.run_once(running()).await.unwrap();
    let Some(JobOutcome::Done { archive_id, .. }) = won else {
        panic!("expected done, got {won:?}");
    };
    let lost = first.await.unwrap().unwrap();
    assert_eq!(
        lost,
        Some(JobOutcome::LostLease {
            session_id: stored.session
        })
    );
    // One archive, one object: the loser's was never kept.
    let muxed: Vec<_> = db
        .archives()
        .await
        .unwrap()
        .into_iter()
        .filter(|a| a.location.starts_with("blob:recordings/"))
        .collect();
    assert_eq!(muxed.len(), 1, "{muxed:?}");
    assert_eq!(muxed[0].archive_id, archive_id);
    let objects = stored
        .vault
        .blobs()
        .list(&format!("recordings/{}/", stored.session))
        .await
        .unwrap();
    assert_eq!(objects.len(), 1, "{objects:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmuxable_media_fails_the_job_for_good_with_the_reason() {
    let stored = stored_session(Camera::Garbage, true).await;
    let outcome = run_one(&stored, "worker-a").await;
    let Some(JobOutcome::Failed { error, .. }) = outcome else {
        panic!("expected failed, got {outcome:?}");
    };
    assert!(
        error.contains("camera") && error.contains("keyframe"),
        "{error}"
    );
    let job = job_of(&stored).await;
    assert_eq!(job.state, MuxJobState::Failed);
    assert_eq!(job.error.as_deref(), Some(error.as_str()));
    assert!(
        stored
            .vault
            .blobs()
            .list("recordings/")
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_worker_releases_its_job_uncounted() {
    let stored = stored_session(Camera::Clip, true).await;
    let (stop, stopped) = watch::channel(false);
    stop.send(true).unwrap();
    let outcome = worker(&stored, "worker-a", Duration::from_millis(300))
        .run_once(stopped)
        .await
        .unwrap();
    assert_eq!(
        outcome,
        Some(JobOutcome::Released {
            session_id: stored.session
        })
    );
    let job = job_of(&stored).await;
    assert_eq!((job.state, job.attempts), (MuxJobState::Queued, 0));
    assert!(
        stored
            .vault
            .blobs()
            .list("recordings/")
            .await
            .unwrap()
            .is_empty()
    );
    // The next worker does it.
    let outcome = run_one(&stored, "worker-b").await;
    assert!(
        matches!(outcome, Some(JobOutcome::Done { .. })),
        "{outcome:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn screenshots_stand_in_for_a_missing_screen_track() {
    let stored = stored_session(Camera::Clip, true).await;
    store_screenshots(&stored);
    let outcome = run_one(&stored, "worker-a").await;
    let Some(JobOutcome::Done { archive_id, .. }) = outcome else {
        panic!("expected done, got {outcome:?}");
    };
    let (mp4, manifest) = open_archive(&stored, archive_id).await;
    let screen = &manifest["inputs"][1];
    assert_eq!(screen["role"], "screen", "{screen}");
    assert_eq!(screen["codec"], "jpeg", "{screen}");
    assert_eq!(
        screen["file"],
        format!("session {}/screenshot", stored.session)
    );
    let made_by = manifest["tracks"][1]["made_by"].as_str().unwrap();
    assert!(
        made_by.starts_with("transcoded from screenshots"),
        "{made_by}"
    );
    // The cut starts at the first shot; the bright one shows from the first output frame at
    // or after it was taken.
    let measured = measure_with_ffmpeg(&mp4, 1).unwrap();
    assert_eq!(measured.flashes.len(), 1, "{measured:?}");
    let lag = measured.flashes[0].as_secs_f64() - (BRIGHT_SHOT_S - FIRST_SHOT_S);
    assert!(
        (0.0..0.2).contains(&lag),
        "shown {lag} s after it was taken"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_screen_track_is_kept_and_screenshots_are_ignored() {
    let stored = stored_session(Camera::Clip, true).await;
    store_screenshots(&stored);
    // The camera's frames again, as the screen.
    write_track_log(
        data_dir(&stored),
        stored.session,
        &stored.key,
        Track::Screen,
        &stored.camera_frames,
    );
    let outcome = run_one(&stored, "worker-a").await;
    let Some(JobOutcome::Done { archive_id, .. }) = outcome else {
        panic!("expected done, got {outcome:?}");
    };
    let (_, manifest) = open_archive(&stored, archive_id).await;
    let inputs = manifest["inputs"].as_array().unwrap();
    let screens: Vec<_> = inputs.iter().filter(|i| i["role"] == "screen").collect();
    assert_eq!(screens.len(), 1, "{inputs:?}");
    assert_eq!(
        screens[0]["file"],
        format!("session {}/screen", stored.session)
    );
    assert_eq!(screens[0]["codec"], "h264");
    assert_eq!(manifest["tracks"][1]["made_by"], "passthrough");
}

/// Ingest rolls a session's logs into the blob store when it ends: the worker (on any node)
/// reads the segments from there, with no local spool at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_rolled_into_the_blob_store_is_muxed_from_there() {
    let stored = stored_session(Camera::Clip, true).await;
    let spool = data_dir(&stored)
        .join("spool")
        .join(stored.session.to_string());
    let log = spool.join("camera-000000.log");
    let records = storage::track_log::TrackLog::read_all(&log).unwrap();
    let key = format!("segments/{}/camera-000000.log", stored.session);
    let bytes = std::fs::read(&log).unwrap();
    stored
        .vault
        .blobs()
        .put_stream(&key, bytes.as_slice())
        .await
        .unwrap();
    stored
        .vault
        .db()
        .insert_segment(&storage::db::SegmentRecord {
            session_id: stored.session,
            track: storage::db::MediaTrack::Camera,
            index: 0,
            location: format!("blob:{key}"),
            first_seq: 1,
            last_seq: records.len() as u64,
            first_ts: records[0].timestamp,
            last_ts: records.last().unwrap().timestamp,
            bytes: bytes.len() as u64,
            sealed_at: OffsetDateTime::now_utc(),
        })
        .await
        .unwrap();
    std::fs::remove_dir_all(&spool).unwrap();

    let outcome = run_one(&stored, "worker-elsewhere").await;
    let Some(JobOutcome::Done { archive_id, .. }) = outcome else {
        panic!("expected done, got {outcome:?}");
    };
    let (mp4, _) = open_archive(&stored, archive_id).await;
    let measured = measure_with_ffmpeg(&mp4, 0).unwrap();
    assert_eq!(measured.flashes.len(), FLASH_FRAMES.len());
    assert_eq!(measured.beeps.len(), FLASH_FRAMES.len());
}

/// The customer's talk, heard by the call centre and by the agent's microphone.
const TALK_SEED: u64 = 21;
/// Length of the talking call and of the microphone reference.
const TALK_S: u64 = 12;

/// Stores a second recording of the call, received later (so it is the one muxed): the beeps
/// at the flashes and the customer talking, 8 kHz µ-law; its call record's start (and end)
/// `record_error_s` late. The true start is `CTI_LEAD_S` before the camera.
async fn store_talking_cti(stored: &Stored, record_error_s: f64) {
    let cti_start = stored.camera_start.plus(-(CTI_LEAD_S * 1e9) as i64);
    let wav = stored.dir.path().join("fixture-talk.wav");
    let truth = CtiRecording {
        duration: Duration::from_secs(TALK_S),
        beeps: FLASH_FRAMES
            .iter()
            .map(|&f| Duration::from_secs_f64(CTI_LEAD_S + f64::from(f) / f64::from(FPS)))
            .collect(),
        voice: Some(Voice {
            seed: TALK_SEED,
            from: Duration::ZERO,
        }),
        ..CtiRecording::default()
    }
    .write(&wav)
    .unwrap();
    let bytes = std::fs::read(&wav).unwrap();
    std::fs::remove_file(&wav).unwrap();
    let recording_id = Uuid::new_v4();
    let record = stored
        .vault
        .seal_to_blob(
            bytes.as_slice(),
            &format!("cti/{recording_id}.idvr"),
            serde_json::json!({ "kind": "cti" }),
            &Access::new("cti:test", None),
        )
        .await
        .unwrap();
    let recorded_start = cti_start.plus((record_error_s * 1e9).round() as i64);
    stored
        .vault
        .db()
        .insert_cti_recording(&CtiRow {
            recording_id,
            call_id: "call-4712".into(),
            session_id: Some(stored.session),
            correlation_key: None,
            started_at: recorded_start.to_datetime(),
            ended_at: Some(
                recorded_start
                    .plus(truth.true_duration.as_nanos() as i64)
                    .to_datetime(),
            ),
            location: record.location.clone(),
            archive_id: Some(record.archive_id),
            received_at: OffsetDateTime::now_utc() + Duration::from_secs(1),
        })
        .await
        .unwrap();
}

/// Frames for a track log: agent clock, keyframe, payload.
type LogFrames = Vec<(i64, bool, Vec<u8>)>;

/// The agent's microphone reference as it sends it: the same talk and beeps through another
/// microphone (its own noise), from the camera's first frame on, 16 kHz mono, in 20 ms Opus
/// packets at 20 kbit/s (libopus, voice), each stamped on the agent clock with the capture
/// time of its first decoded sample (the encoder's look-ahead before the first input sample).
fn mic_packets(stored: &Stored) -> LogFrames {
    let (pcm, _) = CtiRecording {
        encoding: CtiEncoding::Pcm16,
        rate_hz: 16_000,
        duration: Duration::from_secs(TALK_S - 1),
        beeps: FLASH_FRAMES
            .iter()
            .map(|&f| Duration::from_secs_f64(f64::from(f) / f64::from(FPS)))
            .collect(),
        noise_seed: 7,
        voice: Some(Voice {
            seed: TALK_SEED,
            from: Duration::from_secs_f64(CTI_LEAD_S),
        }),
        ..CtiRecording::default()
    }
    .render()
    .unwrap();
    let mut encoder =
        opus::Encoder::new(16_000, opus::Channels::Mono, opus::Application::Voip).unwrap();
    encoder.set_bitrate(opus::Bitrate::Bits(20_000)).unwrap();
    let lookahead_ns = i64::from(encoder.get_lookahead().unwrap()) * 1_000_000_000 / 16_000;
    pcm.chunks_exact(320)
        .enumerate()
        .map(|(k, chunk)| {
            let at = stored
                .camera_start
                .plus(k as i64 * 20_000_000 - lookahead_ns);
            let packet = encoder.encode_vec(chunk, 1500).unwrap();
            (agent_clock(stored.camera_start, at), true, packet)
        })
        .collect()
}

/// Muxes the job and returns the manifest and the measured |audio − video| at each mark, ms.
async fn mux_and_measure(stored: &Stored, label: &str) -> (serde_json::Value, Vec<f64>) {
    let outcome = run_one(stored, "worker-a").await;
    let Some(JobOutcome::Done { archive_id, .. }) = outcome else {
        panic!("{label}: expected done, got {outcome:?}");
    };
    let (mp4, manifest) = open_archive(stored, archive_id).await;
    let measured = measure_with_ffmpeg(&mp4, 0).unwrap();
    assert_eq!(measured.flashes.len(), FLASH_FRAMES.len(), "{measured:?}");
    assert_eq!(measured.beeps.len(), FLASH_FRAMES.len(), "{measured:?}");
    let sync_ms = measured
        .flashes
        .iter()
        .zip(&measured.beeps)
        .map(|(flash, beep)| (beep.as_secs_f64() - flash.as_secs_f64()) * 1e3)
        .collect();
    (manifest, sync_ms)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_microphone_reference_corrects_a_call_record_400_ms_late() {
    let stored = stored_session(Camera::Clip, true).await;
    let planted_ms = 400.0;
    store_talking_cti(&stored, planted_ms / 1e3).await;
    let packets = mic_packets(&stored);
    write_track_log(
        data_dir(&stored),
        stored.session,
        &stored.key,
        Track::MicReference,
        &packets,
    );
    let (manifest, sync_ms) = mux_and_measure(&stored, "reference").await;

    let clock = &manifest["clock"];
    let refined_ms = clock["refined_by_ms"].as_f64().expect("refined_by_ms");
    let confidence = clock["confidence"].as_f64().unwrap();
    let offset = clock["audio_offset_s"].as_f64().unwrap();
    println!(
        "REFERENCE worker: call record {planted_ms:+.1} ms late: refined by {refined_ms:+.3} ms \
         (error {:+.3} ms), confidence {confidence:.3}; audio − video at the marks {sync_ms:+.3?} ms",
        refined_ms + planted_ms
    );
    assert!(confidence >= 0.5, "confidence {confidence}");
    assert!(
        (refined_ms + planted_ms).abs() < 3.0,
        "refined by {refined_ms} ms for a record {planted_ms} ms late"
    );
    assert!(
        clock["method"]
            .as_str()
            .unwrap()
            .contains("refined by GCC-PHAT"),
        "{clock}"
    );
    assert!(
        (offset + CTI_LEAD_S).abs() < 0.003,
        "audio offset {offset} s"
    );
    for sync in &sync_ms {
        assert!(sync.abs() < 3.0, "audio − video = {sync} ms");
    }
    assert_eq!(manifest["session"]["cti_call_id"], "call-4712");
    assert_eq!(
        manifest["session"]["mic_reference"],
        serde_json::json!({
            "status": "read",
            "packets": packets.len(),
            "seconds": packets.len() as f64 * 0.02,
        })
    );
    let mic = manifest["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["role"] == "mic_reference")
        .expect("the reference is an input");
    assert_eq!(
        mic["file"],
        format!("session {}/mic_reference", stored.session)
    );
    assert!(
        manifest["tracks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["role"] != "mic_reference"),
        "the reference is never muxed"
    );
    // Nothing of it in the clear on disk: no WAV made of it, no Opus packet as sent.
    for (path, bytes) in files(data_dir(&stored)) {
        assert!(
            !contains(&bytes, b"WAVEfmt") && !contains(&bytes, &packets[100].2),
            "{} holds plaintext",
            path.display()
        );
    }
}

/// What is wrong with a microphone reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spoilt {
    /// Sealed under another session's key.
    AnotherKey,
    /// Its sixth packet is not Opus.
    NotOpus,
    /// One packet: too short to say anything.
    OnePacket,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_or_useless_microphone_reference_leaves_the_call_record_as_it_is() {
    // Each time the recording is made, the call record (right here) places the CTI, and the
    // manifest says what became of the reference.
    for spoilt in [Spoilt::AnotherKey, Spoilt::NotOpus, Spoilt::OnePacket] {
        let stored = stored_session(Camera::Clip, true).await;
        let mut packets = mic_packets(&stored);
        let mut key = stored.key.clone();
        match spoilt {
            Spoilt::AnotherKey => key = SessionKey::generate(),
            Spoilt::NotOpus => packets[5].2 = vec![0x03, 0x00], // code 3, no frame
            Spoilt::OnePacket => packets.truncate(1),
        }
        write_track_log(
            data_dir(&stored),
            stored.session,
            &key,
            Track::MicReference,
            &packets,
        );
        let (manifest, sync_ms) = mux_and_measure(&stored, &format!("{spoilt:?}")).await;
        let clock = &manifest["clock"];
        let status = &manifest["session"]["mic_reference"];
        println!(
            "REFERENCE worker, {spoilt:?}: {status}; clock: {}; audio − video {sync_ms:+.3?} ms",
            clock["method"]
        );
        let offset = clock["audio_offset_s"].as_f64().unwrap();
        assert!((offset + CTI_LEAD_S).abs() < 1e-3, "{spoilt:?}: {offset} s");
        for sync in &sync_ms {
            assert!(sync.abs() < 1.0, "{spoilt:?}: audio − video = {sync} ms");
        }
        let expected = match spoilt {
            Spoilt::OnePacket => {
                assert_eq!(status["status"], "read", "{spoilt:?}: {status}");
                assert_eq!(clock["refined_by_ms"], 0.0, "{spoilt:?}");
                assert!(
                    clock["method"]
                        .as_str()
                        .unwrap()
                        .contains("overlaps the call too little"),
                    "{spoilt:?}: {clock}"
                );
                continue;
            }
            Spoilt::NotOpus => "packet 6 (0.100 s in) is not an Opus packet",
            Spoilt::AnotherKey => "frame 1:",
        };
        assert_eq!(status["status"], "skipped", "{spoilt:?}: {status}");
        let reason = status["reason"].as_str().unwrap();
        assert!(
            reason.starts_with(&format!("session {}/mic_reference: ", stored.session))
                && reason.contains(expected),
            "{spoilt:?}: {reason}"
        );
        assert!(clock["refined_by_ms"].is_null(), "{spoilt:?}: {clock}");
    }
}

/// A long session's first segments are in the blob store while its last log is still in this
/// node's spool (its roll failed): the worker reads them in order, the spool's after the
/// recorded ones, and the recording has every flash and beep.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_partly_rolled_is_muxed_from_the_blob_store_and_the_spool() {
    use storage::track_log::TrackLog;
    let stored = stored_session(Camera::Clip, true).await;
    let spool = data_dir(&stored)
        .join("spool")
        .join(stored.session.to_string());
    let log = spool.join("camera-000000.log");
    let records = TrackLog::read_all(&log).unwrap();
    let half = records.len() / 2;
    std::fs::remove_file(&log).unwrap();
    // Segment 0 (the first half) rolled; segment 1 (the rest) still in the spool.
    let mut first = TrackLog::open(&log).unwrap();
    for r in &records[..half] {
        first.append(r.seq, r.timestamp, &r.frame).unwrap();
    }
    first.sync().unwrap();
    drop(first);
    let mut second = TrackLog::open(&spool.join("camera-000001.log")).unwrap();
    second.continue_after(records[half - 1].seq);
    for r in &records[half..] {
        second.append(r.seq, r.timestamp, &r.frame).unwrap();
    }
    second.sync().unwrap();
    drop(second);
    let key = format!("segments/{}/camera-000000.log", stored.session);
    let bytes = std::fs::read(&log).unwrap();
    stored
        .vault
        .blobs()
        .put_stream(&key, bytes.as_slice())
        .await
        .unwrap();
    stored
        .vault
        .db()
        .insert_segment(&storage::db::SegmentRecord {
            session_id: stored.session,
            track: storage::db::MediaTrack::Camera,
            index: 0,
            location: format!("blob:{key}"),
            first_seq: 1,
            last_seq: records[half - 1].seq,
            first_ts: records[0].timestamp,
            last_ts: records[half - 1].timestamp,
            bytes: bytes.len() as u64,
            sealed_at: OffsetDateTime::now_utc(),
        })
        .await
        .unwrap();
    // The rolled log would have been removed; left in place, it must not be read twice.

    let outcome = run_one(&stored, "worker-here").await;
    let Some(JobOutcome::Done { archive_id, .. }) = outcome else {
        panic!("expected done, got {outcome:?}");
    };
    let (mp4, _) = open_archive(&stored, archive_id).await;
    let measured = measure_with_ffmpeg(&mp4, 0).unwrap();
    assert_eq!(measured.flashes.len(), FLASH_FRAMES.len());
    assert_eq!(measured.beeps.len(), FLASH_FRAMES.len());
}
