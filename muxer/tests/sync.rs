//! Lips and voice agree: generated camera clips (a white flash on chosen frames) and CTI
//! recordings (a 1 kHz beep at the same true instants) with offsets, drift, gaps, codecs and
//! containers, and call records that lie about the start while the agent's microphone
//! reference tells the truth; each muxed, decoded back by `ffmpeg` (what players do), and
//! every mark measured. Nothing here looks at the muxer's internals.

use std::path::Path;
use std::time::Duration;

use std::sync::Arc;

use fixtures::media::{
    CameraClip, CtiContainer, CtiEncoding, CtiRecording, Measured, VideoCodec, VideoContainer,
    Voice, gst_discoverer_ok, h264_access_units, measure_with_ffmpeg,
};
use muxer::manifest::TrackRole;
use muxer::timeline::UtcNanos;
use muxer::{
    AudioInput, FrameCodec, FrameFormat, Layout, Manifest, MemoryFrames, MuxRequest, OutputFormat,
    RawFrame, ReferenceInput, VideoInput, VideoRole,
};
use sha2::{Digest, Sha256};

/// The budget for |audio − video| at every mark.
const SYNC_MS: f64 = 10.0;
const FPS: u32 = 30;
const FRAME_MS: f64 = 1000.0 / FPS as f64;
/// 2026-11-21T10:00:00Z: where every camera clip starts.
const T0: i64 = 1_795_255_200 * UtcNanos::SECOND;
/// The customer's talk, heard by the CTI and by the agent's microphone.
const CUSTOMER_TALK: u64 = 11;
/// Someone else's talk.
const OTHER_TALK: u64 = 12;

/// The agent's microphone reference track, starting with the camera, on its clock.
#[derive(Clone, Copy)]
struct Reference {
    encoding: CtiEncoding,
    container: CtiContainer,
    rate_hz: u32,
    channels: u16,
    /// The same call (the customer's talk and the beeps at their true instants, the
    /// microphone's own noise), or another talk without beeps.
    same_call: bool,
}

struct Case {
    name: &'static str,
    video_codec: VideoCodec,
    video_container: VideoContainer,
    seconds: u32,
    keyframe_interval: u32,
    video_gaps: Vec<std::ops::Range<u32>>,
    encoding: CtiEncoding,
    audio_container: CtiContainer,
    rate_hz: u32,
    channels: u16,
    /// Audio start − camera start, seconds.
    offset_s: f64,
    drift_ppm: f64,
    /// Whether the call record gives the end (so drift can be measured).
    with_end: bool,
    /// The call record's start minus the true audio start, seconds (its end is off by as
    /// much: a PBX clock set wrong).
    record_error_s: f64,
    /// The agent's microphone reference, if sent. The customer then talks on the CTI too.
    reference: Option<Reference>,
    /// Explicit cuts, seconds after the camera's start.
    in_s: Option<f64>,
    out_s: Option<f64>,
    /// Sync marks, seconds after the camera's start (rounded to a frame).
    marks_s: Vec<f64>,
    format: OutputFormat,
    /// A screen track too: its codec, container and start − camera start (whole frames).
    screen: Option<Screen>,
    layout: Layout,
    /// The camera reaches the muxer as Annex-B frames (H.264 only), not as its file.
    camera_as_frames: bool,
    /// …and those frames sealed under a session key in an ingest track log, as the mux worker
    /// reads them.
    camera_sealed: bool,
}

/// The screen of a case: a second clip flashing at the same instants, another picture size.
struct Screen {
    codec: VideoCodec,
    container: VideoContainer,
    offset_s: f64,
}

impl Default for Case {
    fn default() -> Self {
        Self {
            name: "",
            video_codec: VideoCodec::H264,
            video_container: VideoContainer::Mp4,
            seconds: 20,
            keyframe_interval: 30,
            video_gaps: Vec::new(),
            encoding: CtiEncoding::MuLaw,
            audio_container: CtiContainer::Wav,
            rate_hz: 8000,
            channels: 1,
            offset_s: 0.0,
            drift_ppm: 0.0,
            with_end: true,
            record_error_s: 0.0,
            reference: None,
            in_s: None,
            out_s: None,
            marks_s: Vec::new(),
            format: OutputFormat::Mp4,
            screen: None,
            layout: Layout::Tracks,
            camera_as_frames: false,
            camera_sealed: false,
        }
    }
}

fn at(seconds_after_t0: f64) -> UtcNanos {
    UtcNanos(T0 + (seconds_after_t0 * 1e9).round() as i64)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn audio_extension(container: CtiContainer) -> &'static str {
    match container {
        CtiContainer::Wav => "wav",
        CtiContainer::Flac => "flac",
        CtiContainer::OggVorbis => "ogg",
        CtiContainer::Mp3 => "mp3",
        CtiContainer::OggOpus => "opus",
    }
}

struct Outcome {
    /// The first video stream (and the audio).
    measured: Measured,
    /// The other video streams, in order.
    more: Vec<Measured>,
    manifest: Manifest,
    /// Expected output time of each mark, ms.
    expected_ms: Vec<f64>,
    /// SHA-256 of the microphone reference, if one was sent.
    reference_sha256: Option<String>,
    /// SHA-256 of the camera's frames in order, when it came as frames.
    frames_sha256: Option<String>,
    duration_ms: f64,
}

fn extension(container: VideoContainer) -> &'static str {
    match container {
        VideoContainer::Mp4 => "mp4",
        VideoContainer::Matroska => "mkv",
        VideoContainer::WebM => "webm",
        VideoContainer::Ivf => "ivf",
    }
}

/// Writes the screen clip: 320×180, flashing at the marks that fall in it; returns its input
/// and when it ends (seconds after the camera's start).
fn write_screen(screen: &Screen, case: &Case, dir: &Path) -> (VideoInput, f64) {
    let frames = case.seconds * FPS - (screen.offset_s * f64::from(FPS)).round() as u32;
    let slots = case
        .marks_s
        .iter()
        .map(|s| ((s - screen.offset_s) * f64::from(FPS)).round())
        .filter(|&k| k >= 0.0 && k < f64::from(frames))
        .map(|k| k as u32)
        .collect();
    let clip = CameraClip {
        codec: screen.codec,
        container: screen.container,
        width: 320,
        height: 180,
        fps: FPS,
        frames,
        flash_frames: slots,
        gaps: Vec::new(),
        keyframe_interval: 45,
        bitrate_kbps: 300,
        grain: 0,
    };
    let path = dir.join(format!("screen.{}", extension(screen.container)));
    clip.write(&path).expect("screen clip");
    let end = screen.offset_s + f64::from(frames) / f64::from(FPS);
    (
        VideoInput::file(VideoRole::Screen, path, at(screen.offset_s)),
        end,
    )
}

/// The agent's monotonic clock when the camera's first frame was captured: frame sources
/// stamp frames on the sender's clock, and only differences count.
const AGENT_CLOCK_AT_FIRST_FRAME_NS: i64 = 86_400 * UtcNanos::SECOND + 123_456_789;

/// The camera file's frames as the agent sends them (Annex-B access units on its clock), held
/// in memory, and the SHA-256 of their bytes in order.
fn camera_frames(video_path: &Path) -> (MemoryFrames, String) {
    let units = h264_access_units(video_path).expect("access units");
    let mut sha = Sha256::new();
    let frames = units
        .into_iter()
        .map(|u| {
            sha.update(&u.data);
            RawFrame {
                pts_ns: AGENT_CLOCK_AT_FIRST_FRAME_NS + u.pts.as_nanos() as i64,
                keyframe: u.keyframe,
                data: u.data,
            }
        })
        .collect();
    let source = MemoryFrames {
        label: "session test/camera".into(),
        format: FrameFormat::new(FrameCodec::H264AnnexB),
        frames,
    };
    (source, hex::encode(sha.finalize()))
}

/// The frames sealed as the agent sends them (session key, seq from 1, capture times on the
/// agent clock) and stored in a track log as the ingest server stores them.
fn seal_into_track_log(frames: MemoryFrames, dir: &Path) -> muxer::SealedTrack {
    let session = uuid::Uuid::new_v4();
    let key = proto::SessionKey::generate();
    let cipher = proto::SessionCipher::new(&key, session);
    let path = dir.join("spool/camera.log");
    let mut log = storage::track_log::TrackLog::open(&path).unwrap();
    for (i, frame) in frames.frames.iter().enumerate() {
        let seq = i as u64 + 1;
        let flags = if frame.keyframe {
            proto::FrameFlags::KEYFRAME
        } else {
            proto::FrameFlags::NONE
        };
        let header =
            proto::FrameHeader::new(proto::Track::Camera, seq, frame.pts_ns).with_flags(flags);
        let sealed = cipher.seal(&header, &frame.data).unwrap();
        log.append(seq, frame.pts_ns, &sealed).unwrap();
    }
    log.sync().unwrap();
    muxer::SealedTrack {
        segments: vec![path.into()],
        session,
        track: proto::Track::Camera,
        key,
        format: frames.format,
        max_payload: 1 << 20,
        clock: None,
    }
}

/// The frames of a VP8 IVF file (32-byte header, then per frame its size, its time in
/// `1/fps` and its bytes) as the agent sends them, and the SHA-256 of their bytes in order.
fn vp8_ivf_frames(video_path: &Path) -> (MemoryFrames, String) {
    let ivf = std::fs::read(video_path).expect("IVF");
    let le32 = |at: usize| u32::from_le_bytes(ivf[at..at + 4].try_into().unwrap());
    let rate = u64::from(le32(16));
    let mut sha = Sha256::new();
    let mut frames = Vec::new();
    let mut at = 32;
    while at < ivf.len() {
        let size = le32(at) as usize;
        let pts = u64::from_le_bytes(ivf[at + 4..at + 12].try_into().unwrap());
        let data = ivf[at + 12..at + 12 + size].to_vec();
        sha.update(&data);
        frames.push(RawFrame {
            pts_ns: AGENT_CLOCK_AT_FIRST_FRAME_NS
                + ((pts * 1_000_000_000 + rate / 2) / rate) as i64,
            keyframe: data[0] & 1 == 0,
            data,
        });
        at += 12 + size;
    }
    let source = MemoryFrames {
        label: "session test/camera".into(),
        format: FrameFormat::new(FrameCodec::Vp8),
        frames,
    };
    (source, hex::encode(sha.finalize()))
}

fn run(case: &Case, dir: &Path) -> Outcome {
    let slots: Vec<u32> = case
        .marks_s
        .iter()
        .map(|s| (s * f64::from(FPS)).round() as u32)
        .collect();
    let clip = CameraClip {
        codec: case.video_codec,
        container: case.video_container,
        width: 160,
        height: 120,
        fps: FPS,
        frames: case.seconds * FPS,
        flash_frames: slots.clone(),
        gaps: case.video_gaps.clone(),
        keyframe_interval: case.keyframe_interval,
        bitrate_kbps: 300,
        grain: 0,
    };
    let video_path = dir.join(format!("camera.{}", extension(case.video_container)));
    let clip_truth = clip.write(&video_path).expect("camera clip");
    assert_eq!(
        clip_truth.flash_times.len(),
        slots.len(),
        "{}: marks in gaps",
        case.name
    );
    let mark_times: Vec<f64> = slots
        .iter()
        .map(|&k| clip.slot_time(k).as_secs_f64())
        .collect();
    // Talk time 0 is the earlier of the camera's and the audio's true starts.
    let talk_origin_s = case.offset_s.min(0.0);
    let cti = CtiRecording {
        encoding: case.encoding,
        container: case.audio_container,
        rate_hz: case.rate_hz,
        channels: case.channels,
        duration: Duration::from_secs(u64::from(case.seconds)),
        beeps: mark_times
            .iter()
            .map(|t| Duration::from_secs_f64(t - case.offset_s))
            .collect(),
        drift_ppm: case.drift_ppm,
        voice: case.reference.map(|_| Voice {
            seed: CUSTOMER_TALK,
            from: Duration::from_secs_f64(case.offset_s - talk_origin_s),
        }),
        ..CtiRecording::default()
    };
    let audio_path = dir.join(format!("cti.{}", audio_extension(case.audio_container)));
    let audio_truth = cti.write(&audio_path).expect("CTI recording");
    let mut reference_sha256 = None;
    let reference = case.reference.map(|r| {
        let mic = CtiRecording {
            encoding: r.encoding,
            container: r.container,
            rate_hz: r.rate_hz,
            channels: r.channels,
            duration: Duration::from_secs(u64::from(case.seconds)),
            beeps: if r.same_call {
                mark_times
                    .iter()
                    .copied()
                    .map(Duration::from_secs_f64)
                    .collect()
            } else {
                Vec::new()
            },
            drift_ppm: 0.0,
            noise_seed: 7,
            voice: Some(Voice {
                seed: if r.same_call {
                    CUSTOMER_TALK
                } else {
                    OTHER_TALK
                },
                from: Duration::from_secs_f64(-talk_origin_s),
            }),
        };
        let path = dir.join(format!("mic.{}", audio_extension(r.container)));
        mic.write(&path).expect("microphone reference");
        reference_sha256 = Some(hex::encode(Sha256::digest(std::fs::read(&path).unwrap())));
        ReferenceInput {
            bytes: path.into(),
            start: at(0.0),
        }
    });
    let audio_start = at(case.offset_s + case.record_error_s);
    let screen = case.screen.as_ref().map(|s| write_screen(s, case, dir));
    let mut frames_sha256 = None;
    let camera = if case.camera_as_frames {
        let (source, sha256) = match case.video_container {
            VideoContainer::Ivf => vp8_ivf_frames(&video_path),
            _ => camera_frames(&video_path),
        };
        frames_sha256 = Some(sha256);
        if case.camera_sealed {
            VideoInput::frames(
                VideoRole::Camera,
                Arc::new(seal_into_track_log(source, dir)),
                at(0.0),
            )
        } else {
            VideoInput::frames(VideoRole::Camera, Arc::new(source), at(0.0))
        }
    } else {
        VideoInput::file(VideoRole::Camera, video_path, at(0.0))
    };
    let request = MuxRequest {
        camera,
        screen: screen.as_ref().map(|(input, _)| input.clone()),
        audio: Some(AudioInput {
            bytes: audio_path.into(),
            start: audio_start,
            end: case
                .with_end
                .then(|| audio_start.plus(audio_truth.true_duration.as_nanos() as i64)),
        }),
        reference,
        in_point: case.in_s.map(at),
        out_point: case.out_s.map(at),
        format: case.format,
        layout: case.layout,
        agent_clock: None,
    };
    let out_path = dir.join(match case.format {
        OutputFormat::Mp4 => "out.mp4",
        OutputFormat::Mkv => "out.mkv",
    });
    let mut out = std::fs::File::create(&out_path).unwrap();
    let manifest = muxer::mux(&request, &mut out, &mut |_| {}).expect("mux");
    drop(out);
    gst_discoverer_ok(&out_path).expect("gst-discoverer accepts the output");
    let streams = manifest
        .tracks
        .iter()
        .filter(|t| t.role != TrackRole::CtiAudio)
        .count();
    let measured = measure_with_ffmpeg(&out_path, 0).expect("measure");
    let more = (1..streams)
        .map(|i| measure_with_ffmpeg(&out_path, i).expect("measure"))
        .collect();

    let video_end = clip.slot_time(clip.frames - 1).as_secs_f64() + 1.0 / f64::from(FPS);
    let screen_start = case.screen.as_ref().map_or(0.0, |s| s.offset_s);
    let screen_end = screen.as_ref().map_or(f64::MAX, |(_, end)| *end);
    let in_s = case
        .in_s
        .unwrap_or(case.offset_s.max(0.0).max(screen_start));
    let audio_end = case.offset_s + audio_truth.true_duration.as_secs_f64();
    let out_s = case
        .out_s
        .unwrap_or(video_end.min(audio_end).min(screen_end));
    let expected_ms = mark_times
        .iter()
        .filter(|&&t| t >= in_s && t < out_s)
        .map(|t| (t - in_s) * 1000.0)
        .collect();
    Outcome {
        measured,
        more,
        manifest,
        expected_ms,
        reference_sha256,
        frames_sha256,
        duration_ms: (out_s - in_s) * 1000.0,
    }
}

/// Asserts every mark is in sync and where it belongs, and the durations; prints the errors
/// (`cargo test -- --nocapture` shows them: the closing note quotes the worst).
fn check_marks(case: &Case, o: &Outcome, stream: usize, m: &Measured) {
    let flashes: Vec<f64> = m.flashes.iter().copied().map(ms).collect();
    let beeps: Vec<f64> = m.beeps.iter().copied().map(ms).collect();
    assert_eq!(
        flashes.len(),
        o.expected_ms.len(),
        "{} (video {stream}): flashes {flashes:?} vs expected {:?}",
        case.name,
        o.expected_ms
    );
    assert_eq!(
        beeps.len(),
        o.expected_ms.len(),
        "{}: beeps {beeps:?} vs expected {:?}",
        case.name,
        o.expected_ms
    );
    for ((f, b), e) in flashes.iter().zip(&beeps).zip(&o.expected_ms) {
        let sync = b - f;
        println!(
            "SYNC {:<40} v{stream} mark at {e:>9.3} ms: audio−video {sync:+7.3} ms, video {:+7.3} ms, audio {:+7.3} ms",
            case.name,
            f - e,
            b - e
        );
        assert!(
            sync.abs() <= SYNC_MS,
            "{} (video {stream}): mark at {e} ms: audio − video = {sync:.3} ms",
            case.name
        );
        assert!(
            (f - e).abs() <= 1.5,
            "{} (video {stream}): flash at {f} ms, expected {e} ms",
            case.name
        );
        assert!(
            (b - e).abs() <= SYNC_MS,
            "{}: beep at {b} ms, expected {e} ms",
            case.name
        );
    }
    assert!(
        ms(m.first_video_pts).abs() < 0.5,
        "{} (video {stream}): starts at {:?}",
        case.name,
        m.first_video_pts
    );
    let vd = ms(m.video_duration);
    assert!(
        (vd - o.duration_ms).abs() <= FRAME_MS,
        "{} (video {stream}): lasts {vd} ms, cut is {} ms",
        case.name,
        o.duration_ms
    );
}

fn check(case: &Case, o: &Outcome) {
    for (stream, m) in std::iter::once(&o.measured).chain(&o.more).enumerate() {
        check_marks(case, o, stream, m);
    }
    let m = &o.measured;
    assert!(
        ms(m.first_video_pts).abs() < 0.5,
        "{}: video starts at {:?}",
        case.name,
        m.first_video_pts
    );
    let (vd, ad) = (ms(m.video_duration), ms(m.audio_duration));
    println!(
        "DURATION {:<36} expected {:.3} ms: video {:+.3} ms, audio {:+.3} ms",
        case.name,
        o.duration_ms,
        vd - o.duration_ms,
        ad - o.duration_ms
    );
    assert!(
        (vd - o.duration_ms).abs() <= FRAME_MS,
        "{}: video lasts {vd} ms, cut is {} ms",
        case.name,
        o.duration_ms
    );
    assert!(
        (ad - o.duration_ms).abs() <= FRAME_MS,
        "{}: audio lasts {ad} ms, cut is {} ms",
        case.name,
        o.duration_ms
    );
    assert!(
        (ad - vd).abs() <= FRAME_MS,
        "{}: audio {ad} ms vs video {vd} ms",
        case.name
    );
    assert!((o.manifest.cuts.duration_s * 1000.0 - o.duration_ms).abs() < 0.01);
}

fn mux_and_check(case: &Case) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let outcome = run(case, dir.path());
    if std::env::var_os("IDV_KEEP_SYNC_MEDIA").is_some() {
        let kept = dir.keep();
        println!("{}: media kept in {}", case.name, kept.display());
    }
    check(case, &outcome);
    outcome
}

#[test]
fn h264_mp4_with_mulaw_8k_starting_later() {
    let o = mux_and_check(&Case {
        name: "h264/mp4 + µ-law 8k, audio +2 s",
        offset_s: 2.0,
        marks_s: vec![3.0, 7.5, 12.0, 19.0],
        ..Case::default()
    });
    assert_eq!(
        o.manifest.tracks[0].made_by, "passthrough",
        "in point on a keyframe"
    );
}

#[test]
fn recorder_running_300_ppm_fast_five_seconds_early() {
    let o = mux_and_check(&Case {
        name: "h264/mp4 + µ-law 8k, audio −5 s, +300 ppm",
        seconds: 60,
        offset_s: -5.0,
        drift_ppm: 300.0,
        marks_s: vec![1.0, 20.0, 40.0, 54.0],
        ..Case::default()
    });
    let drift = o.manifest.clock.drift_ppm.expect("end time given");
    assert!((drift - 300.0).abs() < 1.0, "drift found {drift}");
}

#[test]
fn recorder_running_300_ppm_slow_stereo_16k_pcm_from_matroska() {
    let o = mux_and_check(&Case {
        name: "h264/mkv + PCM 16k stereo, +5 s, −300 ppm",
        seconds: 60,
        video_container: VideoContainer::Matroska,
        encoding: CtiEncoding::Pcm16,
        rate_hz: 16_000,
        channels: 2,
        offset_s: 5.0,
        drift_ppm: -300.0,
        marks_s: vec![6.0, 30.0, 59.0],
        ..Case::default()
    });
    assert_eq!(o.measured.audio_channels, 2, "both CTI channels kept");
}

#[test]
fn vp8_webm_with_alaw_into_matroska() {
    let o = mux_and_check(&Case {
        name: "vp8/webm + A-law 8k → mkv, +1.234 s, +150 ppm",
        video_codec: VideoCodec::Vp8,
        video_container: VideoContainer::WebM,
        encoding: CtiEncoding::ALaw,
        offset_s: 1.234,
        drift_ppm: 150.0,
        marks_s: vec![2.0, 9.0, 18.0],
        format: OutputFormat::Mkv,
        ..Case::default()
    });
    assert!(o.manifest.tracks[0].made_by.starts_with("passthrough"));
}

#[test]
fn vp8_ivf_transcoded_into_mp4() {
    let o = mux_and_check(&Case {
        name: "vp8/ivf + µ-law → mp4 (transcode)",
        video_codec: VideoCodec::Vp8,
        video_container: VideoContainer::Ivf,
        offset_s: 0.5,
        marks_s: vec![1.0, 10.0],
        ..Case::default()
    });
    assert_eq!(o.manifest.tracks[0].made_by, "transcoded");
}

#[test]
fn h264_into_matroska_transcoded_with_flac_16k() {
    mux_and_check(&Case {
        name: "h264/mp4 + FLAC 16k → mkv (transcode)",
        audio_container: CtiContainer::Flac,
        encoding: CtiEncoding::Pcm16,
        rate_hz: 16_000,
        offset_s: -1.5,
        marks_s: vec![1.0, 8.0, 17.0],
        format: OutputFormat::Mkv,
        ..Case::default()
    });
}

#[test]
fn opus_48k_stereo_from_a_recorder_running_slow() {
    let o = mux_and_check(&Case {
        name: "h264/mp4 + Opus 48k stereo, +0.5 s, −120 ppm",
        encoding: CtiEncoding::Pcm16,
        audio_container: CtiContainer::OggOpus,
        rate_hz: 48_000,
        channels: 2,
        offset_s: 0.5,
        drift_ppm: -120.0,
        marks_s: vec![1.0, 7.5, 13.0, 19.0],
        ..Case::default()
    });
    assert_eq!(o.measured.audio_channels, 2, "both CTI channels kept");
    let drift = o.manifest.clock.drift_ppm.expect("end time given");
    assert!((drift + 120.0).abs() < 1.0, "drift found {drift}");
}

#[test]
fn a_hole_in_the_video_and_cuts_inside_a_gop() {
    let case = Case {
        name: "h264 gap 10–11.5 s, cut 2.55–17.3 s",
        video_gaps: std::iter::once(300..345).collect(),
        offset_s: 0.25,
        in_s: Some(2.55),
        out_s: Some(17.3),
        marks_s: vec![3.0, 9.0, 12.0, 17.0],
        ..Case::default()
    };
    let o = mux_and_check(&case);
    assert!(
        o.manifest.tracks[0].made_by.contains("re-encoded"),
        "{}",
        o.manifest.tracks[0].made_by
    );
    // The hole stays a hole: no frame shown between 10 s and 11.5 s of the camera (7.45 s to
    // 8.95 s of the output), and the manifest lists it.
    let inside: Vec<_> = o
        .measured
        .frame_times
        .iter()
        .map(|t| ms(*t))
        .filter(|&t| t > 7_460.0 && t < 8_940.0)
        .collect();
    assert!(inside.is_empty(), "frames inside the gap: {inside:?}");
    let gap = o
        .manifest
        .gaps
        .iter()
        .find(|g| g.filled_with == "held frame")
        .expect("the gap is in the manifest");
    assert!((gap.output_from_s - (10.0 - 2.55)).abs() < 0.04, "{gap:?}");
    assert!((gap.seconds - 1.5).abs() < 0.04, "{gap:?}");
    // The first frame is the one on screen at the in point (captured at 2.5333 s), shown
    // from 0; the next one comes at its true time.
    let t = &o.measured.frame_times;
    assert!(
        ms(t[0]).abs() < 0.5 && (ms(t[1]) - (2566.667 - 2550.0)).abs() < 1.0,
        "{:?}",
        &t[..3]
    );
}

#[test]
fn a_screen_starting_later_is_a_second_track_in_sync() {
    let o = mux_and_check(&Case {
        name: "h264 camera + vp8 screen +1 s → mp4",
        offset_s: -0.75,
        marks_s: vec![2.0, 9.0, 16.0],
        screen: Some(Screen {
            codec: VideoCodec::Vp8,
            container: VideoContainer::WebM,
            offset_s: 1.0,
        }),
        ..Case::default()
    });
    let roles: Vec<_> = o.manifest.tracks.iter().map(|t| t.role).collect();
    assert_eq!(
        roles,
        [TrackRole::Camera, TrackRole::Screen, TrackRole::CtiAudio]
    );
    assert_eq!(o.manifest.cuts.in_chosen_by, "latest start");
    assert_eq!(o.manifest.tracks[1].made_by, "transcoded", "VP8 into MP4");
}

#[test]
fn picture_in_picture_composites_camera_over_screen_first() {
    let o = mux_and_check(&Case {
        name: "pip: h264 camera over h264 screen +0.5 s → mkv",
        offset_s: 0.2,
        marks_s: vec![1.5, 8.0, 14.0],
        screen: Some(Screen {
            codec: VideoCodec::H264,
            container: VideoContainer::Matroska,
            offset_s: 0.5,
        }),
        layout: Layout::Pip,
        format: OutputFormat::Mkv,
        ..Case::default()
    });
    let roles: Vec<_> = o.manifest.tracks.iter().map(|t| t.role).collect();
    assert_eq!(
        roles,
        [
            TrackRole::Composite,
            TrackRole::Camera,
            TrackRole::Screen,
            TrackRole::CtiAudio
        ]
    );
    assert_eq!(o.more.len(), 2, "camera and screen kept as they were");
    // 320×180 screen, 160×120 camera a quarter of the width wide in the corner.
    assert!(
        o.manifest.tracks[0].made_by.contains("80×60"),
        "{}",
        o.manifest.tracks[0].made_by
    );
}

/// The camera of the gap case, as frames: the same marks, the same hole, listed the same way.
fn camera_as_frames_case(name: &'static str, format: OutputFormat) -> Case {
    Case {
        name,
        video_gaps: std::iter::once(300..345).collect(),
        offset_s: 0.25,
        in_s: Some(2.55),
        out_s: Some(17.3),
        marks_s: vec![3.0, 9.0, 12.0, 17.0],
        format,
        camera_as_frames: true,
        ..Case::default()
    }
}

/// What every frame-source case promises beyond the marks: the hole is kept and listed, and
/// the manifest names the source by its label and hashes its frames.
fn check_frames_outcome(o: &Outcome, codec: &str) {
    let inside: Vec<_> = o
        .measured
        .frame_times
        .iter()
        .map(|t| ms(*t))
        .filter(|&t| t > 7_460.0 && t < 8_940.0)
        .collect();
    assert!(inside.is_empty(), "frames inside the gap: {inside:?}");
    let gap = o
        .manifest
        .gaps
        .iter()
        .find(|g| g.filled_with == "held frame")
        .expect("the gap is in the manifest");
    assert!((gap.output_from_s - (10.0 - 2.55)).abs() < 0.04, "{gap:?}");
    assert!((gap.seconds - 1.5).abs() < 0.04, "{gap:?}");
    let camera = o
        .manifest
        .inputs
        .iter()
        .find(|i| i.role == TrackRole::Camera)
        .expect("the camera is an input");
    assert_eq!(camera.file, "session test/camera");
    assert_eq!(Some(&camera.sha256), o.frames_sha256.as_ref());
    assert_eq!(camera.start, "2026-11-21T10:00:00Z");
    assert_eq!(camera.codec, codec);
}

#[test]
fn camera_as_annexb_frames_into_mp4_with_a_hole_and_a_cut_inside_a_gop() {
    let case = camera_as_frames_case(
        "frames: h264 Annex-B, gap, cut in GOP → mp4",
        OutputFormat::Mp4,
    );
    let o = mux_and_check(&case);
    check_frames_outcome(&o, "h264");
    assert!(
        o.manifest.tracks[0].made_by.contains("re-encoded"),
        "{}",
        o.manifest.tracks[0].made_by
    );
}

#[test]
fn camera_as_annexb_frames_into_matroska() {
    let case = camera_as_frames_case(
        "frames: h264 Annex-B, gap → mkv (transcode)",
        OutputFormat::Mkv,
    );
    let o = mux_and_check(&case);
    check_frames_outcome(&o, "h264");
    assert_eq!(o.manifest.tracks[0].made_by, "transcoded");
}

#[test]
fn camera_as_vp8_frames_into_matroska_with_a_cut_inside_a_gop() {
    let case = Case {
        video_codec: VideoCodec::Vp8,
        video_container: VideoContainer::Ivf,
        ..camera_as_frames_case("frames: vp8, gap, cut in GOP → mkv", OutputFormat::Mkv)
    };
    let o = mux_and_check(&case);
    check_frames_outcome(&o, "vp8");
    assert!(
        o.manifest.tracks[0].made_by.contains("re-encoded"),
        "{}",
        o.manifest.tracks[0].made_by
    );
}

/// The agent's microphone: 16 kHz mono FLAC, the same call.
const MIC_FLAC_16K: Reference = Reference {
    encoding: CtiEncoding::Pcm16,
    container: CtiContainer::Flac,
    rate_hz: 16_000,
    channels: 1,
    same_call: true,
};

/// What the manifest says about the reference: it is an input (hashed, never muxed), and
/// returns (correction applied ms, confidence).
fn reference_verdict(case: &Case, o: &Outcome) -> (f64, f64) {
    let m = &o.manifest;
    let mic = m
        .inputs
        .iter()
        .find(|i| i.role == TrackRole::MicReference)
        .expect("the reference is an input");
    assert_eq!(Some(&mic.sha256), o.reference_sha256.as_ref());
    assert_eq!(mic.start, "2026-11-21T10:00:00Z");
    assert!(
        m.tracks.iter().all(|t| t.role != TrackRole::MicReference) && m.tracks.len() == 2,
        "the reference is not muxed: {:?}",
        m.tracks
    );
    let clock = &m.clock;
    let refined_ms = clock.refined_by_ms.expect("refined_by_ms with a reference");
    let confidence = clock.confidence.expect("a confidence with a reference");
    let planted_ms = case.record_error_s * 1000.0;
    println!(
        "REFERENCE {:<40} call record off by {planted_ms:+8.1} ms: refined by {refined_ms:+9.3} ms \
         (error {:+.3} ms), found {:?} ms, confidence {confidence:.3}",
        case.name,
        refined_ms + planted_ms,
        clock.reference_correction_ms,
    );
    (refined_ms, confidence)
}

fn assert_corrected(case: &Case, o: &Outcome) {
    let (refined_ms, confidence) = reference_verdict(case, o);
    let planted_ms = case.record_error_s * 1000.0;
    assert!(confidence >= 0.5, "{}: confidence {confidence}", case.name);
    assert!(
        (refined_ms + planted_ms).abs() <= 2.0,
        "{}: call record off by {planted_ms} ms, refined by {refined_ms} ms",
        case.name
    );
    let clock = &o.manifest.clock;
    let offset_s = clock.audio_offset_s.expect("an audio offset");
    assert!(
        clock.method.contains("refined by GCC-PHAT"),
        "{}",
        clock.method
    );
    assert!(
        (offset_s - case.offset_s).abs() < 0.002,
        "{}: audio offset {} s, truly {} s",
        case.name,
        offset_s,
        case.offset_s
    );
}

#[test]
fn a_call_record_730_ms_late_is_corrected_by_the_microphone_reference() {
    let case = Case {
        name: "µ-law 8k +150 ppm, record +730.31 ms, mic FLAC",
        seconds: 40,
        offset_s: 1.0,
        drift_ppm: 150.0,
        record_error_s: 0.730_31,
        reference: Some(MIC_FLAC_16K),
        marks_s: vec![2.0, 13.0, 27.5, 38.0],
        ..Case::default()
    };
    let o = mux_and_check(&case);
    assert_corrected(&case, &o);
}

#[test]
fn a_call_record_2_4_s_early_is_corrected_by_a_stereo_48k_reference() {
    let case = Case {
        name: "PCM 16k stereo, record −2411.73 ms, mic 48k st.",
        seconds: 30,
        encoding: CtiEncoding::Pcm16,
        rate_hz: 16_000,
        channels: 2,
        offset_s: -1.5,
        drift_ppm: -200.0,
        record_error_s: -2.411_73,
        reference: Some(Reference {
            encoding: CtiEncoding::Pcm16,
            container: CtiContainer::Wav,
            rate_hz: 48_000,
            channels: 2,
            same_call: true,
        }),
        marks_s: vec![1.0, 9.0, 17.5, 26.0],
        ..Case::default()
    };
    let o = mux_and_check(&case);
    assert_corrected(&case, &o);
}

#[test]
fn an_unrelated_reference_leaves_the_call_record_as_it_is() {
    // Another talk, no beeps: nothing to align on. The call record is right here, so the
    // marks stay in sync only if it is kept.
    let case = Case {
        name: "µ-law 8k, record right, unrelated mic",
        seconds: 30,
        offset_s: 0.6,
        reference: Some(Reference {
            same_call: false,
            ..MIC_FLAC_16K
        }),
        marks_s: vec![2.0, 14.0, 25.0],
        ..Case::default()
    };
    let o = mux_and_check(&case);
    let (refined_ms, confidence) = reference_verdict(&case, &o);
    assert!(confidence < 0.5, "confidence {confidence}");
    assert_eq!(refined_ms, 0.0);
    let clock = &o.manifest.clock;
    assert!(
        clock.method.contains("call record kept"),
        "{}",
        clock.method
    );
    assert!((clock.audio_offset_s.expect("an audio offset") - 0.6).abs() < 1e-9);
}

#[test]
fn camera_from_a_sealed_ingest_track_log_into_mp4() {
    let case = Case {
        camera_sealed: true,
        ..camera_as_frames_case(
            "sealed track log: h264, gap, cut in GOP → mp4",
            OutputFormat::Mp4,
        )
    };
    let o = mux_and_check(&case);
    let camera = &o.manifest.inputs[0];
    assert!(
        camera.file.starts_with("session ") && camera.file.ends_with("/camera"),
        "{}",
        camera.file
    );
    assert_eq!(camera.codec, "h264");
}

#[test]
fn a_sealed_track_under_another_key_stops_the_mux_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let frames = MemoryFrames {
        label: "session test/camera".into(),
        format: FrameFormat::new(FrameCodec::H264AnnexB),
        frames: vec![RawFrame {
            pts_ns: 0,
            keyframe: true,
            data: vec![0, 0, 0, 1, 0x65, 0x88, 0x84],
        }],
    };
    let mut track = seal_into_track_log(frames, dir.path());
    track.key = proto::SessionKey::generate();
    let request = MuxRequest {
        camera: VideoInput::frames(VideoRole::Camera, Arc::new(track), at(0.0)),
        screen: None,
        audio: Some(AudioInput {
            bytes: dir.path().join("cti.wav").into(),
            start: at(0.0),
            end: None,
        }),
        reference: None,
        in_point: None,
        out_point: None,
        format: OutputFormat::Mp4,
        layout: Layout::Tracks,
        agent_clock: None,
    };
    let err = muxer::mux(&request, &mut std::io::sink(), &mut |_| {}).unwrap_err();
    let line = err.to_string();
    assert!(matches!(err, muxer::MuxError::Input { .. }), "{line}");
    assert!(
        line.contains("/camera: frame 1:") && !line.contains('\n'),
        "{line}"
    );
}
