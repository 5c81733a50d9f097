//! Screenshots — the agent's fallback when it cannot hold a stream, one JPEG of the screen
//! every few seconds — muxed as the screen track next to a camera: ordinary constant-rate
//! video on the camera's timeline in which every frame shows the latest shot taken at or
//! before its instant, lasting exactly the cut, measured through `ffmpeg`. A damaged shot is
//! refused with one line naming the source.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use fixtures::media::{
    CameraClip, Measured, Screenshot, ffprobe_ok, gst_discoverer_ok, measure_with_ffmpeg,
};
use muxer::manifest::TrackRole;
use muxer::timeline::UtcNanos;
use muxer::video::stills::STILLS_FPS;
use muxer::{
    FrameCodec, FrameFormat, Layout, Manifest, MemoryFrames, MuxError, MuxRequest, OutputFormat,
    RawFrame, VideoInput, VideoRole,
};

/// 2026-11-21T10:00:00Z: where the camera starts.
const T0: i64 = 1_795_255_200 * UtcNanos::SECOND;
/// The agent's monotonic clock at T0 (frame sources may use any origin).
const AGENT_AT_T0_NS: i64 = 3_600 * UtcNanos::SECOND + 42;
const CAMERA_FPS: u32 = 30;
const CAMERA_SECONDS: u32 = 20;
/// The camera's flash, and the bright shot taken at the same instant: 10.7333 s, 10.0333 s
/// into the cut, so the nearest output frame (10.0 s) would show it early.
const FLASH_FRAME: u32 = 322;
const LABEL: &str = "session test/screenshot";
/// One output frame of the screen track, seconds.
const SCREEN_FRAME_S: f64 = 1.0 / STILLS_FPS as f64;

fn at(seconds_after_t0: f64) -> UtcNanos {
    UtcNanos(T0 + (seconds_after_t0 * 1e9).round() as i64)
}

fn flash_s() -> f64 {
    f64::from(FLASH_FRAME) / f64::from(CAMERA_FPS)
}

/// The shots: seconds after T0 (never on the output grid), and the picture. One is bright, at
/// the camera's flash; the last has another shape (letterboxed into the first one's size).
fn shots() -> Vec<(f64, Screenshot)> {
    let dark = |seed| Screenshot {
        width: 320,
        height: 180,
        bright: false,
        seed,
    };
    vec![
        (0.7, dark(1)),
        (5.75, dark(9)),
        (
            flash_s(),
            Screenshot {
                bright: true,
                ..dark(0)
            },
        ),
        (
            15.9,
            Screenshot {
                width: 256,
                height: 192,
                ..dark(17)
            },
        ),
    ]
}

fn screenshot_frames(shots: &[(f64, Screenshot)]) -> Vec<RawFrame> {
    shots
        .iter()
        .map(|(s, shot)| RawFrame {
            pts_ns: AGENT_AT_T0_NS + (s * 1e9).round() as i64,
            keyframe: true,
            data: shot.jpeg().expect("JPEG"),
        })
        .collect()
}

fn screenshots(frames: Vec<RawFrame>, start_s: f64) -> VideoInput {
    let source = MemoryFrames {
        label: LABEL.into(),
        format: FrameFormat::new(FrameCodec::Jpeg),
        frames,
    };
    VideoInput::frames(VideoRole::Screen, Arc::new(source), at(start_s))
}

fn camera(dir: &Path, flash_frames: Vec<u32>) -> VideoInput {
    let path = dir.join("camera.mp4");
    CameraClip {
        width: 160,
        height: 120,
        fps: CAMERA_FPS,
        frames: CAMERA_SECONDS * CAMERA_FPS,
        flash_frames,
        ..CameraClip::default()
    }
    .write(&path)
    .expect("camera clip");
    VideoInput::file(VideoRole::Camera, path, at(0.0))
}

fn request(camera: VideoInput, screen: VideoInput, format: OutputFormat) -> MuxRequest {
    MuxRequest {
        camera,
        screen: Some(screen),
        audio: None,
        reference: None,
        in_point: None,
        out_point: None,
        format,
        layout: Layout::Tracks,
        agent_clock: None,
    }
}

/// Where the file's second video stream ends as stored, seconds: the track's duration (MP4:
/// the sum of its samples'), or, as Matroska in streaming mode gives tracks no duration, the
/// end of its last block (its time plus its duration).
fn screen_end_s(path: &Path, probed: &serde_json::Value) -> f64 {
    let videos = probed["streams"].as_array().unwrap().iter();
    let screen = videos
        .filter(|s| s["codec_type"] == "video")
        .nth(1)
        .unwrap();
    if let Some(duration) = screen["duration"].as_str() {
        return duration.parse().unwrap();
    }
    let out = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:1"])
        .args([
            "-show_entries",
            "packet=pts_time,duration_time",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .expect("ffprobe runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let last = text
        .lines()
        .rfind(|l| !l.trim().is_empty())
        .expect("packets");
    last.split(',')
        .map(|v| v.trim().parse::<f64>().expect("a number"))
        .sum()
}

/// Muxes the camera with the shots as its screen; the manifest, ffprobe's JSON, the camera's
/// and the screen's measures, and where the screen's last packet ends.
fn mux(format: OutputFormat, dir: &Path) -> (Manifest, serde_json::Value, Measured, Measured, f64) {
    let shots = shots();
    let request = request(
        camera(dir, vec![FLASH_FRAME]),
        screenshots(screenshot_frames(&shots), shots[0].0),
        format,
    );
    let out_path = dir.join(match format {
        OutputFormat::Mp4 => "out.mp4",
        OutputFormat::Mkv => "out.mkv",
    });
    let mut out = std::fs::File::create(&out_path).unwrap();
    let manifest = muxer::mux(&request, &mut out, &mut |_| {}).expect("mux");
    drop(out);
    if std::env::var_os("IDV_KEEP_SYNC_MEDIA").is_some() {
        let kept = dir.join("..").join(format!("screenshots-{format:?}.out"));
        std::fs::copy(&out_path, &kept).unwrap();
        println!("SCREENSHOTS output kept in {}", kept.display());
    }
    gst_discoverer_ok(&out_path).expect("gst-discoverer accepts the output");
    let probed = serde_json::from_str(&ffprobe_ok(&out_path).expect("ffprobe")).unwrap();
    let camera = measure_with_ffmpeg(&out_path, 0).expect("measure camera");
    let screen = measure_with_ffmpeg(&out_path, 1).expect("measure screen");
    let end_s = screen_end_s(&out_path, &probed);
    (manifest, probed, camera, screen, end_s)
}

fn check(format: OutputFormat, codec: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (manifest, probed, camera, screen, end_s) = mux(format, dir.path());
    let shots = shots();
    // In: the first shot (the latest start); out: the camera's end (the earliest).
    let in_s = shots[0].0;
    let cut_s = f64::from(CAMERA_SECONDS) - in_s;
    assert!(
        (manifest.cuts.duration_s - cut_s).abs() < 1e-6,
        "{:?}",
        manifest.cuts
    );

    // The manifest: the screen came from screenshots, named by their source.
    let input = &manifest.inputs[1];
    assert_eq!(
        (input.role, input.file.as_str(), input.codec.as_str()),
        (TrackRole::Screen, LABEL, "jpeg")
    );
    assert_eq!(input.units, shots.len() as u64);
    let track = &manifest.tracks[1];
    assert_eq!(
        (track.role, track.codec.as_str()),
        (TrackRole::Screen, codec)
    );
    assert!(
        track.made_by.starts_with("transcoded from screenshots") && track.made_by.contains("5 fps"),
        "{}",
        track.made_by
    );
    let frames = (cut_s * f64::from(STILLS_FPS)).ceil() as usize;
    assert_eq!(track.units, frames as u64, "{track:?}");

    // Both pictures are in the file, the screen at the first shot's size.
    let streams = probed["streams"].as_array().unwrap();
    let videos: Vec<_> = streams
        .iter()
        .filter(|s| s["codec_type"] == "video")
        .collect();
    assert_eq!(videos.len(), 2, "{streams:?}");
    assert_eq!(videos[1]["codec_name"], codec);
    assert_eq!(
        (videos[1]["width"].as_i64(), videos[1]["height"].as_i64()),
        (Some(320), Some(180))
    );

    // Constant rate from 0, lasting the cut.
    let times: Vec<f64> = screen
        .frame_times
        .iter()
        .map(Duration::as_secs_f64)
        .collect();
    assert_eq!(times.len(), frames, "{times:?}");
    for (k, t) in times.iter().enumerate() {
        assert!(
            (t - k as f64 * SCREEN_FRAME_S).abs() < 0.002,
            "frame {k} at {t} s"
        );
    }
    let duration = screen.video_duration.as_secs_f64();
    println!(
        "SCREENSHOTS {codec}: screen lasts {duration:.4} s (ends at {end_s:.4} s as stored), \
         cut {cut_s:.4} s, {} frames",
        times.len()
    );
    assert!(
        (duration - cut_s).abs() <= SCREEN_FRAME_S,
        "screen lasts {duration} s, the cut {cut_s} s"
    );
    // The last frame is cut short at the out point, not left a whole frame long (as stored:
    // `ffmpeg` measures the duration by the frames' spacing).
    assert!(
        (end_s - cut_s).abs() < 0.002,
        "the last frame ends at {end_s} s, the cut at {cut_s} s"
    );

    // Every frame shows the latest shot taken at or before its instant.
    for (t, luma) in times.iter().zip(&screen.frame_luma) {
        let on_screen = shots
            .iter()
            .rposition(|(s, _)| s - in_s <= t + 1e-6)
            .expect("a shot at or before every frame");
        let bright = shots[on_screen].1.bright;
        assert!(
            if bright { *luma > 170.0 } else { *luma < 100.0 },
            "frame at {t} s: luma {luma}, expected shot {on_screen} (bright: {bright})"
        );
    }

    // The bright shot shows from the first frame at or after its instant, with the camera's
    // flash taken at the same instant: never before it, less than one output frame after.
    assert_eq!(camera.flashes.len(), 1, "{:?}", camera.flashes);
    assert_eq!(screen.flashes.len(), 1, "{:?}", screen.flashes);
    let expected = flash_s() - in_s;
    let camera_flash = camera.flashes[0].as_secs_f64();
    let screen_flash = screen.flashes[0].as_secs_f64();
    println!(
        "SCREENSHOTS {codec}: shot at {expected:.4} s shown at {screen_flash:.4} s, camera flash \
         at {camera_flash:.4} s"
    );
    assert!(
        (camera_flash - expected).abs() < 0.0015,
        "camera flash at {camera_flash} s"
    );
    let lag = screen_flash - expected;
    assert!(
        (0.0..SCREEN_FRAME_S).contains(&lag),
        "the bright shot shows {lag} s after it was taken"
    );
}

#[test]
fn screenshots_become_a_screen_track_in_mp4() {
    check(OutputFormat::Mp4, "h264");
}

#[test]
fn screenshots_become_a_screen_track_in_matroska() {
    check(OutputFormat::Mkv, "vp8");
}

/// Muxes the shots with `damage` done to them; the error.
fn refused(dir: &Path, damage: impl FnOnce(&mut Vec<RawFrame>)) -> MuxError {
    let shots = shots();
    let mut frames = screenshot_frames(&shots);
    damage(&mut frames);
    let request = request(
        camera(dir, Vec::new()),
        screenshots(frames, shots[0].0),
        OutputFormat::Mp4,
    );
    muxer::mux(&request, &mut std::io::sink(), &mut |_| {}).expect_err("refused")
}

fn assert_refused(e: &MuxError, what: &str) {
    assert!(matches!(e, MuxError::Input { .. }), "{e:?}");
    let line = e.to_string();
    println!("REFUSED {line}");
    assert!(!line.contains('\n'), "one line: {line}");
    assert!(line.starts_with(LABEL), "names the source: {line}");
    assert!(line.contains(what), "says {what:?}: {line}");
}

#[test]
fn a_damaged_screenshot_is_refused_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let e = refused(dir.path(), |f| {
        let half = f[2].data.len() / 2;
        f[2].data.truncate(half);
    });
    assert_refused(&e, "frame 2: truncated");
    let e = refused(dir.path(), |f| {
        f[1].data = b"\x89PNG\r\n\x1a\n not a JPEG".to_vec()
    });
    assert_refused(&e, "frame 1: not a JPEG");
    // A segment whose length runs past the end of the picture.
    let e = refused(dir.path(), |f| {
        f[3].data[4] = 0xff;
        f[3].data[5] = 0xff;
    });
    assert_refused(&e, "frame 3: truncated inside the 0xe0 segment");
    let e = refused(dir.path(), |f| f[0].data.clear());
    assert_refused(&e, "frame 0 is empty");
}
