//! The watermarked MP4 export over real TLS on a real vault: a real H.264 + AAC fragmented
//! MP4 (made here by GStreamer the way the muxer makes recordings) is sealed into the blob
//! store, opened for a reason and exported. The export is decoded again and held against the
//! original as the player gets it (`/media`): same streams, same length, the watermark in the
//! pixels of its corner and the rest of the picture as it was. Refusals are audited, a client
//! that leaves stops the export (audited as not completed), and no file appears on disk.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use common::Console;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use storage::audit::Outcome;
use storage::db::Role;
use uuid::Uuid;

const WIDTH: usize = 640;
const HEIGHT: usize = 360;
const FPS: u32 = 15;
const REASON: &str = "customer complaint 2026-114 <check>";

/// A fragmented MP4 like the muxer's: H.264 (x264, 15 fps, a keyframe every 2 s) and,
/// with `audio`, AAC 32 kHz; `seconds` long. Colour bars with the running time drawn at the
/// top right, so every frame differs; with `screen`, a second video track (5 fps, 1280 × 720)
/// as the muxer adds for the screen.
fn recording_mp4(seconds: u32, audio: bool, screen: bool) -> Vec<u8> {
    gst::init().unwrap();
    let frames = seconds * FPS;
    let mut launch = format!(
        "videotestsrc num-buffers={frames} pattern=smpte75 ! \
         video/x-raw,width={WIDTH},height={HEIGHT},framerate={FPS}/1,format=I420 ! \
         timeoverlay halignment=right valignment=top font-desc=\"Sans 24\" ! \
         x264enc speed-preset=ultrafast key-int-max=30 bframes=0 ! h264parse ! queue ! \
         mp4mux name=mux fragment-duration=1000 streamable=true ! appsink name=out sync=false"
    );
    if screen {
        launch.push_str(&format!(
            " videotestsrc num-buffers={} pattern=ball ! \
             video/x-raw,width=1280,height=720,framerate=5/1,format=I420 ! \
             x264enc speed-preset=ultrafast key-int-max=10 bframes=0 ! h264parse ! queue ! mux.",
            seconds * 5
        ));
    }
    if audio {
        let buffers = seconds * 32_000 / 1024;
        launch.push_str(&format!(
            " audiotestsrc num-buffers={buffers} samplesperbuffer=1024 freq=440 ! \
             audio/x-raw,rate=32000,channels=1 ! voaacenc ! aacparse ! queue ! mux."
        ));
    }
    let pipeline = gst::parse::launch(&launch)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let sink = pipeline
        .by_name("out")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let mut out = Vec::new();
    while let Ok(sample) = sink.pull_sample() {
        out.extend_from_slice(&sample.buffer().unwrap().map_readable().unwrap());
    }
    let error = pipeline
        .bus()
        .unwrap()
        .pop_filtered(&[gst::MessageType::Error]);
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(error.is_none(), "making the recording: {error:?}");
    out
}

/// What a decoder makes of an MP4.
#[derive(Default)]
struct Decoded {
    /// The first video track's frames: presentation time (ns) and grey pixels.
    frames: Vec<(u64, Vec<u8>)>,
    size: (usize, usize),
    /// End of the last frame (ns).
    video_end: u64,
    video_tracks: usize,
    audio_tracks: usize,
    /// Decoded audio samples (per channel) and the rate.
    audio_samples: u64,
    audio_rate: u64,
}

impl Decoded {
    fn video_seconds(&self) -> f64 {
        self.video_end as f64 / 1e9
    }
}

/// Decodes every stream of `mp4` (fed from memory): the first video track as grey frames,
/// the audio counted.
fn decode(mp4: &[u8]) -> Decoded {
    gst::init().unwrap();
    let pipeline = gst::Pipeline::new();
    let src = gst_app::AppSrc::builder()
        .format(gst::Format::Bytes)
        .build();
    let decodebin = gst::ElementFactory::make("decodebin").build().unwrap();
    pipeline.add_many([src.upcast_ref(), &decodebin]).unwrap();
    src.link(&decodebin).unwrap();
    let decoded = Arc::new(Mutex::new(Decoded::default()));
    let weak = pipeline.downgrade();
    let into = decoded.clone();
    decodebin.connect_pad_added(move |_, pad| {
        let pipeline = weak.upgrade().unwrap();
        let caps = pad.current_caps().unwrap();
        let s = caps.structure(0).unwrap();
        let name = s.name().to_string();
        let mut d = into.lock().unwrap();
        let (elements, sink): (Vec<gst::Element>, gst_app::AppSink) = if name.starts_with("video/")
            && d.video_tracks == 0
        {
            d.video_tracks += 1;
            let caps = gst::Caps::builder("video/x-raw")
                .field("format", "GRAY8")
                .build();
            let sink = gst_app::AppSink::builder().caps(&caps).sync(false).build();
            let into = into.clone();
            sink.set_callbacks(
                gst_app::AppSinkCallbacks::builder()
                    .new_sample(move |sink| {
                        let sample = sink.pull_sample().unwrap();
                        let info =
                            gstreamer_video::VideoInfo::from_caps(sample.caps().unwrap()).unwrap();
                        let buffer = sample.buffer().unwrap();
                        let map = buffer.map_readable().unwrap();
                        let (w, h) = (info.width() as usize, info.height() as usize);
                        let stride = info.stride()[0] as usize;
                        let mut grey = Vec::with_capacity(w * h);
                        for row in 0..h {
                            grey.extend_from_slice(&map[row * stride..row * stride + w]);
                        }
                        let pts = buffer.pts().unwrap().nseconds();
                        let end = pts + buffer.duration().map_or(0, |d| d.nseconds());
                        let mut d = into.lock().unwrap();
                        d.size = (w, h);
                        d.video_end = d.video_end.max(end);
                        d.frames.push((pts, grey));
                        Ok(gst::FlowSuccess::Ok)
                    })
                    .build(),
            );
            (
                vec![gst::ElementFactory::make("videoconvert").build().unwrap()],
                sink,
            )
        } else if name.starts_with("video/") {
            d.video_tracks += 1;
            let sink = gst_app::AppSink::builder().sync(false).build();
            sink.set_callbacks(
                gst_app::AppSinkCallbacks::builder()
                    .new_sample(|sink| {
                        sink.pull_sample().unwrap();
                        Ok(gst::FlowSuccess::Ok)
                    })
                    .build(),
            );
            (vec![], sink)
        } else {
            d.audio_tracks += 1;
            d.audio_rate = s.get::<i32>("rate").unwrap() as u64;
            let into = into.clone();
            let caps = gst::Caps::builder("audio/x-raw")
                .field("format", "S16LE")
                .build();
            let sink = gst_app::AppSink::builder().caps(&caps).sync(false).build();
            sink.set_callbacks(
                gst_app::AppSinkCallbacks::builder()
                    .new_sample(move |sink| {
                        let sample = sink.pull_sample().unwrap();
                        let channels = sample
                            .caps()
                            .and_then(|c| c.structure(0)?.get::<i32>("channels").ok())
                            .unwrap() as u64;
                        let bytes = sample.buffer().unwrap().size() as u64;
                        into.lock().unwrap().audio_samples += bytes / (2 * channels);
                        Ok(gst::FlowSuccess::Ok)
                    })
                    .build(),
            );
            (
                vec![gst::ElementFactory::make("audioconvert").build().unwrap()],
                sink,
            )
        };
        let mut chain = vec![gst::ElementFactory::make("queue").build().unwrap()];
        chain.extend(elements);
        chain.push(sink.upcast());
        pipeline.add_many(&chain).unwrap();
        gst::Element::link_many(&chain).unwrap();
        for e in &chain {
            e.sync_state_with_parent().unwrap();
        }
        pad.link(&chain[0].static_pad("sink").unwrap()).unwrap();
    });
    pipeline.set_state(gst::State::Playing).unwrap();
    src.push_buffer(gst::Buffer::from_slice(mp4.to_vec()))
        .unwrap();
    src.end_of_stream().unwrap();
    let bus = pipeline.bus().unwrap();
    let message = bus
        .timed_pop_filtered(
            gst::ClockTime::NONE,
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .unwrap();
    pipeline.set_state(gst::State::Null).unwrap();
    if let gst::MessageView::Error(e) = message.view() {
        panic!("decoding: {} ({:?})", e.error(), e.debug());
    }
    std::mem::take(&mut *decoded.lock().unwrap())
}

/// Mean absolute difference of two grey pictures over the rows `rows` and columns `cols`.
fn mean_diff(
    a: &[u8],
    b: &[u8],
    rows: std::ops::Range<usize>,
    cols: std::ops::Range<usize>,
) -> f64 {
    let mut sum = 0u64;
    let mut n = 0u64;
    for y in rows {
        for x in cols.clone() {
            sum += u64::from(a[y * WIDTH + x].abs_diff(b[y * WIDTH + x]));
            n += 1;
        }
    }
    sum as f64 / n as f64
}

/// Every path under `dir` (best effort: entries that vanish while listed are skipped).
fn files_under(dir: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(dir) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                todo.push(path.clone());
            }
            out.insert(path);
        }
    }
    out
}

/// The files this process has open (deleted ones too) whose bytes start like an MP4.
fn mp4s_open() -> BTreeSet<PathBuf> {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .filter(|fd| std::fs::metadata(fd.path()).is_ok_and(|m| m.is_file()))
        .filter(|fd| looks_like_mp4(&fd.path()))
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .collect()
}

/// Whether `path` is a file that starts like an MP4 (`ftyp`, `moov`, `moof` or `mdat` box).
fn looks_like_mp4(path: &Path) -> bool {
    use std::io::Read;
    if !std::fs::metadata(path).is_ok_and(|m| m.is_file()) {
        return false;
    }
    let mut head = [0u8; 8];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok()
        && [b"ftyp", b"moov", b"moof", b"mdat"].contains(&&[head[4], head[5], head[6], head[7]])
}

/// Signs `name` in and opens `session` for [`REASON`]; the browser and the grant.
async fn open_for_reason(
    console: &Console,
    name: &str,
    password: &str,
    session: Uuid,
) -> (reqwest::Client, String) {
    console.open_for(name, password, session, REASON).await
}

/// The watermarked MP4 of `session`, downloaded whole.
/// The watermarked export's address for `session` under `grant`.
fn export_url(console: &Console, session: Uuid, grant: &str) -> String {
    format!(
        "{}/recordings/{session}/export.mp4?grant={grant}",
        console.url
    )
}

async fn exported(
    console: &Console,
    browser: &reqwest::Client,
    session: Uuid,
    grant: &str,
) -> Vec<u8> {
    let response = browser
        .get(export_url(console, session, grant))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.bytes().await.unwrap().to_vec()
}

/// The audit entry of an export that did not complete, once it is written (the pipeline
/// stops on its own thread; waits at most a minute).
async fn export_failure(console: &Console) -> storage::audit::AuditEntry {
    for _ in 0..600 {
        let log = console.vault.audit().latest(20).await.unwrap();
        if let Some(entry) = log
            .into_iter()
            .find(|e| e.action == "recording.export" && e.outcome == Outcome::Failed)
        {
            return entry;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("an export that did not complete is audited as failed");
}

async fn mp4_session(console: &Console, mp4: &[u8]) -> Uuid {
    let manifest = serde_json::json!({"kind": "mux", "container": "mp4 (fragmented)"});
    console.recorded_session("op-ana", mp4, manifest).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_export_is_a_playable_mp4_watermarked_in_its_pixels_and_nothing_touches_disk() {
    let console = Console::start().await;
    let original_mp4 = recording_mp4(8, true, false);
    let session = mp4_session(&console, &original_mp4).await;
    let (password, _) = console.add("carla", &[Role::Compliance], &[], false).await;
    let (browser, grant) = open_for_reason(&console, "carla", &password, session).await;

    let page = browser
        .get(format!(
            "{}/recordings/{session}?grant={grant}",
            console.url
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let link = format!("/recordings/{session}/export.mp4?grant={grant}");
    assert!(page.contains(&link), "the recording page links the export");

    // The original as the player gets it.
    let mut original = Vec::new();
    while original.len() < original_mp4.len() {
        let part = browser
            .get(format!(
                "{}/recordings/{session}/media?grant={grant}",
                console.url
            ))
            .header("range", format!("bytes={}-", original.len()))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        original.extend_from_slice(&part);
    }
    assert!(original == original_mp4);

    // The export, with the disk and this process's open files watched meanwhile.
    let data_before = files_under(console.data_dir());
    let tmp_before = files_under(Path::new("/tmp"));
    let started = Instant::now();
    let mut response = browser
        .get(format!("{}{link}", console.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], "video/mp4");
    assert_eq!(
        headers["content-disposition"],
        format!("attachment; filename=\"{session}-watermarked.mp4\"").as_str()
    );
    assert!(
        !headers.contains_key("content-length"),
        "streamed as made: chunked"
    );
    let mut exported = Vec::new();
    let mut opened_meanwhile = BTreeSet::new();
    while let Some(piece) = response.chunk().await.unwrap() {
        exported.extend_from_slice(&piece);
        opened_meanwhile.extend(mp4s_open());
    }
    let took = started.elapsed();
    let new_in_data: Vec<_> = files_under(console.data_dir())
        .difference(&data_before)
        .cloned()
        .collect();
    let new_mp4_in_tmp: Vec<_> = files_under(Path::new("/tmp"))
        .difference(&tmp_before)
        .filter(|p| looks_like_mp4(p))
        .cloned()
        .collect();
    println!(
        "EXPORT files: new under the data dir {new_in_data:?}, new MP4s under /tmp \
         {new_mp4_in_tmp:?}, MP4s open in this process during the export {opened_meanwhile:?}"
    );
    assert!(new_in_data.is_empty(), "{new_in_data:?}");
    assert!(new_mp4_in_tmp.is_empty(), "{new_mp4_in_tmp:?}");
    assert!(opened_meanwhile.is_empty(), "{opened_meanwhile:?}");

    // Playable: every stream decodes, as long as the original.
    let (before, after) = (decode(&original), decode(&exported));
    println!(
        "EXPORT streams: original {} video + {} audio, {:.3} s video, {} frames, {:.3} s audio; \
         export {} video + {} audio, {:.3} s video, {} frames, {:.3} s audio; {} bytes \
         (original {}); made in {:.2} s = {:.1}× real time",
        before.video_tracks,
        before.audio_tracks,
        before.video_seconds(),
        before.frames.len(),
        before.audio_samples as f64 / before.audio_rate as f64,
        after.video_tracks,
        after.audio_tracks,
        after.video_seconds(),
        after.frames.len(),
        after.audio_samples as f64 / after.audio_rate as f64,
        exported.len(),
        original.len(),
        took.as_secs_f64(),
        before.video_seconds() / took.as_secs_f64(),
    );
    println!(
        "EXPORT pts: original {:?}…{:?}, export {:?}…{:?}",
        before
            .frames
            .iter()
            .take(3)
            .map(|f| f.0)
            .collect::<Vec<_>>(),
        before
            .frames
            .iter()
            .rev()
            .take(3)
            .map(|f| f.0)
            .collect::<Vec<_>>(),
        after.frames.iter().take(3).map(|f| f.0).collect::<Vec<_>>(),
        after
            .frames
            .iter()
            .rev()
            .take(3)
            .map(|f| f.0)
            .collect::<Vec<_>>(),
    );
    assert_eq!((after.video_tracks, after.audio_tracks), (1, 1));
    assert_eq!(after.frames.len(), before.frames.len(), "every frame kept");
    assert!((after.video_seconds() - before.video_seconds()).abs() < 1.0 / f64::from(FPS));
    assert_eq!(after.audio_samples, before.audio_samples, "audio as it was");
    assert_eq!(after.size, (WIDTH, HEIGHT));
    if let Ok(probe) = ffprobe(&exported) {
        println!("EXPORT ffprobe: {probe}");
        assert!(probe.contains("h264") && probe.contains("aac"), "{probe}");
    }

    // The watermark is in the pixels: the same frame of each, the bottom-left corner under
    // the watermark against the top half of the picture.
    let k = before.frames.len() / 2;
    let ((pts_a, a), (pts_b, b)) = (&before.frames[k], &after.frames[k]);
    assert_eq!(pts_a, pts_b, "the same frame");
    let corner = mean_diff(a, b, HEIGHT - 40..HEIGHT - 8, 8..300);
    let rest = mean_diff(a, b, 40..HEIGHT / 2, 0..WIDTH);
    let mut worst_rest_frame = 0f64;
    let mut weakest_corner = f64::MAX;
    for ((_, a), (_, b)) in before.frames.iter().zip(&after.frames) {
        worst_rest_frame = worst_rest_frame.max(mean_diff(a, b, 40..HEIGHT / 2, 0..WIDTH));
        weakest_corner = weakest_corner.min(mean_diff(a, b, HEIGHT - 40..HEIGHT - 8, 8..300));
    }
    println!(
        "EXPORT watermark: frame {k}: mean |export − original| {corner:.1} grey levels under \
         the watermark (rows {}..{}, columns 8..300), {rest:.2} in the top half; over all \
         frames: weakest watermark {weakest_corner:.1}, worst top half {worst_rest_frame:.2}",
        HEIGHT - 40,
        HEIGHT - 8
    );
    if let Some(path) = std::env::var_os("IDV_EXPORT_FRAME_PGM") {
        // To look at it: the exported frame as a grey PGM picture.
        let mut pgm = format!("P5\n{WIDTH} {HEIGHT}\n255\n").into_bytes();
        pgm.extend_from_slice(b);
        std::fs::write(path, pgm).unwrap();
    }
    assert!(weakest_corner > 20.0, "every frame is watermarked");
    assert!(
        worst_rest_frame < 4.0,
        "the rest of the picture is as it was"
    );

    // Audited with the reason, what was drawn and who.
    let log = console.vault.audit().latest(100).await.unwrap();
    let export = log
        .iter()
        .find(|e| e.action == "recording.export")
        .expect("the export is audited");
    assert_eq!(export.actor, "user:carla");
    assert_eq!(export.object, format!("session:{session}"));
    assert_eq!(export.outcome, Outcome::Success);
    let reason = export.reason.as_deref().unwrap();
    assert!(
        reason.starts_with(REASON) && reason.contains("decrypted MP4, watermarked"),
        "{reason}"
    );
}

/// `ffprobe` of `mp4` fed on its standard input: the streams' codecs (skipped when ffprobe
/// is not installed).
fn ffprobe(mp4: &[u8]) -> std::io::Result<String> {
    use std::io::Write;
    let mut child = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_type,codec_name",
            "-of",
            "csv=p=0",
            "-i",
            "pipe:0",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let mut stdin = child.stdin.take().unwrap();
    let bytes = mp4.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&bytes);
    });
    let out = child.wait_with_output()?;
    writer.join().unwrap();
    assert!(out.status.success(), "ffprobe refused the export");
    Ok(String::from_utf8_lossy(&out.stdout).replace('\n', " "))
}

/// A recording of `seconds` (with audio and a screen track as asked) sealed, opened and
/// exported by a compliance officer; what a decoder makes of the export.
async fn export_decoded(seconds: u32, audio: bool, screen: bool) -> Decoded {
    let console = Console::start().await;
    let session = mp4_session(&console, &recording_mp4(seconds, audio, screen)).await;
    let (password, _) = console.add("carla", &[Role::Compliance], &[], false).await;
    let (browser, grant) = open_for_reason(&console, "carla", &password, session).await;
    let decoded = decode(&exported(&console, &browser, session, &grant).await);
    println!(
        "EXPORT {seconds} s{}{}: {} video + {} audio tracks, {:.3} s, {} camera frames",
        if audio { "" } else { ", video only" },
        if screen { ", camera and screen" } else { "" },
        decoded.video_tracks,
        decoded.audio_tracks,
        decoded.video_seconds(),
        decoded.frames.len()
    );
    decoded
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_video_only_recording_exports_without_audio() {
    let decoded = export_decoded(3, false, false).await;
    assert_eq!((decoded.video_tracks, decoded.audio_tracks), (1, 0));
    assert_eq!(decoded.frames.len(), 3 * FPS as usize);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn camera_and_screen_are_both_exported() {
    let decoded = export_decoded(4, true, true).await;
    assert_eq!((decoded.video_tracks, decoded.audio_tracks), (2, 1));
    assert_eq!(decoded.frames.len(), 4 * FPS as usize);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_without_a_grant_or_by_others_are_refused_and_audited_and_a_client_that_leaves_stops_it()
 {
    let console = Console::start().await;
    let session = mp4_session(&console, &recording_mp4(30, true, false)).await;
    let (carla_pw, _) = console.add("carla", &[Role::Compliance], &[], false).await;
    let (dora_pw, _) = console.add("dora", &[Role::Compliance], &[], false).await;
    let (otto_pw, _) = console
        .add("otto", &[Role::Operator, Role::Admin], &[], false)
        .await;
    let (carla, grant) = open_for_reason(&console, "carla", &carla_pw, session).await;
    let export = |grant: &str| export_url(&console, session, grant);

    // Not signed in.
    let stranger = console.browser();
    assert_eq!(
        stranger.get(export(&grant)).send().await.unwrap().status(),
        401
    );
    // An operator (and admin), even with the grant's id.
    let otto = console.browser();
    assert_eq!(
        console.sign_in(&otto, "otto", &otto_pw, "").await.status(),
        303
    );
    assert_eq!(otto.get(export(&grant)).send().await.unwrap().status(), 403);
    // Another compliance officer with carla's grant: grants are per login.
    let dora = console.browser();
    assert_eq!(
        console.sign_in(&dora, "dora", &dora_pw, "").await.status(),
        303
    );
    assert_eq!(dora.get(export(&grant)).send().await.unwrap().status(), 403);
    // Carla without a grant, or with a made-up one.
    assert_eq!(carla.get(export("")).send().await.unwrap().status(), 403);
    assert_eq!(
        carla
            .get(export("00112233445566778899aabbccddeeff"))
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
    let log = console.vault.audit().latest(100).await.unwrap();
    let denied: Vec<&str> = log
        .iter()
        .filter(|e| e.action == "recording.export" && e.outcome == Outcome::Denied)
        .map(|e| e.actor.as_str())
        .collect();
    assert_eq!(
        denied.iter().filter(|a| **a == "user:otto").count(),
        1,
        "{denied:?}"
    );
    assert_eq!(denied.iter().filter(|a| **a == "user:dora").count(), 1);
    assert_eq!(denied.iter().filter(|a| **a == "user:carla").count(), 2);
    assert!(
        !log.iter()
            .any(|e| e.action == "recording.export" && e.outcome != Outcome::Denied),
        "nothing was exported"
    );

    // Carla starts an export of 30 s and leaves after the first piece: the export stops and
    // says so in the audit log.
    let mut response = carla.get(export(&grant)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let first = response.chunk().await.unwrap().unwrap();
    assert!(!first.is_empty());
    drop(response);
    let stopped = export_failure(&console).await;
    println!("EXPORT abandoned: {:?}", stopped.reason);
    assert_eq!(stopped.actor, "user:carla");
    assert!(
        stopped.reason.unwrap().contains("the client left"),
        "stopped because the client left"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_archive_that_is_not_media_is_refused_with_an_error_and_audited_as_failed() {
    let console = Console::start().await;
    let session = mp4_session(&console, &vec![7u8; 300_000]).await;
    let (password, _) = console.add("carla", &[Role::Compliance], &[], false).await;
    let (browser, grant) = open_for_reason(&console, "carla", &password, session).await;
    let response = browser
        .get(export_url(&console, session, &grant))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    let text = response.text().await.unwrap();
    assert!(
        text.starts_with("the recording cannot be exported"),
        "{text}"
    );
    let reason = export_failure(&console).await.reason.unwrap();
    println!("EXPORT not media: {reason}");
    assert!(
        reason.contains("not completed: the export failed"),
        "{reason}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_two_exports_run_at_once_and_a_third_waits_its_turn() {
    let console = Console::start().await;
    let session = mp4_session(&console, &recording_mp4(30, false, false)).await;
    let (carla_pw, _) = console.add("carla", &[Role::Compliance], &[], false).await;
    let (carla, grant) = open_for_reason(&console, "carla", &carla_pw, session).await;
    let url = export_url(&console, session, &grant);
    // Two exports started and not read: each holds its place (the pipeline waits on the
    // client).
    let first = carla.get(&url).send().await.unwrap();
    let second = carla.get(&url).send().await.unwrap();
    assert_eq!(
        (first.status().as_u16(), second.status().as_u16()),
        (200, 200)
    );
    let third = carla.get(&url).send().await.unwrap();
    assert_eq!(third.status(), 503);
    assert_eq!(third.headers()["retry-after"], "60");
    // One finishes: the next may start.
    let whole = first.bytes().await.unwrap();
    assert!(whole.len() > 10_000, "{} bytes", whole.len());
    let mut again = None;
    for _ in 0..100 {
        let response = carla.get(&url).send().await.unwrap();
        if response.status() == 200 {
            again = Some(response);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(again.is_some(), "a place is free once an export is done");
    drop(second);
}
