//! Video given as a stream of encoded frames (the ingest server's track logs) instead of a
//! file: streams the muxer cannot use are refused with one line naming the source, never a
//! panic or a hang. (That good streams mux in sync is measured in `sync.rs`.)

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use fixtures::media::{CameraClip, CtiRecording, h264_access_units};
use muxer::timeline::UtcNanos;
use muxer::{
    AudioInput, FrameCodec, FrameFormat, MemoryFrames, MuxError, MuxRequest, RawFrame, VideoInput,
    VideoRole,
};

/// 2026-11-21T10:00:00Z.
const T0: i64 = 1_795_255_200 * UtcNanos::SECOND;
const LABEL: &str = "session bad/camera";

/// A 3 s H.264 camera clip's access units, as the agent sends them.
fn good_frames(dir: &Path) -> Vec<RawFrame> {
    let path = dir.join("camera.mp4");
    CameraClip {
        frames: 90,
        width: 160,
        height: 120,
        ..CameraClip::default()
    }
    .write(&path)
    .expect("clip");
    h264_access_units(&path)
        .expect("access units")
        .into_iter()
        .map(|u| RawFrame {
            pts_ns: u.pts.as_nanos() as i64,
            keyframe: u.keyframe,
            data: u.data,
        })
        .collect()
}

/// Muxes `frames` as the camera with a 3 s CTI recording; returns the error.
fn mux_frames(dir: &Path, codec: FrameCodec, frames: Vec<RawFrame>) -> MuxError {
    let audio = dir.join("cti.wav");
    CtiRecording {
        duration: Duration::from_secs(3),
        ..CtiRecording::default()
    }
    .write(&audio)
    .expect("CTI");
    let source = MemoryFrames {
        label: LABEL.into(),
        format: FrameFormat::new(codec),
        frames,
    };
    let request = MuxRequest {
        camera: VideoInput::frames(VideoRole::Camera, Arc::new(source), UtcNanos(T0)),
        screen: None,
        audio: Some(AudioInput {
            bytes: audio.into(),
            start: UtcNanos(T0),
            end: None,
        }),
        reference: None,
        in_point: None,
        out_point: None,
        format: muxer::OutputFormat::Mp4,
        layout: muxer::Layout::Tracks,
        agent_clock: None,
    };
    let mut out = Vec::new();
    muxer::mux(&request, &mut out, &mut |_| {}).expect_err("refused")
}

/// The error is an input error of the source, on one line, saying `what`.
fn assert_refused(e: &MuxError, what: &str) {
    assert!(matches!(e, MuxError::Input { .. }), "{e:?}");
    let line = e.to_string();
    println!("REFUSED {line}");
    assert!(!line.contains('\n'), "one line: {line}");
    assert!(line.starts_with(LABEL), "names the source: {line}");
    assert!(line.contains(what), "says {what:?}: {line}");
}

#[test]
fn a_stream_starting_after_its_keyframe_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut frames = good_frames(dir.path());
    assert!(frames[0].keyframe && !frames[1].keyframe);
    frames.remove(0);
    let e = mux_frames(dir.path(), FrameCodec::H264AnnexB, frames.clone());
    assert_refused(&e, "not a keyframe");
    // Flagged as a keyframe by a confused sender: the bitstream says otherwise.
    frames[0].keyframe = true;
    let e = mux_frames(dir.path(), FrameCodec::H264AnnexB, frames);
    assert_refused(&e, "not a keyframe (no IDR slice)");
}

#[test]
fn garbage_instead_of_h264_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let garbage: Vec<RawFrame> = (0..30)
        .map(|i| RawFrame {
            pts_ns: i * 33_333_333,
            keyframe: i == 0,
            data: (0..500).map(|b| (b * 7 + i) as u8 | 0x80).collect(),
        })
        .collect();
    let e = mux_frames(dir.path(), FrameCodec::H264AnnexB, garbage);
    assert_refused(&e, "not an H.264 Annex-B access unit");
    // A good start, then a frame of garbage.
    let mut frames = good_frames(dir.path());
    frames[40].data = vec![0x5a; 300];
    let e = mux_frames(dir.path(), FrameCodec::H264AnnexB, frames);
    assert_refused(&e, "frame 40 is not an H.264 Annex-B access unit");
    // Start codes, but a NAL unit with its forbidden bit set (h264parse would pass it on).
    let mut frames = good_frames(dir.path());
    frames[40].data = [0, 0, 0, 1, 0xe5].into_iter().chain([0x5a; 300]).collect();
    let e = mux_frames(dir.path(), FrameCodec::H264AnnexB, frames);
    assert_refused(&e, "frame 40 holds a damaged H.264 NAL unit");
}

#[test]
fn an_empty_stream_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let e = mux_frames(dir.path(), FrameCodec::H264AnnexB, Vec::new());
    assert_refused(&e, "no video frames");
    let e = mux_frames(dir.path(), FrameCodec::Vp8, Vec::new());
    assert_refused(&e, "no video frames");
}

#[test]
fn frames_stamped_before_the_first_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut frames = good_frames(dir.path());
    frames[5].pts_ns = -1_000_000;
    let e = mux_frames(dir.path(), FrameCodec::H264AnnexB, frames);
    assert_refused(&e, "before the first frame");
}

/// The 3 s camera as frames with no CTI recording (and `reference`, if any).
fn video_only(dir: &Path, reference: Option<muxer::ReferenceInput>) -> MuxRequest {
    let source = MemoryFrames {
        label: "session ok/camera".into(),
        format: FrameFormat::new(FrameCodec::H264AnnexB),
        frames: good_frames(dir),
    };
    MuxRequest {
        camera: VideoInput::frames(VideoRole::Camera, Arc::new(source), UtcNanos(T0)),
        screen: None,
        audio: None,
        reference,
        in_point: None,
        out_point: None,
        format: muxer::OutputFormat::Mp4,
        layout: muxer::Layout::Tracks,
        agent_clock: None,
    }
}

/// Without a CTI recording (its deadline passed) the archive holds the video alone: the cut is
/// the video's whole span, and the manifest says it is video only.
#[test]
fn without_cti_audio_the_video_is_muxed_alone_and_flagged() {
    let dir = tempfile::tempdir().unwrap();
    let request = video_only(dir.path(), None);
    let out_path = dir.path().join("out.mp4");
    let mut out = std::fs::File::create(&out_path).unwrap();
    let manifest = muxer::mux(&request, &mut out, &mut |_| {}).expect("video-only mux");
    drop(out);

    assert!(manifest.video_only);
    assert_eq!(manifest.clock.method, "no CTI recording: video only");
    assert_eq!(manifest.clock.audio_offset_s, None);
    assert!(
        (manifest.cuts.duration_s - 3.0).abs() < 1e-6,
        "{:?}",
        manifest.cuts
    );
    assert_eq!(
        manifest.inputs.len(),
        1,
        "the camera alone: {:?}",
        manifest.inputs
    );
    assert_eq!(manifest.tracks.len(), 1, "{:?}", manifest.tracks);

    let probed: serde_json::Value =
        serde_json::from_str(&fixtures::media::ffprobe_ok(&out_path).expect("ffprobe")).unwrap();
    let kinds: Vec<&str> = probed["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["codec_type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["video"]);
    let duration: f64 = probed["format"]["duration"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((duration - 3.0).abs() < 0.04, "plays {duration} s");
}

/// A microphone reference places a CTI recording: without one the request is refused.
#[test]
fn a_reference_without_cti_audio_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let reference = muxer::ReferenceInput {
        bytes: dir.path().join("mic.wav").into(),
        start: UtcNanos(T0),
    };
    let request = video_only(dir.path(), Some(reference));
    let err = muxer::mux(&request, &mut std::io::sink(), &mut |_| {}).unwrap_err();
    assert!(matches!(err, MuxError::Request(_)), "{err}");
}
