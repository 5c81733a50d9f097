//! One mux, end to end: read the inputs, put them on the timeline, choose the cuts, plan each
//! track, build the output pipeline (appsrc per track → encoder where needed → `mp4mux` in
//! fragmented mode or `matroskamux` in streaming mode → appsink) and stream its bytes into
//! the caller's writer — the sealed archive — as they come, so memory stays bounded however
//! long the call. Returns the manifest to seal with them.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use crate::align::{self, AlignSettings, ReferenceInput};
use crate::audio::{AudioInput, AudioOutput, AudioTrack};
use crate::error::{MuxError, Result};
use crate::input::audio::AudioFile;
use crate::input::bytes::InputBytes;
use crate::input::video::{VideoCodec, VideoScan, VideoSource};
use crate::input::{fingerprint, fingerprint_video};
use crate::manifest::{
    AgentClockRecord, ClockRecord, CutRecord, InputRecord, MANIFEST_VERSION, Manifest, TrackRecord,
    TrackRole, rfc3339,
};
use crate::pipeline::{self, Pipeline, element};
use crate::timeline::{CtiClock, CutPoints, UtcNanos};
use crate::video::{self, PipBranch, PipLayout, VideoInput, VideoMode, VideoTrack};

/// The container (and with it the codecs) of the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputFormat {
    /// Fragmented MP4: H.264 + AAC.
    #[default]
    Mp4,
    /// Matroska: VP8/VP9 + Opus.
    Mkv,
}

impl OutputFormat {
    fn video_codec(self, input: VideoCodec) -> VideoCodec {
        match (self, input) {
            (Self::Mp4, _) => VideoCodec::H264,
            (Self::Mkv, VideoCodec::Vp9) => VideoCodec::Vp9,
            (Self::Mkv, _) => VideoCodec::Vp8,
        }
    }

    fn audio_codec(self) -> &'static str {
        match self {
            Self::Mp4 => "aac",
            Self::Mkv => "opus",
        }
    }

    /// Audio rate, and the priming the encoder puts before the first real sample that
    /// players do not skip on their own (see [`crate::audio`]): `voaacenc` delays by 1600
    /// samples at any rate (measured by the sync tests: 1024 of priming plus its 576-sample
    /// look-ahead); Opus says its pre-skip in its header. AAC runs at 32 kHz at least: an
    /// fragmented MP4 ends on a whole AAC frame of 1024 samples, and only from 32 kHz up is
    /// that shorter than a video frame (the duration contract); at 8 kHz it would be 128 ms.
    fn audio_output(self, input_rate_hz: u32) -> AudioOutput {
        match self {
            Self::Mp4 => AudioOutput {
                rate_hz: match input_rate_hz {
                    44_100 | 48_000 => input_rate_hz,
                    _ => 32_000,
                },
                skip: 1600,
                tail: 1600 + 1024,
                aac_bitrate_per_channel: Some(AAC_BITRATE_PER_CHANNEL),
            },
            Self::Mkv => AudioOutput {
                rate_hz: 48_000,
                skip: 0,
                tail: 0,
                aac_bitrate_per_channel: None,
            },
        }
    }

    fn container(self) -> &'static str {
        match self {
            Self::Mp4 => "mp4 (fragmented)",
            Self::Mkv => "matroska (streaming)",
        }
    }
}

/// How the video tracks are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Layout {
    /// One track per input (camera, then screen).
    #[default]
    Tracks,
    /// The same, plus a first track with the camera composited over the screen (see
    /// [`crate::video::pip`]). Needs a screen.
    Pip,
}

/// AAC bit rate per channel.
const AAC_BITRATE_PER_CHANNEL: i32 = 48_000;

/// What to mux.
#[derive(Debug, Clone)]
pub struct MuxRequest {
    /// The camera file and when its first frame was captured.
    pub camera: VideoInput,
    /// The screen file, if any.
    pub screen: Option<VideoInput>,
    /// The CTI recording and its call record; `None` for a video-only archive (the CTI audio
    /// never arrived), which the manifest flags.
    pub audio: Option<AudioInput>,
    /// The agent's microphone reference, when sent: refines the CTI's offset (never muxed).
    pub reference: Option<ReferenceInput>,
    /// An explicit in point (verification start), instead of the latest start.
    pub in_point: Option<UtcNanos>,
    /// An explicit out point (verification end), instead of the earliest end.
    pub out_point: Option<UtcNanos>,
    /// The output container.
    pub format: OutputFormat,
    /// Separate tracks, or a picture-in-picture composite as well.
    pub layout: Layout,
    /// How the agent's clock was mapped onto UTC, when the video came from a live session
    /// (recorded in the manifest; the frames' times are already mapped).
    pub agent_clock: Option<AgentClockRecord>,
}

/// Muxes `request` into `out`, calling `progress` with the fraction done (0..=1).
///
/// # Errors
/// Unreadable or mismatched inputs, impossible cuts, a pipeline failure, or a write failure.
/// Whatever was written to `out` by then must be discarded (the vault does).
pub fn mux(
    request: &MuxRequest,
    out: &mut dyn Write,
    progress: &mut dyn FnMut(f64),
) -> Result<Manifest> {
    pipeline::init()?;
    if request.layout == Layout::Pip && request.screen.is_none() {
        return Err(MuxError::Request(
            "the picture-in-picture layout needs a screen track".into(),
        ));
    }
    if request.reference.is_some() && request.audio.is_none() {
        return Err(MuxError::Request(
            "a microphone reference places a CTI recording, and none was given".into(),
        ));
    }
    let mut videos = vec![request.camera.clone()];
    videos.extend(request.screen.clone());
    let videos_to_hash: Vec<_> = videos.iter().map(|v| v.source.clone()).collect();
    let files_to_hash: Vec<_> = (request.audio.iter().map(|a| a.bytes.clone()))
        .chain(request.reference.iter().map(|r| r.bytes.clone()))
        .collect();

    std::thread::scope(|scope| {
        // Hash the inputs while the scan reads them too (page cache shared).
        let hashing = scope.spawn(move || {
            videos_to_hash
                .iter()
                .map(fingerprint_video)
                .chain(files_to_hash.iter().map(fingerprint))
                .collect::<Result<Vec<_>>>()
        });
        let started = std::time::Instant::now();
        let scans = videos
            .iter()
            .map(|v| VideoScan::of(&v.source))
            .collect::<Result<Vec<_>>>()?;
        tracing::debug!(elapsed = ?started.elapsed(), "video scanned");
        let audio = request
            .audio
            .as_ref()
            .map(|input| {
                let file = AudioFile::open(input.bytes.clone())?;
                let clock =
                    CtiClock::new(input.start, input.end, file.info.frames, file.info.rate_hz)?;
                Ok::<_, MuxError>((input, file, clock))
            })
            .transpose()?;
        tracing::debug!(elapsed = ?started.elapsed(), "audio opened");
        // Refined against the microphone reference before any cut is chosen.
        let recorded = audio.as_ref().map(|(_, _, clock)| *clock);
        let (audio, alignment) = match (audio, &request.reference) {
            (Some((input, file, clock)), Some(reference)) => {
                let settings = AlignSettings::default();
                let (clock, found) = align::refine(reference, &input.bytes, clock, &settings)?;
                (Some((file, clock)), Some(found))
            }
            (audio, _) => (audio.map(|(_, file, clock)| (file, clock)), None),
        };
        let clock = audio.as_ref().map(|(_, clock)| *clock);
        tracing::debug!(elapsed = ?started.elapsed(), "CTI offset checked");
        let mut spans: Vec<_> = scans
            .iter()
            .zip(&videos)
            .map(|(s, v)| VideoTrack::span(s, v.start))
            .collect();
        spans.extend(clock.map(|c| c.span()));
        let cuts = CutPoints::choose(&spans, request.in_point, request.out_point)?;
        let tracks: Vec<VideoTrack> = videos
            .iter()
            .zip(scans)
            .map(|(v, s)| {
                let codec = request.format.video_codec(s.codec);
                VideoTrack::plan(v.clone(), s, cuts, codec)
            })
            .collect();
        let audio_info = audio.as_ref().map(|(file, _)| file.info.clone());
        let audio = audio.map(|(file, clock)| {
            let output = request.format.audio_output(file.info.rate_hz);
            AudioTrack::plan(file, clock, cuts, output)
        });
        let audio_gaps = audio.as_ref().map(|a| a.gaps.clone()).unwrap_or_default();
        let audio_samples = audio.as_ref().map(AudioTrack::output_samples);

        let pip = (request.layout == Layout::Pip).then(|| {
            let (camera, screen) = (&tracks[0].scan, &tracks[1].scan);
            PipLayout::new(camera.size, screen.size, camera.framerate.unwrap_or((0, 0)))
        });
        let units = run_pipeline(request.format, &tracks, pip.as_ref(), audio, out, progress)?;
        tracing::debug!(elapsed = ?started.elapsed(), "muxed");

        let hashes = hashing.join().expect("hashing does not panic")?;
        tracing::debug!(elapsed = ?started.elapsed(), "inputs hashed");
        let mut inputs: Vec<InputRecord> = tracks
            .iter()
            .zip(&hashes)
            .map(|(t, (sha256, bytes))| InputRecord {
                role: t.input.role.into(),
                file: match &t.input.source {
                    VideoSource::File(path) => InputBytes::File(path.clone()).file_name(),
                    VideoSource::Frames(frames) => frames.label(),
                },
                bytes: *bytes,
                sha256: sha256.clone(),
                codec: format!("{:?}", t.scan.codec).to_lowercase(),
                start: rfc3339(t.input.start),
                end: rfc3339(t.input.start.plus(t.scan.end())),
                units: t.scan.frame_pts.len() as u64,
            })
            .collect();
        // Hashed in order: the videos, the CTI recording and the reference if any.
        let mut file_hashes = hashes[videos.len()..].iter().cloned();
        if let (Some(input), Some(info), Some(recorded)) = (&request.audio, &audio_info, recorded) {
            let (sha256, bytes) = file_hashes.next().expect("the CTI recording was hashed");
            inputs.push(InputRecord {
                role: TrackRole::CtiAudio,
                file: input.bytes.file_name(),
                bytes,
                sha256,
                codec: info.codec.clone(),
                start: rfc3339(recorded.start),
                end: rfc3339(recorded.span().end),
                units: info.frames,
            });
        }
        if let Some((reference, found)) = request.reference.as_ref().zip(alignment.as_ref()) {
            let (sha256, bytes) = file_hashes.next().expect("the reference was hashed");
            inputs.push(InputRecord {
                role: TrackRole::MicReference,
                file: reference.bytes.file_name(),
                bytes,
                sha256,
                codec: found.reference.codec.clone(),
                start: rfc3339(found.reference_span.start),
                end: rfc3339(found.reference_span.end),
                units: found.reference.frames,
            });
        }
        let first = usize::from(pip.is_some());
        let mut out_tracks: Vec<TrackRecord> = pip
            .iter()
            .map(|l| TrackRecord {
                index: 0,
                role: TrackRole::Composite,
                codec: format!("{:?}", request.format.video_codec(tracks[0].scan.codec))
                    .to_lowercase(),
                made_by: format!(
                    "camera at {}×{} over the screen at {}×{}, encoded",
                    l.inset.2, l.inset.3, l.width, l.height
                ),
                units: units.composite,
            })
            .collect();
        out_tracks.extend(tracks.iter().enumerate().map(|(i, t)| TrackRecord {
            index: first + i,
            role: t.input.role.into(),
            codec: format!("{:?}", request.format.video_codec(t.scan.codec)).to_lowercase(),
            made_by: t.made_by(),
            units: units.tracks.get(i).copied().unwrap_or(0),
        }));
        if let (Some(info), Some(clock), Some(samples)) = (&audio_info, clock, audio_samples) {
            out_tracks.push(TrackRecord {
                index: first + tracks.len(),
                role: TrackRole::CtiAudio,
                codec: request.format.audio_codec().into(),
                made_by: format!(
                    "resampled {} Hz → {} Hz on the timeline ({}); {} channel(s) kept",
                    info.rate_hz,
                    request.format.audio_output(info.rate_hz).rate_hz,
                    clock.drift_ppm().map_or_else(
                        || "no end time: nominal rate".into(),
                        |p| format!("drift {p:+.1} ppm corrected")
                    ),
                    info.channels
                ),
                units: samples,
            });
        }
        let mut gaps: Vec<_> = tracks.iter().flat_map(|t| t.gaps.clone()).collect();
        gaps.extend(audio_gaps);
        let gaps = gaps
            .into_iter()
            .map(|g| g.relative_to(cuts.in_point))
            .collect();
        Ok(Manifest {
            kind: "mux",
            manifest_version: MANIFEST_VERSION,
            tool: concat!("idv ", env!("CARGO_PKG_VERSION")).into(),
            gstreamer: gst::version_string().to_string(),
            container: request.format.container(),
            inputs,
            video_only: clock.is_none(),
            clock: ClockRecord {
                method: match &request.audio {
                    Some(input) => align::clock_method(input.end.is_some(), alignment.as_ref()),
                    None => "no CTI recording: video only".into(),
                },
                nominal_rate_hz: audio_info.as_ref().map(|i| i.rate_hz),
                effective_rate_hz: clock.map(|c| c.effective_rate_hz()),
                drift_ppm: clock.and_then(|c| c.drift_ppm()),
                audio_offset_s: clock.map(|c| (c.start.0 - request.camera.start.0) as f64 / 1e9),
                refined_by_ms: alignment.as_ref().map(|a| a.applied_ns as f64 / 1e6),
                reference_correction_ms: alignment
                    .as_ref()
                    .and_then(|a| a.found_ns())
                    .map(|ns| ns as f64 / 1e6),
                confidence: alignment.as_ref().map(align::Alignment::confidence),
                agent_clock: request.agent_clock.clone(),
            },
            cuts: CutRecord {
                r#in: rfc3339(cuts.in_point),
                out: rfc3339(cuts.out_point),
                duration_s: cuts.duration() as f64 / 1e9,
                // Without an explicit point, `CutPoints::choose` takes exactly these.
                in_chosen_by: if request.in_point.is_some() {
                    "requested"
                } else {
                    "latest start"
                },
                out_chosen_by: if request.out_point.is_some() {
                    "requested"
                } else {
                    "earliest end"
                },
            },
            tracks: out_tracks,
            gaps,
            muxed_at: rfc3339(
                UtcNanos::from_datetime(time::OffsetDateTime::now_utc()).unwrap_or(UtcNanos(0)),
            ),
        })
    })
}

/// The audio's branch: appsrc → (Opus encoder for Matroska; AAC comes encoded, see
/// `audio::aac`) → queue → the muxer.
fn audio_branch(
    pipeline: &Pipeline,
    muxer: &gst::Element,
    format: OutputFormat,
    audio: &AudioTrack,
) -> Result<gst_app::AppSrc> {
    let caps = audio.caps();
    let mut src = gst_app::AppSrc::builder()
        .name("audio")
        .format(gst::Format::Time)
        .block(true)
        .max_bytes(1 << 20);
    if let Some(caps) = &caps {
        src = src.caps(caps);
    }
    let src = src.build();
    let mut chain: Vec<gst::Element> = vec![src.clone().upcast()];
    if format == OutputFormat::Mkv {
        let encoder = element("opusenc")?;
        encoder.set_property("bitrate", 32_000i32 * i32::from(audio.file.info.channels));
        chain.extend([element("audioconvert")?, encoder]);
    }
    chain.push(element("queue")?);
    let refs: Vec<&gst::Element> = chain.iter().collect();
    pipeline.chain(&refs)?;
    link_to_muxer(
        pipeline,
        chain.last().expect("non-empty"),
        muxer,
        "audio_%u",
    )?;
    Ok(src)
}

/// Frames muxed per video track.
struct Units {
    tracks: Vec<u64>,
    composite: u64,
}

/// Builds and runs the output pipeline (the composite first when `pip` is given, then the
/// video tracks, then the audio if any).
fn run_pipeline(
    format: OutputFormat,
    tracks: &[VideoTrack],
    pip: Option<&PipLayout>,
    audio: Option<AudioTrack>,
    out: &mut dyn Write,
    progress: &mut dyn FnMut(f64),
) -> Result<Units> {
    let pipeline = Pipeline::new("muxing");
    let muxer = match format {
        OutputFormat::Mp4 => {
            let m = element("mp4mux")?;
            m.set_property("fragment-duration", 1000u32);
            m.set_property("streamable", true);
            m
        }
        OutputFormat::Mkv => {
            let m = element("matroskamux")?;
            m.set_property("streamable", true);
            m.set_property("writing-app", concat!("idv ", env!("CARGO_PKG_VERSION")));
            m
        }
    };
    let sink = gst_app::AppSink::builder()
        .sync(false)
        .max_buffers(16)
        .build();
    pipeline.chain(&[&muxer, sink.upcast_ref()])?;

    let composite = match pip {
        Some(layout) => {
            let codec = format.video_codec(tracks[0].scan.codec);
            let branch = PipBranch::build(&pipeline, layout, &tracks[0], &tracks[1], codec)?;
            link_to_muxer(&pipeline, &branch.last, &muxer, "video_%u")?;
            Some(branch)
        }
        None => None,
    };
    let mut video_srcs = Vec::new();
    for (i, track) in tracks.iter().enumerate() {
        let src = gst_app::AppSrc::builder()
            .name(format!("video{i}"))
            .caps(&video::feed::appsrc_caps(track))
            .format(gst::Format::Time)
            .block(true)
            .max_bytes(8 << 20)
            .build();
        let mut chain: Vec<gst::Element> = vec![src.clone().upcast()];
        if let VideoMode::Transcode(codec) = track.mode {
            chain.extend(video::transcoder(track, codec)?.elements);
        }
        chain.push(element("queue")?);
        let refs: Vec<&gst::Element> = chain.iter().collect();
        pipeline.chain(&refs)?;
        link_to_muxer(
            &pipeline,
            chain.last().expect("non-empty"),
            &muxer,
            "video_%u",
        )?;
        video_srcs.push(src);
    }

    let audio = match audio {
        Some(track) => Some((audio_branch(&pipeline, &muxer, format, &track)?, track)),
        None => None,
    };

    pipeline.play()?;
    // Progress follows the audio, or the first video track without audio.
    let total = audio.as_ref().map_or_else(
        || tracks.first().map_or(0, |t| t.scan.frame_pts.len() as u64),
        |(_, track)| track.output_samples(),
    );
    let pushed_audio = AtomicU64::new(0);
    let pushed_video: Vec<AtomicU64> = tracks.iter().map(|_| AtomicU64::new(0)).collect();

    std::thread::scope(|scope| -> Result<Units> {
        let feeders: Vec<_> = tracks
            .iter()
            .zip(&video_srcs)
            .zip(&pushed_video)
            .map(|((track, src), pushed)| scope.spawn(move || video::feed(track, src, pushed)))
            .collect();
        let has_audio = audio.is_some();
        let audio_feeder = audio.map(|(src, track)| {
            let pushed = &pushed_audio;
            scope.spawn(move || track.feed(&src, pushed))
        });
        let composite_feeders: Vec<_> = composite
            .iter()
            .flat_map(|b| [(&tracks[0], &b.camera), (&tracks[1], &b.screen)])
            .map(|(track, src)| scope.spawn(move || video::feed_decoded(track, src)))
            .collect();

        let done = || match has_audio {
            true => pushed_audio.load(Ordering::Relaxed),
            false => pushed_video
                .first()
                .map_or(0, |p| p.load(Ordering::Relaxed)),
        };
        let written = drain(&pipeline, &sink, out, &mut || {
            progress((done() as f64 / total.max(1) as f64).min(1.0));
        });
        if written.is_err() {
            // Unblock the feeders: a stopped pipeline refuses their pushes.
            pipeline.stop();
        }
        let mut errors: Vec<MuxError> = feeders
            .into_iter()
            .chain(composite_feeders)
            .filter_map(|f| f.join().expect("feeders do not panic").err())
            .collect();
        if let Some(feeder) = audio_feeder {
            errors.extend(feeder.join().expect("feeders do not panic").err());
        }
        // A damaged input explains everything after it; otherwise the pipeline's own error
        // says more than a feeder that found the pipeline stopped.
        if let Some(i) = errors
            .iter()
            .position(|e| matches!(e, MuxError::Input { .. }))
        {
            return Err(errors.swap_remove(i));
        }
        written?;
        if let Some(e) = errors.into_iter().next() {
            return Err(e);
        }
        progress(1.0);
        Ok(Units {
            tracks: pushed_video
                .iter()
                .map(|p| p.load(Ordering::Relaxed))
                .collect(),
            composite: composite
                .as_ref()
                .map_or(0, |b| b.frames.load(Ordering::Relaxed)),
        })
    })
}

/// Links `from` to a new request pad of `muxer` (explicitly: linking by caps could hand a
/// video stream an audio pad).
fn link_to_muxer(
    pipeline: &Pipeline,
    from: &gst::Element,
    muxer: &gst::Element,
    template: &str,
) -> Result<()> {
    let pad = muxer
        .request_pad_simple(template)
        .ok_or_else(|| pipeline.error(muxer.name(), format!("no {template} pad")))?;
    let src = from
        .static_pad("src")
        .expect("the last element has a src pad");
    src.link(&pad)
        .map(|_| ())
        .map_err(|e| pipeline.error(muxer.name(), format!("{template}: {e:?}")))
}

/// Writes the muxer's output to `out` until end of stream.
fn drain(
    pipeline: &Pipeline,
    sink: &gst_app::AppSink,
    out: &mut dyn Write,
    tick: &mut dyn FnMut(),
) -> Result<()> {
    while let Some(sample) = pipeline.pull(sink)? {
        if let Some(buffer) = sample.buffer() {
            let map = buffer
                .map_readable()
                .map_err(|e| pipeline.error("appsink", e))?;
            out.write_all(map.as_slice()).map_err(MuxError::Output)?;
        }
        tick();
    }
    pipeline.check_bus()?;
    pipeline.stop();
    Ok(())
}
